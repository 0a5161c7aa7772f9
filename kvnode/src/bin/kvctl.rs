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

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Bytes, BytesMut};
use clap::{Parser, Subcommand};
use kvnode::resp::{decode_frame, encode, Frame, Limits, Protocol};

/// Largest reply kvctl accepts, in bytes (a value is at most 8 MiB by default; a status
/// bulk is a few hundred bytes).
const REPLY_BYTES_MAX: usize = 64 * 1024 * 1024;
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
    /// Send any command and print the reply, e.g. `kvctl call INFO raft`.
    Call {
        #[arg(required = true, num_args = 1..)]
        args: Vec<String>,
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
        .wait_for_leader(Duration::from_secs(wait_secs), Some(id))
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
        Frame::Null => "(nil)".to_owned(),
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

/// One endpoint's `RAFT.STATUS`, as key/value pairs, or why it could not be had.
struct EndpointStatus {
    endpoint: String,
    fields: Result<BTreeMap<String, String>>,
}

fn run_status(client: &Client) -> Result<()> {
    let statuses = client.status_all();
    if statuses.iter().all(|s| s.fields.is_err()) {
        for status in &statuses {
            if let Err(failure) = &status.fields {
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
        .filter_map(|s| s.fields.as_ref().ok())
        .find(|f| field(f, "role") == "leader");
    let mut rows: Vec<Vec<String>> = vec![COLUMNS.iter().map(|c| (*c).to_owned()).collect()];
    let mut seen = Vec::new();
    for status in statuses {
        rows.push(match &status.fields {
            Ok(fields) => {
                seen.push(field(fields, "node_id").to_owned());
                status_row(&status.endpoint, fields, leader)
            }
            Err(failure) => {
                let mut row = vec![status.endpoint.clone(), "-".into()];
                row.push(format!("unreachable ({})", short_reason(failure)));
                row
            }
        });
    }
    if let Some(leader) = leader {
        for id in member_ids(leader) {
            if !seen.contains(&id) {
                let member = membership_of(leader, &id);
                let lag = field(leader, &format!("lag_{id}")).to_owned();
                let mut row = vec!["(not queried)".into(), id, "?".into(), member.into()];
                row.extend(["", "", "", "", ""].map(String::from));
                row.push(lag);
                rows.push(row);
            }
        }
    }
    format_table(&rows)
}

fn status_row(
    endpoint: &str,
    fields: &BTreeMap<String, String>,
    leader: Option<&BTreeMap<String, String>>,
) -> Vec<String> {
    let id = field(fields, "node_id");
    let (member, lag) = match leader {
        Some(leader) => (
            membership_of(leader, id),
            if field(leader, "node_id") == id {
                "0"
            } else {
                field(leader, &format!("lag_{id}"))
            },
        ),
        None => (membership_of(fields, id), ""),
    };
    let leader_id = match field(fields, "leader_id") {
        "0" | "" => "none",
        other => other,
    };
    [
        endpoint,
        id,
        field(fields, "role"),
        member,
        field(fields, "term"),
        leader_id,
        field(fields, "commit_index"),
        field(fields, "applied_index"),
        field(fields, "last_log_index"),
        if lag.is_empty() { "?" } else { lag },
    ]
    .map(str::to_owned)
    .to_vec()
}

fn field<'a>(fields: &'a BTreeMap<String, String>, key: &str) -> &'a str {
    fields.get(key).map(String::as_str).unwrap_or("")
}

fn list_field(fields: &BTreeMap<String, String>, key: &str) -> Vec<String> {
    field(fields, key)
        .split(',')
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Voters (current and outgoing) and learners, in that order, without repeats.
fn member_ids(fields: &BTreeMap<String, String>) -> Vec<String> {
    let mut ids = Vec::new();
    for key in ["voters", "voters_outgoing", "learners"] {
        for id in list_field(fields, key) {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    ids
}

fn membership_of(fields: &BTreeMap<String, String>, id: &str) -> &'static str {
    let has = |key| list_field(fields, key).iter().any(|m| m == id);
    if has("voters") {
        "voter"
    } else if has("voters_outgoing") {
        "leaving"
    } else if has("learners") {
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

/// Parses `key:value\r\n` lines.
fn parse_status(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.trim_end().split_once(':'))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

// ----- the client -----

struct Client {
    endpoints: Vec<String>,
    timeout: Duration,
    rounds: u32,
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
                match call_once(endpoint, args, self.timeout) {
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
                        fields: status_of(endpoint, self.timeout),
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
    fn wait_for_leader(&self, wait: Duration, want: Option<u64>) -> Result<(u64, String)> {
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
                let reachable = statuses.iter().filter(|s| s.fields.is_ok()).count();
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
fn reported_leader(status: &EndpointStatus) -> Option<(u64, String)> {
    let fields = status.fields.as_ref().ok()?;
    if field(fields, "role") == "leader" {
        return Some((
            field(fields, "node_id").parse().ok()?,
            status.endpoint.clone(),
        ));
    }
    let leader: u64 = field(fields, "leader_id").parse().ok()?;
    let address = field(fields, "leader_client_addr");
    (leader != 0 && !address.is_empty()).then(|| (leader, address.to_owned()))
}

fn status_of(endpoint: &str, timeout: Duration) -> Result<BTreeMap<String, String>> {
    match call_once(endpoint, &["RAFT.STATUS"], timeout)? {
        Frame::Bulk(text) => Ok(parse_status(&String::from_utf8_lossy(&text))),
        Frame::Error(message) => bail!("{endpoint} replied: {message}"),
        other => bail!("{endpoint} sent an unexpected RAFT.STATUS reply: {other:?}"),
    }
}

/// One connection, one request, one reply; every step bounded by `timeout`.
fn call_once(endpoint: &str, args: &[&str], timeout: Duration) -> Result<Frame> {
    let address = resolve(endpoint)?;
    let mut stream = TcpStream::connect_timeout(&address, timeout)
        .with_context(|| format!("connecting to {endpoint}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    let request = Frame::Array(
        args.iter()
            .map(|arg| Frame::Bulk(Bytes::copy_from_slice(arg.as_bytes())))
            .collect(),
    );
    let mut out = BytesMut::new();
    encode(&request, Protocol::Resp2, &mut out);
    stream
        .write_all(&out)
        .with_context(|| format!("sending {} to {endpoint}", args[0]))?;
    read_reply(&mut stream, timeout).with_context(|| format!("reading the reply from {endpoint}"))
}

/// Reads until one whole frame has arrived, within `timeout` overall.
fn read_reply(stream: &mut TcpStream, timeout: Duration) -> Result<Frame> {
    let limits = Limits {
        bulk_bytes_max: REPLY_BYTES_MAX,
        frame_bytes_max: REPLY_BYTES_MAX + 1024,
        ..Limits::default()
    };
    let deadline = Instant::now() + timeout;
    let mut buf = BytesMut::new();
    let mut chunk = [0u8; 16 * 1024];
    // Bounded: each pass reads at least one byte or fails, the reply is capped at
    // REPLY_BYTES_MAX, and the deadline caps the time.
    loop {
        if let Some(frame) = decode_frame(&mut buf, &limits)? {
            return Ok(frame);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?}");
        }
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            bail!("connection closed before a whole reply arrived");
        }
        buf.extend_from_slice(&chunk[..read]);
    }
}

fn resolve(endpoint: &str) -> Result<SocketAddr> {
    endpoint
        .to_socket_addrs()
        .with_context(|| format!("{endpoint:?} is not a host:port"))?
        .next()
        .ok_or_else(|| anyhow!("{endpoint:?} resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(text: &str) -> BTreeMap<String, String> {
        parse_status(text)
    }

    #[test]
    fn status_table_shows_lag_from_the_leader_and_unreachable_endpoints() {
        let leader = "node_id:1\r\nrole:leader\r\nterm:2\r\nleader_id:1\r\ncommit_index:9\r\napplied_index:9\r\nlast_log_index:9\r\nvoters:1,2,3\r\nvoters_outgoing:\r\nlearners:4\r\nmatched_2:7\r\nlag_2:2\r\nlag_3:0\r\nlag_4:5\r\n";
        let follower = "node_id:2\r\nrole:follower\r\nterm:2\r\nleader_id:1\r\ncommit_index:7\r\napplied_index:7\r\nlast_log_index:7\r\nvoters:1,2,3\r\n";
        let statuses = vec![
            EndpointStatus {
                endpoint: "a:1".into(),
                fields: Ok(fields(leader)),
            },
            EndpointStatus {
                endpoint: "b:2".into(),
                fields: Ok(fields(follower)),
            },
            EndpointStatus {
                endpoint: "c:3".into(),
                fields: Err(anyhow!("connection refused")),
            },
        ];
        let table = status_table(&statuses);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("ENDPOINT"), "{table}");
        assert!(
            lines[1].contains("leader") && lines[1].ends_with(" 0"),
            "{table}"
        );
        assert!(
            lines[2].contains("follower") && lines[2].ends_with(" 2"),
            "{table}"
        );
        assert!(
            lines[3].contains("unreachable (connection refused)"),
            "{table}"
        );
        // Members the leader knows but nobody asked: 3 and the learner 4.
        assert!(
            lines[4].starts_with("(not queried)") && lines[4].contains(" 3 "),
            "{table}"
        );
        assert!(
            lines[5].contains("learner") && lines[5].ends_with(" 5"),
            "{table}"
        );
    }
}
