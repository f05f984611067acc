//! The peer measured beside Warren: graphile-worker, a fast PostgreSQL job queue for
//! Node.js, from the workplace's peer folder (`WARREN_BENCH_GRAPHILE`, by default
//! `../shared/bench/peers/graphile-worker` next to the repository). Its `bench.js`
//! drains 20,000 jobs with 16 workers in four configurations: A plain, B batched (a
//! local queue and batched completions: at least once), C and D as A and B with a row
//! inserted by each job (its own commit, then the completion's).
//!
//! The folder is copied to `$CARGO_TARGET_DIR/warren-bench-graphile` (or `target/…`)
//! and its packages installed there once; each configuration runs on a fresh database.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::Command;

type BenchResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// The configurations, in the order they run.
pub const CONFIGS: [&str; 4] = ["A", "B", "C", "D"];

/// Where the peer's folder is, or why the peer is skipped.
pub fn locate() -> Result<PathBuf, String> {
    let dir = match std::env::var_os("WARREN_BENCH_GRAPHILE") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => warren_testkit::repo().join("../shared/bench/peers/graphile-worker"),
    };
    if !dir.join("bench.js").is_file() {
        return Err(format!(
            "no graphile-worker peer at {} (set WARREN_BENCH_GRAPHILE to its folder)",
            dir.display()
        ));
    }
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => Ok(dir),
        _ => Err("Node.js (`node`) cannot be run".into()),
    }
}

/// Copies the peer to a folder of the build and installs its packages there once.
pub fn prepare(peer: &Path) -> BenchResult<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| warren_testkit::repo().join("target"));
    let work = target.join("warren-bench-graphile");
    std::fs::create_dir_all(&work)?;
    for file in ["bench.js", "package.json"] {
        std::fs::copy(peer.join(file), work.join(file))?;
    }
    if !work.join("node_modules/graphile-worker").is_dir() {
        eprintln!("graphile-worker: npm install in {}", work.display());
        let status = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&work)
            .status()?;
        if !status.success() {
            return Err(format!("npm install in {} failed ({status})", work.display()).into());
        }
    }
    Ok(work)
}

/// Runs configuration `config` against `database_url`; its execute rate (jobs/s) and
/// the JSON line it printed.
pub fn run(work: &Path, config: &str, database_url: &str) -> BenchResult<(f64, String)> {
    let out = Command::new("node")
        .args(["bench.js", config, "1"])
        .env("GW_CONN", database_url)
        .current_dir(work)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "graphile-worker {config} failed ({}): {}{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| format!("graphile-worker {config} printed no result: {stdout}"))?;
    let value: serde_json::Value = serde_json::from_str(line)?;
    let rate = value["execute_jobs_per_s"]
        .as_f64()
        .ok_or_else(|| format!("graphile-worker {config}: no execute_jobs_per_s in {line}"))?;
    Ok((rate, line.to_string()))
}
