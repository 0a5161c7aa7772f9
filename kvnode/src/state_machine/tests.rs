//! State-machine semantics, determinism, snapshots and their corruption detection.

use std::collections::BTreeSet;

use bytes::Bytes;
use raft_core::{LogIndex, NodeId};

use super::*;
use crate::resp::Frame;

fn b(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn set(key: &str, value: &str) -> WriteCommand {
    WriteCommand::Set {
        key: b(key),
        value: b(value),
        condition: SetCondition::Always,
        get: false,
    }
}

/// Applies `commands` at indexes 1, 2, ... and returns the replies.
fn apply_all(machine: &mut StateMachine, commands: &[WriteCommand]) -> Vec<Frame> {
    commands
        .iter()
        .map(|command| {
            let index = machine.applied_index().next();
            Frame::from(machine.apply(index, command))
        })
        .collect()
}

fn get(machine: &StateMachine, key: &str) -> Frame {
    Frame::from(machine.read(&ReadCommand::Get { key: b(key) }))
}

#[test]
fn writes_follow_redis_semantics() {
    let err = |text: &str| Frame::Error(text.to_owned());
    let set_with = |condition, get| WriteCommand::Set {
        key: b("k"),
        value: b("new"),
        condition,
        get,
    };
    let incr = |key: &str, delta| WriteCommand::IncrBy { key: b(key), delta };
    // (setup, command, reply, value of the command's key afterwards)
    let cases: Vec<(Vec<WriteCommand>, WriteCommand, Frame, Frame)> = vec![
        (vec![], set("k", "v"), Frame::ok(), Frame::bulk("v")),
        (
            vec![],
            set_with(SetCondition::IfAbsent, false),
            Frame::ok(),
            Frame::bulk("new"),
        ),
        (
            vec![set("k", "old")],
            set_with(SetCondition::IfAbsent, false),
            Frame::Null,
            Frame::bulk("old"),
        ),
        (
            vec![],
            set_with(SetCondition::IfPresent, false),
            Frame::Null,
            Frame::Null,
        ),
        (
            vec![set("k", "old")],
            set_with(SetCondition::IfPresent, false),
            Frame::ok(),
            Frame::bulk("new"),
        ),
        (
            vec![set("k", "old")],
            set_with(SetCondition::Always, true),
            Frame::bulk("old"),
            Frame::bulk("new"),
        ),
        (
            vec![],
            set_with(SetCondition::Always, true),
            Frame::Null,
            Frame::bulk("new"),
        ),
        (
            vec![set("k", "old")],
            set_with(SetCondition::IfAbsent, true),
            Frame::bulk("old"),
            Frame::bulk("old"),
        ),
        (
            vec![],
            WriteCommand::GetSet {
                key: b("k"),
                value: b("v"),
            },
            Frame::Null,
            Frame::bulk("v"),
        ),
        (
            vec![set("k", "a")],
            WriteCommand::GetSet {
                key: b("k"),
                value: b("b"),
            },
            Frame::bulk("a"),
            Frame::bulk("b"),
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
            vec![set("k", " 1")],
            incr("k", 1),
            err("ERR value is not an integer or out of range"),
            Frame::bulk(" 1"),
        ),
        (
            vec![set("k", "9223372036854775807")],
            incr("k", 1),
            err("ERR increment or decrement would overflow"),
            Frame::bulk("9223372036854775807"),
        ),
        (
            vec![set("k", "-9223372036854775808")],
            incr("k", -1),
            err("ERR increment or decrement would overflow"),
            Frame::bulk("-9223372036854775808"),
        ),
        (
            vec![],
            WriteCommand::Append {
                key: b("k"),
                value: b("ab"),
            },
            Frame::Integer(2),
            Frame::bulk("ab"),
        ),
        (
            vec![set("k", "ab")],
            WriteCommand::Append {
                key: b("k"),
                value: b("cd"),
            },
            Frame::Integer(4),
            Frame::bulk("abcd"),
        ),
        (
            vec![set("k", "v")],
            WriteCommand::Del {
                keys: vec![b("k"), b("k"), b("x")],
            },
            Frame::Integer(1),
            Frame::Null,
        ),
        (
            vec![],
            WriteCommand::MSet {
                pairs: vec![(b("k"), b("1")), (b("k"), b("2"))],
            },
            Frame::ok(),
            Frame::bulk("2"),
        ),
    ];
    for (setup, command, reply, after) in cases {
        let mut machine = StateMachine::new();
        apply_all(&mut machine, &setup);
        let index = machine.applied_index().next();
        assert_eq!(
            Frame::from(machine.apply(index, &command)),
            reply,
            "{setup:?} then {command:?}"
        );
        assert_eq!(get(&machine, "k"), after, "{setup:?} then {command:?}");
        assert_eq!(
            machine.applied_index(),
            index,
            "an error reply still applies the entry"
        );
        machine.check_invariants();
    }
}

#[test]
fn reads_answer_from_current_state() {
    let mut machine = StateMachine::new();
    apply_all(
        &mut machine,
        &[set("a", "1"), set("bb", "22"), set("user:1", "x")],
    );
    let cases: Vec<(ReadCommand, Frame)> = vec![
        (ReadCommand::Get { key: b("a") }, Frame::bulk("1")),
        (ReadCommand::Get { key: b("zz") }, Frame::Null),
        (
            ReadCommand::MGet {
                keys: vec![b("a"), b("zz"), b("bb")],
            },
            Frame::Array(vec![Frame::bulk("1"), Frame::Null, Frame::bulk("22")]),
        ),
        (
            ReadCommand::Exists {
                keys: vec![b("a"), b("a"), b("zz")],
            },
            Frame::Integer(2),
        ),
        (ReadCommand::StrLen { key: b("bb") }, Frame::Integer(2)),
        (ReadCommand::StrLen { key: b("zz") }, Frame::Integer(0)),
        (ReadCommand::DbSize, Frame::Integer(3)),
        (
            ReadCommand::Keys {
                pattern: b("user:*"),
            },
            Frame::Array(vec![Frame::bulk("user:1")]),
        ),
        (
            ReadCommand::Keys {
                pattern: b("nothing*"),
            },
            Frame::Array(vec![]),
        ),
        (
            ReadCommand::Scan {
                cursor: 0,
                pattern: Some(b("b*")),
                count: 100,
                type_excludes_strings: false,
            },
            Frame::Array(vec![
                Frame::bulk("0"),
                Frame::Array(vec![Frame::bulk("bb")]),
            ]),
        ),
        (
            ReadCommand::Scan {
                cursor: 0,
                pattern: None,
                count: 100,
                type_excludes_strings: true,
            },
            Frame::Array(vec![Frame::bulk("0"), Frame::Array(vec![])]),
        ),
    ];
    for (command, expected) in cases {
        assert_eq!(Frame::from(machine.read(&command)), expected, "{command:?}");
    }
}

#[test]
fn scan_pages_through_every_key() {
    let mut machine = StateMachine::new();
    let writes: Vec<_> = (0..100).map(|i| set(&format!("k{i}"), "v")).collect();
    apply_all(&mut machine, &writes);
    let mut cursor = 0u64;
    let mut seen = BTreeSet::new();
    loop {
        let command = ReadCommand::Scan {
            cursor,
            pattern: None,
            count: 7,
            type_excludes_strings: false,
        };
        let Frame::Array(reply) = Frame::from(machine.read(&command)) else {
            panic!("SCAN replies with an array")
        };
        let [Frame::Bulk(next), Frame::Array(keys)] = &reply[..] else {
            panic!("SCAN reply shape: {reply:?}")
        };
        seen.extend(keys.iter().map(|key| format!("{key:?}")));
        cursor = std::str::from_utf8(next)
            .expect("ascii")
            .parse()
            .expect("cursor is a u64");
        if cursor == 0 {
            break;
        }
    }
    assert_eq!(seen.len(), 100);
}

#[test]
#[should_panic(expected = "expected")]
fn applying_out_of_order_is_a_broken_invariant() {
    let mut machine = StateMachine::new();
    machine.apply(LogIndex(2), &set("a", "1"));
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
    machine.apply_membership(LogIndex(3), &removal, &[NodeId(2)].into());
    assert_eq!(
        machine.members().keys().copied().collect::<Vec<_>>(),
        vec![NodeId(2)]
    );
    assert_eq!(machine.members().get(&NodeId(2)), Some(&address(2)));
    assert_eq!(machine.applied_index(), LogIndex(3));
}

fn sample_machine() -> StateMachine {
    let mut machine = StateMachine::new();
    let address = MemberAddress {
        peer: "a:1".into(),
        client: "a:2".into(),
    };
    let context = MembershipContext {
        members: vec![(NodeId(3), address)],
    };
    machine.apply_membership(LogIndex(1), &context, &[NodeId(3)].into());
    apply_all(
        &mut machine,
        &[
            set("a", "1"),
            set("b", ""),
            WriteCommand::IncrBy {
                key: b("n"),
                delta: 5,
            },
        ],
    );
    machine
}

#[test]
fn snapshot_round_trips() {
    for machine in [StateMachine::new(), sample_machine()] {
        let restored =
            StateMachine::restore(&machine.snapshot()).expect("a fresh snapshot restores");
        assert_eq!(restored, machine);
        assert_eq!(restored.applied_index(), machine.applied_index());
        assert_eq!(
            restored.snapshot(),
            machine.snapshot(),
            "snapshots are byte-for-byte stable"
        );
    }
}

/// Streamed in pieces through a bounded buffer, a large state (many keys across many
/// buckets, and values both below and above the buffer) gives the same bytes as the
/// one-buffer encoding, of exactly the announced length, and a clone taken for a snapshot
/// keeps its contents while the original changes.
#[test]
fn a_streamed_snapshot_equals_the_whole_one_and_ignores_later_writes() {
    let mut machine = sample_machine();
    let mut commands: Vec<WriteCommand> = (0..20_000)
        .map(|i| set(&format!("key:{i}"), &format!("value {i}")))
        .collect();
    commands.push(set("big", &"x".repeat(200_000)));
    commands.push(set("chunk-sized", &"y".repeat(64 * 1024)));
    apply_all(&mut machine, &commands);
    let frozen = machine.clone();
    let whole = frozen.snapshot();
    assert_eq!(frozen.snapshot_len(), whole.len() as u64);

    apply_all(
        &mut machine,
        &[
            set("key:7", "changed"),
            WriteCommand::Del {
                keys: vec![b("big")],
            },
        ],
    );
    let mut streamed = Vec::new();
    frozen
        .write_snapshot(&mut streamed)
        .expect("a Vec takes every write");
    assert!(
        streamed == whole,
        "streamed snapshot differs from the whole one"
    );
    let restored = StateMachine::restore(&streamed).expect("restores");
    assert_eq!(restored, frozen);
    assert_ne!(restored, machine);
}

#[test]
fn every_bit_flip_in_a_snapshot_is_detected() {
    let bytes = sample_machine().snapshot().to_vec();
    for bit in 0..bytes.len() * 8 {
        let mut damaged = bytes.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        assert!(
            StateMachine::restore(&damaged).is_err(),
            "flip of bit {bit} went unnoticed"
        );
    }
}

#[test]
fn every_truncation_of_a_snapshot_is_detected() {
    let bytes = sample_machine().snapshot();
    for cut in 0..bytes.len() {
        assert!(
            StateMachine::restore(&bytes[..cut]).is_err(),
            "cut at {cut} went unnoticed"
        );
    }
}

/// Re-seals a forged body with a valid header length and CRC, so the body checks run.
fn forge(applied: u64, members: u32, entries: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"RAFTKVSM");
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&applied.to_le_bytes());
    out.extend_from_slice(&members.to_le_bytes());
    out.extend_from_slice(&entries.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(body);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

#[test]
fn corrupt_snapshots_say_what_is_wrong() {
    let good = sample_machine().snapshot().to_vec();
    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    let mut bad_version = good.clone();
    bad_version[8] = 9;
    let mut bad_crc = good.clone();
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0xff;
    let entry = |key: &[u8]| {
        [
            &(key.len() as u32).to_le_bytes()[..],
            key,
            &0u32.to_le_bytes(),
        ]
        .concat()
    };
    let two_same = [entry(b"a"), entry(b"a")].concat();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            vec![0; 10],
            "snapshot is 10 bytes, shorter than the 44-byte header and checksum",
        ),
        (bad_magic, "not a raftkv snapshot"),
        (bad_version, "snapshot version 9 is not supported"),
        ([good.as_slice(), b"x"].concat(), "but its header declares"),
        (bad_crc, "snapshot checksum mismatch"),
        (
            forge(0, 0, u64::MAX, b""),
            "snapshot declares 18446744073709551615 entries",
        ),
        (
            forge(0, u32::MAX, 0, b""),
            "snapshot declares 4294967295 members",
        ),
        (
            forge(0, 0, 2, &two_same),
            "snapshot entry out of order or duplicated",
        ),
        (forge(0, 0, 0, b"junk"), "4 unexpected bytes"),
        (
            forge(0, 0, 1, &[9, 0, 0, 0, 0, 0, 0, 0]),
            "snapshot body truncated",
        ),
    ];
    for (bytes, expected) in cases {
        let error = StateMachine::restore(&bytes)
            .expect_err(expected)
            .to_string();
        assert!(
            error.contains(expected),
            "{error:?} should contain {expected:?}"
        );
    }
}

