//! Parsing a request frame into a typed [`Command`].
//!
//! Role: the one table of commands this server knows ([`SPECS`], in `table`), with Redis' arity rule
//! (positive: exactly that many words including the name; negative: at least that many),
//! case-insensitive names, Redis' error wording, and key/value size limits checked here,
//! before a write reaches the Raft log.
//!
//! Every command is classified ([`CommandKind`]):
//! - **write**: a [`WriteCommand`], proposed to the Raft log and answered once applied;
//! - **read**: a [`ReadCommand`], answered after a ReadIndex (linearizable), or at once
//!   from local state when the connection opted into stale reads with READONLY;
//! - **local**: a [`LocalCommand`] the node answers itself (connection state, HELLO, INFO,
//!   and the transaction commands MULTI/EXEC/DISCARD/WATCH/UNWATCH, which the connection
//!   runs: EXEC becomes one write);
//! - **admin**: an [`AdminCommand`] for cluster membership and leadership.
//!
//! Prohibitions: parsing never allocates for a size that was not already received (the
//! RESP decoder capped the request), and never consults node state.
//!
//! Every keyed command carries the connection's database ([`Context::db`]), so a
//! forwarded write or a transaction holds it whole. Each row also states what COMMAND INFO
//! reports (flags, key positions).
//!
//! One file per command family: [`get`], [`set`], [`del`], [`incr`], [`append`],
//! [`expire`], [`keyspace`], [`databases`], [`transaction`], [`connection`], [`hello`],
//! [`client`], [`config`], [`introspection`], [`object`], [`admin`], [`internal`] (what nodes send each other);
//! [`local`] holds the local command type, [`args`] argument helpers and the parse
//! [`Context`], [`error`] the errors.

pub mod acl;
pub mod admin;
pub mod append;
pub mod args;
pub mod category;
pub mod client;
pub mod config;
pub mod connection;
pub mod databases;
pub mod del;
mod docs;
pub mod error;
pub mod expire;
pub mod get;
pub mod hello;
pub mod incr;
pub mod internal;
pub mod introspection;
pub mod keyspace;
pub mod local;
pub mod object;
pub mod set;
pub mod transaction;

use bytes::Bytes;

pub use acl::AclQuery;
pub use admin::AdminCommand;
pub use args::{CommandLimits, Context};
pub use client::{ClientAttribute, ClientCommand};
pub use error::CommandError;
pub use hello::{hello_reply, Credentials, Hello};
pub use introspection::CommandQuery;
pub use local::LocalCommand;

use crate::resp::Frame;
use crate::state_machine::{ReadCommand, ReadOp, WriteCommand, WriteOp};

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

/// A write on the context's database.
pub(crate) fn write(context: &Context<'_>, op: WriteOp) -> Result<Command, CommandError> {
    Ok(Command::Write(WriteCommand { db: context.db, op }))
}

/// A read of the context's database.
pub(crate) fn read(context: &Context<'_>, op: ReadOp) -> Result<Command, CommandError> {
    Ok(Command::Read(ReadCommand { db: context.db, op }))
}

