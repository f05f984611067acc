//! The command-line interface: argument parsing and one module per command group.

mod batch;
mod build;
mod bulk_action;
mod cron;
mod durations;
mod filter_args;
mod migrate;
mod modules;
mod otel;
mod pauses;
mod run_logs;
mod scheduled;
pub mod serve;
mod table;
mod task_admin;
mod tasks;
mod terminal;
mod toolkit;

use clap::{Parser, Subcommand};
use std::fmt;
use warren::store::DEFAULT_DATABASE_URL;

/// Warren: durable managed, ephemeral and scheduled tasks with WebAssembly task code.
#[derive(Debug, Parser)]
#[command(
    name = "warren",
    version,
    about = "Warren: durable managed, ephemeral and scheduled tasks with WebAssembly task code"
)]
pub struct Cli {
    /// Database URL: sqlite://PATH (default: sqlite://warren.db) or postgres://USER@HOST/DB.
    #[arg(long, global = true, env = "WARREN_DATABASE_URL")]
    pub database: Option<String>,

    /// The maintenance zone's offset from UTC in minutes, 0-1439 (default: the offset
    /// the service stored in the database; an invalid value counts as not given).
    #[arg(
        long,
        global = true,
        value_name = "MINUTES",
        env = "WARREN_MAINTENANCE_OFFSET"
    )]
    pub maintenance_offset: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or upgrade the database schema.
    Migrate {
        /// Print JSON (`{"database", "applied"}`) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Cron masks: compute fire times.
    #[command(subcommand)]
    Cron(cron::CronCommand),
    /// Module definitions: validate and summarise them.
    #[command(subcommand)]
    Modules(modules::ModulesCommand),
    /// Run a node: claim and run tasks of the modules in --modules until SIGINT/SIGTERM.
    Serve(serve::ServeArgs),
    /// Schedule a managed task, or with --batch the tasks of a file of JSON lines; prints
    /// the ids.
    Schedule(tasks::ScheduleArgs),
    /// Wait for a task's outcome and print it as JSON (exit 1 unless it completed).
    Wait(tasks::WaitArgs),
    /// Managed tasks: list, show, retry, cancel, delete.
    #[command(subcommand)]
    Tasks(task_admin::TasksCommand),
    /// Scheduled tasks: list, run now, enable, disable.
    #[command(subcommand)]
    Scheduled(scheduled::ScheduledCommand),
    /// Clusters: list them, pause or resume one.
    #[command(subcommand)]
    Clusters(pauses::ClustersCommand),
    /// Task types: list them, pause or resume one (a scheduled tag too).
    #[command(subcommand)]
    Types(pauses::TypesCommand),
    /// Compile every module's task code (JavaScript and components) into the cache.
    Build {
        /// A modules folder (or one module folder).
        modules: std::path::PathBuf,
    },
    /// The JavaScript toolkit built into warren: install it ahead of time, or report
    /// what is installed where.
    #[command(subcommand)]
    Toolkit(toolkit::ToolkitCommand),
}

impl Cli {
    /// The database URL given, or the default SQLite file.
    pub fn database_url(&self) -> String {
        self.database
            .clone()
            .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_string())
    }

    /// The maintenance offset given (`--maintenance-offset` or
    /// `WARREN_MAINTENANCE_OFFSET`), when it is valid: read here, once, and passed to
    /// the commands and the node that need it.
    pub fn maintenance_offset(&self) -> Option<u32> {
        warren::cron::parse_maintenance_offset(self.maintenance_offset.as_deref())
    }
}

/// Why a command failed, and with which exit status.
#[derive(Debug)]
pub enum Failure {
    /// The user's input is invalid (exit status 2).
    Invalid(String),
    /// Something else went wrong, such as the database (exit status 1).
    Error(String),
}

impl Failure {
    /// The process exit status for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Invalid(_) => 2,
            Failure::Error(_) => 1,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Invalid(m) | Failure::Error(m) => write!(f, "warren: {m}"),
        }
    }
}

impl From<warren::store::StoreError> for Failure {
    fn from(e: warren::store::StoreError) -> Failure {
        Failure::Error(e.to_string())
    }
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> Result<(), Failure> {
    let database = cli.database_url();
    let offset = cli.maintenance_offset();
    match cli.command {
        Command::Migrate { json } => migrate::run(&database, json).await,
        Command::Cron(cmd) => cron::run(cmd, cli.database.as_deref(), offset).await,
        Command::Modules(cmd) => modules::run(cmd, offset),
        Command::Build { modules } => build::run(&modules),
        Command::Toolkit(cmd) => toolkit::run(cmd),
        Command::Schedule(args) => tasks::schedule(&database, args).await,
        Command::Wait(args) => tasks::wait(&database, args).await,
        Command::Tasks(cmd) => task_admin::run(&database, cmd).await,
        Command::Scheduled(cmd) => scheduled::run(&database, cmd, offset).await,
        Command::Clusters(cmd) => pauses::clusters(&database, cmd).await,
        Command::Types(cmd) => pauses::types(&database, cmd).await,
        Command::Serve(_) => Err(Failure::Error(
            "serve runs outside the async runtime".into(),
        )),
    }
}
