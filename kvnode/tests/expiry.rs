//! Expiry, revisions and transactions on real processes:
//! - replicas never diverge: after a mixed workload with TTLs, transactions and database
//!   commands, `RAFTKV.DIGEST` (keys, values, deadlines, revisions, time) is equal on every
//!   node, including one killed with -9 and restarted from its WAL and one paused past a
//!   compaction that caught up from a snapshot;
//! - deadlines survive a leader killed with -9, and no read after a deadline returns the
//!   key (nor does one before it miss it), on every node, linearizable or READONLY;
//! - bad input: TTLs that overflow, are negative or zero, transaction misuse, and a
//!   10,000-command transaction over the entry limit get Redis' errors, nothing is
//!   half-applied, and the node keeps serving.

#[path = "support/cluster.rs"]
mod support;

use std::time::{Duration, Instant};

use support::deadlines::{check_deadlines_kept, check_reads, integer, set_ttl_keys};
use support::{Client, Cluster, Options, Reply};

const TIMEOUT: Duration = Duration::from_secs(30);
/// How far a read's verdict may be from a deadline. All nodes share this machine's
/// clock, so the documented bound (twice the clock offset between nodes) is zero here;
/// this is the test's own timing slack.
const READ_BOUND_MS: i64 = 10;

/// `RAFTKV.DIGEST` of node `id`'s own state: `(applied index, the whole reply)`.
fn digest(cluster: &Cluster, id: u64) -> Option<(i64, Reply)> {
    let mut client = Client::connect_with(cluster.addr(id), Duration::from_secs(5)).ok()?;
    client.cmd(&["READONLY"]).ok()?;
    let reply = client.cmd(&["RAFTKV.DIGEST"]).ok()?;
    let Reply::Array(Some(parts)) = &reply else {
        return None;
    };
    Some((integer(&parts[0]), reply))
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

/// `count` random commands (TTLs, transactions with WATCH, databases) sent to `targets`
/// in turn. Replies are not checked: this test compares the replicas with each other.
fn workload(cluster: &Cluster, targets: &[u64], count: u64, rng: &mut Rng) {
    let mut clients: Vec<Client> = targets.iter().map(|id| cluster.client(*id)).collect();
    for step in 0..count {
        let client = &mut clients[(step % targets.len() as u64) as usize];
        let key = format!("k{}", rng.below(30));
        let other = format!("k{}", rng.below(30));
        let db = rng.below(4).to_string();
        let ms = (200 + rng.below(1_500)).to_string();
        let commands: Vec<Vec<String>> = match rng.below(14) {
            0..=2 => vec![vec!["SET".into(), key, "v".into(), "PX".into(), ms]],
            3 => vec![vec![
                "SET".into(),
                key,
                "long".into(),
                "EX".into(),
                "1000".into(),
            ]],
            4 => vec![vec!["INCR".into(), key]],
            5 => vec![vec!["PEXPIRE".into(), key, ms, "GT".into()]],
            6 => vec![vec!["PERSIST".into(), key]],
            7 => vec![vec!["DEL".into(), key]],
            8 => vec![
                vec!["WATCH".into(), key.clone()],
                vec!["MULTI".into()],
                vec!["INCRBYFLOAT".into(), key.clone(), "0.1".into()],
                vec!["SET".into(), other, "t".into(), "PX".into(), ms],
                vec!["REVISION".into(), key],
                vec!["EXEC".into()],
            ],
            9 => vec![vec!["SELECT".into(), db]],
            10 => vec![vec!["RENAME".into(), key, other]],
            11 => vec![vec!["MOVE".into(), key, db]],
            12 => vec![vec!["SWAPDB".into(), "0".into(), db]],
            _ => vec![vec!["GETEX".into(), key, "PX".into(), ms]],
        };
        for command in commands {
            let args: Vec<&[u8]> = command.iter().map(|word| word.as_bytes()).collect();
            // Outcomes do not matter here, only that every replica applies the same log.
            let _ = client.call(&args);
        }
    }
}

#[test]
fn replicas_never_diverge_including_a_restarted_node_and_one_caught_up_from_a_snapshot() {
    let options = Options {
        snapshot_entries: Some(300),
        ..Options::default()
    };
    let mut cluster = Cluster::start(3, options);
    let leader = cluster.wait_for_leader(TIMEOUT);
    let followers: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != leader).collect();
    let (restarted, paused) = (followers[0], followers[1]);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    workload(&cluster, &[1, 2, 3], 800, &mut rng);
    // One follower killed (a quorum remains), then restarted from its WAL.
    cluster.kill(restarted);
    workload(&cluster, &[leader], 800, &mut rng);
    cluster.start_node(restarted);
    cluster.wait_serving(restarted, TIMEOUT);
    // The other paused while the log moves past a compaction: it catches up by snapshot.
    cluster.pause(paused);
    workload(&cluster, &[leader, restarted], 1_500, &mut rng);
    cluster.resume(paused);
    workload(&cluster, &[1, 2, 3], 500, &mut rng);

    // Let the short TTLs pass and their reclamation entries apply, then compare the
    // replicas at one applied index (a late reclamation entry may move it: look again).
    std::thread::sleep(Duration::from_millis(1_800));
    let deadline = Instant::now() + TIMEOUT;
    loop {
        cluster.wait_converged(&[1, 2, 3], TIMEOUT);
        let digests: Vec<(i64, Reply)> = [1, 2, 3]
            .into_iter()
            .map(|id| digest(&cluster, id).unwrap_or_else(|| panic!("node {id} digest")))
            .collect();
        if digests.iter().all(|(applied, _)| *applied == digests[0].0) {
            for (id, (_, reply)) in [1, 2, 3].into_iter().zip(&digests) {
                assert_eq!(reply, &digests[0].1, "node {id} diverged from node 1");
            }
            let Reply::Array(Some(parts)) = &digests[0].1 else {
                unreachable!()
            };
            assert!(integer(&parts[2]) > 10, "the workload left keys: {parts:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "applied indexes never met: {digests:?}"
        );
    }
    assert!(
        cluster
            .log(paused)
            .contains("restored a snapshot from the leader"),
        "node {paused} caught up without a snapshot; lower snapshot_entries"
    );
}

#[test]
fn deadlines_survive_a_leader_kill_and_no_read_after_a_deadline_returns_the_key() {
    let mut cluster = Cluster::start(3, Options::default());
    let leader = cluster.wait_for_leader(TIMEOUT);
    let follower = if leader == 1 { 2 } else { 1 };
    // Through a follower: the write is forwarded, the leader stamps it.
    let mut client = cluster.client(follower);
    let keys = set_ttl_keys(&mut client, "ttl", 40, 2_500, 0);
    let long = set_ttl_keys(&mut client, "long", 5, 100_000, 0);
    cluster.kill(leader);
    let survivors: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != leader).collect();
    let new_leader = cluster.wait_for_leader_among(&survivors, TIMEOUT);
    assert_ne!(new_leader, leader);
    check_deadlines_kept(&cluster, &survivors, &keys, READ_BOUND_MS);
    check_deadlines_kept(&cluster, &survivors, &long, READ_BOUND_MS);
    check_reads(&cluster, &survivors, &keys, false, READ_BOUND_MS);
    let more = set_ttl_keys(&mut cluster.client(new_leader), "after", 20, 1_000, 0);
    // Stale reads see what their node has applied: let every survivor apply the SETs.
    cluster.wait_converged(&survivors, TIMEOUT);
    check_reads(&cluster, &survivors, &more, true, READ_BOUND_MS);
    // The killed node comes back from its WAL with the same deadlines.
    cluster.start_node(leader);
    cluster.wait_serving(leader, TIMEOUT);
    cluster.wait_converged(&[1, 2, 3], TIMEOUT);
    check_deadlines_kept(&cluster, &[leader], &long, READ_BOUND_MS);
}

