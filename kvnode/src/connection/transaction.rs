//! A connection's database and transaction state: SELECT, MULTI/EXEC/DISCARD and
//! WATCH/UNWATCH, with Redis' semantics and error texts.
//!
//! While a transaction is open, each command is only checked for its name and arity
//! (what Redis checks before queuing) and answered `QUEUED`; one that fails the check is
//! answered with its error and makes EXEC fail with `EXECABORT`. EXEC parses the queued
//! commands in order (a SELECT among them changes the database of those after it), and
//! makes the ones that touch data one `Exec` write: one log entry, applied atomically, with
//! the watched keys' revisions in it, so it runs the same through any node (a follower
//! forwards it whole). A queued command that fails to parse (a bad integer) or that cannot
//! run inside one entry (CLIENT, INFO, cluster administration) gets its error in EXEC's
//! reply, in its place, as a Redis runtime error would; the connection answers PING, ECHO
//! and the like itself and merges those answers into EXEC's reply.
//!
//! ACL (as Redis): each command is checked against the connection's user when it is
//! queued (NOPERM makes EXEC fail with EXECABORT), and again when EXEC plans the
//! transaction, in case the rules changed meanwhile: a command no longer allowed gets
//! NOPERM in its place in EXEC's reply and does not run; an EXEC the user may not run
//! discards the transaction. Commands Redis refuses in a transaction (`no-multi`: ACL)
//! make EXEC fail.
//!
//! Bounds: the queued commands' bytes and the watched keys' bytes are each capped by the
//! largest log entry; the entry itself is checked exactly before it is proposed, and a
//! transaction too large for it is discarded whole (EXECABORT), nothing applied.

use bytes::Bytes;

use crate::cmd::{self, flags, Command, CommandError, CommandLimits, Context, LocalCommand, Spec};
use crate::error::{error_reply, Error};
use crate::resp::Frame;
use crate::state_machine::{
    encoding::ENVELOPE_BYTES, DbIndex, Reply, TxItem, Watch, WriteCommand, WriteOp,
};

/// What the connection remembers between commands.
#[derive(Debug, Default)]
pub struct Session {
    /// The selected database.
    pub db: DbIndex,
    /// The open transaction, between MULTI and EXEC or DISCARD.
    queue: Option<Queue>,
    /// Keys watched since the last EXEC, DISCARD or UNWATCH.
    watches: Vec<Watch>,
    watched_bytes: usize,
}

#[derive(Debug, Default)]
struct Queue {
    commands: Vec<Vec<Bytes>>,
    bytes: usize,
    /// A command failed to queue: EXEC answers EXECABORT.
    failed: bool,
}

/// The connection's ACL check of one command (its table row and words).
pub(crate) type Permit<'a> = &'a dyn Fn(&Spec, &[Bytes]) -> Result<(), CommandError>;

/// What to do with a request while a transaction is open.
pub enum Queued {
    /// Answer at once (QUEUED, an error, DISCARD's OK).
    Reply(Frame),
    /// EXEC: run the plan.
    Exec(ExecPlan),
    /// Not queued (QUIT): run it as usual.
    Run,
}

/// Where one command of a transaction gets its reply.
#[derive(Debug)]
enum Answer {
    /// From the connection itself.
    Here(Frame),
    /// From the log entry's reply array, in order.
    Logged,
}

/// An EXEC, ready to run.
#[derive(Debug)]
pub struct ExecPlan {
    /// The write to propose; `None` when nothing in the transaction needs the log.
    pub command: Option<WriteCommand>,
    answers: Vec<Answer>,
    /// The database selected by the transaction, once it has run.
    pub select: Option<DbIndex>,
}

impl ExecPlan {
    /// The client's reply, given the log entry's (or `None` when nothing was logged).
    pub fn merge(&self, logged: Option<Frame>) -> Frame {
        let logged_count = self
            .answers
            .iter()
            .filter(|a| matches!(a, Answer::Logged))
            .count();
        let mut replies = match logged {
            None => Vec::new().into_iter(),
            Some(Frame::Array(items)) if items.len() == logged_count => items.into_iter(),
            // Aborted (a watched key changed), or the cluster could not run it.
            Some(other) => return other,
        };
        let merged = self
            .answers
            .iter()
            .map(|answer| match answer {
                Answer::Here(frame) => frame.clone(),
                Answer::Logged => replies.next().expect("counted above"),
            })
            .collect();
        Frame::Array(merged)
    }
}

fn command_error(error: CommandError) -> Frame {
    error_reply(&Error::Command(error))
}

impl Session {
    /// True between MULTI and EXEC or DISCARD.
    pub fn in_transaction(&self) -> bool {
        self.queue.is_some()
    }

