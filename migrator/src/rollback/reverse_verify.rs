//! Step 3, the reverse verify: after the write-back commits, every row of the pass is read
//! again from both sides and compared canonically — legacy must hold what new held at the
//! snapshot (or its newer version, when it was kept); rows new changed again meanwhile are
//! counted and left to the catch-up pass.

use std::collections::BTreeSet;

use super::options::RollbackOptions;
use super::report::RowAction;
use super::scope::multiset_extra;
use super::write_back::TableWork;
use crate::drift::{
    compare, source_rows_by_key, target_rows_by_key, Drift, DriftClass, LegacyRow, TableView,
};
use crate::error::{DualWriteError, DwResult};
use crate::plan::Plan;
use crate::source::{open_source, KeyValue};
use crate::writeback::canon_unix_us;

/// Compare legacy with new for the rows of a pass, after its commit.
pub(super) async fn reverse_verify(
    opts: &RollbackOptions,
    plan: &Plan,
    views: &[TableView],
    client: &tokio_postgres::Client,
    w: &mut TableWork,
) -> DwResult<()> {
    let v = &views[w.vi];
    if v.plan.key_columns.is_empty() {
        let extra = multiset_extra(opts, v, client).await?;
        w.report.verified = w.report.in_scope;
        for (row, n) in extra {
            if !w.inserted_hashes.contains(&row.hash()) {
                // Appended on the new side after the snapshot: left to the catch-up.
                w.report.changed_since += n;
                continue;
            }
            w.report.differences.push(Drift {
                table: v.name().into(),
                key: v.row_display(&row),
                class: DriftClass::MissingInLegacy,
                columns: vec![],
                note: (n > 1).then(|| format!("{n} copies")),
            });
        }
        return Ok(());
    }
    let kc = v.plan.key_columns.clone();
    let keys: Vec<Vec<KeyValue>> = w.snapshot.iter().filter_map(|r| v.key_of(&kc, r)).collect();
    let new = target_rows_by_key(client, &plan.schema, v, &kc, &keys).await?;
    let (src, vv, k2) = (opts.source.clone(), v.clone(), kc.clone());
    let legacy = tokio::task::spawn_blocking(move || {
        let conn = open_source(&src)?;
        source_rows_by_key(&conn, &vv, &k2, &keys)
    })
    .await
    .map_err(|e| DualWriteError::Internal(format!("verify thread: {e}")))??;
    let conflicts: BTreeSet<String> = w
        .rows
        .iter()
        .filter(|d| d.change.action == RowAction::Conflict)
        .map(|d| d.change.key.clone())
        .collect();
    for snap in &w.snapshot {
        let k = snap.key(&kc);
        w.report.verified += 1;
        let now_new = new.get(&k);
        if now_new.is_some_and(|n| n.bytes != snap.bytes) {
            w.report.changed_since += 1;
            continue;
        }
        let l = legacy.get(&k);
        if w.keep_legacy.contains(&k) {
            // Legacy's version was newer: it must still be.
            let ok = match (l, v.updated_at) {
                (Some(LegacyRow::Row(lr)), Some(u)) => {
                    canon_unix_us(lr.column(u)) > canon_unix_us(snap.column(u))
                }
                _ => false,
            };
            if ok {
                continue;
            }
        }
        if conflicts.contains(&v.row_display(snap)) {
            // Listed, deliberately not written (catch-up under abort).
            continue;
        }
        if let Some(d) = compare(v, l, Some(snap)) {
            w.report.differences.push(d);
        }
    }
    Ok(())
}
