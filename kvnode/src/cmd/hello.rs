//! HELLO and AUTH: protocol negotiation and authentication (checked by `crate::acl`),
//! plus the HELLO reply so every connection answers it the same way.

use bytes::Bytes;

use super::args::{is, Context};
use super::client::check_client_name;
use super::error::CommandError;
use super::local::LocalCommand;
use super::Command;
use crate::resp::number::parse_i64;
use crate::resp::{Frame, Protocol};

/// A parsed `HELLO [protover [AUTH username password] [SETNAME clientname]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The protocol to switch to; `None` keeps the current one.
    pub protocol: Option<Protocol>,
    /// Credentials to check before anything else takes effect.
    pub auth: Option<Credentials>,
    /// A client name to set.
    pub client_name: Option<Bytes>,
}

/// A username and password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub username: Bytes,
    pub password: Bytes,
    /// The one-argument `AUTH password`, which names `default` implicitly.
    pub implicit_user: bool,
}

/// `HELLO [protover [AUTH username password] [SETNAME clientname]]`
pub(super) fn parse_hello(args: &[Bytes], _: &Context<'_>) -> Result<Command, CommandError> {
    let Some((version, options)) = args.split_first() else {
        let hello = Hello {
            protocol: None,
            auth: None,
            client_name: None,
        };
        return Ok(Command::Local(LocalCommand::Hello(hello)));
    };
    let protocol = match parse_i64(version).ok_or(CommandError::ProtocolVersionNotInteger)? {
        2 => Protocol::Resp2,
        3 => Protocol::Resp3,
        _ => return Err(CommandError::UnsupportedProtocol),
    };
    let mut hello = Hello {
        protocol: Some(protocol),
        auth: None,
        client_name: None,
    };
    let mut rest = options;
    // Bounded: each arm consumes at least two arguments.
    loop {
        match rest {
            [] => return Ok(Command::Local(LocalCommand::Hello(hello))),
            [option, username, password, tail @ ..] if is(option, "AUTH") => {
                let (username, password) = (username.clone(), password.clone());
                hello.auth = Some(Credentials {
                    username,
                    password,
                    implicit_user: false,
                });
                rest = tail;
            }
            [option, name, tail @ ..] if is(option, "SETNAME") => {
                check_client_name(name)?;
                hello.client_name = Some(name.clone());
                rest = tail;
            }
            [option, ..] => {
                return Err(CommandError::HelloSyntax {
                    option: option.clone(),
                })
            }
        }
    }
}

/// `AUTH [username] password`
pub(super) fn parse_auth(args: &[Bytes], _: &Context<'_>) -> Result<Command, CommandError> {
    let credentials = match args {
        [password] => Credentials {
            username: Bytes::from_static(b"default"),
            password: password.clone(),
            implicit_user: true,
        },
        [username, password] => Credentials {
            username: username.clone(),
            password: password.clone(),
            implicit_user: false,
        },
        _ => return Err(CommandError::Syntax),
    };
    Ok(Command::Local(LocalCommand::Auth(credentials)))
}

/// The map HELLO replies with (Redis' fields, so clients that read them are satisfied).
pub fn hello_reply(protocol: Protocol, client_id: u64, role: &str) -> Frame {
    let proto = match protocol {
        Protocol::Resp2 => 2,
        Protocol::Resp3 => 3,
    };
    let field = |name: &str, value: Frame| (Frame::bulk(name), value);
    Frame::Map(vec![
        field("server", Frame::bulk("redis")),
        field("version", Frame::bulk("7.2.0")),
        field("proto", Frame::Integer(proto)),
        field(
            "id",
            Frame::Integer(i64::try_from(client_id).unwrap_or(i64::MAX)),
        ),
        field("mode", Frame::bulk("standalone")),
        field("role", Frame::bulk(role)),
        field("modules", Frame::Array(Vec::new())),
    ])
}
