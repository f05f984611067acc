//! Unique tasks: scheduling that returns the existing task of the same type and key
//! instead of creating a second one.
//!
//! The database enforces it, so two schedulers racing on two nodes create one task,
//! inside whatever transaction each runs in. On PostgreSQL a partial unique index on
//! `(task_type, unique_key)` covers every task whose state is one of the states
//! stored with it (`unique_states`, a bit set). On SQLite, whose writers take turns,
//! the insert looks for a duplicate in the same statement, under the write lock (see
//! [`super::dialect::Dialect::insert_unless_duplicate`]). Pending and running always count:
//! a running task goes back to pending when it is retried, and it must not meet a
//! second pending copy there. A period is part of the stored key (the start of the
//! period the task was scheduled in), since an index cannot depend on the clock.
//!
//! This file holds the rules (validation, the stored key, the debounced start, in
//! plain functions) and the statements that find a duplicate and insert unless one
//! exists.

use super::conn::on_conn;
use super::dialect::Dialect;
use super::schedule::TaskInsert;
use super::schema::warren_tasks as t;
use super::{AnyConn, StoreError, StoreResult};
use crate::task::TaskType;
use crate::task::{Millis, TaskId, TaskState};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::Bool;
use diesel_async::RunQueryDsl;
use serde::Serialize;

/// The condition under which a task counts as a duplicate: it has a key and its state
/// is one of its own unique states. PostgreSQL's migration
/// (`2026-12-06-000008_unique_tasks`) creates the unique index with this text (a
/// statement that repeats it lets the planner use the index), and SQLite's insert
/// (`sqlite_dialect.rs`) looks with it.
pub(super) const COUNTS_AS_DUPLICATE: &str = "unique_key IS NOT NULL AND (unique_states & \
     CASE state WHEN 'pending' THEN 1 WHEN 'running' THEN 2 WHEN 'completed' THEN 4 \
     WHEN 'failed' THEN 8 WHEN 'cancelled' THEN 16 ELSE 0 END) <> 0";

/// Longest unique key, in bytes.
pub const MAX_UNIQUE_KEY_BYTES: usize = 512;

/// Longest period, debounce delay and debounce maximum: one year (ms).
pub const MAX_UNIQUE_MS: i64 = 365 * 24 * 60 * 60 * 1000;

/// Separates the key from its period's start in the stored key; keys may not contain
/// control characters, so a key without a period never looks like one with.
const PERIOD_SEPARATOR: char = '\u{1f}';

/// The states in which an existing task counts as a duplicate: a bit set, stored with
/// each task. Pending and running are always in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UniqueStates(i32);

impl UniqueStates {
    /// Pending and running: a duplicate is a task that has not finished.
    pub const UNFINISHED: UniqueStates = UniqueStates(1 | 2);

    fn bit(state: TaskState) -> i32 {
        match state {
            TaskState::Pending => 1,
            TaskState::Running => 2,
            TaskState::Completed => 4,
            TaskState::Failed => 8,
            TaskState::Cancelled => 16,
        }
    }

    /// These states and `state`.
    pub fn with(self, state: TaskState) -> UniqueStates {
        UniqueStates(self.0 | Self::bit(state))
    }

    /// Whether a task in `state` counts as a duplicate.
    pub fn contains(self, state: TaskState) -> bool {
        self.0 & Self::bit(state) != 0
    }

    /// The states, in lifecycle order.
    pub fn states(self) -> Vec<TaskState> {
        TaskState::ALL
            .into_iter()
            .filter(|s| self.contains(*s))
            .collect()
    }

    /// The bit set as stored.
    pub(super) fn bits(self) -> i32 {
        self.0
    }

    /// The set stored as `bits`; pending and running are added if a foreign row lacks
    /// them.
    pub(super) fn from_bits(bits: i32) -> UniqueStates {
        UniqueStates(bits & 31 | Self::UNFINISHED.0)
    }

    /// Reads a comma-separated list of state names (`completed,failed`); pending and
    /// running may be named but are always included.
    pub fn parse_list(text: &str) -> Result<UniqueStates, String> {
        let mut states = UniqueStates::UNFINISHED;
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let state: TaskState = name.parse().map_err(|_| {
                format!("'{name}' is not a state (pending, running, completed, failed, cancelled)")
            })?;
            states = states.with(state);
        }
        Ok(states)
    }
}

