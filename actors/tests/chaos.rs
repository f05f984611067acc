//! The short chaos scenarios (the PostgreSQL server restarting, connections killed,
//! nodes SIGKILLed again and again, a SQLite node killed during heavy writes): under
//! steady load, every task scheduled completes and its effect exists exactly once.
//! The full scenarios and their report: `cargo bench --bench chaos -- all`.
//!
//! The PostgreSQL scenarios start a server of their own and need `initdb` and
//! `pg_ctl`; without them they are skipped loudly (failing under `CI=true`).

use std::path::PathBuf;
use warren_testkit::chaos::{self, Backend, Scenario};

/// The four short scenarios, one after another (together they would fight over two
/// cores and blur each other's figures); every report is printed, then any failure
/// fails the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_chaos_scenarios_lose_nothing() {
    let mut reports = Vec::new();
    for scenario in [
        Scenario::PgRestart,
        Scenario::ConnectionKilling,
        Scenario::RepeatedCrashes,
        Scenario::SqliteKills,
    ] {
        if scenario.backend() == Backend::Postgres && !chaos::instance::available() {
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "CI=true but initdb/pg_ctl are missing: the chaos scenarios cannot run"
            );
            eprintln!("SKIPPED: {} needs initdb and pg_ctl", scenario.name());
            continue;
        }
        let out = std::env::temp_dir().join(warren_testkit::unique_name("warren-chaos"));
        let options = chaos::Options {
            warren: PathBuf::from(env!("CARGO_BIN_EXE_warren")),
            out: out.clone(),
            short: true,
            soak: chaos::Soak::default(),
        };
        let report = chaos::run(scenario, &options).await.unwrap();
        if report.passed() {
            let _ = std::fs::remove_dir_all(out);
        }
        reports.push(report);
    }
    let table = chaos::report::markdown(&reports);
    eprintln!("{table}");
    for report in &reports {
        assert!(
            report.scheduled > 0,
            "{}: nothing was scheduled",
            report.scenario
        );
        assert!(
            report.passed(),
            "{} lost or duplicated work (logs kept in {}):\n{table}",
            report.scenario,
            report.logs
        );
    }
}
