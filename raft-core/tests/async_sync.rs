//! The asynchronous-sync contract (`Ready`, "Asynchronous sync"): a leader counts only the
//! part of its own log a finished sync covers, term and vote changes are never left
//! unsynced, and a report about an entry since replaced proves nothing.

use bytes::Bytes;
use raft_core::{
    Config, LogIndex, LogStore, LogStoreMut, MemStore, Membership, Message, Node, NodeId, Role,
    Term,
};

fn node(id: u64, voters: u64) -> Node<MemStore> {
    let membership = Membership::with_voters((1..=voters).map(NodeId));
    Node::new(Config::new(NodeId(id)), MemStore::bootstrap(membership)).expect("valid config")
}

/// Carries out every pending Ready synchronously; returns the messages it sent.
fn drain_synced(node: &mut Node<MemStore>) -> Vec<Message> {
    let mut sent = Vec::new();
    while node.has_ready() {
        let ready = node.ready();
        let store = node.store_mut();
        store.write_ready(&ready).expect("memory");
        store.sync().expect("memory");
        sent.extend(ready.messages);
        sent.extend(ready.persisted_messages);
        node.advance();
    }
    sent
}

/// Carries out every pending Ready with writes only, holding the messages that wait on
/// persistence; returns (sent at once, held).
fn drain_unsynced(node: &mut Node<MemStore>) -> (Vec<Message>, Vec<Message>) {
    let (mut sent, mut held) = (Vec::new(), Vec::new());
    while node.has_ready() {
        let ready = node.ready();
        assert!(!ready.term_or_vote_changed && ready.snapshot.is_none());
        node.store_mut().write_ready(&ready).expect("memory");
        sent.extend(ready.messages);
        held.extend(ready.persisted_messages);
        node.advance_unsynced();
    }
    (sent, held)
}

fn last_entry(node: &Node<MemStore>) -> (LogIndex, Term) {
    let last = node.store().last_index();
    (last, node.store().term(last).expect("last has a term"))
}

fn single_voter_leader() -> Node<MemStore> {
    let mut leader = node(1, 1);
    leader.campaign();
    drain_synced(&mut leader);
    assert_eq!(leader.role(), Role::Leader);
    leader
}

#[test]
fn a_single_voter_commits_only_what_a_finished_sync_covers() {
    let mut leader = single_voter_leader();
    let committed = leader.commit_index();
    let index = leader.propose(Bytes::from_static(b"x")).expect("leader");
    drain_unsynced(&mut leader);
    assert_eq!(leader.store().last_index(), index, "written to the store");
    assert_eq!(leader.commit_index(), committed, "not durable, not counted");

    let (last, term) = last_entry(&leader);
    leader.persisted(last, term);
    assert_eq!(leader.commit_index(), index);
}

#[test]
fn a_sync_report_about_a_replaced_entry_is_ignored() {
    let mut leader = single_voter_leader();
    let committed = leader.commit_index();
    let index = leader.propose(Bytes::from_static(b"x")).expect("leader");
    drain_unsynced(&mut leader);
    leader.persisted(index, Term(leader.term().0 + 1));
    assert_eq!(
        leader.commit_index(),
        committed,
        "wrong term: proves nothing"
    );
    leader.persisted(LogIndex(index.0 + 5), leader.term());
    assert_eq!(
        leader.commit_index(),
        committed,
        "beyond the log: proves nothing"
    );
}

#[test]
#[should_panic(expected = "must be synced")]
fn a_ready_that_changes_the_term_cannot_be_left_unsynced() {
    let mut candidate = node(1, 1);
    candidate.campaign();
    let ready = candidate.ready();
    assert!(ready.term_or_vote_changed);
    candidate.store_mut().write_ready(&ready).expect("memory");
    candidate.advance_unsynced();
}

#[test]
fn a_leader_whose_own_sync_is_slow_commits_on_its_followers_acknowledgements() {
    let mut nodes: Vec<Node<MemStore>> = (1..=3).map(|id| node(id, 3)).collect();
    nodes[0].campaign();
    // The election, synchronously: votes travel until node 1 leads.
    let mut queue = drain_synced(&mut nodes[0]);
    let mut bound = 0;
    while let Some(message) = queue.pop() {
        bound += 1;
        assert!(bound < 1000, "election does not settle");
        let to = (message.to.0 - 1) as usize;
        nodes[to].step(message);
        queue.extend(drain_synced(&mut nodes[to]));
    }
    assert_eq!(nodes[0].role(), Role::Leader);
    let committed = nodes[0].commit_index();

    let index = nodes[0].propose(Bytes::from_static(b"x")).expect("leader");
    let (appends, held) = drain_unsynced(&mut nodes[0]);
    assert!(held.is_empty(), "a leader's appends leave before its sync");
    let mut acks = Vec::new();
    for message in appends {
        let to = (message.to.0 - 1) as usize;
        nodes[to].step(message);
        acks.extend(drain_synced(&mut nodes[to]));
    }
    // One follower's acknowledgement plus a leader that has not synced: no quorum.
    let first_follower = acks
        .iter()
        .position(|m| m.from == NodeId(2))
        .expect("node 2 answered");
    nodes[0].step(acks.remove(first_follower));
    drain_unsynced(&mut nodes[0]);
    assert_eq!(nodes[0].commit_index(), committed);
    // Both followers: a quorum without the leader's own log.
    for ack in acks {
        nodes[0].step(ack);
    }
    drain_unsynced(&mut nodes[0]);
    assert_eq!(nodes[0].commit_index(), index);
}
