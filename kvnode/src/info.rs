//! The INFO reply: Redis' `# Section` / `key:value` text, in Redis 7's sections and with
//! the fields clients, tools and test suites read, plus raftkv's own `raft` section.
//!
//! Sections, in Redis' order: `server`, `clients`, `memory`, `persistence`, `stats`,
//! `replication`, `cpu`, `cluster`, `keyspace`, then `raft` (RAFT.STATUS's fields, each
//! prefixed `raft_`, so a client that reads INFO into one map keeps Redis' `role`). `INFO` and `INFO default`,
//! `all` or `everything` give all of them; `INFO name ...` the named ones (any case); an
//! unknown name gives nothing, as in Redis.
//!
//! Every field is true of this node: what raftkv does not measure is left out rather
//! than reported as zero (no `keyspace_hits`, no buffer sizes), and fields that describe
//! Redis' own persistence say that there is none of it (`aof_enabled:0`: the Raft log is
//! the persistence, reported in `raft`). `keyspace` counts live keys of this node's
//! applied state, judged at its read time; on a follower it may trail the leader by the
//! entries not yet applied. Its `avg_ttl` is always 0: Redis' is a sampled estimate,
//! raftkv keeps none.

mod system;

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use crate::connection::Shared;
use crate::status::NodeStatus;

/// Every section, in the order INFO lists them.
const SECTIONS: [&str; 10] = [
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "cluster",
    "keyspace",
    "raft",
];

/// What INFO describes: the node, its shared server state, and the asking connection's
/// local port (`tcp_port`).
pub struct InfoSources<'a> {
    pub status: &'a NodeStatus,
    pub shared: &'a Shared,
    pub tcp_port: u16,
}

/// Renders the requested sections (lower-cased names; none means the default set).
pub fn render(requested: &[Bytes], sources: &InfoSources<'_>) -> String {
    let everything = requested.is_empty()
        || requested
            .iter()
            .any(|section| matches!(section.as_ref(), b"all" | b"default" | b"everything"));
    let wanted = |name: &str| {
        everything
            || requested
                .iter()
                .any(|section| section.eq_ignore_ascii_case(name.as_bytes()))
    };
    let mut out = String::new();
    for section in SECTIONS.into_iter().filter(|name| wanted(name)) {
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        let title = match section {
            "cpu" => "CPU".to_owned(),
            _ => format!("{}{}", section[..1].to_uppercase(), &section[1..]),
        };
        let _ = write!(out, "# {title}\r\n");
        body(section, sources, &mut out);
    }
    out
}

/// Appends one `key:value` line.
fn field(out: &mut String, key: &str, value: impl std::fmt::Display) {
    let _ = write!(out, "{key}:{value}\r\n");
}

fn body(section: &str, sources: &InfoSources<'_>, out: &mut String) {
    let (status, shared) = (sources.status, sources.shared);
    match section {
        "server" => server(sources, out),
        "clients" => {
            field(out, "connected_clients", shared.clients.len());
            field(out, "cluster_connections", 0);
            field(out, "maxclients", shared.connections_max);
            field(out, "blocked_clients", 0);
            field(out, "tracking_clients", 0);
            field(out, "clients_in_timeout_table", 0);
        }
        "memory" => memory(out),
        "persistence" => {
            // raftkv writes no RDB file and no AOF: every field here says so truthfully.
            field(out, "loading", 0);
            field(out, "async_loading", 0);
            field(out, "rdb_bgsave_in_progress", 0);
            field(out, "rdb_last_bgsave_status", "ok");
            field(out, "rdb_saves", 0);
            field(out, "aof_enabled", 0);
            field(out, "aof_rewrite_in_progress", 0);
            field(out, "aof_rewrite_scheduled", 0);
            field(out, "aof_last_bgrewrite_status", "ok");
            field(out, "aof_last_write_status", "ok");
        }
        "stats" => stats(shared, out),
        "replication" => replication(status, out),
        "cpu" => {
            let (system, user) = system::cpu_seconds(false);
            let (children_system, children_user) = system::cpu_seconds(true);
            field(out, "used_cpu_sys", format!("{system:.6}"));
            field(out, "used_cpu_user", format!("{user:.6}"));
            field(
                out,
                "used_cpu_sys_children",
                format!("{children_system:.6}"),
            );
            field(out, "used_cpu_user_children", format!("{children_user:.6}"));
        }
        "cluster" => field(out, "cluster_enabled", 0),
        "keyspace" => {
            for db in &status.keyspace {
                let _ = write!(
                    out,
                    "db{}:keys={},expires={},avg_ttl=0\r\n",
                    db.db, db.keys, db.expires
                );
            }
        }
        "raft" => {
            // Prefixed: clients read INFO into one flat map, where the raft section's
            // `role:leader` would overwrite replication's `role:master`.
            for line in status.render().lines() {
                let _ = write!(out, "raft_{line}\r\n");
            }
        }
        other => unreachable!("INFO section {other} is not in SECTIONS"),
    }
}

