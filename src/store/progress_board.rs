//! The progress of the runs of this node, kept in memory: what task code last reported
//! with `set-progress`, and which of it still has to be written to the database.
//!
//! Task code may report progress as often as it likes (a loop over a million rows may
//! report each one); only the latest value of a run is kept, and the writer
//! (`progress.rs`) takes what is due every so often. What is due depends on the backend:
//! - on PostgreSQL every value not yet written, while the run goes on (the write is a
//!   transaction of its own, outside the run's);
//! - on SQLite only the last value of a run that has ended: while a run is open its
//!   transaction may hold the database's only write lock, so its progress is served
//!   from here (the node's API reads it through [`ProgressBoard::live`]) until then.
//!
//! A run's entry is dropped once its run has ended and its last value is written.

use super::model::Progress;
use crate::task::{LeaseToken, TaskId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// When the writer writes a run's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WriteWhen {
    /// As it changes (PostgreSQL).
    WhileRunning,
    /// Once, after the run has ended (SQLite).
    AfterTheRun,
}

/// How many times the writer tries a value before it gives it up.
pub(super) const WRITE_TRIES: u8 = 3;

/// How a write of the due values went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WriteOutcome {
    /// They are in the database.
    Written,
    /// They are not: each is tried again (up to [`WRITE_TRIES`] times in all).
    Failed,
}

/// A run's progress as the writer writes it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ProgressWrite {
    pub task_id: TaskId,
    pub token: LeaseToken,
    pub progress: Progress,
}

/// The latest progress of one run.
#[derive(Debug)]
struct Entry {
    token: LeaseToken,
    progress: Progress,
    /// Not yet handed to the writer.
    unwritten: bool,
    /// Handed to the writer, which has not said how the write went.
    in_flight: bool,
    /// Failed writes of the current value.
    failed_writes: u8,
    /// The run has ended: drop the entry once its last value is written.
    ended: bool,
}

impl Entry {
    fn new(token: LeaseToken, progress: Progress) -> Entry {
        Entry {
            token,
            progress,
            unwritten: true,
            in_flight: false,
            failed_writes: 0,
            ended: false,
        }
    }

    /// Nothing of it is left to write.
    fn settled(&self) -> bool {
        !self.unwritten && !self.in_flight
    }
}

/// The progress of this node's runs, by task (see the module's documentation).
#[derive(Debug)]
pub(super) struct ProgressBoard {
    when: WriteWhen,
    entries: Mutex<Entries>,
    /// How many entries there are: runs that report no progress cost one load of this.
    count: AtomicUsize,
    /// Told when the writer stops (nothing is due).
    writer_stopped: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Entries {
    by_task: HashMap<TaskId, Entry>,
    /// A writer is at work (or has been asked for): nobody needs to start one.
    writer_busy: bool,
}

impl ProgressBoard {
    /// An empty board whose values are written as `when` says.
    pub fn new(when: WriteWhen) -> ProgressBoard {
        ProgressBoard {
            when,
            entries: Mutex::default(),
            count: AtomicUsize::new(0),
            writer_stopped: tokio::sync::Notify::new(),
        }
    }

    /// When this board's values are written.
    pub fn when(&self) -> WriteWhen {
        self.when
    }

    /// Waits until nothing is due for writing and no writer is at work.
    pub async fn idle(&self) {
        loop {
            let stopped = self.writer_stopped.notified();
            let mut stopped = std::pin::pin!(stopped);
            stopped.as_mut().enable();
            if !self.lock().writer_busy {
                return;
            }
            stopped.await;
        }
    }

    /// Keeps `progress` as the latest of the run of `task_id` holding `token` (a
    /// later run of the task replaces an earlier one's entry). Returns true when the
    /// caller must start the writer.
    pub fn report(&self, task_id: TaskId, token: LeaseToken, progress: Progress) -> bool {
        let mut entries = self.lock();
        match entries.by_task.get_mut(&task_id) {
            // A value of an earlier run that ended after this one began changes nothing.
            Some(entry) if entry.token > token => return false,
            Some(entry) => {
                // A write in flight of the previous value still reports back to it.
                let in_flight = entry.in_flight && entry.token == token;
                *entry = Entry {
                    in_flight,
                    ..Entry::new(token, progress)
                };
            }
            None => {
                entries.by_task.insert(task_id, Entry::new(token, progress));
                self.count.store(entries.by_task.len(), Ordering::Release);
            }
        }
        // On SQLite a report makes nothing due: only a run's end does.
        self.when == WriteWhen::WhileRunning && self.wants_writer(&mut entries)
    }

    /// Notes that the run of `task_id` holding `token` has ended: its last value is
    /// written (if it is not yet), then its entry is dropped. Returns true when the
    /// caller must start the writer.
    pub fn ended(&self, task_id: TaskId, token: LeaseToken) -> bool {
        if self.count.load(Ordering::Acquire) == 0 {
            return false;
        }
        let mut entries = self.lock();
        let Some(entry) = entries.by_task.get_mut(&task_id) else {
            return false;
        };
        if entry.token != token {
            return false;
        }
        entry.ended = true;
        if entry.settled() {
            entries.by_task.remove(&task_id);
            self.count.store(entries.by_task.len(), Ordering::Release);
            return false;
        }
        self.wants_writer(&mut entries)
    }

