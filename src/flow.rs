//! Flow rules of a task type: how many of its tasks may run at once across all nodes,
//! in all or per value of a data field (`<managedtask concurrency="2"
//! concurrencykey="tenant">`). The claim enforces them (`store/flow.rs`).

use std::fmt;

/// Most tasks one rule lets run at once (a sanity bound on the attribute).
pub const MAX_CONCURRENCY: u32 = 100_000;

/// Longest data field name a rule may key on.
pub const MAX_KEY_FIELD_LEN: usize = 100;

/// At most `limit` tasks of the type run at once across all nodes: per distinct value
/// of the data field `key` when there is one, else in all.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ConcurrencyLimit {
    /// Most running tasks per key (1 to [`MAX_CONCURRENCY`]).
    pub limit: u32,
    /// The top-level data field whose value is the key; `None`: one key for the type.
    pub key: Option<String>,
}

impl fmt::Display for ConcurrencyLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(key) => write!(f, "at most {} running per value of data.{key}", self.limit),
            None => write!(f, "at most {} running across all nodes", self.limit),
        }
    }
}

/// Checks a data field name a rule keys on: 1 to [`MAX_KEY_FIELD_LEN`] ASCII letters,
/// digits, `_` or `-` (a top-level field; no paths). The error says what is wrong.
pub fn check_key_field(field: &str) -> Result<(), String> {
    if field.is_empty() || field.len() > MAX_KEY_FIELD_LEN {
        return Err(format!(
            "expected the name of a top-level data field, 1 to {MAX_KEY_FIELD_LEN} characters"
        ));
    }
    match field
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        Some(c) => Err(format!(
            "'{c}' is not allowed: a key field is a top-level data field named with ASCII \
             letters, digits, '_' and '-'"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_fields_are_plain_top_level_names() {
        assert!(check_key_field("tenant").is_ok());
        assert!(check_key_field("tenant_id-2").is_ok());
        assert!(check_key_field("").unwrap_err().contains("1 to 100"));
        assert!(check_key_field("a.b")
            .unwrap_err()
            .contains("'.' is not allowed"));
        assert!(check_key_field("it's")
            .unwrap_err()
            .contains("''' is not allowed"));
        assert!(check_key_field(&"x".repeat(101)).is_err());
    }

    #[test]
    fn a_limit_reads_as_what_it_does() {
        let keyed = ConcurrencyLimit {
            limit: 2,
            key: Some("tenant".into()),
        };
        assert_eq!(
            keyed.to_string(),
            "at most 2 running per value of data.tenant"
        );
        let whole = ConcurrencyLimit {
            limit: 1,
            key: None,
        };
        assert_eq!(whole.to_string(), "at most 1 running across all nodes");
    }
}
