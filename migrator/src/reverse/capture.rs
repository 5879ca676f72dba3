//! Reverse capture on PostgreSQL: after a cut-over the new service writes PostgreSQL, and a
//! trigger on every migrated table records the key of each changed row in
//! `ficus.reverse_changes` — installed inside the cut-over's write hold, so the new side's
//! first write is already recorded. The follower's own writes (`SET LOCAL ficus.applying`)
//! are not recorded.

use tokio_postgres::GenericClient;

use crate::error::{PgContext, Result};
use crate::introspect::{quote_literal, quote_sqlite};
use crate::plan::{qualified, Plan};

/// The name of the trigger on each table.
const TRIGGER: &str = "ficus_reverse_capture";

const DDL: &str = r#"CREATE SCHEMA IF NOT EXISTS ficus;
CREATE TABLE IF NOT EXISTS ficus.reverse_changes (
  id bigserial PRIMARY KEY,
  target_schema text NOT NULL,
  tbl text NOT NULL,
  op char(1) NOT NULL,
  k jsonb,
  old_k jsonb,
  at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE OR REPLACE FUNCTION ficus.reverse_capture() RETURNS trigger LANGUAGE plpgsql AS $f$
DECLARE nk jsonb; ok jsonb;
BEGIN
  IF current_setting('ficus.applying', true) = 'on' THEN RETURN NULL; END IF;
  IF TG_NARGS > 0 THEN
    IF TG_OP <> 'DELETE' THEN
      SELECT jsonb_agg(to_jsonb(NEW) ->> a ORDER BY o) INTO nk
        FROM unnest(TG_ARGV) WITH ORDINALITY AS x(a, o);
    END IF;
    IF TG_OP <> 'INSERT' THEN
      SELECT jsonb_agg(to_jsonb(OLD) ->> a ORDER BY o) INTO ok
        FROM unnest(TG_ARGV) WITH ORDINALITY AS x(a, o);
    END IF;
  END IF;
  INSERT INTO ficus.reverse_changes (target_schema, tbl, op, k, old_k)
  VALUES (TG_TABLE_SCHEMA, TG_TABLE_NAME, left(TG_OP, 1),
          CASE WHEN TG_OP = 'DELETE' THEN ok ELSE nk END,
          CASE WHEN TG_OP = 'UPDATE' AND ok IS DISTINCT FROM nk THEN ok END);
  RETURN NULL;
END
$f$"#;

/// Installs the reverse capture on every table of `plan` (idempotent: the triggers are made
/// anew). Returns the id the log starts after.
pub async fn install(c: &impl GenericClient, plan: &Plan) -> Result<i64> {
    c.batch_execute(DDL)
        .await
        .ctx("creating ficus.reverse_changes")?;
    for t in &plan.tables {
        let q = qualified(&plan.schema, &t.name);
        let args: Vec<String> = t
            .key_columns
            .iter()
            .map(|&k| quote_literal(&t.columns[k].name))
            .collect();
        c.batch_execute(&format!(
            "DROP TRIGGER IF EXISTS {trg} ON {q};
             CREATE TRIGGER {trg} AFTER INSERT OR UPDATE OR DELETE ON {q}
               FOR EACH ROW EXECUTE FUNCTION ficus.reverse_capture({})",
            args.join(", "),
            trg = quote_sqlite(TRIGGER),
        ))
        .await
        .ctx(format!("installing the reverse capture on {}", t.name))?;
    }
    last_id(c, &plan.schema).await
}

/// Removes the triggers (the log stays, for the record).
pub async fn remove(c: &impl GenericClient, plan: &Plan) -> Result<()> {
    for t in &plan.tables {
        c.batch_execute(&format!(
            "DROP TRIGGER IF EXISTS {} ON {}",
            quote_sqlite(TRIGGER),
            qualified(&plan.schema, &t.name)
        ))
        .await
        .ctx(format!("removing the reverse capture from {}", t.name))?;
    }
    Ok(())
}

/// The highest id in the reverse log of `schema` (0 when none or no log).
pub async fn last_id(c: &impl GenericClient, schema: &str) -> Result<i64> {
    let exists: bool = c
        .query_one(
            "SELECT to_regclass('ficus.reverse_changes') IS NOT NULL",
            &[],
        )
        .await
        .ctx("reading ficus.reverse_changes")?
        .get(0);
    if !exists {
        return Ok(0);
    }
    Ok(c.query_one(
        "SELECT coalesce(max(id), 0) FROM ficus.reverse_changes WHERE target_schema = $1",
        &[&schema],
    )
    .await
    .ctx("reading ficus.reverse_changes")?
    .get(0))
}