    /// The latest progress of a run of `task_id` this node runs (or ran and has not
    /// written the last value of yet), with the token of that run.
    pub fn live(&self, task_id: TaskId) -> Option<(LeaseToken, Progress)> {
        if self.count.load(Ordering::Acquire) == 0 {
            return None;
        }
        let entries = self.lock();
        entries
            .by_task
            .get(&task_id)
            .map(|entry| (entry.token, entry.progress.clone()))
    }

    /// The values due for writing, in ascending task id order (the order in which
    /// every grouped write takes task locks), marked as handed over. When nothing is
    /// due the writer is done: it stops, and the next report that needs one starts a
    /// new one.
    pub fn take_due(&self) -> Vec<ProgressWrite> {
        let mut entries = self.lock();
        let when = self.when;
        let mut due: Vec<ProgressWrite> = entries
            .by_task
            .iter_mut()
            .filter(|(_, e)| e.unwritten && (e.ended || when == WriteWhen::WhileRunning))
            .map(|(id, e)| {
                e.unwritten = false;
                e.in_flight = true;
                ProgressWrite {
                    task_id: *id,
                    token: e.token,
                    progress: e.progress.clone(),
                }
            })
            .collect();
        if due.is_empty() {
            entries.writer_busy = false;
            self.writer_stopped.notify_waiters();
        }
        due.sort_by_key(|w| w.task_id);
        due
    }

    /// Notes how the write of `written` (values [`ProgressBoard::take_due`] gave)
    /// went: a failed value with nothing newer is due again, until it has failed
    /// [`WRITE_TRIES`] times; entries of ended runs with nothing left to write are
    /// dropped.
    pub fn written(&self, written: &[ProgressWrite], outcome: WriteOutcome) {
        let mut entries = self.lock();
        for w in written {
            let Some(entry) = entries.by_task.get_mut(&w.task_id) else {
                continue;
            };
            if entry.token != w.token || !entry.in_flight {
                continue;
            }
            entry.in_flight = false;
            if outcome == WriteOutcome::Failed && !entry.unwritten {
                entry.failed_writes += 1;
                entry.unwritten = entry.failed_writes < WRITE_TRIES;
            }
            if entry.ended && entry.settled() {
                entries.by_task.remove(&w.task_id);
            }
        }
        self.count.store(entries.by_task.len(), Ordering::Release);
    }

    /// Notes that the writer stopped without saying how its last write went (it
    /// panicked): what it held is given up, and the next report or end starts a new
    /// writer.
    pub fn writer_abandoned(&self) {
        let mut entries = self.lock();
        for entry in entries.by_task.values_mut() {
            entry.in_flight = false;
        }
        entries.by_task.retain(|_, e| !(e.ended && e.settled()));
        self.count.store(entries.by_task.len(), Ordering::Release);
        entries.writer_busy = false;
        self.writer_stopped.notify_waiters();
    }

    /// How many runs the board holds.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Whether a writer must be started now: something is due and none is at work.
    fn wants_writer(&self, entries: &mut Entries) -> bool {
        if entries.writer_busy {
            return false;
        }
        let due = entries
            .by_task
            .values()
            .any(|e| e.unwritten && (e.ended || self.when == WriteWhen::WhileRunning));
        entries.writer_busy = due;
        due
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // The board holds no invariant a panic midway could break beyond one entry.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(fraction: f64, ms: i64) -> Progress {
        Progress::new(fraction, None, ms).unwrap()
    }

    const T1: TaskId = TaskId(1);
    const T2: TaskId = TaskId(2);
    const TOKEN: LeaseToken = LeaseToken(5);

    #[test]
    fn postgres_writes_the_latest_value_while_the_run_goes_on() {
        let board = ProgressBoard::new(WriteWhen::WhileRunning);
        assert!(
            board.report(T1, TOKEN, at(0.1, 1)),
            "the first report starts the writer"
        );
        assert!(
            !board.report(T1, TOKEN, at(0.2, 2)),
            "the writer is already asked for"
        );
        let due = board.take_due();
        assert_eq!(due.len(), 1);
        assert_eq!(
            due[0].progress.fraction, 0.2,
            "only the latest value is written"
        );
        assert!(board.take_due().is_empty(), "nothing new: the writer stops");
        assert!(
            board.report(T1, TOKEN, at(0.3, 3)),
            "a stopped writer is started again"
        );
        assert_eq!(board.live(T1).unwrap().1.fraction, 0.3);
    }

