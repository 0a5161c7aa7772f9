//! Running a script of `scripts/` from a test: its path, a run with arguments, and the
//! `bash -n` syntax check every script test starts with.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `scripts/NAME` of the repository.
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts")
        .join(name)
}

/// Runs `scripts/NAME ARGS...` with bash and waits for it.
pub fn run(name: &str, args: &[&str]) -> Output {
    Command::new("bash")
        .arg(script(name))
        .args(args)
        .output()
        .expect("bash runs")
}

/// Fails unless `bash -n` accepts `scripts/NAME`.
pub fn assert_parses(name: &str) {
    let output = Command::new("bash")
        .arg("-n")
        .arg(script(name))
        .output()
        .expect("bash runs");
    assert!(
        output.status.success(),
        "bash -n {name}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
