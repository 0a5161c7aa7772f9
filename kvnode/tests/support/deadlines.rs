//! Keys with TTLs and the check that reads honour their deadlines, shared by the expiry
//! and clock-skew tests. Times are this machine's wall clock in Unix milliseconds.
#![allow(dead_code)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{read_retrying, Client, Cluster, Reply};

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

pub fn integer(reply: &Reply) -> i64 {
    match reply {
        Reply::Integer(value) => *value,
        other => panic!("expected an integer, got {other:?}"),
    }
}

/// A key set with a TTL.
#[derive(Clone, Debug)]
pub struct TtlKey {
    pub name: String,
    /// The deadline the cluster reports (PEXPIRETIME): the leader's stamp plus the TTL.
    pub reported: i64,
    /// When the key should go by this machine's clock: the SET's send time plus the TTL.
    pub real: i64,
}

/// Sets `count` keys `prefix:i` with TTLs `base_ms + 40 i` through `client`; each
/// reported deadline must be within `skew_ms` (plus the request's duration) of the real one.
pub fn set_ttl_keys(
    client: &mut Client,
    prefix: &str,
    count: usize,
    base_ms: i64,
    skew_ms: i64,
) -> Vec<TtlKey> {
    (0..count)
        .map(|i| {
            let name = format!("{prefix}:{i}");
            let ttl = base_ms + 40 * i as i64;
            let sent = now_ms();
            let reply = client
                .cmd(&["SET", &name, "v", "PX", &ttl.to_string()])
                .expect("SET");
            assert!(reply.is_ok(), "SET {name}: {reply:?}");
            let answered = now_ms();
            let reported = integer(&client.cmd(&["PEXPIRETIME", &name]).expect("PEXPIRETIME"));
            let (low, high) = (sent + ttl - skew_ms - 10, answered + ttl + skew_ms + 10);
            assert!(
                (low..=high).contains(&reported),
                "{name}: reported deadline {reported} outside [{low}, {high}]"
            );
            TtlKey {
                name,
                reported,
                real: sent + ttl,
            }
        })
        .collect()
}

/// Each key's reported deadline on every node in `nodes` is unchanged (or the key has
/// gone, which only a time past its deadline allows).
pub fn check_deadlines_kept(cluster: &Cluster, nodes: &[u64], keys: &[TtlKey], bound_ms: i64) {
    for id in nodes {
        let mut reader = cluster.client(*id);
        for key in keys {
            let reply = read_retrying(&mut reader, &[b"PEXPIRETIME", key.name.as_bytes()]);
            match integer(&reply) {
                -2 => assert!(
                    now_ms() >= key.real - bound_ms,
                    "{} gone {} ms before its deadline on node {id}",
                    key.name,
                    key.real - now_ms()
                ),
                found => assert_eq!(
                    found, key.reported,
                    "{}'s deadline changed on node {id}",
                    key.name
                ),
            }
        }
    }
}

/// Reads the keys on `nodes` (linearizable, or READONLY when `stale`) until every deadline
/// has passed: a key read as present must have been read no later than `bound_ms` after
/// its real deadline, one read as gone no earlier than `bound_ms` before it.
pub fn check_reads(cluster: &Cluster, nodes: &[u64], keys: &[TtlKey], stale: bool, bound_ms: i64) {
    let last = keys.iter().map(|key| key.real).max().unwrap_or(0) + bound_ms + 300;
    let mut clients: Vec<Client> = nodes.iter().map(|id| cluster.client(*id)).collect();
    if stale {
        for client in &mut clients {
            assert!(client.cmd(&["READONLY"]).expect("READONLY").is_ok());
        }
    }
    let mut args: Vec<&[u8]> = vec![b"MGET"];
    args.extend(keys.iter().map(|key| key.name.as_bytes()));
    let (mut present, mut gone) = (0, 0);
    // Bounded by the last deadline.
    while now_ms() < last {
        for (node, client) in nodes.iter().zip(&mut clients) {
            let sent = now_ms();
            let reply = read_retrying(client, &args);
            let answered = now_ms();
            let Reply::Array(Some(values)) = reply else {
                panic!("MGET on node {node}: {reply:?}");
            };
            for (key, value) in keys.iter().zip(&values) {
                if value.bulk_string().is_some() {
                    present += 1;
                    assert!(
                        sent <= key.real + bound_ms,
                        "node {node} (stale {stale}) returned {} {} ms after its deadline",
                        key.name,
                        sent - key.real
                    );
                } else {
                    gone += 1;
                    assert!(
                        answered >= key.real - bound_ms,
                        "node {node} (stale {stale}) missed {} {} ms before its deadline",
                        key.name,
                        key.real - answered
                    );
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        present > 0 && gone > 0,
        "reads saw {present} present and {gone} gone on nodes {nodes:?} (stale {stale}); keys {:?}, now {}",
        &keys[..keys.len().min(3)],
        now_ms()
    );
}
