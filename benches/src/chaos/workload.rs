//! The workloads: clients that send one request at a time over the Redis protocol, each with a
//! hard deadline, and record every request in the history.
//!
//! - registers: `SET r<g>:<k> v` / `GET`, values unique in the run; keys rotate every
//!   [`OPS_PER_KEY_GENERATION`] operations so each key's history stays small for the search;
//! - counters: `INCR c<k>` / `GET` on [`COUNTER_KEYS`] keys for the whole run;
//! - sets: `APPEND s<g>:<k> "e,"` of unique elements / `GET`, keys rotating like registers;
//! - txn: bank transfers in `MULTI`/`EXEC` and reads of every account at once ([`txn`]).
//!
//! Extension point: a new workload (a watch stream) is a new [`Workload`] variant with its
//! arms in [`next_call`], [`perform`] and [`interpret`], and a checker in `checker/`; the
//! client loop, deadlines, history and report take it as it is.
//!
//! With `stale_reads` every connection sends `READONLY` first, so reads are answered from the
//! node's local state without the ReadIndex round: the seeded bug the suite must catch. On
//! followers that is caught at once (they apply after the leader answers); with
//! `leader_only` as well, a client (re)connects only to the node last seen leading and stays
//! there while it answers, as a client bound to a node would; a stale read then needs a
//! deposed leader that still answers reads: the partition case.
//!
//! Bounded: a client stops at the stop flag, at its deadline, or after [`OPS_PER_CLIENT_MAX`]
//! operations; every request waits at most the request timeout.

use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use kvnode::resp::Frame;
use kvnode::status::NodeStatus;
use tokio::time::Instant;

use super::client::Dialer;
use super::history::{Call, Op, Outcome, Phase, Ret, Workload};
use crate::kvbench::client::{ClientError, Connection};
use crate::kvbench::workload::Rng;

pub mod txn;

/// Operations per key generation (registers and sets): after this many operations of the
/// workload, clients move to fresh keys.
pub const OPS_PER_KEY_GENERATION: u64 = 300;
/// Keys in use at once per generation.
pub const KEYS_PER_GENERATION: u64 = 3;
/// Counter keys.
pub const COUNTER_KEYS: u64 = 2;
/// Most operations one client records.
pub const OPS_PER_CLIENT_MAX: usize = 200_000;
/// Wait after a failed connection attempt before the next. Pacing only.
const RECONNECT_PAUSE: Duration = Duration::from_millis(50);
/// Wait after a refused or indeterminate request before the next. Pacing only.
const BACKOFF_PAUSE: Duration = Duration::from_millis(20);

/// What every client shares.
pub struct Shared {
    pub dialer: Dialer,
    /// The nodes clients may talk to (updated by the membership nemesis).
    pub endpoints: Arc<RwLock<Vec<(u64, SocketAddrV4)>>>,
    pub started: Instant,
    pub stop: AtomicBool,
    pub request_timeout: Duration,
    pub stale_reads: bool,
    /// Transfers go out as two separate commands, no MULTI ([`txn`]): the seeded bug.
    pub split_transfers: bool,
    /// Longest pause between two requests of one client.
    pub think_max: Duration,
    /// Unique values and elements.
    pub next_value: AtomicU64,
    /// Operations started, per workload (drives key rotation).
    pub started_ops: [AtomicU64; Workload::ALL.len()],
    /// Clients connect only to the node last seen leading ([`leader_watch`]).
    pub leader_only: bool,
    /// That node's id (0: none seen yet).
    pub leader_hint: AtomicU64,
}

