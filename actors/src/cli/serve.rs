//! `warren serve`: runs a node and its dashboard until SIGINT or SIGTERM, then shuts
//! both down gracefully.

use super::{durations, Failure};
use clap::{Args, ValueEnum};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;
use warren_actors::web::{generate_token, Dashboard, WebState};
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
    /// Seconds running tasks get to finish at shutdown before they are killed (at most
    /// one year).
    #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = durations::seconds)]
    pub grace: u64,
    /// Lease of a claimed task in seconds, 1 to one year (renewed while it runs; when a
    /// node dies its tasks are taken over after this long).
    #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = durations::positive_seconds)]
    pub lease: u64,
    /// Where the dashboard, its API and /metrics listen: ADDR:PORT.
    #[arg(long, default_value = "127.0.0.1:4900")]
    pub listen: String,
    /// Allow --listen on an address other than loopback (anyone who can reach it and
    /// has the token can operate the node).
    #[arg(long)]
    pub allow_remote: bool,
    /// The API's bearer token (default: a random one, printed once on stderr with the
    /// dashboard's address, and never logged).
    #[arg(long, env = "WARREN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Run without the dashboard, its API and /metrics.
    #[arg(long)]
    pub no_dashboard: bool,
    /// Threads the node's runners share (default: one per core, never more than
    /// there are runners).
    #[arg(long, value_name = "N", env = "WARREN_RUNNER_THREADS")]
    pub runner_threads: Option<std::num::NonZeroUsize>,
    /// How long a thread of the node about to sleep keeps polling for work instead,
    /// in microseconds, 0 to 10000 (default 250 with two or more cores, 0 with one;
    /// 0 turns it off). It makes wake-ups cheaper, ephemeral calls above all, at the
    /// cost of that core's time.
    #[arg(long, value_name = "MICROSECONDS", env = "WARREN_IDLE_SPIN_US",
          value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub idle_spin_us: Option<u64>,
    /// Most consecutive runs of one runner that share a commit on PostgreSQL (a run
    /// group; default 8, 1 turns grouping off). Each run's outcome is told only once
    /// the shared commit landed, and a run that fails is undone alone.
    #[arg(long, value_name = "N", env = "WARREN_RUN_GROUP_SIZE",
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub run_group_size: Option<u16>,
    /// How long after a run group's first completion a run may still join it, in
    /// milliseconds (default 20). Each run's outcome waits for the group's commit, so
    /// keep it far below the lease.
    #[arg(long, value_name = "MS", env = "WARREN_RUN_GROUP_MS",
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub run_group_ms: Option<u32>,
}

/// The address to listen on, checked: `ADDR:PORT` (or `localhost:PORT`), loopback
/// unless `allow_remote`.
fn listen_address(listen: &str, allow_remote: bool) -> Result<SocketAddr, Failure> {
    let addr = match listen.strip_prefix("localhost:") {
        Some(port) => port
            .parse::<u16>()
            .ok()
            .map(|port| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)),
        None => listen.parse::<SocketAddr>().ok(),
    }
    .ok_or_else(|| {
        Failure::Invalid(format!(
            "invalid --listen '{listen}': use ADDR:PORT, such as 127.0.0.1:4900 or [::1]:4900"
        ))
    })?;
    if !addr.ip().is_loopback() && !allow_remote {
        return Err(Failure::Invalid(format!(
            "--listen {addr} is not a loopback address: add --allow-remote to serve the \
             dashboard and its API to other machines"
        )));
    }
    Ok(addr)
}

/// The token given (which must not be blank), or a new random one; says which.
fn token(given: Option<String>) -> Result<(String, bool), Failure> {
    match given {
        Some(t) if t.trim().is_empty() || t.chars().any(char::is_whitespace) => Err(
            Failure::Invalid("--token / WARREN_TOKEN must be a non-empty word".into()),
        ),
        Some(t) => Ok((t, false)),
        None => Ok((generate_token(), true)),
    }
}

