//! Module definitions: reading and validating a module's `moduledefinition.xml`.
//!
//! A module is a folder holding a `moduledefinition.xml` and the code of its tasks. The
//! file declares the module's task types, worker clusters and scheduled tasks inside a
//! `<servicemanager>` section; every other section of `<module>` is ignored, so a module
//! may carry more than Warren reads:
//!
//! ```xml
//! <module name="mymodule">                <!-- name optional: defaults to the folder name -->
//!   <servicemanager>
//!     <taskcluster tag="mail" workers="4"/>
//!     <managedtask type="sendmail" code="tasks/sendmail.wasm" cluster="mail"
//!                  priority="interactive" timeout="30000" failreschedule="60000"
//!                  maxfailures="5" description="Sends one e-mail"/>
//!     <ephemeraltask type="compile" code="tasks/compile.wasm" timeout="30000"/>
//!     <task tag="mondays" runat="0 15 * * 1" runtz="Europe/Amsterdam"
//!           code="tasks/mondays.wasm" runatstartup="false" timeout="60">
//!       <arg>--full</arg>
//!     </task>
//!   </servicemanager>
//! </module>
//! ```
//!
//! | element | attributes (default) |
//! |---|---|
//! | `<managedtask>` | `type` (required; full name `module:type`), code, `cluster` (`default`), `priority` (name or integer; `normal`), `timeout` (ms, 0 = none; 0), `maxtransaction` (ms the run's database transaction may stay open, from its first database call, 0 = no limit; 10 min), `failreschedule` (ms, 1 to one day; 15 min), `maxfailures` (-1 = retry forever; -1), `backoff` (`exponential`, `linear` or `constant`; exponential: the reference rule, doubling six times, then one day), `backoffmax` (ms, at least `failreschedule`, up to a year; none), `backoffjitter` (a fraction from 0.0 to 1.0; 0), `concurrency` (most tasks of the type running at once across all nodes, 1 to 100000; none), `concurrencykey` (a top-level data field: the limit holds per value of it; needs `concurrency`), `ratelimit` (most starts across all nodes, `N/s`, `N/m` or `N/h`; none), `ratelimitkey` (a top-level data field: the rate holds per value of it; needs `ratelimit`, and must be `concurrencykey` when both are given), `ratelimitburst` (most starts at once after a quiet spell, 1 to 1000000; a second's worth, at least 1), `memorylimit` (MiB of guest memory, 1 to 4096; 256), `description` |
//! | `<ephemeraltask>` | as `<managedtask>` without the retry attributes (`failreschedule`, `maxfailures`, `backoff`, `backoffmax`, `backoffjitter`): ephemeral tasks are never retried; and without `concurrency`, `concurrencykey`, `ratelimit`, `ratelimitkey`, `ratelimitburst`: they are not queued |
//! | `<taskcluster>` | `tag` (required), `workers` (1 to [`MAX_CLUSTER_WORKERS`]; 1) |
//! | `<task>` | `tag` (required; full tag `module:tag`), code, `runat` (5-field cron mask; none = runs only when triggered by hand), `runtz` (`UTC`, an IANA zone or `maintenance`; UTC), `runatstartup` (`true`/`false`/`1`/`0`; false), `timeout` (minutes, 0 = none; 60), `maxtransaction` (as for `<managedtask>`), `description`, and `<arg>` children (their text, exactly as written, entities decoded) |
//!
//! *Code* is the `code` attribute, or one of its aliases `objectname` and `script` (so
//! seed-style files load): exactly one of them. It is a path relative to the module folder
//! that must stay inside the folder and name an existing file, also once symbolic links
//! are resolved (a linked file or folder leading outside the module is an error).
//!
//! **Applicability.** Every element above also accepts `ifenvironset="VAR"` (the element
//! applies only when the environment variable `VAR` is set to a non-empty value) and
//! `unlessenvironset="VAR"` (it applies only when `VAR` is unset or empty). Both may be
//! given; then both must hold. The environment is read at load time through
//! [`LoadOptions::env`], so tests inject their own. An element that does not apply is still
//! fully validated (a typo is an error on every server) but is left out of the result.
//! Uniqueness of types, tags and cluster tags is checked among the elements that apply, so
//! two alternatives guarded by opposite conditions may share a name.
//!
//! **Clusters.** A cluster named `default` with one worker exists implicitly unless the
//! module declares it; a task type's cluster must be declared (and apply) or be `default`.
//!
//! **Errors.** Unknown attributes (outside any XML namespace) and unknown elements inside
//! `<servicemanager>` are errors, so typos such as `maxfailure` do not pass silently. Every
//! error carries `file:line:col` (1-based): the attribute's value for a bad value, the
//! attribute's name for an attribute that is not allowed, the element otherwise. All errors
//! of a module are collected, and a module with any error loads nothing.

use crate::cron::{CronMask, ZoneSpec};
use crate::flow::ConcurrencyLimit;
use crate::rate_limit::{Rate, RateLimit};
use crate::retry::{Backoff, RetryPolicy, RETRY_CAP_MS};
use crate::task::{
    is_valid_name_part, Priority, TaskType, DEFAULT_FAIL_RESCHEDULE_MS, DEFAULT_MAX_FAILURES,
};
use roxmltree::{Attribute, Document, Node};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

/// The file name a module folder must contain.
pub const MODULE_DEFINITION_FILE: &str = "moduledefinition.xml";

pub use crate::task::DEFAULT_CLUSTER;

/// Workers of the implicit [`DEFAULT_CLUSTER`] (and of a `<taskcluster>` without `workers`).
pub const DEFAULT_CLUSTER_WORKERS: u32 = 1;

/// Most workers a cluster may ask for; a guard against typos such as `workers="1000000"`.
pub const MAX_CLUSTER_WORKERS: u32 = 1024;

/// Default linear-memory cap of a task's WebAssembly instance, in MiB.
pub const DEFAULT_MEMORY_LIMIT_MB: u32 = 256;

/// Largest `memorylimit` accepted, in MiB (a 32-bit guest cannot address more).
pub const MAX_MEMORY_LIMIT_MB: u32 = 4096;

