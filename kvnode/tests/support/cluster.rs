//! Black-box test harness: real `kvnode` processes on 127.0.0.1 ephemeral ports, each with
//! its own temporary data directory, spoken to over raw RESP.
//!
//! Every process a [`Cluster`] starts is SIGKILLed when the cluster is dropped, including
//! when a test panics; on a panic each node's stderr log is printed. Nothing here sleeps
//! for correctness: every wait polls a condition until a deadline and fails loudly past it.
//! Every loop is bounded by a count or a deadline.
#![allow(dead_code)]

#[path = "deadlines.rs"]
pub mod deadlines;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kvnode::status::NodeStatus;
use raft_core::{LogIndex, NodeId, Term};

/// How long a client waits for one reply before treating the outcome as unknown.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest line a reply header may have (our own server answers; this only bounds a bug).
const REPLY_LINE_BYTES_MAX: usize = 1 << 20;
/// Deepest reply nesting we accept (our replies are at most two levels deep).
const REPLY_DEPTH_MAX: usize = 4;
/// Pause between two polls of a condition. Pacing only, never correctness.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

// ----- RESP client -----

/// One RESP2 reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    pub fn is_ok(&self) -> bool {
        matches!(self, Reply::Simple(s) if s == "OK")
    }

    pub fn bulk_string(&self) -> Option<String> {
        match self {
            Reply::Bulk(Some(bytes)) => Some(String::from_utf8_lossy(bytes).into_owned()),
            _ => None,
        }
    }
}

/// Client ports that speak TLS, and how to dial them: filled by a [`Cluster`] started with
/// `Options::client_tls`, so every helper that connects by address (`Client::connect`,
/// [`WriteStream`], the waits) speaks TLS to such a cluster unchanged. Addresses are free
/// ports, so clusters of tests running at once never share one.
static TLS_PORTS: Mutex<BTreeMap<SocketAddr, Arc<rustls::ClientConfig>>> =
    Mutex::new(BTreeMap::new());

/// Registers `addr` as a TLS client port dialled with `config`.
pub fn register_tls_port(addr: SocketAddr, config: Arc<rustls::ClientConfig>) {
    TLS_PORTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(addr, config);
}

fn tls_config_for(addr: SocketAddr) -> Option<Arc<rustls::ClientConfig>> {
    TLS_PORTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&addr)
        .cloned()
}

/// A client's connection: plain TCP, or TLS over it.
pub enum ClientStream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for ClientStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            ClientStream::Plain(stream) => stream.read(buf),
            ClientStream::Tls(stream) => stream.read(buf),
        }
    }
}

impl Write for ClientStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            ClientStream::Plain(stream) => stream.write(buf),
            ClientStream::Tls(stream) => stream.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            ClientStream::Plain(stream) => stream.flush(),
            ClientStream::Tls(stream) => stream.flush(),
        }
    }
}

/// A minimal blocking RESP client with read and write timeouts, over TLS to a port
/// registered with [`register_tls_port`].
pub struct Client {
    /// Reads are buffered; writes go straight to the stream inside.
    reader: BufReader<ClientStream>,
    pending: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> io::Result<Client> {
        Client::connect_with(addr, REPLY_TIMEOUT)
    }

    pub fn connect_with(addr: SocketAddr, timeout: Duration) -> io::Result<Client> {
        match tls_config_for(addr) {
            Some(config) => Client::connect_tls(addr, timeout, config),
            None => Client::connect_plain(addr, timeout),
        }
    }

    /// A plain TCP client, whatever the port speaks.
    pub fn connect_plain(addr: SocketAddr, timeout: Duration) -> io::Result<Client> {
        let stream = Client::tcp(addr, timeout)?;
        Ok(Client::over(ClientStream::Plain(stream)))
    }

    /// A TLS client dialling `addr` with `config` (verifying the server for its IP).
    /// The handshake completes before this returns.
    pub fn connect_tls(
        addr: SocketAddr,
        timeout: Duration,
        config: Arc<rustls::ClientConfig>,
    ) -> io::Result<Client> {
        let mut stream = Client::tcp(addr, timeout)?;
        let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        let mut session = rustls::ClientConnection::new(config, name)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // Bounded by the socket timeouts: each step reads or writes, or fails.
        while session.is_handshaking() {
            session.complete_io(&mut stream)?;
        }
        Ok(Client::over(ClientStream::Tls(Box::new(
            rustls::StreamOwned::new(session, stream),
        ))))
    }

