//! Differential test against a real `redis-server` (Debian's, installed by the test when
//! missing and running as root; otherwise it skips with the reason): the same seeded
//! random sequences of commands — strings, TTLs of every kind, keyspace and database
//! commands, MULTI/EXEC/DISCARD/WATCH/UNWATCH from several connections, wrong values,
//! wrong arities, unknown commands — run against Redis and against a 1-node and a 3-node
//! raftkv (each raftkv connection on another node, so followers forward writes and
//! transactions), and every reply must match.
//!
//! Time: both servers run on this machine's clock, so TTLs agree up to the time between
//! the two requests. Replies that report time (TTL, PTTL, EXPIRETIME, PEXPIRETIME) are
//! compared within [`TOLERANCE_MS`]. Before each step the test reads every key's remaining
//! time from Redis (which also makes Redis drop keys that have expired, as raftkv's logical
//! expiry does), and never lets a command touch a key within [`WINDOW_MS`] of its
//! deadline: whether it is still there would depend on which server looked first.
//!
//! One documented difference is kept out of the sequences: a key watched while absent
//! that another command creates and then deletes before EXEC (Redis aborts; raftkv compares
//! revisions and runs). While a connection watches an absent key, nothing deletes it or
//! gives it a TTL. Replies that are random (RANDOMKEY) are compared as nil or not; SCAN is
//! compared as the set of keys a whole iteration returns.
//!
//! `DIFF_SEEDS` (default 5), `DIFF_SEED_START` (default 1) and `DIFF_OPS` (default 3000)
//! widen a run; a failure prints the seed and the last commands (all of them to the file
//! `DIFF_TRACE` names, when set).

#[path = "support/cluster.rs"]
mod support;
#[path = "support/tools.rs"]
mod tools;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::{Client, Cluster, Options, Reply};
use tools::RedisServer;

const KEYS: [&str; 6] = ["k0", "k1", "k2", "k3", "k4", "k5"];
/// Databases the sequences use (SELECT beyond is an error on both).
const DBS: u32 = 3;
const CONNECTIONS: usize = 3;
/// A key this close to its deadline is not touched.
const WINDOW_MS: i64 = 250;
/// How far time-reporting replies of the two servers may differ.
const TOLERANCE_MS: i64 = 200;
const VALUES: [&str; 8] = [
    "1",
    "-3",
    "10",
    "abc",
    "",
    "7.5",
    "xyz",
    "9223372036854775807",
];
const SUFFIXES: [&str; 6] = ["a", "-", ".5", "x", "1", "0.1"];
const FLOATS: [&str; 8] = ["0.5", "-1.25", "3", "1e1", "abc", "2.5e-1", "0.1", "-7.3e2"];

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

/// How two replies must agree.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Check {
    Exact,
    /// TTL (seconds) or PTTL: non-negative values within the tolerance.
    Remaining {
        ms: bool,
    },
    /// EXPIRETIME or PEXPIRETIME: non-negative values within the tolerance.
    Deadline {
        ms: bool,
    },
    /// KEYS: the same keys in any order.
    Unordered,
    /// RANDOMKEY: both nil or both a key.
    NilOrNot,
    /// INFO keyspace: the same `dbN:keys=K,expires=E` lines (`avg_ttl` is Redis' sampled
    /// estimate). A follower's INFO describes its own applied state, so a raftkv reply
    /// that differs is asked again for a little while (see [`KEYSPACE_CATCH_UP`]).
    Keyspace,
    /// OBJECT ENCODING: equal, except where Redis' encoding records how the value was
    /// made rather than what it is (COMMANDS.md): `raw` for a value edited in place
    /// (APPEND, SETRANGE), `embstr` for an integer INCRBYFLOAT produced.
    Encoding,
    /// CLIENT ID: a positive integer on both, the same on every call of a connection
    /// (checked in `run_seed`); the numbers themselves count connections, which differ.
    ClientId,
}

/// How long a follower may take to show, in INFO, what the leader has applied.
const KEYSPACE_CATCH_UP: Duration = Duration::from_millis(200);

