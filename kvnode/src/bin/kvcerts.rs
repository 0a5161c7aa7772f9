//! `kvcerts`: a throwaway CA and TLS certificates for a local or test cluster.
//!
//! Writes into `--out`: `ca.pem`; for each node its peer certificate `node-ID.pem` /
//! `node-ID.key` and its client port certificate `client-port-ID.pem` /
//! `client-port-ID.key`; and `client.pem` / `client.key`, a certificate for tools when the
//! client port requires one (`client_tls_auth_clients`). Keys are readable by the owner
//! only. A peer certificate follows raft-net's naming rule (the DNS name
//! `node-ID.cluster-CLUSTER_ID.raftkv`), so it is what kvnode's `peer_tls_cert` /
//! `peer_tls_key` / `peer_tls_ca` expect; a client port certificate carries the
//! `--client-host` names, the hosts clients and forwarding nodes connect to, as
//! `client_tls_cert` / `client_tls_key` / `client_tls_ca` expect. Every certificate has
//! both TLS usages. The CA's private key is not kept: to add a node later, generate a new
//! set (or use your own CA; README, "Peer security" and "Client TLS").
//!
//! Exit codes: 0 success, 1 a file could not be written, 2 bad usage.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use raft_core::NodeId;
use raft_net::certgen::{write_cluster_certificates, LOCAL_CLIENT_HOSTS};
use raft_net::ClusterId;

#[derive(Parser, Debug)]
#[command(
    name = "kvcerts",
    version,
    about = "Generate a throwaway CA and TLS certificates (peer and client ports) for a raftkv cluster."
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
    /// A host name or IP address clients use to reach the nodes' client ports, put in
    /// every client port certificate; repeat or separate with commas
    /// [default: localhost,127.0.0.1,::1].
    #[arg(long, value_delimiter = ',', value_name = "HOST")]
    client_host: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let nodes: Vec<NodeId> = cli.nodes.iter().copied().map(NodeId).collect();
    let hosts: Vec<String> = if cli.client_host.is_empty() {
        LOCAL_CLIENT_HOSTS
            .iter()
            .map(|&host| host.to_owned())
            .collect()
    } else {
        cli.client_host
    };
    match write_cluster_certificates(&cli.out, ClusterId(cli.cluster_id), &nodes, &hosts) {
        Ok(()) => {
            println!(
                "wrote ca.pem, node-ID.pem/.key (peer port), client-port-ID.pem/.key (client port, for {}) for nodes {:?} of cluster {}, and client.pem/.key in {}",
                hosts.join(","),
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
