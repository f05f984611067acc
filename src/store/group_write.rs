//! Writes that share a statement and a commit.
//!
//! When many runners finish at once, a write each (a completion, a run's history
//! record) would be a commit each, and the commits, not the work, would bound the
//! throughput. A [`Grouping`] queues the writes that arrive while an earlier one is in
//! flight; when it lands they are written together, by one call of the grouping's
//! writer, in one commit. Every caller still waits until its own write has committed
//! before it learns the outcome, and a write the group could not take (the shared
//! statement failed) is written again alone, so that its caller gets its own error or
//! succeeds when another item caused the failure. A lone write is written at once, so
//! a quiet store pays no extra latency.
//!
//! A writer that locks task rows locks them in ascending id order, the order in which
//! bulk actions lock theirs, so that two groups, or a group and a bulk batch, do not
//! deadlock.
//!
//! The writes run on the process's I/O runtime (`postgres.rs`), so a caller that gives
//! up (its future is dropped) cannot strand the writes of others queued behind it.

use super::conn::PooledConn;
use super::postgres::io_runtime;
use super::{Store, StoreError, StoreResult};
use futures_util::future::BoxFuture;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use tokio::sync::{oneshot, Notify};

/// Writes a group of items on `conn` and commits, answering one reply per item, in
/// order.
pub(super) type WriteGroup<I, R> =
    for<'a> fn(&'a Store, &'a mut PooledConn, &'a [I]) -> BoxFuture<'a, StoreResult<Vec<R>>>;

/// A kind of write that is grouped: where the store keeps its queue, how a group is
/// written, and how large a group may grow.
pub(super) struct Grouping<I, R> {
    /// The store's queue for this kind of write.
    pub queue: fn(&Store) -> &GroupQueue<I, R>,
    /// Writes a group (one item is a group too).
    pub write: WriteGroup<I, R>,
    /// Most items written by one call of `write`.
    pub max_group: usize,
    /// What the items are, for the log line of a failed group ("completions").
    pub what: &'static str,
}

/// What the writer tells a waiting caller.
enum Written<R> {
    /// The item was written, with this reply.
    Done(R),
    /// The group's write failed; the caller writes its item alone.
    WriteAlone,
}

/// The items waiting for the next write, whether a writer runs, and counts of what
/// was written.
pub(super) struct GroupQueue<I, R> {
    state: Mutex<QueueState<I, R>>,
    /// Told when the writer stops with the queue empty.
    idle: Notify,
    groups: AtomicU64,
    items: AtomicU64,
}

impl<I, R> Default for GroupQueue<I, R> {
    fn default() -> Self {
        GroupQueue {
            state: Mutex::new(QueueState {
                waiting: Vec::new(),
                writing: false,
            }),
            idle: Notify::new(),
            groups: AtomicU64::new(0),
            items: AtomicU64::new(0),
        }
    }
}

struct QueueState<I, R> {
    waiting: Vec<(I, oneshot::Sender<Written<R>>)>,
    writing: bool,
}

/// How a kind of write was grouped: `items / groups` is the mean number of items that
/// shared a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupStats {
    /// Groups written, each one commit.
    pub groups: u64,
    /// Items those groups wrote (including any the write refused, such as a stale
    /// completion).
    pub items: u64,
}

impl<I, R> GroupQueue<I, R> {
    /// What this queue has written so far.
    pub(super) fn stats(&self) -> GroupStats {
        GroupStats {
            groups: self.groups.load(Ordering::Relaxed),
            items: self.items.load(Ordering::Relaxed),
        }
    }

    /// Waits until nothing is queued and no group is being written (a node that shuts
    /// down waits for writes its runners queued without waiting for them).
    pub(super) async fn idle(&self) {
        loop {
            let told = self.idle.notified();
            tokio::pin!(told);
            told.as_mut().enable();
            {
                let state = self.state.lock().expect("group queue lock");
                if !state.writing && state.waiting.is_empty() {
                    return;
                }
            }
            told.await;
        }
    }
}

