//! The messages Raft peers exchange.
//!
//! Every message carries the sender's current term; the receiver's first rule (§5.1) is to
//! compare it with its own. Pre-vote requests are the exception: they carry the term the
//! sender *would* campaign in, and never change anyone's term (thesis §9.6).

use bytes::Bytes;

use crate::types::{Entry, LogIndex, NodeId, SnapshotMeta, Term};

#[derive(Clone, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Message {
    pub from: NodeId,
    pub to: NodeId,
    pub term: Term,
    pub body: MessageBody,
}

#[derive(Clone, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum MessageBody {
    /// "Would you vote for me in `term`?" Sent before a real election so that a node cut
    /// off from the cluster cannot inflate terms and disrupt a healthy leader.
    PreVote {
        last_log_index: LogIndex,
        last_log_term: Term,
    },
    PreVoteResponse {
        granted: bool,
    },
    /// RequestVote (§5.2). `leader_transfer` marks a campaign started by TimeoutNow, which
    /// voters honour even while they believe a leader is alive.
    Vote {
        last_log_index: LogIndex,
        last_log_term: Term,
        leader_transfer: bool,
    },
    VoteResponse {
        granted: bool,
    },
    /// AppendEntries (§5.3).
    Append {
        prev_log_index: LogIndex,
        prev_log_term: Term,
        entries: Vec<Entry>,
        leader_commit: LogIndex,
    },
    AppendResponse(AppendResponse),
    /// A heartbeat carries no entries. `commit` is capped at what the follower is known to
    /// hold, so the follower can adopt it without checking its log. `read_round` lets the
    /// leader confirm leadership for pending ReadIndex requests.
    Heartbeat {
        commit: LogIndex,
        read_round: u64,
    },
    HeartbeatResponse {
        read_round: u64,
    },
    /// One chunk of a snapshot (§7). Chunks are sent in order; `done` marks the last.
    InstallSnapshot {
        meta: SnapshotMeta,
        offset: u64,
        data: Bytes,
        done: bool,
    },
    InstallSnapshotResponse(InstallSnapshotResponse),
    /// Start an election now, skipping pre-vote: the leader is handing over (thesis §3.10).
    TimeoutNow,
    /// A follower asks the leader for a read index on behalf of its own client.
    ReadIndex {
        request_id: u64,
    },
    /// The leader's answer; `index` is `None` if it could not serve the read. `clock` is
    /// the leader's clock when it confirmed the read point (see [`crate::ReadState`]).
    ReadIndexResponse {
        request_id: u64,
        index: Option<LogIndex>,
        clock: u64,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum AppendResponse {
    /// The follower's log now matches the leader's up to `match_index`.
    Accepted { match_index: LogIndex },
    /// The consistency check failed at `rejected_index` (the request's prevLogIndex).
    /// `hint_index`/`hint_term` name the follower's last entry that might match: the
    /// highest index `<= min(rejected_index, last)` whose term is `<= prev_log_term`. The
    /// leader skips back a whole term per round trip instead of one entry (§5.3, "fast
    /// backtracking").
    Rejected {
        rejected_index: LogIndex,
        hint_index: LogIndex,
        hint_term: Term,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum InstallSnapshotResponse {
    /// Bytes `[0, next_offset)` of the snapshot at `snapshot_index` are held; send the rest.
    Progress {
        snapshot_index: LogIndex,
        next_offset: u64,
    },
    /// The snapshot is installed (or the follower already had its contents); the follower's
    /// log now matches up to `match_index`.
    Done { match_index: LogIndex },
}

impl MessageBody {
    /// Whether the message promises durable state: a vote, or an acknowledgement that the
    /// sender's log holds entries. A driver that syncs asynchronously holds these until a
    /// sync covering their Ready has finished, and sends the rest at once: a rejection, a
    /// heartbeat answer or a read answer describes the node as it is, promises nothing a
    /// crash could take back (its term is always durable: term changes are synced before
    /// the node goes on), and must not wait behind a slow disk, or a leader that hears no
    /// heartbeat answers steps down (check-quorum).
    pub fn waits_for_sync(&self) -> bool {
        match self {
            MessageBody::Vote { .. }
            | MessageBody::VoteResponse { granted: true }
            | MessageBody::AppendResponse(AppendResponse::Accepted { .. })
            | MessageBody::InstallSnapshotResponse(InstallSnapshotResponse::Done { .. }) => true,
            MessageBody::PreVote { .. }
            | MessageBody::PreVoteResponse { .. }
            | MessageBody::VoteResponse { granted: false }
            | MessageBody::Append { .. }
            | MessageBody::AppendResponse(AppendResponse::Rejected { .. })
            | MessageBody::Heartbeat { .. }
            | MessageBody::HeartbeatResponse { .. }
            | MessageBody::InstallSnapshot { .. }
            | MessageBody::InstallSnapshotResponse(InstallSnapshotResponse::Progress { .. })
            | MessageBody::TimeoutNow
            | MessageBody::ReadIndex { .. }
            | MessageBody::ReadIndexResponse { .. } => false,
        }
    }

    /// A short name for traces and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            MessageBody::PreVote { .. } => "PreVote",
            MessageBody::PreVoteResponse { .. } => "PreVoteResp",
            MessageBody::Vote { .. } => "Vote",
            MessageBody::VoteResponse { .. } => "VoteResp",
            MessageBody::Append { .. } => "Append",
            MessageBody::AppendResponse(_) => "AppendResp",
            MessageBody::Heartbeat { .. } => "Heartbeat",
            MessageBody::HeartbeatResponse { .. } => "HeartbeatResp",
            MessageBody::InstallSnapshot { .. } => "InstallSnapshot",
            MessageBody::InstallSnapshotResponse(_) => "InstallSnapshotResp",
            MessageBody::TimeoutNow => "TimeoutNow",
            MessageBody::ReadIndex { .. } => "ReadIndex",
            MessageBody::ReadIndexResponse { .. } => "ReadIndexResp",
        }
    }

    /// Bytes of payload this message carries, for per-peer byte budgets.
    pub fn payload_bytes(&self) -> u64 {
        match self {
            MessageBody::Append { entries, .. } => entries.iter().map(Entry::size_bytes).sum(),
            MessageBody::InstallSnapshot { data, .. } => {
                u64::try_from(data.len()).expect("usize fits in u64")
            }
            _ => 0,
        }
    }
}
