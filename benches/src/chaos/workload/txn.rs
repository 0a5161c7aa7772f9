//! The transaction workload: a bank of [`ACCOUNTS`] accounts (`t0` ... `t4`, absent at the
//! start, so every balance is 0 and the total is 0).
//!
//! - A transfer moves a random amount between two accounts in one transaction, one command
//!   per round trip: `MULTI`, `DECRBY from x`, `INCRBY to x`, `EXEC`. Nothing is pipelined:
//!   if `MULTI` were refused, pipelined `DECRBY`/`INCRBY` would run on their own and the
//!   client, not the server, would have split the transfer. Until `EXEC` is sent nothing can
//!   happen, so a failure before it is a refusal ([`Outcome::Failed`]); after it, the
//!   usual rules (`-TRYAGAIN` refused, `-UNKNOWN` or no reply indeterminate).
//! - A read takes every account at one read point: `MGET t0 ... t4`, or (every other read)
//!   `MULTI; GET t0; ...; GET t4; EXEC`.
//!
//! With `split` (`chaos run --split-transfers`, a seeded client bug) a transfer goes out as
//! `DECRBY` then `INCRBY`, two commands without MULTI: reads landing between them see the
//! total off, which the checker must report. Any failure of a split transfer is
//! indeterminate (its first half may have happened).
//!
//! Every transfer keeps the total, so every read must sum to 0 whatever happened to
//! indeterminate transfers: a read that does not saw part of a transfer. The checker is
//! `checker/txn.rs`. All operations of the workload share one history key, [`BANK_KEY`].

use kvnode::resp::Frame;
use tokio::time::Instant;

use super::super::history::{Call, Outcome, Ret, Workload};
use super::interpret;
use crate::kvbench::client::Connection;
use crate::kvbench::workload::Rng;

/// Accounts in the bank.
pub const ACCOUNTS: u32 = 5;
/// The history key of every operation of the workload (the bank as a whole).
pub const BANK_KEY: &str = "t";
/// Largest amount one transfer moves.
pub const AMOUNT_MAX: u64 = 100;

/// The key of account `i`.
pub fn account_key(i: u32) -> String {
    format!("{BANK_KEY}{i}")
}

/// Every account's key, in account order.
pub fn account_keys() -> Vec<String> {
    (0..ACCOUNTS).map(account_key).collect()
}

/// The next call: a read (30 %, or always for a reader) or a transfer between two distinct
/// accounts.
pub fn next_call(rng: &mut Rng, read_only: bool) -> Call {
    if read_only || rng.next_u64() % 100 < 30 {
        return Call::Read;
    }
    let accounts = u64::from(ACCOUNTS);
    let from = rng.next_u64() % accounts;
    let to = (from + 1 + rng.next_u64() % (accounts - 1)) % accounts;
    Call::Transfer {
        from: u32::try_from(from).expect("below ACCOUNTS"),
        to: u32::try_from(to).expect("below ACCOUNTS"),
        amount: 1 + rng.next_u64() % AMOUNT_MAX,
    }
}

/// Sends `call` on `conn` and says what became of it.
pub async fn perform(
    conn: &mut Connection,
    call: &Call,
    rng: &mut Rng,
    split: bool,
    deadline: Instant,
) -> Outcome {
    let keys = account_keys();
    match call {
        Call::Read if rng.next_u64() % 2 == 0 => {
            let mut args = vec!["MGET"];
            args.extend(keys.iter().map(String::as_str));
            interpret(Workload::Txn, call, conn.call(&args, deadline).await)
        }
        Call::Read => {
            let queued: Vec<Vec<&str>> = keys.iter().map(|k| vec!["GET", k.as_str()]).collect();
            transaction(conn, call, &queued, deadline).await
        }
        Call::Transfer { from, to, amount } => {
            let (from, to, amount) = (account_key(*from), account_key(*to), amount.to_string());
            let queued = [
                vec!["DECRBY", from.as_str(), amount.as_str()],
                vec!["INCRBY", to.as_str(), amount.as_str()],
            ];
            if split {
                return split_transfer(conn, &queued, deadline).await;
            }
            transaction(conn, call, &queued, deadline).await
        }
        other => Outcome::Indeterminate(format!("unexpected call for the txn workload: {other:?}")),
    }
}

