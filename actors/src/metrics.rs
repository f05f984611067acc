//! A node's Prometheus metrics: counters the runners and the Supervisor keep, rendered
//! in Prometheus' text format (version 0.0.4) together with values read at scrape time
//! (queue depth, runner utilisation). The series are those of `docs/api.md`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the run-duration histogram's buckets.
const DURATION_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0,
];

/// Counters of one node, shared by its runners, its Supervisor and its dashboard.
#[derive(Debug, Default)]
pub struct Metrics {
    scheduled: Mutex<BTreeMap<String, u64>>,
    finished: Mutex<BTreeMap<(String, &'static str), u64>>,
    durations: Mutex<BTreeMap<String, Histogram>>,
    bulk_changed: Mutex<BTreeMap<&'static str, u64>>,
    vm_instantiations: AtomicU64,
    vm_reuses: AtomicU64,
}

/// A histogram of run durations: per-bucket counts (not cumulative), sum and count.
#[derive(Debug, Clone, Default)]
struct Histogram {
    buckets: [u64; DURATION_BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// Values the dashboard reads when it is scraped, rendered with the counters.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    /// Tasks per state in the whole database (`pending`, `future`, `running`,
    /// `completed`, `failed`, `cancelled`).
    pub queue_depth: Vec<(&'static str, i64)>,
    /// Per cluster: its runners, and how many of them are busy.
    pub runners: Vec<(String, usize, usize)>,
    /// The database connections the node holds, by pool.
    pub connections: crate::messages::ConnectionUse,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Metrics {
    /// An empty registry.
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// Counts a managed task scheduled through this node.
    pub fn task_scheduled(&self, task_type: &str) {
        self.tasks_scheduled(task_type, 1);
    }

    /// Counts `count` managed tasks of one type scheduled through this node.
    pub fn tasks_scheduled(&self, task_type: &str, count: u64) {
        *lock(&self.scheduled)
            .entry(task_type.to_string())
            .or_default() += count;
    }

    /// Counts a finished managed run; `outcome` is its label (`completed`, `failed`,
    /// `cancelled`, `retry`, `restarted`, `snoozed`, `lost`).
    pub fn run_finished(&self, task_type: &str, outcome: &'static str) {
        *lock(&self.finished)
            .entry((task_type.to_string(), outcome))
            .or_default() += 1;
    }

    /// Records how long a run took (managed, ephemeral or scheduled; `task_type` is the
    /// task type or the scheduled tag).
    pub fn run_duration(&self, task_type: &str, took: Duration) {
        let seconds = took.as_secs_f64();
        let mut durations = lock(&self.durations);
        let h = durations.entry(task_type.to_string()).or_default();
        if let Some(i) = DURATION_BUCKETS.iter().position(|&le| seconds <= le) {
            h.buckets[i] += 1;
        }
        h.sum += seconds;
        h.count += 1;
    }

    /// Counts tasks a bulk action through this node changed; `action` is `retry`,
    /// `cancel` or `delete`.
    pub fn bulk_changed(&self, action: &'static str, count: u64) {
        *lock(&self.bulk_changed).entry(action).or_default() += count;
    }

    /// Counts a VM created for a run.
    pub fn vm_instantiated(&self) {
        self.vm_instantiations.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a run that reused a live VM.
    pub fn vm_reused(&self) {
        self.vm_reuses.fetch_add(1, Ordering::Relaxed);
    }

    /// Renders every series in Prometheus' text format, version 0.0.4.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::new();
        header(
            &mut out,
            "warren_tasks_scheduled_total",
            "counter",
            "Managed tasks scheduled through this node.",
        );
        for (task_type, n) in lock(&self.scheduled).iter() {
            sample(
                &mut out,
                "warren_tasks_scheduled_total",
                &[("type", task_type)],
                *n,
            );
        }
        header(
            &mut out,
            "warren_tasks_finished_total",
            "counter",
            "Managed runs finished on this node, by outcome.",
        );
        for ((task_type, outcome), n) in lock(&self.finished).iter() {
            sample(
                &mut out,
                "warren_tasks_finished_total",
                &[("type", task_type), ("outcome", outcome)],
                *n,
            );
        }
        header(
            &mut out,
            "warren_bulk_changed_tasks_total",
            "counter",
            "Tasks changed by bulk actions through this node, by action.",
        );
        for (action, n) in lock(&self.bulk_changed).iter() {
            sample(
                &mut out,
                "warren_bulk_changed_tasks_total",
                &[("action", action)],
                *n,
            );
        }
        header(
            &mut out,
            "warren_queue_depth",
            "gauge",
            "Managed tasks per state in the whole database.",
        );
        for (state, n) in &gauges.queue_depth {
            sample(&mut out, "warren_queue_depth", &[("state", state)], *n);
        }
        header(
            &mut out,
            "warren_run_duration_seconds",
            "histogram",
            "Durations of the runs on this node.",
        );
        for (task_type, h) in lock(&self.durations).iter() {
            let mut cumulative = 0;
            for (le, n) in DURATION_BUCKETS.iter().zip(h.buckets) {
                cumulative += n;
                let le = le.to_string();
                sample(
                    &mut out,
                    "warren_run_duration_seconds_bucket",
                    &[("type", task_type), ("le", &le)],
                    cumulative,
                );
            }
            sample(
                &mut out,
                "warren_run_duration_seconds_bucket",
                &[("type", task_type), ("le", "+Inf")],
                h.count,
            );
            sample(
                &mut out,
                "warren_run_duration_seconds_sum",
                &[("type", task_type)],
                h.sum,
            );
            sample(
                &mut out,
                "warren_run_duration_seconds_count",
                &[("type", task_type)],
                h.count,
            );
        }
        header(
            &mut out,
            "warren_runners",
            "gauge",
            "Runners of this node, per cluster.",
        );
        for (cluster, total, _) in &gauges.runners {
            sample(&mut out, "warren_runners", &[("cluster", cluster)], *total);
        }
        header(
            &mut out,
            "warren_runners_busy",
            "gauge",
            "Runners of this node running a task, per cluster.",
        );
        for (cluster, _, busy) in &gauges.runners {
            sample(
                &mut out,
                "warren_runners_busy",
                &[("cluster", cluster)],
                *busy,
            );
        }
        let pools = [
            ("store", gauges.connections.store),
            ("queue", gauges.connections.queue),
            ("runner_threads", gauges.connections.runner_threads),
        ];
        header(
            &mut out,
            "warren_db_connections",
            "gauge",
            "Database connections the node holds open, per pool.",
        );
        for (pool, used) in pools {
            sample(
                &mut out,
                "warren_db_connections",
                &[("pool", pool)],
                used.open,
            );
        }
        header(
            &mut out,
            "warren_db_connections_max",
            "gauge",
            "The most database connections each pool of the node may hold.",
        );
        for (pool, used) in pools {
            sample(
                &mut out,
                "warren_db_connections_max",
                &[("pool", pool)],
                used.max,
            );
        }
        header(
            &mut out,
            "warren_vm_instantiations_total",
            "counter",
            "VMs created for runs on this node.",
        );
        sample(
            &mut out,
            "warren_vm_instantiations_total",
            &[],
            self.vm_instantiations.load(Ordering::Relaxed),
        );
        header(
            &mut out,
            "warren_vm_reuses_total",
            "counter",
            "Runs on this node that reused a live VM.",
        );
        sample(
            &mut out,
            "warren_vm_reuses_total",
            &[],
            self.vm_reuses.load(Ordering::Relaxed),
        );
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (key, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{key}=\"{}\"", escape_label(value));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// A label value as the text format needs it: backslash, double quote and newline
/// escaped.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauges() {
        let m = Metrics::new();
        m.task_scheduled("demo:ping");
        m.task_scheduled("demo:ping");
        m.run_finished("demo:ping", "completed");
        m.run_duration("demo:ping", Duration::from_millis(500));
        m.run_duration("demo:ping", Duration::from_secs(2));
        m.vm_instantiated();
        m.vm_reused();
        m.vm_reused();
        let text = m.render(&Gauges {
            queue_depth: vec![("pending", 4)],
            runners: vec![("default".into(), 2, 1)],
            connections: crate::messages::ConnectionUse {
                store: warren::store::PoolUse { open: 3, max: 16 },
                queue: warren::store::PoolUse { open: 1, max: 2 },
                runner_threads: warren::store::PoolUse { open: 5, max: 8 },
            },
        });
        for line in [
            "warren_tasks_scheduled_total{type=\"demo:ping\"} 2",
            "warren_tasks_finished_total{type=\"demo:ping\",outcome=\"completed\"} 1",
            "warren_queue_depth{state=\"pending\"} 4",
            "warren_db_connections{pool=\"store\"} 3",
            "warren_db_connections{pool=\"queue\"} 1",
            "warren_db_connections{pool=\"runner_threads\"} 5",
            "warren_db_connections_max{pool=\"queue\"} 2",
            "warren_db_connections_max{pool=\"store\"} 16",
            "warren_db_connections_max{pool=\"runner_threads\"} 8",
            "warren_run_duration_seconds_bucket{type=\"demo:ping\",le=\"0.25\"} 0",
            "warren_run_duration_seconds_bucket{type=\"demo:ping\",le=\"0.5\"} 1",
            "warren_run_duration_seconds_bucket{type=\"demo:ping\",le=\"5\"} 2",
            "warren_run_duration_seconds_bucket{type=\"demo:ping\",le=\"+Inf\"} 2",
            "warren_run_duration_seconds_sum{type=\"demo:ping\"} 2.5",
            "warren_run_duration_seconds_count{type=\"demo:ping\"} 2",
            "warren_runners{cluster=\"default\"} 2",
            "warren_runners_busy{cluster=\"default\"} 1",
            "warren_vm_instantiations_total 1",
            "warren_vm_reuses_total 2",
            "# TYPE warren_run_duration_seconds histogram",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
