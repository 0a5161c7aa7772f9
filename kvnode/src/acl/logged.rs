//! Checking a write that arrives already parsed: `RAFTKV.PROPOSE`, what a follower sends
//! the leader on a forward connection authenticated as the client's own user.
//!
//! The follower has checked the client's command by its name, categories and keys before
//! forwarding it; the leader checks the decoded command again, so that a client speaking
//! `RAFTKV.PROPOSE` itself gains nothing its user could not do with ordinary commands:
//! - every key the command writes, reads or watches must match the user's patterns;
//! - the user must be allowed some command that parses into this operation. Commands of
//!   one family (SET, SETNX, SETEX, PSETEX, GETSET; INCR and its siblings; DEL and
//!   UNLINK; EXPIRE and its siblings; RENAME and RENAMENX; TTL and PTTL) parse into one
//!   operation, so a user allowed one of them may, through this path only, run a sibling
//!   on the keys it may touch. Key patterns and categories (`@admin`, `@write`) are
//!   enforced exactly.

use bytes::Bytes;

use super::user::User;
use crate::cmd::{CommandError, SPECS};
use crate::state_machine::{ReadOp, TxItem, WriteCommand, WriteOp};

/// The commands that parse into a write operation.
fn write_commands(op: &WriteOp) -> &'static [&'static str] {
    match op {
        WriteOp::Set { .. } => &["set", "setnx", "setex", "psetex", "getset"],
        WriteOp::GetEx { .. } => &["getex"],
        WriteOp::GetDel { .. } => &["getdel"],
        WriteOp::Del { .. } => &["del", "unlink"],
        WriteOp::IncrBy { .. } => &["incr", "incrby", "decr", "decrby"],
        WriteOp::IncrByFloat { .. } => &["incrbyfloat"],
        WriteOp::Append { .. } => &["append"],
        WriteOp::SetRange { .. } => &["setrange"],
        WriteOp::MSet { .. } => &["mset"],
        WriteOp::MSetNx { .. } => &["msetnx"],
        WriteOp::Expire { .. } => &["expire", "pexpire", "expireat", "pexpireat"],
        WriteOp::Persist { .. } => &["persist"],
        WriteOp::Rename { .. } => &["rename", "renamenx"],
        WriteOp::Copy { .. } => &["copy"],
        WriteOp::Move { .. } => &["move"],
        WriteOp::SwapDb { .. } => &["swapdb"],
        WriteOp::FlushDb => &["flushdb"],
        WriteOp::FlushAll => &["flushall"],
        WriteOp::Exec { .. } => &["exec"],
        WriteOp::AclSetUser { .. } => &["acl|setuser"],
        WriteOp::AclDelUser { .. } => &["acl|deluser"],
        // Only a leader proposes reclamation; no client command makes it.
        WriteOp::Reclaim { .. } => &[],
    }
}

/// The commands that parse into a read operation (inside a transaction).
fn read_commands(op: &ReadOp) -> &'static [&'static str] {
    match op {
        ReadOp::Get { .. } => &["get", "getex"],
        ReadOp::MGet { .. } => &["mget"],
        ReadOp::Exists { .. } => &["exists", "touch"],
        ReadOp::StrLen { .. } => &["strlen"],
        ReadOp::GetRange { .. } => &["getrange"],
        ReadOp::DbSize => &["dbsize"],
        ReadOp::Keys { .. } => &["keys"],
        ReadOp::Scan { .. } => &["scan"],
        ReadOp::Ttl { .. } => &["ttl", "pttl"],
        ReadOp::ExpireTime { .. } => &["expiretime", "pexpiretime"],
        ReadOp::Type { .. } => &["type"],
        ReadOp::RandomKey => &["randomkey"],
        ReadOp::Revision { .. } => &["revision"],
        ReadOp::Object { .. } => &["object"],
        ReadOp::Revisions { .. } => &["watch"],
        ReadOp::Time => &["time"],
        ReadOp::Digest => &["raftkv.digest"],
    }
}

/// The keys a write operation touches.
fn write_keys(op: &WriteOp) -> Vec<&Bytes> {
    match op {
        WriteOp::Set { key, .. }
        | WriteOp::GetEx { key, .. }
        | WriteOp::GetDel { key }
        | WriteOp::IncrBy { key, .. }
        | WriteOp::IncrByFloat { key, .. }
        | WriteOp::Append { key, .. }
        | WriteOp::SetRange { key, .. }
        | WriteOp::Expire { key, .. }
        | WriteOp::Persist { key }
        | WriteOp::Move { key, .. } => vec![key],
        WriteOp::Del { keys } => keys.iter().collect(),
        WriteOp::MSet { pairs } | WriteOp::MSetNx { pairs } => {
            pairs.iter().map(|(key, _)| key).collect()
        }
        WriteOp::Rename { from, to, .. } | WriteOp::Copy { from, to, .. } => vec![from, to],
        WriteOp::Reclaim { keys } => keys.iter().map(|(_, key)| key).collect(),
        WriteOp::Exec { watches, .. } => watches.iter().map(|watch| &watch.key).collect(),
        WriteOp::SwapDb { .. }
        | WriteOp::FlushDb
        | WriteOp::FlushAll
        | WriteOp::AclSetUser { .. }
        | WriteOp::AclDelUser { .. } => Vec::new(),
    }
}

