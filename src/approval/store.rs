//! The approval files in the data dir: one request per parked job, written
//! by the node; the job's ticket while it waits; and at most one verdict per
//! waiting decision, claimed by exclusive creation so exactly one counts when
//! people or nodes race. The data dir is protected from every grant (see
//! `docs/approval.md`), so no agent reaches these files.

use crate::datadir::DataDir;
use crate::decision::{Decision, DecisionId, JobId};
use crate::fsx::{self, IoError};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Largest request or verdict file read, in bytes: a verdict is a name and a
/// note, a request a decision (payloads are capped well below this).
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Refused verdict files kept per decision and resumption; past this, a
/// refused file is removed (its refusal is in the audit log).
pub const MAX_REFUSED_PER_STAMP: u64 = 1000;

/// Longest note or reason a verdict may carry, in bytes.
pub const MAX_NOTE_BYTES: usize = 4096;

/// One link of the chain of hand-offs that led to a waiting job, root first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    pub job: JobId,
    pub agent: String,
    /// The decision of this job that handed off to the next link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<DecisionId>,
}

/// What waits for a person: `approvals/requests/<job>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub job: JobId,
    pub agent: String,
    pub decision: Decision,
    pub approvers: Vec<String>,
    pub requested_ms: u64,
    /// Unix ms after which the request counts as denied ("expired").
    pub expires_ms: u64,
    /// The hand-off chain, root first, ending with this job.
    pub chain: Vec<Link>,
    /// The node that parked the job.
    pub node: String,
}

/// Approve or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Answer {
    Approve,
    Deny,
}

impl Answer {
    pub fn as_str(self) -> &'static str {
        match self {
            Answer::Approve => "approve",
            Answer::Deny => "deny",
        }
    }
}

/// A person's verdict on one decision:
/// `approvals/verdicts/<job>.<turn>.<position>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verdict {
    pub job: JobId,
    pub decision: DecisionId,
    pub verdict: Answer,
    /// Who answered: a name asserted like a git author.
    pub by: String,
    pub at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Why a decision was denied; required for a denial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Why a verdict cannot be given or is refused when read.
#[derive(Debug)]
pub enum VerdictError {
    /// Nothing waits under this job and decision.
    NoRequest {
        job: JobId,
    },
    /// The decision named is not the one that waits.
    OtherDecision {
        waiting: DecisionId,
    },
    /// The name is not among the rule's approvers.
    NotApprover {
        by: String,
        approvers: Vec<String>,
    },
    /// The file does not parse, or breaks a rule of verdicts.
    Malformed {
        path: PathBuf,
        why: String,
    },
    Io(IoError),
}

impl fmt::Display for VerdictError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerdictError::NoRequest { job } => write!(
                f,
                "job {job} waits for no verdict; `jaros approvals` lists what waits"
            ),
            VerdictError::OtherDecision { waiting } => write!(
                f,
                "the decision that waits is {waiting}; give the verdict for it"
            ),
            VerdictError::NotApprover { by, approvers } => write!(
                f,
                "'{by}' may not answer this request; its approvers are: {}",
                approvers.join(", ")
            ),
            VerdictError::Malformed { path, why } => {
                write!(f, "{}: not a valid verdict: {why}", path.display())
            }
            VerdictError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<IoError> for VerdictError {
    fn from(e: IoError) -> Self {
        VerdictError::Io(e)
    }
}

/// What giving a verdict came to.
#[derive(Debug, PartialEq)]
pub enum Given {
    /// This verdict is the one that counts.
    Counted,
    /// Another verdict was there first; it counts, this one does not.
    AlreadyGiven(Box<Verdict>),
}

/// The approval directories of a data dir.
pub struct Store {
    root: PathBuf,
}

impl Store {
    pub fn new(data: &DataDir) -> Store {
        Store {
            root: data.root().join("approvals"),
        }
    }

