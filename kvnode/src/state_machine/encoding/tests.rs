//! Round trips, truncations, malformed input and version-1 entries.

use bytes::Bytes;

use super::*;
use crate::state_machine::command::*;

fn b(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn on(db: u32, op: WriteOp) -> WriteCommand {
    WriteCommand {
        db: DbIndex(db),
        op,
    }
}

fn read(db: u32, op: ReadOp) -> ReadCommand {
    ReadCommand {
        db: DbIndex(db),
        op,
    }
}

fn expiry(value: i64, absolute: bool) -> Expiry {
    Expiry {
        value,
        unit: TimeUnit::Milliseconds,
        absolute,
        command: TtlCommand::PExpireAt,
    }
}

fn samples() -> Vec<WriteCommand> {
    let all_reads = vec![
        ReadOp::Get { key: b("k") },
        ReadOp::MGet {
            keys: vec![b("a"), b("b")],
        },
        ReadOp::Exists { keys: vec![] },
        ReadOp::StrLen { key: b("k") },
        ReadOp::GetRange {
            key: b("k"),
            start: -3,
            end: i64::MAX,
        },
        ReadOp::DbSize,
        ReadOp::Keys { pattern: b("*") },
        ReadOp::Scan {
            cursor: 9,
            pattern: Some(b("a*")),
            count: 10,
            type_excludes_strings: true,
        },
        ReadOp::Scan {
            cursor: 0,
            pattern: None,
            count: 1,
            type_excludes_strings: false,
        },
        ReadOp::Ttl {
            key: b("k"),
            unit: TimeUnit::Seconds,
        },
        ReadOp::ExpireTime {
            key: b("k"),
            unit: TimeUnit::Milliseconds,
        },
        ReadOp::Type { key: b("k") },
        ReadOp::RandomKey,
        ReadOp::Revision { key: b("k") },
        ReadOp::Revisions { keys: vec![b("x")] },
        ReadOp::Time,
        ReadOp::Digest,
        ReadOp::Object {
            key: b("k"),
            field: ObjectField::Encoding,
        },
        ReadOp::Object {
            key: b("k"),
            field: ObjectField::IdleTime,
        },
    ];
    let mut items: Vec<TxItem> = all_reads
        .into_iter()
        .map(|op| TxItem::Read(read(3, op)))
        .collect();
    items.push(TxItem::Write(on(2, WriteOp::FlushDb)));
    vec![
        on(
            0,
            WriteOp::Set {
                key: b("k"),
                value: b("v"),
                condition: SetCondition::Always,
                reply: SetReply::Ok,
                ttl: SetTtl::Clear,
            },
        ),
        on(
            15,
            WriteOp::Set {
                key: b(""),
                value: b(""),
                condition: SetCondition::IfAbsent,
                reply: SetReply::Flag,
                ttl: SetTtl::Keep,
            },
        ),
        on(
            1,
            WriteOp::Set {
                key: b("k"),
                value: b("v"),
                condition: SetCondition::IfPresent,
                reply: SetReply::OldValue,
                ttl: SetTtl::Expire(Expiry {
                    value: 10,
                    unit: TimeUnit::Seconds,
                    absolute: false,
                    command: TtlCommand::SetEx,
                }),
            },
        ),
        on(
            0,
            WriteOp::GetEx {
                key: b("k"),
                ttl: GetExTtl::Persist,
            },
        ),
        on(
            0,
            WriteOp::GetEx {
                key: b("k"),
                ttl: GetExTtl::Expire(expiry(-1, true)),
            },
        ),
        on(
            0,
            WriteOp::GetEx {
                key: b("k"),
                ttl: GetExTtl::NotInteger,
            },
        ),
        on(0, WriteOp::GetDel { key: b("k") }),
        on(0, WriteOp::Del { keys: vec![] }),
        on(
            0,
            WriteOp::Del {
                keys: vec![b("a"), b("b")],
            },
        ),
        on(
            0,
            WriteOp::IncrBy {
                key: b("n"),
                delta: i64::MIN,
            },
        ),
        on(
            0,
            WriteOp::IncrByFloat {
                key: b("n"),
                delta: b("1.5e3"),
            },
        ),
        on(
            0,
            WriteOp::Append {
                key: b("k"),
                value: b("tail"),
            },
        ),
        on(
            0,
            WriteOp::SetRange {
                key: b("k"),
                offset: u64::MAX,
                value: b("x"),
            },
        ),
        on(
            0,
            WriteOp::MSet {
                pairs: vec![(b("a"), b("1")), (b("b"), b("2"))],
            },
        ),
        on(
            0,
            WriteOp::MSetNx {
                pairs: vec![(b("a"), b("1"))],
            },
        ),
        on(
            0,
            WriteOp::Expire {
                key: b("k"),
                expiry: expiry(i64::MAX, false),
                condition: ExpireCondition {
                    if_some: true,
                    if_greater: true,
                    ..Default::default()
                },
            },
        ),
        on(0, WriteOp::Persist { key: b("k") }),
        on(
            0,
            WriteOp::Rename {
                from: b("a"),
                to: b("b"),
                only_if_absent: true,
            },
        ),
        on(
            4,
            WriteOp::Copy {
                from: b("a"),
                to_db: DbIndex(7),
                to: b("b"),
                replace: true,
            },
        ),
        on(
            4,
            WriteOp::Move {
                key: b("a"),
                to_db: DbIndex(0),
            },
        ),
        on(4, WriteOp::SwapDb { other: DbIndex(5) }),
        on(4, WriteOp::FlushDb),
        on(0, WriteOp::FlushAll),
        on(
            0,
            WriteOp::Reclaim {
                keys: vec![(DbIndex(3), b("gone"))],
            },
        ),
        on(
            0,
            WriteOp::Exec {
                watches: vec![],
                items: vec![],
            },
        ),
        on(
            0,
            WriteOp::Exec {
                watches: vec![
                    Watch {
                        db: DbIndex(1),
                        key: b("w"),
                        revision: Some(42),
                    },
                    Watch {
                        db: DbIndex(0),
                        key: b("x"),
                        revision: None,
                    },
                ],
                items,
            },
        ),
        on(
            0,
            WriteOp::AclSetUser {
                name: b("app"),
                rules: vec![b("on"), b("#00ff"), b("~app:*"), b("+@read")],
            },
        ),
        on(
            0,
            WriteOp::AclDelUser {
                names: vec![b("a"), b("b")],
            },
        ),
    ]
}

#[test]
fn acl_commands_are_command_version_three_and_never_nested() {
    let setuser = on(
        0,
        WriteOp::AclSetUser {
            name: b("u"),
            rules: vec![b("on")],
        },
    );
    let data = on(0, WriteOp::GetDel { key: b("k") });
    let bytes = setuser.encode();
    assert_eq!(bytes[0], 3, "ACL commands are version 3");
    assert_eq!(data.encode()[0], 2, "data commands stay version 2");
    let mut as_v2 = bytes.to_vec();
    as_v2[0] = 2;
    assert!(
        WriteCommand::decode(&as_v2).is_err(),
        "an ACL tag in a version-2 command"
    );
    let mut data_as_v3 = data.encode().to_vec();
    data_as_v3[0] = 3;
    assert!(
        WriteCommand::decode(&data_as_v3).is_err(),
        "a data tag in a version-3 command"
    );
    let nested = on(
        0,
        WriteOp::Exec {
            watches: vec![],
            items: vec![TxItem::Write(setuser)],
        },
    );
    assert_eq!(
        WriteCommand::decode(&nested.encode()),
        Err(DecodeError::NestedTransaction)
    );
}

#[test]
fn every_command_round_trips_alone_and_in_an_envelope() {
    for command in samples() {
        assert_eq!(WriteCommand::decode(&command.encode()), Ok(command.clone()));
        let entry = LogEntry::encode(1_700_000_000_123, &command);
        assert_eq!(LogEntry::peek_stamp(&entry), Some(1_700_000_000_123));
        assert_eq!(
            LogEntry::decode(&entry),
            Ok(LogEntry {
                stamp: Some(1_700_000_000_123),
                command: command.clone()
            })
        );
    }
}

#[test]
fn every_truncation_is_an_error() {
    for command in samples() {
        let bytes = LogEntry::encode(7, &command);
        for cut in 0..bytes.len() {
            assert!(
                LogEntry::decode(&bytes[..cut]).is_err(),
                "{command:?} cut at {cut}"
            );
        }
    }
}

#[test]
fn version_one_entries_decode_as_stampless_commands_on_database_zero() {
    let set = |condition, reply| WriteCommand {
        db: DbIndex(0),
        op: WriteOp::Set {
            key: b("k"),
            value: b("v"),
            condition,
            reply,
            ttl: SetTtl::Clear,
        },
    };
    let cases: Vec<(&[u8], WriteCommand)> = vec![
        (
            b"\x01\x01\x00\x01\x00\x00\x00k\x01\x00\x00\x00v",
            set(SetCondition::Always, SetReply::Ok),
        ),
        (
            b"\x01\x01\x05\x01\x00\x00\x00k\x01\x00\x00\x00v",
            set(SetCondition::IfAbsent, SetReply::OldValue),
        ),
        (
            b"\x01\x02\x01\x00\x00\x00k\x01\x00\x00\x00v",
            set(SetCondition::Always, SetReply::OldValue),
        ),
        (
            b"\x01\x03\x01\x00\x00\x00\x01\x00\x00\x00k",
            on(0, WriteOp::Del { keys: vec![b("k")] }),
        ),
        (
            b"\x01\x04\x01\x00\x00\x00k\xff\xff\xff\xff\xff\xff\xff\xff",
            on(
                0,
                WriteOp::IncrBy {
                    key: b("k"),
                    delta: -1,
                },
            ),
        ),
        (
            b"\x01\x05\x01\x00\x00\x00k\x01\x00\x00\x00v",
            on(
                0,
                WriteOp::Append {
                    key: b("k"),
                    value: b("v"),
                },
            ),
        ),
        (
            b"\x01\x06\x01\x00\x00\x00\x01\x00\x00\x00k\x01\x00\x00\x00v",
            on(
                0,
                WriteOp::MSet {
                    pairs: vec![(b("k"), b("v"))],
                },
            ),
        ),
    ];
    for (bytes, command) in cases {
        assert_eq!(
            LogEntry::decode(bytes),
            Ok(LogEntry {
                stamp: None,
                command
            }),
            "{bytes:?}"
        );
        assert_eq!(LogEntry::peek_stamp(bytes), None);
    }
}

#[test]
fn malformed_entries_say_what_is_wrong() {
    let cases: &[(&[u8], DecodeError)] = &[
        (b"", DecodeError::Empty),
        (b"\x03\x01", DecodeError::UnsupportedVersion { version: 3 }),
        (b"\x01\x09", DecodeError::UnknownTag { tag: 9 }),
        (b"\x02\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x63", DecodeError::UnknownTag { tag: 0x63 }),
        (b"\x02\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x01\x00\x11", DecodeError::DatabaseOutOfRange { db: 65_536 }),
        (b"\x02\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x01\x03", DecodeError::InvalidField { what: "SET flags", value: 3 }),
        (b"\x02\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x04\xff\xff\xff\xff", DecodeError::CountTooLarge { count: u32::MAX, remaining: 0 }),
        (b"\x02\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x11!", DecodeError::TrailingBytes { count: 1 }),
        // An EXEC holding an EXEC.
        (b"\x02\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x14\x00\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x14", DecodeError::NestedTransaction),
        (b"\x01\x01\x03", DecodeError::InvalidField { what: "SET flags", value: 3 }),
        (b"\x01\x01", DecodeError::Truncated { offset: 2, needed: 1 }),
    ];
    for (bytes, expected) in cases {
        assert_eq!(LogEntry::decode(bytes), Err(expected.clone()), "{bytes:?}");
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4_000))]
    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..96)) {
        let _ = LogEntry::decode(&bytes); // only the absence of a panic matters
        let _ = WriteCommand::decode(&bytes);
    }

    #[test]
    fn decode_never_panics_on_mutated_samples(pick in 0usize..25, at in 0usize..200, byte in proptest::prelude::any::<u8>()) {
        let samples = samples();
        let mut bytes = LogEntry::encode(5, &samples[pick % samples.len()]).to_vec();
        let at = at % bytes.len();
        bytes[at] = byte;
        let _ = LogEntry::decode(&bytes); // only the absence of a panic matters
    }
}
