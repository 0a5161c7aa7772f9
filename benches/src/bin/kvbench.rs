//! `kvbench`: closed-loop load against a raftkv cluster over the Redis protocol, or against
//! Redis or etcd for comparison (see [`benches::kvbench`] for how it works and
//! `kvbench --help` for the options).
//!
//! Prints a live progress line to stderr once a second, then the results to stdout as text and
//! as one JSON line (prefixed `JSON `, or written to `--json FILE`). Exit status: 0 when at least
//! one operation succeeded, 1 when none did (or an output could not be written), 2 for bad
//! options.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use benches::kvbench::options::{Options, Settings};
use benches::kvbench::plot;
use benches::kvbench::run::{run, Outcome};
use clap::Parser;

/// How long the runtime may take to drop tasks that were aborted at the deadline.
const RUNTIME_SHUTDOWN_WAIT: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    let options = Options::parse();
    let settings = match Settings::from_options(&options) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("kvbench: {error:#}");
            return ExitCode::from(2);
        }
    };
    if let Some(files) = &settings.tls {
        if let Err(error) = benches::kvbench::client::use_tls(files) {
            eprintln!("kvbench: {error:#}");
            return ExitCode::from(2);
        }
    }
    match run_and_report(settings) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("kvbench: no operation succeeded in the measured window");
            ExitCode::from(1)
        }
        Err(error) => {
            eprintln!("kvbench: {error:#}");
            ExitCode::from(1)
        }
    }
}

/// Runs, prints and writes the outputs; `Ok(false)` if no operation succeeded.
fn run_and_report(settings: Settings) -> Result<bool> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let Outcome { report, latency_us } = runtime.block_on(run(settings.clone()));
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN_WAIT);
    print!("{}", report.to_text());
    let line = report.json_line();
    match &settings.json {
        Some(path) => std::fs::write(path, format!("{line}\n"))
            .with_context(|| format!("writing the JSON result to {}", path.display()))?,
        None => println!("JSON {line}"),
    }
    if let Some(path) = &settings.plot {
        plot::draw(path, &report, &latency_us)?;
        println!("plot written to {}", path.display());
    }
    Ok(report.ops() > 0)
}