    #[test]
    fn sqlite_writes_only_the_last_value_once_the_run_ended() {
        let board = ProgressBoard::new(WriteWhen::AfterTheRun);
        assert!(
            !board.report(T1, TOKEN, at(0.5, 1)),
            "nothing is due while the run goes on"
        );
        assert!(board.take_due().is_empty());
        assert_eq!(
            board.live(T1).unwrap().1.fraction,
            0.5,
            "served from memory"
        );
        assert!(board.ended(T1, TOKEN), "the end makes the last value due");
        let due = board.take_due();
        assert_eq!(due.len(), 1);
        assert_eq!(
            board.live(T1).unwrap().1.fraction,
            0.5,
            "kept until written"
        );
        board.written(&due, WriteOutcome::Written);
        assert_eq!(board.len(), 0, "dropped once written");
        assert_eq!(board.live(T1), None);
    }

    #[test]
    fn an_ended_run_whose_value_is_written_is_dropped_at_once() {
        let board = ProgressBoard::new(WriteWhen::WhileRunning);
        board.report(T1, TOKEN, at(0.5, 1));
        board.written(&board.take_due(), WriteOutcome::Written);
        assert_eq!(board.len(), 1, "the run goes on");
        assert!(!board.ended(T1, TOKEN), "nothing left to write");
        assert_eq!(board.len(), 0);
    }

    #[test]
    fn a_value_reported_while_a_write_is_in_flight_is_written_next() {
        let board = ProgressBoard::new(WriteWhen::AfterTheRun);
        board.report(T1, TOKEN, at(0.5, 1));
        board.ended(T1, TOKEN);
        let first = board.take_due();
        // A later run of the task begins (and reports) before the write is done.
        let next = LeaseToken(6);
        board.report(T1, next, at(0.1, 2));
        board.written(&first, WriteOutcome::Written);
        assert_eq!(board.len(), 1, "the later run's entry stays");
        assert_eq!(
            board.live(T1).unwrap(),
            (next, at(0.1, 2)),
            "the later run's value"
        );
    }

    #[test]
    fn an_earlier_runs_late_report_or_end_changes_nothing() {
        let board = ProgressBoard::new(WriteWhen::WhileRunning);
        board.report(T1, LeaseToken(6), at(0.1, 1));
        assert!(!board.report(T1, TOKEN, at(0.9, 2)));
        assert!(!board.ended(T1, TOKEN));
        assert_eq!(board.live(T1).unwrap(), (LeaseToken(6), at(0.1, 1)));
    }

    #[test]
    fn a_value_in_flight_is_served_until_its_write_is_done() {
        let board = ProgressBoard::new(WriteWhen::WhileRunning);
        board.report(T1, TOKEN, at(0.5, 1));
        let due = board.take_due();
        assert!(
            !board.ended(T1, TOKEN),
            "the write in flight finishes the job"
        );
        assert_eq!(
            board.live(T1).unwrap().1.fraction,
            0.5,
            "not gone before it is stored"
        );
        board.written(&due, WriteOutcome::Written);
        assert_eq!(board.len(), 0);
    }

    #[test]
    fn a_failed_write_is_tried_again_then_given_up() {
        let board = ProgressBoard::new(WriteWhen::AfterTheRun);
        board.report(T1, TOKEN, at(0.5, 1));
        board.ended(T1, TOKEN);
        for _ in 1..WRITE_TRIES {
            let due = board.take_due();
            assert_eq!(due.len(), 1, "tried again");
            board.written(&due, WriteOutcome::Failed);
            assert_eq!(board.live(T1).unwrap().1.fraction, 0.5);
        }
        let last = board.take_due();
        assert_eq!(last.len(), 1);
        board.written(&last, WriteOutcome::Failed);
        assert!(
            board.take_due().is_empty(),
            "given up after {WRITE_TRIES} tries"
        );
        assert_eq!(board.len(), 0, "and forgotten");
    }

    #[test]
    fn a_newer_value_reported_during_a_failed_write_is_the_one_tried_next() {
        let board = ProgressBoard::new(WriteWhen::WhileRunning);
        board.report(T1, TOKEN, at(0.2, 1));
        let due = board.take_due();
        board.report(T1, TOKEN, at(0.3, 2));
        board.written(&due, WriteOutcome::Failed);
        let next = board.take_due();
        assert_eq!(next[0].progress.fraction, 0.3);
        board.written(&next, WriteOutcome::Written);
        assert!(board.take_due().is_empty());
    }

    #[test]
    fn an_abandoned_writer_frees_the_board_for_the_next_one() {
        let board = ProgressBoard::new(WriteWhen::AfterTheRun);
        board.report(T1, TOKEN, at(0.5, 1));
        assert!(board.ended(T1, TOKEN));
        let _lost = board.take_due();
        board.writer_abandoned();
        assert_eq!(board.len(), 0, "the ended run's value is given up");
        board.report(T2, TOKEN, at(0.1, 1));
        assert!(board.ended(T2, TOKEN), "a new writer is asked for");
    }

    #[test]
    fn due_values_come_in_ascending_task_order() {
        let board = ProgressBoard::new(WriteWhen::WhileRunning);
        for id in [9, 3, 7, 1] {
            board.report(TaskId(id), TOKEN, at(0.5, 1));
        }
        let ids: Vec<i64> = board.take_due().iter().map(|w| w.task_id.0).collect();
        assert_eq!(ids, [1, 3, 7, 9]);
        assert_eq!(board.live(T2), None);
    }
}
