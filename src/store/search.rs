//! Searching tasks by their data and their last error: the parts of [`TaskFilter`]
//! that look inside a task, shared by listings, counts and bulk actions.
//!
//! A data search compares one JSON field with a scalar (`order.id=42`) as JSON does:
//! a string equals only a string, a number equals a number of the same value (`42`
//! and `42.0` are equal), `true`, `false` and `null` only themselves. Each backend has
//! its own SQL for it here, and they agree but for two edges: a key of digits picks an
//! array element on SQLite, and an element or an object key on PostgreSQL; numbers
//! beyond 64-bit integers compare as doubles on SQLite, exactly on PostgreSQL.
//!
//! Text searches (`data_contains`, `error_contains`) ignore case as the database's
//! `lower()` does, on the column and on the text searched for alike: every letter on
//! PostgreSQL (by its locale), ASCII letters on SQLite.

use super::schema::warren_tasks;
use super::{StoreError, StoreResult};
use diesel::dsl::sql;
use diesel::expression::BoxableExpression;
use diesel::sql_types::{Array, Bool, Text};

/// A condition on `warren_tasks` for backend `DB`, boxed so a filter can be built of
/// conditions that differ per backend.
pub(super) type Condition<DB> = Box<dyn BoxableExpression<warren_tasks::table, DB, SqlType = Bool>>;

/// A JSON scalar a data field is compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataValue {
    /// A JSON string.
    String(String),
    /// A JSON number, as written.
    Number(serde_json::Number),
    /// `true` or `false`.
    Bool(bool),
    /// `null` (the field is present and null).
    Null,
}

/// "The data field at `path` equals `value`": one condition of a task search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataEquals {
    /// Object keys from the data's top level down (`order.id` is `["order", "id"]`);
    /// a key of digits picks an array element on SQLite.
    pub path: Vec<String>,
    /// The value the field must equal.
    pub value: DataValue,
}

impl DataEquals {
    /// Reads `PATH=VALUE` (`order.id=42`, `customer.name=Ann`, `vip=true`). The value is
    /// JSON when it reads as a JSON scalar (`42`, `"42"`, `true`, `null`), else the
    /// text as a string. Errors name the field `data` and say what is wrong.
    pub fn parse(text: &str) -> StoreResult<DataEquals> {
        let invalid = |message: String| StoreError::Invalid {
            field: "data",
            message,
        };
        let Some((path, value)) = text.split_once('=') else {
            return Err(invalid(format!(
                "'{text}' has no '=': write FIELD=VALUE, e.g. order.id=42"
            )));
        };
        let path: Vec<String> = path.trim().split('.').map(str::to_string).collect();
        for key in &path {
            if key.is_empty() {
                return Err(invalid(format!(
                    "'{text}': the field path has an empty key; write keys joined by dots, e.g. order.id"
                )));
            }
            if key.chars().any(|c| c == '"' || c == '\\' || c.is_control()) {
                return Err(invalid(format!(
                    "'{text}': the key '{}' holds a quote, a backslash or a control character, which a field path cannot",
                    key.escape_debug()
                )));
            }
        }
        let value = match serde_json::from_str::<serde_json::Value>(value) {
            Ok(serde_json::Value::String(s)) => DataValue::String(s),
            Ok(serde_json::Value::Number(n)) => DataValue::Number(n),
            Ok(serde_json::Value::Bool(b)) => DataValue::Bool(b),
            Ok(serde_json::Value::Null) => DataValue::Null,
            Ok(_) => {
                return Err(invalid(format!(
                    "'{text}': compare a field with a string, a number, true, false or null, not an object or array"
                )))
            }
            Err(_) => DataValue::String(value.to_string()),
        };
        Ok(DataEquals { path, value })
    }
}

impl std::fmt::Display for DataEquals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = match &self.value {
            DataValue::String(s) => serde_json::Value::String(s.clone()).to_string(),
            DataValue::Number(n) => n.to_string(),
            DataValue::Bool(b) => b.to_string(),
            DataValue::Null => "null".to_string(),
        };
        write!(f, "{}={value}", self.path.join("."))
    }
}

/// Refuses a filter the databases cannot take: a NUL character in a searched text
/// (PostgreSQL refuses it in any text), naming the field.
pub(super) fn check_filter(filter: &super::TaskFilter) -> StoreResult<()> {
    let texts = [
        ("type", filter.type_mask.as_deref()),
        ("data_contains", filter.data_contains.as_deref()),
        ("error_contains", filter.error_contains.as_deref()),
        (
            "data",
            filter.data_equals.as_ref().and_then(|d| match &d.value {
                DataValue::String(s) => Some(s.as_str()),
                _ => None,
            }),
        ),
    ];
    for (field, text) in texts {
        if text.is_some_and(|t| t.contains('\0')) {
            return Err(StoreError::Invalid {
                field,
                message: "holds a NUL character, which no stored text can".to_string(),
            });
        }
    }
    Ok(())
}

/// A `LIKE` pattern matching text that contains `needle` (LIKE's own wildcards in it
/// are matched literally, with `\` as the escape). Compared under `lower()` on both
/// sides, so case is folded by the database alone.
pub(super) fn contains_pattern(needle: &str) -> String {
    let mut out = String::with_capacity(needle.len() + 2);
    out.push('%');
    for ch in needle.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('%');
    out
}

