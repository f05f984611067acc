//! SQL written by task code, on the store's connections.

use crate::support::conformance::*;

crate::conformance!(task_sql_binds_parameters_and_returns_json_rows,);

async fn task_sql_binds_parameters_and_returns_json_rows(b: Backend) {
    use warren::store::dynamic::{execute, parse_params, query_json};
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let mut conn = s.connection().await.unwrap();
    exec(
        &mut conn.as_any(),
        "CREATE TABLE notes (id BIGINT, body TEXT, score REAL)",
    )
    .await;
    conn.begin().await.unwrap();
    let p = |json: &str| parse_params(json).unwrap();
    let insert = "INSERT INTO notes (id, body, score) VALUES ($1, $2, $3);";
    let hostile = "'); DROP TABLE notes; --";
    assert_eq!(
        execute(
            &mut conn.as_any(),
            insert,
            p(&format!("[1, {}, 1.5]", json!(hostile)))
        )
        .await
        .unwrap(),
        1
    );
    assert_eq!(
        execute(
            &mut conn.as_any(),
            insert,
            p(r#"[2, {"tags": ["a"]}, null]"#)
        )
        .await
        .unwrap(),
        1
    );
    // Placeholders may appear in any order; '$1' inside a string literal is text.
    let sql = "SELECT id, body, score, 'costs $1' AS note FROM notes WHERE id >= $2 AND id <= $1 ORDER BY id";
    let rows: serde_json::Value = serde_json::from_str(
        &query_json(&mut conn.as_any(), sql, p("[2, 1]"))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        rows,
        json!([
            {"id": 1, "body": hostile, "score": 1.5, "note": "costs $1"},
            {"id": 2, "body": "{\"tags\":[\"a\"]}", "score": null, "note": "costs $1"},
        ])
    );
    let none = query_json(
        &mut conn.as_any(),
        "SELECT id FROM notes WHERE id > $1",
        p("[5]"),
    )
    .await
    .unwrap();
    assert_eq!(none, "[]");
    assert_eq!(
        execute(
            &mut conn.as_any(),
            "UPDATE notes SET score = $1",
            p("[2.0]")
        )
        .await
        .unwrap(),
        2
    );
    // Bad input names what is wrong and changes nothing.
    assert_eq!(
        parse_params("{").unwrap_err().to_string().split(':').next(),
        Some("invalid SQL parameters")
    );
    assert!(parse_params(r#"{"a": 1}"#)
        .unwrap_err()
        .to_string()
        .contains("must be a JSON array"));
    assert!(parse_params("").unwrap().is_empty() && parse_params("null").unwrap().is_empty());
    assert!(execute(
        &mut conn.as_any(),
        "INSERT INTO nowhere VALUES ($1)",
        p("[1]")
    )
    .await
    .is_err());
    assert!(execute(&mut conn.as_any(), " ; ", vec![]).await.is_err());
    // After a failed statement the transaction goes on (a savepoint on PostgreSQL).
    assert_eq!(
        execute(
            &mut conn.as_any(),
            "DELETE FROM notes WHERE id = $1",
            p("[2]")
        )
        .await
        .unwrap(),
        1
    );
    conn.commit().await.unwrap();
    assert_eq!(count(s, "SELECT COUNT(*) AS n FROM notes").await, 1);
}
