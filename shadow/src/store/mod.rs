//! The mismatch store: one SQLite file (WAL, so `ficus shadow report` can read while the
//! proxy writes).
//!
//! Tables: `mismatches` (one row per mismatched exchange: route, method, path, request id,
//! redacted request headers and body, both statuses, headers and bodies, the diff entries as
//! JSON), `mismatch_fields` (one row per distinct field and kind of a mismatch, with an
//! example, for grouping), `counts` (requests per route, minute and result, so reports give
//! shares of compared requests), `noise` and `noise_probes` (learned noise with counts).
//!
//! Rows arrive already redacted and truncated (by the `redact` module); nothing here sees a
//! secret. Retention: at most `keep` mismatches and nothing older than `keep_days`.
//!
//! The proxy never touches SQLite on a request: a writer thread owns the connection and is
//! fed through a bounded channel (`Op`), committing what has queued up in one transaction.
//!
//! # Layout
//! - this file: [`Store`] and its queries;
//! - `record`: the stored values ([`MismatchRecord`], [`StoredResponse`], [`StoredBody`],
//!   [`NoiseRow`]); `schema`: the tables; `sql`: statements shared with the writer;
//! - `writer`: the writer thread and its [`Op`]s.

mod record;
mod schema;
mod sql;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use self::schema::SCHEMA;
use self::sql::{add_count_tx, insert_mismatch_tx, record_noise_tx, store_err};
use crate::capture::Side;
use crate::compare::DiffKind;
use crate::error::ShadowError;
use crate::metrics::Outcome;

/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;

pub(crate) use self::record::{now_ms, FieldRow};
pub use self::record::{MismatchRecord, NoiseRow, StoredBody, StoredResponse, STORED_BODY_BYTES};
pub(crate) use self::writer::{spawn_writer, Op, Retention};

/// A handle on the SQLite file.
pub struct Store {
    pub(super) conn: Connection,
    pub(super) path: PathBuf,
}

