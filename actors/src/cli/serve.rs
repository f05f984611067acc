//! `warren serve`: runs a node until SIGINT or SIGTERM, then shuts down gracefully.

use super::Failure;
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;
use warren_actors::{Shutdown, Warren};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Arguments of `warren serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The folder holding module folders (each with a moduledefinition.xml).
    #[arg(long)]
    pub modules: PathBuf,
    /// This node's name, unique among the nodes sharing the database (default: HOST-PID).
    #[arg(long, env = "WARREN_NODE")]
    pub node: Option<String>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Seconds running tasks get to finish at shutdown before they are killed.
    #[arg(long, default_value_t = 30)]
    pub grace: u64,
    /// Lease of a claimed task in seconds (renewed while it runs; when a node dies its
    /// tasks are taken over after this long).
    #[arg(long, default_value_t = 30)]
    pub lease: u64,
}

/// Starts logging to stderr: `RUST_LOG` filters (default `info`).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Runs the node in an actix system on this thread.
pub fn run(database: String, args: ServeArgs) -> Result<(), Failure> {
    init_logging(args.log_format);
    let system = actix_rt::System::new();
    system.block_on(async move {
        let mut builder = Warren::builder()
            .database(database)
            .modules_dir(&args.modules)
            .lease_ms(args.lease as i64 * 1000);
        if let Some(node) = args.node {
            builder = builder.node_name(node);
        }
        let (supervisor, broken) = builder
            .start()
            .await
            .map_err(|e| Failure::Error(e.to_string()))?;
        if !broken.is_empty() {
            tracing::warn!(modules = broken.len(), "modules with errors were skipped");
        }
        let grace = Duration::from_secs(args.grace);
        actix_rt::spawn(async move {
            wait_for_signal().await;
            tracing::info!("signal received");
            let _ = supervisor.send(Shutdown { grace }).await;
            actix_rt::System::current().stop();
        });
        Ok::<_, Failure>(())
    })?;
    system
        .run()
        .map_err(|e| Failure::Error(format!("the actor system failed: {e}")))
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
