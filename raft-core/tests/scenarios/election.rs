//! Elections: who may vote for whom (§5.4.1), pre-vote (thesis §9.6), check-quorum
//! (thesis §6.2).

use raft_core::{Membership, Message, MessageBody, NodeId, Role, Term};

use crate::harness::{id, Cluster};

/// Asks every other node to vote for `candidate` in `term` and returns who granted.
fn voters_for(logs: &[Vec<u64>], candidate: u64, term: u64) -> Vec<u64> {
    let n = logs.len() as u64;
    let voters = Membership::with_voters((1..=n).map(NodeId));
    let mut cluster = Cluster::with_logs(voters, logs, Term(term - 1), false);
    let node = cluster.node(candidate);
    let (last_log_index, last_log_term) =
        (node.last_index(), node.log_term(node.last_index()).unwrap());
    let mut granted = Vec::new();
    for voter in (1..=n).filter(|&v| v != candidate) {
        cluster.inject(Message {
            from: id(candidate),
            to: id(voter),
            term: Term(term),
            body: MessageBody::Vote {
                last_log_index,
                last_log_term,
                leader_transfer: false,
            },
        });
        // The request arrives, then its answer reaches the candidate and the trace.
        cluster.deliver_round();
        cluster.deliver_round();
        let from_voter = format!("n{voter}->n{candidate}");
        let answer = cluster
            .trace
            .iter()
            .rev()
            .find(|line| line.starts_with(&from_voter))
            .expect("the voter answered");
        if answer.contains("VoteResponse granted=true") {
            granted.push(voter);
        }
    }
    granted
}

/// The "Raft log trivia" of seed 001 (five logs over terms 1..3, indexes 1..9): if each
/// server campaigns for term 4, who can vote for it? Only servers whose log is no more up to
/// date — a higher last term, or the same last term and a longer log, refuses (§5.4.1).
#[test]
fn who_can_vote_for_whom_in_the_five_log_trivia() {
    // Index 1 is the bootstrap entry of term 1; the lists give indexes 2..
    let logs = vec![
        vec![1, 1, 2, 2, 3, 3, 3],    // S1: 1 1 1 2 2 3 3 3
        vec![1, 1, 2, 2, 3, 3],       // S2: 1 1 1 2 2 3 3
        vec![1, 1, 2, 2, 3, 3, 3, 3], // S3: 1 1 1 2 2 3 3 3 3
        vec![1, 1, 2, 2, 3, 3, 3],    // S4: 1 1 1 2 2 3 3 3
        vec![1, 1, 2, 2, 2, 2, 2, 2], // S5: 1 1 1 2 2 2 2 2 2
    ];
    let expected: [(u64, Vec<u64>); 5] = [
        (1, vec![2, 4, 5]),
        (2, vec![5]),
        (3, vec![1, 2, 4, 5]),
        (4, vec![1, 2, 5]),
        (5, vec![]),
    ];
    for (candidate, voters) in expected {
        assert_eq!(
            voters_for(&logs, candidate, 4),
            voters,
            "voters for S{candidate}"
        );
    }
}

/// Seed 002: four logs end in term 2, one (E) in term 3. E's last term is higher, so all
/// grant it; none of A..D can win E's vote, whatever their length.
#[test]
fn a_higher_last_term_beats_a_longer_log() {
    let logs = vec![
        vec![2, 2, 2],
        vec![2, 2, 2],
        vec![2, 2, 2],
        vec![2, 2, 2],
        vec![3],
    ];
    assert_eq!(voters_for(&logs, 5, 4), vec![1, 2, 3, 4]);
    for candidate in 1..=4 {
        let granted = voters_for(&logs, candidate, 4);
        assert!(
            !granted.contains(&5),
            "E must refuse S{candidate}: {granted:?}"
        );
        assert_eq!(granted.len(), 3, "the other term-2 logs grant S{candidate}");
    }
}

#[test]
fn a_candidate_with_a_shorter_log_in_the_same_term_is_refused() {
    let logs = vec![vec![2, 2], vec![2, 2, 2], vec![2, 2]];
    assert_eq!(voters_for(&logs, 1, 3), vec![3]);
    assert_eq!(voters_for(&logs, 2, 3), vec![1, 3]);
}

/// Thesis §9.6: a node cut off from the cluster keeps failing its pre-vote, so its term
/// does not grow, and rejoining does not depose the healthy leader.
#[test]
fn partitioned_node_rejoining_does_not_disrupt_a_healthy_leader_with_pre_vote() {
    let mut cluster = Cluster::new(3, true);
    cluster.campaign(1);
    cluster.deliver_all();
    assert_eq!(cluster.leader(), Some(1));
    let term = cluster.node(1).term();
    cluster.note("n3 is cut off for 100 ticks");
    cluster.isolate(3);
    cluster.tick_all(100);
    assert_eq!(
        cluster.node(3).term(),
        term,
        "pre-vote keeps the isolated node's term"
    );
    cluster.note("the partition heals");
    cluster.heal();
    cluster.tick_all(20);
    assert_eq!(cluster.leader(), Some(1));
    assert_eq!(cluster.node(1).term(), term, "the leader was never deposed");
    assert_eq!(cluster.node(3).leader(), Some(id(1)));
    cluster.check_golden("prevote_partitioned_node_rejoins");
}

/// Without pre-vote the same partition inflates the isolated node's term, and when it
/// rejoins the leader must step down: the disruption pre-vote exists to prevent.
#[test]
fn without_pre_vote_a_rejoining_node_forces_a_new_term() {
    let mut cluster = Cluster::new(3, false);
    cluster.campaign(1);
    cluster.deliver_all();
    let term = cluster.node(1).term();
    cluster.isolate(3);
    cluster.tick_all(100);
    assert!(cluster.node(3).term() > term, "terms grow without pre-vote");
    cluster.heal();
    cluster.tick_all(40);
    let leader = cluster.leader().expect("a leader again");
    assert!(
        cluster.node(leader).term() > term,
        "the cluster had to move to a new term"
    );
}

/// Thesis §6.2: a leader that has not heard from a quorum for an election timeout steps
/// down, so clients stop waiting on it, and the majority elects another.
#[test]
fn leader_cut_off_from_the_majority_steps_down_with_check_quorum() {
    let mut cluster = Cluster::new(5, true);
    cluster.campaign(1);
    cluster.deliver_all();
    assert_eq!(cluster.leader(), Some(1));
    cluster.note("n1 is cut off from everyone");
    cluster.isolate(1);
    let election_ticks = raft_core::Config::new(id(1)).election_ticks;
    cluster.tick_all(2 * election_ticks);
    assert_eq!(
        cluster.node(1).role(),
        Role::Follower,
        "the isolated leader stepped down"
    );
    assert_eq!(cluster.node(1).leader(), None);
    cluster.tick_all(3 * election_ticks);
    let leader = cluster.leader().expect("the majority elects a new leader");
    assert_ne!(leader, 1);
    cluster.check_golden("checkquorum_isolated_leader_steps_down");
}
