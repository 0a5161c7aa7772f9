//! A simulated cluster: nodes, a lossy network, crashes and a client workload, all driven
//! by one seeded RNG in a single thread. Time is counted in *units*; each node ticks every
//! `TICK_UNITS` units, and a message takes 1..=`latency_max` units to arrive.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use raft_core::{
    ConfChange, Config, LogIndex, LogStore, MemStore, Membership, Message, MessageBody, Node,
    NodeId, Pipeline, Role, SyncMode, SyncPoint, Term,
};

use crate::app::AppState;
use crate::checker::{Checker, Verdict};
use crate::rng::SimRng;

mod driver;

use driver::{SimIo, Stop};

pub const TICK_UNITS: u64 = 10;
/// Longest a sync runs in a profile with asynchronous syncs, in units.
const FLUSH_UNITS_MAX: u64 = 15;
/// Entries applied past the last snapshot before a node compacts its log.
const SNAPSHOT_EVERY_ENTRIES: u64 = 24;
/// Nodes that may ever exist in one run (initial members plus those added later).
const NODES_MAX: u64 = 10;
/// Voters a membership change may grow the cluster to.
const VOTERS_MAX: usize = 7;

/// Which faults a run injects; derived from its seed.
#[derive(Clone, Debug)]
pub struct Profile {
    pub nodes: u64,
    pub drop_per_mille: u64,
    pub duplicate_per_mille: u64,
    pub latency_max: u64,
    pub partitions: bool,
    pub crashes: bool,
    pub membership_changes: bool,
    pub snapshots: bool,
    pub transfers: bool,
    pub reads: bool,
    /// Nodes sync off the Ready path (`Ready`, "Asynchronous sync"): writes go on while a
    /// sync runs for a random time, and messages wait for the sync that covers them.
    pub async_syncs: bool,
}

impl Profile {
    pub fn from_seed(rng: &mut SimRng) -> Profile {
        Profile {
            nodes: 1 + rng.below(7),
            drop_per_mille: if rng.chance(600) { rng.below(150) } else { 0 },
            duplicate_per_mille: if rng.chance(500) { rng.below(100) } else { 0 },
            latency_max: 2 + rng.below(18),
            partitions: rng.chance(600),
            crashes: rng.chance(600),
            membership_changes: rng.chance(500),
            snapshots: rng.chance(600),
            transfers: rng.chance(400),
            reads: rng.chance(700),
            async_syncs: false,
        }
    }
}

/// A background sync the simulated disk is running: it makes durable what was written
/// before it began, at `done_at`.
struct SimSync {
    done_at: u64,
    point: SyncPoint,
}

struct InFlight {
    deliver_at: u64,
    message: Message,
}

struct SimNode {
    node: Option<Node<MemStore>>,
    /// The store of a crashed node, waiting for its restart.
    crashed_store: Option<MemStore>,
    app: AppState,
    restart_at: u64,
    tick_phase: u64,
    /// The same pipeline kvnode's raft loop carries out its Readys through.
    pipeline: Pipeline,
    sync: Option<SimSync>,
}

pub struct Stats {
    pub committed: LogIndex,
    pub reads_confirmed: u64,
}

pub struct Sim {
    pub seed: u64,
    rng: SimRng,
    pub profile: Profile,
    time: u64,
    nodes: BTreeMap<NodeId, SimNode>,
    network: Vec<InFlight>,
    /// Links (from, to) that currently drop everything.
    blocked: BTreeSet<(NodeId, NodeId)>,
    heal_at: u64,
    faults_on: bool,
    checker: Checker,
    trace: bool,
    next_request_id: u64,
    next_command: u64,
    next_node_id: u64,
}

impl Sim {
    pub fn new(seed: u64, trace: bool) -> Sim {
        let mut rng = SimRng::new(seed);
        let mut profile = Profile::from_seed(&mut rng);
        // Drawn from a generator of its own, so synchronous seeds replay as they always did.
        profile.async_syncs = SimRng::new(seed.rotate_left(29) ^ 0xa5a5).chance(500);
        let voters = Membership::with_voters((1..=profile.nodes).map(NodeId));
        let mut sim = Sim {
            seed,
            rng,
            time: 0,
            nodes: BTreeMap::new(),
            network: Vec::new(),
            blocked: BTreeSet::new(),
            heal_at: 0,
            faults_on: true,
            checker: Checker::default(),
            trace,
            next_request_id: 1,
            next_command: 1,
            next_node_id: profile.nodes + 1,
            profile,
        };
        sim.log(format!("profile {:?}", sim.profile));
        for id in 1..=sim.profile.nodes {
            sim.add_node(NodeId(id), MemStore::bootstrap(voters.clone()));
        }
        sim
    }

