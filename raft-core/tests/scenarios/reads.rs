//! Linearizable reads forwarded by followers (thesis §6.4): a read waits only as long as
//! the situation that could answer it lasts, and is judged by the confirming leader's
//! clock.

use raft_core::{LogIndex, Message, MessageBody, Role, Term};

use crate::harness::{id, Cluster};

const READ: u64 = 7;

/// A 3-node cluster led by node 1, with the election settled.
fn led_by_node_1(pre_vote: bool) -> Cluster {
    let mut cluster = Cluster::new(3, pre_vote);
    cluster.campaign(1);
    cluster.deliver_all();
    assert_eq!(cluster.leader(), Some(1));
    cluster
}

#[test]
fn a_read_forwarded_just_before_its_node_wins_an_election_is_served_by_it_as_leader() {
    let mut cluster = led_by_node_1(false);
    let committed = cluster.node(2).commit_index();
    // The request to node 1 is lost; then node 1 hands leadership to node 2.
    cluster.cut(2, 1);
    cluster
        .request(2, |node| node.read_index(READ))
        .expect("forwarded");
    cluster.deliver_all();
    cluster.heal();
    cluster
        .request(1, |node| node.transfer_leader(id(2)))
        .expect("transfer");
    cluster.deliver_all();
    assert_eq!(cluster.node(2).role(), Role::Leader);
    let read = cluster.released(2, READ).expect("served by the new leader");
    let index = read.index.expect("with a read point");
    assert!(index >= committed, "{index:?} covers {committed:?}");
}

#[test]
fn a_cut_off_followers_forwarded_read_fails_within_two_election_timeouts() {
    let mut cluster = led_by_node_1(true);
    cluster.isolate(2);
    cluster
        .request(2, |node| node.read_index(READ))
        .expect("forwarded");
    // Node 2 campaigns in vain meanwhile; the read is answered by the timeout, not when
    // the partition heals.
    let mut ticks = 0;
    while cluster.released(2, READ).is_none() {
        ticks += 1;
        assert!(ticks <= 25, "not answered within two election timeouts");
        cluster.tick(2);
        cluster.deliver_all();
    }
    let read = cluster.released(2, READ).expect("answered");
    assert_eq!(
        read.index, None,
        "nothing was confirmed: the client retries"
    );
}

#[test]
fn a_forwarded_read_whose_answers_never_arrive_fails_after_two_election_timeouts() {
    let mut cluster = led_by_node_1(false);
    // Node 2 still hears node 1's heartbeats (so it keeps following it), but node 1 never
    // hears node 2.
    cluster.cut(2, 1);
    cluster
        .request(2, |node| node.read_index(READ))
        .expect("forwarded");
    let mut ticks = 0;
    while cluster.released(2, READ).is_none() {
        ticks += 1;
        assert!(ticks <= 100, "the read is never answered");
        cluster.tick(1);
        cluster.tick(2);
        cluster.deliver_all();
    }
    assert_eq!(cluster.released(2, READ).expect("released").index, None);
    assert!(
        ticks >= 20,
        "not before two election timeouts ({ticks} ticks)"
    );
}

#[test]
fn only_the_asked_leader_answers_a_forwarded_read_and_its_clock_comes_with_the_answer() {
    let mut cluster = led_by_node_1(false);
    cluster.request(1, |node| node.set_clock(12_345));
    cluster
        .request(2, |node| node.read_index(READ))
        .expect("forwarded");
    // An answer from node 3, which was not asked, arrives first and proves nothing.
    let term = cluster.node(2).term();
    cluster.inject(Message {
        from: id(3),
        to: id(2),
        term,
        body: MessageBody::ReadIndexResponse {
            request_id: READ,
            index: Some(LogIndex(1)),
            clock: 1,
        },
    });
    cluster.deliver_all();
    let read = cluster.released(2, READ).expect("answered by node 1");
    assert!(read.index.is_some_and(|index| index > LogIndex(1)));
    assert_eq!(read.clock, 12_345, "node 1's clock, not node 3's answer");
    assert_eq!(term, Term(cluster.node(2).term().0));
}