impl Default for UniqueStates {
    fn default() -> UniqueStates {
        UniqueStates::UNFINISHED
    }
}

impl Serialize for UniqueStates {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.states().iter().map(|st| st.as_str()))
    }
}

/// Debouncing: a duplicate that is still pending takes the new data and starts
/// later, so a burst of schedules becomes one run with the last data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Debounce {
    /// A new task starts this long after it is scheduled; each duplicate pushes a
    /// pending task's start to this long after the duplicate (ms, above 0).
    pub delay_ms: i64,
    /// The start is never pushed past this long after the task was first scheduled
    /// (ms); `None`: ten times the delay.
    pub max_ms: Option<i64>,
}

impl Debounce {
    /// The latest start, relative to when the task was first scheduled.
    pub fn max(&self) -> i64 {
        self.max_ms.unwrap_or(self.delay_ms.saturating_mul(10))
    }
}

/// What makes a task unique when it is scheduled (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unique {
    /// The key: scheduling a task of the same type with the same key, while a task
    /// with it is in one of `states`, returns that task's id and creates nothing.
    pub key: String,
    /// The states in which an existing task counts (pending and running always do).
    /// They are stored with the new task: a task counts as a duplicate while it is in
    /// one of the states it was scheduled with.
    pub states: UniqueStates,
    /// The key holds within a period of this many ms (periods start at multiples of
    /// it since the Unix epoch): in the next period the same key makes a new task.
    pub period_ms: Option<i64>,
    /// Debounce a pending duplicate instead of leaving it as it is.
    pub debounce: Option<Debounce>,
}

impl Unique {
    /// A unique key with the default rules: a duplicate is an unfinished task.
    pub fn key(key: impl Into<String>) -> Unique {
        Unique {
            key: key.into(),
            states: UniqueStates::UNFINISHED,
            period_ms: None,
            debounce: None,
        }
    }

    /// Checks the key and the numbers; the error names the part that is wrong.
    pub fn validate(&self) -> Result<(), UniqueError> {
        let key_error = |message: String| UniqueError {
            part: UniquePart::Key,
            message,
        };
        if self.key.trim().is_empty() {
            return Err(key_error("must not be empty".into()));
        }
        if self.key.len() > MAX_UNIQUE_KEY_BYTES {
            return Err(key_error(format!(
                "is {} bytes long, at most {MAX_UNIQUE_KEY_BYTES}",
                self.key.len()
            )));
        }
        if self.key.chars().any(char::is_control) {
            return Err(key_error("must not contain control characters".into()));
        }
        let out_of_range = |part, ms: i64| {
            (!(1..=MAX_UNIQUE_MS).contains(&ms)).then(|| UniqueError {
                part,
                message: format!("{ms} is not a number of ms from 1 to {MAX_UNIQUE_MS} (one year)"),
            })
        };
        if let Some(e) = self
            .period_ms
            .and_then(|p| out_of_range(UniquePart::Period, p))
        {
            return Err(e);
        }
        if let Some(d) = &self.debounce {
            if let Some(e) = out_of_range(UniquePart::Debounce, d.delay_ms) {
                return Err(e);
            }
            if let Some(e) = d
                .max_ms
                .and_then(|m| out_of_range(UniquePart::DebounceMax, m))
            {
                return Err(e);
            }
            if d.max() < d.delay_ms {
                return Err(UniqueError {
                    part: UniquePart::DebounceMax,
                    message: format!(
                        "{} ms is shorter than the debounce delay ({} ms)",
                        d.max(),
                        d.delay_ms
                    ),
                });
            }
        }
        Ok(())
    }

    /// The key as stored for a task scheduled at `now`: with a period, the key and the
    /// start of the period that holds `now`.
    pub(super) fn stored_key(&self, now: Millis) -> String {
        join_stored_key(&self.key, self.period_ms.map(|p| period_start(now, p)))
    }
}

/// The start of the period of `period` ms that holds `now`.
pub fn period_start(now: Millis, period: i64) -> Millis {
    now - now.rem_euclid(period)
}

/// The key as stored: the caller's key, and the start of its period if it has one
/// (the inverse of [`split_stored_key`]).
fn join_stored_key(key: &str, period_start: Option<Millis>) -> String {
    match period_start {
        Some(start) => format!("{key}{PERIOD_SEPARATOR}{start}"),
        None => key.to_string(),
    }
}

