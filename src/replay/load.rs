//! Some jobs' records held in memory, in place, grouped by job, with what a
//! later epoch voided dropped: what attribution reads of a failed job and
//! its chain of hand-offs. Replay itself streams (see [`super::stream`]).

use crate::canon::Digest;
use crate::decision::JobId;
use crate::log::{Blobs, Body, Record};
use crate::plan::Plan;
use std::collections::BTreeMap;
use std::sync::Arc;

pub(super) struct Loaded {
    /// The records of every log read, in the parts it was read in, each
    /// with its log's name, in file order (up to `--until`).
    pub(super) parts: Vec<(Arc<str>, Vec<Record>)>,
    /// Per job: where its records are (part, index in that part), in `at`
    /// order. Records stay where the log was read into, not copied per job.
    pub(super) jobs: BTreeMap<JobId, Vec<Place>>,
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

/// A record's `at` in its job's history, the order records are folded in.
pub(super) fn position_in_job(body: &Body) -> u32 {
    body.job_at().map_or(0, |(_, at)| at)
}

/// Every job of the data dir's logs held at once: the whole-load reading
/// the indexed and streamed readers are checked against.
#[cfg(test)]
pub(super) fn load(
    dir: &crate::datadir::DataDir,
    options: &super::Options,
) -> Result<Loaded, super::ReplayError> {
    let mut loaded = Loaded {
        parts: Vec::new(),
        jobs: BTreeMap::new(),
        voided: BTreeMap::new(),
    };
    let mut jobs: BTreeMap<JobId, Vec<Place>> = BTreeMap::new();
    for path in dir.log_files()? {
        let node: Arc<str> = path.file_stem().unwrap().to_string_lossy().into();
        for mut records in crate::log::read_log_parts(&path).expect("an intact log") {
            if let Some(until) = options.until {
                records.truncate(records.partition_point(|r| r.seq <= until));
            }
            let part = u32::try_from(loaded.parts.len()).unwrap();
            for (index, record) in records.iter().enumerate() {
                if let Some((job, _)) = record.body.job_at() {
                    let place = (part, u32::try_from(index).unwrap());
                    jobs.entry(job.clone()).or_default().push(place);
                }
            }
            loaded.parts.push((node.clone(), records));
        }
    }
    for (job, places) in jobs.iter_mut() {
        places.sort_by_key(|&p| position_in_job(loaded.body(p)));
        drop_voided(&mut loaded.voided, &loaded.parts, job, places);
    }
    loaded.jobs = jobs;
    Ok(loaded)
}
