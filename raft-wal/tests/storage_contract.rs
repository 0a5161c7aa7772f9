//! The storage contract suite (`raft_core::storage::contract`) against `WalStore`.
//!
//! A crash here is a drop and a reopen of the directory: like a killed process, writes
//! that were not synced may or may not be there, which the contract allows. Segments are
//! small (16 KiB) so the suite crosses segment boundaries.

use raft_core::storage::contract::Harness;
use raft_wal::{SyncPolicy, WalConfig, WalStore};
use tempfile::TempDir;

struct WalHarness {
    /// Kept so each store's directory lives until the test ends, then is removed.
    dirs: Vec<TempDir>,
}

impl WalHarness {
    fn new() -> WalHarness {
        WalHarness { dirs: Vec::new() }
    }

    fn config() -> WalConfig {
        WalConfig {
            segment_bytes: 16 * 1024,
            sync_policy: SyncPolicy::Always,
            ..WalConfig::default()
        }
    }
}

impl Harness for WalHarness {
    type Store = WalStore;

    fn create(&mut self) -> WalStore {
        let dir = tempfile::tempdir().expect("create temp dir");
        let store =
            WalStore::open(dir.path().join("wal"), WalHarness::config()).expect("open new store");
        self.dirs.push(dir);
        store
    }

    fn crash(&mut self, store: WalStore) -> WalStore {
        let dir = store.dir().to_owned();
        drop(store);
        WalStore::open(dir, WalHarness::config()).expect("reopen after crash")
    }
}

raft_core::storage_contract_tests!(WalHarness::new());
