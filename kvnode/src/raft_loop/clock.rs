//! The loop's clock: the stamps a leader puts on what it proposes, and the clock it
//! stamps confirmed reads with.
//!
//! Rule (DESIGN.md, "Time, revisions and notifications in the state machine"): a stamp
//! is the wall clock in Unix milliseconds, made monotonic: never below the largest stamp
//! in this node's log. The loop tracks that largest stamp from everything it appends
//! (its own proposals, and as a follower the leader's entries, before they commit) and
//! everything it applies; at start from the state machine's applied time and the
//! unapplied suffix of the log. By Leader Completeness a new leader's log holds every
//! committed entry, so its first stamp is at least every committed stamp: a leader whose
//! clock is behind cannot move the cluster's time back (its stamps stand still until its
//! clock catches up).
//!
//! The read clock follows the same rule, so a read is never judged before a write this
//! leader already stamped: once a write found a key expired, no later read can find it.
//! A clock that steps backwards (NTP) changes nothing here: time stands still instead.

use raft_core::{Entry, EntryPayload, LogIndex, LogStore};
use tracing::warn;

use crate::state_machine::{LogEntry, StateMachine};
use crate::storage::Storage;

/// Bytes of log read at a time when scanning the unapplied suffix at start.
const START_SCAN_BYTES: u64 = 16 << 20;

/// The largest time this node has seen in its log, and the stamps it hands out.
#[derive(Debug, Default)]
pub struct LoopClock {
    /// Invariant: never decreases; at least every stamp appended to or applied from
    /// this node's log, and every stamp or read clock handed out.
    largest_ms: u64,
}

impl LoopClock {
    /// The clock of a node starting with `machine` and the log in `store`.
    pub fn start(machine: &StateMachine, store: &Storage, last_index: LogIndex) -> LoopClock {
        let mut clock = LoopClock {
            largest_ms: machine.time_ms(),
        };
        let mut next = machine.applied_index().next();
        // Bounded: each batch advances `next` by at least one entry, up to the last index.
        while next <= last_index {
            let batch = match store.entries(next, last_index.next(), START_SCAN_BYTES) {
                Ok(batch) if !batch.is_empty() => batch,
                Ok(_) => break,
                Err(failure) => {
                    warn!(error = %failure, "reading the log's stamps at start; going on with the applied time");
                    break;
                }
            };
            next = batch.last().expect("not empty").index.next();
            clock.observe_entries(&batch);
        }
        clock
    }

    /// The largest time seen so far.
    #[cfg(test)]
    pub fn largest_ms(&self) -> u64 {
        self.largest_ms
    }

    /// Takes in the stamps of entries appended to (or read from) the log.
    pub fn observe_entries(&mut self, entries: &[Entry]) {
        for entry in entries {
            if let EntryPayload::Command(data) = &entry.payload {
                if let Some(stamp) = LogEntry::peek_stamp(data) {
                    self.observe(stamp);
                }
            }
        }
    }

    /// Takes in a time from the log or the state machine.
    pub fn observe(&mut self, time_ms: u64) {
        self.largest_ms = self.largest_ms.max(time_ms);
    }

    /// The stamp for a new proposal, given the wall clock: `max(wall, largest)`.
    pub fn stamp(&mut self, wall_ms: u64) -> u64 {
        self.observe(wall_ms);
        self.largest_ms
    }

    /// The clock the node stamps the reads it confirms with (the same rule).
    pub fn read_clock(&mut self, wall_ms: u64) -> u64 {
        self.stamp(wall_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state_machine::{DbIndex, WriteCommand, WriteOp};
    use raft_core::Term;

    fn entry(index: u64, stamp: u64) -> Entry {
        let command = WriteCommand {
            db: DbIndex(0),
            op: WriteOp::FlushDb,
        };
        Entry {
            index: LogIndex(index),
            term: Term(1),
            payload: EntryPayload::Command(LogEntry::encode(stamp, &command)),
        }
    }

    #[test]
    fn stamps_never_go_below_what_the_log_holds_whatever_the_wall_clock_does() {
        let mut clock = LoopClock::default();
        clock.observe_entries(&[entry(1, 5_000), entry(2, 4_000)]);
        assert_eq!(
            clock.stamp(1_000),
            5_000,
            "a clock behind the log stands still"
        );
        assert_eq!(clock.stamp(6_000), 6_000, "then follows the wall clock");
        assert_eq!(clock.stamp(5_500), 6_000, "a step back changes nothing");
        assert_eq!(clock.read_clock(5_900), 6_000, "reads follow the same rule");
        clock.observe(9_000);
        assert_eq!(clock.stamp(7_000), 9_000);
    }

    #[test]
    fn blank_and_legacy_entries_carry_no_stamp() {
        let mut clock = LoopClock::default();
        let legacy = Entry {
            index: LogIndex(1),
            term: Term(1),
            payload: EntryPayload::Command(bytes::Bytes::from_static(b"\x01\x03\x00\x00\x00\x00")),
        };
        let blank = Entry {
            index: LogIndex(2),
            term: Term(1),
            payload: EntryPayload::Blank,
        };
        clock.observe_entries(&[legacy, blank]);
        assert_eq!(clock.largest_ms(), 0);
    }
}
