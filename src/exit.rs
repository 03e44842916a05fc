//! Exit codes, in one place. Every command maps its outcome here; a new kind
//! of outcome needs a decision in [`code`], which has no wildcard arm.

/// Everything went as asked (replay: reproducible; eval: all cases passed).
pub const SUCCESS: i32 = 0;
/// The command ran and found a failure: invalid manifests, divergence, a
/// broken chain, a failed job or eval case.
pub const FAILURE: i32 = 1;
/// The command could not run as asked: bad arguments, nothing to work on,
/// a missing file or directory.
pub const USAGE: i32 = 2;

/// The job waits for a person's verdict (`jaros run` meeting an approval
/// rule): parked, neither done nor failed.
pub const WAITING: i32 = 3;

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The work was done and found something wrong.
    Failed,
    /// Nothing to work on (no records to replay, no eval cases).
    Nothing,
    /// Bad input from the user: arguments, paths, files.
    BadInput,
    /// A job waits for a person's verdict.
    Waiting,
}

pub fn code(outcome: Outcome) -> i32 {
    match outcome {
        Outcome::Success => SUCCESS,
        Outcome::Failed => FAILURE,
        Outcome::Nothing => USAGE,
        Outcome::BadInput => USAGE,
        Outcome::Waiting => WAITING,
    }
}
