//! A schema change on the source while following. `ALTER TABLE … ADD COLUMN` is followed:
//! the column is planned like any other (its values profiled), added in PostgreSQL, its
//! values copied for every existing row (SQLite gave them the column's default without firing
//! a trigger), and the evolved plan stored as the migration's, so a restarted follower goes
//! on with it. Any other change stops following with what changed, per table, and what to
//! run next; the change log keeps everything captured meanwhile.

use std::path::Path;

use bytes::Bytes;
use futures_util::SinkExt;
use tokio_postgres::Client;

use crate::config::MigrationConfig;
use crate::copy::{COPY_HEADER, COPY_TRAILER};
use crate::error::{MigrateError, PgContext, Result};
use crate::introspect::quote_sqlite;
use crate::plan::{qualified, ColumnPlan, Plan};

/// What changed, as far as following is concerned.
#[derive(Debug)]
pub(crate) enum Evolution {
    /// Only columns added at the end of migrated tables: `(table index, new columns)`.
    Added(Vec<(usize, Vec<ColumnPlan>)>),
    /// Anything else, in words (table and change).
    Unsupported(Vec<String>),
}

/// Compares the plan being followed with one built from the source as it is now.
pub(crate) fn diff(old: &Plan, new: &Plan) -> Evolution {
    let mut added = Vec::new();
    let mut other = Vec::new();
    for (ti, t) in old.tables.iter().enumerate() {
        let Some(n) = new.tables.iter().find(|n| n.source_name == t.source_name) else {
            other.push(format!("table {} was dropped or renamed", t.source_name));
            continue;
        };
        let same_prefix = n.columns.len() >= t.columns.len()
            && t.columns
                .iter()
                .zip(&n.columns)
                .all(|(a, b)| a.name == b.name && a.declared == b.declared);
        if !same_prefix {
            let gone: Vec<&str> = t
                .columns
                .iter()
                .filter(|c| !n.columns.iter().any(|x| x.name == c.name))
                .map(|c| c.name.as_str())
                .collect();
            other.push(if gone.is_empty() {
                format!("table {}: columns were changed or reordered", t.source_name)
            } else {
                format!(
                    "table {}: column(s) {} dropped or renamed",
                    t.source_name,
                    gone.join(", ")
                )
            });
            continue;
        }
        if n.key_columns != t.key_columns {
            other.push(format!("table {}: its primary key changed", t.source_name));
            continue;
        }
        if n.columns.len() > t.columns.len() {
            added.push((ti, n.columns[t.columns.len()..].to_vec()));
        }
    }
    for n in &new.tables {
        if !old.tables.iter().any(|t| t.source_name == n.source_name) {
            other.push(format!(
                "table {} was created (it is not captured nor migrated)",
                n.source_name
            ));
        }
    }
    if other.is_empty() {
        Evolution::Added(added)
    } else {
        Evolution::Unsupported(other)
    }
}

/// Builds the plan of the source as it is now (blocking: profiles the tables).
pub(crate) fn replan(source: &Path, config: &MigrationConfig, schema: &str) -> Result<Plan> {
    Plan::build(source, config, schema)
}

