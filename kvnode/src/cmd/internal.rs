//! Commands nodes send each other over the client port.
//!
//! `RAFTKV.PROPOSE <bytes>`: a follower forwarding a write sends the command as its
//! log-entry encoding ([`WriteCommand::encode`]), not as the client's words, so what the
//! follower parsed (a SELECTed database, a transaction with its watched revisions) reaches
//! the leader whole. The leader decodes it (never trusting the bytes) and proposes it.

use bytes::Bytes;

use super::args::Context;
use super::error::CommandError;
use super::Command;
use crate::state_machine::WriteCommand;

/// The command name, as a follower sends it.
pub const PROPOSE: &str = "RAFTKV.PROPOSE";

/// `RAFTKV.PROPOSE bytes`
pub(super) fn parse_propose(args: &[Bytes], _: &Context<'_>) -> Result<Command, CommandError> {
    WriteCommand::decode(&args[0])
        .map(Command::Write)
        .map_err(|undecodable| CommandError::Internal {
            reason: format!("a forwarded write does not decode: {undecodable}"),
        })
}
