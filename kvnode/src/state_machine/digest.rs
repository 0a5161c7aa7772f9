//! A digest of the replicated state, to check that replicas never diverge
//! (`RAFTKV.DIGEST`, a debug command).
//!
//! It covers what apply decides: every database's index and revision floor, and every
//! stored key with its value, revision and deadline (keys past their deadline not yet
//! reclaimed included: reclamation is itself replicated), plus the effective time. It is
//! FNV-1a (64-bit) over a length-prefixed walk in the key space's fixed order, so two
//! nodes that applied the same entries give the same digest. O(keys + bytes) on the
//! answering node's raft loop: a tool for tests and operators, not for a hot path.

use super::databases::Databases;
use super::{Reply, StateMachine};

struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn bytes(&mut self, data: &[u8]) {
        for &byte in data {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn u64(&mut self, value: u64) {
        self.bytes(&value.to_le_bytes());
    }

    fn framed(&mut self, data: &[u8]) {
        self.u64(data.len() as u64);
        self.bytes(data);
    }
}

/// The digest of `dbs` at effective time `time_ms`, as 16 hex digits.
pub fn digest_hex(dbs: &Databases, time_ms: u64) -> String {
    let mut hash = Fnv::new();
    hash.u64(time_ms);
    for (index, db) in dbs.iter().filter(|(_, db)| !db.is_blank()) {
        hash.u64(u64::from(index.0));
        hash.u64(db.revision_floor);
        hash.u64(db.keys.len() as u64);
        for slot in db.keys.slots() {
            hash.framed(slot.key());
            hash.framed(slot.value());
            hash.u64(slot.revision());
            hash.u64(slot.deadline().unwrap_or(u64::MAX));
        }
    }
    format!("{:016x}", hash.0)
}

/// `RAFTKV.DIGEST`'s reply: `[applied index, effective time, keys stored, digest]`.
pub(super) fn digest_reply(machine: &StateMachine, applied: u64) -> Reply {
    let as_integer = |value: u64| Reply::Integer(i64::try_from(value).unwrap_or(i64::MAX));
    Reply::Array(vec![
        as_integer(applied),
        as_integer(machine.time_ms),
        Reply::count(machine.len()),
        Reply::bulk(digest_hex(&machine.dbs, machine.time_ms)),
    ])
}
