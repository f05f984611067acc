//! SQLite's C interface, where diesel offers none: the guard every pooled connection
//! carries, and the runner of task SQL.
//!
//! Task code's SQL must not end the run's transaction, reach files, change the
//! connection for later users, touch Warren's own tables, or outlive a kill. SQLite's
//! own machinery enforces that, not text matching:
//! - an **authorizer** (`sqlite3_set_authorizer`), active only while a task statement
//!   is prepared, refuses transaction control, `ATTACH`/`DETACH` (and so `VACUUM
//!   INTO`), pragmas other than a short read-only list, triggers and virtual tables, and
//!   any access to a `warren_*` table; Warren's own statements on the same connection
//!   are not affected;
//! - `SQLITE_LIMIT_ATTACHED = 0` and `SQLITE_DBCONFIG_DEFENSIVE` on every connection;
//! - a **progress handler** and a **busy handler** that give up when the run is
//!   killed or times out, so neither a long query nor a wait for the write lock keeps
//!   a runner;
//! - task statements are prepared here, one per call (text after the first statement
//!   is an error), outside diesel's statement cache.
//!
//! Each connection's guard is created by an auto-extension when the connection is
//! opened through [`open`]: SQLite calls it with the new connection's handle, which
//! diesel does not expose. The extension does nothing for connections opened
//! elsewhere in the process.
// Unsafe code is allowed here (and denied elsewhere, see `lib.rs`): SQLite's C
// interface is the only way to the authorizer, progress and busy handlers this module
// installs; every unsafe block says why it is sound.
#![allow(unsafe_code)]

use super::dynamic::SqlParam;
use libsqlite3_sys as ffi;
use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

/// Per-connection state shared between Warren and SQLite's callbacks.
pub struct SqliteGuard {
    /// The connection's handle; only used by code that holds the connection.
    db: *mut ffi::sqlite3,
    /// Set while a task statement is prepared or run: the authorizer's policy applies.
    task_mode: AtomicBool,
    /// Set to stop the statement running now (a kill or a timeout).
    cancel: AtomicBool,
    /// Set when task SQL left state on the connection (a temporary object).
    tainted: AtomicBool,
    /// Why the authorizer refused the last statement.
    denial: Mutex<Option<String>>,
    /// How long to wait for the write lock, and since when the current wait runs.
    busy_timeout: Mutex<(Duration, Option<Instant>)>,
}

// SAFETY: `db` is only dereferenced by SQLite calls made while the connection is held
// (inside its blocking closure); the other fields are thread-safe.
unsafe impl Send for SqliteGuard {}
unsafe impl Sync for SqliteGuard {}

impl std::fmt::Debug for SqliteGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteGuard")
            .field("tainted", &self.tainted.load(Ordering::Relaxed))
            .finish()
    }
}

impl SqliteGuard {
    /// Stops the task statement running on this connection (within a thousand
    /// virtual-machine steps, or at the next wait for the lock).
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    /// Whether task SQL left state on the connection that outlives the run.
    pub fn is_tainted(&self) -> bool {
        self.tainted.load(Ordering::SeqCst)
    }

    fn deny(&self, reason: String) -> c_int {
        *self.denial.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
        ffi::SQLITE_DENY
    }
}

// Why thread-locals: SQLite calls the auto-extension with the new connection's handle
// and nothing else (no user data), on the thread that opens the connection, so that
// thread is where `open` finds the guard it created (`OPENED`). And diesel runs a
// connection's work in a closure that receives only the diesel connection, not the
// guard, so the connection's runner makes its guard current on the blocking thread for
// the length of each piece of work (`CURRENT`). Both are set and cleared around one
// call; nothing of one connection is left on a thread for the next.
thread_local! {
    /// The guard of the connection being opened on this thread, once SQLite has
    /// called the auto-extension for it.
    static OPENED: RefCell<Option<Option<Arc<SqliteGuard>>>> = const { RefCell::new(None) };
    /// The guard of the connection whose work runs on this thread now (set by the
    /// connection's blocking runner for the length of each piece of work).
    static CURRENT: RefCell<Option<Arc<SqliteGuard>>> = const { RefCell::new(None) };
}

