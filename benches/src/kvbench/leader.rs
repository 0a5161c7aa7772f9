//! Finding the leader, and counting leader changes, through `RAFT.STATUS`.
//!
//! RAFT.STATUS is read with [`NodeStatus::parse`], the one parser of that text; kvbench keeps
//! only the [`LeaderView`] of it. A server without RAFT.STATUS (e.g. plain Redis) simply has
//! no leader: connections go to the first endpoint and no leader change is ever seen. With
//! `--protocol etcd` the same view comes from etcd's Status call (member ids instead of node
//! ids, and no leader client address).

use std::time::Duration;

use kvnode::resp::Frame;
use kvnode::status::NodeStatus;
use raft_core::{NodeId, Term};
use tokio::time::Instant;

use super::client::call_once;
use super::options::Protocol;

/// Most leader-change events kept for the report; later ones are only counted.
pub const EVENTS_MAX: usize = 1000;

/// What one endpoint says about leadership, whichever protocol it speaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderView {
    /// The endpoint itself is the leader.
    pub leads: bool,
    pub term: Term,
    /// The leader the endpoint knows of, if any.
    pub leader: Option<NodeId>,
    /// That leader's client address, when the endpoint knows it.
    pub leader_client: Option<String>,
}

impl From<NodeStatus> for LeaderView {
    fn from(status: NodeStatus) -> LeaderView {
        LeaderView {
            leads: status.is_leader(),
            term: status.term,
            leader: status.leader,
            leader_client: status.leader_client,
        }
    }
}

/// The view of a RAFT.STATUS reply; `None` if it is not a status bulk that parses.
fn view_of_reply(reply: &Frame) -> Option<LeaderView> {
    match reply {
        Frame::Bulk(text) => NodeStatus::parse(&String::from_utf8_lossy(text))
            .ok()
            .map(LeaderView::from),
        _ => None,
    }
}

/// Asks `endpoint` for its RAFT.STATUS (or etcd Status) before `deadline`; `None` on any
/// failure.
pub async fn query_status(
    protocol: Protocol,
    endpoint: &str,
    deadline: Instant,
) -> Option<LeaderView> {
    match protocol {
        Protocol::Redis => {
            view_of_reply(&call_once(endpoint, &["RAFT.STATUS"], deadline).await.ok()?)
        }
        #[cfg(feature = "etcd")]
        Protocol::Etcd => super::etcd::query_status(endpoint, deadline).await,
        #[cfg(not(feature = "etcd"))]
        Protocol::Etcd => None,
    }
}

/// Asks every endpoint at once; the answers in endpoint order.
pub async fn query_all(
    protocol: Protocol,
    endpoints: &[String],
    timeout: Duration,
) -> Vec<Option<LeaderView>> {
    let deadline = Instant::now() + timeout;
    let tasks: Vec<_> = endpoints
        .iter()
        .map(|endpoint| {
            let endpoint = endpoint.clone();
            tokio::spawn(async move { query_status(protocol, &endpoint, deadline).await })
        })
        .collect();
    let mut statuses = Vec::with_capacity(tasks.len());
    for task in tasks {
        // A panicked query task counts as an unreachable endpoint.
        statuses.push(task.await.ok().flatten());
    }
    statuses
}

/// The leader's client address from the endpoints' answers: an endpoint that says it leads,
/// else the address a follower names, else `None`.
pub fn choose_leader(endpoints: &[String], statuses: &[Option<LeaderView>]) -> Option<String> {
    let leading = endpoints
        .iter()
        .zip(statuses)
        .find(|(_, status)| status.as_ref().is_some_and(|s| s.leads));
    if let Some((endpoint, _)) = leading {
        return Some(endpoint.clone());
    }
    newest_leader(statuses).and_then(|status| status.leader_client.clone())
}

/// The answer naming a leader in the highest term, if any names one.
fn newest_leader(statuses: &[Option<LeaderView>]) -> Option<&LeaderView> {
    statuses
        .iter()
        .flatten()
        .filter(|status| status.leader.is_some())
        .max_by_key(|status| status.term)
}

/// The endpoint to load: the leader if one is found, else the first endpoint.
pub async fn find_leader(protocol: Protocol, endpoints: &[String], timeout: Duration) -> String {
    let statuses = query_all(protocol, endpoints, timeout).await;
    choose_leader(endpoints, &statuses).unwrap_or_else(|| endpoints[0].clone())
}

/// A leader seen at some time.
#[derive(Clone, Debug, PartialEq)]
pub struct LeaderEvent {
    /// Seconds since the run started.
    pub at_secs: f64,
    pub term: Term,
    pub leader: NodeId,
}

/// Leaders seen by the once-a-second poll.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LeaderWatch {
    /// The first leader seen, then every later one (up to [`EVENTS_MAX`]).
    pub events: Vec<LeaderEvent>,
    /// Times a leader of a higher term than the last one seen was observed.
    pub changes: u64,
    /// Endpoint polls that got no parseable answer.
    pub polls_failed: u64,
    current: Option<(Term, NodeId)>,
}

