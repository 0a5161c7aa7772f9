//! `kvbench`: a closed-loop load generator that speaks the Redis protocol to kvnode (or to any
//! Redis-compatible server), or etcd's v3 API with the `etcd` build feature, and reports
//! throughput, latency percentiles, errors and leader changes.
//!
//! Role: measure a running cluster end to end, from outside, as a client would. It never starts
//! or stops a server; the operator (or a script) does that.
//!
//! Invariants and prohibitions:
//! - Every loop is bounded: the run ends at its deadline (warm-up plus duration) or op count,
//!   every network wait is capped by the per-request timeout, and workers that overrun the
//!   deadline by more than that are aborted. The tool always stops by itself.
//! - It connects only to the endpoints it is given (default `127.0.0.1:6379`).
//! - The default build needs no `protoc`: everything etcd lives behind the `etcd` feature.
//! - Operations finished during warm-up are counted nowhere in the results (only in the
//!   throughput timeline, which marks the warm-up).
//! - Every buffer is bounded: replies are decoded with [`kvnode::resp::Limits`] caps.
//!
//! Module map:
//! - [`options`]: the command line ([`options::Options`]) and its validated form
//!   ([`options::Settings`]).
//! - [`workload`]: keys, values and the read/write choice, from a seeded PRNG.
//! - [`client`]: one RESP connection with timeouts.
//! - `etcd` (feature `etcd`): one etcd client per connection; Put, Range and Status.
//! - [`leader`]: finding the leader and watching for leader changes once a second, from
//!   RAFT.STATUS as `kvnode::status::NodeStatus` parses it (or etcd's Status).
//! - [`stats`]: what workers count while running (shared atomics, per-worker histograms).
//! - [`gaps`]: the longest gaps between successful writes (failover mode).
//! - [`report`]: the final numbers, as text and as one JSON line.
//! - [`plot`]: the SVG with the latency percentile curve and throughput over time.
//! - [`run`]: the orchestration: workers, progress line, deadline.

pub mod client;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod gaps;
pub mod leader;
pub mod options;
pub mod plot;
pub mod report;
pub mod run;
pub mod stats;
pub mod workload;