/// Runs `work` with `guard` as the current connection's guard on this thread.
pub(super) fn with_current<R>(guard: Option<&Arc<SqliteGuard>>, work: impl FnOnce() -> R) -> R {
    let previous = CURRENT.with(|c| c.replace(guard.cloned()));
    let result = work();
    CURRENT.with(|c| *c.borrow_mut() = previous);
    result
}

/// The guard of the connection whose work runs on this thread.
pub(super) fn current() -> Option<Arc<SqliteGuard>> {
    CURRENT.with(|c| c.borrow().clone())
}

const CLIENT_DATA_NAME: &CStr = c"warren_guard";

/// Opens a connection with its guard installed.
pub(super) fn open(
    path: &str,
) -> diesel::ConnectionResult<(diesel::SqliteConnection, Arc<SqliteGuard>)> {
    use diesel::Connection;
    // Why process-wide: SQLite's auto-extensions are process-wide by design (its C
    // interface has no per-connection hook at open), so the registration is done once.
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // SAFETY: registers a function with the right signature; SQLite keeps it for
        // the life of the process.
        unsafe {
            ffi::sqlite3_auto_extension(Some(on_open));
        }
    });
    OPENED.with(|o| *o.borrow_mut() = Some(None));
    let conn = diesel::SqliteConnection::establish(path);
    let guard = OPENED.with(|o| o.borrow_mut().take()).flatten();
    let conn = conn?;
    let guard = guard.ok_or_else(|| {
        diesel::ConnectionError::BadConnection(
            "SQLite did not run Warren's connection guard".into(),
        )
    })?;
    Ok((conn, guard))
}

impl SqliteGuard {
    /// Makes waits for the write lock last at most `timeout` and end early when the
    /// statement is cancelled. Replaces `PRAGMA busy_timeout`: call it after pragmas.
    pub(super) fn install_busy_handler(
        &self,
        _held: &mut diesel::SqliteConnection,
        timeout: Duration,
    ) {
        *self.busy_timeout.lock().unwrap_or_else(|e| e.into_inner()) = (timeout, None);
        // SAFETY: the connection is held by the caller; the guard outlives it (it is
        // freed by the connection's client-data destructor).
        unsafe {
            ffi::sqlite3_busy_handler(self.db, Some(on_busy), self as *const _ as *mut c_void);
        }
    }
}

/// Called by SQLite for every connection opened in the process; installs the guard
/// on those opened through [`open`].
unsafe extern "C" fn on_open(
    db: *mut ffi::sqlite3,
    _error: *mut *mut c_char,
    _api: *const ffi::sqlite3_api_routines,
) -> c_int {
    let armed = OPENED.with(|o| o.borrow().is_some());
    if !armed {
        return ffi::SQLITE_OK;
    }
    let guard = Arc::new(SqliteGuard {
        db,
        task_mode: AtomicBool::new(false),
        cancel: AtomicBool::new(false),
        tainted: AtomicBool::new(false),
        denial: Mutex::new(None),
        busy_timeout: Mutex::new((Duration::from_secs(30), None)),
    });
    let user = Arc::into_raw(guard.clone()) as *mut c_void;
    // SAFETY: `db` is the connection being opened; `user` stays valid until SQLite
    // calls `release_guard` when the connection closes.
    unsafe {
        ffi::sqlite3_limit(db, ffi::SQLITE_LIMIT_ATTACHED, 0);
        ffi::sqlite3_db_config(
            db,
            ffi::SQLITE_DBCONFIG_DEFENSIVE,
            1 as c_int,
            std::ptr::null_mut::<c_int>(),
        );
        ffi::sqlite3_set_authorizer(db, Some(authorize), user);
        ffi::sqlite3_progress_handler(db, 1000, Some(on_progress), user);
        ffi::sqlite3_set_clientdata(db, CLIENT_DATA_NAME.as_ptr(), user, Some(release_guard));
    }
    OPENED.with(|o| *o.borrow_mut() = Some(Some(guard)));
    ffi::SQLITE_OK
}

unsafe extern "C" fn release_guard(user: *mut c_void) {
    // SAFETY: `user` came from `Arc::into_raw` in `on_open`, released once here.
    drop(unsafe { Arc::from_raw(user as *const SqliteGuard) });
}