impl LeaderWatch {
    /// Records one poll round. A change is a known leader in a term above the last known
    /// leader's: a re-elected same node counts too (it was an election).
    pub fn observe(&mut self, at_secs: f64, statuses: &[Option<LeaderView>]) {
        self.polls_failed += statuses.iter().filter(|status| status.is_none()).count() as u64;
        let newest = newest_leader(statuses).and_then(|status| Some((status.term, status.leader?)));
        let Some((term, leader)) = newest else { return };
        let is_newer = self.current.is_none_or(|(current, _)| term > current);
        if !is_newer {
            return;
        }
        if self.current.is_some() {
            self.changes += 1;
        }
        self.current = Some((term, leader));
        if self.events.len() < EVENTS_MAX {
            self.events.push(LeaderEvent {
                at_secs,
                term,
                leader,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::Role;

    /// Node `node_id` in `role` at `term`, naming `leader` (0: none) at 127.0.0.1:638<id>.
    fn status(node_id: u64, role: Role, term: u64, leader: u64) -> Option<LeaderView> {
        let leader = Some(NodeId(leader)).filter(|id| !id.is_none());
        Some(LeaderView::from(NodeStatus {
            node_id: NodeId(node_id),
            role,
            term: Term(term),
            leader,
            leader_client: leader.map(|id| format!("127.0.0.1:638{id}")),
            ..NodeStatus::default()
        }))
    }

    #[test]
    fn a_status_reply_gives_its_view_and_anything_else_none() {
        let follower = NodeStatus {
            node_id: NodeId(2),
            term: Term(7),
            leader: Some(NodeId(1)),
            leader_client: Some("127.0.0.1:6381".into()),
            ..NodeStatus::default()
        };
        let reply = view_of_reply(&Frame::bulk(follower.render()));
        assert_eq!(reply, status(2, Role::Follower, 7, 1));
        let candidate = NodeStatus {
            node_id: NodeId(3),
            role: Role::Candidate,
            term: Term(8),
            ..NodeStatus::default()
        };
        let reply = view_of_reply(&Frame::bulk(candidate.render()));
        assert_eq!(reply, status(3, Role::Candidate, 8, 0));
        // An incomplete status, and a server without RAFT.STATUS.
        assert_eq!(view_of_reply(&Frame::bulk("node_id:3\r\n")), None);
        assert_eq!(view_of_reply(&Frame::error("ERR unknown command")), None);
    }

    #[test]
    fn leader_is_the_endpoint_that_leads_else_the_newest_hint() {
        let endpoints: Vec<String> = (1..=3).map(|i| format!("127.0.0.1:638{i}")).collect();
        let leading = [
            status(1, Role::Follower, 5, 2),
            None,
            status(3, Role::Leader, 5, 3),
        ];
        assert_eq!(
            choose_leader(&endpoints, &leading).as_deref(),
            Some("127.0.0.1:6383")
        );
        let hints = [
            status(1, Role::Follower, 4, 3),
            status(2, Role::Follower, 5, 2),
            None,
        ];
        assert_eq!(
            choose_leader(&endpoints, &hints).as_deref(),
            Some("127.0.0.1:6382")
        );
        let none = [None, status(2, Role::Candidate, 6, 0), None];
        assert_eq!(choose_leader(&endpoints, &none), None);
    }

    #[test]
    fn watch_counts_each_newer_leader_once() {
        let mut watch = LeaderWatch::default();
        let steady = [
            status(1, Role::Leader, 2, 1),
            status(2, Role::Follower, 2, 1),
        ];
        watch.observe(0.0, &steady);
        watch.observe(1.0, &steady);
        assert_eq!(watch.changes, 0);
        // The leader dies: a stale follower still names it, and a candidate knows none.
        watch.observe(2.0, &[None, status(2, Role::Candidate, 3, 0)]);
        assert_eq!((watch.changes, watch.polls_failed), (0, 1));
        watch.observe(3.0, &[None, status(2, Role::Leader, 3, 2)]);
        watch.observe(
            4.0,
            &[
                status(1, Role::Follower, 3, 2),
                status(2, Role::Leader, 3, 2),
            ],
        );
        // A re-election of the same node is still an election.
        watch.observe(
            5.0,
            &[
                status(1, Role::Follower, 4, 2),
                status(2, Role::Leader, 4, 2),
            ],
        );
        assert_eq!(watch.changes, 2);
        let seen: Vec<(f64, u64, u64)> = watch
            .events
            .iter()
            .map(|e| (e.at_secs, e.term.0, e.leader.0))
            .collect();
        assert_eq!(seen, vec![(0.0, 2, 1), (3.0, 3, 2), (5.0, 4, 2)]);
    }
}
