//! One `ACL SETUSER` rule, parsed from its text (Redis' syntax and error wording).
//!
//! Parsing is a pure function of the bytes: it is what the state machine runs when it
//! applies a logged `ACL SETUSER`, so every replica reads a rule alike. Command and
//! category names are not checked against this build's command table here (a rule naming
//! a command some other build knows must still apply alike everywhere); the connection
//! checks them before a rule is logged ([`crate::cmd::acl`]).

use aws_lc_rs::digest;
use bytes::Bytes;

use crate::cmd::category;

/// A SHA-256 digest: how passwords are kept (as Redis keeps them).
pub type PasswordHash = [u8; 32];

/// The SHA-256 of a password.
pub fn hash_password(password: &[u8]) -> PasswordHash {
    digest::digest(&digest::SHA256, password)
        .as_ref()
        .try_into()
        .expect("SHA-256 digests are 32 bytes")
}

/// A hash as Redis shows it: 64 lower-case hex digits.
pub fn hash_hex(hash: &PasswordHash) -> String {
    hash.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Parses Redis' hash form (exactly 64 lower-case hex digits).
pub fn parse_hash_hex(text: &[u8]) -> Option<PasswordHash> {
    if text.len() != 64 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut hash = [0u8; 32];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        hash[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(hash)
}

/// What a `+`/`-` command rule selects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `@name`: its bit ([`category`]; 0 for a name this build does not know, which
    /// selects nothing), and the lower-cased name as written.
    Category { bits: u16, name: Bytes },
    /// A command's lower-cased name.
    Command(Bytes),
}

/// `+target` or `-target`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandRule {
    pub allow: bool,
    pub target: Target,
}

impl CommandRule {
    /// True if the rule is about the command named `name` in `categories`.
    pub fn selects(&self, name: &str, categories: u16) -> bool {
        match &self.target {
            Target::Category { bits, .. } => bits & categories != 0,
            Target::Command(command) => command.as_ref() == name.as_bytes(),
        }
    }

    /// The rule as ACL LIST shows it.
    pub fn describe(&self) -> String {
        let sign = if self.allow { '+' } else { '-' };
        match &self.target {
            Target::Category { name, .. } => {
                format!("{sign}@{}", String::from_utf8_lossy(name))
            }
            Target::Command(name) => format!("{sign}{}", String::from_utf8_lossy(name)),
        }
    }
}

/// One rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rule {
    On,
    Off,
    NoPass,
    ResetPass,
    /// `>password` (hashed here) or `#hash`.
    AddPassword(PasswordHash),
    /// `<password` (hashed here) or `!hash`.
    RemovePassword(PasswordHash),
    /// `~pattern`; `~*` and `allkeys` are [`Rule::AllKeys`].
    KeyPattern(Bytes),
    AllKeys,
    ResetKeys,
    /// `+@all` / `allcommands`.
    AllCommands,
    /// `-@all` / `nocommands`.
    NoCommands,
    Command(CommandRule),
    /// Accepted for compatibility: raftkv has no Pub/Sub channels to grant.
    ResetChannels,
    Reset,
}

/// Why a rule was refused, worded as Redis words it after
/// `Error in ACL SETUSER modifier '...': `.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleError {
    Syntax,
    UnknownName,
    PatternAfterAllKeys,
    NoSuchPassword,
    BadHash,
}

impl RuleError {
    pub fn reason(self) -> &'static str {
        match self {
            RuleError::Syntax => "Syntax error",
            RuleError::UnknownName => "Unknown command or category name in ACL",
            RuleError::PatternAfterAllKeys => "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start with an empty list of patterns",
            RuleError::NoSuchPassword => "The password you are trying to remove from the user does not exist",
            RuleError::BadHash => "The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters",
        }
    }
}

