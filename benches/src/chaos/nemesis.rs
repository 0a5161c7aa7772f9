//! The nemesis schedule: which faults happen when, decided entirely by a seed.
//!
//! A run alternates quiet periods with fault windows; each window holds one fault (of a kind
//! chosen among the selected ones) from its start to its end, when it is healed. Membership
//! steps are separate events that land wherever their own clock puts them, so they happen
//! during other faults. Targets are picks (random numbers) that the run resolves against the
//! cluster as it is at that moment ("the leader", "the k-th member"), so the same seed gives
//! the same schedule; which node a pick lands on can differ between replays when elections
//! do.
//!
//! Pure: no clock, no I/O. [`Schedule::generate`] is a function of its arguments.

use std::fmt;

use crate::kvbench::workload::Rng;

mod partition;

pub use partition::partition_blocks;

/// A kind of fault, as selected on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Kill,
    Pause,
    Partition,
    Membership,
    Skew,
    Netem,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Kill,
        Kind::Pause,
        Kind::Partition,
        Kind::Membership,
        Kind::Skew,
        Kind::Netem,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Kill => "kill",
            Kind::Pause => "pause",
            Kind::Partition => "partition",
            Kind::Membership => "membership",
            Kind::Skew => "skew",
            Kind::Netem => "netem",
        }
    }

    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

/// Who a fault hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The current leader (if there is none, a pick of 0).
    Leader,
    /// The member at this pick modulo the member count (members sorted by id).
    Pick(u64),
}

/// How the network is cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// A random minority against the majority, both directions.
    Halves { pick: u64 },
    /// The leader alone against the rest.
    IsolateLeader,
    /// Each node sees a majority that differs from its neighbours' (a bridge below 5 nodes).
    MajorityRing { pick: u64 },
    /// One node cannot send to anyone (`mute`), or cannot receive from anyone.
    OneWay { target: Target, mute: bool },
}

/// One fault, held for a window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Stop `count` members (the first the target, the rest picked), restart at heal: a
    /// minority, or now and then every member; with SIGKILL, or with SIGTERM (`graceful`:
    /// the node's shutdown path, requests in flight answered UNKNOWN).
    Kill {
        target: Target,
        count: usize,
        pick: u64,
        graceful: bool,
    },
    /// SIGSTOP a member, SIGCONT at heal.
    Pause {
        target: Target,
    },
    Partition(Shape),
    /// Move one member's real-time clock by this many seconds.
    Skew {
        target: Target,
        offset_s: i64,
    },
    /// Delay, jitter and loss on one member's outgoing packets.
    Netem {
        target: Target,
        delay_ms: u64,
        jitter_ms: u64,
        loss_percent: u64,
    },
}

impl Fault {
    pub fn kind(&self) -> Kind {
        match self {
            Fault::Kill { .. } => Kind::Kill,
            Fault::Pause { .. } => Kind::Pause,
            Fault::Partition(_) => Kind::Partition,
            Fault::Skew { .. } => Kind::Skew,
            Fault::Netem { .. } => Kind::Netem,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Leader => write!(f, "the leader"),
            Target::Pick(pick) => write!(f, "pick {}", pick % 1000),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Kill {
                target,
                count,
                graceful,
                ..
            } => {
                let how = if *graceful { "SIGTERM" } else { "kill -9" };
                write!(f, "{how} {count} node(s), first {target}")
            }
            Fault::Pause { target } => write!(f, "SIGSTOP {target}"),
            Fault::Partition(Shape::Halves { .. }) => write!(f, "partition into halves"),
            Fault::Partition(Shape::IsolateLeader) => write!(f, "partition: isolate the leader"),
            Fault::Partition(Shape::MajorityRing { .. }) => write!(f, "partition: majority ring"),
            Fault::Partition(Shape::OneWay { target, mute }) => {
                let way = if *mute {
                    "cannot send"
                } else {
                    "cannot receive"
                };
                write!(f, "one-way partition: {target} {way}")
            }
            Fault::Skew { target, offset_s } => write!(f, "clock of {target} {offset_s:+} s"),
            Fault::Netem {
                target,
                delay_ms,
                jitter_ms,
                loss_percent,
            } => write!(
                f,
                "netem on {target}: delay {delay_ms}±{jitter_ms} ms, loss {loss_percent} %"
            ),
        }
    }
}

