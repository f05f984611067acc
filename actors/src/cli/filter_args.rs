//! The task filter as command-line options, shared by `warren tasks list` and the
//! bulk forms of `retry`, `cancel` and `delete`; read by the same code as the API's
//! query parameters ([`FilterText`]).

use super::Failure;
use clap::Args;
use warren::store::TaskFilter;
use warren_actors::task_filter::FilterText;

/// Which tasks a command selects.
#[derive(Debug, Clone, Default, Args)]
pub struct FilterArgs {
    /// Task type mask; `*` matches any run of characters (`mail:*`).
    #[arg(long = "type", value_name = "MASK")]
    pub type_mask: Option<String>,
    /// all, pending (due now), future, running, completed, failed, cancelled or
    /// unfinished.
    #[arg(long)]
    pub state: Option<String>,
    /// Only tasks created at or after this instant (RFC 3339 or milliseconds).
    #[arg(long)]
    pub from: Option<String>,
    /// Only tasks created before this instant (RFC 3339 or milliseconds).
    #[arg(long)]
    pub until: Option<String>,
    /// Only tasks whose data has this field with this value: `order.id=42`,
    /// `to.domain=example.com`, `vip=true` (JSON scalars compare as JSON).
    #[arg(long, value_name = "PATH=VALUE")]
    pub data: Option<String>,
    /// Only tasks whose data, as JSON text, contains this (ignoring case).
    #[arg(long, value_name = "TEXT")]
    pub data_contains: Option<String>,
    /// Only tasks whose last error contains this (ignoring case).
    #[arg(long, value_name = "TEXT")]
    pub error_contains: Option<String>,
}

impl FilterArgs {
    /// The options as the filter's text fields.
    pub fn text(&self) -> FilterText {
        let mut query = std::collections::HashMap::new();
        for (name, value) in [
            ("type", &self.type_mask),
            ("state", &self.state),
            ("from", &self.from),
            ("until", &self.until),
            ("data", &self.data),
            ("data_contains", &self.data_contains),
            ("error_contains", &self.error_contains),
        ] {
            if let Some(value) = value {
                query.insert(name.to_string(), value.clone());
            }
        }
        FilterText::from_query(&query)
    }

    /// The filter; an error names the option (`invalid --state: …`).
    pub fn filter(&self) -> Result<TaskFilter, Failure> {
        self.text()
            .to_filter_naming(option_name)
            .map_err(|e| match e.field {
                // An instant's message names its option already.
                Some("--from" | "--until") | None => Failure::Invalid(e.message),
                Some(option) => Failure::Invalid(format!("invalid {option}: {}", e.message)),
            })
    }
}

/// The option a filter field is given with.
fn option_name(field: &'static str) -> &'static str {
    match field {
        "type" => "--type",
        "state" => "--state",
        "from" => "--from",
        "until" => "--until",
        "data" => "--data",
        "data_contains" => "--data-contains",
        "error_contains" => "--error-contains",
        other => other,
    }
}
