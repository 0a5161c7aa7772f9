//! The longest gaps between successful writes, for failover mode.
//!
//! A gap runs from one successful write (by any connection) to the next. The first gap starts at
//! the start of the measured window, and the last one ends at its end, so a cluster that never
//! recovers shows one gap as long as the rest of the run.

use std::time::Duration;

/// Gaps kept (the longest ones); five leader kills per run fit.
pub const GAPS_KEPT: usize = 8;

/// One gap between successful writes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gap {
    /// When the gap began (the last success before it), since the run started.
    pub start: Duration,
    pub length: Duration,
}

/// Tracks the longest gaps. Successes must be recorded in time order (the caller holds a lock).
#[derive(Clone, Debug)]
pub struct GapTracker {
    last_ok: Duration,
    /// Longest first, at most [`GAPS_KEPT`].
    longest: Vec<Gap>,
}

impl GapTracker {
    /// A tracker whose first gap starts at `window_start` (since the run started).
    pub fn new(window_start: Duration) -> GapTracker {
        GapTracker {
            last_ok: window_start,
            longest: Vec::with_capacity(GAPS_KEPT + 1),
        }
    }

    /// A write succeeded at `at`. An earlier `at` than the last one (a race between
    /// connections) is a gap of zero.
    pub fn record_success(&mut self, at: Duration) {
        if at <= self.last_ok {
            return;
        }
        self.insert(Gap {
            start: self.last_ok,
            length: at - self.last_ok,
        });
        self.last_ok = at;
    }

    /// Closes the last gap at the end of the window and returns the longest gaps, longest first.
    pub fn finish(mut self, window_end: Duration) -> Vec<Gap> {
        self.record_success(window_end);
        self.longest
    }

    fn insert(&mut self, gap: Gap) {
        let at = self
            .longest
            .partition_point(|kept| kept.length >= gap.length);
        if at < GAPS_KEPT {
            self.longest.insert(at, gap);
            self.longest.truncate(GAPS_KEPT);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(value: u64) -> Duration {
        Duration::from_millis(value)
    }

    #[test]
    fn longest_gaps_are_kept_longest_first_with_their_start() {
        let mut tracker = GapTracker::new(ms(1000));
        for at in [1001, 1002, 1400, 1401, 1402, 2100, 2101] {
            tracker.record_success(ms(at));
        }
        let gaps = tracker.finish(ms(2150));
        assert_eq!(
            gaps[0],
            Gap {
                start: ms(1402),
                length: ms(698)
            }
        );
        assert_eq!(
            gaps[1],
            Gap {
                start: ms(1002),
                length: ms(398)
            }
        );
        assert_eq!(
            gaps[2],
            Gap {
                start: ms(2101),
                length: ms(49)
            }
        );
        assert!(gaps.windows(2).all(|pair| pair[0].length >= pair[1].length));
    }

    #[test]
    fn out_of_order_successes_and_no_successes() {
        let mut tracker = GapTracker::new(ms(0));
        tracker.record_success(ms(10));
        tracker.record_success(ms(5));
        assert_eq!(
            tracker.finish(ms(10)),
            vec![Gap {
                start: ms(0),
                length: ms(10)
            }]
        );
        assert_eq!(
            GapTracker::new(ms(500)).finish(ms(3500)),
            vec![Gap {
                start: ms(500),
                length: ms(3000)
            }]
        );
    }

    #[test]
    fn at_most_gaps_kept() {
        let mut tracker = GapTracker::new(ms(0));
        for at in 1..=100 {
            tracker.record_success(ms(at * at));
        }
        let gaps = tracker.finish(ms(10_500));
        assert_eq!(gaps.len(), GAPS_KEPT);
        assert_eq!(
            gaps[0],
            Gap {
                start: ms(10_000),
                length: ms(500)
            }
        );
        assert_eq!(gaps[1].length, ms(199));
    }
}
