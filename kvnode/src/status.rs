//! The node's status as a typed value: what `RAFT.STATUS`, INFO's `raft` section, the
//! metrics endpoint, kvctl, kvbench and the tests all read. It is rendered as Redis-style
//! `key:value` lines and parsed back here, and nowhere else.

use std::collections::BTreeMap;

use raft_core::{LogIndex, NodeId, Role, Term};
use thiserror::Error;

/// A point-in-time view of one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    pub node_id: NodeId,
    pub role: Role,
    pub term: Term,
    /// The leader this node knows of, if any.
    pub leader: Option<NodeId>,
    /// That leader's client address, when known.
    pub leader_client: Option<String>,
    pub commit_index: LogIndex,
    pub applied_index: LogIndex,
    pub first_index: LogIndex,
    pub last_index: LogIndex,
    pub voters: Vec<NodeId>,
    /// The outgoing voters of a joint configuration (empty otherwise).
    pub voters_outgoing: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    pub keys: u64,
    /// Each database holding a live key: what INFO's `keyspace` section lists. Not part
    /// of the rendered status (RAFT.STATUS has `keys`).
    pub keyspace: Vec<DbKeys>,
    /// Leader only: how far each other member's log matches the leader's.
    pub matched: Vec<(NodeId, LogIndex)>,
    /// The storage backend and where it keeps its files.
    pub storage: String,
    /// Elections this node has won since it started.
    pub elections_won: u64,
    /// Snapshots this node has received from a leader and restored since it started.
    pub snapshots_restored: u64,
}

/// One database's live keys, judged at this node's read time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DbKeys {
    pub db: u32,
    pub keys: u64,
    /// Live keys with a time to live.
    pub expires: u64,
}

/// A status text that does not parse.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StatusError {
    #[error("status field `{0}` is missing")]
    Missing(&'static str),
    #[error("status field `{field}` has an invalid value `{value}`")]
    Invalid { field: String, value: String },
}

/// The name a role has in status text and metrics labels.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Follower => "follower",
        Role::PreCandidate => "precandidate",
        Role::Candidate => "candidate",
        Role::Leader => "leader",
    }
}

/// Every role, in the order metrics list them.
pub const ROLES: [Role; 4] = [
    Role::Follower,
    Role::PreCandidate,
    Role::Candidate,
    Role::Leader,
];

fn parse_role(text: &str) -> Option<Role> {
    ROLES.into_iter().find(|role| role_name(*role) == text)
}

/// A follower at term 0 that knows no leader, with an empty log and no members: the state
/// a node starts from, and the base tests and fake servers fill in with `..Default::default()`.
impl Default for NodeStatus {
    fn default() -> NodeStatus {
        NodeStatus {
            node_id: NodeId::NONE,
            role: Role::Follower,
            term: Term::ZERO,
            leader: None,
            leader_client: None,
            commit_index: LogIndex::ZERO,
            applied_index: LogIndex::ZERO,
            first_index: LogIndex::ZERO,
            last_index: LogIndex::ZERO,
            voters: Vec::new(),
            voters_outgoing: Vec::new(),
            learners: Vec::new(),
            keys: 0,
            keyspace: Vec::new(),
            matched: Vec::new(),
            storage: String::new(),
            elections_won: 0,
            snapshots_restored: 0,
        }
    }
}

impl NodeStatus {
    pub fn is_leader(&self) -> bool {
        self.role == Role::Leader
    }

    /// How many entries `peer` is behind the leader's last index (leader only).
    pub fn lag(&self, peer: NodeId) -> Option<u64> {
        self.matched
            .iter()
            .find(|(id, _)| *id == peer)
            .map(|(_, matched)| self.last_index.0.saturating_sub(matched.0))
    }

