//! Checks of `scripts/chaos.sh` that cost nothing: it parses, prints its help (the options
//! it passes on match the binary's), and refuses bad options before building or starting
//! anything. The runs themselves are in `chaos_battery.rs`.

use std::process::{Command, Output};

#[path = "support/script.rs"]
mod support;

use support::{assert_parses, run as run_script};

const SCRIPT: &str = "chaos.sh";

fn run(args: &[&str]) -> Output {
    run_script(SCRIPT, args)
}

#[test]
fn script_parses() {
    assert_parses(SCRIPT);
}

#[test]
fn help_lists_every_option_the_binary_takes() {
    let output = run(&["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    let binary = Command::new(env!("CARGO_BIN_EXE_chaos"))
        .args(["run", "--help"])
        .output()
        .expect("chaos runs");
    let binary_help = String::from_utf8_lossy(&binary.stdout);
    let options: Vec<&str> = binary_help
        .split_whitespace()
        .filter(|word| word.starts_with("--") && *word != "--help")
        .map(|word| word.trim_end_matches([',', '.']))
        .collect();
    assert!(options.len() > 10, "{binary_help}");
    for option in options {
        assert!(
            help.contains(option),
            "chaos.sh --help does not mention {option}"
        );
    }
}

#[test]
fn bad_options_are_refused_before_anything_starts() {
    for args in [&["--no-such-option"][..], &["--runs"][..]] {
        let output = run(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(!String::from_utf8_lossy(&output.stdout).contains("cargo build"));
    }
}
