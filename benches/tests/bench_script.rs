//! Checks of `scripts/bench.sh` that cost nothing: it parses (`bash -n`), prints its help, and
//! refuses bad options before starting anything.
//!
//! The end-to-end smoke run (`--quick --only raftkv` on already-built debug binaries, about half
//! a minute) runs only with `RAFTKV_BENCH_SMOKE=1`, so the default `cargo test` stays cheap and
//! needs neither etcd nor `protoc`.

use std::path::Path;
use std::process::{Command, Output};

#[path = "support/script.rs"]
mod support;

use support::{assert_parses, run as run_script, script};

const SCRIPT: &str = "bench.sh";

fn run(args: &[&str]) -> Output {
    run_script(SCRIPT, args)
}

#[test]
fn script_parses() {
    assert_parses(SCRIPT);
}

#[test]
fn help_lists_the_options_and_starts_nothing() {
    let output = run(&["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for option in [
        "--quick",
        "--only",
        "--out",
        "--duration",
        "--warmup",
        "--failover-rounds",
        "BENCH_BIN_DIR",
    ] {
        assert!(help.contains(option), "help lacks {option}:\n{help}");
    }
    assert!(
        !help.contains("set -euo"),
        "help runs into the code:\n{help}"
    );
}

#[test]
fn bad_options_are_refused_before_anything_starts() {
    for (args, expected) in [
        (&["--only", "mongodb"][..], "unknown system"),
        (&["--frobnicate"][..], "unknown option"),
        (&["--duration", "0"][..], "--duration"),
        (&["--failover-rounds", "x"][..], "--failover-rounds"),
    ] {
        let output = run(args);
        assert!(!output.status.success(), "{args:?} must fail");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

/// `RAFTKV_BENCH_SMOKE=1 cargo test -p benches --test bench_script` after
/// `cargo build -p kvnode -p benches`: a quick raftkv-only run of the real script.
#[test]
fn quick_raftkv_run_writes_a_summary() {
    if std::env::var_os("RAFTKV_BENCH_SMOKE").is_none() {
        eprintln!("skipped: set RAFTKV_BENCH_SMOKE=1 to run the bench.sh smoke test");
        return;
    }
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_kvbench"))
        .parent()
        .expect("kvbench has a directory")
        .to_path_buf();
    for binary in ["kvnode", "kvctl"] {
        assert!(
            bin_dir.join(binary).exists(),
            "build {binary} first: cargo build -p kvnode"
        );
    }
    let out = tempfile::tempdir().expect("temp dir");
    let output = Command::new("bash")
        .arg(script(SCRIPT))
        .args([
            "--quick",
            "--only",
            "raftkv",
            "--duration",
            "0.5",
            "--warmup",
            "0.2",
        ])
        .arg("--out")
        .arg(out.path())
        .env("BENCH_BIN_DIR", &bin_dir)
        .env("BENCH_KEYSPACE", "2000")
        .env("BENCH_PORT_BASE", "25500")
        .output()
        .expect("bash runs");
    assert!(
        output.status.success(),
        "bench.sh failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = std::fs::read_to_string(out.path().join("summary.md")).expect("summary.md");
    assert!(summary.contains("| raftkv | wal3 | 64 |"), "{summary}");
    assert!(summary.contains("Median failover gap"), "{summary}");
    // The disk probe runs alone and with three writers at once (fio) or says why not (dd).
    assert!(
        summary.contains("the same, three writers at once"),
        "{summary}"
    );
    let conditions =
        std::fs::read_to_string(out.path().join("conditions.jsonl")).expect("conditions.jsonl");
    assert!(
        conditions
            .lines()
            .all(|line| line.contains("\"fdatasync_three_writers\":{")),
        "{conditions}"
    );
    let results = std::fs::read_to_string(out.path().join("results.jsonl")).expect("results");
    // 3 configurations x (2 connection counts x 2 mixes + 1 reads-only step) in --quick.
    assert_eq!(results.lines().count(), 15, "{results}");
    let reads_only = results
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("a JSON line"))
        .filter(|step| step["reads"].as_f64() == Some(1.0))
        .collect::<Vec<_>>();
    assert_eq!(reads_only.len(), 3, "{results}");
    assert!(
        reads_only.iter().all(|step| step.get("failed").is_none()),
        "{results}"
    );
}
