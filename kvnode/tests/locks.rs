//! Locks with fencing tokens (README, "Locks with fencing tokens") under a leader kill and
//! a leader pause: clients contend for one lock with
//! `MULTI; SET lock token NX PX ms; REVISION lock; EXEC` through every node, hold it a
//! while, and release it with a WATCHed compare-and-delete. Every acquisition whose
//! outcome is known is recorded; sorted by when each holder learned it held the lock:
//! - the fencing tokens strictly increase;
//! - no holder's lease starts before the previous holder's ended (the lease ends when
//!   the holder sends its release, or its TTL after it sent the acquisition), beyond the
//!   clock bound, which is zero here: every node runs on this machine's clock.

#[path = "support/cluster.rs"]
mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::deadlines::now_ms;
use support::{Client, Cluster, Options, Reply};

const TIMEOUT: Duration = Duration::from_secs(30);
const CLIENTS: usize = 6;
const LEASE_MS: i64 = 400;
/// The test's own timing slack on top of the (zero) clock bound.
const OVERLAP_MS_MAX: i64 = 5;

#[derive(Debug, Clone)]
struct Holding {
    client: usize,
    token: i64,
    /// When the holder learned it held the lock.
    start: i64,
    /// When it stopped relying on it.
    end: i64,
}

/// One acquisition attempt: `Some(token)` if it holds the lock, `None` if it does not
/// (or cannot know: then it must not use it); errors when the connection is unusable.
fn try_acquire(client: &mut Client, token: &str) -> std::io::Result<Option<i64>> {
    client.queue(&[b"MULTI"]);
    client.queue(&[
        b"SET",
        b"lock",
        token.as_bytes(),
        b"NX",
        b"PX",
        LEASE_MS.to_string().as_bytes(),
    ]);
    client.queue(&[b"REVISION", b"lock"]);
    client.queue(&[b"EXEC"]);
    client.flush()?;
    for _ in 0..3 {
        client.read_reply()?;
    }
    Ok(match client.read_reply()? {
        Reply::Array(Some(replies)) => match (&replies[0], &replies[1]) {
            (reply, Reply::Integer(fence)) if reply.is_ok() => Some(*fence),
            _ => None,
        },
        // -TRYAGAIN, -UNKNOWN, an aborted transaction: not known to hold it.
        _ => None,
    })
}

/// Deletes the lock if it still holds `token` (WATCH, GET, MULTI, DEL, EXEC).
fn release(client: &mut Client, token: &str) -> std::io::Result<()> {
    client.cmd(&["WATCH", "lock"])?;
    if client.cmd(&["GET", "lock"])?.bulk_string().as_deref() == Some(token) {
        client.queue(&[b"MULTI"]);
        client.queue(&[b"DEL", b"lock"]);
        client.queue(&[b"EXEC"]);
        client.flush()?;
        for _ in 0..3 {
            client.read_reply()?;
        }
    } else {
        client.cmd(&["UNWATCH"])?;
    }
    Ok(())
}

fn contend(index: usize, targets: Vec<SocketAddr>, stop: Arc<AtomicBool>) -> Vec<Holding> {
    let mut holdings = Vec::new();
    let mut target = index;
    let mut client: Option<Client> = None;
    let mut attempt = 0u64;
    // Bounded by the stop flag, which the test sets after a fixed run.
    while !stop.load(Ordering::Relaxed) {
        let c = match client.as_mut() {
            Some(c) => c,
            None => {
                target = (target + 1) % targets.len();
                match Client::connect_with(targets[target], Duration::from_secs(2)) {
                    Ok(c) => client.insert(c),
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                }
            }
        };
        attempt += 1;
        let token = format!("client-{index}-{attempt}");
        let sent = now_ms();
        match try_acquire(c, &token) {
            Ok(Some(fence)) => {
                let start = now_ms();
                // Use the lock a while, never past the lease.
                std::thread::sleep(Duration::from_millis(20 + attempt % 80));
                let end = now_ms().min(sent + LEASE_MS);
                holdings.push(Holding {
                    client: index,
                    token: fence,
                    start,
                    end,
                });
                if release(c, &token).is_err() {
                    client = None;
                }
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => client = None,
        }
    }
    holdings
}

#[test]
fn fencing_tokens_increase_and_leases_never_overlap_under_leader_kill_and_pause() {
    let mut cluster = Cluster::start(3, Options::default());
    let first_leader = cluster.wait_for_leader(TIMEOUT);
    let targets: Vec<SocketAddr> = (1..=3).map(|id| cluster.addr(id)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|index| {
            let (targets, stop) = (targets.clone(), stop.clone());
            std::thread::spawn(move || contend(index, targets, stop))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    cluster.kill(first_leader);
    let survivors: Vec<u64> = (1..=3).filter(|id| *id != first_leader).collect();
    let second_leader = cluster.wait_for_leader_among(&survivors, TIMEOUT);
    std::thread::sleep(Duration::from_secs(2));
    cluster.start_node(first_leader);
    cluster.wait_serving(first_leader, TIMEOUT);
    std::thread::sleep(Duration::from_secs(2));
    // A paused leader: a new one is elected; the paused one wakes up deposed.
    cluster.pause(second_leader);
    std::thread::sleep(Duration::from_secs(3));
    cluster.resume(second_leader);
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let mut holdings: Vec<Holding> = threads
        .into_iter()
        .flat_map(|thread| thread.join().expect("client thread"))
        .collect();
    holdings.sort_by_key(|holding| holding.start);
    assert!(holdings.len() >= 30, "only {} acquisitions", holdings.len());
    for pair in holdings.windows(2) {
        let (previous, next) = (&pair[0], &pair[1]);
        assert!(
            next.token > previous.token,
            "fencing token {} of {next:?} does not exceed {} of {previous:?}",
            next.token,
            previous.token
        );
        assert!(
            next.start >= previous.end - OVERLAP_MS_MAX,
            "leases overlap by {} ms: {previous:?} then {next:?}",
            previous.end - next.start
        );
    }
    let clients: std::collections::BTreeSet<usize> = holdings.iter().map(|h| h.client).collect();
    eprintln!(
        "{} acquisitions by {} clients, tokens {}..{}",
        holdings.len(),
        clients.len(),
        holdings[0].token,
        holdings[holdings.len() - 1].token
    );
}
