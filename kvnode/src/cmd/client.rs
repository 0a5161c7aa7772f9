//! CLIENT SETNAME, GETNAME, ID, SETINFO, LIST, INFO and KILL: per-connection metadata
//! and the registry of open connections ([`crate::clients`]). redis-cli and client
//! libraries send SETINFO on connect, so it must succeed.

use bytes::Bytes;

use super::args::{is, Context};
use super::error::CommandError;
use super::local::LocalCommand;
use super::Command;
use crate::clients::{KillFilter, DEFAULT_USER};
use crate::resp::number::parse_i64;

/// Client ids CLIENT LIST ID takes at most (each is one word of the request, which the
/// RESP limits already cap; this keeps the reply's filter small too).
pub const LIST_IDS_MAX: usize = 1024;

/// Longest client name or SETINFO value kept; longer ones are refused, since they are
/// held per connection for the connection's life.
pub const CLIENT_FIELD_BYTES_MAX: usize = 256;

/// A CLIENT subcommand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientCommand {
    SetName(Bytes),
    GetName,
    Id,
    SetInfo {
        attribute: ClientAttribute,
        value: Bytes,
    },
    /// CLIENT LIST: every connection, or those with the given ids; `none` for a TYPE that
    /// no raftkv connection has (master, replica, pubsub).
    List {
        ids: Option<Vec<u64>>,
        none: bool,
    },
    /// CLIENT INFO: this connection's CLIENT LIST line.
    Info,
    /// CLIENT KILL: the old form (`addr`) answers OK or an error, the new one a count.
    Kill {
        filter: KillFilter,
        old_form: bool,
    },
}

/// What CLIENT SETINFO may set.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ClientAttribute {
    LibraryName,
    LibraryVersion,
}

/// `CLIENT subcommand ...`
pub(super) fn parse_client(args: &[Bytes], _: &Context<'_>) -> Result<Command, CommandError> {
    let (sub, rest) = args
        .split_first()
        .ok_or(CommandError::WrongArity { command: "client" })?;
    let client = if is(sub, "SETNAME") {
        let [name] = rest else {
            return Err(CommandError::WrongArity {
                command: "client|setname",
            });
        };
        check_client_name(name)?;
        ClientCommand::SetName(name.clone())
    } else if is(sub, "GETNAME") {
        expect_no_args(rest, "client|getname")?;
        ClientCommand::GetName
    } else if is(sub, "ID") {
        expect_no_args(rest, "client|id")?;
        ClientCommand::Id
    } else if is(sub, "LIST") {
        parse_client_list(rest)?
    } else if is(sub, "INFO") {
        expect_no_args(rest, "client|info")?;
        ClientCommand::Info
    } else if is(sub, "KILL") {
        parse_client_kill(rest)?
    } else if is(sub, "SETINFO") {
        let [attribute, value] = rest else {
            return Err(CommandError::WrongArity {
                command: "client|setinfo",
            });
        };
        parse_client_setinfo(attribute, value)?
    } else {
        return Err(CommandError::UnknownSubcommand {
            command: "CLIENT",
            subcommand: sub.clone(),
        });
    };
    Ok(Command::Local(LocalCommand::Client(client)))
}

/// `CLIENT LIST [TYPE normal|master|replica|pubsub] [ID id ...]`
fn parse_client_list(rest: &[Bytes]) -> Result<ClientCommand, CommandError> {
    let (mut ids, mut none) = (None, false);
    let mut at = 0;
    while at < rest.len() {
        let option = &rest[at];
        if is(option, "TYPE") && at + 1 < rest.len() {
            none |= !client_type_is_normal(&rest[at + 1])?;
            at += 2;
        } else if is(option, "ID") && at + 1 < rest.len() {
            let given = &rest[at + 1..];
            if given.len() > LIST_IDS_MAX {
                return Err(CommandError::Syntax);
            }
            let parsed = given
                .iter()
                .map(|id| {
                    parse_i64(id)
                        .filter(|id| *id > 0)
                        .map(|id| id.unsigned_abs())
                        .ok_or(CommandError::InvalidClientId)
                })
                .collect::<Result<Vec<u64>, _>>()?;
            ids = Some(parsed);
            at = rest.len();
        } else {
            return Err(CommandError::Syntax);
        }
    }
    Ok(ClientCommand::List { ids, none })
}

