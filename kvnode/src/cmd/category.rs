//! ACL categories, with Redis' names: which commands `+@read`, `-@admin` and the like
//! select (see `crate::acl`).
//!
//! A command's categories come from its row in the command table ([`super::SPECS`]):
//! `@read` from the `readonly` flag, `@write` from `write`, `@fast` from `fast` (every
//! other command is `@slow`), `@admin` and `@dangerous` from `admin`; the row adds the
//! rest (`@keyspace`, `@string`, `@connection`, `@transaction`, and `@admin`/`@dangerous`
//! for commands that erase or swap whole databases). ACL's own subcommands have their
//! categories in [`super::acl`].
//!
//! An `@admin` command is in `@admin` and `@dangerous` only (raftkv's rule; Redis also
//! lists FLUSHALL in `@write`, `@keyspace` and `@slow`): administration is granted by
//! `+@admin`, `+@dangerous` or `+@all` (or by name), never as a side effect of `+@write`,
//! `+@keyspace` or `+@slow`.

use bytes::Bytes;

use super::{flags, Spec};

pub const KEYSPACE: u16 = 1;
pub const READ: u16 = 1 << 1;
pub const WRITE: u16 = 1 << 2;
pub const STRING: u16 = 1 << 3;
pub const FAST: u16 = 1 << 4;
pub const SLOW: u16 = 1 << 5;
pub const ADMIN: u16 = 1 << 6;
pub const DANGEROUS: u16 = 1 << 7;
pub const CONNECTION: u16 = 1 << 8;
pub const TRANSACTION: u16 = 1 << 9;

/// Every category with its Redis name (without the `@`), as ACL CAT lists them.
pub const NAMES: [(u16, &str); 10] = [
    (KEYSPACE, "keyspace"),
    (READ, "read"),
    (WRITE, "write"),
    (STRING, "string"),
    (FAST, "fast"),
    (SLOW, "slow"),
    (ADMIN, "admin"),
    (DANGEROUS, "dangerous"),
    (CONNECTION, "connection"),
    (TRANSACTION, "transaction"),
];

/// The bit of a category name (case-insensitive), or `None` for an unknown name.
/// `all` is not a category but a rule of its own (see `crate::acl`).
pub fn by_name(name: &[u8]) -> Option<u16> {
    NAMES
        .iter()
        .find(|(_, known)| name.eq_ignore_ascii_case(known.as_bytes()))
        .map(|(bit, _)| *bit)
}

impl Spec {
    /// The command's categories: those its flags imply plus those its row adds.
    pub(crate) fn categories(&self) -> u16 {
        let from_flag = |flag: u16, categories: u16| {
            if self.flags & flag != 0 {
                categories
            } else {
                0
            }
        };
        let speed = if self.flags & flags::FAST != 0 {
            FAST
        } else {
            SLOW
        };
        admin_only(
            self.categories
                | speed
                | from_flag(flags::READONLY, READ)
                | from_flag(flags::WRITE, WRITE)
                | from_flag(flags::ADMIN, ADMIN | DANGEROUS),
        )
    }

    /// The categories of this command as `words` call it (a subcommand of ACL has its
    /// own), and the name NOPERM reports (`acl|setuser`).
    pub(crate) fn categories_of_call(&self, words: &[Bytes]) -> (u16, String) {
        if self.name == "acl" {
            if let Some((name, categories)) =
                words.get(1).and_then(|sub| super::acl::subcommand(sub))
            {
                return (admin_only(categories), format!("acl|{name}"));
            }
        }
        (self.categories(), self.name.to_owned())
    }
}

/// An `@admin` command's categories are `@admin` and `@dangerous` alone (module rule).
fn admin_only(categories: u16) -> u16 {
    if categories & ADMIN != 0 {
        ADMIN | DANGEROUS
    } else {
        categories
    }
}

/// Names of the commands in `category`, as ACL CAT lists them.
pub fn commands_in(category: u16) -> Vec<&'static str> {
    super::SPECS
        .iter()
        .filter(|spec| spec.categories() & category != 0)
        .map(|spec| spec.name)
        .collect()
}
