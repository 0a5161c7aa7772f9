//! Linearizability of one object's history: the Wing-Gong search with Lowe's memoization, as
//! in Porcupine and Knossos.
//!
//! The history is a list of [`Operation`]s, each with a call time and, unless it is
//! indeterminate, a return time and an observed output. The search walks the events in time
//! order and tries to linearize a pending call (apply it to the model) before the earliest
//! pending return; when it reaches a return whose operation it has not linearized, it
//! backtracks. A set of (linearized operations, model state) pairs already explored prunes
//! repeated work (Lowe, "Testing for linearizability", 2017).
//!
//! Indeterminate operations (no return time, no output) may or may not have happened: they can
//! be linearized at any point after their call, or never. The search succeeds once every
//! determinate operation is linearized.
//!
//! Bounded: the search stops after [`Limits::steps_max`] steps or [`Limits::cache_entries_max`]
//! memoized states and says it gave up ([`Verdict::Unknown`]) rather than run on.

use std::collections::HashSet;
use std::fmt::Debug;
use std::hash::Hash;

/// A sequential specification.
pub trait Model {
    type State: Clone + Eq + Hash + Debug;
    type Input: Debug;
    type Output: Debug;

    fn init(&self) -> Self::State;

    /// The state after `input`, if `output` is what the object could answer in `state`.
    /// `output` is `None` for an indeterminate operation: any answer is allowed.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;
}

/// One operation on the object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation<I, O> {
    pub input: I,
    /// `None` for an indeterminate operation.
    pub output: Option<O>,
    pub call_us: u64,
    /// `None` for an indeterminate operation: it may take effect at any later time, or never.
    pub return_us: Option<u64>,
}

impl<I, O> Operation<I, O> {
    pub fn is_determinate(&self) -> bool {
        self.return_us.is_some()
    }
}

/// Where the search stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure<S> {
    /// The longest sequence of operations (indexes) the search could linearize.
    pub prefix: Vec<usize>,
    /// The model state after that prefix.
    pub state: S,
    /// An operation whose return the search could not get past after that prefix: no order
    /// of the operations pending at that point explains its output.
    pub stuck: usize,
}

/// The checker's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict<S> {
    Linearizable,
    Violation(Failure<S>),
    /// The search hit its step or memory bound first.
    Unknown {
        steps: u64,
    },
}

/// Bounds on one search.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub steps_max: u64,
    pub cache_entries_max: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            steps_max: 20_000_000,
            cache_entries_max: 4_000_000,
        }
    }
}

/// Sentinel index of the event list's head.
const HEAD: usize = 0;
/// "No event".
const NIL: usize = usize::MAX;

#[derive(Clone, Copy, Debug)]
enum Event {
    Head,
    Call(usize),
    Return(usize),
}

/// The events as a doubly linked list over a vector, so that lifting an operation out and
/// putting it back (in LIFO order) are O(1) (Knuth's dancing links).
struct EventList {
    events: Vec<Event>,
    next: Vec<usize>,
    prev: Vec<usize>,
    /// For each operation: its call and return node.
    call_node: Vec<usize>,
    return_node: Vec<Option<usize>>,
}

impl EventList {
    fn new<I, O>(ops: &[Operation<I, O>]) -> EventList {
        // (time, calls before returns at equal times so that touching intervals count as
        // concurrent, operation index)
        let mut order: Vec<(u64, u8, usize)> = Vec::with_capacity(2 * ops.len());
        for (index, op) in ops.iter().enumerate() {
            order.push((op.call_us, 0, index));
            if let Some(ret) = op.return_us {
                assert!(
                    ret >= op.call_us,
                    "operation {index} returns ({ret}) before its call ({})",
                    op.call_us
                );
                order.push((ret, 1, index));
            }
        }
        order.sort_unstable();
        let mut events = vec![Event::Head];
        let mut call_node = vec![NIL; ops.len()];
        let mut return_node = vec![None; ops.len()];
        for (_, kind, index) in order {
            if kind == 0 {
                call_node[index] = events.len();
                events.push(Event::Call(index));
            } else {
                return_node[index] = Some(events.len());
                events.push(Event::Return(index));
            }
        }
        let len = events.len();
        let next = (0..len)
            .map(|i| if i + 1 < len { i + 1 } else { NIL })
            .collect();
        let prev = (0..len).map(|i| if i == 0 { NIL } else { i - 1 }).collect();
        EventList {
            events,
            next,
            prev,
            call_node,
            return_node,
        }
    }

