//! Local, admin and introspection commands, errors in Redis's wording, limits,
//! authentication, and the command table's flags.

use super::*;

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
        ("SELECT 0", local(LocalCommand::Select(DbIndex(0)))),
        ("SELECT 15", local(LocalCommand::Select(DbIndex(15)))),
        ("MULTI", local(LocalCommand::Multi)),
        ("exec", local(LocalCommand::Exec)),
        ("DISCARD", local(LocalCommand::Discard)),
        ("UNWATCH", local(LocalCommand::Unwatch)),
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
                    implicit_user: false,
                }),
                client_name: Some(b("app")),
            })),
        ),
        (
            "AUTH pw",
            local(LocalCommand::Auth(Credentials {
                username: b("default"),
                password: b("pw"),
                implicit_user: true,
            })),
        ),
        (
            "AUTH u pw",
            local(LocalCommand::Auth(Credentials {
                username: b("u"),
                password: b("pw"),
                implicit_user: false,
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
        (
            "COMMAND",
            local(LocalCommand::Command(CommandQuery::Info(vec![]))),
        ),
        (
            "COMMAND INFO get",
            local(LocalCommand::Command(CommandQuery::Info(vec![b("get")]))),
        ),
        (
            "COMMAND DOCS",
            local(LocalCommand::Command(CommandQuery::Docs(vec![]))),
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
            local(LocalCommand::Config(ConfigCommand::Get {
                patterns: vec![b("save")],
            })),
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
        ("SET k v EX 10 PX 10", "ERR syntax error"),
        ("SET k v EX 10 KEEPTTL", "ERR syntax error"),
        ("SET k v KEEPTTL EX 10", "ERR syntax error"),
        ("SET k v EX", "ERR syntax error"),
        (
            "SET k v EX x",
            "ERR value is not an integer or out of range",
        ),
        ("SETEX k x v", "ERR value is not an integer or out of range"),
        ("GETEX k PERSIST EX 1", "ERR syntax error"),
        ("GETEX k FOO", "ERR syntax error"),
        (
            "EXPIRE k 10 NX XX",
            "ERR NX and XX, GT or LT options at the same time are not compatible",
        ),
        (
            "EXPIRE k 10 GT LT",
            "ERR GT and LT options at the same time are not compatible",
        ),
        ("EXPIRE k 10 FOO", "ERR Unsupported option FOO"),
        ("EXPIRE k x FOO", "ERR Unsupported option FOO"),
        ("EXPIRE k x", "ERR value is not an integer or out of range"),
        ("INCRBYFLOAT k abc", "ERR value is not a valid float"),
        ("INCRBYFLOAT k nan", "ERR value is not a valid float"),
        ("SETRANGE k -1 x", "ERR offset is out of range"),
        (
            "SETRANGE k 67108864 x",
            "ERR string exceeds maximum allowed size (proto-max-bulk-len)",
        ),
        (
            "MSETNX a 1 b",
            "ERR wrong number of arguments for 'msetnx' command",
        ),
        (
            "COPY a a",
            "ERR source and destination objects are the same",
        ),
        (
            "COPY a b DB x",
            "ERR value is not an integer or out of range",
        ),
        ("COPY a b DB 16", "ERR DB index is out of range"),
        ("COPY a b FOO", "ERR syntax error"),
        (
            "MOVE a 0",
            "ERR source and destination objects are the same",
        ),
        ("MOVE a 16", "ERR DB index is out of range"),
        ("MOVE a x", "ERR value is not an integer or out of range"),
        ("SWAPDB x 1", "ERR invalid first DB index"),
        ("SWAPDB 0 x", "ERR invalid second DB index"),
        ("SWAPDB 0 99", "ERR DB index is out of range"),
        ("FLUSHALL FOO", "ERR syntax error"),
        ("FLUSHDB ASYNC SYNC", "ERR syntax error"),
        (
            "GETRANGE k x 1",
            "ERR value is not an integer or out of range",
        ),
        (
            "COMMAND INFO",
            "ERR wrong number of arguments for 'command|info' command",
        ),
        ("SCAN x", "ERR invalid cursor"),
        ("SCAN 0 COUNT 0", "ERR syntax error"),
        (
            "SCAN 0 COUNT x",
            "ERR value is not an integer or out of range",
        ),
        ("SCAN 0 MATCH", "ERR syntax error"),
        ("SELECT 16", "ERR DB index is out of range"),
        ("SELECT -1", "ERR DB index is out of range"),
        ("SELECT x", "ERR value is not an integer or out of range"),
        ("HELLO 4", "NOPROTO unsupported protocol version"),
        (
            "HELLO x",
            "ERR Protocol version is not an integer or out of range",
        ),
        ("HELLO 3 AUTH u", "ERR Syntax error in HELLO option 'AUTH'"),
        (
            "CONFIG SET save",
            "ERR wrong number of arguments for 'config|set' command",
        ),
        (
            "OBJECT ENCODING",
            "ERR wrong number of arguments for 'object|encoding' command",
        ),
        (
            "OBJECT FOO k",
            "ERR unknown subcommand 'FOO'. Try OBJECT HELP.",
        ),
        ("CLIENT KILL ID x", "ERR client-id should be greater than 0"),
        ("CLIENT KILL ID 1 SKIPME maybe", "ERR syntax error"),
        ("CLIENT KILL ID 1 FOO", "ERR syntax error"),
        ("CLIENT KILL USER nobody", "ERR No such user 'nobody'"),
        ("CLIENT KILL TYPE foo", "ERR Unknown client type 'foo'"),
        ("CLIENT LIST TYPE x", "ERR Unknown client type 'x'"),
        ("CLIENT LIST ID abc", "ERR Invalid client ID"),
        ("CLIENT LIST FOO", "ERR syntax error"),
        (
            "CLIENT INFO x",
            "ERR wrong number of arguments for 'client|info' command",
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
        ..CommandLimits::default()
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
        implicit_user: true,
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
        let users = crate::acl::Users::default();
        assert_eq!(
            crate::acl::authenticate(&users, *configured, credentials).map(|_| ()),
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
        (
            "COMMAND DOCS get nosuch",
            Some(Frame::Map(vec![(
                Frame::bulk("get"),
                Frame::Map(vec![
                    (
                        Frame::bulk("summary"),
                        Frame::bulk("Returns the string value of a key."),
                    ),
                    (Frame::bulk("since"), Frame::bulk("1.0.0")),
                    (Frame::bulk("group"), Frame::bulk("string")),
                ]),
            )])),
        ),
        (
            "COMMAND COUNT",
            Some(Frame::Integer(i64::try_from(SPECS.len()).expect("small"))),
        ),
        ("CONFIG GET save", None),
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
        let limits = CommandLimits::default();
        let context = Context {
            limits: &limits,
            db: DbIndex(0),
        };
        assert_eq!(
            parse(frame.clone(), &context),
            Err(CommandError::Syntax),
            "{frame:?}"
        );
    }
}

#[test]
fn command_info_describes_the_table() {
    let Ok(Command::Local(local)) = parse_line("COMMAND INFO get nosuch SET") else {
        panic!("local");
    };
    let Some(Frame::Array(infos)) = local.stateless_reply() else {
        panic!("an array");
    };
    assert_eq!(infos.len(), 3);
    let Frame::Array(get) = &infos[0] else {
        panic!("GET's info")
    };
    assert_eq!(get[0], Frame::bulk("get"));
    assert_eq!(get[1], Frame::Integer(2));
    assert_eq!(
        get[2],
        Frame::Array(vec![
            Frame::Simple("readonly".into()),
            Frame::Simple("fast".into())
        ])
    );
    assert_eq!(
        &get[3..6],
        &[Frame::Integer(1), Frame::Integer(1), Frame::Integer(1)]
    );
    assert_eq!(infos[1], Frame::Null);
    let Frame::Array(set) = &infos[2] else {
        panic!("SET's info")
    };
    assert_eq!(set[0], Frame::bulk("set"));
    assert!(
        matches!(&set[2], Frame::Array(flags) if flags.contains(&Frame::Simple("write".into())))
    );
    let Some(Frame::Array(all)) = parse_line("COMMAND").ok().and_then(|c| match c {
        Command::Local(local) => local.stateless_reply(),
        _ => None,
    }) else {
        panic!("COMMAND");
    };
    assert_eq!(all.len(), SPECS.len());
}

#[test]
fn every_write_is_flagged_write_and_every_read_readonly() {
    for spec in SPECS {
        let both = spec.flags & flags::WRITE != 0 && spec.flags & flags::READONLY != 0;
        assert!(!both, "{} is flagged both write and readonly", spec.name);
    }
    for (line, flag) in [
        ("SET k v", flags::WRITE),
        ("GET k", flags::READONLY),
        ("EXPIRE k 1", flags::WRITE),
        ("TTL k", flags::READONLY),
    ] {
        let name = line.split(' ').next().expect("a name").to_ascii_lowercase();
        let spec = SPECS
            .iter()
            .find(|spec| spec.name == name)
            .expect("in the table");
        assert!(spec.flags & flag != 0, "{line}");
    }
}
