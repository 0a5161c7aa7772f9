//! The RESP value type shared by requests and replies.

use bytes::Bytes;

/// The protocol version a connection speaks; chosen per connection by `HELLO`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum Protocol {
    /// RESP2, the default for every new connection (as in Redis).
    #[default]
    Resp2,
    /// RESP3, after `HELLO 3`.
    Resp3,
}

/// One RESP value.
///
/// RESP3-only variants are written in a RESP2-compatible shape when the connection speaks
/// RESP2 (see [`crate::resp::encode`]), so command code can build one reply for both.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// `+OK`. Must not contain CR or LF; the encoder replaces them with spaces.
    Simple(String),
    /// `-ERR message`: the first word is the error code. Same CR/LF rule as `Simple`.
    Error(String),
    /// `:42`.
    Integer(i64),
    /// `$3\r\nfoo`: binary safe.
    Bulk(Bytes),
    /// RESP3 `_`; RESP2 `$-1` (the "nil" of GET on a missing key).
    Null,
    /// RESP3 `_`; RESP2 `*-1` (the "nil" of an EXEC whose watched keys changed).
    NullArray,
    /// `*n`: a sequence of frames.
    Array(Vec<Frame>),
    /// RESP3 `%n`; a flat array of 2n items in RESP2.
    Map(Vec<(Frame, Frame)>),
    /// RESP3 `,1.5`; a bulk string in RESP2.
    Double(f64),
    /// RESP3 `#t`; the integer 1 or 0 in RESP2.
    Boolean(bool),
}

impl Frame {
    /// The `+OK` reply.
    pub fn ok() -> Frame {
        Frame::Simple("OK".to_owned())
    }

    /// A bulk string copied from `data`.
    pub fn bulk(data: impl AsRef<[u8]>) -> Frame {
        Frame::Bulk(Bytes::copy_from_slice(data.as_ref()))
    }

    /// An error reply; `message` starts with its code (`ERR`, `WRONGPASS`, ...).
    pub fn error(message: impl Into<String>) -> Frame {
        Frame::Error(message.into())
    }

    /// True for [`Frame::Error`].
    pub fn is_error(&self) -> bool {
        matches!(self, Frame::Error(_))
    }
}
