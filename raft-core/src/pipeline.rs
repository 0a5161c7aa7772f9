//! The one way to carry out a node's [`Ready`]s: the rules of [`crate::ready`]'s
//! "Asynchronous sync" as a component every driver runs (kvnode's raft loop, the
//! simulator, the benches' clusters), so the simulator checks the rules that ship.
//!
//! The driver owns the I/O and says how through [`ReadyIo`]; the [`Pipeline`] owns the
//! order: which of a Ready's messages leave at once and which wait for a sync, when the
//! state machine applies, when a Ready must be synced before the node goes on, when a sync
//! begins, and what a finished sync releases. It never blocks by itself and does no I/O.
//!
//! Rules (the argument for each is in [`crate::ready`]):
//! - A Ready's `messages` leave first, before anything of it is written.
//! - Committed entries are applied before the Ready's own writes (they are durable on a
//!   quorum already), except after a snapshot, which is restored first.
//! - A Ready with a snapshot or a new term or vote runs in the synchronous order, after any
//!   running sync has finished: write, sync, release everything held, restore, send its
//!   `persisted_messages`, apply, `advance`. So does every Ready under [`SyncMode::Inline`].
//! - Otherwise (under [`SyncMode::Background`]): apply, write, let go the
//!   `persisted_messages` that promise nothing durable, hold the rest behind every earlier
//!   held message until a sync begun after this write has finished, `advance_unsynced`.
//! - One sync runs at a time; it begins once the node has no Ready left, and covers every
//!   write made before it began. When it finishes the node hears first
//!   ([`Node::persisted`]: a leader counts its own log only as far as it is durable),
//!   then the messages it covers leave, in Ready order.
//!
//! Never: send a message that promises durable state before a sync that covers it has
//! finished, or let a node act on a term or vote a crash could take back.

mod held;

use crate::message::Message;
use crate::node::Node;
use crate::ready::{ReadState, Ready};
use crate::storage::LogStoreMut;
use crate::types::{Entry, LogIndex, Snapshot, Term};

use held::HeldMessages;

/// Where syncs run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SyncMode {
    /// Every Ready is written and synced before the node goes on (the plain Ready order).
    Inline,
    /// Syncs run off the driver's thread while the node goes on stepping; a Ready with a
    /// snapshot or a new term or vote is still synced inline.
    Background,
}

/// How a background sync began.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SyncStart {
    /// It runs; the driver calls [`Pipeline::synced`] when it has finished.
    Running,
    /// It had nothing to wait for (a store whose writes are durable at once) and is done.
    Done,
}

/// The driver's I/O, called by [`Pipeline`] in the order its rules give. A driver that can
/// stop part-way (the simulator crashing a node) returns `Err(Stop)`: the pipeline returns
/// it at once and the node must be discarded (it is between `ready` and `advance`).
pub trait ReadyIo<S: LogStoreMut> {
    /// Why the driver stopped part-way; a driver that never does uses
    /// [`std::convert::Infallible`].
    type Stop;

    /// Sees each Ready, and the node that made it, before anything of the Ready is carried
    /// out (leadership changes, the addresses in membership entries about to be written).
    fn observe(&mut self, _node: &Node<S>, _ready: &Ready) {}

    /// Sends `messages` now.
    fn send(&mut self, messages: Vec<Message>);

    /// Applies `entries` in order, exactly once, then releases `read_states`.
    ///
    /// # Errors
    /// The driver stopped.
    fn apply(&mut self, entries: &[Entry], read_states: &[ReadState]) -> Result<(), Self::Stop>;

