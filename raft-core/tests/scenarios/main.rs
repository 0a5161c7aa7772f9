//! Scenario tests of the classic Raft cases, each named after what it shows and citing the
//! paper section. Traces are compared with golden files in `testdata/`.

mod harness;

mod election;
mod membership;
mod reads;
mod replication;
