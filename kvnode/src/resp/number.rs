//! Strict decimal integer parsing, the same rules as Redis' `string2ll`.
//!
//! Used for wire lengths and for command arguments, so `INCRBY k 007` and `$+3` are refused
//! exactly where Redis refuses them.

/// Parses an optional `-` then decimal digits, with no leading zeros (except `0` itself),
/// no `+`, no spaces and no overflow. `-0` is refused, as in Redis.
pub fn parse_i64(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let first = *digits.first()?;
    if first == b'0' {
        return (digits.len() == 1 && !negative).then_some(0);
    }
    // Accumulate negatively so i64::MIN parses without overflow.
    let mut value: i64 = 0;
    for &byte in digits {
        if !byte.is_ascii_digit() {
            return None;
        }
        let digit = i64::from(byte - b'0');
        value = value.checked_mul(10)?.checked_sub(digit)?;
    }
    if negative {
        Some(value)
    } else {
        value.checked_neg()
    }
}

/// Parses an unsigned 64-bit decimal (SCAN cursors), same strictness as [`parse_i64`].
pub fn parse_u64(text: &[u8]) -> Option<u64> {
    let first = *text.first()?;
    if first == b'0' {
        return (text.len() == 1).then_some(0);
    }
    let mut value: u64 = 0;
    for &byte in text {
        if !byte.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(byte - b'0'))?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_i64_accepts_exactly_redis_integers() {
        let cases: &[(&str, Option<i64>)] = &[
            ("0", Some(0)),
            ("7", Some(7)),
            ("-7", Some(-7)),
            ("9223372036854775807", Some(i64::MAX)),
            ("-9223372036854775808", Some(i64::MIN)),
            ("9223372036854775808", None),
            ("-9223372036854775809", None),
            ("", None),
            ("-", None),
            ("-0", None),
            ("007", None),
            ("+3", None),
            (" 3", None),
            ("3 ", None),
            ("1a", None),
            ("1.5", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_i64(text.as_bytes()), *expected, "{text:?}");
        }
    }

    #[test]
    fn parse_u64_accepts_full_range_and_nothing_else() {
        let cases: &[(&str, Option<u64>)] = &[
            ("0", Some(0)),
            ("18446744073709551615", Some(u64::MAX)),
            ("18446744073709551616", None),
            ("-1", None),
            ("01", None),
            ("", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_u64(text.as_bytes()), *expected, "{text:?}");
        }
    }
}
