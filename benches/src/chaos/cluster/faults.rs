//! Starting and ending the nemesis's window faults on the live cluster: resolving targets
//! against the current members and leader, and remembering what to undo.

use anyhow::{bail, Result};

use super::super::host::HostState;
use super::super::nemesis::{self, Fault};
use super::Cluster;

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

impl Cluster {
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
                graceful,
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
                        if *graceful {
                            host.terminate();
                        } else {
                            host.kill();
                        }
                        killed.push(id);
                    }
                }
                let how = if *graceful {
                    "stopped (SIGTERM)"
                } else {
                    "killed"
                };
                let text = format!("{how} {killed:?} (leader was {leader:?})");
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
}
