//! The crate's error type, and the single place typed errors become RESP error replies.

use thiserror::Error;

use crate::cmd::CommandError;
use crate::resp::{Frame, ProtocolError};
use crate::state_machine::{DecodeError, SnapshotError};

/// Any error this library reports.
#[derive(Debug, Error)]
pub enum Error {
    /// The client's bytes are not valid RESP; the connection must be closed after replying.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// A well-formed request that is not a valid command.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// A log entry that does not decode as a write command.
    #[error("decoding a log entry: {0}")]
    Decode(#[from] DecodeError),
    /// A snapshot that cannot be restored.
    #[error("restoring a snapshot: {0}")]
    Snapshot(#[from] SnapshotError),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The one function that turns a typed error into the reply a client sees.
///
/// Command errors carry their own Redis code (`ERR`, `WRONGPASS`, `NOAUTH`, ...); protocol
/// errors are `ERR Protocol error: ...` as in Redis; log and snapshot failures are
/// internal and reported as `ERR internal: ...` (the server also fail-stops on those).
pub fn error_reply(error: &Error) -> Frame {
    match error {
        Error::Protocol(protocol) => Frame::Error(format!("ERR {protocol}")),
        Error::Command(command) => Frame::Error(command.to_string()),
        Error::Decode(_) | Error::Snapshot(_) => Frame::Error(format!("ERR internal: {error}")),
    }
}