/// `maxtransaction` when absent: ten minutes, long enough for real batch work, short
/// enough that a stuck run cannot hold PostgreSQL's vacuum back for hours.
pub const DEFAULT_MAX_TRANSACTION_MS: u64 = 10 * 60 * 1000;
/// Longest `failreschedule` accepted: one day, the retry rule's own ceiling.
pub const MAX_FAIL_RESCHEDULE_MS: i64 = 24 * 60 * 60 * 1000;

/// Longest `backoffmax` accepted: one year.
pub const MAX_BACKOFF_MAX_MS: i64 = 365 * 24 * 60 * 60 * 1000;

/// Timeout of a scheduled `<task>` without a `timeout` attribute, in minutes (the reference's).
pub const DEFAULT_SCHEDULED_TIMEOUT_MINUTES: u64 = 60;

/// A place in a definition file, for error messages and for tools that point users at a
/// declaration. `line` and `col` are 1-based; a `line` of 0 means "the file as a whole"
/// (it could not be read), and then only the file is displayed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    /// The definition file.
    pub file: PathBuf,
    /// Line, 1-based (0 = no position).
    pub line: u32,
    /// Column in characters, 1-based (0 = no position).
    pub col: u32,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file.display())
        } else {
            write!(f, "{}:{}:{}", self.file.display(), self.line, self.col)
        }
    }
}

/// One problem found in a module definition, displayed as `file:line:col: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionError {
    /// Where the problem is.
    pub location: Location,
    /// What is wrong, in words meant for the module's author.
    pub message: String,
}

impl fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

impl std::error::Error for DefinitionError {}

/// Whether a task type is queued in the database or runs in memory for a waiting caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskKind {
    /// `<managedtask>`: durable, run in a transaction, retried by the retry rule.
    Managed,
    /// `<ephemeraltask>`: in memory only, never retried.
    Ephemeral,
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TaskKind::Managed => "managed",
            TaskKind::Ephemeral => "ephemeral",
        })
    }
}

/// A task type declared by `<managedtask>` or `<ephemeraltask>`.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskTypeDef {
    /// Full name, `module:type`.
    pub task_type: TaskType,
    /// Managed or ephemeral.
    pub kind: TaskKind,
    /// The task's code: the module folder joined with the (normalised) relative path.
    pub code: PathBuf,
    /// Cluster whose workers run it (a tag of this module, or [`DEFAULT_CLUSTER`]).
    pub cluster: String,
    /// Queue priority; lower runs first.
    pub priority: Priority,
    /// Run time limit in milliseconds; 0 = none.
    pub timeout_ms: u64,
    /// Longest the run's database transaction may stay open, in milliseconds
    /// (`maxtransaction`); 0 = no limit.
    pub max_transaction_ms: u64,
    /// How failed runs are retried (`failreschedule`, `maxfailures`, `backoff`,
    /// `backoffmax`, `backoffjitter`). Ephemeral tasks are never retried: their
    /// `max_failures` is 0 and their first delay 0.
    pub retry: RetryPolicy,
    /// Linear-memory cap of the task's WebAssembly instance, in MiB (`memorylimit`).
    pub memory_limit_mb: u32,
    /// How many of its tasks may run at once across all nodes (`concurrency`,
    /// `concurrencykey`); `None`: no limit but the clusters' workers.
    pub concurrency: Option<ConcurrencyLimit>,
    /// How often its tasks may start across all nodes (`ratelimit`, `ratelimitkey`,
    /// `ratelimitburst`); `None`: no limit.
    pub rate_limit: Option<RateLimit>,
    /// Free text for dashboards.
    pub description: Option<String>,
    /// The declaring element.
    pub location: Location,
}

/// A group of workers declared by `<taskcluster>` (or the implicit `default` one).
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterDef {
    /// The cluster's tag, as written (not prefixed with the module name).
    pub tag: String,
    /// How many tasks of this cluster may run at once.
    pub workers: u32,
    /// The declaring element; for the implicit `default` cluster, the `<module>` element.
    pub location: Location,
}

/// A scheduled task declared by `<task>`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledTaskDef {
    /// Full tag, `module:tag`.
    pub tag: String,
    /// The task's code: the module folder joined with the (normalised) relative path.
    pub code: PathBuf,
    /// When it runs; `None` = only when triggered by hand.
    pub runat: Option<CronMask>,
    /// The zone `runat` is read in.
    pub runtz: ZoneSpec,
    /// Whether it also runs once when the service starts.
    pub run_at_startup: bool,
    /// Free text for dashboards.
    pub description: Option<String>,
    /// Run time limit in milliseconds (declared in minutes); 0 = none.
    pub timeout_ms: u64,
    /// Longest the run's database transaction may stay open, in milliseconds
    /// (`maxtransaction`); 0 = no limit.
    pub max_transaction_ms: u64,
    /// Linear-memory cap of the task's WebAssembly instance, in MiB (`memorylimit`).
    pub memory_limit_mb: u32,
    /// The `<arg>` texts, in order.
    pub args: Vec<String>,
    /// The declaring element.
    pub location: Location,
}

/// Everything a module declares that Warren uses, after validation.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleDefinition {
    /// Module name: the `name` attribute of `<module>`, else the folder name.
    pub name: String,
    /// The module folder; code paths are inside it.
    pub dir: PathBuf,
    /// The definition file read.
    pub file: PathBuf,
    /// Where the name is declared (the `name` value, else the `<module>` element).
    pub location: Location,
    /// `<managedtask>` types that apply, in document order.
    pub managed: Vec<TaskTypeDef>,
    /// `<ephemeraltask>` types that apply, in document order.
    pub ephemeral: Vec<TaskTypeDef>,
    /// Declared clusters that apply, in document order, followed by the implicit
    /// `default` cluster unless it was declared.
    pub clusters: Vec<ClusterDef>,
    /// `<task>`s that apply, in document order.
    pub scheduled: Vec<ScheduledTaskDef>,
}

impl ModuleDefinition {
    /// The managed or ephemeral type with this full name, if this module declares it.
    pub fn task_type(&self, name: &TaskType) -> Option<&TaskTypeDef> {
        self.managed
            .iter()
            .chain(self.ephemeral.iter())
            .find(|t| &t.task_type == name)
    }

    /// Workers of the cluster with this tag; 0 when the module has no such cluster.
    pub fn cluster_workers(&self, tag: &str) -> u32 {
        self.clusters
            .iter()
            .find(|c| c.tag == tag)
            .map(|c| c.workers)
            .unwrap_or(0)
    }

