//! `kvctl`: a small command-line client for a raftkv cluster.
//!
//! It speaks RESP to the nodes' client ports (the same port redis-cli uses), with
//! `kvnode::resp` for the bytes. `status` asks every endpoint for `RAFT.STATUS` and prints
//! one table; the other subcommands go to the first endpoint that answers (a follower
//! forwards writes and admin commands to the leader).
//!
//! Must never: wait without a bound (every connect, read and write has a timeout, and every
//! retry loop a count), or exit 0 after a failure. Exit codes: 0 success, 1 the cluster
//! answered with an error or could not be reached, 2 bad usage (clap's own code).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};
use kvnode::resp::Frame;
use kvnode::status::{role_name, NodeStatus};
use raft_core::NodeId;

mod snapshot;
mod wire;

use wire::{connect, request, Tls, TlsFlags};

/// Pause between rounds over the endpoints when every one asked us to try again.
const RETRY_PAUSE: Duration = Duration::from_millis(250);

#[derive(Parser, Debug)]
#[command(
    name = "kvctl",
    version,
    about = "Inspect and administer a raftkv cluster over its Redis port."
)]
struct Cli {
    /// Client addresses of the nodes, comma-separated (host:port,...).
    #[arg(
        long,
        env = "KVCTL_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:6381"
    )]
    endpoints: Vec<String>,
    /// Timeout of each connect, read and write, in milliseconds.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
    timeout_ms: u64,
    /// Rounds over the endpoints while they answer TRYAGAIN (e.g. during an election).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1000))]
    rounds: u32,
    #[command(flatten)]
    tls: TlsFlags,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// A table of every member: role, term, leader, commit/applied/last index, lag.
    Status,
    /// Print the leader's id and client address; fails if no endpoint knows a leader.
    Leader {
        /// Keep polling for up to this many seconds until a leader is known.
        #[arg(long, default_value_t = 0)]
        wait_secs: u64,
    },
    /// Add a node (started with --join) as a non-voting learner.
    AddLearner {
        id: u64,
        /// The new node's peer address (host:port).
        peer: String,
        /// The new node's client address (host:port).
        client: String,
    },
    /// Make a learner a voter.
    Promote { id: u64 },
    /// Remove a voter or learner from the cluster.
    Remove { id: u64 },
    /// Hand leadership to another voter, and wait until it has it.
    Transfer {
        id: u64,
        /// How long to wait for the new leader to show up, in seconds (0: do not wait).
        #[arg(long, default_value_t = 10)]
        wait_secs: u64,
    },
    /// Read a key (linearizable).
    Get { key: String },
    /// Write a key.
    Set { key: String, value: String },
    /// Back up the cluster: `kvctl snapshot save FILE` writes a consistent copy of its state
    /// (taken at a linearizable point, checksummed) for `kvnode --restore`.
    Snapshot {
        #[command(subcommand)]
        action: SnapshotAction,
    },
    /// Send any command and print the reply, e.g. `kvctl call INFO raft`.
    Call {
        #[arg(required = true, num_args = 1..)]
        args: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
enum SnapshotAction {
    /// Write a backup to FILE (through a temporary file, synced and renamed into place).
    Save {
        file: std::path::PathBuf,
        /// How long the node may take to copy its state before the first byte arrives, in
        /// seconds (it writes the whole state to a file first).
        #[arg(long, default_value_t = 300)]
        prepare_secs: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("kvctl: {failure:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: &Cli) -> Result<()> {
    let client = Client {
        endpoints: cli
            .endpoints
            .iter()
            .map(|e| e.trim().to_owned())
            .filter(|e| !e.is_empty())
            .collect(),
        timeout: Duration::from_millis(cli.timeout_ms),
        rounds: cli.rounds,
        tls: cli.tls.config()?,
    };
    if client.endpoints.is_empty() {
        bail!("no endpoints given (--endpoints host:port,...)");
    }
    match &cli.command {
        Command::Status => run_status(&client),
        Command::Leader { wait_secs } => {
            let (id, address) = client.wait_for_leader(Duration::from_secs(*wait_secs), None)?;
            println!("{id} {address}");
            Ok(())
        }
        Command::AddLearner {
            id,
            peer,
            client: addr,
        } => print_reply(&client.call(&["RAFT.ADDLEARNER", &id.to_string(), peer, addr])?),
        Command::Promote { id } => print_reply(&client.call(&["RAFT.PROMOTE", &id.to_string()])?),
        Command::Remove { id } => print_reply(&client.call(&["RAFT.REMOVE", &id.to_string()])?),
        Command::Transfer { id, wait_secs } => run_transfer(&client, *id, *wait_secs),
        Command::Get { key } => print_reply(&client.call(&["GET", key])?),
        Command::Set { key, value } => print_reply(&client.call(&["SET", key, value])?),
        Command::Snapshot {
            action: SnapshotAction::Save { file, prepare_secs },
        } => snapshot::save(&client, file, Duration::from_secs(*prepare_secs)),
        Command::Call { args } => {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            print_reply(&client.call(&args)?)
        }
    }
}

fn run_transfer(client: &Client, id: u64, wait_secs: u64) -> Result<()> {
    print_reply(&client.call(&["RAFT.TRANSFER", &id.to_string()])?)?;
    if wait_secs == 0 {
        return Ok(());
    }
    let (leader, address) = client
        .wait_for_leader(Duration::from_secs(wait_secs), Some(NodeId(id)))
        .with_context(|| format!("node {id} did not become leader within {wait_secs} s"))?;
    println!("leader is now {leader} ({address})");
    Ok(())
}

/// Prints a reply the way redis-cli does (roughly); an error reply is a failure.
fn print_reply(reply: &Frame) -> Result<()> {
    match reply {
        Frame::Error(message) => bail!("server replied: {message}"),
        other => {
            println!("{}", render(other));
            Ok(())
        }
    }
}

/// A frame as text, one line per element for aggregates (no recursion deeper than the
/// reply itself, which the decoder already capped).
fn render(frame: &Frame) -> String {
    match frame {
        Frame::Simple(text) | Frame::Error(text) => text.clone(),
        Frame::Integer(n) => n.to_string(),
        Frame::Bulk(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Frame::Null | Frame::NullArray => "(nil)".to_owned(),
        Frame::Double(x) => x.to_string(),
        Frame::Boolean(b) => b.to_string(),
        Frame::Array(items) => items.iter().map(render).collect::<Vec<_>>().join("\n"),
        Frame::Map(pairs) => pairs
            .iter()
            .map(|(k, v)| format!("{}: {}", render(k), render(v)))
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

// ----- status -----

/// One endpoint's `RAFT.STATUS`, or why it could not be had.
struct EndpointStatus {
    endpoint: String,
    status: Result<NodeStatus>,
}

fn run_status(client: &Client) -> Result<()> {
    let statuses = client.status_all();
    if statuses.iter().all(|s| s.status.is_err()) {
        for status in &statuses {
            if let Err(failure) = &status.status {
                eprintln!("{}: {failure:#}", status.endpoint);
            }
        }
        bail!("no endpoint answered");
    }
    print!("{}", status_table(&statuses));
    Ok(())
}

const COLUMNS: [&str; 10] = [
    "ENDPOINT", "ID", "ROLE", "MEMBER", "TERM", "LEADER", "COMMIT", "APPLIED", "LAST", "LAG",
];

/// The table: one row per endpoint, then a row for each member the leader knows that no
/// endpoint reported.
fn status_table(statuses: &[EndpointStatus]) -> String {
    let leader = statuses
        .iter()
        .filter_map(|s| s.status.as_ref().ok())
        .find(|status| status.is_leader());
    let mut rows: Vec<Vec<String>> = vec![COLUMNS.iter().map(|c| (*c).to_owned()).collect()];
    let mut seen = Vec::new();
    for endpoint in statuses {
        rows.push(match &endpoint.status {
            Ok(status) => {
                seen.push(status.node_id);
                status_row(&endpoint.endpoint, status, leader)
            }
            Err(failure) => {
                let mut row = vec![endpoint.endpoint.clone(), "-".into()];
                row.push(format!("unreachable ({})", short_reason(failure)));
                row
            }
        });
    }
    if let Some(leader) = leader {
        for id in member_ids(leader) {
            if !seen.contains(&id) {
                let lag = leader
                    .lag(id)
                    .map_or_else(String::new, |lag| lag.to_string());
                let mut row = vec!["(not queried)".into(), id.to_string(), "?".into()];
                row.push(membership_of(leader, id).into());
                row.extend(["", "", "", "", ""].map(String::from));
                row.push(lag);
                rows.push(row);
            }
        }
    }
    format_table(&rows)
}

fn status_row(endpoint: &str, status: &NodeStatus, leader: Option<&NodeStatus>) -> Vec<String> {
    let id = status.node_id;
    let (member, lag) = match leader {
        Some(leader) if leader.node_id == id => (membership_of(leader, id), Some(0)),
        Some(leader) => (membership_of(leader, id), leader.lag(id)),
        None => (membership_of(status, id), None),
    };
    vec![
        endpoint.to_owned(),
        id.to_string(),
        role_name(status.role).to_owned(),
        member.to_owned(),
        status.term.to_string(),
        status
            .leader
            .map_or_else(|| "none".to_owned(), |id| id.to_string()),
        status.commit_index.to_string(),
        status.applied_index.to_string(),
        status.last_index.to_string(),
        lag.map_or_else(|| "?".to_owned(), |lag| lag.to_string()),
    ]
}

/// Voters (current and outgoing) and learners, in that order, without repeats.
fn member_ids(status: &NodeStatus) -> Vec<NodeId> {
    let mut ids = Vec::new();
    for id in [&status.voters, &status.voters_outgoing, &status.learners]
        .into_iter()
        .flatten()
    {
        if !ids.contains(id) {
            ids.push(*id);
        }
    }
    ids
}

fn membership_of(status: &NodeStatus, id: NodeId) -> &'static str {
    if status.voters.contains(&id) {
        "voter"
    } else if status.voters_outgoing.contains(&id) {
        "leaving"
    } else if status.learners.contains(&id) {
        "learner"
    } else {
        "none"
    }
}

fn short_reason(failure: &anyhow::Error) -> String {
    failure.root_cause().to_string()
}

/// Left-aligned columns separated by two spaces; short rows are padded.
fn format_table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; columns];
    for row in rows {
        // The unreachable note runs past its column; don't widen the ROLE column for it.
        if row.len() == columns {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.len());
            }
        }
    }
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

// ----- the client -----

struct Client {
    endpoints: Vec<String>,
    timeout: Duration,
    rounds: u32,
    /// With `--tls`: how to dial the client ports.
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Client {
    /// Sends `args` to the first endpoint that answers with anything but a connection
    /// failure or `TRYAGAIN`, for up to `rounds` rounds over the endpoints.
    fn call(&self, args: &[&str]) -> Result<Frame> {
        let mut last_failure = anyhow!("no endpoint was tried");
        for round in 0..self.rounds {
            if round > 0 {
                std::thread::sleep(RETRY_PAUSE);
            }
            for endpoint in &self.endpoints {
                match call_once(endpoint, args, self.timeout, self.tls.as_ref()) {
                    Ok(Frame::Error(message)) if message.starts_with("TRYAGAIN") => {
                        last_failure = anyhow!("{endpoint} replied: {message}");
                    }
                    Ok(reply) => return Ok(reply),
                    Err(failure) => last_failure = failure,
                }
            }
        }
        Err(last_failure.context(format!(
            "{} failed on every endpoint ({} rounds)",
            args[0], self.rounds
        )))
    }

    /// `RAFT.STATUS` from every endpoint, asked in parallel (each call is time-bounded).
    fn status_all(&self) -> Vec<EndpointStatus> {
        std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .endpoints
                .iter()
                .map(|endpoint| {
                    scope.spawn(move || EndpointStatus {
                        endpoint: endpoint.clone(),
                        status: status_of(endpoint, self.timeout, self.tls.as_ref()),
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| handle.join().expect("a status thread does not panic"))
                .collect()
        })
    }

    /// Polls until a leader is known (node `want`, if given); returns its id and client
    /// address. A node that says it is the leader counts, and so does a node naming the
    /// leader (with its client address), since the endpoints may not include the leader.
    /// Bounded by `wait` (at least one poll is made).
    fn wait_for_leader(&self, wait: Duration, want: Option<NodeId>) -> Result<(NodeId, String)> {
        let deadline = Instant::now() + wait;
        loop {
            let statuses = self.status_all();
            let found = statuses
                .iter()
                .filter_map(reported_leader)
                .find(|(id, _)| want.is_none_or(|want| want == *id));
            if let Some(found) = found {
                return Ok(found);
            }
            if Instant::now() >= deadline {
                let reachable = statuses.iter().filter(|s| s.status.is_ok()).count();
                bail!(
                    "no leader found ({reachable} of {} endpoints reachable)",
                    statuses.len()
                );
            }
            std::thread::sleep(RETRY_PAUSE);
        }
    }
}

/// The leader an endpoint reports: itself, or the leader it follows (if it knows where).
fn reported_leader(endpoint: &EndpointStatus) -> Option<(NodeId, String)> {
    let status = endpoint.status.as_ref().ok()?;
    if status.is_leader() {
        return Some((status.node_id, endpoint.endpoint.clone()));
    }
    Some((status.leader?, status.leader_client.clone()?))
}

fn status_of(endpoint: &str, timeout: Duration, tls: Tls<'_>) -> Result<NodeStatus> {
    match call_once(endpoint, &["RAFT.STATUS"], timeout, tls)? {
        Frame::Bulk(text) => NodeStatus::parse(&String::from_utf8_lossy(&text))
            .with_context(|| format!("{endpoint} sent a RAFT.STATUS that does not parse")),
        Frame::Error(message) => bail!("{endpoint} replied: {message}"),
        other => bail!("{endpoint} sent an unexpected RAFT.STATUS reply: {other:?}"),
    }
}

/// One connection, one request, one reply; every step bounded by `timeout`.
fn call_once(endpoint: &str, args: &[&str], timeout: Duration, tls: Tls<'_>) -> Result<Frame> {
    let mut stream = connect(endpoint, timeout, tls)?;
    request(&mut stream, endpoint, args, timeout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::{LogIndex, Role, Term};

    fn ids(ids: &[u64]) -> Vec<NodeId> {
        ids.iter().copied().map(NodeId).collect()
    }

    fn answered(endpoint: &str, status: &NodeStatus) -> EndpointStatus {
        EndpointStatus {
            endpoint: endpoint.into(),
            status: NodeStatus::parse(&status.render()).map_err(anyhow::Error::from),
        }
    }

    /// Node `id` of voters 1,2,3 in term 2 under leader 1 (at a:1), everything up to `index`
    /// committed and applied.
    fn member(id: u64, role: Role, index: u64) -> NodeStatus {
        NodeStatus {
            node_id: NodeId(id),
            role,
            term: Term(2),
            leader: Some(NodeId(1)),
            leader_client: Some("a:1".into()),
            commit_index: LogIndex(index),
            applied_index: LogIndex(index),
            last_index: LogIndex(index),
            voters: ids(&[1, 2, 3]),
            ..NodeStatus::default()
        }
    }

    /// Node 1 leads a joint configuration (voters 1,2,3; outgoing 1,2,5) with learner 4;
    /// node 2 follows, 3 is unreachable, and 4 and 5 were not asked.
    #[test]
    fn status_table_shows_lag_from_the_leader_and_unreachable_endpoints() {
        let leader = NodeStatus {
            voters_outgoing: ids(&[1, 2, 5]),
            learners: ids(&[4]),
            matched: vec![
                (NodeId(2), LogIndex(7)),
                (NodeId(3), LogIndex(9)),
                (NodeId(4), LogIndex(4)),
            ],
            ..member(1, Role::Leader, 9)
        };
        let follower = member(2, Role::Follower, 7);
        let statuses = vec![
            answered("a:1", &leader),
            answered("b:2", &follower),
            EndpointStatus {
                endpoint: "c:3".into(),
                status: Err(anyhow!("connection refused")),
            },
        ];
        let expected = "\
ENDPOINT       ID  ROLE      MEMBER   TERM  LEADER  COMMIT  APPLIED  LAST  LAG
a:1            1   leader    voter    2     1       9       9        9     0
b:2            2   follower  voter    2     1       7       7        7     2
c:3            -   unreachable (connection refused)
(not queried)  3   ?         voter                                         0
(not queried)  5   ?         leaving
(not queried)  4   ?         learner                                       5
";
        assert_eq!(status_table(&statuses), expected);
        assert_eq!(
            reported_leader(&statuses[1]),
            Some((NodeId(1), "a:1".to_owned()))
        );
    }

    #[test]
    fn without_a_leader_each_row_shows_its_own_membership_and_no_lag() {
        let candidate = NodeStatus {
            node_id: NodeId(3),
            role: Role::Candidate,
            term: Term(3),
            commit_index: LogIndex(9),
            applied_index: LogIndex(8),
            last_index: LogIndex(10),
            voters: ids(&[1, 2, 3]),
            learners: ids(&[4]),
            ..NodeStatus::default()
        };
        let learner = NodeStatus {
            node_id: NodeId(4),
            role: Role::Follower,
            term: Term(2),
            ..candidate.clone()
        };
        let statuses = vec![
            answered("host-three:6381", &candidate),
            answered("d:4", &learner),
        ];
        let expected = "\
ENDPOINT         ID  ROLE       MEMBER   TERM  LEADER  COMMIT  APPLIED  LAST  LAG
host-three:6381  3   candidate  voter    3     none    9       8        10    ?
d:4              4   follower   learner  2     none    9       8        10    ?
";
        assert_eq!(status_table(&statuses), expected);
        assert_eq!(reported_leader(&statuses[0]), None);
    }
}
