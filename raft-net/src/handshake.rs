//! The handshake: the first frame each end writes on a connection.
//!
//! The dialing node's hello says who it is (`from`), whom it meant to reach (`to`) and
//! which cluster it belongs to; the protocol version is the frame's version byte (see
//! `codec`). The accepting node checks all of it before it hands any message on, so nodes
//! of two clusters, a node dialing a stale address, or two processes started with the same
//! id never exchange Raft messages. If it accepts, it answers with a welcome of the same
//! shape (`from` = itself), which the dialer checks in turn before it writes anything
//! else; a refused dialer sees its connection closed and retries with backoff.
//!
//! With a cluster secret the hello carries the dialer's nonce, and two frames come between
//! it and the welcome: the acceptor's [`Challenge`] (its nonce and its proof) and the
//! dialer's [`Proof`]; the acceptor decides on the hello only once that proof checks out
//! (see `secret` and PROTOCOL.md, "Proving identity").

use std::fmt;

use raft_core::NodeId;
use serde::{Deserialize, Serialize};

use crate::error::RejectReason;
use crate::secret::{Nonce, Proof};

/// Identifies one raftkv cluster; chosen by the operator and never reused.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClusterId(pub u64);

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// "RKVN" in ASCII: catches a client of some other protocol (say redis-cli) dialing the
/// peer port before anything else is interpreted.
pub const HANDSHAKE_MAGIC: u32 = 0x524b_564e;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handshake {
    /// Always [`HANDSHAKE_MAGIC`].
    pub magic: u32,
    pub cluster_id: ClusterId,
    /// The dialing node. Every message on the connection must carry this `from`.
    pub from: NodeId,
    /// The node the dialer meant to reach; catches stale or mistyped addresses.
    pub to: NodeId,
    /// In a hello: the dialer's nonce, present exactly when it proves a cluster secret.
    /// In a welcome: always absent.
    pub nonce: Option<Nonce>,
}

/// The acceptor's answer to a hello carrying a nonce: its own nonce, and its proof over
/// both (role "acceptor").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    pub nonce: Nonce,
    pub proof: Proof,
}

impl Handshake {
    /// A hello or welcome without a nonce.
    pub fn new(cluster_id: ClusterId, from: NodeId, to: NodeId) -> Handshake {
        Handshake {
            magic: HANDSHAKE_MAGIC,
            cluster_id,
            from,
            to,
            nonce: None,
        }
    }

    /// A hello carrying the dialer's `nonce`: it will prove the cluster secret.
    pub fn with_nonce(self, nonce: Nonce) -> Handshake {
        Handshake {
            nonce: Some(nonce),
            ..self
        }
    }

    /// Checks a received handshake against this node's identity. (The version byte was
    /// already checked when the frame was decoded.)
    ///
    /// # Errors
    /// The first rule the handshake breaks, to be logged and counted by the caller.
    pub fn check(&self, cluster_id: ClusterId, local_id: NodeId) -> Result<(), RejectReason> {
        if self.magic != HANDSHAKE_MAGIC {
            return Err(RejectReason::BadMagic { magic: self.magic });
        }
        if self.cluster_id != cluster_id {
            return Err(RejectReason::ClusterMismatch {
                ours: cluster_id,
                theirs: self.cluster_id,
            });
        }
        if self.to != local_id {
            return Err(RejectReason::WrongReceiver {
                ours: local_id,
                addressed_to: self.to,
            });
        }
        if self.from == local_id {
            return Err(RejectReason::SenderIsSelf { id: local_id });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::RejectClass;

    #[test]
    fn handshake_check_table() {
        let ours = ClusterId(7);
        let me = NodeId(1);
        let good = Handshake::new(ours, NodeId(2), me);
        let cases: Vec<(&str, Handshake, Option<&str>)> = vec![
            ("valid", good, None),
            ("bad magic", Handshake { magic: 0, ..good }, Some("magic")),
            (
                "other cluster",
                Handshake::new(ClusterId(8), NodeId(2), me),
                Some("cluster"),
            ),
            (
                "addressed to someone else",
                Handshake::new(ours, NodeId(2), NodeId(3)),
                Some("meant to reach"),
            ),
            (
                "claims our id",
                Handshake::new(ours, me, me),
                Some("own id"),
            ),
        ];
        for (name, handshake, want) in cases {
            let got = handshake.check(ours, me);
            match (got, want) {
                (Ok(()), None) => {}
                (Err(reason), Some(text)) => {
                    assert!(reason.to_string().contains(text), "{name}: {reason}");
                    assert_eq!(reason.class(), RejectClass::Handshake, "{name}");
                }
                (got, want) => panic!("{name}: got {got:?}, wanted {want:?}"),
            }
        }
    }
}