    fn tcp(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    fn over(stream: ClientStream) -> Client {
        Client {
            reader: BufReader::new(stream),
            pending: Vec::new(),
        }
    }

    /// Queues one command (sent by [`Client::flush`] or [`Client::call`]).
    pub fn queue(&mut self, args: &[&[u8]]) {
        self.pending
            .extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for arg in args {
            self.pending
                .extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            self.pending.extend_from_slice(arg);
            self.pending.extend_from_slice(b"\r\n");
        }
    }

    pub fn flush(&mut self) -> io::Result<()> {
        let bytes = std::mem::take(&mut self.pending);
        self.write_raw(&bytes)
    }

    pub fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        let stream = self.reader.get_mut();
        stream.write_all(bytes)?;
        stream.flush()
    }

    pub fn call(&mut self, args: &[&[u8]]) -> io::Result<Reply> {
        self.queue(args);
        self.flush()?;
        self.read_reply()
    }

    /// `call` with string arguments.
    pub fn cmd(&mut self, args: &[&str]) -> io::Result<Reply> {
        let args: Vec<&[u8]> = args.iter().map(|arg| arg.as_bytes()).collect();
        self.call(&args)
    }

    pub fn read_reply(&mut self) -> io::Result<Reply> {
        self.read_reply_at(0)
    }

    fn read_line(&mut self) -> io::Result<String> {
        let mut line = Vec::new();
        let read = (&mut self.reader)
            .take(REPLY_LINE_BYTES_MAX as u64)
            .read_until(b'\n', &mut line)?;
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        if !line.ends_with(b"\r\n") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "reply line without CRLF: {:?}",
                    String::from_utf8_lossy(&line)
                ),
            ));
        }
        line.truncate(line.len() - 2);
        String::from_utf8(line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    fn read_reply_at(&mut self, depth: usize) -> io::Result<Reply> {
        let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
        if depth > REPLY_DEPTH_MAX {
            return Err(invalid("reply nested too deeply".into()));
        }
        let line = self.read_line()?;
        let (kind, rest) = line.split_at(1.min(line.len()));
        let number = |rest: &str| {
            rest.parse::<i64>()
                .map_err(|_| invalid(format!("bad number in reply line {line:?}")))
        };
        match kind {
            "+" => Ok(Reply::Simple(rest.to_string())),
            "-" => Ok(Reply::Error(rest.to_string())),
            ":" => Ok(Reply::Integer(number(rest)?)),
            "$" => {
                let len = number(rest)?;
                if len < 0 {
                    return Ok(Reply::Bulk(None));
                }
                let len = usize::try_from(len).map_err(|e| invalid(e.to_string()))?;
                let mut data = vec![0; len + 2];
                self.reader.read_exact(&mut data)?;
                data.truncate(len);
                Ok(Reply::Bulk(Some(data)))
            }
            "*" => {
                let len = number(rest)?;
                if len < 0 {
                    return Ok(Reply::Array(None));
                }
                let len = usize::try_from(len).map_err(|e| invalid(e.to_string()))?;
                let mut items = Vec::with_capacity(len.min(1 << 16));
                for _ in 0..len {
                    items.push(self.read_reply_at(depth + 1)?);
                }
                Ok(Reply::Array(Some(items)))
            }
            _ => Err(invalid(format!("unexpected reply line {line:?}"))),
        }
    }

    /// `RAFT.STATUS`, parsed by [`NodeStatus::parse`].
    pub fn status(&mut self) -> io::Result<NodeStatus> {
        match self.cmd(&["RAFT.STATUS"])? {
            Reply::Bulk(Some(text)) => NodeStatus::parse(&String::from_utf8_lossy(&text))
                .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error)),
            other => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("RAFT.STATUS replied {other:?}"),
            )),
        }
    }
}

/// Node ids as the plain numbers this harness names nodes by, sorted.
pub fn sorted_ids(ids: &[NodeId]) -> Vec<u64> {
    let mut ids: Vec<u64> = ids.iter().map(|id| id.0).collect();
    ids.sort_unstable();
    ids
}

// ----- processes -----

/// Free loopback ports, all distinct (every listener is held until all are picked).
pub fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local_addr").port())
        .collect()
}

pub struct Node {
    pub id: u64,
    pub peer: SocketAddr,
    pub client: SocketAddr,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    /// The metrics endpoint, with `Options::metrics`.
    pub metrics: Option<SocketAddr>,
    args: Vec<String>,
    /// Environment variables for the process (e.g. libfaketime's).
    env: Vec<(String, String)>,
    child: Option<Child>,
    /// Exit status of the last process that ended on its own.
    pub exited: Option<ExitStatus>,
}

