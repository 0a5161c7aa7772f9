//! Revisions, databases, transactions (EXEC, WATCH, fencing tokens) and reclamation.

use super::*;

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