unsafe fn guard_of<'a>(user: *mut c_void) -> &'a SqliteGuard {
    // SAFETY: SQLite passes back the pointer registered in `on_open`, alive while the
    // connection is open.
    unsafe { &*(user as *const SqliteGuard) }
}

unsafe extern "C" fn on_progress(user: *mut c_void) -> c_int {
    let guard = unsafe { guard_of(user) };
    c_int::from(guard.cancel.load(Ordering::Relaxed))
}

unsafe extern "C" fn on_busy(user: *mut c_void, attempt: c_int) -> c_int {
    let guard = unsafe { guard_of(user) };
    if guard.cancel.load(Ordering::SeqCst) {
        return 0;
    }
    let now = Instant::now();
    let mut busy = guard.busy_timeout.lock().unwrap_or_else(|e| e.into_inner());
    if attempt == 0 || busy.1.is_none() {
        busy.1 = Some(now);
    }
    let (timeout, since) = (busy.0, busy.1.unwrap_or(now));
    drop(busy);
    if now.duration_since(since) >= timeout {
        return 0;
    }
    // Short waits first (the lock is usually held for a commit), never longer than
    // 20 ms, so a kill is noticed quickly.
    let wait =
        Duration::from_millis(1u64 << attempt.clamp(0, 4) as u32).min(Duration::from_millis(20));
    std::thread::sleep(wait);
    1
}

/// Pragmas task SQL may run: they only read the schema.
const READ_ONLY_PRAGMAS: &[&str] = &[
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
];

unsafe fn text<'a>(p: *const c_char) -> &'a str {
    if p.is_null() {
        ""
    } else {
        // SAFETY: SQLite passes NUL-terminated UTF-8 names.
        unsafe { CStr::from_ptr(p) }.to_str().unwrap_or("")
    }
}

fn is_warren_name(name: &str) -> bool {
    name.len() >= 7 && name[..7].eq_ignore_ascii_case("warren_")
}

unsafe extern "C" fn authorize(
    user: *mut c_void,
    action: c_int,
    a1: *const c_char,
    a2: *const c_char,
    _database: *const c_char,
    _trigger: *const c_char,
) -> c_int {
    let guard = unsafe { guard_of(user) };
    if !guard.task_mode.load(Ordering::Relaxed) {
        return ffi::SQLITE_OK;
    }
    let (a1, a2) = unsafe { (text(a1), text(a2)) };
    const TRANSACTION: &str = "the run's transaction commits together with the task's resolution; end the task with a resolution instead";
    const CODE: &str = "it creates code that issues SQL of its own, outside the task's checks";
    const WARREN_TABLES: &str =
        "Warren's own tables are off limits to task SQL; use the host API (scheduleTask, metadata)";
    match action {
        ffi::SQLITE_TRANSACTION => {
            return guard.deny(format!("{} is not allowed in task SQL: {TRANSACTION}", a1.to_uppercase()))
        }
        ffi::SQLITE_SAVEPOINT => {
            return guard.deny(format!("SAVEPOINT/RELEASE is not allowed in task SQL: {TRANSACTION}"))
        }
        ffi::SQLITE_ATTACH | ffi::SQLITE_DETACH => {
            return guard.deny(
                "ATTACH/DETACH (and VACUUM INTO) is not allowed in task SQL: task code has no access to files".into(),
            )
        }
        ffi::SQLITE_PRAGMA => {
            let name = a1.to_ascii_lowercase();
            if !READ_ONLY_PRAGMAS.contains(&name.as_str()) {
                return guard.deny(format!(
                    "PRAGMA {name} is not allowed in task SQL: session state would outlive the run (allowed: {})",
                    READ_ONLY_PRAGMAS.join(", ")
                ));
            }
            if is_warren_name(a2) {
                return guard.deny(format!("PRAGMA {name}({a2}) is not allowed in task SQL: {WARREN_TABLES}"));
            }
        }
        ffi::SQLITE_CREATE_TRIGGER | ffi::SQLITE_CREATE_TEMP_TRIGGER => {
            return guard.deny(format!("CREATE TRIGGER is not allowed in task SQL: {CODE}"))
        }
        ffi::SQLITE_CREATE_VTABLE | ffi::SQLITE_DROP_VTABLE => {
            return guard.deny("virtual tables are not allowed in task SQL".into())
        }
        ffi::SQLITE_CREATE_TEMP_TABLE | ffi::SQLITE_CREATE_TEMP_VIEW | ffi::SQLITE_CREATE_TEMP_INDEX => {
            // Allowed, but the connection is closed after the run.
            guard.tainted.store(true, Ordering::SeqCst);
        }
        _ => {}
    }
    // Every action that names a table or index names it in its first or second argument.
    let table = match action {
        ffi::SQLITE_CREATE_INDEX
        | ffi::SQLITE_CREATE_TEMP_INDEX
        | ffi::SQLITE_DROP_INDEX
        | ffi::SQLITE_DROP_TEMP_INDEX
        | ffi::SQLITE_ALTER_TABLE => Some(a2),
        ffi::SQLITE_READ
        | ffi::SQLITE_INSERT
        | ffi::SQLITE_UPDATE
        | ffi::SQLITE_DELETE
        | ffi::SQLITE_CREATE_TABLE
        | ffi::SQLITE_CREATE_TEMP_TABLE
        | ffi::SQLITE_CREATE_VIEW
        | ffi::SQLITE_CREATE_TEMP_VIEW
        | ffi::SQLITE_DROP_TABLE
        | ffi::SQLITE_DROP_TEMP_TABLE
        | ffi::SQLITE_DROP_VIEW
        | ffi::SQLITE_DROP_TEMP_VIEW
        | ffi::SQLITE_ANALYZE
        | ffi::SQLITE_REINDEX => Some(a1),
        ffi::SQLITE_FUNCTION => {
            if is_warren_name(a2) {
                return guard.deny(format!(
                    "calling {a2} is not allowed in task SQL: {WARREN_TABLES}"
                ));
            }
            None
        }
        _ => None,
    };
    match table {
        Some(name)
            if is_warren_name(name)
                || (action == ffi::SQLITE_CREATE_INDEX && is_warren_name(a1)) =>
        {
            guard.deny(format!(
                "a statement on {name} is not allowed in task SQL: {WARREN_TABLES}"
            ))
        }
        _ => ffi::SQLITE_OK,
    }
}

