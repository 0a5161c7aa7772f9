//! ACL users on a 3-node cluster: definitions made on one node reach every node (AUTH as
//! the new user works on each, and writes through a follower's forwarding run as the
//! client's user on the leader); a read-only user and a user limited to `app:*` get
//! Redis' NOPERM replies (also inside MULTI); wrong passwords, disabled and deleted users
//! get WRONGPASS and a deleted user's connections are closed; ACL LIST shows hashes only;
//! redis-py connects with a username and password (skipped if it is not installed);
//! the definitions survive a restart of every node, from the WAL and from each node's own
//! snapshot once the log is compacted past them, and reach a node that was down.

#[path = "support/cluster.rs"]
mod support;

use std::time::{Duration, Instant};

use kvnode::acl::rule::{hash_hex, hash_password};
use kvnode::state_machine::{DbIndex, SetCondition, SetReply, SetTtl, WriteCommand, WriteOp};
use support::{Client, Cluster, Options, Reply, POLL_INTERVAL};

const TIMEOUT: Duration = Duration::from_secs(20);
/// Small, so a node that was down catches up from a snapshot.
const SNAPSHOT_ENTRIES: u64 = 20;

fn ok(reply: Reply, what: &str) {
    assert!(reply.is_ok(), "{what}: {reply:?}");
}

