//! The node: a long-running process that works a hive's inbox.
//!
//! Owns claiming (atomic renames out of `inbox/`), leases and their
//! heartbeat, the bounded worker pool, resuming unfinished jobs at boot and
//! after another node's lease expires, picking up manifest edits, firing the
//! hive's schedules ([`schedules`]), and a clean shutdown. Work enters only
//! as files; a node never opens a socket.

mod admit;
mod claims;
mod fault;
mod fence;
mod finish;
mod heartbeat;
mod held;
pub mod inbox;
pub mod lease;
pub mod notify;
pub mod park;
mod retention;
pub mod retry;
pub mod schedules;
mod seen;
mod serve;
mod shared;
mod spares;
pub mod status;
mod worker;

pub use serve::serve;
pub use shared::{
    Counters, HiveLoad, NodeConfig, NodeExit, PlanSource, MAX_POOL_SIZE, QUICK_JOB_MS, RECENT_JOBS,
};
