//! Property tests: random and mutated byte streams fed to the inbound decoder (frames and
//! handshake), in random read-sized pieces. Properties: no panic; the decoder either waits
//! for more bytes, yields events, or rejects — and the memory it holds never exceeds a
//! bound set by the maximum frame size.
//!
//! Memory is measured, not assumed: a counting global allocator tracks this thread's live
//! bytes, and each case checks its peak against
//! `2 × (frame_bytes_max + prefix + largest read) + SERDE_PREALLOC_BYTES_MAX`
//! (the buffer may double once while growing; serde caps what it preallocates from a
//! claimed sequence length at 1 MiB).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use raft_core::{Entry, EntryPayload, LogIndex, Message, MessageBody, NodeId, SnapshotMeta, Term};
use raft_net::codec::{decode_body, encode_frame, WireBody, LENGTH_PREFIX_BYTES};
use raft_net::inbound::{InboundDecoder, InboundEvent};
use raft_net::secret::{Nonce, Proof, ProofContext, ProofRole};
use raft_net::{ClusterId, ClusterSecret, Handshake};

const CLUSTER: ClusterId = ClusterId(5);
const ME: NodeId = NodeId(1);
const FRAME_MAX: usize = 4096;
const READ_BYTES_MAX: usize = 512;
const SERDE_PREALLOC_BYTES_MAX: usize = 1024 * 1024;
/// Cases per property; four properties make well over 100,000 cases per default run.
const CASES: u32 = 50_000;

struct CountingAllocator;

thread_local! {
    static LIVE_BYTES: Cell<isize> = const { Cell::new(0) };
    static PEAK_BYTES: Cell<isize> = const { Cell::new(0) };
}