/// Parses one rule.
///
/// # Errors
/// [`RuleError::Syntax`] for anything that is not a rule; [`RuleError::BadHash`] for a
/// malformed `#`/`!` hash.
pub fn parse(word: &[u8]) -> Result<Rule, RuleError> {
    let keyword = |name: &str| word.eq_ignore_ascii_case(name.as_bytes());
    let rule = match word {
        _ if keyword("on") => Rule::On,
        _ if keyword("off") => Rule::Off,
        _ if keyword("nopass") => Rule::NoPass,
        _ if keyword("resetpass") => Rule::ResetPass,
        _ if keyword("allkeys") => Rule::AllKeys,
        _ if keyword("resetkeys") => Rule::ResetKeys,
        _ if keyword("allcommands") => Rule::AllCommands,
        _ if keyword("nocommands") => Rule::NoCommands,
        _ if keyword("resetchannels") => Rule::ResetChannels,
        _ if keyword("reset") => Rule::Reset,
        [b'>', password @ ..] => Rule::AddPassword(hash_password(password)),
        [b'<', password @ ..] => Rule::RemovePassword(hash_password(password)),
        [b'#', hex @ ..] => Rule::AddPassword(parse_hash_hex(hex).ok_or(RuleError::BadHash)?),
        [b'!', hex @ ..] => Rule::RemovePassword(parse_hash_hex(hex).ok_or(RuleError::BadHash)?),
        [b'~', b'*'] => Rule::AllKeys,
        [b'~', pattern @ ..] => Rule::KeyPattern(Bytes::copy_from_slice(pattern)),
        [sign @ (b'+' | b'-'), rest @ ..] => parse_command_rule(*sign == b'+', rest)?,
        _ => return Err(RuleError::Syntax),
    };
    Ok(rule)
}

fn parse_command_rule(allow: bool, rest: &[u8]) -> Result<Rule, RuleError> {
    let lower = Bytes::from(rest.to_ascii_lowercase());
    match rest {
        [] | [b'@'] => Err(RuleError::Syntax),
        [b'@', name @ ..] if name.eq_ignore_ascii_case(b"all") => Ok(if allow {
            Rule::AllCommands
        } else {
            Rule::NoCommands
        }),
        [b'@', ..] => Ok(Rule::Command(CommandRule {
            allow,
            target: Target::Category {
                bits: category::by_name(&lower[1..]).unwrap_or(0),
                name: lower.slice(1..),
            },
        })),
        // Redis' first-argument rules (`+config|get`) are not supported.
        _ if rest.contains(&b'|') => Err(RuleError::UnknownName),
        _ => Ok(Rule::Command(CommandRule {
            allow,
            target: Target::Command(lower),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_to_redis_sha256_hex() {
        // sha256("foobar"), as Redis' ACL LIST shows it.
        let expected = "c3ab8ff13720e8ad9047dd39466b3c8974e592c2fa383d4a3960714caef0c4f2";
        assert_eq!(hash_hex(&hash_password(b"foobar")), expected);
        assert_eq!(
            parse(format!("#{expected}").as_bytes()),
            Ok(Rule::AddPassword(hash_password(b"foobar")))
        );
        assert_eq!(parse(b">foobar"), parse(format!("#{expected}").as_bytes()));
        assert_eq!(parse(b"#C3AB"), Err(RuleError::BadHash));
        assert_eq!(
            parse(format!("!{}", expected.to_uppercase()).as_bytes()),
            Err(RuleError::BadHash)
        );
    }

    #[test]
    fn rules_parse_like_redis() {
        let cases: &[(&[u8], Result<Rule, RuleError>)] = &[
            (b"ON", Ok(Rule::On)),
            (b"allkeys", Ok(Rule::AllKeys)),
            (b"~*", Ok(Rule::AllKeys)),
            (
                b"~app:*",
                Ok(Rule::KeyPattern(Bytes::from_static(b"app:*"))),
            ),
            (b"+@ALL", Ok(Rule::AllCommands)),
            (b"-@all", Ok(Rule::NoCommands)),
            (
                b"+@Read",
                Ok(Rule::Command(CommandRule {
                    allow: true,
                    target: Target::Category {
                        bits: category::READ,
                        name: Bytes::from_static(b"read"),
                    },
                })),
            ),
            (
                b"-SET",
                Ok(Rule::Command(CommandRule {
                    allow: false,
                    target: Target::Command(Bytes::from_static(b"set")),
                })),
            ),
            (b"+", Err(RuleError::Syntax)),
            (b"+config|get", Err(RuleError::UnknownName)),
            (b"sanitize-payload", Err(RuleError::Syntax)),
            (b"%R~x", Err(RuleError::Syntax)),
            (b"", Err(RuleError::Syntax)),
        ];
        for (word, expected) in cases {
            assert_eq!(&parse(word), expected, "{}", String::from_utf8_lossy(word));
        }
    }
}
