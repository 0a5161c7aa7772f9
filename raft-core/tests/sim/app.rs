//! The application each simulated node runs: a digest chain over applied commands, so two
//! nodes that applied different entries at any index end with different digests.

use bytes::Bytes;
use raft_core::{Entry, EntryPayload, LogIndex};

/// Padding added to snapshots so they span several InstallSnapshot chunks.
pub const SNAPSHOT_PADDING_BYTES: usize = 3000;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppState {
    pub applied: LogIndex,
    pub digest: u64,
}

impl AppState {
    pub fn apply(&mut self, entry: &Entry) {
        assert_eq!(
            entry.index,
            self.applied.next(),
            "entries must be applied in order without gaps"
        );
        self.applied = entry.index;
        self.digest = chain(self.digest, entry);
    }

    pub fn to_snapshot_data(self) -> Bytes {
        let mut data = Vec::with_capacity(16 + SNAPSHOT_PADDING_BYTES);
        data.extend_from_slice(&self.applied.0.to_le_bytes());
        data.extend_from_slice(&self.digest.to_le_bytes());
        data.extend((0..SNAPSHOT_PADDING_BYTES).map(|i| (i as u64 ^ self.digest) as u8));
        Bytes::from(data)
    }

    pub fn from_snapshot_data(data: &[u8]) -> AppState {
        if data.is_empty() {
            return AppState::default();
        }
        assert_eq!(data.len(), 16 + SNAPSHOT_PADDING_BYTES, "snapshot size");
        let applied = u64::from_le_bytes(data[0..8].try_into().unwrap());
        let digest = u64::from_le_bytes(data[8..16].try_into().unwrap());
        for (i, byte) in data[16..].iter().enumerate() {
            assert_eq!(
                *byte,
                (i as u64 ^ digest) as u8,
                "snapshot padding corrupted in transfer"
            );
        }
        AppState {
            applied: LogIndex(applied),
            digest,
        }
    }
}

pub fn chain(digest: u64, entry: &Entry) -> u64 {
    let mut h = digest ^ 0xcbf2_9ce4_8422_2325;
    let mut mix = |byte: u8| {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0100_0000_01b3);
    };
    for byte in entry
        .index
        .0
        .to_le_bytes()
        .iter()
        .chain(&entry.term.0.to_le_bytes())
    {
        mix(*byte);
    }
    match &entry.payload {
        EntryPayload::Blank => mix(0),
        EntryPayload::Command(data) => {
            mix(1);
            data.iter().for_each(|b| mix(*b));
        }
        EntryPayload::Membership { membership, .. } => {
            mix(2);
            format!("{membership:?}").bytes().for_each(&mut mix);
        }
    }
    h
}

/// A digest of one entry's content (not its position), for log-matching checks.
pub fn entry_digest(entry: &Entry) -> u64 {
    chain(0, entry)
}
