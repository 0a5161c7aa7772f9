//! Role-specific message handling: elections (`candidate`), the follower's side of
//! replication (`follower`) and the leader's (`leader`).

mod candidate;
mod follower;
mod leader;