    pub fn requests(&self) -> PathBuf {
        self.root.join("requests")
    }
    pub fn parked(&self) -> PathBuf {
        self.root.join("parked")
    }
    pub fn verdicts(&self) -> PathBuf {
        self.root.join("verdicts")
    }
    pub fn refused(&self) -> PathBuf {
        self.root.join("refused")
    }

    pub fn request_path(&self, job: &JobId) -> PathBuf {
        self.requests().join(format!("{job}.json"))
    }
    pub fn parked_path(&self, job: &JobId) -> PathBuf {
        self.parked().join(format!("{job}.json"))
    }
    /// `<job>.<turn>.<position>.json`: a decision id without its `#`.
    pub fn verdict_path(&self, decision: &DecisionId) -> PathBuf {
        let name = decision.as_str().replacen('#', ".", 1);
        self.verdicts().join(format!("{name}.json"))
    }

    fn create_dirs(&self) -> Result<(), IoError> {
        for dir in [
            self.requests(),
            self.parked(),
            self.verdicts(),
            self.refused(),
        ] {
            fsx::create_dir_all(&dir)?;
        }
        Ok(())
    }

    /// Writes the request durably (replacing an earlier one of the job).
    pub fn write_request(&self, request: &Request) -> Result<(), IoError> {
        self.create_dirs()?;
        fsx::write_durable(&self.request_path(&request.job), &to_json(request))
    }

    /// The request of `job`, if one waits.
    pub fn request(&self, job: &JobId) -> Result<Option<Request>, VerdictError> {
        read_json(&self.request_path(job))
    }

    /// Every request that waits.
    pub fn list(&self) -> Result<Listing, IoError> {
        let dir = self.requests();
        if !dir.exists() {
            return Ok(Listing::default());
        }
        let mut requests = Vec::new();
        let mut bad = Vec::new();
        for path in fsx::list_dir(&dir)? {
            if path.extension().is_none_or(|e| e != "json") || is_temp(&path) {
                continue;
            }
            match read_json::<Request>(&path) {
                Ok(Some(r)) => requests.push(r),
                Ok(None) => {} // answered and removed meanwhile
                Err(e) => bad.push((path, e.to_string())),
            }
        }
        requests.sort_by(|a, b| (a.requested_ms, &a.job).cmp(&(b.requested_ms, &b.job)));
        Ok(Listing { requests, bad })
    }

    /// Gives a verdict on the decision that waits in `job`: checks the name
    /// against the request's approvers, then creates the verdict file
    /// exclusively. Does not resume the job: see [`Store::unpark`].
    pub fn give(&self, verdict: &Verdict) -> Result<Given, VerdictError> {
        // The decision id names the verdict file: only `<job>#<turn>.<position>`
        // of this very job, so no id reaches another file, whatever the request.
        let own = verdict
            .decision
            .turn_position()
            .is_some_and(|(t, p)| verdict.decision.is_for(&verdict.job, t, p));
        if !own {
            return Err(VerdictError::Malformed {
                path: self.verdicts(),
                why: format!(
                    "'{}' is not a decision id of job {} (JOB#TURN.POSITION)",
                    crate::decision::excerpt(verdict.decision.as_str(), 80),
                    verdict.job
                ),
            });
        }
        let request = self.request(&verdict.job)?.ok_or(VerdictError::NoRequest {
            job: verdict.job.clone(),
        })?;
        if request.decision.id != verdict.decision {
            return Err(VerdictError::OtherDecision {
                waiting: request.decision.id,
            });
        }
        check_verdict(verdict, &request.approvers).map_err(|e| match e {
            Refusal::NotApprover => VerdictError::NotApprover {
                by: verdict.by.clone(),
                approvers: request.approvers.clone(),
            },
            Refusal::Malformed(why) => VerdictError::Malformed {
                path: self.verdict_path(&verdict.decision),
                why,
            },
        })?;
        self.create_dirs()?;
        let path = self.verdict_path(&verdict.decision);
        if fsx::create_durable_exclusive(&path, &to_json(verdict))? {
            return Ok(Given::Counted);
        }
        match read_json::<Verdict>(&path) {
            Ok(Some(first)) => Ok(Given::AlreadyGiven(Box::new(first))),
            Ok(None) => Err(VerdictError::Io(IoError::new(
                "cannot read",
                &path,
                io::Error::from(io::ErrorKind::NotFound),
            ))),
            Err(e) => Err(e),
        }
    }