    /// The scheduled task with this full tag (`module:tag`), if declared.
    pub fn scheduled_task(&self, tag: &str) -> Option<&ScheduledTaskDef> {
        self.scheduled.iter().find(|t| t.tag == tag)
    }
}

/// How definitions are loaded. The environment lookup decides `ifenvironset` and
/// `unlessenvironset`; it is injectable so tests need not touch the process environment.
#[derive(Clone, Copy)]
pub struct LoadOptions<'a> {
    /// Returns the value of an environment variable, `None` when unset.
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl LoadOptions<'static> {
    /// Options reading the real process environment.
    pub fn from_process_env() -> LoadOptions<'static> {
        LoadOptions { env: &process_env }
    }
}

impl<'a> LoadOptions<'a> {
    /// Options reading the environment through `env`.
    pub fn with_env(env: &'a dyn Fn(&str) -> Option<String>) -> LoadOptions<'a> {
        LoadOptions { env }
    }

    /// Whether `name` is set to a non-empty value.
    fn is_set(&self, name: &str) -> bool {
        (self.env)(name).is_some_and(|v| !v.is_empty())
    }
}

impl Default for LoadOptions<'static> {
    /// Same as [`LoadOptions::from_process_env`].
    fn default() -> Self {
        LoadOptions::from_process_env()
    }
}

impl fmt::Debug for LoadOptions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadOptions").finish_non_exhaustive()
    }
}

/// Loads one module. `path` is the module folder (holding `moduledefinition.xml`) or the
/// definition file itself; the folder is then the file's parent.
pub fn load_module(
    path: &Path,
    opts: &LoadOptions,
) -> Result<ModuleDefinition, Vec<DefinitionError>> {
    let (file, dir) = if path.is_dir() {
        (path.join(MODULE_DEFINITION_FILE), path.to_path_buf())
    } else {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        (path.to_path_buf(), dir)
    };
    let bytes = std::fs::read(&file).map_err(|e| {
        vec![DefinitionError {
            location: whole_file(&file),
            message: format!("cannot read the module definition: {e}"),
        }]
    })?;
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let valid = std::str::from_utf8(valid).unwrap_or_default();
            let (line, col) = end_position(valid);
            return Err(vec![DefinitionError {
                location: Location { file, line, col },
                message: "the file is not valid UTF-8".to_string(),
            }]);
        }
    };
    parse_module(&text, &file, &dir, opts)
}

/// Parses and validates a definition given as text. `file` is used in locations; `dir` is
/// the module folder (code paths are checked against it; its name is the default module
/// name).
pub fn parse_module(
    xml: &str,
    file: &Path,
    dir: &Path,
    opts: &LoadOptions,
) -> Result<ModuleDefinition, Vec<DefinitionError>> {
    let doc = match Document::parse(xml) {
        Ok(d) => d,
        Err(e) => return Err(vec![xml_error(xml, file, &e)]),
    };
    let mut p = Parser {
        doc: &doc,
        file,
        dir,
        opts,
        errors: Vec::new(),
    };
    let module = p.module();
    let mut errors = p.errors;
    match module {
        Some(m) if errors.is_empty() => Ok(m),
        _ => {
            if errors.is_empty() {
                // Not expected: every path that builds no module reports why.
                errors.push(DefinitionError {
                    location: whole_file(file),
                    message: "the module definition could not be read".to_string(),
                });
            }
            errors.sort_by_key(|e| (e.location.line, e.location.col));
            Err(errors)
        }
    }
}

/// Loads every immediate subfolder of `dir` that has a `moduledefinition.xml`, sorted by
/// folder name, each with its own outcome (a broken module does not stop the others). A
/// module whose name was already loaded from an earlier folder is an error. A `dir` that
/// cannot be read gives a single error.
pub fn load_modules_dir(
    dir: &Path,
    opts: &LoadOptions,
) -> Vec<Result<ModuleDefinition, Vec<DefinitionError>>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            return vec![Err(vec![DefinitionError {
                location: whole_file(dir),
                message: format!("cannot read the modules folder: {e}"),
            }])]
        }
    };
    let mut folders: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir() && p.join(MODULE_DEFINITION_FILE).is_file())
        .collect();
    folders.sort();
    let mut seen: HashMap<String, PathBuf> = HashMap::new();
    folders
        .iter()
        .map(|folder| {
            let module = load_module(folder, opts)?;
            if let Some(first) = seen.get(&module.name) {
                return Err(vec![DefinitionError {
                    location: module.location.clone(),
                    message: format!(
                        "duplicate module name '{}': already loaded from {}",
                        module.name,
                        first.display()
                    ),
                }]);
            }
            seen.insert(module.name.clone(), module.file.clone());
            Ok(module)
        })
        .collect()
}

fn whole_file(file: &Path) -> Location {
    Location {
        file: file.to_path_buf(),
        line: 0,
        col: 0,
    }
}

/// Line and column (1-based, in characters) just after the end of `text`.
fn end_position(text: &str) -> (u32, u32) {
    let line = 1 + text.matches('\n').count();
    let last = text.rsplit('\n').next().unwrap_or("");
    (line as u32, 1 + last.chars().count() as u32)
}

fn xml_error(xml: &str, file: &Path, e: &roxmltree::Error) -> DefinitionError {
    use roxmltree::Error as E;
    let (line, col) = match e {
        // These carry no real position: the problem shows at the end of the text.
        E::UnclosedRootNode | E::UnexpectedEndOfStream | E::NoRootNode => end_position(xml),
        _ => (e.pos().row, e.pos().col),
    };
    // roxmltree puts the position in its message; ours is in the location already.
    let text = e.to_string().replace(&format!(" at {}", e.pos()), "");
    DefinitionError {
        location: Location {
            file: file.to_path_buf(),
            line,
            col,
        },
        message: format!("XML syntax error: {text}"),
    }
}