/// A stored key taken apart: the caller's key and the start of its period, if any.
pub fn split_stored_key(stored: &str) -> (String, Option<Millis>) {
    match stored.split_once(PERIOD_SEPARATOR) {
        Some((key, start)) => (key.to_string(), start.parse().ok()),
        None => (stored.to_string(), None),
    }
}

/// The part of a unique-task option that is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UniquePart {
    /// The key.
    Key,
    /// The states that count.
    States,
    /// The period.
    Period,
    /// The debounce delay.
    Debounce,
    /// The debounce maximum.
    DebounceMax,
}

impl UniquePart {
    /// The field's name in the API and the CLI's JSON lines.
    pub fn api_name(self) -> &'static str {
        match self {
            UniquePart::Key => "unique_key",
            UniquePart::States => "unique_states",
            UniquePart::Period => "unique_period_ms",
            UniquePart::Debounce => "debounce_ms",
            UniquePart::DebounceMax => "debounce_max_ms",
        }
    }
}

/// A unique-task option that is wrong, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct UniqueError {
    /// Which option.
    pub part: UniquePart,
    /// What is wrong with it.
    pub message: String,
}

impl From<UniqueError> for StoreError {
    fn from(e: UniqueError) -> StoreError {
        StoreError::Invalid {
            field: e.part.api_name(),
            message: e.message,
        }
    }
}

/// The unique options as the front ends read them (the API, the CLI, the JS kit),
/// each part optional; [`UniqueParts::build`] says which are missing or meaningless.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UniqueParts {
    /// The key.
    pub key: Option<String>,
    /// The states that count, beyond pending and running.
    pub states: Option<UniqueStates>,
    /// The period (ms).
    pub period_ms: Option<i64>,
    /// The debounce delay (ms).
    pub debounce_ms: Option<i64>,
    /// The debounce maximum (ms).
    pub debounce_max_ms: Option<i64>,
}

impl UniqueParts {
    /// The unique options these parts give: none without a key (and then no other
    /// part may be given), else a checked [`Unique`].
    pub fn build(self) -> Result<Option<Unique>, UniqueError> {
        let Some(key) = self.key else {
            let given = [
                (self.states.is_some(), UniquePart::States),
                (self.period_ms.is_some(), UniquePart::Period),
                (self.debounce_ms.is_some(), UniquePart::Debounce),
                (self.debounce_max_ms.is_some(), UniquePart::DebounceMax),
            ];
            return match given.into_iter().find(|(is_given, _)| *is_given) {
                Some((_, part)) => Err(UniqueError {
                    part,
                    message: "applies only to a task with a unique key".into(),
                }),
                None => Ok(None),
            };
        };
        if self.debounce_max_ms.is_some() && self.debounce_ms.is_none() {
            return Err(UniqueError {
                part: UniquePart::DebounceMax,
                message: "needs a debounce delay".into(),
            });
        }
        let unique = Unique {
            key,
            states: self.states.unwrap_or_default(),
            period_ms: self.period_ms,
            debounce: self.debounce_ms.map(|delay_ms| Debounce {
                delay_ms,
                max_ms: self.debounce_max_ms,
            }),
        };
        unique.validate()?;
        Ok(Some(unique))
    }
}

/// A stored task's unique key, as [`super::Task`] shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskUnique {
    /// The key it was scheduled with.
    pub key: String,
    /// The start of the period the key holds in, if it was scheduled with one.
    pub period_start: Option<Millis>,
    /// The states in which it counts as a duplicate.
    pub states: UniqueStates,
}

impl TaskUnique {
    /// The key as stored, with its period's start.
    pub(super) fn stored_key(&self) -> String {
        join_stored_key(&self.key, self.period_start)
    }

    /// The unique key of a row (`None` for a task without one).
    pub(super) fn from_columns(key: Option<&str>, states: Option<i32>) -> Option<TaskUnique> {
        let (key, period_start) = split_stored_key(key?);
        Some(TaskUnique {
            key,
            period_start,
            states: UniqueStates::from_bits(states.unwrap_or(0)),
        })
    }
}

