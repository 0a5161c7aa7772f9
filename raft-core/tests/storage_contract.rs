//! The storage contract suite (`raft_core::storage::contract`) against `MemStore`.

use raft_core::storage::contract::Harness;
use raft_core::MemStore;

/// `MemStore` crashes by forgetting everything it did not sync.
struct MemHarness;

impl Harness for MemHarness {
    type Store = MemStore;

    fn create(&mut self) -> MemStore {
        MemStore::new()
    }

    fn crash(&mut self, mut store: MemStore) -> MemStore {
        store.crash();
        store
    }
}

raft_core::storage_contract_tests!(MemHarness);

#[test]
fn whole_suite_runs_in_one_go() {
    raft_core::storage::contract::run_all(&mut MemHarness);
}
