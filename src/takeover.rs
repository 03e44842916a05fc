//! The takeover rule: which of a job's records a later lease epoch voids.
//!
//! Every record a node writes for a job carries the epoch of the lease it
//! held (`epoch`, absent as 0 for a job run without a lease). A node that
//! takes a job over, under a higher epoch, resumes it from the history it
//! read, so its first record sits at the position (`at`) just past what it
//! saw: that is its takeover point. Whatever an earlier epoch wrote at or
//! past that point was written after the takeover, by a node that had lost
//! the job (paused past its lease, its fence passed a moment before); it
//! never reached the new owner's history, so it is void: not folded, not
//! counted, reported. A takeover that wrote nothing voids nothing: the next
//! one's history holds whatever came before it.
//!
//! Owns only the rule; replay, blame, resumption and `jaros verify` apply
//! it. Deterministic: a function of the records alone.
// No clock, environment or randomness here: see clippy.toml.
#![deny(clippy::disallowed_methods)]

use std::collections::BTreeMap;

/// For each of one job's records, given as `(epoch, at)`, whether a later
/// epoch's takeover voids it.
pub fn voided(records: &[(u64, u32)]) -> Vec<bool> {
    let Some(&(first_epoch, _)) = records.first() else {
        return Vec::new();
    };
    // Almost every job is written under one epoch: nothing to void.
    if records.iter().all(|&(e, _)| e == first_epoch) {
        return vec![false; records.len()];
    }
    // Each epoch's takeover point: the first position it wrote at.
    let mut takeover: BTreeMap<u64, u32> = BTreeMap::new();
    for &(epoch, at) in records {
        takeover
            .entry(epoch)
            .and_modify(|t| *t = (*t).min(at))
            .or_insert(at);
    }
    // For each epoch, the earliest takeover by any later one.
    let mut later: BTreeMap<u64, u32> = BTreeMap::new();
    let mut earliest = u32::MAX;
    for (&epoch, &point) in takeover.iter().rev() {
        later.insert(epoch, earliest);
        earliest = earliest.min(point);
    }
    records
        .iter()
        .map(|&(epoch, at)| later.get(&epoch).is_some_and(|&t| at >= t))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::voided;

    #[test]
    fn one_epoch_voids_nothing() {
        assert_eq!(voided(&[(1, 0), (1, 1), (1, 2)]), [false; 3]);
        assert!(voided(&[]).is_empty());
    }

    #[test]
    fn what_an_earlier_epoch_wrote_past_the_takeover_is_void() {
        // Epoch 1 wrote 0..=3; epoch 2 resumed having seen 0..=1, so its
        // first record is at 2: epoch 1's records at 2 and 3 are void.
        let records = [(1, 0), (1, 1), (2, 2), (1, 2), (1, 3), (2, 3), (2, 4)];
        assert_eq!(
            voided(&records),
            [false, false, false, true, true, false, false]
        );
    }

    #[test]
    fn a_takeover_voids_every_earlier_epoch_and_a_silent_one_voids_nothing() {
        // Epoch 2 took over and wrote nothing; epoch 3 resumed from 0..=2
        // (epoch 1's record at 2 was in its history: it stays), and voids
        // what epochs 1 and 2 wrote from 3 on. Records without an epoch
        // (0) are the earliest of all.
        let records = [(0, 0), (1, 1), (1, 2), (3, 3), (1, 3), (2, 4), (3, 4)];
        assert_eq!(
            voided(&records),
            [false, false, false, false, true, true, false]
        );
    }
}
