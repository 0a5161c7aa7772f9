//! The Redis serialization protocol (RESP2 and the RESP3 types worth having).
//!
//! Role: turn client bytes into [`Frame`]s and reply [`Frame`]s into bytes, nothing more.
//! The codec knows no commands and no Raft.
//!
//! Invariants and prohibitions:
//! - Every length, count, line and nesting level read from the wire is checked against
//!   [`Limits`] *before* anything is allocated for it; a `$4294967296` or `*1048576` header
//!   is refused on sight, not after the bytes arrive.
//! - Decoding is check-then-parse: a first pass proves a whole frame is in the buffer (and
//!   within limits) without allocating, a second pass builds it. Partial input returns
//!   `Ok(None)` and consumes nothing, so a caller just reads more and retries.
//! - No recursion on input: nested aggregates are walked with an explicit, depth-capped stack.
//! - The decoder never panics on any byte sequence (a proptest feeds it random bytes).
//!
//! Module map:
//! - [`frame`]: the [`Frame`] value and the [`Protocol`] version a connection speaks.
//! - [`limits`]: the one [`Limits`] struct with every cap.
//! - [`request`]: the server-side request decoder (`*` multibulk of `$` bulks, or an inline
//!   line), with Redis' own error wording.
//! - [`inline`]: splitting an inline command line, with Redis' quoting rules.
//! - [`decode`]: a general decoder for any RESP2/RESP3 frame (replies, e.g. when a follower
//!   relays the leader's answer, and tests).
//! - [`encode`]: writing a frame as RESP2 or RESP3.
//! - [`number`]: strict integer parsing shared with the command parser.
//! - [`error`]: the [`ProtocolError`] type.

pub mod decode;
pub mod encode;
pub mod error;
pub mod frame;
pub mod inline;
pub mod limits;
pub mod number;
pub mod request;

pub use decode::decode_frame;
pub use encode::encode;
pub use error::ProtocolError;
pub use frame::{Frame, Protocol};
pub use limits::{Limits, LimitsError};
pub use request::{decode_request, RequestDecoder};

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};
    use proptest::prelude::*;

    use super::*;

    /// Small caps so random headers often hit them.
    fn small_limits() -> Limits {
        Limits {
            bulk_bytes_max: 64,
            array_elements_max: 16,
            inline_bytes_max: 32,
            nesting_depth_max: 4,
            frame_bytes_max: 256,
        }
    }

    const SEEDS: &[&[u8]] = &[
        b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
        b"SET a \"b\\x41\" 'c'\r\n",
        b"%1\r\n+k\r\n*2\r\n:1\r\n,1.5\r\n",
        b"*3\r\n$-1\r\n_\r\n#t\r\n",
    ];

    /// A valid frame with a few bytes overwritten, inserted or removed.
    fn mutated() -> impl Strategy<Value = Vec<u8>> {
        let edits = proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..4);
        (0..SEEDS.len(), edits).prop_map(|(seed, edits)| {
            let mut bytes = SEEDS[seed].to_vec();
            for (at, byte, how) in edits {
                let at = at % (bytes.len() + 1);
                match how {
                    0 if at < bytes.len() => bytes[at] = byte,
                    1 => bytes.insert(at, byte),
                    _ if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    _ => bytes.push(byte),
                }
            }
            bytes
        })
    }

    fn input() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..200),
            proptest::collection::vec(
                prop_oneof![
                    Just(b'*'),
                    Just(b'$'),
                    Just(b'\r'),
                    Just(b'\n'),
                    Just(b'-'),
                    b'0'..=b'9'
                ],
                0..100
            ),
            mutated(),
        ]
    }

    /// Decodes everything in `bytes`, fed in two chunks split at `cut`.
    fn decode_chunked(
        bytes: &[u8],
        cut: usize,
        decode: fn(&mut BytesMut, &Limits) -> Result<Option<Frame>, ProtocolError>,
    ) -> (Vec<Frame>, Option<ProtocolError>) {
        let limits = small_limits();
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for chunk in [&bytes[..cut], &bytes[cut..]] {
            buf.extend_from_slice(chunk);
            loop {
                match decode(&mut buf, &limits) {
                    Ok(Some(frame)) => frames.push(frame),
                    Ok(None) => break,
                    Err(error) => return (frames, Some(error)),
                }
            }
        }
        (frames, None)
    }

    /// As [`decode_chunked`], through one [`RequestDecoder`] that resumes across reads.
    fn decode_stateful_chunked(bytes: &[u8], cut: usize) -> (Vec<Frame>, Option<ProtocolError>) {
        let mut decoder = RequestDecoder::new(small_limits());
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for chunk in [&bytes[..cut], &bytes[cut..]] {
            buf.extend_from_slice(chunk);
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(frame)) => frames.push(frame),
                    Ok(None) => break,
                    Err(error) => return (frames, Some(error)),
                }
            }
        }
        (frames, None)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        /// Never panics, and splitting the input between reads changes nothing: the frames
        /// (and the first error) are the same as when all bytes arrive at once.
        #[test]
        fn decoders_survive_any_bytes_and_any_split(bytes in input(), cut in any::<usize>()) {
            let cut = cut % (bytes.len() + 1);
            for decode in [decode_request as fn(&mut BytesMut, &Limits) -> _, decode_frame] {
                let whole = decode_chunked(&bytes, bytes.len(), decode);
                let split = decode_chunked(&bytes, cut, decode);
                prop_assert_eq!(&whole, &split);
            }
            let whole = decode_chunked(&bytes, bytes.len(), decode_request);
            prop_assert_eq!(&whole, &decode_stateful_chunked(&bytes, cut));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1_000))]

        #[test]
        fn any_argument_list_round_trips_through_the_request_decoder(
            args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 1..10)
        ) {
            let frame = Frame::Array(args.into_iter().map(|a| Frame::Bulk(Bytes::from(a))).collect());
            let mut buf = BytesMut::new();
            encode(&frame, Protocol::Resp2, &mut buf);
            prop_assert_eq!(decode_request(&mut buf, &Limits::default()), Ok(Some(frame)));
            prop_assert!(buf.is_empty());
        }
    }
}