impl Shared {
    pub fn elapsed_us(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn endpoint(&self, rng: &mut Rng) -> Option<(u64, SocketAddrV4)> {
        let endpoints = self.endpoints.read().expect("endpoints lock");
        if endpoints.is_empty() {
            return None;
        }
        if self.leader_only {
            let hint = self.leader_hint.load(Ordering::Relaxed);
            if let Some(leader) = endpoints.iter().find(|(id, _)| *id == hint) {
                return Some(*leader);
            }
        }
        Some(endpoints[(rng.next_u64() % endpoints.len() as u64) as usize])
    }
}

fn workload_index(workload: Workload) -> usize {
    Workload::ALL
        .iter()
        .position(|w| *w == workload)
        .expect("ALL lists every workload")
}

/// The next request of `workload`: its key and call.
/// A reader (`read_only`) only sends reads.
pub fn next_call(
    shared: &Shared,
    workload: Workload,
    rng: &mut Rng,
    read_only: bool,
) -> (String, Call) {
    let n = shared.started_ops[workload_index(workload)].fetch_add(1, Ordering::Relaxed);
    let generation = n / OPS_PER_KEY_GENERATION;
    let slot = rng.next_u64() % KEYS_PER_GENERATION;
    let roll = if read_only { 0 } else { rng.next_u64() % 100 };
    match workload {
        Workload::Register => {
            let key = format!("r{generation}:{slot}");
            if roll < 50 {
                (key, Call::Read)
            } else {
                (
                    key,
                    Call::Write(shared.next_value.fetch_add(1, Ordering::Relaxed)),
                )
            }
        }
        Workload::Counter => {
            let key = format!("c{}", rng.next_u64() % COUNTER_KEYS);
            if roll < 30 {
                (key, Call::Read)
            } else {
                (key, Call::Incr)
            }
        }
        Workload::Txn => (txn::BANK_KEY.to_owned(), txn::next_call(rng, read_only)),
        Workload::Set => {
            let key = format!("s{generation}:{slot}");
            if roll < 30 {
                (key, Call::Read)
            } else {
                (
                    key,
                    Call::Append(shared.next_value.fetch_add(1, Ordering::Relaxed)),
                )
            }
        }
    }
}

/// The RESP command for a call of the single-command workloads (a transfer is a
/// transaction of several: [`txn::perform`]).
pub fn command(key: &str, call: &Call) -> Vec<String> {
    match call {
        Call::Read => vec!["GET".into(), key.into()],
        Call::Write(v) => vec!["SET".into(), key.into(), v.to_string()],
        Call::Incr => vec!["INCR".into(), key.into()],
        Call::Append(e) => vec!["APPEND".into(), key.into(), format!("{e},")],
        Call::Transfer { .. } => unreachable!("a transfer is several commands: txn::perform"),
    }
}

/// Sends `call` on `conn` (one command, or a transaction for the txn workload) and says
/// what became of it.
pub async fn perform(
    conn: &mut Connection,
    workload: Workload,
    key: &str,
    call: &Call,
    rng: &mut Rng,
    split_transfers: bool,
    deadline: Instant,
) -> Outcome {
    if workload == Workload::Txn {
        return txn::perform(conn, call, rng, split_transfers, deadline).await;
    }
    let args = command(key, call);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    interpret(workload, call, conn.call(&args, deadline).await)
}

/// What a reply means. Anything unexpected is indeterminate, with the reply in the reason
/// (the report counts those separately: a server should never send them).
pub fn interpret(workload: Workload, call: &Call, reply: Result<Frame, ClientError>) -> Outcome {
    let frame = match reply {
        Ok(frame) => frame,
        Err(error) => return Outcome::Indeterminate(error.to_string()),
    };
    if let Frame::Error(message) = &frame {
        return match message.split(' ').next() {
            Some("TRYAGAIN") => Outcome::Failed(message.clone()),
            Some("UNKNOWN") => Outcome::Indeterminate(message.clone()),
            _ => Outcome::Indeterminate(format!("unexpected error reply: {message}")),
        };
    }
    let parsed = match (workload, call, &frame) {
        (_, Call::Write(_), Frame::Simple(ok)) if ok == "OK" => Some(Ret::Done),
        (_, Call::Append(_), Frame::Integer(_)) => Some(Ret::Done),
        (_, Call::Incr, Frame::Integer(v)) => Some(Ret::Counter(*v)),
        (Workload::Register, Call::Read, Frame::Null) => Some(Ret::Register(None)),
        (Workload::Register, Call::Read, Frame::Bulk(bytes)) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|text| text.parse().ok())
            .map(|v| Ret::Register(Some(v))),
        (Workload::Counter, Call::Read, Frame::Null) => Some(Ret::Counter(0)),
        (Workload::Counter, Call::Read, Frame::Bulk(bytes)) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|text| text.parse().ok())
            .map(Ret::Counter),
        (Workload::Set, Call::Read, Frame::Null) => Some(Ret::Elements(Vec::new())),
        (Workload::Set, Call::Read, Frame::Bulk(bytes)) => parse_elements(bytes).map(Ret::Elements),
        (Workload::Txn, _, Frame::Array(values)) => txn::parse_reply(call, values),
        _ => None,
    };
    match parsed {
        Some(ret) => Outcome::Ok(ret),
        None => Outcome::Indeterminate(format!("unexpected reply: {frame:?}")),
    }
}

