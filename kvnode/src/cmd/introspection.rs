//! COMMAND, INFO and CONFIG GET: what tools ask a server about itself.
//!
//! COMMAND describes the real command table: `COMMAND` and `COMMAND INFO name ...` in
//! Redis 7's shape (name, arity, flags, key positions, ACL categories; no tips or key
//! specifications yet), `COMMAND COUNT` and `COMMAND LIST`. `COMMAND DOCS` returns an
//! empty map (redis-cli 7 then simply shows no hints). CONFIG GET answers
//! the parameters redis-benchmark and test harnesses read (`save`, `appendonly`,
//! `databases`) and returns an empty
//! reply for the rest, as Redis does for unknown parameters; CONFIG SET is refused.

use bytes::Bytes;

use super::args::{is, Context};
use super::error::CommandError;
use super::local::LocalCommand;
use super::{flags, Command, Spec, SPECS};
use crate::resp::Frame;

/// A COMMAND query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandQuery {
    /// `COMMAND` (every command) and `COMMAND INFO name ...`
    Info(Vec<Bytes>),
    /// `COMMAND DOCS ...`
    Docs,
    /// `COMMAND COUNT`
    Count,
    /// `COMMAND LIST ...`
    List,
}

/// `COMMAND [COUNT | DOCS ... | INFO ... | LIST ...]`
pub(super) fn parse_command(args: &[Bytes], _: &Context<'_>) -> Result<Command, CommandError> {
    let query = match args.first() {
        None => CommandQuery::Info(Vec::new()),
        Some(sub) if is(sub, "COUNT") => {
            if args.len() != 1 {
                return Err(CommandError::WrongArity {
                    command: "command|count",
                });
            }
            CommandQuery::Count
        }
        Some(sub) if is(sub, "DOCS") => CommandQuery::Docs,
        Some(sub) if is(sub, "INFO") => {
            if args.len() == 1 {
                return Err(CommandError::WrongArity {
                    command: "command|info",
                });
            }
            CommandQuery::Info(args[1..].to_vec())
        }
        Some(sub) if is(sub, "LIST") => CommandQuery::List,
        Some(sub) => {
            return Err(CommandError::UnknownSubcommand {
                command: "COMMAND",
                subcommand: sub.clone(),
            })
        }
    };
    Ok(Command::Local(LocalCommand::Command(query)))
}

/// The reply to a COMMAND query.
pub(super) fn command_reply(query: &CommandQuery) -> Frame {
    match query {
        CommandQuery::Info(names) if names.is_empty() => {
            Frame::Array(SPECS.iter().map(command_info).collect())
        }
        CommandQuery::Info(names) => Frame::Array(
            names
                .iter()
                .map(|name| {
                    SPECS
                        .iter()
                        .find(|spec| name.eq_ignore_ascii_case(spec.name.as_bytes()))
                        .map_or(Frame::Null, command_info)
                })
                .collect(),
        ),
        CommandQuery::Docs => Frame::Map(Vec::new()),
        CommandQuery::Count => {
            Frame::Integer(i64::try_from(SPECS.len()).expect("the table is small"))
        }
        CommandQuery::List => {
            Frame::Array(SPECS.iter().map(|spec| Frame::bulk(spec.name)).collect())
        }
    }
}

/// One command as Redis 7's COMMAND INFO describes it: name, arity, flags, first key,
/// last key, key step, then ACL categories, tips, key specifications and subcommands
/// (empty here).
fn command_info(spec: &Spec) -> Frame {
    let flags = flags::NAMES
        .iter()
        .filter(|(bit, _)| spec.flags & bit != 0)
        .map(|(_, name)| Frame::Simple((*name).to_owned()))
        .collect();
    let (first, last, step) = spec.keys;
    let categories = super::category::NAMES
        .iter()
        .filter(|(bit, _)| spec.categories() & bit != 0)
        .map(|(_, name)| Frame::Simple(format!("@{name}")))
        .collect();
    Frame::Array(vec![
        Frame::bulk(spec.name),
        Frame::Integer(i64::from(spec.arity)),
        Frame::Array(flags),
        Frame::Integer(i64::from(first)),
        Frame::Integer(i64::from(last)),
        Frame::Integer(i64::from(step)),
        Frame::Array(categories),
        Frame::Array(Vec::new()),
        Frame::Array(Vec::new()),
        Frame::Array(Vec::new()),
    ])
}

/// `INFO [section ...]`: the server fills in the sections (it owns the Raft state).
pub(super) fn parse_info(args: &[Bytes], _: &Context<'_>) -> Result<Command, CommandError> {
    let sections = args
        .iter()
        .map(|section| section.to_ascii_lowercase().into())
        .collect();
    Ok(Command::Local(LocalCommand::Info { sections }))
}

/// `CONFIG GET parameter [parameter ...]`; every other CONFIG subcommand is refused.
pub(super) fn parse_config(args: &[Bytes], context: &Context<'_>) -> Result<Command, CommandError> {
    let (sub, parameters) = args
        .split_first()
        .ok_or(CommandError::WrongArity { command: "config" })?;
    if is(sub, "GET") {
        if parameters.is_empty() {
            return Err(CommandError::WrongArity {
                command: "config|get",
            });
        }
        return Ok(Command::Local(LocalCommand::ConfigGet {
            parameters: parameters.to_vec(),
            databases: context.limits.databases,
        }));
    }
    if is(sub, "SET") {
        return Err(CommandError::ConfigSetNotSupported);
    }
    Err(CommandError::UnknownSubcommand {
        command: "CONFIG",
        subcommand: sub.clone(),
    })
}

/// CONFIG GET's reply: a map of the parameters we can answer truthfully.
pub(super) fn config_get_reply(parameters: &[Bytes], databases: u32) -> Frame {
    // No RDB saving and no AOF: persistence is the Raft log, which these do not describe.
    let databases = databases.to_string();
    let known: [(&str, &str); 3] = [
        ("save", ""),
        ("appendonly", "no"),
        ("databases", &databases),
    ];
    let pairs = known
        .iter()
        .filter(|(name, _)| parameters.iter().any(|p| is(p, name) || p.as_ref() == b"*"))
        .map(|(name, value)| (Frame::bulk(name), Frame::bulk(value)))
        .collect();
    Frame::Map(pairs)
}