/// Whether a TYPE names normal clients (the only kind raftkv has); Redis' error for a
/// name it does not know.
fn client_type_is_normal(name: &Bytes) -> Result<bool, CommandError> {
    if is(name, "normal") {
        Ok(true)
    } else if ["master", "replica", "slave", "pubsub"]
        .iter()
        .any(|kind| is(name, kind))
    {
        Ok(false)
    } else {
        Err(CommandError::UnknownClientType { name: name.clone() })
    }
}

/// `CLIENT KILL addr:port` (old form) or `CLIENT KILL <filter> <value> ...` with ID, ADDR,
/// LADDR, USER, TYPE, SKIPME and MAXAGE, as Redis 7 parses them.
fn parse_client_kill(rest: &[Bytes]) -> Result<ClientCommand, CommandError> {
    if let [addr] = rest {
        let filter = KillFilter {
            addr: Some(addr.clone()),
            ..KillFilter::default()
        };
        return Ok(ClientCommand::Kill {
            filter,
            old_form: true,
        });
    }
    if rest.is_empty() || rest.len() % 2 != 0 {
        return Err(CommandError::Syntax);
    }
    let mut filter = KillFilter {
        skip_me: true,
        ..KillFilter::default()
    };
    for pair in rest.chunks_exact(2) {
        let (option, value) = (&pair[0], &pair[1]);
        if is(option, "ID") {
            let id = parse_i64(value)
                .filter(|id| *id > 0)
                .ok_or(CommandError::ClientIdNotPositive)?;
            filter.id = Some(id.unsigned_abs());
        } else if is(option, "ADDR") {
            filter.addr = Some(value.clone());
        } else if is(option, "LADDR") {
            filter.local_addr = Some(value.clone());
        } else if is(option, "TYPE") {
            filter.no_match |= !client_type_is_normal(value)?;
        } else if is(option, "USER") {
            if !is(value, DEFAULT_USER) {
                return Err(CommandError::NoSuchUser {
                    name: value.clone(),
                });
            }
        } else if is(option, "SKIPME") {
            filter.skip_me = if is(value, "yes") {
                true
            } else if is(value, "no") {
                false
            } else {
                return Err(CommandError::Syntax);
            };
        } else if is(option, "MAXAGE") {
            let age = parse_i64(value).ok_or(CommandError::NotInteger)?;
            filter.max_age_secs = Some(u64::try_from(age).unwrap_or(0));
        } else {
            return Err(CommandError::Syntax);
        }
    }
    Ok(ClientCommand::Kill {
        filter,
        old_form: false,
    })
}

fn parse_client_setinfo(attribute: &Bytes, value: &Bytes) -> Result<ClientCommand, CommandError> {
    let attribute = if is(attribute, "LIB-NAME") {
        ClientAttribute::LibraryName
    } else if is(attribute, "LIB-VER") {
        ClientAttribute::LibraryVersion
    } else {
        return Err(CommandError::UnrecognizedOption {
            option: attribute.clone(),
        });
    };
    // Redis applies the client-name character rule to these values too.
    check_client_name(value)?;
    Ok(ClientCommand::SetInfo {
        attribute,
        value: value.clone(),
    })
}

fn expect_no_args(rest: &[Bytes], command: &'static str) -> Result<(), CommandError> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(CommandError::WrongArity { command })
    }
}

/// Redis' rule: printable ASCII from `!` to `~` (no spaces or newlines); we also cap length.
pub(super) fn check_client_name(name: &[u8]) -> Result<(), CommandError> {
    let printable = name.iter().all(|byte| (b'!'..=b'~').contains(byte));
    if printable && name.len() <= CLIENT_FIELD_BYTES_MAX {
        Ok(())
    } else {
        Err(CommandError::InvalidClientName)
    }
}
