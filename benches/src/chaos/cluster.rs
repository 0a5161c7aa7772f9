//! The live cluster of one run: the network, the hosts, their status; what the nemesis does
//! to them is in [`faults`] and [`membership`].
//!
//! All talk to the nodes (RAFT.STATUS, admin commands, final reads) goes through the client
//! runtime, from inside the client namespace. Every wait polls to a deadline. Dropping the
//! cluster kills every process it started (by pid) and removes the network.

use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kvnode::resp::Frame;
use kvnode::status::{role_name, NodeStatus};
use raft_core::NodeId;

use super::client::{ClientNet, Dialer};
use super::host::{Host, HostOptions, HostState};
use super::net::{BlockBackend, Net};

/// How long one status or admin request may take.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause between polls. Pacing only.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// One node's RAFT.STATUS, parsed by kvnode's own [`NodeStatus`].
pub type Status = NodeStatus;

/// An id list as plain numbers.
pub fn id_list(ids: &[NodeId]) -> Vec<u64> {
    ids.iter().map(|id| id.0).collect()
}

fn parse_status(frame: Frame) -> Option<Status> {
    let Frame::Bulk(text) = frame else {
        return None;
    };
    NodeStatus::parse(&String::from_utf8_lossy(&text)).ok()
}

pub mod faults;
pub mod membership;

pub use faults::Undo;

pub struct Cluster {
    pub net: Net,
    pub client: ClientNet,
    pub hosts: BTreeMap<u64, Host>,
    pub options: HostOptions,
    pub run_dir: PathBuf,
    /// Voters the cluster keeps (membership changes return to this size).
    pub size: usize,
    next_id: u64,
    /// What clients may connect to: every host not removed.
    pub endpoints: Arc<RwLock<Vec<(u64, SocketAddrV4)>>>,
}

impl Cluster {
    /// Creates the network and `size` founding hosts, starts them, and waits for a leader.
    ///
    /// # Errors
    /// If any step fails or no leader appears within `timeout`.
    pub fn start(
        size: usize,
        options: HostOptions,
        run_dir: PathBuf,
        preferred_octet: u8,
        backend: BlockBackend,
        timeout: Duration,
    ) -> Result<Cluster> {
        let net = Net::create(preferred_octet, backend)?;
        let client = ClientNet::start(net.subnet)?;
        let mut cluster = Cluster {
            net,
            client,
            hosts: BTreeMap::new(),
            options,
            run_dir,
            size,
            next_id: size as u64 + 1,
            endpoints: Arc::new(RwLock::new(Vec::new())),
        };
        let founders: Vec<(u64, std::net::Ipv4Addr)> = (1..=size as u64)
            .map(|id| (id, cluster.net.subnet.host_ip(id)))
            .collect();
        for &(id, ip) in &founders {
            cluster.net.add_host(id)?;
            let namespace = cluster.net.subnet.host_namespace(id);
            let mut host = Host::create(
                id,
                namespace,
                ip,
                &cluster.run_dir,
                &founders,
                false,
                &cluster.options,
            )?;
            host.start(&cluster.options)?;
            cluster.hosts.insert(id, host);
        }
        cluster.refresh_endpoints();
        cluster
            .wait_leader(timeout)
            .context("waiting for the first leader")?;
        Ok(cluster)
    }

    pub fn dialer(&self) -> Dialer {
        self.client.dialer()
    }

    /// Hosts that are members as far as the tool knows (not removed), sorted by id.
    pub fn member_ids(&self) -> Vec<u64> {
        self.hosts
            .values()
            .filter(|h| h.state != HostState::Removed)
            .map(|h| h.id)
            .collect()
    }

    pub(crate) fn refresh_endpoints(&self) {
        let endpoints = self
            .hosts
            .values()
            .filter(|h| h.state != HostState::Removed)
            .map(|h| (h.id, h.client_addr()))
            .collect();
        *self.endpoints.write().expect("endpoints lock") = endpoints;
    }

    /// RAFT.STATUS of every member that answers within [`STATUS_TIMEOUT`], asked at once.
    pub fn statuses(&self) -> BTreeMap<u64, Status> {
        let dialer = self.dialer();
        let targets: Vec<(u64, SocketAddrV4)> = self
            .hosts
            .values()
            .filter(|h| h.state == HostState::Running)
            .map(|h| (h.id, h.client_addr()))
            .collect();
        let result = self.client.run(async move {
            let tasks: Vec<_> = targets
                .into_iter()
                .map(|(id, addr)| {
                    tokio::spawn(async move {
                        let reply = dialer
                            .call_once(addr, &["RAFT.STATUS"], STATUS_TIMEOUT)
                            .await;
                        (id, reply.ok().and_then(parse_status))
                    })
                })
                .collect();
            let mut statuses = BTreeMap::new();
            for task in tasks {
                if let Ok((id, Some(status))) = task.await {
                    statuses.insert(id, status);
                }
            }
            statuses
        });
        result.unwrap_or_default()
    }

