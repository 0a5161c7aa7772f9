//! Membership changes (thesis §4.3, joint consensus) and leadership transfer (§3.10).

use bytes::Bytes;
use raft_core::{ConfChange, Error, NodeId, Role};

use crate::harness::{id, Cluster};

/// One change at a time: while a configuration entry is uncommitted (or the joint
/// configuration has not been left), another change is refused with a clear error; once
/// the change completes, the next one is accepted.
#[test]
fn a_second_membership_change_while_one_is_in_progress_is_refused() {
    let mut cluster = Cluster::new(3, true);
    cluster.campaign(1);
    cluster.deliver_all();
    let leader = cluster.nodes.get_mut(&id(1)).expect("leader");
    leader
        .propose_conf_change(&[ConfChange::AddLearner(NodeId(4))], Bytes::new())
        .expect("the first change is accepted");
    let second = leader.propose_conf_change(&[ConfChange::Remove(NodeId(3))], Bytes::new());
    assert!(
        matches!(second, Err(Error::ConfChangeInProgress { .. })),
        "got {second:?}"
    );
    cluster.process(id(1));
    cluster.deliver_all();
    cluster.tick_all(2);
    let leader = cluster.nodes.get_mut(&id(1)).expect("leader");
    assert!(leader.membership().is_learner(NodeId(4)));
    // A voter change goes through the joint configuration, left automatically.
    leader
        .propose_conf_change(&[ConfChange::Remove(NodeId(3))], Bytes::new())
        .expect("accepted once the first change committed");
    let during_joint = leader.propose_conf_change(&[ConfChange::Remove(NodeId(2))], Bytes::new());
    assert!(matches!(
        during_joint,
        Err(Error::ConfChangeInProgress { .. })
    ));
    cluster.process(id(1));
    cluster.deliver_all();
    cluster.tick_all(3);
    let membership = cluster.node(1).membership().clone();
    assert!(
        !membership.is_joint(),
        "the leader left the joint configuration: {membership:?}"
    );
    assert_eq!(
        membership.voters.iter().map(|v| v.0).collect::<Vec<_>>(),
        vec![1, 2]
    );
}

/// Thesis §3.10: while transferring, the leader refuses proposals; if the target cannot
/// take over within an election timeout, the leader gives up and accepts proposals again.
#[test]
fn a_leader_transfer_to_an_unreachable_node_is_abandoned_after_an_election_timeout() {
    let mut cluster = Cluster::new(3, true);
    cluster.campaign(1);
    cluster.deliver_all();
    cluster.isolate(3);
    let leader = cluster.nodes.get_mut(&id(1)).expect("leader");
    leader.transfer_leader(NodeId(3)).expect("transfer starts");
    let refused = leader.propose(Bytes::from_static(b"x"));
    assert!(
        matches!(refused, Err(Error::TransferInProgress { target }) if target == NodeId(3)),
        "got {refused:?}"
    );
    cluster.process(id(1));
    let election_ticks = raft_core::Config::new(id(1)).election_ticks;
    cluster.tick_all(election_ticks + 1);
    assert_eq!(
        cluster.node(1).role(),
        Role::Leader,
        "still leader: the majority is intact"
    );
    let leader = cluster.nodes.get_mut(&id(1)).expect("leader");
    leader
        .propose(Bytes::from_static(b"y"))
        .expect("proposals are accepted again after the transfer is abandoned");
}

/// A transfer to a caught-up voter completes: it campaigns at once (TimeoutNow) and wins.
#[test]
fn a_leader_transfer_to_a_caught_up_voter_completes() {
    let mut cluster = Cluster::new(3, true);
    cluster.campaign(1);
    cluster.deliver_all();
    cluster.tick_all(1);
    let term = cluster.node(1).term();
    cluster
        .nodes
        .get_mut(&id(1))
        .expect("leader")
        .transfer_leader(NodeId(2))
        .expect("transfer starts");
    cluster.process(id(1));
    cluster.deliver_all();
    assert_eq!(cluster.leader(), Some(2));
    assert_eq!(cluster.node(2).term(), raft_core::Term(term.0 + 1));
    cluster.check_golden("leader_transfer_completes");
}
