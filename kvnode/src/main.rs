//! `kvnode`: one member of a raftkv cluster. See `kvnode --help` and the README.

use std::io::IsTerminal;

use anyhow::Result;
use clap::Parser;
use kvnode::config::Settings;
use tracing_subscriber::EnvFilter;

fn main() -> Result<()> {
    let settings = Settings::load(Settings::parse())?;
    let config = match settings.resolve() {
        Ok(config) => config,
        Err(invalid) => {
            eprintln!("kvnode: {invalid:#}");
            std::process::exit(2);
        }
    };
    if let Some(backup) = &config.restore {
        return restore(&config, backup);
    }
    if let Err(invalid) = kvnode::restore::check_cluster_id(&config) {
        eprintln!("kvnode: {invalid:#}");
        std::process::exit(2);
    }
    let filter = match &config.log_level {
        Some(level) => EnvFilter::new(level),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        // Colour codes only for a terminal: a log file or journal gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("kvnode-io")
        .build()?;
    let node_id = config.node_id.0;
    runtime
        .block_on(kvnode::server::run(config))
        .map_err(|failure| {
            tracing::error!(node = node_id, error = %format!("{failure:#}"), "kvnode failed");
            failure
        })
}

/// `--restore`: builds the data directory and exits (2 for settings that do not allow it,
/// 1 for a damaged backup or a failed write).
fn restore(config: &kvnode::config::NodeConfig, backup: &std::path::Path) -> Result<()> {
    match kvnode::restore::restore(config, backup) {
        Ok(restored) => {
            println!(
                "restored {} keys at index {} (term {}) of cluster {} into {} as node {} of cluster {}",
                restored.keys,
                restored.header.index.0,
                restored.header.term.0,
                restored.header.cluster_id,
                restored.data_dir.display(),
                config.node_id,
                config.cluster_id
            );
            Ok(())
        }
        Err(failure) => {
            eprintln!("kvnode: restore failed: {failure:#}");
            let invalid = format!("{failure:#}").starts_with("invalid config");
            std::process::exit(if invalid { 2 } else { 1 });
        }
    }
}