/// Attributes of `<managedtask>`.
const MANAGED_ATTRS: &[&str] = &[
    "type",
    "code",
    "objectname",
    "script",
    "cluster",
    "priority",
    "timeout",
    "maxtransaction",
    "memorylimit",
    "failreschedule",
    "maxfailures",
    "backoff",
    "backoffmax",
    "backoffjitter",
    "concurrency",
    "concurrencykey",
    "ratelimit",
    "ratelimitkey",
    "ratelimitburst",
    "description",
    "ifenvironset",
    "unlessenvironset",
];
/// Attributes of `<managedtask>` about retries, which `<ephemeraltask>` refuses.
const RETRY_ATTRS: &[&str] = &[
    "failreschedule",
    "maxfailures",
    "backoff",
    "backoffmax",
    "backoffjitter",
];
/// Attributes of `<ephemeraltask>`.
const EPHEMERAL_ATTRS: &[&str] = &[
    "type",
    "code",
    "objectname",
    "script",
    "cluster",
    "priority",
    "timeout",
    "maxtransaction",
    "memorylimit",
    "description",
    "ifenvironset",
    "unlessenvironset",
];
/// Attributes of `<taskcluster>`.
const CLUSTER_ATTRS: &[&str] = &["tag", "workers", "ifenvironset", "unlessenvironset"];
/// Attributes of `<task>`.
const SCHEDULED_ATTRS: &[&str] = &[
    "tag",
    "code",
    "objectname",
    "script",
    "runat",
    "runtz",
    "runatstartup",
    "timeout",
    "maxtransaction",
    "memorylimit",
    "description",
    "ifenvironset",
    "unlessenvironset",
];
/// The code attribute and its aliases, in the order they are looked for.
const CODE_ATTRS: [&str; 3] = ["code", "objectname", "script"];
/// Elements allowed in `<servicemanager>`.
const SERVICE_ELEMENTS: &[&str] = &["managedtask", "ephemeraltask", "taskcluster", "task"];

/// One parsed element, before the checks that span elements.
struct Item<T> {
    /// The definition; `None` when the element had errors.
    def: Option<T>,
    /// Whether its applicability attributes hold.
    applies: bool,
    /// Its (local) name and the offset of the name's value, when the name is valid.
    name: Option<(String, usize)>,
    /// Its cluster and the offset of the cluster value (task types naming one).
    cluster: Option<(String, usize)>,
}

struct Parser<'a, 'input> {
    doc: &'a Document<'input>,
    file: &'a Path,
    dir: &'a Path,
    opts: &'a LoadOptions<'a>,
    errors: Vec<DefinitionError>,
}

impl<'a, 'input> Parser<'a, 'input> {
    fn location(&self, offset: usize) -> Location {
        let pos = self.doc.text_pos_at(offset);
        Location {
            file: self.file.to_path_buf(),
            line: pos.row,
            col: pos.col,
        }
    }

    fn error(&mut self, offset: usize, message: String) {
        let location = self.location(offset);
        self.errors.push(DefinitionError { location, message });
    }

    fn element_error(&mut self, node: Node, message: String) {
        self.error(node.range().start, message);
    }

    fn value_error(&mut self, attr: &Attribute, message: String) {
        self.error(attr.range_value().start, message);
    }

    /// The whole module; `None` when something stopped a definition from being built
    /// (always accompanied by an error).
    fn module(&mut self) -> Option<ModuleDefinition> {
        let root = self.doc.root_element();
        if root.tag_name().name() != "module" {
            self.element_error(
                root,
                format!(
                    "the root element must be <module>, not <{}>",
                    root.tag_name().name()
                ),
            );
            return None;
        }
        let (name, name_offset) = self.module_name(root);

        let mut managed = Vec::new();
        let mut ephemeral = Vec::new();
        let mut clusters = Vec::new();
        let mut scheduled = Vec::new();
        for section in root
            .children()
            .filter(|n| n.is_element() && n.tag_name().name() == "servicemanager")
        {
            self.check_attributes(section, &[], None);
            for child in section.children() {
                if child.is_text() {
                    self.check_text(child, "servicemanager");
                    continue;
                }
                if !child.is_element() {
                    continue;
                }
                match child.tag_name().name() {
                    "managedtask" => {
                        managed.push(self.task_type(child, TaskKind::Managed, name.as_deref()))
                    }
                    "ephemeraltask" => {
                        ephemeral.push(self.task_type(child, TaskKind::Ephemeral, name.as_deref()))
                    }
                    "taskcluster" => clusters.push(self.cluster(child)),
                    "task" => scheduled.push(self.scheduled(child, name.as_deref())),
                    other => {
                        let hint = match suggest(other, SERVICE_ELEMENTS) {
                            Some(s) => format!("did you mean <{s}>?"),
                            None => "expected managedtask, ephemeraltask, taskcluster or task"
                                .to_string(),
                        };
                        self.element_error(
                            child,
                            format!("unknown element <{other}> in <servicemanager> ({hint})"),
                        );
                    }
                }
            }
        }

        // Cluster tags: unique among the clusters that apply.
        let mut applying_clusters: HashMap<String, usize> = HashMap::new();
        let mut declared_clusters: HashSet<String> = HashSet::new();
        for item in &clusters {
            let Some((tag, offset)) = &item.name else {
                continue;
            };
            declared_clusters.insert(tag.clone());
            if item.applies {
                self.check_unique(&mut applying_clusters, tag, *offset, "cluster");
            }
        }

        // Task types: unique among managed and ephemeral types that apply, and each
        // naming a cluster that exists.
        let mut types: HashMap<String, usize> = HashMap::new();
        for item in managed.iter().chain(ephemeral.iter()) {
            if let (true, Some((name, offset))) = (item.applies, &item.name) {
                self.check_unique(&mut types, name, *offset, "task type");
            }
            let Some((cluster, offset)) = &item.cluster else {
                continue;
            };
            if cluster == DEFAULT_CLUSTER {
                continue;
            }
            if !declared_clusters.contains(cluster) {
                self.error(
                    *offset,
                    format!(
                        "unknown cluster '{cluster}': declare it with <taskcluster tag=\"{cluster}\"/> or use '{DEFAULT_CLUSTER}'"
                    ),
                );
            } else if item.applies && !applying_clusters.contains_key(cluster) {
                self.error(
                    *offset,
                    format!(
                        "cluster '{cluster}' is declared but does not apply here (its ifenvironset/unlessenvironset condition does not hold)"
                    ),
                );
            }
        }

        // Scheduled tags: unique among the tasks that apply.
        let mut tags: HashMap<String, usize> = HashMap::new();
        for item in &scheduled {
            if let (true, Some((tag, offset))) = (item.applies, &item.name) {
                self.check_unique(&mut tags, tag, *offset, "task tag");
            }
        }

        if !self.errors.is_empty() {
            return None;
        }
        let name = name?;
        let location = self.location(name_offset);
        let mut clusters: Vec<ClusterDef> = applying(clusters);
        if !clusters.iter().any(|c| c.tag == DEFAULT_CLUSTER) {
            clusters.push(ClusterDef {
                tag: DEFAULT_CLUSTER.to_string(),
                workers: DEFAULT_CLUSTER_WORKERS,
                location: self.location(root.range().start),
            });
        }
        Some(ModuleDefinition {
            name,
            dir: self.dir.to_path_buf(),
            file: self.file.to_path_buf(),
            location,
            managed: applying(managed),
            ephemeral: applying(ephemeral),
            clusters,
            scheduled: applying(scheduled),
        })
    }