/// What a task statement should give back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Want {
    /// The number of rows changed.
    Changes,
    /// The rows, as JSON text of at most this many bytes.
    Rows {
        /// The largest JSON text handed back.
        max_bytes: usize,
    },
}

/// What a task statement gave back.
#[derive(Debug)]
pub(super) enum Output {
    /// Rows changed.
    Changes(u64),
    /// Rows as a JSON array of objects keyed by column name.
    Rows(String),
}

/// Why a task statement failed on SQLite.
#[derive(Debug)]
pub(super) enum Failure {
    /// Refused by the policy before it ran.
    Refused(String),
    /// The statement is empty.
    Empty,
    /// Text follows the first statement.
    MoreThanOne,
    /// The rows' JSON text is larger than allowed.
    TooLarge(usize),
    /// Stopped by a kill or a timeout.
    Interrupted,
    /// The run's transaction is no longer open.
    TransactionEnded,
    /// SQLite's own error.
    Sqlite {
        /// SQLite's extended result code.
        code: c_int,
        /// SQLite's message.
        message: String,
    },
}

/// A prepared statement, finalized when dropped.
struct Statement(*mut ffi::sqlite3_stmt);

impl Drop for Statement {
    fn drop(&mut self) {
        // SAFETY: a statement prepared on a connection this thread holds.
        unsafe {
            ffi::sqlite3_finalize(self.0);
        }
    }
}

/// Runs one task statement on the connection this thread holds (whose guard is
/// [`current`]), inside the run's open transaction.
pub(super) fn run_task_statement(
    _held: &mut diesel::SqliteConnection,
    guard: &SqliteGuard,
    sql: &str,
    params: &[SqlParam],
    want: Want,
) -> Result<Output, Failure> {
    // SAFETY: the connection is held by this thread.
    if unsafe { ffi::sqlite3_get_autocommit(guard.db) } != 0 {
        // Nothing may run outside the run's transaction: it would commit on its own.
        return Err(Failure::TransactionEnded);
    }
    guard.cancel.store(false, Ordering::SeqCst);
    *guard.denial.lock().unwrap_or_else(|e| e.into_inner()) = None;
    guard.task_mode.store(true, Ordering::SeqCst);
    let result = run_in_task_mode(guard, sql, params, want);
    guard.task_mode.store(false, Ordering::SeqCst);
    // SAFETY: the connection is held by this thread.
    let autocommit = unsafe { ffi::sqlite3_get_autocommit(guard.db) } != 0;
    if autocommit {
        return Err(Failure::TransactionEnded);
    }
    result
}

