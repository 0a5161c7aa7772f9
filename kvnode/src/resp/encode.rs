//! Writing frames as RESP2 or RESP3.
//!
//! RESP3-only types degrade to the shapes Redis itself uses for RESP2 clients: null becomes
//! `$-1`, a map a flat array of key/value pairs, a double a bulk string, a boolean `:1`/`:0`.
//! The walk uses an explicit stack, so a deeply nested frame (e.g. one relayed from the
//! leader) cannot overflow the call stack.

use bytes::{BufMut, BytesMut};

use super::frame::{Frame, Protocol};

/// Appends the encoding of `frame` to `out`.
pub fn encode(frame: &Frame, protocol: Protocol, out: &mut BytesMut) {
    let mut pending: Vec<&Frame> = vec![frame];
    while let Some(next) = pending.pop() {
        match next {
            Frame::Array(items) => {
                encode_header(out, b'*', items.len());
                pending.extend(items.iter().rev());
            }
            Frame::Map(pairs) => {
                match protocol {
                    Protocol::Resp2 => encode_header(out, b'*', pairs.len().saturating_mul(2)),
                    Protocol::Resp3 => encode_header(out, b'%', pairs.len()),
                }
                for (key, value) in pairs.iter().rev() {
                    pending.push(value);
                    pending.push(key);
                }
            }
            leaf => encode_leaf(leaf, protocol, out),
        }
    }
}

/// Convenience for tests and one-off replies: the encoding as a fresh buffer.
pub fn encode_to_vec(frame: &Frame, protocol: Protocol) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(frame, protocol, &mut out);
    out.to_vec()
}

fn encode_leaf(frame: &Frame, protocol: Protocol, out: &mut BytesMut) {
    match frame {
        Frame::Simple(text) => encode_line(out, b'+', text),
        Frame::Error(text) => encode_line(out, b'-', text),
        Frame::Integer(value) => encode_header_i64(out, b':', *value),
        Frame::Bulk(data) => encode_bulk(out, data),
        Frame::Null => match protocol {
            Protocol::Resp2 => out.put_slice(b"$-1\r\n"),
            Protocol::Resp3 => out.put_slice(b"_\r\n"),
        },
        Frame::NullArray => match protocol {
            Protocol::Resp2 => out.put_slice(b"*-1\r\n"),
            Protocol::Resp3 => out.put_slice(b"_\r\n"),
        },
        Frame::Double(value) => {
            let text = format_double(*value);
            match protocol {
                Protocol::Resp2 => encode_bulk(out, text.as_bytes()),
                Protocol::Resp3 => encode_line(out, b',', &text),
            }
        }
        Frame::Boolean(value) => match protocol {
            Protocol::Resp2 => encode_header_i64(out, b':', i64::from(*value)),
            Protocol::Resp3 => out.put_slice(if *value { b"#t\r\n" } else { b"#f\r\n" }),
        },
        Frame::Array(_) | Frame::Map(_) => {
            unreachable!("aggregates are expanded by encode's stack walk")
        }
    }
}

/// Writes a one-line frame. CR and LF would end the line early and desynchronise the
/// client, so they become spaces (Redis does the same to error messages).
fn encode_line(out: &mut BytesMut, prefix: u8, text: &str) {
    out.reserve(text.len() + 3);
    out.put_u8(prefix);
    for byte in text.bytes() {
        out.put_u8(if byte == b'\r' || byte == b'\n' {
            b' '
        } else {
            byte
        });
    }
    out.put_slice(b"\r\n");
}

fn encode_bulk(out: &mut BytesMut, data: &[u8]) {
    encode_header(out, b'$', data.len());
    out.reserve(data.len() + 2);
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

fn encode_header(out: &mut BytesMut, prefix: u8, count: usize) {
    out.put_u8(prefix);
    out.put_slice(count.to_string().as_bytes());
    out.put_slice(b"\r\n");
}

fn encode_header_i64(out: &mut BytesMut, prefix: u8, value: i64) {
    out.put_u8(prefix);
    out.put_slice(value.to_string().as_bytes());
    out.put_slice(b"\r\n");
}

/// RESP3 spells the specials `inf`, `-inf` and `nan`; finite values use Rust's shortest
/// round-trip form (`{:?}` switches to exponent notation for very large or small values).
fn format_double(value: f64) -> String {
    if value.is_nan() {
        "nan".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else {
        format!("{value:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_ab() -> Frame {
        Frame::Map(vec![(Frame::bulk("a"), Frame::Integer(1))])
    }

    #[test]
    fn encodes_each_type_in_both_protocols() {
        let cases: Vec<(Frame, &str, &str)> = vec![
            (Frame::ok(), "+OK\r\n", "+OK\r\n"),
            (Frame::error("ERR x"), "-ERR x\r\n", "-ERR x\r\n"),
            (Frame::Integer(-5), ":-5\r\n", ":-5\r\n"),
            (Frame::bulk("hey"), "$3\r\nhey\r\n", "$3\r\nhey\r\n"),
            (Frame::bulk(""), "$0\r\n\r\n", "$0\r\n\r\n"),
            (Frame::Null, "$-1\r\n", "_\r\n"),
            (Frame::Array(vec![]), "*0\r\n", "*0\r\n"),
            (
                Frame::Array(vec![
                    Frame::bulk("a"),
                    Frame::Array(vec![Frame::Integer(1)]),
                ]),
                "*2\r\n$1\r\na\r\n*1\r\n:1\r\n",
                "*2\r\n$1\r\na\r\n*1\r\n:1\r\n",
            ),
            (
                map_ab(),
                "*2\r\n$1\r\na\r\n:1\r\n",
                "%1\r\n$1\r\na\r\n:1\r\n",
            ),
            (Frame::Double(1.5), "$3\r\n1.5\r\n", ",1.5\r\n"),
            (
                Frame::Double(f64::NEG_INFINITY),
                "$4\r\n-inf\r\n",
                ",-inf\r\n",
            ),
            (Frame::Boolean(true), ":1\r\n", "#t\r\n"),
            (Frame::Boolean(false), ":0\r\n", "#f\r\n"),
        ];
        for (frame, resp2, resp3) in cases {
            assert_eq!(
                encode_to_vec(&frame, Protocol::Resp2),
                resp2.as_bytes(),
                "{frame:?}"
            );
            assert_eq!(
                encode_to_vec(&frame, Protocol::Resp3),
                resp3.as_bytes(),
                "{frame:?}"
            );
        }
    }

    #[test]
    fn line_frames_never_carry_cr_or_lf() {
        let frame = Frame::error("ERR bad\r\nthing");
        assert_eq!(
            encode_to_vec(&frame, Protocol::Resp2),
            b"-ERR bad  thing\r\n"
        );
    }

    #[test]
    fn deep_nesting_encodes_without_recursion() {
        let mut frame = Frame::Integer(1);
        for _ in 0..100_000 {
            frame = Frame::Array(vec![frame]);
        }
        let bytes = encode_to_vec(&frame, Protocol::Resp2);
        assert_eq!(bytes.len(), 100_000 * 4 + 4);
        // Dropping a 100k-deep Vec nest would recurse; unwind it by hand.
        let mut current = frame;
        while let Frame::Array(mut items) = current {
            current = items.pop().expect("each level holds one item");
        }
    }
}
