//! `warren toolkit install|status|types`: the JavaScript toolkit this binary carries,
//! installed ahead of time (otherwise it is installed when JavaScript is first
//! compiled) and reported (what is embedded, what is installed where), and the kit's
//! TypeScript types for authors' editors and `tsc`.

use super::Failure;
use clap::{Subcommand, ValueEnum};
use std::path::Path;
use warren::wasm::{
    error_chain, installed_toolkits, js_toolkit_spec, python_toolkit_spec, ComponentCache,
    JsEngine, JsToolkit, Toolkit, ToolkitState, JS_KIT_TYPES,
};

/// The JavaScript engine a toolkit is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineArg {
    /// QuickJS (the default; about 40 MB of packages).
    Quickjs,
    /// StarlingMonkey (about 340 MB of packages).
    Starlingmonkey,
}

impl From<EngineArg> for JsEngine {
    fn from(e: EngineArg) -> JsEngine {
        match e {
            EngineArg::Quickjs => JsEngine::QuickJs,
            EngineArg::Starlingmonkey => JsEngine::StarlingMonkey,
        }
    }
}

/// Toolkit commands.
#[derive(Debug, Subcommand)]
pub enum ToolkitCommand {
    /// Install the embedded JavaScript toolkit under the cache folder now (with `npm
    /// ci`; needs Node.js 18 or later and npm), instead of when JavaScript is first
    /// compiled.
    Install {
        /// The engine to install it for (default: $WARREN_JS_ENGINE, else quickjs).
        #[arg(long, value_enum)]
        engine: Option<EngineArg>,
    },
    /// Say which toolkits are embedded (their hashes), what is installed where, and
    /// which JavaScript toolkit `warren serve` would use.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the kit's TypeScript types (`warren.d.ts`), or write them to `--out`:
    /// map the module name `warren` to that file in a module's tsconfig.json
    /// (`"paths": {"warren": ["./types/warren.d.ts"]}`) to type-check `.ts` tasks.
    Types {
        /// The file to write (its folder is created); default: standard output.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
}

/// Runs a toolkit command.
pub fn run(cmd: ToolkitCommand) -> Result<(), Failure> {
    match cmd {
        ToolkitCommand::Install { engine } => install(&cache_folder()?, engine),
        ToolkitCommand::Status { json } => status(&cache_folder()?, json),
        ToolkitCommand::Types { out } => types(out.as_deref()),
    }
}

/// The cache folder toolkits are installed in.
fn cache_folder() -> Result<std::path::PathBuf, Failure> {
    ComponentCache::default_dir().ok_or_else(|| {
        Failure::Invalid(
            "no usable cache folder to install toolkits in: set WARREN_CACHE_DIR to a folder \
             of your own (not writable by others)"
                .into(),
        )
    })
}

/// Prints the kit's types, or writes them to `out`.
fn types(out: Option<&Path>) -> Result<(), Failure> {
    let Some(out) = out else {
        print!("{JS_KIT_TYPES}");
        return Ok(());
    };
    let written = out
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(out, JS_KIT_TYPES));
    written.map_err(|e| Failure::Error(format!("cannot write {}: {e}", out.display())))?;
    eprintln!("wrote the kit's types to {}", out.display());
    Ok(())
}

fn install(cache: &Path, engine: Option<EngineArg>) -> Result<(), Failure> {
    let engine = engine
        .map(JsEngine::from)
        .unwrap_or_else(JsEngine::from_env);
    let toolkit = Toolkit::new(js_toolkit_spec(engine), cache);
    if toolkit.state() != ToolkitState::Installed {
        eprintln!(
            "installing {} into {} (npm ci) …",
            toolkit.spec().title,
            toolkit.dir().display()
        );
    }
    let ensured = toolkit
        .ensure()
        .map_err(|e| Failure::Error(error_chain(&e)))?;
    if ensured.installed_now {
        println!(
            "installed {} in {:.1} s: {}",
            toolkit.spec().title,
            ensured.took.as_secs_f64(),
            ensured.workdir.display()
        );
    } else {
        println!(
            "{} is installed: {}",
            toolkit.spec().title,
            ensured.workdir.display()
        );
    }
    if let Some(dir) = std::env::var_os("WARREN_JS_KIT").filter(|v| !v.is_empty()) {
        println!(
            "note: WARREN_JS_KIT={} is set, so warren uses that folder instead",
            Path::new(&dir).display()
        );
    }
    Ok(())
}

fn status(cache: &Path, json: bool) -> Result<(), Failure> {
    let mut embedded = Vec::new();
    let specs = [
        js_toolkit_spec(JsEngine::QuickJs),
        js_toolkit_spec(JsEngine::StarlingMonkey),
        python_toolkit_spec(),
    ];
    for spec in specs {
        let toolkit = Toolkit::new(spec, cache);
        let (state, at) = match toolkit.state() {
            ToolkitState::Installed => ("installed", Some(toolkit.workdir())),
            ToolkitState::Missing => ("missing", None),
            ToolkitState::Damaged => ("damaged", Some(toolkit.dir().to_path_buf())),
        };
        embedded.push((toolkit, state, at));
    }
    let ours: Vec<_> = embedded
        .iter()
        .map(|(t, ..)| t.dir().to_path_buf())
        .collect();
    let others: Vec<_> = installed_toolkits(cache)
        .into_iter()
        .filter(|t| !ours.contains(&t.dir))
        .collect();
    let in_use = JsToolkit::locate_in(cache);
    let engine = match in_use.engine {
        JsEngine::QuickJs => "QuickJS",
        JsEngine::StarlingMonkey => "StarlingMonkey",
    };
    if json {
        let value = serde_json::json!({
            "cache": cache,
            "embedded": embedded.iter().map(|(t, state, at)| serde_json::json!({
                "name": t.spec().name,
                "title": t.spec().title,
                "hash": t.hash(),
                "state": state,
                "dir": at,
            })).collect::<Vec<_>>(),
            "javascript_in_use": match &in_use.embedded {
                Some(_) => serde_json::json!({"embedded": true, "engine": engine}),
                None => serde_json::json!({"embedded": false, "dir": in_use.dir}),
            },
            "other_versions": others.iter().map(|o| serde_json::json!({
                "name": o.name, "hash": o.hash, "dir": o.dir,
            })).collect::<Vec<_>>(),
        });
        println!("{value}");
        return Ok(());
    }
    println!("cache folder: {}", cache.display());
    for (toolkit, state, at) in &embedded {
        let state = match (*state, at) {
            ("installed", Some(at)) => format!("installed at {}", at.display()),
            ("damaged", Some(at)) => {
                format!("damaged (reinstalled on next use) at {}", at.display())
            }
            _ => "not installed".to_string(),
        };
        println!(
            "{} (embedded, hash {}): {state}",
            toolkit.spec().title,
            toolkit.hash()
        );
    }
    match &in_use.embedded {
        Some(_) => println!(
            "JavaScript in use: the embedded toolkit ({engine}), installed when JavaScript is first compiled"
        ),
        None => println!("JavaScript in use: {} (from WARREN_JS_KIT)", in_use.dir.display()),
    }
    for other in others {
        println!(
            "other version: {} ({}, hash {}; not used by this warren, may be deleted)",
            other.dir.display(),
            other.name,
            other.hash
        );
    }
    Ok(())
}
