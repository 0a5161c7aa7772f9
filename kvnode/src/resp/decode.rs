//! A general RESP2/RESP3 frame decoder, for replies (a follower relaying the leader's
//! answer, a CLI, tests) rather than client requests (see [`super::request`]).
//!
//! Accepts `+ - : $ *` from RESP2 (with `$-1` as [`Frame::Null`] and `*-1` as [`Frame::NullArray`]) and `_ , # %`
//! from RESP3. Check-then-parse like the request decoder; nesting is walked with an
//! explicit stack capped at `nesting_depth_max`, never by recursion.

use bytes::{Bytes, BytesMut};

use super::error::ProtocolError;
use super::frame::Frame;
use super::limits::Limits;
use super::number::parse_i64;
use super::request::find_line_end;

/// Decodes the next frame in `buf`, consuming its bytes; `Ok(None)` if it is not all there.
///
/// # Errors
/// A [`ProtocolError`] for bytes that are not a frame or exceed `limits`.
pub fn decode_frame(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Frame>, ProtocolError> {
    let Some(len) = walk(buf, limits, &mut |_, _| {})? else {
        return Ok(None);
    };
    let frame_bytes = buf.split_to(len).freeze();
    let mut builder = Builder::default();
    walk(&frame_bytes, limits, &mut |token, _| {
        builder.push(token, &frame_bytes)
    })?
    .expect("the check pass found a whole frame in these bytes");
    Ok(Some(builder.finish()))
}

/// One element header (or a whole leaf) as the walk meets it.
#[derive(Debug, Clone, Copy)]
enum Token {
    Simple { start: usize, end: usize },
    Error { start: usize, end: usize },
    Integer(i64),
    Double(f64),
    Boolean(bool),
    Null,
    NullArray,
    Bulk { start: usize, end: usize },
    Array(usize),
    Map(usize),
}

/// Walks one frame, calling `visit` for each token in order. Returns its length in bytes,
/// or `None` if incomplete. Bounded: each token consumes at least three bytes of `buf`.
fn walk(
    buf: &[u8],
    limits: &Limits,
    visit: &mut dyn FnMut(Token, usize),
) -> Result<Option<usize>, ProtocolError> {
    // Children still expected by each open aggregate, innermost last.
    let mut open: Vec<usize> = Vec::new();
    let mut pos = 0;
    loop {
        let Some((token, next)) = read_token(buf, pos, limits)? else {
            return Ok(None);
        };
        visit(token, open.len());
        pos = next;
        let children = match token {
            Token::Array(count) => count,
            Token::Map(pairs) => pairs * 2,
            _ => 0,
        };
        if children > 0 {
            if open.len() == limits.nesting_depth_max {
                return Err(ProtocolError::NestingTooDeep {
                    limit: limits.nesting_depth_max,
                });
            }
            open.push(children);
            continue;
        }
        // A complete element: close every aggregate it completes.
        loop {
            match open.last_mut() {
                None => return Ok(Some(pos)),
                Some(remaining) if *remaining > 1 => {
                    *remaining -= 1;
                    break;
                }
                Some(_) => {
                    open.pop();
                }
            }
        }
    }
}

/// Reads the element at `pos`; returns it and the position after it.
fn read_token(
    buf: &[u8],
    pos: usize,
    limits: &Limits,
) -> Result<Option<(Token, usize)>, ProtocolError> {
    let Some(&kind) = buf.get(pos) else {
        return Ok(None);
    };
    let Some(line_end) = find_line_end(buf, pos, limits, ProtocolError::TooBigInlineRequest)?
    else {
        return Ok(None);
    };
    if line_end == pos {
        // The "type byte" is the CR itself.
        return Err(ProtocolError::UnknownType { got: kind });
    }
    let line = &buf[pos + 1..line_end];
    let after_line = line_end + 2;
    if after_line > limits.frame_bytes_max {
        return Err(ProtocolError::FrameTooLarge {
            limit: limits.frame_bytes_max,
        });
    }
    let token = match kind {
        b'+' | b'-' => {
            std::str::from_utf8(line).map_err(|_| ProtocolError::InvalidUtf8)?;
            let (start, end) = (pos + 1, line_end);
            if kind == b'+' {
                Token::Simple { start, end }
            } else {
                Token::Error { start, end }
            }
        }
        b':' => {
            Token::Integer(parse_i64(line).ok_or(ProtocolError::InvalidValue { kind: "integer" })?)
        }
        b',' => Token::Double(read_token_double(line)?),
        b'#' => match line {
            b"t" => Token::Boolean(true),
            b"f" => Token::Boolean(false),
            _ => return Err(ProtocolError::InvalidValue { kind: "boolean" }),
        },
        b'_' if line.is_empty() => Token::Null,
        b'_' => return Err(ProtocolError::InvalidValue { kind: "null" }),
        b'$' if line == b"-1" => Token::Null,
        b'$' => return read_token_bulk(buf, line, after_line, limits),
        b'*' if line == b"-1" => Token::NullArray,
        b'*' => Token::Array(read_token_count(line, 1, limits)?),
        b'%' => Token::Map(read_token_count(line, 2, limits)?),
        other => return Err(ProtocolError::UnknownType { got: other }),
    };
    Ok(Some((token, after_line)))
}

fn read_token_bulk(
    buf: &[u8],
    line: &[u8],
    start: usize,
    limits: &Limits,
) -> Result<Option<(Token, usize)>, ProtocolError> {
    let len = parse_i64(line)
        .and_then(|len| usize::try_from(len).ok())
        .filter(|len| *len <= limits.bulk_bytes_max)
        .ok_or(ProtocolError::InvalidBulkLength)?;
    let end = start + len;
    let after = end
        .checked_add(2)
        .filter(|after| *after <= limits.frame_bytes_max)
        .ok_or(ProtocolError::FrameTooLarge {
            limit: limits.frame_bytes_max,
        })?;
    if buf.len() < after {
        return Ok(None);
    }
    if &buf[end..after] != b"\r\n" {
        return Err(ProtocolError::ExpectedCrlf { offset: end });
    }
    Ok(Some((Token::Bulk { start, end }, after)))
}

/// An aggregate's count; `per_item` elements each (2 for map pairs) must fit the cap.
fn read_token_count(line: &[u8], per_item: usize, limits: &Limits) -> Result<usize, ProtocolError> {
    parse_i64(line)
        .and_then(|count| usize::try_from(count).ok())
        .filter(|count| count.saturating_mul(per_item) <= limits.array_elements_max)
        .ok_or(ProtocolError::InvalidMultibulkLength)
}

fn read_token_double(line: &[u8]) -> Result<f64, ProtocolError> {
    let invalid = ProtocolError::InvalidValue { kind: "double" };
    let text = std::str::from_utf8(line).map_err(|_| invalid.clone())?;
    match text {
        "inf" => Ok(f64::INFINITY),
        "-inf" => Ok(f64::NEG_INFINITY),
        "nan" => Ok(f64::NAN),
        // Rust would also accept "infinity" and "NaN"; RESP3 spells them as above only.
        _ if text
            .bytes()
            .any(|b| b.is_ascii_alphabetic() && b != b'e' && b != b'E') =>
        {
            Err(invalid)
        }
        _ => text.parse().map_err(|_| invalid),
    }
}

/// Assembles frames from tokens of a frame the check pass validated.
#[derive(Default)]
struct Builder {
    /// Open aggregates, innermost last: (is_map, expected children, children so far).
    open: Vec<(bool, usize, Vec<Frame>)>,
    done: Option<Frame>,
}

impl Builder {
    fn push(&mut self, token: Token, bytes: &Bytes) {
        let text = |start: usize, end: usize| {
            String::from_utf8(bytes[start..end].to_vec()).expect("check pass validated UTF-8")
        };
        let mut frame = match token {
            Token::Array(count) if count > 0 => {
                return self.open.push((false, count, Vec::with_capacity(count)))
            }
            Token::Map(pairs) if pairs > 0 => {
                return self
                    .open
                    .push((true, pairs * 2, Vec::with_capacity(pairs * 2)))
            }
            Token::Array(_) => Frame::Array(Vec::new()),
            Token::Map(_) => Frame::Map(Vec::new()),
            Token::Simple { start, end } => Frame::Simple(text(start, end)),
            Token::Error { start, end } => Frame::Error(text(start, end)),
            Token::Integer(value) => Frame::Integer(value),
            Token::Double(value) => Frame::Double(value),
            Token::Boolean(value) => Frame::Boolean(value),
            Token::Null => Frame::Null,
            Token::NullArray => Frame::NullArray,
            Token::Bulk { start, end } => Frame::Bulk(bytes.slice(start..end)),
        };
        // Bounded by the nesting depth the check pass enforced.
        loop {
            let Some((is_map, expected, items)) = self.open.last_mut() else {
                self.done = Some(frame);
                return;
            };
            items.push(frame);
            if items.len() < *expected {
                return;
            }
            let is_map = *is_map;
            let (_, _, items) = self.open.pop().expect("last_mut just saw this aggregate");
            frame = if is_map {
                Frame::Map(pair_up(items))
            } else {
                Frame::Array(items)
            };
        }
    }

    fn finish(self) -> Frame {
        assert!(
            self.open.is_empty(),
            "builder finished with {} open aggregates",
            self.open.len()
        );
        self.done
            .expect("a checked frame yields exactly one top-level frame")
    }
}

fn pair_up(items: Vec<Frame>) -> Vec<(Frame, Frame)> {
    let mut pairs = Vec::with_capacity(items.len() / 2);
    let mut iter = items.into_iter();
    while let (Some(key), Some(value)) = (iter.next(), iter.next()) {
        pairs.push((key, value));
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::encode::encode_to_vec;
    use crate::resp::frame::Protocol;
    use crate::test_alloc::bytes_allocated_during;

    fn sample_frames() -> Vec<Frame> {
        vec![
            Frame::ok(),
            Frame::error("ERR nope"),
            Frame::Integer(i64::MIN),
            Frame::bulk("a\r\nb"),
            Frame::bulk(""),
            Frame::Null,
            Frame::Array(vec![]),
            Frame::Map(vec![]),
            Frame::Double(-2.5),
            Frame::Double(1e300),
            Frame::Boolean(true),
            Frame::Array(vec![
                Frame::bulk("0"),
                Frame::Array(vec![Frame::bulk("k1"), Frame::Array(vec![]), Frame::Null]),
                Frame::Map(vec![(
                    Frame::bulk("x"),
                    Frame::Map(vec![(Frame::Integer(1), Frame::Boolean(false))]),
                )]),
            ]),
        ]
    }

    #[test]
    fn resp3_round_trips_and_every_prefix_is_incomplete() {
        let limits = Limits::default();
        for frame in sample_frames() {
            let bytes = encode_to_vec(&frame, Protocol::Resp3);
            for cut in 0..bytes.len() {
                let mut buf = BytesMut::from(&bytes[..cut]);
                assert_eq!(
                    decode_frame(&mut buf, &limits),
                    Ok(None),
                    "{frame:?} cut at {cut}"
                );
                assert_eq!(buf.len(), cut, "a partial frame consumes nothing");
            }
            let mut buf = BytesMut::from(&bytes[..]);
            assert_eq!(decode_frame(&mut buf, &limits), Ok(Some(frame.clone())));
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn pipelined_frames_decode_in_order() {
        let mut bytes = BytesMut::new();
        for frame in sample_frames() {
            crate::resp::encode(&frame, Protocol::Resp3, &mut bytes);
        }
        for frame in sample_frames() {
            assert_eq!(
                decode_frame(&mut bytes, &Limits::default()),
                Ok(Some(frame))
            );
        }
        assert_eq!(decode_frame(&mut bytes, &Limits::default()), Ok(None));
    }

    #[test]
    fn resp2_nulls_decode_as_null() {
        let cases = [
            ("$-1\r\n", Frame::Null),
            ("*-1\r\n", Frame::NullArray),
            ("_\r\n", Frame::Null),
        ];
        for (input, expected) in cases {
            let mut buf = BytesMut::from(input);
            assert_eq!(
                decode_frame(&mut buf, &Limits::default()),
                Ok(Some(expected)),
                "{input:?}"
            );
        }
    }

    #[test]
    fn malformed_frames_are_refused() {
        let shallow = Limits {
            nesting_depth_max: 2,
            ..Limits::default()
        };
        let cases: &[(&str, ProtocolError)] = &[
            (
                "*1\r\n*1\r\n*1\r\n:1\r\n",
                ProtocolError::NestingTooDeep { limit: 2 },
            ),
            ("?x\r\n", ProtocolError::UnknownType { got: b'?' }),
            ("\r\n", ProtocolError::UnknownType { got: b'\r' }),
            (":1.5\r\n", ProtocolError::InvalidValue { kind: "integer" }),
            (",abc\r\n", ProtocolError::InvalidValue { kind: "double" }),
            (
                ",infinity\r\n",
                ProtocolError::InvalidValue { kind: "double" },
            ),
            ("#x\r\n", ProtocolError::InvalidValue { kind: "boolean" }),
            ("_x\r\n", ProtocolError::InvalidValue { kind: "null" }),
            ("$-2\r\n", ProtocolError::InvalidBulkLength),
            ("$4294967296\r\n", ProtocolError::InvalidBulkLength),
            ("*1048576\r\n", ProtocolError::InvalidMultibulkLength),
            ("%40000\r\n", ProtocolError::InvalidMultibulkLength),
            ("$1\r\nab\r\n", ProtocolError::ExpectedCrlf { offset: 5 }),
        ];
        for (input, expected) in cases {
            let mut buf = BytesMut::from(*input);
            let (result, allocated) = bytes_allocated_during(|| decode_frame(&mut buf, &shallow));
            assert_eq!(result, Err(expected.clone()), "{input:?}");
            assert!(allocated < 1024, "{input:?} allocated {allocated} bytes");
        }
    }

    #[test]
    fn invalid_utf8_simple_string_is_refused() {
        let mut buf = BytesMut::from(&b"+\xff\r\n"[..]);
        assert_eq!(
            decode_frame(&mut buf, &Limits::default()),
            Err(ProtocolError::InvalidUtf8)
        );
    }
}
