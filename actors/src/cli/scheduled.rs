//! `warren scheduled list|run|enable|disable`: the scheduled (`<task>`) tags, through
//! the database directly. "Run" sets the tag's run-requested flag; a running node picks
//! it up within a second.

use super::task_admin::{store_failure, to_json};
use super::{table, Failure};
use clap::Subcommand;
use warren::store::Store;

/// Scheduled-task commands.
#[derive(Debug, Subcommand)]
pub enum ScheduledCommand {
    /// List the scheduled tags with their next run and last outcome.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Ask for a run of TAG now (a running node picks it up, once).
    Run {
        /// The full tag, `module:tag`.
        tag: String,
        /// Print JSON (`{"tag", "run_requested"}`) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Enable TAG: it runs at its cron times again.
    Enable {
        /// The full tag, `module:tag`.
        tag: String,
        /// Print JSON (`{"tag", "enabled"}`) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Disable TAG: it then runs only when run by hand.
    Disable {
        /// The full tag, `module:tag`.
        tag: String,
        /// Print JSON (`{"tag", "enabled"}`) instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a scheduled-task command.
pub async fn run(
    database: &str,
    cmd: ScheduledCommand,
    maintenance_offset: Option<u32>,
) -> Result<(), Failure> {
    let store = Store::open(database).await?;
    match cmd {
        ScheduledCommand::List { json } => list(&store, json).await,
        ScheduledCommand::Run { tag, json } => {
            store
                .request_scheduled_run(&tag)
                .await
                .map_err(store_failure)?;
            match json {
                true => println!(
                    "{}",
                    to_json(&serde_json::json!({"tag": tag, "run_requested": true}))?
                ),
                false => {
                    println!("run of {tag} requested: a running node starts it within a second")
                }
            }
            Ok(())
        }
        ScheduledCommand::Enable { tag, json } => {
            set_enabled(&store, &tag, true, maintenance_offset, json).await
        }
        ScheduledCommand::Disable { tag, json } => {
            set_enabled(&store, &tag, false, maintenance_offset, json).await
        }
    }
}

async fn list(store: &Store, json: bool) -> Result<(), Failure> {
    let scheduled = store.list_scheduled().await?;
    if json {
        println!("{}", to_json(&scheduled)?);
        return Ok(());
    }
    if scheduled.is_empty() {
        eprintln!("warren: no scheduled tasks (a node records them when it starts)");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = scheduled
        .iter()
        .map(|s| {
            let status = if s.running {
                format!("running on {}", s.run_owner.as_deref().unwrap_or("?"))
            } else if s.run_requested {
                "run requested".to_string()
            } else if s.enabled {
                "enabled".to_string()
            } else {
                "disabled".to_string()
            };
            vec![
                s.tag.clone(),
                s.mask.clone().unwrap_or_else(|| "(by hand)".into()),
                s.zone.clone(),
                status,
                table::maybe_time(s.next_run),
                table::maybe_time(s.last_start),
                s.last_outcome.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table::print(
        &[
            "TAG",
            "MASK",
            "ZONE",
            "STATUS",
            "NEXT RUN",
            "LAST START",
            "LAST OUTCOME",
        ],
        &rows,
    );
    Ok(())
}

/// Enables or disables `tag`; its next run is computed with the `configured`
/// maintenance offset, else the one stored in the database.
async fn set_enabled(
    store: &Store,
    tag: &str,
    enabled: bool,
    configured: Option<u32>,
    json: bool,
) -> Result<(), Failure> {
    let offset = match configured {
        Some(minutes) => minutes,
        None => store.maintenance_offset(None).await?,
    };
    store
        .set_scheduled_enabled(tag, enabled, offset)
        .await
        .map_err(store_failure)?;
    match (json, enabled) {
        (true, _) => println!(
            "{}",
            to_json(&serde_json::json!({"tag": tag, "enabled": enabled}))?
        ),
        (false, true) => println!("{tag} enabled"),
        (false, false) => println!("{tag} disabled: it runs only when run by hand"),
    }
    Ok(())
}
