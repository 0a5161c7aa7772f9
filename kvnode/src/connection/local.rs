//! The commands a connection answers itself: connection state (QUIT, READONLY, SELECT,
//! HELLO, AUTH), the transaction commands outside a transaction, CLIENT (with the
//! registry of open connections), CONFIG and INFO.

use bytes::Bytes;

use super::transaction::Session;
use super::Connection;
use crate::cmd::{self, hello_reply, ClientAttribute, ClientCommand, LocalCommand};
use crate::error::{error_reply, ClusterError, Error};
use crate::resp::Frame;

impl Connection {
    pub(super) async fn local(&mut self, command: LocalCommand) -> Frame {
        if let Some(reply) = command.stateless_reply() {
            match command {
                LocalCommand::Quit => self.closing = true,
                LocalCommand::ReadOnly => self.stale_reads = true,
                LocalCommand::ReadWrite => self.stale_reads = false,
                LocalCommand::Select(db) => self.session.db = db,
                _ => {}
            }
            return reply;
        }
        match command {
            LocalCommand::Multi => self.session.multi(),
            LocalCommand::Exec | LocalCommand::Discard => Session::not_in_transaction(&command),
            LocalCommand::Unwatch => {
                self.session.unwatch();
                Frame::ok()
            }
            LocalCommand::Hello(hello) => {
                if let Some(credentials) = &hello.auth {
                    if let Err(refused) = self.authenticate(credentials).await {
                        return error_reply(&Error::Command(refused));
                    }
                }
                if self.must_authenticate() {
                    return error_reply(&Error::Command(cmd::CommandError::NoAuth));
                }
                if let Some(protocol) = hello.protocol {
                    self.protocol = protocol;
                }
                if let Some(name) = hello.client_name {
                    self.registration.entry.set_name(Some(name.clone()));
                    self.name = Some(name);
                }
                let role = match self.status().await {
                    Some(status) if status.is_leader() => "master",
                    _ => "replica",
                };
                hello_reply(self.protocol, self.id, role)
            }
            LocalCommand::Auth(credentials) => match self.authenticate(&credentials).await {
                Ok(()) => Frame::ok(),
                Err(refused) => error_reply(&Error::Command(refused)),
            },
            LocalCommand::Acl(query) => self.acl_query(query).await,
            LocalCommand::Client(client) => self.client(client),
            LocalCommand::Config(config) => {
                let dir = std::fs::canonicalize(&self.shared.backup_dir)
                    .unwrap_or_else(|_| self.shared.backup_dir.clone());
                let values = cmd::config::ConfigValues {
                    port: self.registration.entry.local_addr.port(),
                    dir: dir.display().to_string(),
                    databases: self.shared.command_limits.databases,
                    maxclients: self.shared.connections_max,
                    proto_max_bulk_len: self.shared.limits.bulk_bytes_max,
                };
                match cmd::config::config_reply(&config, &values) {
                    Ok(pairs) if matches!(config, cmd::config::ConfigCommand::Get { .. }) => {
                        Frame::Map(
                            pairs
                                .into_iter()
                                .map(|(name, value)| (Frame::bulk(name), Frame::bulk(value)))
                                .collect(),
                        )
                    }
                    Ok(_) => Frame::ok(),
                    Err(refused) => error_reply(&Error::Command(refused)),
                }
            }
            LocalCommand::Info { sections } => match self.status().await {
                Some(status) => {
                    let sources = crate::info::InfoSources {
                        status: &status,
                        shared: &self.shared,
                        tcp_port: self.registration.entry.local_addr.port(),
                    };
                    Frame::Bulk(Bytes::from(crate::info::render(&sections, &sources)))
                }
                None => error_reply(&Error::Cluster(ClusterError::Overloaded(
                    "status unavailable",
                ))),
            },
            other => unreachable!("{other:?} has a stateless reply"),
        }
    }

    fn client(&mut self, client: ClientCommand) -> Frame {
        let entry = &self.registration.entry;
        match client {
            ClientCommand::SetName(name) => {
                self.name = (!name.is_empty()).then_some(name);
                entry.set_name(self.name.clone());
                Frame::ok()
            }
            ClientCommand::GetName => self.name.clone().map_or(Frame::Null, Frame::Bulk),
            ClientCommand::Id => Frame::Integer(i64::try_from(self.id).unwrap_or(i64::MAX)),
            ClientCommand::SetInfo { attribute, value } => {
                match attribute {
                    ClientAttribute::LibraryName => entry.set_library_name(value),
                    ClientAttribute::LibraryVersion => entry.set_library_version(value),
                }
                Frame::ok()
            }
            ClientCommand::Info => {
                self.publish_state();
                let mut line = entry.describe(cmd::command_name);
                line.push('\n');
                Frame::Bulk(Bytes::from(line))
            }
            ClientCommand::List { ids, none } => {
                self.publish_state();
                let mut out = String::new();
                let listed = self.shared.clients.entries();
                let wanted = listed.iter().filter(|client| {
                    !none && ids.as_ref().is_none_or(|ids| ids.contains(&client.id))
                });
                for client in wanted {
                    out.push_str(&client.describe(cmd::command_name));
                    out.push('\n');
                }
                Frame::Bulk(Bytes::from(out))
            }
            ClientCommand::Kill { filter, old_form } => {
                let killed = self.shared.clients.kill(&filter, self.id);
                match (old_form, killed) {
                    (true, 0) => error_reply(&Error::Command(cmd::CommandError::NoSuchClient)),
                    (true, _) => Frame::ok(),
                    (false, killed) => Frame::Integer(i64::try_from(killed).unwrap_or(i64::MAX)),
                }
            }
        }
    }
}