impl Node {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

/// Options shared by every node of a cluster.
#[derive(Clone, Debug)]
pub struct Options {
    pub storage: &'static str,
    pub heartbeat_ms: u64,
    pub election_ms: u64,
    pub snapshot_entries: Option<u64>,
    /// `--cluster-id` of every node (kvnode's default when `None`).
    pub cluster_id: Option<u64>,
    /// Build every node's data directory with `kvnode --restore FILE` before starting it.
    pub restore_from: Option<PathBuf>,
    /// Mutual TLS between peers: a throwaway CA for the cluster and a certificate for each
    /// node (joining ones included), in `certs/` of the cluster's directory.
    pub peer_tls: bool,
    /// A cluster secret every node proves to its peers, in `cluster.secret`.
    pub cluster_secret: bool,
    /// More command-line arguments for every node.
    pub node_args: Vec<String>,
    /// TLS on the client ports: a certificate for 127.0.0.1 per node from the cluster's
    /// CA; the harness's clients dial these ports over TLS.
    pub client_tls: bool,
    /// With `client_tls`: clients must show a certificate (`certs/client.pem`).
    pub client_tls_auth_clients: bool,
    /// With `client_tls`: `--client-tls-handshake-ms` (kvnode's default when `None`).
    pub client_tls_handshake_ms: Option<u64>,
    /// A metrics endpoint on every node (`Cluster::metrics`).
    pub metrics: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            storage: "wal",
            heartbeat_ms: 50,
            // Longer than the default so a loaded 2-core test machine does not see spurious
            // elections; still a sub-second failover.
            election_ms: 300,
            snapshot_entries: None,
            cluster_id: None,
            restore_from: None,
            peer_tls: false,
            cluster_secret: false,
            node_args: Vec::new(),
            client_tls: false,
            client_tls_auth_clients: false,
            client_tls_handshake_ms: None,
            metrics: false,
        }
    }
}

impl Options {
    /// The defaults, with mutual TLS between peers.
    pub fn peer_tls() -> Options {
        Options {
            peer_tls: true,
            ..Options::default()
        }
    }

    /// The defaults, with TLS on both ports: mutual between peers, server-only (or
    /// mutual, with `auth_clients`) on the client port.
    pub fn tls_everywhere(auth_clients: bool) -> Options {
        Options {
            peer_tls: true,
            client_tls: true,
            client_tls_auth_clients: auth_clients,
            ..Options::default()
        }
    }
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: BTreeMap<u64, Node>,
    pub options: Options,
    /// The cluster's CA, with `Options::peer_tls` or `Options::client_tls`.
    pub ca: Option<raft_net::certgen::Authority>,
}