/// Starts logging to stderr: `RUST_LOG` filters (default `info`), with the usual
/// `target=level` directives (`warren=debug,info`). A value that does not parse is
/// reported on stderr and `info` is used instead. With `export`, the spans of runs
/// (target `warren::trace`) go to it; the log leaves them out unless `RUST_LOG` names
/// that target.
pub fn init_logging(format: LogFormat, export: Option<&super::otel::Export>) {
    use tracing_subscriber::filter::LevelFilter;
    use tracing_subscriber::layer::{Layer, SubscriberExt};
    use tracing_subscriber::util::SubscriberInitExt;
    let rust_log = std::env::var("RUST_LOG").ok();
    let mut filter = log_filter(rust_log.as_deref()).unwrap_or_else(|e| {
        eprintln!("warren: {e}; logging at info");
        log_filter(None).expect("the default filter")
    });
    if !rust_log.is_some_and(|v| v.contains(warren::trace::TARGET)) {
        filter = filter.with_target(warren::trace::TARGET, LevelFilter::OFF);
    }
    let registry = tracing_subscriber::registry();
    // Without export no layer stands in for the traces' (an empty one would make the
    // log's filter ask about every event it turns away).
    let _ = match (format, export) {
        (LogFormat::Json, None) => registry
            .with(log_layer().json().with_filter(filter))
            .try_init(),
        (LogFormat::Text, None) => registry.with(log_layer().with_filter(filter)).try_init(),
        (LogFormat::Json, Some(export)) => registry
            .with(traces_layer(export))
            .with(log_layer().json().with_filter(filter))
            .try_init(),
        (LogFormat::Text, Some(export)) => registry
            .with(traces_layer(export))
            .with(log_layer().with_filter(filter))
            .try_init(),
    };
}

/// The log's layer: stderr, in colour on a terminal.
fn log_layer<S>() -> tracing_subscriber::fmt::Layer<
    S,
    tracing_subscriber::fmt::format::DefaultFields,
    tracing_subscriber::fmt::format::Format,
    fn() -> std::io::Stderr,
> {
    tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr as fn() -> std::io::Stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
}

/// The layer that hands Warren's trace spans (target `warren::trace`) to `export`.
fn traces_layer<S>(export: &super::otel::Export) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use tracing_subscriber::layer::Layer;
    tracing_opentelemetry::layer()
        .with_tracer(export.tracer())
        .with_filter(tracing_subscriber::filter::Targets::new().with_target(
            warren::trace::TARGET,
            tracing::level_filters::LevelFilter::INFO,
        ))
}

/// The log filter for a `RUST_LOG` value (`None` or blank: `info`). `Targets` rather
/// than `EnvFilter`, which would bring a regex engine into the build for span filters
/// Warren's logs do not need.
fn log_filter(value: Option<&str>) -> Result<tracing_subscriber::filter::Targets, String> {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    match value {
        Some(value) if !value.trim().is_empty() => value
            .parse::<Targets>()
            .map_err(|e| format!("RUST_LOG={value:?} is not a log filter ({e})")),
        _ => Ok(Targets::new().with_default(LevelFilter::INFO)),
    }
}

/// Runs the node in an actix system on this thread, with the maintenance offset
/// configured (the node's own stored one when `None`).
pub fn run(
    database: String,
    maintenance_offset: Option<u32>,
    args: ServeArgs,
) -> Result<(), Failure> {
    let listen = if args.no_dashboard {
        None
    } else {
        Some(listen_address(&args.listen, args.allow_remote)?)
    };
    let (token, generated) = token(args.token.clone())?;
    let export = super::otel::Export::start().map_err(Failure::Error)?;
    init_logging(args.log_format, export.as_ref());
    let system = actix_rt::System::new();
    system.block_on(async move {
        let mut builder = Warren::builder()
            .database(database)
            .modules_dir(&args.modules)
            .lease_ms(args.lease as i64 * 1000)
            .maintenance_offset(maintenance_offset);
        if let Some(node) = args.node {
            builder = builder.node_name(node);
        }
        if let Some(threads) = args.runner_threads {
            builder = builder.runner_threads(threads);
        }
        if let Some(us) = args.idle_spin_us {
            builder = builder.idle_spin(std::time::Duration::from_micros(us));
        }
        if args.run_group_size.is_some() || args.run_group_ms.is_some() {
            let default = warren::store::GroupBounds::default();
            let bounds = warren::store::GroupBounds {
                max_runs: args.run_group_size.map_or(default.max_runs, usize::from),
                max_age_ms: args.run_group_ms.map_or(default.max_age_ms, i64::from),
            };
            builder = builder.run_groups(bounds);
        }
        let (supervisor, broken) = builder
            .start()
            .await
            .map_err(|e| Failure::Error(e.to_string()))?;
        if !broken.is_empty() {
            tracing::warn!(modules = broken.len(), "modules with errors were skipped");
        }
        let signals = StopSignals::install();
        let dashboard = match listen {
            Some(listen) => {
                let started = start_dashboard(&supervisor, listen, &token, generated).await;
                if started.is_err() {
                    // The node runs already: stop it before reporting.
                    let grace = Duration::from_secs(args.grace);
                    let _ = supervisor.send(Shutdown { grace }).await;
                }
                Some(started?)
            }
            None => None,
        };
        let grace = Duration::from_secs(args.grace);
        actix_rt::spawn(async move {
            signals.wait().await;
            tracing::info!("signal received");
            if let Some(dashboard) = &dashboard {
                dashboard.stop().await;
            }
            let _ = supervisor.send(Shutdown { grace }).await;
            actix_rt::System::current().stop();
        });
        Ok::<_, Failure>(())
    })?;
    let ran = system
        .run()
        .map_err(|e| Failure::Error(format!("the actor system failed: {e}")));
    if let Some(export) = export {
        export.shutdown();
    }
    ran
}

