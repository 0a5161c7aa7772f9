//! A connection's ACL side: who it runs as, whether a command may run (NOAUTH, NOPERM),
//! AUTH and HELLO AUTH, and the ACL subcommands answered from this node's definitions.
//!
//! Rules (Redis'): a connection that has not authenticated runs as `default` when that
//! user is on and needs no password, else gets NOAUTH for all but AUTH, HELLO and QUIT.
//! An authenticated connection runs as its user as currently defined: permission changes
//! apply to its next command; if the user is deleted (or deleted and created again) the
//! connection is closed. Definitions are those this node has applied: a change made
//! through another node reaches this one when it applies the entry (normally within a
//! heartbeat); a change made on this connection is waited for before its next AUTH or ACL
//! query (a linearizable read), so a client always sees its own ACL changes.

use std::borrow::Cow;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::Connection;
use crate::acl::{self, User, Users, DEFAULT_USER};
use crate::cmd::{flags, AclQuery, Command, CommandError, Credentials, LocalCommand, Spec};
use crate::error::{error_reply, Error};
use crate::raft_loop::Request;
use crate::resp::Frame;
use crate::state_machine::{DbIndex, ReadCommand, ReadOp};

/// Why a connection has no user to run a command as.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Gate {
    /// Not authenticated, and `default` needs a password or is off.
    NoAuth,
    /// The user it authenticated as was deleted: close the connection.
    Deleted,
}

/// What to do with a command.
pub(super) enum Admit<'a> {
    /// Run it (as this user; `None` for AUTH, HELLO and QUIT before authenticating).
    Run(Option<Cow<'a, User>>),
    Refuse(Frame),
    Close,
}

fn refuse(error: CommandError) -> Frame {
    error_reply(&Error::Command(error))
}

/// True for the local commands that read the users (settle this connection's writes
/// first, so an ACL SETUSER pipelined before them has been applied).
pub(super) fn reads_users(command: &LocalCommand) -> bool {
    match command {
        LocalCommand::Auth(_) => true,
        LocalCommand::Hello(hello) => hello.auth.is_some(),
        LocalCommand::Acl(query) => !matches!(query, AclQuery::Cat(_)),
        _ => false,
    }
}

impl Connection {
    fn password(&self) -> Option<&[u8]> {
        self.shared.password.as_deref().map(str::as_bytes)
    }

