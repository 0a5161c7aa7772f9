//! The server-side request decoder: what Redis' `processInputBuffer` accepts.
//!
//! A request is either a multibulk (`*n\r\n` then n `$len\r\n<data>\r\n` bulks) or, when
//! the first byte is not `*`, an inline line split like a shell would. Both come out as a
//! flat [`Frame::Array`] of [`Frame::Bulk`]s. As in Redis, `*0`, `*-1` and blank inline
//! lines are consumed silently and produce no request.
//!
//! Check-then-parse: [`decode_request_check`] walks the buffer without allocating and
//! refuses any header over [`Limits`] the moment it is complete; only a whole, valid frame
//! is then split off the buffer (zero-copy: the bulks share its allocation). A partial
//! frame costs a re-scan of its headers on the next read, bounded by `array_elements_max`.

use bytes::{Buf, Bytes, BytesMut};

use super::error::ProtocolError;
use super::frame::Frame;
use super::inline::split_inline;
use super::limits::Limits;
use super::number::parse_i64;

/// Decodes the next request in `buf`, consuming its bytes (stateless form of
/// [`RequestDecoder::decode`], which a connection should prefer).
///
/// # Errors
/// As [`RequestDecoder::decode`].
pub fn decode_request(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Frame>, ProtocolError> {
    decode_request_resuming(buf, limits, &mut None)
}

/// A connection's request decoder. It remembers how far the check pass got through a
/// partial multibulk, so a request dribbled in one byte at a time costs linear work, not
/// a re-scan of every header on every read.
#[derive(Debug, Default)]
pub struct RequestDecoder {
    limits: Limits,
    /// Progress through the partial multibulk at the front of the buffer.
    progress: Option<Progress>,
}

/// How much of a partial multibulk the check pass has already validated.
#[derive(Debug, Clone, Copy)]
struct Progress {
    count: usize,
    /// Position after the last validated bulk.
    pos: usize,
    /// Bulks validated so far.
    done: usize,
}

impl RequestDecoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: Limits) -> RequestDecoder {
        RequestDecoder {
            limits,
            progress: None,
        }
    }

    /// Decodes the next request in `buf`, consuming its bytes.
    ///
    /// Returns `Ok(None)` when more bytes are needed (nothing is consumed except ignored
    /// empty requests), and `Ok(Some(frame))` with one request; call again for pipelined
    /// requests. Between calls the caller may only append to `buf`.
    ///
    /// # Errors
    /// A [`ProtocolError`] with Redis' wording. The buffer is then in an unknown position
    /// and the connection should be closed after replying.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        decode_request_resuming(buf, &self.limits, &mut self.progress)
    }
}

fn decode_request_resuming(
    buf: &mut BytesMut,
    limits: &Limits,
    progress: &mut Option<Progress>,
) -> Result<Option<Frame>, ProtocolError> {
    // Bounded: every pass that does not return consumes at least one byte.
    loop {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        if first == b'*' {
            let Some(checked) = decode_request_check(buf, limits, progress)? else {
                return Ok(None);
            };
            let frame_bytes = buf.split_to(checked.len_bytes).freeze();
            if checked.count == 0 {
                continue;
            }
            return Ok(Some(decode_request_build(&frame_bytes, checked.count)));
        }
        let Some(words) = decode_request_inline(buf, limits)? else {
            return Ok(None);
        };
        if !words.is_empty() {
            return Ok(Some(Frame::Array(
                words.into_iter().map(Frame::Bulk).collect(),
            )));
        }
    }
}

/// A complete multibulk found by the check pass.
struct Checked {
    /// Bytes from the `*` to the end of the last bulk's CRLF.
    len_bytes: usize,
    /// Number of bulks; 0 for `*0` and `*-1`, which are skipped.
    count: usize,
}