fn error(reply: Reply) -> String {
    match reply {
        Reply::Error(text) => text,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn noperm_command(user: &str, command: &str) -> String {
    format!("NOPERM User {user} has no permissions to run the '{command}' command")
}

const NOPERM_KEY: &str = "NOPERM No permissions to access a key";
const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

/// Runs an ACL change through node `id` (forwarded to the leader if it is a follower).
fn acl(cluster: &Cluster, id: u64, args: &[&str]) -> Reply {
    let mut words = vec!["ACL"];
    words.extend_from_slice(args);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let reply = cluster.client(id).cmd(&words).expect("ACL");
        // TRYAGAIN: no leader yet; anything else is the answer.
        match &reply {
            Reply::Error(text) if text.starts_with("TRYAGAIN") && Instant::now() < deadline => {
                std::thread::sleep(POLL_INTERVAL)
            }
            _ => return reply,
        }
    }
}

/// A client of node `id` authenticated as `user`, once node `id` knows the user.
fn login(cluster: &Cluster, id: u64, user: &str, password: &str) -> Client {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let mut client = cluster.client(id);
        let reply = client.cmd(&["AUTH", user, password]).expect("AUTH");
        if reply.is_ok() {
            return client;
        }
        assert!(
            Instant::now() < deadline,
            "AUTH {user} on node {id}: {reply:?}"
        );
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Polls until AUTH as `user` on node `id` is refused with WRONGPASS.
fn wait_refused(cluster: &Cluster, id: u64, user: &str, password: &str) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match cluster
            .client(id)
            .cmd(&["AUTH", user, password])
            .expect("AUTH")
        {
            Reply::Error(text) if text == WRONGPASS => return,
            other => assert!(
                Instant::now() < deadline,
                "AUTH {user} on node {id} still answers {other:?}"
            ),
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

fn follower_of(cluster: &Cluster) -> u64 {
    let leader = cluster.wait_for_leader(TIMEOUT);
    [1, 2, 3]
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower")
}

#[test]
fn users_are_enforced_on_every_node_and_through_forwarding() {
    let cluster = Cluster::start(3, Options::default());
    let follower = follower_of(&cluster);
    // Defined through a follower: the change itself is forwarded to the leader.
    ok(
        acl(
            &cluster,
            follower,
            &["SETUSER", "ro", "on", ">ro-pass", "+@read", "~*"],
        ),
        "SETUSER ro",
    );
    ok(
        acl(
            &cluster,
            follower,
            &["SETUSER", "app", "on", ">app-pass", "+@all", "~app:*"],
        ),
        "SETUSER app",
    );
    for id in [1, 2, 3] {
        let mut ro = login(&cluster, id, "ro", "ro-pass");
        assert_eq!(
            ro.cmd(&["GET", "k"]).unwrap(),
            Reply::Bulk(None),
            "node {id}"
        );
        assert_eq!(
            error(ro.cmd(&["SET", "k", "v"]).unwrap()),
            noperm_command("ro", "set")
        );
        assert_eq!(
            error(ro.cmd(&["FLUSHALL"]).unwrap()),
            noperm_command("ro", "flushall")
        );
        assert_eq!(
            error(ro.cmd(&["RAFT.STATUS"]).unwrap()),
            noperm_command("ro", "raft.status")
        );
        assert_eq!(
            error(ro.cmd(&["ACL", "SETUSER", "ro", "+@all"]).unwrap()),
            noperm_command("ro", "acl|setuser")
        );
        assert_eq!(
            error(ro.cmd(&["CONFIG", "GET", "save"]).unwrap()),
            noperm_command("ro", "config")
        );

        // Writes through a follower are forwarded as the client's user.
        let mut app = login(&cluster, id, "app", "app-pass");
        let key = format!("app:{id}");
        ok(app.cmd(&["SET", &key, "v"]).unwrap(), "SET app:n");
        assert_eq!(
            app.cmd(&["GET", &key]).unwrap().bulk_string().as_deref(),
            Some("v")
        );
        assert_eq!(error(app.cmd(&["GET", "other"]).unwrap()), NOPERM_KEY);
        assert_eq!(error(app.cmd(&["SET", "other", "v"]).unwrap()), NOPERM_KEY);
        assert_eq!(error(app.cmd(&["DEL", &key, "other"]).unwrap()), NOPERM_KEY);
        assert_eq!(
            error(app.cmd(&["MSET", "app:x", "1", "other", "2"]).unwrap()),
            NOPERM_KEY
        );
        assert_eq!(
            error(app.cmd(&["RENAME", &key, "other"]).unwrap()),
            NOPERM_KEY
        );
        // MULTI: refused when queued, and EXEC then aborts (Redis' rule).
        ok(app.cmd(&["MULTI"]).unwrap(), "MULTI");
        assert_eq!(
            app.cmd(&["SET", "app:y", "1"]).unwrap(),
            Reply::Simple("QUEUED".into())
        );
        assert_eq!(error(app.cmd(&["SET", "other", "1"]).unwrap()), NOPERM_KEY);
        assert!(error(app.cmd(&["EXEC"]).unwrap()).starts_with("EXECABORT"));
        ok(app.cmd(&["MULTI"]).unwrap(), "MULTI");
        app.cmd(&["SET", "app:n", &key]).unwrap();
        app.cmd(&["GET", "app:n"]).unwrap();
        let exec = app.cmd(&["EXEC"]).unwrap();
        assert_eq!(
            exec,
            Reply::Array(Some(vec![
                Reply::Simple("OK".into()),
                Reply::Bulk(Some(key.clone().into_bytes()))
            ])),
            "EXEC through node {id}"
        );
        assert_eq!(
            app.cmd(&["ACL", "WHOAMI"])
                .unwrap()
                .bulk_string()
                .as_deref(),
            Some("app")
        );
    }
    // The leader checks a forwarded write itself: a client speaking the internal
    // RAFTKV.PROPOSE gains nothing (SET other, as the node would encode it).
    let mut app = login(&cluster, 1, "app", "app-pass");
    let forged = WriteCommand {
        db: DbIndex(0),
        op: WriteOp::Set {
            key: "other".into(),
            value: "v".into(),
            condition: SetCondition::Always,
            reply: SetReply::Ok,
            ttl: SetTtl::Clear,
        },
    }
    .encode();
    let forged_reply = app.call(&[b"RAFTKV.PROPOSE", &forged]).unwrap();
    assert_eq!(error(forged_reply), NOPERM_KEY);

    // ACL LIST shows hashes, never passwords.
    let list = cluster.client(follower).cmd(&["ACL", "LIST"]).unwrap();
    let Reply::Array(Some(lines)) = list else {
        panic!("ACL LIST: {list:?}");
    };
    let lines: Vec<String> = lines.iter().filter_map(Reply::bulk_string).collect();
    let ro_hash = hash_hex(&hash_password(b"ro-pass"));
    assert!(
        lines.contains(&format!("user ro on #{ro_hash} ~* -@all +@read")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .all(|line| !line.contains("ro-pass") && !line.contains("app-pass")),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"user default on nopass ~* +@all".to_owned()),
        "{lines:?}"
    );

    redis_py_authenticates_as_a_user(cluster.addr(follower));

    // Wrong password, disabled user, deleted user: WRONGPASS; a deleted user's
    // connections are closed.
    assert_eq!(
        error(
            cluster
                .client(follower)
                .cmd(&["AUTH", "app", "nope"])
                .unwrap()
        ),
        WRONGPASS
    );
    let mut ro = login(&cluster, follower, "ro", "ro-pass");
    ok(
        acl(&cluster, 1, &["SETUSER", "app", "off"]),
        "SETUSER app off",
    );
    assert_eq!(acl(&cluster, 1, &["DELUSER", "ro"]), Reply::Integer(1));
    for id in [1, 2, 3] {
        wait_refused(&cluster, id, "app", "app-pass");
        wait_refused(&cluster, id, "ro", "ro-pass");
    }
    match ro.cmd(&["GET", "k"]) {
        Err(_) => {}
        Ok(reply) => panic!("a deleted user's connection still answers: {reply:?}"),
    }
}

#[test]
fn users_survive_restarts_and_reach_a_node_through_a_snapshot() {
    // Small WAL segments, dropped once compacted, so a compacted log really starts later.
    let mut cluster = Cluster::start(
        3,
        Options {
            snapshot_entries: Some(SNAPSHOT_ENTRIES),
            node_args: [
                "--key-bytes-max=256",
                "--value-bytes-max=4096",
                "--wal-segment-bytes=65536",
                "--wal-spare-segments=0",
            ]
            .map(String::from)
            .to_vec(),
            ..Options::default()
        },
    );
    cluster.wait_for_leader(TIMEOUT);
    ok(
        acl(
            &cluster,
            1,
            &["SETUSER", "early", "on", ">early-pass", "+@all", "~*"],
        ),
        "SETUSER early",
    );
    // Every node restarts: the definition comes back from the WAL (and snapshots).
    for id in [1, 2, 3] {
        cluster.kill(id);
    }
    for id in [1, 2, 3] {
        cluster.start_node(id);
    }
    for id in [1, 2, 3] {
        cluster.wait_serving(id, TIMEOUT);
        login(&cluster, id, "early", "early-pass");
    }

    // A node down while a user is defined catches up (from the leader's log or its
    // snapshot, whichever the leader still has), and the user reaches it.
    let leader = cluster.wait_for_leader(TIMEOUT);
    let behind = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap();
    cluster.kill(behind);
    ok(
        acl(
            &cluster,
            leader,
            &["SETUSER", "late", "on", ">late-pass", "+@read", "~*"],
        ),
        "SETUSER late",
    );
    let late_index = cluster.status(leader).expect("status").last_index.0;
    let mut writer = cluster.client(leader);
    let value = "v".repeat(2048);
    for i in 0..(4 * SNAPSHOT_ENTRIES) {
        ok(
            writer.cmd(&["SET", &format!("k{i}"), &value]).unwrap(),
            "SET",
        );
    }
    cluster.start_node(behind);
    cluster.wait_serving(behind, TIMEOUT);
    let mut late = login(&cluster, behind, "late", "late-pass");
    assert_eq!(
        error(late.cmd(&["SET", "x", "y"]).unwrap()),
        noperm_command("late", "set")
    );
    drop(late);

    // Every node has compacted its log past the SETUSER: restarted, each restores the
    // user from its own snapshot.
    let deadline = Instant::now() + TIMEOUT;
    for id in [1, 2, 3] {
        while cluster.status(id).map_or(0, |s| s.first_index.0) <= late_index {
            assert!(
                Instant::now() < deadline,
                "node {id} never compacted past {late_index}"
            );
            std::thread::sleep(POLL_INTERVAL);
        }
    }
    for id in [1, 2, 3] {
        cluster.kill(id);
    }
    for id in [1, 2, 3] {
        cluster.start_node(id);
    }
    for id in [1, 2, 3] {
        cluster.wait_serving(id, TIMEOUT);
        login(&cluster, id, "late", "late-pass");
        login(&cluster, id, "early", "early-pass");
    }
}

/// redis-py with `username`/`password` against a follower: writes forwarded as the user,
/// NOPERM as `NoPermissionError`, a wrong password as `AuthenticationError`. Skipped, with
/// the reason printed, when python3 or its redis package is missing.
fn redis_py_authenticates_as_a_user(addr: std::net::SocketAddr) {
    const SCRIPT: &str = r#"
import sys, redis
host, port = sys.argv[1], int(sys.argv[2])
r = redis.Redis(host=host, port=port, username="app", password="app-pass")
assert r.set("app:py", "1") is True
assert r.get("app:py") == b"1"
try:
    r.set("other", "1")
    raise SystemExit("SET other was allowed")
except redis.exceptions.NoPermissionError as e:
    assert "No permissions to access a key" in str(e), str(e)
try:
    redis.Redis(host=host, port=port, username="app", password="bad").ping()
    raise SystemExit("a wrong password was accepted")
except redis.exceptions.AuthenticationError:
    pass
print("redis-py ok")
"#;
    let probe = std::process::Command::new("python3")
        .args(["-c", "import redis"])
        .output();
    match probe {
        Ok(output) if output.status.success() => {}
        Ok(output) => {
            eprintln!(
                "skipping the redis-py check: python3 cannot import redis: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
            return;
        }
        Err(error) => {
            eprintln!("skipping the redis-py check: cannot run python3: {error}");
            return;
        }
    }
    let output = std::process::Command::new("python3")
        .args([
            "-c",
            SCRIPT,
            &addr.ip().to_string(),
            &addr.port().to_string(),
        ])
        .output()
        .expect("run python3");
    assert!(
        output.status.success(),
        "redis-py: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
