//! The node's view of the log: the stable store plus the unstable tail not yet persisted.
//!
//! Entries enter at the unstable tail (appended by a leader's proposal or received from
//! a leader), are handed to the driver in a `Ready`, and move to the store when the driver
//! calls `advance`. A snapshot received from a leader waits in `unstable_snapshot` the same
//! way. Reads consult the unstable part first, then the store.
//!
//! Invariants (checked in `check_invariants`):
//! - `applied <= committed <= last_index()`;
//! - the unstable entries are consecutive and start at `unstable_offset`;
//! - a committed entry is never truncated.

use crate::error::StorageError;
use crate::storage::LogStore;
use crate::types::{Entry, LogIndex, Snapshot, Term};

pub(crate) struct RaftLog<S> {
    pub(crate) store: S,
    /// A leader's snapshot not yet persisted; the store below it is stale.
    unstable_snapshot: Option<Snapshot>,
    /// Entries not yet persisted, starting at `unstable_offset`.
    unstable: Vec<Entry>,
    unstable_offset: LogIndex,
    /// Highest index known to be committed. Never decreases.
    pub(crate) committed: LogIndex,
    /// Highest index handed to the application for applying. Never exceeds `committed`.
    pub(crate) applied: LogIndex,
    /// Highest index known to be durable in this log: raised by a synced `advance` or a
    /// driver's `persisted` report, lowered when a truncation replaces entries at or
    /// below it (their replacements are not durable yet).
    durable_last: LogIndex,
}

impl<S: LogStore> RaftLog<S> {
    pub(crate) fn new(store: S, committed: LogIndex, applied: LogIndex) -> RaftLog<S> {
        let unstable_offset = store.last_index().next();
        RaftLog {
            store,
            unstable_snapshot: None,
            unstable: Vec::new(),
            unstable_offset,
            committed,
            applied,
            durable_last: unstable_offset.prev(),
        }
    }

    pub(crate) fn first_index(&self) -> LogIndex {
        match &self.unstable_snapshot {
            Some(snapshot) => snapshot.meta.index.next(),
            None => self.store.first_index(),
        }
    }

    pub(crate) fn last_index(&self) -> LogIndex {
        if let Some(last) = self.unstable.last() {
            return last.index;
        }
        match &self.unstable_snapshot {
            Some(snapshot) => snapshot.meta.index,
            None => self.unstable_offset.prev(),
        }
    }

    /// The last index whose entry is in the store *and* part of this log (stale stored
    /// entries beyond a pending truncation do not count). With a driver that persists
    /// asynchronously, stored is not yet durable: see [`RaftLog::durable_last_index`].
    pub(crate) fn stable_last_index(&self) -> LogIndex {
        if self.unstable_snapshot.is_some() {
            return LogIndex::ZERO;
        }
        self.store.last_index().min(self.unstable_offset.prev())
    }

    /// The last index whose entry is durable and part of this log: what a leader may count
    /// for itself toward a commit quorum.
    pub(crate) fn durable_last_index(&self) -> LogIndex {
        self.durable_last.min(self.stable_last_index())
    }

    /// The driver reports the store durable through `index`, whose entry had `term` when
    /// the flush began. A report about an entry that has since been replaced (a different
    /// term at that index, or an index beyond the log) proves nothing about this log.
    pub(crate) fn mark_durable(&mut self, index: LogIndex, term: Term) {
        if index <= self.durable_last || index > self.stable_last_index() {
            return;
        }
        if self.term(index).ok() == Some(term) {
            self.durable_last = index;
        }
    }

    pub(crate) fn term(&self, index: LogIndex) -> Result<Term, StorageError> {
        if index > self.last_index() {
            return Err(StorageError::Unavailable { index });
        }
        if let Some(snapshot) = &self.unstable_snapshot {
            if index == snapshot.meta.index {
                return Ok(snapshot.meta.term);
            }
            if index < snapshot.meta.index {
                return Err(StorageError::Compacted { index });
            }
        }
        if index >= self.unstable_offset {
            return Ok(self.unstable[self.unstable_position(index)].term);
        }
        self.store.term(index)
    }

    /// Term at `index`, treating "not in the log" as term 0 (which matches nothing real).
    pub(crate) fn term_or_zero(&self, index: LogIndex) -> Term {
        match self.term(index) {
            Ok(term) => term,
            Err(StorageError::Compacted { .. } | StorageError::Unavailable { .. }) => Term::ZERO,
            Err(error @ StorageError::Backend(_)) => fatal_storage_error(error),
        }
    }

