//! The cluster secret: a key every node of a cluster shares, proved in the handshake
//! without being sent (PROTOCOL.md, "Proving identity").
//!
//! Each side of a connection contributes a fresh random [`Nonce`]; each proves it holds
//! the secret with an HMAC-SHA256 over both nonces, both node ids, the cluster id and its
//! own role ([`Proof`]). Because both nonces are fresh, a proof recorded from one
//! connection is worthless on another; because the role is part of the input, the proof an
//! acceptor writes cannot be reflected back to it as a dialer's. What it does not give is
//! protection against an on-path attacker after the handshake: frames are not
//! authenticated one by one (that is what TLS is for).
//!
//! Must never: log or `Debug`-print the key, or compare proofs other than in constant time.

use std::fmt;

use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use raft_core::NodeId;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::handshake::ClusterId;

/// Fewest bytes a secret may have: 32 bytes is HMAC-SHA256's key size, so a random secret
/// of that length is as strong as the MAC (a shorter one can be guessed offline from a
/// recorded proof).
pub const SECRET_BYTES_MIN: usize = 32;
/// Most bytes a secret may have (a bound on what is read from its file).
pub const SECRET_BYTES_MAX: usize = 1024;

/// Bytes of a nonce and of a proof.
pub const NONCE_BYTES: usize = 32;
pub const PROOF_BYTES: usize = 32;

/// What every proof's input starts with, so that these MACs can never be confused with
/// MACs of the same key made for another purpose.
const PROOF_LABEL: &[u8] = b"raftkv-net proof v4";

/// A fresh random value one side of a handshake contributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nonce(pub [u8; NONCE_BYTES]);

impl Nonce {
    /// A nonce from the operating system's random number generator.
    ///
    /// # Panics
    /// If the operating system cannot provide randomness (a broken machine: no handshake
    /// could then be trusted).
    pub fn random() -> Nonce {
        let mut bytes = [0u8; NONCE_BYTES];
        SystemRandom::new()
            .fill(&mut bytes)
            .expect("the operating system provides random bytes");
        Nonce(bytes)
    }
}

/// HMAC-SHA256 proving knowledge of the cluster secret for one handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof(pub [u8; PROOF_BYTES]);

/// Which side of a connection a proof speaks for; part of the MAC's input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProofRole {
    Acceptor = 1,
    Dialer = 2,
}

/// Everything a proof covers besides the role: who dialled whom, in which cluster, with
/// which nonces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProofContext {
    pub cluster_id: ClusterId,
    pub dialer: NodeId,
    pub acceptor: NodeId,
    pub dialer_nonce: Nonce,
    pub acceptor_nonce: Nonce,
}

impl ProofContext {
    /// The MAC input: label, role byte, then fixed-width fields (so no two different
    /// contexts share an encoding).
    fn input(&self, role: ProofRole) -> Vec<u8> {
        let mut input = Vec::with_capacity(PROOF_LABEL.len() + 1 + 24 + 2 * NONCE_BYTES);
        input.extend_from_slice(PROOF_LABEL);
        input.push(role as u8);
        input.extend_from_slice(&self.cluster_id.0.to_be_bytes());
        input.extend_from_slice(&self.dialer.get().to_be_bytes());
        input.extend_from_slice(&self.acceptor.get().to_be_bytes());
        input.extend_from_slice(&self.dialer_nonce.0);
        input.extend_from_slice(&self.acceptor_nonce.0);
        input
    }
}

/// The shared key. Cheap to clone; never printed.
#[derive(Clone)]
pub struct ClusterSecret {
    key: hmac::Key,
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(redacted)")
    }
}

impl ClusterSecret {
    /// # Errors
    /// `InvalidSecret` if `bytes` is shorter than [`SECRET_BYTES_MIN`] or longer than
    /// [`SECRET_BYTES_MAX`].
    pub fn new(bytes: &[u8]) -> Result<ClusterSecret> {
        if !(SECRET_BYTES_MIN..=SECRET_BYTES_MAX).contains(&bytes.len()) {
            return Err(Error::InvalidSecret {
                secret_bytes: bytes.len(),
            });
        }
        Ok(ClusterSecret {
            key: hmac::Key::new(hmac::HMAC_SHA256, bytes),
        })
    }

    /// The proof `role` writes for `context`.
    pub fn prove(&self, role: ProofRole, context: &ProofContext) -> Proof {
        let tag = hmac::sign(&self.key, &context.input(role));
        let mut proof = [0u8; PROOF_BYTES];
        proof.copy_from_slice(tag.as_ref());
        Proof(proof)
    }

    /// Whether `proof` is the one `role` must write for `context` (constant time).
    pub fn verify(&self, role: ProofRole, context: &ProofContext, proof: &Proof) -> bool {
        hmac::verify(&self.key, &context.input(role), &proof.0).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> ProofContext {
        ProofContext {
            cluster_id: ClusterId(7),
            dialer: NodeId(1),
            acceptor: NodeId(2),
            dialer_nonce: Nonce([1; NONCE_BYTES]),
            acceptor_nonce: Nonce([2; NONCE_BYTES]),
        }
    }

    fn secret(fill: u8) -> ClusterSecret {
        ClusterSecret::new(&[fill; SECRET_BYTES_MIN]).expect("long enough")
    }

    /// A proof verifies only with the same secret, role and every field of the context.
    #[test]
    fn proof_binds_secret_role_ids_and_both_nonces() {
        let good = context();
        let proof = secret(9).prove(ProofRole::Dialer, &good);
        assert!(secret(9).verify(ProofRole::Dialer, &good, &proof));
        let cases: Vec<(&str, ClusterSecret, ProofRole, ProofContext)> = vec![
            ("other secret", secret(8), ProofRole::Dialer, good),
            ("reflected role", secret(9), ProofRole::Acceptor, good),
            (
                "other cluster",
                secret(9),
                ProofRole::Dialer,
                ProofContext {
                    cluster_id: ClusterId(8),
                    ..good
                },
            ),
            (
                "ids swapped",
                secret(9),
                ProofRole::Dialer,
                ProofContext {
                    dialer: NodeId(2),
                    acceptor: NodeId(1),
                    ..good
                },
            ),
            (
                "replayed with a new acceptor nonce",
                secret(9),
                ProofRole::Dialer,
                ProofContext {
                    acceptor_nonce: Nonce([3; NONCE_BYTES]),
                    ..good
                },
            ),
            (
                "replayed with a new dialer nonce",
                secret(9),
                ProofRole::Dialer,
                ProofContext {
                    dialer_nonce: Nonce([3; NONCE_BYTES]),
                    ..good
                },
            ),
        ];
        for (name, secret, role, context) in cases {
            assert!(!secret.verify(role, &context, &proof), "{name}");
        }
    }

    #[test]
    fn secret_length_is_bounded_both_ways() {
        for (len, ok) in [
            (0, false),
            (SECRET_BYTES_MIN - 1, false),
            (SECRET_BYTES_MIN, true),
            (SECRET_BYTES_MAX, true),
            (SECRET_BYTES_MAX + 1, false),
        ] {
            assert_eq!(ClusterSecret::new(&vec![1; len]).is_ok(), ok, "{len} bytes");
        }
        let printed = format!("{:?}", secret(0x41));
        assert!(
            !printed.contains("41") && !printed.contains('A'),
            "{printed}"
        );
    }

    #[test]
    fn random_nonces_differ() {
        assert_ne!(Nonce::random(), Nonce::random());
    }
}
