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

mod expiry;
mod snapshots;
mod transactions;
