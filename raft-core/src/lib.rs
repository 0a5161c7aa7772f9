//! # raft-core
//!
//! The Raft consensus algorithm as a pure, deterministic state machine ("sans-IO").
//!
//! A [`Node`] is driven by its caller: `tick()` for time, `step(message)` for input from
//! peers, `propose` / `propose_conf_change` / `read_index` / `transfer_leader` for client
//! requests. After any of these the caller takes a [`Ready`] — state to persist, messages
//! to send, committed entries to apply, reads to release — carries out its duties in the
//! documented order, and calls `advance`.
//!
//! **Never**: this crate does no I/O, reads no clock, spawns no thread, and uses no
//! global or OS randomness. Time is a tick count and randomness comes from a seeded PRNG,
//! so equal seeds and inputs give equal outputs — which is what makes whole-cluster
//! simulation (`tests/sim`) reproducible from one seed.
//!
//! Modules:
//! - [`types`]: `NodeId`, `Term`, `LogIndex`, `Entry`, `HardState`, `Snapshot`.
//! - [`membership`]: configurations and joint-consensus quorum rules.
//! - [`message`]: what peers exchange.
//! - [`storage`]: the log store traits and the in-memory store.
//! - [`config`], [`error`], [`ready`].
//! - [`pipeline`]: the one component every driver carries out its Readys through (which
//!   messages wait for which sync, when to apply, when a Ready is synced inline).
//! - `node`: the state machine itself (its parts, in `node/`, listed in `node.rs`), with
//!   `log` (stable + unstable log), `progress` (the leader's view of each follower),
//!   `inflights` and `read_only` (ReadIndex).

pub mod config;
pub mod error;
mod inflights;
mod log;
pub mod membership;
pub mod message;
mod node;
pub mod pipeline;
mod progress;
mod read_only;
pub mod ready;
mod rng;
mod role;
pub mod storage;
pub mod types;

pub use config::Config;
pub use error::{Error, Result, StorageError};
pub use membership::{ConfChange, Membership, VoteResult};
pub use message::{AppendResponse, InstallSnapshotResponse, Message, MessageBody};
pub use node::Node;
pub use pipeline::{Pipeline, ReadyIo, SyncMode, SyncStart};
pub use ready::{ReadState, Ready, Role, SoftState};
pub use storage::{InitialState, LogStore, LogStoreMut, MemStore, SyncPoint};
pub use types::{Entry, EntryPayload, HardState, LogIndex, NodeId, Snapshot, SnapshotMeta, Term};
