//! COMMAND, INFO and CONFIG GET: what tools ask a server about itself.
//!
//! COMMAND replies just enough for redis-cli and redis-benchmark: `COMMAND` and
//! `COMMAND DOCS` return empty collections (redis-cli 7 then simply shows no hints),
//! `COMMAND COUNT` and `COMMAND LIST` describe the real command table. CONFIG GET answers
//! the two parameters redis-benchmark reads (`save`, `appendonly`) and returns an empty
//! reply for the rest, as Redis does for unknown parameters; CONFIG SET is refused.

use bytes::Bytes;

use super::args::{is, CommandLimits};
use super::error::CommandError;
use super::local::LocalCommand;
use super::{Command, SPECS};
use crate::resp::Frame;

/// A COMMAND query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandQuery {
    /// `COMMAND` and `COMMAND INFO ...`
    Info,
    /// `COMMAND DOCS ...`
    Docs,
    /// `COMMAND COUNT`
    Count,
    /// `COMMAND LIST ...`
    List,
}

/// `COMMAND [COUNT | DOCS ... | INFO ... | LIST ...]`
pub(super) fn parse_command(args: &[Bytes], _: &CommandLimits) -> Result<Command, CommandError> {
    let query = match args.first() {
        None => CommandQuery::Info,
        Some(sub) if is(sub, "COUNT") => {
            if args.len() != 1 {
                return Err(CommandError::WrongArity {
                    command: "command|count",
                });
            }
            CommandQuery::Count
        }
        Some(sub) if is(sub, "DOCS") => CommandQuery::Docs,
        Some(sub) if is(sub, "INFO") => CommandQuery::Info,
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
        CommandQuery::Info => Frame::Array(Vec::new()),
        CommandQuery::Docs => Frame::Map(Vec::new()),
        CommandQuery::Count => {
            Frame::Integer(i64::try_from(SPECS.len()).expect("the table is small"))
        }
        CommandQuery::List => {
            Frame::Array(SPECS.iter().map(|spec| Frame::bulk(spec.name)).collect())
        }
    }
}

/// `INFO [section ...]`: the server fills in the sections (it owns the Raft state).
pub(super) fn parse_info(args: &[Bytes], _: &CommandLimits) -> Result<Command, CommandError> {
    let sections = args
        .iter()
        .map(|section| section.to_ascii_lowercase().into())
        .collect();
    Ok(Command::Local(LocalCommand::Info { sections }))
}

/// `CONFIG GET parameter [parameter ...]`; every other CONFIG subcommand is refused.
pub(super) fn parse_config(args: &[Bytes], _: &CommandLimits) -> Result<Command, CommandError> {
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
pub(super) fn config_get_reply(parameters: &[Bytes]) -> Frame {
    // No RDB saving and no AOF: persistence is the Raft log, which these do not describe.
    const KNOWN: &[(&str, &str)] = &[("save", ""), ("appendonly", "no"), ("databases", "1")];
    let pairs = KNOWN
        .iter()
        .filter(|(name, _)| parameters.iter().any(|p| is(p, name) || p.as_ref() == b"*"))
        .map(|(name, value)| (Frame::bulk(name), Frame::bulk(value)))
        .collect();
    Frame::Map(pairs)
}
