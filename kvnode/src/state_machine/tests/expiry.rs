//! Expiry and time: TTLs kept and cleared as Redis does, EXPIRE's options, time that never
//! goes back.

use super::*;

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
