//! `chaos`: a Jepsen-style fault suite. Real kvnode processes, each in its own network
//! namespace, are driven by concurrent Redis-protocol clients while a seeded nemesis kills,
//! pauses, partitions, reconfigures, skews and slows them; afterwards the checkers judge what
//! the clients saw, and a report says what happened.
//!
//! Role: find safety violations (and measure availability) in the real server, processes and
//! network included, where the core simulator and the one-scenario black-box tests cannot.
//!
//! Invariants and prohibitions:
//! - Nothing is added to the root namespace's network. Hosts, clients and the bridge live in
//!   namespaces the tool creates (named `chaos<N>-...`) and deletes at the end; `chaos
//!   cleanup` removes a crashed run's leftovers.
//! - Sockets to test hosts are opened only from the client namespace, and only to addresses
//!   inside the run's own /24 ([`client`]).
//! - Every process the tool starts is stopped by its pid.
//! - Everything is bounded: run length, request deadlines, operations per client, settling
//!   time, checker search steps; every loop ends by itself. Waits poll to a deadline.
//! - The checkers are pure and hold the server to its replies: `-TRYAGAIN` means not
//!   applied, `-UNKNOWN` and timeouts mean unknown.
//!
//! Module map:
//! - [`history`]: operations and their outcomes.
//! - [`linear`]: the Wing-Gong/Lowe linearizability search; [`brute`]: its brute-force
//!   reference for tests.
//! - [`checker`]: register, counter and set checkers over a history.
//! - [`sys`]: commands with deadlines, root, setns, signals.
//! - [`net`]: namespaces, bridge, veths, one-way blocks, netem, cleanup.
//! - [`client`]: the client runtime inside the client namespace, and the guarded dialer.
//! - [`host`]: one kvnode host: config, process, pause, skew.
//! - [`nemesis`]: the seeded schedule of faults and the partition shapes (pure).
//! - [`cluster`]: the live cluster: status, healing, convergence; applying and undoing
//!   faults ([`cluster::faults`]), membership changes ([`cluster::membership`]).
//! - [`workload`]: the clients and what replies mean.
//! - [`settle`]: healing, convergence, final reads through every node.
//! - [`report`]: counts, availability gaps, witnesses, files; [`plot`]: the latency SVG.
//! - [`run`]: one run from start to report.
//! - [`stall`]: `chaos stall`, the write stall of one fault kind, fault by fault.
//! - [`rejoin`]: `chaos rejoin`, how soon a node cut off knows the leader after the heal.

pub mod brute;
pub mod checker;
pub mod client;
pub mod cluster;
pub mod history;
pub mod host;
pub mod linear;
pub mod nemesis;
pub mod net;
pub mod plot;
pub mod rejoin;
pub mod report;
pub mod run;
pub mod settle;
pub mod stall;
pub mod sys;
pub mod workload;
