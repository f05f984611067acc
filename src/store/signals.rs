//! Wake-ups: "new work in cluster X" and "task N has a new outcome".
//!
//! On PostgreSQL they travel as `NOTIFY` from the writing transaction (so they are
//! delivered only if it commits, and reach every node); a listener task per store
//! forwards them into local channels. On SQLite the store sends them itself right
//! after its commits: into this process's channels, and as a datagram to every other
//! process that has the file open (`sqlite_wake.rs`), whose receiver forwards them
//! into its channels.

use super::conn::on_conn;
use super::dialect::{Announce, Dialect};
use super::{postgres, redact_url, ConnectError, StoreError, StoreResult};
use crate::task::TaskId;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment};
use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;
use futures_util::StreamExt;
use std::time::Duration;
use tokio::sync::{broadcast, watch, OnceCell};

/// PostgreSQL channel for new or newly due work; the payload is the cluster.
pub(crate) const TASKS_CHANNEL: &str = "warren_tasks";
/// PostgreSQL channel for changed task outcomes; the payload is the task id.
pub(crate) const OUTCOMES_CHANNEL: &str = "warren_outcomes";
/// Cluster name meaning "every cluster": sent after a reconnect, when notifications
/// may have been missed.
pub const ANY_CLUSTER: &str = "*";
/// Task id meaning "any task": sent after a reconnect.
pub const ANY_TASK: TaskId = TaskId(-1);

pub(crate) struct Signals {
    pub(crate) new_work: broadcast::Sender<String>,
    pub(crate) outcomes: broadcast::Sender<TaskId>,
    /// This process's wake-up socket for a SQLite file, reaching the other processes
    /// that have it open; `None` on PostgreSQL, and when it could not be bound.
    #[cfg(unix)]
    wake: Option<super::sqlite_wake::WakeSocket>,
    listener: OnceCell<()>,
    // Dropped with the store, which stops the listener task.
    _alive: watch::Sender<()>,
    alive: watch::Receiver<()>,
}

impl Signals {
    /// Closes this process's wake-up socket for the SQLite file (see
    /// [`super::Store::close_wakeups`]).
    pub(crate) fn close_wakeups(&self) {
        #[cfg(unix)]
        if let Some(wake) = &self.wake {
            wake.close();
        }
    }
}

impl Default for Signals {
    fn default() -> Signals {
        let (alive_tx, alive_rx) = watch::channel(());
        Signals {
            new_work: broadcast::channel(1024).0,
            outcomes: broadcast::channel(4096).0,
            #[cfg(unix)]
            wake: None,
            listener: OnceCell::new(),
            _alive: alive_tx,
            alive: alive_rx,
        }
    }
}

/// The wake-ups of a SQLite file, shared by every store of this process that has it
/// open: work scheduled through one store wakes the queue of another (a test, a
/// benchmark or an application that opens the file twice). Other processes reach them
/// through the file's wake-up socket (on Unix; `sqlite_wake.rs`), one per process.
///
/// Why a process-wide registry: SQLite has no notifications, so a commit can wake only
/// what its process knows of. Stores do not know of each other, so the file (its
/// canonical path) is the only key they share. The registry keeps weak references: the
/// channels and the socket of a file go away with its last store.
pub(crate) fn for_sqlite_file(path: &std::path::Path) -> std::sync::Arc<Signals> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, Weak};
    static FILES: Mutex<Option<HashMap<std::path::PathBuf, Weak<Signals>>>> = Mutex::new(None);
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut files = FILES.lock().unwrap_or_else(|p| p.into_inner());
    let files = files.get_or_insert_with(HashMap::new);
    files.retain(|_, signals| signals.strong_count() > 0);
    if let Some(signals) = files.get(&key).and_then(Weak::upgrade) {
        return signals;
    }
    #[allow(unused_mut)] // only Unix has wake-up sockets
    let mut signals = Signals::default();
    // A real file only: another process cannot open an in-memory database.
    #[cfg(unix)]
    if key.is_file() {
        signals.wake = super::sqlite_wake::WakeSocket::open(
            &key,
            signals.new_work.clone(),
            signals.outcomes.clone(),
        );
    }
    let signals = Arc::new(signals);
    files.insert(key, Arc::downgrade(&signals));
    signals
}

