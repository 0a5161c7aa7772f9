//! Jittered, capped exponential backoff for reconnecting to a peer.
//!
//! Delay `n` (from 0) is drawn uniformly from `[d/2, d]` where `d = min(min * 2^n, max)`
//! ("equal jitter"): never shorter than half the nominal delay, so a dead peer is not
//! hammered, and spread so that nodes restarting together do not reconnect in lockstep.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
    /// xorshift64 state; never 0.
    rng: u64,
}

/// Doubling beyond 2^16 times the minimum can only matter if max/min exceeds 65536.
const BACKOFF_DOUBLINGS_MAX: u32 = 16;

impl Backoff {
    pub fn new(min: Duration, max: Duration, seed: u64) -> Backoff {
        assert!(min <= max, "backoff min {min:?} above max {max:?}");
        Backoff {
            min,
            max,
            attempt: 0,
            rng: seed | 1,
        }
    }

    /// A seed from the process's random hasher keys, so peers do not share a sequence.
    pub fn random_seed() -> u64 {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(0x9e37_79b9_7f4a_7c15);
        hasher.finish()
    }

    /// The delay before the next attempt; each call doubles the nominal delay.
    pub fn next_delay(&mut self) -> Duration {
        let doublings = self.attempt.min(BACKOFF_DOUBLINGS_MAX);
        let nominal = self.min.saturating_mul(1 << doublings).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let nominal_nanos = u64::try_from(nominal.as_nanos()).unwrap_or(u64::MAX);
        let half = nominal_nanos / 2;
        let jitter = self.next_random() % (nominal_nanos - half + 1);
        Duration::from_nanos(half + jitter)
    }

    /// Back to the minimum, after a connection proved healthy.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    fn next_random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_within_jitter_bounds_and_cap() {
        let min = Duration::from_millis(10);
        let max = Duration::from_millis(300);
        let mut backoff = Backoff::new(min, max, 42);
        let nominal_ms = [10u64, 20, 40, 80, 160, 300, 300, 300];
        for (attempt, nominal) in nominal_ms.iter().enumerate() {
            let delay = backoff.next_delay();
            let nominal = Duration::from_millis(*nominal);
            assert!(
                delay >= nominal / 2,
                "attempt {attempt}: {delay:?} < half of {nominal:?}"
            );
            assert!(
                delay <= nominal,
                "attempt {attempt}: {delay:?} > {nominal:?}"
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() <= min);
    }

    #[test]
    fn jitter_spreads_delays() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(1), 7);
        let delays: std::collections::BTreeSet<Duration> =
            (0..20).map(|_| backoff.next_delay()).collect();
        assert!(delays.len() > 15, "only {} distinct delays", delays.len());
    }

    #[test]
    fn many_attempts_do_not_overflow() {
        let mut backoff = Backoff::new(Duration::from_millis(1), Duration::from_secs(3600), 1);
        for _ in 0..1000 {
            assert!(backoff.next_delay() <= Duration::from_secs(3600));
        }
    }
}
