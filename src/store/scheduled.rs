//! State of scheduled (`<task>`) tags, shared by every node: next run, the running
//! flag under a lease, the last outcome, enable/disable and "run now".
//!
//! Each tick runs once across all nodes: a node claims a due tag with a conditional
//! update on its run token, and only one update can win. The next run is computed
//! from the moment of the claim, so ticks missed while every node was down (or while
//! the previous run was still going) coalesce into one run. The statements live here;
//! the sequences that compute next runs (sync, claim, enable) are in
//! `executor/scheduled.rs`.

use super::conn::on_conn;
use super::schema::warren_paused::dsl as p;
use super::schema::warren_scheduled::dsl as s;
use super::{AnyConn, Store, StoreError, StoreResult};
use crate::cron::{CronMask, ZoneSpec};
use crate::task::{LeaseToken, Millis};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;

/// A scheduled tag as the module definitions declare it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledSpec {
    /// Full tag, `module:tag`.
    pub tag: String,
    /// When it runs; `None`: only when triggered by hand.
    pub mask: Option<CronMask>,
    /// The zone the mask is read in.
    pub zone: ZoneSpec,
}

/// The shared state of one scheduled tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Queryable, Selectable)]
#[diesel(table_name = super::schema::warren_scheduled)]
pub struct ScheduledState {
    /// Full tag.
    pub tag: String,
    /// The cron mask, if any.
    pub mask: Option<String>,
    /// The zone.
    pub zone: String,
    /// Disabled tags run only when triggered by hand.
    pub enabled: bool,
    /// Next run time.
    pub next_run: Option<Millis>,
    /// A "run now" is waiting.
    pub run_requested: bool,
    /// A run is going on.
    pub running: bool,
    /// The node running it.
    pub run_owner: Option<String>,
    /// When that node's claim on the run expires.
    pub run_until: Option<Millis>,
    /// Fencing token of the latest run.
    pub run_token: LeaseToken,
    /// When the latest run started.
    pub last_start: Option<Millis>,
    /// When the latest run finished.
    pub last_finish: Option<Millis>,
    /// How it ended (`completed`, `failed`, `timeout` …).
    pub last_outcome: Option<String>,
    /// Its output (log lines, error text).
    pub last_output: Option<String>,
}

/// A run of a scheduled tag claimed by this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledRun {
    /// Full tag.
    pub tag: String,
    /// Fencing token to present when finishing.
    pub token: LeaseToken,
    /// Whether it was triggered by hand rather than by its mask.
    pub requested: bool,
    /// When the run was claimed.
    pub started_at: Millis,
}

/// How a scheduled run ended, as stored in `last_outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduledOutcome {
    /// The task code completed.
    Completed,
    /// It failed (any resolution other than a completion, a trap, a kill, a crash of
    /// its runner).
    Failed,
    /// It ran out of time.
    #[serde(rename = "timeout")]
    TimedOut,
}

impl ScheduledOutcome {
    /// The name stored and shown: `completed`, `failed` or `timeout`.
    pub fn as_str(self) -> &'static str {
        match self {
            ScheduledOutcome::Completed => "completed",
            ScheduledOutcome::Failed => "failed",
            ScheduledOutcome::TimedOut => "timeout",
        }
    }
}

impl std::fmt::Display for ScheduledOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The end of a scheduled run: how it ended and what it printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledEnd {
    /// How it ended.
    pub outcome: ScheduledOutcome,
    /// Its output (log lines, error text); bounded when stored.
    pub output: String,
}

impl ScheduledEnd {
    /// A run that failed with `output` (its error).
    pub fn failed(output: impl Into<String>) -> ScheduledEnd {
        ScheduledEnd {
            outcome: ScheduledOutcome::Failed,
            output: output.into(),
        }
    }
}

/// A tag's definition as stored: its mask and zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredDefinition {
    /// The cron mask, if any.
    pub mask: Option<String>,
    /// The zone.
    pub zone: String,
}

/// Reads a tag's stored definition (one statement); `None`: no such tag.
pub(crate) async fn stored_definition(
    conn: &mut AnyConn<'_>,
    tag: &str,
) -> StoreResult<Option<StoredDefinition>> {
    let row: Option<(Option<String>, String)> = on_conn!(conn, c => {
        s::warren_scheduled
            .select((s::mask, s::zone))
            .find(tag)
            .first(c)
            .await
            .optional()?
    });
    Ok(row.map(|(mask, zone)| StoredDefinition { mask, zone }))
}