impl Signals {
    /// Starts the PostgreSQL listener once, and returns when it is listening, so no
    /// notification sent after this call is missed.
    pub(crate) async fn ensure_listener(&self, url: &str) -> StoreResult<()> {
        self.listener
            .get_or_try_init(|| async {
                let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
                // On the PostgreSQL I/O runtime: a busy thread of the caller's must
                // not delay wake-ups.
                postgres::io_runtime().spawn(listen(
                    url.to_string(),
                    self.new_work.clone(),
                    self.outcomes.clone(),
                    self.alive.clone(),
                    ready_tx,
                ));
                ready_rx
                    .await
                    .map_err(|_| StoreError::Pool {
                        url: redact_url(url),
                        source: ConnectError::ListenerStopped,
                    })?
                    .map_err(|source| StoreError::Pool {
                        url: redact_url(url),
                        source,
                    })
            })
            .await
            .map(|_| ())
    }
}

async fn listen(
    url: String,
    new_work: broadcast::Sender<String>,
    outcomes: broadcast::Sender<TaskId>,
    mut alive: watch::Receiver<()>,
    ready: tokio::sync::oneshot::Sender<Result<(), ConnectError>>,
) {
    let mut ready = Some(ready);
    let mut backoff = Duration::from_millis(100);
    loop {
        let session = async {
            let mut conn = postgres::dedicated(&url).await?;
            diesel::sql_query(format!("LISTEN {TASKS_CHANNEL}"))
                .execute(&mut conn)
                .await?;
            diesel::sql_query(format!("LISTEN {OUTCOMES_CHANNEL}"))
                .execute(&mut conn)
                .await?;
            Ok::<_, ConnectError>(conn)
        }
        .await;
        let mut conn = match session {
            Ok(conn) => conn,
            Err(error) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Err(error));
                    return;
                }
                tracing::warn!(%error, "notification listener cannot reconnect");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = alive.changed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        match ready.take() {
            Some(ready) => {
                let _ = ready.send(Ok(()));
            }
            None => {
                // Notifications may have been lost while disconnected: wake everyone.
                let _ = new_work.send(ANY_CLUSTER.to_string());
                let _ = outcomes.send(ANY_TASK);
            }
        }
        let mut stream = std::pin::pin!(conn.notifications_stream());
        loop {
            tokio::select! {
                item = stream.next() => match item {
                    Some(Ok(n)) if n.channel == TASKS_CHANNEL => {
                        let _ = new_work.send(n.payload);
                    }
                    Some(Ok(n)) if n.channel == OUTCOMES_CHANNEL => {
                        if let Ok(id) = n.payload.parse::<TaskId>() {
                            let _ = outcomes.send(id);
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "notification listener lost its connection");
                        break;
                    }
                    None => break,
                },
                _ = alive.changed() => return,
            }
        }
    }
}

/// Sends the PostgreSQL notification (delivered when the surrounding transaction
/// commits) or records it for SQLite, where the store sends it after commit.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    pub(crate) clusters: Vec<String>,
    pub(crate) outcomes: Vec<TaskId>,
}

impl Pending {
    /// Delivers SQLite wake-ups after a commit: to the other processes that have the
    /// file open, and to this one.
    pub(crate) fn deliver(self, signals: &Signals) {
        #[cfg(unix)]
        if let Some(wake) = &signals.wake {
            wake.send(&self);
        }
        for c in self.clusters {
            let _ = signals.new_work.send(c);
        }
        for id in self.outcomes {
            let _ = signals.outcomes.send(id);
        }
    }
}