/// Adds the new columns in PostgreSQL, copies their values for every row, and stores the
/// evolved plan; returns it.
pub(crate) async fn follow_added_columns(
    client: &mut Client,
    source: &Path,
    old: &Plan,
    new: &Plan,
    added: &[(usize, Vec<ColumnPlan>)],
) -> Result<Plan> {
    let mut plan = old.clone();
    let tx = client
        .transaction()
        .await
        .ctx("begin (following ADD COLUMN)")?;
    for (ti, cols) in added {
        let t = &mut plan.tables[*ti];
        let target = qualified(&plan.schema, &t.name);
        for c in cols {
            let mut sql = format!(
                "ALTER TABLE {target} ADD COLUMN {} {}",
                quote_sqlite(&c.name),
                c.conversion.pg_type.sql()
            );
            if let Some(d) = &c.default {
                sql.push_str(&format!(" DEFAULT {d}"));
            }
            tx.batch_execute(&sql)
                .await
                .ctx(format!("adding column {}.{}", t.name, c.name))?;
            t.columns.push(c.clone());
        }
    }
    // The values of the new columns, for every row (in one SQLite read).
    for (ti, cols) in added {
        let t = plan.tables[*ti].clone();
        let first_new = t.columns.len() - cols.len();
        let (src, t2) = (source.to_path_buf(), t.clone());
        let tuples = tokio::task::spawn_blocking(move || column_values(&src, &t2, first_new))
            .await
            .map_err(|e| MigrateError::Internal(format!("follow thread: {e}")))??;
        let Some((tuples, rows)) = tuples else {
            continue;
        };
        if rows == 0 {
            continue;
        }
        let key_names: Vec<String> = t
            .key_columns
            .iter()
            .map(|&k| quote_sqlite(&t.columns[k].name))
            .collect();
        let new_names: Vec<String> = t.columns[first_new..]
            .iter()
            .map(|c| quote_sqlite(&c.name))
            .collect();
        let target = qualified(&plan.schema, &t.name);
        let all: Vec<String> = key_names.iter().chain(&new_names).cloned().collect();
        tx.batch_execute(&format!(
            "CREATE TEMP TABLE _ficus_addcol ON COMMIT DROP AS SELECT {} FROM {target} WITH NO DATA",
            all.join(", ")
        ))
        .await
        .ctx("staging new column values")?;
        let sink = tx
            .copy_in::<_, Bytes>(&format!(
                "COPY pg_temp._ficus_addcol ({}) FROM STDIN (FORMAT binary)",
                all.join(", ")
            ))
            .await
            .ctx("staging new column values")?;
        futures_util::pin_mut!(sink);
        let what = || format!("copying the values of the new column(s) of {}", t.name);
        sink.feed(Bytes::from_static(COPY_HEADER))
            .await
            .ctx(what())?;
        sink.feed(Bytes::from(tuples)).await.ctx(what())?;
        sink.send(Bytes::from_static(COPY_TRAILER))
            .await
            .ctx(what())?;
        sink.finish().await.ctx(what())?;
        let set: Vec<String> = new_names.iter().map(|c| format!("{c} = s.{c}")).collect();
        let join: Vec<String> = key_names.iter().map(|k| format!("x.{k} = s.{k}")).collect();
        tx.execute(
            &format!(
                "UPDATE {target} x SET {} FROM pg_temp._ficus_addcol s WHERE {}",
                set.join(", "),
                join.join(" AND ")
            ),
            &[],
        )
        .await
        .ctx(what())?;
        tx.batch_execute("DROP TABLE pg_temp._ficus_addcol")
            .await
            .ctx(what())?;
    }
    plan.source = new.source.clone();
    plan.warnings = new.warnings.clone();
    plan.fingerprint = plan.compute_fingerprint();
    let json = serde_json::to_string(&plan).map_err(|e| MigrateError::Internal(e.to_string()))?;
    tx.execute(
        "UPDATE ficus.migrations SET plan = $2, fingerprint = $3 WHERE target_schema = $1",
        &[&plan.schema, &json, &plan.fingerprint],
    )
    .await
    .ctx("storing the evolved plan")?;
    tx.commit().await.ctx("committing the new column(s)")?;
    Ok(plan)
}

/// `(key columns, new columns)` of every row as binary COPY tuples; `None` for a table
/// without a key (the follower replaces such a table whole on its next change).
fn column_values(
    source: &Path,
    t: &crate::plan::TablePlan,
    first_new: usize,
) -> Result<Option<(Vec<u8>, u64)>> {
    if t.key_columns.is_empty() {
        return Ok(None);
    }
    let conn = crate::source::open_source(source)?;
    let mut out = Vec::new();
    let mut rows = 0u64;
    let n = (t.key_columns.len() + t.columns.len() - first_new) as i16;
    crate::source::read_rows(&conn, t, None, None, |row| {
        let start = out.len();
        out.extend_from_slice(&n.to_be_bytes());
        let idx = t
            .key_columns
            .iter()
            .copied()
            .chain(first_new..t.columns.len());
        for i in idx {
            if t.columns[i]
                .conversion
                .encode(row.value(i), &mut out)
                .is_err()
            {
                // Left NULL here; the row's next change quarantines it like any other.
                out.truncate(start);
                return Ok(true);
            }
        }
        rows += 1;
        Ok(true)
    })?;
    Ok(Some((out, rows)))
}