#[test]
fn replicas_applying_the_same_log_end_identical() {
    // A pseudo-random but fixed workload over a small key set, so commands collide.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut log = Vec::new();
    for _ in 0..2_000 {
        let key = b(&format!("k{}", next() % 50));
        let command = match next() % 6 {
            0 => set(
                std::str::from_utf8(&key).expect("ascii"),
                &format!("{}", next() % 100),
            ),
            1 => WriteCommand::IncrBy {
                key,
                delta: (next() % 7) as i64 - 3,
            },
            2 => WriteCommand::Append { key, value: b("x") },
            3 => WriteCommand::Del { keys: vec![key] },
            4 => WriteCommand::GetSet { key, value: b("7") },
            _ => WriteCommand::MSet {
                pairs: vec![(key, b("1")), (b("k0"), b("2"))],
            },
        };
        // Every entry goes through its log encoding, as it would in the cluster.
        log.push(command.encode());
    }
    let replay = |log: &[Bytes]| {
        let mut machine = StateMachine::new();
        let decoded: Vec<_> = log
            .iter()
            .map(|bytes| WriteCommand::decode(bytes).expect("valid entry"))
            .collect();
        let replies = apply_all(&mut machine, &decoded);
        (machine, replies)
    };
    let (first, first_replies) = replay(&log);
    let (second, second_replies) = replay(&log);
    assert_eq!(first_replies, second_replies);
    assert_eq!(first.snapshot(), second.snapshot());
    // A replica that restores from a midway snapshot and applies the rest ends the same.
    let (midway, _) = replay(&log[..1_000]);
    let mut caught_up = StateMachine::restore(&midway.snapshot()).expect("valid snapshot");
    let rest: Vec<_> = log[1_000..]
        .iter()
        .map(|bytes| WriteCommand::decode(bytes).expect("valid entry"))
        .collect();
    apply_all(&mut caught_up, &rest);
    assert_eq!(caught_up.snapshot(), first.snapshot());
    first.check_invariants();
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2_000))]
    #[test]
    fn restore_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..128)) {
        let _ = StateMachine::restore(&bytes); // only the absence of a panic matters
        let sealed = forge(1, (bytes.first().copied().unwrap_or(0) % 3).into(), 2, &bytes);
        let _ = StateMachine::restore(&sealed); // body parsing on CRC-valid garbage
    }
}