fn record(delta: isize) {
    // try_with: allocations during thread teardown are simply not counted.
    let _ = LIVE_BYTES.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK_BYTES.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn signed(size: usize) -> isize {
    isize::try_from(size).expect("allocation sizes fit isize")
}

// SAFETY: every method forwards to `System` unchanged and only adds bookkeeping in
// thread-locals that never allocate (const-initialised `Cell`s).
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            record(signed(layout.size()));
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        record(-signed(layout.size()));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            record(signed(new_size) - signed(layout.size()));
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Feeds `stream` in pieces of the given sizes (cycled), as socket reads would, until the
/// decoder rejects or the stream ends. Returns the events seen and whether it rejected.
/// `decoder` is an acceptor's or a dialer's.
fn feed_to(
    mut decoder: InboundDecoder,
    stream: &[u8],
    piece_sizes: &[usize],
) -> (Vec<InboundEvent>, bool) {
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    let mut offset = 0;
    let mut pieces = piece_sizes.iter().cycle();
    // Bounded: each pass consumes at least one byte of `stream`.
    while offset < stream.len() {
        let piece = (*pieces.next().expect("non-empty")).clamp(1, READ_BYTES_MAX);
        let end = (offset + piece).min(stream.len());
        buf.extend_from_slice(&stream[offset..end]);
        offset = end;
        loop {
            match decoder.next_event(&mut buf) {
                Ok(Some(event)) => events.push(event),
                Ok(None) => break,
                Err(_) => return (events, true),
            }
        }
    }
    (events, decoder.finish(&buf).is_err())
}

/// Runs `feed_to` with an acceptor's decoder and checks the peak memory it used.
fn feed_bounded(stream: &[u8], piece_sizes: &[usize]) -> (Vec<InboundEvent>, bool) {
    feed_bounded_to(
        InboundDecoder::new(CLUSTER, ME, FRAME_MAX),
        stream,
        piece_sizes,
    )
}

/// `feed_bounded` for a given decoder.
fn feed_bounded_to(
    decoder: InboundDecoder,
    stream: &[u8],
    piece_sizes: &[usize],
) -> (Vec<InboundEvent>, bool) {
    let start = LIVE_BYTES.with(Cell::get);
    PEAK_BYTES.with(|peak| peak.set(start));
    let result = feed_to(decoder, stream, piece_sizes);
    let used = PEAK_BYTES.with(Cell::get) - start;
    let bound = 2 * (FRAME_MAX + LENGTH_PREFIX_BYTES + READ_BYTES_MAX) + SERDE_PREALLOC_BYTES_MAX;
    // The events themselves are counted too; a valid stream of a few small frames stays
    // well within the bound.
    assert!(
        used <= signed(bound),
        "decoder peaked at {used} bytes, bound {bound}"
    );
    assert!(
        stream.is_empty() || used > 0,
        "the counting allocator saw nothing"
    );
    result
}

fn message(from: u64, body: MessageBody) -> Message {
    Message {
        from: NodeId(from),
        to: ME,
        term: Term(3),
        body,
    }
}

fn bodies() -> Vec<MessageBody> {
    vec![
        MessageBody::Heartbeat {
            commit: LogIndex(7),
            read_round: 9,
        },
        MessageBody::Vote {
            last_log_index: LogIndex(4),
            last_log_term: Term(2),
            leader_transfer: false,
        },
        MessageBody::Append {
            prev_log_index: LogIndex(3),
            prev_log_term: Term(2),
            entries: vec![
                Entry {
                    index: LogIndex(4),
                    term: Term(3),
                    payload: EntryPayload::Command(Bytes::from_static(b"set k v")),
                },
                Entry {
                    index: LogIndex(5),
                    term: Term(3),
                    payload: EntryPayload::Blank,
                },
            ],
            leader_commit: LogIndex(3),
        },
        MessageBody::InstallSnapshot {
            meta: SnapshotMeta::default(),
            offset: 0,
            data: Bytes::from(vec![0xab; 300]),
            done: true,
        },
        MessageBody::ReadIndexResponse {
            request_id: 1,
            index: Some(LogIndex(8)),
            clock: 1_700_000_000_000,
        },
    ]
}

/// A valid stream: handshake from node 2, then `picks` messages.
fn valid_stream(picks: &[usize]) -> Vec<u8> {
    valid_stream_opened_by(
        WireBody::Handshake(Handshake::new(CLUSTER, NodeId(2), ME)),
        picks,
    )
}

/// A valid stream as a dialer of node 2 reads it: node 2's welcome, then messages, a
/// probe and a keepalive.
fn valid_welcome_stream(picks: &[usize]) -> Vec<u8> {
    let welcome = WireBody::Welcome(Handshake::new(CLUSTER, NodeId(2), ME));
    let mut stream = valid_stream_opened_by(welcome, picks);
    let mut skipped = BytesMut::new();
    encode_frame(&WireBody::Probe, FRAME_MAX, &mut skipped).expect("fits");
    encode_frame(&WireBody::Keepalive, FRAME_MAX, &mut skipped).expect("fits");
    stream.extend_from_slice(&skipped);
    stream
}

fn valid_stream_opened_by(first: WireBody, picks: &[usize]) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode_frame(&first, FRAME_MAX, &mut buf).expect("fits");
    let bodies = bodies();
    for &pick in picks {
        let body = bodies[pick % bodies.len()].clone();
        encode_frame(&WireBody::Message(message(2, body)), FRAME_MAX, &mut buf).expect("fits");
    }
    buf.to_vec()
}

const SECRET: [u8; 32] = [0x5e; 32];
const DIALER_NONCE: Nonce = Nonce([0xd1; 32]);
const ACCEPTOR_NONCE: Nonce = Nonce([0xa1; 32]);

/// An acceptor requiring the secret, with a fixed nonce so that a stream can carry the
/// right proof.
fn secret_acceptor() -> InboundDecoder {
    let secret = ClusterSecret::new(&SECRET).expect("secret");
    InboundDecoder::new(CLUSTER, ME, FRAME_MAX).with_secret(secret, ACCEPTOR_NONCE)
}