#[test]
fn bad_ttls_and_transaction_misuse_get_redis_errors_and_the_node_keeps_serving() {
    let mut cluster = Cluster::start(1, Options::default());
    // A small entry limit (about 140 KB), so 10,000 queued SETs exceed it.
    cluster.kill(1);
    cluster.add_arg(1, "--value-bytes-max=65536".into());
    cluster.add_arg(1, "--key-bytes-max=1024".into());
    cluster.start_node(1);
    cluster.wait_for_leader(TIMEOUT);
    let mut client = cluster.client(1);
    let error = |text: &str| Reply::Error(text.to_owned());
    let ok = Reply::Simple("OK".into());
    let cases: Vec<(&[&str], Reply)> = vec![
        (
            &["SET", "k", "v", "EX", "0"],
            error("ERR invalid expire time in 'set' command"),
        ),
        (
            &["SET", "k", "v", "PX", "-1"],
            error("ERR invalid expire time in 'set' command"),
        ),
        (
            &["SET", "k", "v", "EX", "9223372036854775807"],
            error("ERR invalid expire time in 'set' command"),
        ),
        (
            &["SET", "k", "v", "PX", "9223372036854775807"],
            error("ERR invalid expire time in 'set' command"),
        ),
        (
            &["SET", "k", "v", "EX", "x"],
            error("ERR value is not an integer or out of range"),
        ),
        (
            &["SET", "k", "v", "EX", "99999999999999999999"],
            error("ERR value is not an integer or out of range"),
        ),
        (
            &["SETEX", "k", "0", "v"],
            error("ERR invalid expire time in 'setex' command"),
        ),
        (
            &["PSETEX", "k", "-5", "v"],
            error("ERR invalid expire time in 'psetex' command"),
        ),
        (&["GET", "k"], Reply::Bulk(None)),
        (&["SET", "k", "v"], ok.clone()),
        (
            &["EXPIRE", "k", "9223372036854775807"],
            error("ERR invalid expire time in 'expire' command"),
        ),
        (
            &["PEXPIRE", "k", "9223372036854775807"],
            error("ERR invalid expire time in 'pexpire' command"),
        ),
        (
            &["GETEX", "k", "EX", "0"],
            error("ERR invalid expire time in 'getex' command"),
        ),
        (
            &["GETEX", "k", "PX", "-1"],
            error("ERR invalid expire time in 'getex' command"),
        ),
        (&["TTL", "k"], Reply::Integer(-1)),
        (&["EXPIRE", "k", "0"], Reply::Integer(1)),
        (&["GET", "k"], Reply::Bulk(None)),
        (&["SET", "k", "v"], ok.clone()),
        (&["EXPIREAT", "k", "-1"], Reply::Integer(1)),
        (&["EXISTS", "k"], Reply::Integer(0)),
        (&["EXEC"], error("ERR EXEC without MULTI")),
        (&["DISCARD"], error("ERR DISCARD without MULTI")),
        (&["MULTI"], ok.clone()),
        (&["MULTI"], error("ERR MULTI calls can not be nested")),
        (
            &["WATCH", "k"],
            error("ERR WATCH inside MULTI is not allowed"),
        ),
        (&["SET", "k", "in-multi"], Reply::Simple("QUEUED".into())),
        (&["EXEC"], Reply::Array(Some(vec![ok.clone()]))),
        (&["GET", "k"], Reply::Bulk(Some(b"in-multi".to_vec()))),
    ];
    for (command, expected) in cases {
        assert_eq!(
            client.cmd(command).expect("a reply"),
            expected,
            "{command:?}"
        );
    }

    // 10,000 queued SETs: the transaction outgrows the largest entry, is refused whole.
    assert!(client.cmd(&["MULTI"]).expect("MULTI").is_ok());
    let mut refused = None;
    for i in 0..10_000 {
        client.queue(&[b"SET", format!("big:{i}").as_bytes(), b"0123456789abcdef"]);
    }
    client.flush().expect("send the transaction");
    for i in 0..10_000 {
        match client.read_reply().expect("a reply") {
            Reply::Simple(queued) if queued == "QUEUED" => {}
            Reply::Error(error) if error.contains("transaction too large") => {
                refused.get_or_insert(i);
            }
            other => panic!("command {i}: {other:?}"),
        }
    }
    let refused = refused.expect("the queue hit the entry limit");
    assert!(refused > 1_000, "refused at command {refused}");
    assert_eq!(
        client.cmd(&["EXEC"]).expect("EXEC"),
        error("EXECABORT Transaction discarded because of previous errors.")
    );
    assert_eq!(
        client.cmd(&["GET", "big:0"]).expect("GET"),
        Reply::Bulk(None),
        "nothing applied"
    );
    assert_eq!(client.cmd(&["DBSIZE"]).expect("DBSIZE"), Reply::Integer(1));
    // Still serving, transactions included.
    assert_eq!(
        client.cmd(&["PING"]).expect("PING"),
        Reply::Simple("PONG".into())
    );
    assert!(client.cmd(&["MULTI"]).expect("MULTI").is_ok());
    client.cmd(&["INCR", "n"]).expect("INCR");
    assert_eq!(
        client.cmd(&["EXEC"]).expect("EXEC"),
        Reply::Array(Some(vec![Reply::Integer(1)]))
    );
    let mut fresh = cluster.client(1);
    assert_eq!(
        fresh.cmd(&["GET", "n"]).expect("GET"),
        Reply::Bulk(Some(b"1".to_vec()))
    );
}
