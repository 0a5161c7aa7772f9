//! After the faults: every node must converge, and every acknowledged write must be readable
//! through every node.
//!
//! Final reads are linearizable `MGET`s (a connection without READONLY, whatever the
//! workload used) through each member in turn, retried on `-TRYAGAIN` until a deadline. One
//! MGET is one read point, so each key's value in it is recorded as a read over the MGET's
//! interval, in the [`Phase::Final`] phase: the checkers then hold them to the same rules as
//! every other read (so a lost acknowledged write shows up as a violation on its key). Each
//! node's `DBSIZE` (its local state) must match too, once applied indexes agree.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::Duration;

use kvnode::resp::Frame;
use tokio::time::Instant;

use super::client::Dialer;
use super::cluster::Cluster;
use super::history::{Call, History, Op, Outcome, Phase, Workload};
use super::host::HostState;
use super::report::Finding;
use super::workload::{interpret, txn, Shared};

/// Keys per MGET.
const KEYS_PER_READ: usize = 50;
/// Pause between retries. Pacing only.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// The keys each workload touched.
pub fn touched_keys(history: &History) -> Vec<(Workload, String)> {
    let keys: BTreeSet<(Workload, String)> = history
        .ops()
        .iter()
        .map(|op| (op.workload, op.key.clone()))
        .collect();
    keys.into_iter().collect()
}

/// Reads every key through `node` (at `addr`); returns the reads, or why they failed. The
/// txn workload's bank is read whole, in one MGET of every account (one read point, as its
/// checker needs), recorded as one read of [`txn::BANK_KEY`].
pub async fn final_reads(
    dialer: Dialer,
    shared: Arc<Shared>,
    node: u64,
    addr: SocketAddrV4,
    keys: Vec<(Workload, String)>,
    timeout: Duration,
) -> Result<Vec<Op>, String> {
    let deadline = Instant::now() + timeout;
    let mut ops = Vec::with_capacity(keys.len());
    let (bank, keys): (Vec<_>, Vec<_>) = keys.into_iter().partition(|(w, _)| *w == Workload::Txn);
    let op = |workload, key: &str, invoke_us, complete_us, outcome| Op {
        index: 0,
        process: 9_000_000 + node,
        workload,
        key: key.to_owned(),
        node,
        call: Call::Read,
        invoke_us,
        complete_us,
        outcome,
        phase: Phase::Final,
    };
    for chunk in keys.chunks(KEYS_PER_READ) {
        let names: Vec<&str> = chunk.iter().map(|(_, key)| key.as_str()).collect();
        let (invoke_us, complete_us, values) =
            mget_retrying(dialer, &shared, node, addr, &names, deadline).await?;
        for ((workload, key), value) in chunk.iter().zip(values) {
            let outcome = interpret(*workload, &Call::Read, Ok(value));
            ops.push(op(*workload, key, invoke_us, complete_us, outcome));
        }
    }
    if !bank.is_empty() {
        let accounts = txn::account_keys();
        let names: Vec<&str> = accounts.iter().map(String::as_str).collect();
        let (invoke_us, complete_us, values) =
            mget_retrying(dialer, &shared, node, addr, &names, deadline).await?;
        let outcome = interpret(Workload::Txn, &Call::Read, Ok(Frame::Array(values)));
        ops.push(op(
            Workload::Txn,
            txn::BANK_KEY,
            invoke_us,
            complete_us,
            outcome,
        ));
    }
    Ok(ops)
}

/// `MGET keys` through `addr`, retried until it answers with one value per key or
/// `deadline` passes; returns (invoke µs, complete µs, values).
async fn mget_retrying(
    dialer: Dialer,
    shared: &Shared,
    node: u64,
    addr: SocketAddrV4,
    keys: &[&str],
    deadline: Instant,
) -> Result<(u64, u64, Vec<Frame>), String> {
    let mut args = vec!["MGET"];
    args.extend_from_slice(keys);
    loop {
        let invoke_us = shared.elapsed_us();
        let attempt = async {
            let mut connection = dialer.connect(addr, deadline).await?;
            connection.call(&args, deadline).await
        };
        let reply = attempt.await;
        let complete_us = shared.elapsed_us();
        match reply {
            Ok(Frame::Array(values)) if values.len() == keys.len() => {
                return Ok((invoke_us, complete_us, values))
            }
            other if Instant::now() >= deadline => {
                return Err(format!(
                    "final MGET through node {node} never succeeded; last reply {other:?}"
                ))
            }
            _ => tokio::time::sleep(RETRY_PAUSE).await,
        }
    }
}

