//! A thread that runs [`Flush`]es one at a time, for a caller that keeps appending while
//! its log syncs (raft-core's pipeline in `SyncMode::Background`).
//!
//! The caller hands over a flush with [`SyncThread::submit`], goes on, and is woken by the
//! `wake` callback once the result waits in [`SyncThread::try_finished`]; or it blocks in
//! [`SyncThread::wait`]. One flush at a time: everything written while one runs goes into
//! the next (group commit), so two queues of one slot each are all it needs.
//!
//! Never: run two flushes at once, or drop a result (a failed flush must reach the caller,
//! which stops).

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::flush::Flush;

/// A flush that finished, successfully or not.
#[derive(Debug)]
pub struct Synced {
    pub outcome: Result<()>,
    /// How long it took on the sync thread.
    pub took: Duration,
}

/// The sync thread ended (it panicked): nothing more will be made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the log-sync thread is gone")]
pub struct SyncThreadGone;

/// The handle of one log-sync thread; the thread ends when the handle is dropped, after
/// the flush it is running, if any.
pub struct SyncThread {
    jobs: SyncSender<Flush>,
    results: Receiver<Synced>,
    /// Invariant: true from `submit` until the result is taken.
    busy: bool,
}

impl SyncThread {
    /// Starts the thread, named `name`. It calls `wake` after each result is ready (from
    /// the sync thread; `wake` must not block for long).
    ///
    /// # Errors
    /// The thread could not be spawned.
    pub fn start(name: &str, wake: impl Fn() + Send + 'static) -> std::io::Result<SyncThread> {
        // One slot each way: one flush runs at a time and its result is taken before the
        // next is submitted, so neither side ever waits for room.
        let (jobs, job_queue) = sync_channel::<Flush>(1);
        let (done, results) = sync_channel(1);
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                for flush in job_queue {
                    let started = Instant::now();
                    let outcome = flush.run();
                    let took = started.elapsed();
                    if done.send(Synced { outcome, took }).is_err() {
                        break;
                    }
                    wake();
                }
            })?;
        Ok(SyncThread {
            jobs,
            results,
            busy: false,
        })
    }

    /// Whether a flush was submitted and its result not yet taken.
    pub fn is_busy(&self) -> bool {
        self.busy
    }

    /// Hands `flush` to the thread.
    ///
    /// # Errors
    /// The thread is gone.
    ///
    /// # Panics
    /// If a flush is still running (one at a time).
    pub fn submit(&mut self, flush: Flush) -> Result<(), SyncThreadGone> {
        assert!(!self.busy, "one flush at a time");
        self.jobs.try_send(flush).map_err(|_| SyncThreadGone)?;
        self.busy = true;
        Ok(())
    }

    /// The running flush's result, if it has finished.
    ///
    /// # Errors
    /// The thread is gone.
    pub fn try_finished(&mut self) -> Result<Option<Synced>, SyncThreadGone> {
        if !self.busy {
            return Ok(None);
        }
        match self.results.try_recv() {
            Ok(synced) => {
                self.busy = false;
                Ok(Some(synced))
            }
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => Err(SyncThreadGone),
        }
    }

    /// Blocks until the running flush has finished and returns its result.
    ///
    /// # Errors
    /// The thread is gone.
    ///
    /// # Panics
    /// If no flush is running.
    pub fn wait(&mut self) -> Result<Synced, SyncThreadGone> {
        assert!(self.busy, "no flush is running");
        let synced = self.results.recv().map_err(|_| SyncThreadGone)?;
        self.busy = false;
        Ok(synced)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SyncPolicy, Wal, WalConfig};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    #[test]
    fn runs_flushes_one_at_a_time_and_wakes_after_each_result() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = WalConfig {
            sync_policy: SyncPolicy::Always,
            segment_bytes: 1 << 20,
            ..WalConfig::default()
        };
        let mut wal = Wal::open(dir.path(), config).expect("open");
        let wakes = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&wakes);
        let mut thread = SyncThread::start("test-sync", move || {
            counter.fetch_add(1, Ordering::SeqCst);
        })
        .expect("spawn");
        assert!(thread.try_finished().expect("alive").is_none());
        for round in 1..=3u64 {
            let record = crate::Record {
                index: raft_core::LogIndex(round),
                term: raft_core::Term(1),
                kind: crate::RecordKind(1),
                payload: b"x",
            };
            wal.append(&record).expect("append");
            thread
                .submit(wal.begin_sync().expect("begin"))
                .expect("alive");
            assert!(thread.is_busy());
            let synced = thread.wait().expect("alive");
            synced.outcome.expect("flushed");
            assert!(!thread.is_busy());
        }
        // The wake-up follows the result; poll to a deadline for the last one.
        let deadline = Instant::now() + Duration::from_secs(10);
        while wakes.load(Ordering::SeqCst) < 3 && Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert_eq!(wakes.load(Ordering::SeqCst), 3);
    }
}
