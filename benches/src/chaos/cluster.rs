//! The live cluster of one run: the network, the hosts, and what the nemesis does to them.
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

use super::client::{ClientNet, Dialer};
use super::host::{Host, HostOptions, HostState};
use super::nemesis::{self, Fault, MembershipStep};
use super::net::{BlockBackend, Net, HOST_ID_MAX};

/// How long one status or admin request may take.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(1);
/// Most entries a learner may lag the leader's log by to be promoted.
pub const LEARNER_LAG_MAX: u64 = 1000;
/// Pause between polls. Pacing only.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// One node's RAFT.STATUS as key/value pairs.
pub type Status = BTreeMap<String, String>;

/// A status field as a number (0 when absent or not a number).
pub fn status_u64(status: &Status, key: &str) -> u64 {
    status.get(key).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// A status field holding a comma-separated id list.
pub fn status_ids(status: &Status, key: &str) -> Vec<u64> {
    status
        .get(key)
        .map(|v| v.split(',').filter_map(|id| id.parse().ok()).collect())
        .unwrap_or_default()
}

fn parse_status(frame: Frame) -> Option<Status> {
    let Frame::Bulk(text) = frame else {
        return None;
    };
    Some(
        String::from_utf8_lossy(&text)
            .lines()
            .filter_map(|line| line.trim_end_matches('\r').split_once(':'))
            .map(|(key, value)| (key.to_owned(), value.to_owned()))
            .collect(),
    )
}

/// What to undo when a window ends.
#[derive(Debug)]
pub enum Undo {
    Restart(Vec<u64>),
    Resume(u64),
    Heal,
    Unskew(u64),
    Unshape,
    Nothing,
}

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

    fn refresh_endpoints(&self) {
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
            .filter(|(_, s)| s.get("role").map(String::as_str) == Some("leader"))
            .max_by_key(|(_, s)| status_u64(s, "term"))
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

    /// Starts `fault`; returns what to undo and a description of what was done.
    ///
    /// # Errors
    /// If a command fails.
    pub fn apply(&mut self, fault: &Fault) -> Result<(Undo, String)> {
        let members = self.member_ids();
        let leader = self.leader();
        match fault {
            Fault::Kill {
                target,
                count,
                pick,
            } => {
                let mut victims = vec![nemesis::resolve(*target, &members, leader)];
                let mut rng = crate::kvbench::workload::Rng::new(*pick);
                let others: Vec<u64> = members
                    .iter()
                    .copied()
                    .filter(|m| *m != victims[0])
                    .collect();
                let mut others = others;
                while victims.len() < *count && !others.is_empty() {
                    victims.push(others.remove((rng.next_u64() % others.len() as u64) as usize));
                }
                let mut killed = Vec::new();
                for id in victims {
                    let host = self.hosts.get_mut(&id).expect("member");
                    if matches!(host.state, HostState::Running | HostState::Paused) {
                        host.kill();
                        killed.push(id);
                    }
                }
                let text = format!("killed {killed:?} (leader was {leader:?})");
                Ok((Undo::Restart(killed), text))
            }
            Fault::Pause { target } => {
                let id = nemesis::resolve(*target, &members, leader);
                let host = self.hosts.get_mut(&id).expect("member");
                if host.state != HostState::Running {
                    return Ok((Undo::Nothing, format!("node {id} not running, not paused")));
                }
                host.pause()?;
                Ok((
                    Undo::Resume(id),
                    format!("paused {id} (leader was {leader:?})"),
                ))
            }
            Fault::Partition(shape) => {
                let blocks = nemesis::partition_blocks(*shape, &members, leader);
                for (from, to) in &blocks {
                    self.net.block(*from, *to)?;
                }
                Ok((
                    Undo::Heal,
                    format!("blocked {blocks:?} (leader was {leader:?})"),
                ))
            }
            Fault::Skew { target, offset_s } => {
                let id = nemesis::resolve(*target, &members, leader);
                if !self.options.faketime {
                    bail!("the skew nemesis needs the hosts started under libfaketime");
                }
                self.hosts[&id].skew(*offset_s)?;
                Ok((
                    Undo::Unskew(id),
                    format!("clock of {id} moved {offset_s:+} s"),
                ))
            }
            Fault::Netem {
                target,
                delay_ms,
                jitter_ms,
                loss_percent,
            } => {
                let id = nemesis::resolve(*target, &members, leader);
                let how = self.net.shape(id, *delay_ms, *jitter_ms, *loss_percent)?;
                Ok((Undo::Unshape, format!("node {id}: {how}")))
            }
        }
    }

    /// Ends a fault.
    ///
    /// # Errors
    /// If a command fails.
    pub fn undo(&mut self, undo: Undo) -> Result<String> {
        match undo {
            Undo::Restart(ids) => {
                for id in &ids {
                    let host = self.hosts.get_mut(id).expect("member");
                    if host.state == HostState::Killed {
                        host.start(&self.options)?;
                    }
                }
                Ok(format!("restarted {ids:?}"))
            }
            Undo::Resume(id) => {
                let host = self.hosts.get_mut(&id).expect("member");
                if host.state == HostState::Paused {
                    host.resume()?;
                }
                Ok(format!("resumed {id}"))
            }
            Undo::Heal => {
                self.net.heal()?;
                Ok("healed the network".to_owned())
            }
            Undo::Unskew(id) => {
                self.hosts[&id].skew(0)?;
                Ok(format!("clock of {id} back to true time"))
            }
            Undo::Unshape => {
                self.net.unshape_all()?;
                Ok("removed netem".to_owned())
            }
            Undo::Nothing => Ok("nothing to undo".to_owned()),
        }
    }

    /// The RAFT.STATUS of the leader with the highest term, if any member leads.
    pub fn leader_status(&self) -> Option<Status> {
        self.statuses()
            .into_values()
            .filter(|s| s.get("role").map(String::as_str) == Some("leader"))
            .max_by_key(|s| status_u64(s, "term"))
    }

    /// Retires the hosts `leader_status`'s configuration does not list: a removal whose reply
    /// was indeterminate but took effect, or an addition that did not. (An addition left
    /// uncommitted that a later leader commits after all would leave a learner with no
    /// process; that costs availability, never a false anomaly.) Returns the ids retired.
    pub fn reconcile(&mut self, leader_status: &Status) -> Vec<u64> {
        let mut listed = status_ids(leader_status, "voters");
        listed.extend(status_ids(leader_status, "voters_outgoing"));
        listed.extend(status_ids(leader_status, "learners"));
        if listed.is_empty() {
            return Vec::new();
        }
        let gone: Vec<u64> = self
            .hosts
            .values()
            .filter(|h| h.state != HostState::Removed && !listed.contains(&h.id))
            .map(|h| h.id)
            .collect();
        for id in &gone {
            self.hosts.get_mut(id).expect("listed above").retire();
        }
        if !gone.is_empty() {
            self.refresh_endpoints();
        }
        gone
    }

    /// One membership step; returns what happened.
    ///
    /// # Errors
    /// If creating or starting a new host fails.
    pub fn membership(&mut self, step: MembershipStep) -> Result<String> {
        let Some(leader_status) = self.leader_status() else {
            return Ok("skipped: no leader".to_owned());
        };
        let retired = self.reconcile(&leader_status);
        if !status_ids(&leader_status, "voters_outgoing").is_empty() {
            return Ok("skipped: a joint configuration is in progress".to_owned());
        }
        let note = if retired.is_empty() {
            String::new()
        } else {
            format!(" (stopped {retired:?}, no longer in the configuration)")
        };
        self.membership_step(step, &leader_status)
            .map(|what| format!("{what}{note}"))
    }

    fn membership_step(&mut self, step: MembershipStep, leader_status: &Status) -> Result<String> {
        let voters = status_ids(leader_status, "voters");
        let learners = status_ids(leader_status, "learners");
        let timeout = Duration::from_secs(5);
        match step {
            MembershipStep::Transfer { pick } if !voters.is_empty() => {
                let to = voters[(pick % voters.len() as u64) as usize];
                let reply = self.admin(&["RAFT.TRANSFER", &to.to_string()], timeout);
                Ok(format!("transfer to {to}: {reply}"))
            }
            MembershipStep::Transfer { .. } => Ok("skipped: no voters".to_owned()),
            MembershipStep::Advance { .. } if !learners.is_empty() => {
                // As an operator would (README: add, let it catch up, promote): a learner
                // the leader does not see caught up is not promoted. (Promoting one that is
                // cut off leaves a joint configuration no side can commit: the cluster
                // stalls until the partition heals.)
                let id = learners[0];
                let lag = leader_status
                    .get(&format!("lag_{id}"))
                    .and_then(|lag| lag.parse::<u64>().ok());
                match lag {
                    Some(lag) if lag <= LEARNER_LAG_MAX => {
                        let reply = self.admin(&["RAFT.PROMOTE", &id.to_string()], timeout);
                        Ok(format!("promote {id} (lag {lag}): {reply}"))
                    }
                    _ => Ok(format!("skipped: learner {id} not caught up (lag {lag:?})")),
                }
            }
            MembershipStep::Advance { pick } if voters.len() > self.size => {
                let id = voters[(pick % voters.len() as u64) as usize];
                let reply = self.admin(&["RAFT.REMOVE", &id.to_string()], timeout);
                if reply.starts_with('+') {
                    if let Some(host) = self.hosts.get_mut(&id) {
                        host.retire();
                    }
                    self.refresh_endpoints();
                }
                Ok(format!("remove {id}: {reply}"))
            }
            MembershipStep::Advance { .. } => self.membership_add(timeout),
        }
    }

    fn membership_add(&mut self, timeout: Duration) -> Result<String> {
        let id = self.next_id;
        if id > HOST_ID_MAX {
            return Ok("skipped: out of host ids".to_owned());
        }
        self.next_id += 1;
        self.net.add_host(id)?;
        let members: Vec<(u64, std::net::Ipv4Addr)> = self
            .hosts
            .values()
            .filter(|h| h.state != HostState::Removed)
            .map(|h| (h.id, h.ip))
            .collect();
        let namespace = self.net.subnet.host_namespace(id);
        let ip = self.net.subnet.host_ip(id);
        let mut host = Host::create(
            id,
            namespace,
            ip,
            &self.run_dir,
            &members,
            true,
            &self.options,
        )?;
        host.start(&self.options)?;
        let (peer, client) = (host.peer_addr().to_string(), host.client_addr().to_string());
        self.hosts.insert(id, host);
        let reply = self.admin(
            &["RAFT.ADDLEARNER", &id.to_string(), &peer, &client],
            timeout,
        );
        if reply.starts_with('+') {
            self.refresh_endpoints();
        } else if !reply.contains("UNKNOWN") {
            // Certainly not added: it must not linger as a would-be member. (After UNKNOWN
            // it stays until [`Cluster::reconcile`] sees whether the configuration has it.)
            if let Some(host) = self.hosts.get_mut(&id) {
                host.retire();
            }
        }
        Ok(format!("add learner {id}: {reply}"))
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
            let has_leader = statuses
                .values()
                .any(|s| s.get("role").map(String::as_str) == Some("leader"));
            let applied: Vec<(u64, u64)> = statuses
                .values()
                .map(|s| {
                    (
                        status_u64(s, "applied_index"),
                        status_u64(s, "commit_index"),
                    )
                })
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
                            s.get("role").map_or("?", String::as_str),
                            status_u64(s, "term"),
                            status_u64(s, "applied_index"),
                            status_u64(s, "commit_index")
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
