//! State-machine semantics (strings, expiry, time, revisions, databases, transactions,
//! reclamation), determinism, snapshots and their corruption detection.

use std::collections::BTreeSet;

use bytes::Bytes;
use raft_core::{LogIndex, NodeId};

use super::*;
use crate::resp::Frame;

fn b(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn on(db: u32, op: WriteOp) -> WriteCommand {
    WriteCommand {
        db: DbIndex(db),
        op,
    }
}

fn read_on(db: u32, op: ReadOp) -> ReadCommand {
    ReadCommand {
        db: DbIndex(db),
        op,
    }
}

fn set(key: &str, value: &str) -> WriteCommand {
    on(0, set_op(key, value, SetTtl::Clear))
}

fn set_op(key: &str, value: &str, ttl: SetTtl) -> WriteOp {
    WriteOp::Set {
        key: b(key),
        value: b(value),
        condition: SetCondition::Always,
        reply: SetReply::Ok,
        ttl,
    }
}

fn ms(value: i64, absolute: bool, command: TtlCommand) -> Expiry {
    Expiry {
        value,
        unit: TimeUnit::Milliseconds,
        absolute,
        command,
    }
}

fn px(ms_: i64) -> SetTtl {
    SetTtl::Expire(ms(ms_, false, TtlCommand::Set))
}

fn expire_op(key: &str, expiry: Expiry, condition: ExpireCondition) -> WriteOp {
    WriteOp::Expire {
        key: b(key),
        expiry,
        condition,
    }
}

const T0: u64 = 1_700_000_000_000;

/// A state machine driven as the log would: each write a stamped entry at the next index.
struct Log {
    machine: StateMachine,
}

impl Log {
    fn new() -> Log {
        Log {
            machine: StateMachine::new(),
        }
    }

    /// Applies `command` stamped `at` (ms after T0); the reply as a frame.
    fn write(&mut self, at: u64, command: WriteCommand) -> Frame {
        let index = self.machine.applied_index().next();
        let entry = LogEntry {
            stamp: Some(T0 + at),
            command,
        };
        let reply = Frame::from(self.machine.apply_entry(index, &entry));
        self.machine.check_invariants();
        reply
    }

    fn read(&self, at: u64, command: ReadCommand) -> Frame {
        Frame::from(self.machine.read(&command, T0 + at))
    }

    fn get(&self, at: u64, key: &str) -> Frame {
        self.read(at, read_on(0, ReadOp::Get { key: b(key) }))
    }

    fn pttl(&self, at: u64, key: &str) -> Frame {
        self.read(
            at,
            read_on(
                0,
                ReadOp::Ttl {
                    key: b(key),
                    unit: TimeUnit::Milliseconds,
                },
            ),
        )
    }

    fn revision(&self, at: u64, key: &str) -> Frame {
        self.read(at, read_on(0, ReadOp::Revision { key: b(key) }))
    }
}

fn err(text: &str) -> Frame {
    Frame::Error(text.to_owned())
}

#[test]
fn writes_follow_redis_semantics() {
    let with = |condition, reply| {
        on(
            0,
            WriteOp::Set {
                key: b("k"),
                value: b("new"),
                condition,
                reply,
                ttl: SetTtl::Clear,
            },
        )
    };
    let incr = |key: &str, delta| on(0, WriteOp::IncrBy { key: b(key), delta });
    let float = |delta: &str| {
        on(
            0,
            WriteOp::IncrByFloat {
                key: b("k"),
                delta: b(delta),
            },
        )
    };
    use SetCondition::*;
    // (setup, command, reply, value of k afterwards)
    let cases: Vec<(Vec<WriteCommand>, WriteCommand, Frame, Frame)> = vec![
        (vec![], set("k", "v"), Frame::ok(), Frame::bulk("v")),
        (
            vec![],
            with(IfAbsent, SetReply::Ok),
            Frame::ok(),
            Frame::bulk("new"),
        ),
        (
            vec![set("k", "old")],
            with(IfAbsent, SetReply::Ok),
            Frame::Null,
            Frame::bulk("old"),
        ),
        (
            vec![],
            with(IfPresent, SetReply::Ok),
            Frame::Null,
            Frame::Null,
        ),
        (
            vec![set("k", "old")],
            with(IfPresent, SetReply::Ok),
            Frame::ok(),
            Frame::bulk("new"),
        ),
        (
            vec![set("k", "old")],
            with(Always, SetReply::OldValue),
            Frame::bulk("old"),
            Frame::bulk("new"),
        ),
        (
            vec![],
            with(Always, SetReply::OldValue),
            Frame::Null,
            Frame::bulk("new"),
        ),
        (
            vec![set("k", "old")],
            with(IfAbsent, SetReply::OldValue),
            Frame::bulk("old"),
            Frame::bulk("old"),
        ),
        (
            vec![],
            with(IfAbsent, SetReply::Flag),
            Frame::Integer(1),
            Frame::bulk("new"),
        ),
        (
            vec![set("k", "old")],
            with(IfAbsent, SetReply::Flag),
            Frame::Integer(0),
            Frame::bulk("old"),
        ),
        (vec![], incr("k", 1), Frame::Integer(1), Frame::bulk("1")),
        (
            vec![set("k", "10")],
            incr("k", -15),
            Frame::Integer(-5),
            Frame::bulk("-5"),
        ),
        (
            vec![set("k", "abc")],
            incr("k", 1),
            err("ERR value is not an integer or out of range"),
            Frame::bulk("abc"),
        ),
        (
            vec![set("k", "9223372036854775807")],
            incr("k", 1),
            err("ERR increment or decrement would overflow"),
            Frame::bulk("9223372036854775807"),
        ),
        (
            vec![set("k", "0.1")],
            float("0.2"),
            Frame::bulk("0.3"),
            Frame::bulk("0.3"),
        ),
        (
            vec![set("k", "x")],
            float("1"),
            err("ERR value is not a valid float"),
            Frame::bulk("x"),
        ),
        (
            vec![],
            float("inf"),
            err("ERR increment would produce NaN or Infinity"),
            Frame::Null,
        ),
        (
            vec![set("k", "ab")],
            on(
                0,
                WriteOp::Append {
                    key: b("k"),
                    value: b("cd"),
                },
            ),
            Frame::Integer(4),
            Frame::bulk("abcd"),
        ),
        (
            vec![set("k", "hello")],
            on(
                0,
                WriteOp::SetRange {
                    key: b("k"),
                    offset: 7,
                    value: b("!"),
                },
            ),
            Frame::Integer(8),
            Frame::bulk("hello\0\0!"),
        ),
        (
            vec![],
            on(
                0,
                WriteOp::SetRange {
                    key: b("k"),
                    offset: 1,
                    value: b(""),
                },
            ),
            Frame::Integer(0),
            Frame::Null,
        ),
        (
            vec![],
            on(
                0,
                WriteOp::SetRange {
                    key: b("k"),
                    offset: 1 << 40,
                    value: b("x"),
                },
            ),
            err("ERR string exceeds maximum allowed size (proto-max-bulk-len)"),
            Frame::Null,
        ),
        (
            vec![set("k", "v")],
            on(0, WriteOp::GetDel { key: b("k") }),
            Frame::bulk("v"),
            Frame::Null,
        ),
        (
            vec![set("a", "1")],
            on(
                0,
                WriteOp::MSetNx {
                    pairs: vec![(b("k"), b("2")), (b("a"), b("3"))],
                },
            ),
            Frame::Integer(0),
            Frame::Null,
        ),
        (
            vec![],
            on(
                0,
                WriteOp::MSetNx {
                    pairs: vec![(b("k"), b("2")), (b("a"), b("3"))],
                },
            ),
            Frame::Integer(1),
            Frame::bulk("2"),
        ),
        (
            vec![set("k", "v")],
            on(
                0,
                WriteOp::Rename {
                    from: b("k"),
                    to: b("k"),
                    only_if_absent: false,
                },
            ),
            Frame::ok(),
            Frame::bulk("v"),
        ),
        (
            vec![],
            on(
                0,
                WriteOp::Rename {
                    from: b("x"),
                    to: b("k"),
                    only_if_absent: false,
                },
            ),
            err("ERR no such key"),
            Frame::Null,
        ),
        (
            vec![set("x", "1"), set("k", "2")],
            on(
                0,
                WriteOp::Rename {
                    from: b("x"),
                    to: b("k"),
                    only_if_absent: true,
                },
            ),
            Frame::Integer(0),
            Frame::bulk("2"),
        ),
        (
            vec![set("x", "1"), set("k", "2")],
            on(
                0,
                WriteOp::Rename {
                    from: b("x"),
                    to: b("k"),
                    only_if_absent: false,
                },
            ),
            Frame::ok(),
            Frame::bulk("1"),
        ),
        (
            vec![set("x", "1"), set("k", "2")],
            on(
                0,
                WriteOp::Copy {
                    from: b("x"),
                    to_db: DbIndex(0),
                    to: b("k"),
                    replace: false,
                },
            ),
            Frame::Integer(0),
            Frame::bulk("2"),
        ),
        (
            vec![set("x", "1"), set("k", "2")],
            on(
                0,
                WriteOp::Copy {
                    from: b("x"),
                    to_db: DbIndex(0),
                    to: b("k"),
                    replace: true,
                },
            ),
            Frame::Integer(1),
            Frame::bulk("1"),
        ),
    ];
    for (setup, command, reply, after) in cases {
        let mut log = Log::new();
        for command in setup {
            log.write(0, command);
        }
        assert_eq!(log.write(0, command.clone()), reply, "{command:?}");
        assert_eq!(log.get(0, "k"), after, "{command:?}");
    }
}

#[test]
fn reads_answer_from_current_state() {
    let mut log = Log::new();
    for command in [set("a", "1"), set("b", "hello"), set("c", "")] {
        log.write(0, command);
    }
    let cases: Vec<(ReadOp, Frame)> = vec![
        (
            ReadOp::MGet {
                keys: vec![b("a"), b("x"), b("b")],
            },
            Frame::Array(vec![Frame::bulk("1"), Frame::Null, Frame::bulk("hello")]),
        ),
        (
            ReadOp::Exists {
                keys: vec![b("a"), b("a"), b("x")],
            },
            Frame::Integer(2),
        ),
        (ReadOp::StrLen { key: b("b") }, Frame::Integer(5)),
        (ReadOp::StrLen { key: b("x") }, Frame::Integer(0)),
        (ReadOp::DbSize, Frame::Integer(3)),
        (ReadOp::Type { key: b("a") }, Frame::Simple("string".into())),
        (ReadOp::Type { key: b("x") }, Frame::Simple("none".into())),
        (
            ReadOp::GetRange {
                key: b("b"),
                start: 1,
                end: 3,
            },
            Frame::bulk("ell"),
        ),
        (
            ReadOp::GetRange {
                key: b("b"),
                start: -3,
                end: -1,
            },
            Frame::bulk("llo"),
        ),
        (
            ReadOp::GetRange {
                key: b("b"),
                start: -1,
                end: -3,
            },
            Frame::bulk(""),
        ),
        (
            ReadOp::GetRange {
                key: b("b"),
                start: 0,
                end: 100,
            },
            Frame::bulk("hello"),
        ),
        (
            ReadOp::GetRange {
                key: b("b"),
                start: 4,
                end: 1,
            },
            Frame::bulk(""),
        ),
        (
            ReadOp::GetRange {
                key: b("x"),
                start: 0,
                end: -1,
            },
            Frame::bulk(""),
        ),
        (
            ReadOp::Time,
            Frame::Array(vec![Frame::bulk("1700000000"), Frame::bulk("5000")]),
        ),
    ];
    for (op, expected) in cases {
        assert_eq!(log.read(5, read_on(0, op.clone())), expected, "{op:?}");
    }
    let keys = log.read(0, read_on(0, ReadOp::Keys { pattern: b("*") }));
    let Frame::Array(keys) = keys else {
        panic!("array")
    };
    assert_eq!(keys.len(), 3);
    let random = log.read(0, read_on(0, ReadOp::RandomKey));
    assert!(keys.contains(&random), "{random:?}");
    assert_eq!(log.read(0, read_on(1, ReadOp::RandomKey)), Frame::Null);
}

#[test]
fn a_key_is_gone_for_every_command_once_its_deadline_has_passed() {
    let mut log = Log::new();
    log.write(0, on(0, set_op("k", "v", px(100))));
    assert_eq!(log.pttl(40, "k"), Frame::Integer(60));
    assert_eq!(
        log.get(100, "k"),
        Frame::bulk("v"),
        "alive through its deadline"
    );
    assert_eq!(log.pttl(100, "k"), Frame::Integer(0));
    assert_eq!(log.get(101, "k"), Frame::Null);
    assert_eq!(log.pttl(101, "k"), Frame::Integer(-2));
    assert_eq!(log.read(101, read_on(0, ReadOp::DbSize)), Frame::Integer(0));
    assert_eq!(
        log.read(101, read_on(0, ReadOp::Exists { keys: vec![b("k")] })),
        Frame::Integer(0)
    );
    assert_eq!(log.machine.len(), 1, "still stored until reclaimed");
    // A write judges by its entry's time: INCR at 101 starts from nothing.
    assert_eq!(
        log.write(
            101,
            on(
                0,
                WriteOp::IncrBy {
                    key: b("k"),
                    delta: 1
                }
            )
        ),
        Frame::Integer(1)
    );
    assert_eq!(
        log.pttl(101, "k"),
        Frame::Integer(-1),
        "the new key has no TTL"
    );
}

#[test]
fn replacing_writes_clear_the_ttl_and_editing_writes_keep_it() {
    let cases: Vec<(WriteOp, i64)> = vec![
        (set_op("k", "new", SetTtl::Clear), -1),
        (set_op("k", "new", SetTtl::Keep), 90),
        (
            WriteOp::Set {
                key: b("k"),
                value: b("x"),
                condition: SetCondition::Always,
                reply: SetReply::OldValue,
                ttl: SetTtl::Clear,
            },
            -1,
        ),
        (
            WriteOp::MSet {
                pairs: vec![(b("k"), b("x"))],
            },
            -1,
        ),
        (
            WriteOp::IncrBy {
                key: b("k"),
                delta: 1,
            },
            90,
        ),
        (
            WriteOp::IncrByFloat {
                key: b("k"),
                delta: b("1.5"),
            },
            90,
        ),
        (
            WriteOp::Append {
                key: b("k"),
                value: b("0"),
            },
            90,
        ),
        (
            WriteOp::SetRange {
                key: b("k"),
                offset: 0,
                value: b("2"),
            },
            90,
        ),
        (WriteOp::Persist { key: b("k") }, -1),
        (
            WriteOp::GetEx {
                key: b("k"),
                ttl: GetExTtl::Persist,
            },
            -1,
        ),
        (
            WriteOp::GetEx {
                key: b("k"),
                ttl: GetExTtl::Expire(ms(500, false, TtlCommand::GetEx)),
            },
            500,
        ),
    ];
    for (op, pttl) in cases {
        let mut log = Log::new();
        log.write(0, on(0, set_op("k", "1", px(100))));
        log.write(10, on(0, op.clone()));
        assert_eq!(log.pttl(10, "k"), Frame::Integer(pttl), "{op:?}");
    }
    let mut log = Log::new();
    log.write(0, on(0, set_op("k", "1", px(100))));
    log.write(
        10,
        on(
            0,
            WriteOp::Rename {
                from: b("k"),
                to: b("r"),
                only_if_absent: false,
            },
        ),
    );
    assert_eq!(
        log.pttl(10, "r"),
        Frame::Integer(90),
        "RENAME moves the TTL"
    );
    log.write(
        10,
        on(
            0,
            WriteOp::Copy {
                from: b("r"),
                to_db: DbIndex(1),
                to: b("c"),
                replace: false,
            },
        ),
    );
    assert_eq!(
        log.read(
            10,
            read_on(
                1,
                ReadOp::Ttl {
                    key: b("c"),
                    unit: TimeUnit::Milliseconds
                }
            )
        ),
        Frame::Integer(90),
        "COPY copies it"
    );
    log.write(
        10,
        on(
            0,
            WriteOp::Move {
                key: b("r"),
                to_db: DbIndex(2),
            },
        ),
    );
    assert_eq!(
        log.read(
            10,
            read_on(
                2,
                ReadOp::Ttl {
                    key: b("r"),
                    unit: TimeUnit::Milliseconds
                }
            )
        ),
        Frame::Integer(90),
        "MOVE moves it"
    );
}

#[test]
fn expire_options_and_bad_times_follow_redis() {
    let none = ExpireCondition::default();
    let nx = ExpireCondition {
        if_none: true,
        ..none
    };
    let xx = ExpireCondition {
        if_some: true,
        ..none
    };
    let gt = ExpireCondition {
        if_greater: true,
        ..none
    };
    let lt = ExpireCondition {
        if_less: true,
        ..none
    };
    let rel = |value| ms(value, false, TtlCommand::PExpire);
    // (key has a 100 ms TTL?, command, reply, PTTL afterwards at time 0)
    let cases: Vec<(bool, WriteOp, Frame, i64)> = vec![
        (false, expire_op("k", rel(50), none), Frame::Integer(1), 50),
        (
            false,
            expire_op("nope", rel(50), none),
            Frame::Integer(0),
            -2,
        ),
        (false, expire_op("k", rel(50), nx), Frame::Integer(1), 50),
        (true, expire_op("k", rel(50), nx), Frame::Integer(0), 100),
        (false, expire_op("k", rel(50), xx), Frame::Integer(0), -1),
        (true, expire_op("k", rel(50), xx), Frame::Integer(1), 50),
        (false, expire_op("k", rel(50), gt), Frame::Integer(0), -1),
        (true, expire_op("k", rel(150), gt), Frame::Integer(1), 150),
        (true, expire_op("k", rel(50), gt), Frame::Integer(0), 100),
        (false, expire_op("k", rel(50), lt), Frame::Integer(1), 50),
        (true, expire_op("k", rel(150), lt), Frame::Integer(0), 100),
        (true, expire_op("k", rel(0), none), Frame::Integer(1), -2),
        (true, expire_op("k", rel(-5), none), Frame::Integer(1), -2),
        (
            true,
            expire_op("k", ms(1, true, TtlCommand::PExpireAt), none),
            Frame::Integer(1),
            -2,
        ),
        (
            true,
            expire_op(
                "k",
                Expiry {
                    value: i64::MAX / 1000 + 1,
                    unit: TimeUnit::Seconds,
                    absolute: false,
                    command: TtlCommand::Expire,
                },
                none,
            ),
            err("ERR invalid expire time in 'expire' command"),
            100,
        ),
        (
            true,
            expire_op("k", rel(i64::MAX), none),
            err("ERR invalid expire time in 'pexpire' command"),
            100,
        ),
        (
            true,
            expire_op("nope", rel(i64::MAX), none),
            err("ERR invalid expire time in 'pexpire' command"),
            -2,
        ),
        (
            false,
            set_op("k", "v", px(0)),
            err("ERR invalid expire time in 'set' command"),
            -1,
        ),
        (
            false,
            set_op("k", "v", px(-1)),
            err("ERR invalid expire time in 'set' command"),
            -1,
        ),
        (
            false,
            set_op(
                "k",
                "v",
                SetTtl::Expire(Expiry {
                    value: i64::MAX / 1000 + 1,
                    unit: TimeUnit::Seconds,
                    absolute: false,
                    command: TtlCommand::SetEx,
                }),
            ),
            err("ERR invalid expire time in 'setex' command"),
            -1,
        ),
        (
            false,
            set_op("k", "v", px(i64::MAX)),
            err("ERR invalid expire time in 'set' command"),
            -1,
        ),
        (
            false,
            WriteOp::GetEx {
                key: b("nope"),
                ttl: GetExTtl::Expire(ms(0, false, TtlCommand::GetEx)),
            },
            Frame::Null,
            -2,
        ),
        (
            false,
            WriteOp::GetEx {
                key: b("k"),
                ttl: GetExTtl::Expire(ms(0, false, TtlCommand::GetEx)),
            },
            err("ERR invalid expire time in 'getex' command"),
            -1,
        ),
        (
            false,
            WriteOp::Persist { key: b("k") },
            Frame::Integer(0),
            -1,
        ),
        (
            true,
            WriteOp::Persist { key: b("k") },
            Frame::Integer(1),
            -1,
        ),
    ];
    for (with_ttl, op, reply, pttl) in cases {
        let mut log = Log::new();
        let ttl = if with_ttl { px(100) } else { SetTtl::Clear };
        log.write(0, on(0, set_op("k", "v", ttl)));
        assert_eq!(log.write(0, on(0, op.clone())), reply, "{op:?}");
        let key = match &op {
            WriteOp::Expire { key, .. } | WriteOp::GetEx { key, .. } => key.clone(),
            _ => b("k"),
        };
        let key = std::str::from_utf8(&key).expect("ascii").to_owned();
        assert_eq!(log.pttl(0, &key), Frame::Integer(pttl), "{op:?}");
    }
}

#[test]
fn time_never_goes_back_whatever_the_stamps_do() {
    let mut log = Log::new();
    log.write(1_000, on(0, set_op("k", "v", px(500))));
    assert_eq!(log.machine.time_ms(), T0 + 1_000);
    // A leader whose clock is behind stamps 0: the effective time stays at 1_000.
    log.write(0, on(0, set_op("late", "v", px(500))));
    assert_eq!(log.machine.time_ms(), T0 + 1_000);
    assert_eq!(
        log.pttl(0, "late"),
        Frame::Integer(500),
        "a read is clamped to the applied time"
    );
    // A legacy entry has no stamp: time stands still and it writes revision 0.
    let index = log.machine.applied_index().next();
    let legacy = LogEntry {
        stamp: None,
        command: set("old", "v"),
    };
    log.machine.apply_entry(index, &legacy);
    assert_eq!(log.machine.time_ms(), T0 + 1_000);
    assert_eq!(log.revision(0, "old"), Frame::Integer(0));
    assert_eq!(log.machine.read_time(T0 + 5), T0 + 1_000);
    assert_eq!(log.machine.read_time(T0 + 5_000), T0 + 5_000);
}

#[test]
fn revisions_are_the_index_of_each_keys_last_change() {
    let mut log = Log::new();
    log.write(0, set("a", "1")); // index 1
    log.write(0, set("b", "1")); // index 2
    assert_eq!(log.revision(0, "a"), Frame::Integer(1));
    assert_eq!(log.revision(0, "b"), Frame::Integer(2));
    assert_eq!(log.revision(0, "x"), Frame::Null);
    log.write(
        0,
        on(
            0,
            expire_op(
                "a",
                ms(100, false, TtlCommand::PExpire),
                ExpireCondition::default(),
            ),
        ),
    ); // 3
    assert_eq!(
        log.revision(0, "a"),
        Frame::Integer(3),
        "a TTL change is a change"
    );
    log.write(
        0,
        on(
            0,
            WriteOp::IncrBy {
                key: b("x"),
                delta: 0,
            },
        ),
    ); // 4: a failed condition changes nothing
    log.write(
        0,
        on(
            0,
            WriteOp::Set {
                key: b("b"),
                value: b("2"),
                condition: SetCondition::IfAbsent,
                reply: SetReply::Ok,
                ttl: SetTtl::Clear,
            },
        ),
    ); // 5
    assert_eq!(
        log.revision(0, "b"),
        Frame::Integer(2),
        "a SET NX that did not write"
    );
    log.write(0, on(0, WriteOp::SwapDb { other: DbIndex(1) })); // 6
    assert_eq!(log.revision(0, "a"), Frame::Null, "swapped away");
    log.write(0, on(0, WriteOp::SwapDb { other: DbIndex(1) })); // 7
    assert_eq!(
        log.revision(0, "b"),
        Frame::Integer(7),
        "a swapped database changed as a whole"
    );
    assert_eq!(
        log.revision(101, "a"),
        Frame::Null,
        "expired keys have no revision"
    );
}

#[test]
fn databases_are_separate_and_swap_move_and_flush() {
    let mut log = Log::new();
    log.write(0, on(0, set_op("k", "zero", SetTtl::Clear)));
    log.write(0, on(3, set_op("k", "three", SetTtl::Clear)));
    let get = |log: &Log, db| log.read(0, read_on(db, ReadOp::Get { key: b("k") }));
    assert_eq!(get(&log, 0), Frame::bulk("zero"));
    assert_eq!(get(&log, 3), Frame::bulk("three"));
    assert_eq!(get(&log, 1), Frame::Null);
    log.write(0, on(0, WriteOp::SwapDb { other: DbIndex(3) }));
    assert_eq!(get(&log, 0), Frame::bulk("three"));
    assert_eq!(get(&log, 3), Frame::bulk("zero"));
    assert_eq!(
        log.write(
            0,
            on(
                0,
                WriteOp::Move {
                    key: b("k"),
                    to_db: DbIndex(3)
                }
            )
        ),
        Frame::Integer(0),
        "exists there"
    );
    assert_eq!(
        log.write(
            0,
            on(
                0,
                WriteOp::Move {
                    key: b("k"),
                    to_db: DbIndex(5)
                }
            )
        ),
        Frame::Integer(1)
    );
    assert_eq!(get(&log, 5), Frame::bulk("three"));
    log.write(0, on(3, WriteOp::FlushDb));
    assert_eq!(get(&log, 3), Frame::Null);
    assert_eq!(get(&log, 5), Frame::bulk("three"));
    log.write(0, on(0, WriteOp::FlushAll));
    assert!(log.machine.is_empty());
    assert_eq!(
        log.machine,
        {
            let mut fresh = StateMachine::new();
            fresh.applied = log.machine.applied;
            fresh.time_ms = log.machine.time_ms;
            fresh
        },
        "no trailing empty databases"
    );
}

fn exec(watches: Vec<Watch>, items: Vec<TxItem>) -> WriteCommand {
    on(0, WriteOp::Exec { watches, items })
}

fn watch(key: &str, revision: Option<u64>) -> Watch {
    Watch {
        db: DbIndex(0),
        key: b(key),
        revision,
    }
}

#[test]
fn exec_applies_atomically_and_aborts_when_a_watched_key_changed() {
    let mut log = Log::new();
    log.write(0, on(0, set_op("w", "1", px(100)))); // index 1
    let items = vec![
        TxItem::Write(on(
            0,
            WriteOp::IncrBy {
                key: b("n"),
                delta: 1,
            },
        )),
        TxItem::Write(set("s", "x")),
        TxItem::Write(on(
            0,
            WriteOp::IncrBy {
                key: b("s"),
                delta: 1,
            },
        )),
        TxItem::Read(read_on(0, ReadOp::Get { key: b("n") })),
        TxItem::Read(read_on(0, ReadOp::Revision { key: b("s") })),
    ];
    let ran = log.write(
        0,
        exec(
            vec![watch("w", Some(1)), watch("absent", None)],
            items.clone(),
        ),
    ); // 2
    assert_eq!(
        ran,
        Frame::Array(vec![
            Frame::Integer(1),
            Frame::ok(),
            err("ERR value is not an integer or out of range"),
            Frame::bulk("1"),
            Frame::Integer(2),
        ]),
        "runtime errors stay per command; REVISION in the same EXEC is its index"
    );
    // Each kind of change since the WATCH aborts: a write, a deletion, an expiry, a creation.
    let changes: Vec<(u64, Vec<Watch>)> = vec![
        (0, vec![watch("w", Some(99))]),
        (0, vec![watch("n", None)]),
        (0, vec![watch("gone", Some(1))]),
        (101, vec![watch("w", Some(1))]),
    ];
    for (at, watches) in changes {
        let before = log.machine.databases().clone();
        assert_eq!(
            log.write(at, exec(watches.clone(), items.clone())),
            Frame::NullArray,
            "{watches:?}"
        );
        assert_eq!(log.machine.databases(), &before, "nothing applied");
    }
}

#[test]
fn a_lock_taken_in_a_transaction_gets_a_strictly_increasing_fencing_token() {
    let mut log = Log::new();
    let acquire = |token: &str| {
        exec(
            vec![],
            vec![
                TxItem::Write(on(
                    0,
                    WriteOp::Set {
                        key: b("lock"),
                        value: b(token),
                        condition: SetCondition::IfAbsent,
                        reply: SetReply::Ok,
                        ttl: px(100),
                    },
                )),
                TxItem::Read(read_on(0, ReadOp::Revision { key: b("lock") })),
            ],
        )
    };
    let mut last = 0;
    for round in 0..5u64 {
        let at = round * 200;
        let Frame::Array(replies) = log.write(at, acquire(&format!("t{round}"))) else {
            panic!("array")
        };
        assert_eq!(
            replies[0],
            Frame::ok(),
            "round {round}: the last lease expired"
        );
        let Frame::Integer(token) = replies[1] else {
            panic!("integer")
        };
        assert!(token > last, "token {token} after {last}");
        last = token;
        let Frame::Array(held) = log.write(at + 50, acquire("other")) else {
            panic!("array")
        };
        assert_eq!(held[0], Frame::Null, "held: the contender fails");
        assert_eq!(
            held[1],
            Frame::Integer(token),
            "and sees the holder's token"
        );
    }
}

#[test]
fn reclamation_deletes_only_keys_still_expired_at_its_entry() {
    let mut log = Log::new();
    for key in ["a", "b", "c"] {
        log.write(0, on(0, set_op(key, "v", px(10))));
    }
    log.write(0, on(1, set_op("d", "v", px(10))));
    log.write(20, set("b", "rewritten"));
    let keys = vec![
        (DbIndex(0), b("a")),
        (DbIndex(0), b("b")),
        (DbIndex(0), b("c")),
        (DbIndex(1), b("d")),
        (DbIndex(7), b("x")),
    ];
    // Stamped 5, the entry's time is max(5, 20) = 20 > 10: a, c and d go, b was rewritten.
    assert_eq!(
        log.write(5, on(0, WriteOp::Reclaim { keys })),
        Frame::Integer(3)
    );
    assert_eq!(log.machine.len(), 1);
    assert_eq!(log.get(20, "b"), Frame::bulk("rewritten"));
}

#[test]
#[should_panic(expected = "expected")]
fn applying_out_of_order_is_a_broken_invariant() {
    let mut machine = StateMachine::new();
    machine.apply_entry(
        LogIndex(2),
        &LogEntry {
            stamp: None,
            command: set("a", "1"),
        },
    );
}

#[test]
fn membership_entries_update_the_address_book() {
    let address = |n: u16| MemberAddress {
        peer: format!("h{n}:7000"),
        client: format!("h{n}:6379"),
    };
    let mut machine = StateMachine::new();
    let context = MembershipContext {
        members: vec![(NodeId(1), address(1)), (NodeId(2), address(2))],
    };
    machine.apply_membership(LogIndex(1), &context, &[NodeId(1), NodeId(2)].into());
    assert_eq!(machine.members().len(), 2);
    machine.apply_blank(LogIndex(2));
    let removal = MembershipContext::default();
    let remaining: BTreeSet<NodeId> = [NodeId(2)].into();
    machine.apply_membership(LogIndex(3), &removal, &remaining);
    assert_eq!(
        machine.members().keys().copied().collect::<Vec<_>>(),
        vec![NodeId(2)]
    );
    assert_eq!(machine.members().get(&NodeId(2)), Some(&address(2)));
    assert_eq!(machine.applied_index(), LogIndex(3));
}

mod snapshots;
