//! Commands nodes send each other over the client port.
//!
//! `RAFTKV.PROPOSE <bytes>`: a follower forwarding a write sends the command as its
//! log-entry encoding ([`WriteCommand::encode`]), not as the client's words, so what the
//! follower parsed (a SELECTed database, a transaction with its watched revisions) reaches
//! the leader whole. The leader decodes it (never trusting the bytes) and proposes it.
//!
//! `RAFTKV.BACKUP` and `RAFTKV.BACKUPREAD <offset>`: what `kvctl snapshot save` sends. The
//! first copies the state at a linearizable point into a file only this connection can
//! read (unlinked at once) and answers `[index, term, cluster id, bytes]`; the second
//! reads it in chunks. Any node can serve a backup: its read point is the leader's.

use bytes::Bytes;

use super::args::Context;
use super::error::CommandError;
use super::Command;
use crate::state_machine::WriteCommand;

/// The command name, as a follower sends it.
pub const PROPOSE: &str = "RAFTKV.PROPOSE";

/// A backup's two steps (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupCommand {
    Begin,
    Read { offset: u64 },
}

/// `RAFTKV.BACKUP`
pub(super) fn parse_backup(_: &[Bytes], _: &Context) -> Result<Command, CommandError> {
    Ok(Command::Backup(BackupCommand::Begin))
}

/// `RAFTKV.BACKUPREAD offset`
pub(super) fn parse_backup_read(args: &[Bytes], _: &Context) -> Result<Command, CommandError> {
    let offset = super::args::unsigned(&args[0]).ok_or(CommandError::NotInteger)?;
    Ok(Command::Backup(BackupCommand::Read { offset }))
}

/// `RAFTKV.PROPOSE bytes`
pub(super) fn parse_propose(args: &[Bytes], _: &Context<'_>) -> Result<Command, CommandError> {
    WriteCommand::decode(&args[0])
        .map(Command::Write)
        .map_err(|undecodable| CommandError::Internal {
            reason: format!("a forwarded write does not decode: {undecodable}"),
        })
}
