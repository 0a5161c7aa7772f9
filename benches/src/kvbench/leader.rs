//! Finding the leader, and counting leader changes, through `RAFT.STATUS`.
//!
//! RAFT.STATUS replies with `key:value` lines (like INFO); the fields used here are `node_id`,
//! `role`, `term`, `leader_id` (0 when unknown) and `leader_client_addr` (empty when unknown).
//! A server without RAFT.STATUS (e.g. plain Redis) simply has no leader: connections go to the
//! first endpoint and no leader change is ever seen. With `--protocol etcd` the same fields come
//! from etcd's Status call (member ids instead of node ids).

use std::time::Duration;

use kvnode::resp::Frame;
use tokio::time::Instant;

use super::client::call_once;
use super::options::Protocol;

/// Most leader-change events kept for the report; later ones are only counted.
pub const EVENTS_MAX: usize = 1000;

/// The fields of one RAFT.STATUS reply that kvbench uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaftStatus {
    pub node_id: u64,
    pub role: String,
    pub term: u64,
    /// 0 when the node knows no leader.
    pub leader_id: u64,
    pub leader_client_addr: Option<String>,
}

/// Parses a RAFT.STATUS reply body; `None` if a needed field is missing or not a number.
pub fn parse_status(text: &str) -> Option<RaftStatus> {
    let field = |name: &str| {
        text.lines()
            .filter_map(|line| line.trim_end_matches('\r').split_once(':'))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.trim().to_owned())
    };
    Some(RaftStatus {
        node_id: field("node_id")?.parse().ok()?,
        role: field("role")?,
        term: field("term")?.parse().ok()?,
        leader_id: field("leader_id")?.parse().ok()?,
        leader_client_addr: field("leader_client_addr").filter(|addr| !addr.is_empty()),
    })
}

/// Asks `endpoint` for its RAFT.STATUS (or etcd Status) before `deadline`; `None` on any
/// failure.
pub async fn query_status(
    protocol: Protocol,
    endpoint: &str,
    deadline: Instant,
) -> Option<RaftStatus> {
    match protocol {
        Protocol::Redis => match call_once(endpoint, &["RAFT.STATUS"], deadline).await {
            Ok(Frame::Bulk(text)) => parse_status(&String::from_utf8_lossy(&text)),
            _ => None,
        },
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
) -> Vec<Option<RaftStatus>> {
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
pub fn choose_leader(endpoints: &[String], statuses: &[Option<RaftStatus>]) -> Option<String> {
    let leading = endpoints
        .iter()
        .zip(statuses)
        .find(|(_, status)| status.as_ref().is_some_and(|s| s.role == "leader"));
    if let Some((endpoint, _)) = leading {
        return Some(endpoint.clone());
    }
    statuses
        .iter()
        .flatten()
        .filter(|status| status.leader_id != 0)
        .max_by_key(|status| status.term)
        .and_then(|status| status.leader_client_addr.clone())
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
    pub term: u64,
    pub leader_id: u64,
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
    current: Option<(u64, u64)>,
}

impl LeaderWatch {
    /// Records one poll round. A change is a known leader in a term above the last known
    /// leader's: a re-elected same node counts too (it was an election).
    pub fn observe(&mut self, at_secs: f64, statuses: &[Option<RaftStatus>]) {
        self.polls_failed += statuses.iter().filter(|status| status.is_none()).count() as u64;
        let newest = statuses
            .iter()
            .flatten()
            .filter(|status| status.leader_id != 0)
            .max_by_key(|status| status.term);
        let Some(status) = newest else { return };
        let is_newer = self.current.is_none_or(|(term, _)| status.term > term);
        if !is_newer {
            return;
        }
        if self.current.is_some() {
            self.changes += 1;
        }
        self.current = Some((status.term, status.leader_id));
        if self.events.len() < EVENTS_MAX {
            self.events.push(LeaderEvent {
                at_secs,
                term: status.term,
                leader_id: status.leader_id,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "node_id:2\r\nrole:follower\r\nterm:7\r\nleader_id:1\r\nleader_client_addr:127.0.0.1:6381\r\ncommit_index:10\r\n";

    fn status(node_id: u64, role: &str, term: u64, leader_id: u64) -> Option<RaftStatus> {
        Some(RaftStatus {
            node_id,
            role: role.to_owned(),
            term,
            leader_id,
            leader_client_addr: (leader_id != 0).then(|| format!("127.0.0.1:638{leader_id}")),
        })
    }

    #[test]
    fn status_lines_parse_and_empty_address_is_none() {
        assert_eq!(parse_status(STATUS), status(2, "follower", 7, 1));
        let no_leader =
            "node_id:3\r\nrole:candidate\r\nterm:8\r\nleader_id:0\r\nleader_client_addr:\r\n";
        assert_eq!(parse_status(no_leader), status(3, "candidate", 8, 0));
        assert_eq!(parse_status("role:leader\r\n"), None);
        assert_eq!(
            parse_status("node_id:x\r\nrole:leader\r\nterm:1\r\nleader_id:1\r\n"),
            None
        );
    }

    #[test]
    fn leader_is_the_endpoint_that_leads_else_the_newest_hint() {
        let endpoints: Vec<String> = (1..=3).map(|i| format!("127.0.0.1:638{i}")).collect();
        let leading = [status(1, "follower", 5, 2), None, status(3, "leader", 5, 3)];
        assert_eq!(
            choose_leader(&endpoints, &leading).as_deref(),
            Some("127.0.0.1:6383")
        );
        let hints = [
            status(1, "follower", 4, 3),
            status(2, "follower", 5, 2),
            None,
        ];
        assert_eq!(
            choose_leader(&endpoints, &hints).as_deref(),
            Some("127.0.0.1:6382")
        );
        let none = [None, status(2, "candidate", 6, 0), None];
        assert_eq!(choose_leader(&endpoints, &none), None);
    }

    #[test]
    fn watch_counts_each_newer_leader_once() {
        let mut watch = LeaderWatch::default();
        watch.observe(
            0.0,
            &[status(1, "leader", 2, 1), status(2, "follower", 2, 1)],
        );
        watch.observe(
            1.0,
            &[status(1, "leader", 2, 1), status(2, "follower", 2, 1)],
        );
        assert_eq!(watch.changes, 0);
        // The leader dies: a stale follower still names it, and a candidate knows none.
        watch.observe(2.0, &[None, status(2, "candidate", 3, 0)]);
        assert_eq!((watch.changes, watch.polls_failed), (0, 1));
        watch.observe(3.0, &[None, status(2, "leader", 3, 2)]);
        watch.observe(
            4.0,
            &[status(1, "follower", 3, 2), status(2, "leader", 3, 2)],
        );
        // A re-election of the same node is still an election.
        watch.observe(
            5.0,
            &[status(1, "follower", 4, 2), status(2, "leader", 4, 2)],
        );
        assert_eq!(watch.changes, 2);
        let seen: Vec<(f64, u64, u64)> = watch
            .events
            .iter()
            .map(|e| (e.at_secs, e.term, e.leader_id))
            .collect();
        assert_eq!(seen, vec![(0.0, 2, 1), (3.0, 3, 2), (5.0, 4, 2)]);
    }
}