    /// The verdict given on `decision`, checked against the approvers the
    /// log recorded for it. `Err(Refused)` for a file that does not parse or
    /// names someone not on the list (written by hand): the caller audits
    /// the refusal and calls [`Store::refuse`].
    pub fn verdict(
        &self,
        job: &JobId,
        decision: &DecisionId,
        approvers: &[String],
    ) -> Result<Option<Verdict>, Refused> {
        let path = self.verdict_path(decision);
        let verdict = match read_json::<Verdict>(&path) {
            Ok(None) => return Ok(None),
            Ok(Some(v)) => v,
            Err(VerdictError::Io(e)) => {
                return Err(Refused {
                    path,
                    reason: e.to_string(),
                })
            }
            Err(e) => {
                return Err(Refused {
                    path,
                    reason: e.to_string(),
                })
            }
        };
        let refused = |reason: String| Refused {
            path: path.clone(),
            reason,
        };
        if &verdict.job != job || &verdict.decision != decision {
            return Err(refused(format!(
                "the file names job {} decision {}, not {job} decision {decision}",
                verdict.job, verdict.decision
            )));
        }
        match check_verdict(&verdict, approvers) {
            Ok(()) => Ok(Some(verdict)),
            Err(Refusal::NotApprover) => Err(refused(format!(
                "'{}' is not among the approvers ({})",
                verdict.by,
                approvers.join(", ")
            ))),
            Err(Refusal::Malformed(why)) => Err(refused(why)),
        }
    }

    /// Moves a refused verdict file aside, so the decision can be answered
    /// again and the file is kept for whoever audits it: as
    /// `<stamp>.<name>`, or `<stamp>-<n>.<name>` when the same decision had
    /// a file refused before (each one is kept, none replaces another).
    pub fn refuse(&self, refused: &Refused, stamp: u64) -> Result<(), IoError> {
        self.create_dirs()?;
        let name = refused
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let to = (0..MAX_REFUSED_PER_STAMP)
            .map(|n| match n {
                0 => self.refused().join(format!("{stamp}.{name}")),
                n => self.refused().join(format!("{stamp}-{n}.{name}")),
            })
            .find(|to| !present(to));
        let Some(to) = to else {
            // Kept no longer: the audit log holds every refusal all the same.
            return match std::fs::remove_file(&refused.path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    Err(IoError::new("cannot remove", &refused.path, e))
                }
                _ => fsx::sync_dir(&self.verdicts()),
            };
        };
        match fsx::rename_durable(&refused.path, &to) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// Moves the job's ticket from `from` (its claim) to `parked/`.
    pub fn park(&self, from: &Path, job: &JobId) -> Result<(), IoError> {
        self.create_dirs()?;
        fsx::rename_durable(from, &self.parked_path(job))
    }