/// `MULTI`, each of `queued` (expecting `+QUEUED`), `EXEC`, one round trip each.
async fn transaction(
    conn: &mut Connection,
    call: &Call,
    queued: &[Vec<&str>],
    deadline: Instant,
) -> Outcome {
    match conn.call(&["MULTI"], deadline).await {
        Ok(Frame::Simple(ok)) if ok == "OK" => {}
        other => return not_sent("MULTI", other),
    }
    for args in queued {
        match conn.call(args, deadline).await {
            Ok(Frame::Simple(ok)) if ok == "QUEUED" => {}
            other => return not_sent(args[0], other),
        }
    }
    interpret(Workload::Txn, call, conn.call(&["EXEC"], deadline).await)
}

/// The seeded bug: each half of a transfer as a command of its own.
async fn split_transfer(conn: &mut Connection, halves: &[Vec<&str>], deadline: Instant) -> Outcome {
    for args in halves {
        match conn.call(args, deadline).await {
            Ok(Frame::Integer(_)) => {}
            Ok(frame) => return Outcome::Indeterminate(format!("split transfer: {frame:?}")),
            Err(error) => return Outcome::Indeterminate(format!("split transfer: {error}")),
        }
    }
    Outcome::Ok(Ret::Done)
}

/// A transaction abandoned before `EXEC` was sent: it cannot have happened.
fn not_sent(step: &str, reply: Result<Frame, crate::kvbench::client::ClientError>) -> Outcome {
    let what = match reply {
        Ok(frame) => format!("{frame:?}"),
        Err(error) => error.to_string(),
    };
    Outcome::Failed(format!("EXEC not sent: {step} answered {what}"))
}

/// What an `MGET` or `EXEC` reply of the workload means, for [`interpret`]: balances
/// (bulk integers or nil) for a read, two integers for a transfer; `None` for anything
/// else.
pub fn parse_reply(call: &Call, values: &[Frame]) -> Option<Ret> {
    match call {
        Call::Read => {
            if values.len() != ACCOUNTS as usize {
                return None;
            }
            values
                .iter()
                .map(|value| match value {
                    Frame::Null => Some(0),
                    Frame::Bulk(bytes) => std::str::from_utf8(bytes).ok()?.parse().ok(),
                    _ => None,
                })
                .collect::<Option<Vec<i64>>>()
                .map(Ret::Balances)
        }
        Call::Transfer { .. } => {
            let ints = values.iter().all(|v| matches!(v, Frame::Integer(_)));
            (values.len() == 2 && ints).then_some(Ret::Done)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn transfers_move_between_distinct_accounts() {
        let mut rng = Rng::new(7);
        let mut transfers = 0;
        for _ in 0..1000 {
            match next_call(&mut rng, false) {
                Call::Transfer { from, to, amount } => {
                    transfers += 1;
                    assert_ne!(from, to);
                    assert!(from < ACCOUNTS && to < ACCOUNTS);
                    assert!((1..=AMOUNT_MAX).contains(&amount));
                }
                Call::Read => {}
                other => panic!("{other:?}"),
            }
        }
        assert!((600..=800).contains(&transfers), "{transfers}");
        assert_eq!(next_call(&mut rng, true), Call::Read);
    }

    #[test]
    fn replies_mean_balances_or_a_done_transfer() {
        let bulk = |s: &str| Frame::Bulk(Bytes::copy_from_slice(s.as_bytes()));
        let read = [bulk("-5"), Frame::Null, bulk("5"), Frame::Null, Frame::Null];
        assert_eq!(
            parse_reply(&Call::Read, &read),
            Some(Ret::Balances(vec![-5, 0, 5, 0, 0]))
        );
        assert_eq!(
            parse_reply(&Call::Read, &read[..4]),
            None,
            "an account missing"
        );
        let transfer = Call::Transfer {
            from: 0,
            to: 1,
            amount: 3,
        };
        assert_eq!(
            parse_reply(&transfer, &[Frame::Integer(-3), Frame::Integer(3)]),
            Some(Ret::Done)
        );
        let failed_step = [Frame::Integer(-3), Frame::error("ERR not an integer")];
        assert_eq!(parse_reply(&transfer, &failed_step), None);
    }
}
