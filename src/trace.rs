//! Traces: the W3C trace context a task is scheduled in, kept with the task, and the
//! names of the spans its runs make.
//!
//! A task's trace context is its `traceparent` metadata entry (the W3C header's text):
//! scheduling fills it in from the span current where the task is scheduled, unless the
//! task has one already (given through the API, the CLI's `--traceparent`, or the
//! `metadata` of `warren_schedule` in SQL). Each run of the task is a span that links
//! to that context, a retry too; task SQL statements and host calls are its children.
//! All of it goes through `tracing`, with OpenTelemetry's context read through
//! tracing-opentelemetry: with no OpenTelemetry layer installed nothing is captured or
//! read. The spans are made whenever a subscriber wants target [`TARGET`]: an
//! embedding application that logs every target at info should turn it off
//! (`warren::trace=off`) unless it exports traces.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use std::fmt;
use std::str::FromStr;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The metadata key that holds a task's trace context.
pub const TRACEPARENT: &str = "traceparent";

/// The `tracing` target of the spans Warren makes for traces (runs, task SQL, host
/// calls): filter it in or out as a whole.
pub const TARGET: &str = "warren::trace";

/// A W3C `traceparent`: the trace and the span a task was scheduled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    trace_id: TraceId,
    span_id: SpanId,
    flags: TraceFlags,
}

/// Why a `traceparent` text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{text}' is not a W3C traceparent ({why}; expected 00-<32 hex digits>-<16 hex digits>-<2 hex digits>)")]
pub struct TraceParentError {
    text: String,
    why: &'static str,
}

impl TraceParent {
    /// The trace context of the span current on this thread, when an OpenTelemetry
    /// layer gives it one.
    pub fn current() -> Option<TraceParent> {
        TraceParent::of_span(&tracing::Span::current())
    }

    /// The trace context of `span`, when an OpenTelemetry layer gives it one.
    pub fn of_span(span: &tracing::Span) -> Option<TraceParent> {
        if span.is_disabled() {
            return None;
        }
        let context = span.context();
        let span_context = context.span().span_context().clone();
        span_context.is_valid().then(|| TraceParent {
            trace_id: span_context.trace_id(),
            span_id: span_context.span_id(),
            flags: span_context.trace_flags(),
        })
    }

    /// Whether the span it names was sampled (its trace is being recorded).
    pub fn is_sampled(&self) -> bool {
        self.flags.is_sampled()
    }

    /// The span it names, as a remote span context (what a link points at).
    pub fn span_context(&self) -> SpanContext {
        SpanContext::new(
            self.trace_id,
            self.span_id,
            self.flags,
            true,
            TraceState::default(),
        )
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            self.trace_id,
            self.span_id,
            self.flags.to_u8()
        )
    }
}

impl FromStr for TraceParent {
    type Err = TraceParentError;

    /// Reads version 00 exactly; a later version's first four fields (it may add
    /// fields after them, as the W3C recommendation allows).
    fn from_str(text: &str) -> Result<TraceParent, TraceParentError> {
        let refuse = |why| TraceParentError {
            text: text.chars().take(80).collect(),
            why,
        };
        let mut parts = text.trim().split('-');
        let (Some(version), Some(trace), Some(span), Some(flags)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(refuse("it has fewer than four fields"));
        };
        let lower_hex = |field: &str, len: usize| {
            field.len() == len
                && field
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        if !lower_hex(version, 2) || version == "ff" {
            return Err(refuse(
                "its version is not two lowercase hex digits below ff",
            ));
        }
        if version == "00" && parts.next().is_some() {
            return Err(refuse("version 00 has exactly four fields"));
        }
        if !lower_hex(trace, 32) || !lower_hex(span, 16) || !lower_hex(flags, 2) {
            return Err(refuse("a field is not lowercase hex of its length"));
        }
        let trace_id = TraceId::from_hex(trace).map_err(|_| refuse("its trace id is not hex"))?;
        let span_id = SpanId::from_hex(span).map_err(|_| refuse("its span id is not hex"))?;
        if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
            return Err(refuse("an id is all zeros"));
        }
        let flags = u8::from_str_radix(flags, 16).map_err(|_| refuse("its flags are not hex"))?;
        Ok(TraceParent {
            trace_id,
            span_id,
            flags: TraceFlags::new(flags),
        })
    }
}

/// Whether `metadata` holds a trace context.
pub fn has_trace(metadata: &[(String, String)]) -> bool {
    metadata
        .iter()
        .any(|(key, _)| key.eq_ignore_ascii_case(TRACEPARENT))
}

/// Adds `parent` to `metadata` as [`TRACEPARENT`], unless it holds a trace context
/// already (one given explicitly wins).
pub fn add_trace(metadata: &mut Vec<(String, String)>, parent: TraceParent) {
    if !has_trace(metadata) {
        metadata.push((TRACEPARENT.to_string(), parent.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_traceparent_reads_and_writes_back_the_same() {
        let parent: TraceParent = SAMPLE.parse().unwrap();
        assert_eq!(parent.to_string(), SAMPLE);
        let context = parent.span_context();
        assert!(context.is_valid() && context.is_remote() && context.is_sampled());
        assert_eq!(
            context.trace_id(),
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
        );
        // A later version may add fields; its first four are read.
        let later: TraceParent = format!("cc{}-what-comes-next", &SAMPLE[2..])
            .parse()
            .unwrap();
        assert_eq!(later, parent);
    }

    #[test]
    fn a_bad_traceparent_is_refused_saying_why() {
        for (bad, why) in [
            ("", "fewer than four fields"),
            ("00-abc", "fewer than four fields"),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "version",
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                "lowercase hex",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
                "lowercase hex",
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                "all zeros",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                "all zeros",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
                "exactly four",
            ),
        ] {
            let e = bad.parse::<TraceParent>().unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
            assert!(e.contains("expected 00-<32 hex digits>"), "{e}");
        }
    }

    #[test]
    fn without_an_opentelemetry_layer_nothing_is_captured() {
        // A subscriber that wants every span (as a log would), but no OpenTelemetry layer.
        use tracing_subscriber::layer::SubscriberExt;
        let logging = tracing_subscriber::registry()
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink));
        tracing::subscriber::with_default(logging, || {
            let span = tracing::info_span!(target: TARGET, "outside").entered();
            assert!(!span.is_disabled(), "the log wants the span");
            assert_eq!(TraceParent::current(), None);
        });
    }

    #[test]
    fn an_explicit_trace_context_wins() {
        let parent: TraceParent = SAMPLE.parse().unwrap();
        let mut metadata = vec![("TraceParent".to_string(), "given".to_string())];
        add_trace(&mut metadata, parent);
        assert_eq!(metadata.len(), 1);
        let mut metadata = Vec::new();
        add_trace(&mut metadata, parent);
        assert_eq!(
            metadata,
            vec![(TRACEPARENT.to_string(), SAMPLE.to_string())]
        );
    }
}