    /// Commands queued in the open transaction, if one is open (CLIENT LIST's `multi`).
    pub fn queued_len(&self) -> Option<usize> {
        self.queue.as_ref().map(|queue| queue.commands.len())
    }

    /// MULTI.
    pub fn multi(&mut self) -> Frame {
        if self.queue.is_some() {
            return command_error(CommandError::NestedMulti);
        }
        self.queue = Some(Queue::default());
        Frame::ok()
    }

    /// EXEC or DISCARD without MULTI.
    pub fn not_in_transaction(command: &LocalCommand) -> Frame {
        match command {
            LocalCommand::Exec => command_error(CommandError::ExecWithoutMulti),
            _ => command_error(CommandError::DiscardWithoutMulti),
        }
    }

    /// UNWATCH (and what EXEC and DISCARD do to the watched keys).
    pub fn unwatch(&mut self) {
        self.watches.clear();
        self.watched_bytes = 0;
    }

    /// Records WATCH's keys with the revisions a linearizable read found (`revisions` is
    /// that read's reply: an integer or nil per key).
    ///
    /// # Errors
    /// The watched keys would not fit in one log entry.
    pub fn watch(
        &mut self,
        db: DbIndex,
        keys: Vec<Bytes>,
        revisions: Reply,
        limits: &CommandLimits,
    ) -> Frame {
        let Reply::Array(revisions) = revisions else {
            return Frame::from(revisions);
        };
        let bytes: usize = keys.iter().map(|key| key.len() + 17).sum();
        if self.watched_bytes + bytes > limits.entry_bytes_max {
            return command_error(CommandError::TransactionTooLarge {
                max: limits.entry_bytes_max,
            });
        }
        self.watched_bytes += bytes;
        for (key, revision) in keys.into_iter().zip(revisions) {
            let revision = match revision {
                Reply::Integer(revision) => u64::try_from(revision).ok(),
                _ => None,
            };
            self.watches.push(Watch { db, key, revision });
        }
        Frame::ok()
    }

    /// Handles a request while a transaction is open.
    pub fn queue(&mut self, request: Frame, limits: &CommandLimits, permit: Permit<'_>) -> Queued {
        let queue = self.queue.as_mut().expect("called in a transaction");
        let words = match cmd::words(request) {
            Ok(words) => words,
            Err(error) => {
                queue.failed = true;
                return Queued::Reply(command_error(error));
            }
        };
        let spec = match cmd::check(&words) {
            Ok(spec) => spec,
            Err(error) => {
                queue.failed = true;
                return Queued::Reply(command_error(error));
            }
        };
        if let Err(denied) = permit(spec, &words) {
            if spec.name == "exec" {
                self.queue = None;
                self.unwatch();
            } else {
                queue.failed = true;
            }
            return Queued::Reply(command_error(denied));
        }
        match spec.name {
            "exec" => return self.exec(limits, permit),
            "discard" => {
                self.queue = None;
                self.unwatch();
                return Queued::Reply(Frame::ok());
            }
            "multi" => return Queued::Reply(command_error(CommandError::NestedMulti)),
            "watch" => return Queued::Reply(command_error(CommandError::WatchInsideMulti)),
            "quit" => return Queued::Run,
            _ if spec.flags & flags::NO_MULTI != 0 => {
                queue.failed = true;
                return Queued::Reply(command_error(CommandError::NotAllowedInTransaction));
            }
            _ => {}
        }
        let bytes: usize = words.iter().map(Bytes::len).sum();
        if queue.bytes + bytes > limits.entry_bytes_max {
            queue.failed = true;
            return Queued::Reply(command_error(CommandError::TransactionTooLarge {
                max: limits.entry_bytes_max,
            }));
        }
        queue.bytes += bytes;
        queue.commands.push(words);
        Queued::Reply(Frame::Simple("QUEUED".to_owned()))
    }

