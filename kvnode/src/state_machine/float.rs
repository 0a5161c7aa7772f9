//! INCRBYFLOAT's arithmetic, so replies match Redis' digits.
//!
//! Redis adds two `long double`s and prints the sum with `%.17Lf`, then trims trailing
//! zeros. A `long double` carries about 19 significant digits, so for the numbers people
//! increment (a few integer digits, a few decimals) that is the exact decimal sum rounded
//! to 17 decimals: `0.1 + 0.2` is `0.3`, where `f64` arithmetic would say
//! `0.30000000000000004`. So sums of decimals that fit in an `i128` with at most
//! [`SCALE_MAX`] decimals are computed exactly; anything else (huge exponents, `inf`)
//! falls back to `f64`, whose range is smaller than Redis' (`1e400` overflows here and is
//! refused as Infinity; Redis prints 400 digits).
//!
//! Deterministic: integer arithmetic, and IEEE `f64` addition and formatting, which every
//! platform Rust supports computes identically.

/// Most decimals kept exactly (beyond, the value is rounded as `%.17Lf` would print it).
const SCALE_MAX: u32 = 40;
/// Most significant digits an exact mantissa may have (an `i128` holds 38).
const DIGITS_MAX: usize = 36;
/// Decimals in the printed result, as Redis' `%.17Lf`.
const PRINTED_DECIMALS: u32 = 17;

/// A parsed number.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Number {
    /// `mantissa / 10^scale`, exactly.
    Exact {
        mantissa: i128,
        scale: u32,
    },
    Float(f64),
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
    if let (Some(a), Some(b)) = (exact_parts(a), exact_parts(b)) {
        if let Some(sum) = add_exact(a, b) {
            return Ok(print_exact(sum));
        }
    }
    let sum = to_f64(a) + to_f64(b);
    if !sum.is_finite() {
        return Err(FloatError::NanOrInfinity);
    }
    Ok(trim(format!("{:.*}", PRINTED_DECIMALS as usize, sum)))
}

fn exact_parts(number: Number) -> Option<(i128, u32)> {
    match number {
        Number::Exact { mantissa, scale } => Some((mantissa, scale)),
        Number::Float(_) => None,
    }
}

fn to_f64(number: Number) -> f64 {
    match number {
        // Exact numbers came from text that also parses as f64; rebuild from it.
        Number::Exact { mantissa, scale } => {
            let text = format!("{mantissa}e-{scale}");
            text.parse().unwrap_or(f64::NAN)
        }
        Number::Float(value) => value,
    }
}

fn add_exact((a, a_scale): (i128, u32), (b, b_scale): (i128, u32)) -> Option<(i128, u32)> {
    let scale = a_scale.max(b_scale);
    let a = a.checked_mul(10i128.checked_pow(scale - a_scale)?)?;
    let b = b.checked_mul(10i128.checked_pow(scale - b_scale)?)?;
    Some((a.checked_add(b)?, scale))
}

/// Prints `mantissa / 10^scale` with at most 17 decimals (rounded half to even), trailing
/// zeros and a bare point trimmed, `-0` as `0`.
fn print_exact((mut mantissa, mut scale): (i128, u32)) -> String {
    if scale > PRINTED_DECIMALS {
        let divisor = 10i128.pow(scale - PRINTED_DECIMALS);
        let (quotient, remainder) = (mantissa / divisor, mantissa % divisor);
        let twice = remainder.abs() * 2;
        let round_away = twice > divisor || (twice == divisor && quotient % 2 != 0);
        mantissa = quotient + if round_away { mantissa.signum() } else { 0 };
        scale = PRINTED_DECIMALS;
    }
    let negative = mantissa < 0;
    let digits = mantissa.unsigned_abs().to_string();
    let scale = scale as usize;
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (integer, fraction) = padded.split_at(padded.len() - scale);
    let mut text = String::new();
    if negative {
        text.push('-');
    }
    text.push_str(integer);
    if !fraction.is_empty() {
        text.push('.');
        text.push_str(fraction);
    }
    trim(text)
}

fn trim(mut text: String) -> String {
    if text.contains('.') {
        while text.ends_with('0') {
            text.pop();
        }
        if text.ends_with('.') {
            text.pop();
        }
    }
    if text == "-0" {
        text = "0".to_owned();
    }
    text
}

/// Parses what `strtold` would, less hexadecimal: `[+-]digits[.digits][e[+-]digits]`, or
/// `inf`/`infinity`/`nan` in any case. No spaces; nothing after the number.
fn parse(text: &[u8]) -> Option<Number> {
    let text = std::str::from_utf8(text).ok()?;
    if text.is_empty() || text.starts_with(|c: char| c.is_whitespace()) {
        return None;
    }
    let value: f64 = text.parse().ok()?;
    if value.is_nan() {
        return None;
    }
    Some(parse_exact(text).unwrap_or(Number::Float(value)))
}

fn parse_exact(text: &str) -> Option<Number> {
    let (sign, rest) = match text.as_bytes().first()? {
        b'-' => (-1i128, &text[1..]),
        b'+' => (1, &text[1..]),
        _ => (1, text),
    };
    let (number, exponent) = match rest.find(['e', 'E']) {
        Some(at) => (&rest[..at], rest[at + 1..].parse::<i32>().ok()?),
        None => (rest, 0),
    };
    let (integer, fraction) = number.split_once('.').unwrap_or((number, ""));
    let all_digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
    if !all_digits(integer) || !all_digits(fraction) || integer.len() + fraction.len() == 0 {
        return None;
    }
    let digits = format!("{integer}{fraction}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > DIGITS_MAX {
        return None;
    }
    let mut mantissa: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    let mut scale = i64::try_from(fraction.len()).ok()? - i64::from(exponent);
    if scale < 0 {
        mantissa = mantissa.checked_mul(10i128.checked_pow(u32::try_from(-scale).ok()?)?)?;
        scale = 0;
    }
    let scale = u32::try_from(scale)
        .ok()
        .filter(|scale| *scale <= SCALE_MAX)?;
    Some(Number::Exact {
        mantissa: sign * mantissa,
        scale,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
            ("1", "0.000000000000000001", "1"),
            ("1", "0.000000000000000009", "1.00000000000000001"),
            ("17179869184", "1.5", "17179869185.5"),
            (".5", "5.", "5.5"),
            ("+1", "-2", "-1"),
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
        let cases: &[(&str, &str, FloatError)] = &[
            ("abc", "1", FloatError::NotFloat),
            ("1", "abc", FloatError::NotFloat),
            ("1", " 1", FloatError::NotFloat),
            ("1", "1 ", FloatError::NotFloat),
            ("1", "", FloatError::NotFloat),
            ("1", "nan", FloatError::NotFloat),
            ("1", "inf", FloatError::NanOrInfinity),
            ("1", "1e400", FloatError::NanOrInfinity),
            ("1e308", "1e308", FloatError::NanOrInfinity),
        ];
        for (current, delta, expected) in cases {
            assert_eq!(
                add(current.as_bytes(), delta.as_bytes()),
                Err(*expected),
                "{current} + {delta}"
            );
        }
    }

    #[test]
    fn numbers_beyond_exact_range_fall_back_to_f64() {
        assert_eq!(
            add(b"1e50", b"1").as_deref(),
            Ok("100000000000000007629769841091887003294964970946560")
        );
        assert!(is_float(b"1e-300"));
    }
}
