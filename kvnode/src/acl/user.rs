//! One ACL user: whether it may log in, its password hashes, the commands it may run and
//! the keys it may touch, changed rule by rule in Redis' order.
//!
//! Command rules are kept as a list evaluated in order over a command's name and
//! categories, starting from "allowed" when the user has `+@all` and "denied" otherwise.
//! `+@all`/`-@all` (and `allcommands`/`nocommands`) clear the list; a rule replaces an
//! earlier rule with the same target, which changes no decision (the later rule would
//! override it for every command either selects) and keeps the list bounded by the number
//! of distinct targets. This is Redis' bitmap semantics written as the rules ACL LIST shows.

use std::collections::BTreeSet;

use bytes::Bytes;

use super::rule::{hash_hex, CommandRule, PasswordHash, Rule, RuleError};
use super::{COMMAND_RULES_MAX, KEY_PATTERNS_MAX, PASSWORDS_MAX, PATTERN_BYTES_MAX};
use crate::state_machine::glob::glob_match;

/// A user definition (replicated: the state machine holds every user's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: Bytes,
    /// `on`: may authenticate.
    pub enabled: bool,
    /// `nopass`: any password authenticates.
    pub nopass: bool,
    /// Invariant: at most [`PASSWORDS_MAX`].
    pub passwords: BTreeSet<PasswordHash>,
    /// `+@all`: commands start allowed before `command_rules` apply.
    pub all_commands: bool,
    /// Invariant: no two rules share a target; at most [`COMMAND_RULES_MAX`].
    pub command_rules: Vec<CommandRule>,
    /// `allkeys` / `~*`: every key.
    pub all_keys: bool,
    /// Invariant: empty when `all_keys`; no duplicates; at most [`KEY_PATTERNS_MAX`].
    pub key_patterns: Vec<Bytes>,
    /// The log index of the `ACL SETUSER` that created the user (0 for the built-in
    /// `default`): a connection authenticated as a user that was deleted and created
    /// again is a connection of the deleted one.
    pub created: u64,
}

/// A rule that could not be applied: the reason, and a limit's text if it was one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyError {
    Rule(RuleError),
    Limit(String),
}

impl User {
    /// A new user as `ACL SETUSER name` creates it: off, no passwords, no commands, no keys.
    pub fn new(name: Bytes, created: u64) -> User {
        User {
            name,
            enabled: false,
            nopass: false,
            passwords: BTreeSet::new(),
            all_commands: false,
            command_rules: Vec::new(),
            all_keys: false,
            key_patterns: Vec::new(),
            created,
        }
    }

    /// The built-in `default` user of a fresh cluster: `on nopass ~* +@all`.
    pub fn default_user() -> User {
        User {
            enabled: true,
            nopass: true,
            all_commands: true,
            all_keys: true,
            ..User::new(Bytes::from_static(b"default"), 0)
        }
    }

    /// Applies one rule.
    ///
    /// # Errors
    /// What Redis refuses (removing a password the user does not have, a pattern after
    /// `allkeys`), or a limit.
    pub fn apply(&mut self, rule: &Rule) -> Result<(), ApplyError> {
        match rule {
            Rule::On => self.enabled = true,
            Rule::Off => self.enabled = false,
            Rule::NoPass => {
                self.nopass = true;
                self.passwords.clear();
            }
            Rule::ResetPass => {
                self.nopass = false;
                self.passwords.clear();
            }
            Rule::AddPassword(hash) => {
                if !self.passwords.contains(hash) && self.passwords.len() >= PASSWORDS_MAX {
                    return Err(limit("passwords", PASSWORDS_MAX));
                }
                self.passwords.insert(*hash);
                self.nopass = false;
            }
            Rule::RemovePassword(hash) => {
                if !self.passwords.remove(hash) {
                    return Err(ApplyError::Rule(RuleError::NoSuchPassword));
                }
            }
            Rule::AllKeys => {
                self.all_keys = true;
                self.key_patterns.clear();
            }
            Rule::ResetKeys => {
                self.all_keys = false;
                self.key_patterns.clear();
            }
            Rule::KeyPattern(pattern) => self.add_pattern(pattern)?,
            Rule::AllCommands | Rule::NoCommands => {
                self.all_commands = matches!(rule, Rule::AllCommands);
                self.command_rules.clear();
            }
            Rule::Command(command) => {
                self.command_rules
                    .retain(|earlier| earlier.target != command.target);
                if self.command_rules.len() >= COMMAND_RULES_MAX {
                    return Err(limit("command rules", COMMAND_RULES_MAX));
                }
                self.command_rules.push(command.clone());
            }
            Rule::ResetChannels => {}
            Rule::Reset => {
                *self = User::new(self.name.clone(), self.created);
            }
        }
        Ok(())
    }

