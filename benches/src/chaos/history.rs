//! What the clients did: one [`Op`] per request, with its invocation and completion times and
//! what the reply meant.
//!
//! Reply semantics (kvnode/COMMANDS.md): a value or `+OK` means the operation happened;
//! `-TRYAGAIN` means it certainly did not (a claim of the server that the checkers hold it to);
//! `-UNKNOWN`, a timeout, a closed connection or any other surprise means it may or may not
//! have happened ([`Outcome::Indeterminate`]). An indeterminate operation has no return time:
//! the checkers treat it as open until the end of time.
//!
//! Times are microseconds since the run started, from one monotonic clock shared by every
//! client, so `a.complete_us < b.invoke_us` means a really finished before b began.

use std::fmt;

/// Which workload an operation belongs to (each has its own keys and checker).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Workload {
    /// `SET key v` / `GET key` with unique values: checked for linearizability per key.
    Register,
    /// `INCR key` / `GET key`: checked against the bounds the acknowledgements allow.
    Counter,
    /// `APPEND key "e,"` of unique elements / `GET key`: nothing lost, duplicated or invented.
    Set,
    /// Bank transfers between accounts in `MULTI`/`EXEC`, and reads of every account at one
    /// read point: the total never changes, and no partial transfer is ever seen.
    Txn,
}

impl Workload {
    pub const ALL: [Workload; 4] = [
        Workload::Register,
        Workload::Counter,
        Workload::Set,
        Workload::Txn,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Register => "register",
            Workload::Counter => "counter",
            Workload::Set => "set",
            Workload::Txn => "txn",
        }
    }

    /// Parses a name from the command line.
    pub fn parse(name: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == name)
    }
}

/// What a client asked for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Call {
    /// `GET key`.
    Read,
    /// `SET key value`: the value is unique within the run.
    Write(u64),
    /// `INCR key`.
    Incr,
    /// `APPEND key "element,"`: the element is unique within the run.
    Append(u64),
    /// `MULTI; DECRBY from amount; INCRBY to amount; EXEC` (accounts by number).
    Transfer { from: u32, to: u32, amount: u64 },
}

/// What an acknowledged operation returned.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Ret {
    /// `+OK` (SET) or the new length (APPEND): nothing to check but that it happened.
    Done,
    /// A register read: the value, or `None` for nil.
    Register(Option<u64>),
    /// A counter read (nil counts as 0) or INCR's new value.
    Counter(i64),
    /// A set read: the elements in the order the value holds them.
    Elements(Vec<u64>),
    /// A read of every account at one read point (nil counts as 0), in account order.
    Balances(Vec<i64>),
}

/// What became of an operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The operation happened and returned this.
    Ok(Ret),
    /// `-TRYAGAIN`: the server says it certainly did not happen.
    Failed(String),
    /// It may or may not have happened (`-UNKNOWN`, timeout, closed connection, odd reply).
    Indeterminate(String),
}

impl Outcome {
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok(_))
    }

    pub fn is_indeterminate(&self) -> bool {
        matches!(self, Outcome::Indeterminate(_))
    }
}

/// When an operation ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// While the nemesis was active.
    Main,
    /// After healing: the final reads through every node.
    Final,
}

/// One client request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// Position in the history (assigned by [`History::push`]).
    pub index: usize,
    /// The client that sent it. A client sends one request at a time; after an indeterminate
    /// outcome it continues under a new process number, as in Jepsen.
    pub process: u64,
    pub workload: Workload,
    pub key: String,
    /// The node the request was sent to.
    pub node: u64,
    pub call: Call,
    pub invoke_us: u64,
    /// When the reply (or the timeout, or the error) was seen. For an indeterminate operation
    /// this is not a return time: the operation may take effect later.
    pub complete_us: u64,
    pub outcome: Outcome,
    pub phase: Phase,
}

impl Op {
    /// The return time the checkers use: `None` (never) for an indeterminate operation.
    pub fn return_us(&self) -> Option<u64> {
        match self.outcome {
            Outcome::Indeterminate(_) => None,
            _ => Some(self.complete_us),
        }
    }

