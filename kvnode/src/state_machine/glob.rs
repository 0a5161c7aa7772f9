//! Glob matching for KEYS and SCAN MATCH, with Redis' syntax: `*`, `?`, `[abc]`, `[^a]`,
//! `[a-z]` and `\x` escapes.
//!
//! Redis' `stringmatchlen` recurses on `*`; this is the iterative two-pointer form, which
//! backtracks only to the most recent `*` (enough, since an earlier `*` can never need a
//! different split once a later one exists). Work is O(pattern x key), no stack growth.

/// True if `text` matches `pattern`.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Pattern position after the last `*` seen, and the text position it is trying.
    let mut star: Option<(usize, usize)> = None;
    // Bounded: each pass advances `t`, or advances the star's text position (at most
    // text.len() times per star), so at most O(pattern x text) passes.
    while t < text.len() {
        if let Some(next_p) = glob_match_one(pattern, p, text[t]) {
            p = next_p;
            t += 1;
            continue;
        }
        if pattern.get(p) == Some(&b'*') {
            while pattern.get(p) == Some(&b'*') {
                p += 1;
            }
            star = Some((p, t));
            continue;
        }
        match star {
            Some((star_p, star_t)) => {
                star = Some((star_p, star_t + 1));
                p = star_p;
                t = star_t + 1;
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&byte| byte == b'*')
}

/// If the pattern element at `p` matches `byte`, the position after that element.
/// `*` is handled by the caller and never matches here.
fn glob_match_one(pattern: &[u8], p: usize, byte: u8) -> Option<usize> {
    match *pattern.get(p)? {
        b'*' => None,
        b'?' => Some(p + 1),
        b'[' => {
            let (matched, next) = glob_match_class(pattern, p + 1, byte);
            matched.then_some(next)
        }
        b'\\' if p + 1 < pattern.len() => (pattern[p + 1] == byte).then_some(p + 2),
        literal => (literal == byte).then_some(p + 1),
    }
}

/// Matches `byte` against the class starting after `[` at `p`; returns whether it matched
/// and the position after the closing `]` (or the pattern's end, as Redis tolerates).
fn glob_match_class(pattern: &[u8], mut p: usize, byte: u8) -> (bool, usize) {
    let negate = pattern.get(p) == Some(&b'^');
    if negate {
        p += 1;
    }
    let mut matched = false;
    // Bounded: every arm advances `p`.
    while p < pattern.len() && pattern[p] != b']' {
        if pattern[p] == b'\\' && p + 1 < pattern.len() {
            matched |= pattern[p + 1] == byte;
            p += 2;
        } else if pattern.get(p + 1) == Some(&b'-') && p + 2 < pattern.len() {
            let (low, high) = (
                pattern[p].min(pattern[p + 2]),
                pattern[p].max(pattern[p + 2]),
            );
            matched |= (low..=high).contains(&byte);
            p += 3;
        } else {
            matched |= pattern[p] == byte;
            p += 1;
        }
    }
    (matched != negate, (p + 1).min(pattern.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_like_redis() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "", true),
            ("*", "anything", true),
            ("h?llo", "hello", true),
            ("h?llo", "hllo", false),
            ("h*llo", "heeeello", true),
            ("h*llo", "hllo", true),
            ("h[ae]llo", "hallo", true),
            ("h[ae]llo", "hillo", false),
            ("h[^e]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-b]llo", "hbllo", true),
            ("h[b-a]llo", "hallo", true),
            ("h[a-b]llo", "hcllo", false),
            ("h\\*llo", "h*llo", true),
            ("h\\*llo", "hello", false),
            ("user:*:name", "user:42:name", true),
            ("user:*:name", "user:42:age", false),
            ("*a*b*c", "xxaxxbxxc", true),
            ("*a*b*c", "xxaxxcxxb", false),
            ("a*", "b", false),
            ("", "", true),
            ("", "a", false),
            ("[]", "a", false),
            ("h[a", "ha", true),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(
                glob_match(pattern.as_bytes(), text.as_bytes()),
                *expected,
                "{pattern} vs {text}"
            );
        }
    }

    #[test]
    fn pathological_pattern_finishes_quickly() {
        let pattern = "*a".repeat(100) + "b";
        let text = "a".repeat(10_000);
        assert!(!glob_match(pattern.as_bytes(), text.as_bytes()));
    }
}