    /// The module's name and the offset to report it at.
    fn module_name(&mut self, root: Node) -> (Option<String>, usize) {
        if let Some(attr) = attribute(root, "name") {
            let value = attr.value();
            if is_valid_name_part(value) {
                return (Some(value.to_string()), attr.range_value().start);
            }
            self.value_error(&attr, format!("invalid module name '{value}': {NAME_RULE}"));
            return (None, 0);
        }
        let folder = self
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .or_else(|| {
                self.dir
                    .canonicalize()
                    .ok()?
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
            });
        match folder {
            Some(n) if is_valid_name_part(&n) => (Some(n), root.range().start),
            Some(n) => {
                self.element_error(
                    root,
                    format!(
                        "<module> has no name attribute and its folder name '{n}' is not a valid module name ({NAME_RULE}): add name=\"...\""
                    ),
                );
                (None, 0)
            }
            None => {
                self.element_error(
                    root,
                    "<module> has no name attribute and no folder name to use: add name=\"...\""
                        .to_string(),
                );
                (None, 0)
            }
        }
    }

    fn check_unique(
        &mut self,
        seen: &mut HashMap<String, usize>,
        name: &str,
        offset: usize,
        what: &str,
    ) {
        if let Some(first) = seen.get(name) {
            let first = self.doc.text_pos_at(*first);
            self.error(
                offset,
                format!("duplicate {what} '{name}' (already declared at {first})"),
            );
        } else {
            seen.insert(name.to_string(), offset);
        }
    }

    /// Reports attributes outside `allowed` (namespaced attributes are left alone).
    /// `retry_only` names the attributes that are refused because the element is never
    /// retried (ephemeral tasks).
    fn check_attributes(&mut self, node: Node, allowed: &[&str], retry_only: Option<&[&str]>) {
        let element = node.tag_name().name();
        for attr in node.attributes() {
            if attr.namespace().is_some() || allowed.contains(&attr.name()) {
                continue;
            }
            let name = attr.name();
            let message = if retry_only.is_some_and(|r| r.contains(&name)) {
                format!(
                    "attribute '{name}' is not allowed on <{element}>: ephemeral tasks are never retried"
                )
            } else if allowed.is_empty() {
                format!("unknown attribute '{name}' on <{element}> (it takes no attributes)")
            } else if let Some(s) = suggest(name, allowed) {
                format!("unknown attribute '{name}' on <{element}> (did you mean '{s}'?)")
            } else {
                format!(
                    "unknown attribute '{name}' on <{element}> (allowed: {})",
                    allowed.join(", ")
                )
            };
            self.error(attr.range().start, message);
        }
    }

    /// Non-blank text where only elements belong.
    fn check_text(&mut self, node: Node, parent: &str) {
        if node.text().is_some_and(|t| !t.trim().is_empty()) {
            // Point at the first visible character, not at the whitespace before it.
            let range = node.range();
            let source = &self.doc.input_text()[range.clone()];
            let blank = source.len() - source.trim_start().len();
            self.error(
                range.start + blank,
                format!("unexpected text inside <{parent}>"),
            );
        }
    }

    /// Reports child elements and text of an element that takes neither.
    fn check_empty(&mut self, node: Node) {
        let element = node.tag_name().name();
        for child in node.children() {
            if child.is_element() {
                self.element_error(
                    child,
                    format!(
                        "unexpected element <{}> inside <{element}> (it takes no child elements)",
                        child.tag_name().name()
                    ),
                );
            } else if child.is_text() {
                self.check_text(child, element);
            }
        }
    }

    /// A required name attribute (`type`, `tag`): its value and the value's offset.
    fn required_name(
        &mut self,
        node: Node,
        attr_name: &str,
        what: &str,
    ) -> Option<(String, usize)> {
        let Some(attr) = attribute(node, attr_name) else {
            self.element_error(
                node,
                format!(
                    "<{}> is missing the required attribute '{attr_name}'",
                    node.tag_name().name()
                ),
            );
            return None;
        };
        self.name_value(&attr, what)
    }

    fn name_value(&mut self, attr: &Attribute, what: &str) -> Option<(String, usize)> {
        let value = attr.value();
        if is_valid_name_part(value) {
            Some((value.to_string(), attr.range_value().start))
        } else {
            self.value_error(attr, format!("invalid {what} '{value}': {NAME_RULE}"));
            None
        }
    }

    /// `ifenvironset` / `unlessenvironset`: whether the element applies here.
    fn applies(&mut self, node: Node) -> bool {
        let mut applies = true;
        for (attr_name, wanted) in [("ifenvironset", true), ("unlessenvironset", false)] {
            let Some(attr) = attribute(node, attr_name) else {
                continue;
            };
            let var = attr.value();
            let valid = !var.is_empty()
                && !var
                    .chars()
                    .any(|c| c.is_whitespace() || c == '=' || c == '\0');
            if !valid {
                self.value_error(
                    &attr,
                    format!("invalid {attr_name} '{var}': expected one environment variable name"),
                );
            } else if self.opts.is_set(var) != wanted {
                applies = false;
            }
        }
        applies
    }