    /// Whether the operation changes state when it happens.
    pub fn is_write(&self) -> bool {
        !matches!(self.call, Call::Read)
    }

    /// One JSON object (the history file has one per line).
    pub fn to_json(&self) -> serde_json::Value {
        let (outcome, detail) = match &self.outcome {
            Outcome::Ok(ret) => ("ok", ret_json(ret)),
            Outcome::Failed(why) => ("fail", serde_json::Value::from(why.as_str())),
            Outcome::Indeterminate(why) => ("info", serde_json::Value::from(why.as_str())),
        };
        serde_json::json!({
            "index": self.index,
            "process": self.process,
            "workload": self.workload.name(),
            "key": self.key,
            "node": self.node,
            "call": call_name(&self.call),
            "arg": call_arg(&self.call),
            "invoke_us": self.invoke_us,
            "complete_us": self.complete_us,
            "outcome": outcome,
            "value": detail,
            "final": self.phase == Phase::Final,
        })
    }
}

impl Op {
    /// Parses one line of `history.jsonl` (what [`Op::to_json`] wrote).
    ///
    /// # Errors
    /// A description of the first field that is missing or malformed.
    pub fn from_json(value: &serde_json::Value) -> Result<Op, String> {
        let u = |name: &str| {
            value[name]
                .as_u64()
                .ok_or_else(|| format!("{name} is not a number"))
        };
        let text = |name: &str| {
            value[name]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("{name} is not a string"))
        };
        let workload = Workload::parse(&text("workload")?).ok_or("unknown workload")?;
        let call = match text("call")?.as_str() {
            "read" => Call::Read,
            "write" => Call::Write(u("arg")?),
            "incr" => Call::Incr,
            "append" => Call::Append(u("arg")?),
            "transfer" => {
                let arg = &value["arg"];
                let part = |i: usize| {
                    arg[i]
                        .as_u64()
                        .ok_or_else(|| format!("transfer arg {i} is not a number"))
                };
                let account =
                    |i: usize| part(i).and_then(|n| u32::try_from(n).map_err(|e| e.to_string()));
                Call::Transfer {
                    from: account(0)?,
                    to: account(1)?,
                    amount: part(2)?,
                }
            }
            other => return Err(format!("unknown call {other}")),
        };
        let detail = &value["value"];
        let outcome = match text("outcome")?.as_str() {
            "ok" => Outcome::Ok(match (&call, workload) {
                (Call::Write(_) | Call::Append(_) | Call::Transfer { .. }, _) => Ret::Done,
                (Call::Read, Workload::Txn) => Ret::Balances(
                    detail
                        .as_array()
                        .ok_or("balances are not an array")?
                        .iter()
                        .map(|b| b.as_i64().ok_or("balance is not a number"))
                        .collect::<Result<_, _>>()?,
                ),
                (Call::Incr, _) | (Call::Read, Workload::Counter) => {
                    Ret::Counter(detail.as_i64().ok_or("counter value is not a number")?)
                }
                (Call::Read, Workload::Register) => Ret::Register(detail.as_u64()),
                (Call::Read, Workload::Set) => Ret::Elements(
                    detail
                        .as_array()
                        .ok_or("set value is not an array")?
                        .iter()
                        .map(|e| e.as_u64().ok_or("set element is not a number"))
                        .collect::<Result<_, _>>()?,
                ),
            }),
            "fail" => Outcome::Failed(text("value")?),
            "info" => Outcome::Indeterminate(text("value")?),
            other => return Err(format!("unknown outcome {other}")),
        };
        Ok(Op {
            index: usize::try_from(u("index")?).map_err(|e| e.to_string())?,
            process: u("process")?,
            workload,
            key: text("key")?,
            node: u("node")?,
            call,
            invoke_us: u("invoke_us")?,
            complete_us: u("complete_us")?,
            outcome,
            phase: if value["final"].as_bool() == Some(true) {
                Phase::Final
            } else {
                Phase::Main
            },
        })
    }
}

