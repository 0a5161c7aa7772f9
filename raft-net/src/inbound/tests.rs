use super::*;
use crate::codec::encode_frame;
use crate::error::RejectClass;
use raft_core::{MessageBody, Term};

const FRAME_MAX: usize = 4096;
const CLUSTER: ClusterId = ClusterId(11);
const ME: NodeId = NodeId(1);

fn frame(body: WireBody) -> BytesMut {
    let mut buf = BytesMut::new();
    encode_frame(&body, FRAME_MAX, &mut buf).expect("fits");
    buf
}

fn message(from: u64, to: u64) -> WireBody {
    WireBody::Message(Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(1),
        body: MessageBody::TimeoutNow,
    })
}

fn hello(from: u64) -> WireBody {
    WireBody::Handshake(Handshake::new(CLUSTER, NodeId(from), ME))
}

fn welcome(from: u64) -> WireBody {
    WireBody::Welcome(Handshake::new(CLUSTER, NodeId(from), ME))
}

/// Feeds frames in order to an acceptor's decoder; returns the events up to the first
/// rejection.
fn run(frames: Vec<WireBody>) -> (usize, Option<RejectReason>) {
    run_with(InboundDecoder::new(CLUSTER, ME, FRAME_MAX), frames)
}

fn run_with(mut decoder: InboundDecoder, frames: Vec<WireBody>) -> (usize, Option<RejectReason>) {
    let mut buf = BytesMut::new();
    for body in frames {
        buf.extend_from_slice(&frame(body));
    }
    let mut events = 0;
    loop {
        match decoder.next_event(&mut buf) {
            Ok(Some(_)) => events += 1,
            Ok(None) => return (events, decoder.finish(&buf).err()),
            Err(reason) => return (events, Some(reason)),
        }
    }
}

#[test]
fn inbound_sequences_table() {
    let cases: Vec<(&str, Vec<WireBody>, usize, Option<RejectClass>)> = vec![
        (
            "handshake then messages",
            vec![hello(2), message(2, 1), message(2, 1)],
            3,
            None,
        ),
        (
            "message first",
            vec![message(2, 1)],
            0,
            Some(RejectClass::Handshake),
        ),
        (
            "second handshake",
            vec![hello(2), hello(2)],
            1,
            Some(RejectClass::Handshake),
        ),
        (
            "forged sender",
            vec![hello(2), message(3, 1)],
            1,
            Some(RejectClass::WrongIds),
        ),
        (
            "misaddressed",
            vec![hello(2), message(2, 5)],
            1,
            Some(RejectClass::WrongIds),
        ),
        (
            "claims our id",
            vec![hello(1)],
            0,
            Some(RejectClass::Handshake),
        ),
        (
            "welcome to an acceptor",
            vec![welcome(2)],
            0,
            Some(RejectClass::Handshake),
        ),
        (
            "probes are skipped",
            vec![hello(2), WireBody::Probe, message(2, 1), WireBody::Probe],
            2,
            None,
        ),
        (
            "probe before hello",
            vec![WireBody::Probe, hello(2)],
            0,
            Some(RejectClass::Handshake),
        ),
        (
            "keepalives are skipped",
            vec![
                hello(2),
                WireBody::Keepalive,
                message(2, 1),
                WireBody::Keepalive,
            ],
            2,
            None,
        ),
        (
            "keepalive before hello",
            vec![WireBody::Keepalive, hello(2)],
            0,
            Some(RejectClass::Handshake),
        ),
    ];
    for (name, frames, want_events, want_reject) in cases {
        let (events, reject) = run(frames);
        assert_eq!(events, want_events, "{name}");
        assert_eq!(reject.map(|r| r.class()), want_reject, "{name}");
    }
}

