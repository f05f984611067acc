//! State of scheduled (`<task>`) tags, shared by every node: next run, the running
//! flag under a lease, the last outcome, enable/disable and "run now".
//!
//! Each tick runs once across all nodes: a node claims a due tag with a conditional
//! update on its run token, and only one update can win. The next run is computed
//! from the moment of the claim, so ticks missed while every node was down (or while
//! the previous run was still going) coalesce into one run.

use super::conn::on_conn;
use super::schema::warren_scheduled::dsl as s;
use super::{Store, StoreError, StoreResult};
use crate::cron::{CronMask, ZoneSpec};
use crate::task::Millis;
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
    pub run_token: i64,
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
    pub token: i64,
    /// Whether it was triggered by hand rather than by its mask.
    pub requested: bool,
    /// When the run was claimed.
    pub started_at: Millis,
}

fn next_after(
    mask: Option<&str>,
    zone: &str,
    now: Millis,
    maintenance_offset: u32,
) -> Option<Millis> {
    let mask: CronMask = mask?.parse().ok()?;
    let zone = ZoneSpec::parse(zone).ok()?.resolve(maintenance_offset);
    mask.next_after(crate::clock::to_datetime(now), &zone)
        .map(|t| t.timestamp_millis())
}

impl Store {
    /// Makes the stored tags match the module definitions: new tags are added with their
    /// next run; a tag whose mask or zone changed gets a new next run. Tags no longer
    /// declared are left alone (another node may still declare them).
    pub async fn sync_scheduled(
        &self,
        specs: &[ScheduledSpec],
        maintenance_offset: u32,
    ) -> StoreResult<()> {
        let now = self.now();
        self.in_transaction(async |conn, _| {
            for spec in specs {
                let mask = spec.mask.as_ref().map(|m| m.as_str().to_string());
                let zone = spec.zone.to_string();
                let next = next_after(mask.as_deref(), &zone, now, maintenance_offset);
                let current: Option<(Option<String>, String)> = on_conn!(conn, c => {
                    s::warren_scheduled
                        .select((s::mask, s::zone))
                        .find(&spec.tag)
                        .first(c)
                        .await
                        .optional()?
                });
                match current {
                    None => on_conn!(conn, c => {
                        diesel::insert_into(s::warren_scheduled)
                            .values((
                                s::tag.eq(&spec.tag),
                                s::mask.eq(&mask),
                                s::zone.eq(&zone),
                                s::next_run.eq(next),
                            ))
                            .execute(c)
                            .await?
                    }),
                    Some((old_mask, old_zone)) if old_mask != mask || old_zone != zone => {
                        on_conn!(conn, c => {
                            diesel::update(s::warren_scheduled.find(&spec.tag))
                                .set((s::mask.eq(&mask), s::zone.eq(&zone), s::next_run.eq(next)))
                                .execute(c)
                                .await?
                        })
                    }
                    Some(_) => 0,
                };
            }
            Ok(())
        })
        .await
    }

    /// Claims every due run among `tags` for `owner`: enabled tags whose next run has
    /// come, and tags with a pending "run now", that are not running (or whose run's
    /// claim expired). Each claimed run gets a lease of `lease_ms`.
    pub async fn claim_due_scheduled(
        &self,
        owner: &str,
        tags: &[String],
        lease_ms: i64,
        maintenance_offset: u32,
    ) -> StoreResult<Vec<ScheduledRun>> {
        let now = self.now();
        let mut pooled = self.conn().await?;
        let mut conn = pooled.any();
        let due: Vec<(String, Option<String>, String, i64, bool)> = on_conn!(&mut conn, c => {
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
                .order(s::tag)
                .load(c)
                .await?
        });
        let mut runs = Vec::new();
        for (tag, mask, zone, token, requested) in due {
            let next = next_after(mask.as_deref(), &zone, now, maintenance_offset);
            // Only the node whose update still sees the token it read wins the tick.
            let won = on_conn!(&mut conn, c => {
                diesel::update(
                    s::warren_scheduled
                        .filter(s::tag.eq(&tag))
                        .filter(s::run_token.eq(token)),
                )
                .set((
                    s::running.eq(true),
                    s::run_owner.eq(owner),
                    s::run_until.eq(now + lease_ms),
                    s::run_token.eq(token + 1),
                    s::last_start.eq(now),
                    s::next_run.eq(next),
                    s::run_requested.eq(false),
                ))
                .execute(c)
                .await?
            });
            if won == 1 {
                runs.push(ScheduledRun {
                    tag,
                    token: token + 1,
                    requested,
                    started_at: now,
                });
            }
        }
        Ok(runs)
    }

    /// Extends the claim on a running scheduled task. False: the claim was lost.
    pub async fn renew_scheduled(&self, tag: &str, token: i64, lease_ms: i64) -> StoreResult<bool> {
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
        token: i64,
        outcome: &str,
        output: &str,
    ) -> StoreResult<bool> {
        let now = self.now();
        // Output comes from task code: keep a bounded part of it.
        let output = super::run::bounded_text(output.to_string(), super::run::MAX_ERROR_BYTES);
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

    /// Enables or disables a tag. Enabling computes the next run from now, so runs
    /// missed while disabled are not made up.
    pub async fn set_scheduled_enabled(
        &self,
        tag: &str,
        enabled: bool,
        maintenance_offset: u32,
    ) -> StoreResult<()> {
        let now = self.now();
        self.in_transaction(async |conn, _| {
            let row: Option<(Option<String>, String)> = on_conn!(conn, c => {
                s::warren_scheduled
                    .select((s::mask, s::zone))
                    .find(tag)
                    .first(c)
                    .await
                    .optional()?
            });
            let Some((mask, zone)) = row else {
                return Err(StoreError::UnknownScheduled(tag.to_string()));
            };
            let next = next_after(mask.as_deref(), &zone, now, maintenance_offset);
            on_conn!(conn, c => {
                diesel::update(s::warren_scheduled.find(tag))
                    .set((s::enabled.eq(enabled), s::next_run.eq(next)))
                    .execute(c)
                    .await?
            });
            Ok(())
        })
        .await
    }

    /// The earliest instant at which one of `tags` becomes due (now, when a run-now is
    /// waiting), for the scheduler's timer. `None`: nothing is scheduled.
    pub async fn next_scheduled_wakeup(&self, tags: &[String]) -> StoreResult<Option<Millis>> {
        let now = self.now();
        let states = self.list_scheduled().await?;
        Ok(states
            .iter()
            .filter(|st| tags.contains(&st.tag))
            .filter_map(|st| {
                if st.running {
                    st.run_until.filter(|_| st.run_requested || st.enabled)
                } else if st.run_requested {
                    Some(now)
                } else if st.enabled {
                    st.next_run
                } else {
                    None
                }
            })
            .min())
    }
}
