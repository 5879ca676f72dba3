//! The PostgreSQL side of one follow round, in one transaction: for each table, the keys gone
//! from SQLite are deleted, then the rows read are upserted (`INSERT … ON CONFLICT (key) DO
//! UPDATE`, through a staging table filled by binary COPY); a table without a key is replaced
//! whole; unconvertible values are quarantined; the position advances — all committed
//! together, so a killed follower resumes with no gap and no duplicate.
//!
//! # Constraints that dislike the order rows arrive in
//! - Foreign keys: the transaction runs `SET CONSTRAINTS ALL DEFERRED` and the follower makes
//!   the target's foreign keys `DEFERRABLE INITIALLY IMMEDIATE` when it starts (what the app
//!   sees does not change: immediate by default). A child may arrive before its parent; both
//!   are checked at commit, when the round holds a consistent SQLite snapshot of every key it
//!   covers.
//! - UNIQUE constraints (not deferrable: the new service may use them as `ON CONFLICT`
//!   arbiters): deletes go first, so a value that moved from a deleted or re-keyed row is free;
//!   two rows swapping a unique value make the upsert fail with a unique violation, and the
//!   table's rows of the round are then deleted and inserted again in one statement each
//!   (inside a savepoint) — unless a foreign key referencing the table cascades deletes, in
//!   which case the round fails naming the table and constraint, to be retried.

use bytes::Bytes;
use futures_util::SinkExt;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Transaction};

use super::read::{Round, TableDelta};
use crate::copy::{COPY_HEADER, COPY_TRAILER};
use crate::error::{MigrateError, PgContext, Result};
use crate::introspect::quote_sqlite;
use crate::plan::{qualified, Plan, TablePlan};

/// Applies `round` and advances the position, in one transaction.
pub(crate) async fn apply(client: &mut Client, plan: &Plan, round: &Round) -> Result<()> {
    let schema = &plan.schema;
    let tx = client.transaction().await.ctx("begin a follow round")?;
    // The reverse capture (after a cut-over) ignores what the follower itself writes.
    tx.batch_execute("SET LOCAL ficus.applying = 'on'")
        .await
        .ctx("begin a follow round")?;
    apply_deltas(&tx, plan, &round.tables).await?;
    let keys: Vec<(String, String)> = round
        .tables
        .iter()
        .flat_map(|d| {
            let t = plan.tables[d.table].source_name.clone();
            let whole = d.replace_all.then(|| (t.clone(), String::new()));
            d.keys
                .iter()
                .map(move |k| (t.clone(), k.clone()))
                .chain(whole)
        })
        .collect();
    super::state::record_keys(&tx, schema, round.position, &keys).await?;
    let lag_changes = round.last_id - round.position;
    super::state::advance(
        &tx,
        schema,
        round.position,
        round.changes as i64,
        round.rows() as i64,
        lag_changes,
        0.0,
    )
    .await?;
    tx.commit().await.ctx("committing a follow round")
}

/// Applies table deltas inside `tx` (constraints deferred to its commit). Also what
/// `migrate repair` uses to re-copy the rows verify found different.
pub(crate) async fn apply_deltas(
    tx: &Transaction<'_>,
    plan: &Plan,
    deltas: &[TableDelta],
) -> Result<()> {
    tx.batch_execute("SET CONSTRAINTS ALL DEFERRED")
        .await
        .ctx("deferring constraints")?;
    for (n, d) in deltas.iter().enumerate() {
        let t = &plan.tables[d.table];
        apply_table(tx, &plan.schema, t, d, n).await?;
    }
    Ok(())
}

fn cols(t: &TablePlan) -> Vec<String> {
    t.columns.iter().map(|c| quote_sqlite(&c.name)).collect()
}

fn key_cols(t: &TablePlan) -> Vec<String> {
    t.key_columns
        .iter()
        .map(|&c| quote_sqlite(&t.columns[c].name))
        .collect()
}

async fn copy_into(
    tx: &Transaction<'_>,
    table: &str,
    columns: &[String],
    tuples: &[u8],
    what: &str,
) -> Result<()> {
    let sql = format!(
        "COPY {table} ({}) FROM STDIN (FORMAT binary)",
        columns.join(", ")
    );
    let sink = tx.copy_in::<_, Bytes>(&sql).await.ctx(what)?;
    futures_util::pin_mut!(sink);
    sink.feed(Bytes::from_static(COPY_HEADER)).await.ctx(what)?;
    sink.feed(Bytes::copy_from_slice(tuples)).await.ctx(what)?;
    sink.send(Bytes::from_static(COPY_TRAILER))
        .await
        .ctx(what)?;
    sink.finish().await.ctx(what)?;
    Ok(())
}