impl Cluster {
    /// Starts founding members `1..=count` and waits until each answers PING.
    pub fn start(count: u64, options: Options) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("kvnode-bb-")
            .tempdir()
            .expect("temp dir");
        let ports = free_ports(2 * count as usize);
        let addrs: Vec<(u64, SocketAddr, SocketAddr)> = (1..=count)
            .map(|id| {
                let i = (id - 1) as usize;
                let peer = SocketAddr::from(([127, 0, 0, 1], ports[2 * i]));
                let client = SocketAddr::from(([127, 0, 0, 1], ports[2 * i + 1]));
                (id, peer, client)
            })
            .collect();
        let members: Vec<String> = addrs
            .iter()
            .map(|(id, peer, client)| format!("--member={id}={peer},{client}"))
            .collect();
        let ca = (options.peer_tls || options.client_tls)
            .then(|| raft_net::certgen::Authority::new("black-box test CA").expect("CA"));
        let mut cluster = Cluster {
            dir,
            nodes: BTreeMap::new(),
            options,
            ca,
        };
        if cluster.options.cluster_secret {
            std::fs::write(
                cluster.secret_path(),
                "black-box-test-secret-0123456789abcdef\n",
            )
            .expect("write the secret");
        }
        for (id, peer, client) in &addrs {
            let mut args = members.clone();
            args.push(format!("--node-id={id}"));
            cluster.add_node(*id, *peer, *client, args);
        }
        if let Some(backup) = cluster.options.restore_from.clone() {
            for id in 1..=count {
                cluster.restore_node(id, &backup);
            }
        }
        for id in 1..=count {
            cluster.start_node(id);
        }
        for id in 1..=count {
            cluster.wait_serving(id, Duration::from_secs(20));
        }
        cluster
    }

    /// Runs `kvnode --restore` with node `id`'s arguments; it must succeed.
    fn restore_node(&self, id: u64, backup: &Path) {
        let node = &self.nodes[&id];
        let output = Command::new(env!("CARGO_BIN_EXE_kvnode"))
            .args(&node.args)
            .arg(format!("--restore={}", backup.display()))
            .output()
            .expect("run kvnode --restore");
        assert!(
            output.status.success(),
            "kvnode --restore for node {id}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn add_node(&mut self, id: u64, peer: SocketAddr, client: SocketAddr, mut args: Vec<String>) {
        let data_dir = self.dir.path().join(format!("node-{id}"));
        let log_path = self.dir.path().join(format!("node-{id}.log"));
        args.push(format!("--data-dir={}", data_dir.display()));
        args.push(format!("--storage={}", self.options.storage));
        args.push(format!("--heartbeat-ms={}", self.options.heartbeat_ms));
        args.push(format!("--election-ms={}", self.options.election_ms));
        if let Some(entries) = self.options.snapshot_entries {
            args.push(format!("--snapshot-entries={entries}"));
        }
        if let Some(cluster_id) = self.options.cluster_id {
            args.push(format!("--cluster-id={cluster_id}"));
        }
        args.extend(self.peer_security_args(id));
        args.extend(self.options.node_args.iter().cloned());
        args.extend(self.client_tls_args(id, client));
        let metrics = self
            .options
            .metrics
            .then(|| SocketAddr::from(([127, 0, 0, 1], free_ports(1)[0])));
        if let Some(addr) = metrics {
            args.push(format!("--metrics-addr={addr}"));
        }
        self.nodes.insert(
            id,
            Node {
                id,
                peer,
                client,
                data_dir,
                log_path,
                metrics,
                args,
                env: Vec::new(),
                child: None,
                exited: None,
            },
        );
    }

    pub fn secret_path(&self) -> PathBuf {
        self.dir.path().join("cluster.secret")
    }

    /// Where node `id`'s certificate, key and the CA are (with `Options::peer_tls`).
    pub fn tls_paths(&self, id: u64) -> (PathBuf, PathBuf, PathBuf) {
        let certs = self.dir.path().join("certs");
        (
            certs.join(format!("node-{id}.pem")),
            certs.join(format!("node-{id}.key")),
            certs.join("ca.pem"),
        )
    }

    /// Checks that every node logged the peer security it was given (so a test of a TLS
    /// cluster cannot pass over plain TCP).
    pub fn check_peer_security_logged(&self) {
        let expected = format!(
            "tls={} secret={}",
            self.options.peer_tls, self.options.cluster_secret
        );
        for id in self.nodes.keys() {
            let log = self.log(*id);
            assert!(
                log.contains(&expected),
                "node {id} lacks {expected:?}:\n{log}"
            );
        }
    }

    /// The flags for node `id`'s peer security: a certificate issued for it now, and the
    /// secret.
    fn peer_security_args(&self, id: u64) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(ca) = self.ca.as_ref().filter(|_| self.options.peer_tls) {
            let (cert, key, ca_path) = self.tls_paths(id);
            std::fs::create_dir_all(cert.parent().expect("certs dir")).expect("certs dir");
            let issued = ca
                .issue(
                    raft_net::ClusterId(self.options.cluster_id.unwrap_or(1)),
                    NodeId(id),
                    raft_net::certgen::Validity::Current,
                )
                .expect("issue a node certificate");
            std::fs::write(&cert, issued.cert_pem).expect("write cert");
            std::fs::write(&key, issued.key_pem).expect("write key");
            std::fs::write(&ca_path, ca.cert_pem()).expect("write CA");
            args.push(format!("--peer-tls-cert={}", cert.display()));
            args.push(format!("--peer-tls-key={}", key.display()));
            args.push(format!("--peer-tls-ca={}", ca_path.display()));
        }
        if self.options.cluster_secret {
            args.push(format!(
                "--cluster-secret-file={}",
                self.secret_path().display()
            ));
        }
        args
    }

    /// Where the CA, and the client certificate and key clients show with
    /// `client_tls_auth_clients`, are (with `Options::client_tls`).
    pub fn client_tls_paths(&self) -> (PathBuf, PathBuf, PathBuf) {
        let certs = self.dir.path().join("certs");
        (
            certs.join("ca.pem"),
            certs.join("client.pem"),
            certs.join("client.key"),
        )
    }

    /// How clients of this cluster dial its client ports (with `Options::client_tls`).
    pub fn client_tls_config(&self) -> Arc<rustls::ClientConfig> {
        let (ca, cert, key) = self.client_tls_paths();
        let identity = self.options.client_tls_auth_clients;
        kvnode::client_tls::tool_config(&ca, identity.then_some((cert.as_path(), key.as_path())))
            .expect("the harness's client TLS configuration")
    }

    /// The flags for node `id`'s client port TLS: a certificate for 127.0.0.1 issued now
    /// (and the clients' certificate); registers the port so the harness dials it over TLS.
    fn client_tls_args(&self, id: u64, client: SocketAddr) -> Vec<String> {
        let Some(ca) = self.ca.as_ref().filter(|_| self.options.client_tls) else {
            return Vec::new();
        };
        let certs = self.dir.path().join("certs");
        std::fs::create_dir_all(&certs).expect("certs dir");
        let (ca_path, client_cert, client_key) = self.client_tls_paths();
        std::fs::write(&ca_path, ca.cert_pem()).expect("write CA");
        let write_issued = |names: Vec<String>, cert: &Path, key: &Path| {
            let issued = ca
                .issue_names(names, raft_net::certgen::Validity::Current)
                .expect("issue a certificate");
            std::fs::write(cert, issued.cert_pem).expect("write cert");
            std::fs::write(key, issued.key_pem).expect("write key");
        };
        write_issued(vec!["raftkv-client".into()], &client_cert, &client_key);
        let (cert, key) = (
            certs.join(format!("client-port-{id}.pem")),
            certs.join(format!("client-port-{id}.key")),
        );
        write_issued(vec![client.ip().to_string()], &cert, &key);
        register_tls_port(client, self.client_tls_config());
        let mut args = vec![
            format!("--client-tls-cert={}", cert.display()),
            format!("--client-tls-key={}", key.display()),
            format!("--client-tls-ca={}", ca_path.display()),
        ];
        if self.options.client_tls_auth_clients {
            args.push("--client-tls-auth-clients".into());
        }
        if let Some(ms) = self.options.client_tls_handshake_ms {
            args.push(format!("--client-tls-handshake-ms={ms}"));
        }
        args
    }

    /// Registers (does not start) a node that will join the running cluster: `--join`, the
    /// current members' addresses, its own fresh ports.
    pub fn add_joining_node(&mut self, id: u64) {
        let ports = free_ports(2);
        let peer = SocketAddr::from(([127, 0, 0, 1], ports[0]));
        let client = SocketAddr::from(([127, 0, 0, 1], ports[1]));
        self.add_joining_node_at(id, peer, client);
    }

    /// [`Cluster::add_joining_node`] on given addresses (e.g. a removed node's old ones).
    pub fn add_joining_node_at(&mut self, id: u64, peer: SocketAddr, client: SocketAddr) {
        let mut args: Vec<String> = self
            .nodes
            .values()
            .map(|n| format!("--member={}={},{}", n.id, n.peer, n.client))
            .collect();
        args.push(format!("--node-id={id}"));
        args.push("--join".into());
        args.push(format!("--peer-addr={peer}"));
        args.push(format!("--client-addr={client}"));
        self.add_node(id, peer, client, args);
    }

    /// Starts (or restarts) node `id` with the arguments it was registered with; its stderr
    /// is appended to its log file.
    /// Adds a command-line argument for node `id`'s next start.
    #[allow(dead_code)]
    pub fn add_arg(&mut self, id: u64, arg: String) {
        self.nodes.get_mut(&id).expect("known node").args.push(arg);
    }

    /// Sets an environment variable for node `id`'s next start.
    pub fn set_env(&mut self, id: u64, key: &str, value: &str) {
        let node = self.nodes.get_mut(&id).expect("known node");
        node.env.retain(|(k, _)| k != key);
        node.env.push((key.to_owned(), value.to_owned()));
    }

    pub fn start_node(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).expect("known node");
        assert!(node.child.is_none(), "node {id} is already running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_path)
            .expect("open node log");
        let child = Command::new(env!("CARGO_BIN_EXE_kvnode"))
            .args(&node.args)
            .envs(node.env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn kvnode");
        node.child = Some(child);
        node.exited = None;
    }

    /// SIGKILLs node `id` and reaps it.
    pub fn kill(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).expect("known node");
        if let Some(mut child) = node.child.take() {
            // Child::kill sends SIGKILL on Unix.
            let _ = child.kill(); // it may have exited already; wait() below reaps either way
            let _ = child.wait(); // reaping only; the status of a killed child says nothing new
        }
    }

    pub fn signal(&self, id: u64, signal: &str) {
        let pid = self.nodes[&id].pid().expect("node is running");
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid} failed");
    }

    pub fn pause(&self, id: u64) {
        self.signal(id, "STOP");
    }

    pub fn resume(&self, id: u64) {
        self.signal(id, "CONT");
    }

    pub fn restart(&mut self, id: u64) {
        self.kill(id);
        self.start_node(id);
    }

    /// Polls until node `id`'s process exits on its own; returns its status.
    pub fn wait_exit(&mut self, id: u64, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let node = self.nodes.get_mut(&id).expect("known node");
        while Instant::now() < deadline {
            let child = node.child.as_mut().expect("node was started");
            if let Some(status) = child.try_wait().expect("try_wait") {
                node.child = None;
                node.exited = Some(status);
                return Some(status);
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        None
    }

    /// Node `id`'s Prometheus text (with `Options::metrics`).
    pub fn metrics(&self, id: u64) -> String {
        let addr = self.nodes[&id]
            .metrics
            .expect("started with Options::metrics");
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("connect to node {id}'s metrics at {addr}: {e}"));
        stream
            .set_read_timeout(Some(REPLY_TIMEOUT))
            .expect("read timeout");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("send the metrics request");
        let mut text = String::new();
        // Bounded: the server closes after one response (Connection: close).
        stream
            .take(16 << 20)
            .read_to_string(&mut text)
            .expect("read the metrics");
        text
    }

    /// The value of the metric line that starts with `series` (name and labels) on node
    /// `id`.
    pub fn metric(&self, id: u64, series: &str) -> u64 {
        let text = self.metrics(id);
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in node {id}'s metrics:\n{text}"))
    }

    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(&self.nodes[&id].log_path).unwrap_or_default()
    }

    pub fn client(&self, id: u64) -> Client {
        let addr = self.nodes[&id].client;
        Client::connect(addr).unwrap_or_else(|e| panic!("connect to node {id} at {addr}: {e}"))
    }

    pub fn addr(&self, id: u64) -> SocketAddr {
        self.nodes[&id].client
    }

    pub fn running_ids(&self) -> Vec<u64> {
        self.nodes
            .values()
            .filter(|n| n.is_running())
            .map(|n| n.id)
            .collect()
    }

    /// Polls PING on node `id` until it answers PONG.
    pub fn wait_serving(&self, id: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let addr = self.addr(id);
        loop {
            let pong = Client::connect_with(addr, Duration::from_secs(1))
                .and_then(|mut c| c.cmd(&["PING"]));
            if matches!(&pong, Ok(Reply::Simple(s)) if s == "PONG") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {id} did not answer PING within {timeout:?}: {pong:?}\n{}",
                self.log(id)
            );
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// RAFT.STATUS of node `id`, or None if it does not answer within a second.
    pub fn status(&self, id: u64) -> Option<NodeStatus> {
        Client::connect_with(self.addr(id), Duration::from_secs(1))
            .and_then(|mut c| c.status())
            .ok()
    }

    /// Polls until one of `ids` is leader and every one of `ids` names it leader at its
    /// term; returns the leader's id.
    pub fn wait_for_leader_among(&self, ids: &[u64], timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        let mut last = Vec::new();
        while Instant::now() < deadline {
            last = ids.iter().map(|id| (*id, self.status(*id))).collect();
            let leaders: Vec<(u64, Term)> = last
                .iter()
                .filter_map(|(id, s)| s.as_ref().map(|s| (*id, s)))
                .filter(|(_, s)| s.is_leader())
                .map(|(id, s)| (id, s.term))
                .collect();
            if let [(leader, term)] = leaders[..] {
                let agreed = last.iter().all(|(_, s)| {
                    s.as_ref()
                        .is_some_and(|s| s.leader == Some(NodeId(leader)) && s.term == term)
                });
                if agreed {
                    return leader;
                }
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        panic!("no leader agreed among {ids:?} within {timeout:?}; last statuses: {last:#?}");
    }

    pub fn wait_for_leader(&self, timeout: Duration) -> u64 {
        self.wait_for_leader_among(&self.running_ids(), timeout)
    }

    /// Polls until every one of `ids` has applied the same index, equal to the commit
    /// index every one of them reports (so nothing is left in flight); returns it.
    pub fn wait_converged(&self, ids: &[u64], timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        let mut last = Vec::new();
        while Instant::now() < deadline {
            last = ids.iter().map(|id| (*id, self.status(*id))).collect();
            let indexes: Option<Vec<(LogIndex, LogIndex)>> = last
                .iter()
                .map(|(_, s)| s.as_ref().map(|s| (s.applied_index, s.commit_index)))
                .collect();
            if let Some(indexes) = indexes {
                let first = indexes[0].0;
                if first > LogIndex::ZERO && indexes.iter().all(|&(a, c)| a == first && c == first)
                {
                    return first.0;
                }
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        panic!("nodes {ids:?} did not converge within {timeout:?}; last statuses: {last:#?}");
    }

    /// Sends an admin command to the current leader among `ids`, retrying on TRYAGAIN
    /// until `timeout`; returns the final reply.
    pub fn admin(&self, ids: &[u64], args: &[&str], timeout: Duration) -> Reply {
        let deadline = Instant::now() + timeout;
        loop {
            let leader = self.wait_for_leader_among(ids, deadline - Instant::now());
            let reply = self.client(leader).cmd(args);
            match reply {
                Ok(Reply::Error(e)) if e.starts_with("TRYAGAIN") && Instant::now() < deadline => {}
                Ok(reply) => return reply,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("admin {args:?} to {leader}: {e}; retrying")
                }
                Err(e) => panic!("admin {args:?} to {leader}: {e}"),
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Prints every node's log (stderr); called on panic.
    pub fn dump_logs(&self) {
        for id in self.nodes.keys() {
            let log = self.log(*id);
            let tail: Vec<&str> = log.lines().rev().take(150).collect();
            eprintln!("===== node {id} log (last {} lines) =====", tail.len());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            self.kill(id);
        }
        if std::thread::panicking() {
            self.dump_logs();
        }
    }
}

/// VmRSS of a process in KiB, from /proc.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

// ----- write streams and their check -----

/// What became of one write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `+OK`: the write must be visible on every member afterwards.
    Acked,
    /// `-TRYAGAIN`: the server says it was not applied.
    NotApplied(String),
    /// `-UNKNOWN`, a lost connection or a timeout after sending: either outcome is allowed.
    Unknown(String),
}

#[derive(Clone, Debug)]
pub struct WriteRecord {
    pub key: String,
    pub value: String,
    pub outcome: Outcome,
}

/// Background writers, each SETting fresh keys (every key is written once, so what a read
/// finds identifies the write) through the nodes in `targets`, moving to the next target
/// on any error. Records the outcome of every write it sent.
pub struct WriteStream {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    pub targets: Arc<Mutex<Vec<SocketAddr>>>,
    handles: Vec<JoinHandle<Vec<WriteRecord>>>,
}

/// Upper bound on one writer's life, whatever the test does.
const WRITE_STREAM_LIFETIME_MAX: Duration = Duration::from_secs(180);

impl WriteStream {
    pub fn start(prefix: &str, targets: Vec<SocketAddr>, writers: usize) -> WriteStream {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let targets = Arc::new(Mutex::new(targets));
        let handles = (0..writers)
            .map(|writer| {
                let stop = stop.clone();
                let acked = acked.clone();
                let targets = targets.clone();
                let prefix = format!("{prefix}:{writer}");
                std::thread::spawn(move || write_loop(&prefix, writer, &stop, &acked, &targets))
            })
            .collect();
        WriteStream {
            stop,
            acked,
            targets,
            handles,
        }
    }

    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    pub fn set_targets(&self, targets: Vec<SocketAddr>) {
        *self.targets.lock().expect("targets lock") = targets;
    }

    /// Polls until at least `count` writes are acknowledged in total.
    pub fn wait_acked(&self, count: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.acked() < count {
            assert!(
                Instant::now() < deadline,
                "only {} of {count} writes acknowledged within {timeout:?}",
                self.acked()
            );
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    pub fn stop(self) -> Vec<WriteRecord> {
        self.stop.store(true, Ordering::Relaxed);
        self.handles
            .into_iter()
            .flat_map(|h| h.join().expect("writer thread"))
            .collect()
    }
}

fn write_loop(
    prefix: &str,
    writer: usize,
    stop: &AtomicBool,
    acked: &AtomicU64,
    targets: &Mutex<Vec<SocketAddr>>,
) -> Vec<WriteRecord> {
    let started = Instant::now();
    let mut records = Vec::new();
    let mut target = writer;
    let mut client: Option<Client> = None;
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) && started.elapsed() < WRITE_STREAM_LIFETIME_MAX {
        let c = match client.as_mut() {
            Some(c) => c,
            None => {
                let list = targets.lock().expect("targets lock").clone();
                target = (target + 1) % list.len();
                match Client::connect_with(list[target], Duration::from_secs(5)) {
                    Ok(c) => client.insert(c),
                    Err(_) => {
                        std::thread::sleep(POLL_INTERVAL);
                        continue;
                    }
                }
            }
        };
        seq += 1;
        let key = format!("{prefix}:{seq}");
        let value = format!("value-{prefix}-{seq}");
        c.queue(&[b"SET", key.as_bytes(), value.as_bytes()]);
        let outcome = match c.flush() {
            // The request may be partly sent: we cannot know.
            Err(e) => Outcome::Unknown(format!("send: {e}")),
            Ok(()) => match c.read_reply() {
                Ok(reply) if reply.is_ok() => Outcome::Acked,
                Ok(Reply::Error(e)) if e.starts_with("TRYAGAIN") => Outcome::NotApplied(e),
                Ok(Reply::Error(e)) if e.starts_with("UNKNOWN") => Outcome::Unknown(e),
                Ok(other) => panic!("SET {key} got an unexpected reply {other:?}"),
                Err(e) => Outcome::Unknown(format!("reply: {e}")),
            },
        };
        if outcome == Outcome::Acked {
            acked.fetch_add(1, Ordering::Relaxed);
        } else {
            client = None;
            std::thread::sleep(POLL_INTERVAL);
        }
        records.push(WriteRecord {
            key,
            value,
            outcome,
        });
    }
    records
}

/// SETs sent per pipelined batch.
const PIPELINE_DEPTH: usize = 100;
/// Attempts per batch before the test gives up (a retry re-sends the same key and value,
/// so an unknown earlier outcome cannot leave a different value behind).
const BATCH_ATTEMPTS_MAX: usize = 20;

/// Sends `keys` as pipelined SETs to node `id`, re-sending any that did not get `+OK`.
pub fn set_pipelined(cluster: &Cluster, id: u64, records: &[WriteRecord]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    for batch in records.chunks(PIPELINE_DEPTH) {
        let mut todo: Vec<&WriteRecord> = batch.iter().collect();
        for attempt in 1.. {
            assert!(
                attempt <= BATCH_ATTEMPTS_MAX && Instant::now() < deadline,
                "node {id}: {} SETs still not acknowledged after {attempt} attempts",
                todo.len()
            );
            let mut client = cluster.client(id);
            for record in &todo {
                client.queue(&[b"SET", record.key.as_bytes(), record.value.as_bytes()]);
            }
            client.flush().expect("send pipeline");
            let mut failed = Vec::new();
            for record in todo {
                match client.read_reply() {
                    Ok(reply) if reply.is_ok() => {}
                    Ok(Reply::Error(e))
                        if e.starts_with("TRYAGAIN") || e.starts_with("UNKNOWN") =>
                    {
                        failed.push(record)
                    }
                    Ok(other) => panic!("SET {} replied {other:?}", record.key),
                    Err(_) => failed.push(record),
                }
            }
            if failed.is_empty() {
                break;
            }
            todo = failed;
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

/// Counts of each outcome, for messages.
pub fn summarize(records: &[WriteRecord]) -> String {
    let acked = records
        .iter()
        .filter(|r| r.outcome == Outcome::Acked)
        .count();
    let not_applied = records
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::NotApplied(_)))
        .count();
    let unknown = records.len() - acked - not_applied;
    format!("{acked} acknowledged, {not_applied} not applied (TRYAGAIN), {unknown} unknown")
}

/// Keys per MGET when checking.
const CHECK_BATCH_KEYS: usize = 500;

/// Reads every recorded key from node `id` (linearizable reads, or local reads after
/// `READONLY` when `stale`) and checks it against its outcome: an acknowledged write must
/// be there with its value; a TRYAGAIN write must be absent; an unknown one may be either.
pub fn check_history(cluster: &Cluster, id: u64, records: &[WriteRecord], stale: bool) {
    let mut client = cluster.client(id);
    if stale {
        assert!(client.cmd(&["READONLY"]).expect("READONLY").is_ok());
    }
    for chunk in records.chunks(CHECK_BATCH_KEYS) {
        let mut args: Vec<&[u8]> = vec![b"MGET"];
        args.extend(chunk.iter().map(|r| r.key.as_bytes()));
        let reply = read_retrying(&mut client, &args);
        let Reply::Array(Some(values)) = reply else {
            panic!("MGET on node {id} replied {reply:?}");
        };
        assert_eq!(values.len(), chunk.len(), "MGET reply length on node {id}");
        for (record, value) in chunk.iter().zip(values) {
            let found = value.bulk_string();
            match &record.outcome {
                Outcome::Acked => assert_eq!(
                    found.as_deref(),
                    Some(record.value.as_str()),
                    "node {id} (stale={stale}) lost acknowledged write {} = {}",
                    record.key,
                    record.value
                ),
                Outcome::NotApplied(why) => assert_eq!(
                    found, None,
                    "node {id} (stale={stale}) has {} although its SET got {why}",
                    record.key
                ),
                Outcome::Unknown(_) => {
                    if let Some(found) = found {
                        assert_eq!(found, record.value, "node {id} has a value never written");
                    }
                }
            }
        }
    }
}

/// Sends a read, retrying on TRYAGAIN (a leader change during the check) for a while.
pub fn read_retrying(client: &mut Client, args: &[&[u8]]) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = client.call(args).expect("read");
        match &reply {
            Reply::Error(e) if e.starts_with("TRYAGAIN") && Instant::now() < deadline => {
                std::thread::sleep(POLL_INTERVAL);
            }
            _ => return reply,
        }
    }
}

/// Checks `records` on every node in `ids`: linearizable reads, then, once every node has
/// applied the same index, local (READONLY) reads.
pub fn check_everywhere(cluster: &Cluster, ids: &[u64], records: &[WriteRecord]) {
    for id in ids {
        check_history(cluster, *id, records, false);
    }
    cluster.wait_converged(ids, Duration::from_secs(20));
    for id in ids {
        check_history(cluster, *id, records, true);
    }
}

/// Opens a file for appending test notes next to the node logs.
pub fn notes(cluster: &Cluster) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(cluster.dir.path().join("notes.log"))
        .expect("notes file")
}