    pub(crate) fn last_term(&self) -> Term {
        self.term_or_zero(self.last_index())
    }

    pub(crate) fn match_term(&self, index: LogIndex, term: Term) -> bool {
        match self.term(index) {
            Ok(found) => found == term,
            Err(StorageError::Compacted { .. } | StorageError::Unavailable { .. }) => false,
            Err(error @ StorageError::Backend(_)) => fatal_storage_error(error),
        }
    }

    /// §5.4.1: is a log ending at (`last_index`, `last_term`) at least as up to date as ours?
    pub(crate) fn is_up_to_date(&self, last_index: LogIndex, last_term: Term) -> bool {
        let our_term = self.last_term();
        last_term > our_term || (last_term == our_term && last_index >= self.last_index())
    }

    /// The largest index `<= index` whose term is `<= term`, with that term. Used from both
    /// sides of fast backtracking: it skips a whole run of a newer term in one step.
    pub(crate) fn find_conflict_by_term(&self, index: LogIndex, term: Term) -> (LogIndex, Term) {
        let mut probe = index.min(self.last_index());
        loop {
            match self.term(probe) {
                Ok(found) if found > term && probe > LogIndex::ZERO => probe = probe.prev(),
                Ok(found) => return (probe, found),
                Err(StorageError::Compacted { .. } | StorageError::Unavailable { .. }) => {
                    return (probe, Term::ZERO)
                }
                Err(error @ StorageError::Backend(_)) => fatal_storage_error(error),
            }
        }
    }

    /// Follower side of AppendEntries (§5.3): if our log holds (`prev_index`, `prev_term`),
    /// append `entries` after it, truncating only from the first real conflict. Returns the
    /// index of the last entry the message covered, and the first index actually written
    /// (`None` if every entry was already there).
    pub(crate) fn maybe_append(
        &mut self,
        prev_index: LogIndex,
        prev_term: Term,
        entries: &[Entry],
    ) -> Option<(LogIndex, Option<LogIndex>)> {
        if !self.match_term(prev_index, prev_term) {
            return None;
        }
        let last_new = prev_index.plus(entries.len() as u64);
        let conflict = entries
            .iter()
            .position(|entry| !self.match_term(entry.index, entry.term));
        if let Some(position) = conflict {
            let first_conflict = entries[position].index;
            assert!(
                first_conflict > self.committed,
                "entry {first_conflict:?} conflicts with the committed prefix (commit {:?})",
                self.committed
            );
            self.append_unstable(&entries[position..]);
            return Some((last_new, Some(first_conflict)));
        }
        Some((last_new, None))
    }

    /// Appends after (or over a suffix of) the log. Entries must be consecutive.
    pub(crate) fn append_unstable(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        let after = first.index;
        assert!(
            after <= self.last_index().next(),
            "append at {after:?} leaves a gap after {:?}",
            self.last_index()
        );
        assert!(
            after > self.committed,
            "append at {after:?} would overwrite committed entries (commit {:?})",
            self.committed
        );
        // Whatever stood at `after` and beyond is replaced; its replacement is not durable.
        self.durable_last = self.durable_last.min(after.prev());
        if after == self.unstable_offset.plus(self.unstable.len() as u64) {
            self.unstable.extend_from_slice(entries);
        } else if after <= self.unstable_offset {
            // The new entries replace everything unstable and part of the store; the store's
            // stale suffix is overwritten when the driver persists them.
            self.unstable_offset = after;
            self.unstable.clear();
            self.unstable.extend_from_slice(entries);
        } else {
            let keep = self.unstable_position(after);
            self.unstable.truncate(keep);
            self.unstable.extend_from_slice(entries);
        }
    }

