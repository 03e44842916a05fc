//! Jaros: a zero-infrastructure runtime that makes agent systems reproducible,
//! testable and capability-safe by construction.
//!
//! A decision travels: an agent ([`agents`], or a model) proposes it
//! ([`decision`]); the [`gate`] checks it against the [`plan`]; the [`log`]
//! records it durably; the [`exec`]utor runs it and moves the job's state
//! ([`jobstate`], its [`state`] machine); [`job`] drives a job turn by turn,
//! [`fold`] rebuilds one from its records, and [`replay`] rebuilds everything
//! from the log.
#![forbid(unsafe_code)]

// The deterministic plane.
pub mod approval;
pub mod canon;
pub mod decision;
pub mod exec;
pub mod fold;
pub mod gate;
pub mod job;
pub mod jobstate;
pub mod log;
pub mod plan;
pub mod replay;
pub mod state;
pub mod takeover;
pub mod template;
pub mod verdict;

// The harness: built-in tools, executable tools and their confinement, audit.
pub mod harness;

// The MCP client the harness calls MCP servers through, and their lock files.
pub mod mcp;

// Manifests, compiled into the plan.
pub mod manifest;

// Agents that need no model (templates, built-ins).
pub mod agents;

// Files, places, the edge.
pub mod datadir;
pub mod exit;
pub mod fsx;
pub mod gc;
pub mod ids;
pub mod runtime;

// The node: inbox, claims, leases, pool.
pub mod node;

// The model plane: providers behind one interface.
pub mod model;

// Schedules: triggers and exactly-once firing.
pub mod schedule;

// Evals: agents run offline against expectations.
pub mod eval;

// Observability: traces and metrics derived from the log and the data dir.
pub mod live_trace;
pub mod logging;
pub mod metrics;
pub mod trace;

// The console: the web UI, and the only listening socket.
pub mod console;

pub mod cli;
