//! One chain of size limits, from a client's request to a WAL record and a peer frame,
//! derived from each other and checked together at start, so that whatever a client may
//! send, every layer can carry: a value too large is refused to the client, never by the
//! log or the transport after the request was accepted.
//!
//! ```text
//! key_bytes_max, value_bytes_max          what one key and one value may be (settings)
//!   <= entry_bytes_max                    one log entry: a write, a transaction, a
//!                                         configuration change (setting; at least one
//!                                         SET of the largest key and value)
//!   -> client request cap                 a RESP request that could make such an entry
//!   -> raft entry cap                     raft-core refuses larger proposals
//!   -> peer frame                         one AppendEntries carrying the largest entry, or
//!                                         a full batch, or a snapshot chunk
//!   <= WAL record payload                 what one segment holds (wal_segment_bytes)
//! ```
//!
//! Every node of a cluster must run with the same limits: a frame larger than a peer's
//! cap is dropped there (and counted).

use anyhow::{bail, Result};

use crate::resp::Limits;

/// What the entry encoding adds to a command's keys and values (tags, lengths, the
/// leader's stamp), with room to spare.
pub const ENTRY_ENCODING_SLACK_BYTES: usize = 4 << 10;
/// What a peer message adds around its entries or snapshot chunk (header fields, and per
/// entry its index, term and length).
const MESSAGE_OVERHEAD_BYTES: usize = 64 << 10;
const MESSAGE_PER_ENTRY_BYTES: usize = 64;
/// What RESP adds per argument (`$<len>\r\n` and `\r\n`).
const RESP_PER_ARGUMENT_BYTES: usize = 16;

/// The derived limits; see the module documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SizeLimits {
    pub key_bytes_max: usize,
    pub value_bytes_max: usize,
    pub entry_bytes_max: usize,
    pub peer_frame_bytes_max: usize,
}

/// The settings the chain is derived from.
pub struct LimitSettings {
    pub key_bytes_max: usize,
    pub value_bytes_max: usize,
    /// `None`: room for an MSET of two of the largest key/value pairs.
    pub entry_bytes_max: Option<usize>,
    /// `None` for memory storage.
    pub wal_segment_bytes: Option<u64>,
}

impl SizeLimits {
    /// Derives and checks the chain.
    ///
    /// # Errors
    /// `invalid config: KEY: reason` naming the settings that do not fit together.
    pub fn derive(settings: &LimitSettings) -> Result<SizeLimits> {
        let (key, value) = (settings.key_bytes_max, settings.value_bytes_max);
        let one_set = key
            .checked_add(value)
            .and_then(|sum| sum.checked_add(ENTRY_ENCODING_SLACK_BYTES))
            .ok_or_else(|| anyhow::anyhow!("invalid config: value_bytes_max: too large"))?;
        let entry = match settings.entry_bytes_max {
            Some(entry) => entry,
            None => one_set.saturating_mul(2),
        };
        if entry < one_set {
            bail!(
                "invalid config: entry_bytes_max: {entry} cannot hold one SET of the largest key and value \
                 (key_bytes_max {key} + value_bytes_max {value} + {ENTRY_ENCODING_SLACK_BYTES} bytes of encoding); \
                 raise entry_bytes_max or lower value_bytes_max"
            );
        }
        let raft = raft_core::Config::new(raft_core::NodeId(1));
        let batch_bytes = usize::try_from(raft.append_bytes_max).unwrap_or(usize::MAX);
        let batch_entries = usize::try_from(raft.append_entries_max).unwrap_or(usize::MAX);
        let chunk_bytes = usize::try_from(raft.snapshot_chunk_bytes).unwrap_or(usize::MAX);
        let peer_frame = entry
            .max(batch_bytes)
            .max(chunk_bytes)
            .saturating_add(batch_entries.saturating_mul(MESSAGE_PER_ENTRY_BYTES))
            .saturating_add(MESSAGE_OVERHEAD_BYTES);
        if u32::try_from(peer_frame).is_err() {
            bail!(
                "invalid config: entry_bytes_max: {entry} makes peer frames of {peer_frame} bytes, \
                 over the transport's 4 GiB frame limit; lower entry_bytes_max or value_bytes_max"
            );
        }
        if let Some(segment_bytes) = settings.wal_segment_bytes {
            let wal = raft_wal::WalConfig {
                segment_bytes,
                ..raft_wal::WalConfig::default()
            };
            if let Err(invalid) = wal.validate() {
                bail!("invalid config: wal_segment_bytes: {invalid}");
            }
            let record_max = wal.record_payload_bytes_max();
            if (entry as u64) > record_max {
                bail!(
                    "invalid config: wal_segment_bytes: a segment of {segment_bytes} bytes holds log entries of \
                     at most {record_max} bytes, but entry_bytes_max is {entry} (from value_bytes_max {value} and \
                     key_bytes_max {key}); raise wal_segment_bytes or lower entry_bytes_max / value_bytes_max"
                );
            }
        }
        Ok(SizeLimits {
            key_bytes_max: key,
            value_bytes_max: value,
            entry_bytes_max: entry,
            peer_frame_bytes_max: peer_frame,
        })
    }