    /// The element's code attribute (or alias), checked and joined to the module folder.
    fn code(&mut self, node: Node) -> Option<PathBuf> {
        let given: Vec<Attribute> = CODE_ATTRS
            .iter()
            .filter_map(|n| attribute(node, n))
            .collect();
        let Some(attr) = given.first() else {
            self.element_error(
                node,
                format!(
                    "<{}> needs its code: add a 'code' attribute (or its alias 'objectname' or 'script')",
                    node.tag_name().name()
                ),
            );
            return None;
        };
        if let Some(extra) = given.get(1) {
            self.value_error(
                extra,
                format!(
                    "give only one of 'code', 'objectname' and 'script': '{}' repeats '{}'",
                    extra.name(),
                    attr.name()
                ),
            );
            return None;
        }
        let value = attr.value();
        let relative = match relative_code_path(value) {
            Ok(p) => p,
            Err(message) => {
                self.value_error(attr, message);
                return None;
            }
        };
        let full = self.dir.join(&relative);
        match std::fs::metadata(&full) {
            Ok(m) if m.is_file() => match self.resolved_inside(&full) {
                Ok(()) => Some(full),
                Err(message) => {
                    self.value_error(attr, format!("code path '{value}' {message}"));
                    None
                }
            },
            Ok(_) => {
                self.value_error(
                    attr,
                    format!("code path '{value}' is not a file ({})", full.display()),
                );
                None
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.value_error(
                    attr,
                    format!(
                        "code file '{value}' not found (looked for {})",
                        full.display()
                    ),
                );
                None
            }
            Err(e) => {
                self.value_error(
                    attr,
                    format!(
                        "code file '{value}' cannot be read ({}): {e}",
                        full.display()
                    ),
                );
                None
            }
        }
    }

    /// Checks that `full` (an existing file) really is inside the module folder once
    /// symbolic links are resolved, so a linked file or folder cannot lead outside.
    fn resolved_inside(&self, full: &Path) -> Result<(), String> {
        let real = full
            .canonicalize()
            .map_err(|e| format!("cannot be resolved ({}): {e}", full.display()))?;
        let dir = self
            .dir
            .canonicalize()
            .map_err(|e| format!("cannot be checked: the module folder cannot be resolved: {e}"))?;
        if real.starts_with(&dir) {
            Ok(())
        } else {
            Err(format!(
                "leads outside the module folder through a symbolic link (to {})",
                real.display()
            ))
        }
    }

    /// The `memorylimit` attribute (MiB), or the default.
    fn memory_limit(&mut self, node: Node) -> u32 {
        self.integer(
            node,
            "memorylimit",
            DEFAULT_MEMORY_LIMIT_MB,
            1,
            MAX_MEMORY_LIMIT_MB,
            "a whole number of MiB from 1 to 4096",
        )
    }

    /// An optional integer attribute in `min..=max`; `default` when absent or invalid
    /// (an invalid value is reported).
    fn integer<T>(
        &mut self,
        node: Node,
        name: &str,
        default: T,
        min: T,
        max: T,
        expected: &str,
    ) -> T
    where
        T: FromStr + PartialOrd + Copy,
    {
        let Some(attr) = attribute(node, name) else {
            return default;
        };
        let value = attr.value();
        match value.trim().parse::<T>() {
            Ok(v) if v >= min && v <= max => v,
            _ => {
                self.value_error(
                    &attr,
                    format!("invalid {name} '{value}': expected {expected}"),
                );
                default
            }
        }
    }

    fn boolean(&mut self, node: Node, name: &str, default: bool) -> bool {
        let Some(attr) = attribute(node, name) else {
            return default;
        };
        match attr.value() {
            "true" | "1" => true,
            "false" | "0" => false,
            other => {
                self.value_error(
                    &attr,
                    format!("invalid {name} '{other}': expected true, false, 1 or 0"),
                );
                default
            }
        }
    }

    /// The retry attributes of a `<managedtask>`.
    fn retry_policy(&mut self, node: Node) -> RetryPolicy {
        let errors_before = self.errors.len();
        let fail_reschedule_ms = self.integer(
            node,
            "failreschedule",
            DEFAULT_FAIL_RESCHEDULE_MS,
            1,
            MAX_FAIL_RESCHEDULE_MS,
            "a whole number of milliseconds from 1 to 86400000 (one day)",
        );
        // A bad failreschedule is reported once, not again as a bound of backoffmax.
        let fail_reschedule_valid = self.errors.len() == errors_before;
        let max_failures = self.integer(
            node,
            "maxfailures",
            DEFAULT_MAX_FAILURES,
            -1,
            i32::MAX,
            "-1 (retry forever) or a whole number of 0 or more",
        );
        let backoff = match attribute(node, "backoff") {
            Some(attr) => attr.value().parse::<Backoff>().unwrap_or_else(|e| {
                self.value_error(&attr, format!("invalid backoff: {e}"));
                Backoff::default()
            }),
            None => Backoff::default(),
        };
        let backoff_max_ms = attribute(node, "backoffmax").map(|attr| {
            let max = self.integer(
                node,
                "backoffmax",
                RETRY_CAP_MS,
                1,
                MAX_BACKOFF_MAX_MS,
                "a whole number of milliseconds from 1 to 31536000000 (one year)",
            );
            if fail_reschedule_valid && max < fail_reschedule_ms {
                self.value_error(
                    &attr,
                    format!(
                        "backoffmax {max} is shorter than failreschedule {fail_reschedule_ms}: \
                         the first retry would already wait longer than the maximum"
                    ),
                );
            }
            max
        });
        let jitter_permille = match attribute(node, "backoffjitter") {
            Some(attr) => match attr.value().trim().parse::<f64>() {
                Ok(x) if (0.0..=1.0).contains(&x) => (x * 1000.0).round() as u16,
                _ => {
                    self.value_error(
                        &attr,
                        format!(
                            "invalid backoffjitter '{}': expected a fraction from 0.0 to 1.0 \
                             (0.25 moves each delay by up to 25% either way)",
                            attr.value()
                        ),
                    );
                    0
                }
            },
            None => 0,
        };
        RetryPolicy {
            fail_reschedule_ms,
            max_failures,
            backoff,
            backoff_max_ms,
            jitter_permille,
        }
    }