/// A membership step; the run decides from the current configuration which one applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MembershipStep {
    /// Add a learner (new id, new host) if none is pending, else promote the pending one,
    /// else, above the cluster's size, remove the member at `pick` (possibly the leader).
    Advance { pick: u64 },
    /// Transfer leadership to the member at `pick`.
    Transfer { pick: u64 },
}

/// A fault held over `[start_ms, end_ms)` (milliseconds since the run started).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    pub start_ms: u64,
    pub end_ms: u64,
    pub fault: Fault,
}

/// The whole plan of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub seed: u64,
    pub windows: Vec<Window>,
    pub membership: Vec<(u64, MembershipStep)>,
}

/// Timing of a schedule, in milliseconds.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// No fault before this (the cluster settles, the workload warms up).
    pub quiet_start_ms: u64,
    /// No fault in the last this-many milliseconds of the run.
    pub quiet_end_ms: u64,
    pub fault_ms: (u64, u64),
    pub gap_ms: (u64, u64),
    pub membership_every_ms: (u64, u64),
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            quiet_start_ms: 2_000,
            quiet_end_ms: 2_000,
            fault_ms: (2_000, 7_000),
            gap_ms: (1_000, 4_000),
            membership_every_ms: (2_000, 5_000),
        }
    }
}

/// One kill window in this many stops its nodes with SIGTERM instead of SIGKILL.
pub const GRACEFUL_ONE_IN: u64 = 4;
/// One kill window in this many kills every member.
pub const KILL_ALL_ONE_IN: u64 = 6;

/// Most windows or membership steps in one schedule, whatever the duration.
pub const EVENTS_MAX: usize = 10_000;

impl Schedule {
    /// The plan for a run of `duration_ms` on `nodes` voters with the selected `kinds`.
    pub fn generate(
        seed: u64,
        duration_ms: u64,
        nodes: usize,
        kinds: &[Kind],
        timing: Timing,
    ) -> Schedule {
        let mut rng = Rng::new(seed);
        let window_kinds: Vec<Kind> = kinds
            .iter()
            .copied()
            .filter(|kind| *kind != Kind::Membership)
            .collect();
        let end_ms = duration_ms.saturating_sub(timing.quiet_end_ms);
        let mut windows = Vec::new();
        let mut at = timing.quiet_start_ms;
        while !window_kinds.is_empty()
            && at + timing.fault_ms.0 <= end_ms
            && windows.len() < EVENTS_MAX
        {
            let kind = window_kinds[(rng.next_u64() % window_kinds.len() as u64) as usize];
            let length = between(&mut rng, timing.fault_ms).min(end_ms - at);
            windows.push(Window {
                start_ms: at,
                end_ms: at + length,
                fault: fault(&mut rng, kind, nodes),
            });
            at += length + between(&mut rng, timing.gap_ms);
        }
        let mut membership = Vec::new();
        if kinds.contains(&Kind::Membership) {
            let mut at = timing.quiet_start_ms;
            while at < end_ms && membership.len() < EVENTS_MAX {
                let pick = rng.next_u64();
                let step = if rng.next_u64() % 4 == 0 {
                    MembershipStep::Transfer { pick }
                } else {
                    MembershipStep::Advance { pick }
                };
                membership.push((at, step));
                at += between(&mut rng, timing.membership_every_ms);
            }
        }
        Schedule {
            seed,
            windows,
            membership,
        }
    }
}

fn between(rng: &mut Rng, (low, high): (u64, u64)) -> u64 {
    low + rng.next_u64() % (high.saturating_sub(low) + 1)
}

fn target(rng: &mut Rng) -> Target {
    if rng.next_u64() % 3 == 0 {
        Target::Leader
    } else {
        Target::Pick(rng.next_u64())
    }
}

