//! Errors returned to the application. Broken invariants panic instead (see STYLE.md §3).

use crate::types::{LogIndex, NodeId};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a request to the node was refused. Every variant means "nothing was appended":
/// the request is safe to retry elsewhere or later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("not the leader (leader hint: {leader_hint:?})")]
    NotLeader { leader_hint: Option<NodeId> },
    #[error("leadership is being transferred to node {target}")]
    TransferInProgress { target: NodeId },
    #[error("too many uncommitted bytes ({uncommitted_bytes} of {limit_bytes}); retry later")]
    ProposalQueueFull {
        uncommitted_bytes: u64,
        limit_bytes: u64,
    },
    #[error("proposal of {size_bytes} bytes exceeds the entry limit of {limit_bytes}")]
    ProposalTooLarge { size_bytes: u64, limit_bytes: u64 },
    #[error("a membership change is already in progress (entry {pending_index})")]
    ConfChangeInProgress { pending_index: LogIndex },
    #[error("invalid membership change: {reason}")]
    InvalidConfChange { reason: String },
    #[error("too many pending reads ({limit}); retry later")]
    ReadQueueFull { limit: usize },
    #[error("node {target} cannot take over leadership: {reason}")]
    InvalidTransfer {
        target: NodeId,
        reason: &'static str,
    },
    #[error("invalid config: {field}: {reason}")]
    InvalidConfig {
        field: &'static str,
        reason: &'static str,
    },
}

/// What a log store can answer when asked for an index it does not have.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The index lies in the prefix replaced by a snapshot.
    #[error("log index {index} is compacted")]
    Compacted { index: LogIndex },
    /// The index lies beyond the last stored entry.
    #[error("log index {index} is not available")]
    Unavailable { index: LogIndex },
    /// The backend failed (I/O error, corruption). The node treats this as fatal.
    #[error("storage backend failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}
