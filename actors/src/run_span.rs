//! The span of a run (see `warren::trace`): what it carries, what it links to, and how
//! the run ended. Task SQL statements and host calls are its children (made by the
//! engine's host while the run's future runs inside this span).

use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use warren::store::RunOutcome;
use warren::task::{Resolution, TaskId};
use warren::trace::{TraceParent, TARGET};
use warren::wasm::{FailureCause, RunEnd};

/// The span of one run of `name` (a task type or a scheduled tag): `kind` is
/// `managed`, `ephemeral` or `scheduled`; a managed run has its task's id and the
/// attempt it is (1 for the first run).
pub(crate) fn run_span(
    kind: &'static str,
    name: &str,
    task: Option<TaskId>,
    attempt: Option<i64>,
) -> tracing::Span {
    tracing::info_span!(
        target: TARGET,
        "warren.run",
        otel.name = %format_args!("run {name}"),
        otel.kind = "consumer",
        warren.run.kind = kind,
        task.id = task.map(|id| id.0),
        task.type = name,
        task.attempt = attempt,
        task.outcome = Empty,
        otel.status_description = Empty,
    )
}

/// Whether an OpenTelemetry layer records `span`, sampled (only then is a run's trace
/// context worth reading).
pub(crate) fn is_traced(span: &tracing::Span) -> bool {
    TraceParent::of_span(span).is_some_and(|span| span.is_sampled())
}

/// Links the run's span to the context its task was scheduled in.
pub(crate) fn link_to(span: &tracing::Span, parent: TraceParent) {
    span.add_link(parent.span_context());
}

/// Records how the run ended: its outcome, and an error status for a failure.
pub(crate) fn record_end(span: &tracing::Span, end: &RunEnd) {
    let (outcome, error) = match end {
        RunEnd::Resolved(resolution) => (
            resolution.kind(),
            match resolution {
                Resolution::PermanentFailure { error, .. }
                | Resolution::TemporaryFailure { error, .. } => Some(error.as_str()),
                _ => None,
            },
        ),
        RunEnd::Failed { error, cause, .. } => (failure_name(*cause), Some(error.as_str())),
    };
    span.record("task.outcome", outcome);
    if let Some(error) = error {
        // (An OpenTelemetry layer reads a description as an error status.)
        span.record("otel.status_description", error);
    }
}

/// Records what a managed run's end stored: its outcome as its history names it, and
/// an error status with the error, when there is one.
pub(crate) fn record_settled(span: &tracing::Span, outcome: RunOutcome, error: Option<&str>) {
    span.record("task.outcome", outcome.as_str());
    if let Some(error) = error {
        span.record("otel.status_description", error);
    }
}

/// Records that the run did not start (no code, no VM, no database).
pub(crate) fn record_not_started(span: &tracing::Span, why: &dyn std::fmt::Display) {
    span.record("task.outcome", "not started");
    span.record("otel.status_description", tracing::field::display(why));
}

fn failure_name(cause: FailureCause) -> &'static str {
    match cause {
        FailureCause::Trapped => "trap",
        FailureCause::TimedOut => "timeout",
        FailureCause::Killed => "killed",
        FailureCause::OutOfMemory => "out of memory",
        FailureCause::Retired => "retired",
    }
}