/// A dialer of node 2 accepts only node 2's welcome, then node 2's messages.
#[test]
fn dialer_sequences_table() {
    let cases: Vec<(&str, Vec<WireBody>, usize, Option<RejectClass>)> = vec![
        (
            "welcome then messages",
            vec![welcome(2), message(2, 1), WireBody::Probe, message(2, 1)],
            3,
            None,
        ),
        (
            "keepalive before welcome",
            vec![WireBody::Keepalive, welcome(2)],
            0,
            Some(RejectClass::Handshake),
        ),
        (
            "hello instead of welcome",
            vec![hello(2)],
            0,
            Some(RejectClass::Handshake),
        ),
        (
            "welcome from another node",
            vec![welcome(3)],
            0,
            Some(RejectClass::Handshake),
        ),
        (
            "second welcome",
            vec![welcome(2), welcome(2)],
            1,
            Some(RejectClass::Handshake),
        ),
        (
            "message before welcome",
            vec![message(2, 1)],
            0,
            Some(RejectClass::Handshake),
        ),
        (
            "forged sender",
            vec![welcome(2), message(3, 1)],
            1,
            Some(RejectClass::WrongIds),
        ),
    ];
    for (name, frames, want_events, want_reject) in cases {
        let decoder = InboundDecoder::for_dialer(CLUSTER, ME, NodeId(2), FRAME_MAX);
        let (events, reject) = run_with(decoder, frames);
        assert_eq!(events, want_events, "{name}");
        assert_eq!(reject.map(|r| r.class()), want_reject, "{name}");
    }
}

/// Drives an acceptor's and a dialer's decoder against each other in memory: the hello
/// goes to the acceptor, and each `Respond` to the other side. Returns what each side
/// ended with: the peer it established, or its rejection.
fn secret_handshake(
    acceptor_secret: Option<&ClusterSecret>,
    dialer_secret: Option<&ClusterSecret>,
) -> (
    Result<Option<NodeId>, RejectReason>,
    Result<Option<NodeId>, RejectReason>,
) {
    let (dialer_id, acceptor_id) = (NodeId(2), ME);
    let mut acceptor = InboundDecoder::new(CLUSTER, acceptor_id, FRAME_MAX);
    if let Some(secret) = acceptor_secret {
        acceptor = acceptor.with_secret(secret.clone(), Nonce::random());
    }
    let mut dialer = InboundDecoder::for_dialer(CLUSTER, dialer_id, acceptor_id, FRAME_MAX);
    let mut hello = Handshake::new(CLUSTER, dialer_id, acceptor_id);
    if let Some(secret) = dialer_secret {
        let nonce = Nonce::random();
        hello = hello.with_nonce(nonce);
        dialer = dialer.with_secret(secret.clone(), nonce);
    }
    let (mut to_acceptor, mut to_dialer) = (frame(WireBody::Handshake(hello)), BytesMut::new());
    let (mut acceptor_end, mut dialer_end) = (Ok(None), Ok(None));
    // Bounded: the longest exchange has four frames.
    for _ in 0..4 {
        if matches!(acceptor_end, Ok(None)) {
            match acceptor.next_event(&mut to_acceptor) {
                Ok(Some(InboundEvent::Respond(body))) => to_dialer.extend_from_slice(&frame(body)),
                Ok(Some(InboundEvent::Established { peer })) => {
                    acceptor_end = Ok(Some(peer));
                    let welcome = Handshake::new(CLUSTER, acceptor_id, dialer_id);
                    to_dialer.extend_from_slice(&frame(WireBody::Welcome(welcome)));
                }
                Ok(other) => assert!(other.is_none(), "{other:?}"),
                Err(reason) => acceptor_end = Err(reason),
            }
        }
        if matches!(dialer_end, Ok(None)) {
            match dialer.next_event(&mut to_dialer) {
                Ok(Some(InboundEvent::Respond(body))) => {
                    to_acceptor.extend_from_slice(&frame(body))
                }
                Ok(Some(InboundEvent::Established { peer })) => dialer_end = Ok(Some(peer)),
                Ok(other) => assert!(other.is_none(), "{other:?}"),
                Err(reason) => dialer_end = Err(reason),
            }
        }
    }
    (acceptor_end, dialer_end)
}

