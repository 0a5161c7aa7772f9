//! Domain numbers and the log entry.
//!
//! Terms, indexes and node ids are newtypes so that a term can never be passed where an
//! index is expected; all three are plain `u64`s on disk and on the wire.

use bytes::Bytes;
use std::fmt;

use crate::membership::Membership;

macro_rules! number_newtype {
    ($(#[$meta:meta])* $name:ident, $prefix:literal) => {
        $(#[$meta])*
        #[derive(Copy, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
        pub struct $name(pub u64);

        impl $name {
            pub const ZERO: $name = $name(0);

            pub fn get(self) -> u64 {
                self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", $prefix, self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

number_newtype!(
    /// A server's identity; unique within a cluster and never reused. 0 means "nobody".
    NodeId,
    "n"
);
number_newtype!(
    /// A Raft term (§5.1): a logical clock that only moves forward.
    Term,
    "t"
);
number_newtype!(
    /// A position in the replicated log. Index 0 is the empty prefix; entries start at 1.
    LogIndex,
    "i"
);

impl NodeId {
    /// Used in `vote` and `leader` fields to say "none".
    pub const NONE: NodeId = NodeId(0);

    pub fn is_none(self) -> bool {
        self.0 == 0
    }
}

impl Term {
    pub fn next(self) -> Term {
        Term(self.0.checked_add(1).expect("term overflow"))
    }
}

impl LogIndex {
    pub fn next(self) -> LogIndex {
        LogIndex(self.0.checked_add(1).expect("log index overflow"))
    }

    /// The index before this one; `prev` of 0 is 0 (the empty prefix has no predecessor).
    pub fn prev(self) -> LogIndex {
        LogIndex(self.0.saturating_sub(1))
    }

    pub fn plus(self, n: u64) -> LogIndex {
        LogIndex(self.0.checked_add(n).expect("log index overflow"))
    }

    /// Number of indexes in `[self, end)`; zero if `end <= self`.
    pub fn distance_to(self, end: LogIndex) -> u64 {
        end.0.saturating_sub(self.0)
    }
}

/// What an entry carries.
#[derive(Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum EntryPayload {
    /// Appended by every new leader so it can commit an entry of its own term (§5.4.2, §8).
    Blank,
    /// An application command, opaque to Raft.
    Command(Bytes),
    /// A new cluster configuration, in effect on each node as soon as it is appended (§6).
    /// `context` is opaque application data (kvnode puts the new members' addresses there).
    Membership {
        membership: Membership,
        context: Bytes,
    },
}

impl fmt::Debug for EntryPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryPayload::Blank => write!(f, "blank"),
            EntryPayload::Command(data) => write!(f, "cmd({}B)", data.len()),
            EntryPayload::Membership { membership, .. } => write!(f, "conf{membership:?}"),
        }
    }
}

/// One record of the replicated log.
#[derive(Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Entry {
    pub index: LogIndex,
    pub term: Term,
    pub payload: EntryPayload,
}

impl Entry {
    /// Fixed per-entry overhead counted by byte budgets, so a run of blank entries is not free.
    pub const OVERHEAD_BYTES: u64 = 24;

    /// Approximate encoded size, used for batching and flow-control budgets.
    pub fn size_bytes(&self) -> u64 {
        let payload = match &self.payload {
            EntryPayload::Blank => 0,
            EntryPayload::Command(data) => data.len(),
            EntryPayload::Membership {
                membership,
                context,
            } => context.len() + 8 * membership.node_count(),
        };
        Self::OVERHEAD_BYTES + u64::try_from(payload).expect("usize fits in u64")
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}:{:?}", self.index.0, self.term.0, self.payload)
    }
}

/// State that must be durable before any message that depends on it leaves the node.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct HardState {
    pub term: Term,
    /// The candidate this node voted for in `term`, or `NodeId::NONE`.
    pub vote: NodeId,
    /// Highest index known committed. Persisting it is an optimisation (restart need not
    /// wait for the leader to re-announce it), not a safety requirement.
    pub commit: LogIndex,
}

/// Describes the log prefix a snapshot replaces.
#[derive(Clone, Default, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SnapshotMeta {
    /// Last index the snapshot covers.
    pub index: LogIndex,
    /// Term of the entry at `index`.
    pub term: Term,
    /// The configuration in effect at `index`.
    pub membership: Membership,
}

/// A point-in-time image of the application state plus where in the log it stands.
#[derive(Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Snapshot {
    pub meta: SnapshotMeta,
    pub data: Bytes,
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "snap({}@{} {:?} {}B)",
            self.meta.index.0,
            self.meta.term.0,
            self.meta.membership,
            self.data.len()
        )
    }
}
