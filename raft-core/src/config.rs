//! Node configuration: timing in ticks, flow-control limits, and the RNG seed.
//!
//! All limits live here and are checked once by [`Config::validate`].

use crate::error::{Error, Result};
use crate::types::{LogIndex, NodeId};

#[derive(Clone, Debug)]
pub struct Config {
    pub id: NodeId,
    /// Base election timeout; each term's timeout is drawn from
    /// `[election_ticks, 2 * election_ticks)` (§5.2, randomized to avoid split votes).
    pub election_ticks: u32,
    /// A leader sends heartbeats every `heartbeat_ticks`; must be well below
    /// `election_ticks` (§5.6, broadcastTime << electionTimeout).
    pub heartbeat_ticks: u32,
    /// Ask for pre-votes before starting a real election (thesis §9.6).
    pub pre_vote: bool,
    /// A leader steps down if it has not heard from a quorum within an election timeout,
    /// and followers that recently heard from a leader ignore vote requests (thesis §6.2).
    pub check_quorum: bool,
    /// Entries per AppendEntries message.
    pub append_entries_max: u64,
    /// Payload bytes per AppendEntries message (at least one entry is always sent).
    pub append_bytes_max: u64,
    /// AppendEntries messages in flight (unacknowledged) per follower.
    pub inflight_msgs_max: usize,
    /// Bytes proposed but not yet committed on the leader before proposals are refused.
    pub uncommitted_bytes_max: u64,
    /// Largest single proposal.
    pub entry_bytes_max: u64,
    /// Snapshot bytes per InstallSnapshot chunk.
    pub snapshot_chunk_bytes: u64,
    /// Snapshot bytes a follower accepts before refusing the transfer.
    pub snapshot_bytes_max: u64,
    /// ReadIndex requests pending on this node at once.
    pub pending_reads_max: usize,
    /// Committed entries handed out per Ready, in bytes (at least one entry).
    pub apply_bytes_max: u64,
    /// The index the application has already applied (its snapshot), on restart.
    pub applied: LogIndex,
    /// Seed of the election-timeout RNG. Equal seeds and inputs give equal outputs.
    pub seed: u64,
}

impl Config {
    /// Defaults for a node with the given id: 10-tick elections, 1-tick heartbeats.
    pub fn new(id: NodeId) -> Config {
        Config {
            id,
            election_ticks: 10,
            heartbeat_ticks: 1,
            pre_vote: true,
            check_quorum: true,
            append_entries_max: 1024,
            append_bytes_max: 1 << 20,
            inflight_msgs_max: 64,
            uncommitted_bytes_max: 64 << 20,
            entry_bytes_max: 8 << 20,
            snapshot_chunk_bytes: 1 << 20,
            snapshot_bytes_max: 4 << 30,
            pending_reads_max: 65_536,
            apply_bytes_max: 16 << 20,
            applied: LogIndex(0),
            seed: id.0,
        }
    }

    /// # Errors
    /// `InvalidConfig` naming the first field that is out of range.
    pub fn validate(&self) -> Result<()> {
        let fail = |field, reason| Err(Error::InvalidConfig { field, reason });
        if self.id.is_none() {
            return fail("id", "must not be 0");
        }
        if self.heartbeat_ticks == 0 {
            return fail("heartbeat_ticks", "must be at least 1");
        }
        if self.election_ticks <= self.heartbeat_ticks {
            return fail("election_ticks", "must be greater than heartbeat_ticks");
        }
        if self.append_entries_max == 0 || self.append_bytes_max == 0 {
            return fail("append_entries_max", "batch limits must be at least 1");
        }
        if self.inflight_msgs_max == 0 {
            return fail("inflight_msgs_max", "must be at least 1");
        }
        if self.entry_bytes_max > self.uncommitted_bytes_max {
            return fail("entry_bytes_max", "must not exceed uncommitted_bytes_max");
        }
        if self.snapshot_chunk_bytes == 0 {
            return fail("snapshot_chunk_bytes", "must be at least 1");
        }
        if self.pending_reads_max == 0 {
            return fail("pending_reads_max", "must be at least 1");
        }
        if self.apply_bytes_max == 0 {
            return fail("apply_bytes_max", "must be at least 1");
        }
        Ok(())
    }
}
