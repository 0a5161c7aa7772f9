//! OBJECT ENCODING | REFCOUNT | FREQ | IDLETIME key, and OBJECT HELP. The first four are
//! reads (linearizable, like GET); what each reports is in
//! [`crate::state_machine::object`].

use bytes::Bytes;

use super::args::{is, key, Context};
use super::error::CommandError;
use super::local::LocalCommand;
use super::{read, Command};
use crate::state_machine::{ObjectField, ReadOp};

/// OBJECT HELP's lines, as Redis words them.
const HELP: &[&str] = &[
    "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
    "HELP",
    "    Prints this help.",
];

/// `OBJECT subcommand ...`
pub(super) fn parse_object(args: &[Bytes], context: &Context<'_>) -> Result<Command, CommandError> {
    let (sub, rest) = args
        .split_first()
        .ok_or(CommandError::WrongArity { command: "object" })?;
    let fields = [
        ("ENCODING", ObjectField::Encoding, "object|encoding"),
        ("REFCOUNT", ObjectField::RefCount, "object|refcount"),
        ("FREQ", ObjectField::Freq, "object|freq"),
        ("IDLETIME", ObjectField::IdleTime, "object|idletime"),
    ];
    if let Some((_, field, full_name)) = fields.iter().find(|(name, _, _)| is(sub, name)) {
        let [target] = rest else {
            return Err(CommandError::WrongArity { command: full_name });
        };
        let op = ReadOp::Object {
            key: key(target, context.limits)?,
            field: *field,
        };
        return read(context, op);
    }
    if is(sub, "HELP") {
        if !rest.is_empty() {
            return Err(CommandError::WrongArity {
                command: "object|help",
            });
        }
        return Ok(Command::Local(LocalCommand::Help { lines: HELP }));
    }
    Err(CommandError::UnknownSubcommand {
        command: "OBJECT",
        subcommand: sub.clone(),
    })
}