/// When a pending duplicate starts after being debounced at `now`: `delay` after
/// `now`, never past `max` after the task was first scheduled, and never earlier than
/// it was already due (a debounce only pushes back).
pub fn debounced_next_attempt(
    now: Millis,
    created_at: Millis,
    next_attempt: Millis,
    debounce: &Debounce,
) -> Millis {
    let wanted = now
        .saturating_add(debounce.delay_ms)
        .min(created_at.saturating_add(debounce.max()));
    wanted.max(next_attempt)
}

/// What scheduling a task did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scheduled {
    /// The new task, or the duplicate found in its place.
    pub id: TaskId,
    /// Whether a task was created (false: a duplicate with the same unique key exists).
    pub created: bool,
}

/// A duplicate found by [`find_duplicate`].
#[derive(Debug, Clone, Copy, Queryable)]
pub(super) struct Duplicate {
    pub id: TaskId,
    pub state: TaskState,
    pub created_at: Millis,
    pub next_attempt: Millis,
}

/// The task of `task_type` with `stored_key` that counts as a duplicate, other than
/// `except`.
pub(super) async fn find_duplicate(
    conn: &mut AnyConn<'_>,
    task_type: &str,
    stored_key: &str,
    except: Option<TaskId>,
) -> StoreResult<Option<Duplicate>> {
    let except = except.unwrap_or(TaskId(0));
    Ok(on_conn!(conn, c => {
        t::table
            .filter(t::task_type.eq(task_type))
            .filter(t::unique_key.eq(stored_key))
            .filter(sql::<Bool>(COUNTS_AS_DUPLICATE))
            .filter(t::id.ne(except))
            .select((t::id, t::state, t::created_at, t::next_attempt))
            .first::<Duplicate>(c)
            .await
            .optional()?
    }))
}

/// Why queuing task `id` again failed on the unique index, if that is what happened:
/// a [`StoreError::UniqueConflict`] naming the task that now holds its key (looked up
/// afresh, since the failed statement ended its transaction on PostgreSQL).
pub(super) async fn conflict_after(
    conn: &mut AnyConn<'_>,
    id: TaskId,
    task_type: &TaskType,
    unique: &TaskUnique,
) -> StoreResult<Option<StoreError>> {
    let stored = unique.stored_key();
    Ok(find_duplicate(conn, task_type.as_str(), &stored, Some(id))
        .await?
        .map(|other| StoreError::UniqueConflict {
            id,
            existing: other.id,
            key: unique.key.clone(),
            state: other.state,
        }))
}

/// How many times scheduling looks again when a concurrent scheduler's duplicate
/// comes and goes between its look and its insert.
const ATTEMPTS: usize = 10;

/// Schedules `row` (which carries its stored key) unless a duplicate exists: then
/// returns the duplicate, debounced if asked and still pending.
///
/// The insert comes first: on SQLite it takes the write lock even when it inserts
/// nothing, where a read first would start a snapshot that a commit by another
/// connection could make stale (and a deferred transaction's later write would then
/// fail). On PostgreSQL an insert that meets a concurrent transaction's duplicate waits
/// for it; if that commits, nothing is inserted and the look that follows finds it.
/// The look finds nothing only when the duplicate finished in between: then it tries
/// again.
pub(super) async fn insert_unique(
    conn: &mut AnyConn<'_>,
    row: &TaskInsert,
    unique: &Unique,
    now: Millis,
) -> StoreResult<Scheduled> {
    let stored_key = row.unique_key.as_deref().unwrap_or_default();
    for _ in 0..ATTEMPTS {
        let inserted = on_conn!(conn, c => Dialect::insert_unless_duplicate(c, row).await?);
        if let Some(id) = inserted {
            return Ok(Scheduled { id, created: true });
        }
        if let Some(found) = find_duplicate(conn, &row.task_type, stored_key, None).await? {
            if let (Some(debounce), TaskState::Pending) = (&unique.debounce, found.state) {
                let at =
                    debounced_next_attempt(now, found.created_at, found.next_attempt, debounce);
                debounce_pending(conn, found.id, row, at).await?;
                // Its data changed: so may its concurrency key.
                super::flow::key_tasks(conn, &[found.id]).await?;
            }
            return Ok(Scheduled {
                id: found.id,
                created: false,
            });
        }
        // The duplicate that stopped the insert no longer counts (it finished
        // meanwhile): insert again.
    }
    Err(StoreError::Contended {
        what: format!(
            "tasks of type {} with unique key '{}' kept appearing and finishing while this one was scheduled",
            row.task_type, unique.key
        ),
    })
}

