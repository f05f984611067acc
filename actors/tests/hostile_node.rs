//! Task code as an adversary against a whole `warren serve` process: a flood of log
//! lines must not grow the node's memory without bound.

mod support;

use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::repo;
use warren::store::{NewTask, Store, WaitFor};

/// Kills the node when the test ends, however it ends.
struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The peak resident memory of a process, from /proc (bytes).
fn peak_resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/PID/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmHWM in kB");
    kib * 1024
}

/// 1,000 log lines of 1 MiB each (a 1 GiB flood) leave the node under 500 MiB of peak
/// resident memory: a run keeps a bounded part of its log, and the node's own log gets
/// each line cut short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_flood_leaves_the_node_under_500_mib() {
    let dir = std::env::temp_dir().join(format!("warren-flood-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let module = dir.join("modules/flood");
    std::fs::create_dir_all(module.join("tasks")).unwrap();
    std::fs::copy(
        repo().join("actors/tests/guests/log_flood.js"),
        module.join("tasks/log_flood.js"),
    )
    .unwrap();
    std::fs::write(
        module.join("moduledefinition.xml"),
        r#"<module name="flood"><servicemanager>
             <managedtask type="logs" code="tasks/log_flood.js" timeout="120000"/>
           </servicemanager></module>"#,
    )
    .unwrap();
    let db = format!("sqlite://{}", dir.join("flood.db").display());
    let store = Store::open(&db).await.unwrap();
    let id = store
        .schedule(NewTask::new(
            "flood:logs".parse().unwrap(),
            json!({"lines": 1000, "bytes": 1 << 20}),
        ))
        .await
        .unwrap();
    let node = Node(
        support::use_test_cache(&mut Command::new(env!("CARGO_BIN_EXE_warren")))
            .args(["serve", "--modules"])
            .arg(dir.join("modules"))
            .args(["--listen", "127.0.0.1:0"])
            .env("WARREN_DATABASE_URL", &db)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let outcome = store
        .wait(id, Duration::from_secs(240), WaitFor::Finished)
        .await
        .unwrap();
    assert_eq!(outcome.result, Some(json!({"logged": 1000})), "{outcome:?}");
    let peak = peak_resident_bytes(node.0.id());
    eprintln!("peak resident memory of the node: {} MiB", peak >> 20);
    assert!(peak < 500 << 20, "the node peaked at {} MiB", peak >> 20);
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}
