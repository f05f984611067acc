//! `warren schedule --batch FILE|-`: schedules the tasks of a file of JSON lines, one
//! task per line as the API takes it ([`warren_actors::task_spec`]), blank lines
//! skipped.
//!
//! Every line is read and checked before anything is scheduled — its JSON, its fields,
//! then the task types (once per type and cluster) — and every bad line is reported, in
//! order, as `FILE:LINE: field: message` (`<stdin>` for `-`); one bad line and nothing
//! is scheduled (exit status 2). Otherwise the tasks are scheduled in transactions of
//! [`MAX_BATCH`], and each transaction's ids are printed as it commits (one per line,
//! or one JSON array with `--json`).

use super::tasks::HOW_TO_ALLOW;
use super::Failure;
use std::io::{Read, Write};
use warren::store::Store;
use warren::task::TaskId;
use warren::trace::TraceParent;
use warren_actors::task_spec::{check_task_types, BatchError, SpecError, TaskSpec, MAX_BATCH};

/// The name standard input goes by in messages.
const STDIN: &str = "<stdin>";

/// Reads, checks and schedules the tasks of `source` (a file, or `-` for standard
/// input).
/// `parent` is the trace context of lines that name none (`--traceparent`).
pub async fn schedule(
    database: &str,
    source: &str,
    allow_unknown_type: bool,
    parent: Option<TraceParent>,
    json: bool,
) -> Result<(), Failure> {
    let (name, text) = read(source)?;
    // Every line first: the tasks, and the line each came from.
    let mut specs = Vec::new();
    let mut lines = Vec::new();
    let mut bad: Vec<(usize, String)> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match TaskSpec::from_json_text(line) {
            Ok(mut spec) => {
                if let Some(parent) = parent {
                    spec.trace_from(parent);
                }
                specs.push(spec);
                lines.push(index + 1);
            }
            Err(e) => bad.push((index + 1, located(&name, index + 1, &e))),
        }
    }
    let total = specs.len() + bad.len();
    // Then the task types of the lines that read well, so every bad line is reported.
    let store = Store::open(database).await?;
    let checked = match check_task_types(&store, specs, allow_unknown_type, HOW_TO_ALLOW).await {
        Ok(checked) => Some(checked),
        Err(BatchError::Refused(refused)) => {
            for (i, e) in refused {
                bad.push((lines[i], located(&name, lines[i], &e)));
            }
            None
        }
        Err(BatchError::Store(e)) => return Err(e.into()),
    };
    let Some(checked) = checked.filter(|_| bad.is_empty()) else {
        bad.sort_by_key(|(line, _)| *line);
        return Err(refuse(&name, &bad, total));
    };
    for warning in &checked.warnings {
        eprintln!("warren: warning: {warning}");
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut ids: Vec<TaskId> = Vec::with_capacity(checked.tasks.len());
    for chunk in checked.tasks.chunks(MAX_BATCH) {
        match store.schedule_batch(chunk).await {
            Ok(new) => {
                if !json {
                    print_ids(&mut out, &new)?;
                }
                ids.extend(new);
            }
            Err(e) => {
                if json {
                    print_json(&mut out, &ids)?;
                }
                return Err(Failure::Error(format!(
                    "{e}; {} of the {} tasks of {name} were scheduled (their ids are \
                     printed), the others were not",
                    ids.len(),
                    checked.tasks.len()
                )));
            }
        }
    }
    if json {
        print_json(&mut out, &ids)?;
    }
    Ok(())
}

/// The text of `source`, and its name for messages.
fn read(source: &str) -> Result<(String, String), Failure> {
    let mut text = String::new();
    let name = if source == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| Failure::Invalid(format!("cannot read standard input: {e}")))?;
        STDIN.to_string()
    } else {
        text = std::fs::read_to_string(source)
            .map_err(|e| Failure::Invalid(format!("cannot read {source}: {e}")))?;
        source.to_string()
    };
    Ok((name, text))
}

/// A bad line as reported: `FILE:LINE: field: message`.
fn located(name: &str, line: usize, e: &SpecError) -> String {
    format!("{name}:{line}: {e}")
}

/// Reports every bad line on stderr; the failure sums up.
fn refuse(name: &str, bad: &[(usize, String)], total: usize) -> Failure {
    for (_, message) in bad {
        eprintln!("{message}");
    }
    Failure::Invalid(format!(
        "{} of the {total} tasks of {name} are invalid; nothing was scheduled",
        bad.len()
    ))
}

fn print_ids(out: &mut impl Write, ids: &[TaskId]) -> Result<(), Failure> {
    for id in ids {
        writeln!(out, "{id}").map_err(output_failed)?;
    }
    out.flush().map_err(output_failed)
}

fn print_json(out: &mut impl Write, ids: &[TaskId]) -> Result<(), Failure> {
    serde_json::to_writer(&mut *out, ids).map_err(|e| Failure::Error(e.to_string()))?;
    writeln!(out).map_err(output_failed)?;
    out.flush().map_err(output_failed)
}

fn output_failed(e: std::io::Error) -> Failure {
    Failure::Error(format!("cannot write the ids: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_lines_are_located_by_file_line_and_field() {
        let e = SpecError::in_field("priority", "unknown priority 'x'");
        assert_eq!(
            located("tasks.jsonl", 3, &e),
            "tasks.jsonl:3: priority: unknown priority 'x'"
        );
        assert_eq!(
            located(STDIN, 1, &SpecError::whole("not valid JSON")),
            "<stdin>:1: not valid JSON"
        );
    }
}
