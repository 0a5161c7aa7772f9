//! EXEC: a transaction applied atomically as one log entry.
//!
//! The watched keys are compared first, deterministically, at the entry's time: each
//! must still be live with the revision it had when watched, or still absent (a key that
//! expired since counts as changed, as in Redis). Any difference aborts the whole
//! transaction (a nil array). Otherwise every command runs in order against the same
//! state and time, each with its own reply; a runtime error in one (INCR of a
//! non-integer) is that command's reply and the others still run, as in Redis.
//!
//! One difference from Redis, by design: a key watched while absent that is created and
//! deleted again before EXEC is found unchanged (absent, as when watched), where Redis
//! would abort. The outcome is the same state the transaction was written against;
//! remembering every deleted key to tell the difference would cost unbounded memory.

use super::command::{TxItem, Watch};
use super::databases::Databases;
use super::{apply_write, read, ReadAt, Reply, WriteAt};

pub(super) fn exec(dbs: &mut Databases, at: WriteAt, watches: &[Watch], items: &[TxItem]) -> Reply {
    let changed = watches
        .iter()
        .any(|watch| dbs.live_revision(watch.db, &watch.key, at.now) != watch.revision);
    if changed {
        return Reply::NilArray;
    }
    let read_at = ReadAt {
        now: at.now,
        seed: at.revision,
    };
    let replies = items
        .iter()
        .map(|item| match item {
            TxItem::Write(command) => apply_write(dbs, at, command),
            TxItem::Read(command) => read(dbs, read_at, command),
        })
        .collect();
    Reply::Array(replies)
}
