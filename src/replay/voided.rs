//! Counting the records a later epoch's takeover voided, per log and job,
//! across the data dir's logs (for `jaros verify`), in bounded memory: one
//! streaming scan notes each job's first epoch (a compact key and one
//! word per job) and which jobs were written under more than one; only
//! when some were, a second scan reads those jobs' positions and applies
//! [`crate::takeover::voided`] to them, as replay does.

use super::census::{census_chain, census_light, census_with_id, JobKey};
use super::{ReplayError, VoidedRecords};
use crate::datadir::DataDir;
use crate::decision::JobId;
use crate::log::stream::{stream_log, Progress};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

/// The flag set in a job's first epoch once another epoch is seen (an
/// epoch is a lease count: it never reaches 2^63).
const SEVERAL: u64 = 1 << 63;

/// Records a later epoch's takeover voided, per log and job, across the
/// data dir's logs; logs whose chain is broken are left out.
pub fn voided_records(dir: &DataDir) -> Result<Vec<VoidedRecords>, ReplayError> {
    voided_records_with(dir, None)
}

/// [`voided_records`], counting what it reads into `progress`.
pub fn voided_records_with(
    dir: &DataDir,
    progress: Option<&Progress>,
) -> Result<Vec<VoidedRecords>, ReplayError> {
    // A log found broken is left out: the count starts over without it
    // (one map for all logs, not one per log, keeps the peak at one).
    let mut broken: HashSet<PathBuf> = HashSet::new();
    let (logs, several) = 'count: loop {
        let mut logs: Vec<(String, PathBuf)> = Vec::new();
        // Per job: the epoch of its first record, with SEVERAL set once
        // another epoch is seen.
        let mut epochs: HashMap<JobKey, u64> = HashMap::new();
        for path in dir.log_files()? {
            if broken.contains(&path) {
                continue;
            }
            let streamed = stream_log(&path, census_light, census_chain, None, progress, |batch| {
                for c in batch {
                    if let Some(key) = c.job {
                        let epoch = c.fields.epoch & !SEVERAL;
                        let e = epochs.entry(key).or_insert(epoch);
                        if *e & !SEVERAL != epoch {
                            *e |= SEVERAL;
                        }
                    }
                }
            });
            if streamed.is_err() {
                broken.insert(path);
                continue 'count;
            }
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            logs.push((name, path));
        }
        let several: HashSet<JobKey> = epochs
            .into_iter()
            .filter_map(|(key, epoch)| (epoch & SEVERAL != 0).then_some(key))
            .collect();
        break (logs, several);
    };
    if several.is_empty() {
        return Ok(Vec::new());
    }
    // Those jobs' records, in log then file order: (log, epoch, at).
    let mut jobs: BTreeMap<JobId, Vec<(usize, u64, u32)>> = BTreeMap::new();
    for (index, (_, path)) in logs.iter().enumerate() {
        let _ = stream_log(
            path,
            census_with_id,
            census_chain,
            None,
            progress,
            |batch| {
                for c in batch {
                    let (Some(key), Some(id)) = (c.job, &c.id) else {
                        continue;
                    };
                    if !several.contains(&key) {
                        continue;
                    }
                    if let Ok(job) = JobId::new(id.to_string()) {
                        jobs.entry(job)
                            .or_default()
                            .push((index, c.fields.epoch, c.at));
                    }
                }
            },
        );
    }
    let mut voided: BTreeMap<(String, JobId), u64> = BTreeMap::new();
    for (job, mut records) in jobs {
        // In `at` order, ties in log order, as replay folds them.
        records.sort_by_key(|&(_, _, at)| at);
        let keys: Vec<(u64, u32)> = records.iter().map(|&(_, e, at)| (e, at)).collect();
        for (&(log, _, _), void) in records.iter().zip(crate::takeover::voided(&keys)) {
            if void {
                *voided
                    .entry((logs[log].0.clone(), job.clone()))
                    .or_default() += 1;
            }
        }
    }
    Ok(voided
        .into_iter()
        .map(|((log, job), records)| VoidedRecords { log, job, records })
        .collect())
}