/// What a command may change: the keys (database, key) it touches, whether it may delete
/// one or give it a TTL, or whole databases.
#[derive(Clone, Debug, Default)]
struct Touch {
    keys: Vec<(u32, &'static str)>,
    dbs: Vec<u32>,
    deletes: bool,
}

#[derive(Clone, Debug)]
struct Op {
    words: Vec<String>,
    check: Check,
    touch: Touch,
    /// A full SCAN iteration rather than one command.
    scan: bool,
}

/// What the test knows of one connection.
#[derive(Clone, Debug, Default)]
struct Conn {
    db: u32,
    /// Queued commands' checks and touches while in MULTI, and the database they end in.
    multi: Option<(Vec<Op>, u32)>,
    /// Watched keys, and whether each was absent when watched.
    watched: Vec<(u32, &'static str, bool)>,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    fn range(&mut self, low: i64, high: i64) -> i64 {
        low + self.below((high - low + 1) as u64) as i64
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// Each key's deadline (Unix ms) as Redis reports it, by database: `None` absent,
/// `Some(None)` present without TTL.
type Deadlines = Vec<Vec<Option<Option<i64>>>>;

/// Reads every key's remaining time from Redis in one pipeline.
fn refresh(oracle: &mut Client) -> Deadlines {
    for db in 0..DBS {
        oracle.queue(&[b"SELECT", db.to_string().as_bytes()]);
        for key in KEYS {
            oracle.queue(&[b"PTTL", key.as_bytes()]);
        }
    }
    oracle.flush().expect("oracle send");
    let now = now_ms();
    (0..DBS)
        .map(|_| {
            oracle.read_reply().expect("oracle SELECT");
            KEYS.iter()
                .map(|_| match oracle.read_reply().expect("oracle PTTL") {
                    Reply::Integer(-2) => None,
                    Reply::Integer(-1) => Some(None),
                    Reply::Integer(left) => Some(Some(now + left)),
                    other => panic!("oracle PTTL replied {other:?}"),
                })
                .collect()
        })
        .collect()
}

fn index_of(key: &str) -> usize {
    KEYS.iter().position(|k| *k == key).expect("a test key")
}

struct World<'a> {
    deadlines: &'a Deadlines,
    conns: &'a [Conn],
    now: i64,
}

impl World<'_> {
    fn deadline(&self, db: u32, key: &str) -> Option<i64> {
        self.deadlines[db as usize][index_of(key)].flatten()
    }

    fn uncertain(&self, db: u32, key: &str) -> bool {
        self.deadline(db, key)
            .is_some_and(|deadline| (deadline - self.now).abs() <= WINDOW_MS)
    }

    /// May `op`, sent by connection `by` (queued in its own MULTI when `queued`), run now?
    fn allows(&self, op: &Op, by: usize, queued: bool) -> bool {
        let touch = &op.touch;
        let mut keys = touch.keys.clone();
        for db in &touch.dbs {
            keys.extend(KEYS.iter().map(|key| (*db, *key)));
        }
        if keys
            .iter()
            .any(|(db, key)| *db >= DBS || self.uncertain(*db, key))
        {
            return false;
        }
        if !touch.deletes {
            return true;
        }
        // Nothing deletes or expires a key some connection watches as absent (see above),
        // except that connection's own queued commands, which run after its check.
        !self.conns.iter().enumerate().any(|(watcher, conn)| {
            (watcher != by || !queued)
                && conn
                    .watched
                    .iter()
                    .any(|(db, key, absent)| *absent && keys.contains(&(*db, *key)))
        })
    }
}

fn op(words: Vec<String>, check: Check, touch: Touch) -> Op {
    Op {
        words,
        check,
        touch,
        scan: false,
    }
}

fn words(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|part| part.to_string()).collect()
}

