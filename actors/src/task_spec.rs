//! One managed task as a person or a script writes it, shared by the API
//! (`POST /api/tasks`, one object or an array of them) and the command line
//! (`warren schedule`, and `--batch` with one object per line):
//!
//! ```json
//! {"type": "demo:ping", "data": {"ping": 42}, "priority": "interactive" or -100,
//!  "not_before": 1764324000000 or "2025-11-28T10:00:00Z", "timeout_ms": 2500,
//!  "aux_data": {…}, "metadata": {"k": "v"}, "cluster": "default",
//!  "unique_key": "invoice-42", "unique_states": ["completed"], "unique_period_ms": 3600000,
//!  "debounce_ms": 500, "debounce_max_ms": 5000, "allow_unknown_type": false}
//! ```
//!
//! Only `type` is required (`null` counts as absent). [`TaskSpec::from_json`] reads one
//! into a [`NewTask`] and validates it ([`NewTask::validate`]) without a database;
//! [`check_task_types`] then checks a batch's task types against the registry, once
//! per distinct type and cluster, and collects the warnings once each. Errors name the
//! field as the JSON does ([`SpecError`]); the caller says where the task was (`[3]`
//! in an array, `FILE:LINE` in a file).

use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::fmt;
use warren::store::{
    json_kind, NewTask, ScheduleOptions, Store, StoreError, TaskTypeCheck, UniqueParts,
    UniqueStates,
};
use warren::task::{Millis, Priority, TaskType};
use warren::trace::{add_trace, TraceParent, TRACEPARENT};

/// Most tasks one request schedules, and the size of the transactions `warren
/// schedule --batch` schedules in.
pub const MAX_BATCH: usize = 10_000;

/// The fields a task spec may have.
const FIELDS: &str = "type, data, priority, not_before, timeout_ms, aux_data, metadata, cluster, \
     unique_key, unique_states, unique_period_ms, debounce_ms, debounce_max_ms, traceparent, \
     allow_unknown_type";

/// What is wrong with a task spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// The field at fault, as the JSON names it (`priority`, `data`, …); `None` when
    /// the spec as a whole is wrong (not an object, not JSON, an unknown field).
    pub field: Option<&'static str>,
    /// What is wrong, for a person (it reads on its own: "invalid not_before …").
    pub message: String,
}

impl SpecError {
    /// An error in `field`.
    pub fn in_field(field: &'static str, message: impl Into<String>) -> SpecError {
        SpecError {
            field: Some(field),
            message: message.into(),
        }
    }

