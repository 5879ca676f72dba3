//! Value fidelity against a real PostgreSQL: for each awkward kind of SQLite data, copied +
//! quarantined = source rows, verify is clean, and the values arrive as they should.

mod common;

use common::*;
use ficus_migrator::MigrationConfig;

fn cfg(toml: &str) -> MigrationConfig {
    MigrationConfig::parse(toml, "test").unwrap()
}

#[tokio::test]
async fn mixed_storage_classes_in_one_column() {
    let d = temp_dir("mixed");
    let src = sqlite(
        &d,
        "CREATE TABLE m (id INTEGER PRIMARY KEY, anyv, num_text, mostly_text INTEGER);
         INSERT INTO m VALUES (1, 1, 1, 1), (2, 2.5, 2.5, 'N/A'), (3, 'text', 'abc', 'n/a'),
                              (4, x'00ff', NULL, 'unknown'), (5, NULL, 7, 5);",
    );
    let db = testkit::pg::fresh_database("mig_mixed").unwrap();
    let (plan, rep) = migrate_clean(&src, &db.url, &MigrationConfig::default()).await;
    assert_eq!(rep.rows_quarantined, 0);
    let c = pg(&db.url).await;
    assert_eq!(col_type(&c, "m", "anyv").await, "bytea");
    assert_eq!(col_type(&c, "m", "num_text").await, "text");
    // 3 of 5 values of an INTEGER column are text: over half, so widened to text rather than
    // quarantined.
    assert_eq!(col_type(&c, "m", "mostly_text").await, "text");
    let rows = c
        .query("SELECT anyv, num_text FROM m ORDER BY id", &[])
        .await
        .unwrap();
    let a: Vec<Option<Vec<u8>>> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(a[0].as_deref(), Some(&b"1"[..]));
    assert_eq!(a[1].as_deref(), Some(&b"2.5"[..]));
    assert_eq!(a[3].as_deref(), Some(&[0u8, 0xff][..]));
    let t: Vec<Option<String>> = rows.iter().map(|r| r.get(1)).collect();
    assert_eq!(
        t,
        vec![
            Some("1".into()),
            Some("2.5".into()),
            Some("abc".into()),
            None,
            Some("7".into())
        ]
    );
    assert!(plan.report().contains("widened to text"));
}

