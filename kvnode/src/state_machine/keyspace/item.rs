//! One key, its value and its metadata: the unit the key space stores.
//!
//! The key and the value share one allocation (an [`Item`]); the metadata (modification
//! revision, deadline) lives beside it in the [`Slot`], so changing a TTL or a revision
//! rewrites 16 bytes in place and never copies the value.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

/// The stored form of "no deadline". Deadlines are Unix milliseconds that fit in an `i64`
/// (Redis' range), so this value is never a real deadline.
pub const NO_DEADLINE: u64 = u64::MAX;

/// One key and its value in a single shared allocation: `key_len: u32le, key, value`.
#[derive(Clone)]
pub struct Item(Arc<[u8]>);

impl Item {
    pub(super) fn new(key: &[u8], value: &[u8]) -> Item {
        let key_len = u32::try_from(key.len()).expect("keys are capped far below 4 GiB");
        let mut joined = Vec::with_capacity(4 + key.len() + value.len());
        joined.extend_from_slice(&key_len.to_le_bytes());
        joined.extend_from_slice(key);
        joined.extend_from_slice(value);
        Item(Arc::from(joined))
    }

    fn key_len(&self) -> usize {
        let prefix: [u8; 4] = self.0[..4]
            .try_into()
            .expect("an item starts with its key length");
        u32::from_le_bytes(prefix) as usize
    }

    pub fn key(&self) -> &[u8] {
        &self.0[4..4 + self.key_len()]
    }

    pub fn value(&self) -> &[u8] {
        &self.0[4 + self.key_len()..]
    }

    /// The value as `Bytes` sharing this item's allocation (no copy of the value).
    pub fn into_value(self) -> Bytes {
        Bytes::from_owner(self)
    }

    pub(super) fn data_bytes(&self) -> usize {
        self.0.len() - 4
    }
}

impl AsRef<[u8]> for Item {
    /// The value: what [`Bytes::from_owner`] exposes.
    fn as_ref(&self) -> &[u8] {
        self.value()
    }
}

impl fmt::Debug for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} => {:?}",
            Bytes::copy_from_slice(self.key()),
            Bytes::copy_from_slice(self.value())
        )
    }
}

/// A key's place in the key space, its item and its metadata.
#[derive(Clone, Debug)]
pub struct Slot {
    pub(super) position: u64,
    pub(super) item: Item,
    /// The log index of the key's last change (0: written by a legacy, revision-less entry).
    pub(super) revision: u64,
    /// Unix milliseconds after which the key is gone, or [`NO_DEADLINE`].
    pub(super) deadline: u64,
}

impl Slot {
    pub(super) fn order(&self, position: u64, key: &[u8]) -> std::cmp::Ordering {
        self.position
            .cmp(&position)
            .then_with(|| self.item.key().cmp(key))
    }

    pub fn key(&self) -> &[u8] {
        self.item.key()
    }

    pub fn value(&self) -> &[u8] {
        self.item.value()
    }

    /// The item (key and value), shareable without copying.
    pub fn item(&self) -> &Item {
        &self.item
    }

    /// The log index of the key's last change, as stored (see
    /// [`crate::state_machine::Databases`] for the database's floor).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The deadline in Unix milliseconds, if the key has one.
    pub fn deadline(&self) -> Option<u64> {
        (self.deadline != NO_DEADLINE).then_some(self.deadline)
    }

    /// Gone at `now` (Unix ms)? Redis' rule: a key lives through its deadline's
    /// millisecond and is gone once the clock is past it.
    pub fn expired_at(&self, now: u64) -> bool {
        self.deadline != NO_DEADLINE && now > self.deadline
    }
}
