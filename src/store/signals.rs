//! Wake-ups: "new work in cluster X" and "task N has a new outcome".
//!
//! On PostgreSQL they travel as `NOTIFY` from the writing transaction (so they are
//! delivered only if it commits, and reach every node); a listener task per store
//! forwards them into local channels. On SQLite, where every writer is in this
//! process, the store sends them itself right after its commits.

use super::{postgres, redact_url, StoreError, StoreResult};
use crate::task::TaskId;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
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
pub const ANY_TASK: TaskId = -1;

pub(crate) struct Signals {
    pub(crate) new_work: broadcast::Sender<String>,
    pub(crate) outcomes: broadcast::Sender<TaskId>,
    listener: OnceCell<()>,
    // Dropped with the store, which stops the listener task.
    _alive: watch::Sender<()>,
    alive: watch::Receiver<()>,
}

impl Default for Signals {
    fn default() -> Signals {
        let (alive_tx, alive_rx) = watch::channel(());
        Signals {
            new_work: broadcast::channel(1024).0,
            outcomes: broadcast::channel(4096).0,
            listener: OnceCell::new(),
            _alive: alive_tx,
            alive: alive_rx,
        }
    }
}

impl Signals {
    /// Starts the PostgreSQL listener once, and returns when it is listening, so no
    /// notification sent after this call is missed.
    pub(crate) async fn ensure_listener(&self, url: &str) -> StoreResult<()> {
        self.listener
            .get_or_try_init(|| async {
                let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
                tokio::spawn(listen(
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
                        message: "the notification listener stopped".into(),
                    })?
                    .map_err(|message| StoreError::Pool {
                        url: redact_url(url),
                        message,
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
    ready: tokio::sync::oneshot::Sender<Result<(), String>>,
) {
    let mut ready = Some(ready);
    let mut backoff = Duration::from_millis(100);
    loop {
        let session = async {
            let mut conn = postgres::dedicated(&url).await.map_err(|e| e.to_string())?;
            diesel::sql_query(format!("LISTEN {TASKS_CHANNEL}"))
                .execute(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            diesel::sql_query(format!("LISTEN {OUTCOMES_CHANNEL}"))
                .execute(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(conn)
        }
        .await;
        let mut conn = match session {
            Ok(conn) => conn,
            Err(message) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Err(message));
                    return;
                }
                tracing::warn!(error = %message, "notification listener cannot reconnect");
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
                        if let Ok(id) = n.payload.parse() {
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
    /// Delivers SQLite wake-ups after a commit.
    pub(crate) fn deliver(self, signals: &Signals) {
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
    notify(conn, pending, TASKS_CHANNEL, cluster.to_string()).await
}

/// Announces that task `id` has a new outcome (finished, failed, restarted).
pub(crate) async fn announce_outcome(
    conn: &mut super::AnyConn<'_>,
    pending: &mut Pending,
    id: TaskId,
) -> diesel::QueryResult<()> {
    notify(conn, pending, OUTCOMES_CHANNEL, id.to_string()).await
}

async fn notify(
    conn: &mut super::AnyConn<'_>,
    pending: &mut Pending,
    channel: &'static str,
    payload: String,
) -> diesel::QueryResult<()> {
    match conn {
        super::AnyConn::Postgres(c) => {
            PgNotify {
                channel,
                payload: &payload,
            }
            .execute(&mut **c)
            .await?;
        }
        super::AnyConn::Sqlite(_) => match channel {
            TASKS_CHANNEL => pending.clusters.push(payload),
            _ => pending.outcomes.extend(payload.parse::<TaskId>()),
        },
    }
    Ok(())
}

/// `SELECT pg_notify(channel, payload)`: a query fragment of its own rather than a
/// `sql_query`, so each connection prepares it once instead of on every resolution.
struct PgNotify<'a> {
    channel: &'a str,
    payload: &'a str,
}

impl QueryId for PgNotify<'_> {
    type QueryId = ();
    // No static id: the connection's statement cache keys it by its SQL text.
    const HAS_STATIC_QUERY_ID: bool = false;
}

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
