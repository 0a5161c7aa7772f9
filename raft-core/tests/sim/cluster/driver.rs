//! The simulation as a node's I/O ([`ReadyIo`]): the pipeline calls it in the order that
//! kvnode's raft loop runs, and it injects the faults a real driver meets on the way — a
//! crash before a Ready is written, or after it is written and before it is synced, and
//! background syncs that take a random time.

use raft_core::{
    Entry, LogStoreMut, MemStore, Message, Node, NodeId, ReadState, ReadyIo, Snapshot, SyncStart,
};

use super::{Sim, SimSync, FLUSH_UNITS_MAX, SNAPSHOT_EVERY_ENTRIES};
use crate::app::AppState;

/// Why the pipeline stopped part-way.
pub enum Stop {
    /// The node crashes here; the simulation discards it and restarts it later.
    Crash,
    /// A checker found a violation.
    Violation(String),
}

impl From<String> for Stop {
    fn from(violation: String) -> Stop {
        Stop::Violation(violation)
    }
}

/// The rest of the simulation, seen from one node (whose `Node` and pipeline the caller
/// holds meanwhile).
pub struct SimIo<'a> {
    pub sim: &'a mut Sim,
    pub id: NodeId,
}

impl SimIo<'_> {
    fn crash_here(&mut self) -> bool {
        self.sim.faults_on && self.sim.profile.crashes && self.sim.rng.chance(2)
    }

    fn app(&mut self) -> &mut AppState {
        &mut self.sim.nodes.get_mut(&self.id).expect("exists").app
    }
}

impl ReadyIo<MemStore> for SimIo<'_> {
    type Stop = Stop;

    fn observe(&mut self, _node: &Node<MemStore>, ready: &raft_core::Ready) {
        if let Some(soft) = ready.soft_state {
            self.sim.log(format!(
                "{:?} is {:?} in {:?} (leader {:?})",
                self.id, soft.role, soft.term, soft.leader
            ));
        }
    }

    fn send(&mut self, messages: Vec<Message>) {
        for message in messages {
            self.sim.send(message);
        }
    }

    fn apply(&mut self, entries: &[Entry], read_states: &[ReadState]) -> Result<(), Stop> {
        for entry in entries {
            let app = self.app();
            app.apply(entry);
            let digest = app.digest;
            self.sim.checker.applied(self.id, entry, digest)?;
        }
        for read in read_states {
            self.sim
                .checker
                .read_released(self.id, read.request_id, read.index)?;
        }
        Ok(())
    }

    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), Stop> {
        let app = AppState::from_snapshot_data(&snapshot.data);
        if app.applied != snapshot.meta.index {
            return Err(Stop::Violation(format!(
                "{:?} got a snapshot whose data does not match its index",
                self.id
            )));
        }
        self.sim
            .checker
            .restored(self.id, app.applied, app.digest)?;
        *self.app() = app;
        self.sim.log(format!(
            "{:?} restores snapshot at {:?}",
            self.id, app.applied
        ));
        Ok(())
    }

    fn write(&mut self, store: &mut MemStore, ready: &raft_core::Ready) -> Result<(), Stop> {
        if self.crash_here() {
            self.sim
                .log(format!("{:?} crashes before writing its Ready", self.id));
            return Err(Stop::Crash);
        }
        store.write_ready(ready).expect("memory");
        self.sim
            .checker
            .persisted_entries(self.id, store, &ready.entries)?;
        if ready.must_sync && self.crash_here() {
            self.sim.log(format!(
                "{:?} crashes after writing, before syncing",
                self.id
            ));
            return Err(Stop::Crash);
        }
        Ok(())
    }

    fn sync(&mut self, store: &mut MemStore) -> Result<(), Stop> {
        store.sync().expect("memory");
        Ok(())
    }

    fn begin_sync(&mut self, store: &mut MemStore) -> Result<SyncStart, Stop> {
        let done_at = self.sim.time + 1 + self.sim.rng.below(FLUSH_UNITS_MAX);
        let point = store.sync_point();
        let sim_node = self.sim.nodes.get_mut(&self.id).expect("exists");
        sim_node.sync = Some(SimSync { done_at, point });
        Ok(SyncStart::Running)
    }

    /// The inline sync that follows covers everything, so the running one is dropped
    /// (losing, in a crash before that sync, only writes nobody was promised).
    fn wait_for_sync(&mut self) -> Result<(), Stop> {
        let sim_node = self.sim.nodes.get_mut(&self.id).expect("exists");
        sim_node.sync = None;
        Ok(())
    }

    fn after_ready(&mut self, node: &mut Node<MemStore>) -> Result<bool, Stop> {
        self.sim.checker.after_step(node)?;
        Ok(self.maybe_compact(node))
    }
}

impl SimIo<'_> {
    /// Compacts the log behind the applied index now and then; returns whether it did.
    fn maybe_compact(&mut self, node: &mut Node<MemStore>) -> bool {
        if !self.sim.profile.snapshots {
            return false;
        }
        let app = *self.app();
        if app.applied.0 < node.first_index().0 + SNAPSHOT_EVERY_ENTRIES {
            return false;
        }
        let meta = node.snapshot_meta_at_applied();
        assert_eq!(
            meta.index, app.applied,
            "node and application disagree on applied index"
        );
        node.store_mut()
            .apply_snapshot(Snapshot {
                meta,
                data: app.to_snapshot_data(),
            })
            .expect("memory");
        true
    }
}