/// Announces new or newly due work in `cluster`: a `NOTIFY` in the transaction on
/// PostgreSQL, a wake-up queued for after the commit on SQLite.
pub(crate) async fn announce_work(
    conn: &mut super::AnyConn<'_>,
    pending: &mut Pending,
    cluster: &str,
) -> diesel::QueryResult<()> {
    on_conn!(conn, c => Dialect::announce(c, pending, Announce::Work { cluster }).await)
}

/// Announces that task `id` has a new outcome (finished, failed, restarted). Call it
/// after the statement that wrote the outcome, in the same transaction.
///
/// On PostgreSQL the NOTIFY goes out only when someone waits for the task (its
/// `waited` flag, set by [`super::Store::wait`]): a NOTIFY serialises every committing
/// transaction that sent one, which would cap the resolutions per second of the
/// whole database. The flag cannot be missed: a waiter sets it with an UPDATE of the
/// task's row, which either commits before the resolution's own UPDATE (that then
/// sees it) or waits for the resolution to commit (and the waiter then sees the
/// outcome itself).
pub(crate) async fn announce_outcome(
    conn: &mut super::AnyConn<'_>,
    pending: &mut Pending,
    id: TaskId,
) -> diesel::QueryResult<()> {
    on_conn!(conn, c => Dialect::announce(c, pending, Announce::Outcome { id }).await)
}

/// Announces task `id`'s new outcome when the statement that wrote it returned the
/// task's `waited` flag: on PostgreSQL a NOTIFY only if `waited`, with no statement
/// otherwise. The flag is as fresh as [`announce_outcome`]'s look: a waiter's UPDATE
/// of the same row either committed before the outcome's UPDATE (which then returns
/// true) or waits for it and then reads the outcome itself.
pub(crate) async fn announce_outcome_waited(
    conn: &mut super::AnyConn<'_>,
    pending: &mut Pending,
    id: TaskId,
    waited: bool,
) -> diesel::QueryResult<()> {
    on_conn!(conn, c => Dialect::announce(c, pending, Announce::OutcomeWaited { id, waited }).await)
}

/// The NOTIFY of task `id`'s outcome, for its waiters. Unless `known_waited`, it looks
/// at the task's `waited` flag itself: `SELECT pg_notify('warren_outcomes', id::text)
/// FROM warren_tasks WHERE id = $1 AND waited`; otherwise it is sent as is.
pub(super) struct PgNotifyOutcome {
    pub(super) id: TaskId,
    /// The caller already knows someone waits (the outcome's UPDATE returned the flag).
    pub(super) known_waited: bool,
}

super::pg_statement!(PgNotifyOutcome);

impl QueryFragment<Pg> for PgNotifyOutcome {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> diesel::QueryResult<()> {
        out.push_sql("SELECT pg_notify('");
        out.push_sql(OUTCOMES_CHANNEL);
        if self.known_waited {
            out.push_sql("', ");
            out.push_bind_param::<diesel::sql_types::BigInt, _>(&self.id)?;
            out.push_sql("::text)");
        } else {
            out.push_sql("', id::text) FROM warren_tasks WHERE id = ");
            out.push_bind_param::<diesel::sql_types::BigInt, _>(&self.id)?;
            out.push_sql(" AND waited");
        }
        Ok(())
    }
}

/// `SELECT pg_notify(channel, payload)`: a query fragment of its own rather than a
/// `sql_query`, so each connection prepares it once instead of on every resolution.
pub(super) struct PgNotify<'a> {
    pub(super) channel: &'a str,
    pub(super) payload: &'a str,
}

super::pg_statement!(PgNotify<'_>);

impl QueryFragment<Pg> for PgNotify<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> diesel::QueryResult<()> {
        out.push_sql("SELECT pg_notify(");
        out.push_bind_param::<Text, _>(self.channel)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(self.payload)?;
        out.push_sql(")");
        Ok(())
    }
}
