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
    },
}

/// Checks every path; prints each module's summary or its errors.
/// `maintenance_offset` is the configured offset, used for the next run of tasks in
/// the maintenance zone.
pub fn run(cmd: ModulesCommand, maintenance_offset: Option<u32>) -> Result<(), Failure> {
    let ModulesCommand::Check { paths } = cmd;
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
    let mut broken = 0;
    for outcome in &outcomes {
        match outcome {
            Ok(module) => print_module(module, maintenance_offset),
            Err(errors) => {
                broken += 1;
                print_errors(errors);
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
    let offset = match spec {
        ZoneSpec::Maintenance => match maintenance_offset {
            Some(minutes) => minutes,
            None => return "depends on the maintenance offset stored by the service".into(),
        },
        _ => 0,
    };
    match mask.next_after(Utc::now(), &spec.resolve(offset)) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Secs, true),
        None => "never".into(),
    }
}

fn relative(path: &Path, base: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .display()
        .to_string()
}
