//! The chaos harness: Warren nodes under steady load while a fault script breaks
//! what a production deployment sees broken (the server restarting, connections
//! killed, nodes SIGKILLed, the connection limit reached, overload, long readers),
//! then a verdict: every task scheduled completed, every effect exactly once.
//!
//! PostgreSQL scenarios run on a private server the harness starts itself
//! ([`instance`]), never on a shared one, with the nodes logged in as a role that is
//! not a superuser. Each scenario has a short variant for CI and a full one for
//! `cargo bench --bench chaos`.

pub mod faults;
pub mod instance;
pub mod nodes;
pub mod observer;
pub mod probe;
pub mod producer;
pub mod report;
pub mod run;
pub mod small_disk;

pub use report::Report;
pub use run::{run, Options};

use std::time::Duration;

/// A fault to run Warren through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// The PostgreSQL server stops (as in a crash) and starts again after a while.
    PgRestart,
    /// Warren's sessions are terminated twice a second.
    ConnectionKilling,
    /// A node is SIGKILLed and started again, over and over.
    RepeatedCrashes,
    /// Another client takes every free connection slot for a while, after Warren's
    /// sessions were terminated (so Warren must reconnect into a full server).
    PoolExhaustion,
    /// Producers offer 1.5× the measured drain rate, then fall back to the baseline.
    Overload,
    /// Four `REPEATABLE READ` sessions scan Warren's tables in a loop.
    ActiveReaders,
    /// A session holds a writing transaction open, idle, for minutes (vacuum cannot
    /// remove the dead rows Warren leaves meanwhile).
    IdleHolder,
    /// The server turns read-only (`default_transaction_read_only`) for a while, as a
    /// full disk or a demoted primary would make it: every write fails.
    ReadOnly,
    /// One node on a SQLite file is SIGKILLed again and again during heavy writes.
    SqliteKills,
    /// One node on a SQLite file on a small tmpfs that fills up (every write fails
    /// with "database or disk is full"), then gets its space back.
    SqliteDiskFull,
    /// No fault: steady load for a long time (`--soak-minutes`, `--soak-rate`), to see
    /// how the queue table holds up (dead tuples, claim latency, throughput).
    Soak,
    /// [`Scenario::Soak`] with PostgreSQL's stock autovacuum settings on the queue
    /// table (Warren's own reset first): the comparison for the table's settings.
    SoakStockVacuum,
}

/// Every scenario, in the order `all` runs them.
/// (The soaks are not among them: they run only when named.)
pub const ALL: [Scenario; 10] = [
    Scenario::PgRestart,
    Scenario::ConnectionKilling,
    Scenario::RepeatedCrashes,
    Scenario::PoolExhaustion,
    Scenario::Overload,
    Scenario::ActiveReaders,
    Scenario::IdleHolder,
    Scenario::ReadOnly,
    Scenario::SqliteKills,
    Scenario::SqliteDiskFull,
];

/// Which database a scenario runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A private PostgreSQL server.
    Postgres,
    /// A SQLite file.
    Sqlite,
}

impl Scenario {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::PgRestart => "pg-restart",
            Scenario::ConnectionKilling => "connection-killing",
            Scenario::RepeatedCrashes => "repeated-crashes",
            Scenario::PoolExhaustion => "pool-exhaustion",
            Scenario::Overload => "overload",
            Scenario::ActiveReaders => "active-readers",
            Scenario::IdleHolder => "idle-holder",
            Scenario::ReadOnly => "read-only",
            Scenario::SqliteKills => "sqlite-kills",
            Scenario::SqliteDiskFull => "sqlite-disk-full",
            Scenario::Soak => "soak",
            Scenario::SoakStockVacuum => "soak-stock-vacuum",
        }
    }

    /// The scenario named `name`, if any.
    pub fn from_name(name: &str) -> Option<Scenario> {
        ALL.into_iter()
            .chain([Scenario::Soak, Scenario::SoakStockVacuum])
            .find(|s| s.name() == name)
    }

    /// The database it runs on.
    pub fn backend(self) -> Backend {
        match self {
            Scenario::SqliteKills | Scenario::SqliteDiskFull => Backend::Sqlite,
            _ => Backend::Postgres,
        }
    }
}

/// How long a soak lasts and the load it offers.
#[derive(Debug, Clone, Copy)]
pub struct Soak {
    /// How long the steady load lasts.
    pub length: Duration,
    /// Tasks offered per second.
    pub rate: u64,
}

impl Default for Soak {
    /// Thirty minutes at 600 tasks a second: over a million tasks.
    fn default() -> Soak {
        Soak {
            length: Duration::from_secs(30 * 60),
            rate: 600,
        }
    }
}

/// How long each part of a scenario lasts, and how hard it pushes.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Nodes serving the queue.
    pub nodes: usize,
    /// Tasks offered per second.
    pub rate: u64,
    /// Steady load before the fault.
    pub before: Duration,
    /// How long the fault lasts.
    pub fault: Duration,
    /// For faults that repeat (kills, crashes): the time between two.
    pub every: Duration,
    /// Steady load after the fault.
    pub after: Duration,
    /// The private server's connection limit.
    pub max_connections: u32,
}

impl Plan {
    /// The plan of `scenario`, short (for CI) or full (the published figures); the
    /// soaks take their length and rate from `soak`.
    pub fn of(scenario: Scenario, short: bool, soak: Soak) -> Plan {
        let secs = Duration::from_secs;
        let pick =
            |short_value: u64, full_value: u64| secs(if short { short_value } else { full_value });
        let base = Plan {
            nodes: 3,
            rate: 200,
            before: pick(5, 10),
            fault: pick(10, 60),
            every: secs(10),
            after: pick(10, 20),
            max_connections: 100,
        };
        match scenario {
            Scenario::PgRestart => Plan {
                fault: pick(5, 10),
                ..base
            },
            Scenario::ConnectionKilling => Plan {
                every: Duration::from_millis(500),
                ..base
            },
            Scenario::RepeatedCrashes => Plan {
                fault: pick(20, 120),
                every: pick(5, 10),
                ..base
            },
            Scenario::PoolExhaustion => Plan {
                max_connections: 40,
                ..base
            },
            // The backlog must be gone within twice the overload's length: the phase
            // after it lasts that long, and a little more.
            Scenario::Overload => Plan {
                fault: pick(20, 120),
                after: pick(45, 250),
                ..base
            },
            Scenario::ActiveReaders | Scenario::ReadOnly => base,
            // Five minutes held; afterwards long enough for autovacuum (a one-minute
            // nap by default) to come round.
            Scenario::IdleHolder => Plan {
                fault: pick(20, 300),
                after: pick(10, 120),
                ..base
            },
            Scenario::Soak | Scenario::SoakStockVacuum => Plan {
                rate: soak.rate,
                fault: soak.length,
                ..base
            },
            Scenario::SqliteDiskFull => Plan {
                nodes: 1,
                rate: 100,
                fault: pick(10, 30),
                ..base
            },
            Scenario::SqliteKills => Plan {
                nodes: 1,
                rate: 100,
                fault: pick(9, 30),
                every: secs(3),
                ..base
            },
        }
    }
}
