//! `migrate status`: per table, rows copied and quarantined, the last checkpoint, and the
//! last verification (when, with what result), read from the `ficus` schema of the target.

use serde::{Deserialize, Serialize};

use crate::carried::Carried;
use crate::checkpoint;
use crate::error::{MigrateError, PgContext, Result};
use crate::pg::connect;

/// State of one migration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    /// The target schema.
    pub schema: String,
    /// The plan's fingerprint.
    pub fingerprint: String,
    /// The SQLite file it was started from.
    pub source_path: String,
    /// `copy`, `postload` or `done`.
    pub phase: String,
    /// When the migration started.
    pub started_at: String,
    /// When it finished.
    pub finished_at: Option<String>,
    /// Per table.
    pub tables: Vec<TableStatus>,
    /// Post-load steps that did not apply (reported, not retried).
    pub failed_steps: Vec<String>,
    /// What was carried and what was not, per kind (views, triggers, skipped objects...).
    pub carried: Carried,
    /// The follower (`migrate run --follow`), if it ever ran.
    pub follow: Option<crate::follow::FollowState>,
    /// Change capture on the source (when `--source` was given).
    pub capture: Option<crate::capture::CaptureStatus>,
}

/// State of one table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableStatus {
    /// The table (its PostgreSQL name).
    pub table: String,
    /// Rows in the source when it was planned.
    pub source_rows: u64,
    /// Rows copied.
    pub rows_copied: u64,
    /// Rows quarantined.
    pub rows_quarantined: u64,
    /// Every row is copied.
    pub copy_done: bool,
    /// Last key read, as stored.
    pub last_checkpoint: Option<String>,
    /// When the checkpoint was written.
    pub checkpoint_at: String,
    /// When it was last verified.
    pub verified_at: Option<String>,
    /// Whether that verification was clean.
    pub verified_clean: Option<bool>,
    /// missing / extra / differs of the last verification.
    pub verify_summary: Option<String>,
}

impl StatusReport {
    /// Text for people.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut s = format!(
            "migration into schema {} from {}: phase {} (started {}{})\nfingerprint {}\n",
            self.schema,
            self.source_path,
            self.phase,
            self.started_at,
            self.finished_at
                .as_ref()
                .map(|f| format!(", finished {f}"))
                .unwrap_or_default(),
            self.fingerprint
        );
        let _ = writeln!(
            s,
            "{:<24} {:>10} {:>10} {:>11} {:<6} {:<32} verified",
            "table", "source", "copied", "quarantined", "copy", "last checkpoint"
        );
        for t in &self.tables {
            let v = match (&t.verified_at, t.verified_clean) {
                (Some(at), Some(true)) => format!("clean at {at}"),
                (Some(at), Some(false)) => format!(
                    "DIFFERENT at {at} ({})",
                    t.verify_summary.clone().unwrap_or_default()
                ),
                _ => "never".into(),
            };
            let _ = writeln!(
                s,
                "{:<24} {:>10} {:>10} {:>11} {:<6} {:<32} {v}",
                t.table,
                t.source_rows,
                t.rows_copied,
                t.rows_quarantined,
                if t.copy_done { "done" } else { "…" },
                t.last_checkpoint.clone().unwrap_or_else(|| "-".into()),
            );
        }
        s.push_str(&self.carried.text());
        if let Some(c) = &self.capture {
            s.push_str(&c.text());
        }
        if let Some(f) = &self.follow {
            let _ = writeln!(
                s,
                "follower: {} — at change {} (epoch {}), {} change(s) / {} row(s) applied in {} round(s) since {}; lag {} change(s), {:.2} s (at {})",
                f.state,
                f.position,
                f.epoch,
                f.changes,
                f.rows_applied,
                f.rounds,
                f.started_at,
                f.lag_changes,
                f.lag_seconds,
                f.updated_at
            );
        }
        s
    }
}

/// Read the status of the migration into `schema`.
pub async fn status(target: &str, schema: &str) -> Result<StatusReport> {
    let client = connect(target).await?;
    let follow = crate::follow::load_state(&client, schema).await?;
    let Some((m, plan)) = checkpoint::load_migration(&client, schema).await? else {
        return Err(MigrateError::NoMigration(schema.to_string()));
    };
    let cps = checkpoint::load_checkpoints(&client, schema).await?;
    let ver = client
        .query(
            "SELECT DISTINCT ON (table_name) table_name, verified_at::text, clean, missing, extra, differs \
             FROM ficus.verifications WHERE target_schema = $1 ORDER BY table_name, id DESC",
            &[&schema],
        )
        .await
        .ctx("reading ficus.verifications")?;
    let steps = checkpoint::steps_done(&client, schema).await?;
    let carried = Carried::of(
        &plan,
        &steps,
        cps.iter().map(|c| c.rows_copied).sum(),
        cps.iter().map(|c| c.rows_quarantined).sum(),
    );
    let tables = cps
        .into_iter()
        .map(|c| {
            let v = ver.iter().find(|r| r.get::<_, String>(0) == c.table);
            TableStatus {
                last_checkpoint: c
                    .last_key
                    .as_ref()
                    .and_then(|k| serde_json::to_string(k).ok()),
                table: c.table,
                source_rows: c.source_rows,
                rows_copied: c.rows_copied,
                rows_quarantined: c.rows_quarantined,
                copy_done: c.done,
                checkpoint_at: c.updated_at,
                verified_at: v.map(|r| r.get(1)),
                verified_clean: v.map(|r| r.get(2)),
                verify_summary: v.map(|r| {
                    format!(
                        "missing {} extra {} differs {}",
                        r.get::<_, i64>(3),
                        r.get::<_, i64>(4),
                        r.get::<_, i64>(5)
                    )
                }),
            }
        })
        .collect();
    Ok(StatusReport {
        schema: schema.to_string(),
        fingerprint: m.fingerprint,
        source_path: m.source_path,
        phase: m.phase,
        started_at: m.started_at,
        finished_at: m.finished_at,
        follow,
        capture: None,
        tables,
        carried,
        failed_steps: steps
            .into_iter()
            .filter(|(_, o, _)| o != "ok")
            .map(|(s, _, e)| format!("{s}: {}", e.unwrap_or_default()))
            .collect(),
    })
}
