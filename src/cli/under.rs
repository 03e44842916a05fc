//! `jaros replay --under DIR_OR_GIT_REV`: the policy impact check. Every
//! decision recorded in the logs is asked again, of another plan's gate, in
//! the state its job had when the recorded gate judged it; nothing runs.
//!
//! Owns the comparison and its report. Folding the jobs is
//! [`crate::replay::each_decision`]'s; reading a plan at a git revision is
//! [`super::plan_diff::load_at_rev`]'s.

use super::{out, out_json, CliError, CliResult, Ctx};
use crate::exit::Outcome;
use crate::gate;
use crate::plan::Plan;
use crate::replay::{self, Met};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Examples kept per agent, role and direction (the counts are complete).
const EXAMPLES_PER_GROUP: usize = 5;

/// One decision whose verdict the other plan changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Example {
    pub job: String,
    pub decision: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// Why it is refused: by the other plan (`refused`), or as recorded
    /// (`allowed`).
    pub reason: String,
}

/// The changed verdicts of one agent in one role, one direction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Group {
    pub agent: String,
    pub role: String,
    /// Decisions of this agent the recorded gates judged.
    pub decisions: u64,
    pub count: u64,
    /// The first few, in job order.
    pub examples: Vec<Example>,
    /// Each example's place: its job, then its decision's place in the
    /// job's fold. Jobs are met in the order the logs end them, so the
    /// first few by job are kept by this key, not by arrival.
    #[serde(skip)]
    places: Vec<(String, u64)>,
}

/// Everything `jaros replay --under` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Impact {
    /// The directory or git revision the other plan came from.
    pub under: String,
    /// Its digest.
    pub plan: String,
    /// The digests of the plans the decisions were recorded under.
    pub recorded_plans: Vec<String>,
    pub jobs: u64,
    /// Decisions asked again (every recorded one but unparsed proposals).
    pub decisions: u64,
    /// Accepted then, refused by the other plan: a change that breaks what ran.
    pub refused: Vec<Group>,
    pub refused_total: u64,
    /// Refused then, accepted by the other plan.
    pub allowed: Vec<Group>,
    pub allowed_total: u64,
    /// Refused then and now, for another reason.
    pub refused_otherwise: u64,
    /// Jobs whose fold stopped early under their recorded plan, with why
    /// (`jaros replay` shows where): their later decisions were not asked.
    pub stopped: Vec<(String, String)>,
    pub chain_errors: Vec<String>,
}

/// The other plan's verdict on one recorded decision, with its agent's role.
struct Verdict {
    role: String,
    then: Option<String>,
    now: Option<String>,
}

fn judge(recorded: &Plan, other: &Plan, met: &Met<'_>) -> Verdict {
    let agent = met.state.agent.as_str();
    let role = other
        .agents
        .get(agent)
        .or_else(|| recorded.agents.get(agent))
        .map_or_else(|| "-".to_string(), |a| a.role.clone());
    let now = gate::check(other, met.state, met.decision, met.turn, met.position)
        .err()
        .map(|r| r.to_string());
    Verdict {
        role,
        then: met
            .refused
            .map(|(check, reason)| format!("{check}: {reason}")),
        now,
    }
}

fn add(
    groups: &mut BTreeMap<(String, String), Group>,
    agent: &str,
    role: &str,
    place: (String, u64),
    ex: Example,
) {
    let group = groups
        .entry((agent.to_string(), role.to_string()))
        .or_insert_with(|| Group {
            agent: agent.to_string(),
            role: role.to_string(),
            ..Group::default()
        });
    group.count += 1;
    let at = group.places.partition_point(|p| *p < place);
    if at < EXAMPLES_PER_GROUP {
        group.places.insert(at, place);
        group.examples.insert(at, ex);
        group.places.truncate(EXAMPLES_PER_GROUP);
        group.examples.truncate(EXAMPLES_PER_GROUP);
    }
}

/// Asks `other`'s gate about every decision recorded in the data dir.
pub fn impact(
    data: &crate::datadir::DataDir,
    under: &str,
    other: &Plan,
) -> Result<Impact, CliError> {
    let executor = super::executor();
    let mut refused = BTreeMap::new();
    let mut allowed = BTreeMap::new();
    let mut asked: BTreeMap<String, u64> = BTreeMap::new();
    let mut decisions = 0;
    let mut refused_otherwise = 0;
    // The decision's place in its job's fold (jobs are folded one by one).
    let mut job = String::new();
    let mut in_job = 0u64;
    let walked = replay::each_decision(data, &executor, |recorded, met| {
        decisions += 1;
        if met.state.job.as_str() != job {
            job = met.state.job.to_string();
            in_job = 0;
        }
        in_job += 1;
        let place = (job.clone(), in_job);
        let agent = met.state.agent.as_str();
        *asked.entry(agent.to_string()).or_default() += 1;
        let v = judge(recorded, other, met);
        let example = |reason: &str| Example {
            job: met.state.job.to_string(),
            decision: met.decision.id.to_string(),
            kind: met.decision.kind.clone(),
            reason: reason.to_string(),
        };
        match (&v.then, &v.now) {
            (None, Some(now)) => add(&mut refused, agent, &v.role, place, example(now)),
            (Some(then), None) => add(&mut allowed, agent, &v.role, place, example(then)),
            (Some(then), Some(now)) if then != now => refused_otherwise += 1,
            _ => {}
        }
    })?;
    let finish = |groups: BTreeMap<(String, String), Group>| -> Vec<Group> {
        groups
            .into_values()
            .map(|mut g| {
                g.decisions = asked.get(&g.agent).copied().unwrap_or(0);
                g
            })
            .collect()
    };
    let (refused, allowed) = (finish(refused), finish(allowed));
    Ok(Impact {
        under: under.to_string(),
        plan: other.digest().to_hex(),
        recorded_plans: walked.plans,
        jobs: walked.jobs,
        decisions,
        refused_total: refused.iter().map(|g| g.count).sum(),
        refused,
        allowed_total: allowed.iter().map(|g| g.count).sum(),
        allowed,
        refused_otherwise,
        stopped: walked
            .stopped
            .into_iter()
            .map(|(job, why)| (job.to_string(), why))
            .collect(),
        chain_errors: walked.chain_errors,
    })
}