/// What node 2 sends in the secret handshake with [`secret_acceptor`]: its hello, its
/// proof, then messages. Returns the stream and the proof.
fn valid_secret_stream(picks: &[usize]) -> (Vec<u8>, Proof) {
    let secret = ClusterSecret::new(&SECRET).expect("secret");
    let context = ProofContext {
        cluster_id: CLUSTER,
        dialer: NodeId(2),
        acceptor: ME,
        dialer_nonce: DIALER_NONCE,
        acceptor_nonce: ACCEPTOR_NONCE,
    };
    let proof = secret.prove(ProofRole::Dialer, &context);
    let hello = Handshake::new(CLUSTER, NodeId(2), ME).with_nonce(DIALER_NONCE);
    let mut stream = valid_stream_opened_by(WireBody::Handshake(hello), &[]);
    let mut rest = BytesMut::new();
    encode_frame(&WireBody::Proof(proof), FRAME_MAX, &mut rest).expect("fits");
    stream.extend_from_slice(&rest);
    let messages = valid_stream_opened_by(WireBody::Keepalive, picks);
    stream.extend_from_slice(&messages[6..]); // without the keepalive
    (stream, proof)
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, mask: u8 },
    Insert { at: usize, bytes: Vec<u8> },
    Delete { at: usize, len: usize },
    Truncate { at: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), 1usize..16).prop_map(|(at, len)| Mutation::Delete { at, len }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
    ]
}

fn apply(stream: &mut Vec<u8>, mutation: &Mutation) {
    let len = stream.len().max(1);
    match mutation {
        Mutation::Flip { at, mask } => {
            if let Some(byte) = stream.get_mut(at % len) {
                *byte ^= mask;
            }
        }
        Mutation::Insert { at, bytes } => {
            let at = at % (stream.len() + 1);
            stream.splice(at..at, bytes.iter().copied());
        }
        Mutation::Delete { at, len: count } => {
            let at = at % len;
            let end = (at + count).min(stream.len());
            stream.drain(at.min(end)..end);
        }
        Mutation::Truncate { at } => stream.truncate(at % len),
    }
}