fn call_name(call: &Call) -> &'static str {
    match call {
        Call::Read => "read",
        Call::Write(_) => "write",
        Call::Incr => "incr",
        Call::Append(_) => "append",
        Call::Transfer { .. } => "transfer",
    }
}

fn call_arg(call: &Call) -> serde_json::Value {
    match call {
        Call::Write(v) | Call::Append(v) => serde_json::Value::from(*v),
        Call::Transfer { from, to, amount } => serde_json::json!([from, to, amount]),
        Call::Read | Call::Incr => serde_json::Value::Null,
    }
}

fn ret_json(ret: &Ret) -> serde_json::Value {
    match ret {
        Ret::Done => serde_json::Value::Null,
        Ret::Register(value) => value.map_or(serde_json::Value::Null, serde_json::Value::from),
        Ret::Counter(value) => serde_json::Value::from(*value),
        Ret::Elements(elements) => serde_json::Value::from(elements.clone()),
        Ret::Balances(balances) => serde_json::Value::from(balances.clone()),
    }
}

impl fmt::Display for Op {
    /// One line for witnesses: `#12 p3 n2 [1.204512 s, 1.206010 s] write 17 -> ok`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = |us: u64| us as f64 / 1e6;
        let call = match &self.call {
            Call::Read => "read".to_owned(),
            Call::Write(v) => format!("write {v}"),
            Call::Incr => "incr".to_owned(),
            Call::Append(e) => format!("append {e}"),
            Call::Transfer { from, to, amount } => format!("transfer {amount} t{from}->t{to}"),
        };
        let outcome = match &self.outcome {
            Outcome::Ok(Ret::Done) => "ok".to_owned(),
            Outcome::Ok(Ret::Register(None)) => "ok nil".to_owned(),
            Outcome::Ok(Ret::Register(Some(v))) => format!("ok {v}"),
            Outcome::Ok(Ret::Counter(v)) => format!("ok {v}"),
            Outcome::Ok(Ret::Elements(e)) => format!("ok {} elements", e.len()),
            Outcome::Ok(Ret::Balances(b)) => {
                format!("ok {b:?} (sum {})", b.iter().sum::<i64>())
            }
            Outcome::Failed(why) => format!("FAILED ({why})"),
            Outcome::Indeterminate(why) => format!("INDETERMINATE ({why})"),
        };
        let end = match self.return_us() {
            Some(us) => format!("{:.6} s", secs(us)),
            None => format!("open; seen {:.6} s", secs(self.complete_us)),
        };
        write!(
            f,
            "#{} p{} n{} [{:.6} s, {end}] {} {call} -> {outcome}",
            self.index,
            self.process,
            self.node,
            secs(self.invoke_us),
            self.key
        )
    }
}

/// Every operation of a run, in the order they completed.
#[derive(Clone, Debug, Default)]
pub struct History {
    ops: Vec<Op>,
}

impl History {
    pub fn new() -> History {
        History::default()
    }

    /// Appends `op`, giving it the next index.
    pub fn push(&mut self, mut op: Op) {
        op.index = self.ops.len();
        self.ops.push(op);
    }

    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Parses a `history.jsonl` file's text.
    ///
    /// # Errors
    /// The first line that does not parse, with its number.
    pub fn from_jsonl(text: &str) -> Result<History, String> {
        let mut history = History::new();
        for (number, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let value: serde_json::Value =
                serde_json::from_str(line).map_err(|e| format!("line {}: {e}", number + 1))?;
            let op = Op::from_json(&value).map_err(|e| format!("line {}: {e}", number + 1))?;
            history.push(op);
        }
        Ok(history)
    }

