//! CLIENT SETNAME, GETNAME, ID and SETINFO: per-connection metadata. redis-cli and client
//! libraries send SETINFO on connect, so it must succeed.

use bytes::Bytes;

use super::args::{is, Context};
use super::error::CommandError;
use super::local::LocalCommand;
use super::Command;

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
