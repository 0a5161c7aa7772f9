//! The INFO reply: Redis' `# Section` / `key:value` text, with a `raft` section.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use crate::connection::Shared;
use crate::status::NodeStatus;

const SECTIONS: [&str; 4] = ["server", "clients", "raft", "stats"];

/// Renders the requested sections (all of them for none, `all` or `default`).
pub fn render(requested: &[Bytes], status: &NodeStatus, shared: &Shared) -> String {
    let wanted = |name: &str| {
        requested.is_empty()
            || requested.iter().any(|section| {
                section.as_ref() == name.as_bytes()
                    || section.as_ref() == b"all"
                    || section.as_ref() == b"default"
                    || section.as_ref() == b"everything"
            })
    };
    let mut out = String::new();
    for section in SECTIONS.into_iter().filter(|name| wanted(name)) {
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        out.push_str(&format!(
            "# {}{}\r\n",
            section[..1].to_uppercase(),
            &section[1..]
        ));
        out.push_str(&body(section, status, shared));
    }
    out
}

fn body(section: &str, status: &NodeStatus, shared: &Shared) -> String {
    let metrics = &shared.metrics;
    match section {
        "server" => format!(
            "redis_version:7.2.0\r\nraftkv_version:{}\r\nprocess_id:{}\r\nuptime_in_seconds:{}\r\nrole:{}\r\n",
            env!("CARGO_PKG_VERSION"),
            std::process::id(),
            shared.started.elapsed().as_secs(),
            if status.is_leader() { "master" } else { "slave" },
        ),
        "clients" => format!(
            "connected_clients:{}\r\n",
            metrics.connections_open.load(Ordering::Relaxed)
        ),
        "raft" => status.render(),
        _ => format!(
            "total_connections_received:{}\r\nrejected_connections:{}\r\ntotal_commands_processed:{}\r\nforwarded_requests:{}\r\nproposals:{}\r\nsnapshots:{}\r\nleader_changes:{}\r\ndb0_keys:{}\r\n",
            metrics.connections_total.load(Ordering::Relaxed),
            metrics.connections_refused_total.load(Ordering::Relaxed),
            metrics.commands_total.load(Ordering::Relaxed),
            metrics.forwarded_total.load(Ordering::Relaxed),
            metrics.proposals_total.load(Ordering::Relaxed),
            metrics.snapshots_total.load(Ordering::Relaxed),
            metrics.leader_changes_total.load(Ordering::Relaxed),
            status.keys,
        ),
    }
}
