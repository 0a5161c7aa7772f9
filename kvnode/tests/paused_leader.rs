//! A leader frozen with SIGSTOP is replaced; requests that reach it while it is frozen are
//! answered after SIGCONT without breaking linearizability: a linearizable GET queued in
//! its socket while it was frozen must not return the value the new leader overwrote, and
//! a SET queued the same way is either acknowledged (and then on every node) or refused.

#[path = "support/cluster.rs"]
mod support;

use std::time::Duration;

use support::{check_everywhere, Cluster, Options, Outcome, Reply, WriteRecord};

const TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn frozen_leader_does_not_serve_stale_linearizable_reads_after_sigcont() {
    let cluster = Cluster::start(3, Options::default());
    let old_leader = cluster.wait_for_leader(TIMEOUT);
    let mut client = cluster.client(old_leader);
    assert!(client.cmd(&["SET", "k", "v1"]).expect("SET").is_ok());
    let mut reader = cluster.client(old_leader);
    let mut writer = cluster.client(old_leader);

    cluster.pause(old_leader);
    let survivors: Vec<u64> = [1, 2, 3]
        .into_iter()
        .filter(|id| *id != old_leader)
        .collect();
    let new_leader = cluster.wait_for_leader_among(&survivors, TIMEOUT);
    let set = support::read_retrying(&mut cluster.client(new_leader), &[b"SET", b"k", b"v2"]);
    assert!(set.is_ok(), "SET k v2 via the new leader: {set:?}");

    // Queued in the frozen node's socket buffers; it reads them the moment it resumes,
    // before it has heard that it was deposed.
    reader.queue(&[b"GET", b"k"]);
    reader.flush().expect("queue GET");
    writer.queue(&[b"SET", b"frozen", b"w"]);
    writer.flush().expect("queue SET");
    cluster.resume(old_leader);

    let got = reader.read_reply().expect("GET reply");
    match &got {
        Reply::Bulk(Some(v)) => {
            assert_eq!(v, b"v2", "stale linearizable read from the deposed leader")
        }
        Reply::Error(e) => assert!(e.starts_with("TRYAGAIN"), "GET: {e}"),
        other => panic!("GET k replied {other:?}"),
    }
    let outcome = match writer.read_reply() {
        Ok(reply) if reply.is_ok() => Outcome::Acked,
        Ok(Reply::Error(e)) if e.starts_with("TRYAGAIN") => Outcome::NotApplied(e),
        Ok(Reply::Error(e)) if e.starts_with("UNKNOWN") => Outcome::Unknown(e),
        other => panic!("SET frozen replied {other:?}"),
    };
    eprintln!("GET after SIGCONT: {got:?}; SET after SIGCONT: {outcome:?}");
    let records = vec![
        WriteRecord {
            key: "k".into(),
            value: "v2".into(),
            outcome: Outcome::Acked,
        },
        WriteRecord {
            key: "frozen".into(),
            value: "w".into(),
            outcome,
        },
    ];
    cluster.wait_for_leader(TIMEOUT);
    check_everywhere(&cluster, &[1, 2, 3], &records);
}
