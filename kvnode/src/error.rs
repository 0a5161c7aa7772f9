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
    /// The cluster could not serve the request (see [`ClusterError`]).
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

/// Why the cluster did not answer a request with its result. The reply's code tells the
/// client whether the request is known not to have been applied (`TRYAGAIN`: safe to
/// retry) or may have been (`UNKNOWN`: check before retrying).
#[derive(Debug, Error)]
pub enum ClusterError {
    #[error("no leader is known right now")]
    NoLeader,
    #[error("the node is overloaded ({0})")]
    Overloaded(&'static str),
    #[error("the leader refused the request: {0}")]
    Refused(#[from] raft_core::Error),
    #[error("another leader overwrote the log slot before it committed")]
    Overwritten,
    #[error("leadership could not be confirmed for the read")]
    ReadNotConfirmed,
    #[error("the leader at {leader} could not be reached: {reason}")]
    LeaderUnreachable { leader: String, reason: String },
    #[error("forwarding to the leader at {leader} failed: {reason}")]
    ForwardFailed { leader: String, reason: String },
    #[error("leadership changed after the request was proposed")]
    LeaderLost,
    /// Shutdown came while the request was in the log's hands: it may have been applied.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// Refused because the node is stopping, before anything of the request was proposed.
    #[error("the node is stopping")]
    Stopping,
    #[error("node {id} is not in sync with the leader (not heard from within an election timeout, or more than 1000 entries behind); wait until it has caught up")]
    LearnerNotInSync { id: raft_core::NodeId },
    #[error("removing node {id} would leave a configuration without a quorum of voters in sync with the leader")]
    RemovalLeavesNoQuorum { id: raft_core::NodeId },
    #[error("leadership was not handed to node {target}: {reason}")]
    TransferFailed {
        target: raft_core::NodeId,
        reason: &'static str,
    },
}

impl ClusterError {
    /// Whether the request is known not to have been applied.
    pub fn not_applied(&self) -> bool {
        !matches!(
            self,
            ClusterError::LeaderLost
                | ClusterError::ShuttingDown
                | ClusterError::ForwardFailed { .. }
        )
    }
}

/// Refusals that retrying later can cure (as opposed to an invalid request).
fn refusal_is_retryable(refusal: &raft_core::Error) -> bool {
    use raft_core::Error as E;
    matches!(
        refusal,
        E::NotLeader { .. }
            | E::TransferInProgress { .. }
            | E::ProposalQueueFull { .. }
            | E::ReadQueueFull { .. }
            | E::ConfChangeInProgress { .. }
    )
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
        Error::Cluster(ClusterError::Refused(refusal)) if !refusal_is_retryable(refusal) => {
            Frame::Error(format!("ERR {refusal}"))
        }
        Error::Cluster(cluster) if cluster.not_applied() => {
            Frame::Error(format!("TRYAGAIN {cluster}; the request was not applied"))
        }
        Error::Cluster(cluster) => Frame::Error(format!(
            "UNKNOWN {cluster}; the request may or may not have been applied"
        )),
    }
}
