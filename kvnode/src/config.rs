//! kvnode's settings: a TOML file (`--config`) with every key overridable by a flag of the
//! same name (`node_id` / `--node-id`). Invalid settings are refused at start with a
//! message naming the key. `kvnode --help` documents each one.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use raft_core::NodeId;
use raft_net::{PeerSecurity, TlsFiles};
use serde::Deserialize;

use crate::limits::{LimitSettings, SizeLimits};

mod security;
use crate::state_machine::{MemberAddress, DATABASES_MAX};
pub use security::{load_peer_tls, peer_tls_key_name, ClientTlsConfig};

/// Where the Raft log lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageKind {
    /// The write-ahead log under `data_dir`: survives restarts.
    Wal,
    /// In memory only: a restarted node comes back empty and must be re-added.
    Memory,
}

/// The flags, which are also the config file's keys.
#[derive(Parser, Debug, Default, Deserialize)]
#[command(
    name = "kvnode",
    version,
    about = "A replicated, linearizable key-value server (Raft) speaking the Redis protocol.",
    long_about = "A replicated, linearizable key-value server (Raft) speaking the Redis protocol.\n\n\
        Settings come from the TOML file given with --config; each flag overrides the key of \
        the same name (with '-' for '_'). Example:\n  kvnode --node-id 1 \
        --member 1=127.0.0.1:7001,127.0.0.1:6001 --member 2=127.0.0.1:7002,127.0.0.1:6002 \
        --member 3=127.0.0.1:7003,127.0.0.1:6003"
)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// TOML file with the settings below; flags override it.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Build this node's data directory from a backup (`kvctl snapshot save`) as a member of
    /// a new cluster, then exit: give the new cluster's --member list and a new
    /// --cluster-id (the same on every node restored from the backup), and an empty or
    /// missing --data-dir. Start the node normally afterwards.
    #[arg(long, value_name = "BACKUP_FILE")]
    #[serde(skip)]
    pub restore: Option<PathBuf>,
    /// This node's id (unique in the cluster, never reused; not 0).
    #[arg(long)]
    pub node_id: Option<u64>,
    /// Identifies the cluster; peers with another id are refused at the handshake.
    #[arg(long)]
    pub cluster_id: Option<u64>,
    /// An initial member as ID=PEER_ADDR,CLIENT_ADDR; repeat for each. Every founding
    /// node must list the same members. In a file: member = ["1=host:7001,host:6001", ...].
    #[arg(long = "member", value_name = "ID=PEER,CLIENT")]
    #[serde(default, rename = "member")]
    pub members: Vec<String>,
    /// Wait to be added by a running cluster (RAFT.ADDLEARNER) instead of bootstrapping one.
    /// Give the cluster's current members with --member, so this node can answer them
    /// before it has caught up; give its own addresses with --peer-addr and --client-addr.
    #[arg(long)]
    #[serde(default)]
    pub join: bool,
    /// Address to listen on for peers [default: this node's peer address in --member].
    #[arg(long)]
    pub peer_addr: Option<String>,
    /// Address to listen on for Redis clients [default: this node's client address].
    #[arg(long)]
    pub client_addr: Option<String>,
    /// Address of the Prometheus metrics endpoint (GET /metrics) [default: none].
    #[arg(long)]
    pub metrics_addr: Option<String>,
    /// Directory for the write-ahead log and snapshots [default: data/node-ID].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Log storage backend: "wal" (durable) or "memory" (lost on restart) [default: wal].
    #[arg(long)]
    pub storage: Option<String>,
    /// "always" (every batch is synced before it is acknowledged) or "never" (UNSAFE:
    /// tests and benchmarks only) [default: always].
    #[arg(long)]
    pub sync: Option<String>,
    /// Leader heartbeat interval in milliseconds; also the tick [default: 50].
    #[arg(long)]
    pub heartbeat_ms: Option<u64>,
    /// Minimum election timeout in milliseconds; each term draws from [this, 2x this)
    /// [default: 150].
    #[arg(long)]
    pub election_ms: Option<u64>,
    /// Take a snapshot and compact the log after at least this many applied entries, and
    /// once they add up to the size of the last snapshot [default: 10000].
    #[arg(long)]
    pub snapshot_entries: Option<u64>,
    /// Largest key in bytes [default: 65536].
    #[arg(long)]
    pub key_bytes_max: Option<usize>,
    /// Largest value in bytes [default: 8388608].
    #[arg(long)]
    pub value_bytes_max: Option<usize>,
    /// Largest log entry in bytes: one write, transaction or configuration change, and so
    /// the largest request; at least one SET of the largest key and value [default: room
    /// for two such SETs].
    #[arg(long)]
    pub entry_bytes_max: Option<usize>,
    /// Client connections open at once; more are refused [default: 10000].
    #[arg(long)]
    pub connections_max: Option<usize>,
    /// Requests queued for the Raft loop before clients get -TRYAGAIN [default: 8192].
    #[arg(long)]
    pub request_queue_max: Option<usize>,
    /// WAL segment size in bytes [default: 67108864].
    #[arg(long)]
    pub wal_segment_bytes: Option<u64>,
    /// Compacted WAL segments kept for reuse instead of deleted; 0 disables [default: 2].
    #[arg(long)]
    pub wal_spare_segments: Option<usize>,
    /// Databases clients may SELECT (0 to N-1), as Redis' `databases`; a cluster-wide
    /// setting: every node must have the same [default: 16].
    #[arg(long)]
    pub databases: Option<u32>,
    /// Require AUTH with this password.
    #[arg(long)]
    pub password: Option<String>,
    /// PEM certificate (then any intermediates) this node shows its peers: mutual TLS on
    /// the peer port. It must carry the DNS name node-ID.cluster-CLUSTER_ID.raftkv and both
    /// the serverAuth and clientAuth usages. Give with peer_tls_key and peer_tls_ca.
    #[arg(long, value_name = "FILE")]
    pub peer_tls_cert: Option<PathBuf>,
    /// PEM private key of peer_tls_cert.
    #[arg(long, value_name = "FILE")]
    pub peer_tls_key: Option<PathBuf>,
    /// PEM CA certificate(s) every peer's certificate must chain to.
    #[arg(long, value_name = "FILE")]
    pub peer_tls_ca: Option<PathBuf>,
    /// File holding the cluster secret (32 to 1024 bytes; a trailing newline is ignored),
    /// which every node proves in the peer handshake without sending it. Works with or
    /// without peer TLS.
    #[arg(long, value_name = "FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// PEM certificate (then any intermediates) of the client port: the port then speaks
    /// TLS only. It must carry the host of this node's client address (clients and
    /// forwarding nodes verify it) and chain to client_tls_ca. Give with client_tls_key
    /// and client_tls_ca.
    #[arg(long, value_name = "FILE")]
    pub client_tls_cert: Option<PathBuf>,
    /// PEM private key of client_tls_cert.
    #[arg(long, value_name = "FILE")]
    pub client_tls_key: Option<PathBuf>,
    /// PEM CA certificate(s) every node's client_tls_cert chains to: what a node forwarding
    /// to the leader verifies, and what clients are given (--cacert).
    #[arg(long, value_name = "FILE")]
    pub client_tls_ca: Option<PathBuf>,
    /// Clients must present a certificate chaining to client_tls_ca (mutual TLS, as Redis's
    /// tls-auth-clients yes); client_tls_cert then needs the clientAuth usage too.
    #[arg(long)]
    #[serde(default)]
    pub client_tls_auth_clients: bool,
    /// Time a client has to complete its TLS handshake, in milliseconds [default: 10000].
    #[arg(long)]
    pub client_tls_handshake_ms: Option<u64>,
    /// Log filter (RUST_LOG syntax, e.g. "info" or "kvnode=debug") [default: RUST_LOG or info].
    #[arg(long)]
    pub log_level: Option<String>,
    /// A deliberate bug, for showing that the fault suite catches one: accepted only by a
    /// build with the `test-faults` feature (scripts/chaos.sh --test-fault). Never in
    /// production.
    #[arg(long, hide = true)]
    pub test_fault: Option<String>,
}

