//! The retry rule: what a failed run of a managed task decides (retry when, or give
//! up), from its type's policy. Plain functions of their inputs, so every case is unit
//! tested here; the store writes what they decide.
//!
//! The default is the reference system's rule: the first retry after `failreschedule`,
//! doubling for six failures, then once a day. A module definition may choose a linear
//! or constant back-off, a maximum delay, and jitter.

use crate::task::{Millis, TaskId, DEFAULT_FAIL_RESCHEDULE_MS, DEFAULT_MAX_FAILURES};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// One day in milliseconds: the retry delay from the seventh attempt on (by default),
/// and the default maximum of every back-off.
pub const RETRY_CAP_MS: i64 = 24 * 60 * 60 * 1000;

/// Failures after which the default rule stops doubling and waits [`RETRY_CAP_MS`].
pub const RETRY_DOUBLINGS: i32 = 6;

/// Most jitter, in thousandths: 1000 spreads a delay over 0–2 times itself.
pub const MAX_JITTER_PERMILLE: u16 = 1000;

/// How the delay between retries grows (`backoff` in a module definition).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backoff {
    /// Doubling from the first delay. Without a maximum this is the reference rule:
    /// six doublings, then one day. With one, it doubles until it reaches the maximum.
    #[default]
    Exponential,
    /// The first delay times the number of failures so far (this one included).
    Linear,
    /// The first delay, every time.
    Constant,
}

impl Backoff {
    /// The name used in module definitions.
    pub fn as_str(self) -> &'static str {
        match self {
            Backoff::Exponential => "exponential",
            Backoff::Linear => "linear",
            Backoff::Constant => "constant",
        }
    }
}

impl fmt::Display for Backoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Backoff {
    type Err = String;
    fn from_str(s: &str) -> Result<Backoff, String> {
        match s.trim() {
            "exponential" => Ok(Backoff::Exponential),
            "linear" => Ok(Backoff::Linear),
            "constant" => Ok(Backoff::Constant),
            other => Err(format!(
                "'{other}' is not a back-off (exponential, linear or constant)"
            )),
        }
    }
}

/// How a task type is retried after a failure (from its module definition).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Delay before the first retry (ms); how later ones grow is `backoff`'s.
    pub fail_reschedule_ms: i64,
    /// Failures tolerated before giving up; -1 retries forever, 0 never retries.
    pub max_failures: i32,
    /// How the delay grows from one failure to the next.
    #[serde(default)]
    pub backoff: Backoff,
    /// The longest delay (ms); `None`: the reference rule's (one day, reached after
    /// six doublings).
    #[serde(default)]
    pub backoff_max_ms: Option<i64>,
    /// Jitter in thousandths of the delay: 250 moves each delay by up to 25% either
    /// way, so tasks that failed together do not all retry at one instant.
    #[serde(default)]
    pub jitter_permille: u16,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            fail_reschedule_ms: DEFAULT_FAIL_RESCHEDULE_MS,
            max_failures: DEFAULT_MAX_FAILURES,
            backoff: Backoff::Exponential,
            backoff_max_ms: None,
            jitter_permille: 0,
        }
    }
}

impl RetryPolicy {
    /// The reference rule with this first delay and failure limit.
    pub fn reference(fail_reschedule_ms: i64, max_failures: i32) -> RetryPolicy {
        RetryPolicy {
            fail_reschedule_ms,
            max_failures,
            ..RetryPolicy::default()
        }
    }

    /// A short description for people ("exponential from 15 min, at most 1 day").
    pub fn describe(&self) -> String {
        let mut text = format!("{} from {} ms", self.backoff, self.fail_reschedule_ms);
        match self.backoff_max_ms {
            Some(max) => text.push_str(&format!(", at most {max} ms")),
            None if self.backoff == Backoff::Exponential => {
                text.push_str(", one day after six doublings")
            }
            None => text.push_str(", at most one day"),
        }
        if self.jitter_permille > 0 {
            text.push_str(&format!(
                ", jitter ±{}%",
                f64::from(self.jitter_permille) / 10.0
            ));
        }
        text
    }
}

/// What the retry rule decides for a failed run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureDecision {
    /// Stay pending; the next attempt is at this instant.
    Retry {
        /// When the task runs again.
        next_attempt: Millis,
    },
    /// Out of retries: the task is finished as failed.
    GiveUp,
}

