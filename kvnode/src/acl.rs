//! ACL users, in Redis' form: `ACL SETUSER name rule...` defines a user (on/off,
//! passwords kept as SHA-256 hashes, the commands it may run by category or name, the
//! keys it may touch by glob pattern), `AUTH user password` authenticates as one, and
//! every command is checked against the connection's user before it runs (NOPERM).
//!
//! Definitions are replicated: ACL SETUSER and ACL DELUSER are log entries the state
//! machine applies ([`Users`]), so every node holds the same users, and they survive
//! restarts in the WAL and in snapshots. Applying them is deterministic: the connection
//! turns `>password` into `#hash` before the rule is logged, so no password reaches the
//! log or a snapshot, and rules are parsed by a pure function ([`rule`]).
//!
//! Checks happen on the node the client is connected to, against the definitions it has
//! applied; a follower forwards a write on a connection authenticated as the client's
//! own user, and the leader checks the decoded write again ([`logged`]).
//!
//! Bounds: at most [`USERS_MAX`] users; per user [`PASSWORDS_MAX`] passwords,
//! [`KEY_PATTERNS_MAX`] key patterns of at most [`PATTERN_BYTES_MAX`] bytes and
//! [`COMMAND_RULES_MAX`] command rules; names of at most [`NAME_BYTES_MAX`] bytes.
//! Constants, not configuration: every replica must refuse the same definitions.
//!
//! Module map: [`rule`] (one rule's text), [`user`] (one user), [`users`] (the table),
//! [`check`] (authentication and NOPERM for the client's command), [`logged`] (NOPERM for
//! a forwarded write).

pub mod check;
pub mod logged;
pub mod rule;
pub mod user;
pub mod users;

pub(crate) use check::permit;
pub use check::{auth_required, authenticate, effective, Identity};
pub use logged::permit_logged;
pub use user::User;
pub use users::{Users, DEFAULT_USER};

/// Most users a cluster may define.
pub const USERS_MAX: usize = 1024;
/// Longest user name, in bytes.
pub const NAME_BYTES_MAX: usize = 256;
/// Most passwords one user may have.
pub const PASSWORDS_MAX: usize = 32;
/// Most key patterns one user may have.
pub const KEY_PATTERNS_MAX: usize = 128;
/// Longest key pattern, in bytes.
pub const PATTERN_BYTES_MAX: usize = 1024;
/// Most command rules one user may have (one per distinct command or category).
pub const COMMAND_RULES_MAX: usize = 256;
