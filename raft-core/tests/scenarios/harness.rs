//! A small, fully controlled cluster for scenario tests: messages are delivered in FIFO
//! order only when the test says so, links can be cut, and every delivery and role change
//! is written to a readable trace that is compared with a golden file in `testdata/`.
//! `UPDATE_GOLDEN=1` rewrites the golden files; reviewers read the diff.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;

use bytes::Bytes;
use raft_core::{
    Config, Entry, EntryPayload, HardState, LogIndex, LogStore, LogStoreMut, MemStore, Membership,
    Message, MessageBody, Node, NodeId, Pipeline, ReadState, Ready, ReadyIo, Role, Snapshot,
    SyncMode, SyncStart, Term,
};

/// Messages one `deliver_all` may move before the test is declared stuck.
const DELIVERIES_MAX: usize = 100_000;

pub struct Cluster {
    pub nodes: BTreeMap<NodeId, Node<MemStore>>,
    crashed: BTreeMap<NodeId, MemStore>,
    queue: VecDeque<Message>,
    blocked: BTreeSet<(NodeId, NodeId)>,
    pub applied: BTreeMap<NodeId, Vec<Entry>>,
    /// Reads each node released, in order.
    pub read_states: BTreeMap<NodeId, Vec<ReadState>>,
    pub trace: Vec<String>,
}

/// The harness as a node's I/O: messages go to the FIFO queue, applied entries and
/// released reads are recorded, role changes traced.
struct HarnessIo<'a> {
    id: NodeId,
    queue: &'a mut VecDeque<Message>,
    applied: &'a mut Vec<Entry>,
    read_states: &'a mut Vec<ReadState>,
    trace: &'a mut Vec<String>,
}

impl ReadyIo<MemStore> for HarnessIo<'_> {
    type Stop = std::convert::Infallible;

    fn observe(&mut self, _node: &Node<MemStore>, ready: &Ready) {
        if let Some(soft) = ready.soft_state {
            self.trace.push(format!(
                "n{} becomes {:?} in term {}",
                self.id.0, soft.role, soft.term.0
            ));
        }
    }

    fn send(&mut self, messages: Vec<Message>) {
        self.queue.extend(messages);
    }

    fn apply(&mut self, entries: &[Entry], read_states: &[ReadState]) -> Result<(), Self::Stop> {
        self.applied.extend_from_slice(entries);
        self.read_states.extend_from_slice(read_states);
        Ok(())
    }

    fn restore(&mut self, _snapshot: &Snapshot) -> Result<(), Self::Stop> {
        Ok(())
    }

    fn write(&mut self, store: &mut MemStore, ready: &Ready) -> Result<(), Self::Stop> {
        store.write_ready(ready).expect("memory");
        Ok(())
    }

    fn sync(&mut self, store: &mut MemStore) -> Result<(), Self::Stop> {
        store.sync().expect("memory");
        Ok(())
    }

    fn begin_sync(&mut self, _store: &mut MemStore) -> Result<SyncStart, Self::Stop> {
        unreachable!("inline syncs only")
    }

    fn wait_for_sync(&mut self) -> Result<(), Self::Stop> {
        unreachable!("inline syncs only")
    }
}

pub fn id(n: u64) -> NodeId {
    NodeId(n)
}

pub fn config(node: NodeId, pre_vote: bool) -> Config {
    let mut config = Config::new(node);
    config.pre_vote = pre_vote;
    config.append_entries_max = 512;
    config
}

/// A payload that depends only on (index, term), so equal positions hold equal entries.
pub fn payload(index: u64, term: u64) -> Bytes {
    Bytes::from(format!("e{index}t{term}").into_bytes())
}

impl Cluster {
    /// `n` voters with fresh bootstrapped logs.
    pub fn new(n: u64, pre_vote: bool) -> Cluster {
        let voters = Membership::with_voters((1..=n).map(NodeId));
        let logs = (1..=n).map(|_| vec![]).collect::<Vec<Vec<u64>>>();
        Cluster::with_logs(voters, &logs, Term(1), pre_vote)
    }

