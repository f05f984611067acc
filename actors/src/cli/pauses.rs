//! `warren clusters list|pause|resume` and `warren types list|pause|resume`: pausing a
//! cluster's queue or a task type during an incident, through the database directly.
//! Every node stops claiming the paused work at once (the claim reads the pauses);
//! running tasks finish, scheduling still works, and a resume lets the waiting tasks run.

use super::task_admin::{store_failure, to_json};
use super::{table, Failure};
use clap::Subcommand;
use warren::store::{PauseTarget, Store, TypeKind};

/// Cluster commands.
#[derive(Debug, Subcommand)]
pub enum ClustersCommand {
    /// List the clusters with their state, registered types and live nodes.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Pause CLUSTER: no node starts its managed or ephemeral tasks until it is resumed.
    Pause {
        /// The cluster's name.
        cluster: String,
        /// Print JSON (`{"kind", "name", "paused", "changed"}`) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Resume CLUSTER: its waiting tasks run again.
    Resume {
        /// The cluster's name.
        cluster: String,
        /// Print JSON (`{"kind", "name", "paused", "changed"}`) instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Task type commands.
#[derive(Debug, Subcommand)]
pub enum TypesCommand {
    /// List the registered task types and scheduled tags with their cluster and state
    /// (and paused names no node registers any more).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Pause TYPE (a task type or a scheduled tag, `module:name`): none of its runs
    /// start until it is resumed.
    Pause {
        /// The full type name or tag, `module:name`.
        task_type: String,
        /// Print JSON (`{"kind", "name", "paused", "changed"}`) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Resume TYPE: its waiting tasks run again; a scheduled tag runs once for the
    /// ticks it missed.
    Resume {
        /// The full type name or tag, `module:name`.
        task_type: String,
        /// Print JSON (`{"kind", "name", "paused", "changed"}`) instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a cluster command.
pub async fn clusters(database: &str, cmd: ClustersCommand) -> Result<(), Failure> {
    let store = Store::open(database).await?;
    match cmd {
        ClustersCommand::List { json } => list_clusters(&store, json).await,
        ClustersCommand::Pause { cluster, json } => {
            pause(&store, PauseTarget::Cluster(cluster), json).await
        }
        ClustersCommand::Resume { cluster, json } => {
            resume(&store, PauseTarget::Cluster(cluster), json).await
        }
    }
}

/// Runs a task type command.
pub async fn types(database: &str, cmd: TypesCommand) -> Result<(), Failure> {
    let store = Store::open(database).await?;
    match cmd {
        TypesCommand::List { json } => list_types(&store, json).await,
        TypesCommand::Pause { task_type, json } => {
            pause(&store, PauseTarget::TaskType(task_type), json).await
        }
        TypesCommand::Resume { task_type, json } => {
            resume(&store, PauseTarget::TaskType(task_type), json).await
        }
    }
}

async fn pause(store: &Store, target: PauseTarget, json: bool) -> Result<(), Failure> {
    let changed = store.pause(&target).await.map_err(store_failure)?;
    match (json, changed) {
        (true, _) => println!("{}", pause_json(&target, true, changed)?),
        (false, true) => println!("{target} paused: running tasks finish, no new ones start"),
        (false, false) => println!("{target} was paused already"),
    }
    Ok(())
}

async fn resume(store: &Store, target: PauseTarget, json: bool) -> Result<(), Failure> {
    let changed = store.resume(&target).await.map_err(store_failure)?;
    match (json, changed) {
        (true, _) => println!("{}", pause_json(&target, false, changed)?),
        (false, true) => println!("{target} resumed"),
        (false, false) => println!("{target} was not paused"),
    }
    Ok(())
}

/// A pause or resume as JSON: what, whether it is paused now, and whether this call
/// changed that.
fn pause_json(target: &PauseTarget, paused: bool, changed: bool) -> Result<String, Failure> {
    let (kind, name) = match target {
        PauseTarget::Cluster(name) => ("cluster", name),
        PauseTarget::TaskType(name) => ("type", name),
    };
    to_json(&serde_json::json!({
        "kind": kind,
        "name": name,
        "paused": paused,
        "changed": changed,
    }))
}

async fn list_clusters(store: &Store, json: bool) -> Result<(), Failure> {
    let clusters = store.clusters().await?;
    if json {
        println!("{}", to_json(&clusters)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = clusters
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                match c.paused_since {
                    Some(since) => format!("paused since {}", table::time(since)),
                    None => "running".into(),
                },
                c.live_nodes.to_string(),
                table::short(&c.task_types.join(", "), 60),
            ]
        })
        .collect();
    table::print(&["CLUSTER", "STATE", "LIVE NODES", "TYPES"], &rows);
    Ok(())
}

async fn list_types(store: &Store, json: bool) -> Result<(), Failure> {
    let types = store.types().await?;
    if json {
        println!("{}", to_json(&types)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = types
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                match t.kind {
                    TypeKind::Task => t.cluster.clone().unwrap_or_default(),
                    TypeKind::Scheduled => "(scheduled tag)".into(),
                    TypeKind::Unregistered => "(not registered)".into(),
                },
                match (t.paused_since, t.cluster_paused) {
                    (Some(since), _) => format!("paused since {}", table::time(since)),
                    (None, true) => "held: its cluster is paused".into(),
                    (None, false) => "running".into(),
                },
            ]
        })
        .collect();
    table::print(&["TYPE", "CLUSTER", "STATE"], &rows);
    Ok(())
}