fn sqlite_error(guard: &SqliteGuard, code: c_int) -> Failure {
    if code & 0xff == ffi::SQLITE_AUTH {
        if let Some(reason) = guard
            .denial
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            return Failure::Refused(reason);
        }
    }
    if code & 0xff == ffi::SQLITE_INTERRUPT || guard.cancel.load(Ordering::SeqCst) {
        return Failure::Interrupted;
    }
    // SAFETY: the connection is held by this thread; the message is copied at once.
    let message = unsafe { text(ffi::sqlite3_errmsg(guard.db)) }.to_string();
    Failure::Sqlite { code, message }
}

fn prepare(guard: &SqliteGuard, sql: &[u8]) -> Result<(Option<Statement>, usize), Failure> {
    let mut stmt = std::ptr::null_mut();
    let mut tail: *const c_char = std::ptr::null();
    let len = c_int::try_from(sql.len()).map_err(|_| Failure::Sqlite {
        code: ffi::SQLITE_TOOBIG,
        message: "the statement is too long".into(),
    })?;
    // SAFETY: `sql` outlives the call; SQLite writes the statement and the tail.
    let rc = unsafe {
        ffi::sqlite3_prepare_v3(
            guard.db,
            sql.as_ptr() as *const c_char,
            len,
            0,
            &mut stmt,
            &mut tail,
        )
    };
    if rc != ffi::SQLITE_OK {
        if !stmt.is_null() {
            drop(Statement(stmt));
        }
        return Err(sqlite_error(guard, rc));
    }
    let used = if tail.is_null() {
        sql.len()
    } else {
        tail as usize - sql.as_ptr() as usize
    };
    Ok(((!stmt.is_null()).then_some(Statement(stmt)), used))
}

fn run_in_task_mode(
    guard: &SqliteGuard,
    sql: &str,
    params: &[SqlParam],
    want: Want,
) -> Result<Output, Failure> {
    let bytes = sql.as_bytes();
    let (stmt, used) = prepare(guard, bytes)?;
    let stmt = stmt.ok_or(Failure::Empty)?;
    // Whatever follows must be nothing but blanks and comments: SQLite's own parser
    // says so by preparing no statement from it.
    let rest = &bytes[used..];
    if !rest.iter().all(|b| b.is_ascii_whitespace()) {
        match prepare(guard, rest) {
            Ok((None, _)) => {}
            Ok((Some(_), _)) | Err(_) => return Err(Failure::MoreThanOne),
        }
    }
    bind(guard, &stmt, params)?;
    let mut rows = match want {
        Want::Changes => None,
        Want::Rows { max_bytes } => Some(RowsJson::new(&stmt, max_bytes)),
    };
    loop {
        // SAFETY: a statement of this connection, held by this thread.
        let rc = unsafe { ffi::sqlite3_step(stmt.0) };
        match rc {
            ffi::SQLITE_ROW => {
                if let Some(rows) = rows.as_mut() {
                    rows.push(&stmt)?;
                }
            }
            ffi::SQLITE_DONE => break,
            _ => return Err(sqlite_error(guard, rc)),
        }
    }
    Ok(match rows {
        // SAFETY: the connection is held by this thread.
        None => Output::Changes(unsafe { ffi::sqlite3_changes64(guard.db) } as u64),
        Some(rows) => Output::Rows(rows.finish()),
    })
}