    fn add_pattern(&mut self, pattern: &Bytes) -> Result<(), ApplyError> {
        if self.all_keys {
            return Err(ApplyError::Rule(RuleError::PatternAfterAllKeys));
        }
        if pattern.len() > PATTERN_BYTES_MAX {
            return Err(ApplyError::Limit(format!(
                "key patterns are limited to {PATTERN_BYTES_MAX} bytes"
            )));
        }
        if self.key_patterns.contains(pattern) {
            return Ok(());
        }
        if self.key_patterns.len() >= KEY_PATTERNS_MAX {
            return Err(limit("key patterns", KEY_PATTERNS_MAX));
        }
        self.key_patterns.push(pattern.clone());
        Ok(())
    }

    /// True if the user may run the command named `name` (lower case) whose categories
    /// are `categories`.
    pub fn may_run(&self, name: &str, categories: u16) -> bool {
        self.command_rules
            .iter()
            .fold(self.all_commands, |allowed, rule| {
                if rule.selects(name, categories) {
                    rule.allow
                } else {
                    allowed
                }
            })
    }

    /// True if the user may touch `key` (Redis' glob matching, as KEYS uses).
    pub fn may_access(&self, key: &[u8]) -> bool {
        self.all_keys
            || self
                .key_patterns
                .iter()
                .any(|pattern| glob_match(pattern, key))
    }

    /// True if `password` authenticates this user (not considering `enabled`). The
    /// comparison of hashes takes the same time wherever they differ.
    pub fn password_matches(&self, password: &[u8]) -> bool {
        if self.nopass {
            return true;
        }
        let hash = super::rule::hash_password(password);
        self.passwords.iter().fold(false, |found, stored| {
            let difference = stored
                .iter()
                .zip(&hash)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            found | (difference == 0)
        })
    }

    /// The rules that recreate the user, in Redis' ACL LIST order (without the leading
    /// `user name`): `on|off [nopass] #hash... ~pattern... +@all|-@all rule...`.
    pub fn describe_rules(&self) -> Vec<String> {
        let mut rules = vec![if self.enabled { "on" } else { "off" }.to_owned()];
        if self.nopass {
            rules.push("nopass".to_owned());
        }
        rules.extend(
            self.passwords
                .iter()
                .map(|hash| format!("#{}", hash_hex(hash))),
        );
        rules.extend(self.key_description());
        rules.push(self.commands_description());
        rules
    }

    /// `~*`, or each pattern.
    pub fn key_description(&self) -> Vec<String> {
        if self.all_keys {
            return vec!["~*".to_owned()];
        }
        self.key_patterns
            .iter()
            .map(|pattern| format!("~{}", String::from_utf8_lossy(pattern)))
            .collect()
    }

    /// `+@all` or `-@all`, then the command rules.
    pub fn commands_description(&self) -> String {
        let mut text = if self.all_commands { "+@all" } else { "-@all" }.to_owned();
        for rule in &self.command_rules {
            text.push(' ');
            text.push_str(&rule.describe());
        }
        text
    }

    /// True if the invariants written on the fields hold (a restored snapshot's users
    /// are checked with this).
    pub fn is_valid(&self) -> bool {
        let distinct_targets = self.command_rules.iter().enumerate().all(|(i, rule)| {
            self.command_rules[..i]
                .iter()
                .all(|earlier| earlier.target != rule.target)
        });
        let distinct_patterns = self
            .key_patterns
            .iter()
            .enumerate()
            .all(|(i, pattern)| !self.key_patterns[..i].contains(pattern));
        self.passwords.len() <= PASSWORDS_MAX
            && (!self.nopass || self.passwords.is_empty())
            && (!self.all_keys || self.key_patterns.is_empty())
            && self.key_patterns.len() <= KEY_PATTERNS_MAX
            && self
                .key_patterns
                .iter()
                .all(|p| p.len() <= PATTERN_BYTES_MAX)
            && self.command_rules.len() <= COMMAND_RULES_MAX
            && distinct_targets
            && distinct_patterns
    }

    /// Checks the invariants written on the fields.
    pub fn check_invariants(&self) {
        assert!(self.is_valid(), "user breaks its invariants: {self:?}");
    }
}

