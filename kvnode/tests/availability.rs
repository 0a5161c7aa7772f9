//! Requests that wait on a leader are answered when the situation that could answer them
//! ends, not by fixed timers: a paused leader costs writes through the other nodes about
//! an election timeout, a read forwarded to it is answered promptly (also when the
//! forwarding node wins the election), a cut-off follower's read fails promptly, and a
//! leadership transfer to a dead node fails promptly.

#[path = "support/cluster.rs"]
mod support;

use std::time::{Duration, Instant};

use support::{check_everywhere, Client, Cluster, Options, Outcome, Reply, WriteRecord};

const TIMEOUT: Duration = Duration::from_secs(20);
/// Clients here give up after this long; the old behaviour (a 10 s forwarding timer, a
/// read held until the partition healed) would hit it.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(8);
/// How long the leader stays paused.
const PAUSE: Duration = Duration::from_secs(8);

/// The options of these tests: the default election timeout (150 ms), so the bounds below
/// are those a user sees.
fn options() -> Options {
    Options {
        election_ms: 150,
        ..Options::default()
    }
}

fn followers_of(leader: u64) -> Vec<u64> {
    [1, 2, 3].into_iter().filter(|id| *id != leader).collect()
}

#[test]
fn writes_through_the_other_nodes_resume_about_an_election_timeout_after_the_leader_pauses() {
    let cluster = Cluster::start(3, options());
    let leader = cluster.wait_for_leader(TIMEOUT);
    let followers = followers_of(leader);
    let mut client =
        Client::connect_with(cluster.addr(followers[0]), CLIENT_TIMEOUT).expect("connect");
    assert!(client.cmd(&["SET", "warm", "1"]).expect("SET").is_ok());

    cluster.pause(leader);
    let paused_at = Instant::now();
    let mut records = Vec::new();
    let mut first_ack = None;
    let mut seq = 0;
    // Writes through one follower while the leader stays paused; each is answered (at
    // worst with an error) well within the client's timeout.
    while paused_at.elapsed() < PAUSE {
        seq += 1;
        let key = format!("pause:{seq}");
        let sent = Instant::now();
        let reply = client.cmd(&["SET", &key, "v"]);
        let waited = sent.elapsed();
        let outcome = match reply {
            Ok(reply) if reply.is_ok() => Outcome::Acked,
            Ok(Reply::Error(e)) if e.starts_with("TRYAGAIN") => Outcome::NotApplied(e),
            Ok(Reply::Error(e)) if e.starts_with("UNKNOWN") => Outcome::Unknown(e),
            other => panic!("SET {key} after {waited:?}: {other:?}"),
        };
        if outcome == Outcome::Acked && first_ack.is_none() {
            first_ack = Some(paused_at.elapsed());
        }
        records.push(WriteRecord {
            key,
            value: "v".into(),
            outcome,
        });
    }
    cluster.resume(leader);
    let stall = first_ack.expect("a write succeeded while the leader was paused");
    eprintln!(
        "first write acknowledged {stall:?} after the pause; {}",
        support::summarize(&records)
    );
    // An election timeout drawn from [150, 300) ms, the election, and one round trip; the
    // bound is loose for a loaded test machine.
    assert!(stall < Duration::from_secs(2), "writes stalled {stall:?}");
    cluster.wait_for_leader(TIMEOUT);
    check_everywhere(&cluster, &[1, 2, 3], &records);
}

/// A GET sent through a follower, answered within `bound`: the value, or TRYAGAIN for
/// the client to retry. Returns the reply and how long it took.
fn timed_get(client: &mut Client, bound: Duration, what: &str) -> (Reply, Duration) {
    let sent = Instant::now();
    let reply = client.cmd(&["GET", "k"]).expect("GET answered");
    let waited = sent.elapsed();
    match &reply {
        Reply::Bulk(Some(value)) => assert_eq!(value, b"v"),
        Reply::Error(e) => assert!(e.starts_with("TRYAGAIN"), "{what}: GET: {e}"),
        other => panic!("{what}: GET replied {other:?}"),
    }
    eprintln!("{what}: {reply:?} after {waited:?}");
    assert!(waited < bound, "{what}: the read waited {waited:?}");
    (reply, waited)
}

#[test]
fn a_read_forwarded_to_a_leader_that_pauses_is_answered_promptly() {
    let cluster = Cluster::start(3, options());
    let leader = cluster.wait_for_leader(TIMEOUT);
    let mut clients: Vec<Client> = followers_of(leader)
        .into_iter()
        .map(|id| Client::connect_with(cluster.addr(id), CLIENT_TIMEOUT).expect("connect"))
        .collect();
    assert!(clients[0].cmd(&["SET", "k", "v"]).expect("SET").is_ok());
    cluster.pause(leader);
    // Both followers forward the read point request to the paused leader, and one of them
    // wins the election meanwhile: its read is served by itself, the other's by it (sent
    // again to the new leader), or fails for the client to retry; neither waits for the
    // old leader.
    std::thread::scope(|scope| {
        for (i, client) in clients.iter_mut().enumerate() {
            scope.spawn(move || {
                timed_get(
                    client,
                    Duration::from_secs(2),
                    &format!("GET through follower {i} of a paused leader"),
                )
            });
        }
    });
    cluster.resume(leader);
}

#[test]
fn a_cut_off_followers_forwarded_read_fails_promptly() {
    let cluster = Cluster::start(3, options());
    let leader = cluster.wait_for_leader(TIMEOUT);
    let followers = followers_of(leader);
    let mut client =
        Client::connect_with(cluster.addr(followers[0]), CLIENT_TIMEOUT).expect("connect");
    assert!(client.cmd(&["SET", "k", "v"]).expect("SET").is_ok());
    // With the leader and the other follower paused, this follower is as cut off as a
    // partition makes it: no leader can be elected, so its forwarded read must fail with
    // TRYAGAIN within a few election timeouts instead of waiting for a heal.
    cluster.pause(leader);
    cluster.pause(followers[1]);
    let (reply, _) = timed_get(
        &mut client,
        Duration::from_secs(3),
        "GET through a cut-off follower",
    );
    cluster.resume(followers[1]);
    cluster.resume(leader);
    assert!(
        matches!(&reply, Reply::Error(e) if e.starts_with("TRYAGAIN")),
        "a cut-off follower cannot answer a linearizable read: {reply:?}"
    );
}

#[test]
fn a_transfer_to_a_dead_node_fails_promptly_and_one_to_a_live_node_answers_once_done() {
    let mut cluster = Cluster::start(3, options());
    let leader = cluster.wait_for_leader(TIMEOUT);
    let followers = followers_of(leader);
    cluster.wait_converged(&[1, 2, 3], TIMEOUT);
    cluster.kill(followers[0]);
    let mut client = Client::connect_with(cluster.addr(leader), CLIENT_TIMEOUT).expect("connect");
    let target = followers[0].to_string();
    let sent = Instant::now();
    let reply = client
        .cmd(&["RAFT.TRANSFER", &target])
        .expect("transfer answered");
    let waited = sent.elapsed();
    assert!(
        matches!(&reply, Reply::Error(e) if e.starts_with("TRYAGAIN") && e.contains("not handed")),
        "{reply:?}"
    );
    assert!(waited < Duration::from_secs(2), "took {waited:?}");

    let target = followers[1].to_string();
    let reply = client
        .cmd(&["RAFT.TRANSFER", &target])
        .expect("transfer answered");
    assert!(reply.is_ok(), "{reply:?}");
    // OK means done: the target leads already.
    let status = cluster.status(followers[1]).expect("status");
    assert!(status.is_leader(), "{status:?}");
}
