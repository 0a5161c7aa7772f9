//! kvnode: the replicated key-value server's library (issue 5).
//!
//! This crate holds the parts of the server that need no Raft, storage or network: the
//! Redis protocol codec, command parsing, and the deterministic KV state machine. The
//! server (config, raft loop, listeners, `main.rs`) is wired on top of these.
//!
//! Must never: panic on client or log bytes, allocate for a declared size before checking
//! it against a limit, recurse on untrusted input, or let anything but the Raft log order
//! decide the state machine's contents.
//!
//! Module map:
//! - [`resp`]: RESP2/RESP3 frames, request and reply decoders, the encoder, [`resp::Limits`].
//! - [`cmd`]: a request frame -> a typed [`cmd::Command`], classified as write, read, local
//!   or admin, with Redis' error wording.
//! - [`state_machine`]: the replicated map, its log-entry encoding, snapshots and the
//!   member address book.
//! - [`error`]: the crate error and the one function that turns errors into RESP replies.
//!
//! `COMMANDS.md` beside this crate's `Cargo.toml` lists the commands, their error replies,
//! and the log-entry and snapshot byte formats.

pub mod cmd;
pub mod config;
pub mod connection;
pub mod error;
pub mod info;
pub mod metrics;
pub mod raft_loop;
pub mod resp;
pub mod server;
pub mod state_machine;
pub mod storage;

#[cfg(test)]
mod test_alloc;
