//! Physical reclamation of expired keys: the leader proposes batched deletions.
//!
//! Expired keys are already gone logically (every command judges expiry by time); this
//! frees their memory. The leader finds expired keys through the key spaces' deadline
//! index and proposes a `Reclaim` entry listing them; applying it deletes each key that is
//! still expired at that entry's time, so a key rewritten in between survives. Bounds,
//! so a million keys expiring at once neither stall the loop nor flood the log:
//! - at most [`KEYS_PER_ENTRY_MAX`] keys and [`KEY_BYTES_PER_ENTRY_MAX`] bytes of keys per
//!   entry (and never more than half the largest entry);
//! - at most one entry in flight (the next is found once the last one is applied, so no
//!   key is listed twice), and at most one every [`ENTRY_INTERVAL`] while there is a
//!   backlog: at most 100,000 keys a second;
//! - with no backlog, a look every [`IDLE_INTERVAL`] (a walk over each database's
//!   bucket deadlines: O(keys / 96), no per-key work).
//!
//! Every node, once it holds at least [`TRIM_AFTER_KEYS`] fewer keys than at its peak and
//! has deleted none for [`TRIM_QUIET`] (a mass deletion is over: reclamation, FLUSHALL, a
//! large DEL), asks the allocator to return its free memory to the system once: glibc
//! keeps freed small allocations in its arenas, and the resident size would stay at its
//! peak.

use std::time::{Duration, Instant};

use raft_core::{LogIndex, Role};
use tracing::debug;

use super::{wall_clock_ms, RaftLoop};
use crate::state_machine::{LogEntry, WriteCommand, WriteOp};

/// Keys one reclamation entry lists, at most.
pub const KEYS_PER_ENTRY_MAX: usize = 1_000;
/// Bytes of keys one reclamation entry lists, at most.
pub const KEY_BYTES_PER_ENTRY_MAX: usize = 256 << 10;
/// Least time between two reclamation entries while there is a backlog.
pub const ENTRY_INTERVAL: Duration = Duration::from_millis(10);
/// Time between two looks for expired keys when the last look found none.
pub const IDLE_INTERVAL: Duration = Duration::from_millis(100);
/// An entry not applied after this long (a stalled commit) no longer blocks the next.
const IN_FLIGHT_TIMEOUT: Duration = Duration::from_secs(5);
/// Keys deleted since the peak that make a finished mass deletion worth a trim.
pub const TRIM_AFTER_KEYS: usize = 10_000;
/// How long without a deletion before a trim (a trim walks the heap: not during a burst).
pub const TRIM_QUIET: Duration = Duration::from_secs(1);

/// The leader's reclamation state.
#[derive(Debug)]
pub struct Reclaimer {
    /// The index of the last entry proposed, until it is applied.
    in_flight: Option<(LogIndex, Instant)>,
    /// When to look next.
    next_at: Instant,
    /// Bytes of keys per entry: [`KEY_BYTES_PER_ENTRY_MAX`], or half the largest entry.
    key_bytes_max: usize,
    /// Keys listed by the entries this node proposed (for logs and tests).
    pub proposed_keys: u64,
    /// The most keys stored since the allocator was last asked to return memory.
    peak_keys: usize,
    /// Keys stored at the last look, and when that count last went down.
    last_keys: usize,
    last_drop: Instant,
}

impl Reclaimer {
    /// A reclaimer for entries of at most `entry_bytes_max`.
    pub fn new(entry_bytes_max: usize) -> Reclaimer {
        Reclaimer {
            in_flight: None,
            next_at: Instant::now(),
            key_bytes_max: KEY_BYTES_PER_ENTRY_MAX.min(entry_bytes_max / 2),
            proposed_keys: 0,
            peak_keys: 0,
            last_keys: 0,
            last_drop: Instant::now(),
        }
    }

    /// Returns free memory to the system once a mass deletion is over (module docs).
    fn trim_after_deletions(&mut self, stored: usize, now: Instant) {
        if stored < self.last_keys {
            self.last_drop = now;
        }
        self.last_keys = stored;
        self.peak_keys = self.peak_keys.max(stored);
        if self.peak_keys - stored >= TRIM_AFTER_KEYS && now - self.last_drop >= TRIM_QUIET {
            self.peak_keys = stored;
            release_free_memory();
        }
    }

    /// When the loop should wake up to look again (only a leader looks).
    pub fn wake_at(&self, role: Role) -> Option<Instant> {
        (role == Role::Leader).then_some(self.next_at)
    }
}

impl RaftLoop {
    /// Proposes the next reclamation entry if this node leads and one is due.
    pub(super) fn reclaim_expired(&mut self) {
        let now = Instant::now();
        let reclaimer = &mut self.io.reclaimer;
        reclaimer.trim_after_deletions(self.io.machine.len(), now);
        if self.node.role() != Role::Leader {
            reclaimer.in_flight = None;
            return;
        }
        if now < reclaimer.next_at {
            return;
        }
        if let Some((index, proposed_at)) = reclaimer.in_flight {
            let applied = self.io.machine.applied_index() >= index;
            if !applied && now.duration_since(proposed_at) < IN_FLIGHT_TIMEOUT {
                // Look again shortly; the loop must not spin while the entry commits.
                reclaimer.next_at = now + ENTRY_INTERVAL;
                return;
            }
            reclaimer.in_flight = None;
        }
        // The entry will be stamped at least this, so every key found is still expired
        // when it applies, unless rewritten meanwhile.
        let stamp = self.io.clock.stamp(wall_clock_ms());
        let bytes_max = reclaimer.key_bytes_max;
        let mut keys = Vec::new();
        let mut bytes = 0;
        for (db, database) in self.io.machine.databases().iter() {
            let room = KEYS_PER_ENTRY_MAX - keys.len();
            if room == 0 || bytes >= bytes_max {
                break;
            }
            for key in database.keys.expired_keys(stamp, room, bytes_max - bytes) {
                bytes += key.len() + 8;
                keys.push((db, key));
            }
        }
        if keys.is_empty() {
            self.io.reclaimer.next_at = now + IDLE_INTERVAL;
            return;
        }
        let count = keys.len();
        let command = WriteCommand {
            db: Default::default(),
            op: WriteOp::Reclaim { keys },
        };
        let reclaimer = &mut self.io.reclaimer;
        match self.node.propose(LogEntry::encode(stamp, &command)) {
            Ok(index) => {
                debug!(
                    index = index.0,
                    keys = count,
                    "proposed the reclamation of expired keys"
                );
                reclaimer.in_flight = Some((index, now));
                reclaimer.proposed_keys += count as u64;
                reclaimer.next_at = now + ENTRY_INTERVAL;
            }
            // Refused (a transfer, a full proposal queue): look again later.
            Err(_) => reclaimer.next_at = now + IDLE_INTERVAL,
        }
    }
}

/// Returns the allocator's free memory to the system (glibc's `malloc_trim`), after a
/// mass deletion: O(heap), so only then. A no-op elsewhere.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: malloc_trim only walks and shrinks glibc's own heaps; it takes no
        // pointers from us and is safe to call from any thread at any time.
        let released = unsafe { malloc_trim(0) };
        debug!(
            released,
            "returned free memory to the system after reclaiming keys"
        );
    }
}