    /// Restores the application from a snapshot the node installed (already durable).
    ///
    /// # Errors
    /// The driver stopped.
    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), Self::Stop>;

    /// Writes what `ready` persists (snapshot, entries, hard state), without syncing;
    /// usually [`LogStoreMut::write_ready`].
    ///
    /// # Errors
    /// The driver stopped.
    fn write(&mut self, store: &mut S, ready: &Ready) -> Result<(), Self::Stop>;

    /// Makes everything written so far durable, on this thread.
    ///
    /// # Errors
    /// The driver stopped.
    fn sync(&mut self, store: &mut S) -> Result<(), Self::Stop>;

    /// Begins a sync of everything written so far on another thread ([`SyncMode::Background`]
    /// only). At most one runs at a time.
    ///
    /// # Errors
    /// The driver stopped.
    fn begin_sync(&mut self, store: &mut S) -> Result<SyncStart, Self::Stop>;

    /// Blocks until the running background sync has finished.
    ///
    /// # Errors
    /// The driver stopped.
    fn wait_for_sync(&mut self) -> Result<(), Self::Stop>;

    /// Called after each Ready is carried out (the node may be asked for a snapshot).
    /// Returns true if it wrote to the store outside a Ready (a local compaction) and that
    /// write needs a sync like any other.
    ///
    /// # Errors
    /// The driver stopped.
    fn after_ready(&mut self, _node: &mut Node<S>) -> Result<bool, Self::Stop> {
        Ok(false)
    }
}

/// A sync handed to the driver and not yet finished.
#[derive(Debug)]
struct RunningSync {
    /// The write count it covers (see [`HeldMessages::sync_covers`]).
    covers: u64,
    /// The store's last entry when it began, for [`Node::persisted`].
    last: (LogIndex, Term),
}

/// Carries out a node's Readys by the rules above; one per node, living as long as the
/// node (a crashed node's pipeline goes with it).
#[derive(Debug)]
pub struct Pipeline {
    mode: SyncMode,
    held: HeldMessages,
    /// Invariant: `Some` only under [`SyncMode::Background`].
    running: Option<RunningSync>,
}

impl Pipeline {
    pub fn new(mode: SyncMode) -> Pipeline {
        Pipeline {
            mode,
            held: HeldMessages::default(),
            running: None,
        }
    }

    pub fn mode(&self) -> SyncMode {
        self.mode
    }

    /// Whether a background sync is running.
    pub fn is_syncing(&self) -> bool {
        self.running.is_some()
    }

    /// Carries out every Ready the node has, then begins a sync of what they wrote (unless
    /// one is running already: what was written meanwhile goes into the next).
    ///
    /// # Errors
    /// The driver stopped part-way; discard the node.
    pub fn run<S: LogStoreMut, D: ReadyIo<S>>(
        &mut self,
        node: &mut Node<S>,
        io: &mut D,
    ) -> Result<(), D::Stop> {
        // Bound: each round either begins a sync (then returns) or finishes one at once,
        // which leaves nothing to sync unless the node produced new writes.
        loop {
            while node.has_ready() {
                let ready = node.ready();
                self.run_ready(node, io, ready)?;
                if io.after_ready(node)? {
                    match self.mode {
                        SyncMode::Inline => io.sync(node.store_mut())?,
                        SyncMode::Background => {
                            self.held.written(true, Vec::new());
                        }
                    }
                }
            }
            if !self.begin_sync(node, io)? {
                return Ok(());
            }
        }
    }

    /// The running background sync finished successfully: the node learns how far its log
    /// is durable, the messages the sync covers leave, and the node's new output is carried
    /// out. (A failed sync is the driver's to handle: it must stop.)
    ///
    /// # Errors
    /// As [`Pipeline::run`].
    ///
    /// # Panics
    /// If no sync is running.
    pub fn synced<S: LogStoreMut, D: ReadyIo<S>>(
        &mut self,
        node: &mut Node<S>,
        io: &mut D,
    ) -> Result<(), D::Stop> {
        let running = self.running.take().expect("a sync was running");
        node.persisted(running.last.0, running.last.1);
        io.send(self.held.synced(running.covers));
        self.run(node, io)
    }

    /// Makes everything written durable and lets every held message go: before the driver
    /// stops for good.
    ///
    /// # Errors
    /// As [`Pipeline::run`].
    pub fn finish<S: LogStoreMut, D: ReadyIo<S>>(
        &mut self,
        node: &mut Node<S>,
        io: &mut D,
    ) -> Result<(), D::Stop> {
        if let Some(running) = self.running.take() {
            io.wait_for_sync()?;
            node.persisted(running.last.0, running.last.1);
            io.send(self.held.synced(running.covers));
        }
        if self.held.needs_sync() {
            io.sync(node.store_mut())?;
            io.send(self.held.synced_everything());
        }
        Ok(())
    }