    /// Nodes 1..=logs.len(), each holding the bootstrap entry (index 1, term 1) followed by
    /// entries of the given terms, all at hard-state term `term`.
    pub fn with_logs(voters: Membership, logs: &[Vec<u64>], term: Term, pre_vote: bool) -> Cluster {
        let mut nodes = BTreeMap::new();
        for (position, terms) in logs.iter().enumerate() {
            let node = NodeId(position as u64 + 1);
            let mut store = MemStore::bootstrap(voters.clone());
            let entries: Vec<Entry> = terms
                .iter()
                .enumerate()
                .map(|(offset, &t)| {
                    let index = offset as u64 + 2;
                    Entry {
                        index: LogIndex(index),
                        term: Term(t),
                        payload: EntryPayload::Command(payload(index, t)),
                    }
                })
                .collect();
            store.append(&entries).unwrap();
            store
                .set_hard_state(HardState {
                    term,
                    vote: NodeId::NONE,
                    commit: LogIndex(1),
                })
                .unwrap();
            store.sync().unwrap();
            nodes.insert(node, Node::new(config(node, pre_vote), store).unwrap());
        }
        Cluster {
            nodes,
            crashed: BTreeMap::new(),
            queue: VecDeque::new(),
            blocked: BTreeSet::new(),
            applied: BTreeMap::new(),
            read_states: BTreeMap::new(),
            trace: Vec::new(),
        }
    }

    pub fn node(&self, n: u64) -> &Node<MemStore> {
        &self.nodes[&id(n)]
    }

    pub fn note(&mut self, line: impl Into<String>) {
        self.trace.push(format!("# {}", line.into()));
    }

    /// Cuts every link to and from `n`.
    pub fn isolate(&mut self, n: u64) {
        for other in self.all_ids() {
            self.blocked.insert((id(n), other));
            self.blocked.insert((other, id(n)));
        }
    }

    /// Cuts the one-way link from `from` to `to`.
    pub fn cut(&mut self, from: u64, to: u64) {
        self.blocked.insert((id(from), id(to)));
    }

    /// Runs `request` on node `n` (a client request: a read, a transfer) and carries out
    /// what it produced.
    pub fn request<T>(&mut self, n: u64, request: impl FnOnce(&mut Node<MemStore>) -> T) -> T {
        let outcome = request(self.nodes.get_mut(&id(n)).expect("live"));
        self.process(id(n));
        outcome
    }

    /// Reads node `n` has released, by request id.
    pub fn released(&self, n: u64, request_id: u64) -> Option<ReadState> {
        self.read_states
            .get(&id(n))?
            .iter()
            .find(|read| read.request_id == request_id)
            .copied()
    }

    /// Cuts every link from `n` (it still hears the others).
    pub fn cut_outbound(&mut self, n: u64) {
        for other in self.all_ids() {
            self.blocked.insert((id(n), other));
        }
    }

    fn all_ids(&self) -> Vec<NodeId> {
        self.nodes
            .keys()
            .chain(self.crashed.keys())
            .copied()
            .collect()
    }

    pub fn heal(&mut self) {
        self.blocked.clear();
    }

    pub fn crash(&mut self, n: u64) {
        let node = self.nodes.remove(&id(n)).expect("live");
        let mut store = node.into_store();
        store.crash();
        self.crashed.insert(id(n), store);
        self.trace.push(format!("n{n} crashes"));
    }

    pub fn campaign(&mut self, n: u64) {
        self.nodes.get_mut(&id(n)).expect("live").campaign();
        self.process(id(n));
    }

    pub fn tick(&mut self, n: u64) {
        if let Some(node) = self.nodes.get_mut(&id(n)) {
            node.tick();
            self.process(id(n));
        }
    }

    /// Ticks every live node `ticks` times, delivering messages after each tick.
    pub fn tick_all(&mut self, ticks: u32) {
        for _ in 0..ticks {
            let ids: Vec<u64> = self.nodes.keys().map(|n| n.0).collect();
            for n in ids {
                self.tick(n);
            }
            self.deliver_all();
        }
    }

    /// Injects a message as if it had arrived from the network.
    pub fn inject(&mut self, message: Message) {
        self.queue.push_back(message);
    }

    /// Delivers one "round": every message queued now, in order. Returns how many arrived.
    pub fn deliver_round(&mut self) -> usize {
        let round: Vec<Message> = self.queue.drain(..).collect();
        let mut delivered = 0;
        for message in round {
            if self.blocked.contains(&(message.from, message.to)) {
                continue;
            }
            let to = message.to;
            let Some(node) = self.nodes.get_mut(&to) else {
                continue;
            };
            self.trace.push(describe(&message));
            node.step(message);
            delivered += 1;
            self.process(to);
        }
        delivered
    }

