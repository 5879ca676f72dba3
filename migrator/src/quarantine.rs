//! `ficus.quarantine`: rows whose values do not convert. Never dropped, never NULLed: each
//! failing column of such a row is recorded with the row's key, the raw value and the reason,
//! in the same transaction as the batch it was read in.

use rusqlite::types::ValueRef;
use serde::{Deserialize, Serialize};
use tokio_postgres::GenericClient;

use crate::convert::{display_sqlite, raw_bytes, storage_class};
use crate::error::{PgContext, Result};

/// One unconvertible value of one row.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QuarantineRecord {
    /// Source key as JSON, e.g. `{"id":42}`.
    pub key: String,
    pub column: String,
    pub storage_class: String,
    pub raw_value: Option<Vec<u8>>,
    pub raw_display: String,
    pub reason: String,
}

impl QuarantineRecord {
    pub fn new(key: String, column: &str, v: &ValueRef<'_>, reason: String) -> Self {
        QuarantineRecord {
            key,
            column: column.to_string(),
            storage_class: storage_class(v).to_string(),
            raw_value: raw_bytes(v),
            raw_display: display_sqlite(v),
            reason,
        }
    }
}

/// Insert records (inside the batch's transaction).
pub async fn insert(
    tx: &impl GenericClient,
    schema: &str,
    table: &str,
    recs: &[QuarantineRecord],
) -> Result<()> {
    if recs.is_empty() {
        return Ok(());
    }
    let keys: Vec<&str> = recs.iter().map(|r| r.key.as_str()).collect();
    let cols: Vec<&str> = recs.iter().map(|r| r.column.as_str()).collect();
    let classes: Vec<&str> = recs.iter().map(|r| r.storage_class.as_str()).collect();
    let raws: Vec<Option<&[u8]>> = recs.iter().map(|r| r.raw_value.as_deref()).collect();
    let disp: Vec<&str> = recs.iter().map(|r| r.raw_display.as_str()).collect();
    let reasons: Vec<&str> = recs.iter().map(|r| r.reason.as_str()).collect();
    tx.execute(
        "INSERT INTO ficus.quarantine (target_schema, table_name, key, column_name, storage_class, raw_value, raw_display, reason) \
         SELECT $1, $2, * FROM unnest($3::text[], $4::text[], $5::text[], $6::bytea[], $7::text[], $8::text[])",
        &[&schema, &table, &keys, &cols, &classes, &raws, &disp, &reasons],
    )
    .await
    .ctx(format!("quarantining rows of {table}"))?;
    Ok(())
}

/// Distinct quarantined keys of a table.
pub async fn keys(
    client: &impl GenericClient,
    schema: &str,
    table: &str,
) -> Result<std::collections::HashSet<String>> {
    if !crate::checkpoint::schema_exists(client).await? {
        return Ok(Default::default());
    }
    let rows = client
        .query(
            "SELECT DISTINCT key FROM ficus.quarantine WHERE target_schema = $1 AND table_name = $2",
            &[&schema, &table],
        )
        .await
        .ctx("reading ficus.quarantine")?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
