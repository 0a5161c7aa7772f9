//! What clients and tools ask a node about itself, over raw RESP on a 1-node cluster:
//! INFO's sections and keyspace, CLIENT LIST / INFO / KILL (both forms), CONFIG GET and
//! SET, OBJECT. The real client libraries (`clients.rs`) and the comparison with Redis
//! (`differential.rs`) check the same replies from the other side.

#[path = "support/cluster.rs"]
mod support;

use std::time::{Duration, Instant};

use support::{Client, Cluster, Options, Reply};

fn text(reply: Reply) -> String {
    reply
        .bulk_string()
        .unwrap_or_else(|| panic!("expected a bulk string, got {reply:?}"))
}

/// The `key:value` fields of an INFO reply.
fn fields(info: &str) -> Vec<(String, String)> {
    info.lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

fn field(info: &str, key: &str) -> Option<String> {
    fields(info)
        .into_iter()
        .find(|(name, _)| name == key)
        .map(|(_, value)| value)
}

/// Polls until `check` holds of a fresh CLIENT LIST, or panics with the last one.
fn wait_for_list(client: &mut Client, what: &str, check: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let list = text(client.cmd(&["CLIENT", "LIST"]).expect("CLIENT LIST"));
        if check(&list) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}; CLIENT LIST:\n{list}");
        std::thread::sleep(support::POLL_INTERVAL);
    }
}

