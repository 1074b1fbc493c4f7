//! Comparing the target with the model, exactly.

use serde_json::Value;
use tokio_postgres::Client;

use super::model::Model;

fn text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => Some(wharf_applier::values::array_literal(items)),
        other => Some(other.to_string()),
    }
}

/// Returns a list of differences (empty when the target equals the model).
pub async fn differences(client: &Client, schema: &str, model: &Model) -> anyhow::Result<Vec<String>> {
    client.batch_execute("SET TimeZone = 'UTC'").await?;
    let mut diffs = Vec::new();
    let parents = client
        .query(&format!("SELECT id::text, name, balance::text, tags::text, to_char(updated_at, 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM {schema}.sim_parent ORDER BY sim_parent.id"), &[])
        .await?;
    let got: Vec<Vec<Option<String>>> = parents.iter().map(|r| (0..5).map(|i| r.get(i)).collect()).collect();
    let want: Vec<Vec<Option<String>>> = model
        .parents
        .values()
        .map(|p| {
            ["id", "name", "balance", "tags", "updated_at"].iter().map(|c| text(&p[*c]).map(normalise_array)).collect()
        })
        .collect();
    compare(
        "sim_parent",
        &got.into_iter().map(|r| r.into_iter().map(|v| v.map(normalise_array)).collect()).collect::<Vec<_>>(),
        &want,
        &mut diffs,
    );
    let children = client.query(&format!("SELECT parent_id::text, id::text, qty::text, note FROM {schema}.sim_child ORDER BY sim_child.parent_id, sim_child.id"), &[]).await?;
    let got: Vec<Vec<Option<String>>> = children.iter().map(|r| (0..4).map(|i| r.get(i)).collect()).collect();
    let want: Vec<Vec<Option<String>>> = model
        .children
        .values()
        .map(|c| ["parent_id", "id", "qty", "note"].iter().map(|k| text(&c[*k])).collect())
        .collect();
    compare("sim_child", &got, &want, &mut diffs);
    Ok(diffs)
}

/// PostgreSQL prints array elements unquoted when it can; compare without quotes.
fn normalise_array(text: String) -> String {
    if text.starts_with('{') { text.replace('"', "") } else { text }
}

fn compare(table: &str, got: &[Vec<Option<String>>], want: &[Vec<Option<String>>], diffs: &mut Vec<String>) {
    if got.len() != want.len() {
        diffs.push(format!("{table}: target has {} rows, model has {}", got.len(), want.len()));
    }
    for (g, w) in got.iter().zip(want) {
        if g != w {
            diffs.push(format!("{table}: target {g:?} != model {w:?}"));
            if diffs.len() > 10 {
                return;
            }
        }
    }
}