/// The retry rule. `failures` is the count *before* this failure; `task` seeds the
/// jitter, so each task has its own spread and a test can predict it.
///
/// The failure count is checked before it is incremented: with `max_failures >= 0` and
/// `failures >= max_failures` the task gives up. Otherwise an explicit `next_retry` wins
/// (never earlier than now); else the delay is [`retry_delay_ms`]'s. A `not_before`
/// time is always respected.
///
/// ```
/// use warren::task::{decide_failure, FailureDecision, RetryPolicy, TaskId};
/// let policy = RetryPolicy::reference(60_000, 1);
/// // First failure: retried after one minute. Second: out of retries.
/// assert_eq!(decide_failure(policy, TaskId(1), 0, 0, None, None), FailureDecision::Retry { next_attempt: 60_000 });
/// assert_eq!(decide_failure(policy, TaskId(1), 1, 0, None, None), FailureDecision::GiveUp);
/// ```
pub fn decide_failure(
    policy: RetryPolicy,
    task: TaskId,
    failures: i32,
    now: Millis,
    next_retry: Option<Millis>,
    not_before: Option<Millis>,
) -> FailureDecision {
    if policy.max_failures >= 0 && failures >= policy.max_failures {
        return FailureDecision::GiveUp;
    }
    let at = match next_retry {
        Some(explicit) => explicit.max(now),
        None => {
            let delay = retry_delay_ms(&policy, failures);
            now.saturating_add(jittered(&policy, delay, task, failures))
        }
    };
    FailureDecision::Retry {
        next_attempt: at.max(not_before.unwrap_or(i64::MIN)),
    }
}

/// Delay before the next attempt after `failures` earlier failures (the one now
/// being recorded not counted), before jitter.
pub fn retry_delay_ms(policy: &RetryPolicy, failures: i32) -> i64 {
    let first = policy.fail_reschedule_ms;
    let cap = policy.backoff_max_ms.unwrap_or(RETRY_CAP_MS);
    match (policy.backoff, policy.backoff_max_ms) {
        // The reference rule: six doublings, whatever they reach, then one day.
        (Backoff::Exponential, None) if (0..RETRY_DOUBLINGS).contains(&failures) => {
            first.saturating_mul(1 << failures)
        }
        (Backoff::Exponential, None) => RETRY_CAP_MS,
        (Backoff::Exponential, Some(max)) if (0..62).contains(&failures) => {
            first.saturating_mul(1 << failures).min(max)
        }
        (Backoff::Exponential, Some(max)) => max,
        (Backoff::Linear, _) => first
            .saturating_mul(i64::from(failures.max(0)) + 1)
            .min(cap),
        (Backoff::Constant, _) => first.min(cap),
    }
}

/// `delay` moved by up to the policy's jitter either way, by a fraction drawn from
/// the task and its failure count; never below 0. A delay moved past an explicit
/// maximum is reflected back below it (by as much as it went over), so tasks that
/// have reached the maximum still spread out instead of meeting at it.
fn jittered(policy: &RetryPolicy, delay: i64, task: TaskId, failures: i32) -> i64 {
    if policy.jitter_permille == 0 {
        return delay;
    }
    let spread = f64::from(policy.jitter_permille.min(MAX_JITTER_PERMILLE)) / 1000.0;
    let seed = (task.0 as u64) ^ ((failures as u64) << 48);
    let fraction = 2.0 * unit_fraction(seed) - 1.0;
    let moved = (delay as f64 * (1.0 + spread * fraction)).round() as i64;
    let moved = match policy.backoff_max_ms {
        Some(max) if moved > max => max.saturating_sub(moved - max),
        _ => moved,
    };
    moved.max(0)
}

