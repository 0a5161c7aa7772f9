//! Log replication and commitment: Figure 8 (§5.4.2), overwriting uncommitted entries
//! (§5.3), and fast repair of lagging or divergent followers.

use raft_core::{AppendResponse, LogIndex, Membership, Message, MessageBody, NodeId, Term};

use crate::harness::{id, Cluster};

fn five_voters() -> Membership {
    Membership::with_voters((1..=5).map(NodeId))
}

/// Figure 8 of the Raft paper. S1 leads term 4 and its entry from term 2 (index 2) is on a
/// majority (S1, S2, S3), yet it must not count that as committed: S5, whose index 2 holds a
/// term-3 entry, could still win an election and overwrite it. Only once an entry of term 4
/// is on a majority are both committed, and then S5 can no longer win.
#[test]
fn figure_8_an_old_term_entry_on_a_majority_is_not_committed_until_a_current_term_entry_is() {
    // Indexes 2.. per server: (c) in Figure 8, just before S1 replicates its term-4 entry.
    let logs = vec![vec![2], vec![2], vec![2], vec![], vec![3]];
    let mut cluster = Cluster::with_logs(five_voters(), &logs, Term(3), false);
    cluster.note("S5 is down; S1 campaigns for term 4 and wins with S2, S3, S4");
    cluster.isolate(5);
    cluster.campaign(1);
    // Deliver only the election: votes out and back, not yet the leader's appends.
    cluster.deliver_round();
    cluster.deliver_round();
    assert_eq!(cluster.leader(), Some(1));
    assert_eq!(cluster.node(1).term(), Term(4));
    cluster.note("S2 and S3 report holding index 2 (the term-2 entry): a majority, but old");
    for follower in [2, 3] {
        cluster.inject(Message {
            from: id(follower),
            to: id(1),
            term: Term(4),
            body: MessageBody::AppendResponse(AppendResponse::Accepted {
                match_index: LogIndex(2),
            }),
        });
    }
    // S1's own appends (carrying its term-4 entry) are lost; the acknowledgements arrive.
    cluster.cut_outbound(1);
    cluster.deliver_round();
    assert!(
        cluster
            .trace
            .iter()
            .any(|line| line.starts_with("n3->n1 t4 Accepted")),
        "the acknowledgements must reach S1 for this test to mean anything"
    );
    assert_eq!(
        cluster.node(1).commit_index(),
        LogIndex(1),
        "§5.4.2: replicas of an old-term entry must not be counted"
    );
    cluster.note(
        "(d) S1 crashes before its term-4 entry spreads; S5 may now win and overwrite index 2",
    );
    cluster.crash(1);
    cluster.heal();
    cluster.isolate(1);
    // S2..S4 voted in term 4 already; S5 wins in term 5.
    for _ in 0..2 {
        cluster.campaign(5);
        cluster.deliver_all();
    }
    assert_eq!(cluster.leader(), Some(5));
    cluster.tick_all(3);
    for server in [2, 3, 4, 5] {
        assert_eq!(
            cluster.node(server).log_term(LogIndex(2)),
            Some(Term(3)),
            "S{server}"
        );
    }
    cluster.check_golden("figure8_old_term_entry_is_overwritten");

    cluster.note("(e) instead: S1 replicates its term-4 entry to a majority before crashing");
    let mut cluster = Cluster::with_logs(five_voters(), &logs, Term(3), false);
    cluster.isolate(5);
    cluster.campaign(1);
    cluster.deliver_all();
    assert_eq!(cluster.leader(), Some(1));
    assert!(
        cluster.node(1).commit_index() >= LogIndex(3),
        "the term-4 entry commits index 2 too"
    );
    cluster.crash(1);
    cluster.heal();
    cluster.isolate(1);
    for _ in 0..3 {
        cluster.campaign(5);
        cluster.deliver_all();
    }
    assert_ne!(
        cluster.leader(),
        Some(5),
        "S5's log is no longer up to date enough to win"
    );
    for server in [2, 3, 4] {
        assert_eq!(
            cluster.node(server).log_term(LogIndex(2)),
            Some(Term(2)),
            "S{server}"
        );
    }
}