async fn apply_table(
    tx: &Transaction<'_>,
    schema: &str,
    t: &TablePlan,
    d: &TableDelta,
    n: usize,
) -> Result<()> {
    let target = qualified(schema, &t.name);
    let all = cols(t);
    let what = |s: &str| format!("follow: {s} {}", t.name);
    if d.replace_all {
        tx.execute(&format!("DELETE FROM {target}"), &[])
            .await
            .ctx(what("replacing the rows of"))?;
        tx.execute(
            "DELETE FROM ficus.quarantine WHERE target_schema = $1 AND table_name = $2",
            &[&schema, &t.name],
        )
        .await
        .ctx(what("clearing the quarantine of"))?;
        if d.upsert_rows > 0 {
            copy_into(tx, &target, &all, &d.upserts, &what("copying into")).await?;
        }
        crate::quarantine::insert(tx, schema, &t.name, &d.quarantine).await?;
        return Ok(());
    }
    let keys = key_cols(t);
    let join = keys
        .iter()
        .map(|k| format!("x.{k} = s.{k}"))
        .collect::<Vec<_>>()
        .join(" AND ");
    if d.delete_rows > 0 {
        let stage = format!("pg_temp._ficus_del_{n}");
        tx.batch_execute(&format!(
            "CREATE TEMP TABLE _ficus_del_{n} ON COMMIT DROP AS SELECT {} FROM {target} WITH NO DATA",
            keys.join(", ")
        ))
        .await
        .ctx(what("staging deletes of"))?;
        copy_into(tx, &stage, &keys, &d.deletes, &what("staging deletes of")).await?;
        tx.execute(
            &format!("DELETE FROM {target} x USING {stage} s WHERE {join}"),
            &[],
        )
        .await
        .ctx(what("deleting from"))?;
    }
    if d.upsert_rows > 0 {
        let stage = format!("pg_temp._ficus_up_{n}");
        tx.batch_execute(&format!(
            "CREATE TEMP TABLE _ficus_up_{n} ON COMMIT DROP AS SELECT {} FROM {target} WITH NO DATA",
            all.join(", ")
        ))
        .await
        .ctx(what("staging rows of"))?;
        copy_into(tx, &stage, &all, &d.upserts, &what("staging rows of")).await?;
        let set: Vec<String> = t
            .columns
            .iter()
            .enumerate()
            .filter(|(i, _)| !t.key_columns.contains(i))
            .map(|(_, c)| {
                let q = quote_sqlite(&c.name);
                format!("{q} = EXCLUDED.{q}")
            })
            .collect();
        let action = if set.is_empty() {
            "DO NOTHING".to_string()
        } else {
            format!("DO UPDATE SET {}", set.join(", "))
        };
        let upsert = format!(
            "INSERT INTO {target} ({c}) SELECT {c} FROM {stage} ON CONFLICT ({k}) {action}",
            c = all.join(", "),
            k = keys.join(", ")
        );
        tx.batch_execute("SAVEPOINT ficus_upsert")
            .await
            .ctx(what("upserting into"))?;
        match tx.execute(&upsert, &[]).await {
            Ok(_) => {}
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                tx.batch_execute("ROLLBACK TO SAVEPOINT ficus_upsert")
                    .await
                    .ctx(what("upserting into"))?;
                replace_rows(tx, schema, t, &target, &stage, &join, &all, &e).await?;
            }
            Err(e) => return Err(e).ctx(what("upserting into")),
        }
        tx.batch_execute("RELEASE SAVEPOINT ficus_upsert")
            .await
            .ctx(what("upserting into"))?;
        if !d.carried_keys.is_empty() {
            tx.execute(
                "DELETE FROM ficus.quarantine WHERE target_schema = $1 AND table_name = $2 AND key = ANY($3)",
                &[&schema, &t.name, &d.carried_keys],
            )
            .await
            .ctx(what("clearing the quarantine of"))?;
        }
    }
    crate::quarantine::insert(tx, schema, &t.name, &d.quarantine).await?;
    Ok(())
}

/// Two rows swapped a unique value: delete the round's rows of the table and insert them
/// again, when no foreign key would cascade that delete to rows the round does not cover.
#[allow(clippy::too_many_arguments)]
async fn replace_rows(
    tx: &Transaction<'_>,
    schema: &str,
    t: &TablePlan,
    target: &str,
    stage: &str,
    join: &str,
    all: &[String],
    cause: &tokio_postgres::Error,
) -> Result<()> {
    let cascading: Vec<String> = tx
        .query(
            "SELECT conname FROM pg_constraint
             WHERE contype = 'f' AND confrelid = to_regclass($1)
               AND (confdeltype IN ('c', 'n', 'd'))",
            &[&target],
        )
        .await
        .ctx("reading foreign keys")?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !cascading.is_empty() {
        return Err(MigrateError::Internal(format!(
            "follow: table {schema}.{}: {} — rows swapped a unique value, and foreign key(s) {} \
             cascade deletes from it, so the rows cannot be replaced; the round is retried",
            t.name,
            crate::pg::pg_message(cause),
            cascading.join(", ")
        )));
    }
    tx.execute(
        &format!("DELETE FROM {target} x USING {stage} s WHERE {join}"),
        &[],
    )
    .await
    .ctx(format!("follow: replacing rows of {}", t.name))?;
    tx.execute(
        &format!(
            "INSERT INTO {target} ({c}) SELECT {c} FROM {stage}",
            c = all.join(", ")
        ),
        &[],
    )
    .await
    .ctx(format!("follow: replacing rows of {}", t.name))?;
    Ok(())
}

/// Makes every foreign key of the target schema `DEFERRABLE INITIALLY IMMEDIATE` (what the
/// app sees is unchanged), so a round can defer them to its commit.
pub(crate) async fn deferrable_foreign_keys(client: &Client, schema: &str) -> Result<Vec<String>> {
    let rows = client
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname), con.conname
             FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE con.contype = 'f' AND n.nspname = $1 AND NOT con.condeferrable",
            &[&schema],
        )
        .await
        .ctx("reading foreign keys")?;
    let mut changed = Vec::new();
    for r in rows {
        let (table, name): (String, String) = (r.get(0), r.get(1));
        client
            .batch_execute(&format!(
                "ALTER TABLE {table} ALTER CONSTRAINT {} DEFERRABLE INITIALLY IMMEDIATE",
                quote_sqlite(&name)
            ))
            .await
            .ctx(format!("making foreign key {name} deferrable"))?;
        changed.push(name);
    }
    Ok(changed)
}
