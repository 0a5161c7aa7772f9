//! What a connection asks of the users: who authenticates, and whether the authenticated
//! user may run a command on its keys (Redis' NOPERM rules).
//!
//! The node's `password` setting is a password of the `default` user on this node, in
//! addition to those ACL SETUSER gave it, and while it is set `default` is never `nopass`
//! here: a cluster that required a password before users existed still does, whatever
//! the replicated definition of `default` says.

use std::borrow::Cow;

use bytes::Bytes;

use super::rule::hash_password;
use super::user::User;
use super::users::{Users, DEFAULT_USER};
use crate::cmd::{flags, CommandError, Credentials, Spec};

/// Who a connection authenticated as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub name: Bytes,
    /// The user's creation index when the connection authenticated (see [`User::created`]).
    pub created: u64,
    /// What the client authenticated with, replayed on its forward connection so the
    /// leader runs forwarded requests as the same user. Held in memory only.
    pub credentials: Credentials,
}

/// The user `name` as this node enforces it: `default` with the node's `password` added.
pub fn effective<'a>(
    users: &'a Users,
    config_password: Option<&[u8]>,
    name: &[u8],
) -> Option<Cow<'a, User>> {
    let user = users.get(name)?;
    match config_password {
        Some(password) if name == DEFAULT_USER => {
            let mut user = user.clone();
            user.nopass = false;
            // A set beyond its cap by one: it is only shown and checked, never stored.
            user.passwords.insert(hash_password(password));
            Some(Cow::Owned(user))
        }
        _ => Some(Cow::Borrowed(user)),
    }
}

/// True if a connection that has not authenticated must (NOAUTH): `default` is off or
/// has a password.
pub fn auth_required(users: &Users, config_password: Option<&[u8]>) -> bool {
    effective(users, config_password, DEFAULT_USER)
        .is_none_or(|user| !(user.enabled && user.nopass))
}

/// Checks AUTH or HELLO AUTH credentials.
///
/// # Errors
/// [`CommandError::AuthNotConfigured`] for the one-argument `AUTH password` while
/// `default` needs no password (as Redis); [`CommandError::WrongPass`] for an unknown
/// user, a disabled one, or a wrong password (one reply for all, as Redis).
pub fn authenticate(
    users: &Users,
    config_password: Option<&[u8]>,
    credentials: &Credentials,
) -> Result<Identity, CommandError> {
    let default_nopass =
        effective(users, config_password, DEFAULT_USER).is_some_and(|user| user.nopass);
    if credentials.implicit_user && default_nopass {
        return Err(CommandError::AuthNotConfigured);
    }
    let user =
        effective(users, config_password, &credentials.username).ok_or(CommandError::WrongPass)?;
    if !user.enabled || !user.password_matches(&credentials.password) {
        return Err(CommandError::WrongPass);
    }
    Ok(Identity {
        name: user.name.clone(),
        created: user.created,
        credentials: credentials.clone(),
    })
}

/// The positions of a command's keys among its words (name first), by its row's key
/// specification as Redis reads it: first, last (negative: from the end), step.
pub fn key_positions(keys: (i32, i32, i32), words_len: usize) -> impl Iterator<Item = usize> {
    let (first, last, step) = keys;
    let len = i64::try_from(words_len).unwrap_or(i64::MAX);
    let last = if last < 0 {
        len + i64::from(last)
    } else {
        i64::from(last).min(len - 1)
    };
    let first = i64::from(first);
    let step = usize::try_from(step).unwrap_or(1).max(1);
    let range = if first > 0 && first <= last {
        first..last + 1
    } else {
        0..0
    };
    range
        .step_by(step)
        .filter_map(|position| usize::try_from(position).ok())
}