    /// `concurrency` and `concurrencykey` of a `<managedtask>`: a key needs a limit.
    fn concurrency(&mut self, node: Node) -> Option<ConcurrencyLimit> {
        let key = attribute(node, "concurrencykey").and_then(|attr| {
            match crate::flow::check_key_field(attr.value()) {
                Ok(()) => Some((attr.value().to_string(), attr)),
                Err(e) => {
                    self.value_error(
                        &attr,
                        format!("invalid concurrencykey '{}': {e}", attr.value()),
                    );
                    None
                }
            }
        });
        let limit = attribute(node, "concurrency").map(|_| {
            self.integer(
                node,
                "concurrency",
                1,
                1,
                crate::flow::MAX_CONCURRENCY,
                "a whole number of running tasks from 1 to 100000",
            )
        });
        match (limit, key) {
            (Some(limit), key) => Some(ConcurrencyLimit {
                limit,
                key: key.map(|(k, _)| k),
            }),
            (None, Some((_, attr))) => {
                self.value_error(
                    &attr,
                    "concurrencykey needs concurrency: say how many tasks may run at once per key"
                        .to_string(),
                );
                None
            }
            (None, None) => None,
        }
    }

    /// `ratelimit`, `ratelimitkey` and `ratelimitburst` of a `<managedtask>`: a key or a
    /// burst needs a rate, and a type with both rules keys them by one field (one key
    /// per task holds both).
    fn rate_limit(
        &mut self,
        node: Node,
        concurrency: Option<&ConcurrencyLimit>,
    ) -> Option<RateLimit> {
        let mut key_invalid = false;
        let key =
            attribute(node, "ratelimitkey").and_then(|attr| {
                match crate::flow::check_key_field(attr.value()) {
                    Ok(()) => Some((attr.value().to_string(), attr)),
                    Err(e) => {
                        self.value_error(
                            &attr,
                            format!("invalid ratelimitkey '{}': {e}", attr.value()),
                        );
                        key_invalid = true;
                        None
                    }
                }
            });
        let rate = attribute(node, "ratelimit").map(|attr| {
            let rate = attr.value().parse::<Rate>();
            if let Err(e) = &rate {
                self.value_error(&attr, format!("invalid ratelimit '{}': {e}", attr.value()));
            }
            (rate.ok(), attr)
        });
        let burst = attribute(node, "ratelimitburst").map(|attr| {
            let burst = self.integer(
                node,
                "ratelimitburst",
                1,
                1,
                crate::rate_limit::MAX_BURST,
                "a whole number of starts from 1 to 1000000",
            );
            (burst, attr)
        });
        let Some((rate, rate_attr)) = rate else {
            for (name, attr) in [
                ("ratelimitkey", key.map(|(_, a)| a)),
                ("ratelimitburst", burst.map(|(_, a)| a)),
            ] {
                if let Some(attr) = attr {
                    self.value_error(
                        &attr,
                        format!("{name} needs ratelimit: say how many tasks may start per second, minute or hour (for example ratelimit=\"20/s\")"),
                    );
                }
            }
            return None;
        };
        let key_attr = key.as_ref().map(|(_, a)| *a);
        let key = key.map(|(k, _)| k);
        if key_invalid {
            return None;
        }
        if let Some(concurrency) = concurrency {
            if concurrency.key != key {
                let say = |k: &Option<String>| match k {
                    Some(k) => format!("'{k}'"),
                    None => "none".to_string(),
                };
                self.value_error(
                    &key_attr.unwrap_or(rate_attr),
                    format!(
                        "ratelimitkey ({}) must be the field concurrencykey names ({}): a type with both rules counts both per value of one field",
                        say(&key),
                        say(&concurrency.key)
                    ),
                );
                return None;
            }
        }
        let mut limit = RateLimit::new(rate?, key);
        if let Some((burst, _)) = burst {
            limit.burst = burst;
        }
        Some(limit)
    }

    /// `maxtransaction`: milliseconds, 0 = no limit; ten minutes when absent.
    fn max_transaction(&mut self, node: Node) -> u64 {
        self.integer(
            node,
            "maxtransaction",
            DEFAULT_MAX_TRANSACTION_MS,
            0,
            i64::MAX as u64,
            "a whole number of milliseconds (0 = no limit)",
        )
    }

    fn priority(&mut self, node: Node) -> Priority {
        let Some(attr) = attribute(node, "priority") else {
            return Priority::default();
        };
        match attr.value().parse::<Priority>() {
            Ok(p) => p,
            Err(e) => {
                self.value_error(&attr, e.to_string());
                Priority::default()
            }
        }
    }

    /// `<managedtask>` or `<ephemeraltask>`.
    fn task_type(&mut self, node: Node, kind: TaskKind, module: Option<&str>) -> Item<TaskTypeDef> {
        let errors_before = self.errors.len();
        match kind {
            TaskKind::Managed => self.check_attributes(node, MANAGED_ATTRS, None),
            TaskKind::Ephemeral => self.check_attributes(node, EPHEMERAL_ATTRS, Some(RETRY_ATTRS)),
        }
        self.check_empty(node);
        let applies = self.applies(node);
        let name = self.required_name(node, "type", "task type name");
        let task_type = match (module, &name) {
            (Some(module), Some((type_name, offset))) => match TaskType::new(module, type_name) {
                Ok(t) => Some(t),
                Err(e) => {
                    self.error(*offset, e.to_string());
                    None
                }
            },
            _ => None,
        };
        let code = self.code(node);
        let cluster = match attribute(node, "cluster") {
            Some(attr) => self.name_value(&attr, "cluster name"),
            None => None,
        };
        let priority = self.priority(node);
        let timeout_ms = self.integer(
            node,
            "timeout",
            0,
            0,
            i64::MAX as u64,
            "a whole number of milliseconds (0 = no timeout)",
        );
        let memory_limit_mb = self.memory_limit(node);
        let max_transaction_ms = self.max_transaction(node);
        let retry = match kind {
            TaskKind::Managed => self.retry_policy(node),
            TaskKind::Ephemeral => RetryPolicy::reference(0, 0),
        };
        let concurrency = self.concurrency(node);
        let rate_limit = self.rate_limit(node, concurrency.as_ref());
        let description = attribute(node, "description").map(|a| a.value().to_string());
        let def = match (task_type, code, self.errors.len() == errors_before) {
            (Some(task_type), Some(code), true) => Some(TaskTypeDef {
                task_type,
                kind,
                code,
                cluster: cluster
                    .as_ref()
                    .map(|(c, _)| c.clone())
                    .unwrap_or_else(|| DEFAULT_CLUSTER.to_string()),
                priority,
                timeout_ms,
                max_transaction_ms,
                retry,
                memory_limit_mb,
                concurrency,
                rate_limit,
                description,
                location: self.location(node.range().start),
            }),
            _ => None,
        };
        Item {
            def,
            applies,
            name,
            cluster,
        }
    }