    /// The operations of one workload, grouped by key (keys sorted, ops in index order).
    pub fn by_key(&self, workload: Workload) -> Vec<(String, Vec<&Op>)> {
        let mut keys: std::collections::BTreeMap<&str, Vec<&Op>> = Default::default();
        for op in self.ops.iter().filter(|op| op.workload == workload) {
            keys.entry(op.key.as_str()).or_default().push(op);
        }
        keys.into_iter()
            .map(|(key, ops)| (key.to_owned(), ops))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(call: Call, outcome: Outcome) -> Op {
        Op {
            index: 0,
            process: 1,
            workload: Workload::Register,
            key: "r1".into(),
            node: 2,
            call,
            invoke_us: 1_000_000,
            complete_us: 1_500_000,
            outcome,
            phase: Phase::Main,
        }
    }

    #[test]
    fn indeterminate_operations_have_no_return_time() {
        assert_eq!(
            op(Call::Write(1), Outcome::Ok(Ret::Done)).return_us(),
            Some(1_500_000)
        );
        assert_eq!(
            op(Call::Write(1), Outcome::Failed("TRYAGAIN".into())).return_us(),
            Some(1_500_000)
        );
        assert_eq!(
            op(Call::Write(1), Outcome::Indeterminate("timeout".into())).return_us(),
            None
        );
    }

    #[test]
    fn history_groups_by_workload_and_key() {
        let mut history = History::new();
        for (workload, key) in [
            (Workload::Register, "b"),
            (Workload::Counter, "c"),
            (Workload::Register, "a"),
            (Workload::Register, "b"),
        ] {
            let mut op = op(Call::Read, Outcome::Ok(Ret::Register(None)));
            op.workload = workload;
            op.key = key.into();
            history.push(op);
        }
        let groups = history.by_key(Workload::Register);
        let shape: Vec<(String, Vec<usize>)> = groups
            .into_iter()
            .map(|(key, ops)| (key, ops.iter().map(|op| op.index).collect()))
            .collect();
        assert_eq!(
            shape,
            vec![("a".to_owned(), vec![2]), ("b".to_owned(), vec![0, 3])]
        );
    }

    #[test]
    fn json_lines_round_trip() {
        let mut history = History::new();
        let mut counter = op(Call::Incr, Outcome::Ok(Ret::Counter(-3)));
        counter.workload = Workload::Counter;
        let mut set = op(Call::Read, Outcome::Ok(Ret::Elements(vec![4, 2])));
        set.workload = Workload::Set;
        set.phase = Phase::Final;
        let mut transfer = op(
            Call::Transfer {
                from: 1,
                to: 3,
                amount: 40,
            },
            Outcome::Indeterminate("timed out".into()),
        );
        transfer.workload = Workload::Txn;
        let mut balances = op(Call::Read, Outcome::Ok(Ret::Balances(vec![-40, 0, 40])));
        balances.workload = Workload::Txn;
        for op in [
            op(Call::Write(9), Outcome::Ok(Ret::Done)),
            op(Call::Read, Outcome::Ok(Ret::Register(None))),
            op(Call::Read, Outcome::Ok(Ret::Register(Some(9)))),
            op(Call::Write(10), Outcome::Failed("TRYAGAIN x".into())),
            op(Call::Append(11), Outcome::Indeterminate("timed out".into())),
            counter,
            set,
            transfer,
            balances,
        ] {
            history.push(op);
        }
        let text: String = history
            .ops()
            .iter()
            .map(|op| format!("{}\n", op.to_json()))
            .collect();
        let parsed = History::from_jsonl(&text).expect("parses");
        assert_eq!(parsed.ops(), history.ops());
        let error = History::from_jsonl("{\"index\": 0}\n").expect_err("incomplete");
        assert!(error.starts_with("line 1:"), "{error}");
    }

    #[test]
    fn display_and_json_name_the_outcome() {
        let op = op(Call::Write(7), Outcome::Indeterminate("timed out".into()));
        let line = op.to_string();
        assert!(
            line.contains("write 7 -> INDETERMINATE (timed out)"),
            "{line}"
        );
        assert!(line.contains("open"), "{line}");
        let json = op.to_json();
        assert_eq!(json["outcome"], "info");
        assert_eq!(json["arg"], 7);
    }
}
