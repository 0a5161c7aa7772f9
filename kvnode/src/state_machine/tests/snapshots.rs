//! Snapshots (round trips, streaming, corruption, version 1) and replica determinism.

use super::*;

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
    let mut log = Log { machine };
    log.write(0, set("a", "1"));
    log.write(0, set("b", ""));
    log.write(5, on(0, set_op("t", "ttl", px(1_000))));
    log.write(5, on(4, set_op("elsewhere", "v", SetTtl::Clear)));
    log.write(6, on(2, WriteOp::SwapDb { other: DbIndex(3) }));
    log.write(
        7,
        on(
            0,
            WriteOp::IncrBy {
                key: b("n"),
                delta: 5,
            },
        ),
    );
    log.write(
        7,
        on(
            0,
            WriteOp::AclSetUser {
                name: b("app"),
                rules: ["on", ">pw", "~app:*", "+@read", "-get", "+set"]
                    .map(b)
                    .to_vec(),
            },
        ),
    );
    log.machine
}

#[test]
fn snapshots_carry_the_users_and_older_ones_restore_with_default_only() {
    let machine = sample_machine();
    let app = machine.users().get(b"app").expect("app defined").clone();
    assert_eq!(app.created, machine.applied_index().0);
    let restored = StateMachine::restore(&machine.snapshot()).expect("restores");
    assert_eq!(restored.users().get(b"app"), Some(&app));
    assert_eq!(restored.users(), machine.users());
    let old = StateMachine::restore(&forge_v2(0, 0, b"")).expect("a v2 snapshot restores");
    assert_eq!(**old.users(), crate::acl::Users::default());
}

#[test]
fn snapshot_round_trips_with_databases_deadlines_revisions_and_time() {
    for machine in [StateMachine::new(), sample_machine()] {
        let restored =
            StateMachine::restore(&machine.snapshot()).expect("a fresh snapshot restores");
        assert_eq!(restored, machine);
        assert_eq!(restored.time_ms(), machine.time_ms());
        assert_eq!(
            restored.snapshot(),
            machine.snapshot(),
            "snapshots are byte-for-byte stable"
        );
        assert_eq!(restored.snapshot_len(), machine.snapshot().len() as u64);
    }
    let restored = StateMachine::restore(&sample_machine().snapshot()).expect("restores");
    let log = Log { machine: restored };
    assert_eq!(log.pttl(7, "t"), Frame::Integer(998), "deadlines survive");
    assert_eq!(log.revision(0, "t"), Frame::Integer(4), "revisions survive");
    assert_eq!(
        log.read(
            0,
            read_on(
                4,
                ReadOp::Get {
                    key: b("elsewhere")
                }
            )
        ),
        Frame::bulk("v")
    );
}

