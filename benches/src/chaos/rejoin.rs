//! `chaos rejoin`: how soon a node cut off from every other member knows the leader again
//! once the cut heals.
//!
//! For each cut length, `repeat` times: wait until every member names one leader L, cut a
//! follower F off in both directions (nft drops in F's namespace, removed in one
//! transaction; or blackhole routes), hold the cut, then heal it. The client namespace is never cut off, so a poller there
//! keeps one connection to F and asks `RAFT.STATUS` every [`POLL_EVERY`] from before the
//! heal. Rejoin time: from the end of the heal command (every rule is gone by then) to the
//! arrival of the first reply in which F is a follower naming L as leader at L's term
//! (read from the leader just before the heal). F's status just before the heal is kept
//! too: a node that still named the leader then would make the measurement meaningless,
//! and is reported as such.
//!
//! Bounded: each poll has a request timeout, the poller stops at [`REJOIN_TIMEOUT`], and
//! every wait for a quiet cluster has a deadline.

use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use kvnode::resp::Frame;
use kvnode::status::{role_name, NodeStatus};
use raft_core::{NodeId, Role, Term};
use tokio::time::Instant;

use super::client::Dialer;
use super::cluster::{Cluster, STATUS_TIMEOUT};
use super::host::HostOptions;
use super::net::BlockBackend;

/// How often the poller asks the cut-off node for its status.
pub const POLL_EVERY: Duration = Duration::from_millis(2);
/// Longest the poller waits after the heal.
pub const REJOIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a cluster in which every member names one leader.
const QUIET_TIMEOUT: Duration = Duration::from_secs(30);
/// Time between a heal and the next cut, so each measurement starts from a steady cluster.
const BETWEEN_CUTS: Duration = Duration::from_secs(1);

/// Everything a rejoin run needs.
#[derive(Clone, Debug)]
pub struct RejoinConfig {
    pub cuts: Vec<Duration>,
    pub repeat: usize,
    pub nodes: usize,
    pub host: HostOptions,
    pub run_dir: PathBuf,
    pub backend: BlockBackend,
}

/// One cut and what followed its heal.
#[derive(Clone, Debug)]
pub struct Rejoin {
    pub cut: Duration,
    pub node: u64,
    pub leader: u64,
    /// The cut-off node's role and known leader just before the heal.
    pub before_heal: Option<(Role, Option<NodeId>)>,
    /// How long the heal command took (the rules vanish somewhere inside it).
    pub heal_took: Duration,
    /// From the end of the heal to the first status naming the leader; `None`: not within
    /// [`REJOIN_TIMEOUT`].
    pub rejoined_after: Option<Duration>,
}

impl Rejoin {
    /// Whether the node had lost the leader before the heal (so the measurement means
    /// something).
    pub fn was_cut_off(&self) -> bool {
        !matches!(self.before_heal, Some((Role::Follower, Some(_))))
    }
}

/// Runs every cut; returns what each measured.
///
/// # Errors
/// If the cluster cannot be set up or never settles on a leader.
pub fn run_rejoin(config: &RejoinConfig) -> Result<Vec<Rejoin>> {
    std::fs::create_dir_all(&config.run_dir)
        .with_context(|| format!("creating {}", config.run_dir.display()))?;
    let octet = u8::try_from(20 + (std::process::id() + 100) % 200).expect("below 256");
    let mut cluster = Cluster::start(
        config.nodes,
        config.host.clone(),
        config.run_dir.clone(),
        octet,
        config.backend,
        QUIET_TIMEOUT,
    )?;
    let mut results = Vec::new();
    for (i, cut) in config
        .cuts
        .iter()
        .flat_map(|cut| std::iter::repeat_n(*cut, config.repeat))
        .enumerate()
    {
        std::thread::sleep(BETWEEN_CUTS);
        let leader = cluster.wait_agreed_leader(QUIET_TIMEOUT)?;
        let followers: Vec<u64> = cluster
            .member_ids()
            .into_iter()
            .filter(|m| *m != leader)
            .collect();
        let node = followers[i % followers.len()];
        results.push(one_cut(&mut cluster, cut, node, leader)?);
    }
    cluster.teardown();
    Ok(results)
}