/// The parameters of [`insert_definition`] and [`update_definition`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DefinitionWrite<'a> {
    /// Full tag.
    pub tag: &'a str,
    /// The definition.
    pub definition: &'a StoredDefinition,
    /// Its next run, computed from it.
    pub next_run: Option<Millis>,
}

/// Adds a tag (one statement).
pub(crate) async fn insert_definition(
    conn: &mut AnyConn<'_>,
    write: &DefinitionWrite<'_>,
) -> StoreResult<()> {
    let d = write.definition;
    on_conn!(conn, c => {
        diesel::insert_into(s::warren_scheduled)
            .values((
                s::tag.eq(write.tag),
                s::mask.eq(&d.mask),
                s::zone.eq(&d.zone),
                s::next_run.eq(write.next_run),
            ))
            .execute(c)
            .await?
    });
    Ok(())
}

/// Replaces a tag's definition and next run (one statement).
pub(crate) async fn update_definition(
    conn: &mut AnyConn<'_>,
    write: &DefinitionWrite<'_>,
) -> StoreResult<()> {
    let d = write.definition;
    on_conn!(conn, c => {
        diesel::update(s::warren_scheduled.find(write.tag))
            .set((
                s::mask.eq(&d.mask),
                s::zone.eq(&d.zone),
                s::next_run.eq(write.next_run),
            ))
            .execute(c)
            .await?
    });
    Ok(())
}

/// A tag that is due to run, as [`due_tags`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DueTag {
    /// Full tag.
    pub tag: String,
    /// Its definition, from which the next run is computed.
    pub definition: StoredDefinition,
    /// The token of its latest run; the claim is conditional on it.
    pub token: LeaseToken,
    /// Whether a "run now" is waiting.
    pub requested: bool,
}

/// The tags among `tags` that are due at `now` (one statement): enabled with their
/// next run come, or with a "run now" waiting; not running, or whose run's claim
/// expired; and not paused (a paused tag's runs wait, and since the next run is
/// computed from the claim's time, the ticks missed meanwhile become one run).
pub(crate) async fn due_tags(
    conn: &mut AnyConn<'_>,
    tags: &[String],
    now: Millis,
) -> StoreResult<Vec<DueTag>> {
    let rows: Vec<(String, Option<String>, String, LeaseToken, bool)> = on_conn!(conn, c => {
        s::warren_scheduled
            .select((s::tag, s::mask, s::zone, s::run_token, s::run_requested))
            .filter(s::tag.eq_any(tags))
            .filter(
                s::enabled
                    .eq(true)
                    .and(s::next_run.le(now))
                    .or(s::run_requested.eq(true)),
            )
            .filter(s::running.eq(false).or(s::run_until.lt(now)))
            .filter(diesel::dsl::not(s::tag.eq_any(paused_tags())))
            .order(s::tag)
            .load(c)
            .await?
    });
    Ok(rows
        .into_iter()
        .map(|(tag, mask, zone, token, requested)| DueTag {
            tag,
            definition: StoredDefinition { mask, zone },
            token,
            requested,
        })
        .collect())
}

/// The paused task types and tags, as a subselect (see `pauses.rs`).
fn paused_tags() -> diesel::dsl::Select<
    diesel::dsl::Filter<p::warren_paused, diesel::dsl::Eq<p::kind, &'static str>>,
    p::name,
> {
    p::warren_paused.filter(p::kind.eq("type")).select(p::name)
}

/// The parameters of [`claim_tag`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TagClaim<'a> {
    /// Full tag.
    pub tag: &'a str,
    /// The token read with the tag; the claim takes the next one.
    pub token: LeaseToken,
    /// The claiming node.
    pub owner: &'a str,
    /// The claim's start.
    pub now: Millis,
    /// When the claim expires.
    pub until: Millis,
    /// The tag's next run after this one.
    pub next_run: Option<Millis>,
}

