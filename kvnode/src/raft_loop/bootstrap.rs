//! A new cluster's first entry.

use raft_core::{Entry, EntryPayload, LogIndex, LogStoreMut, Term};

use crate::config::NodeConfig;
use crate::state_machine::MembershipContext;
use crate::storage::Storage;

/// Bootstraps an empty store for a founding member: the initial configuration (with every
/// member's addresses in its context) as entry 1 of term 1, the same on every founder.
///
/// # Errors
/// Writing or syncing the store failed.
pub fn bootstrap(store: &mut Storage, config: &NodeConfig) -> anyhow::Result<()> {
    let membership = raft_core::Membership::with_voters(config.members.keys().copied());
    let context = MembershipContext {
        members: config
            .members
            .iter()
            .map(|(id, address)| (*id, address.clone()))
            .collect(),
    };
    let entry = Entry {
        index: LogIndex(1),
        term: Term(1),
        payload: EntryPayload::Membership {
            membership,
            context: context.encode(),
        },
    };
    store.append(&[entry])?;
    store.set_hard_state(raft_core::storage::bootstrap_hard_state())?;
    store.sync()?;
    Ok(())
}
