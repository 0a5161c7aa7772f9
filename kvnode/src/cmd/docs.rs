//! COMMAND DOCS: each command's summary, the version that introduced it and its group, as
//! Redis 7 documents them (raftkv's own commands name raftkv's version and the group
//! `server`). One row per row of the command table ([`super::SPECS`]); a test checks that
//! the two tables name the same commands. Arguments are not described: redis-cli builds
//! its hints from its own table for Redis' commands.

/// What COMMAND DOCS says about one command.
pub(crate) struct Doc {
    pub summary: &'static str,
    pub since: &'static str,
    pub group: &'static str,
}

/// `(name, summary, since, group)` for every command in the table.
const DOCS: &[(&str, &str, &str, &str)] = &[
    ("get", "Returns the string value of a key.", "1.0.0", "string"),
    ("set", "Sets the string value of a key, ignoring its type. The key is created if it doesn't exist.", "1.0.0", "string"),
    ("setnx", "Set the string value of a key only when the key doesn't exist.", "1.0.0", "string"),
    ("setex", "Sets the string value and expiration time of a key. Creates the key if it doesn't exist.", "2.0.0", "string"),
    ("psetex", "Sets both string value and expiration time in milliseconds of a key. The key is created if it doesn't exist.", "2.6.0", "string"),
    ("getset", "Returns the previous string value of a key after setting it to a new value.", "1.0.0", "string"),
    ("getex", "Returns the string value of a key after setting its expiration time.", "6.2.0", "string"),
    ("getdel", "Returns the string value of a key after deleting the key.", "6.2.0", "string"),
    ("getrange", "Returns a substring of the string stored at a key.", "2.4.0", "string"),
    ("setrange", "Overwrites a part of a string value with another by an offset. Creates the key if it doesn't exist.", "2.2.0", "string"),
    ("del", "Deletes one or more keys.", "1.0.0", "generic"),
    ("unlink", "Asynchronously deletes one or more keys.", "4.0.0", "generic"),
    ("exists", "Determines whether one or more keys exist.", "1.0.0", "generic"),
    ("touch", "Returns the number of existing keys out of those specified after updating the time they were last accessed.", "3.2.1", "generic"),
    ("incr", "Increments the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.", "1.0.0", "string"),
    ("incrby", "Increments the integer value of a key by a number. Uses 0 as initial value if the key doesn't exist.", "1.0.0", "string"),
    ("incrbyfloat", "Increment the floating point value of a key by a number. Uses 0 as initial value if the key doesn't exist.", "2.6.0", "string"),
    ("decr", "Decrements the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.", "1.0.0", "string"),
    ("decrby", "Decrements a number from the integer value of a key. Uses 0 as initial value if the key doesn't exist.", "1.0.0", "string"),
    ("append", "Appends a string to the value of a key. Creates the key if it doesn't exist.", "2.0.0", "string"),
    ("strlen", "Returns the length of a string value.", "2.2.0", "string"),
    ("mget", "Atomically returns the string values of one or more keys.", "1.0.0", "string"),
    ("mset", "Atomically creates or modifies the string values of one or more keys.", "1.0.1", "string"),
    ("msetnx", "Atomically modifies the string values of one or more keys only when all keys don't exist.", "1.0.1", "string"),
    ("expire", "Sets the expiration time of a key in seconds.", "1.0.0", "generic"),
    ("pexpire", "Sets the expiration time of a key in milliseconds.", "2.6.0", "generic"),
    ("expireat", "Sets the expiration time of a key to a Unix timestamp.", "1.2.0", "generic"),
    ("pexpireat", "Sets the expiration time of a key to a Unix milliseconds timestamp.", "2.6.0", "generic"),
    ("persist", "Removes the expiration time of a key.", "2.2.0", "generic"),
    ("ttl", "Returns the expiration time in seconds of a key.", "1.0.0", "generic"),
    ("pttl", "Returns the expiration time in milliseconds of a key.", "2.6.0", "generic"),
    ("expiretime", "Returns the expiration time of a key as a Unix timestamp.", "7.0.0", "generic"),
    ("pexpiretime", "Returns the expiration time of a key as a Unix milliseconds timestamp.", "7.0.0", "generic"),
    ("type", "Determines the type of value stored at a key.", "1.0.0", "generic"),
    ("rename", "Renames a key and overwrites the destination.", "1.0.0", "generic"),
    ("renamenx", "Renames a key only when the target key name doesn't exist.", "1.0.0", "generic"),
    ("copy", "Copies the value of a key to a new key.", "6.2.0", "generic"),
    ("move", "Moves a key to another database.", "1.0.0", "generic"),
    ("randomkey", "Returns a random key name from the database.", "1.0.0", "generic"),
    ("dbsize", "Returns the number of keys in the database.", "1.0.0", "server"),
    ("keys", "Returns all key names that match a pattern.", "1.0.0", "generic"),
    ("scan", "Iterates over the key names in the database.", "2.8.0", "generic"),
    ("object", "A container for object introspection commands.", "2.2.3", "generic"),
    ("revision", "Returns the log index of a key's last change: a fencing token for the key's holder (raftkv).", "0.1.0", "generic"),
    ("time", "Returns the server time.", "2.6.0", "server"),
    ("select", "Changes the selected database.", "1.0.0", "connection"),
    ("swapdb", "Swaps two Redis databases.", "4.0.0", "server"),
    ("flushdb", "Remove all keys from the current database.", "1.0.0", "server"),
    ("flushall", "Removes all keys from all databases.", "1.0.0", "server"),
    ("multi", "Starts a transaction.", "1.2.0", "transactions"),
    ("exec", "Executes all commands in a transaction.", "1.2.0", "transactions"),
    ("discard", "Discards a transaction.", "2.0.0", "transactions"),
    ("watch", "Monitors changes to keys to determine the execution of a transaction.", "2.2.0", "transactions"),
    ("unwatch", "Forgets about watched keys of a transaction.", "2.2.0", "transactions"),
    ("ping", "Returns the server's liveliness response.", "1.0.0", "connection"),
    ("echo", "Returns the given string.", "1.0.0", "connection"),
    ("quit", "Closes the connection.", "1.0.0", "connection"),
    ("readonly", "Enables read-only queries for a connection to a Redis Cluster replica node.", "3.0.0", "cluster"),
    ("readwrite", "Enables read-write queries for a connection to a Redis Cluster replica node.", "3.0.0", "cluster"),
    ("hello", "Handshakes with the Redis server.", "6.0.0", "connection"),
    ("auth", "Authenticates the connection.", "1.0.0", "connection"),
    ("client", "A container for client connection commands.", "2.4.0", "connection"),
    ("command", "Returns detailed information about all commands.", "2.8.13", "server"),
    ("info", "Returns information and statistics about the server.", "1.0.0", "server"),
    ("acl", "A container for Access List Control commands.", "6.0.0", "server"),
    ("config", "A container for server configuration commands.", "2.0.0", "server"),
    ("raft.status", "Returns this node's Raft state: role, term, leader, log indexes, members (raftkv).", "0.1.0", "server"),
    ("raft.addlearner", "Adds a node to the cluster as a learner (raftkv).", "0.1.0", "server"),
    ("raft.promote", "Promotes a learner to a voter (raftkv).", "0.1.0", "server"),
    ("raft.remove", "Removes a node from the cluster (raftkv).", "0.1.0", "server"),
    ("raft.transfer", "Transfers leadership to another voter (raftkv).", "0.1.0", "server"),
    ("raftkv.digest", "Returns a digest of this node's whole state (raftkv).", "0.1.0", "server"),
    ("raftkv.propose", "Proposes an encoded write; what a follower sends the leader (raftkv, internal).", "0.1.0", "server"),
    ("raftkv.backup", "Captures a snapshot for a backup (raftkv).", "0.1.0", "server"),
    ("raftkv.backupread", "Reads a chunk of the captured backup (raftkv).", "0.1.0", "server"),
];

/// The documentation of the command named `name` (lower case).
pub(crate) fn doc(name: &str) -> Option<Doc> {
    DOCS.iter()
        .find(|(known, ..)| *known == name)
        .map(|(_, summary, since, group)| Doc {
            summary,
            since,
            group,
        })
}

#[cfg(test)]
mod tests {
    use super::super::SPECS;
    use super::*;

    #[test]
    fn every_command_is_documented_once_and_nothing_else() {
        for spec in SPECS {
            assert!(
                doc(spec.name).is_some(),
                "{} has no COMMAND DOCS row",
                spec.name
            );
        }
        for (name, ..) in DOCS {
            let rows = SPECS.iter().filter(|spec| spec.name == *name).count();
            assert_eq!(
                rows, 1,
                "COMMAND DOCS names {name}, which the table has {rows} times"
            );
        }
        assert_eq!(DOCS.len(), SPECS.len());
    }
}
