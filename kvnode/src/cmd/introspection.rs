//! COMMAND and INFO: what tools ask a server about itself (CONFIG is in `config`).
//!
//! COMMAND describes the real command table: `COMMAND` and `COMMAND INFO name ...` in
//! Redis 7's shape (name, arity, flags, key positions, ACL categories; no tips or key
//! specifications yet), `COMMAND COUNT`, `COMMAND LIST`, and `COMMAND DOCS [name ...]`
//! (summary, since, group from `docs`, for the same rows).

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
    /// `COMMAND DOCS [name ...]`: every command for none.
    Docs(Vec<Bytes>),
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
        Some(sub) if is(sub, "DOCS") => CommandQuery::Docs(args[1..].to_vec()),
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
        CommandQuery::Docs(names) => Frame::Map(
            SPECS
                .iter()
                .filter(|spec| {
                    names.is_empty()
                        || names
                            .iter()
                            .any(|name| name.eq_ignore_ascii_case(spec.name.as_bytes()))
                })
                .map(|spec| (Frame::bulk(spec.name), command_docs(spec)))
                .collect(),
        ),
        CommandQuery::Count => {
            Frame::Integer(i64::try_from(SPECS.len()).expect("the table is small"))
        }
        CommandQuery::List => {
            Frame::Array(SPECS.iter().map(|spec| Frame::bulk(spec.name)).collect())
        }
    }
}

/// One command's COMMAND DOCS map: summary, since, group.
fn command_docs(spec: &Spec) -> Frame {
    let Some(doc) = super::docs::doc(spec.name) else {
        return Frame::Map(Vec::new());
    };
    Frame::Map(vec![
        (Frame::bulk("summary"), Frame::bulk(doc.summary)),
        (Frame::bulk("since"), Frame::bulk(doc.since)),
        (Frame::bulk("group"), Frame::bulk(doc.group)),
    ])
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
