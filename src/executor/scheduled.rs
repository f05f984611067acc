//! Next runs of scheduled tags: the sequences that read a tag, compute its next run
//! from its mask and zone, and write it (definition sync, claims of due runs,
//! enabling). The statements are in `store/scheduled.rs`.

use crate::cron::{CronMask, ZoneSpec};
use crate::store::scheduled::{
    claim_tag, due_tags, insert_definition, set_enabled, stored_definition, update_definition,
    DefinitionWrite, StoredDefinition, TagClaim,
};
use crate::store::{ScheduledRun, ScheduledSpec, ScheduledState, Store, StoreError, StoreResult};
use crate::task::Millis;

/// The next run of a tag with `mask` in `zone` strictly after `now`, the
/// `maintenance` zone shifted by `maintenance_offset` minutes. `None` when the tag has
/// no mask (it runs only by hand), or when the stored mask or zone is unreadable.
pub fn next_run(
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

/// What syncing one declared tag writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SyncAction {
    /// The tag is new: add it.
    Insert,
    /// Its mask or zone changed: store the new ones and a new next run.
    Update,
    /// Unchanged: its next run stands.
    Keep,
}

/// Decides what syncing a declared definition writes, given what is stored.
fn sync_action(stored: Option<&StoredDefinition>, declared: &StoredDefinition) -> SyncAction {
    match stored {
        None => SyncAction::Insert,
        Some(stored) if stored != declared => SyncAction::Update,
        Some(_) => SyncAction::Keep,
    }
}

/// The earliest instant at which one of `tags` becomes due: now when a "run now" waits,
/// its next run when enabled, the end of its run's claim while one runs (when a run now
/// waits or it is enabled). `None`: nothing is scheduled.
fn next_wakeup(states: &[ScheduledState], tags: &[String], now: Millis) -> Option<Millis> {
    states
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
        .min()
}

impl Store {
    /// The earliest instant at which one of `tags` becomes due (now, when a run-now is
    /// waiting), for the scheduler's timer. `None`: nothing is scheduled.
    pub async fn next_scheduled_wakeup(&self, tags: &[String]) -> StoreResult<Option<Millis>> {
        let now = self.now();
        let states = self.list_scheduled().await?;
        Ok(next_wakeup(&states, tags, now))
    }

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
                let declared = StoredDefinition {
                    mask: spec.mask.as_ref().map(|m| m.as_str().to_string()),
                    zone: spec.zone.to_string(),
                };
                let stored = stored_definition(conn, &spec.tag).await?;
                let write = DefinitionWrite {
                    tag: &spec.tag,
                    definition: &declared,
                    next_run: next_run(
                        declared.mask.as_deref(),
                        &declared.zone,
                        now,
                        maintenance_offset,
                    ),
                };
                match sync_action(stored.as_ref(), &declared) {
                    SyncAction::Insert => insert_definition(conn, &write).await?,
                    SyncAction::Update => update_definition(conn, &write).await?,
                    SyncAction::Keep => {}
                }
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
        let mut runs = Vec::new();
        for due in due_tags(&mut conn, tags, now).await? {
            let d = &due.definition;
            let claim = TagClaim {
                tag: &due.tag,
                token: due.token,
                owner,
                now,
                until: now + lease_ms,
                next_run: next_run(d.mask.as_deref(), &d.zone, now, maintenance_offset),
            };
            // Only the node whose update still sees the token it read wins the tick.
            if claim_tag(&mut conn, &claim).await? {
                runs.push(ScheduledRun {
                    token: due.token.next(),
                    tag: due.tag,
                    requested: due.requested,
                    started_at: now,
                });
            }
        }
        Ok(runs)
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
            let Some(d) = stored_definition(conn, tag).await? else {
                return Err(StoreError::UnknownScheduled(tag.to_string()));
            };
            let next = next_run(d.mask.as_deref(), &d.zone, now, maintenance_offset);
            set_enabled(conn, tag, enabled, next).await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn definition(mask: Option<&str>, zone: &str) -> StoredDefinition {
        StoredDefinition {
            mask: mask.map(str::to_string),
            zone: zone.to_string(),
        }
    }

    #[test]
    fn next_runs_follow_the_mask_zone_and_offset() {
        // 00:00 UTC on day 0.
        assert_eq!(next_run(Some("*/5 * * * *"), "UTC", 0, 0), Some(5 * MIN));
        assert_eq!(next_run(Some("0 1 * * *"), "UTC", 0, 0), Some(60 * MIN));
        // The maintenance zone shifts the mask's times by the offset: 01:00 + 0:30.
        assert_eq!(
            next_run(Some("0 1 * * *"), "maintenance", 0, 30),
            Some(90 * MIN)
        );
        assert_eq!(next_run(None, "UTC", 0, 0), None);
        assert_eq!(next_run(Some("not a mask"), "UTC", 0, 0), None);
        assert_eq!(next_run(Some("* * * * *"), "Nowhere/City", 0, 0), None);
    }

    fn state(tag: &str) -> ScheduledState {
        ScheduledState {
            tag: tag.into(),
            mask: Some("* * * * *".into()),
            zone: "UTC".into(),
            enabled: true,
            next_run: Some(10 * MIN),
            run_requested: false,
            running: false,
            run_owner: None,
            run_until: None,
            run_token: crate::task::LeaseToken(0),
            last_start: None,
            last_finish: None,
            last_outcome: None,
            last_output: None,
        }
    }

    #[test]
    fn the_scheduler_wakes_for_the_earliest_due_tag_it_runs() {
        let tags = vec!["a".to_string(), "b".to_string()];
        let mut later = state("b");
        later.next_run = Some(20 * MIN);
        let mut other = state("c");
        other.next_run = Some(MIN);
        assert_eq!(
            next_wakeup(&[state("a"), later.clone(), other], &tags, 0),
            Some(10 * MIN)
        );
        let mut requested = later.clone();
        requested.run_requested = true;
        assert_eq!(next_wakeup(&[state("a"), requested], &tags, 5), Some(5));
        let mut running = state("a");
        running.running = true;
        running.run_until = Some(30 * MIN);
        let mut disabled = later;
        disabled.enabled = false;
        assert_eq!(
            next_wakeup(&[running.clone(), disabled.clone()], &tags, 0),
            Some(30 * MIN)
        );
        running.enabled = false;
        assert_eq!(next_wakeup(&[running, disabled], &tags, 0), None);
    }

    #[test]
    fn sync_adds_new_tags_and_redefines_changed_ones_only() {
        let declared = definition(Some("* * * * *"), "UTC");
        assert_eq!(sync_action(None, &declared), SyncAction::Insert);
        assert_eq!(sync_action(Some(&declared), &declared), SyncAction::Keep);
        let other_mask = definition(Some("0 * * * *"), "UTC");
        assert_eq!(
            sync_action(Some(&other_mask), &declared),
            SyncAction::Update
        );
        let other_zone = definition(Some("* * * * *"), "Europe/Amsterdam");
        assert_eq!(
            sync_action(Some(&other_zone), &declared),
            SyncAction::Update
        );
    }
}
