//! A cluster of raft-core nodes in one thread: messages go straight into a FIFO queue and
//! each node's Ready is handled to completion. No I/O, so what is measured is the cost of
//! the algorithm itself (stepping, batching, Ready/advance) per committed entry.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use raft_core::{
    Config, LogIndex, LogStoreMut, MemStore, Membership, Message, Node, NodeId, Role, Snapshot,
};

/// Entries applied past the last snapshot before a node compacts, to bound memory in long
/// bench runs.
const COMPACT_EVERY_ENTRIES: u64 = 50_000;
/// Deliveries one drive may perform before it is declared stuck.
const DELIVERIES_MAX: usize = 10_000_000;

pub struct InProcessCluster {
    nodes: BTreeMap<NodeId, Node<MemStore>>,
    queue: VecDeque<Message>,
    applied: BTreeMap<NodeId, LogIndex>,
    leader: NodeId,
}

impl InProcessCluster {
    /// Starts `size` voters and elects node 1.
    pub fn new(size: u64) -> InProcessCluster {
        let voters = Membership::with_voters((1..=size).map(NodeId));
        let nodes = (1..=size)
            .map(|n| {
                let mut config = Config::new(NodeId(n));
                config.inflight_msgs_max = 256;
                let store = MemStore::bootstrap(voters.clone());
                (NodeId(n), Node::new(config, store).expect("valid config"))
            })
            .collect();
        let mut cluster = InProcessCluster {
            nodes,
            queue: VecDeque::new(),
            applied: BTreeMap::new(),
            leader: NodeId(1),
        };
        cluster
            .nodes
            .get_mut(&NodeId(1))
            .expect("exists")
            .campaign();
        cluster.process(NodeId(1));
        cluster.deliver_all();
        assert_eq!(
            cluster.nodes[&NodeId(1)].role(),
            Role::Leader,
            "node 1 was elected"
        );
        cluster
    }

    /// Proposes `payloads` on the leader in one batch and drives the cluster until the
    /// leader has applied them all. Returns the last index.
    pub fn commit_batch(&mut self, payloads: &[Bytes]) -> LogIndex {
        let leader = self.leader;
        let node = self.nodes.get_mut(&leader).expect("leader exists");
        let mut last = LogIndex::ZERO;
        for payload in payloads {
            last = node
                .propose(payload.clone())
                .expect("the leader accepts proposals");
        }
        self.process(leader);
        self.deliver_all();
        // Commit news reaches followers on the next append or heartbeat; the leader alone
        // decides when a client's write is done.
        assert!(
            self.applied[&leader] >= last,
            "batch was committed and applied"
        );
        last
    }

    fn deliver_all(&mut self) {
        let mut moved = 0;
        while let Some(message) = self.queue.pop_front() {
            let to = message.to;
            self.nodes.get_mut(&to).expect("member").step(message);
            self.process(to);
            moved += 1;
            assert!(moved < DELIVERIES_MAX, "messages never stop flowing");
        }
    }

    fn process(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("member");
        while node.has_ready() {
            let mut ready = node.ready();
            self.queue.extend(std::mem::take(&mut ready.messages));
            let store = node.store_mut();
            store.write_ready(&ready).expect("memory");
            store.sync().expect("memory");
            self.queue.extend(ready.persisted_messages);
            if let Some(last) = ready.committed_entries.last() {
                self.applied.insert(id, last.index);
            }
            node.advance();
        }
        let applied = self.applied.get(&id).copied().unwrap_or_default();
        if applied.0 >= node.first_index().0 + COMPACT_EVERY_ENTRIES {
            let meta = node.snapshot_meta_at_applied();
            let store = node.store_mut();
            store
                .apply_snapshot(Snapshot {
                    meta,
                    data: Bytes::new(),
                })
                .expect("memory");
            store.sync().expect("memory");
        }
    }
}
