//! Which peers the transport keeps connections to, and where they listen.
//!
//! Rule: the peers are the members of the newest configuration this node knows (in effect
//! from the moment it is appended, as Raft's are), plus the current leader. Never a
//! configuration met while replaying the log, and never without the leader: a learner
//! whose log does not yet hold the entry that added it, or that replays an old
//! configuration without the current leader, must keep hearing from that leader.
//!
//! Addresses come from the replicated address book (applied configuration entries and
//! snapshots), else from configuration entries seen in the log but not yet applied, else
//! from this node's own `member` setting.

use std::collections::{BTreeMap, BTreeSet};

use raft_core::{Membership, NodeId};
use raft_net::Transport;
use tracing::warn;

use crate::state_machine::{MemberAddress, StateMachine};

pub struct Peers {
    self_id: NodeId,
    /// Addresses from the `member` setting and from configuration entries in the log.
    learned: BTreeMap<NodeId, MemberAddress>,
    /// The transport's peers and the peer address each was given.
    connected: BTreeMap<NodeId, String>,
}

impl Peers {
    pub fn new(self_id: NodeId, members: &BTreeMap<NodeId, MemberAddress>) -> Peers {
        Peers {
            self_id,
            learned: members.clone(),
            connected: BTreeMap::new(),
        }
    }

    /// Remembers addresses carried by a configuration entry.
    pub fn learn(&mut self, members: &[(NodeId, MemberAddress)]) {
        for (id, address) in members {
            self.learned.insert(*id, address.clone());
        }
    }

    pub fn address_of(&self, id: NodeId, machine: &StateMachine) -> Option<MemberAddress> {
        machine
            .members()
            .get(&id)
            .or_else(|| self.learned.get(&id))
            .cloned()
    }

    /// Makes the transport's peers those of the rule above.
    pub fn follow(
        &mut self,
        transport: &Transport,
        membership: &Membership,
        leader: Option<NodeId>,
        machine: &StateMachine,
    ) {
        let mut wanted: BTreeSet<NodeId> = membership.nodes();
        wanted.extend(leader);
        wanted.remove(&self.self_id);
        let stale: Vec<NodeId> = self
            .connected
            .keys()
            .copied()
            .filter(|id| !wanted.contains(id))
            .collect();
        for id in stale {
            transport.remove_peer(id);
            self.connected.remove(&id);
        }
        for id in wanted {
            let Some(address) = self.address_of(id, machine) else {
                continue;
            };
            if self.connected.get(&id) == Some(&address.peer) {
                continue;
            }
            let added = crate::config::resolve_addr("peer", &address.peer)
                .and_then(|addr| transport.set_peer(id, addr).map_err(anyhow::Error::from));
            match added {
                Ok(()) => {
                    self.connected.insert(id, address.peer);
                }
                Err(failure) => {
                    warn!(peer = id.0, address = %address.peer, error = %failure, "cannot reach peer address");
                }
            }
        }
    }
}
