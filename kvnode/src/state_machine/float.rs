//! INCRBYFLOAT's arithmetic, digit for digit as Redis on x86-64 computes it.
//!
//! Redis parses both numbers with `strtold` into x87 80-bit `long double`s (a 64-bit
//! mantissa), adds them, and prints the sum with `%.17Lf` (17 decimals, correctly
//! rounded from the binary value), trimming trailing zeros. So `0.1 + 0.2` prints `0.3`,
//! while `900717.5547409920 + 0.25` prints `900717.80474099200000637`: the binary value's
//! own digits. This module does the same in exact integer arithmetic: each number is
//! rounded (to nearest, ties to even) to `mantissa * 2^exponent` with a 64-bit mantissa,
//! the sum is rounded the same way, and the print is the exact decimal value rounded to 17
//! decimals. Deterministic on every platform (no floating-point unit involved).
//!
//! Limits, as Redis: inputs longer than [`FLOAT_TEXT_BYTES_MAX`] are not numbers, nor are
//! `nan` and numbers `strtold` cannot hold (beyond about 1.19e4932, or so small they
//! round to zero); `inf` is a number, and a sum that is infinite is refused as Infinity.
//! Hexadecimal input (`0x10`, which `strtold` reads) is refused here.

use num_bigint::BigUint;

/// Longest text read as a number (Redis' `MAX_LONG_DOUBLE_CHARS`).
pub const FLOAT_TEXT_BYTES_MAX: usize = 5 * 1024;
/// Decimals in the printed result, as Redis' `%.17Lf`.
const PRINTED_DECIMALS: u32 = 17;
/// Bits of a `long double` mantissa.
const MANTISSA_BITS: u64 = 64;
/// A `long double`'s largest binary exponent: values at or above 2^16384 are Infinity.
const EXPONENT_LIMIT: i64 = 16384;
/// Decimal magnitudes past which a number is certainly beyond a `long double` (refused, as
/// `strtold`'s overflow and underflow are) or below its smallest subnormal.
const DECIMAL_EXPONENT_MAX: i64 = 4940;
const DECIMAL_EXPONENT_MIN: i64 = -4950;

/// A finite `long double`: `(-1)^negative * mantissa * 2^exponent`, the mantissa's top bit
/// set (or the mantissa zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LongDouble {
    negative: bool,
    mantissa: u64,
    exponent: i64,
}

/// A parsed number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Number {
    Finite(LongDouble),
    Infinite { negative: bool },
}

/// Why an increment failed (Redis' two errors).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FloatError {
    /// `ERR value is not a valid float`.
    NotFloat,
    /// `ERR increment would produce NaN or Infinity`.
    NanOrInfinity,
}

/// True if `text` is a number INCRBYFLOAT accepts (checked at parse time).
pub fn is_float(text: &[u8]) -> bool {
    parse(text).is_some()
}

/// `current + delta`, printed as Redis prints it.
///
/// # Errors
/// [`FloatError`] as Redis words it.
pub fn add(current: &[u8], delta: &[u8]) -> Result<String, FloatError> {
    let (Some(a), Some(b)) = (parse(current), parse(delta)) else {
        return Err(FloatError::NotFloat);
    };
    match (a, b) {
        (Number::Finite(a), Number::Finite(b)) => match sum(a, b) {
            Number::Finite(sum) => Ok(print(sum)),
            Number::Infinite { .. } => Err(FloatError::NanOrInfinity),
        },
        _ => Err(FloatError::NanOrInfinity),
    }
}