fn key_touch(db: u32, keys: &[&'static str], deletes: bool) -> Touch {
    Touch {
        keys: keys.iter().map(|key| (db, *key)).collect(),
        dbs: Vec::new(),
        deletes,
    }
}

/// A time option for SET or GETEX (empty for none); true if it sets a TTL. Absolute times
/// are kept away from now by more than the window.
fn time_option(rng: &mut Rng, now: i64) -> (Vec<String>, bool) {
    let away = |ms: i64| {
        if (ms - now).abs() <= WINDOW_MS * 2 {
            ms + 3_000
        } else {
            ms
        }
    };
    match rng.below(10) {
        0 => (words(&["EX", &rng.range(1, 3).to_string()]), true),
        1 => (words(&["PX", &rng.range(300, 2_500).to_string()]), true),
        2 => (words(&["EX", &rng.range(100, 1_000).to_string()]), true),
        3 => {
            let at = away((now / 1000 + rng.range(-2, 3)) * 1000) / 1000;
            (words(&["EXAT", &at.to_string()]), true)
        }
        4 => (
            words(&["PXAT", &away(now + rng.range(-3_000, 3_000)).to_string()]),
            true,
        ),
        5 => (words(&["PX", rng.pick(&["0", "-5", "x"])]), true),
        _ => (Vec::new(), false),
    }
}

/// One random command for a connection in database `db`.
fn generate(rng: &mut Rng, db: u32, in_multi: bool, world: &World<'_>) -> Op {
    let k = rng.pick(&KEYS);
    let k2 = rng.pick(&KEYS);
    let v = rng.pick(&VALUES);
    let now = world.now;
    let exact = |parts: Vec<String>, touch| op(parts, Check::Exact, touch);
    let read = |keys: &[&'static str]| key_touch(db, keys, false);
    let write = |keys: &[&'static str]| key_touch(db, keys, false);
    let deleting = |keys: &[&'static str]| key_touch(db, keys, true);
    match rng.below(50) {
        0..=2 => {
            let mut parts = words(&["SET", k, v]);
            if rng.chance(25) {
                parts.push(rng.pick(&["NX", "XX"]).into());
            }
            if rng.chance(20) {
                parts.push("GET".into());
            }
            let (time, ttl) = time_option(rng, now);
            parts.extend(time);
            let keep = !ttl && rng.chance(15);
            if keep {
                parts.push("KEEPTTL".into());
            }
            exact(parts, key_touch(db, &[k], ttl))
        }
        3 => exact(words(&["GET", k]), read(&[k])),
        4 => exact(words(&["MGET", k, k2, "k5"]), read(&[k, k2, "k5"])),
        5 => {
            let (time, ttl) = time_option(rng, now);
            let mut parts = words(&["GETEX", k]);
            if ttl {
                parts.extend(time);
            } else if rng.chance(40) {
                parts.push("PERSIST".into());
            }
            exact(parts, key_touch(db, &[k], ttl))
        }
        6 => exact(words(&["GETDEL", k]), deleting(&[k])),
        7 => exact(words(&["DEL", k, k2]), deleting(&[k, k2])),
        8 => exact(words(&["UNLINK", k]), deleting(&[k])),
        9 => exact(words(&["EXISTS", k, k, k2]), read(&[k, k2])),
        10 => exact(words(&["TOUCH", k, k2]), read(&[k, k2])),
        11 => exact(words(&[rng.pick(&["INCR", "DECR"]), k]), write(&[k])),
        12 => {
            // A huge step only outside MULTI, where INCRBYFLOAT can see the result first.
            let huge = if in_multi {
                "12"
            } else {
                "9223372036854775807"
            };
            let by = rng.pick(&["5", "-7", "0", "x", huge]);
            exact(
                words(&[rng.pick(&["INCRBY", "DECRBY"]), k, by]),
                write(&[k]),
            )
        }
        13 => exact(words(&["INCRBYFLOAT", k, rng.pick(&FLOATS)]), write(&[k])),
        14 => exact(words(&["APPEND", k, rng.pick(&SUFFIXES)]), write(&[k])),
        15 => exact(words(&["STRLEN", k]), read(&[k])),
        16 => {
            let (a, b) = (rng.range(-4, 4).to_string(), rng.range(-4, 4).to_string());
            exact(words(&["GETRANGE", k, &a, &b]), read(&[k]))
        }
        17 => {
            let offset = rng.pick(&["0", "2", "5", "-1"]);
            exact(words(&["SETRANGE", k, offset, v]), write(&[k]))
        }
        18..=20 => {
            let (name, unit_ms, absolute) = rng.pick(&[
                ("EXPIRE", false, false),
                ("PEXPIRE", true, false),
                ("EXPIREAT", false, true),
                ("PEXPIREAT", true, true),
            ]);
            let mut when_ms = match rng.below(5) {
                0 => rng.range(-2_000, 0),
                1 => rng.range(300, 2_500),
                2 => rng.range(60_000, 600_000),
                _ => rng.range(1_000, 3_000),
            };
            // New deadline close to the current one: GT/LT would depend on who looked first.
            if let Some(current) = world.deadline(db, k) {
                if (now + when_ms - current).abs() <= WINDOW_MS * 2 {
                    when_ms += 5_000;
                }
            }
            let value = match (unit_ms, absolute) {
                (true, false) => when_ms,
                (false, false) => when_ms / 1000,
                (true, true) => now + when_ms,
                (false, true) => {
                    let at = (now + when_ms) / 1000;
                    if (at * 1000 - now).abs() <= WINDOW_MS * 2 {
                        at + 3
                    } else {
                        at
                    }
                }
            };
            let mut parts = words(&[name, k, &value.to_string()]);
            for flag in ["NX", "XX", "GT", "LT"] {
                if rng.chance(15) {
                    parts.push(flag.into());
                }
            }
            exact(parts, deleting(&[k]))
        }
        21 => exact(words(&["PERSIST", k]), write(&[k])),
        22 => op(
            words(&["TTL", k]),
            Check::Remaining { ms: false },
            read(&[k]),
        ),
        23 => op(
            words(&["PTTL", k]),
            Check::Remaining { ms: true },
            read(&[k]),
        ),
        24 => op(
            words(&["EXPIRETIME", k]),
            Check::Deadline { ms: false },
            read(&[k]),
        ),
        25 => op(
            words(&["PEXPIRETIME", k]),
            Check::Deadline { ms: true },
            read(&[k]),
        ),
        26 => exact(words(&["TYPE", k]), read(&[k])),
        27 => exact(
            words(&[rng.pick(&["RENAME", "RENAMENX"]), k, k2]),
            deleting(&[k, k2]),
        ),
        28 => {
            let to_db = rng.below(u64::from(DBS)) as u32;
            let mut parts = words(&["COPY", k, k2]);
            if rng.chance(50) {
                parts.extend(words(&["DB", &to_db.to_string()]));
            }
            let target = if parts.len() > 3 { to_db } else { db };
            if rng.chance(40) {
                parts.push("REPLACE".into());
            }
            let touch = Touch {
                keys: vec![(db, k), (target, k2)],
                dbs: Vec::new(),
                deletes: true,
            };
            exact(parts, touch)
        }
        29 => {
            let to_db = rng.below(u64::from(DBS)) as u32;
            let touch = Touch {
                keys: vec![(db, k), (to_db, k)],
                dbs: Vec::new(),
                deletes: true,
            };
            exact(words(&["MOVE", k, &to_db.to_string()]), touch)
        }
        30 if rng.chance(30) => {
            let (a, b) = (
                rng.below(u64::from(DBS)) as u32,
                rng.below(u64::from(DBS)) as u32,
            );
            let touch = Touch {
                keys: Vec::new(),
                dbs: vec![a, b],
                deletes: true,
            };
            exact(words(&["SWAPDB", &a.to_string(), &b.to_string()]), touch)
        }
        31 if rng.chance(8) => {
            let touch = Touch {
                keys: Vec::new(),
                dbs: vec![db],
                deletes: true,
            };
            exact(words(&["FLUSHDB", rng.pick(&["ASYNC", "SYNC"])]), touch)
        }
        32 if rng.chance(3) => {
            let touch = Touch {
                keys: Vec::new(),
                dbs: (0..DBS).collect(),
                deletes: true,
            };
            exact(words(&["FLUSHALL"]), touch)
        }
        33 => {
            let touch = Touch {
                keys: Vec::new(),
                dbs: vec![db],
                deletes: false,
            };
            // DBSIZE only outside MULTI: Redis counts a key a queued SET gave a past
            // deadline until it is reclaimed, raftkv counts live keys (COMMANDS.md).
            match rng.below(4) {
                0 if !in_multi => exact(words(&["DBSIZE"]), touch),
                1 => op(
                    words(&["KEYS", rng.pick(&["*", "k[0-2]", "k?"])]),
                    Check::Unordered,
                    touch,
                ),
                2 => op(words(&["RANDOMKEY"]), Check::NilOrNot, touch),
                _ if in_multi => exact(words(&["EXISTS", k]), read(&[k])),
                _ => Op {
                    words: words(&["SCAN", "0", "COUNT", &rng.range(1, 4).to_string()]),
                    check: Check::Unordered,
                    touch,
                    scan: true,
                },
            }
        }
        34 => exact(words(&["MSET", k, v, k2, "2"]), write(&[k, k2])),
        35 => exact(words(&["MSETNX", k, v, k2, "2"]), write(&[k, k2])),
        36 => exact(words(&["GETSET", k, v]), write(&[k])),
        37 => exact(words(&["SETNX", k, v]), write(&[k])),
        38 => {
            let (name, amount) = rng.pick(&[
                ("SETEX", "2"),
                ("PSETEX", "1500"),
                ("SETEX", "0"),
                ("PSETEX", "-1"),
            ]);
            exact(words(&[name, k, amount, v]), deleting(&[k]))
        }
        39 => {
            let target = rng.pick(&["0", "1", "2", "99", "x"]);
            exact(words(&["SELECT", target]), Touch::default())
        }
        40 => {
            let bad = rng.pick(&[
                &["GET"][..],
                &["SET", "k0"],
                &["MSET", "k0", "1", "k1"],
                &["EXPIRE", "k0"],
                &["NOSUCHCOMMAND", "k0"],
                &["INCRBY", "k0"],
                &["GETRANGE", "k0", "1"],
            ]);
            exact(words(bad), Touch::default())
        }
        41 => exact(words(&["PING"]), Touch::default()),
        42 => exact(words(&["ECHO", v]), Touch::default()),
        43 => {
            let mut parts = words(&["EXPIRE", k, "10"]);
            parts.extend(words(rng.pick(&[
                &["NX", "XX"][..],
                &["GT", "LT"],
                &["FOO"],
            ])));
            exact(parts, Touch::default())
        }
        44 => op(
            words(&["OBJECT", "ENCODING", k]),
            Check::Encoding,
            read(&[k]),
        ),
        45 => match rng.below(4) {
            0 if !in_multi => {
                let touch = Touch {
                    keys: Vec::new(),
                    dbs: (0..DBS).collect(),
                    deletes: false,
                };
                op(words(&["INFO", "keyspace"]), Check::Keyspace, touch)
            }
            1 => exact(words(&["OBJECT", "FREQ", k]), read(&[k])),
            2 if !in_multi => op(words(&["CLIENT", "ID"]), Check::ClientId, Touch::default()),
            _ => {
                let pattern = rng.pick(&["databases", "appendonly", "maxmemory", "save", "nosuch"]);
                if in_multi {
                    exact(words(&["OBJECT", "FREQ", k]), read(&[k]))
                } else {
                    op(
                        words(&["CONFIG", "GET", pattern]),
                        Check::Unordered,
                        Touch::default(),
                    )
                }
            }
        },
        _ => exact(words(&["GET", k]), read(&[k])),
    }
}

/// INFO keyspace's `dbN:keys=K,expires=E` lines, without `avg_ttl`.
fn keyspace_lines(reply: &Reply) -> Option<Vec<String>> {
    let Reply::Bulk(Some(text)) = reply else {
        return None;
    };
    let text = String::from_utf8_lossy(text);
    Some(
        text.lines()
            .filter(|line| line.starts_with("db"))
            .map(|line| line.split(",avg_ttl=").next().unwrap_or(line).to_owned())
            .collect(),
    )
}

/// A transaction-control command for a connection (MULTI, EXEC, DISCARD, WATCH, UNWATCH,
/// and their misuses), or `None` to generate a data command instead.
fn control(rng: &mut Rng, conn: &Conn) -> Option<Vec<String>> {
    let in_multi = conn.multi.is_some();
    let roll = rng.below(100);
    let word = if in_multi {
        match roll {
            0..=11 => "EXEC",
            12..=13 => "DISCARD",
            14 => "MULTI",
            15 => "WATCH",
            _ => return None,
        }
    } else {
        match roll {
            0..=5 => "MULTI",
            6..=9 => "WATCH",
            10 => "UNWATCH",
            11 => "EXEC",
            12 => "DISCARD",
            _ => return None,
        }
    };
    let mut parts = vec![word.to_owned()];
    if word == "WATCH" {
        parts.push(rng.pick(&KEYS).to_owned());
        if rng.chance(40) {
            parts.push(rng.pick(&KEYS).to_owned());
        }
    }
    Some(parts)
}

/// Compares two replies by `check`.
fn agree(check: Check, redis: &Reply, raftkv: &Reply) -> bool {
    let tolerance = |ms| if ms { TOLERANCE_MS } else { 1 };
    match (check, redis, raftkv) {
        (
            Check::Remaining { ms } | Check::Deadline { ms },
            Reply::Integer(a),
            Reply::Integer(b),
        ) if *a >= 0 && *b >= 0 => (a - b).abs() <= tolerance(ms),
        (Check::Unordered, Reply::Array(Some(a)), Reply::Array(Some(b))) => {
            let sorted = |items: &[Reply]| {
                let mut items: Vec<String> = items.iter().map(|item| format!("{item:?}")).collect();
                items.sort();
                items
            };
            sorted(a) == sorted(b)
        }
        (Check::Keyspace, a, b) => {
            keyspace_lines(a).is_some() && keyspace_lines(a) == keyspace_lines(b)
        }
        (Check::Encoding, Reply::Bulk(Some(a)), Reply::Bulk(Some(b))) => {
            a == b
                || (a.as_slice() == b"raw" && b.as_slice() != b"raw")
                || (a.as_slice() == b"embstr" && b.as_slice() == b"int")
        }
        (Check::ClientId, Reply::Integer(a), Reply::Integer(b)) => *a > 0 && *b > 0,
        (Check::NilOrNot, a, b) => {
            matches!(a, Reply::Bulk(None)) == matches!(b, Reply::Bulk(None))
                && matches!(a, Reply::Bulk(_)) == matches!(b, Reply::Bulk(_))
        }
        _ => redis == raftkv,
    }
}

/// EXEC's replies, compared item by item with each queued command's check.
fn agree_exec(queued: &[Op], redis: &Reply, raftkv: &Reply) -> bool {
    match (redis, raftkv) {
        (Reply::Array(Some(a)), Reply::Array(Some(b)))
            if a.len() == queued.len() && b.len() == a.len() =>
        {
            queued
                .iter()
                .zip(a.iter().zip(b))
                .all(|(op, (a, b))| agree(op.check, a, b))
        }
        _ => redis == raftkv,
    }
}

/// A whole SCAN iteration's keys, sorted.
fn scan_all(client: &mut Client, count: &str) -> Reply {
    let mut keys = Vec::new();
    let mut cursor = "0".to_owned();
    for _ in 0..10_000 {
        let reply = client
            .call(&[b"SCAN", cursor.as_bytes(), b"COUNT", count.as_bytes()])
            .expect("SCAN");
        let Reply::Array(Some(parts)) = reply else {
            return reply;
        };
        let (Some(Reply::Bulk(Some(next))), Some(Reply::Array(Some(page)))) =
            (parts.first(), parts.get(1))
        else {
            panic!("SCAN replied {parts:?}");
        };
        keys.extend(page.iter().cloned());
        cursor = String::from_utf8_lossy(next).into_owned();
        if cursor == "0" {
            return Reply::Array(Some(keys));
        }
    }
    panic!("SCAN did not finish in 10,000 pages");
}

/// Sends `op` on `client`, retrying a TRYAGAIN (certainly not applied) a few times.
fn send(client: &mut Client, op: &Op) -> Reply {
    if op.scan {
        return scan_all(client, &op.words[3]);
    }
    let args: Vec<&[u8]> = op.words.iter().map(|word| word.as_bytes()).collect();
    for _ in 0..20 {
        let reply = client.call(&args).expect("a reply");
        match &reply {
            Reply::Error(error) if error.starts_with("TRYAGAIN") => {
                std::thread::sleep(Duration::from_millis(50));
            }
            _ => return reply,
        }
    }
    panic!("{:?} kept getting TRYAGAIN", op.words);
}

/// Runs one seed against Redis (flushed first) and the nodes at `targets`.
fn run_seed(seed: u64, ops: u64, redis: &RedisServer, cluster: &Cluster, label: &str) {
    let mut oracle = Client::connect(redis.addr).expect("connect to redis");
    assert!(oracle.cmd(&["FLUSHALL"]).expect("FLUSHALL").is_ok());
    let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
    let mut first = cluster.client(ids[0]);
    assert!(first.cmd(&["FLUSHALL"]).expect("FLUSHALL").is_ok());
    let mut redis_clients: Vec<Client> = (0..CONNECTIONS)
        .map(|_| Client::connect(redis.addr).expect("connect to redis"))
        .collect();
    let mut raftkv_clients: Vec<Client> = (0..CONNECTIONS)
        .map(|i| cluster.client(ids[i % ids.len()]))
        .collect();
    let mut conns = vec![Conn::default(); CONNECTIONS];
    // Each connection's CLIENT ID on Redis and on raftkv, once asked.
    let mut client_ids: Vec<Option<(Reply, Reply)>> = vec![None; CONNECTIONS];
    let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut history: Vec<String> = Vec::new();
    let mut compared = 0u64;
    for step in 0..ops {
        let deadlines = refresh(&mut oracle);
        let by = rng.below(CONNECTIONS as u64) as usize;
        let now = now_ms();
        let world = World {
            deadlines: &deadlines,
            conns: &conns,
            now,
        };
        let conn = conns[by].clone();
        let in_multi = conn.multi.is_some();
        // Bounded: a few tries for a command the world allows now; else wait a little.
        let chosen = (0..20).find_map(|_| {
            if let Some(parts) = control(&mut rng, &conn) {
                let control_op = control_op(parts, &conn);
                // EXEC runs this connection's own queued commands after its watch check.
                let own = control_op.words[0] == "EXEC";
                return world.allows(&control_op, by, own).then_some(control_op);
            }
            let db = conn.multi.as_ref().map_or(conn.db, |(_, db)| *db);
            let op = generate(&mut rng, db, in_multi, &world);
            let scan_in_multi = in_multi && op.scan;
            (!scan_in_multi && world.allows(&op, by, in_multi)).then_some(op)
        });
        let Some(op) = chosen else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        let redis_reply = send(&mut redis_clients[by], &op);
        let mut raftkv_reply = send(&mut raftkv_clients[by], &op);
        if op.check == Check::Keyspace {
            let deadline = Instant::now() + KEYSPACE_CATCH_UP;
            while !agree(op.check, &redis_reply, &raftkv_reply) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
                raftkv_reply = send(&mut raftkv_clients[by], &op);
            }
        }
        if op.check == Check::ClientId {
            let seen = client_ids[by].get_or_insert((redis_reply.clone(), raftkv_reply.clone()));
            assert_eq!(
                (&seen.0, &seen.1),
                (&redis_reply, &raftkv_reply),
                "{label}, seed {seed}: CLIENT ID changed on connection {by}"
            );
        }
        history.push(format!(
            "conn {by} db {}: {:?} -> redis {redis_reply:?} / raftkv {raftkv_reply:?}",
            conn.db, op.words
        ));
        let name = op.words[0].to_ascii_uppercase();
        let agreed = match (&conns[by].multi, name.as_str()) {
            (Some((queued, _)), "EXEC") => agree_exec(queued, &redis_reply, &raftkv_reply),
            _ => agree(op.check, &redis_reply, &raftkv_reply),
        };
        if !agreed {
            if let Ok(path) = std::env::var("DIFF_TRACE") {
                std::fs::write(&path, history.join("\n")).expect("write the trace");
            }
            let tail: Vec<&String> = history
                .iter()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            panic!(
                "{label}, seed {seed}, step {step}: replies differ for {:?}\n  redis:  {redis_reply:?}\n  raftkv: {raftkv_reply:?}\nlast commands:\n{}",
                op.words,
                tail.iter().map(|line| format!("  {line}")).collect::<Vec<_>>().join("\n")
            );
        }
        compared += 1;
        track(&mut conns[by], &op, &redis_reply, &deadlines);
    }
    assert!(
        compared >= ops / 2,
        "{label}, seed {seed}: only {compared} of {ops} steps ran"
    );
    eprintln!("{label}: seed {seed}: {compared} commands, every reply matched");
}

/// MULTI/EXEC/... as an op: WATCH touches its keys (it must not look at one near its
/// deadline); EXEC touches what the transaction and its watches touch.
fn control_op(parts: Vec<String>, conn: &Conn) -> Op {
    let db = conn.multi.as_ref().map_or(conn.db, |(_, db)| *db);
    let mut touch = Touch::default();
    match parts[0].as_str() {
        "WATCH" if conn.multi.is_none() => {
            for key in &parts[1..] {
                touch.keys.push((db, KEYS[index_of(key)]));
            }
        }
        "EXEC" => {
            if let Some((queued, _)) = &conn.multi {
                for queued in queued {
                    touch.keys.extend(queued.touch.keys.iter().copied());
                    touch.dbs.extend(queued.touch.dbs.iter().copied());
                    touch.deletes |= queued.touch.deletes;
                }
            }
            touch
                .keys
                .extend(conn.watched.iter().map(|(db, key, _)| (*db, *key)));
        }
        _ => {}
    }
    op(parts, Check::Exact, touch)
}

/// Updates what the test knows of a connection after `op` got `reply` from Redis.
fn track(conn: &mut Conn, op: &Op, reply: &Reply, deadlines: &Deadlines) {
    let name = op.words[0].to_ascii_uppercase();
    let error = matches!(reply, Reply::Error(_));
    if let Some((queued, db)) = conn.multi.as_mut() {
        match name.as_str() {
            "EXEC" => {
                if matches!(reply, Reply::Array(Some(_))) {
                    conn.db = *db;
                }
                conn.multi = None;
                conn.watched.clear();
            }
            "DISCARD" => {
                conn.multi = None;
                conn.watched.clear();
            }
            "MULTI" | "WATCH" => {}
            _ if !error => {
                if name == "SELECT" {
                    if let Ok(selected) = op.words[1].parse::<u32>() {
                        if selected < 16 {
                            *db = selected;
                        }
                    }
                }
                queued.push(op.clone());
            }
            _ => {}
        }
        return;
    }
    match name.as_str() {
        "MULTI" => conn.multi = Some((Vec::new(), conn.db)),
        "SELECT" if !error => conn.db = op.words[1].parse().expect("an accepted index"),
        "WATCH" if !error => {
            for key in &op.words[1..] {
                let key = KEYS[index_of(key)];
                let absent = deadlines[conn.db as usize][index_of(key)].is_none();
                conn.watched.push((conn.db, key, absent));
            }
        }
        // EXEC and DISCARD without MULTI are errors that leave the watches alone.
        "UNWATCH" => conn.watched.clear(),
        _ => {}
    }
}

#[test]
fn raftkv_replies_like_redis_on_seeded_random_sequences() {
    let redis = match RedisServer::start() {
        Ok(redis) => redis,
        Err(reason) => {
            eprintln!("skipped: no redis-server to compare with: {reason}");
            return;
        }
    };
    let seeds = env_u64("DIFF_SEEDS", 5);
    let start = env_u64("DIFF_SEED_START", 1);
    let ops = env_u64("DIFF_OPS", 3_000);
    let options = Options {
        storage: "memory",
        ..Options::default()
    };
    for (label, nodes) in [("1-node raftkv", 1), ("3-node raftkv", 3)] {
        let cluster = Cluster::start(nodes, options.clone());
        cluster.wait_for_leader(Duration::from_secs(20));
        for seed in start..start + seeds {
            run_seed(seed, ops, &redis, &cluster, label);
        }
    }
}