    /// Entries in `[low, high)`, at most `max_entries` and about `max_bytes` (at least one).
    pub(crate) fn entries(
        &self,
        low: LogIndex,
        high: LogIndex,
        max_entries: u64,
        max_bytes: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        if low < self.first_index() {
            return Err(StorageError::Compacted { index: low });
        }
        let high = high
            .min(self.last_index().next())
            .min(LogIndex(low.0.saturating_add(max_entries)));
        if low >= high {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let mut bytes = 0u64;
        if low < self.unstable_offset {
            let stored_high = high.min(self.unstable_offset);
            out = self.store.entries(low, stored_high, max_bytes)?;
            bytes = out.iter().map(Entry::size_bytes).sum();
            if out.len() as u64 != low.distance_to(stored_high) {
                return Ok(out);
            }
        }
        let unstable_low = low.max(self.unstable_offset);
        for index in unstable_low.0..high.0 {
            let entry = &self.unstable[self.unstable_position(LogIndex(index))];
            bytes += entry.size_bytes();
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(entry.clone());
        }
        Ok(out)
    }

    pub(crate) fn commit_to(&mut self, index: LogIndex) -> bool {
        if index <= self.committed {
            return false;
        }
        assert!(
            index <= self.last_index(),
            "commit {index:?} beyond last index {:?}",
            self.last_index()
        );
        self.committed = index;
        true
    }

    /// Replaces the log with a leader's snapshot (the caller checked it is newer and does
    /// not match our log).
    pub(crate) fn restore(&mut self, snapshot: Snapshot) {
        let index = snapshot.meta.index;
        assert!(
            index > self.committed,
            "restoring snapshot {index:?} at or below commit {:?}",
            self.committed
        );
        self.committed = index;
        self.applied = index;
        self.unstable.clear();
        self.unstable_offset = index.next();
        self.unstable_snapshot = Some(snapshot);
        self.durable_last = LogIndex::ZERO;
    }

    pub(crate) fn unstable_entries(&self) -> &[Entry] {
        &self.unstable
    }

    pub(crate) fn unstable_snapshot(&self) -> Option<&Snapshot> {
        self.unstable_snapshot.as_ref()
    }

    /// Called from `advance`: what was handed out is now in the store, and durable if
    /// `synced` (then so is everything stored before it).
    pub(crate) fn mark_persisted(
        &mut self,
        snapshot: bool,
        last_entry: Option<LogIndex>,
        synced: bool,
    ) {
        if snapshot {
            let snapshot = self
                .unstable_snapshot
                .take()
                .expect("a snapshot was pending");
            assert!(
                self.store.first_index() > snapshot.meta.index,
                "store did not apply snapshot at {:?} (first index {:?})",
                snapshot.meta.index,
                self.store.first_index()
            );
        }
        if let Some(last) = last_entry {
            assert_eq!(
                self.unstable.last().map(|entry| entry.index),
                Some(last),
                "unstable entries changed between ready and advance"
            );
            self.unstable.clear();
            self.unstable_offset = last.next();
            assert_eq!(
                self.store.last_index(),
                last,
                "store did not persist the entries of the last Ready"
            );
        }
        if synced {
            self.durable_last = self.stable_last_index();
        }
    }

    /// Committed entries not yet handed to the application, up to about `max_bytes`.
    pub(crate) fn next_committed_entries(&self, max_bytes: u64) -> Vec<Entry> {
        if self.applied >= self.committed {
            return Vec::new();
        }
        match self.entries(
            self.applied.next(),
            self.committed.next(),
            u64::MAX,
            max_bytes,
        ) {
            Ok(entries) => entries,
            Err(error) => fatal_storage_error(error),
        }
    }

    pub(crate) fn has_next_committed_entries(&self) -> bool {
        self.applied < self.committed
    }

    fn unstable_position(&self, index: LogIndex) -> usize {
        usize::try_from(index.0 - self.unstable_offset.0).expect("unstable log fits in usize")
    }

    pub(crate) fn check_invariants(&self) {
        assert!(
            self.applied <= self.committed,
            "applied {:?} > committed {:?}",
            self.applied,
            self.committed
        );
        assert!(
            self.committed <= self.last_index(),
            "committed {:?} > last {:?}",
            self.committed,
            self.last_index()
        );
        assert!(
            self.durable_last_index() <= self.last_index(),
            "durable {:?} beyond last {:?}",
            self.durable_last_index(),
            self.last_index()
        );
        if let Some(first) = self.unstable.first() {
            assert_eq!(
                first.index, self.unstable_offset,
                "unstable offset out of step"
            );
        }
        debug_assert!(
            self.unstable
                .windows(2)
                .all(|pair| pair[1].index == pair[0].index.next() && pair[1].term >= pair[0].term),
            "unstable entries must be consecutive with non-decreasing terms"
        );
    }
}

/// A storage backend failure leaves the node unable to keep its promises: stop (fail-stop).
pub(crate) fn fatal_storage_error(error: StorageError) -> ! {
    panic!("log store failed; stopping the node rather than continuing without it: {error}")
}