type ParseFn = fn(&[Bytes], &Context<'_>) -> Result<Command, CommandError>;

/// Command flags, with Redis' names, for COMMAND INFO.
pub mod flags {
    /// Changes the data (goes through the log).
    pub const WRITE: u16 = 1;
    /// Only reads the data.
    pub const READONLY: u16 = 1 << 1;
    /// Cluster administration.
    pub const ADMIN: u16 = 1 << 2;
    /// O(1) or O(log n).
    pub const FAST: u16 = 1 << 3;
    /// May grow memory use (Redis' `denyoom`).
    pub const DENYOOM: u16 = 1 << 4;
    /// Not allowed inside a transaction (MULTI, WATCH: Redis' `no-multi` where it has it).
    pub const NO_MULTI: u16 = 1 << 5;
    /// Allowed before authentication.
    pub const NO_AUTH: u16 = 1 << 6;
    /// Judged by the clock (TTL, TIME): replies depend on when they run.
    pub const TIME: u16 = 1 << 7;

    /// Every flag with its Redis name.
    pub const NAMES: [(u16, &str); 8] = [
        (WRITE, "write"),
        (READONLY, "readonly"),
        (ADMIN, "admin"),
        (FAST, "fast"),
        (DENYOOM, "denyoom"),
        (NO_MULTI, "no-multi"),
        (NO_AUTH, "no-auth"),
        (TIME, "time"),
    ];
}

/// One row of the command table: what COMMAND INFO reports, and the parser.
pub(crate) struct Spec {
    /// Redis' lower-case name, used in arity errors.
    pub(crate) name: &'static str,
    /// Redis' arity: `n > 0` exactly n words with the name, `n < 0` at least -n.
    pub(crate) arity: i32,
    /// [`flags`] bits.
    pub(crate) flags: u16,
    /// Key positions as Redis' COMMAND INFO gives them: first, last (-1: the last
    /// argument), step; 0, 0, 0 for a command without keys.
    pub(crate) keys: (i32, i32, i32),
    parse: ParseFn,
    /// ACL categories beyond those the flags imply ([`category`]).
    pub(crate) categories: u16,
}

mod table;
pub(crate) use table::SPECS;

/// Parses a request (as [`crate::resp::decode_request`] returns it) into a command.
///
/// # Errors
/// A [`CommandError`] worded as Redis words it; send it back with
/// [`crate::error::error_reply`] and keep the connection open.
pub fn parse(frame: Frame, context: &Context<'_>) -> Result<Command, CommandError> {
    parse_words(&words(frame)?, context)
}

/// As [`parse`], with the command's row in the table when its name is known (what
/// CLIENT LIST shows as the client's last command, through [`command_name`]).
///
/// # Errors
/// As [`parse`].
pub fn parse_with_row(
    frame: Frame,
    context: &Context<'_>,
) -> (Option<usize>, Result<Command, CommandError>) {
    let words = match words(frame) {
        Ok(words) => words,
        Err(invalid) => return (None, Err(invalid)),
    };
    match check_row(&words) {
        Ok(row) => (Some(row), (SPECS[row].parse)(&words[1..], context)),
        Err(invalid) => (None, Err(invalid)),
    }
}

/// The name of the command at `row` of the table.
pub fn command_name(row: usize) -> Option<&'static str> {
    SPECS.get(row).map(|spec| spec.name)
}

/// The words of a request frame (name first).
///
/// # Errors
/// [`CommandError::Syntax`] for a frame that is not an array of bulk strings.
pub fn words(frame: Frame) -> Result<Vec<Bytes>, CommandError> {
    let Frame::Array(items) = frame else {
        return Err(CommandError::Syntax);
    };
    items
        .into_iter()
        .map(|item| match item {
            Frame::Bulk(word) => Ok(word),
            _ => Err(CommandError::Syntax),
        })
        .collect()
}

/// Checks a command's name and arity (what Redis checks before queuing it in a
/// transaction) and returns its table row.
///
/// # Errors
/// `ERR unknown command ...` or `ERR wrong number of arguments ...`.
pub(crate) fn check(words: &[Bytes]) -> Result<&'static Spec, CommandError> {
    check_row(words).map(|row| &SPECS[row])
}

/// As [`check`], returning the row's index in [`SPECS`].
pub(crate) fn check_row(words: &[Bytes]) -> Result<usize, CommandError> {
    let (name, args) = words.split_first().ok_or(CommandError::Syntax)?;
    let Some(row) = SPECS
        .iter()
        .position(|spec| name.eq_ignore_ascii_case(spec.name.as_bytes()))
    else {
        return Err(CommandError::UnknownCommand {
            name: name.clone(),
            args: args.iter().take(16).cloned().collect(),
        });
    };
    let spec = &SPECS[row];
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
    Ok(row)
}

/// Parses a command given as its words (name first).
///
/// # Errors
/// As [`parse`].
pub fn parse_words(words: &[Bytes], context: &Context<'_>) -> Result<Command, CommandError> {
    parse_checked(check(words)?, words, context)
}

/// Parses words [`check`] has found to be the command `spec`.
///
/// # Errors
/// As [`parse`].
pub(crate) fn parse_checked(
    spec: &Spec,
    words: &[Bytes],
    context: &Context<'_>,
) -> Result<Command, CommandError> {
    (spec.parse)(&words[1..], context)
}

#[cfg(test)]
mod tests;