impl Store {
    /// Opens (creating when missing) the store at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store, ShadowError> {
        let conn = Connection::open(path).map_err(|e| store_err(path, e))?;
        Store::setup(conn, path)
    }

    /// Opens an existing store; never creates a file.
    pub fn open_existing(path: &Path) -> Result<Store, ShadowError> {
        if !path.exists() {
            return Err(ShadowError::NoStore(path.to_path_buf()));
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )
        .map_err(|e| store_err(path, e))?;
        Store::setup(conn, path)
    }

    fn setup(conn: Connection, path: &Path) -> Result<Store, ShadowError> {
        let err = |e| store_err(path, e);
        conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(Store {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, e: rusqlite::Error) -> ShadowError {
        store_err(&self.path, e)
    }

    /// Inserts one mismatch (and its grouping rows); returns its id.
    pub fn insert_mismatch(&mut self, rec: &MismatchRecord) -> Result<i64, ShadowError> {
        let tx = self
            .conn
            .transaction()
            .map_err(|e| store_err(&self.path, e))?;
        let id = insert_mismatch_tx(&tx, rec).map_err(|e| store_err(&self.path, e))?;
        tx.commit().map_err(|e| store_err(&self.path, e))?;
        Ok(id)
    }

    /// Fetches one mismatch.
    pub fn mismatch(&self, id: i64) -> Result<Option<MismatchRecord>, ShadowError> {
        let row = self
            .conn
            .query_row(
                "SELECT time_ms, route, method, path, request_id, primary_side, request_headers,
                        request_body, request_body_truncated,
                        legacy_status, legacy_headers, legacy_body, legacy_body_truncated,
                        new_status, new_headers, new_body, new_body_truncated, diff, diff_truncated
                 FROM mismatches WHERE id = ?1",
                [id],
                |r| {
                    Ok((
                        (
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, String>(4)?,
                            r.get::<_, String>(5)?,
                        ),
                        (
                            r.get::<_, String>(6)?,
                            r.get::<_, Vec<u8>>(7)?,
                            r.get::<_, bool>(8)?,
                        ),
                        (
                            r.get::<_, u16>(9)?,
                            r.get::<_, String>(10)?,
                            r.get::<_, Vec<u8>>(11)?,
                            r.get::<_, bool>(12)?,
                        ),
                        (
                            r.get::<_, u16>(13)?,
                            r.get::<_, String>(14)?,
                            r.get::<_, Vec<u8>>(15)?,
                            r.get::<_, bool>(16)?,
                        ),
                        (r.get::<_, String>(17)?, r.get::<_, bool>(18)?),
                    ))
                },
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let Some((head, req, legacy, new, (diff, diff_truncated))) = row else {
            return Ok(None);
        };
        let corrupt = |detail: String| ShadowError::Corrupt { id, detail };
        let headers = |s: &str| -> Result<Vec<(String, String)>, ShadowError> {
            serde_json::from_str(s).map_err(|e| corrupt(format!("headers: {e}")))
        };
        let response = |(status, h, body, truncated): (u16, String, Vec<u8>, bool)| {
            Ok::<_, ShadowError>(StoredResponse {
                status,
                headers: headers(&h)?,
                body: StoredBody {
                    data: body,
                    truncated,
                },
            })
        };
        let (time_ms, route, method, path, request_id, primary) = head;
        Ok(Some(MismatchRecord {
            id,
            time_ms,
            route,
            method,
            path,
            request_id,
            primary: Side::parse(&primary).ok_or_else(|| corrupt(format!("side {primary:?}")))?,
            request_headers: headers(&req.0)?,
            request_body: StoredBody {
                data: req.1,
                truncated: req.2,
            },
            legacy: response(legacy)?,
            new: response(new)?,
            diff: serde_json::from_str(&diff).map_err(|e| corrupt(format!("diff: {e}")))?,
            diff_truncated,
        }))
    }

    /// Adds `n` requests with `outcome` to `route`'s count for the minute of `time_ms`.
    pub fn add_count(
        &mut self,
        route: &str,
        outcome: Outcome,
        time_ms: i64,
        n: u64,
    ) -> Result<(), ShadowError> {
        add_count_tx(&self.conn, route, time_ms / 60_000, outcome.as_str(), n)
            .map_err(|e| self.err(e))
    }

    /// Records one noise probe of `route` and what it showed.
    pub fn record_noise(
        &mut self,
        route: &str,
        observed: &[(String, DiffKind)],
        time_ms: i64,
    ) -> Result<(), ShadowError> {
        let tx = self
            .conn
            .transaction()
            .map_err(|e| store_err(&self.path, e))?;
        record_noise_tx(&tx, route, observed, time_ms).map_err(|e| store_err(&self.path, e))?;
        tx.commit().map_err(|e| store_err(&self.path, e))
    }

    /// Every learned (route, field, kind).
    pub fn learned_noise(&self) -> Result<Vec<(String, String, DiffKind)>, ShadowError> {
        Ok(self
            .noise(None)?
            .into_iter()
            .map(|n| (n.route, n.field, n.kind))
            .collect())
    }

    /// Learned noise, optionally of one route, by route then count (most frequent first).
    pub fn noise(&self, route: Option<&str>) -> Result<Vec<NoiseRow>, ShadowError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT n.route, n.field, n.kind, n.count, COALESCE(p.probes, 0), n.first_ms, n.last_ms
                 FROM noise n LEFT JOIN noise_probes p ON p.route = n.route
                 WHERE ?1 IS NULL OR n.route = ?1
                 ORDER BY n.route, n.count DESC, n.field, n.kind",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([route], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, i64>(6)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (route, field, kind, count, probes, first_ms, last_ms) =
                row.map_err(|e| self.err(e))?;
            // A kind this version does not know is skipped rather than fatal.
            let Some(kind) = DiffKind::parse(&kind) else {
                continue;
            };
            out.push(NoiseRow {
                route,
                field,
                kind,
                count: count.max(0) as u64,
                probes: probes.max(0) as u64,
                first_ms,
                last_ms,
            });
        }
        Ok(out)
    }

    /// Requests per route and result since `since_ms` (all when `None`), optionally of one
    /// route.
    pub fn counts(
        &self,
        since_ms: Option<i64>,
        route: Option<&str>,
    ) -> Result<HashMap<String, HashMap<Outcome, u64>>, ShadowError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT route, result, SUM(n) FROM counts
                 WHERE minute >= ?1 AND (?2 IS NULL OR route = ?2)
                 GROUP BY route, result",
            )
            .map_err(|e| self.err(e))?;
        let since_minute = since_ms.map_or(i64::MIN, |s| s.div_euclid(60_000));
        let rows = stmt
            .query_map(params![since_minute, route], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out: HashMap<String, HashMap<Outcome, u64>> = HashMap::new();
        for row in rows {
            let (route, result, n) = row.map_err(|e| self.err(e))?;
            if let Some(o) = Outcome::parse(&result) {
                *out.entry(route).or_default().entry(o).or_default() += n.max(0) as u64;
            }
        }
        Ok(out)
    }

    /// Grouping rows since `since_ms`, optionally of one route, newest first.
    pub(crate) fn field_rows(
        &self,
        since_ms: Option<i64>,
        route: Option<&str>,
    ) -> Result<Vec<FieldRow>, ShadowError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT route, field, kind, mismatch_id, time_ms, legacy, new FROM mismatch_fields
                 WHERE time_ms >= ?1 AND (?2 IS NULL OR route = ?2)
                 ORDER BY mismatch_id DESC",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![since_ms.unwrap_or(i64::MIN), route], |r| {
                Ok(FieldRow {
                    route: r.get(0)?,
                    field: r.get(1)?,
                    kind: r.get(2)?,
                    mismatch_id: r.get(3)?,
                    time_ms: r.get(4)?,
                    legacy: r.get(5)?,
                    new: r.get(6)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// The newest `limit` mismatches (optionally of one route), newest first.
    pub fn latest_mismatches(
        &self,
        limit: usize,
        route: Option<&str>,
    ) -> Result<Vec<MismatchRecord>, ShadowError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let ids: Vec<i64> = {
            let mut st = self
                .conn
                .prepare(
                    "SELECT id FROM mismatches WHERE ?1 IS NULL OR route = ?1 ORDER BY id DESC LIMIT ?2",
                )
                .map_err(|e| self.err(e))?;
            let rows = st
                .query_map(params![route, limit], |r| r.get(0))
                .map_err(|e| self.err(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.err(e))?
        };
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            // Retention may remove a row between the two reads; skip it.
            if let Some(m) = self.mismatch(id)? {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// Number of stored mismatches.
    pub fn mismatch_count(&self) -> Result<u64, ShadowError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM mismatches", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n.max(0) as u64)
            .map_err(|e| self.err(e))
    }

    /// Applies retention: keeps the newest `keep` mismatches, removes mismatches and counts
    /// older than `keep_days` before `now_ms`. Returns the mismatches removed.
    pub fn enforce_retention(
        &mut self,
        keep: u64,
        keep_days: u32,
        now_ms: i64,
    ) -> Result<u64, ShadowError> {
        let cutoff = now_ms - i64::from(keep_days) * DAY_MS;
        let tx = self
            .conn
            .transaction()
            .map_err(|e| store_err(&self.path, e))?;
        let run = || -> rusqlite::Result<u64> {
            let mut removed = tx.execute("DELETE FROM mismatches WHERE time_ms < ?1", [cutoff])?;
            removed += tx.execute(
                "DELETE FROM mismatches WHERE id <= (SELECT id FROM mismatches ORDER BY id DESC LIMIT 1 OFFSET ?1)",
                [i64::try_from(keep).unwrap_or(i64::MAX)],
            )?;
            tx.execute(
                "DELETE FROM counts WHERE minute < ?1",
                [cutoff.div_euclid(60_000)],
            )?;
            Ok(removed as u64)
        };
        let removed = run().map_err(|e| store_err(&self.path, e))?;
        tx.commit().map_err(|e| store_err(&self.path, e))?;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::DiffEntry;
    use serde_json::json;

    /// A store path in a fresh directory, removed when the guard drops.
    struct Tmp(PathBuf);

    impl Drop for Tmp {
        fn drop(&mut self) {
            if let Some(dir) = self.0.parent() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }

    fn temp_path(name: &str) -> Tmp {
        let dir = std::env::temp_dir().join(format!(
            "ficus-shadow-{}-{}-{}",
            name,
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Tmp(dir.join("shadow.db"))
    }

    fn record(route: &str, time_ms: i64) -> MismatchRecord {
        MismatchRecord {
            id: 0,
            time_ms,
            route: route.into(),
            method: "GET".into(),
            path: "/api/tasks/".into(),
            request_id: "req-1".into(),
            primary: Side::Legacy,
            request_headers: vec![("accept".into(), "*/*".into())],
            request_body: StoredBody::default(),
            legacy: StoredResponse {
                status: 200,
                headers: vec![],
                body: StoredBody::cut(b"{\"a\":1}".to_vec()),
            },
            new: StoredResponse {
                status: 200,
                headers: vec![],
                body: StoredBody::cut(b"{\"a\":2}".to_vec()),
            },
            diff: vec![DiffEntry {
                path: "/a".into(),
                field: "/a".into(),
                kind: DiffKind::Value,
                legacy: Some(json!(1)),
                new: Some(json!(2)),
            }],
            diff_truncated: false,
        }
    }

    #[test]
    fn round_trip() {
        let tmp = temp_path("rt");
        let path = tmp.0.clone();
        let mut s = Store::open(&path).unwrap();
        let mut r = record("r", 1000);
        let id = s.insert_mismatch(&r).unwrap();
        r.id = id;
        assert_eq!(s.mismatch(id).unwrap(), Some(r));
        assert_eq!(s.mismatch(id + 1).unwrap(), None);
        drop(s);
        assert!(Store::open_existing(&path).is_ok());
        assert!(matches!(
            Store::open_existing(&path.with_file_name("nope.db")),
            Err(ShadowError::NoStore(_))
        ));
    }

    #[test]
    fn latest_mismatches_newest_first() {
        let tmp = temp_path("latest");
        let mut s = Store::open(&tmp.0).unwrap();
        for (i, r) in ["a", "b", "a", "a"].iter().enumerate() {
            s.insert_mismatch(&record(r, 1000 + i as i64)).unwrap();
        }
        let all = s.latest_mismatches(3, None).unwrap();
        assert_eq!(all.iter().map(|m| m.id).collect::<Vec<_>>(), [4, 3, 2]);
        let a = s.latest_mismatches(10, Some("a")).unwrap();
        assert_eq!(a.iter().map(|m| m.id).collect::<Vec<_>>(), [4, 3, 1]);
        assert!(s.latest_mismatches(10, Some("zz")).unwrap().is_empty());
    }

    #[test]
    fn retention_by_count_and_age() {
        let tmp = temp_path("ret");
        let mut s = Store::open(&tmp.0).unwrap();
        let now = now_ms();
        for i in 0..5 {
            s.insert_mismatch(&record("r", now - 20 * DAY_MS + i))
                .unwrap();
        }
        for i in 0..20 {
            s.insert_mismatch(&record("r", now - 1000 + i)).unwrap();
        }
        s.add_count("r", Outcome::Match, now - 20 * DAY_MS, 3)
            .unwrap();
        s.add_count("r", Outcome::Match, now, 4).unwrap();
        assert_eq!(s.mismatch_count().unwrap(), 25);
        let removed = s.enforce_retention(8, 14, now).unwrap();
        assert_eq!(removed, 17);
        assert_eq!(s.mismatch_count().unwrap(), 8);
        // The newest ones are kept; their grouping rows too, the others' are gone.
        assert_eq!(s.field_rows(None, None).unwrap().len(), 8);
        assert!(s.mismatch(25).unwrap().is_some());
        assert!(s.mismatch(17).unwrap().is_none());
        assert_eq!(s.counts(None, None).unwrap()["r"][&Outcome::Match], 4);
    }

    #[test]
    fn noise_counts() {
        let tmp = temp_path("noise");
        let mut s = Store::open(&tmp.0).unwrap();
        let obs = vec![("/*/t".to_string(), DiffKind::Value)];
        s.record_noise("r", &obs, 1).unwrap();
        s.record_noise("r", &obs, 2).unwrap();
        s.record_noise("r", &[], 3).unwrap();
        let rows = s.noise(Some("r")).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (
                rows[0].count,
                rows[0].probes,
                rows[0].first_ms,
                rows[0].last_ms
            ),
            (2, 3, 1, 2)
        );
        assert!(s.noise(Some("other")).unwrap().is_empty());
        assert_eq!(s.learned_noise().unwrap().len(), 1);
    }
}
