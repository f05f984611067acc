//! What a scenario measured, and its verdict: tasks lost and duplicate effects (both
//! must be 0), time to recover, throughput and p99 start latency before, during and
//! after the fault, and the largest dead-tuple count of `warren_tasks`. Written as
//! JSON (one object per scenario) and as a Markdown table.

use super::observer::Sample;
use serde::Serialize;

/// One named check of a scenario beyond the common ones (an integrity check, a
/// throughput floor), with what was seen.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What is checked.
    pub name: String,
    /// Whether it held.
    pub passed: bool,
    /// What was measured.
    pub detail: String,
}

/// Figures of one phase of a scenario.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct PhaseFigures {
    /// Completed tasks per second.
    pub tasks_per_s: Option<f64>,
    /// 99th percentile of start latency (scheduled → last run started) of the tasks
    /// scheduled in the phase, in milliseconds.
    pub p99_start_ms: Option<f64>,
}

/// The outcome of one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// `postgres` or `sqlite`.
    pub backend: String,
    /// Whether the short (CI) variant ran.
    pub short: bool,
    /// Nodes serving the queue.
    pub nodes: usize,
    /// Tasks offered per second by the producer (before the fault).
    pub offered_per_s: u64,
    /// What the fault script did, in words.
    pub fault: String,
    /// Tasks whose scheduling committed.
    pub scheduled: usize,
    /// Tasks in batches whose scheduling failed or whose commit's outcome is unknown
    /// (they may or may not exist; those that do are checked like the others).
    pub unconfirmed: u64,
    /// Completed tasks at the end.
    pub completed: i64,
    /// Tasks scheduled but not completed once the queue drained, plus completed tasks
    /// without their effect. Must be 0.
    pub lost: i64,
    /// Effect rows beyond one per task. Must be 0.
    pub duplicate_effects: i64,
    /// Effect rows of tasks that are not completed (work committed without its
    /// completion). Must be 0.
    pub effects_without_completion: i64,
    /// Tasks that ended failed or cancelled. Must be 0 (the task never fails).
    pub failed: i64,
    /// Seconds from the end of the fault until tasks complete again and the backlog
    /// is back to its level before the fault; `None` when not within the scenario.
    pub recovery_s: Option<f64>,
    /// Before the fault.
    pub before: PhaseFigures,
    /// While the fault lasted.
    pub during: PhaseFigures,
    /// After it.
    pub after: PhaseFigures,
    /// The largest dead-tuple count of `warren_tasks` seen (PostgreSQL).
    pub max_dead_tuples: Option<i64>,
    /// The dead-tuple count of `warren_tasks` at the last sample (PostgreSQL).
    pub end_dead_tuples: Option<i64>,
    /// Scenario-specific checks.
    pub checks: Vec<Check>,
    /// Nodes that did not shut down cleanly on SIGTERM at the end.
    pub unclean_shutdowns: Vec<String>,
    /// Where the node and server logs are.
    pub logs: String,
}

impl Report {
    /// Whether work was offered and taken, nothing was lost or done twice, and every
    /// check held.
    pub fn passed(&self) -> bool {
        self.scheduled > 0
            && self.lost == 0
            && self.duplicate_effects == 0
            && self.effects_without_completion == 0
            && self.failed == 0
            && self.unclean_shutdowns.is_empty()
            && self.checks.iter().all(|c| c.passed)
    }
}

/// Completed tasks per second between `from` and `to` (seconds since the start).
/// The count at each bound is read off the samples, linearly between the two around
/// it: a phase in which the database could not be asked (it was down) is measured
/// across the gap, and a bound between samples does not take in the next phase.
pub fn throughput(samples: &[Sample], from: f64, to: f64) -> Option<f64> {
    if to - from < 0.5 {
        return None;
    }
    Some((completed_at(samples, to)? - completed_at(samples, from)?) / (to - from))
}

/// Completed tasks at `at`, from the samples (the nearest one outside their span).
fn completed_at(samples: &[Sample], at: f64) -> Option<f64> {
    let after = samples.iter().position(|s| s.at >= at);
    match after {
        None => samples.last().map(|s| s.completed as f64),
        Some(0) => Some(samples[0].completed as f64),
        Some(i) => {
            let (a, b) = (&samples[i - 1], &samples[i]);
            let share = (at - a.at) / (b.at - a.at);
            Some(a.completed as f64 + share * (b.completed - a.completed) as f64)
        }
    }
}

