//! Partition shapes as one-way blocks between members: who cannot send to whom.

use super::{resolve, Shape};
use crate::kvbench::workload::Rng;

/// The members a partition shape cuts, as one-way (from, to) blocks over `members` (sorted
/// ids); `leader` resolves [`Shape::IsolateLeader`] and leader targets.
pub fn partition_blocks(shape: Shape, members: &[u64], leader: Option<u64>) -> Vec<(u64, u64)> {
    let n = members.len();
    if n < 2 {
        return Vec::new();
    }
    let both = |a: &[u64], b: &[u64]| -> Vec<(u64, u64)> {
        let mut blocks = Vec::new();
        for x in a {
            for y in b {
                blocks.push((*x, *y));
                blocks.push((*y, *x));
            }
        }
        blocks
    };
    match shape {
        Shape::Halves { pick } => {
            let mut order = members.to_vec();
            let mut rng = Rng::new(pick);
            for i in (1..n).rev() {
                order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
            }
            let (minority, majority) = order.split_at(n / 2);
            both(minority, majority)
        }
        Shape::IsolateLeader => {
            let alone = leader.unwrap_or(members[0]);
            let rest: Vec<u64> = members.iter().copied().filter(|m| *m != alone).collect();
            both(&[alone], &rest)
        }
        Shape::MajorityRing { pick } if n >= 5 => {
            // Symmetric: over TCP a one-way drop breaks the connection both ways anyway.
            // Each node keeps the links to the nodes within majority/2 steps around the ring
            // (a rotation of `members` by the pick), so it sees a majority, and no two
            // neighbours see the same one.
            let majority = n / 2 + 1;
            let reach = majority / 2;
            let offset = (pick % n as u64) as usize;
            let position = |i: usize| (i + n - offset) % n;
            let mut blocks = Vec::new();
            for i in 0..n {
                for j in 0..n {
                    let distance = position(i).abs_diff(position(j));
                    let distance = distance.min(n - distance);
                    if distance > reach {
                        blocks.push((members[i], members[j]));
                    }
                }
            }
            blocks
        }
        Shape::MajorityRing { pick } => {
            // Below five nodes no symmetric ring exists; the bridge is its closest kin: two
            // sides that cannot see each other, and one node that sees both (each side plus
            // the bridge is a majority).
            let bridge = (pick % n as u64) as usize;
            let rest: Vec<u64> = (0..n)
                .filter(|i| *i != bridge)
                .map(|i| members[i])
                .collect();
            let (left, right) = rest.split_at(rest.len() / 2);
            both(left, right)
        }
        Shape::OneWay { target, mute } => {
            let one = resolve(target, members, leader);
            members
                .iter()
                .filter(|m| **m != one)
                .map(|m| if mute { (one, *m) } else { (*m, one) })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Target;
    use super::*;

    fn cut(blocks: &[(u64, u64)], a: u64, b: u64) -> bool {
        blocks.contains(&(a, b))
    }

    #[test]
    fn partition_shapes_keep_a_majority_connected() {
        let members = [1, 2, 3, 4, 5];
        let halves = partition_blocks(Shape::Halves { pick: 7 }, &members, None);
        // 2 x 3 pairs, both ways.
        assert_eq!(halves.len(), 12);
        let isolated = partition_blocks(Shape::IsolateLeader, &members, Some(3));
        assert_eq!(isolated.len(), 8);
        assert!(cut(&isolated, 3, 1) && cut(&isolated, 1, 3) && !cut(&isolated, 1, 2));
        let ring = partition_blocks(Shape::MajorityRing { pick: 2 }, &members, None);
        for receiver in members {
            let hears = members
                .iter()
                .filter(|s| !cut(&ring, **s, receiver))
                .count();
            assert_eq!(hears, 3, "node {receiver} hears a bare majority");
            for sender in members {
                assert_eq!(
                    cut(&ring, sender, receiver),
                    cut(&ring, receiver, sender),
                    "symmetric"
                );
            }
        }
        let bridge = partition_blocks(Shape::MajorityRing { pick: 1 }, &[1, 2, 3], None);
        assert_eq!(bridge, vec![(1, 3), (3, 1)], "node 2 bridges 1 and 3");
        let mute = partition_blocks(
            Shape::OneWay {
                target: Target::Pick(0),
                mute: true,
            },
            &members,
            None,
        );
        assert!(cut(&mute, 1, 2) && !cut(&mute, 2, 1));
        let deaf = partition_blocks(
            Shape::OneWay {
                target: Target::Leader,
                mute: false,
            },
            &members,
            Some(4),
        );
        assert!(cut(&deaf, 2, 4) && !cut(&deaf, 4, 2));
    }
}