    fn sync_mode(&self) -> SyncMode {
        if self.profile.async_syncs {
            SyncMode::Background
        } else {
            SyncMode::Inline
        }
    }

    fn log(&self, line: String) {
        if self.trace {
            println!("[{:>6}] {line}", self.time);
        }
    }

    fn config(&self, id: NodeId, applied: LogIndex) -> Config {
        let mut config = Config::new(id);
        config.election_ticks = 10;
        config.heartbeat_ticks = 1;
        // Small batches and windows so that pipelining, batching and chunking all happen.
        config.append_entries_max = 8;
        config.inflight_msgs_max = 4;
        config.snapshot_chunk_bytes = 1024;
        config.uncommitted_bytes_max = 64 << 10;
        config.entry_bytes_max = 4 << 10;
        config.applied = applied;
        config.seed = self.seed.wrapping_mul(31).wrapping_add(id.0);
        config
    }

    fn add_node(&mut self, id: NodeId, store: MemStore) {
        let node = Node::new(self.config(id, LogIndex::ZERO), store).expect("valid config");
        let tick_phase = self.rng.below(TICK_UNITS);
        self.nodes.insert(
            id,
            SimNode {
                node: Some(node),
                crashed_store: None,
                app: AppState::default(),
                restart_at: 0,
                tick_phase,
                pipeline: Pipeline::new(self.sync_mode()),
                sync: None,
            },
        );
    }

    fn live_ids(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.node.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    /// The live leader with the highest term, if any.
    fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter_map(|(id, n)| n.node.as_ref().map(|node| (*id, node)))
            .filter(|(_, node)| node.role() == Role::Leader)
            .max_by_key(|(_, node)| node.term())
            .map(|(id, _)| id)
    }

    fn node_mut(&mut self, id: NodeId) -> Option<&mut Node<MemStore>> {
        self.nodes.get_mut(&id).and_then(|n| n.node.as_mut())
    }

    // ----- the run -----

    /// Runs the faulty phase, heals, and checks liveness. Any violation is an `Err`.
    pub fn run(&mut self, fault_ticks: u64, liveness_ticks: u64) -> Result<Stats, String> {
        for _ in 0..fault_ticks * TICK_UNITS {
            self.step_time()?;
        }
        self.heal_everything()?;
        self.check_liveness(liveness_ticks)?;
        Ok(Stats {
            committed: self.checker.committed_max,
            reads_confirmed: self.checker.reads_confirmed,
        })
    }

    fn step_time(&mut self) -> Verdict {
        self.time += 1;
        if self.time % TICK_UNITS == 0 {
            self.inject_events()?;
        }
        for id in self.live_ids() {
            let due = self.nodes[&id]
                .sync
                .as_ref()
                .is_some_and(|sync| sync.done_at <= self.time);
            if due {
                self.finish_sync(id)?;
            }
        }
        for id in self.live_ids() {
            let phase = self.nodes[&id].tick_phase;
            if (self.time + phase) % TICK_UNITS == 0 {
                self.node_mut(id).expect("live").tick();
                self.handle_ready(id)?;
            }
        }
        self.deliver_due_messages()
    }

    fn deliver_due_messages(&mut self) -> Verdict {
        let now = self.time;
        let mut due = Vec::new();
        let mut i = 0;
        while i < self.network.len() {
            if self.network[i].deliver_at <= now {
                due.push(self.network.swap_remove(i).message);
            } else {
                i += 1;
            }
        }
        // Random order within a unit: reordering on top of random latency.
        while !due.is_empty() {
            let pick = self.rng.below(due.len() as u64) as usize;
            let message = due.swap_remove(pick);
            if self.blocked.contains(&(message.from, message.to)) {
                continue;
            }
            if self.trace {
                self.log(describe(&message));
            }
            let to = message.to;
            let Some(node) = self.node_mut(to) else {
                continue;
            };
            node.step(message);
            self.handle_ready(to)?;
        }
        Ok(())
    }