    /// `<taskcluster>`.
    fn cluster(&mut self, node: Node) -> Item<ClusterDef> {
        let errors_before = self.errors.len();
        self.check_attributes(node, CLUSTER_ATTRS, None);
        self.check_empty(node);
        let applies = self.applies(node);
        let name = self.required_name(node, "tag", "cluster tag");
        let workers = self.integer(
            node,
            "workers",
            DEFAULT_CLUSTER_WORKERS,
            1,
            MAX_CLUSTER_WORKERS,
            "a whole number of workers from 1 to 1024",
        );
        let def = match (&name, self.errors.len() == errors_before) {
            (Some((tag, _)), true) => Some(ClusterDef {
                tag: tag.clone(),
                workers,
                location: self.location(node.range().start),
            }),
            _ => None,
        };
        Item {
            def,
            applies,
            name,
            cluster: None,
        }
    }

    /// `<task>` (a scheduled task) and its `<arg>`s.
    fn scheduled(&mut self, node: Node, module: Option<&str>) -> Item<ScheduledTaskDef> {
        let errors_before = self.errors.len();
        self.check_attributes(node, SCHEDULED_ATTRS, None);
        let applies = self.applies(node);
        let name = self.required_name(node, "tag", "task tag");
        let code = self.code(node);
        let runat = match attribute(node, "runat") {
            None => None,
            Some(attr) if attr.value().trim().is_empty() => {
                self.value_error(
                    &attr,
                    "runat is empty: leave it out for a task that runs only when triggered by hand"
                        .to_string(),
                );
                None
            }
            Some(attr) => match CronMask::parse(attr.value()) {
                Ok(mask) => Some(mask),
                Err(e) => {
                    // The cron error may repeat the mask; it is in our message already.
                    let text = e.to_string();
                    let repeated = format!("invalid cron mask '{}': ", attr.value().trim());
                    let reason = text.strip_prefix(&repeated).unwrap_or(&text);
                    self.value_error(&attr, format!("invalid runat '{}': {reason}", attr.value()));
                    None
                }
            },
        };
        let runtz = match attribute(node, "runtz") {
            None => ZoneSpec::Utc,
            Some(attr) => match ZoneSpec::parse(attr.value()) {
                Ok(zone) => zone,
                Err(e) => {
                    self.value_error(&attr, format!("invalid runtz '{}': {e}", attr.value()));
                    ZoneSpec::Utc
                }
            },
        };
        let run_at_startup = self.boolean(node, "runatstartup", false);
        let memory_limit_mb = self.memory_limit(node);
        let max_transaction_ms = self.max_transaction(node);
        let minutes = self.integer(
            node,
            "timeout",
            DEFAULT_SCHEDULED_TIMEOUT_MINUTES,
            0,
            u64::MAX / 60_000,
            "a whole number of minutes (0 = no timeout)",
        );
        let description = attribute(node, "description").map(|a| a.value().to_string());
        let mut args = Vec::new();
        for child in node.children() {
            if child.is_text() {
                self.check_text(child, "task");
            } else if child.is_element() && child.tag_name().name() == "arg" {
                self.check_attributes(child, &[], None);
                let mut text = String::new();
                for part in child.children() {
                    if part.is_element() {
                        self.element_error(
                            part,
                            format!(
                                "unexpected element <{}> inside <arg> (an argument is text only)",
                                part.tag_name().name()
                            ),
                        );
                    } else if let Some(t) = part.text() {
                        text.push_str(t);
                    }
                }
                args.push(text);
            } else if child.is_element() {
                self.element_error(
                    child,
                    format!(
                        "unexpected element <{}> inside <task> (only <arg> is allowed)",
                        child.tag_name().name()
                    ),
                );
            }
        }
        let def = match (module, &name, code, self.errors.len() == errors_before) {
            (Some(module), Some((tag, _)), Some(code), true) => Some(ScheduledTaskDef {
                tag: format!("{module}:{tag}"),
                code,
                runat,
                runtz,
                run_at_startup,
                description,
                timeout_ms: minutes * 60_000,
                max_transaction_ms,
                memory_limit_mb,
                args,
                location: self.location(node.range().start),
            }),
            _ => None,
        };
        Item {
            def,
            applies,
            name,
            cluster: None,
        }
    }
}

/// What a valid module, type, tag or cluster name looks like (see `is_valid_name_part`).
const NAME_RULE: &str = "use only letters, digits, '_', '-' and '.'";

/// The attribute `name` outside any namespace.
fn attribute<'a, 'input>(node: Node<'a, 'input>, name: &str) -> Option<Attribute<'a, 'input>> {
    node.attributes()
        .find(|a| a.namespace().is_none() && a.name() == name)
}

/// The definitions of the items that apply (all of them are built when there were no
/// errors).
fn applying<T>(items: Vec<Item<T>>) -> Vec<T> {
    items
        .into_iter()
        .filter(|i| i.applies)
        .filter_map(|i| i.def)
        .collect()
}

/// Checks a code path lexically: relative, and not leaving the module folder through `..`.
/// Returns it without `.` and resolved `..` components.
fn relative_code_path(value: &str) -> Result<PathBuf, String> {
    if value.trim().is_empty() {
        return Err("code path is empty".to_string());
    }
    let path = Path::new(value);
    let mut out = PathBuf::new();
    let mut depth = 0usize;
    for component in path.components() {
        match component {
            Component::Normal(part) => {
                out.push(part);
                depth += 1;
            }
            Component::CurDir => {}
            Component::ParentDir => {
                if depth == 0 {
                    return Err(format!(
                        "code path '{value}' leads outside the module folder"
                    ));
                }
                out.pop();
                depth -= 1;
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "code path '{value}' must be relative to the module folder"
                ));
            }
        }
    }
    Ok(out)
}

/// The candidate closest to a misspelt `word` (at most two edits away), for hints.
fn suggest<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}