/// Streamed in pieces through a bounded buffer, a large state (many keys across many
/// buckets, and values both below and above the buffer) gives the same bytes as the
/// one-buffer encoding, of exactly the announced length, and a clone taken for a snapshot
/// keeps its contents while the original changes.
#[test]
fn a_streamed_snapshot_equals_the_whole_one_and_ignores_later_writes() {
    let mut log = Log {
        machine: sample_machine(),
    };
    for i in 0..20_000 {
        let ttl = if i % 3 == 0 {
            px(60_000)
        } else {
            SetTtl::Clear
        };
        log.write(
            10,
            on(
                i % 2,
                set_op(&format!("key:{i}"), &format!("value {i}"), ttl),
            ),
        );
    }
    log.write(10, set("big", &"x".repeat(200_000)));
    log.write(10, set("chunk-sized", &"y".repeat(64 * 1024)));
    let frozen = log.machine.clone();
    let whole = frozen.snapshot();
    assert_eq!(frozen.snapshot_len(), whole.len() as u64);
    log.write(10, set("key:7", "changed"));
    log.write(
        10,
        on(
            0,
            WriteOp::Del {
                keys: vec![b("big")],
            },
        ),
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
    assert_ne!(restored, log.machine);
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

fn with_crc(mut out: Vec<u8>) -> Vec<u8> {
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// A version-1 snapshot, as builds before databases and expiry wrote them.
fn forge_v1(applied: u64, members: u32, entries: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"RAFTKVSM");
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&applied.to_le_bytes());
    out.extend_from_slice(&members.to_le_bytes());
    out.extend_from_slice(&entries.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(body);
    with_crc(out)
}

fn forge_v2(members: u32, databases: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"RAFTKVSM");
    out.extend_from_slice(&2u32.to_le_bytes());
    out.extend_from_slice(&9u64.to_le_bytes());
    out.extend_from_slice(&T0.to_le_bytes());
    out.extend_from_slice(&members.to_le_bytes());
    out.extend_from_slice(&databases.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(body);
    with_crc(out)
}

fn framed(data: &[u8]) -> Vec<u8> {
    [&(data.len() as u32).to_le_bytes()[..], data].concat()
}

#[test]
fn version_one_snapshots_restore_into_database_zero() {
    let body = [framed(b"k"), framed(b"v")].concat();
    let machine = StateMachine::restore(&forge_v1(7, 0, 1, &body)).expect("a v1 snapshot restores");
    assert_eq!(machine.applied_index(), LogIndex(7));
    assert_eq!(machine.time_ms(), 0);
    let log = Log { machine };
    assert_eq!(log.get(0, "k"), Frame::bulk("v"));
    assert_eq!(log.pttl(0, "k"), Frame::Integer(-1));
    assert_eq!(log.revision(0, "k"), Frame::Integer(0));
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
    let v1_entry = |key: &[u8]| [framed(key), framed(b"")].concat();
    let two_same = [v1_entry(b"a"), v1_entry(b"a")].concat();
    let database = |index: u32, keys: u64| {
        [
            &index.to_le_bytes()[..],
            &0u64.to_le_bytes(),
            &keys.to_le_bytes(),
        ]
        .concat()
    };
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
            forge_v1(0, 0, u64::MAX, b""),
            "snapshot declares 18446744073709551615 entries",
        ),
        (
            forge_v1(0, u32::MAX, 0, b""),
            "snapshot declares 4294967295 members",
        ),
        (
            forge_v1(0, 0, 2, &two_same),
            "snapshot entry out of order or duplicated",
        ),
        (forge_v1(0, 0, 0, b"junk"), "4 unexpected bytes"),
        (
            forge_v1(0, 0, 1, &[9, 0, 0, 0, 0, 0, 0, 0]),
            "snapshot body truncated",
        ),
        (
            forge_v2(0, u32::MAX, b""),
            "snapshot declares 4294967295 databases",
        ),
        (
            forge_v2(0, 1, &database(70_000, 0)),
            "snapshot database 70000 is out of range",
        ),
        (
            forge_v2(0, 2, &[database(3, 0), database(3, 0)].concat()),
            "snapshot database out of order",
        ),
        (
            forge_v2(0, 1, &database(0, 1_000_000)),
            "snapshot declares 1000000 entries",
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

/// A seeded random workload over every write (with TTLs, transactions, databases and
/// reclamation), applied by two replicas: identical states and digests after every
/// entry's batch, and a third replica restored from a snapshot half-way ends identical.
#[test]
fn replicas_applying_the_same_log_end_identical() {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |bound: u64| {
        state = keyspace::splitmix64(state);
        state % bound
    };
    let mut entries = Vec::new();
    for i in 0..6_000u64 {
        let key = b(&format!("k{}", next(40)));
        let db = next(3) as u32;
        let op = match next(12) {
            0 => set_op("k1", "x", px(next(300) as i64 + 1)),
            1 => WriteOp::Set {
                key: key.clone(),
                value: b("v"),
                condition: SetCondition::IfAbsent,
                reply: SetReply::Flag,
                ttl: px(next(500) as i64 + 1),
            },
            2 => WriteOp::IncrBy {
                key: key.clone(),
                delta: next(10) as i64 - 5,
            },
            3 => WriteOp::Append {
                key: key.clone(),
                value: b("ab"),
            },
            4 => expire_op(
                std::str::from_utf8(&key).expect("ascii"),
                ms(next(400) as i64 - 50, false, TtlCommand::PExpire),
                ExpireCondition::default(),
            ),
            5 => WriteOp::Del {
                keys: vec![key.clone()],
            },
            6 => WriteOp::Rename {
                from: key.clone(),
                to: b("r"),
                only_if_absent: next(2) == 0,
            },
            7 => WriteOp::Move {
                key: key.clone(),
                to_db: DbIndex((db + 1) % 3),
            },
            8 => WriteOp::SwapDb {
                other: DbIndex(next(3) as u32),
            },
            9 => WriteOp::Exec {
                watches: vec![Watch {
                    db: DbIndex(db),
                    key: key.clone(),
                    revision: Some(next(i + 1)),
                }],
                items: vec![
                    TxItem::Write(on(
                        db,
                        WriteOp::IncrBy {
                            key: key.clone(),
                            delta: 1,
                        },
                    )),
                    TxItem::Read(read_on(db, ReadOp::Get { key: key.clone() })),
                ],
            },
            10 => WriteOp::Reclaim {
                keys: vec![(DbIndex(db), key.clone()), (DbIndex(0), b("k1"))],
            },
            _ => WriteOp::IncrByFloat {
                key: key.clone(),
                delta: b("0.5"),
            },
        };
        entries.push((i * 7, on(db, op)));
    }
    let mut first = Log::new();
    let mut second = Log::new();
    let mut restored: Option<Log> = None;
    for (position, (at, command)) in entries.iter().enumerate() {
        let reply = first.write(*at, command.clone());
        assert_eq!(second.write(*at, command.clone()), reply);
        if let Some(third) = restored.as_mut() {
            assert_eq!(third.write(*at, command.clone()), reply);
        }
        if position == entries.len() / 2 {
            let machine = StateMachine::restore(&first.machine.snapshot()).expect("restores");
            restored = Some(Log { machine });
        }
    }
    let third = restored.expect("restored half-way");
    assert_eq!(first.machine, second.machine);
    assert_eq!(first.machine, third.machine);
    let digest = |machine: &StateMachine| Frame::from(machine.read(&read_on(0, ReadOp::Digest), 0));
    assert_eq!(digest(&first.machine), digest(&third.machine));
    assert!(first.machine.len() > 10, "the workload left keys behind");
}