/// Checks the multibulk at the front of `buf`, resuming from `progress` if a previous
/// call got partway; leaves `progress` set when the frame is still incomplete.
fn decode_request_check(
    buf: &[u8],
    limits: &Limits,
    progress: &mut Option<Progress>,
) -> Result<Option<Checked>, ProtocolError> {
    let mut state = match progress.take() {
        Some(state) => state,
        None => {
            let Some(line_end) =
                find_line_end(buf, 0, limits, ProtocolError::TooBigMultibulkCount)?
            else {
                return Ok(None);
            };
            let declared =
                parse_i64(&buf[1..line_end]).ok_or(ProtocolError::InvalidMultibulkLength)?;
            if declared <= 0 {
                return Ok(Some(Checked {
                    len_bytes: line_end + 2,
                    count: 0,
                }));
            }
            let count = usize::try_from(declared)
                .ok()
                .filter(|count| *count <= limits.array_elements_max)
                .ok_or(ProtocolError::InvalidMultibulkLength)?;
            Progress {
                count,
                pos: line_end + 2,
                done: 0,
            }
        }
    };
    // Bounded by `count`, itself capped above.
    while state.done < state.count {
        let Some(after) = decode_request_check_bulk(buf, state.pos, limits)? else {
            *progress = Some(state);
            return Ok(None);
        };
        state.pos = after;
        state.done += 1;
    }
    Ok(Some(Checked {
        len_bytes: state.pos,
        count: state.count,
    }))
}

/// Checks one `$len\r\n<data>\r\n` at `pos`; returns the position after it.
fn decode_request_check_bulk(
    buf: &[u8],
    pos: usize,
    limits: &Limits,
) -> Result<Option<usize>, ProtocolError> {
    let Some(&first) = buf.get(pos) else {
        return Ok(None);
    };
    if first != b'$' {
        return Err(ProtocolError::ExpectedBulk { got: first });
    }
    let Some(line_end) = find_line_end(buf, pos, limits, ProtocolError::TooBigBulkCount)? else {
        return Ok(None);
    };
    let len = bulk_length(&buf[pos + 1..line_end], limits)?;
    let data_start = line_end + 2;
    let end = data_start
        .checked_add(len)
        .and_then(|end| end.checked_add(2));
    let end =
        end.filter(|end| *end <= limits.frame_bytes_max)
            .ok_or(ProtocolError::FrameTooLarge {
                limit: limits.frame_bytes_max,
            })?;
    if buf.len() < end {
        return Ok(None);
    }
    if &buf[end - 2..end] != b"\r\n" {
        return Err(ProtocolError::ExpectedCrlf { offset: end - 2 });
    }
    Ok(Some(end))
}

/// Parses a bulk length: a number in `0..=bulk_bytes_max`.
fn bulk_length(text: &[u8], limits: &Limits) -> Result<usize, ProtocolError> {
    parse_i64(text)
        .and_then(|len| usize::try_from(len).ok())
        .filter(|len| *len <= limits.bulk_bytes_max)
        .ok_or(ProtocolError::InvalidBulkLength)
}

/// Finds the CR of the header line starting at `start`, looking no further than
/// `inline_bytes_max` bytes. `Ok(None)`: no CR yet and still under the cap.
pub(super) fn find_line_end(
    buf: &[u8],
    start: usize,
    limits: &Limits,
    too_long: ProtocolError,
) -> Result<Option<usize>, ProtocolError> {
    let window_end = buf.len().min(start.saturating_add(limits.inline_bytes_max));
    let window = &buf[start..window_end];
    match window.iter().position(|&byte| byte == b'\r') {
        Some(offset) => {
            let cr = start + offset;
            match buf.get(cr + 1) {
                None => Ok(None),
                Some(b'\n') => Ok(Some(cr)),
                Some(_) => Err(ProtocolError::ExpectedCrlf { offset: cr }),
            }
        }
        None if window.len() >= limits.inline_bytes_max => Err(too_long),
        None => Ok(None),
    }
}

/// Builds the frame from a buffer the check pass has validated.
fn decode_request_build(frame_bytes: &Bytes, count: usize) -> Frame {
    let mut items = Vec::with_capacity(count);
    let mut pos = header_end(frame_bytes, 0);
    for _ in 0..count {
        let line_end = header_end(frame_bytes, pos);
        let len = usize::try_from(
            parse_i64(&frame_bytes[pos + 1..line_end - 2]).expect("check pass parsed this length"),
        )
        .expect("check pass refused negative lengths");
        items.push(Frame::Bulk(frame_bytes.slice(line_end..line_end + len)));
        pos = line_end + len + 2;
    }
    Frame::Array(items)
}

/// Position just after the CRLF of the header line at `start` (validated by the check pass).
fn header_end(buf: &[u8], start: usize) -> usize {
    let cr = buf[start..]
        .iter()
        .position(|&byte| byte == b'\r')
        .expect("check pass found this line's CRLF");
    start + cr + 2
}