fn server(sources: &InfoSources<'_>, out: &mut String) {
    let uptime = sources.shared.started.elapsed().as_secs();
    let now_usec = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_micros());
    // The Redis version whose commands and replies raftkv follows: clients pick features
    // by it (redis-py, node-redis), so it stays a Redis version number.
    field(out, "redis_version", "7.2.0");
    field(out, "raftkv_version", env!("CARGO_PKG_VERSION"));
    field(out, "redis_mode", "standalone");
    field(out, "os", system::os_name());
    field(out, "arch_bits", usize::BITS);
    field(out, "process_id", std::process::id());
    field(out, "run_id", &sources.shared.run_id);
    field(out, "tcp_port", sources.tcp_port);
    field(out, "server_time_usec", now_usec);
    field(out, "uptime_in_seconds", uptime);
    field(out, "uptime_in_days", uptime / 86_400);
    if let Ok(path) = std::env::current_exe() {
        field(out, "executable", path.display());
    }
}

fn memory(out: &mut String) {
    let used = system::allocated_bytes();
    let resident = system::resident_bytes();
    let total = system::total_system_bytes();
    field(out, "used_memory", used);
    field(out, "used_memory_human", system::human_bytes(used));
    field(out, "used_memory_rss", resident);
    field(out, "used_memory_rss_human", system::human_bytes(resident));
    field(out, "total_system_memory", total);
    field(out, "total_system_memory_human", system::human_bytes(total));
    // No eviction: a replicated store never drops data to make room.
    field(out, "maxmemory", 0);
    field(out, "maxmemory_human", "0B");
    field(out, "maxmemory_policy", "noeviction");
    field(out, "mem_allocator", "libc");
}

fn stats(shared: &Shared, out: &mut String) {
    let metrics = &shared.metrics;
    let count = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    field(
        out,
        "total_connections_received",
        count(&metrics.connections_total),
    );
    field(
        out,
        "total_commands_processed",
        count(&metrics.commands_total),
    );
    field(
        out,
        "rejected_connections",
        count(&metrics.connections_refused_total),
    );
    field(out, "forwarded_requests", count(&metrics.forwarded_total));
    field(out, "proposals", count(&metrics.proposals_total));
    field(out, "snapshots", count(&metrics.snapshots_total));
    field(out, "leader_changes", count(&metrics.leader_changes_total));
}

/// A leader is Redis' `master`; every other node a `slave` of the leader it knows (whose
/// client address it gives), though it takes writes too: it forwards them.
fn replication(status: &NodeStatus, out: &mut String) {
    if status.is_leader() {
        field(out, "role", "master");
        field(out, "connected_slaves", status.matched.len());
    } else {
        field(out, "role", "slave");
        let leader = status.leader_client.as_deref().and_then(|addr| {
            let (host, port) = addr.rsplit_once(':')?;
            Some((host.trim_matches(['[', ']']), port))
        });
        match leader {
            Some((host, port)) => {
                field(out, "master_host", host);
                field(out, "master_port", port);
                field(out, "master_link_status", "up");
            }
            None => field(out, "master_link_status", "down"),
        }
        field(out, "master_sync_in_progress", 0);
    }
    // The applied log index: how far this node's state has come, as a replica's offset.
    field(out, "master_repl_offset", status.applied_index.0);
}
