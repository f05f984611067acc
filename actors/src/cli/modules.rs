//! `warren modules check`: validates module definitions and summarises them.

use super::Failure;
use chrono::{SecondsFormat, Utc};
use clap::Subcommand;
use std::path::{Path, PathBuf};
use warren::cron::ZoneSpec;
use warren::moduledef::{
    load_module, load_modules_dir, DefinitionError, LoadOptions, ModuleDefinition, TaskKind,
    MODULE_DEFINITION_FILE,
};

/// Module commands.
#[derive(Debug, Subcommand)]
pub enum ModulesCommand {
    /// Check module definitions: a modules folder (every subfolder with a
    /// moduledefinition.xml), a module folder, or a moduledefinition.xml file.
    Check {
        /// Folders or files to check.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Print JSON (`{"modules": [...], "errors": ["FILE:LINE:COL: message", ...]}`)
        /// instead of text; the exit status is the same.
        #[arg(long)]
        json: bool,
    },
}

/// Checks every path; prints each module's summary or its errors.
/// `maintenance_offset` is the configured offset, used for the next run of tasks in
/// the maintenance zone.
pub fn run(cmd: ModulesCommand, maintenance_offset: Option<u32>) -> Result<(), Failure> {
    let ModulesCommand::Check { paths, json } = cmd;
    let opts = LoadOptions::from_process_env();
    let mut outcomes = Vec::new();
    for path in &paths {
        if !path.exists() {
            return Err(Failure::Invalid(format!(
                "{}: no such file or folder",
                path.display()
            )));
        }
        if is_modules_folder(path) {
            let loaded = load_modules_dir(path, &opts);
            if loaded.is_empty() {
                return Err(Failure::Invalid(format!(
                    "{}: no {MODULE_DEFINITION_FILE} here or in its subfolders",
                    path.display()
                )));
            }
            outcomes.extend(loaded);
        } else {
            outcomes.push(load_module(path, &opts));
        }
    }
    let broken = outcomes.iter().filter(|o| o.is_err()).count();
    if json {
        let modules: Vec<serde_json::Value> = outcomes
            .iter()
            .filter_map(|o| o.as_ref().ok())
            .map(|m| module_json(m, maintenance_offset))
            .collect();
        let errors: Vec<String> = outcomes
            .iter()
            .filter_map(|o| o.as_ref().err())
            .flatten()
            .map(ToString::to_string)
            .collect();
        println!(
            "{}",
            serde_json::json!({"modules": modules, "errors": errors})
        );
    } else {
        for outcome in &outcomes {
            match outcome {
                Ok(module) => print_module(module, maintenance_offset),
                Err(errors) => print_errors(errors),
            }
        }
    }
    match broken {
        0 => Ok(()),
        n => Err(Failure::Invalid(format!(
            "{n} of {} module(s) have errors and would not load",
            outcomes.len()
        ))),
    }
}

/// A folder holding module folders, rather than a module folder itself.
fn is_modules_folder(path: &Path) -> bool {
    path.is_dir() && !path.join(MODULE_DEFINITION_FILE).exists()
}

fn print_errors(errors: &[DefinitionError]) {
    for e in errors {
        eprintln!("{e}");
    }
}

/// A module's summary as JSON: what `print_module` shows, field by field.
fn module_json(m: &ModuleDefinition, maintenance_offset: Option<u32>) -> serde_json::Value {
    let tasks: Vec<serde_json::Value> = m
        .managed
        .iter()
        .chain(&m.ephemeral)
        .map(|t| {
            let managed = t.kind == TaskKind::Managed;
            serde_json::json!({
                "kind": t.kind.to_string(),
                "type": t.task_type.to_string(),
                "cluster": t.cluster,
                "priority": t.priority,
                "timeout_ms": t.timeout_ms,
                "code": relative(&t.code, &m.dir),
                "max_failures": managed.then_some(t.retry.max_failures),
                "retry": managed.then(|| t.retry.describe()),
                "concurrency": t.concurrency.as_ref().map(ToString::to_string),
                "rate_limit": t.rate_limit.as_ref().map(ToString::to_string),
            })
        })
        .collect();
    let scheduled: Vec<serde_json::Value> = m
        .scheduled
        .iter()
        .map(|s| {
            serde_json::json!({
                "tag": s.tag.to_string(),
                "runat": s.runat.as_ref().map(ToString::to_string),
                "runtz": s.runtz.to_string(),
                // An instant, or null: by hand only, never, or not known here (the
                // maintenance zone without a configured offset).
                "next": s.runat.as_ref().and_then(|mask| next_instant(mask, s.runtz, maintenance_offset)),
            })
        })
        .collect();
    serde_json::json!({
        "name": m.name,
        "file": m.file,
        "clusters": m.clusters.iter().map(|c| serde_json::json!({"tag": c.tag, "workers": c.workers})).collect::<Vec<_>>(),
        "tasks": tasks,
        "scheduled": scheduled,
    })
}

fn print_module(m: &ModuleDefinition, maintenance_offset: Option<u32>) {
    println!("module {} ({})", m.name, m.file.display());
    for c in &m.clusters {
        println!("  cluster {:<28} workers {}", c.tag, c.workers);
    }
    for t in m.managed.iter().chain(&m.ephemeral) {
        let timeout = match t.timeout_ms {
            0 => "none".to_string(),
            ms => format!("{ms} ms"),
        };
        println!(
            "  {:<9} {:<28} cluster {}, priority {}, timeout {}, code {}",
            t.kind.to_string(),
            t.task_type.to_string(),
            t.cluster,
            t.priority,
            timeout,
            relative(&t.code, &m.dir)
        );
        if t.kind == TaskKind::Managed {
            let retries = match t.retry.max_failures {
                -1 => "retried forever".to_string(),
                0 => "never retried".to_string(),
                n => format!("up to {n} failures"),
            };
            println!("            retry: {retries}, {}", t.retry.describe());
            if let Some(limit) = &t.concurrency {
                println!("            concurrency: {limit}");
            }
            if let Some(rate) = &t.rate_limit {
                println!("            rate limit: {rate}");
            }
        }
    }
    for s in &m.scheduled {
        let when = match &s.runat {
            None => "only when run by hand".to_string(),
            Some(mask) => format!(
                "runat '{mask}' {}, next {}",
                s.runtz,
                next_run(mask, s.runtz, maintenance_offset)
            ),
        };
        println!("  scheduled {:<28} {when}", s.tag);
    }
}

fn next_run(
    mask: &warren::cron::CronMask,
    spec: ZoneSpec,
    maintenance_offset: Option<u32>,
) -> String {
    if spec == ZoneSpec::Maintenance && maintenance_offset.is_none() {
        return "depends on the maintenance offset stored by the service".into();
    }
    next_instant(mask, spec, maintenance_offset).unwrap_or_else(|| "never".into())
}

/// The next fire time (RFC 3339), or `None` when there is none or it depends on a
/// maintenance offset that is not configured here.
fn next_instant(
    mask: &warren::cron::CronMask,
    spec: ZoneSpec,
    maintenance_offset: Option<u32>,
) -> Option<String> {
    let offset = match spec {
        ZoneSpec::Maintenance => maintenance_offset?,
        _ => 0,
    };
    mask.next_after(Utc::now(), &spec.resolve(offset))
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

fn relative(path: &Path, base: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .display()
        .to_string()
}
