//! How client commands print an answer: `-o table` (aligned columns or a
//! sentence), `json`, `yaml`, or `name` (bare ids, one a line, for scripts).
//! Pure: values in, text out.

use std::fmt::Write as _;

use serde_json::Value;

use super::Output;

/// Renders `value` as `output` asks: `table` is the command's own text,
/// `name` the `name_field` of the value or of each of its `items`.
pub fn render(
    value: &Value,
    output: Output,
    table: impl FnOnce(&Value) -> String,
    name_field: &str,
) -> Result<String, serde_saphyr::ser::Error> {
    Ok(match output {
        Output::Json => serde_json::to_string_pretty(value).unwrap_or_default(),
        Output::Yaml => serde_saphyr::to_string(value)?.trim_end().to_owned(),
        Output::Table => table(value).trim_end().to_owned(),
        Output::Name => match value.get("items").and_then(Value::as_array) {
            Some(items) => items
                .iter()
                .map(|i| text_of(&i[name_field]))
                .collect::<Vec<_>>()
                .join("\n"),
            None => text_of(&value[name_field]),
        },
    })
}

/// A JSON value as a table cell: strings bare, null as `-`.
pub fn text_of(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The `items` of a list answer (empty when absent).
pub fn items(value: &Value) -> &[Value] {
    value
        .get("items")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// Formats rows as aligned columns under `headers`.
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let mut l = String::new();
        for (cell, w) in cells.iter().zip(&widths) {
            let _ = write!(l, "{cell:<w$}  ");
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&headers.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    for row in &rows {
        line(row);
    }
    out
}

/// Tickets as a table.
pub fn ticket_rows(items: &[Value]) -> String {
    let rows = items
        .iter()
        .map(|t| {
            vec![
                text_of(&t["id"]),
                text_of(&t["number"]),
                text_of(&t["status"]),
                format!(
                    "{}/{}",
                    text_of(&t["namespace"]),
                    text_of(&t["application"])
                ),
                text_of(&t["action"]),
                text_of(&t["requester"]),
                text_of(&t["decidedBy"]),
                text_of(&t["grant"]["expiresAt"]),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "NUMBER",
            "STATUS",
            "APPLICATION",
            "ACTION",
            "REQUESTER",
            "DECIDED BY",
            "GRANT EXPIRES",
        ],
        rows,
    )
}

/// Active grants as a table (never their tokens: the API does not send them).
pub fn grant_rows(items: &[Value]) -> String {
    let rows = items
        .iter()
        .map(|g| {
            vec![
                text_of(&g["jti"]),
                text_of(&g["ticketNumber"]),
                text_of(&g["user"]),
                format!(
                    "{}/{}",
                    text_of(&g["namespace"]),
                    text_of(&g["application"])
                ),
                text_of(&g["expiresAt"]),
            ]
        })
        .collect();
    table(&["JTI", "TICKET", "USER", "APPLICATION", "EXPIRES"], rows)
}

/// Audit records as a table.
pub fn audit_rows(items: &[Value]) -> String {
    let rows = items
        .iter()
        .map(|r| {
            vec![
                text_of(&r["id"]),
                text_of(&r["timestamp"]),
                text_of(&r["event"]),
                text_of(&r["decision"]),
                text_of(&r["username"]),
                format!(
                    "{}/{}",
                    text_of(&r["namespace"]),
                    text_of(&r["applicationName"])
                ),
                text_of(&r["change"]),
                text_of(&r["ticketNumber"]),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "TIME",
            "EVENT",
            "DECISION",
            "USER",
            "APPLICATION",
            "CHANGE",
            "TICKET",
        ],
        rows,
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn name_output_prints_one_id_per_item() {
        let list = json!({"items": [{"id": "1"}, {"id": "2"}]});
        let text = render(&list, Output::Name, |_| unreachable!(), "id").unwrap();
        assert_eq!(text, "1\n2");
    }

    #[test]
    fn table_columns_are_aligned_and_null_is_a_dash() {
        let text = table(
            &["ID", "USER"],
            vec![
                vec!["1".into(), text_of(&Value::Null)],
                vec!["10".into(), "alice".into()],
            ],
        );
        assert_eq!(text, "ID  USER\n1   -\n10  alice\n");
    }
}
