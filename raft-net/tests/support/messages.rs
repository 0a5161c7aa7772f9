//! Numbered heartbeats: the messages the transport tests send, and how to read the number
//! back, so that loss, duplication and reordering show.

use raft_core::{LogIndex, Message, MessageBody, NodeId, Term};

/// A heartbeat from `from` to `to` carrying `seq`.
pub fn heartbeat(from: u64, to: u64, seq: u64) -> Message {
    Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(1),
        body: MessageBody::Heartbeat {
            commit: LogIndex(seq),
            read_round: seq,
        },
    }
}

/// The number a [`heartbeat`] carries.
///
/// # Panics
/// If `message` is not a heartbeat.
pub fn seq_of(message: &Message) -> u64 {
    match message.body {
        MessageBody::Heartbeat { read_round, .. } => read_round,
        ref other => panic!("unexpected body {other:?}"),
    }
}
