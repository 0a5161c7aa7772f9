//! Deterministic simulation of whole Raft clusters (see `cluster.rs`), checking the safety
//! properties after every step (`checker.rs`) and liveness after the faults end.
//!
//! - The default run covers `DEFAULT_SEEDS` seeds, split over several tests so the harness
//!   runs them on every core. Each seed picks a cluster size (1 to 7), a fault profile, and
//!   whether its nodes sync in the Ready order or asynchronously, with writes going on
//!   while a sync runs (about half the seeds each).
//! - `SIM_SEED=<n>` replays one seed with a readable trace (add `-- --nocapture`).
//! - `SIM_SEEDS=<count>` (and optionally `SIM_SEED_START=<n>`) runs that many seeds instead,
//!   for soak runs.
//!
//! Liveness bound: once faults end (network healed, every node restarted), a leader must be
//! elected and a new proposal committed and applied on every live member within
//! `LIVENESS_TICKS` ticks (election timeouts are 10..20 ticks).

mod app;
mod checker;
mod cluster;
mod rng;

use cluster::Sim;

const DEFAULT_SEEDS: u64 = 2000;
const SHARDS: u64 = 4;
const FAULT_TICKS: u64 = 300;
const LIVENESS_TICKS: u64 = 400;

fn run_seed(seed: u64, trace: bool) -> Result<(), String> {
    // A broken invariant inside a node panics; report it as this seed's failure.
    let outcome = std::panic::catch_unwind(|| {
        let mut sim = Sim::new(seed, trace);
        let result = sim.run(FAULT_TICKS, LIVENESS_TICKS);
        (format!("{:?}", sim.profile), result)
    });
    let (profile, result) = match outcome {
        Ok(done) => done,
        Err(panic) => {
            let reason = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            ("?".to_string(), Err(format!("panicked: {reason}")))
        }
    };
    match result {
        Ok(stats) => {
            if trace {
                println!(
                    "seed {seed} passed: committed {:?}, {} reads confirmed",
                    stats.committed, stats.reads_confirmed
                );
            }
            Ok(())
        }
        Err(violation) => Err(format!(
            "seed {seed} ({profile}) failed: {violation}\n  replay: SIM_SEED={seed} cargo test -p raft-core --test sim -- --nocapture"
        )),
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name} must be a number"))
    })
}

/// Runs this shard's share of the seed range, reporting every failing seed.
fn run_shard(shard: u64) {
    if let Some(seed) = env_u64("SIM_SEED") {
        if shard == 0 {
            if let Err(failure) = run_seed(seed, true) {
                panic!("{failure}");
            }
        }
        return;
    }
    let count = env_u64("SIM_SEEDS").unwrap_or(DEFAULT_SEEDS);
    let start = env_u64("SIM_SEED_START").unwrap_or(0);
    let failures: Vec<String> = (start..start + count)
        .filter(|seed| seed % SHARDS == shard)
        .filter_map(|seed| run_seed(seed, false).err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} seeds failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn simulated_clusters_stay_safe_and_live_shard_0() {
    run_shard(0);
}

#[test]
fn simulated_clusters_stay_safe_and_live_shard_1() {
    run_shard(1);
}

#[test]
fn simulated_clusters_stay_safe_and_live_shard_2() {
    run_shard(2);
}

#[test]
fn simulated_clusters_stay_safe_and_live_shard_3() {
    run_shard(3);
}
