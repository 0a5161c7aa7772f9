//! Command parsing: names, arities, options and Redis' error wording.

use bytes::Bytes;
use raft_core::NodeId;

use super::*;
use crate::resp::{Frame, Protocol};
use crate::state_machine::{MemberAddress, ReadCommand, SetCondition, WriteCommand};

fn b(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn parse_line(line: &str) -> Result<Command, CommandError> {
    parse_line_with(line, &CommandLimits::default())
}

fn parse_line_with(line: &str, limits: &CommandLimits) -> Result<Command, CommandError> {
    let words: Vec<Bytes> = line.split(' ').map(b).collect();
    parse(
        Frame::Array(words.into_iter().map(Frame::Bulk).collect()),
        limits,
    )
}

fn set(key: &str, value: &str, condition: SetCondition, get: bool) -> Command {
    Command::Write(WriteCommand::Set {
        key: b(key),
        value: b(value),
        condition,
        get,
    })
}

#[test]
fn writes_parse_to_log_commands() {
    let cases: Vec<(&str, Command)> = vec![
        ("SET k v", set("k", "v", SetCondition::Always, false)),
        ("set k v nx", set("k", "v", SetCondition::IfAbsent, false)),
        (
            "SeT k v XX GET",
            set("k", "v", SetCondition::IfPresent, true),
        ),
        (
            "SET k v GET NX",
            set("k", "v", SetCondition::IfAbsent, true),
        ),
        (
            "SET k v KEEPTTL",
            set("k", "v", SetCondition::Always, false),
        ),
        (
            "GETSET k v",
            Command::Write(WriteCommand::GetSet {
                key: b("k"),
                value: b("v"),
            }),
        ),
        (
            "DEL a b a",
            Command::Write(WriteCommand::Del {
                keys: vec![b("a"), b("b"), b("a")],
            }),
        ),
        (
            "INCR n",
            Command::Write(WriteCommand::IncrBy {
                key: b("n"),
                delta: 1,
            }),
        ),
        (
            "DECR n",
            Command::Write(WriteCommand::IncrBy {
                key: b("n"),
                delta: -1,
            }),
        ),
        (
            "INCRBY n -5",
            Command::Write(WriteCommand::IncrBy {
                key: b("n"),
                delta: -5,
            }),
        ),
        (
            "DECRBY n 5",
            Command::Write(WriteCommand::IncrBy {
                key: b("n"),
                delta: -5,
            }),
        ),
        (
            "DECRBY n -9223372036854775807",
            Command::Write(WriteCommand::IncrBy {
                key: b("n"),
                delta: i64::MAX,
            }),
        ),
        (
            "APPEND k tail",
            Command::Write(WriteCommand::Append {
                key: b("k"),
                value: b("tail"),
            }),
        ),
        (
            "MSET a 1 b 2",
            Command::Write(WriteCommand::MSet {
                pairs: vec![(b("a"), b("1")), (b("b"), b("2"))],
            }),
        ),
    ];
    for (line, expected) in cases {
        let command = parse_line(line);
        assert_eq!(command, Ok(expected), "{line}");
        assert_eq!(command.map(|c| c.kind()), Ok(CommandKind::Write), "{line}");
    }
}

#[test]
fn reads_parse_to_read_commands() {
    let scan = |cursor, pattern: Option<&str>, count, type_excludes_strings| {
        Command::Read(ReadCommand::Scan {
            cursor,
            pattern: pattern.map(b),
            count,
            type_excludes_strings,
        })
    };
    let cases: Vec<(&str, Command)> = vec![
        ("GET k", Command::Read(ReadCommand::Get { key: b("k") })),
        (
            "mget a b",
            Command::Read(ReadCommand::MGet {
                keys: vec![b("a"), b("b")],
            }),
        ),
        (
            "EXISTS a a",
            Command::Read(ReadCommand::Exists {
                keys: vec![b("a"), b("a")],
            }),
        ),
        (
            "STRLEN k",
            Command::Read(ReadCommand::StrLen { key: b("k") }),
        ),
        ("DBSIZE", Command::Read(ReadCommand::DbSize)),
        (
            "KEYS user:*",
            Command::Read(ReadCommand::Keys {
                pattern: b("user:*"),
            }),
        ),
        ("SCAN 0", scan(0, None, 10, false)),
        (
            "SCAN 18446744073709551615 MATCH a* COUNT 5",
            scan(u64::MAX, Some("a*"), 5, false),
        ),
        (
            "scan 7 count 99999999",
            scan(7, None, keyspace::SCAN_COUNT_MAX, false),
        ),
        ("SCAN 0 TYPE string", scan(0, None, 10, false)),
        ("SCAN 0 TYPE hash", scan(0, None, 10, true)),
    ];
    for (line, expected) in cases {
        let command = parse_line(line);
        assert_eq!(command, Ok(expected), "{line}");
        assert_eq!(command.map(|c| c.kind()), Ok(CommandKind::Read), "{line}");
    }
}

#[test]
fn local_and_admin_commands_parse() {
    let local = |command| Command::Local(command);
    let cases: Vec<(&str, Command)> = vec![
        ("PING", local(LocalCommand::Ping { message: None })),
        (
            "ping hi",
            local(LocalCommand::Ping {
                message: Some(b("hi")),
            }),
        ),
        ("ECHO x", local(LocalCommand::Echo { message: b("x") })),
        ("SELECT 0", local(LocalCommand::Select)),
        ("QUIT", local(LocalCommand::Quit)),
        ("READONLY", local(LocalCommand::ReadOnly)),
        ("READWRITE", local(LocalCommand::ReadWrite)),
        (
            "HELLO",
            local(LocalCommand::Hello(Hello {
                protocol: None,
                auth: None,
                client_name: None,
            })),
        ),
        (
            "HELLO 3 AUTH default pw SETNAME app",
            local(LocalCommand::Hello(Hello {
                protocol: Some(Protocol::Resp3),
                auth: Some(Credentials {
                    username: b("default"),
                    password: b("pw"),
                }),
                client_name: Some(b("app")),
            })),
        ),
        (
            "AUTH pw",
            local(LocalCommand::Auth(Credentials {
                username: b("default"),
                password: b("pw"),
            })),
        ),
        (
            "AUTH u pw",
            local(LocalCommand::Auth(Credentials {
                username: b("u"),
                password: b("pw"),
            })),
        ),
        (
            "CLIENT SETNAME app",
            local(LocalCommand::Client(ClientCommand::SetName(b("app")))),
        ),
        (
            "client getname",
            local(LocalCommand::Client(ClientCommand::GetName)),
        ),
        ("CLIENT ID", local(LocalCommand::Client(ClientCommand::Id))),
        (
            "CLIENT SETINFO LIB-NAME redis-py",
            local(LocalCommand::Client(ClientCommand::SetInfo {
                attribute: ClientAttribute::LibraryName,
                value: b("redis-py"),
            })),
        ),
        ("COMMAND", local(LocalCommand::Command(CommandQuery::Info))),
        (
            "COMMAND DOCS",
            local(LocalCommand::Command(CommandQuery::Docs)),
        ),
        (
            "COMMAND COUNT",
            local(LocalCommand::Command(CommandQuery::Count)),
        ),
        ("INFO", local(LocalCommand::Info { sections: vec![] })),
        (
            "INFO Raft",
            local(LocalCommand::Info {
                sections: vec![b("raft")],
            }),
        ),
        (
            "CONFIG GET save",
            local(LocalCommand::ConfigGet {
                parameters: vec![b("save")],
            }),
        ),
        ("RAFT.STATUS", Command::Admin(AdminCommand::Status)),
        (
            "raft.promote 4",
            Command::Admin(AdminCommand::Promote { id: NodeId(4) }),
        ),
        (
            "RAFT.REMOVE 1",
            Command::Admin(AdminCommand::Remove { id: NodeId(1) }),
        ),
        (
            "RAFT.TRANSFER 2",
            Command::Admin(AdminCommand::Transfer { id: NodeId(2) }),
        ),
        (
            "RAFT.ADDLEARNER 4 10.0.0.4:7000 node4.example:6379",
            Command::Admin(AdminCommand::AddLearner {
                id: NodeId(4),
                address: MemberAddress {
                    peer: "10.0.0.4:7000".into(),
                    client: "node4.example:6379".into(),
                },
            }),
        ),
    ];
    for (line, expected) in cases {
        assert_eq!(parse_line(line), Ok(expected), "{line}");
    }
}

#[test]
fn errors_use_redis_wording() {
    let cases: &[(&str, &str)] = &[
        (
            "foo a b",
            "ERR unknown command 'foo', with args beginning with: 'a' 'b' ",
        ),
        (
            "foo",
            "ERR unknown command 'foo', with args beginning with: ",
        ),
        ("GET", "ERR wrong number of arguments for 'get' command"),
        ("GET a b", "ERR wrong number of arguments for 'get' command"),
        ("SET k", "ERR wrong number of arguments for 'set' command"),
        (
            "MSET a 1 b",
            "ERR wrong number of arguments for 'mset' command",
        ),
        ("DEL", "ERR wrong number of arguments for 'del' command"),
        (
            "PING a b",
            "ERR wrong number of arguments for 'ping' command",
        ),
        (
            "CLIENT SETNAME",
            "ERR wrong number of arguments for 'client|setname' command",
        ),
        (
            "CLIENT FOO",
            "ERR unknown subcommand 'FOO'. Try CLIENT HELP.",
        ),
        (
            "COMMAND FOO",
            "ERR unknown subcommand 'FOO'. Try COMMAND HELP.",
        ),
        (
            "CLIENT SETNAME a\nb",
            "ERR Client names cannot contain spaces, newlines or special characters.",
        ),
        (
            "CLIENT SETINFO LIB-FOO x",
            "ERR Unrecognized option 'LIB-FOO'",
        ),
        ("INCRBY n x", "ERR value is not an integer or out of range"),
        (
            "INCRBY n 9223372036854775808",
            "ERR value is not an integer or out of range",
        ),
        (
            "DECRBY n -9223372036854775808",
            "ERR decrement would overflow",
        ),
        ("SET k v NX XX", "ERR syntax error"),
        ("SET k v XX NX", "ERR syntax error"),
        ("SET k v FOO", "ERR syntax error"),
        (
            "SET k v EX 10",
            "ERR expiry is not supported by raftkv (SET option 'EX'); keys live until deleted",
        ),
        (
            "SET k v px 10",
            "ERR expiry is not supported by raftkv (SET option 'px'); keys live until deleted",
        ),
        ("SCAN x", "ERR invalid cursor"),
        ("SCAN 0 COUNT 0", "ERR syntax error"),
        (
            "SCAN 0 COUNT x",
            "ERR value is not an integer or out of range",
        ),
        ("SCAN 0 MATCH", "ERR syntax error"),
        ("SELECT 1", "ERR DB index is out of range"),
        ("SELECT x", "ERR value is not an integer or out of range"),
        ("HELLO 4", "NOPROTO unsupported protocol version"),
        (
            "HELLO x",
            "ERR Protocol version is not an integer or out of range",
        ),
        ("HELLO 3 AUTH u", "ERR Syntax error in HELLO option 'AUTH'"),
        (
            "CONFIG SET save x",
            "ERR CONFIG SET is not supported: raftkv is configured at start-up",
        ),
        (
            "RAFT.PROMOTE 0",
            "ERR invalid node id '0': expected an integer from 1 to 18446744073709551615",
        ),
        (
            "RAFT.PROMOTE x",
            "ERR invalid node id 'x': expected an integer from 1 to 18446744073709551615",
        ),
        (
            "RAFT.ADDLEARNER 4 nohost 1.2.3.4:1",
            "ERR invalid address 'nohost': expected host:port",
        ),
        (
            "RAFT.ADDLEARNER 4 h:0 h:1",
            "ERR invalid address 'h:0': expected host:port",
        ),
        (
            "RAFT.ADDLEARNER 4 :80 h:1",
            "ERR invalid address ':80': expected host:port",
        ),
    ];
    for (line, expected) in cases {
        let error = parse_line(line).expect_err(line);
        assert_eq!(error.to_string(), *expected, "{line}");
    }
}

#[test]
fn key_and_value_limits_are_checked_at_parse_time() {
    let limits = CommandLimits {
        key_bytes_max: 4,
        value_bytes_max: 8,
    };
    let cases: &[(&str, CommandError)] = &[
        ("GET kkkkk", CommandError::KeyTooLarge { len: 5, max: 4 }),
        ("SET kkkkk v", CommandError::KeyTooLarge { len: 5, max: 4 }),
        (
            "SET k vvvvvvvvv",
            CommandError::ValueTooLarge { len: 9, max: 8 },
        ),
        (
            "MSET a 1 kkkkk 2",
            CommandError::KeyTooLarge { len: 5, max: 4 },
        ),
        (
            "APPEND k vvvvvvvvv",
            CommandError::ValueTooLarge { len: 9, max: 8 },
        ),
        ("KEYS ppppp", CommandError::KeyTooLarge { len: 5, max: 4 }),
        (
            "ECHO vvvvvvvvv",
            CommandError::ValueTooLarge { len: 9, max: 8 },
        ),
    ];
    for (line, expected) in cases {
        assert_eq!(
            parse_line_with(line, &limits),
            Err(expected.clone()),
            "{line}"
        );
    }
    assert_eq!(
        CommandError::KeyTooLarge { len: 5, max: 4 }.to_string(),
        "ERR key is 5 bytes, over the 4-byte limit"
    );
    assert!(parse_line_with("SET kkkk vvvvvvvv", &limits).is_ok());
}

#[test]
fn only_auth_hello_and_quit_run_before_authentication() {
    let cases = [
        ("AUTH pw", true),
        ("HELLO 3", true),
        ("QUIT", true),
        ("PING", false),
        ("GET k", false),
    ];
    for (line, allowed) in cases {
        let command = parse_line(line).expect(line);
        assert_eq!(command.allowed_before_auth(), allowed, "{line}");
    }
}

#[test]
fn credentials_are_checked_against_the_configured_password() {
    let creds = |user: &str, pass: &str| Credentials {
        username: b(user),
        password: b(pass),
    };
    type Case<'a> = (Option<&'a [u8]>, Credentials, Result<(), CommandError>);
    let cases: &[Case] = &[
        (Some(b"secret"), creds("default", "secret"), Ok(())),
        (
            Some(b"secret"),
            creds("default", "secreT"),
            Err(CommandError::WrongPass),
        ),
        (
            Some(b"secret"),
            creds("default", "secret2"),
            Err(CommandError::WrongPass),
        ),
        (
            Some(b"secret"),
            creds("admin", "secret"),
            Err(CommandError::WrongPass),
        ),
        (
            None,
            creds("default", "x"),
            Err(CommandError::AuthNotConfigured),
        ),
    ];
    for (configured, credentials, expected) in cases {
        assert_eq!(
            check_credentials(*configured, credentials),
            *expected,
            "{credentials:?}"
        );
    }
    assert_eq!(
        CommandError::WrongPass.to_string(),
        "WRONGPASS invalid username-password pair or user is disabled."
    );
    assert_eq!(
        CommandError::NoAuth.to_string(),
        "NOAUTH Authentication required."
    );
}

