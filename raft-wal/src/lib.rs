//! # raft-wal
//!
//! A segmented, memory-mapped, checksummed write-ahead log for raftkv, and the durable
//! Raft log store built on it ([`WalStore`], implementing raft-core's `LogStore` and
//! `LogStoreMut`). The on-disk format and the crash-safety argument are in `FORMAT.md`.
//!
//! **Never**: run async code (the caller gives the WAL a dedicated thread, and may run
//! a [`Flush`] on a second one, such as a [`SyncThread`]), panic on disk content (it is untrusted: damage is an
//! [`Error`]), retry a failed sync (fail-stop), or lose a record that a returned `sync`,
//! or a completed [`Flush`], covered.
//!
//! Modules:
//! - [`wal`]: the log of records (append, truncate suffix, compact prefix, reset, sync,
//!   and `begin_sync`, which returns the flush to run elsewhere); keeps up to
//!   `spare_segments_max` compacted segments and reuses them for new ones.
//! - [`flush`]: a started sync ([`Flush`]) that may run on another thread while the log
//!   changes, and the gate its WAL and flushes share.
//! - [`segment`]: one preallocated, mapped segment file, and spares (recycled segments).
//! - [`record`]: the record encoding with its chained CRC.
//! - [`recovery`]: opening a directory, validating segments, cutting the torn tail.
//! - [`meta`]: the two-slot state file and atomically replaced blob files.
//! - [`store`]: the raft-core adapter (entries, hard state, snapshot).
//! - [`sync_thread`]: a thread that runs flushes one at a time, for a caller that keeps
//!   appending meanwhile.
//! - [`config`], [`error`].
//!
//! ```no_run
//! use raft_wal::{SyncPolicy, WalConfig, WalStore};
//! let config = WalConfig { sync_policy: SyncPolicy::Always, ..WalConfig::default() };
//! let store = WalStore::open("/var/lib/raftkv/wal", config)?;
//! # Ok::<(), raft_wal::Error>(())
//! ```

pub mod config;
pub mod error;
pub mod flush;
pub mod meta;
mod reaper;
pub mod record;
pub mod recovery;
pub mod segment;
pub mod store;
pub mod sync_thread;
pub mod wal;

pub use config::{SyncPolicy, WalConfig};
pub use error::{Error, Result};
pub use flush::Flush;
pub use record::{Record, RecordKind};
pub use store::{StagedSnapshot, WalStore};
pub use sync_thread::{SyncThread, SyncThreadGone, Synced};
pub use wal::Wal;
