//! The chaos scenarios, full length, with their report: `cargo bench --bench chaos --
//! SCENARIO… [--short] [--out DIR] [--soak-minutes N] [--soak-rate N]` (`all` runs
//! every one but the soaks). Writes `report.json` and `report.md` to DIR (default
//! `target/chaos`) and prints the Markdown table.
//!
//! Scenarios: pg-restart, connection-killing, repeated-crashes, pool-exhaustion,
//! overload, active-readers, idle-holder, read-only, sqlite-kills, sqlite-disk-full
//! (which mounts a tmpfs: run as root); and soak, soak-stock-vacuum (30 minutes at 600
//! tasks/s unless told otherwise). The PostgreSQL ones start a server of their
//! own (needs `initdb` and `pg_ctl`); nothing else is needed but Node.js for the
//! toolkit install, as for every test. Without a scenario it lists them and runs
//! nothing, so a plain `cargo bench` does not spend half an hour here.

use std::path::PathBuf;
use warren_testkit::chaos::{self, Scenario};

fn main() {
    let mut scenarios = Vec::new();
    let mut short = false;
    let mut soak = chaos::Soak::default();
    let mut out = warren_testkit::repo().join("target/chaos");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--short" => short = true,
            "--out" => out = PathBuf::from(args.next().expect("--out needs a folder")),
            "--soak-minutes" => {
                let minutes: u64 = number(args.next(), "--soak-minutes");
                soak.length = std::time::Duration::from_secs(60 * minutes);
            }
            "--soak-rate" => soak.rate = number(args.next(), "--soak-rate"),
            "all" => scenarios.extend(chaos::ALL),
            // What cargo passes to every bench (`--bench`), and libtest-style filters.
            flag if flag.starts_with("--") => {}
            name => match Scenario::from_name(name) {
                Some(s) => scenarios.push(s),
                None => {
                    eprintln!("unknown scenario {name:?}; the scenarios are: {}", names());
                    std::process::exit(2);
                }
            },
        }
    }
    if scenarios.is_empty() {
        println!(
            "chaos: name scenarios to run ({}, or all), e.g. \
             `cargo bench --bench chaos -- pg-restart`",
            names()
        );
        return;
    }
    let options = chaos::Options {
        warren: PathBuf::from(env!("CARGO_BIN_EXE_warren")),
        out: out.clone(),
        short,
        soak,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut reports = Vec::new();
    let mut could_not_run = Vec::new();
    for scenario in scenarios {
        eprintln!("chaos: running {} …", scenario.name());
        match runtime.block_on(chaos::run(scenario, &options)) {
            Ok(report) => {
                eprintln!(
                    "chaos: {} {}",
                    scenario.name(),
                    if report.passed() { "passed" } else { "FAILED" }
                );
                reports.push(report);
            }
            // The harness could not do its part (no root for the tmpfs, no initdb…):
            // said, and the other scenarios still run and are reported.
            Err(e) => {
                eprintln!("chaos: {} could not run: {e}", scenario.name());
                could_not_run.push(format!("{}: {e}", scenario.name()));
            }
        }
        write_reports(&out, &reports, &could_not_run);
    }
    let markdown = std::fs::read_to_string(out.join("report.md")).unwrap_or_default();
    println!("{markdown}");
    println!("(written to {})", out.display());
    if !could_not_run.is_empty() || reports.iter().any(|r| !r.passed()) {
        std::process::exit(1);
    }
}

/// Writes the reports so far (after each scenario, so a later one that cannot run
/// loses nothing): `report.json` and `report.md`, which also lists what could not run.
fn write_reports(out: &std::path::Path, reports: &[chaos::Report], could_not_run: &[String]) {
    let mut markdown = chaos::report::markdown(reports);
    for line in could_not_run {
        markdown.push_str(&format!("\n**Could not run** {line}\n"));
    }
    std::fs::create_dir_all(out).expect("the report folder");
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(&reports).expect("reports as JSON"),
    )
    .expect("report.json");
    std::fs::write(out.join("report.md"), markdown).expect("report.md");
}

/// The number after a flag, or an exit saying what is wrong.
fn number(value: Option<String>, flag: &str) -> u64 {
    match value.as_deref().map(str::parse) {
        Some(Ok(n)) => n,
        _ => {
            eprintln!("{flag} needs a whole number, got {value:?}");
            std::process::exit(2);
        }
    }
}

fn names() -> String {
    chaos::ALL
        .iter()
        .chain(&[Scenario::Soak, Scenario::SoakStockVacuum])
        .map(|s| s.name())
        .collect::<Vec<_>>()
        .join(", ")
}