/// Heals, waits for convergence, reads everything back through every node; returns what
/// went wrong (the final reads go into `history`).
pub fn settle(
    cluster: &mut Cluster,
    shared: &Arc<Shared>,
    history: &mut History,
    timeout: Duration,
    log: &mut String,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    if let Err(error) = cluster.heal_all() {
        findings.push(Finding {
            kind: "tool-error".to_owned(),
            detail: format!("healing failed: {error:#}"),
            witness: String::new(),
        });
    }
    let _ = writeln!(log, "{} ms: healed everything", shared.elapsed_us() / 1000);
    // A removal answered UNKNOWN may have taken effect: converge over the members the
    // leader lists, not over the hosts the tool thought were members.
    if cluster.wait_leader(timeout).is_ok() {
        if let Some(status) = cluster.leader_status() {
            let retired = cluster.reconcile(&status);
            if !retired.is_empty() {
                let _ = writeln!(
                    log,
                    "stopped {retired:?}: not in the leader's configuration"
                );
            }
        }
    }
    let converged = cluster.wait_converged(timeout);
    match &converged {
        Ok(statuses) => {
            let applied: Vec<String> = statuses
                .iter()
                .map(|(id, s)| format!("{id}={}", s.applied_index.0))
                .collect();
            let _ = writeln!(
                log,
                "{} ms: converged, applied {}",
                shared.elapsed_us() / 1000,
                applied.join(" ")
            );
        }
        Err(error) => findings.push(Finding {
            kind: "no-convergence".to_owned(),
            detail: format!("{error:#}"),
            witness: String::new(),
        }),
    }
    let keys = touched_keys(history);
    let members: Vec<(u64, std::net::SocketAddrV4)> = cluster
        .hosts
        .values()
        .filter(|h| h.state != HostState::Removed)
        .map(|h| (h.id, h.client_addr()))
        .collect();
    let dialer = cluster.dialer();
    for (node, addr) in &members {
        let task = final_reads(dialer, shared.clone(), *node, *addr, keys.clone(), timeout);
        match cluster.client.run(task) {
            Ok(Ok(ops)) => ops.into_iter().for_each(|op| history.push(op)),
            Ok(Err(why)) => findings.push(Finding {
                kind: "unavailable-after-heal".to_owned(),
                detail: why,
                witness: String::new(),
            }),
            Err(error) => findings.push(Finding {
                kind: "tool-error".to_owned(),
                detail: format!("{error:#}"),
                witness: String::new(),
            }),
        }
    }
    if converged.is_ok() {
        let mut sizes = std::collections::BTreeMap::new();
        for (node, addr) in &members {
            let size = cluster
                .client
                .run(dbsize(dialer, *addr, Duration::from_secs(5)))
                .unwrap_or_else(|e| Err(format!("{e:#}")));
            sizes.insert(*node, size);
        }
        let _ = writeln!(log, "DBSIZE per node: {sizes:?}");
        findings.extend(compare_sizes(&sizes));
    }
    findings
}

/// Findings from the nodes' DBSIZE replies (all must agree).
pub fn compare_sizes(sizes: &BTreeMap<u64, Result<i64, String>>) -> Vec<Finding> {
    let mut findings = Vec::new();
    let known: BTreeSet<i64> = sizes
        .values()
        .filter_map(|s| s.as_ref().ok().copied())
        .collect();
    if known.len() > 1 {
        findings.push(Finding {
            kind: "diverged".to_owned(),
            detail: format!("nodes hold different numbers of keys after converging: {sizes:?}"),
            witness: String::new(),
        });
    }
    for (node, size) in sizes {
        if let Err(why) = size {
            findings.push(Finding {
                kind: "unavailable-after-heal".to_owned(),
                detail: format!("DBSIZE through node {node} failed: {why}"),
                witness: String::new(),
            });
        }
    }
    findings
}

/// DBSIZE of one node.
pub async fn dbsize(dialer: Dialer, addr: SocketAddrV4, timeout: Duration) -> Result<i64, String> {
    match dialer.call_once(addr, &["DBSIZE"], timeout).await {
        Ok(Frame::Integer(n)) => Ok(n),
        Ok(other) => Err(format!("{other:?}")),
        Err(error) => Err(error.to_string()),
    }
}

/// Whether an outcome is a surprise reply (neither a value, TRYAGAIN, UNKNOWN nor a network
/// failure): the report lists them as findings.
pub fn is_unexpected(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Indeterminate(why) if why.starts_with("unexpected"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_must_agree_and_answer() {
        let mut sizes = BTreeMap::new();
        sizes.insert(1, Ok(10));
        sizes.insert(2, Ok(10));
        assert!(compare_sizes(&sizes).is_empty());
        sizes.insert(3, Ok(9));
        let kinds: Vec<String> = compare_sizes(&sizes).into_iter().map(|f| f.kind).collect();
        assert_eq!(kinds, ["diverged"]);
        sizes.insert(3, Err("timed out".into()));
        let kinds: Vec<String> = compare_sizes(&sizes).into_iter().map(|f| f.kind).collect();
        assert_eq!(kinds, ["unavailable-after-heal"]);
    }

    #[test]
    fn unexpected_replies_are_recognised() {
        assert!(is_unexpected(&Outcome::Indeterminate(
            "unexpected reply: Integer(3)".into()
        )));
        assert!(!is_unexpected(&Outcome::Indeterminate("timed out".into())));
    }
}
