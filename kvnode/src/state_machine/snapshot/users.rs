//! The ACL users in a version-3 snapshot body, after the members:
//!
//! ```text
//! users = count:u32le user*                                   (ascending name)
//! user  = name:bytes flags:u8 created:u64le
//!         count:u32le hash[32]*                                (ascending)
//!         count:u32le rule:bytes*                              (command rules, in order)
//!         count:u32le pattern:bytes*                           (key patterns, in order)
//! flags = bit 0 on, bit 1 nopass, bit 2 +@all, bit 3 allkeys (other bits zero)
//! ```
//!
//! Command rules are kept as their text (`+@read`, `-get`) and parsed again on restore by
//! the same pure function that applied them. Restoring checks every count against the
//! bytes left, the order, the caps and the user invariants; it never panics.

use std::collections::BTreeSet;

use bytes::{BufMut, BytesMut};

use super::super::wire::{put_bytes, put_count, Reader};
use super::{check_count, SnapshotError};
use crate::acl::rule::{self, Rule};
use crate::acl::{User, Users, COMMAND_RULES_MAX, KEY_PATTERNS_MAX, PASSWORDS_MAX, USERS_MAX};

/// The smallest encoded user: a name's length, flags, created, three counts.
const USER_BYTES_MIN: usize = 4 + 1 + 8 + 12;

/// Appends the users section.
pub(super) fn write_users(users: &Users, out: &mut BytesMut) {
    put_count(out, users.len());
    for user in users.iter() {
        put_bytes(out, &user.name);
        let bit = |set: bool, bit: u8| u8::from(set) << bit;
        out.put_u8(
            bit(user.enabled, 0)
                | bit(user.nopass, 1)
                | bit(user.all_commands, 2)
                | bit(user.all_keys, 3),
        );
        out.put_u64_le(user.created);
        put_count(out, user.passwords.len());
        user.passwords.iter().for_each(|hash| out.put_slice(hash));
        put_count(out, user.command_rules.len());
        for command in &user.command_rules {
            put_bytes(out, command.describe().as_bytes());
        }
        put_count(out, user.key_patterns.len());
        user.key_patterns
            .iter()
            .for_each(|pattern| put_bytes(out, pattern));
    }
}

fn invalid(reason: &'static str, offset: usize) -> SnapshotError {
    SnapshotError::User { reason, offset }
}

/// Reads the users section.
pub(super) fn read_users(body: &mut Reader<'_>) -> Result<Users, SnapshotError> {
    let count = u64::from(body.u32()?);
    check_count(body, "users", count, USER_BYTES_MIN)?;
    if count > USERS_MAX as u64 {
        return Err(invalid("more users than the cap", body.position()));
    }
    let mut users = Vec::new();
    let mut previous: Option<bytes::Bytes> = None;
    for _ in 0..count {
        let offset = body.position();
        let user = read_user(body, offset)?;
        if previous
            .as_ref()
            .is_some_and(|previous| user.name <= *previous)
        {
            return Err(SnapshotError::OutOfOrder {
                what: "user",
                offset,
            });
        }
        previous = Some(user.name.clone());
        users.push(user);
    }
    Ok(Users::from_users(users))
}

fn read_user(body: &mut Reader<'_>, offset: usize) -> Result<User, SnapshotError> {
    let name = body.bytes()?;
    let flags = body.u8()?;
    if flags & !0b1111 != 0 {
        return Err(invalid("unknown user flags", offset));
    }
    let mut user = User::new(name, body.u64()?);
    user.enabled = flags & 1 != 0;
    user.nopass = flags & 2 != 0;
    user.all_commands = flags & 4 != 0;
    user.all_keys = flags & 8 != 0;
    let hashes = u64::from(body.u32()?);
    check_count(body, "password hashes", hashes, 32)?;
    if hashes > PASSWORDS_MAX as u64 {
        return Err(invalid("more passwords than the cap", offset));
    }
    user.passwords = (0..hashes)
        .map(|_| {
            Ok(body
                .take(32)?
                .try_into()
                .expect("take(32) returns 32 bytes"))
        })
        .collect::<Result<BTreeSet<_>, SnapshotError>>()?;
    let rules = u64::from(body.u32()?);
    check_count(body, "command rules", rules, 4)?;
    if rules > COMMAND_RULES_MAX as u64 {
        return Err(invalid("more command rules than the cap", offset));
    }
    for _ in 0..rules {
        match rule::parse(body.slice()?) {
            Ok(Rule::Command(command)) => user.command_rules.push(command),
            _ => return Err(invalid("a command rule does not parse", offset)),
        }
    }
    let patterns = u64::from(body.u32()?);
    check_count(body, "key patterns", patterns, 4)?;
    if patterns > KEY_PATTERNS_MAX as u64 {
        return Err(invalid("more key patterns than the cap", offset));
    }
    user.key_patterns = (0..patterns)
        .map(|_| body.bytes())
        .collect::<Result<_, _>>()?;
    if !user.is_valid() {
        return Err(invalid("a user breaks its invariants", offset));
    }
    Ok(user)
}
