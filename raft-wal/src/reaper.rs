//! Frees deleted files on a background thread.
//!
//! Removing a log segment or replacing the snapshot is quick as a directory operation,
//! but the file's blocks and page-cache pages are freed when its last reference goes (the
//! unlink, or the close or unmap after it), which takes time proportional to the file's
//! cached size, on the thread that drops it. That thread is a node's raft loop, which must
//! keep heartbeating: freeing a large snapshot and several segments there can stall it
//! past an election timeout. So the last reference (an open handle, or the segment's
//! mapping) is handed here and dropped off the loop.
//!
//! Bounded: a queue of [`QUEUE_MAX`] items; when it is full, or the thread could not be
//! started, the caller drops the item itself (slower, never lost or leaked).
//!
//! The space a removed file held comes back only when it is dropped here, so a caller
//! that needs it at once (a roll on a nearly full disk, right after a compaction) waits
//! with [`Reaper::wait_until_freed`].

use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::thread::JoinHandle;

/// Items waiting to be dropped; a compaction hands over a handful at a time.
const QUEUE_MAX: usize = 64;

type Item = Box<dyn Send>;

pub(crate) struct Reaper {
    queue: Option<SyncSender<Item>>,
    thread: Option<JoinHandle<()>>,
}

impl Reaper {
    pub(crate) fn start() -> Reaper {
        let (queue, items) = sync_channel::<Item>(QUEUE_MAX);
        let spawned = std::thread::Builder::new()
            .name("wal-reaper".into())
            // Ends when the sender is dropped, after dropping everything queued.
            .spawn(move || items.into_iter().for_each(drop));
        match spawned {
            Ok(thread) => Reaper {
                queue: Some(queue),
                thread: Some(thread),
            },
            Err(refused) => {
                tracing::warn!(error = %refused, "no thread to free deleted WAL files; freeing them inline");
                Reaper {
                    queue: None,
                    thread: None,
                }
            }
        }
    }

    /// Drops `item` on the background thread, or here if its queue is full.
    pub(crate) fn discard<T: Send + 'static>(&self, item: T) {
        let Some(queue) = &self.queue else {
            return;
        };
        match queue.try_send(Box::new(item)) {
            Ok(()) => {}
            Err(TrySendError::Full(item) | TrySendError::Disconnected(item)) => drop(item),
        }
    }

    /// Waits until everything handed over so far is freed (items are dropped in order).
    /// For a caller that needs the space back now, as a roll on a full disk does.
    pub(crate) fn wait_until_freed(&self) {
        /// Tells the waiter when the thread drops it.
        struct Marker(SyncSender<()>);
        impl Drop for Marker {
            fn drop(&mut self) {
                let _ = self.0.send(());
            }
        }
        let Some(queue) = &self.queue else {
            return;
        };
        let (freed, wait) = sync_channel(1);
        if queue.send(Box::new(Marker(freed))).is_ok() {
            let _ = wait.recv();
        }
    }
}

impl Drop for Reaper {
    /// Waits until everything handed over is freed, so a closed WAL leaves nothing behind.
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Records the name of the thread that drops it.
    struct Witness(Arc<Mutex<Vec<String>>>);

    impl Drop for Witness {
        fn drop(&mut self) {
            let name = std::thread::current().name().unwrap_or("?").to_owned();
            self.0.lock().expect("not poisoned").push(name);
        }
    }

    #[test]
    fn waiting_until_freed_returns_after_everything_handed_over_is_dropped() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        /// Takes a while to drop, as a large cached file does (its witness records it).
        struct Slow {
            _witness: Witness,
        }
        impl Drop for Slow {
            fn drop(&mut self) {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        let reaper = Reaper::start();
        for _ in 0..10 {
            reaper.discard(Slow {
                _witness: Witness(Arc::clone(&seen)),
            });
        }
        reaper.wait_until_freed();
        assert_eq!(seen.lock().expect("not poisoned").len(), 10);
    }

    #[test]
    fn items_are_dropped_on_the_reaper_thread_and_all_before_it_stops() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let reaper = Reaper::start();
        for _ in 0..10 {
            reaper.discard(Witness(Arc::clone(&seen)));
        }
        drop(reaper);
        let seen = seen.lock().expect("not poisoned");
        assert_eq!(
            seen.len(),
            10,
            "every item dropped by the time the reaper is gone"
        );
        assert!(seen.iter().all(|name| name == "wal-reaper"), "{seen:?}");
    }
}
