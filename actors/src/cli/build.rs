//! `warren build`: compiles every module's task code ahead of time, so the service
//! starts with a warm component cache.

use super::Failure;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;
use warren::moduledef::{load_modules_dir, LoadOptions, ModuleDefinition, MODULE_DEFINITION_FILE};
use warren::wasm::{
    python_toolkit_spec, ComponentCache, EngineConfig, JsToolkit, Toolkit, ToolkitState, WasmEngine,
};

/// One piece of task code to build.
struct Unit {
    name: String,
    code: PathBuf,
    module_dir: PathBuf,
}

fn units(module: &ModuleDefinition) -> Vec<Unit> {
    let types = module
        .managed
        .iter()
        .chain(&module.ephemeral)
        .map(|t| Unit {
            name: t.task_type.to_string(),
            code: t.code.clone(),
            module_dir: module.dir.clone(),
        });
    let scheduled = module.scheduled.iter().map(|s| Unit {
        name: s.tag.clone(),
        code: s.code.clone(),
        module_dir: module.dir.clone(),
    });
    types.chain(scheduled).collect()
}

/// Builds every task type and scheduled task of the modules in `dir` (a modules folder
/// or one module folder), printing progress.
pub fn run(dir: &Path) -> Result<(), Failure> {
    let opts = LoadOptions::from_process_env();
    let loaded = if dir.join(MODULE_DEFINITION_FILE).exists() {
        vec![warren::moduledef::load_module(dir, &opts)]
    } else {
        load_modules_dir(dir, &opts)
    };
    if loaded.is_empty() {
        return Err(Failure::Invalid(format!(
            "{}: no {MODULE_DEFINITION_FILE} here or in its subfolders",
            dir.display()
        )));
    }
    let mut modules = Vec::new();
    let mut broken = 0;
    for outcome in loaded {
        match outcome {
            Ok(m) => modules.push(m),
            Err(errors) => {
                broken += 1;
                for e in errors {
                    eprintln!("{e}");
                }
            }
        }
    }
    let engine =
        WasmEngine::new(EngineConfig::default()).map_err(|e| Failure::Error(e.to_string()))?;
    let all: Vec<Unit> = modules.iter().flat_map(units).collect();
    if all.iter().any(|u| warren::wasm::is_task_source(&u.code)) {
        if let Some(toolkit) = JsToolkit::locate().and_then(|kit| kit.embedded) {
            install_toolkit(&toolkit, "npm ci");
        }
    }
    if all.iter().any(|u| warren::wasm::is_python_source(&u.code)) {
        if let Some(cache) = ComponentCache::default_dir() {
            install_toolkit(&Toolkit::new(python_toolkit_spec(), &cache), "pip");
        }
    }
    let width = all.len().to_string().len();
    let mut failed = 0;
    for (i, unit) in all.iter().enumerate() {
        let shown = unit
            .code
            .strip_prefix(&unit.module_dir)
            .unwrap_or(&unit.code)
            .display()
            .to_string();
        print!(
            "[{:>width$}/{}] {} ({shown}) … ",
            i + 1,
            all.len(),
            unit.name
        );
        let _ = std::io::stdout().flush();
        let started = Instant::now();
        match engine.load(&unit.name, &unit.code, &unit.module_dir) {
            Ok(code) if code.from_cache => println!("cached"),
            Ok(_) => println!("compiled in {:.1} s", started.elapsed().as_secs_f64()),
            Err(e) => {
                failed += 1;
                println!("failed");
                eprintln!("{e}");
            }
        }
        // Nothing here runs the code: keep only the disk cache, not every component.
        engine.cache().forget_loaded();
    }
    let cache = engine.cache();
    println!(
        "{} built, {failed} failed ({} compiled now); cache: {}",
        all.len() - failed,
        cache.compiles(),
        cache
            .dir()
            .map_or("none (compiled code kept in memory only)".into(), |d| d
                .display()
                .to_string())
    );
    if failed + broken > 0 {
        return Err(Failure::Invalid(format!(
            "{failed} task code file(s) failed to build and {broken} module(s) have errors"
        )));
    }
    Ok(())
}

/// Installs an embedded toolkit (one the engine uses) unless it is installed, saying
/// so (`how`: the installer it runs): the first build on a machine spends most of its
/// time here. A failure is reported; each file that needs it then fails with the
/// reason.
fn install_toolkit(toolkit: &Toolkit, how: &str) {
    if toolkit.state() == ToolkitState::Installed {
        return;
    }
    print!(
        "installing {} into {} ({how}, once) … ",
        toolkit.spec().title,
        toolkit.dir().display()
    );
    let _ = std::io::stdout().flush();
    match toolkit.ensure() {
        Ok(done) => println!("done in {:.1} s", done.took.as_secs_f64()),
        Err(e) => {
            println!("failed");
            eprintln!("warren: {}", warren::wasm::error_chain(&e));
        }
    }
}
