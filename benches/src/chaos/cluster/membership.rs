//! Membership changes on the live cluster, decided from the leader's configuration: add a
//! learner (a new id in a new namespace), promote it once caught up, remove a member (possibly
//! the leader), transfer leadership; and reconciling the tool's view with the configuration.

use std::time::Duration;

use anyhow::Result;

use super::super::host::{Host, HostState};
use super::super::nemesis::MembershipStep;
use super::super::net::HOST_ID_MAX;
use super::{id_list, Cluster, Status};

impl Cluster {
    /// The RAFT.STATUS of the leader with the highest term, if any member leads.
    pub fn leader_status(&self) -> Option<Status> {
        self.statuses()
            .into_values()
            .filter(|s| s.is_leader())
            .max_by_key(|s| s.term)
    }

    /// Retires the hosts `leader_status`'s configuration does not list: a removal whose reply
    /// was indeterminate but took effect, or an addition that did not. (An addition left
    /// uncommitted that a later leader commits after all would leave a learner with no
    /// process; that costs availability, never a false anomaly.) Returns the ids retired.
    pub fn reconcile(&mut self, leader_status: &Status) -> Vec<u64> {
        let mut listed = id_list(&leader_status.voters);
        listed.extend(id_list(&leader_status.voters_outgoing));
        listed.extend(id_list(&leader_status.learners));
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
        if !id_list(&leader_status.voters_outgoing).is_empty() {
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
        let voters = id_list(&leader_status.voters);
        let learners = id_list(&leader_status.learners);
        let timeout = Duration::from_secs(5);
        match step {
            MembershipStep::Transfer { pick } if !voters.is_empty() => {
                let to = voters[(pick % voters.len() as u64) as usize];
                let reply = self.admin(&["RAFT.TRANSFER", &to.to_string()], timeout);
                Ok(format!("transfer to {to}: {reply}"))
            }
            MembershipStep::Transfer { .. } => Ok("skipped: no voters".to_owned()),
            MembershipStep::Advance { .. } if !learners.is_empty() => {
                // The leader refuses (TRYAGAIN) a learner it does not see in sync: promoting
                // one that is cut off would leave a joint configuration no side can commit.
                let id = learners[0];
                let lag = leader_status.lag(raft_core::NodeId(id));
                let reply = self.admin(&["RAFT.PROMOTE", &id.to_string()], timeout);
                Ok(format!("promote {id} (lag {lag:?}): {reply}"))
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
}
