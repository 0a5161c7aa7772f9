//! A brute-force linearizability checker, the reference the search in [`super::linear`] is
//! tested against: it tries every subset of the indeterminate operations and every order of
//! the chosen operations that respects real time, with no pruning beyond "this prefix is
//! already impossible".
//!
//! Exponential on purpose; only for small histories (it refuses more than [`OPS_MAX`]).

use super::linear::{Model, Operation};

/// Most operations the brute-force checker accepts (8! orders times 2^8 subsets).
pub const OPS_MAX: usize = 8;

/// Whether some order of some subset (all determinate operations plus any of the
/// indeterminate ones) is a legal sequential history respecting real time.
///
/// # Panics
/// If `ops` has more than [`OPS_MAX`] operations.
pub fn is_linearizable<M: Model>(model: &M, ops: &[Operation<M::Input, M::Output>]) -> bool {
    assert!(
        ops.len() <= OPS_MAX,
        "brute force takes at most {OPS_MAX} operations, got {}",
        ops.len()
    );
    let optional: Vec<usize> = (0..ops.len())
        .filter(|&i| !ops[i].is_determinate())
        .collect();
    (0u32..(1 << optional.len())).any(|mask| {
        let chosen: Vec<usize> = (0..ops.len())
            .filter(|&i| match optional.iter().position(|&o| o == i) {
                Some(bit) => mask & (1 << bit) != 0,
                None => true,
            })
            .collect();
        let mut used = vec![false; ops.len()];
        orders(model, ops, &chosen, &mut used, &model.init(), 0)
    })
}

/// Depth-first over the orders of `chosen`: `op` may come next only if no other unused chosen
/// operation returned before `op` was called.
fn orders<M: Model>(
    model: &M,
    ops: &[Operation<M::Input, M::Output>],
    chosen: &[usize],
    used: &mut [bool],
    state: &M::State,
    placed: usize,
) -> bool {
    if placed == chosen.len() {
        return true;
    }
    for &op in chosen {
        if used[op] {
            continue;
        }
        let blocked = chosen.iter().any(|&other| {
            !used[other] && other != op && ops[other].return_us.is_some_and(|r| r < ops[op].call_us)
        });
        if blocked {
            continue;
        }
        let Some(next) = model.step(state, &ops[op].input, ops[op].output.as_ref()) else {
            continue;
        };
        used[op] = true;
        let found = orders(model, ops, chosen, used, &next, placed + 1);
        used[op] = false;
        if found {
            return true;
        }
    }
    false
}
