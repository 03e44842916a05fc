//! Reading a data dir's logs into memory: every record in place, grouped
//! by job, the recorded plans loaded, what a later epoch voided dropped.
//! For readers that want every job at hand (`jaros replay --under`,
//! blame); replay itself streams (see [`super::stream`]).

use super::{Options, ReplayError};
use crate::canon::Digest;
use crate::datadir::DataDir;
use crate::decision::JobId;
use crate::log::{read_log_parts, Blobs, Body, LogError, Record};
use crate::plan::Plan;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub(super) struct Loaded {
    /// Logs found, read or not.
    pub(super) logs: usize,
    /// The records of every log read, in the parts it was read in, each
    /// with its log's name, in file order (up to `--until`).
    pub(super) parts: Vec<(Arc<str>, Vec<Record>)>,
    /// Per job: where its records are (part, index in that part), in `at`
    /// order. Records stay where the log was read into, not copied per job.
    pub(super) jobs: BTreeMap<JobId, Vec<Place>>,
    pub(super) plans: HashMap<Digest, Result<Plan, String>>,
    pub(super) records: u64,
    pub(super) chain_errors: Vec<String>,
    /// Records a later epoch's takeover voided, per log and job.
    pub(super) voided: BTreeMap<(Arc<str>, JobId), u64>,
}

/// A record's position in [`Loaded::parts`].
pub(super) type Place = (u32, u32);

impl Loaded {
    pub(super) fn body(&self, (part, index): Place) -> &Body {
        &self.parts[part as usize].1[index as usize].body
    }

    pub(super) fn bodies<'a>(
        &'a self,
        places: &'a [Place],
    ) -> impl DoubleEndedIterator<Item = &'a Body> {
        places.iter().map(|&p| self.body(p))
    }

    /// A job's records, `None` for a job no log holds.
    pub(super) fn job(&self, job: &JobId) -> Option<impl DoubleEndedIterator<Item = &Body>> {
        self.jobs.get(job).map(|places| self.bodies(places))
    }
}

pub(super) fn load(dir: &DataDir, options: &Options) -> Result<Loaded, ReplayError> {
    let blobs = Blobs::new(dir.root());
    let mut loaded = Loaded {
        logs: 0,
        parts: Vec::new(),
        jobs: BTreeMap::new(),
        plans: HashMap::new(),
        records: 0,
        chain_errors: Vec::new(),
        voided: BTreeMap::new(),
    };
    let mut highest = 0;
    // Grouped by hashing (a tree's string comparisons per record were a
    // tenth of replay), ordered once at the end.
    let mut jobs: HashMap<JobId, Vec<Place>> = HashMap::new();
    for path in dir.log_files()? {
        let node: Arc<str> = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
            .into();
        loaded.logs += 1;
        let parts = match read_log_parts(&path) {
            Ok(parts) => parts,
            Err(LogError::Tampered {
                path,
                line,
                seq,
                reason,
            }) => {
                loaded.chain_errors.push(format!(
                    "{}: line {line} (seq {seq}): {reason}",
                    path.display()
                ));
                continue;
            }
            Err(e) => {
                loaded.chain_errors.push(e.to_string());
                continue;
            }
        };
        for mut records in parts {
            highest = highest.max(records.last().map_or(0, |r| r.seq));
            if let Some(until) = options.until {
                records.truncate(records.partition_point(|r| r.seq <= until));
            }
            let part_index = u32::try_from(loaded.parts.len()).expect("fewer than 2^32 parts");
            for (index, record) in records.iter().enumerate() {
                loaded.records += 1;
                let place = (
                    part_index,
                    u32::try_from(index).expect("fewer than 2^32 records in a log"),
                );
                match &record.body {
                    Body::Plan { digest, blob, .. } => {
                        loaded
                            .plans
                            .entry(*digest)
                            .or_insert_with(|| load_plan(&blobs, digest, blob));
                    }
                    // Audit records live in audit/, not log/; skip any that strayed.
                    body => match body.job_at() {
                        Some((job, _)) if options.job.as_ref().is_none_or(|j| j == job) => {
                            add_place(&mut jobs, job, place);
                        }
                        _ => {}
                    },
                }
            }
            loaded.parts.push((node.clone(), records));
        }
    }
    if let Some(until) = options.until {
        if until > highest && highest > 0 {
            return Err(ReplayError::UntilBeyondEnd { until, highest });
        }
    }
    for (job, places) in jobs.iter_mut() {
        places.sort_by_key(|&p| position_in_job(loaded.body(p)));
        drop_voided(&mut loaded.voided, &loaded.parts, job, places);
    }
    loaded.jobs = jobs.into_iter().collect();
    Ok(loaded)
}

/// Removes from `places` (one job's, in `at` order) the records a later
/// epoch's takeover voids, counting them per log in `voided`.
pub(super) fn drop_voided(
    voided: &mut BTreeMap<(Arc<str>, JobId), u64>,
    parts: &[(Arc<str>, Vec<Record>)],
    job: &JobId,
    places: &mut Vec<Place>,
) {
    let record = |&(part, index): &Place| &parts[part as usize].1[index as usize];
    let keys: Vec<(u64, u32)> = places
        .iter()
        .map(|p| (record(p).epoch, position_in_job(&record(p).body)))
        .collect();
    let void = crate::takeover::voided(&keys);
    if !void.contains(&true) {
        return;
    }
    let mut flags = void.into_iter();
    places.retain(|p| {
        let is_void = flags.next().unwrap_or(false);
        if is_void {
            let log = parts[p.0 as usize].0.clone();
            *voided.entry((log, job.clone())).or_default() += 1;
        }
        !is_void
    });
}

/// The plan in `blob`, checked against the digest its record names.
pub(super) fn load_plan(blobs: &Blobs, digest: &Digest, blob: &Digest) -> Result<Plan, String> {
    let bytes = blobs.get(blob).map_err(|e| e.to_string())?;
    let plan = Plan::from_canonical_json(&String::from_utf8_lossy(&bytes))?;
    if plan.digest() != *digest {
        return Err(format!(
            "plan blob {} does not hash to the recorded digest",
            blob.short()
        ));
    }
    Ok(plan)
}

/// Adds `place` to `job`'s places, copying the job's id only the first
/// time it is seen.
pub(super) fn add_place(jobs: &mut HashMap<JobId, Vec<Place>>, job: &JobId, place: Place) {
    match jobs.get_mut(job) {
        Some(places) => places.push(place),
        None => {
            jobs.insert(job.clone(), vec![place]);
        }
    }
}

/// A record's `at` in its job's history, the order records are folded in.
pub(super) fn position_in_job(body: &Body) -> u32 {
    body.job_at().map_or(0, |(_, at)| at)
}