    /// Moves a parked ticket back to the inbox so any node resumes the job.
    /// `false` when it was not parked (another command or node moved it).
    pub fn unpark(&self, data: &DataDir, job: &JobId) -> Result<bool, IoError> {
        let to = data.inbox().join(format!("{job}.json"));
        match fsx::rename_durable(&self.parked_path(job), &to) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Removes the request once its verdict is recorded in the log.
    pub fn close(&self, job: &JobId) -> Result<(), IoError> {
        match std::fs::remove_file(self.request_path(job)) {
            Ok(()) => fsx::sync_dir(&self.requests()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(IoError::new("cannot remove", &self.request_path(job), e)),
        }
    }

    /// The verdict given on `request` that counts (a valid file by one of
    /// its approvers), while no node has recorded it yet.
    pub fn answer_of(&self, request: &Request) -> Option<Verdict> {
        self.verdict(&request.job, &request.decision.id, &request.approvers)
            .ok()
            .flatten()
    }

    /// How many requests wait for a person: those without a verdict that
    /// counts. Reads each request file, so it costs what waits, never what
    /// ran.
    pub fn waiting_count(&self) -> Result<usize, IoError> {
        Ok(self
            .list()?
            .requests
            .iter()
            .filter(|r| self.answer_of(r).is_none())
            .count())
    }

    /// Parked jobs that can go on: a verdict file exists, or the request
    /// expired at `now_ms`. The node's periodic scan unparks them, so a
    /// verdict given while every node was down still resumes its job.
    pub fn due(&self, now_ms: u64) -> Result<Vec<JobId>, IoError> {
        Ok(self
            .list()?
            .requests
            .into_iter()
            .filter(|r| present(&self.parked_path(&r.job)))
            // Whatever is there, a node looks: a file it will not count is
            // refused and audited, so the decision can be answered again.
            .filter(|r| now_ms >= r.expires_ms || present(&self.verdict_path(&r.decision.id)))
            .map(|r| r.job)
            .collect())
    }
}

/// The requests that wait, oldest first, and the request files that would
/// not read (path, why).
#[derive(Debug, Default)]
pub struct Listing {
    pub requests: Vec<Request>,
    pub bad: Vec<(PathBuf, String)>,
}

/// A verdict file the node will not count.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub path: PathBuf,
    pub reason: String,
}

enum Refusal {
    NotApprover,
    Malformed(String),
}

fn check_verdict(verdict: &Verdict, approvers: &[String]) -> Result<(), Refusal> {
    let too_long = |t: &Option<String>| t.as_ref().is_some_and(|t| t.len() > MAX_NOTE_BYTES);
    if too_long(&verdict.note) || too_long(&verdict.reason) {
        return Err(Refusal::Malformed(format!(
            "a note or reason is at most {MAX_NOTE_BYTES} bytes"
        )));
    }
    // Shown raw by `jaros logs`, `jaros blame` and to the agent: a newline
    // would forge a line, an escape sequence drive the reader's terminal.
    let controlled =
        |t: &Option<String>| t.as_ref().is_some_and(|t| t.chars().any(char::is_control));
    if controlled(&verdict.note) || controlled(&verdict.reason) {
        return Err(Refusal::Malformed(
            "a note or reason is one line of text, without control characters".into(),
        ));
    }
    if verdict.verdict == Answer::Deny
        && verdict.reason.as_ref().is_none_or(|r| r.trim().is_empty())
    {
        return Err(Refusal::Malformed("a denial needs a reason".into()));
    }
    if !approvers.iter().any(|a| a == &verdict.by) {
        return Err(Refusal::NotApprover);
    }
    Ok(())
}

/// Whether anything, even a dangling link, has this name.
fn present(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

fn is_temp(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value)
        // Invariant: these types hold only strings, numbers and JSON values.
        .expect("approval files serialize");
    bytes.push(b'\n');
    bytes
}

/// Reads a request or verdict file: `None` when there is none. Anyone who
/// can write the data dir can put anything under these names, so nothing
/// but a regular file is read (a FIFO would block the node's scan, a link
/// could read any file), and at most [`MAX_FILE_BYTES`].
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, VerdictError> {
    let malformed = |why: String| VerdictError::Malformed {
        path: path.into(),
        why,
    };
    let bytes = match fsx::read_regular(path, MAX_FILE_BYTES) {
        Ok(bytes) => bytes,
        Err(fsx::Unregular::Gone) => return Ok(None),
        Err(fsx::Unregular::NotRegular(what)) => {
            return Err(malformed(format!("it is {what}, not a regular file")))
        }
        Err(fsx::Unregular::TooLarge(_)) => {
            return Err(malformed(format!("larger than {MAX_FILE_BYTES} bytes")))
        }
        Err(fsx::Unregular::Io { action, source }) => {
            return Err(IoError::new(action, path, source).into())
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| malformed(e.to_string()))
}
