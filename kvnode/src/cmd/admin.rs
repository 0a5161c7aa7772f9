//! Cluster administration: `RAFT.STATUS`, `RAFT.ADDLEARNER`, `RAFT.PROMOTE`, `RAFT.REMOVE`
//! and `RAFT.TRANSFER`. Membership changes go through the Raft log as configuration
//! entries (the addresses ride in the entry's context); the server executes them.

use bytes::Bytes;
use raft_core::NodeId;

use super::args::{unsigned, Context};
use super::error::CommandError;
use super::Command;
use crate::state_machine::MemberAddress;

/// Longest `host:port` accepted (a DNS name is at most 253 bytes, plus `:65535`).
pub const ADDRESS_BYTES_MAX: usize = 260;

/// An administrative command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminCommand {
    /// Report this node's Raft state.
    Status,
    /// Add `id` as a non-voting learner reachable at `address`.
    AddLearner { id: NodeId, address: MemberAddress },
    /// Make learner `id` a voter.
    Promote { id: NodeId },
    /// Remove `id` (voter or learner) from the cluster.
    Remove { id: NodeId },
    /// Ask the leader to hand leadership to `id`.
    Transfer { id: NodeId },
}

/// `RAFT.STATUS`
pub(super) fn parse_status(_: &[Bytes], _: &Context<'_>) -> Result<Command, CommandError> {
    Ok(Command::Admin(AdminCommand::Status))
}

/// `RAFT.ADDLEARNER id peer_addr client_addr`
pub(super) fn parse_add_learner(args: &[Bytes], _: &Context<'_>) -> Result<Command, CommandError> {
    let id = node_id(&args[0])?;
    let address = MemberAddress {
        peer: host_port(&args[1])?,
        client: host_port(&args[2])?,
    };
    Ok(Command::Admin(AdminCommand::AddLearner { id, address }))
}

/// `RAFT.PROMOTE id`
pub(super) fn parse_promote(args: &[Bytes], _: &Context<'_>) -> Result<Command, CommandError> {
    Ok(Command::Admin(AdminCommand::Promote {
        id: node_id(&args[0])?,
    }))
}

/// `RAFT.REMOVE id`
pub(super) fn parse_remove(args: &[Bytes], _: &Context<'_>) -> Result<Command, CommandError> {
    Ok(Command::Admin(AdminCommand::Remove {
        id: node_id(&args[0])?,
    }))
}

/// `RAFT.TRANSFER id`
pub(super) fn parse_transfer(args: &[Bytes], _: &Context<'_>) -> Result<Command, CommandError> {
    Ok(Command::Admin(AdminCommand::Transfer {
        id: node_id(&args[0])?,
    }))
}

/// A node id: a positive integer (0 means "nobody" in raft-core).
fn node_id(arg: &Bytes) -> Result<NodeId, CommandError> {
    unsigned(arg)
        .filter(|id| *id != 0)
        .map(NodeId)
        .ok_or_else(|| CommandError::InvalidNodeId { text: arg.clone() })
}

/// `host:port` with a non-empty host of printable ASCII and a port in 1..=65535. The host
/// is not resolved here: that happens when the server connects.
fn host_port(arg: &Bytes) -> Result<String, CommandError> {
    let invalid = || CommandError::InvalidAddress { text: arg.clone() };
    if arg.len() > ADDRESS_BYTES_MAX || !arg.iter().all(u8::is_ascii_graphic) {
        return Err(invalid());
    }
    let text = std::str::from_utf8(arg).map_err(|_| invalid())?;
    let (host, port) = text.rsplit_once(':').ok_or_else(invalid)?;
    let port_ok = port.parse::<u16>().is_ok_and(|port| port != 0);
    if host.is_empty() || !port_ok {
        return Err(invalid());
    }
    Ok(text.to_owned())
}