/// §5.3: a follower holding extra entries from an old term that were never committed has
/// them overwritten by the leader's log.
#[test]
fn follower_with_extra_uncommitted_entries_from_an_old_term_is_overwritten() {
    let logs = vec![vec![2, 3], vec![2, 3], vec![2, 2, 2, 2, 2]];
    let voters = Membership::with_voters((1..=3).map(NodeId));
    let mut cluster = Cluster::with_logs(voters, &logs, Term(3), true);
    cluster.campaign(1);
    cluster.deliver_all();
    assert_eq!(cluster.leader(), Some(1));
    cluster.tick_all(2);
    assert_eq!(cluster.log_terms(3), cluster.log_terms(1));
    assert_eq!(cluster.node(3).log_term(LogIndex(3)), Some(Term(3)));
    assert!(
        cluster.node(3).last_index() < LogIndex(6),
        "the stale suffix is gone"
    );
    cluster.check_golden("follower_stale_suffix_overwritten");
}

/// Repairs `lagging` from the leader and returns the number of message rounds needed until
/// its log equals the leader's (a round trip is two rounds).
fn rounds_to_repair(cluster: &mut Cluster, leader: u64, lagging: u64) -> usize {
    for round in 1..=200 {
        cluster.deliver_round();
        if cluster.log_terms(lagging) == cluster.log_terms(leader) {
            return round;
        }
    }
    panic!("the follower was not repaired in 200 rounds");
}

/// A follower missing 1,000 entries spread over three terms is repaired in a handful of
/// round trips, not one per entry: rejections carry a hint that skips whole terms, and once
/// matched the leader pipelines batches.
#[test]
fn follower_missing_1000_entries_over_3_terms_is_repaired_in_a_handful_of_round_trips() {
    let long: Vec<u64> = (0..1000).map(|i| 2 + i / 334).collect();
    let logs = vec![long.clone(), long, vec![]];
    let voters = Membership::with_voters((1..=3).map(NodeId));
    let mut cluster = Cluster::with_logs(voters, &logs, Term(4), true);
    cluster.isolate(3);
    cluster.campaign(1);
    cluster.deliver_all();
    cluster.heal();
    assert_eq!(cluster.leader(), Some(1));
    cluster.tick(1);
    let rounds = rounds_to_repair(&mut cluster, 1, 3);
    let round_trips = rounds.div_ceil(2);
    assert!(
        round_trips <= 4,
        "took {round_trips} round trips ({rounds} rounds)"
    );
    eprintln!("missing 1000 entries: repaired in {round_trips} round trips");
}

/// A follower whose log diverges for hundreds of entries (an old term's leader wrote them
/// and never committed them) is repaired in round trips proportional to the number of
/// differing terms.
#[test]
fn follower_with_a_long_divergent_suffix_is_repaired_per_term_not_per_entry() {
    // The leader's log: term 2 for 100 entries, then terms 3, 4, 5 for 300 entries each.
    let leader_log: Vec<u64> = (0..1000)
        .map(|i| if i < 100 { 2 } else { 3 + (i - 100) / 300 })
        .collect();
    // The divergent follower: term 2 for 600 entries (only the first 100 match).
    let divergent: Vec<u64> = vec![2; 600];
    let logs = vec![leader_log.clone(), leader_log, divergent];
    let voters = Membership::with_voters((1..=3).map(NodeId));
    let mut cluster = Cluster::with_logs(voters, &logs, Term(5), true);
    cluster.isolate(3);
    cluster.campaign(1);
    cluster.deliver_all();
    cluster.heal();
    cluster.tick(1);
    let rounds = rounds_to_repair(&mut cluster, 1, 3);
    let round_trips = rounds.div_ceil(2);
    assert!(
        round_trips <= 6,
        "took {round_trips} round trips ({rounds} rounds)"
    );
    assert_eq!(cluster.node(3).log_term(LogIndex(102)), Some(Term(3)));
    eprintln!("600-entry divergent suffix: repaired in {round_trips} round trips");
}
