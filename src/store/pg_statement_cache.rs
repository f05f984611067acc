//! How many statements a PostgreSQL connection keeps prepared, so that task SQL can be
//! prepared once and reused without letting task code fill the server's memory.
//!
//! A statement of task code prepared on every run costs a round trip and a parse and
//! plan on the server each time; prepared once per connection, the next runs send
//! only its parameters. But the connection keeps every statement it prepared, on both
//! ends, for its whole life, and task code may send any number of different texts. So
//! each connection counts what it prepared (diesel reports each statement it adds to
//! its cache to the connection's instrumentation), and task statements are prepared
//! for reuse only while that count is under [`MAX_PREPARED_STATEMENTS`]; past it they are sent as
//! before, prepared for one use.

use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel_async::{AsyncConnection, AsyncPgConnection};

/// Most statements a connection prepares for reuse (Warren's own, a few dozen,
/// included).
pub const MAX_PREPARED_STATEMENTS: usize = 500;

/// The connection's instrumentation: counts the statements it prepared for reuse.
#[derive(Debug, Default)]
pub(super) struct PreparedCount {
    prepared: usize,
}

impl Instrumentation for PreparedCount {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::CacheQuery { .. } = event {
            self.prepared += 1;
        }
    }
}

/// Starts counting on a new connection.
pub(super) fn count_prepared(c: &mut AsyncPgConnection) {
    c.set_instrumentation(PreparedCount::default());
}

/// The longest task statement prepared for reuse (4 KiB of text): with
/// [`MAX_PREPARED_STATEMENTS`], what a connection keeps stays within a few megabytes.
pub const MAX_PREPARED_TEXT: usize = 4 << 10;

/// Whether task statement `sql` may be prepared for reuse on `c`. False on a
/// connection that does not count (none should exist): better one round trip more
/// than an unbounded cache. Called between statements only: diesel-async lends the
/// instrumentation to each statement in flight, and refuses access meanwhile.
pub(super) fn may_prepare(c: &mut AsyncPgConnection, sql: &str) -> bool {
    sql.len() <= MAX_PREPARED_TEXT
        && c.instrumentation()
            .downcast_ref::<PreparedCount>()
            .is_some_and(|count| count.prepared < MAX_PREPARED_STATEMENTS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_statements_added_to_the_cache_count() {
        let mut count = PreparedCount::default();
        count.on_connection_event(InstrumentationEvent::cache_query("SELECT 1"));
        count.on_connection_event(InstrumentationEvent::start_query(
            &diesel::connection::StrQueryHelper::new("SELECT 1"),
        ));
        assert_eq!(count.prepared, 1);
    }
}