    fn send(&mut self, message: Message) {
        if self.faults_on && self.rng.chance(self.profile.drop_per_mille) {
            return;
        }
        let copies = if self.faults_on && self.rng.chance(self.profile.duplicate_per_mille) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let latency = 1 + self.rng.below(self.profile.latency_max);
            self.network.push(InFlight {
                deliver_at: self.time + latency,
                message: message.clone(),
            });
        }
    }

    /// Carries out the node's Readys through its pipeline, possibly crashing part-way.
    fn handle_ready(&mut self, id: NodeId) -> Verdict {
        self.drive(id, |pipeline, node, io| pipeline.run(node, io))
    }

    /// A running sync finishes: what was written before it began becomes durable, and the
    /// pipeline tells the node and lets the messages waiting for it go.
    fn finish_sync(&mut self, id: NodeId) -> Verdict {
        let sim_node = self.nodes.get_mut(&id).expect("exists");
        let sync = sim_node.sync.take().expect("a sync is running");
        let node = sim_node.node.as_mut().expect("live");
        node.store_mut().sync_through(sync.point);
        self.log(format!("{id:?} sync finished"));
        self.drive(id, |pipeline, node, io| pipeline.synced(node, io))
    }

    /// Runs one pipeline call for a live node, with the rest of the simulation as its I/O.
    fn drive(
        &mut self,
        id: NodeId,
        call: impl FnOnce(&mut Pipeline, &mut Node<MemStore>, &mut SimIo<'_>) -> Result<(), Stop>,
    ) -> Verdict {
        let Some(sim_node) = self.nodes.get_mut(&id) else {
            return Ok(());
        };
        let Some(mut node) = sim_node.node.take() else {
            return Ok(());
        };
        let placeholder = Pipeline::new(SyncMode::Inline);
        let mut pipeline = std::mem::replace(&mut sim_node.pipeline, placeholder);
        let outcome = call(&mut pipeline, &mut node, &mut SimIo { sim: self, id });
        let sim_node = self.nodes.get_mut(&id).expect("exists");
        sim_node.pipeline = pipeline;
        sim_node.node = Some(node);
        match outcome {
            Ok(()) => Ok(()),
            Err(Stop::Crash) => self.crash(id),
            Err(Stop::Violation(violation)) => Err(violation),
        }
    }

    fn crash(&mut self, id: NodeId) -> Verdict {
        let mode = self.sync_mode();
        let restart_in = (5 + self.rng.below(60)) * TICK_UNITS;
        let sim_node = self.nodes.get_mut(&id).expect("exists");
        let mut store = sim_node.node.take().expect("live").into_store();
        store.crash();
        sim_node.pipeline = Pipeline::new(mode);
        sim_node.sync = None;
        sim_node.crashed_store = Some(store);
        sim_node.restart_at = self.time + restart_in;
        Ok(())
    }

    fn restart(&mut self, id: NodeId) -> Verdict {
        let store = self
            .nodes
            .get_mut(&id)
            .expect("exists")
            .crashed_store
            .take()
            .expect("crashed");
        let snapshot = store.snapshot().expect("memory");
        let app = AppState::from_snapshot_data(&snapshot.data);
        let config = self.config(id, snapshot.meta.index);
        let node = Node::new(config, store).expect("valid config");
        self.checker.restored(id, app.applied, app.digest)?;
        let sim_node = self.nodes.get_mut(&id).expect("exists");
        sim_node.node = Some(node);
        sim_node.app = app;
        self.log(format!("{id:?} restarts from snapshot {:?}", app.applied));
        Ok(())
    }

    // ----- faults and workload -----

    fn inject_events(&mut self) -> Verdict {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            let sim_node = &self.nodes[&id];
            if sim_node.node.is_none() && self.time >= sim_node.restart_at {
                self.restart(id)?;
            }
        }
        if !self.faults_on {
            return Ok(());
        }
        if !self.blocked.is_empty() && self.time >= self.heal_at {
            self.log("partition heals".into());
            self.blocked.clear();
        }
        if self.profile.partitions && self.blocked.is_empty() && self.rng.chance(20) {
            self.partition();
        }
        if self.profile.crashes && self.rng.chance(15) {
            self.crash_random()?;
        }
        self.client_writes();
        if self.profile.reads && self.rng.chance(300) {
            self.client_read();
        }
        if self.profile.membership_changes && self.rng.chance(15) {
            self.change_membership();
        }
        if self.profile.transfers && self.rng.chance(10) {
            self.transfer();
        }
        Ok(())
    }

    fn partition(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        let one_way = self.rng.chance(400);
        if one_way {
            for &from in &ids {
                for &to in &ids {
                    if from != to && self.rng.chance(250) {
                        self.blocked.insert((from, to));
                    }
                }
            }
        } else {
            let side: BTreeSet<NodeId> = ids
                .iter()
                .copied()
                .filter(|_| self.rng.chance(500))
                .collect();
            for &from in &ids {
                for &to in &ids {
                    if side.contains(&from) != side.contains(&to) {
                        self.blocked.insert((from, to));
                    }
                }
            }
        }
        self.heal_at = self.time + (10 + self.rng.below(80)) * TICK_UNITS;
        self.log(format!(
            "partition ({}) blocks {:?}",
            if one_way { "one-way" } else { "split" },
            self.blocked
        ));
    }

    fn crash_random(&mut self) -> Verdict {
        let live = self.live_ids();
        let down = self.nodes.len() - live.len();
        if down * 2 + 2 > self.nodes.len() {
            return Ok(());
        }
        if let Some(id) = self.rng.pick(&live) {
            self.log(format!("{id:?} crashes"));
            self.crash(id)?;
        }
        Ok(())
    }

    fn client_writes(&mut self) {
        let proposals = self.rng.below(5);
        for _ in 0..proposals {
            // Clients mostly find the leader; sometimes they ask a random node.
            let target = if self.rng.chance(800) {
                self.leader()
            } else {
                None
            };
            let Some(id) = target.or_else(|| self.rng.pick(&self.live_ids())) else {
                return;
            };
            let command = self.next_command;
            let node = self.node_mut(id).expect("live");
            if node.role() == Role::Leader {
                let payload = Bytes::from(format!("cmd-{command}").into_bytes());
                if let Ok(index) = node.propose(payload) {
                    self.next_command += 1;
                    self.log(format!("{id:?} proposes cmd-{command} at {index:?}"));
                }
                let _ = self.handle_ready(id);
            }
        }
    }

    fn client_read(&mut self) {
        let Some(id) = self.rng.pick(&self.live_ids()) else {
            return;
        };
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        self.checker.read_requested(request_id);
        let node = self.node_mut(id).expect("live");
        if node.read_index(request_id).is_err() {
            let _ = self.checker.read_released(id, request_id, None);
        } else {
            self.log(format!("{id:?} read {request_id} requested"));
        }
    }

    fn change_membership(&mut self) {
        let Some(leader) = self.leader() else {
            return;
        };
        let membership = self.nodes[&leader]
            .node
            .as_ref()
            .expect("live")
            .membership()
            .clone();
        let choice = self.rng.below(4);
        let change = match choice {
            0 | 1 if self.next_node_id <= NODES_MAX && membership.voters.len() < VOTERS_MAX => {
                let id = NodeId(self.next_node_id);
                self.next_node_id += 1;
                self.add_node(id, MemStore::new());
                if choice == 0 {
                    ConfChange::AddLearner(id)
                } else {
                    ConfChange::AddVoter(id)
                }
            }
            2 => {
                let learners: Vec<NodeId> = membership.learners.iter().copied().collect();
                match self.rng.pick(&learners) {
                    Some(id) => ConfChange::AddVoter(id),
                    None => return,
                }
            }
            _ => {
                let members: Vec<NodeId> = membership.nodes().into_iter().collect();
                match self.rng.pick(&members) {
                    Some(id) => ConfChange::Remove(id),
                    None => return,
                }
            }
        };
        let node = self.node_mut(leader).expect("live");
        let result = node.propose_conf_change(&[change], Bytes::new());
        self.log(format!("{leader:?} proposes {change:?}: {result:?}"));
        let _ = self.handle_ready(leader);
    }

    fn transfer(&mut self) {
        let Some(leader) = self.leader() else {
            return;
        };
        let voters: Vec<NodeId> = {
            let node = self.nodes[&leader].node.as_ref().expect("live");
            node.membership()
                .voters
                .iter()
                .copied()
                .filter(|v| *v != leader)
                .collect()
        };
        if let Some(target) = self.rng.pick(&voters) {
            let result = self.node_mut(leader).expect("live").transfer_leader(target);
            self.log(format!(
                "{leader:?} transfers leadership to {target:?}: {result:?}"
            ));
            let _ = self.handle_ready(leader);
        }
    }

    // ----- liveness -----

    fn heal_everything(&mut self) -> Verdict {
        self.faults_on = false;
        self.blocked.clear();
        let crashed: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.node.is_none())
            .map(|(id, _)| *id)
            .collect();
        for id in crashed {
            self.restart(id)?;
        }
        self.log("faults end: network healed, every node restarted".into());
        Ok(())
    }

    /// After healing: within `liveness_ticks`, a leader must commit a new proposal and every
    /// live member must apply everything committed.
    fn check_liveness(&mut self, liveness_ticks: u64) -> Verdict {
        let deadline = self.time + liveness_ticks * TICK_UNITS;
        let mut marker: Option<(LogIndex, Term)> = None;
        while self.time < deadline {
            self.step_time()?;
            if self.time % TICK_UNITS != 0 {
                continue;
            }
            let Some(leader) = self.leader() else {
                continue;
            };
            // A marker the current leader does not hold can never commit (a node removed
            // from the cluster may keep it forever): propose another.
            let leader_node = self.nodes[&leader].node.as_ref().expect("live");
            let still_valid = marker.is_some_and(|(index, term)| {
                leader_node.log_term(index) == Some(term) || self.checker.committed_max >= index
            });
            if !still_valid {
                let node = self.node_mut(leader).expect("live");
                let term = node.term();
                if let Ok(index) = node.propose(Bytes::from_static(b"liveness-marker")) {
                    marker = Some((index, term));
                    self.handle_ready(leader)?;
                }
                continue;
            }
            let (index, _) = marker.expect("valid");
            if self.checker.committed_max < index {
                continue;
            }
            if self.all_members_applied(leader) {
                return Ok(());
            }
        }
        Err(format!(
            "Liveness: within {liveness_ticks} ticks of healing, no leader committed a new entry and had it applied everywhere (leader {:?}, marker {marker:?}, committed {:?}, nodes {})",
            self.leader(),
            self.checker.committed_max,
            self.describe_nodes()
        ))
    }

    fn all_members_applied(&self, leader: NodeId) -> bool {
        let leader_node = self.nodes[&leader].node.as_ref().expect("live");
        let commit = leader_node.commit_index();
        leader_node.membership().nodes().iter().all(|id| {
            self.nodes
                .get(id)
                .is_some_and(|n| n.node.is_some() && n.app.applied >= commit)
        })
    }

    pub fn describe_nodes(&self) -> String {
        let mut out = String::new();
        for (id, sim_node) in &self.nodes {
            match &sim_node.node {
                Some(node) => out.push_str(&format!(
                    "\n  {id:?}: {:?} {:?} leader {:?} last {:?} commit {:?} applied {:?} members {:?}",
                    node.role(),
                    node.term(),
                    node.leader(),
                    node.last_index(),
                    node.commit_index(),
                    sim_node.app.applied,
                    node.membership()
                )),
                None => out.push_str(&format!("\n  {id:?}: down")),
            }
        }
        out
    }
}

/// Messages a test wants to see, for debugging a failing seed.
pub fn describe(message: &Message) -> String {
    match &message.body {
        MessageBody::Append {
            prev_log_index,
            entries,
            leader_commit,
            ..
        } => format!(
            "{:?}->{:?} {:?} Append prev {:?} n={} commit {:?}",
            message.from,
            message.to,
            message.term,
            prev_log_index,
            entries.len(),
            leader_commit
        ),
        MessageBody::InstallSnapshot {
            meta,
            offset,
            data,
            done,
        } => format!(
            "{:?}->{:?} {:?} InstallSnapshot {:?}@{:?} offset {offset} len {} done {done}",
            message.from,
            message.to,
            message.term,
            meta.index,
            meta.term,
            data.len()
        ),
        MessageBody::AppendResponse(response) => format!(
            "{:?}->{:?} {:?} {response:?}",
            message.from, message.to, message.term
        ),
        MessageBody::InstallSnapshotResponse(response) => format!(
            "{:?}->{:?} {:?} {response:?}",
            message.from, message.to, message.term
        ),
        body => format!(
            "{:?}->{:?} {:?} {}",
            message.from,
            message.to,
            message.term,
            body.kind()
        ),
    }
}