    fn run_ready<S: LogStoreMut, D: ReadyIo<S>>(
        &mut self,
        node: &mut Node<S>,
        io: &mut D,
        mut ready: Ready,
    ) -> Result<(), D::Stop> {
        io.observe(node, &ready);
        io.send(std::mem::take(&mut ready.messages));
        let synchronous =
            self.mode == SyncMode::Inline || ready.snapshot.is_some() || ready.term_or_vote_changed;
        if synchronous {
            self.run_ready_synchronously(node, io, ready)
        } else {
            self.run_ready_unsynced(node, io, ready)
        }
    }

    /// The common case under [`SyncMode::Background`]: nothing here waits for the disk.
    fn run_ready_unsynced<S: LogStoreMut, D: ReadyIo<S>>(
        &mut self,
        node: &mut Node<S>,
        io: &mut D,
        mut ready: Ready,
    ) -> Result<(), D::Stop> {
        io.apply(&ready.committed_entries, &ready.read_states)?;
        io.write(node.store_mut(), &ready)?;
        // Rejections, heartbeat and read answers promise nothing durable and leave now: a
        // slow disk must not hold them (a leader hearing no heartbeat answers steps down).
        let persisted = std::mem::take(&mut ready.persisted_messages);
        io.send(self.held.written(ready.must_sync, persisted));
        node.advance_unsynced();
        Ok(())
    }

    /// A snapshot, a new term or vote, or any Ready under [`SyncMode::Inline`]: durable
    /// before the node goes on.
    fn run_ready_synchronously<S: LogStoreMut, D: ReadyIo<S>>(
        &mut self,
        node: &mut Node<S>,
        io: &mut D,
        mut ready: Ready,
    ) -> Result<(), D::Stop> {
        // The node is not told of the running sync: the `advance` below covers it.
        if self.running.take().is_some() {
            io.wait_for_sync()?;
        }
        let restore_first = ready.snapshot.is_some();
        if !restore_first {
            io.apply(&ready.committed_entries, &ready.read_states)?;
        }
        io.write(node.store_mut(), &ready)?;
        if ready.must_sync || self.held.needs_sync() {
            io.sync(node.store_mut())?;
        }
        io.send(self.held.synced_everything());
        if let Some(snapshot) = &ready.snapshot {
            // Restored before answering, so the application knows what the snapshot holds
            // (a joining node, its peers' addresses) when the leader hears back.
            io.restore(snapshot)?;
        }
        io.send(std::mem::take(&mut ready.persisted_messages));
        if restore_first {
            io.apply(&ready.committed_entries, &ready.read_states)?;
        }
        node.advance();
        Ok(())
    }

    /// Begins a sync of everything written so far, unless one is running or nothing waits
    /// for one. Returns true if it finished at once (its release may have let the node
    /// commit, so the caller looks for a Ready again).
    fn begin_sync<S: LogStoreMut, D: ReadyIo<S>>(
        &mut self,
        node: &mut Node<S>,
        io: &mut D,
    ) -> Result<bool, D::Stop> {
        if self.running.is_some() || !self.held.needs_sync() {
            return Ok(false);
        }
        assert_eq!(
            self.mode,
            SyncMode::Background,
            "under inline syncs every write is synced in its Ready"
        );
        let store = node.store_mut();
        let last_index = store.last_index();
        let last_term = store
            .term(last_index)
            .expect("the store answers for its own last index");
        self.running = Some(RunningSync {
            covers: self.held.sync_covers(),
            last: (last_index, last_term),
        });
        match io.begin_sync(store)? {
            SyncStart::Running => Ok(false),
            SyncStart::Done => {
                let running = self.running.take().expect("set above");
                node.persisted(running.last.0, running.last.1);
                io.send(self.held.synced(running.covers));
                Ok(true)
            }
        }
    }
}
