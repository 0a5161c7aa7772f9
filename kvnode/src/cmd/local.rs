//! Commands a node answers by itself: connection state, negotiation and introspection.
//! None of them touches the replicated state or the Raft log.

use bytes::Bytes;

use super::client::ClientCommand;
use super::hello::{Credentials, Hello};
use super::introspection::{command_reply, config_get_reply, CommandQuery};
use crate::resp::Frame;

/// A connection-local or node-local command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocalCommand {
    Ping {
        message: Option<Bytes>,
    },
    Echo {
        message: Bytes,
    },
    Hello(Hello),
    Auth(Credentials),
    Client(ClientCommand),
    Command(CommandQuery),
    /// Lower-cased section names; empty means the default sections.
    Info {
        sections: Vec<Bytes>,
    },
    ConfigGet {
        parameters: Vec<Bytes>,
    },
    /// `SELECT 0`, the only database.
    Select,
    Quit,
    /// Opt this connection into stale (local, no ReadIndex) reads.
    ReadOnly,
    /// Back to linearizable reads.
    ReadWrite,
}

impl LocalCommand {
    /// The reply, for commands whose reply depends on nothing but the command itself.
    /// `None` for those that need connection or node state (HELLO, AUTH, CLIENT, INFO);
    /// QUIT, READONLY and READWRITE reply `+OK` but the caller must also act on them.
    pub fn stateless_reply(&self) -> Option<Frame> {
        match self {
            LocalCommand::Ping { message: None } => Some(Frame::Simple("PONG".to_owned())),
            LocalCommand::Ping {
                message: Some(message),
            } => Some(Frame::Bulk(message.clone())),
            LocalCommand::Echo { message } => Some(Frame::Bulk(message.clone())),
            LocalCommand::Command(query) => Some(command_reply(query)),
            LocalCommand::ConfigGet { parameters } => Some(config_get_reply(parameters)),
            LocalCommand::Select
            | LocalCommand::Quit
            | LocalCommand::ReadOnly
            | LocalCommand::ReadWrite => Some(Frame::ok()),
            LocalCommand::Hello(_)
            | LocalCommand::Auth(_)
            | LocalCommand::Client(_)
            | LocalCommand::Info { .. } => None,
        }
    }
}