    /// The user this connection runs as.
    pub(super) fn user<'a>(&self, users: &'a Users) -> Result<Cow<'a, User>, Gate> {
        match &self.identity {
            Some(identity) => acl::effective(users, self.password(), &identity.name)
                .filter(|user| user.created == identity.created)
                .ok_or(Gate::Deleted),
            None if acl::auth_required(users, self.password()) => Err(Gate::NoAuth),
            None => acl::effective(users, self.password(), DEFAULT_USER).ok_or(Gate::NoAuth),
        }
    }

    /// True if the user this connection authenticated as no longer exists.
    pub(super) fn user_deleted(&self) -> bool {
        let users = self.users.borrow().clone();
        self.user(&users) == Err(Gate::Deleted)
    }

    /// Decides whether the command `words` call (its table row `spec`) may run.
    /// `RAFTKV.PROPOSE` is checked once parsed ([`Connection::admit_parsed`]).
    pub(super) fn admit<'a>(&self, users: &'a Users, spec: &Spec, words: &[Bytes]) -> Admit<'a> {
        match self.user(users) {
            Err(Gate::Deleted) => Admit::Close,
            Err(Gate::NoAuth) if spec.flags & flags::NO_AUTH != 0 => Admit::Run(None),
            Err(Gate::NoAuth) => Admit::Refuse(refuse(CommandError::NoAuth)),
            Ok(user) if spec.name == "raftkv.propose" => Admit::Run(Some(user)),
            Ok(user) => match acl::permit(&user, spec, words) {
                Ok(()) => Admit::Run(Some(user)),
                Err(denied) => Admit::Refuse(refuse(denied)),
            },
        }
    }

    /// The check of a forwarded write (`RAFTKV.PROPOSE`), once decoded.
    pub(super) fn admit_parsed(user: Option<&User>, command: &Command) -> Result<(), Frame> {
        match (user, command) {
            (Some(user), Command::Write(write)) => acl::permit_logged(user, write).map_err(refuse),
            _ => Ok(()),
        }
    }

    /// The check a transaction runs on each command as it is queued and again at EXEC.
    pub(super) fn permit_queued(
        user: &Result<Cow<'_, User>, Gate>,
        spec: &Spec,
        words: &[Bytes],
    ) -> Result<(), CommandError> {
        match user {
            Ok(user) => acl::permit(user, spec, words),
            Err(_) if spec.flags & flags::NO_AUTH != 0 => Ok(()),
            Err(_) => Err(CommandError::NoAuth),
        }
    }

    /// AUTH or HELLO AUTH: on success the connection runs as the user from now on, and
    /// its forward connection (authenticated as the previous identity) is dropped.
    pub(super) async fn authenticate(
        &mut self,
        credentials: &Credentials,
    ) -> Result<(), CommandError> {
        self.wait_for_own_acl_changes().await;
        let users = self.users.borrow().clone();
        let identity = acl::authenticate(&users, self.password(), credentials)?;
        if self.identity.as_ref() != Some(&identity) {
            self.forwarder.reset();
        }
        self.identity = Some(identity);
        Ok(())
    }

    /// True if a connection that has not authenticated must.
    pub(super) fn must_authenticate(&self) -> bool {
        self.identity.is_none() && acl::auth_required(&self.users.borrow(), self.password())
    }

    /// If this connection changed the users, waits until this node has applied everything
    /// committed by then: a linearizable read, whose answer comes only once this node's
    /// state reaches the leader's commit index. If that fails (no leader), the node's
    /// current definitions are used.
    async fn wait_for_own_acl_changes(&mut self) {
        if !std::mem::take(&mut self.acl_barrier) {
            return;
        }
        let (sender, receiver) = oneshot::channel();
        let request = Request::Read {
            command: ReadCommand {
                db: DbIndex(0),
                op: ReadOp::Time,
            },
            linearizable: true,
            reply: sender,
        };
        if self.shared.raft.submit(request).is_ok() {
            // Only the waiting matters; a failed read leaves the current definitions.
            let _ = receiver.await;
        }
    }

    /// ACL LIST, USERS, GETUSER, WHOAMI.
    pub(super) async fn acl_query(&mut self, query: AclQuery) -> Frame {
        self.wait_for_own_acl_changes().await;
        let users = self.users.borrow().clone();
        let password = self.password();
        let effective = |user: &User| {
            acl::effective(&users, password, &user.name)
                .expect("every listed user exists")
                .into_owned()
        };
        match query {
            AclQuery::List => Frame::Array(
                users
                    .iter()
                    .map(|user| {
                        let rules = effective(user).describe_rules().join(" ");
                        Frame::bulk(format!(
                            "user {} {rules}",
                            String::from_utf8_lossy(&user.name)
                        ))
                    })
                    .collect(),
            ),
            AclQuery::Users => Frame::Array(
                users
                    .iter()
                    .map(|user| Frame::Bulk(user.name.clone()))
                    .collect(),
            ),
            AclQuery::WhoAmI => Frame::Bulk(
                self.identity
                    .as_ref()
                    .map_or(Bytes::from_static(DEFAULT_USER), |identity| {
                        identity.name.clone()
                    }),
            ),
            AclQuery::GetUser(name) => match acl::effective(&users, password, &name) {
                Some(user) => getuser_reply(&user),
                None => Frame::Null,
            },
            AclQuery::Cat(_) => unreachable!("ACL CAT has a stateless reply"),
        }
    }
}

/// ACL GETUSER's map, in Redis 7's shape.
fn getuser_reply(user: &User) -> Frame {
    let mut flags = vec![Frame::bulk(if user.enabled { "on" } else { "off" })];
    if user.nopass {
        flags.push(Frame::bulk("nopass"));
    }
    let field = |name: &str, value: Frame| (Frame::bulk(name), value);
    Frame::Map(vec![
        field("flags", Frame::Array(flags)),
        field(
            "passwords",
            Frame::Array(
                user.passwords
                    .iter()
                    .map(|hash| Frame::bulk(acl::rule::hash_hex(hash)))
                    .collect(),
            ),
        ),
        field("commands", Frame::bulk(user.commands_description())),
        field("keys", Frame::bulk(user.key_description().join(" "))),
        field("channels", Frame::bulk("")),
        field("selectors", Frame::Array(Vec::new())),
    ])
}