/// Seconds from `fault_end` until the queue works as before: tasks complete again
/// (more than at the first sample after the fault) and the backlog is at most
/// `threshold`.
pub fn recovery(samples: &[Sample], fault_end: f64, threshold: i64) -> Option<f64> {
    let mut after = samples.iter().filter(|s| s.at >= fault_end);
    let first = after.next()?;
    after
        .find(|s| s.completed > first.completed && s.backlog <= threshold)
        .map(|s| s.at - fault_end)
}

/// The `q` quantile (0–1) of `values` by the nearest-rank rule.
pub fn quantile(values: &mut [i64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    Some(values[rank - 1] as f64)
}

/// The reports as a Markdown table, one row per scenario.
pub fn markdown(reports: &[Report]) -> String {
    let mut out = String::from(
        "| scenario | backend | lost | duplicate effects | recovered in | tasks/s before / during / after | p99 start ms before / during / after | dead tuples max / end | result |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for r in reports {
        let figures = |f: fn(&PhaseFigures) -> Option<f64>| {
            [&r.before, &r.during, &r.after]
                .map(|p| f(p).map_or("–".to_string(), |v| format!("{v:.0}")))
                .join(" / ")
        };
        out.push_str(&format!(
            "| {}{} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.scenario,
            if r.short { " (short)" } else { "" },
            r.backend,
            r.lost,
            r.duplicate_effects,
            r.recovery_s
                .map_or("not within the run".to_string(), |s| format!("{s:.1} s")),
            figures(|p| p.tasks_per_s),
            figures(|p| p.p99_start_ms),
            match (r.max_dead_tuples, r.end_dead_tuples) {
                (Some(max), Some(end)) => format!("{max} / {end}"),
                _ => "–".to_string(),
            },
            if r.passed() { "pass" } else { "**FAIL**" },
        ));
    }
    for r in reports {
        out.push_str(&format!("\n**{}**: {}.", r.scenario, r.fault));
        out.push_str(&format!(
            " {} tasks scheduled ({} more in batches whose commit failed or was in doubt), {} completed, {} failed.",
            r.scheduled, r.unconfirmed, r.completed, r.failed
        ));
        for c in &r.checks {
            out.push_str(&format!(
                " {}: {} ({}).",
                c.name,
                if c.passed { "held" } else { "**did not hold**" },
                c.detail
            ));
        }
        if !r.unclean_shutdowns.is_empty() {
            out.push_str(&format!(
                " Did not shut down cleanly: {}.",
                r.unclean_shutdowns.join(", ")
            ));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: f64, completed: i64, backlog: i64) -> Sample {
        Sample {
            at,
            completed,
            backlog,
            dead_tuples: None,
        }
    }

    #[test]
    fn throughput_reads_the_counts_at_the_bounds_between_samples() {
        let samples = [
            sample(0.0, 0, 5),
            sample(1.0, 100, 5),
            sample(3.0, 500, 5),
            sample(4.0, 900, 5),
        ];
        assert_eq!(throughput(&samples, 1.0, 3.0), Some(200.0));
        // No sample while the database was down (1.5–2.5 s): read across the gap.
        assert_eq!(throughput(&samples, 1.5, 2.5), Some(200.0));
        assert_eq!(throughput(&samples, 0.0, 3.5), Some(700.0 / 3.5));
        // Past the last sample the count stays where it was last seen.
        assert_eq!(throughput(&samples, 4.0, 5.0), Some(0.0));
        assert_eq!(throughput(&samples, 2.0, 2.2), None);
        assert_eq!(throughput(&[], 0.0, 2.0), None);
    }

    #[test]
    fn recovery_waits_for_completions_and_a_normal_backlog() {
        let samples = [
            sample(1.0, 50, 500),
            sample(2.0, 50, 10),
            sample(3.0, 60, 400),
            sample(3.5, 70, 10),
            sample(4.0, 80, 5),
        ];
        // At 2.0 the backlog is low but nothing has completed since the fault.
        assert_eq!(recovery(&samples, 1.5, 20), Some(2.0));
        assert_eq!(recovery(&samples, 1.5, 1), None);
    }

    #[test]
    fn quantile_by_nearest_rank() {
        let mut values: Vec<i64> = (1..=100).rev().collect();
        assert_eq!(quantile(&mut values, 0.99), Some(99.0));
        assert_eq!(quantile(&mut values, 0.5), Some(50.0));
        assert_eq!(quantile(&mut [], 0.99), None);
    }
}