/// A deliberate bug a `test-faults` build can be told to have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestFault {
    /// Every node answers linearizable reads from its own state, without the ReadIndex
    /// round: a follower behind, or a deposed leader, serves stale values.
    ReadsWithoutReadIndex,
    /// The leader answers a plain SET as soon as it is appended, before it commits: a
    /// leader lost right after loses writes it acknowledged.
    AckBeforeCommit,
}

/// Validated settings with defaults filled in.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub node_id: NodeId,
    pub cluster_id: u64,
    pub members: BTreeMap<NodeId, MemberAddress>,
    pub join: bool,
    pub peer_listen: SocketAddr,
    pub client_listen: SocketAddr,
    pub metrics_listen: Option<SocketAddr>,
    /// How other nodes and forwarded clients reach this node.
    pub advertise: MemberAddress,
    pub data_dir: PathBuf,
    pub storage: StorageKind,
    pub sync: raft_wal::SyncPolicy,
    pub heartbeat: Duration,
    pub election_ticks: u32,
    pub snapshot_entries: u64,
    /// Sizes of keys, values, entries and frames, checked against each other.
    pub limits: SizeLimits,
    pub connections_max: usize,
    pub request_queue_max: usize,
    pub wal_segment_bytes: u64,
    pub wal_spare_segments: usize,
    /// Databases clients may select; the same on every node.
    pub databases: u32,
    pub password: Option<String>,
    pub log_level: Option<String>,
    /// Always `None` except in a `test-faults` build told to have a bug.
    pub test_fault: Option<TestFault>,
    /// `--restore`: build the data directory from this backup and exit.
    pub restore: Option<PathBuf>,
    /// The cluster id was given (not the default): a restore requires a new one.
    pub cluster_id_given: bool,
    /// How peers prove who they are: loaded and checked at start.
    pub peer_security: PeerSecurity,
    /// Where the peer TLS material came from, to reload it on SIGHUP.
    pub peer_tls_files: Option<TlsFiles>,
    /// The secret's file, whose permissions the server checks once logging is up.
    pub cluster_secret_file: Option<PathBuf>,
    /// TLS on the client port: loaded and checked at start.
    pub client_tls: Option<ClientTlsConfig>,
}

