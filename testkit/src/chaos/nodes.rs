//! The `warren serve` processes of a scenario: started, SIGKILLed and restarted by the
//! fault scripts, each writing its log to a file of its own in the run folder.

use crate::Error;
use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Seconds of a node's lease on a claimed task: short, so a killed node's tasks are
/// taken over within a scenario.
const LEASE_SECONDS: &str = "2";

/// Several nodes on one database, each running the scenario's modules.
pub struct NodeSet {
    warren: PathBuf,
    modules: PathBuf,
    database_url: String,
    logs: PathBuf,
    nodes: Vec<Option<Child>>,
    /// How many times a node was SIGKILLed.
    pub kills: u32,
}

impl NodeSet {
    /// Compiles the modules once (so nodes starting together do not each compile
    /// them), then starts `count` nodes named `node1`….
    pub fn start(
        warren: PathBuf,
        modules: PathBuf,
        database_url: String,
        logs: PathBuf,
        count: usize,
    ) -> Result<NodeSet, Error> {
        let mut set = NodeSet {
            warren,
            modules,
            database_url,
            logs,
            nodes: (0..count).map(|_| None).collect(),
            kills: 0,
        };
        let built = set
            .command(&["build", &set.modules.display().to_string()])
            .output()?;
        if !built.status.success() {
            return Err(format!(
                "warren build failed: {}",
                String::from_utf8_lossy(&built.stderr)
            )
            .into());
        }
        for index in 0..count {
            set.spawn(index)?;
        }
        Ok(set)
    }

    /// How many nodes the set has.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the set has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// SIGKILLs node `index` (no shutdown, no lease given back) and waits for it.
    pub fn kill(&mut self, index: usize) -> Result<(), Error> {
        if let Some(mut child) = self.nodes[index].take() {
            child.kill()?;
            child.wait()?;
            self.kills += 1;
        }
        Ok(())
    }

    /// Starts node `index` again (after [`NodeSet::kill`]).
    pub fn restart(&mut self, index: usize) -> Result<(), Error> {
        self.kill(index)?;
        self.spawn(index)
    }

    /// Stops every node with SIGTERM (a graceful shutdown), SIGKILL after `grace`.
    /// Returns the names of nodes that did not exit cleanly.
    pub fn shut_down(&mut self, grace: Duration) -> Vec<String> {
        let mut unclean = Vec::new();
        for (index, slot) in self.nodes.iter_mut().enumerate() {
            let Some(mut child) = slot.take() else {
                continue;
            };
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + grace;
            let status = loop {
                match child.try_wait() {
                    Ok(Some(status)) => break Some(status),
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    _ => break None,
                }
            };
            if !status.is_some_and(|s| s.success()) {
                let _ = child.kill();
                let _ = child.wait();
                unclean.push(node_name(index));
            }
        }
        unclean
    }

    fn spawn(&mut self, index: usize) -> Result<(), Error> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join(format!("{}.log", node_name(index))))?;
        let child = self
            .command(&[
                "serve",
                "--modules",
                &self.modules.display().to_string(),
                "--node",
                &node_name(index),
                "--lease",
                LEASE_SECONDS,
                "--grace",
                "5",
                "--no-dashboard",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.nodes[index] = Some(child);
        Ok(())
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.warren);
        crate::use_test_cache(&mut cmd)
            .args(args)
            .env("WARREN_DATABASE_URL", &self.database_url)
            .env("RUST_LOG", "warn");
        cmd
    }
}

impl Drop for NodeSet {
    fn drop(&mut self) {
        for child in self.nodes.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn node_name(index: usize) -> String {
    format!("node{}", index + 1)
}
