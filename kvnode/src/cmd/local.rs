//! Commands a node answers by itself: connection state, negotiation and introspection.
//! None of them touches the replicated state or the Raft log.

use bytes::Bytes;

use super::acl::{cat_reply, AclQuery};
use super::client::ClientCommand;
use super::config::ConfigCommand;
use super::hello::{Credentials, Hello};
use super::introspection::{command_reply, CommandQuery};
use crate::resp::Frame;
use crate::state_machine::DbIndex;

/// A connection-local or node-local command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocalCommand {
    Ping {
        message: Option<Bytes>,
    },
    Echo {
        message: Bytes,
    },
    Hello(Hello),
    Auth(Credentials),
    Client(ClientCommand),
    Command(CommandQuery),
    /// A HELP subcommand's lines (OBJECT HELP), answered as status strings as Redis does.
    Help {
        lines: &'static [&'static str],
    },
    /// Lower-cased section names; empty means the default sections.
    Info {
        sections: Vec<Bytes>,
    },
    /// CONFIG GET or SET: answered from the server's settings.
    Config(ConfigCommand),
    /// This connection's database from now on.
    Select(DbIndex),
    /// Start queuing a transaction.
    Multi,
    /// Run the queued transaction (one log entry).
    Exec,
    /// Drop the queued transaction.
    Discard,
    /// Remember the keys' revisions for the next EXEC.
    Watch {
        db: DbIndex,
        keys: Vec<Bytes>,
    },
    /// Forget the watched keys.
    Unwatch,
    Quit,
    /// Opt this connection into stale (local, no ReadIndex) reads.
    ReadOnly,
    /// Back to linearizable reads.
    ReadWrite,
    /// ACL LIST, USERS, GETUSER, WHOAMI, CAT.
    Acl(AclQuery),
}

impl LocalCommand {
    /// The reply, for commands whose reply depends on nothing but the command itself.
    /// `None` for those that need connection or node state (HELLO, AUTH, CLIENT, INFO,
    /// the transaction commands); QUIT, SELECT, READONLY and READWRITE reply `+OK` but the
    /// caller must also act on them.
    pub fn stateless_reply(&self) -> Option<Frame> {
        match self {
            LocalCommand::Ping { message: None } => Some(Frame::Simple("PONG".to_owned())),
            LocalCommand::Ping {
                message: Some(message),
            } => Some(Frame::Bulk(message.clone())),
            LocalCommand::Echo { message } => Some(Frame::Bulk(message.clone())),
            LocalCommand::Command(query) => Some(command_reply(query)),
            LocalCommand::Acl(AclQuery::Cat(category)) => Some(cat_reply(*category)),
            LocalCommand::Help { lines } => Some(Frame::Array(
                lines
                    .iter()
                    .map(|line| Frame::Simple((*line).to_owned()))
                    .collect(),
            )),
            LocalCommand::Select(_)
            | LocalCommand::Quit
            | LocalCommand::ReadOnly
            | LocalCommand::ReadWrite => Some(Frame::ok()),
            LocalCommand::Hello(_)
            | LocalCommand::Auth(_)
            | LocalCommand::Client(_)
            | LocalCommand::Config(_)
            | LocalCommand::Info { .. }
            | LocalCommand::Multi
            | LocalCommand::Exec
            | LocalCommand::Discard
            | LocalCommand::Watch { .. }
            | LocalCommand::Unwatch
            | LocalCommand::Acl(_) => None,
        }
    }
}