/// Claims a due tag's run, conditional on the token read (one statement): only one
/// node's claim can win a tick. Returns whether this one did.
pub(crate) async fn claim_tag(conn: &mut AnyConn<'_>, claim: &TagClaim<'_>) -> StoreResult<bool> {
    let won = on_conn!(conn, c => {
        diesel::update(
            s::warren_scheduled
                .filter(s::tag.eq(claim.tag))
                .filter(s::run_token.eq(claim.token))
                // Paused since `due_tags` read it: not claimed.
                .filter(diesel::dsl::not(s::tag.eq_any(paused_tags()))),
        )
        .set((
            s::running.eq(true),
            s::run_owner.eq(claim.owner),
            s::run_until.eq(claim.until),
            s::run_token.eq(claim.token.next()),
            s::last_start.eq(claim.now),
            s::next_run.eq(claim.next_run),
            s::run_requested.eq(false),
        ))
        .execute(c)
        .await?
    });
    Ok(won == 1)
}

/// Enables or disables a tag and sets its next run (one statement).
pub(crate) async fn set_enabled(
    conn: &mut AnyConn<'_>,
    tag: &str,
    enabled: bool,
    next_run: Option<Millis>,
) -> StoreResult<()> {
    on_conn!(conn, c => {
        diesel::update(s::warren_scheduled.find(tag))
            .set((s::enabled.eq(enabled), s::next_run.eq(next_run)))
            .execute(c)
            .await?
    });
    Ok(())
}

impl Store {
    /// Extends the claim on a running scheduled task. False: the claim was lost.
    pub async fn renew_scheduled(
        &self,
        tag: &str,
        token: LeaseToken,
        lease_ms: i64,
    ) -> StoreResult<bool> {
        let until = self.now() + lease_ms;
        let mut pooled = self.conn().await?;
        let mut conn = pooled.any();
        let n = on_conn!(&mut conn, c => {
            diesel::update(
                s::warren_scheduled
                    .filter(s::tag.eq(tag))
                    .filter(s::run_token.eq(token))
                    .filter(s::running.eq(true)),
            )
            .set(s::run_until.eq(until))
            .execute(c)
            .await?
        });
        Ok(n == 1)
    }

    /// Records the end of a run. False: the claim was lost meanwhile (another node
    /// took the tag over), and nothing was written.
    pub async fn finish_scheduled(
        &self,
        tag: &str,
        token: LeaseToken,
        end: &ScheduledEnd,
    ) -> StoreResult<bool> {
        let now = self.now();
        let outcome = end.outcome.as_str();
        // Output comes from task code: keep a bounded part of it.
        let output = super::run::bounded_text(end.output.clone(), super::run::MAX_ERROR_BYTES);
        let mut pooled = self.conn().await?;
        let mut conn = pooled.any();
        let n = on_conn!(&mut conn, c => {
            diesel::update(
                s::warren_scheduled
                    .filter(s::tag.eq(tag))
                    .filter(s::run_token.eq(token))
                    .filter(s::running.eq(true)),
            )
            .set((
                s::running.eq(false),
                s::run_owner.eq(None::<String>),
                s::run_until.eq(None::<i64>),
                s::last_finish.eq(now),
                s::last_outcome.eq(outcome),
                s::last_output.eq(output),
            ))
            .execute(c)
            .await?
        });
        Ok(n == 1)
    }

    /// Every scheduled tag's state, by tag.
    pub async fn list_scheduled(&self) -> StoreResult<Vec<ScheduledState>> {
        let mut pooled = self.conn().await?;
        let mut conn = pooled.any();
        Ok(on_conn!(&mut conn, c => {
            s::warren_scheduled
                .select(ScheduledState::as_select())
                .order(s::tag)
                .load(c)
                .await?
        }))
    }

    /// Asks for a run of `tag` as soon as possible ("run now"), even when disabled. A
    /// request made while it runs is served right after that run.
    pub async fn request_scheduled_run(&self, tag: &str) -> StoreResult<()> {
        let mut pooled = self.conn().await?;
        let mut conn = pooled.any();
        let n = on_conn!(&mut conn, c => {
            diesel::update(s::warren_scheduled.find(tag))
                .set(s::run_requested.eq(true))
                .execute(c)
                .await?
        });
        if n == 0 {
            return Err(StoreError::UnknownScheduled(tag.to_string()));
        }
        self.wake(super::signals::ANY_CLUSTER);
        Ok(())
    }
}