/// Rounds `numerator / denominator * 2^shift` to a `long double` (nearest, ties to even).
fn round(negative: bool, numerator: &BigUint, denominator: &BigUint, shift: i64) -> Number {
    if numerator.bits() == 0 {
        return Number::Finite(LongDouble {
            negative,
            mantissa: 0,
            exponent: 0,
        });
    }
    // Find e with 2^63 <= numerator / denominator / 2^e < 2^64, then divide.
    let mut exponent =
        numerator.bits() as i64 - denominator.bits() as i64 - MANTISSA_BITS as i64 + 1;
    // Bounded: the first guess is off by at most one in either direction.
    for _ in 0..3 {
        let (scaled_numerator, scaled_denominator) = if exponent >= 0 {
            (numerator.clone(), denominator << exponent as u64)
        } else {
            (numerator << (-exponent) as u64, denominator.clone())
        };
        let quotient = &scaled_numerator / &scaled_denominator;
        let bits = quotient.bits();
        if bits > MANTISSA_BITS {
            exponent += 1;
            continue;
        }
        if bits < MANTISSA_BITS {
            exponent -= 1;
            continue;
        }
        let remainder = &scaled_numerator - &quotient * &scaled_denominator;
        let twice = remainder << 1u32;
        let mut mantissa = quotient.to_u64_digits().first().copied().unwrap_or(0);
        let round_up =
            twice > scaled_denominator || (twice == scaled_denominator && mantissa & 1 == 1);
        let mut exponent = exponent + shift;
        if round_up {
            match mantissa.checked_add(1) {
                Some(next) => mantissa = next,
                None => {
                    mantissa = 1 << 63;
                    exponent += 1;
                }
            }
        }
        if exponent + MANTISSA_BITS as i64 > EXPONENT_LIMIT {
            return Number::Infinite { negative };
        }
        return Number::Finite(LongDouble {
            negative,
            mantissa,
            exponent,
        });
    }
    unreachable!("the exponent converges within three steps")
}

/// The exact sum, rounded.
fn sum(a: LongDouble, b: LongDouble) -> Number {
    let low = a.exponent.min(b.exponent);
    let magnitude = |x: LongDouble| BigUint::from(x.mantissa) << (x.exponent - low) as u64;
    let (x, y) = (magnitude(a), magnitude(b));
    let (negative, total) = match (a.negative, b.negative) {
        (sa, sb) if sa == sb => (sa, x + y),
        (sa, _) if x >= y => (sa, x - y),
        (_, sb) => (sb, y - x),
    };
    round(
        negative && total.bits() > 0,
        &total,
        &BigUint::from(1u32),
        low,
    )
}

/// `%.17Lf` of the exact value, trailing zeros and a bare point trimmed, `-0` as `0`.
fn print(value: LongDouble) -> String {
    let ten17 = BigUint::from(10u32).pow(PRINTED_DECIMALS);
    let scaled = BigUint::from(value.mantissa) * ten17;
    let fixed = if value.exponent >= 0 {
        scaled << value.exponent as u64
    } else {
        let divisor = BigUint::from(1u32) << (-value.exponent) as u64;
        let quotient = &scaled / &divisor;
        let twice = (&scaled - &quotient * &divisor) << 1u32;
        let odd = quotient.bits() > 0 && quotient.to_u64_digits()[0] & 1 == 1;
        if twice > divisor || (twice == divisor && odd) {
            quotient + 1u32
        } else {
            quotient
        }
    };
    let digits = format!("{fixed:0>18}");
    let (integer, fraction) = digits.split_at(digits.len() - PRINTED_DECIMALS as usize);
    let mut text = String::new();
    if value.negative {
        text.push('-');
    }
    text.push_str(integer);
    text.push('.');
    text.push_str(fraction);
    while text.ends_with('0') {
        text.pop();
    }
    if text.ends_with('.') {
        text.pop();
    }
    if text == "-0" {
        text = "0".to_owned();
    }
    text
}