/// `"1,2,3,"` as [1, 2, 3]; `None` if anything else is in it.
fn parse_elements(bytes: &[u8]) -> Option<Vec<u64>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let body = text.strip_suffix(',')?;
    body.split(',').map(|e| e.parse().ok()).collect()
}

/// One client: `number` names it (process numbers are `number * 1_000_000 + generation`).
/// A `read_only` client (a reader) sends only reads.
pub async fn client_loop(
    shared: Arc<Shared>,
    workload: Workload,
    number: u64,
    seed: u64,
    read_only: bool,
) -> Vec<Op> {
    let mut rng = Rng::new(seed);
    let mut ops = Vec::new();
    let mut connection: Option<(u64, Connection)> = None;
    let mut process = number * 1_000_000;
    // With --leader-only, start once a leader has been seen (bounded: the watch polls every
    // 100 ms; without a hint after this long, clients start on random nodes).
    let hint_deadline = Instant::now() + LEADER_HINT_WAIT;
    while shared.leader_only
        && shared.leader_hint.load(Ordering::Relaxed) == 0
        && Instant::now() < hint_deadline
    {
        tokio::time::sleep(LEADER_WATCH_INTERVAL).await;
    }
    while !shared.stop.load(Ordering::Relaxed) && ops.len() < OPS_PER_CLIENT_MAX {
        let (node, mut conn) = match connection.take() {
            Some(open) => open,
            None => match connect(&shared, &mut rng).await {
                Some(open) => open,
                None => {
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                    continue;
                }
            },
        };
        let (key, call) = next_call(&shared, workload, &mut rng, read_only);
        let invoke_us = shared.elapsed_us();
        let deadline = Instant::now() + shared.request_timeout;
        let split = shared.split_transfers;
        let outcome = perform(&mut conn, workload, &key, &call, &mut rng, split, deadline).await;
        let complete_us = shared.elapsed_us();
        let ok = outcome.is_ok();
        let refused = matches!(outcome, Outcome::Failed(_));
        ops.push(Op {
            index: 0,
            process,
            workload,
            key,
            node,
            call,
            invoke_us,
            complete_us,
            outcome,
            phase: Phase::Main,
        });
        if ok {
            connection = Some((node, conn));
        } else {
            // Refused or unknown: try another node after a moment (an election, a cut-off
            // node). After an unknown outcome a late reply could still arrive on this
            // connection, and the old process may still have an operation in flight, so
            // the client continues as a new process.
            if !refused {
                process += 1;
            }
            tokio::time::sleep(BACKOFF_PAUSE).await;
        }
        let think = shared.think_max.as_micros() as u64;
        if think > 0 {
            tokio::time::sleep(Duration::from_micros(rng.next_u64() % think)).await;
        }
    }
    ops
}

/// Longest a `--leader-only` client waits for the first leader hint.
const LEADER_HINT_WAIT: Duration = Duration::from_secs(5);
/// Pause between two rounds of [`leader_watch`]. Pacing only.
const LEADER_WATCH_INTERVAL: Duration = Duration::from_millis(100);

