//! `ACL SETUSER | DELUSER | LIST | USERS | GETUSER | WHOAMI | CAT`.
//!
//! SETUSER and DELUSER are writes: they go through the log, and the state machine applies
//! them (`crate::acl::Users`). Before a SETUSER is logged its rules are checked here
//! (syntax, command and category names this build knows) and `>password` / `<password`
//! become `#sha256` / `!sha256`, so no password reaches the log, a snapshot or a follower.
//! The others read the node's applied definitions and are answered by the connection.
//! ACL is not allowed inside MULTI (it cannot share a log entry with data commands).

use bytes::Bytes;

use super::args::{is, Context};
use super::category::{self, ADMIN, DANGEROUS, SLOW};
use super::error::CommandError;
use super::local::LocalCommand;
use super::{Command, SPECS};
use crate::acl::rule::{self, hash_hex, hash_password, Rule, RuleError, Target};
use crate::acl::users::check_name;
use crate::state_machine::{DbIndex, WriteCommand, WriteOp};

/// An ACL subcommand the connection answers from the node's definitions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AclQuery {
    List,
    Users,
    WhoAmI,
    GetUser(Bytes),
    /// `ACL CAT`: every category, or the commands of one (its bit).
    Cat(Option<u16>),
}

/// The subcommands: name, Redis' arity (counting `ACL` and the subcommand), categories.
const SUBCOMMANDS: [(&str, i32, u16); 7] = [
    ("setuser", -3, ADMIN | DANGEROUS | SLOW),
    ("deluser", -3, ADMIN | DANGEROUS | SLOW),
    ("list", 2, ADMIN | DANGEROUS | SLOW),
    ("users", 2, ADMIN | DANGEROUS | SLOW),
    ("getuser", 3, ADMIN | DANGEROUS | SLOW),
    ("whoami", 2, SLOW),
    ("cat", -2, SLOW),
];

/// A subcommand's name and categories, for the permission check.
pub(crate) fn subcommand(sub: &[u8]) -> Option<(&'static str, u16)> {
    SUBCOMMANDS
        .iter()
        .find(|(name, _, _)| is(sub, name))
        .map(|(name, _, categories)| (*name, *categories))
}

/// `ACL subcommand [argument ...]`
pub(super) fn parse_acl(args: &[Bytes], _: &Context<'_>) -> Result<Command, CommandError> {
    let (sub, rest) = args.split_first().ok_or(CommandError::Syntax)?;
    let Some((name, arity, _)) = SUBCOMMANDS.iter().find(|(name, _, _)| is(sub, name)) else {
        return Err(CommandError::UnknownSubcommand {
            command: "ACL",
            subcommand: sub.clone(),
        });
    };
    let words = i32::try_from(args.len() + 1).unwrap_or(i32::MAX);
    let arity_ok = if *arity > 0 {
        words == *arity
    } else {
        words >= -arity
    };
    if !arity_ok || (*name == "cat" && rest.len() > 1) {
        return Err(CommandError::WrongArity {
            command: arity_name(name),
        });
    }
    let query = |query| Ok(Command::Local(LocalCommand::Acl(query)));
    match *name {
        "setuser" => parse_setuser(&rest[0], &rest[1..]),
        "deluser" => Ok(acl_write(WriteOp::AclDelUser {
            names: rest.to_vec(),
        })),
        "list" => query(AclQuery::List),
        "users" => query(AclQuery::Users),
        "whoami" => query(AclQuery::WhoAmI),
        "getuser" => query(AclQuery::GetUser(rest[0].clone())),
        _ => match rest.first() {
            None => query(AclQuery::Cat(None)),
            Some(name) => match category::by_name(name) {
                Some(bit) => query(AclQuery::Cat(Some(bit))),
                None => Err(CommandError::AclUnknownCategory { name: name.clone() }),
            },
        },
    }
}

fn arity_name(name: &str) -> &'static str {
    match name {
        "setuser" => "acl|setuser",
        "deluser" => "acl|deluser",
        "list" => "acl|list",
        "users" => "acl|users",
        "getuser" => "acl|getuser",
        "whoami" => "acl|whoami",
        _ => "acl|cat",
    }
}

/// ACL writes carry no database; 0 keeps their encoding canonical.
fn acl_write(op: WriteOp) -> Command {
    Command::Write(WriteCommand { db: DbIndex(0), op })
}