/// Both ends prove the secret, and only matching secrets establish anything.
#[test]
fn secret_handshake_table() {
    let key = ClusterSecret::new(&[7; 32]).expect("secret");
    let other = ClusterSecret::new(&[8; 32]).expect("secret");
    type Outcome = fn(&Result<Option<NodeId>, RejectReason>) -> bool;
    let established: Outcome = |end| matches!(end, Ok(Some(_)));
    let bad_proof: Outcome = |end| matches!(end, Err(RejectReason::BadProof));
    let missing: Outcome = |end| matches!(end, Err(RejectReason::SecretMissing));
    let unexpected: Outcome = |end| matches!(end, Err(RejectReason::SecretUnexpected));
    let nothing: Outcome = |end| matches!(end, Ok(None));
    type Case<'a> = (
        &'a str,
        Option<&'a ClusterSecret>,
        Option<&'a ClusterSecret>,
        Outcome,
        Outcome,
    );
    let cases: Vec<Case> = vec![
        (
            "same secret",
            Some(&key),
            Some(&key),
            established,
            established,
        ),
        ("no secret anywhere", None, None, established, established),
        // The dialer refuses the acceptor's proof and never proves its own.
        (
            "other secrets",
            Some(&key),
            Some(&other),
            nothing,
            bad_proof,
        ),
        ("dialer without", Some(&key), None, missing, nothing),
        ("acceptor without", None, Some(&key), unexpected, nothing),
    ];
    for (name, acceptor_secret, dialer_secret, acceptor_want, dialer_want) in cases {
        let (acceptor_end, dialer_end) = secret_handshake(acceptor_secret, dialer_secret);
        assert!(
            acceptor_want(&acceptor_end),
            "{name}: acceptor {acceptor_end:?}"
        );
        assert!(dialer_want(&dialer_end), "{name}: dialer {dialer_end:?}");
        if let Err(reason) = acceptor_end.as_ref().and(dialer_end.as_ref()) {
            assert_eq!(reason.class(), RejectClass::Auth, "{name}");
        }
    }
}

/// A stranger who knows the protocol but not the secret: whatever proof it sends, and
/// whatever frames it sends around it, the acceptor never establishes it.
#[test]
fn stranger_without_the_secret_is_never_established() {
    let key = ClusterSecret::new(&[7; 32]).expect("secret");
    let with_nonce =
        WireBody::Handshake(Handshake::new(CLUSTER, NodeId(2), ME).with_nonce(Nonce([1; 32])));
    let attempts: Vec<Vec<WireBody>> = vec![
        vec![
            with_nonce.clone(),
            WireBody::Proof(Proof([0; 32])),
            message(2, 1),
        ],
        vec![with_nonce.clone(), message(2, 1)],
        vec![with_nonce.clone(), welcome(2)],
        vec![with_nonce.clone(), with_nonce.clone()],
        vec![WireBody::Proof(Proof([0; 32])), with_nonce.clone()],
        vec![hello(2), message(2, 1)],
    ];
    for (i, frames) in attempts.into_iter().enumerate() {
        let decoder =
            InboundDecoder::new(CLUSTER, ME, FRAME_MAX).with_secret(key.clone(), Nonce::random());
        let mut buf = BytesMut::new();
        for body in frames {
            buf.extend_from_slice(&frame(body));
        }
        let mut decoder = decoder;
        // Bounded: at most one event per frame.
        for _ in 0..4 {
            match decoder.next_event(&mut buf) {
                Ok(Some(InboundEvent::Respond(WireBody::Challenge(_)))) => {}
                Ok(None) => break,
                Ok(Some(event)) => panic!("attempt {i}: {event:?}"),
                Err(reason) => {
                    assert!(
                        matches!(reason.class(), RejectClass::Auth | RejectClass::Handshake),
                        "attempt {i}: {reason}"
                    );
                    break;
                }
            }
        }
        assert_eq!(decoder.peer(), None, "attempt {i}");
    }
}

#[test]
fn stream_ending_inside_a_frame_is_truncated() {
    let mut decoder = InboundDecoder::new(CLUSTER, ME, FRAME_MAX);
    let whole = frame(hello(2));
    let mut buf = BytesMut::from(&whole[..whole.len() - 1]);
    assert_eq!(decoder.next_event(&mut buf).expect("partial is fine"), None);
    let reason = decoder.finish(&buf).expect_err("truncated");
    assert!(matches!(
        reason,
        RejectReason::Decode(DecodeError::Truncated { .. })
    ));
}
