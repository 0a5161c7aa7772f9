//! Command parsing: names, arities, options and Redis' error wording.

use bytes::Bytes;
use raft_core::NodeId;

use super::config::ConfigCommand;
use super::*;
use crate::resp::{Frame, Protocol};
use crate::state_machine::{
    DbIndex, ExpireCondition, Expiry, GetExTtl, MemberAddress, ReadCommand, ReadOp, SetCondition,
    SetReply, SetTtl, TimeUnit, TtlCommand, WriteCommand, WriteOp,
};

fn b(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn parse_line(line: &str) -> Result<Command, CommandError> {
    parse_line_with(line, &CommandLimits::default())
}

fn parse_line_with(line: &str, limits: &CommandLimits) -> Result<Command, CommandError> {
    parse_line_in(line, limits, DbIndex(0))
}

fn parse_line_in(line: &str, limits: &CommandLimits, db: DbIndex) -> Result<Command, CommandError> {
    let words: Vec<Bytes> = line.split(' ').map(b).collect();
    parse(
        Frame::Array(words.into_iter().map(Frame::Bulk).collect()),
        &Context { limits, db },
    )
}

fn w(op: WriteOp) -> Command {
    Command::Write(WriteCommand { db: DbIndex(0), op })
}

fn r(op: ReadOp) -> Command {
    Command::Read(ReadCommand { db: DbIndex(0), op })
}

fn set(key: &str, value: &str, condition: SetCondition, reply: SetReply, ttl: SetTtl) -> Command {
    w(WriteOp::Set {
        key: b(key),
        value: b(value),
        condition,
        reply,
        ttl,
    })
}

fn time(value: i64, unit: TimeUnit, absolute: bool, command: TtlCommand) -> Expiry {
    Expiry {
        value,
        unit,
        absolute,
        command,
    }
}

#[test]
fn writes_parse_to_log_commands() {
    use SetCondition::*;
    use TimeUnit::*;
    let plain = |condition, reply| set("k", "v", condition, reply, SetTtl::Clear);
    let timed = |value, unit, absolute, command| {
        set(
            "k",
            "v",
            Always,
            SetReply::Ok,
            SetTtl::Expire(time(value, unit, absolute, command)),
        )
    };
    let expire = |value, unit, absolute, command, condition| {
        w(WriteOp::Expire {
            key: b("k"),
            expiry: time(value, unit, absolute, command),
            condition,
        })
    };
    let cases: Vec<(&str, Command)> = vec![
        ("SET k v", plain(Always, SetReply::Ok)),
        ("set k v nx", plain(IfAbsent, SetReply::Ok)),
        ("SeT k v XX GET", plain(IfPresent, SetReply::OldValue)),
        ("SET k v GET NX NX", plain(IfAbsent, SetReply::OldValue)),
        (
            "SET k v KEEPTTL",
            set("k", "v", Always, SetReply::Ok, SetTtl::Keep),
        ),
        ("SET k v EX 10", timed(10, Seconds, false, TtlCommand::Set)),
        (
            "SET k v px 0",
            timed(0, Milliseconds, false, TtlCommand::Set),
        ),
        (
            "SET k v EX 5 EX 10",
            timed(10, Seconds, false, TtlCommand::Set),
        ),
        ("SET k v EXAT -3", timed(-3, Seconds, true, TtlCommand::Set)),
        (
            "SET k v PXAT 1700000000000",
            timed(1_700_000_000_000, Milliseconds, true, TtlCommand::Set),
        ),
        ("SETNX k v", plain(IfAbsent, SetReply::Flag)),
        ("SETEX k 10 v", timed(10, Seconds, false, TtlCommand::SetEx)),
        (
            "PSETEX k -5 v",
            timed(-5, Milliseconds, false, TtlCommand::PSetEx),
        ),
        ("GETSET k v", plain(Always, SetReply::OldValue)),
        (
            "GETEX k PERSIST",
            w(WriteOp::GetEx {
                key: b("k"),
                ttl: GetExTtl::Persist,
            }),
        ),
        (
            "GETEX k PXAT 9",
            w(WriteOp::GetEx {
                key: b("k"),
                ttl: GetExTtl::Expire(time(9, Milliseconds, true, TtlCommand::GetEx)),
            }),
        ),
        ("GETDEL k", w(WriteOp::GetDel { key: b("k") })),
        (
            "DEL a b a",
            w(WriteOp::Del {
                keys: vec![b("a"), b("b"), b("a")],
            }),
        ),
        ("UNLINK a", w(WriteOp::Del { keys: vec![b("a")] })),
        (
            "INCR n",
            w(WriteOp::IncrBy {
                key: b("n"),
                delta: 1,
            }),
        ),
        (
            "DECR n",
            w(WriteOp::IncrBy {
                key: b("n"),
                delta: -1,
            }),
        ),
        (
            "INCRBY n -5",
            w(WriteOp::IncrBy {
                key: b("n"),
                delta: -5,
            }),
        ),
        (
            "DECRBY n 5",
            w(WriteOp::IncrBy {
                key: b("n"),
                delta: -5,
            }),
        ),
        (
            "DECRBY n -9223372036854775807",
            w(WriteOp::IncrBy {
                key: b("n"),
                delta: i64::MAX,
            }),
        ),
        (
            "INCRBYFLOAT n 1.5e3",
            w(WriteOp::IncrByFloat {
                key: b("n"),
                delta: b("1.5e3"),
            }),
        ),
        (
            "APPEND k tail",
            w(WriteOp::Append {
                key: b("k"),
                value: b("tail"),
            }),
        ),
        (
            "SETRANGE k 3 xy",
            w(WriteOp::SetRange {
                key: b("k"),
                offset: 3,
                value: b("xy"),
            }),
        ),
        (
            "MSET a 1 b 2",
            w(WriteOp::MSet {
                pairs: vec![(b("a"), b("1")), (b("b"), b("2"))],
            }),
        ),
        (
            "MSETNX a 1",
            w(WriteOp::MSetNx {
                pairs: vec![(b("a"), b("1"))],
            }),
        ),
        (
            "EXPIRE k 10",
            expire(
                10,
                Seconds,
                false,
                TtlCommand::Expire,
                ExpireCondition::default(),
            ),
        ),
        (
            "PEXPIRE k -1 xx gt",
            expire(
                -1,
                Milliseconds,
                false,
                TtlCommand::PExpire,
                ExpireCondition {
                    if_some: true,
                    if_greater: true,
                    ..Default::default()
                },
            ),
        ),
        (
            "EXPIREAT k 100 NX",
            expire(
                100,
                Seconds,
                true,
                TtlCommand::ExpireAt,
                ExpireCondition {
                    if_none: true,
                    ..Default::default()
                },
            ),
        ),
        (
            "PEXPIREAT k 100 LT",
            expire(
                100,
                Milliseconds,
                true,
                TtlCommand::PExpireAt,
                ExpireCondition {
                    if_less: true,
                    ..Default::default()
                },
            ),
        ),
        ("PERSIST k", w(WriteOp::Persist { key: b("k") })),
        (
            "RENAME a b",
            w(WriteOp::Rename {
                from: b("a"),
                to: b("b"),
                only_if_absent: false,
            }),
        ),
        (
            "RENAMENX a b",
            w(WriteOp::Rename {
                from: b("a"),
                to: b("b"),
                only_if_absent: true,
            }),
        ),
        (
            "COPY a b",
            w(WriteOp::Copy {
                from: b("a"),
                to_db: DbIndex(0),
                to: b("b"),
                replace: false,
            }),
        ),
        (
            "COPY a a DB 3 REPLACE",
            w(WriteOp::Copy {
                from: b("a"),
                to_db: DbIndex(3),
                to: b("a"),
                replace: true,
            }),
        ),
        (
            "MOVE a 15",
            w(WriteOp::Move {
                key: b("a"),
                to_db: DbIndex(15),
            }),
        ),
        ("SWAPDB 0 1", w(WriteOp::SwapDb { other: DbIndex(1) })),
        ("FLUSHDB", w(WriteOp::FlushDb)),
        ("FLUSHDB async", w(WriteOp::FlushDb)),
        ("FLUSHALL SYNC", w(WriteOp::FlushAll)),
    ];
    for (line, expected) in cases {
        let command = parse_line(line);
        assert_eq!(command, Ok(expected), "{line}");
        assert_eq!(command.map(|c| c.kind()), Ok(CommandKind::Write), "{line}");
    }
}

#[test]
fn keyed_commands_carry_the_connections_database() {
    let limits = CommandLimits::default();
    let Ok(Command::Write(write)) = parse_line_in("SET k v", &limits, DbIndex(7)) else {
        panic!("a write");
    };
    assert_eq!(write.db, DbIndex(7));
    let Ok(Command::Read(read)) = parse_line_in("GET k", &limits, DbIndex(7)) else {
        panic!("a read");
    };
    assert_eq!(read.db, DbIndex(7));
    let Ok(Command::Write(swap)) = parse_line_in("SWAPDB 3 4", &limits, DbIndex(7)) else {
        panic!("a write");
    };
    assert_eq!(
        (swap.db, swap.op),
        (DbIndex(3), WriteOp::SwapDb { other: DbIndex(4) })
    );
    assert_eq!(
        parse_line_in("WATCH a b", &limits, DbIndex(2)),
        Ok(Command::Local(LocalCommand::Watch {
            db: DbIndex(2),
            keys: vec![b("a"), b("b")]
        }))
    );
}

#[test]
fn reads_parse_to_read_commands() {
    let scan = |cursor, pattern: Option<&str>, count, type_excludes_strings| {
        r(ReadOp::Scan {
            cursor,
            pattern: pattern.map(b),
            count,
            type_excludes_strings,
        })
    };
    let cases: Vec<(&str, Command)> = vec![
        ("GET k", r(ReadOp::Get { key: b("k") })),
        ("GETEX k", r(ReadOp::Get { key: b("k") })),
        (
            "mget a b",
            r(ReadOp::MGet {
                keys: vec![b("a"), b("b")],
            }),
        ),
        (
            "EXISTS a a",
            r(ReadOp::Exists {
                keys: vec![b("a"), b("a")],
            }),
        ),
        ("TOUCH a", r(ReadOp::Exists { keys: vec![b("a")] })),
        ("STRLEN k", r(ReadOp::StrLen { key: b("k") })),
        (
            "GETRANGE k -3 -1",
            r(ReadOp::GetRange {
                key: b("k"),
                start: -3,
                end: -1,
            }),
        ),
        (
            "TTL k",
            r(ReadOp::Ttl {
                key: b("k"),
                unit: TimeUnit::Seconds,
            }),
        ),
        (
            "PTTL k",
            r(ReadOp::Ttl {
                key: b("k"),
                unit: TimeUnit::Milliseconds,
            }),
        ),
        (
            "EXPIRETIME k",
            r(ReadOp::ExpireTime {
                key: b("k"),
                unit: TimeUnit::Seconds,
            }),
        ),
        (
            "PEXPIRETIME k",
            r(ReadOp::ExpireTime {
                key: b("k"),
                unit: TimeUnit::Milliseconds,
            }),
        ),
        ("TYPE k", r(ReadOp::Type { key: b("k") })),
        ("RANDOMKEY", r(ReadOp::RandomKey)),
        ("REVISION k", r(ReadOp::Revision { key: b("k") })),
        ("TIME", r(ReadOp::Time)),
        ("RAFTKV.DIGEST", r(ReadOp::Digest)),
        ("DBSIZE", r(ReadOp::DbSize)),
        (
            "KEYS user:*",
            r(ReadOp::Keys {
                pattern: b("user:*"),
            }),
        ),
        ("SCAN 0", scan(0, None, 10, false)),
        (
            "SCAN 18446744073709551615 MATCH a* COUNT 5",
            scan(u64::MAX, Some("a*"), 5, false),
        ),
        (
            "scan 7 count 99999999",
            scan(7, None, keyspace::SCAN_COUNT_MAX, false),
        ),
        ("SCAN 0 TYPE string", scan(0, None, 10, false)),
        ("SCAN 0 TYPE hash", scan(0, None, 10, true)),
    ];
    for (line, expected) in cases {
        let command = parse_line(line);
        assert_eq!(command, Ok(expected), "{line}");
        assert_eq!(command.map(|c| c.kind()), Ok(CommandKind::Read), "{line}");
    }
}

mod local;