/// A number in [0, 1) spread evenly over seeds (the splitmix64 finaliser).
fn unit_fraction(seed: u64) -> f64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;
    const ID: TaskId = TaskId(7);

    fn delays(policy: RetryPolicy, n: i32) -> Vec<i64> {
        (0..n).map(|f| retry_delay_ms(&policy, f) / MIN).collect()
    }

    #[test]
    fn retry_schedule_matches_the_reference() {
        assert_eq!(
            delays(RetryPolicy::default(), 9),
            [15, 30, 60, 120, 240, 480, 1440, 1440, 1440]
        );
        // The reference doubles six times even past a day.
        let daily = RetryPolicy::reference(RETRY_CAP_MS, -1);
        assert_eq!(delays(daily, 3), [1440, 2880, 5760]);
        // A count below zero (never written) reads as "past the doublings", as before.
        assert_eq!(retry_delay_ms(&RetryPolicy::default(), -1), RETRY_CAP_MS);
    }

    #[test]
    fn backoffs_grow_as_named_up_to_their_maximum() {
        let policy = |backoff, max| RetryPolicy {
            fail_reschedule_ms: MIN,
            backoff,
            backoff_max_ms: max,
            ..RetryPolicy::default()
        };
        assert_eq!(
            delays(policy(Backoff::Exponential, Some(10 * MIN)), 8),
            [1, 2, 4, 8, 10, 10, 10, 10]
        );
        // With a maximum, doubling goes on past six failures until it reaches it.
        assert_eq!(
            delays(policy(Backoff::Exponential, Some(1000 * MIN)), 10)[6..],
            [64, 128, 256, 512]
        );
        assert_eq!(
            retry_delay_ms(&policy(Backoff::Exponential, Some(5 * MIN)), 500),
            5 * MIN
        );
        assert_eq!(
            delays(policy(Backoff::Linear, Some(3 * MIN)), 5),
            [1, 2, 3, 3, 3]
        );
        assert_eq!(delays(policy(Backoff::Linear, None), 3), [1, 2, 3]);
        assert_eq!(
            retry_delay_ms(&policy(Backoff::Linear, None), 100_000),
            RETRY_CAP_MS
        );
        assert_eq!(delays(policy(Backoff::Constant, None), 4), [1, 1, 1, 1]);
    }

    #[test]
    fn jitter_spreads_tasks_within_its_bounds_and_is_repeatable() {
        let policy = RetryPolicy {
            fail_reschedule_ms: 1000 * MIN,
            backoff: Backoff::Constant,
            jitter_permille: 250,
            ..RetryPolicy::default()
        };
        let at = |id: i64| match decide_failure(policy, TaskId(id), 0, 0, None, None) {
            FailureDecision::Retry { next_attempt } => next_attempt,
            FailureDecision::GiveUp => panic!("retried forever"),
        };
        let delay = 1000 * MIN;
        let spread: Vec<i64> = (1..=1000).map(at).collect();
        assert!(spread
            .iter()
            .all(|d| (delay * 3 / 4..=delay * 5 / 4).contains(d)));
        let (low, high) = (
            spread.iter().filter(|d| **d < delay).count(),
            spread.iter().filter(|d| **d > delay).count(),
        );
        // Evenly spread: about half on each side, and not all at one instant.
        assert!(
            (400..=600).contains(&low) && (400..=600).contains(&high),
            "{low} {high}"
        );
        let distinct: std::collections::HashSet<_> = spread.iter().collect();
        assert!(distinct.len() > 900);
        assert_eq!(at(42), at(42));
        // Never past an explicit maximum.
        let capped = RetryPolicy {
            backoff_max_ms: Some(delay),
            ..policy
        };
        let at_cap: Vec<i64> = (1..=1000)
            .map(
                |id| match decide_failure(capped, TaskId(id), 0, 0, None, None) {
                    FailureDecision::Retry { next_attempt } => next_attempt,
                    FailureDecision::GiveUp => panic!("retried forever"),
                },
            )
            .collect();
        assert!(at_cap.iter().all(|d| (delay * 3 / 4..=delay).contains(d)));
        // Reflected below the maximum, not piled up on it.
        assert!(at_cap.iter().filter(|d| **d == delay).count() < 10);
        assert!(at_cap.iter().filter(|d| **d < delay * 7 / 8).count() > 400);
    }

    #[test]
    fn max_failures_is_checked_before_incrementing() {
        let p = |max| RetryPolicy::reference(MIN, max);
        assert_eq!(
            decide_failure(p(0), ID, 0, 0, None, None),
            FailureDecision::GiveUp
        );
        assert_eq!(
            decide_failure(p(1), ID, 0, 0, None, None),
            FailureDecision::Retry { next_attempt: MIN }
        );
        assert_eq!(
            decide_failure(p(1), ID, 1, 0, None, None),
            FailureDecision::GiveUp
        );
        assert!(matches!(
            decide_failure(p(-1), ID, 1000, 0, None, None),
            FailureDecision::Retry { .. }
        ));
    }

    #[test]
    fn explicit_retry_and_not_before() {
        let p = RetryPolicy::default();
        assert_eq!(
            decide_failure(p, ID, 0, 1000, Some(500), None),
            FailureDecision::Retry { next_attempt: 1000 }
        );
        assert_eq!(
            decide_failure(p, ID, 0, 1000, Some(5000), None),
            FailureDecision::Retry { next_attempt: 5000 }
        );
        assert_eq!(
            decide_failure(p, ID, 0, 0, Some(10), Some(99_999_999)),
            FailureDecision::Retry {
                next_attempt: 99_999_999
            }
        );
    }

    #[test]
    fn backoff_names_parse() {
        assert_eq!("linear".parse(), Ok(Backoff::Linear));
        assert_eq!(Backoff::Constant.to_string(), "constant");
        assert!("fibonacci"
            .parse::<Backoff>()
            .unwrap_err()
            .contains("exponential, linear or constant"));
    }
}