/// `jaros replay --under DIR_OR_GIT_REV [--json]`. Exit 1 when the other
/// plan refuses a decision that was accepted, 0 otherwise, 2 when there is
/// nothing to replay.
pub fn main(ctx: &Ctx, under: &str, as_json: bool) -> CliResult {
    let data = ctx.existing_data_dir()?;
    let dir = ctx.cwd.join(under);
    // A directory wins over a revision of the same name; the temp dir a
    // revision is extracted into lives until the plan is compiled.
    let other = if dir.is_dir() {
        super::load_plan(&dir)?
    } else {
        let (_extracted, loaded) =
            super::plan_diff::load_at_rev(&ctx.hive()?, under).map_err(|e| CliError {
                outcome: e.outcome,
                message: format!(
                    "--under {under}: no directory of that name, and as a git revision: {}",
                    e.message
                ),
            })?;
        loaded.plan
    };
    let report = impact(&data, under, &other)?;
    if as_json {
        out_json(&report);
    } else {
        out(&human(&report, &dir));
    }
    Ok(if report.refused_total > 0 {
        Outcome::Failed
    } else {
        Outcome::Success
    })
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn groups(text: &mut String, title: &str, groups: &[Group]) {
    if groups.is_empty() {
        return;
    }
    text.push_str(title);
    for g in groups {
        text.push_str(&format!(
            "    {} (role {}): {} of {}\n",
            g.agent,
            g.role,
            g.count,
            plural(g.decisions, "decision", "decisions")
        ));
        for e in &g.examples {
            text.push_str(&format!(
                "      {} {} {}: {}\n",
                e.job, e.decision, e.kind, e.reason
            ));
        }
        if g.count > g.examples.len() as u64 {
            text.push_str(&format!(
                "      … and {} more (--json lists the same examples)\n",
                g.count - g.examples.len() as u64
            ));
        }
    }
}

/// The human form of an impact report.
pub fn human(r: &Impact, dir: &Path) -> String {
    let from = if dir.is_dir() {
        "directory"
    } else {
        "git revision"
    };
    let short = |hex: &str| hex.chars().take(12).collect::<String>();
    let recorded: Vec<String> = r.recorded_plans.iter().map(|p| short(p)).collect();
    let mut text = format!(
        "{} recorded in {} asked again under the plan of {from} {} ({}; recorded under {})\n",
        plural(r.decisions, "decision", "decisions"),
        plural(r.jobs, "job", "jobs"),
        r.under,
        short(&r.plan),
        recorded.join(", ")
    );
    text.push_str(&format!(
        "  would now refuse {} that {} accepted; would now allow {} that {} refused; {} refused for another reason\n",
        plural(r.refused_total, "decision", "decisions"),
        if r.refused_total == 1 { "was" } else { "were" },
        plural(r.allowed_total, "decision", "decisions"),
        if r.allowed_total == 1 { "was" } else { "were" },
        r.refused_otherwise
    ));
    groups(
        &mut text,
        "  would now refuse (accepted then):\n",
        &r.refused,
    );
    groups(&mut text, "  would now allow (refused then):\n", &r.allowed);
    if !r.stopped.is_empty() {
        text.push_str(&format!(
            "  {} stopped early under the recorded plan (later decisions not asked; `jaros replay` shows why):\n",
            plural(r.stopped.len() as u64, "job", "jobs")
        ));
        for (job, why) in &r.stopped {
            text.push_str(&format!("    {job}: {why}\n"));
        }
    }
    for e in &r.chain_errors {
        text.push_str(&format!("  log not read: {e}\n"));
    }
    text.push_str(if r.refused_total > 0 {
        "verdict: the change would refuse decisions that succeeded\n"
    } else {
        "verdict: no decision that succeeded would be refused\n"
    });
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(job: &str, n: u64) -> ((String, u64), Example) {
        let ex = Example {
            job: job.to_string(),
            decision: format!("d{n}"),
            kind: "fs.write".into(),
            reason: "scope".into(),
        };
        ((job.to_string(), n), ex)
    }

    #[test]
    fn the_examples_kept_are_the_first_by_job_whatever_order_jobs_are_met_in() {
        let mut groups = BTreeMap::new();
        // Jobs met as their logs end them: j9 first, j0 last.
        let met = [
            ("j9", 1),
            ("j5", 2),
            ("j5", 1),
            ("j7", 1),
            ("j2", 3),
            ("j1", 1),
            ("j0", 2),
        ];
        for (job, n) in met {
            let (place, ex) = example(job, n);
            add(&mut groups, "writer", "role", place, ex);
        }
        let group = &groups[&("writer".to_string(), "role".to_string())];
        assert_eq!(group.count, 7);
        let kept: Vec<(&str, &str)> = group
            .examples
            .iter()
            .map(|e| (e.job.as_str(), e.decision.as_str()))
            .collect();
        assert_eq!(
            kept,
            [
                ("j0", "d2"),
                ("j1", "d1"),
                ("j2", "d3"),
                ("j5", "d1"),
                ("j5", "d2")
            ]
        );
    }
}