#[test]
fn stateless_local_commands_reply_like_redis() {
    let cases: Vec<(&str, Option<Frame>)> = vec![
        ("PING", Some(Frame::Simple("PONG".into()))),
        ("PING hi", Some(Frame::bulk("hi"))),
        ("ECHO x", Some(Frame::bulk("x"))),
        ("SELECT 0", Some(Frame::ok())),
        ("COMMAND", Some(Frame::Array(vec![]))),
        ("COMMAND DOCS", Some(Frame::Map(vec![]))),
        (
            "COMMAND COUNT",
            Some(Frame::Integer(i64::try_from(SPECS.len()).expect("small"))),
        ),
        (
            "CONFIG GET save appendonly nosuch",
            Some(Frame::Map(vec![
                (Frame::bulk("save"), Frame::bulk("")),
                (Frame::bulk("appendonly"), Frame::bulk("no")),
            ])),
        ),
        ("INFO", None),
        ("CLIENT ID", None),
    ];
    for (line, expected) in cases {
        let Ok(Command::Local(local)) = parse_line(line) else {
            panic!("{line} is not local")
        };
        assert_eq!(local.stateless_reply(), expected, "{line}");
    }
}

#[test]
fn hello_reply_reports_the_protocol() {
    let Frame::Map(fields) = hello_reply(Protocol::Resp3, 7, "master") else {
        panic!("HELLO replies with a map")
    };
    assert!(fields.contains(&(Frame::bulk("proto"), Frame::Integer(3))));
    assert!(fields.contains(&(Frame::bulk("id"), Frame::Integer(7))));
}

#[test]
fn non_bulk_requests_are_refused() {
    let cases = [
        Frame::Integer(1),
        Frame::Array(vec![]),
        Frame::Array(vec![Frame::Integer(1)]),
    ];
    for frame in cases {
        assert_eq!(
            parse(frame.clone(), &CommandLimits::default()),
            Err(CommandError::Syntax),
            "{frame:?}"
        );
    }
}