/// Checks every rule and replaces passwords by their hashes.
fn parse_setuser(name: &Bytes, rules: &[Bytes]) -> Result<Command, CommandError> {
    check_name(name)?;
    let logged = rules
        .iter()
        .map(|word| {
            let refused = |error: RuleError| CommandError::AclSetUser {
                modifier: word.clone(),
                reason: error.reason().to_owned(),
            };
            let parsed = rule::parse(word).map_err(refused)?;
            if let Rule::Command(command) = &parsed {
                let known = match &command.target {
                    Target::Category { bits, .. } => *bits != 0,
                    Target::Command(name) => SPECS
                        .iter()
                        .any(|spec| spec.name.as_bytes() == name.as_ref()),
                };
                if !known {
                    return Err(refused(RuleError::UnknownName));
                }
            }
            Ok(match (word.first(), parsed) {
                (Some(b'>'), _) => {
                    Bytes::from(format!("#{}", hash_hex(&hash_password(&word[1..]))))
                }
                (Some(b'<'), _) => {
                    Bytes::from(format!("!{}", hash_hex(&hash_password(&word[1..]))))
                }
                _ => word.clone(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(acl_write(WriteOp::AclSetUser {
        name: name.clone(),
        rules: logged,
    }))
}

/// ACL CAT's reply.
pub(super) fn cat_reply(category: Option<u16>) -> crate::resp::Frame {
    use crate::resp::Frame;
    let names: Vec<&str> = match category {
        None => category::NAMES.iter().map(|(_, name)| *name).collect(),
        Some(bit) => category::commands_in(bit),
    };
    Frame::Array(names.into_iter().map(Frame::bulk).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::{parse_words, CommandLimits};

    fn parse(line: &str) -> Result<Command, String> {
        let words: Vec<Bytes> = line
            .split(' ')
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect();
        let limits = CommandLimits::default();
        let context = Context {
            limits: &limits,
            db: DbIndex(3),
        };
        parse_words(&words, &context).map_err(|error| error.to_string())
    }

    #[test]
    fn setuser_logs_hashes_never_passwords() {
        let Ok(Command::Write(WriteCommand {
            db,
            op: WriteOp::AclSetUser { name, rules },
        })) = parse("ACL SETUSER app on >hunter2 <old ~app:* +@read +get")
        else {
            panic!("a write");
        };
        assert_eq!(db, DbIndex(0));
        assert_eq!(name, Bytes::from_static(b"app"));
        let text: Vec<String> = rules
            .iter()
            .map(|r| String::from_utf8_lossy(r).into_owned())
            .collect();
        assert_eq!(
            text[1],
            format!("#{}", hash_hex(&hash_password(b"hunter2")))
        );
        assert_eq!(text[2], format!("!{}", hash_hex(&hash_password(b"old"))));
        assert!(!text
            .iter()
            .any(|rule| rule.contains("hunter2") || rule.contains("old")));
        assert_eq!(&text[3..], ["~app:*", "+@read", "+get"]);
    }

    #[test]
    fn acl_errors_are_worded_like_redis() {
        let cases = [
            ("ACL SETUSER u +nosuch", "ERR Error in ACL SETUSER modifier '+nosuch': Unknown command or category name in ACL"),
            ("ACL SETUSER u +@nosuch", "ERR Error in ACL SETUSER modifier '+@nosuch': Unknown command or category name in ACL"),
            ("ACL SETUSER u bogus", "ERR Error in ACL SETUSER modifier 'bogus': Syntax error"),
            ("ACL SETUSER u #abc", "ERR Error in ACL SETUSER modifier '#abc': The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters"),
            ("ACL SETUSER", "ERR wrong number of arguments for 'acl|setuser' command"),
            ("ACL WHOAMI x", "ERR wrong number of arguments for 'acl|whoami' command"),
            ("ACL CAT a b", "ERR wrong number of arguments for 'acl|cat' command"),
            ("ACL CAT nosuch", "ERR Unknown category 'nosuch'"),
            ("ACL NOSUCH", "ERR unknown subcommand 'NOSUCH'. Try ACL HELP."),
        ];
        for (line, expected) in cases {
            assert_eq!(parse(line).unwrap_err(), expected, "{line}");
        }
        assert!(matches!(
            parse("ACL whoami"),
            Ok(Command::Local(LocalCommand::Acl(AclQuery::WhoAmI)))
        ));
        assert!(matches!(
            parse("ACL DELUSER a b"),
            Ok(Command::Write(WriteCommand {
                op: WriteOp::AclDelUser { .. },
                ..
            }))
        ));
    }

    #[test]
    fn cat_lists_categories_and_their_commands() {
        let crate::resp::Frame::Array(all) = cat_reply(None) else {
            panic!("array")
        };
        assert!(all.contains(&crate::resp::Frame::bulk("admin")));
        let crate::resp::Frame::Array(admin) = cat_reply(Some(ADMIN)) else {
            panic!("array")
        };
        for name in [
            "flushall",
            "flushdb",
            "config",
            "raft.status",
            "raftkv.backup",
        ] {
            assert!(admin.contains(&crate::resp::Frame::bulk(name)), "{name}");
        }
        assert!(!admin.contains(&crate::resp::Frame::bulk("get")));
    }
}