impl<I: Clone + Send + Sync + 'static, R: Send + 'static> Grouping<I, R> {
    /// Writes `item`, sharing the commit with the items that arrive at the same time;
    /// answers once it has committed.
    ///
    /// The item is queued when this is called, not when the answer is first polled: a
    /// caller may go on with other work and collect the answer later, and an answer
    /// never collected still leaves the item written (unless its group fails: the
    /// caller writes it alone when it collects the answer).
    pub(super) fn submit(
        &'static self,
        store: &Store,
        item: I,
    ) -> impl Future<Output = StoreResult<R>> + Send + 'static {
        let (reply, written) = oneshot::channel();
        let start_writer = {
            let mut state = (self.queue)(store).state.lock().expect("group queue lock");
            state.waiting.push((item.clone(), reply));
            !std::mem::replace(&mut state.writing, true)
        };
        if start_writer {
            io_runtime().spawn(self.write_queued(store.clone()));
        }
        let store = store.clone();
        async move {
            match written.await {
                Ok(Written::Done(reply)) => Ok(reply),
                // The writer failed or was torn down: write this one alone. On the
                // heap: the common path above should not carry (and copy) its
                // database futures.
                Ok(Written::WriteAlone) | Err(_) => Box::pin(self.write_alone(&store, item)).await,
            }
        }
    }

    /// Writes `item` in a group of its own, on a connection of its own.
    async fn write_alone(&self, store: &Store, item: I) -> StoreResult<R> {
        let mut pooled = store.conn().await?;
        let mut replies = self.write_counted(store, &mut pooled, &[item]).await?;
        Ok(replies.remove(0))
    }

    /// Calls the writer and counts what it wrote; a writer that answers for the wrong
    /// number of items is a bug, reported as an error rather than trusted.
    async fn write_counted(
        &self,
        store: &Store,
        pooled: &mut PooledConn,
        items: &[I],
    ) -> StoreResult<Vec<R>> {
        let replies = (self.write)(store, pooled, items).await?;
        if replies.len() != items.len() {
            return Err(StoreError::Invalid {
                field: "grouped write",
                message: format!(
                    "a write of {} {} answered for {}",
                    items.len(),
                    self.what,
                    replies.len()
                ),
            });
        }
        let queue = (self.queue)(store);
        queue.groups.fetch_add(1, Ordering::Relaxed);
        queue.items.fetch_add(items.len() as u64, Ordering::Relaxed);
        Ok(replies)
    }

    /// The writer: takes a connection, then writes everything queued by then as one
    /// group, until the queue is empty. Items that arrive while it waits for the
    /// connection or the commit go into its next group.
    async fn write_queued(&'static self, store: Store) {
        let mut guard = WriterGuard {
            grouping: self,
            store,
            finished: false,
        };
        loop {
            let store = &guard.store;
            let connection = store.conn().await;
            let group: Vec<_> = {
                let mut state = (self.queue)(store).state.lock().expect("group queue lock");
                if state.waiting.is_empty() {
                    state.writing = false;
                    drop(state);
                    guard.finished = true;
                    (self.queue)(store).idle.notify_waiters();
                    return;
                }
                let n = state.waiting.len().min(self.max_group);
                state.waiting.drain(..n).collect()
            };
            let (items, senders): (Vec<_>, Vec<_>) = group.into_iter().unzip();
            let written = match connection {
                Ok(mut pooled) => self.write_counted(store, &mut pooled, &items).await,
                Err(e) => Err(e),
            };
            match written {
                Ok(replies) => {
                    for (reply, sender) in replies.into_iter().zip(senders) {
                        let _ = sender.send(Written::Done(reply));
                    }
                }
                Err(e) => {
                    tracing::warn!(
                        "a grouped write of {} {} failed ({e}); each is written alone",
                        items.len(),
                        self.what
                    );
                    for sender in senders {
                        let _ = sender.send(Written::WriteAlone);
                    }
                }
            }
        }
    }
}

/// Clears the queue if the writer ends without emptying it (it panicked), so no item is
/// left without a writer: the callers of those queued see their reply dropped and
/// write alone, and the next item starts a writer.
struct WriterGuard<I: 'static, R: 'static> {
    grouping: &'static Grouping<I, R>,
    store: Store,
    finished: bool,
}

impl<I, R> Drop for WriterGuard<I, R> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let queue = (self.grouping.queue)(&self.store);
        if let Ok(mut state) = queue.state.lock() {
            state.waiting.clear();
            state.writing = false;
        }
        queue.idle.notify_waiters();
    }
}