    /// An error of the spec as a whole.
    pub fn whole(message: impl Into<String>) -> SpecError {
        SpecError {
            field: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.field {
            Some(field) => write!(f, "{field}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for SpecError {}

impl From<StoreError> for SpecError {
    /// The store's refusal of a task ([`NewTask::validate`]): `Invalid` keeps its field.
    fn from(e: StoreError) -> SpecError {
        match e {
            StoreError::Invalid { field, .. } => SpecError::in_field(field, e.to_string()),
            other => SpecError::whole(other.to_string()),
        }
    }
}

/// One task read from its JSON: what to schedule, and whether its type may be one no
/// node has registered.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    /// The task, validated ([`NewTask::validate`]); its cluster is the one asked for.
    pub task: NewTask,
    /// Schedule it even if no node has registered its type.
    pub allow_unknown_type: bool,
}

impl TaskSpec {
    /// Gives the task the trace context `parent` unless it has one (a request's
    /// `traceparent` header, for the tasks of its body).
    pub fn trace_from(&mut self, parent: TraceParent) {
        add_trace(&mut self.task.options.metadata, parent);
    }

    /// Reads a task spec from a JSON object and validates the task.
    pub fn from_json(value: Value) -> Result<TaskSpec, SpecError> {
        let Value::Object(fields) = value else {
            return Err(SpecError::whole(format!(
                "a task must be a JSON object, got {}",
                json_kind(&value)
            )));
        };
        from_object(fields)
    }

    /// Reads a task spec from JSON text (one line of a batch file).
    pub fn from_json_text(text: &str) -> Result<TaskSpec, SpecError> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| SpecError::whole(format!("not valid JSON: {e}")))?;
        TaskSpec::from_json(value)
    }
}

fn from_object(fields: Map<String, Value>) -> Result<TaskSpec, SpecError> {
    let mut task_type = None;
    let mut data = None;
    let mut options = ScheduleOptions::default();
    let mut unique = UniqueParts::default();
    let mut allow_unknown_type = false;
    let mut traceparent = None;
    for (key, value) in fields {
        if value.is_null() {
            continue;
        }
        match key.as_str() {
            "type" => {
                let text = string("type", &value)?;
                task_type = Some(self::task_type(text)?);
            }
            "data" => data = Some(value),
            "priority" => options.priority = Some(priority(&value)?),
            "not_before" => options.not_before = Some(json_instant("not_before", &value)?),
            "timeout_ms" => {
                options.timeout_ms = Some(value.as_i64().ok_or_else(|| {
                    SpecError::in_field(
                        "timeout_ms",
                        format!("invalid timeout_ms {value}: use a whole number of milliseconds"),
                    )
                })?)
            }
            "aux_data" => options.aux_data = Some(value),
            "traceparent" => {
                let text = string("traceparent", &value)?;
                traceparent = Some(text.parse::<TraceParent>().map_err(|e| {
                    SpecError::in_field("traceparent", format!("invalid traceparent: {e}"))
                })?);
            }
            "metadata" => options.metadata = metadata(value)?,
            "cluster" => options.cluster = Some(string("cluster", &value)?.to_string()),
            "unique_key" => unique.key = Some(string("unique_key", &value)?.to_string()),
            "unique_states" => unique.states = Some(unique_states(&value)?),
            "unique_period_ms" => unique.period_ms = Some(whole_ms("unique_period_ms", &value)?),
            "debounce_ms" => unique.debounce_ms = Some(whole_ms("debounce_ms", &value)?),
            "debounce_max_ms" => {
                unique.debounce_max_ms = Some(whole_ms("debounce_max_ms", &value)?)
            }
            "allow_unknown_type" => {
                allow_unknown_type = value.as_bool().ok_or_else(|| {
                    SpecError::in_field(
                        "allow_unknown_type",
                        format!("invalid allow_unknown_type {value}: use true or false"),
                    )
                })?
            }
            other => {
                return Err(SpecError::whole(format!(
                    "unknown field '{other}': a task has {FIELDS}"
                )))
            }
        }
    }
    if let Some(parent) = traceparent {
        // The field wins over a `traceparent` metadata entry.
        options
            .metadata
            .retain(|(key, _)| !key.eq_ignore_ascii_case(TRACEPARENT));
        add_trace(&mut options.metadata, parent);
    }
    options.unique = unique.build().map_err(|e| {
        let field = e.part.api_name();
        SpecError::in_field(field, format!("invalid {field}: {}", e.message))
    })?;
    let task_type = task_type
        .ok_or_else(|| SpecError::in_field("type", "missing type: every task needs one"))?;
    let task = NewTask::new(task_type, data.unwrap_or_else(|| Value::Object(Map::new())))
        .with_options(options);
    task.validate()?;
    Ok(TaskSpec {
        task,
        allow_unknown_type,
    })
}

fn string<'v>(field: &'static str, value: &'v Value) -> Result<&'v str, SpecError> {
    value.as_str().ok_or_else(|| {
        SpecError::in_field(
            field,
            format!(
                "invalid {field}: must be a string, got {}",
                json_kind(value)
            ),
        )
    })
}

/// A whole number of milliseconds.
fn whole_ms(field: &'static str, value: &Value) -> Result<i64, SpecError> {
    value.as_i64().ok_or_else(|| {
        SpecError::in_field(
            field,
            format!("invalid {field} {value}: use a whole number of milliseconds"),
        )
    })
}

/// The states in which a duplicate counts: an array of state names, or one string
/// of them separated by commas.
fn unique_states(value: &Value) -> Result<UniqueStates, SpecError> {
    let bad = |what: String| {
        SpecError::in_field("unique_states", format!("invalid unique_states: {what}"))
    };
    let names: Vec<&str> = match value {
        Value::String(text) => vec![text.as_str()],
        Value::Array(items) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .ok_or_else(|| bad(format!("must hold state names, got {}", json_kind(item))))
            })
            .collect::<Result<_, _>>()?,
        other => {
            return Err(bad(format!(
                "must be an array of state names, got {}",
                json_kind(other)
            )))
        }
    };
    UniqueStates::parse_list(&names.join(",")).map_err(bad)
}