fn pieces() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..=READ_BYTES_MAX, 1..6)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    /// Arbitrary bytes, optionally after a valid handshake so the message path is reached.
    #[test]
    fn random_streams_never_panic_and_stay_bounded(
        after_handshake in any::<bool>(),
        noise in prop::collection::vec(any::<u8>(), 0..600),
        pieces in pieces(),
    ) {
        let mut stream = if after_handshake { valid_stream(&[]) } else { Vec::new() };
        stream.extend_from_slice(&noise);
        let (events, _rejected) = feed_bounded(&stream, &pieces);
        if after_handshake {
            prop_assert_eq!(&events[0], &InboundEvent::Established { peer: NodeId(2) });
        }
        // No message is ever yielded before an accepted handshake.
        if let Some(first) = events.first() {
            prop_assert!(matches!(first, InboundEvent::Established { .. }), "{:?}", first);
        }
        let handshakes = events.iter().filter(|e| matches!(e, InboundEvent::Established { .. })).count();
        prop_assert!(handshakes <= 1);
    }

    /// A valid stream with a few mutations: any prefix of valid frames decodes to exactly
    /// what was sent; whatever follows is decoded or rejected, never a panic.
    #[test]
    fn mutated_streams_never_panic_and_stay_bounded(
        picks in prop::collection::vec(any::<usize>(), 0..8),
        mutations in prop::collection::vec(mutation(), 1..4),
        pieces in pieces(),
    ) {
        let original = valid_stream(&picks);
        let mut stream = original.clone();
        for m in &mutations {
            apply(&mut stream, m);
        }
        let (events, _rejected) = feed_bounded(&stream, &pieces);
        // Every event that came out is well formed: one handshake first, then messages
        // from its sender to this node.
        for (i, event) in events.iter().enumerate() {
            match event {
                InboundEvent::Established { peer } => prop_assert!(i == 0 && *peer != ME),
                InboundEvent::Respond(body) => prop_assert!(false, "no secret, yet asked to send {:?}", body),
                InboundEvent::Message { message, .. } => {
                    let peer = match &events[0] {
                        InboundEvent::Established { peer } => *peer,
                        _ => unreachable!("first event is a handshake"),
                    };
                    prop_assert_eq!(message.from, peer);
                    prop_assert_eq!(message.to, ME);
                }
            }
        }
        // The unmutated stream decodes completely.
        let (clean, rejected) = feed_bounded(&original, &pieces);
        prop_assert!(!rejected);
        prop_assert_eq!(clean.len(), picks.len() + 1);
    }

    /// The dialer's side: a welcome, messages and probes, mutated. Only node 2's welcome
    /// opens the stream, and only node 2's messages to this node come out.
    #[test]
    fn mutated_welcome_streams_never_panic_and_stay_bounded(
        picks in prop::collection::vec(any::<usize>(), 0..8),
        mutations in prop::collection::vec(mutation(), 0..4),
        pieces in pieces(),
    ) {
        let original = valid_welcome_stream(&picks);
        let mut stream = original.clone();
        for m in &mutations {
            apply(&mut stream, m);
        }
        let dialer = || InboundDecoder::for_dialer(CLUSTER, ME, NodeId(2), FRAME_MAX);
        let (events, _rejected) = feed_bounded_to(dialer(), &stream, &pieces);
        for (i, event) in events.iter().enumerate() {
            match event {
                InboundEvent::Established { peer } => prop_assert!(i == 0 && *peer == NodeId(2)),
                InboundEvent::Respond(body) => prop_assert!(false, "no secret, yet asked to send {:?}", body),
                InboundEvent::Message { message, .. } => {
                    prop_assert!(i > 0);
                    prop_assert_eq!(message.from, NodeId(2));
                    prop_assert_eq!(message.to, ME);
                }
            }
        }
        let (clean, rejected) = feed_bounded_to(dialer(), &original, &pieces);
        prop_assert!(!rejected);
        prop_assert_eq!(clean.len(), picks.len() + 1, "probes yield nothing");
    }

    /// The cluster-secret handshake, mutated: the acceptor answers the hello with its
    /// challenge, and establishes node 2, and yields its messages, only if the proof that
    /// follows is intact.
    #[test]
    fn mutated_secret_streams_never_establish_without_the_proof(
        picks in prop::collection::vec(any::<usize>(), 0..4),
        mutations in prop::collection::vec(mutation(), 0..4),
        pieces in pieces(),
    ) {
        let (original, proof) = valid_secret_stream(&picks);
        let mut stream = original.clone();
        for m in &mutations {
            apply(&mut stream, m);
        }
        let proof_intact = stream.windows(proof.0.len()).any(|w| w == proof.0);
        let (events, _rejected) = feed_bounded_to(secret_acceptor(), &stream, &pieces);
        let mut established = false;
        for (i, event) in events.iter().enumerate() {
            match event {
                InboundEvent::Respond(WireBody::Challenge(_)) => prop_assert!(i == 0),
                InboundEvent::Respond(body) => prop_assert!(false, "acceptor sent {:?}", body),
                InboundEvent::Established { peer } => {
                    prop_assert!(i == 1 && *peer == NodeId(2) && proof_intact);
                    established = true;
                }
                InboundEvent::Message { message, .. } => {
                    prop_assert!(established);
                    prop_assert_eq!(message.from, NodeId(2));
                }
            }
        }
        let (clean, rejected) = feed_bounded_to(secret_acceptor(), &original, &pieces);
        prop_assert!(!rejected);
        prop_assert_eq!(clean.len(), picks.len() + 2);
    }

    /// Handshakes with arbitrary fields: accepted exactly when every field is right, and
    /// arbitrary frame bodies never panic the body decoder.
    #[test]
    fn handshakes_accepted_only_when_every_field_matches(
        magic_ok in any::<bool>(), magic in any::<u32>(),
        cluster in prop_oneof![Just(CLUSTER.0), any::<u64>()],
        from in 0u64..4, to in 0u64..4,
        body in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let _ = decode_body(&body); // must not panic; errors are expected
        let mut handshake = Handshake::new(ClusterId(cluster), NodeId(from), NodeId(to));
        if !magic_ok {
            handshake.magic = magic;
        }
        let mut stream = BytesMut::new();
        encode_frame(&WireBody::Handshake(handshake), FRAME_MAX, &mut stream).expect("fits");
        let (events, rejected) = feed_bounded(&stream, &[READ_BYTES_MAX]);
        let valid = handshake.magic == raft_net::handshake::HANDSHAKE_MAGIC
            && cluster == CLUSTER.0 && to == ME.0 && from != ME.0;
        prop_assert_eq!(rejected, !valid);
        prop_assert_eq!(events.len(), usize::from(valid));
    }
}
