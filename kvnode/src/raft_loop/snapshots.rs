//! Snapshots of the state machine, written on a thread of their own so the loop keeps
//! heartbeating and committing while a large state is encoded and synced, then installed
//! (compacting the log) by the loop.
//!
//! When: once `snapshot_entries` entries were applied since the last snapshot *and* they add
//! up to at least that snapshot's size. Rewriting the whole state more often than the log
//! grows by as much would write more snapshot than log (the rule of Redis' AOF rewrite),
//! while replay after a restart stays under one snapshot's worth. One at a time.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::time::Instant;

use raft_core::{LogIndex, Node, NodeId, SnapshotMeta};
use tracing::{error, info};

use crate::metrics::Metrics;
use crate::state_machine::StateMachine;
use crate::storage::{SnapshotWriter, StagedSnapshot, Storage};

/// A copy of the state machine to write as a snapshot at `meta.index`.
struct SnapshotJob {
    meta: SnapshotMeta,
    machine: StateMachine,
}

type StagedResult = Result<(StagedSnapshot, u64), raft_wal::Error>;

/// How much lower than the rest of the process the snapshot thread runs (nice levels).
/// Encoding and checksumming a large state takes seconds of CPU, and on a machine it
/// saturates the raft loop must still run promptly: a loop descheduled past an election
/// timeout looks like a dead node to the others.
const SNAPSHOT_NICENESS: libc::c_int = 10;

/// Lowers the calling thread's scheduling priority (Linux keeps a nice value per thread).
/// Raising niceness needs no privilege; a refusal costs only the preference.
fn lower_this_threads_priority() {
    // SAFETY: gettid and setpriority take plain integers and touch only this thread.
    let refused = unsafe {
        let thread = libc::id_t::try_from(libc::gettid()).unwrap_or_default();
        libc::setpriority(libc::PRIO_PROCESS, thread, SNAPSHOT_NICENESS) != 0
    };
    if refused {
        tracing::warn!("could not lower the snapshot thread's priority; it competes with the raft loop for CPU");
    }
}

pub struct Snapshots {
    node_id: NodeId,
    every_entries: u64,
    jobs: SyncSender<SnapshotJob>,
    results: Receiver<StagedResult>,
    /// A job was handed to the thread and its result not yet taken.
    busy: bool,
    /// The applied index of the last snapshot taken or started (or restored).
    last_index: LogIndex,
    /// Size of that snapshot (0 if unknown, as after a restart).
    last_bytes: u64,
    /// Bytes of the entries applied since that snapshot started.
    applied_bytes_since: u64,
}

impl Snapshots {
    /// Starts the snapshot thread.
    ///
    /// # Panics
    /// If the thread cannot be spawned (at start-up).
    pub fn start(
        node_id: NodeId,
        writer: SnapshotWriter,
        last_index: LogIndex,
        every_entries: u64,
    ) -> Snapshots {
        // One slot each way: one snapshot at a time.
        let (jobs, job_queue) = sync_channel::<SnapshotJob>(1);
        let (done, results) = sync_channel(1);
        std::thread::Builder::new()
            .name("snapshot-writer".into())
            .spawn(move || {
                lower_this_threads_priority();
                // Ends when the loop drops its sender; a job cut short by the process
                // exiting leaves a temporary file that the next open removes.
                for job in job_queue {
                    let staged = writer.stage(job.meta, &job.machine);
                    // Drops the buckets shared with the live state before the loop hears
                    // of the result, so its next writes find them unshared again.
                    drop(job.machine);
                    if done.send(staged).is_err() {
                        break;
                    }
                }
            })
            .expect("spawning the snapshot thread");
        Snapshots {
            node_id,
            every_entries,
            jobs,
            results,
            busy: false,
            last_index,
            last_bytes: 0,
            applied_bytes_since: 0,
        }
    }

    /// An entry of `bytes` was applied.
    pub fn applied(&mut self, bytes: u64) {
        self.applied_bytes_since += bytes;
    }

    /// The state machine was replaced by a leader's snapshot of `bytes` at `index`.
    pub fn restored(&mut self, index: LogIndex, bytes: u64) {
        self.last_index = index;
        self.last_bytes = bytes;
        self.applied_bytes_since = 0;
    }

    /// Starts a snapshot if one is due. The loop only clones the state machine, which
    /// copies bucket handles, not keys or values (see the key space's layout); the thread
    /// streams it to the file.
    pub fn maybe_start(&mut self, node: &Node<Storage>, machine: &StateMachine) {
        let applied = machine.applied_index();
        if self.busy
            || applied.0 < self.last_index.0 + self.every_entries
            || self.applied_bytes_since < self.last_bytes
        {
            return;
        }
        let meta = node.snapshot_meta_at_applied();
        assert_eq!(
            meta.index, applied,
            "raft and the state machine agree on the applied index"
        );
        let started = Instant::now();
        let job = SnapshotJob {
            meta,
            machine: machine.clone(),
        };
        info!(
            node = self.node_id.0,
            index = applied.0,
            copy_micros = started.elapsed().as_micros() as u64,
            "snapshot started"
        );
        if self.jobs.try_send(job).is_err() {
            error!(
                node = self.node_id.0,
                "the snapshot thread is gone; stopping"
            );
            std::process::abort();
        }
        self.busy = true;
        self.last_index = applied;
        self.applied_bytes_since = 0;
    }

    /// Installs a snapshot the thread has finished, compacting the log. Fail-stop on a
    /// failure: a node that cannot write its snapshots cannot bound its log.
    pub fn install_finished(&mut self, store: &mut Storage, metrics: &Metrics) {
        let (staged, bytes) = match self.results.try_recv() {
            Err(TryRecvError::Empty) => return,
            Ok(Ok(done)) => done,
            Ok(Err(failure)) => {
                error!(node = self.node_id.0, error = %failure, "writing a snapshot failed; stopping");
                std::process::abort();
            }
            Err(TryRecvError::Disconnected) => {
                error!(node = self.node_id.0, "the snapshot thread died; stopping");
                std::process::abort();
            }
        };
        self.busy = false;
        self.last_bytes = bytes;
        let index = staged.index();
        let started = Instant::now();
        match store.install_snapshot(staged) {
            Ok(true) => {
                metrics.snapshots_total.fetch_add(1, Ordering::Relaxed);
                metrics.snapshot_bytes.store(bytes, Ordering::Relaxed);
                info!(
                    node = self.node_id.0,
                    index = index.0,
                    bytes,
                    install_micros = started.elapsed().as_micros() as u64,
                    "snapshot taken; log compacted"
                );
            }
            // A newer snapshot from the leader was installed while this one was written.
            Ok(false) => {}
            Err(failure) => {
                error!(node = self.node_id.0, error = %failure, "installing a snapshot failed; stopping");
                std::process::abort();
            }
        }
    }
}
