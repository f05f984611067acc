//! The task filter as people write it: the API's query parameters, the `filter`
//! object of a bulk request and the CLI's options are all read here into one
//! [`TaskFilter`], so a listing, a count and a bulk action select the same tasks
//! whichever way they are asked for.

use crate::task_spec::{instant, SpecError};
use serde_json::Value;
use std::collections::HashMap;
use warren::store::{DataEquals, StateFilter, StoreError, TaskFilter};

/// The filter's fields, as the API and a bulk request's `filter` name them.
pub const FILTER_FIELDS: [&str; 7] = [
    "type",
    "state",
    "from",
    "until",
    "data",
    "data_contains",
    "error_contains",
];

/// A filter's fields as text, as given; a blank field counts as not given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterText {
    /// Task type mask (`mail:*`).
    pub type_mask: Option<String>,
    /// A state name (`failed`, `unfinished`, `all`, …).
    pub state: Option<String>,
    /// Created at or after (ms or RFC 3339).
    pub from: Option<String>,
    /// Created before (ms or RFC 3339).
    pub until: Option<String>,
    /// A data field and its value, `PATH=VALUE`.
    pub data: Option<String>,
    /// Text the data contains.
    pub data_contains: Option<String>,
    /// Text the last error contains.
    pub error_contains: Option<String>,
}

impl FilterText {
    /// The filter's fields among query parameters (other parameters are the caller's).
    pub fn from_query(query: &HashMap<String, String>) -> FilterText {
        let field = |name: &str| query.get(name).cloned();
        FilterText {
            type_mask: field("type"),
            state: field("state"),
            from: field("from"),
            until: field("until"),
            data: field("data"),
            data_contains: field("data_contains"),
            error_contains: field("error_contains"),
        }
        .without_blanks()
    }

    /// A bulk request's `filter` object: strings (instants may be numbers); an unknown
    /// field or another type is refused, naming `filter.FIELD`.
    pub fn from_json(value: &Value) -> Result<FilterText, SpecError> {
        let Value::Object(fields) = value else {
            return Err(SpecError::in_field(
                "filter",
                "must be an object of filter fields, e.g. {\"type\": \"mail:*\", \"state\": \"failed\"}",
            ));
        };
        let mut query = HashMap::new();
        for (name, value) in fields {
            if !FILTER_FIELDS.contains(&name.as_str()) {
                return Err(SpecError::in_field(
                    "filter",
                    format!("unknown field '{name}': use {}", FILTER_FIELDS.join(", ")),
                ));
            }
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) if matches!(name.as_str(), "from" | "until") => n.to_string(),
                Value::Null => continue,
                other => {
                    return Err(SpecError::in_field(
                        "filter",
                        format!("{name} must be a string, not {other}"),
                    ))
                }
            };
            query.insert(name.clone(), text);
        }
        Ok(FilterText::from_query(&query))
    }

    fn without_blanks(self) -> FilterText {
        let keep = |text: Option<String>| text.filter(|t| !t.trim().is_empty());
        FilterText {
            type_mask: keep(self.type_mask),
            state: keep(self.state),
            from: keep(self.from),
            until: keep(self.until),
            data: keep(self.data),
            data_contains: keep(self.data_contains),
            error_contains: keep(self.error_contains),
        }
    }

    /// Whether no field is given: a bulk action then refuses, so that acting on every
    /// task is never a slip (`state=all` says it on purpose).
    pub fn is_empty(&self) -> bool {
        *self == FilterText::default()
    }

    /// The filter (first page, default size); errors name the field as the API does.
    pub fn to_filter(&self) -> Result<TaskFilter, SpecError> {
        self.to_filter_naming(|field| field)
    }

    /// The filter, with errors naming each field as `name` calls it (the CLI's
    /// `--from` for the API's `from`).
    pub fn to_filter_naming(
        &self,
        name: fn(&'static str) -> &'static str,
    ) -> Result<TaskFilter, SpecError> {
        let store_error = |e: StoreError| match e {
            StoreError::Invalid { field, message } => SpecError::in_field(name(field), message),
            other => SpecError::whole(other.to_string()),
        };
        Ok(TaskFilter {
            type_mask: self.type_mask.as_ref().map(|m| m.trim().to_string()),
            state: match &self.state {
                Some(s) => s.parse::<StateFilter>().map_err(store_error)?,
                None => StateFilter::All,
            },
            created_from: self
                .from
                .as_deref()
                .map(|t| instant(name("from"), t))
                .transpose()?,
            created_until: self
                .until
                .as_deref()
                .map(|t| instant(name("until"), t))
                .transpose()?,
            data_equals: self
                .data
                .as_deref()
                .map(DataEquals::parse)
                .transpose()
                .map_err(store_error)?,
            data_contains: self.data_contains.clone(),
            error_contains: self.error_contains.clone(),
            ..TaskFilter::default()
        })
    }
}

/// The error of a bulk action asked for with no filter field.
pub fn empty_filter_error() -> SpecError {
    SpecError::in_field(
        "filter",
        format!(
            "give at least one of {} (state=all acts on every task)",
            FILTER_FIELDS.join(", ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use warren::store::DataValue;

    #[test]
    fn query_and_json_read_alike_and_blanks_are_not_given() {
        let query: HashMap<String, String> = [
            ("type", "mail:*"),
            ("state", "failed"),
            ("from", "1000"),
            ("data", "to.domain=example.com"),
            ("error_contains", "timeout"),
            ("data_contains", " "),
            ("limit", "5"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let from_query = FilterText::from_query(&query);
        let from_json = FilterText::from_json(&json!({
            "type": "mail:*", "state": "failed", "from": 1000,
            "data": "to.domain=example.com", "error_contains": "timeout", "until": null
        }))
        .unwrap();
        assert_eq!(from_query, from_json);
        let filter = from_query.to_filter().unwrap();
        assert_eq!(filter.state, StateFilter::Failed);
        assert_eq!(filter.created_from, Some(1000));
        assert_eq!(filter.data_contains, None);
        let data = filter.data_equals.unwrap();
        assert_eq!(data.path, ["to", "domain"]);
        assert_eq!(data.value, DataValue::String("example.com".into()));
        assert!(FilterText::from_query(&HashMap::new()).is_empty());
    }

    #[test]
    fn errors_name_the_field() {
        let err = FilterText::from_json(&json!({"kind": "x"})).unwrap_err();
        assert_eq!(err.field, Some("filter"));
        assert!(err.message.contains("unknown field 'kind'"), "{err}");
        let err = FilterText::from_json(&json!({"state": 3})).unwrap_err();
        assert!(err.message.contains("state must be a string"), "{err}");
        let text = FilterText {
            state: Some("done".into()),
            ..FilterText::default()
        };
        assert_eq!(text.to_filter().unwrap_err().field, Some("state"));
        let text = FilterText {
            data: Some("id".into()),
            ..FilterText::default()
        };
        assert_eq!(text.to_filter().unwrap_err().field, Some("data"));
        let text = FilterText {
            until: Some("yesterday".into()),
            ..FilterText::default()
        };
        assert_eq!(text.to_filter().unwrap_err().field, Some("until"));
    }
}