/// The data search on PostgreSQL. `data` is text; it is read as `json` (which, unlike
/// `jsonb`, accepts a `\u0000` escape) but a field read out of data holding that escape
/// cannot become text, so such tasks never match a data search.
pub(super) fn pg_data_equals(search: &DataEquals) -> Condition<diesel::pg::Pg> {
    const FIELD: &str = "(CASE WHEN strpos(data, '\\u0000') > 0 THEN NULL ELSE data::json #> ";
    let path = || search.path.clone();
    // `json_typeof(FIELD) = KIND`, then `AND FIELD` for the comparison to follow.
    let of_kind = |kind: &str, open: &str| {
        sql::<Bool>(&format!("json_typeof({FIELD}"))
            .bind::<Array<Text>, _>(path())
            .sql(&format!(" END)) = '{kind}' AND {open}{FIELD}"))
            .bind::<Array<Text>, _>(path())
    };
    match &search.value {
        DataValue::String(s) => Box::new(
            of_kind("string", "")
                .sql(" END) #>> '{}' = ")
                .bind::<Text, _>(s.clone()),
        ),
        // The cast only where the type test holds: PostgreSQL may test the two
        // conditions in either order, and `"abc"` is no number.
        DataValue::Number(n) => Box::new(
            of_kind("number", "CASE WHEN json_typeof(")
                .sql(" END)) = 'number' THEN ")
                .sql(FIELD)
                .bind::<Array<Text>, _>(path())
                .sql(" END #>> '{}')::numeric = ")
                .bind::<Text, _>(n.to_string())
                .sql("::numeric END"),
        ),
        DataValue::Bool(b) => Box::new(
            of_kind("boolean", "")
                .sql(" END) #>> '{}' = ")
                .bind::<Text, _>(b.to_string()),
        ),
        DataValue::Null => Box::new(of_kind("null", "").sql(" END) IS NOT NULL")),
    }
}

/// The SQLite JSON path of a field: `$."order"."id"`, a key of digits as `[3]`.
fn sqlite_path(path: &[String]) -> String {
    let mut out = String::from("$");
    for key in path {
        if !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit()) && key.len() < 10 {
            out.push_str(&format!("[{key}]"));
        } else {
            out.push_str(&format!(".\"{key}\""));
        }
    }
    out
}

/// The data search on SQLite, by `json_type` and `json_extract`. Data that is not
/// valid JSON (possible only when written around Warren) never matches.
pub(super) fn sqlite_data_equals(search: &DataEquals) -> Condition<diesel::sqlite::Sqlite> {
    let path = sqlite_path(&search.path);
    let of = |types: &str| {
        sql::<Bool>("json_valid(data) AND json_type(data, ")
            .bind::<Text, _>(path.clone())
            .sql(&format!(") IN ({types})"))
    };
    match &search.value {
        DataValue::String(s) => Box::new(
            of("'text'")
                .sql(" AND json_extract(data, ")
                .bind::<Text, _>(path.clone())
                .sql(") = ")
                .bind::<Text, _>(s.clone()),
        ),
        DataValue::Number(n) => {
            let compared = of("'integer', 'real'")
                .sql(" AND json_extract(data, ")
                .bind::<Text, _>(path.clone())
                .sql(") = ");
            match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => Box::new(compared.bind::<diesel::sql_types::BigInt, _>(i)),
                (None, Some(f)) => Box::new(compared.bind::<diesel::sql_types::Double, _>(f)),
                // Not representable as either: matches nothing, as no stored number can.
                (None, None) => Box::new(sql::<Bool>("0")),
            }
        }
        DataValue::Bool(true) => Box::new(of("'true'")),
        DataValue::Bool(false) => Box::new(of("'false'")),
        DataValue::Null => Box::new(of("'null'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths_and_json_scalars() {
        let d = DataEquals::parse("order.id=42").unwrap();
        assert_eq!(d.path, ["order", "id"]);
        assert_eq!(d.value, DataValue::Number(42.into()));
        let d = DataEquals::parse(" name =Ann Lee").unwrap();
        assert_eq!(d.path, ["name"]);
        assert_eq!(d.value, DataValue::String("Ann Lee".into()));
        assert_eq!(
            DataEquals::parse("id=\"42\"").unwrap().value,
            DataValue::String("42".into())
        );
        assert_eq!(
            DataEquals::parse("vip=true").unwrap().value,
            DataValue::Bool(true)
        );
        assert_eq!(
            DataEquals::parse("gone=null").unwrap().value,
            DataValue::Null
        );
        // The first '=' splits: the rest is the value.
        assert_eq!(
            DataEquals::parse("q=a=b").unwrap().value,
            DataValue::String("a=b".into())
        );
        assert_eq!(
            DataEquals::parse("order.id=42").unwrap().to_string(),
            "order.id=42"
        );
        assert_eq!(DataEquals::parse("n=x").unwrap().to_string(), "n=\"x\"");
    }

    #[test]
    fn refuses_bad_searches_naming_the_field() {
        for (text, says) in [
            ("order.id", "no '='"),
            ("order..id=1", "empty key"),
            ("=1", "empty key"),
            ("a\"b=1", "quote"),
            ("tags=[1]", "not an object or array"),
            ("o={}", "not an object or array"),
        ] {
            let err = DataEquals::parse(text).unwrap_err();
            let StoreError::Invalid { field, message } = &err else {
                panic!("{text}: {err:?}")
            };
            assert_eq!(*field, "data");
            assert!(message.contains(says), "{text}: {message}");
        }
    }

    #[test]
    fn contains_patterns_escape_like_wildcards() {
        assert_eq!(contains_pattern("Time%out_x\\"), "%Time\\%out\\_x\\\\%");
    }

    #[test]
    fn sqlite_paths_quote_keys_and_index_arrays() {
        let path = |p: &[&str]| sqlite_path(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(path(&["order", "id"]), "$.\"order\".\"id\"");
        assert_eq!(path(&["items", "0", "sku"]), "$.\"items\"[0].\"sku\"");
        assert_eq!(path(&["a b"]), "$.\"a b\"");
    }
}
