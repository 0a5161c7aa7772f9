//! Which of a Ready's `persisted_messages` may leave now, and which wait for a sync that
//! covers their Ready's writes ([`crate::Ready`], "Asynchronous sync"); the pipeline's
//! bookkeeping.

use std::collections::VecDeque;

use crate::message::Message;

/// Counts the writes that need a sync and holds the messages that wait for one.
///
/// Writes are counted, not indexed: a sync begun after write `n` (see
/// [`HeldMessages::sync_covers`]) makes it durable, whatever the log looks like by then.
#[derive(Default, Debug)]
pub struct HeldMessages {
    /// Writes that need a sync, counted.
    written: u64,
    /// The count of writes known durable.
    durable: u64,
    /// Each Ready's waiting messages, with the write count they wait for, in Ready order.
    held: VecDeque<(u64, Vec<Message>)>,
}

impl HeldMessages {
    /// A Ready was written (not synced): counts it if it needs a sync, and returns its
    /// messages that may leave now. Those that [`crate::MessageBody::waits_for_sync`] wait
    /// for a sync that covers this write, and behind every earlier Ready's held messages.
    pub fn written(&mut self, must_sync: bool, messages: Vec<Message>) -> Vec<Message> {
        if must_sync {
            self.written += 1;
        }
        let (held, mut free): (Vec<Message>, Vec<Message>) = messages
            .into_iter()
            .partition(|message| message.body.waits_for_sync());
        if self.written <= self.durable && self.held.is_empty() {
            free.extend(held);
        } else if !held.is_empty() {
            self.held.push_back((self.written, held));
        }
        free
    }

    /// Whether something written waits for a sync.
    pub fn needs_sync(&self) -> bool {
        self.written > self.durable
    }

    /// What a sync begun now covers, to hand back to [`HeldMessages::synced`].
    pub fn sync_covers(&self) -> u64 {
        self.written
    }

    /// A sync that covered `covers` finished: returns the messages that may leave now, in
    /// Ready order.
    pub fn synced(&mut self, covers: u64) -> Vec<Message> {
        self.durable = self.durable.max(covers);
        let mut leaving = Vec::new();
        // Bound: one step per held Ready.
        while self
            .held
            .front()
            .is_some_and(|(waits_for, _)| *waits_for <= self.durable)
        {
            leaving.extend(self.held.pop_front().expect("front exists").1);
        }
        leaving
    }

    /// A sync of everything written so far finished (a synchronous one).
    pub fn synced_everything(&mut self) -> Vec<Message> {
        self.synced(self.written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{AppendResponse, MessageBody};
    use crate::types::{LogIndex, NodeId, Term};

    fn message(body: MessageBody) -> Message {
        Message {
            from: NodeId(2),
            to: NodeId(1),
            term: Term(1),
            body,
        }
    }

    fn ack(index: u64) -> Message {
        message(MessageBody::AppendResponse(AppendResponse::Accepted {
            match_index: LogIndex(index),
        }))
    }

    #[test]
    fn acknowledgements_wait_for_their_sync_and_leave_in_order_while_the_rest_leave_at_once() {
        let mut held = HeldMessages::default();
        assert!(held.written(true, vec![ack(5)]).is_empty());
        let covers_first = held.sync_covers();
        let heartbeat = message(MessageBody::HeartbeatResponse { read_round: 1 });
        // No new write, yet behind the first: an acknowledgement never overtakes another.
        let free = held.written(false, vec![ack(5), heartbeat.clone()]);
        assert_eq!(free, vec![heartbeat]);
        assert!(held.written(true, vec![ack(7)]).is_empty());
        assert!(held.needs_sync());

        assert_eq!(held.synced(covers_first), vec![ack(5), ack(5)]);
        assert!(held.needs_sync());
        assert_eq!(held.synced_everything(), vec![ack(7)]);
        assert!(!held.needs_sync());
        assert_eq!(held.written(false, vec![ack(7)]), vec![ack(7)]);
    }
}
