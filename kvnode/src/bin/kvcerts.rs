//! `kvcerts`: a throwaway CA and peer TLS certificates for a local or test cluster.
//!
//! Writes `ca.pem`, and for each node `node-ID.pem` and `node-ID.key` (readable by the
//! owner only), into `--out`. Each certificate follows raft-net's naming rule (the DNS
//! name `node-ID.cluster-CLUSTER_ID.raftkv`, both TLS usages), so it is what kvnode's
//! `peer_tls_cert` / `peer_tls_key` / `peer_tls_ca` expect. The CA's private key is not
//! kept: to add a node later, generate a new set (or use your own CA; README, "Peer
//! security").
//!
//! Exit codes: 0 success, 1 a file could not be written, 2 bad usage.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use raft_core::NodeId;
use raft_net::certgen::write_cluster_certificates;
use raft_net::ClusterId;

#[derive(Parser, Debug)]
#[command(
    name = "kvcerts",
    version,
    about = "Generate a throwaway CA and peer TLS certificates for a raftkv cluster."
)]
struct Cli {
    /// Directory to write into (created if missing; existing files are overwritten).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The cluster's id (kvnode's cluster_id), which every node name includes.
    #[arg(long, default_value_t = 1)]
    cluster_id: u64,
    /// Node ids to issue certificates for, comma-separated.
    #[arg(long, value_delimiter = ',', required = true, value_parser = clap::value_parser!(u64).range(1..))]
    nodes: Vec<u64>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let nodes: Vec<NodeId> = cli.nodes.iter().copied().map(NodeId).collect();
    match write_cluster_certificates(&cli.out, ClusterId(cli.cluster_id), &nodes) {
        Ok(()) => {
            println!(
                "wrote ca.pem and node-ID.pem / node-ID.key for nodes {:?} of cluster {} in {}",
                cli.nodes,
                cli.cluster_id,
                cli.out.display()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("kvcerts: {error}");
            ExitCode::FAILURE
        }
    }
}
