//! Splitting an inline command line (`SET a "b c"\r\n`) into arguments.
//!
//! Follows Redis' `sdssplitargs`: words split on whitespace; `"..."` understands `\n`, `\r`,
//! `\t`, `\b`, `\a`, `\xHH` and `\<any>`; `'...'` understands only `\'`; a closing quote must
//! be followed by whitespace or the end of the line. The loop visits each byte once, so the
//! work is bounded by the line length (itself capped by `inline_bytes_max`).

use bytes::Bytes;

use super::error::ProtocolError;

/// Splits `line` (without its line ending) into at most `arguments_max` words.
///
/// # Errors
/// [`ProtocolError::UnbalancedQuotes`] or [`ProtocolError::TooManyInlineArguments`].
pub fn split_inline(line: &[u8], arguments_max: usize) -> Result<Vec<Bytes>, ProtocolError> {
    let mut words = Vec::new();
    let mut pos = 0;
    loop {
        while pos < line.len() && is_space(line[pos]) {
            pos += 1;
        }
        if pos == line.len() {
            return Ok(words);
        }
        if words.len() == arguments_max {
            return Err(ProtocolError::TooManyInlineArguments {
                limit: arguments_max,
            });
        }
        let (word, next) = split_inline_word(line, pos)?;
        words.push(Bytes::from(word));
        pos = next;
    }
}

/// Reads one word starting at `start` (not whitespace); returns it and the position after.
fn split_inline_word(line: &[u8], start: usize) -> Result<(Vec<u8>, usize), ProtocolError> {
    let mut word = Vec::new();
    let mut pos = start;
    let mut quote: Option<u8> = None;
    loop {
        let Some(&byte) = line.get(pos) else {
            return match quote {
                Some(_) => Err(ProtocolError::UnbalancedQuotes),
                None => Ok((word, pos)),
            };
        };
        match quote {
            None if is_space(byte) => return Ok((word, pos)),
            None if byte == b'"' || byte == b'\'' => quote = Some(byte),
            None => word.push(byte),
            Some(q) if byte == q => {
                // A closing quote must end the word, as in Redis ("a"b is an error).
                return match line.get(pos + 1) {
                    Some(&after) if !is_space(after) => Err(ProtocolError::UnbalancedQuotes),
                    _ => Ok((word, pos + 1)),
                };
            }
            Some(q) if byte == b'\\' => {
                let (decoded, used) = split_inline_escape(q, &line[pos + 1..]);
                word.push(decoded.unwrap_or(byte));
                pos += used;
            }
            Some(_) => word.push(byte),
        }
        pos += 1;
    }
}

/// Decodes the escape after a backslash inside quote `quote`. Returns the byte (None: the
/// backslash stands for itself) and how many bytes after the backslash it consumed.
fn split_inline_escape(quote: u8, rest: &[u8]) -> (Option<u8>, usize) {
    if quote == b'\'' {
        return match rest.first() {
            Some(b'\'') => (Some(b'\''), 1),
            _ => (None, 0),
        };
    }
    match rest {
        [b'x', high, low, ..] if high.is_ascii_hexdigit() && low.is_ascii_hexdigit() => {
            (Some(hex_value(*high) * 16 + hex_value(*low)), 3)
        }
        [b'n', ..] => (Some(b'\n'), 1),
        [b'r', ..] => (Some(b'\r'), 1),
        [b't', ..] => (Some(b'\t'), 1),
        [b'b', ..] => (Some(0x08), 1),
        [b'a', ..] => (Some(0x07), 1),
        [other, ..] => (Some(*other), 1),
        [] => (None, 0),
    }
}

fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit - b'A' + 10,
    }
}

/// C's `isspace`, which `sdssplitargs` uses.
fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Result<Vec<Vec<u8>>, ProtocolError> {
        split_inline(line.as_bytes(), 100).map(|w| w.into_iter().map(|b| b.to_vec()).collect())
    }

    #[test]
    fn splits_like_sdssplitargs() {
        let cases: &[(&str, &[&[u8]])] = &[
            ("PING", &[b"PING"]),
            ("  SET   a  b ", &[b"SET", b"a", b"b"]),
            ("", &[]),
            ("   ", &[]),
            (r#"SET a "b c""#, &[b"SET", b"a", b"b c"]),
            (r#"SET a "x\ny\x41\"""#, &[b"SET", b"a", b"x\nyA\""]),
            (r"SET a 'it\'s'", &[b"SET", b"a", b"it's"]),
            (r"SET a 'no\nescape'", &[b"SET", b"a", b"no\\nescape"]),
            (r#"SET a """#, &[b"SET", b"a", b""]),
            (r#"SET a "\xzz""#, &[b"SET", b"a", b"xzz"]),
            ("a\tb", &[b"a", b"b"]),
        ];
        for (line, expected) in cases {
            let expected: Vec<Vec<u8>> = expected.iter().map(|w| w.to_vec()).collect();
            assert_eq!(words(line), Ok(expected), "{line:?}");
        }
    }

    #[test]
    fn refuses_unbalanced_quotes() {
        for line in [
            r#"SET a "b"#,
            r"SET a 'b",
            r#"SET a "b"c"#,
            r"SET a 'b'c",
            r#"a "\"#,
        ] {
            assert_eq!(
                words(line),
                Err(ProtocolError::UnbalancedQuotes),
                "{line:?}"
            );
        }
    }

    #[test]
    fn refuses_more_words_than_the_cap() {
        assert_eq!(
            split_inline(b"a b c", 2),
            Err(ProtocolError::TooManyInlineArguments { limit: 2 })
        );
        assert_eq!(split_inline(b"a b", 2).map(|w| w.len()), Ok(2));
    }
}
