//! One job's history (or every job's), from the logs, without what a node
//! wrote after losing the job: for resuming a job and for exporters.

use super::load::position_in_job;
use super::ReplayError;
use crate::datadir::DataDir;
use crate::decision::JobId;
use crate::log::{read_log, Body, Record};
use std::collections::BTreeMap;

/// Every record of one job in order, from all logs (for resuming it).
pub fn job_history(dir: &DataDir, job: &JobId) -> Result<Vec<Body>, ReplayError> {
    // A log that cannot be read holds none of it, as for replay.
    // Each log's records of the job come through its job index (only them
    // are read); where the index cannot be written (a read-only data dir),
    // from a read of the whole log.
    let mut records = Vec::new();
    for path in dir.log_files()? {
        match crate::log::index::job_records(&path, job.as_str()) {
            Ok((mine, _)) => records.extend(mine),
            Err(crate::log::LogError::Io(_)) => {
                let Ok(log) = read_log(&path) else {
                    continue;
                };
                records.extend(
                    log.records
                        .into_iter()
                        .filter(|r| r.body.job_at().is_some_and(|(j, _)| j == job)),
                );
            }
            Err(_) => continue,
        }
    }
    Ok(own_history(records))
}

/// Every job's history (as [`job_history`] gives one), keyed by job, from
/// one read of each log: for exporters that walk every recorded job.
pub fn job_histories(dir: &DataDir) -> Result<BTreeMap<JobId, Vec<Body>>, ReplayError> {
    let mut by_job: BTreeMap<JobId, Vec<Record>> = BTreeMap::new();
    for path in dir.log_files()? {
        let Ok(log) = read_log(&path) else {
            continue;
        };
        for r in log.records {
            if let Some((job, _)) = r.body.job_at() {
                let job = job.clone();
                by_job.entry(job).or_default().push(r);
            }
        }
    }
    Ok(by_job
        .into_iter()
        .map(|(job, records)| (job, own_history(records)))
        .collect())
}

/// One job's records in `at` order, without what a node wrote after losing
/// the job.
pub(super) fn own_history(mut records: Vec<Record>) -> Vec<Body> {
    records.sort_by_key(|r| position_in_job(&r.body));
    // What a node wrote after losing the job is no part of its history.
    let keys: Vec<(u64, u32)> = records
        .iter()
        .map(|r| (r.epoch, position_in_job(&r.body)))
        .collect();
    let void = crate::takeover::voided(&keys);
    records
        .into_iter()
        .zip(void)
        .filter(|(_, void)| !void)
        .map(|(r, _)| r.body)
        .collect()
}
