//! kvnode: the replicated key-value server (binary `kvnode`) and its library.
//!
//! A request flows: client connection (`connection`) -> typed command (`cmd`) -> the raft
//! loop thread (`raft_loop`), which alone owns the Raft node, the log store (`storage`:
//! the WAL or memory) and the state machine (`state_machine`) -> reply once applied.
//! Peers talk through raft-net. `server` wires it together and handles shutdown; `config`
//! reads the TOML file and flags.
//!
//! Must never: acknowledge a write that is not committed and applied, answer a
//! linearizable read from a point older than the commit index at the time it arrived,
//! panic on client or log bytes, allocate for a declared size before checking it against
//! a limit, or let anything but the Raft log (its order and its stamps) decide the state
//! machine's contents.
//! A failed write or sync of the log ends the process (fail-stop).
//!
//! Module map:
//! - [`backup`]: the backup file `kvctl snapshot save` writes and `kvnode --restore` reads.
//! - [`config`]: settings, defaults, validation naming the bad key; [`limits`]: the
//!   chain of size limits from a request to a WAL record and a peer frame.
//! - [`client_tls`]: TLS on the client port: its certificate, the clients' handshakes,
//!   and the dial of forwarding nodes and tools.
//! - [`server`]: start-up (bootstrap or restart), listeners, metrics endpoint, shutdown.
//! - [`raft_loop`]: the driver thread: ticks, proposals (stamped with the leader's
//!   monotonic clock), reads (judged at the leader's clock), Ready handling, the leader's
//!   reclamation of expired keys; a leader syncs its log on a `log-sync` thread meanwhile.
//! - [`clients`]: the registry of open client connections (CLIENT LIST, INFO, KILL).
//! - [`connection`]: one client: pipelining, auth, stale-read mode, SELECT, MULTI/EXEC/WATCH,
//!   forwarding to the leader.
//! - [`storage`]: the `wal` / `memory` backend switch.
//! - [`restore`]: `kvnode --restore` and the cluster id each data directory records.
//! - [`status`]: the node's typed status, rendered and parsed in one place.
//! - [`info`], [`metrics`]: INFO and the Prometheus text.
//! - [`reply`]: the state machine's typed replies as RESP frames.
//! - [`resp`]: RESP2/RESP3 frames, request and reply decoders, the encoder, [`resp::Limits`].
//! - [`acl`]: ACL users (replicated definitions, hashed passwords), AUTH, and the NOPERM
//!   checks every command passes before it runs.
//! - [`cmd`]: a request frame -> a typed [`cmd::Command`], classified as write, read, local
//!   or admin, with Redis' error wording.
//! - [`state_machine`]: the replicated databases with expiry, revisions and transactions,
//!   their log-entry encoding, snapshots and the member address book. Time enters only as
//!   the leader's stamp on each entry.
//! - [`error`]: the crate error and the one function that turns errors into RESP replies.
//!
//! `COMMANDS.md` beside this crate's `Cargo.toml` lists the commands, their error replies,
//! and the log-entry and snapshot byte formats.

pub mod acl;
pub mod backup;
pub mod client_tls;
pub mod clients;
pub mod cmd;
pub mod config;
pub mod connection;
pub mod error;
pub mod info;
pub mod limits;
pub mod metrics;
pub mod raft_loop;
pub mod reply;
pub mod resp;
pub mod restore;
pub mod server;
pub mod state_machine;
pub mod status;
pub mod storage;

#[cfg(test)]
mod test_alloc;
