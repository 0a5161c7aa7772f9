//! The bounded window of AppendEntries messages in flight to one follower.
//!
//! Each entry is the last log index a message carried. Acknowledging index `i` frees every
//! message up to `i`. The window bounds how far a leader runs ahead of a follower, and so the
//! memory and bandwidth a slow follower can cost (compare etcd-io/raft tracker/inflights.go).

use std::collections::VecDeque;

use crate::types::LogIndex;

#[derive(Debug, Clone)]
pub(crate) struct Inflights {
    /// Last indexes of messages in flight, ascending. Length never exceeds `capacity`.
    in_flight: VecDeque<LogIndex>,
    capacity: usize,
}

impl Inflights {
    pub(crate) fn new(capacity: usize) -> Inflights {
        assert!(
            capacity > 0,
            "an in-flight window needs room for one message"
        );
        Inflights {
            in_flight: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    pub(crate) fn is_full(&self) -> bool {
        self.in_flight.len() >= self.capacity
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.in_flight.is_empty()
    }

    pub(crate) fn add(&mut self, last_index: LogIndex) {
        assert!(!self.is_full(), "in-flight window overflow");
        if let Some(&back) = self.in_flight.back() {
            assert!(back < last_index, "in-flight indexes must ascend");
        }
        self.in_flight.push_back(last_index);
    }

    /// Frees every message whose last index is `<= index`.
    pub(crate) fn free_up_to(&mut self, index: LogIndex) {
        while self.in_flight.front().is_some_and(|&front| front <= index) {
            self.in_flight.pop_front();
        }
    }

    pub(crate) fn clear(&mut self) {
        self.in_flight.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledgement_frees_every_message_up_to_it() {
        let mut window = Inflights::new(3);
        for i in [2, 4, 6] {
            window.add(LogIndex(i));
        }
        assert!(window.is_full());
        window.free_up_to(LogIndex(4));
        assert!(!window.is_full());
        window.free_up_to(LogIndex(10));
        assert!(window.is_empty());
    }
}