#[tokio::test]
async fn nul_bytes_are_quarantined_or_stripped_when_configured() {
    let d = temp_dir("nul");
    let src = sqlite(
        &d,
        "CREATE TABLE n (id INTEGER PRIMARY KEY, a TEXT, b TEXT);
         INSERT INTO n VALUES (1, 'fine', 'fine'), (2, CAST(x'610062' AS TEXT), 'ok'),
                              (3, 'ok', CAST(x'610062' AS TEXT));",
    );
    let db = testkit::pg::fresh_database("mig_nul").unwrap();
    let (plan, rep) = migrate_clean(
        &src,
        &db.url,
        &cfg("[tables.n.columns.b]\nstrip_nul = true\n"),
    )
    .await;
    assert!(plan.report().contains("NUL byte"), "{}", plan.report());
    assert_eq!(rep.rows_quarantined, 1);
    assert_eq!(rep.rows_copied, 2);
    let c = pg(&db.url).await;
    let q = c
        .query_one(
            "SELECT table_name, key, column_name, raw_value, reason FROM ficus.quarantine",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(q.get::<_, String>(0), "n");
    assert_eq!(q.get::<_, String>(1), r#"{"id":2}"#);
    assert_eq!(q.get::<_, String>(2), "a");
    assert_eq!(q.get::<_, Vec<u8>>(3), b"a\0b".to_vec());
    assert!(q.get::<_, String>(4).contains("NUL"));
    let b: String = c
        .query_one("SELECT b FROM n WHERE id = 3", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(b, "ab");
}

#[tokio::test]
async fn invalid_utf8_is_quarantined_not_nulled() {
    let d = temp_dir("utf8");
    let src = sqlite(
        &d,
        "CREATE TABLE u (id INTEGER PRIMARY KEY, name TEXT NOT NULL, note TEXT);
         INSERT INTO u VALUES (1, 'café', 'x'), (2, CAST(x'61ff62' AS TEXT), 'y'),
                              (3, 'ok', CAST(x'c328' AS TEXT));",
    );
    let db = testkit::pg::fresh_database("mig_utf8").unwrap();
    let (_, rep) = migrate_clean(
        &src,
        &db.url,
        &cfg("[tables.u.columns.note]\nlossy_utf8 = true\n"),
    )
    .await;
    assert_eq!((rep.rows_copied, rep.rows_quarantined), (2, 1));
    let c = pg(&db.url).await;
    let (key, raw): (String, Vec<u8>) = {
        let r = c
            .query_one("SELECT key, raw_value FROM ficus.quarantine", &[])
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(key, r#"{"id":2}"#);
    assert_eq!(raw, b"a\xffb".to_vec());
    let note: String = c
        .query_one("SELECT note FROM u WHERE id = 3", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(note, "\u{fffd}(");
    // NOT NULL survived (pgloader drops it).
    let nn: String = c
        .query_one("SELECT is_nullable FROM information_schema.columns WHERE table_name = 'u' AND column_name = 'name'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(nn, "NO");
}

#[tokio::test]
async fn epochs_and_text_dates_in_datetime_columns() {
    let d = temp_dir("dates");
    let src = sqlite(
        &d,
        "CREATE TABLE e (id INTEGER PRIMARY KEY, at DATETIME, day DATE);
         INSERT INTO e VALUES
           (1, 1700000000, '2023-11-14'),          -- epoch seconds
           (2, 1700000000000, '2023/11/14'),       -- epoch milliseconds
           (3, '2023-11-14 22:13:20', NULL),       -- SQLAlchemy naive
           (4, '2023-11-14T22:13:20.000000', NULL),
           (5, '2023-11-14T23:13:20+01:00', NULL), -- with offset
           (6, '2023-11-14 22:13:20Z', NULL),
           (7, 'Tue, 14 Nov 2023 22:13:20 +0000', NULL),
           (8, 2460263.425925926, NULL),          -- julianday()
           (9, 'not a date', NULL),
           (10, '2023-11-14', NULL);",
    );
    let db = testkit::pg::fresh_database("mig_dates").unwrap();
    let (plan, rep) = migrate_clean(&src, &db.url, &MigrationConfig::default()).await;
    assert_eq!(rep.rows_quarantined, 1, "{}", plan.report());
    let c = pg(&db.url).await;
    assert_eq!(col_type(&c, "e", "at").await, "timestamp with time zone");
    let rows = c
        .query(
            "SELECT id, extract(epoch from at)::float8 FROM e WHERE id <= 8 ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    for r in rows {
        let (id, secs): (i64, f64) = (r.get(0), r.get(1));
        assert!((secs - 1_700_000_000.0).abs() < 0.01, "row {id}: {secs}");
    }
    let q: String = c
        .query_one("SELECT key FROM ficus.quarantine", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(q, r#"{"id":9}"#);
    let day: String = c
        .query_one("SELECT day::text FROM e WHERE id = 2", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(day, "2023-11-14");
    let r = plan.report();
    assert!(r.contains("\"s\": 1") && r.contains("\"ms\": 1"), "{r}");
}

#[tokio::test]
async fn boolean_spellings() {
    let d = temp_dir("bool");
    let src = sqlite(
        &d,
        "CREATE TABLE b (id INTEGER PRIMARY KEY, done BOOLEAN NOT NULL, flag BOOLEAN);
         INSERT INTO b VALUES (1, 0, 't'), (2, 1, 'false'), (3, 't', 'TRUE'), (4, 'false', 'no'), (5, 1, NULL);",
    );
    let db = testkit::pg::fresh_database("mig_bool").unwrap();
    let (_, rep) = migrate_clean(&src, &db.url, &MigrationConfig::default()).await;
    assert!(rep.warnings.is_empty(), "{:?}", rep.warnings);
    let c = pg(&db.url).await;
    assert_eq!(col_type(&c, "b", "done").await, "boolean");
    let rows = c
        .query("SELECT done, flag FROM b ORDER BY id", &[])
        .await
        .unwrap();
    let got: Vec<(bool, Option<bool>)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        got,
        vec![
            (false, Some(true)),
            (true, Some(false)),
            (true, Some(true)),
            (false, Some(false)),
            (true, None)
        ]
    );
}

#[tokio::test]
async fn sqlite_function_defaults_are_translated() {
    let d = temp_dir("defaults");
    let src = sqlite(
        &d,
        "CREATE TABLE t (
           id INTEGER PRIMARY KEY,
           created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
           updated_at DATETIME DEFAULT (datetime('now')),
           stamp TIMESTAMP DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
           day_text TEXT DEFAULT (strftime('%Y-%m-%d', 'now')),
           epoch INTEGER DEFAULT (strftime('%s', 'now')),
           status TEXT NOT NULL DEFAULT 'pending',
           done BOOLEAN DEFAULT 0,
           weird TEXT DEFAULT (hex(randomblob(4))));
         INSERT INTO t (id) VALUES (1);",
    );
    let db = testkit::pg::fresh_database("mig_defaults").unwrap();
    let (plan, _) = migrate_clean(&src, &db.url, &MigrationConfig::default()).await;
    assert!(
        plan.warnings.iter().any(|w| w.contains("weird")),
        "{:?}",
        plan.warnings
    );
    let c = pg(&db.url).await;
    // The identity continues after the copied ids; the other columns take their defaults.
    let id: i64 = c
        .query_one("INSERT INTO t DEFAULT VALUES RETURNING id", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(id, 2);
    let r = c
        .query_one(
            "SELECT created_at IS NOT NULL, updated_at IS NOT NULL, stamp IS NOT NULL, day_text ~ '^\\d{4}-\\d\\d-\\d\\d$', epoch > 1600000000, status, done FROM t WHERE id = 2",
            &[],
        )
        .await
        .unwrap();
    assert!(
        r.get::<_, bool>(0)
            && r.get::<_, bool>(1)
            && r.get::<_, bool>(2)
            && r.get::<_, bool>(3)
            && r.get::<_, bool>(4)
    );
    assert_eq!(r.get::<_, String>(5), "pending");
    assert!(!r.get::<_, bool>(6));
}

#[tokio::test]
async fn quoted_identifiers_composite_keys_no_key_without_rowid_and_empty_tables() {
    let d = temp_dir("idents");
    let src = sqlite(
        &d,
        r#"CREATE TABLE "Order Items" ("Order" INTEGER, "Select" TEXT, "CamelCase" TEXT, "a""quote" INT, PRIMARY KEY ("Order", "Select"));
           INSERT INTO "Order Items" VALUES (1, 'a', 'X', 1), (1, 'b', 'Y', 2), (2, 'a', NULL, 3);
           CREATE TABLE nokey (x INT, y TEXT);
           INSERT INTO nokey VALUES (1, 'dup'), (1, 'dup'), (2, NULL), (NULL, NULL);
           CREATE TABLE wr (code TEXT PRIMARY KEY, n INT) WITHOUT ROWID;
           INSERT INTO wr VALUES ('b', 2), ('a', 1), ('c', 3);
           CREATE TABLE empty (id INTEGER PRIMARY KEY, v TEXT);
           CREATE TABLE "group" ("from" TEXT PRIMARY KEY, "where" INT);
           INSERT INTO "group" VALUES ('x', 1);"#,
    );
    let db = testkit::pg::fresh_database("mig_idents").unwrap();
    let (_, rep) = migrate_clean(&src, &db.url, &MigrationConfig::default()).await;
    // "Order Items" 3, nokey 4, wr 3, empty 0, group 1.
    assert_eq!(rep.rows_copied, 11);
    let c = pg(&db.url).await;
    let pk: String = c
        .query_one(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = '\"Order Items\"'::regclass AND contype = 'p'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(pk, r#"PRIMARY KEY ("Order", "Select")"#);
    let n: i64 = c
        .query_one(
            r#"SELECT count(*) FROM nokey WHERE x = 1 AND y = 'dup'"#,
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    let q: i32 = c
        .query_one(
            r#"SELECT "a""quote"::int FROM "Order Items" WHERE "Order" = 2"#,
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(q, 3);
    let wr: Vec<String> =
        testkit::pg::rows(&c, "SELECT code FROM wr ORDER BY code", |r| r.get(0)).await;
    assert_eq!(wr, vec!["a", "b", "c"]);
    let e: i64 = c
        .query_one("SELECT count(*) FROM empty", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(e, 0);
}

#[tokio::test]
async fn large_texts_blobs_special_reals_and_integer_extremes() {
    let d = temp_dir("values");
    let src = sqlite(
        &d,
        "CREATE TABLE v (id INTEGER PRIMARY KEY, big TEXT, bin BLOB, r REAL, i INTEGER, ru);",
    );
    {
        let c = rusqlite::Connection::open(&src).unwrap();
        let mb = "ü".repeat(512 * 1024); // 1 MB of UTF-8
        let blob: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
        type Row = (Option<String>, Option<Vec<u8>>, Option<f64>, Option<i64>);
        let rows: Vec<Row> = vec![
            (
                Some(mb.clone()),
                Some(blob.clone()),
                Some(f64::INFINITY),
                Some(i64::MAX),
            ),
            (
                Some(mb.clone() + "x"),
                Some(Vec::new()),
                Some(f64::NEG_INFINITY),
                Some(i64::MIN),
            ),
            (Some(String::new()), Some(vec![0]), Some(-0.0), Some(0)),
            (None, None, Some(0.0), Some(-1)),
            (Some(mb), Some(blob), Some(f64::MIN_POSITIVE), Some(1)),
            (Some("s".into()), None, Some(1.0e308), None),
        ];
        for (k, (a, b, r, i)) in rows.into_iter().enumerate() {
            c.execute(
                "INSERT INTO v VALUES (?1, ?2, ?3, ?4, ?5, ?4)",
                rusqlite::params![k as i64 + 1, a, b, r, i],
            )
            .unwrap();
        }
    }
    let db = testkit::pg::fresh_database("mig_values").unwrap();
    // Small batches by bytes: the 1 MB rows force several batches.
    let plan = build_plan(&src, &MigrationConfig::default());
    let opts = ficus_migrator::RunOptions {
        batch_bytes: 1 << 16,
        ..Default::default()
    };
    let rep = run(&plan, &src, &db.url, &opts).await;
    assert_eq!((rep.rows_copied, rep.rows_quarantined), (6, 0));
    let v = verify(&plan, &src, &db.url).await;
    assert!(v.clean, "{}", v.text());
    let c = pg(&db.url).await;
    let rows = c
        .query(
            "SELECT length(big), octet_length(bin), r, i, ru FROM v ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, Option<i32>>(0), Some(512 * 1024));
    assert_eq!(rows[0].get::<_, Option<i32>>(1), Some(70_000));
    assert_eq!(rows[1].get::<_, Option<i32>>(1), Some(0));
    assert_eq!(rows[0].get::<_, f64>(2), f64::INFINITY);
    assert_eq!(rows[1].get::<_, f64>(2), f64::NEG_INFINITY);
    // A REAL column stores -0.0 as integer 0 (SQLite's own record optimisation); a column
    // without affinity keeps it, and so does PostgreSQL.
    assert_eq!(rows[2].get::<_, f64>(2), 0.0);
    let negz: f64 = rows[2].get(4);
    assert!(negz == 0.0 && negz.is_sign_negative());
    assert_eq!(col_type(&c, "v", "ru").await, "double precision");
    assert_eq!(rows[0].get::<_, i64>(3), i64::MAX);
    assert_eq!(rows[1].get::<_, i64>(3), i64::MIN);
}

#[tokio::test]
async fn indexes_constraints_foreign_keys_and_views_follow_the_data() {
    let d = temp_dir("schema");
    let src = sqlite(
        &d,
        "PRAGMA foreign_keys = OFF;
         CREATE TABLE parent (id INTEGER PRIMARY KEY AUTOINCREMENT, code TEXT UNIQUE NOT NULL, n INT CHECK (n >= 0), done BOOLEAN CHECK (done IN (0, 1)));
         CREATE TABLE child (id INTEGER PRIMARY KEY, parent_code TEXT REFERENCES parent(code) ON DELETE CASCADE, status TEXT, at DATETIME);
         CREATE INDEX ix_child_status_at ON child (status, at DESC);
         CREATE INDEX ix_child_open ON child (parent_code) WHERE status <> 'done';
         CREATE INDEX ix_parent_done ON parent (n) WHERE done = 1;
         CREATE VIEW open_children AS SELECT id, parent_code FROM child WHERE status <> 'done';
         CREATE TRIGGER tr AFTER INSERT ON child BEGIN SELECT 1; END;
         INSERT INTO parent (code, n, done) VALUES ('A', 1, 1), ('B', 2, 0);
         DELETE FROM parent WHERE code = 'B';
         INSERT INTO child VALUES (1, 'A', 'open', '2024-01-01'), (2, 'A', 'done', '2024-01-02'), (3, 'ZZ', 'open', NULL);",
    );
    let db = testkit::pg::fresh_database("mig_schema").unwrap();
    let (plan, rep) = migrate_clean(&src, &db.url, &MigrationConfig::default()).await;
    assert_eq!(plan.triggers[0].name, "tr");
    assert!(rep.carried.triggers_not_carried[0].sql.contains("SELECT 1"));
    // The orphan row (parent ZZ) keeps the foreign key NOT VALID and says so.
    assert!(
        rep.warnings.iter().any(|w| w.contains("fk-validate")),
        "{:?}",
        rep.warnings
    );
    let c = pg(&db.url).await;
    let idx: Vec<String> = testkit::pg::rows(
        &c,
        "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY indexname",
        |r| r.get(0),
    )
    .await;
    let all = idx.join("\n");
    assert!(all.contains("(status, at DESC)"), "{all}");
    assert!(all.contains("WHERE (status <> 'done'::text)"), "{all}");
    assert!(all.contains("WHERE (done = true)"), "{all}");
    assert!(
        all.contains("parent_code_key") || all.contains("UNIQUE"),
        "{all}"
    );
    let fk: bool = c
        .query_one(
            "SELECT convalidated FROM pg_constraint WHERE contype = 'f'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!fk);
    let chk: Vec<String> = testkit::pg::rows(&c, "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE contype = 'c' AND connamespace = 'public'::regnamespace", |r| r.get(0)).await;
    assert_eq!(chk, vec!["CHECK ((n >= 0))".to_string()]);
    let v: i64 = c
        .query_one("SELECT count(*) FROM open_children", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, 2);
    // AUTOINCREMENT high mark (2, though only id 1 remains) is respected.
    let id: i64 = c
        .query_one("INSERT INTO parent (code) VALUES ('C') RETURNING id", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(id, 3);
}

#[tokio::test]
async fn max_rejects_fails_the_run_and_a_rerun_with_room_finishes() {
    let d = temp_dir("rejects");
    let src = sqlite(
        &d,
        "CREATE TABLE r (id INTEGER PRIMARY KEY, t TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
         INSERT INTO r SELECT i, CASE WHEN i % 300 = 0 THEN CAST(x'ff' AS TEXT) ELSE 'v' || i END FROM n;",
    );
    let db = testkit::pg::fresh_database("mig_rejects").unwrap();
    let plan = build_plan(&src, &MigrationConfig::default());
    assert_eq!(plan.expected_rejects(), 3);
    let opts = ficus_migrator::RunOptions {
        batch_rows: 100,
        max_rejects: Some(1),
        ..Default::default()
    };
    let err = ficus_migrator::run(
        &plan,
        &src,
        &db.url,
        &opts,
        &std::sync::Arc::new(ficus_migrator::Observer::silent()),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            ficus_migrator::MigrateError::TooManyRejects {
                count: 2,
                max: 1,
                ..
            }
        ),
        "{err}"
    );
    let opts = ficus_migrator::RunOptions {
        max_rejects: Some(3),
        ..opts
    };
    let rep = run(&plan, &src, &db.url, &opts).await;
    assert!(rep.resumed);
    assert_eq!((rep.rows_copied, rep.rows_quarantined), (997, 3));
    let v = verify(&plan, &src, &db.url).await;
    assert!(v.clean && v.tables[0].quarantined == 3, "{}", v.text());
}

#[test]
fn big_tables_are_profiled_in_ranges_that_add_up() {
    let d = temp_dir("ranges");
    let src = sqlite(
        &d,
        "CREATE TABLE big (id INTEGER PRIMARY KEY, n INTEGER, t TEXT);
         WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 650000)
         INSERT INTO big SELECT i, i, CASE WHEN i IN (1, 300001, 649999) THEN CAST(x'ff' AS TEXT) ELSE 'ok' END FROM s;",
    );
    let plan = build_plan(&src, &MigrationConfig::default());
    let t = &plan.tables[0];
    assert_eq!(t.rows, 650_000);
    assert_eq!(t.columns[1].profile.int_min, Some(1));
    assert_eq!(t.columns[1].profile.int_max, Some(650_000));
    assert_eq!(t.columns[2].rejects, 3);
    let keys: Vec<&str> = t.columns[2]
        .samples
        .iter()
        .map(|s| s.key.as_str())
        .collect();
    assert_eq!(
        keys,
        vec![r#"{"id":1}"#, r#"{"id":300001}"#, r#"{"id":649999}"#]
    );
}

#[tokio::test]
async fn another_schema_a_changed_source_is_refused_and_restart_starts_over() {
    let d = temp_dir("restart");
    let src = sqlite(
        &d,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);
         INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c');
         CREATE VIEW vt AS SELECT v FROM t;",
    );
    let db = testkit::pg::fresh_database("mig_restart").unwrap();
    let cfg = MigrationConfig::default();
    let obs = std::sync::Arc::new(ficus_migrator::Observer::silent());
    let plan = ficus_migrator::Plan::build(&src, &cfg, "legacy").unwrap();
    let rep = ficus_migrator::run(&plan, &src, &db.url, &Default::default(), &obs)
        .await
        .unwrap();
    assert_eq!(rep.rows_copied, 3);
    let c = pg(&db.url).await;
    let n: i64 = c
        .query_one("SELECT count(*) FROM legacy.vt", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);
    // The source changes: the stored checkpoints no longer describe it.
    rusqlite::Connection::open(&src)
        .unwrap()
        .execute("INSERT INTO t VALUES (4, 'd')", [])
        .unwrap();
    let plan2 = ficus_migrator::plan_for_run(&src, &db.url, "legacy", &cfg)
        .await
        .unwrap();
    assert_ne!(plan2.fingerprint, plan.fingerprint);
    let err = ficus_migrator::run(&plan2, &src, &db.url, &Default::default(), &obs)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ficus_migrator::MigrateError::FingerprintMismatch { .. }
        ),
        "{err}"
    );
    let opts = ficus_migrator::RunOptions {
        restart: true,
        ..Default::default()
    };
    let rep = ficus_migrator::run(&plan2, &src, &db.url, &opts, &obs)
        .await
        .unwrap();
    assert_eq!(rep.rows_copied, 4);
    let v = ficus_migrator::verify(&plan2, &src, &db.url, &Default::default(), &obs)
        .await
        .unwrap();
    assert!(v.clean, "{}", v.text());
    let st = ficus_migrator::status(&db.url, "legacy").await.unwrap();
    assert_eq!(st.tables[0].rows_copied, 4);
    assert!(matches!(
        ficus_migrator::status(&db.url, "public").await,
        Err(ficus_migrator::MigrateError::NoMigration(_))
    ));
}
