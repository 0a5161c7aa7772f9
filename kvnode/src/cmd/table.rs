//! The command table: one row per command, with Redis' arity, COMMAND INFO's flags and
//! key positions, the ACL categories beyond those the flags imply ([`super::category`]),
//! and the parser. A new command is one row here and one function in its family's file.

use super::category;
use super::flags::*;
use super::{
    acl, admin, append, client, config, connection, databases, del, expire, get, hello, incr,
    internal, introspection, keyspace, object, set, transaction, Spec,
};

macro_rules! spec {
    ($name:literal, $arity:literal, $flags:expr, ($first:literal, $last:literal, $step:literal), $parse:path, $categories:expr) => {
        Spec {
            name: $name,
            arity: $arity,
            flags: $flags,
            keys: ($first, $last, $step),
            parse: $parse,
            categories: $categories,
        }
    };
}

/// Every command this server knows.
pub(crate) const SPECS: &[Spec] = &[
    spec!(
        "get",
        2,
        READONLY | FAST,
        (1, 1, 1),
        get::parse_get,
        category::STRING
    ),
    spec!(
        "set",
        -3,
        WRITE | DENYOOM,
        (1, 1, 1),
        set::parse_set,
        category::STRING
    ),
    spec!(
        "setnx",
        3,
        WRITE | DENYOOM | FAST,
        (1, 1, 1),
        set::parse_setnx,
        category::STRING
    ),
    spec!(
        "setex",
        4,
        WRITE | DENYOOM,
        (1, 1, 1),
        set::parse_setex,
        category::STRING
    ),
    spec!(
        "psetex",
        4,
        WRITE | DENYOOM,
        (1, 1, 1),
        set::parse_psetex,
        category::STRING
    ),
    spec!(
        "getset",
        3,
        WRITE | DENYOOM | FAST,
        (1, 1, 1),
        set::parse_getset,
        category::STRING
    ),
    spec!(
        "getex",
        -2,
        WRITE | FAST,
        (1, 1, 1),
        expire::parse_getex,
        category::STRING
    ),
    spec!(
        "getdel",
        2,
        WRITE | FAST,
        (1, 1, 1),
        get::parse_getdel,
        category::STRING
    ),
    spec!(
        "getrange",
        4,
        READONLY,
        (1, 1, 1),
        get::parse_getrange,
        category::STRING
    ),
    spec!(
        "setrange",
        4,
        WRITE | DENYOOM,
        (1, 1, 1),
        set::parse_setrange,
        category::STRING
    ),
    spec!(
        "del",
        -2,
        WRITE,
        (1, -1, 1),
        del::parse_del,
        category::KEYSPACE
    ),
    spec!(
        "unlink",
        -2,
        WRITE | FAST,
        (1, -1, 1),
        del::parse_del,
        category::KEYSPACE
    ),
    spec!(
        "exists",
        -2,
        READONLY | FAST,
        (1, -1, 1),
        get::parse_exists,
        category::KEYSPACE
    ),
    spec!(
        "touch",
        -2,
        READONLY | FAST,
        (1, -1, 1),
        get::parse_exists,
        category::KEYSPACE
    ),
    spec!(
        "incr",
        2,
        WRITE | DENYOOM | FAST,
        (1, 1, 1),
        incr::parse_incr,
        category::STRING
    ),
    spec!(
        "incrby",
        3,
        WRITE | DENYOOM | FAST,
        (1, 1, 1),
        incr::parse_incrby,
        category::STRING
    ),
    spec!(
        "incrbyfloat",
        3,
        WRITE | DENYOOM | FAST,
        (1, 1, 1),
        incr::parse_incrbyfloat,
        category::STRING
    ),
    spec!(
        "decr",
        2,
        WRITE | DENYOOM | FAST,
        (1, 1, 1),
        incr::parse_decr,
        category::STRING
    ),
    spec!(
        "decrby",
        3,
        WRITE | DENYOOM | FAST,
        (1, 1, 1),
        incr::parse_decrby,
        category::STRING
    ),
    spec!(
        "append",
        3,
        WRITE | DENYOOM | FAST,
        (1, 1, 1),
        append::parse_append,
        category::STRING
    ),
    spec!(
        "strlen",
        2,
        READONLY | FAST,
        (1, 1, 1),
        get::parse_strlen,
        category::STRING
    ),
    spec!(
        "mget",
        -2,
        READONLY | FAST,
        (1, -1, 1),
        get::parse_mget,
        category::STRING
    ),
    spec!(
        "mset",
        -3,
        WRITE | DENYOOM,
        (1, -1, 2),
        set::parse_mset,
        category::STRING
    ),
    spec!(
        "msetnx",
        -3,
        WRITE | DENYOOM,
        (1, -1, 2),
        set::parse_msetnx,
        category::STRING
    ),
    spec!(
        "expire",
        -3,
        WRITE | FAST,
        (1, 1, 1),
        expire::parse_expire,
        category::KEYSPACE
    ),
    spec!(
        "pexpire",
        -3,
        WRITE | FAST,
        (1, 1, 1),
        expire::parse_pexpire,
        category::KEYSPACE
    ),
    spec!(
        "expireat",
        -3,
        WRITE | FAST,
        (1, 1, 1),
        expire::parse_expireat,
        category::KEYSPACE
    ),
    spec!(
        "pexpireat",
        -3,
        WRITE | FAST,
        (1, 1, 1),
        expire::parse_pexpireat,
        category::KEYSPACE
    ),
    spec!(
        "persist",
        2,
        WRITE | FAST,
        (1, 1, 1),
        expire::parse_persist,
        category::KEYSPACE
    ),
    spec!(
        "ttl",
        2,
        READONLY | FAST | TIME,
        (1, 1, 1),
        expire::parse_ttl,
        category::KEYSPACE
    ),
    spec!(
        "pttl",
        2,
        READONLY | FAST | TIME,
        (1, 1, 1),
        expire::parse_pttl,
        category::KEYSPACE
    ),
    spec!(
        "expiretime",
        2,
        READONLY | FAST,
        (1, 1, 1),
        expire::parse_expiretime,
        category::KEYSPACE
    ),
    spec!(
        "pexpiretime",
        2,
        READONLY | FAST,
        (1, 1, 1),
        expire::parse_pexpiretime,
        category::KEYSPACE
    ),
    spec!(
        "type",
        2,
        READONLY | FAST,
        (1, 1, 1),
        keyspace::parse_type,
        category::KEYSPACE
    ),
    spec!(
        "rename",
        3,
        WRITE,
        (1, 2, 1),
        keyspace::parse_rename,
        category::KEYSPACE
    ),
    spec!(
        "renamenx",
        3,
        WRITE | FAST,
        (1, 2, 1),
        keyspace::parse_renamenx,
        category::KEYSPACE
    ),
    spec!(
        "copy",
        -3,
        WRITE | DENYOOM,
        (1, 2, 1),
        keyspace::parse_copy,
        category::KEYSPACE
    ),
    spec!(
        "move",
        3,
        WRITE | FAST,
        (1, 1, 1),
        keyspace::parse_move,
        category::KEYSPACE
    ),
    spec!(
        "randomkey",
        1,
        READONLY,
        (0, 0, 0),
        keyspace::parse_randomkey,
        category::KEYSPACE
    ),
    spec!(
        "dbsize",
        1,
        READONLY | FAST,
        (0, 0, 0),
        keyspace::parse_dbsize,
        category::KEYSPACE
    ),
    spec!(
        "keys",
        2,
        READONLY,
        (0, 0, 0),
        keyspace::parse_keys,
        category::KEYSPACE | category::DANGEROUS
    ),
    spec!(
        "scan",
        -2,
        READONLY,
        (0, 0, 0),
        keyspace::parse_scan,
        category::KEYSPACE
    ),
    spec!(
        "object",
        -2,
        READONLY,
        (2, 2, 1),
        object::parse_object,
        category::KEYSPACE
    ),
    spec!(
        "revision",
        2,
        READONLY | FAST,
        (1, 1, 1),
        keyspace::parse_revision,
        category::KEYSPACE
    ),
    spec!(
        "time",
        1,
        READONLY | FAST | TIME,
        (0, 0, 0),
        keyspace::parse_time,
        0
    ),
    spec!(
        "select",
        2,
        FAST,
        (0, 0, 0),
        databases::parse_select,
        category::KEYSPACE
    ),
    spec!(
        "swapdb",
        3,
        WRITE | FAST,
        (0, 0, 0),
        databases::parse_swapdb,
        category::KEYSPACE | category::DANGEROUS | category::ADMIN
    ),
    spec!(
        "flushdb",
        -1,
        WRITE,
        (0, 0, 0),
        databases::parse_flushdb,
        category::KEYSPACE | category::DANGEROUS | category::ADMIN
    ),
    spec!(
        "flushall",
        -1,
        WRITE,
        (0, 0, 0),
        databases::parse_flushall,
        category::KEYSPACE | category::DANGEROUS | category::ADMIN
    ),
    spec!(
        "multi",
        1,
        FAST | NO_MULTI,
        (0, 0, 0),
        transaction::parse_multi,
        category::TRANSACTION
    ),
    spec!(
        "exec",
        1,
        0,
        (0, 0, 0),
        transaction::parse_exec,
        category::TRANSACTION
    ),
    spec!(
        "discard",
        1,
        FAST,
        (0, 0, 0),
        transaction::parse_discard,
        category::TRANSACTION
    ),
    spec!(
        "watch",
        -2,
        FAST | NO_MULTI,
        (1, -1, 1),
        transaction::parse_watch,
        category::TRANSACTION
    ),
    spec!(
        "unwatch",
        1,
        FAST,
        (0, 0, 0),
        transaction::parse_unwatch,
        category::TRANSACTION
    ),
    spec!(
        "ping",
        -1,
        FAST,
        (0, 0, 0),
        connection::parse_ping,
        category::CONNECTION
    ),
    spec!(
        "echo",
        2,
        FAST,
        (0, 0, 0),
        connection::parse_echo,
        category::CONNECTION
    ),
    spec!(
        "quit",
        -1,
        FAST | NO_AUTH,
        (0, 0, 0),
        connection::parse_quit,
        category::CONNECTION
    ),
    spec!(
        "readonly",
        1,
        FAST,
        (0, 0, 0),
        connection::parse_readonly,
        category::CONNECTION
    ),
    spec!(
        "readwrite",
        1,
        FAST,
        (0, 0, 0),
        connection::parse_readwrite,
        category::CONNECTION
    ),
    spec!(
        "hello",
        -1,
        FAST | NO_AUTH,
        (0, 0, 0),
        hello::parse_hello,
        category::CONNECTION
    ),
    spec!(
        "auth",
        -2,
        FAST | NO_AUTH,
        (0, 0, 0),
        hello::parse_auth,
        category::CONNECTION
    ),
    spec!(
        "client",
        -2,
        0,
        (0, 0, 0),
        client::parse_client,
        category::CONNECTION
    ),
    spec!(
        "command",
        -1,
        0,
        (0, 0, 0),
        introspection::parse_command,
        category::CONNECTION
    ),
    spec!(
        "info",
        -1,
        0,
        (0, 0, 0),
        introspection::parse_info,
        category::DANGEROUS
    ),
    spec!("acl", -2, NO_MULTI, (0, 0, 0), acl::parse_acl, 0),
    spec!("config", -2, ADMIN, (0, 0, 0), config::parse_config, 0),
    spec!("raft.status", 1, ADMIN, (0, 0, 0), admin::parse_status, 0),
    spec!(
        "raft.addlearner",
        4,
        ADMIN,
        (0, 0, 0),
        admin::parse_add_learner,
        0
    ),
    spec!("raft.promote", 2, ADMIN, (0, 0, 0), admin::parse_promote, 0),
    spec!("raft.remove", 2, ADMIN, (0, 0, 0), admin::parse_remove, 0),
    spec!(
        "raft.transfer",
        2,
        ADMIN,
        (0, 0, 0),
        admin::parse_transfer,
        0
    ),
    spec!(
        "raftkv.digest",
        1,
        READONLY | ADMIN,
        (0, 0, 0),
        keyspace::parse_digest,
        0
    ),
    spec!(
        "raftkv.propose",
        2,
        WRITE | ADMIN,
        (0, 0, 0),
        internal::parse_propose,
        0
    ),
    spec!(
        "raftkv.backup",
        1,
        ADMIN,
        (0, 0, 0),
        internal::parse_backup,
        0
    ),
    spec!(
        "raftkv.backupread",
        2,
        ADMIN,
        (0, 0, 0),
        internal::parse_backup_read,
        0
    ),
];