/// Takes one inline line off `buf` and splits it. `Ok(None)`: no newline yet.
fn decode_request_inline(
    buf: &mut BytesMut,
    limits: &Limits,
) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    let window = &buf[..buf.len().min(limits.inline_bytes_max)];
    let Some(newline) = window.iter().position(|&byte| byte == b'\n') else {
        if buf.len() >= limits.inline_bytes_max {
            return Err(ProtocolError::TooBigInlineRequest);
        }
        return Ok(None);
    };
    let line_end = if newline > 0 && buf[newline - 1] == b'\r' {
        newline - 1
    } else {
        newline
    };
    let words = split_inline(&buf[..line_end], limits.array_elements_max)?;
    buf.advance(newline + 1);
    Ok(Some(words))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_alloc::bytes_allocated_during;

    fn bulks(words: &[&str]) -> Frame {
        Frame::Array(words.iter().map(Frame::bulk).collect())
    }

    fn decode_all(input: &[u8], limits: &Limits) -> Result<Vec<Frame>, ProtocolError> {
        let mut buf = BytesMut::from(input);
        let mut frames = Vec::new();
        while let Some(frame) = decode_request(&mut buf, limits)? {
            frames.push(frame);
        }
        Ok(frames)
    }

    const VALID: &[(&str, &[&str])] = &[
        ("*1\r\n$4\r\nPING\r\n", &["PING"]),
        (
            "*3\r\n$3\r\nSET\r\n$1\r\na\r\n$0\r\n\r\n",
            &["SET", "a", ""],
        ),
        ("*2\r\n$3\r\nGET\r\n$4\r\na\r\nb\r\n", &["GET", "a\r\nb"]),
        ("PING\r\n", &["PING"]),
        ("SET a \"b c\"\n", &["SET", "a", "b c"]),
        ("\r\n*0\r\n*-1\r\n  \r\nECHO x\r\n", &["ECHO", "x"]),
    ];

    #[test]
    fn every_prefix_is_incomplete_until_the_frame_is_whole() {
        let limits = Limits::default();
        for (input, words) in VALID {
            let bytes = input.as_bytes();
            for cut in 0..bytes.len() {
                let mut buf = BytesMut::from(&bytes[..cut]);
                let before = buf.len();
                let result = decode_request(&mut buf, &limits);
                assert_eq!(result, Ok(None), "{input:?} cut at {cut}");
                // Only skipped empty requests may be consumed from a partial buffer.
                assert!(buf.len() <= before);
                assert!(bytes[..cut].ends_with(&buf[..]), "{input:?} cut at {cut}");
            }
            let mut buf = BytesMut::from(bytes);
            assert_eq!(
                decode_request(&mut buf, &limits),
                Ok(Some(bulks(words))),
                "{input:?}"
            );
            assert!(buf.is_empty(), "{input:?} left {buf:?}");
        }
    }

    #[test]
    fn stateful_decoder_fed_one_byte_at_a_time_gives_the_same_frames() {
        let mut input = Vec::new();
        let mut expected = Vec::new();
        for (text, words) in VALID {
            input.extend_from_slice(text.as_bytes());
            expected.push(bulks(words));
        }
        let mut decoder = RequestDecoder::new(Limits::default());
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for byte in input {
            buf.extend_from_slice(&[byte]);
            while let Some(frame) = decoder.decode(&mut buf).expect("valid input") {
                frames.push(frame);
            }
        }
        assert_eq!(frames, expected);
    }

    #[test]
    fn pipelined_requests_decode_one_after_another() {
        let mut input = Vec::new();
        let mut expected = Vec::new();
        for round in 0..50 {
            let (text, words) = VALID[round % VALID.len()];
            input.extend_from_slice(text.as_bytes());
            expected.push(bulks(words));
        }
        assert_eq!(decode_all(&input, &Limits::default()), Ok(expected));
    }

    #[test]
    fn malformed_requests_get_redis_errors() {
        let small = Limits {
            bulk_bytes_max: 10,
            inline_bytes_max: 16,
            ..Limits::default()
        };
        let cases: &[(&str, ProtocolError)] = &[
            ("*x\r\n", ProtocolError::InvalidMultibulkLength),
            ("*1x\r\n", ProtocolError::InvalidMultibulkLength),
            ("*+1\r\n", ProtocolError::InvalidMultibulkLength),
            ("*1\r\n$-1\r\n", ProtocolError::InvalidBulkLength),
            ("*1\r\n$x\r\n", ProtocolError::InvalidBulkLength),
            ("*1\r\n$\r\n", ProtocolError::InvalidBulkLength),
            ("*1\r\n$11\r\n", ProtocolError::InvalidBulkLength),
            ("*1\r\nx\r\n", ProtocolError::ExpectedBulk { got: b'x' }),
            ("*1\r\n:1\r\n", ProtocolError::ExpectedBulk { got: b':' }),
            (
                "*1\r\n$1\r\nab\r\n",
                ProtocolError::ExpectedCrlf { offset: 9 },
            ),
            ("*1\rx", ProtocolError::ExpectedCrlf { offset: 2 }),
            ("*11111111111111111111", ProtocolError::TooBigMultibulkCount),
            (
                "*1\r\n$11111111111111111111",
                ProtocolError::TooBigBulkCount,
            ),
            (
                "GET aaaaaaaaaaaaaaaaaaaa",
                ProtocolError::TooBigInlineRequest,
            ),
            (
                "GET aaaaaaaaaaaaaaaaaaaa\r\n",
                ProtocolError::TooBigInlineRequest,
            ),
            ("SET a \"b\r\n", ProtocolError::UnbalancedQuotes),
        ];
        for (input, expected) in cases {
            assert_eq!(
                decode_all(input.as_bytes(), &small),
                Err(expected.clone()),
                "{input:?}"
            );
        }
    }

    #[test]
    fn hostile_headers_are_refused_on_sight_without_allocating() {
        let limits = Limits::default();
        let cases: &[(&[u8], ProtocolError)] = &[
            (b"*1048576\r\n", ProtocolError::InvalidMultibulkLength),
            (b"*2147483648\r\n", ProtocolError::InvalidMultibulkLength),
            (b"*1\r\n$4294967296\r\n", ProtocolError::InvalidBulkLength),
            (b"*1\r\n$536870913\r\n", ProtocolError::InvalidBulkLength),
            (b"*1\r\n$-5\r\n", ProtocolError::InvalidBulkLength),
            (b"*1\r\n$12ab\r\n", ProtocolError::InvalidBulkLength),
        ];
        for (input, expected) in cases {
            let mut buf = BytesMut::from(*input);
            let (result, allocated) = bytes_allocated_during(|| decode_request(&mut buf, &limits));
            assert_eq!(result, Err(expected.clone()), "{input:?}");
            assert!(allocated < 1024, "{input:?} allocated {allocated} bytes");
        }
    }

    #[test]
    fn overlong_inline_line_is_refused_before_its_newline_arrives() {
        let limits = Limits::default();
        let mut buf = BytesMut::from(&vec![b'a'; limits.inline_bytes_max][..]);
        let (result, allocated) = bytes_allocated_during(|| decode_request(&mut buf, &limits));
        assert_eq!(result, Err(ProtocolError::TooBigInlineRequest));
        assert!(allocated < 1024, "allocated {allocated} bytes");
    }

    #[test]
    fn frame_larger_than_cap_is_refused_before_its_payload_arrives() {
        let limits = Limits {
            bulk_bytes_max: 100,
            frame_bytes_max: 150,
            ..Limits::default()
        };
        let input = b"*2\r\n$100\r\n";
        let mut buf = BytesMut::from(&input[..]);
        assert_eq!(decode_request(&mut buf, &limits), Ok(None));
        let mut full = input.to_vec();
        full.extend_from_slice(&[b'x'; 100]);
        full.extend_from_slice(b"\r\n$60\r\n");
        assert_eq!(
            decode_all(&full, &limits),
            Err(ProtocolError::FrameTooLarge { limit: 150 })
        );
    }

    #[test]
    fn binary_bulks_survive_untouched() {
        let mut input = b"*1\r\n$256\r\n".to_vec();
        let payload: Vec<u8> = (0..=255).collect();
        input.extend_from_slice(&payload);
        input.extend_from_slice(b"\r\n");
        let expected = Frame::Array(vec![Frame::Bulk(Bytes::from(payload))]);
        assert_eq!(decode_all(&input, &Limits::default()), Ok(vec![expected]));
    }
}
