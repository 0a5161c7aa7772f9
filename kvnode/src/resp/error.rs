//! Protocol errors, worded as Redis words them so clients and operators recognise them.
//!
//! After any of these the stream is out of sync: the server sends `-ERR <message>` and
//! closes the connection, as Redis does.

use std::fmt;
use thiserror::Error;

/// Bytes on the wire that are not a frame this decoder will accept.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// A `$n` header that is not a number, negative where not allowed, or over the cap.
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// A `*n` header that is not a number or over the cap.
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// An inline command line longer than the cap, or with no newline within it.
    #[error("Protocol error: too big inline request")]
    TooBigInlineRequest,
    /// A `*n` header line with no CRLF within the cap.
    #[error("Protocol error: too big mbulk count string")]
    TooBigMultibulkCount,
    /// A `$n` header line with no CRLF within the cap.
    #[error("Protocol error: too big bulk count string")]
    TooBigBulkCount,
    /// Inside a multibulk request, an element that is not a bulk string.
    #[error("Protocol error: expected '$', got '{}'", Printable(*got))]
    ExpectedBulk { got: u8 },
    /// An inline line whose quotes do not close (or close mid-word).
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    /// An inline line with more words than `array_elements_max`.
    #[error("Protocol error: too many arguments in inline request (max {limit})")]
    TooManyInlineArguments { limit: usize },
    /// A CR not followed by LF, or bulk data not followed by CRLF.
    #[error("Protocol error: expected CRLF at byte {offset} of the frame")]
    ExpectedCrlf { offset: usize },
    /// The declared sizes of one frame add up to more than `frame_bytes_max`.
    #[error("Protocol error: frame larger than {limit} bytes")]
    FrameTooLarge { limit: usize },
    /// Aggregates nested deeper than `nesting_depth_max` (general decoder only).
    #[error("Protocol error: nesting deeper than {limit}")]
    NestingTooDeep { limit: usize },
    /// A type byte this decoder does not know (general decoder only).
    #[error("Protocol error: unknown frame type '{}'", Printable(*got))]
    UnknownType { got: u8 },
    /// A `:`, `,` or `#` line that does not hold a value of its type (general decoder only).
    #[error("Protocol error: invalid {kind} value")]
    InvalidValue { kind: &'static str },
    /// A simple string or error line that is not UTF-8 (general decoder only).
    #[error("Protocol error: simple string is not UTF-8")]
    InvalidUtf8,
}

/// Shows a byte as Redis' `%c` would for printable ASCII, escaped otherwise, so an error
/// message never carries a raw control byte or CR/LF.
struct Printable(u8);

impl fmt::Display for Printable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_ascii_graphic() || self.0 == b' ' {
            write!(f, "{}", char::from(self.0))
        } else {
            write!(f, "\\x{:02x}", self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_match_redis_wording() {
        let cases = [
            (
                ProtocolError::InvalidBulkLength,
                "Protocol error: invalid bulk length",
            ),
            (
                ProtocolError::InvalidMultibulkLength,
                "Protocol error: invalid multibulk length",
            ),
            (
                ProtocolError::TooBigInlineRequest,
                "Protocol error: too big inline request",
            ),
            (
                ProtocolError::ExpectedBulk { got: b'x' },
                "Protocol error: expected '$', got 'x'",
            ),
            (
                ProtocolError::ExpectedBulk { got: b'\n' },
                "Protocol error: expected '$', got '\\x0a'",
            ),
            (
                ProtocolError::UnbalancedQuotes,
                "Protocol error: unbalanced quotes in request",
            ),
        ];
        for (error, expected) in cases {
            assert_eq!(error.to_string(), expected);
        }
    }
}