/// Until the stop flag: asks every endpoint for RAFT.STATUS and records the leader with the
/// highest term in `leader_hint` (with `--leader-only`).
pub async fn leader_watch(shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::Relaxed) {
        let endpoints = shared.endpoints.read().expect("endpoints lock").clone();
        let timeout = Duration::from_millis(500);
        let tasks: Vec<_> = endpoints
            .into_iter()
            .map(|(id, addr)| {
                let dialer = shared.dialer;
                tokio::spawn(async move {
                    let reply = dialer.call_once(addr, &["RAFT.STATUS"], timeout).await;
                    let status = match reply {
                        Ok(Frame::Bulk(text)) => {
                            NodeStatus::parse(&String::from_utf8_lossy(&text)).ok()
                        }
                        _ => None,
                    };
                    (id, status)
                })
            })
            .collect();
        let mut best: Option<(u64, u64)> = None;
        for task in tasks {
            if let Ok((id, Some(status))) = task.await {
                if status.is_leader() && best.is_none_or(|(_, term)| status.term.0 > term) {
                    best = Some((id, status.term.0));
                }
            }
        }
        if let Some((id, _)) = best {
            shared.leader_hint.store(id, Ordering::Relaxed);
        }
        tokio::time::sleep(LEADER_WATCH_INTERVAL).await;
    }
}

async fn connect(shared: &Shared, rng: &mut Rng) -> Option<(u64, Connection)> {
    let (node, addr) = shared.endpoint(rng)?;
    let deadline = Instant::now() + shared.request_timeout;
    let mut connection = shared.dialer.connect(addr, deadline).await.ok()?;
    if shared.stale_reads {
        match connection.call(&["READONLY"], deadline).await {
            Ok(Frame::Simple(ok)) if ok == "OK" => {}
            _ => return None,
        }
    }
    Some((node, connection))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn replies_mean_what_commands_md_says() {
        let bulk = |s: &str| Ok(Frame::Bulk(Bytes::copy_from_slice(s.as_bytes())));
        let cases: Vec<(Workload, Call, Result<Frame, ClientError>, Outcome)> = vec![
            (
                Workload::Register,
                Call::Write(1),
                Ok(Frame::ok()),
                Outcome::Ok(Ret::Done),
            ),
            (
                Workload::Register,
                Call::Read,
                bulk("17"),
                Outcome::Ok(Ret::Register(Some(17))),
            ),
            (
                Workload::Register,
                Call::Read,
                Ok(Frame::Null),
                Outcome::Ok(Ret::Register(None)),
            ),
            (
                Workload::Counter,
                Call::Incr,
                Ok(Frame::Integer(4)),
                Outcome::Ok(Ret::Counter(4)),
            ),
            (
                Workload::Counter,
                Call::Read,
                Ok(Frame::Null),
                Outcome::Ok(Ret::Counter(0)),
            ),
            (
                Workload::Set,
                Call::Read,
                bulk("3,1,"),
                Outcome::Ok(Ret::Elements(vec![3, 1])),
            ),
            (
                Workload::Set,
                Call::Append(3),
                Ok(Frame::Integer(4)),
                Outcome::Ok(Ret::Done),
            ),
            (
                Workload::Register,
                Call::Write(1),
                Ok(Frame::error("TRYAGAIN no leader")),
                Outcome::Failed("TRYAGAIN no leader".into()),
            ),
            (
                Workload::Register,
                Call::Write(1),
                Ok(Frame::error("UNKNOWN leadership changed")),
                Outcome::Indeterminate("UNKNOWN leadership changed".into()),
            ),
            (
                Workload::Register,
                Call::Write(1),
                Err(ClientError::Timeout),
                Outcome::Indeterminate("timed out".into()),
            ),
        ];
        for (workload, call, reply, expected) in cases {
            assert_eq!(
                interpret(workload, &call, reply),
                expected,
                "{workload:?} {call:?}"
            );
        }
        // Surprises are indeterminate, never "ok".
        for (workload, reply) in [
            (Workload::Register, bulk("abc")),
            (Workload::Set, bulk("1,x,")),
            (Workload::Register, Ok(Frame::error("ERR odd"))),
        ] {
            assert!(interpret(workload, &Call::Read, reply).is_indeterminate());
        }
    }

    #[test]
    fn commands_encode_unique_elements() {
        assert_eq!(command("s0:1", &Call::Append(9)), ["APPEND", "s0:1", "9,"]);
        assert_eq!(command("c1", &Call::Incr), ["INCR", "c1"]);
        assert_eq!(command("r0:0", &Call::Write(5)), ["SET", "r0:0", "5"]);
    }
}