/// Metadata: an object of strings, kept in key order.
fn metadata(value: Value) -> Result<Vec<(String, String)>, SpecError> {
    let bad = |what: String| SpecError::in_field("metadata", format!("invalid metadata: {what}"));
    let Value::Object(map) = value else {
        return Err(bad(format!(
            "must be an object of strings, got {}",
            json_kind(&value)
        )));
    };
    map.into_iter()
        .map(|(key, value)| match value {
            Value::String(text) => Ok((key, text)),
            other => Err(bad(format!(
                "the value of '{key}' must be a string, got {}",
                json_kind(&other)
            ))),
        })
        .collect()
}

/// A task type, `module:type`.
pub fn task_type(text: &str) -> Result<TaskType, SpecError> {
    text.parse()
        .map_err(|e: warren::task::TaskTypeError| SpecError::in_field("type", e.to_string()))
}

/// A priority given as a name (`interactive`) or a number, in JSON.
pub fn priority(value: &Value) -> Result<Priority, SpecError> {
    match value {
        Value::String(text) => priority_text(text),
        other => priority_text(&other.to_string()),
    }
}

/// A priority given as a name (`interactive`) or a number, as text.
pub fn priority_text(text: &str) -> Result<Priority, SpecError> {
    text.parse::<Priority>()
        .map_err(|e| SpecError::in_field("priority", e.to_string()))
}

/// An instant as text: milliseconds since the Unix epoch, or RFC 3339. `field` names
/// the input in the error (a field, a query parameter, a flag).
pub fn instant(field: &'static str, text: &str) -> Result<Millis, SpecError> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<Millis>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            SpecError::in_field(
                field,
                format!(
                    "invalid {field} '{text}': use milliseconds since the Unix epoch or RFC 3339 (2026-11-28T10:00:00Z)"
                ),
            )
        })
}

/// An instant in JSON: a whole number of milliseconds, or text as [`instant`] takes it.
pub fn json_instant(field: &'static str, value: &Value) -> Result<Millis, SpecError> {
    match value {
        Value::Number(n) => n.as_i64().ok_or_else(|| {
            SpecError::in_field(
                field,
                format!("invalid {field} {n}: not whole milliseconds"),
            )
        }),
        Value::String(text) => instant(field, text),
        other => Err(SpecError::in_field(
            field,
            format!("invalid {field} {other}: use milliseconds or RFC 3339 text"),
        )),
    }
}

/// The refusal of a task type no node has registered; `how_to_allow` tells how to
/// schedule it anyway (the API's field, the command line's flag).
pub fn unknown_type(task_type: &TaskType, how_to_allow: &str) -> SpecError {
    SpecError::in_field(
        "type",
        format!(
            "unknown task type '{task_type}': no node has registered it (no module a node \
             has loaded declares it); {how_to_allow}"
        ),
    )
}

/// A batch whose task types passed the check: the tasks, and what the person
/// scheduling them should know.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedBatch {
    /// The tasks in input order, each with the cluster its check looked at (the one
    /// asked for, else its type's registered one, else `default`).
    pub tasks: Vec<NewTask>,
    /// Every distinct warning of the checks (no live node serves a cluster), in the
    /// order first met.
    pub warnings: Vec<String>,
}

/// Why a batch was not scheduled.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// Tasks were refused: their positions in the batch (from 0) and why, in order.
    #[error("{} task(s) refused", .0.len())]
    Refused(Vec<(usize, SpecError)>),
    /// The registry could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks the task types of `specs` against the registry, as every task created from
