//! How long each task type's runs take on this node, lately: a moving average per
//! type, which decides whether its runs may share a commit with the runs after them
//! (run groups, see `warren::store::RunGroup`). A run in a group holds the group's
//! earlier runs (their outcomes, their row locks) until it ends, so only types whose
//! runs are short group.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Runs shorter than this on average (recent runs weigh most) may group.
pub(crate) const SHORT_FOR_GROUPS: Duration = Duration::from_millis(50);

/// The moving average of each task type's run time on this node, shared by its
/// runners.
#[derive(Clone, Default)]
pub(crate) struct TypeRunTimes(Arc<Mutex<HashMap<String, Duration>>>);

impl TypeRunTimes {
    fn times(&self) -> std::sync::MutexGuard<'_, HashMap<String, Duration>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Folds a run of `task_type` that took `took` into its average (half the weight
    /// to the newest run, so that the first run of a type, which starts its VM, is
    /// soon forgotten).
    pub(crate) fn record(&self, task_type: &str, took: Duration) {
        let mut times = self.times();
        match times.get_mut(task_type) {
            Some(average) => *average = (*average + took) / 2,
            None => {
                times.insert(task_type.to_string(), took);
            }
        }
    }

    /// Whether runs of `task_type` have been short lately (a type not run yet has not).
    pub(crate) fn are_short(&self, task_type: &str) -> bool {
        self.times()
            .get(task_type)
            .is_some_and(|average| *average < SHORT_FOR_GROUPS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_type_groups_once_its_recent_runs_are_short() {
        let times = TypeRunTimes::default();
        assert!(!times.are_short("a:b"), "a type not run yet");
        times.record("a:b", Duration::from_millis(800));
        assert!(!times.are_short("a:b"));
        // The first run (a VM start) weighs half, then a quarter, …
        for _ in 0..4 {
            times.record("a:b", Duration::from_millis(5));
        }
        assert!(!times.are_short("a:b"), "800/16 + 5 ms is not short yet");
        times.record("a:b", Duration::from_millis(5));
        assert!(times.are_short("a:b"));
        // A long run makes it long again at once; other types are apart.
        times.record("a:b", Duration::from_millis(200));
        assert!(!times.are_short("a:b"));
        assert!(!times.are_short("a:c"));
    }
}