fn bind(guard: &SqliteGuard, stmt: &Statement, params: &[SqlParam]) -> Result<(), Failure> {
    // SAFETY: a statement of this connection, held by this thread.
    let expected = unsafe { ffi::sqlite3_bind_parameter_count(stmt.0) } as usize;
    if params.len() > expected {
        return Err(Failure::Sqlite {
            code: ffi::SQLITE_RANGE,
            message: format!(
                "the statement has {expected} parameter(s) but {} were given",
                params.len()
            ),
        });
    }
    for (i, param) in params.iter().enumerate() {
        let index = (i + 1) as c_int;
        // SAFETY: `index` is within the statement's parameters; text is copied by
        // SQLite (SQLITE_TRANSIENT).
        let rc = unsafe {
            match param {
                SqlParam::Null => ffi::sqlite3_bind_null(stmt.0, index),
                SqlParam::Bool(b) => ffi::sqlite3_bind_int64(stmt.0, index, i64::from(*b)),
                SqlParam::Int(n) => ffi::sqlite3_bind_int64(stmt.0, index, *n),
                SqlParam::Float(f) => ffi::sqlite3_bind_double(stmt.0, index, *f),
                SqlParam::Text(s) => ffi::sqlite3_bind_text64(
                    stmt.0,
                    index,
                    s.as_ptr() as *const c_char,
                    s.len() as u64,
                    ffi::SQLITE_TRANSIENT(),
                    ffi::SQLITE_UTF8 as u8,
                ),
            }
        };
        if rc != ffi::SQLITE_OK {
            return Err(sqlite_error(guard, rc));
        }
    }
    Ok(())
}

/// Rows written straight into JSON text, never past the cap.
struct RowsJson {
    names: Vec<String>,
    out: String,
    max_bytes: usize,
    first: bool,
}

impl RowsJson {
    fn new(stmt: &Statement, max_bytes: usize) -> RowsJson {
        // SAFETY: a statement of this connection, held by this thread.
        let count = unsafe { ffi::sqlite3_column_count(stmt.0) };
        let names = (0..count)
            .map(|i| {
                let name = unsafe { text(ffi::sqlite3_column_name(stmt.0, i)) };
                serde_json::Value::from(name).to_string()
            })
            .collect();
        RowsJson {
            names,
            out: String::from("["),
            max_bytes,
            first: true,
        }
    }

    fn push(&mut self, stmt: &Statement) -> Result<(), Failure> {
        use std::fmt::Write;
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        self.out.push('{');
        for (i, name) in self.names.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.out.push_str(name);
            self.out.push(':');
            let col = i as c_int;
            // SAFETY: a row of this statement is current; pointers are read before the
            // next call on the statement.
            unsafe {
                match ffi::sqlite3_column_type(stmt.0, col) {
                    ffi::SQLITE_INTEGER => {
                        let _ = write!(self.out, "{}", ffi::sqlite3_column_int64(stmt.0, col));
                    }
                    ffi::SQLITE_FLOAT => {
                        let f = ffi::sqlite3_column_double(stmt.0, col);
                        match serde_json::Number::from_f64(f) {
                            Some(n) => {
                                let _ = write!(self.out, "{n}");
                            }
                            None => self.out.push_str("null"),
                        }
                    }
                    ffi::SQLITE_BLOB => {
                        let len = ffi::sqlite3_column_bytes(stmt.0, col) as usize;
                        self.check(len * 2 + 4)?;
                        let data = ffi::sqlite3_column_blob(stmt.0, col) as *const u8;
                        let bytes = if data.is_null() {
                            &[][..]
                        } else {
                            std::slice::from_raw_parts(data, len)
                        };
                        self.out.push_str("\"\\\\x");
                        for b in bytes {
                            let _ = write!(self.out, "{b:02x}");
                        }
                        self.out.push('"');
                    }
                    ffi::SQLITE_NULL => self.out.push_str("null"),
                    _ => {
                        let len = ffi::sqlite3_column_bytes(stmt.0, col) as usize;
                        self.check(len + 2)?;
                        let data = ffi::sqlite3_column_text(stmt.0, col);
                        let bytes = if data.is_null() {
                            &[][..]
                        } else {
                            std::slice::from_raw_parts(data, len)
                        };
                        let text = String::from_utf8_lossy(bytes);
                        self.out
                            .push_str(&serde_json::Value::from(text.as_ref()).to_string());
                    }
                }
            }
        }
        self.out.push('}');
        self.check(0)
    }

    /// Fails when the text, grown by `more` bytes, would pass the cap.
    fn check(&self, more: usize) -> Result<(), Failure> {
        if self.out.len() + more > self.max_bytes {
            Err(Failure::TooLarge(self.max_bytes))
        } else {
            Ok(())
        }
    }

    fn finish(mut self) -> String {
        self.out.push(']');
        self.out
    }
}
