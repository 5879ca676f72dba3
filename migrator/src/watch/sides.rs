//! Both sides as the watch reads them: the plan's tables as dual-write views, the legacy's
//! storage styles (for `updated_at` watermark queries), the UNIQUE columns a route's key may
//! name, one PostgreSQL connection — and rows fetched by key from SQLite and PostgreSQL.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio_postgres::Client;

use crate::convert::PgType;
use crate::drift::{
    key_value_from_text, source_rows_by_key, target_rows_by_key, verify_views, LegacyRow, TableView,
};
use crate::error::{DualWriteError, DwResult, MigrateError};
use crate::introspect::{introspect, quote_sqlite};
use crate::pg::connect;
use crate::plan::{qualified, Plan};
use crate::rows::CanonRow;
use crate::source::{open_source, KeyValue};
use crate::verify::TableVerify;
use crate::writeback::LegacyStyle;

/// Legacy rows by canonical key bytes, and new rows by the same.
pub(super) type Fetched = (HashMap<Vec<u8>, LegacyRow>, HashMap<Vec<u8>, CanonRow>);

/// The two stores and what the watch knows about their tables.
pub(super) struct Sides {
    source: PathBuf,
    target: String,
    /// The plan (the stored one, when `run` stored it).
    pub(super) plan: Plan,
    /// The watched tables, by view index.
    pub(super) views: Arc<Vec<TableView>>,
    /// How the legacy stores each view's columns (views with an `updated_at` only).
    styles: Vec<Option<LegacyStyle>>,
    /// The connection to the target.
    pub(super) client: Client,
    /// (view, column) of every UNIQUE or single-column primary key column.
    pub(super) unique: Vec<(usize, usize)>,
}

impl Sides {
    /// Learns the legacy's styles and UNIQUE columns from `source`, and connects to `target`.
    pub(super) async fn open(
        source: PathBuf,
        target: String,
        plan: Plan,
        views: Vec<TableView>,
    ) -> DwResult<Sides> {
        let views = Arc::new(views);
        let (src, v2) = (source.clone(), views.clone());
        let (styles, unique) = tokio::task::spawn_blocking(move || -> DwResult<_> {
            let conn = open_source(&src)?;
            let mut styles = Vec::new();
            for v in v2.iter() {
                styles.push(match v.updated_at {
                    Some(_) => Some(LegacyStyle::learn(&conn, &v.plan)?),
                    None => None,
                });
            }
            let schema = introspect(&conn)?;
            let mut unique = Vec::new();
            for (vi, v) in v2.iter().enumerate() {
                let Some(info) = schema.tables.iter().find(|t| t.name == v.plan.source_name) else {
                    continue;
                };
                let mut cols: Vec<String> = Vec::new();
                if info.primary_key.len() == 1 {
                    cols.push(info.primary_key[0].clone());
                }
                for ix in &info.indexes {
                    if ix.unique && ix.partial.is_none() && ix.columns.len() == 1 {
                        if let Some(c) = &ix.columns[0].column {
                            cols.push(c.clone());
                        }
                    }
                }
                for c in cols {
                    if let Some(ci) = v.column(&c) {
                        if !unique.contains(&(vi, ci)) {
                            unique.push((vi, ci));
                        }
                    }
                }
            }
            Ok((styles, unique))
        })
        .await
        .map_err(|e| DualWriteError::Internal(format!("reading the source: {e}")))??;
        let client = connect(&target).await?;
        Ok(Sides {
            source,
            target,
            plan,
            views,
            styles,
            client,
            unique,
        })
    }

    /// How the legacy stores view `vi`'s columns (for views with an `updated_at`).
    pub(super) fn style(&self, vi: usize) -> Option<&LegacyStyle> {
        self.styles.get(vi).and_then(|s| s.as_ref())
    }

    /// The SQLite file.
    pub(super) fn source(&self) -> &PathBuf {
        &self.source
    }

    /// Whether either side holds `value` in column `ci` of view `vi`.
    pub(super) async fn holds(&self, vi: usize, ci: usize, value: &str) -> DwResult<bool> {
        let v = &self.views[vi];
        let kv = key_value_from_text(v.plan.columns[ci].conversion.pg_type, value);
        let col = quote_sqlite(&v.plan.columns[ci].name);
        let q = qualified(&self.plan.schema, &v.plan.name);
        let in_new = self
            .client
            .query_opt(
                &format!("SELECT 1 FROM {q} WHERE {col}::text = $1 LIMIT 1"),
                &[&value],
            )
            .await
            .map_err(|source| MigrateError::Target {
                context: format!("looking for key {value:?} in {}", v.name()),
                source,
            })?
            .is_some();
        if in_new {
            return Ok(true);
        }
        let (src, table) = (self.source.clone(), v.plan.source_name.clone());
        tokio::task::spawn_blocking(move || -> DwResult<bool> {
            let conn = open_source(&src)?;
            let sql = format!(
                "SELECT 1 FROM {} WHERE {col} = ?1 LIMIT 1",
                quote_sqlite(&table)
            );
            conn.query_row(&sql, [&kv], |_| Ok(()))
                .map(|_| true)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(false),
                    source => Err(MigrateError::Source { table, source }.into()),
                })
        })
        .await
        .map_err(|e| DualWriteError::Internal(format!("source lookup: {e}")))?
    }

    /// Both sides of `keys` (columns `cols` of view `vi`).
    pub(super) async fn fetch(
        &self,
        vi: usize,
        cols: &[usize],
        keys: Vec<Vec<KeyValue>>,
    ) -> DwResult<Fetched> {
        let new = target_rows_by_key(
            &self.client,
            &self.plan.schema,
            &self.views[vi],
            cols,
            &keys,
        )
        .await?;
        let (src, views, c2) = (self.source.clone(), self.views.clone(), cols.to_vec());
        let legacy = tokio::task::spawn_blocking(move || {
            let conn = open_source(&src)?;
            source_rows_by_key(&conn, &views[vi], &c2, &keys)
        })
        .await
        .map_err(|e| DualWriteError::Internal(format!("source lookup: {e}")))??;
        Ok((legacy, new))
    }

    /// Verify the views `which` (checksums, then the differing rows), in that order.
    pub(super) async fn verify_views(&self, which: &[usize]) -> DwResult<Vec<TableVerify>> {
        verify_views(&self.plan, &self.views, which, &self.source, &self.target).await
    }

    /// Whether view `vi` can be swept by its `updated_at` watermark.
    pub(super) fn watermark_ok(&self, vi: usize) -> bool {
        let v = &self.views[vi];
        let (Some(u), Some(style)) = (v.updated_at, self.style(vi)) else {
            return false;
        };
        !v.plan.key_columns.is_empty()
            && v.plan.key_columns.iter().all(|c| {
                matches!(
                    v.plan.columns[*c].conversion.pg_type,
                    PgType::Smallint
                        | PgType::Integer
                        | PgType::Bigint
                        | PgType::Text
                        | PgType::Varchar(_)
                )
            })
            && style.since_condition(&v.plan, u, 0).is_some()
    }
}