    fn unlink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = next;
        if next != NIL {
            self.prev[next] = prev;
        }
    }

    fn relink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = node;
        if next != NIL {
            self.prev[next] = node;
        }
    }

    /// Removes operation `op` (its call, then its return).
    fn lift(&mut self, op: usize) {
        self.unlink(self.call_node[op]);
        if let Some(node) = self.return_node[op] {
            self.unlink(node);
        }
    }

    /// Undoes the last [`EventList::lift`] of `op` (reverse order).
    fn unlift(&mut self, op: usize) {
        if let Some(node) = self.return_node[op] {
            self.relink(node);
        }
        self.relink(self.call_node[op]);
    }
}

/// A set of operation indexes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct BitSet(Vec<u64>);

impl BitSet {
    fn new(len: usize) -> BitSet {
        BitSet(vec![0; len.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

/// Decides whether `ops` is linearizable with respect to `model`.
pub fn check<M: Model>(
    model: &M,
    ops: &[Operation<M::Input, M::Output>],
    limits: Limits,
) -> Verdict<M::State> {
    let mut list = EventList::new(ops);
    let mut remaining = ops.iter().filter(|op| op.is_determinate()).count();
    let mut state = model.init();
    let mut linearized = BitSet::new(ops.len());
    let mut cache: HashSet<(BitSet, M::State)> = HashSet::new();
    // (operation, state before it)
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut best: Option<Failure<M::State>> = None;
    let mut entry = list.next[HEAD];
    let mut steps = 0u64;
    loop {
        if remaining == 0 {
            return Verdict::Linearizable;
        }
        steps += 1;
        if steps > limits.steps_max || cache.len() > limits.cache_entries_max {
            return Verdict::Unknown { steps };
        }
        // Every determinate operation not yet linearized still has its return in the list,
        // so the walk meets a return before it runs off the end.
        assert!(
            entry != NIL,
            "event walk ended with {remaining} returns left"
        );
        match list.events[entry] {
            Event::Head => unreachable!("the head is never after another node"),
            Event::Call(op) => {
                let output = ops[op].output.as_ref();
                let next = model.step(&state, &ops[op].input, output);
                if let Some(next) = next {
                    let mut grown = linearized.clone();
                    grown.set(op);
                    if cache.insert((grown.clone(), next.clone())) {
                        stack.push((op, std::mem::replace(&mut state, next)));
                        linearized = grown;
                        list.lift(op);
                        if ops[op].is_determinate() {
                            remaining -= 1;
                        }
                        entry = list.next[HEAD];
                        continue;
                    }
                }
                entry = list.next[entry];
            }
            Event::Return(stuck) => {
                if best.as_ref().is_none_or(|b| stack.len() > b.prefix.len()) {
                    best = Some(Failure {
                        prefix: stack.iter().map(|(op, _)| *op).collect(),
                        state: state.clone(),
                        stuck,
                    });
                }
                let Some((op, before)) = stack.pop() else {
                    return Verdict::Violation(best.expect("recorded just above"));
                };
                list.unlift(op);
                linearized.clear(op);
                if ops[op].is_determinate() {
                    remaining += 1;
                }
                state = before;
                entry = list.next[list.call_node[op]];
            }
        }
    }
}

/// A read/write register with unique written values; `None` is the initial nil.
#[derive(Clone, Copy, Debug, Default)]
pub struct RegisterModel;

/// A register operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterInput {
    Read,
    Write(u64),
}

impl Model for RegisterModel {
    type State = Option<u64>;
    type Input = RegisterInput;
    /// What a read returned (writes return nothing worth checking).
    type Output = Option<u64>;

    fn init(&self) -> Option<u64> {
        None
    }

    fn step(
        &self,
        state: &Option<u64>,
        input: &RegisterInput,
        output: Option<&Option<u64>>,
    ) -> Option<Option<u64>> {
        match input {
            RegisterInput::Write(value) => Some(Some(*value)),
            RegisterInput::Read => match output {
                Some(seen) if seen != state => None,
                _ => Some(*state),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(value: u64, call: u64, ret: Option<u64>) -> Operation<RegisterInput, Option<u64>> {
        Operation {
            input: RegisterInput::Write(value),
            output: ret.map(|_| None),
            call_us: call,
            return_us: ret,
        }
    }

    fn r(seen: Option<u64>, call: u64, ret: u64) -> Operation<RegisterInput, Option<u64>> {
        Operation {
            input: RegisterInput::Read,
            output: Some(seen),
            call_us: call,
            return_us: Some(ret),
        }
    }

    fn verdict(ops: &[Operation<RegisterInput, Option<u64>>]) -> Verdict<Option<u64>> {
        check(&RegisterModel, ops, Limits::default())
    }

    #[test]
    fn empty_and_sequential_histories_are_linearizable() {
        assert_eq!(verdict(&[]), Verdict::Linearizable);
        let ops = [w(1, 0, Some(10)), r(Some(1), 20, 30), w(2, 40, Some(50))];
        assert_eq!(verdict(&ops), Verdict::Linearizable);
    }

    #[test]
    fn stale_read_after_a_completed_write_is_a_violation() {
        // write 1 completes, write 2 completes, then a read sees 1.
        let ops = [w(1, 0, Some(10)), w(2, 20, Some(30)), r(Some(1), 40, 50)];
        let Verdict::Violation(failure) = verdict(&ops) else {
            panic!("stale read accepted");
        };
        assert_eq!(failure.stuck, 2, "{failure:?}");
        assert_eq!(failure.prefix, vec![0, 1]);
        assert_eq!(failure.state, Some(2));
    }

    #[test]
    fn concurrent_read_may_see_either_value() {
        for seen in [Some(1), Some(2)] {
            let ops = [w(1, 0, Some(10)), w(2, 20, Some(60)), r(seen, 30, 50)];
            assert_eq!(verdict(&ops), Verdict::Linearizable, "read {seen:?}");
        }
    }

    #[test]
    fn indeterminate_write_may_or_may_not_have_happened() {
        // It happened (a later read sees it) ...
        let happened = [w(1, 0, Some(10)), w(2, 20, None), r(Some(2), 100, 110)];
        assert_eq!(verdict(&happened), Verdict::Linearizable);
        // ... or it did not ...
        let not = [w(1, 0, Some(10)), w(2, 20, None), r(Some(1), 100, 110)];
        assert_eq!(verdict(&not), Verdict::Linearizable);
        // ... and it may take effect long after the client gave up on it ...
        let late = [
            w(1, 0, Some(10)),
            w(2, 20, None),
            r(Some(1), 100, 110),
            r(Some(2), 200, 210),
        ];
        assert_eq!(verdict(&late), Verdict::Linearizable);
        // ... but it cannot un-happen.
        let flip = [
            w(1, 0, Some(10)),
            w(2, 20, None),
            r(Some(2), 100, 110),
            r(Some(1), 200, 210),
        ];
        assert!(matches!(verdict(&flip), Verdict::Violation(_)));
    }

    #[test]
    fn a_read_cannot_see_a_write_invoked_after_it_returned() {
        let ops = [r(Some(1), 0, 10), w(1, 20, Some(30))];
        assert!(matches!(verdict(&ops), Verdict::Violation(_)));
    }

    #[test]
    fn reads_must_agree_on_the_order_of_concurrent_writes() {
        // Two concurrent writes; one reader sees 1 then 2, another sees 2 then 1, all after
        // both writes completed: no single order explains both.
        let ops = [
            w(1, 0, Some(100)),
            w(2, 0, Some(100)),
            r(Some(1), 200, 210),
            r(Some(2), 220, 230),
            r(Some(1), 240, 250),
        ];
        assert!(matches!(verdict(&ops), Verdict::Violation(_)));
    }

    #[test]
    fn search_gives_up_at_its_step_bound() {
        let ops: Vec<_> = (0..12).map(|v| w(v, 0, Some(1000))).collect();
        let mut ops = ops;
        ops.push(r(Some(99), 2000, 2010));
        let limits = Limits {
            steps_max: 50,
            cache_entries_max: 1_000_000,
        };
        assert_eq!(
            check(&RegisterModel, &ops, limits),
            Verdict::Unknown { steps: 51 }
        );
    }
}