    /// EXEC: ends the transaction and plans it (EXECABORT if a command failed to queue or
    /// the entry would be too large).
    fn exec(&mut self, limits: &CommandLimits, permit: Permit<'_>) -> Queued {
        let queue = self.queue.take().expect("called in a transaction");
        let watches = std::mem::take(&mut self.watches);
        self.unwatch();
        if queue.failed {
            return Queued::Reply(command_error(CommandError::ExecAbort));
        }
        let mut db = self.db;
        let mut select = None;
        let mut items = Vec::new();
        let mut answers = Vec::with_capacity(queue.commands.len());
        for words in &queue.commands {
            let context = Context { limits, db };
            let allowed = cmd::check(words).and_then(|spec| permit(spec, words));
            if let Err(denied) = allowed {
                let reason = denied.to_string();
                answers.push(Answer::Here(command_error(CommandError::NoPermChanged {
                    reason,
                })));
                continue;
            }
            let answer = match cmd::parse_words(words, &context) {
                Ok(Command::Write(command)) => {
                    items.push(TxItem::Write(command));
                    Answer::Logged
                }
                Ok(Command::Read(command)) => {
                    items.push(TxItem::Read(command));
                    Answer::Logged
                }
                Ok(Command::Local(LocalCommand::Select(selected))) => {
                    db = selected;
                    select = Some(selected);
                    Answer::Here(Frame::ok())
                }
                Ok(Command::Local(LocalCommand::Unwatch)) => Answer::Here(Frame::ok()),
                Ok(Command::Local(local)) => Answer::Here(match local.stateless_reply() {
                    Some(frame)
                        if !matches!(
                            local,
                            LocalCommand::ReadOnly | LocalCommand::ReadWrite | LocalCommand::Quit
                        ) =>
                    {
                        frame
                    }
                    _ => command_error(CommandError::NotAllowedInTransaction),
                }),
                Ok(Command::Admin(_) | Command::Backup(_)) => {
                    Answer::Here(command_error(CommandError::NotAllowedInTransaction))
                }
                Err(error) => Answer::Here(command_error(error)),
            };
            answers.push(answer);
        }
        let command = (!items.is_empty() || !watches.is_empty()).then(|| WriteCommand {
            db: self.db,
            op: WriteOp::Exec { watches, items },
        });
        let too_large = command.as_ref().is_some_and(|command| {
            command.encode().len() + ENVELOPE_BYTES > limits.entry_bytes_max
        });
        if too_large {
            return Queued::Reply(command_error(CommandError::ExecAbort));
        }
        Queued::Exec(ExecPlan {
            command,
            answers,
            select,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(line: &str) -> Frame {
        Frame::Array(line.split(' ').map(Frame::bulk).collect())
    }

    fn allow_all(_: &Spec, _: &[Bytes]) -> Result<(), CommandError> {
        Ok(())
    }

    fn queue(session: &mut Session, line: &str) -> Frame {
        match session.queue(request(line), &CommandLimits::default(), &allow_all) {
            Queued::Reply(frame) => frame,
            Queued::Exec(_) => panic!("{line} planned an EXEC"),
            Queued::Run => panic!("{line} ran"),
        }
    }

    fn exec(session: &mut Session, limits: &CommandLimits) -> Result<ExecPlan, Frame> {
        match session.queue(request("EXEC"), limits, &allow_all) {
            Queued::Exec(plan) => Ok(plan),
            Queued::Reply(frame) => Err(frame),
            Queued::Run => panic!("EXEC ran"),
        }
    }

    #[test]
    fn queued_commands_become_one_write_with_local_answers_merged_in_place() {
        let mut session = Session::default();
        assert_eq!(session.multi(), Frame::ok());
        let queued = Frame::Simple("QUEUED".into());
        for line in ["SET k v", "PING", "SELECT 2", "INCRBY n x", "GET k", "INFO"] {
            assert_eq!(queue(&mut session, line), queued, "{line}");
        }
        let plan = exec(&mut session, &CommandLimits::default()).expect("planned");
        let Some(WriteCommand {
            op: WriteOp::Exec { watches, items },
            ..
        }) = &plan.command
        else {
            panic!("no exec write: {plan:?}");
        };
        assert!(watches.is_empty());
        assert_eq!(items.len(), 2, "SET and GET go to the log");
        let TxItem::Read(get) = &items[1] else {
            panic!("GET is a read")
        };
        assert_eq!(get.db, DbIndex(2), "commands after SELECT use its database");
        assert_eq!(plan.select, Some(DbIndex(2)));
        let merged = plan.merge(Some(Frame::Array(vec![Frame::ok(), Frame::bulk("v")])));
        let Frame::Array(replies) = merged else {
            panic!("array")
        };
        assert_eq!(replies[0], Frame::ok());
        assert_eq!(replies[1], Frame::Simple("PONG".into()));
        assert_eq!(replies[2], Frame::ok());
        assert_eq!(
            replies[3],
            Frame::error("ERR value is not an integer or out of range")
        );
        assert_eq!(replies[4], Frame::bulk("v"));
        assert_eq!(
            replies[5],
            Frame::error("ERR Command not allowed inside a transaction")
        );
        assert!(!session.in_transaction());
        assert_eq!(plan.merge(Some(Frame::NullArray)), Frame::NullArray);
    }

    #[test]
    fn acl_is_checked_when_queued_and_again_at_exec() {
        let denied = std::cell::Cell::new("none");
        let permit = |spec: &Spec, _: &[Bytes]| {
            if spec.name == denied.get() {
                Err(CommandError::NoPermKey)
            } else {
                Ok(())
            }
        };
        let mut session = Session::default();
        let limits = CommandLimits::default();
        let send =
            |session: &mut Session, line: &str| session.queue(request(line), &limits, &permit);
        session.multi();
        denied.set("set");
        let Queued::Reply(refused) = send(&mut session, "SET k v") else {
            panic!("answered at once");
        };
        assert_eq!(
            refused,
            Frame::error("NOPERM No permissions to access a key")
        );
        let Queued::Reply(aborted) = send(&mut session, "EXEC") else {
            panic!("EXEC aborts");
        };
        assert!(aborted.is_error(), "{aborted:?}");

        // Allowed when queued, no longer at EXEC: NOPERM in its place, the rest runs.
        denied.set("none");
        session.multi();
        send(&mut session, "SET k v");
        send(&mut session, "GET k");
        denied.set("set");
        let Queued::Exec(plan) = send(&mut session, "EXEC") else {
            panic!("planned");
        };
        let Some(WriteCommand {
            op: WriteOp::Exec { items, .. },
            ..
        }) = &plan.command
        else {
            panic!("GET still runs");
        };
        assert_eq!(items.len(), 1);
        let Frame::Array(replies) = plan.merge(Some(Frame::Array(vec![Frame::Null]))) else {
            panic!("array");
        };
        assert_eq!(
            replies[0],
            Frame::error(
                "NOPERM ACLs rules changed between the moment the transaction was accumulated \
                 and its execution. This command is no longer allowed for the following \
                 reason: No permissions to access a key"
            )
        );
        assert_eq!(replies[1], Frame::Null);

        // An EXEC the user may not run discards the transaction.
        denied.set("exec");
        session.multi();
        send(&mut session, "GET k");
        assert!(matches!(send(&mut session, "EXEC"), Queued::Reply(frame) if frame.is_error()));
        assert!(!session.in_transaction());
    }

    #[test]
    fn a_command_that_fails_to_queue_aborts_the_transaction() {
        let mut session = Session::default();
        session.multi();
        assert!(queue(&mut session, "SET k").is_error());
        assert!(queue(&mut session, "NOSUCH x").is_error());
        assert_eq!(
            exec(&mut session, &CommandLimits::default()).unwrap_err(),
            Frame::error("EXECABORT Transaction discarded because of previous errors.")
        );
        assert!(!session.in_transaction());
    }

    #[test]
    fn nested_multi_and_watch_inside_multi_are_refused_without_aborting() {
        let mut session = Session::default();
        session.multi();
        assert_eq!(
            session.multi(),
            Frame::error("ERR MULTI calls can not be nested")
        );
        assert_eq!(
            queue(&mut session, "MULTI"),
            Frame::error("ERR MULTI calls can not be nested")
        );
        assert_eq!(
            queue(&mut session, "WATCH k"),
            Frame::error("ERR WATCH inside MULTI is not allowed")
        );
        let plan = exec(&mut session, &CommandLimits::default()).expect("not aborted");
        assert!(plan.command.is_none(), "nothing to log");
        assert_eq!(plan.merge(None), Frame::Array(vec![]));
    }

    #[test]
    fn a_transaction_over_the_entry_limit_is_discarded_whole() {
        let limits = CommandLimits {
            entry_bytes_max: 1_000,
            ..CommandLimits::default()
        };
        let mut session = Session::default();
        session.multi();
        let mut refused = 0;
        for i in 0..200 {
            let frame =
                match session.queue(request(&format!("SET key:{i} value")), &limits, &allow_all) {
                    Queued::Reply(frame) => frame,
                    _ => panic!("queued"),
                };
            refused += usize::from(frame.is_error());
        }
        assert!(refused > 0, "the queue is capped");
        assert_eq!(
            exec(&mut session, &limits).unwrap_err(),
            Frame::error("EXECABORT Transaction discarded because of previous errors.")
        );
    }

    #[test]
    fn watches_ride_in_the_exec_entry_and_exec_forgets_them() {
        let mut session = Session::default();
        let limits = CommandLimits::default();
        let reply = session.watch(
            DbIndex(1),
            vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")],
            Reply::Array(vec![Reply::Integer(7), Reply::Nil]),
            &limits,
        );
        assert_eq!(reply, Frame::ok());
        session.multi();
        let plan = exec(&mut session, &limits).expect("planned");
        let Some(WriteCommand {
            op: WriteOp::Exec { watches, items },
            ..
        }) = plan.command
        else {
            panic!("watches need the log");
        };
        assert!(items.is_empty());
        assert_eq!(watches[0].revision, Some(7));
        assert_eq!(
            watches[1],
            Watch {
                db: DbIndex(1),
                key: Bytes::from_static(b"b"),
                revision: None
            }
        );
        session.multi();
        assert!(
            exec(&mut session, &limits)
                .expect("planned")
                .command
                .is_none(),
            "EXEC unwatched"
        );
    }
}