/// Checks that `user` may run the command `words` call (by `spec`, its table row) on
/// every key it names. Commands Redis lets anyone run (AUTH, HELLO, QUIT) always pass.
///
/// # Errors
/// `NOPERM User u has no permissions to run the 'cmd' command`, or
/// `NOPERM No permissions to access a key`.
pub(crate) fn permit(user: &User, spec: &Spec, words: &[Bytes]) -> Result<(), CommandError> {
    if spec.flags & flags::NO_AUTH != 0 {
        return Ok(());
    }
    let (categories, full_name) = spec.categories_of_call(words);
    if !user.may_run(spec.name, categories) {
        return Err(CommandError::NoPermCommand {
            user: user.name.clone(),
            command: full_name,
        });
    }
    if user.all_keys {
        return Ok(());
    }
    for position in key_positions(spec.keys, words.len()) {
        if !user.may_access(&words[position]) {
            return Err(CommandError::NoPermKey);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::check;

    fn words(line: &str) -> Vec<Bytes> {
        line.split(' ')
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    fn users(setup: &[&str]) -> Users {
        let mut users = Users::default();
        for (i, line) in setup.iter().enumerate() {
            let words = words(line);
            users
                .set_user(i as u64 + 1, &words[0], &words[1..])
                .expect("valid");
        }
        users
    }

    fn run(user: &User, line: &str) -> Result<(), String> {
        let words = words(line);
        let spec = check(&words).expect("known command");
        permit(user, spec, &words).map_err(|error| error.to_string())
    }

    #[test]
    fn key_positions_follow_the_key_specification() {
        type Case = ((i32, i32, i32), usize, &'static [usize]);
        let cases: &[Case] = &[
            ((1, 1, 1), 2, &[1]),
            ((1, -1, 1), 4, &[1, 2, 3]),
            ((1, -1, 2), 5, &[1, 3]),
            ((1, 2, 1), 3, &[1, 2]),
            ((1, 2, 1), 5, &[1, 2]),
            ((0, 0, 0), 3, &[]),
            ((1, 1, 1), 1, &[]),
        ];
        for (spec, len, expected) in cases {
            assert_eq!(
                key_positions(*spec, *len).collect::<Vec<_>>(),
                *expected,
                "{spec:?} {len}"
            );
        }
    }

    #[test]
    fn a_read_only_user_gets_redis_noperm_for_writes_and_admin() {
        let users = users(&["ro on >p +@read ~*"]);
        let ro = users.get(b"ro").unwrap();
        assert_eq!(run(ro, "GET k"), Ok(()));
        assert_eq!(run(ro, "MGET a b"), Ok(()));
        let denied = |command: &str| {
            Err(format!(
                "NOPERM User ro has no permissions to run the '{command}' command"
            ))
        };
        assert_eq!(run(ro, "SET k v"), denied("set"));
        assert_eq!(run(ro, "FLUSHALL"), denied("flushall"));
        assert_eq!(run(ro, "RAFT.STATUS"), denied("raft.status"));
        assert_eq!(run(ro, "CONFIG GET x"), denied("config"));
        assert_eq!(run(ro, "ACL SETUSER x"), denied("acl|setuser"));
        assert_eq!(run(ro, "AUTH x y"), Ok(()), "AUTH is always allowed");
    }

    #[test]
    fn key_patterns_cover_every_key_argument() {
        let users = users(&["app on nopass +@all ~app:*"]);
        let app = users.get(b"app").unwrap();
        let no_key = Err("NOPERM No permissions to access a key".to_owned());
        assert_eq!(run(app, "SET app:1 v"), Ok(()));
        assert_eq!(run(app, "GET other"), no_key);
        assert_eq!(run(app, "MSET app:1 v app:2 v"), Ok(()));
        assert_eq!(run(app, "MSET app:1 v other v"), no_key);
        assert_eq!(run(app, "MSET app:1 other"), Ok(()), "values are not keys");
        assert_eq!(run(app, "DEL app:1 app:2 other"), no_key);
        assert_eq!(run(app, "RENAME app:1 other"), no_key);
        assert_eq!(run(app, "COPY app:1 app:2"), Ok(()));
        assert_eq!(run(app, "FLUSHALL"), Ok(()), "no key arguments");
    }

    #[test]
    fn authentication_follows_redis_and_the_password_setting() {
        let table = users(&["app on >pw ~*", "off-user off >pw", "open on nopass"]);
        let auth = |user: &str, password: &str, implicit: bool| {
            let credentials = Credentials {
                username: Bytes::copy_from_slice(user.as_bytes()),
                password: Bytes::copy_from_slice(password.as_bytes()),
                implicit_user: implicit,
            };
            authenticate(&table, None, &credentials)
                .map(|identity| identity.name)
                .map_err(|e| e.to_string())
        };
        let wrongpass =
            Err("WRONGPASS invalid username-password pair or user is disabled.".to_owned());
        assert_eq!(auth("app", "pw", false), Ok(Bytes::from_static(b"app")));
        assert_eq!(auth("app", "bad", false), wrongpass);
        assert_eq!(auth("off-user", "pw", false), wrongpass);
        assert_eq!(auth("nosuch", "pw", false), wrongpass);
        assert_eq!(
            auth("open", "anything", false),
            Ok(Bytes::from_static(b"open"))
        );
        assert!(auth("default", "x", true)
            .unwrap_err()
            .starts_with("ERR AUTH <password> called without"));
        assert_eq!(
            auth("default", "x", false),
            Ok(Bytes::from_static(b"default"))
        );
        assert!(!auth_required(&table, None));
        // The password setting: default needs it, whatever the definition says.
        assert!(auth_required(&table, Some(b"secret")));
        let with_setting = |password: &str| {
            let credentials = Credentials {
                username: Bytes::from_static(b"default"),
                password: Bytes::copy_from_slice(password.as_bytes()),
                implicit_user: true,
            };
            authenticate(&table, Some(b"secret"), &credentials).is_ok()
        };
        assert!(with_setting("secret"));
        assert!(!with_setting("other"));
    }
}