/// the API or the command line is: a type no node has registered is refused unless the
/// spec or `allow_unknown_type` allows it (`how_to_allow`: see [`unknown_type`]); a
/// cluster no live node serves gives a warning. Each distinct (type, cluster) is
/// checked once, however many tasks share it, and each warning is given once.
pub async fn check_task_types(
    store: &Store,
    specs: Vec<TaskSpec>,
    allow_unknown_type: bool,
    how_to_allow: &str,
) -> Result<CheckedBatch, BatchError> {
    let mut checks: HashMap<(TaskType, Option<String>), TaskTypeCheck> = HashMap::new();
    let mut warnings = Vec::new();
    let mut warned = HashSet::new();
    let mut refused = Vec::new();
    let mut tasks = Vec::with_capacity(specs.len());
    for (index, spec) in specs.into_iter().enumerate() {
        let mut task = spec.task;
        let key = (task.task_type.clone(), task.options.cluster.clone());
        if !checks.contains_key(&key) {
            let check = store.check_task_type(&key.0, key.1.as_deref()).await?;
            for warning in check.warnings() {
                if warned.insert(warning.clone()) {
                    warnings.push(warning);
                }
            }
            checks.insert(key.clone(), check);
        }
        let check = &checks[&key];
        if !check.is_registered() && !allow_unknown_type && !spec.allow_unknown_type {
            refused.push((index, unknown_type(&task.task_type, how_to_allow)));
            continue;
        }
        // The cluster the check looked at (the registration as the database has it now).
        task.options.cluster = Some(check.cluster.clone());
        tasks.push(task);
    }
    if !refused.is_empty() {
        return Err(BatchError::Refused(refused));
    }
    Ok(CheckedBatch { tasks, warnings })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use warren::store::TypeRegistration;

    fn field_of(value: Value) -> Option<&'static str> {
        TaskSpec::from_json(value).unwrap_err().field
    }

    #[test]
    fn a_spec_reads_every_field() {
        let spec = TaskSpec::from_json(json!({
            "type": "demo:ping",
            "data": {"ping": 42},
            "priority": "interactive",
            "not_before": "2025-11-28T10:00:00Z",
            "timeout_ms": 2500,
            "aux_data": {"extra": true},
            "metadata": {"b": "2", "a": "1"},
            "cluster": "mail",
            "allow_unknown_type": true,
        }))
        .unwrap();
        assert!(spec.allow_unknown_type);
        let t = spec.task;
        assert_eq!(t.task_type.as_str(), "demo:ping");
        assert_eq!(t.data, json!({"ping": 42}));
        let o = t.options;
        assert_eq!(o.priority, Some(Priority::INTERACTIVE));
        assert_eq!(o.not_before, Some(1_764_324_000_000));
        assert_eq!(o.timeout_ms, Some(2500));
        assert_eq!(o.aux_data, Some(json!({"extra": true})));
        assert_eq!(
            o.metadata,
            vec![("a".into(), "1".into()), ("b".into(), "2".into())]
        );
        assert_eq!(o.cluster.as_deref(), Some("mail"));
    }

    #[test]
    fn only_the_type_is_required_and_null_is_absent() {
        let spec = TaskSpec::from_json(json!({"type": "demo:ping", "priority": null})).unwrap();
        assert_eq!(spec.task.data, json!({}));
        assert_eq!(spec.task.options, ScheduleOptions::default());
        assert!(!spec.allow_unknown_type);
        let spec =
            TaskSpec::from_json_text(r#"{"type": "a:b", "priority": 5, "not_before": 7}"#).unwrap();
        assert_eq!(spec.task.options.priority, Some(Priority(5)));
        assert_eq!(spec.task.options.not_before, Some(7));
    }

    #[test]
    fn errors_name_the_field_as_the_json_does() {
        let t = |extra: Value| {
            let mut v = json!({"type": "demo:ping"});
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            v
        };
        assert_eq!(field_of(json!({"data": {}})), Some("type"));
        assert_eq!(field_of(json!({"type": "nomodule"})), Some("type"));
        assert_eq!(field_of(json!({"type": 5})), Some("type"));
        assert_eq!(field_of(t(json!({"data": [1]}))), Some("data"));
        assert_eq!(field_of(t(json!({"aux_data": 3}))), Some("aux_data"));
        assert_eq!(field_of(t(json!({"timeout_ms": -1}))), Some("timeout_ms"));
        assert_eq!(field_of(t(json!({"timeout_ms": 1.5}))), Some("timeout_ms"));
        assert_eq!(field_of(t(json!({"priority": "urgent"}))), Some("priority"));
        assert_eq!(field_of(t(json!({"priority": true}))), Some("priority"));
        assert_eq!(
            field_of(t(json!({"not_before": "later"}))),
            Some("not_before")
        );
        assert_eq!(field_of(t(json!({"not_before": 1.5}))), Some("not_before"));
        assert_eq!(
            field_of(t(json!({"cluster": "no spaces"}))),
            Some("cluster")
        );
        assert_eq!(field_of(t(json!({"cluster": 1}))), Some("cluster"));
        assert_eq!(field_of(t(json!({"metadata": {"k": 1}}))), Some("metadata"));
        assert_eq!(
            field_of(t(json!({"metadata": {" ": "v"}}))),
            Some("metadata")
        );
        assert_eq!(
            field_of(t(json!({"allow_unknown_type": "yes"}))),
            Some("allow_unknown_type")
        );
        let e = TaskSpec::from_json(t(json!({"colour": "red"}))).unwrap_err();
        assert_eq!(e.field, None);
        assert!(e.message.contains("unknown field 'colour'"), "{e}");
        let e = TaskSpec::from_json(json!([1])).unwrap_err();
        assert_eq!(
            (e.field, e.message.as_str()),
            (None, "a task must be a JSON object, got an array")
        );
        let e = TaskSpec::from_json_text("{\"type\": ").unwrap_err();
        assert!(e.message.starts_with("not valid JSON"), "{e}");
        let e = TaskSpec::from_json(t(json!({"priority": "urgent"}))).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("priority: unknown priority 'urgent'"),
            "{e}"
        );
    }

    #[test]
    fn instants_are_milliseconds_or_rfc3339() {
        assert_eq!(instant("from", "1764324000000"), Ok(1_764_324_000_000));
        assert_eq!(
            instant("from", "2025-11-28T10:00:00Z"),
            Ok(1_764_324_000_000)
        );
        assert_eq!(
            instant("from", "yesterday").unwrap_err().field,
            Some("from")
        );
        assert_eq!(json_instant("at", &json!(5)), Ok(5));
        assert!(json_instant("at", &json!(1.5)).is_err());
        assert!(json_instant("at", &json!(true)).is_err());
    }

    #[tokio::test]
    async fn types_are_checked_once_per_type_and_cluster_with_warnings_once() {
        let path = std::env::temp_dir().join(format!("warren-task-spec-{}.db", std::process::id()));
        let store = Store::open(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        store
            .register_task_types(&[TypeRegistration::new("demo:ping", "mail")])
            .await
            .unwrap();
        let spec = |v: Value| TaskSpec::from_json(v).unwrap();
        let specs = || {
            vec![
                spec(json!({"type": "demo:ping"})),
                spec(json!({"type": "demo:nope", "cluster": "x"})),
                spec(json!({"type": "demo:ping", "data": {"n": 2}})),
                spec(json!({"type": "demo:nope", "cluster": "x"})),
                spec(json!({"type": "demo:nope", "allow_unknown_type": true})),
            ]
        };
        // Unknown types refused item by item, naming `type`.
        match check_task_types(&store, specs(), false, "say so").await {
            Err(BatchError::Refused(refused)) => {
                let at: Vec<usize> = refused.iter().map(|(i, _)| *i).collect();
                assert_eq!(at, vec![1, 3]);
                assert_eq!(refused[0].1.field, Some("type"));
                assert!(
                    refused[0].1.message.ends_with("; say so"),
                    "{:?}",
                    refused[0]
                );
            }
            other => panic!("{other:?}"),
        }
        // Allowed: every task in its cluster, one warning per unserved cluster.
        let checked = check_task_types(&store, specs(), true, "say so")
            .await
            .unwrap();
        let clusters: Vec<&str> = checked
            .tasks
            .iter()
            .map(|t| t.options.cluster.as_deref().unwrap())
            .collect();
        assert_eq!(clusters, vec!["mail", "x", "mail", "x", "default"]);
        assert_eq!(checked.tasks[2].data, json!({"n": 2}));
        assert_eq!(checked.warnings.len(), 3, "{:?}", checked.warnings);
        assert!(checked.warnings[0].contains("cluster 'mail'"));
        drop(store);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
}