#[test]
fn info_client_config_and_object_answer_like_redis() {
    let options = Options {
        storage: "memory",
        ..Options::default()
    };
    let cluster = Cluster::start(1, options);
    cluster.wait_for_leader_among(&[1], Duration::from_secs(20));
    let port = cluster.addr(1).port();
    let mut me = cluster.client(1);

    let info = text(me.cmd(&["INFO"]).expect("INFO"));
    let headers: Vec<&str> = info.lines().filter(|line| line.starts_with('#')).collect();
    assert_eq!(
        headers,
        [
            "# Server",
            "# Clients",
            "# Memory",
            "# Persistence",
            "# Stats",
            "# Replication",
            "# CPU",
            "# Cluster",
            "# Keyspace",
            "# Raft"
        ]
    );
    let keys: Vec<String> = fields(&info).into_iter().map(|(key, _)| key).collect();
    let mut unique = keys.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), keys.len(), "INFO repeats a key: {keys:?}");
    assert_eq!(field(&info, "tcp_port"), Some(port.to_string()));
    assert_eq!(field(&info, "arch_bits").as_deref(), Some("64"));
    assert_eq!(field(&info, "role").as_deref(), Some("master"));
    assert_eq!(field(&info, "raft_role").as_deref(), Some("leader"));
    assert_eq!(field(&info, "cluster_enabled").as_deref(), Some("0"));
    assert!(field(&info, "used_memory").is_some_and(|bytes| bytes.parse::<u64>().unwrap() > 0));

    for (key, ttl) in [("a", None), ("b", Some("100")), ("c", None)] {
        let mut args = vec!["SET", key, "1"];
        args.extend(ttl.map(|seconds| ["EX", seconds]).into_iter().flatten());
        assert!(me.cmd(&args).expect("SET").is_ok());
    }
    assert!(me.cmd(&["SELECT", "3"]).expect("SELECT").is_ok());
    assert!(me
        .cmd(&["SET", "d", "x", "PX", "100000"])
        .expect("SET")
        .is_ok());
    let keyspace = text(me.cmd(&["info", "KEYSPACE"]).expect("INFO keyspace"));
    assert_eq!(
        keyspace,
        "# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=0\r\ndb3:keys=1,expires=1,avg_ttl=0\r\n"
    );
    assert_eq!(text(me.cmd(&["INFO", "nosuch"]).expect("INFO")), "");

    // CLIENT: this connection (db 3, named, READONLY) and another one.
    assert!(me
        .cmd(&["CLIENT", "SETNAME", "me"])
        .expect("SETNAME")
        .is_ok());
    assert!(me.cmd(&["READONLY"]).expect("READONLY").is_ok());
    let mine = text(me.cmd(&["CLIENT", "INFO"]).expect("CLIENT INFO"));
    let Reply::Integer(my_id) = me.cmd(&["CLIENT", "ID"]).expect("CLIENT ID") else {
        panic!("CLIENT ID is an integer");
    };
    assert!(
        mine.starts_with(&format!("id={my_id} addr=127.0.0.1:")),
        "{mine}"
    );
    for part in [
        " name=me ",
        " flags=r ",
        " db=3 ",
        " multi=-1 ",
        " cmd=client ",
        " resp=2 ",
    ] {
        assert!(mine.contains(part), "CLIENT INFO lacks {part:?}: {mine}");
    }
    let mut other = cluster.client(1);
    assert!(other
        .cmd(&["CLIENT", "SETNAME", "other"])
        .expect("SETNAME")
        .is_ok());
    let Reply::Integer(other_id) = other.cmd(&["CLIENT", "ID"]).expect("CLIENT ID") else {
        panic!("CLIENT ID is an integer");
    };
    wait_for_list(&mut me, "both connections are listed", |list| {
        list.contains(" name=me ") && list.contains(" name=other ")
    });
    let only_other = text(
        me.cmd(&["CLIENT", "LIST", "ID", &other_id.to_string()])
            .expect("CLIENT LIST ID"),
    );
    assert_eq!(only_other.lines().count(), 1, "{only_other}");
    assert!(only_other.contains(" name=other "), "{only_other}");
    assert_eq!(
        me.cmd(&["CLIENT", "LIST", "TYPE", "pubsub"]).expect("LIST"),
        Reply::Bulk(Some(Vec::new()))
    );

    // The new form skips the asking connection by default and counts what it closed.
    assert_eq!(
        me.cmd(&["CLIENT", "KILL", "ID", &my_id.to_string()])
            .expect("KILL"),
        Reply::Integer(0)
    );
    assert_eq!(
        me.cmd(&["CLIENT", "KILL", "ID", &other_id.to_string()])
            .expect("KILL"),
        Reply::Integer(1)
    );
    assert!(
        other.cmd(&["PING"]).is_err(),
        "a killed connection is closed"
    );
    wait_for_list(&mut me, "the killed connection is gone", |list| {
        !list.contains(" name=other ")
    });
    assert_eq!(
        me.cmd(&["CLIENT", "KILL", "1.2.3.4:5"]).expect("KILL"),
        Reply::Error("ERR No such client".into())
    );
    // The old form closes the asking connection too, after its reply.
    let mut third = cluster.client(1);
    let third_info = text(third.cmd(&["CLIENT", "INFO"]).expect("CLIENT INFO"));
    let addr = third_info
        .split(' ')
        .find_map(|part| part.strip_prefix("addr="))
        .expect("an addr field")
        .to_owned();
    assert!(third.cmd(&["CLIENT", "KILL", &addr]).expect("KILL").is_ok());
    assert!(
        third.cmd(&["PING"]).is_err(),
        "killed itself after the reply"
    );

    // CONFIG GET with patterns; CONFIG SET only to the current value.
    assert_eq!(
        me.cmd(&["CONFIG", "GET", "port", "maxmemory*"])
            .expect("CONFIG GET"),
        Reply::Array(Some(
            [
                "port",
                &port.to_string(),
                "maxmemory",
                "0",
                "maxmemory-policy",
                "noeviction"
            ]
            .iter()
            .map(|item| Reply::Bulk(Some(item.as_bytes().to_vec())))
            .collect()
        ))
    );
    assert!(me
        .cmd(&["CONFIG", "SET", "appendonly", "no"])
        .expect("SET")
        .is_ok());
    assert!(matches!(
        me.cmd(&["CONFIG", "SET", "appendonly", "yes"]).expect("SET"),
        Reply::Error(error) if error.starts_with("ERR CONFIG SET failed (possibly related to argument 'appendonly')")
    ));

    // OBJECT, in database 3 (this connection's).
    assert!(me.cmd(&["SET", "n", "42"]).expect("SET").is_ok());
    assert!(me
        .cmd(&["SET", "long", &"x".repeat(45)])
        .expect("SET")
        .is_ok());
    for (key, encoding) in [("n", "int"), ("d", "embstr"), ("long", "raw")] {
        assert_eq!(
            me.cmd(&["OBJECT", "ENCODING", key]).expect("OBJECT"),
            Reply::Bulk(Some(encoding.as_bytes().to_vec())),
            "{key}"
        );
    }
    assert_eq!(
        me.cmd(&["OBJECT", "REFCOUNT", "n"]).expect("OBJECT"),
        Reply::Integer(2_147_483_647)
    );
    assert_eq!(
        me.cmd(&["OBJECT", "ENCODING", "missing"]).expect("OBJECT"),
        Reply::Bulk(None)
    );
    assert!(matches!(
        me.cmd(&["OBJECT", "FREQ", "n"]).expect("OBJECT"),
        Reply::Error(error) if error.starts_with("ERR An LFU maxmemory policy is not selected")
    ));
}