    /// The `key:value` lines (CRLF-terminated) of RAFT.STATUS and INFO's `raft` section.
    pub fn render(&self) -> String {
        let list = |ids: &[NodeId]| {
            ids.iter()
                .map(|id| id.0.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut out = format!(
            "node_id:{}\r\nrole:{}\r\nterm:{}\r\nleader_id:{}\r\nleader_client_addr:{}\r\n\
             commit_index:{}\r\napplied_index:{}\r\nfirst_index:{}\r\nlast_log_index:{}\r\n\
             voters:{}\r\nvoters_outgoing:{}\r\nlearners:{}\r\nkeys:{}\r\nstorage:{}\r\n\
             elections_won:{}\r\nsnapshots_restored:{}\r\n",
            self.node_id.0,
            role_name(self.role),
            self.term.0,
            self.leader.map_or(0, |id| id.0),
            self.leader_client.as_deref().unwrap_or(""),
            self.commit_index.0,
            self.applied_index.0,
            self.first_index.0,
            self.last_index.0,
            list(&self.voters),
            list(&self.voters_outgoing),
            list(&self.learners),
            self.keys,
            self.storage,
            self.elections_won,
            self.snapshots_restored,
        );
        for (peer, matched) in &self.matched {
            let lag = self.last_index.0.saturating_sub(matched.0);
            out.push_str(&format!(
                "matched_{}:{}\r\nlag_{}:{lag}\r\n",
                peer.0, matched.0, peer.0
            ));
        }
        out
    }

    /// Parses what [`NodeStatus::render`] wrote (unknown fields are ignored, so a newer
    /// node's status still parses).
    ///
    /// # Errors
    /// A field is missing or holds a value of the wrong kind.
    pub fn parse(text: &str) -> Result<NodeStatus, StatusError> {
        let fields: BTreeMap<&str, &str> = text
            .lines()
            .filter_map(|line| line.trim_end_matches('\r').split_once(':'))
            .collect();
        let get = |name: &'static str| fields.get(name).copied().ok_or(StatusError::Missing(name));
        let invalid = |field: &str, value: &str| StatusError::Invalid {
            field: field.to_owned(),
            value: value.to_owned(),
        };
        let number = |name: &'static str| -> Result<u64, StatusError> {
            let value = get(name)?;
            value.parse().map_err(|_| invalid(name, value))
        };
        let ids = |name: &'static str| -> Result<Vec<NodeId>, StatusError> {
            let value = get(name)?;
            value
                .split(',')
                .filter(|id| !id.is_empty())
                .map(|id| id.parse().map(NodeId).map_err(|_| invalid(name, value)))
                .collect()
        };
        let role_text = get("role")?;
        let leader = number("leader_id")?;
        let leader_client = get("leader_client_addr")?;
        let mut matched = Vec::new();
        for (key, value) in &fields {
            if let Some(peer) = key.strip_prefix("matched_") {
                let peer = peer.parse().map_err(|_| invalid(key, value))?;
                let index = value.parse().map_err(|_| invalid(key, value))?;
                matched.push((NodeId(peer), LogIndex(index)));
            }
        }
        matched.sort();
        Ok(NodeStatus {
            node_id: NodeId(number("node_id")?),
            role: parse_role(role_text).ok_or_else(|| invalid("role", role_text))?,
            term: Term(number("term")?),
            leader: (leader != 0).then_some(NodeId(leader)),
            leader_client: (!leader_client.is_empty()).then(|| leader_client.to_owned()),
            commit_index: LogIndex(number("commit_index")?),
            applied_index: LogIndex(number("applied_index")?),
            first_index: LogIndex(number("first_index")?),
            last_index: LogIndex(number("last_log_index")?),
            voters: ids("voters")?,
            voters_outgoing: ids("voters_outgoing")?,
            learners: ids("learners")?,
            keys: number("keys")?,
            keyspace: Vec::new(),
            matched,
            storage: get("storage")?.to_owned(),
            elections_won: number("elections_won")?,
            snapshots_restored: number("snapshots_restored")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader() -> NodeStatus {
        NodeStatus {
            node_id: NodeId(1),
            role: Role::Leader,
            term: Term(7),
            leader: Some(NodeId(1)),
            leader_client: Some("127.0.0.1:6381".into()),
            commit_index: LogIndex(10),
            applied_index: LogIndex(9),
            first_index: LogIndex(1),
            last_index: LogIndex(12),
            voters: vec![NodeId(1), NodeId(2), NodeId(3)],
            voters_outgoing: vec![],
            learners: vec![NodeId(4)],
            keys: 5,
            keyspace: Vec::new(),
            matched: vec![(NodeId(2), LogIndex(12)), (NodeId(3), LogIndex(8))],
            storage: "wal in data/node-1/wal".into(),
            elections_won: 2,
            snapshots_restored: 1,
        }
    }

    #[test]
    fn what_is_rendered_parses_back_to_the_same_status() {
        let mut follower = leader();
        follower.role = Role::PreCandidate;
        follower.leader = None;
        follower.leader_client = None;
        follower.matched.clear();
        for status in [leader(), follower, NodeStatus::default()] {
            assert_eq!(NodeStatus::parse(&status.render()), Ok(status.clone()));
        }
        assert_eq!(leader().lag(NodeId(3)), Some(4));
        assert!(leader().render().contains("lag_3:4\r\n"));
    }

    #[test]
    fn a_missing_or_malformed_field_is_named() {
        let text = leader().render();
        let without_term = text.replace("term:7\r\n", "");
        assert_eq!(
            NodeStatus::parse(&without_term),
            Err(StatusError::Missing("term"))
        );
        let bad_role = text.replace("role:leader", "role:boss");
        assert_eq!(
            NodeStatus::parse(&bad_role),
            Err(StatusError::Invalid {
                field: "role".into(),
                value: "boss".into()
            })
        );
    }
}