/// Starts the dashboard and says where it is: on stderr for the person who started the
/// node, with the token when it was generated (a token given by the operator is not
/// repeated), and in the log without any token — logs are collected and kept where the
/// token must not go.
async fn start_dashboard(
    supervisor: &actix::Addr<warren_actors::Supervisor>,
    listen: SocketAddr,
    token: &str,
    generated: bool,
) -> Result<Dashboard, Failure> {
    let state = WebState::for_node(supervisor.clone(), token)
        .await
        .map_err(|e| Failure::Error(e.to_string()))?;
    let dashboard = Dashboard::start(state, listen)
        .map_err(|e| Failure::Error(format!("cannot listen on {listen}: {e}")))?;
    let url = format!("http://{}/", dashboard.addr());
    if generated {
        eprintln!("dashboard: {url}#token={token}");
    } else {
        eprintln!("dashboard: {url}");
    }
    tracing::info!(%url, "dashboard");
    Ok(dashboard)
}

/// SIGINT and SIGTERM, listened for from the moment this is made: made before the node
/// announces its dashboard, so a signal sent right after that line stops the node
/// gracefully instead of killing the process (the default action).
struct StopSignals {
    #[cfg(unix)]
    streams: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl StopSignals {
    /// Installs the listeners (inside the runtime).
    fn install() -> StopSignals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let streams = match (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) {
                (Ok(int), Ok(term)) => Some((int, term)),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(error = %e, "cannot listen for SIGINT and SIGTERM; only Ctrl-C stops the node");
                    None
                }
            };
            StopSignals { streams }
        }
        #[cfg(not(unix))]
        StopSignals {}
    }

    /// Waits for the first of them.
    async fn wait(self) {
        #[cfg(unix)]
        if let Some((mut int, mut term)) = self.streams {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod log_filter_tests {
    use super::log_filter;
    use tracing::Level;

    #[test]
    fn rust_log_directives_set_levels_per_target() {
        let filter = log_filter(Some("warren=debug,actix_server=warn,info")).unwrap();
        assert!(filter.would_enable("warren::queue", &Level::DEBUG));
        assert!(!filter.would_enable("actix_server::worker", &Level::INFO));
        assert!(filter.would_enable("other", &Level::INFO));
        assert!(!filter.would_enable("other", &Level::DEBUG));
    }

    #[test]
    fn no_or_blank_rust_log_means_info() {
        for value in [None, Some(""), Some("  ")] {
            let filter = log_filter(value).unwrap();
            assert!(filter.would_enable("warren", &Level::INFO));
            assert!(!filter.would_enable("warren", &Level::DEBUG));
        }
    }

    #[test]
    fn a_bad_rust_log_is_reported_with_its_value() {
        let error = log_filter(Some("warren=loud")).unwrap_err();
        assert!(error.contains("RUST_LOG=\"warren=loud\""), "{error}");
    }
}