impl NodeConfig {
    /// Whether anyone on a network can speak for any node: peers prove nothing (no TLS, no
    /// secret) and the peer port listens beyond loopback.
    pub fn peer_port_unprotected(&self) -> bool {
        !self.peer_security.authenticates() && !self.peer_listen.ip().is_loopback()
    }

    /// Whether anyone on a network can use the client port and read its traffic: no TLS,
    /// no password, and a listener beyond loopback.
    pub fn client_port_unprotected(&self) -> bool {
        self.client_tls.is_none()
            && self.password.is_none()
            && !self.client_listen.ip().is_loopback()
    }
}

impl Settings {
    /// Reads `--config` (if given) and lets the flags override it.
    ///
    /// # Errors
    /// The file cannot be read or parsed (unknown keys are refused by name).
    pub fn load(flags: Settings) -> Result<Settings> {
        let Some(path) = flags.config.clone() else {
            return Ok(flags);
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        let file: Settings = toml::from_str(&text)
            .with_context(|| format!("parsing config file {}", path.display()))?;
        Ok(flags.over(file))
    }

    /// Each setting from `self` (the flags) if given, else from `file`.
    fn over(self, file: Settings) -> Settings {
        macro_rules! pick {
            ($($field:ident),*) => { Settings { $($field: self.$field.or(file.$field),)*
                config: self.config,
                restore: self.restore,
                members: if self.members.is_empty() { file.members } else { self.members },
                join: self.join || file.join,
                client_tls_auth_clients: self.client_tls_auth_clients || file.client_tls_auth_clients,
            } };
        }
        pick!(
            node_id,
            cluster_id,
            peer_addr,
            client_addr,
            metrics_addr,
            data_dir,
            storage,
            sync,
            heartbeat_ms,
            election_ms,
            snapshot_entries,
            key_bytes_max,
            value_bytes_max,
            entry_bytes_max,
            connections_max,
            request_queue_max,
            wal_segment_bytes,
            wal_spare_segments,
            databases,
            password,
            log_level,
            test_fault,
            peer_tls_cert,
            peer_tls_key,
            peer_tls_ca,
            cluster_secret_file,
            client_tls_cert,
            client_tls_key,
            client_tls_ca,
            client_tls_handshake_ms
        )
    }

    /// Checks every setting and fills in defaults.
    ///
    /// # Errors
    /// "invalid config: KEY: reason" for the first bad setting.
    pub fn resolve(self) -> Result<NodeConfig> {
        let node_id = match self.node_id {
            Some(0) => bail!("invalid config: node_id: must not be 0"),
            Some(id) => NodeId(id),
            None => bail!("invalid config: node_id: required (--node-id)"),
        };
        let cluster_id = self.cluster_id.unwrap_or(1);
        let (peer_security, peer_tls_files) = self.resolve_peer_security(cluster_id, node_id)?;
        let members = parse_members(&self.members)?;
        if !self.join && !members.contains_key(&node_id) {
            bail!("invalid config: member: this node ({node_id}) must be listed to bootstrap a cluster (or pass --join)");
        }
        let own = members.get(&node_id);
        let peer_addr = self.peer_addr.or_else(|| own.map(|m| m.peer.clone()));
        let client_addr = self.client_addr.or_else(|| own.map(|m| m.client.clone()));
        let Some(peer_addr) = peer_addr else {
            bail!("invalid config: peer_addr: required when this node is not in --member");
        };
        let Some(client_addr) = client_addr else {
            bail!("invalid config: client_addr: required when this node is not in --member");
        };
        let advertise = own.cloned().unwrap_or(MemberAddress {
            peer: peer_addr.clone(),
            client: client_addr.clone(),
        });
        let client_tls = security::resolve_client_tls(
            security::ClientTlsSettings {
                cert: self.client_tls_cert.as_ref(),
                key: self.client_tls_key.as_ref(),
                ca: self.client_tls_ca.as_ref(),
                auth_clients: self.client_tls_auth_clients,
                handshake_ms: self.client_tls_handshake_ms,
            },
            &advertise.client,
        )?;
        let heartbeat_ms = self.heartbeat_ms.unwrap_or(50);
        let election_ms = self.election_ms.unwrap_or(150);
        if heartbeat_ms == 0 {
            bail!("invalid config: heartbeat_ms: must be at least 1");
        }
        if election_ms < 2 * heartbeat_ms {
            bail!(
                "invalid config: election_ms: must be at least twice heartbeat_ms ({heartbeat_ms})"
            );
        }
        let storage = match self.storage.as_deref().unwrap_or("wal") {
            "wal" => StorageKind::Wal,
            "memory" => StorageKind::Memory,
            other => bail!("invalid config: storage: {other:?} is not \"wal\" or \"memory\""),
        };
        let wal_segment_bytes = self
            .wal_segment_bytes
            .unwrap_or(raft_wal::config::SEGMENT_BYTES_DEFAULT);
        let positive = |key: &str, value: Option<usize>, default: usize| -> Result<usize> {
            match value.unwrap_or(default) {
                0 => bail!("invalid config: {key}: must be at least 1"),
                n => Ok(n),
            }
        };
        Ok(NodeConfig {
            node_id,
            cluster_id,
            join: self.join,
            peer_listen: resolve_addr("peer_addr", &peer_addr)?,
            client_listen: resolve_addr("client_addr", &client_addr)?,
            metrics_listen: self
                .metrics_addr
                .map(|addr| resolve_addr("metrics_addr", &addr))
                .transpose()?,
            advertise,
            members,
            data_dir: self
                .data_dir
                .unwrap_or_else(|| PathBuf::from(format!("data/node-{}", node_id.0))),
            storage,
            sync: match self.sync.as_deref().unwrap_or("always") {
                "always" => raft_wal::SyncPolicy::Always,
                "never" => raft_wal::SyncPolicy::Never,
                other => bail!("invalid config: sync: {other:?} is not \"always\" or \"never\""),
            },
            heartbeat: Duration::from_millis(heartbeat_ms),
            election_ticks: u32::try_from(election_ms / heartbeat_ms)
                .context("invalid config: election_ms: too large")?,
            snapshot_entries: match self.snapshot_entries.unwrap_or(10_000) {
                0 => bail!("invalid config: snapshot_entries: must be at least 1"),
                n => n,
            },
            limits: SizeLimits::derive(&LimitSettings {
                key_bytes_max: positive("key_bytes_max", self.key_bytes_max, 64 << 10)?,
                value_bytes_max: positive("value_bytes_max", self.value_bytes_max, 8 << 20)?,
                entry_bytes_max: self.entry_bytes_max,
                wal_segment_bytes: (storage == StorageKind::Wal).then_some(wal_segment_bytes),
            })?,
            connections_max: positive("connections_max", self.connections_max, 10_000)?,
            request_queue_max: positive("request_queue_max", self.request_queue_max, 8192)?,
            wal_segment_bytes,
            wal_spare_segments: self
                .wal_spare_segments
                .unwrap_or(raft_wal::config::SPARE_SEGMENTS_DEFAULT),
            databases: match self.databases.unwrap_or(16) {
                0 => bail!("invalid config: databases: must be at least 1"),
                n if n > DATABASES_MAX => {
                    bail!("invalid config: databases: at most {DATABASES_MAX}")
                }
                n => n,
            },
            password: self.password,
            log_level: self.log_level,
            test_fault: self
                .test_fault
                .as_deref()
                .map(parse_test_fault)
                .transpose()?,
            restore: self.restore,
            cluster_id_given: self.cluster_id.is_some(),
            peer_security,
            peer_tls_files,
            cluster_secret_file: self.cluster_secret_file,
            client_tls,
        })
    }
}

fn parse_test_fault(name: &str) -> Result<TestFault> {
    if !cfg!(feature = "test-faults") {
        bail!("invalid config: test_fault: this build has no test faults (a deliberate bug needs a build with --features test-faults)");
    }
    match name {
        "reads-without-read-index" => Ok(TestFault::ReadsWithoutReadIndex),
        "ack-before-commit" => Ok(TestFault::AckBeforeCommit),
        other => bail!(
            "invalid config: test_fault: {other:?} is not reads-without-read-index or ack-before-commit"
        ),
    }
}

fn parse_members(specs: &[String]) -> Result<BTreeMap<NodeId, MemberAddress>> {
    let mut members = BTreeMap::new();
    for spec in specs {
        let parsed = spec.split_once('=').and_then(|(id, addrs)| {
            let (peer, client) = addrs.split_once(',')?;
            Some((id.trim().parse::<u64>().ok()?, peer.trim(), client.trim()))
        });
        let Some((id, peer, client)) = parsed else {
            bail!("invalid config: member: {spec:?} is not ID=PEER_ADDR,CLIENT_ADDR");
        };
        if id == 0 {
            bail!("invalid config: member: {spec:?}: node id 0 is reserved");
        }
        resolve_addr("member", peer)?;
        resolve_addr("member", client)?;
        let address = MemberAddress {
            peer: peer.to_string(),
            client: client.to_string(),
        };
        if members.insert(NodeId(id), address).is_some() {
            bail!("invalid config: member: node {id} is listed twice");
        }
    }
    Ok(members)
}

/// Resolves `host:port` (a literal address or a host name) to its first socket address.
pub fn resolve_addr(key: &str, addr: &str) -> Result<SocketAddr> {
    addr.to_socket_addrs()
        .ok()
        .and_then(|mut found| found.next())
        .with_context(|| format!("invalid config: {key}: {addr:?} is not a reachable host:port"))
}

#[cfg(test)]
mod tests;