/// The keys a read operation touches (its key arguments, not KEYS' or SCAN's pattern).
fn read_keys(op: &ReadOp) -> Vec<&Bytes> {
    match op {
        ReadOp::Get { key }
        | ReadOp::StrLen { key }
        | ReadOp::GetRange { key, .. }
        | ReadOp::Ttl { key, .. }
        | ReadOp::ExpireTime { key, .. }
        | ReadOp::Type { key }
        | ReadOp::Object { key, .. }
        | ReadOp::Revision { key } => vec![key],
        ReadOp::MGet { keys } | ReadOp::Exists { keys } | ReadOp::Revisions { keys } => {
            keys.iter().collect()
        }
        ReadOp::DbSize
        | ReadOp::Keys { .. }
        | ReadOp::Scan { .. }
        | ReadOp::RandomKey
        | ReadOp::Time
        | ReadOp::Digest => Vec::new(),
    }
}

/// True if `user` may run one of `names` (table names, or `acl|sub`).
fn may_run_one_of(user: &User, names: &[&'static str]) -> bool {
    names.iter().any(|name| {
        let (command, sub) = name.split_once('|').unwrap_or((name, ""));
        let Some(spec) = SPECS.iter().find(|spec| spec.name == command) else {
            return false;
        };
        let words = [
            Bytes::from_static(command.as_bytes()),
            Bytes::from_static(sub.as_bytes()),
        ];
        let call = if sub.is_empty() {
            &words[..1]
        } else {
            &words[..]
        };
        let (categories, _) = spec.categories_of_call(call);
        user.may_run(spec.name, categories)
    })
}

fn check_one(user: &User, names: &[&'static str], keys: Vec<&Bytes>) -> Result<(), CommandError> {
    if !may_run_one_of(user, names) {
        return Err(CommandError::NoPermCommand {
            user: user.name.clone(),
            command: names
                .first()
                .map_or("raftkv.propose", |name| name)
                .to_owned(),
        });
    }
    match keys.into_iter().all(|key| user.may_access(key)) {
        true => Ok(()),
        false => Err(CommandError::NoPermKey),
    }
}

/// Checks a forwarded write (and a transaction's every command) as the module says.
///
/// # Errors
/// NOPERM, worded as for the client's own command.
pub fn permit_logged(user: &User, command: &WriteCommand) -> Result<(), CommandError> {
    check_one(user, write_commands(&command.op), write_keys(&command.op))?;
    if let WriteOp::Exec { items, .. } = &command.op {
        for item in items {
            match item {
                TxItem::Write(write) => {
                    check_one(user, write_commands(&write.op), write_keys(&write.op))?
                }
                TxItem::Read(read) => {
                    check_one(user, read_commands(&read.op), read_keys(&read.op))?
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::Users;
    use crate::state_machine::{DbIndex, ReadCommand, SetCondition, SetReply, SetTtl};

    fn b(text: &str) -> Bytes {
        Bytes::copy_from_slice(text.as_bytes())
    }

    fn set(key: &str) -> WriteCommand {
        WriteCommand {
            db: DbIndex(0),
            op: WriteOp::Set {
                key: b(key),
                value: b("v"),
                condition: SetCondition::Always,
                reply: SetReply::Ok,
                ttl: SetTtl::Clear,
            },
        }
    }

    fn user(rules: &str) -> User {
        let mut users = Users::default();
        let rules: Vec<Bytes> = rules.split(' ').map(b).collect();
        users.set_user(1, &b("u"), &rules).unwrap();
        users.get(b"u").unwrap().clone()
    }

    #[test]
    fn a_forwarded_write_is_checked_for_its_command_and_keys() {
        let app = user("on +@all ~app:*");
        assert_eq!(permit_logged(&app, &set("app:1")), Ok(()));
        assert_eq!(
            permit_logged(&app, &set("other")),
            Err(CommandError::NoPermKey)
        );
        let reader = user("on +@read ~*");
        assert_eq!(
            permit_logged(&reader, &set("k")).unwrap_err().to_string(),
            "NOPERM User u has no permissions to run the 'set' command"
        );
        let flush = WriteCommand {
            db: DbIndex(0),
            op: WriteOp::FlushAll,
        };
        assert!(
            permit_logged(&user("on +@write ~*"), &flush).is_err(),
            "FLUSHALL is @admin"
        );
        assert!(
            permit_logged(&user("on +setnx ~*"), &set("k")).is_ok(),
            "a sibling of SET"
        );
        let reclaim = WriteCommand {
            db: DbIndex(0),
            op: WriteOp::Reclaim { keys: vec![] },
        };
        assert!(
            permit_logged(&user("on +@all ~*"), &reclaim).is_err(),
            "no client makes it"
        );
    }

    #[test]
    fn a_forwarded_transaction_is_checked_item_by_item() {
        let exec = |items: Vec<TxItem>| WriteCommand {
            db: DbIndex(0),
            op: WriteOp::Exec {
                watches: vec![],
                items,
            },
        };
        let read = |key: &str| {
            TxItem::Read(ReadCommand {
                db: DbIndex(0),
                op: ReadOp::Get { key: b(key) },
            })
        };
        let app = user("on +@all ~app:*");
        assert_eq!(
            permit_logged(
                &app,
                &exec(vec![TxItem::Write(set("app:1")), read("app:2")])
            ),
            Ok(())
        );
        assert_eq!(
            permit_logged(
                &app,
                &exec(vec![TxItem::Write(set("app:1")), read("other")])
            ),
            Err(CommandError::NoPermKey)
        );
        let reader = user("on +@read +@transaction ~*");
        assert!(permit_logged(&reader, &exec(vec![read("k")])).is_ok());
        assert!(permit_logged(&reader, &exec(vec![TxItem::Write(set("k"))])).is_err());
    }
}