/// Gives a pending duplicate the new data and aux data and its debounced start; a
/// task that was claimed meanwhile is left as it is.
async fn debounce_pending(
    conn: &mut AnyConn<'_>,
    id: TaskId,
    row: &TaskInsert,
    next_attempt: Millis,
) -> StoreResult<()> {
    on_conn!(conn, c => {
        diesel::update(
            t::table
                .filter(t::id.eq(id))
                .filter(t::state.eq(TaskState::Pending)),
        )
        .set((
            t::data.eq(&row.data),
            t::aux_data.eq(&row.aux_data),
            t::next_attempt.eq(next_attempt),
        ))
        .execute(c)
        .await?
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_and_running_always_count() {
        let states = UniqueStates::parse_list("completed").unwrap();
        assert_eq!(
            states.states(),
            vec![TaskState::Pending, TaskState::Running, TaskState::Completed]
        );
        assert_eq!(
            UniqueStates::parse_list("").unwrap(),
            UniqueStates::UNFINISHED
        );
        assert_eq!(UniqueStates::from_bits(4), states);
        let err = UniqueStates::parse_list("completed, done").unwrap_err();
        assert!(err.contains("'done' is not a state"), "{err}");
    }

    #[test]
    fn a_period_is_part_of_the_stored_key() {
        let mut u = Unique::key("report");
        assert_eq!(u.stored_key(1_000_123), "report");
        u.period_ms = Some(60_000);
        let stored = u.stored_key(1_000_123);
        assert_eq!(split_stored_key(&stored), ("report".into(), Some(960_000)));
        assert_eq!(u.stored_key(1_019_999), stored);
        assert_ne!(u.stored_key(1_020_000), stored);
        assert_eq!(split_stored_key("plain"), ("plain".into(), None));
    }

    #[test]
    fn a_debounce_pushes_back_but_never_past_its_maximum() {
        let d = Debounce {
            delay_ms: 100,
            max_ms: None,
        };
        // First scheduled at 0, due at 100: a duplicate at 50 moves it to 150.
        assert_eq!(debounced_next_attempt(50, 0, 100, &d), 150);
        // The cap is ten delays after the first schedule.
        assert_eq!(debounced_next_attempt(980, 0, 950, &d), 1000);
        assert_eq!(debounced_next_attempt(5_000, 0, 1000, &d), 1000);
        // A start already later (a retry's back-off) is not brought forward.
        assert_eq!(debounced_next_attempt(50, 0, 700, &d), 700);
    }

    #[test]
    fn bad_parts_are_named() {
        let err = |parts: UniqueParts| parts.build().unwrap_err();
        let e = err(UniqueParts {
            debounce_ms: Some(10),
            ..Default::default()
        });
        assert_eq!(e.part, UniquePart::Debounce);
        assert!(e.message.contains("unique key"), "{e}");
        let keyed = |key: &str| UniqueParts {
            key: Some(key.into()),
            ..Default::default()
        };
        assert_eq!(err(keyed(" ")).part, UniquePart::Key);
        assert_eq!(err(keyed("a\nb")).part, UniquePart::Key);
        assert_eq!(err(keyed(&"k".repeat(513))).part, UniquePart::Key);
        let e = err(UniqueParts {
            debounce_ms: Some(100),
            debounce_max_ms: Some(50),
            ..keyed("k")
        });
        assert_eq!(e.part, UniquePart::DebounceMax);
        let e = err(UniqueParts {
            debounce_max_ms: Some(50),
            ..keyed("k")
        });
        assert_eq!(e.part, UniquePart::DebounceMax);
        let e = err(UniqueParts {
            period_ms: Some(0),
            ..keyed("k")
        });
        assert_eq!(e.part, UniquePart::Period);
        assert_eq!(UniqueParts::default().build(), Ok(None));
        let u = keyed("k").build().unwrap().unwrap();
        assert_eq!(u, Unique::key("k"));
        assert_eq!(
            StoreError::from(err(keyed(""))).to_string(),
            "invalid unique_key: must not be empty"
        );
    }
}
