//! `warren serve`'s trace export: OTLP over HTTP (protobuf) when the standard
//! OpenTelemetry variables ask for it, nothing otherwise (the run spans are then
//! disabled: no layer wants them, and no task's trace context is read).
//!
//! The variables: `OTEL_EXPORTER_OTLP_ENDPOINT` (or `…_TRACES_ENDPOINT`) turns export on;
//! `OTEL_EXPORTER_OTLP_HEADERS`, `…_TIMEOUT`, `OTEL_SERVICE_NAME` (default `warren`)
//! and `OTEL_RESOURCE_ATTRIBUTES` are read by the exporter and the SDK;
//! `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn it off. This build
//! speaks `http/protobuf` to `http://` endpoints (a collector beside the node); it has
//! no TLS and no gRPC, and says so when asked for them.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;

/// The variables that turn export on.
const ENDPOINTS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// Whether the environment (`var` reads it) asks for traces to be exported, or why
/// what it asks for cannot be done (naming the variable).
pub fn wanted(var: impl Fn(&str) -> Option<String>) -> Result<bool, String> {
    let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Ok(false);
    }
    match set("OTEL_TRACES_EXPORTER").as_deref().map(str::trim) {
        None | Some("otlp") => {}
        Some("none") => return Ok(false),
        Some(other) => {
            return Err(format!(
                "OTEL_TRACES_EXPORTER={other:?}: warren exports traces with otlp (or none)"
            ))
        }
    }
    let Some((name, endpoint)) = ENDPOINTS
        .iter()
        .find_map(|name| set(name).map(|value| (*name, value)))
    else {
        return Ok(false);
    };
    if !endpoint.trim().starts_with("http://") {
        return Err(format!(
            "{name}={endpoint:?}: warren exports OTLP over plain http:// only (send it to a collector beside the node)"
        ));
    }
    for protocol in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Some(value) = set(protocol) {
            if value.trim() != "http/protobuf" {
                return Err(format!(
                    "{protocol}={value:?}: warren exports OTLP as http/protobuf only"
                ));
            }
            break;
        }
    }
    Ok(true)
}

/// The trace export of a running `warren serve`: flushed and stopped by
/// [`Export::shutdown`] when the node has stopped.
pub struct Export {
    provider: SdkTracerProvider,
}

impl Export {
    /// Starts exporting when the environment asks for it (see [`wanted`]).
    pub fn start() -> Result<Option<Export>, String> {
        if !wanted(|name| std::env::var(name).ok())? {
            return Ok(None);
        }
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
            .map_err(|e| format!("cannot export traces: {e}"))?;
        let mut resource = Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name("warren");
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        Ok(Some(Export { provider }))
    }

    /// The tracer the tracing layer hands spans to.
    pub fn tracer(&self) -> SdkTracer {
        self.provider.tracer("warren")
    }

    /// Sends what is buffered and stops (outside any async runtime: the exporter's
    /// HTTP client blocks).
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("warren: trace export did not shut down cleanly: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn an_endpoint_turns_export_on_and_the_standard_switches_turn_it_off() {
        assert_eq!(wanted(env(&[])), Ok(false));
        let on = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");
        assert_eq!(wanted(env(&[on])), Ok(true));
        assert_eq!(
            wanted(env(&[(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://collector:4318/v1/traces"
            )])),
            Ok(true)
        );
        assert_eq!(wanted(env(&[on, ("OTEL_SDK_DISABLED", "TRUE")])), Ok(false));
        assert_eq!(
            wanted(env(&[on, ("OTEL_TRACES_EXPORTER", "none")])),
            Ok(false)
        );
        assert_eq!(
            wanted(env(&[on, ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")])),
            Ok(true)
        );
    }

    #[test]
    fn what_this_build_cannot_do_is_refused_naming_the_variable() {
        let on = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");
        for (pairs, named) in [
            (
                vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "https://otel.example.com")],
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
            (
                vec![on, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
                "OTEL_EXPORTER_OTLP_PROTOCOL",
            ),
            (
                vec![on, ("OTEL_TRACES_EXPORTER", "zipkin")],
                "OTEL_TRACES_EXPORTER",
            ),
        ] {
            let e = wanted(env(&pairs)).unwrap_err();
            assert!(e.starts_with(named), "{e}");
        }
    }
}