    /// The leader with the highest term among the answering members.
    pub fn leader(&self) -> Option<u64> {
        self.statuses()
            .iter()
            .filter(|(_, s)| s.is_leader())
            .max_by_key(|(_, s)| s.term)
            .map(|(id, _)| *id)
    }

    /// Polls until some member is leader.
    ///
    /// # Errors
    /// If none appears within `timeout`.
    pub fn wait_leader(&self, timeout: Duration) -> Result<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(leader) = self.leader() {
                return Ok(leader);
            }
            if Instant::now() >= deadline {
                bail!("no leader within {timeout:?}");
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Polls until every member answers and all name the same leader; returns it. The
    /// steady state the availability measurements start each fault from.
    ///
    /// # Errors
    /// If that does not happen within `timeout` (with what the members named).
    pub fn wait_agreed_leader(&self, timeout: Duration) -> Result<u64> {
        let deadline = Instant::now() + timeout;
        let members = self.member_ids();
        loop {
            let statuses = self.statuses();
            let named: Vec<Option<u64>> =
                statuses.values().map(|s| s.leader.map(|l| l.0)).collect();
            if let Some(Some(leader)) = named.first() {
                if statuses.len() == members.len() && named.iter().all(|l| *l == Some(*leader)) {
                    return Ok(*leader);
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "members {members:?} did not agree on a leader within {timeout:?}: {named:?}"
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Sends an admin command to the leader, retrying on TRYAGAIN and connection errors
    /// until `timeout`; returns the last reply as text.
    pub fn admin(&self, args: &[&str], timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no leader");
        while Instant::now() < deadline {
            let Some(leader) = self.leader() else {
                std::thread::sleep(POLL_INTERVAL);
                continue;
            };
            let addr = self.hosts[&leader].client_addr();
            let dialer = self.dialer();
            let owned: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
            let remaining = deadline
                .saturating_duration_since(Instant::now())
                .max(STATUS_TIMEOUT);
            let reply = self.client.run(async move {
                let args: Vec<&str> = owned.iter().map(String::as_str).collect();
                dialer.call_once(addr, &args, remaining).await
            });
            match reply {
                Ok(Ok(Frame::Error(e))) if e.starts_with("TRYAGAIN") => last = format!("-{e}"),
                Ok(Ok(Frame::Simple(s))) => return format!("+{s} (via {leader})"),
                Ok(Ok(other)) => return format!("{other:?} (via {leader})"),
                Ok(Err(e)) => last = format!("{e} (via {leader})"),
                Err(e) => last = format!("{e:#}"),
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        last
    }

    /// Ends every fault: restarts killed hosts, resumes paused ones, heals the network,
    /// removes netem and skew.
    ///
    /// # Errors
    /// If a command fails.
    pub fn heal_all(&mut self) -> Result<()> {
        self.net.heal()?;
        self.net.unshape_all()?;
        for host in self.hosts.values_mut() {
            match host.state {
                HostState::Paused => host.resume()?,
                HostState::Killed => host.start(&self.options)?,
                HostState::Running | HostState::Removed => {}
            }
            if self.options.faketime {
                host.skew(0)?;
            }
        }
        Ok(())
    }

    /// Polls until every member answers with the same applied index, equal to its commit
    /// index, and one of them leads. Returns the statuses.
    ///
    /// # Errors
    /// If that does not happen within `timeout` (with the last statuses).
    pub fn wait_converged(&self, timeout: Duration) -> Result<BTreeMap<u64, Status>> {
        let deadline = Instant::now() + timeout;
        let members = self.member_ids();
        loop {
            let statuses = self.statuses();
            let all_answer = members.iter().all(|id| statuses.contains_key(id));
            let has_leader = statuses.values().any(|s| s.is_leader());
            let applied: Vec<(u64, u64)> = statuses
                .values()
                .map(|s| (s.applied_index.0, s.commit_index.0))
                .collect();
            let same = applied
                .first()
                .is_some_and(|first| applied.iter().all(|(a, c)| a == c && *a == first.0));
            if all_answer && has_leader && same {
                return Ok(statuses);
            }
            if Instant::now() >= deadline {
                let brief: Vec<String> = statuses
                    .iter()
                    .map(|(id, s)| {
                        format!(
                            "{id}: {} term {} applied {} commit {}",
                            role_name(s.role),
                            s.term.0,
                            s.applied_index.0,
                            s.commit_index.0
                        )
                    })
                    .collect();
                bail!(
                    "members {members:?} did not converge within {timeout:?}: {}",
                    brief.join("; ")
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Checks each host for a process that ended by itself; returns (id, status) of new ones.
    pub fn poll_crashes(&mut self) -> Vec<(u64, String)> {
        let mut crashed = Vec::new();
        for host in self.hosts.values_mut() {
            if let Some(status) = host.poll_exit() {
                crashed.push((host.id, status.to_string()));
            }
        }
        crashed
    }

    /// Kills every process and removes the network.
    pub fn teardown(&mut self) {
        for host in self.hosts.values_mut() {
            host.kill();
        }
        self.net.destroy();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.teardown();
    }
}
