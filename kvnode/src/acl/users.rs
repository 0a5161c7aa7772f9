//! Every user, as the state machine holds them: changed only by applying a logged
//! `ACL SETUSER` or `ACL DELUSER`, deterministically (no clock, no randomness, no
//! node configuration), so every replica holds the same definitions.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::rule::{self};
use super::user::{ApplyError, User};
use super::{NAME_BYTES_MAX, USERS_MAX};
use crate::cmd::CommandError;

/// The users by name. Invariant: `default` is always there; at most [`USERS_MAX`] users.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Users {
    users: BTreeMap<Bytes, User>,
}

impl Default for Users {
    fn default() -> Users {
        let default = User::default_user();
        Users {
            users: BTreeMap::from([(default.name.clone(), default)]),
        }
    }
}

/// The name of the user a connection is before it authenticates.
pub const DEFAULT_USER: &[u8] = b"default";

/// Checks a user name as Redis does (no spaces or NUL), plus a length cap.
///
/// # Errors
/// [`CommandError::AclBadUsername`] or [`CommandError::AclNameTooLong`].
pub fn check_name(name: &[u8]) -> Result<(), CommandError> {
    if name.iter().any(|&byte| byte == b' ' || byte == 0) {
        return Err(CommandError::AclBadUsername);
    }
    if name.len() > NAME_BYTES_MAX {
        return Err(CommandError::AclNameTooLong {
            max: NAME_BYTES_MAX,
        });
    }
    Ok(())
}

impl Users {
    pub fn get(&self, name: &[u8]) -> Option<&User> {
        self.users.get(name)
    }

    /// Every user, by name.
    pub fn iter(&self) -> impl Iterator<Item = &User> {
        self.users.values()
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Applies `ACL SETUSER name rule...` logged at `index`: creates the user if need be,
    /// then applies the rules in order, all or none (as Redis 7 does).
    ///
    /// # Errors
    /// The first rule that does not parse or apply, worded as Redis words it; a bad name;
    /// too many users. Nothing changes then.
    pub fn set_user(
        &mut self,
        index: u64,
        name: &Bytes,
        rules: &[Bytes],
    ) -> Result<(), CommandError> {
        check_name(name)?;
        let mut user = match self.users.get(name) {
            Some(user) => user.clone(),
            None if self.users.len() >= USERS_MAX => {
                return Err(CommandError::AclTooManyUsers { max: USERS_MAX })
            }
            None => User::new(name.clone(), index),
        };
        for word in rules {
            let refused = |reason: String| CommandError::AclSetUser {
                modifier: word.clone(),
                reason,
            };
            let parsed = rule::parse(word).map_err(|error| refused(error.reason().to_owned()))?;
            user.apply(&parsed).map_err(|error| match error {
                ApplyError::Rule(error) => refused(error.reason().to_owned()),
                ApplyError::Limit(text) => refused(text),
            })?;
        }
        self.users.insert(name.clone(), user);
        Ok(())
    }

    /// Applies `ACL DELUSER name...`: the number of users deleted.
    ///
    /// # Errors
    /// [`CommandError::AclDeleteDefault`] if `default` is named (nothing is deleted then).
    pub fn delete_users(&mut self, names: &[Bytes]) -> Result<usize, CommandError> {
        if names.iter().any(|name| name.as_ref() == DEFAULT_USER) {
            return Err(CommandError::AclDeleteDefault);
        }
        Ok(names
            .iter()
            .filter(|name| self.users.remove(name.as_ref()).is_some())
            .count())
    }

    /// Rebuilds the table from restored users (a snapshot's), adding the built-in
    /// `default` if the snapshot predates users.
    pub fn from_users(users: impl IntoIterator<Item = User>) -> Users {
        let mut table = Users::default();
        for user in users {
            table.users.insert(user.name.clone(), user);
        }
        table
    }

    /// Checks the invariants written on the type and on every user.
    pub fn check_invariants(&self) {
        assert!(self.users.contains_key(DEFAULT_USER), "no default user");
        assert!(self.users.len() <= USERS_MAX, "{} users", self.users.len());
        for (name, user) in &self.users {
            assert_eq!(name, &user.name);
            user.check_invariants();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<Bytes> {
        line.split(' ')
            .filter(|word| !word.is_empty())
            .map(|word| Bytes::copy_from_slice(word.as_bytes()))
            .collect()
    }

    #[test]
    fn setuser_applies_all_rules_or_none() {
        let mut users = Users::default();
        let name = Bytes::from_static(b"app");
        users
            .set_user(7, &name, &words("on >pw ~app:* +@read"))
            .unwrap();
        let before = users.clone();
        let refused = users.set_user(8, &name, &words("+@write ~more bogus"));
        assert_eq!(
            refused.unwrap_err().to_string(),
            "ERR Error in ACL SETUSER modifier 'bogus': Syntax error"
        );
        assert_eq!(users, before, "nothing of a refused SETUSER applies");
        users.set_user(9, &name, &words("+@write")).unwrap();
        let user = users.get(b"app").unwrap();
        assert_eq!(user.created, 7, "modifying keeps the creation index");
        assert_eq!(user.commands_description(), "-@all +@read +@write");
        users.check_invariants();
    }

    #[test]
    fn deluser_counts_and_protects_default() {
        let mut users = Users::default();
        users.set_user(1, &Bytes::from_static(b"a"), &[]).unwrap();
        assert_eq!(
            users
                .delete_users(&words("a default"))
                .unwrap_err()
                .to_string(),
            "ERR The 'default' user cannot be removed"
        );
        assert!(users.get(b"a").is_some());
        assert_eq!(users.delete_users(&words("a nosuch")), Ok(1));
        assert_eq!(users.len(), 1);
    }

    #[test]
    fn names_and_user_count_are_checked() {
        let mut users = Users::default();
        assert_eq!(
            users
                .set_user(1, &Bytes::from_static(b"a b"), &[])
                .unwrap_err()
                .to_string(),
            "ERR Usernames can't contain spaces or null characters"
        );
        for i in 1..USERS_MAX {
            users
                .set_user(1, &Bytes::from(format!("u{i}")), &[])
                .unwrap();
        }
        assert!(matches!(
            users.set_user(1, &Bytes::from_static(b"one-more"), &[]),
            Err(CommandError::AclTooManyUsers { .. })
        ));
        users.check_invariants();
    }
}