/// Cuts `node` off for `cut`, heals, measures.
fn one_cut(cluster: &mut Cluster, cut: Duration, node: u64, leader: u64) -> Result<Rejoin> {
    let others: Vec<u64> = cluster
        .member_ids()
        .into_iter()
        .filter(|m| *m != node)
        .collect();
    cluster.net.isolate(node, &others)?;
    std::thread::sleep(cut);
    let statuses = cluster.statuses();
    let leader_term = statuses
        .get(&leader)
        .filter(|s| s.is_leader())
        .map(|s| s.term)
        .with_context(|| format!("node {leader} no longer leads at the end of the cut"))?;
    let before_heal = statuses.get(&node).map(|s| (s.role, s.leader));
    let addr = cluster.hosts[&node].client_addr();
    let poller = cluster.client.spawn(poll_until_known(
        cluster.dialer(),
        addr,
        NodeId(leader),
        leader_term,
    ));
    let heal_started = std::time::Instant::now();
    let healed = cluster.net.heal();
    let heal_took = heal_started.elapsed();
    let healed_at = Instant::now();
    healed?;
    let known_at = cluster
        .client
        .run(async move { poller.await.ok().flatten() })?;
    Ok(Rejoin {
        cut,
        node,
        leader,
        before_heal,
        heal_took,
        rejoined_after: known_at.map(|at: Instant| at.saturating_duration_since(healed_at)),
    })
}

/// Polls `addr` for RAFT.STATUS until it is a follower naming `leader` at `term`; returns
/// when that reply arrived, or `None` after [`REJOIN_TIMEOUT`].
async fn poll_until_known(
    dialer: Dialer,
    addr: SocketAddrV4,
    leader: NodeId,
    term: Term,
) -> Option<Instant> {
    let give_up = Instant::now() + REJOIN_TIMEOUT;
    let mut connection = None;
    while Instant::now() < give_up {
        let deadline = (Instant::now() + STATUS_TIMEOUT).min(give_up);
        let mut conn = match connection.take() {
            Some(conn) => conn,
            None => match dialer.connect(addr, deadline).await {
                Ok(conn) => conn,
                Err(_) => {
                    tokio::time::sleep(POLL_EVERY).await;
                    continue;
                }
            },
        };
        if let Ok(Frame::Bulk(text)) = conn.call(&["RAFT.STATUS"], deadline).await {
            let arrived = Instant::now();
            if let Ok(status) = NodeStatus::parse(&String::from_utf8_lossy(&text)) {
                if status.role == Role::Follower
                    && status.leader == Some(leader)
                    && status.term == term
                {
                    return Some(arrived);
                }
            }
            connection = Some(conn);
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
    None
}

/// One line per measurement, for the report.
pub fn describe(rejoin: &Rejoin) -> String {
    let before = match rejoin.before_heal {
        Some((role, leader)) => format!(
            "{} knowing leader {}",
            role_name(role),
            leader.map_or("none".to_owned(), |l| l.0.to_string())
        ),
        None => "no answer".to_owned(),
    };
    let after = rejoin.rejoined_after.map_or_else(
        || format!("NOT within {} s", REJOIN_TIMEOUT.as_secs()),
        |d| format!("{:.1} ms", d.as_secs_f64() * 1000.0),
    );
    format!(
        "cut {:>5.1} s: node {} (leader {}), before the heal {before}; heal command {:.1} ms; knew the leader {after} after it",
        rejoin.cut.as_secs_f64(),
        rejoin.node,
        rejoin.leader,
        rejoin.heal_took.as_secs_f64() * 1000.0,
    )
}
