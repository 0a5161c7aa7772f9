//! Parsing a request frame into a typed [`Command`].
//!
//! Role: the one table of commands this server knows ([`SPECS`]), with Redis' arity rule
//! (positive: exactly that many words including the name; negative: at least that many),
//! case-insensitive names, Redis' error wording, and key/value size limits checked here,
//! before a write reaches the Raft log.
//!
//! Every command is classified ([`CommandKind`]):
//! - **write**: a [`WriteCommand`], proposed to the Raft log and answered once applied;
//! - **read**: a [`ReadCommand`], answered after a ReadIndex (linearizable), or at once
//!   from local state when the connection opted into stale reads with READONLY;
//! - **local**: a [`LocalCommand`] the node answers itself (connection state, HELLO, INFO);
//! - **admin**: an [`AdminCommand`] for cluster membership and leadership.
//!
//! Prohibitions: parsing never allocates for a size that was not already received (the
//! RESP decoder capped the request), and never consults node state.
//!
//! One file per command family: [`get`], [`set`], [`del`], [`incr`], [`append`],
//! [`keyspace`], [`connection`], [`hello`], [`client`], [`introspection`], [`admin`],
//! [`internal`] (what nodes send each other);
//! [`local`] holds the local command type, [`args`] argument helpers, [`error`] the errors.

pub mod admin;
pub mod append;
pub mod args;
pub mod client;
pub mod connection;
pub mod del;
pub mod error;
pub mod get;
pub mod hello;
pub mod incr;
pub mod internal;
pub mod introspection;
pub mod keyspace;
pub mod local;
pub mod set;

use bytes::Bytes;

pub use admin::AdminCommand;
pub use args::CommandLimits;
pub use client::{ClientAttribute, ClientCommand};
pub use error::CommandError;
pub use hello::{check_credentials, hello_reply, Credentials, Hello};
pub use introspection::CommandQuery;
pub use local::LocalCommand;

use crate::resp::Frame;
use crate::state_machine::{ReadCommand, WriteCommand};

/// A parsed client command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Write(WriteCommand),
    Read(ReadCommand),
    Local(LocalCommand),
    Admin(AdminCommand),
    /// A backup's steps, served by the connection with a copy from the raft loop.
    Backup(internal::BackupCommand),
}

/// How the server must execute a command.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum CommandKind {
    /// Through the Raft log; answered once committed and applied.
    Write,
    /// After a ReadIndex (or locally in stale mode).
    Read,
    /// By this node alone.
    Local,
    /// A cluster administration request.
    Admin,
}

impl Command {
    /// How the server must execute this command.
    pub fn kind(&self) -> CommandKind {
        match self {
            Command::Write(_) => CommandKind::Write,
            Command::Read(_) => CommandKind::Read,
            Command::Local(_) => CommandKind::Local,
            Command::Admin(_) | Command::Backup(_) => CommandKind::Admin,
        }
    }

    /// May run on a connection that has not authenticated (when a password is set);
    /// everything else gets [`CommandError::NoAuth`], as in Redis.
    pub fn allowed_before_auth(&self) -> bool {
        matches!(
            self,
            Command::Local(LocalCommand::Auth(_) | LocalCommand::Hello(_) | LocalCommand::Quit)
        )
    }
}

type ParseFn = fn(&[Bytes], &CommandLimits) -> Result<Command, CommandError>;

/// One row of the command table.
pub(crate) struct Spec {
    /// Redis' lower-case name, used in arity errors.
    pub(crate) name: &'static str,
    /// Redis' arity: `n > 0` exactly n words with the name, `n < 0` at least -n.
    arity: i32,
    parse: ParseFn,
}

macro_rules! spec {
    ($name:literal, $arity:literal, $parse:path) => {
        Spec {
            name: $name,
            arity: $arity,
            parse: $parse,
        }
    };
}

/// Every command this server knows.
pub(crate) const SPECS: &[Spec] = &[
    spec!("get", 2, get::parse_get),
    spec!("set", -3, set::parse_set),
    spec!("getset", 3, set::parse_getset),
    spec!("del", -2, del::parse_del),
    spec!("exists", -2, get::parse_exists),
    spec!("incr", 2, incr::parse_incr),
    spec!("incrby", 3, incr::parse_incrby),
    spec!("decr", 2, incr::parse_decr),
    spec!("decrby", 3, incr::parse_decrby),
    spec!("append", 3, append::parse_append),
    spec!("strlen", 2, get::parse_strlen),
    spec!("mget", -2, get::parse_mget),
    spec!("mset", -3, set::parse_mset),
    spec!("dbsize", 1, keyspace::parse_dbsize),
    spec!("keys", 2, keyspace::parse_keys),
    spec!("scan", -2, keyspace::parse_scan),
    spec!("ping", -1, connection::parse_ping),
    spec!("echo", 2, connection::parse_echo),
    spec!("quit", -1, connection::parse_quit),
    spec!("select", 2, connection::parse_select),
    spec!("readonly", 1, connection::parse_readonly),
    spec!("readwrite", 1, connection::parse_readwrite),
    spec!("hello", -1, hello::parse_hello),
    spec!("auth", -2, hello::parse_auth),
    spec!("client", -2, client::parse_client),
    spec!("command", -1, introspection::parse_command),
    spec!("info", -1, introspection::parse_info),
    spec!("config", -2, introspection::parse_config),
    spec!("raft.status", 1, admin::parse_status),
    spec!("raft.addlearner", 4, admin::parse_add_learner),
    spec!("raft.promote", 2, admin::parse_promote),
    spec!("raft.remove", 2, admin::parse_remove),
    spec!("raft.transfer", 2, admin::parse_transfer),
    spec!("raftkv.propose", 2, internal::parse_propose),
    spec!("raftkv.backup", 1, internal::parse_backup),
    spec!("raftkv.backupread", 2, internal::parse_backup_read),
];

/// Parses a request (as [`crate::resp::decode_request`] returns it) into a command.
///
/// # Errors
/// A [`CommandError`] worded as Redis words it; send it back with
/// [`crate::error::error_reply`] and keep the connection open.
pub fn parse(frame: Frame, limits: &CommandLimits) -> Result<Command, CommandError> {
    let Frame::Array(items) = frame else {
        return Err(CommandError::Syntax);
    };
    let words = items
        .into_iter()
        .map(|item| match item {
            Frame::Bulk(word) => Ok(word),
            _ => Err(CommandError::Syntax),
        })
        .collect::<Result<Vec<Bytes>, CommandError>>()?;
    parse_words(&words, limits)
}

/// Parses a command given as its words (name first).
///
/// # Errors
/// As [`parse`].
pub fn parse_words(words: &[Bytes], limits: &CommandLimits) -> Result<Command, CommandError> {
    let (name, args) = words.split_first().ok_or(CommandError::Syntax)?;
    let Some(spec) = SPECS
        .iter()
        .find(|spec| name.eq_ignore_ascii_case(spec.name.as_bytes()))
    else {
        return Err(CommandError::UnknownCommand {
            name: name.clone(),
            args: args.iter().take(16).cloned().collect(),
        });
    };
    let words_len = i64::try_from(words.len()).expect("a request has far fewer than 2^63 words");
    let arity = i64::from(spec.arity);
    let arity_ok = if arity > 0 {
        words_len == arity
    } else {
        words_len >= -arity
    };
    if !arity_ok {
        return Err(CommandError::WrongArity { command: spec.name });
    }
    (spec.parse)(args, limits)
}

#[cfg(test)]
mod tests;