fn limit(what: &str, max: usize) -> ApplyError {
    ApplyError::Limit(format!("a user may have at most {max} {what}"))
}

#[cfg(test)]
mod tests {
    use super::super::rule::parse;
    use super::*;
    use crate::cmd::category;

    fn user(rules: &[&str]) -> User {
        let mut user = User::new(Bytes::from_static(b"u"), 1);
        for rule in rules {
            user.apply(&parse(rule.as_bytes()).expect("valid rule"))
                .expect("applies");
        }
        user.check_invariants();
        user
    }

    #[test]
    fn command_rules_apply_in_order_like_redis_bitmaps() {
        let cases: &[(&[&str], &str, u16, bool)] = &[
            (&[], "get", category::READ, false),
            (&["+@read"], "get", category::READ, true),
            (&["+@read"], "set", category::WRITE, false),
            (&["+@all", "-@write"], "set", category::WRITE, false),
            (&["+@all", "-@write"], "get", category::READ, true),
            (&["+@all", "-@write", "+set"], "set", category::WRITE, true),
            (&["+@read", "-get", "+@read"], "get", category::READ, true),
            (&["+@read", "-get"], "get", category::READ, false),
            (&["+@all", "nocommands"], "get", category::READ, false),
            (
                &["+@admin", "allcommands", "-@admin"],
                "flushall",
                category::ADMIN,
                false,
            ),
        ];
        for (rules, name, categories, allowed) in cases {
            assert_eq!(
                user(rules).may_run(name, *categories),
                *allowed,
                "{rules:?} {name}"
            );
        }
    }

    #[test]
    fn keys_match_any_pattern_and_allkeys_refuses_more_patterns() {
        let app = user(&["~app:*", "~other"]);
        assert!(app.may_access(b"app:1"));
        assert!(app.may_access(b"other"));
        assert!(!app.may_access(b"secret"));
        assert!(!user(&[]).may_access(b"app:1"));
        let mut all = user(&["allkeys"]);
        assert!(all.may_access(b"anything"));
        assert_eq!(
            all.apply(&Rule::KeyPattern(Bytes::from_static(b"x"))),
            Err(ApplyError::Rule(RuleError::PatternAfterAllKeys))
        );
        assert!(user(&["allkeys", "resetkeys", "~x"]).may_access(b"x"));
    }

    #[test]
    fn passwords_nopass_and_reset() {
        let mut u = user(&["on", ">secret", ">other"]);
        assert!(u.password_matches(b"secret"));
        assert!(u.password_matches(b"other"));
        assert!(!u.password_matches(b"nope"));
        u.apply(&parse(b"<other").unwrap()).unwrap();
        assert!(!u.password_matches(b"other"));
        assert_eq!(
            u.apply(&parse(b"<other").unwrap()),
            Err(ApplyError::Rule(RuleError::NoSuchPassword))
        );
        u.apply(&Rule::NoPass).unwrap();
        assert!(u.password_matches(b"anything"));
        u.apply(&Rule::ResetPass).unwrap();
        assert!(!u.password_matches(b"anything"));
        u.apply(&Rule::Reset).unwrap();
        assert_eq!(u, User::new(Bytes::from_static(b"u"), 1));
    }

    #[test]
    fn describe_shows_hashes_never_passwords() {
        let u = user(&["on", ">hunter2", "~app:*", "+@read", "-get"]);
        let text = u.describe_rules().join(" ");
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(
            text,
            format!(
                "on #{} ~app:* -@all +@read -get",
                hash_hex(&super::super::rule::hash_password(b"hunter2"))
            )
        );
        assert_eq!(
            User::default_user().describe_rules().join(" "),
            "on nopass ~* +@all"
        );
    }

    #[test]
    fn rule_lists_stay_bounded() {
        let mut u = user(&[]);
        for i in 0..COMMAND_RULES_MAX * 2 {
            let rule = parse(format!("+cmd{}", i % 10).as_bytes()).unwrap();
            u.apply(&rule)
                .expect("a repeated target replaces the earlier rule");
        }
        assert_eq!(u.command_rules.len(), 10);
        let mut refused = false;
        for i in 0..=KEY_PATTERNS_MAX {
            refused |= u
                .apply(&Rule::KeyPattern(Bytes::from(format!("p{i}"))))
                .is_err();
        }
        assert!(refused);
        u.check_invariants();
    }
}
