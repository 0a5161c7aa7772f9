//! Runs the real `sync_overlap` binary for a few rounds in a temporary directory.

use std::process::Command;

fn sync_overlap() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sync_overlap"))
}

#[test]
fn reports_the_three_cases_and_removes_its_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = sync_overlap()
        .arg("--dir")
        .arg(dir.path())
        .args(["--rounds", "5", "--stagger-us", "50"])
        .output()
        .expect("sync_overlap runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(lines[0].starts_with("one file alone:"), "{stdout}");
    assert!(lines[1].starts_with("two files together:"), "{stdout}");
    assert!(lines[2].starts_with("second 50 µs later:"), "{stdout}");
    for line in &lines[1..] {
        assert!(line.contains("x alone)"), "{stdout}");
    }
    let left: Vec<_> = std::fs::read_dir(dir.path()).expect("read dir").collect();
    assert!(left.is_empty(), "probe files left behind: {left:?}");
}

#[test]
fn refuses_a_directory_that_does_not_exist() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing");
    let output = sync_overlap()
        .arg("--dir")
        .arg(&missing)
        .output()
        .expect("sync_overlap runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is not a directory"), "{stderr}");
}
