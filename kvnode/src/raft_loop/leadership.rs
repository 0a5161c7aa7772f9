//! Who leads, as the loop sees it, published to the connections on a watch channel, so
//! that forwarding follows leadership without asking the loop (see
//! `connection::forward`).

use raft_core::{NodeId, Role};
use tokio::sync::watch;

use super::RaftLoop;

/// The leader as this node knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaderView {
    pub id: Option<NodeId>,
    /// The leader's client address, once known.
    pub client: Option<String>,
    /// This node is the leader.
    pub is_self: bool,
}

/// A new watch channel, with no leader known.
pub fn leader_watch() -> (watch::Sender<LeaderView>, watch::Receiver<LeaderView>) {
    watch::channel(LeaderView::default())
}

impl RaftLoop {
    /// Publishes the leader if the view changed (a cheap comparison when it did not).
    pub(super) fn publish_leader(&mut self) {
        let id = self.node.leader();
        let is_self = self.node.role() == Role::Leader;
        let published = self.leader_watch.borrow();
        let unchanged = published.id == id
            && published.is_self == is_self
            && (published.client.is_some() || id.is_none());
        drop(published);
        if unchanged {
            return;
        }
        let client = id
            .and_then(|id| self.io.peers.address_of(id, &self.io.machine))
            .map(|address| address.client);
        let view = LeaderView {
            id,
            client,
            is_self,
        };
        self.leader_watch.send_if_modified(|current| {
            let modified = *current != view;
            *current = view;
            modified
        });
    }
}