    /// Delivers until no message is left.
    pub fn deliver_all(&mut self) {
        let mut moved = 0;
        while !self.queue.is_empty() {
            moved += self.deliver_round();
            assert!(moved < DELIVERIES_MAX, "messages never stop flowing");
        }
    }

    /// Carries out a node's Readys through raft-core's pipeline, in the plain synchronous
    /// order (every Ready written and synced before the node goes on).
    pub fn process(&mut self, node_id: NodeId) {
        let node = self.nodes.get_mut(&node_id).expect("live");
        let mut io = HarnessIo {
            id: node_id,
            queue: &mut self.queue,
            applied: self.applied.entry(node_id).or_default(),
            read_states: self.read_states.entry(node_id).or_default(),
            trace: &mut self.trace,
        };
        let Ok(()) = Pipeline::new(SyncMode::Inline).run(node, &mut io);
    }

    /// The (index, term) of every entry in a node's log.
    pub fn log_terms(&self, n: u64) -> Vec<(u64, u64)> {
        let node = self.node(n);
        let store = node.store();
        let first = store.first_index().0;
        (first..=node.last_index().0)
            .map(|i| (i, node.log_term(LogIndex(i)).unwrap().0))
            .collect()
    }

    pub fn leader(&self) -> Option<u64> {
        self.nodes
            .values()
            .filter(|node| node.role() == Role::Leader)
            .max_by_key(|node| node.term())
            .map(|node| node.id().0)
    }

    /// Compares the trace with `testdata/<name>.txt` (or rewrites it under UPDATE_GOLDEN=1).
    pub fn check_golden(&self, name: &str) {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("testdata")
            .join(format!("{name}.txt"));
        let actual = self.trace.join("\n") + "\n";
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, &actual).unwrap();
            return;
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
            panic!(
                "missing golden file {}; run with UPDATE_GOLDEN=1",
                path.display()
            )
        });
        if expected != actual {
            let first_difference = expected
                .lines()
                .zip(actual.lines())
                .position(|(e, a)| e != a)
                .unwrap_or(expected.lines().count().min(actual.lines().count()));
            panic!(
                "trace differs from {} at line {}:\n  expected: {:?}\n  actual:   {:?}\n(run with UPDATE_GOLDEN=1 and review the diff if the change is intended)",
                path.display(),
                first_difference + 1,
                expected.lines().nth(first_difference),
                actual.lines().nth(first_difference)
            );
        }
    }
}

pub fn describe(message: &Message) -> String {
    let head = format!("n{}->n{} t{}", message.from.0, message.to.0, message.term.0);
    match &message.body {
        MessageBody::PreVote {
            last_log_index,
            last_log_term,
        } => {
            format!(
                "{head} PreVote last={}@{}",
                last_log_index.0, last_log_term.0
            )
        }
        MessageBody::Vote {
            last_log_index,
            last_log_term,
            ..
        } => {
            format!("{head} Vote last={}@{}", last_log_index.0, last_log_term.0)
        }
        MessageBody::PreVoteResponse { granted } => {
            format!("{head} PreVoteResponse granted={granted}")
        }
        MessageBody::VoteResponse { granted } => format!("{head} VoteResponse granted={granted}"),
        MessageBody::Append {
            prev_log_index,
            prev_log_term,
            entries,
            leader_commit,
        } => format!(
            "{head} Append prev={}@{} entries={} commit={}",
            prev_log_index.0,
            prev_log_term.0,
            match (entries.first(), entries.last()) {
                (Some(first), Some(last)) => format!("[{}..{}]", first.index.0, last.index.0),
                _ => "[]".to_string(),
            },
            leader_commit.0
        ),
        MessageBody::AppendResponse(response) => format!("{head} {response:?}"),
        MessageBody::Heartbeat { commit, .. } => format!("{head} Heartbeat commit={}", commit.0),
        MessageBody::HeartbeatResponse { .. } => format!("{head} HeartbeatResponse"),
        body => format!("{head} {}", body.kind()),
    }
}