fn fault(rng: &mut Rng, kind: Kind, nodes: usize) -> Fault {
    let minority = (nodes.max(1) - 1) / 2;
    match kind {
        // One kill in KILL_ALL_ONE_IN takes the whole cluster down at once (every
        // acknowledged write must survive a cluster-wide crash); the others a minority.
        Kind::Kill => Fault::Kill {
            target: target(rng),
            count: if rng.next_u64() % KILL_ALL_ONE_IN == 0 {
                nodes.max(1)
            } else {
                1 + (rng.next_u64() % minority.max(1) as u64) as usize
            },
            pick: rng.next_u64(),
            graceful: rng.next_u64() % GRACEFUL_ONE_IN == 0,
        },
        Kind::Pause => Fault::Pause {
            target: target(rng),
        },
        Kind::Partition => Fault::Partition(match rng.next_u64() % 4 {
            0 => Shape::Halves {
                pick: rng.next_u64(),
            },
            1 => Shape::IsolateLeader,
            2 => Shape::MajorityRing {
                pick: rng.next_u64(),
            },
            _ => Shape::OneWay {
                target: target(rng),
                mute: rng.next_u64() % 2 == 0,
            },
        }),
        Kind::Skew => {
            let magnitude = i64::try_from(30 + rng.next_u64() % 600).expect("small");
            let sign = if rng.next_u64() % 2 == 0 { 1 } else { -1 };
            Fault::Skew {
                target: target(rng),
                offset_s: sign * magnitude,
            }
        }
        Kind::Netem => Fault::Netem {
            target: target(rng),
            delay_ms: 5 + rng.next_u64() % 100,
            jitter_ms: rng.next_u64() % 20,
            loss_percent: rng.next_u64() % 20,
        },
        Kind::Membership => unreachable!("membership steps are not windows"),
    }
}

/// The member a target names.
pub fn resolve(target: Target, members: &[u64], leader: Option<u64>) -> u64 {
    assert!(!members.is_empty(), "resolving a target among no members");
    match target {
        Target::Leader => leader.filter(|l| members.contains(l)).unwrap_or(members[0]),
        Target::Pick(pick) => members[(pick % members.len() as u64) as usize],
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn same_seed_same_schedule_and_windows_stay_inside_the_run() {
        let kinds = Kind::ALL;
        let a = Schedule::generate(42, 60_000, 5, &kinds, Timing::default());
        let b = Schedule::generate(42, 60_000, 5, &kinds, Timing::default());
        let c = Schedule::generate(43, 60_000, 5, &kinds, Timing::default());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.windows.len() >= 5, "{}", a.windows.len());
        assert!(!a.membership.is_empty());
        for pair in a.windows.windows(2) {
            assert!(
                pair[0].end_ms < pair[1].start_ms,
                "windows overlap: {pair:?}"
            );
        }
        for window in &a.windows {
            assert!(
                window.start_ms >= 2_000 && window.end_ms <= 58_000,
                "{window:?}"
            );
        }
        let seen: BTreeSet<Kind> = a.windows.iter().map(|w| w.fault.kind()).collect();
        assert_eq!(
            seen.len(),
            5,
            "every window kind appears in a minute: {seen:?}"
        );
    }

    #[test]
    fn only_selected_kinds_appear() {
        let schedule = Schedule::generate(1, 30_000, 3, &[Kind::Pause], Timing::default());
        assert!(schedule
            .windows
            .iter()
            .all(|w| w.fault.kind() == Kind::Pause));
        assert!(schedule.membership.is_empty());
        let kills = Schedule::generate(1, 30_000, 3, &[Kind::Kill], Timing::default());
        for window in &kills.windows {
            let Fault::Kill { count, .. } = window.fault else {
                unreachable!()
            };
            assert!(
                count == 1 || count == 3,
                "a 3-node cluster loses one node (a minority) or all at once: {count}"
            );
        }
        let long = Schedule::generate(7, 600_000, 5, &[Kind::Kill], Timing::default());
        let counts: BTreeSet<usize> = long
            .windows
            .iter()
            .map(|w| match w.fault {
                Fault::Kill { count, .. } => count,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(
            counts,
            BTreeSet::from([1, 2, 5]),
            "minorities and, now and then, all"
        );
    }
}