    /// The caps of the RESP request decoder: any request that could make an entry within
    /// `entry_bytes_max` is read whole; larger ones are refused before they are buffered.
    pub fn resp(&self) -> Limits {
        let defaults = Limits::default();
        let frame = self.entry_bytes_max.saturating_add(
            defaults
                .array_elements_max
                .saturating_mul(RESP_PER_ARGUMENT_BYTES),
        );
        Limits {
            bulk_bytes_max: self.value_bytes_max.max(self.key_bytes_max),
            frame_bytes_max: frame,
            ..defaults
        }
    }

    /// raft-core's cap on one proposal, in its own measure ([`raft_core::Entry::size_bytes`]).
    pub fn raft_entry_bytes_max(&self) -> u64 {
        self.entry_bytes_max as u64 + raft_core::Entry::OVERHEAD_BYTES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> LimitSettings {
        LimitSettings {
            key_bytes_max: 64 << 10,
            value_bytes_max: 8 << 20,
            entry_bytes_max: None,
            wal_segment_bytes: Some(64 << 20),
        }
    }

    #[test]
    fn the_defaults_form_a_chain_every_layer_can_carry() {
        let limits = SizeLimits::derive(&settings()).expect("defaults fit");
        assert!(limits.entry_bytes_max >= (8 << 20) + (64 << 10));
        assert!(limits.peer_frame_bytes_max > limits.entry_bytes_max);
        let resp = limits.resp();
        assert_eq!(resp.validate(), Ok(()));
        assert!(resp.frame_bytes_max >= limits.entry_bytes_max);
        let wal = raft_wal::WalConfig::default();
        assert!(wal.record_payload_bytes_max() >= limits.entry_bytes_max as u64);
    }

    #[test]
    fn combinations_that_do_not_fit_are_refused_naming_their_keys() {
        let cases: Vec<(LimitSettings, &[&str])> = vec![
            (
                LimitSettings {
                    wal_segment_bytes: Some(1 << 20),
                    ..settings()
                },
                &["wal_segment_bytes", "value_bytes_max"],
            ),
            (
                LimitSettings {
                    entry_bytes_max: Some(1 << 20),
                    ..settings()
                },
                &["entry_bytes_max", "value_bytes_max"],
            ),
            (
                LimitSettings {
                    wal_segment_bytes: Some(1000),
                    ..settings()
                },
                &["wal_segment_bytes"],
            ),
            (
                LimitSettings {
                    value_bytes_max: 3 << 30,
                    wal_segment_bytes: None,
                    ..settings()
                },
                &["entry_bytes_max"],
            ),
        ];
        for (settings, keys) in cases {
            let error = SizeLimits::derive(&settings).unwrap_err().to_string();
            assert!(error.starts_with("invalid config: "), "{error}");
            for key in keys {
                assert!(error.contains(key), "{key} missing from: {error}");
            }
        }
    }

    #[test]
    fn a_small_segment_works_with_small_values() {
        let limits = SizeLimits::derive(&LimitSettings {
            key_bytes_max: 1 << 10,
            value_bytes_max: 256 << 10,
            entry_bytes_max: None,
            wal_segment_bytes: Some(1 << 20),
        })
        .expect("fits");
        assert!(limits.entry_bytes_max < 1 << 20);
    }
}