/// Parses what `strtold` would, less hexadecimal: `[+-]digits[.digits][e[+-]digits]`, or
/// `inf`/`infinity` in any case. No spaces; nothing after the number.
fn parse(text: &[u8]) -> Option<Number> {
    if text.is_empty() || text.len() > FLOAT_TEXT_BYTES_MAX {
        return None;
    }
    let text = std::str::from_utf8(text).ok()?;
    let (negative, rest) = match text.as_bytes()[0] {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    if rest.eq_ignore_ascii_case("inf") || rest.eq_ignore_ascii_case("infinity") {
        return Some(Number::Infinite { negative });
    }
    let (number, exponent) = match rest.find(['e', 'E']) {
        Some(at) => {
            let exponent = &rest[at + 1..];
            let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
                return None;
            }
            // Saturates: a ten-thousand-digit exponent is as infinite as a five-digit one.
            let exponent = exponent
                .parse::<i64>()
                .unwrap_or(if exponent.starts_with('-') {
                    i64::MIN / 2
                } else {
                    i64::MAX / 2
                });
            (&rest[..at], exponent)
        }
        None => (rest, 0),
    };
    let (integer, fraction) = number.split_once('.').unwrap_or((number, ""));
    let all_digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
    if !all_digits(integer) || !all_digits(fraction) || integer.len() + fraction.len() == 0 {
        return None;
    }
    let digits = format!("{integer}{fraction}");
    let digits = digits.trim_start_matches('0');
    let zero = BigUint::from(0u32);
    if digits.is_empty() {
        return Some(Number::Finite(LongDouble {
            negative,
            mantissa: 0,
            exponent: 0,
        }));
    }
    let exponent = exponent.saturating_sub(fraction.len() as i64);
    let magnitude = exponent.saturating_add(digits.len() as i64);
    if !(DECIMAL_EXPONENT_MIN..=DECIMAL_EXPONENT_MAX).contains(&magnitude) {
        return None;
    }
    let value = BigUint::parse_bytes(digits.as_bytes(), 10).unwrap_or(zero);
    let power = BigUint::from(10u32).pow(exponent.unsigned_abs() as u32);
    let number = if exponent >= 0 {
        round(negative, &(value * power), &BigUint::from(1u32), 0)
    } else {
        round(negative, &value, &power, 0)
    };
    // Overflow is refused as strtold's ERANGE is; only the literal `inf` is infinite.
    matches!(number, Number::Finite(_)).then_some(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected digits from Redis 7 on x86-64 (`INCRBYFLOAT` replies).
    #[test]
    fn sums_print_as_redis_prints_them() {
        let cases: &[(&str, &str, &str)] = &[
            ("0", "0.1", "0.1"),
            ("0.1", "0.2", "0.3"),
            ("10.5", "0.1", "10.6"),
            ("10", "-10", "0"),
            ("-0.5", "0.5", "0"),
            ("5", "1e3", "1005"),
            ("5.0e3", "200", "5200"),
            ("3", "-3.5", "-0.5"),
            (".5", "5.", "5.5"),
            ("+1", "-2", "-1"),
            ("900717.5547409920", "2.5e-1", "900717.80474099200000637"),
            ("109223372036854775807", "3", "109223372036854775808"),
            ("-9223372036854775807", "2.5e-1", "-9223372036854775807"),
            ("100000.1", "0", "100000.10000000000000142"),
            (
                "123456789.123456789",
                "0.000000001",
                "123456789.12345678999554366",
            ),
            ("1", "1e-4940", "1"),
            ("9223372036854775807", "0.5", "9223372036854775807.5"),
            ("17179869184", "1.5", "17179869185.5"),
            (
                "1e50",
                "1",
                "100000000000000000003583830118858923890798487404544",
            ),
        ];
        for (current, delta, expected) in cases {
            assert_eq!(
                add(current.as_bytes(), delta.as_bytes()).as_deref(),
                Ok(*expected),
                "{current} + {delta}"
            );
        }
    }

    #[test]
    fn bad_numbers_and_infinities_are_refused_as_redis_refuses_them() {
        let long = "1".repeat(FLOAT_TEXT_BYTES_MAX + 1);
        let cases: &[(&str, &str, FloatError)] = &[
            ("abc", "1", FloatError::NotFloat),
            ("1", "abc", FloatError::NotFloat),
            ("1", " 1", FloatError::NotFloat),
            ("1", "1 ", FloatError::NotFloat),
            ("1", "", FloatError::NotFloat),
            ("1", "nan", FloatError::NotFloat),
            ("1", "1e", FloatError::NotFloat),
            ("1", "0x10", FloatError::NotFloat),
            ("1", &long, FloatError::NotFloat),
            ("1", "inf", FloatError::NanOrInfinity),
            ("1", "-Infinity", FloatError::NanOrInfinity),
            ("1", "1e5000", FloatError::NotFloat),
            ("1", "1e99999999999999999999", FloatError::NotFloat),
            ("1", "1e-99999", FloatError::NotFloat),
            ("1.18e4932", "1e4932", FloatError::NanOrInfinity),
        ];
        for (current, delta, expected) in cases {
            assert_eq!(
                add(current.as_bytes(), delta.as_bytes()),
                Err(*expected),
                "{current} + {delta}"
            );
        }
        assert_eq!(
            add(b"1", b"1e4000").map(|sum| sum.len()),
            Ok(4000),
            "long double's range, as Redis"
        );
        assert!(
            add(b"1", b"1e4000").is_ok_and(|sum| sum.starts_with("9999999999999999999965463873"))
        );
    }
}
