//! What the SQLite schema declares is kept where the data allows (issue 14 items 5 and 6):
//! SMALLINT/INTEGER keep their width, NUMERIC(p,s) its precision and scale; empty strings in
//! non-text columns follow the `empty_string` rule.

mod common;

use common::*;
use ficus_migrator::MigrationConfig;

#[tokio::test]
async fn declared_width_and_precision_are_kept_where_values_fit() {
    let d = temp_dir("widths");
    let src = sqlite(
        &d,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, s SMALLINT, i INTEGER, i2 INT NOT NULL,
                         big INTEGER, s_big SMALLINT, b BIGINT,
                         price NUMERIC(10,2), rate DECIMAL(4,2), wide DECIMAL(5,2));
         INSERT INTO t VALUES (1, 7, 100000, 1, 3000000000, 40000, 1, 0.99, 4, 123.456),
                              (2, -3, -5, 2, 1, 1, 2, 5, 9.5, 1.5),
                              (3, NULL, NULL, 3, NULL, NULL, NULL, 12345678.12, NULL, NULL);",
    );
    let db = testkit::pg::fresh_database("mig_widths").unwrap();
    let (plan, rep) = migrate_clean(&src, &db.url, &MigrationConfig::default()).await;
    assert_eq!((rep.rows_copied, rep.rows_quarantined), (3, 0));
    let c = pg(&db.url).await;
    for (col, want) in [
        ("id", "bigint"),
        ("s", "smallint"),
        ("i", "integer"),
        ("i2", "integer"),
        ("big", "bigint"),
        ("s_big", "bigint"),
        ("b", "bigint"),
        ("price", "numeric(10,2)"),
        ("rate", "numeric(4,2)"),
        ("wide", "numeric"),
    ] {
        assert_eq!(col_type(&c, "t", col).await, want, "column {col}");
    }
    let report = plan.report();
    assert!(
        report.contains("widened to numeric: values have up to 3 integer and 3 fraction digits, more than numeric(5,2) holds"),
        "{report}"
    );
    assert!(
        report.contains("declared SMALLINT, but values exceed smallint: bigint"),
        "{report}"
    );
    assert!(
        report.contains("INTEGER PRIMARY KEY (the rowid): bigint"),
        "{report}"
    );
    let prices = testkit::pg::rows(
        &c,
        "SELECT price::text, rate::text FROM t ORDER BY id",
        |r| (r.get::<_, String>(0), r.get::<_, Option<String>>(1)),
    )
    .await;
    assert_eq!(
        prices,
        vec![
            ("0.99".to_string(), Some("4.00".to_string())),
            ("5.00".to_string(), Some("9.50".to_string())),
            ("12345678.12".to_string(), None)
        ]
    );
}

const EMPTIES: &str =
    "CREATE TABLE m (id INTEGER PRIMARY KEY, price REAL, qty INTEGER, d DATE, note TEXT);
    INSERT INTO m VALUES (1, 1.5, 1, '2020-01-01', ''), (2, '', 2, '', 'x'),
                         (3, '', '', '2020-01-02', ''), (4, 2.0, 3, NULL, NULL);";

#[tokio::test]
async fn empty_strings_in_non_text_columns_are_quarantined_by_default_and_the_plan_says_how_to_load_them(
) {
    let d = temp_dir("empty_default");
    let src = sqlite(&d, EMPTIES);
    let db = testkit::pg::fresh_database("mig_empty_default").unwrap();
    let (plan, rep) = migrate_clean(&src, &db.url, &MigrationConfig::default()).await;
    assert_eq!((rep.rows_copied, rep.rows_quarantined), (2, 2));
    let report = plan.report();
    for (col, ty, n) in [
        ("price", "double precision", 2),
        ("qty", "bigint", 1),
        ("d", "date", 1),
    ] {
        let want = format!(
            "  - m.{col} ({ty}): {n} value(s), their rows quarantined; to load them as NULL add to migration.toml:\n      [tables.m.columns.{col}]\n      empty_string = \"null\"\n"
        );
        assert!(report.contains(&want), "missing {want:?} in\n{report}");
    }
    assert!(!report.contains("m.note"), "{report}");
    let c = pg(&db.url).await;
    let reasons = testkit::pg::rows(
        &c,
        "SELECT reason FROM ficus.quarantine ORDER BY key",
        |r| r.get::<_, String>(0),
    )
    .await;
    assert!(reasons[0].contains("empty string in a"), "{reasons:?}");
}

#[tokio::test]
async fn empty_string_null_per_table_and_quarantine_per_column() {
    let d = temp_dir("empty_rules");
    let src = sqlite(&d, EMPTIES);
    let db = testkit::pg::fresh_database("mig_empty_rules").unwrap();
    let cfg = MigrationConfig::parse(
        "[tables.m]\nempty_string = \"null\"\n[tables.m.columns.qty]\nempty_string = \"quarantine\"\n",
        "test",
    )
    .unwrap();
    let (plan, rep) = migrate_clean(&src, &db.url, &cfg).await;
    // Row 3's qty is '' and its column keeps the default: quarantined; the rest load.
    assert_eq!((rep.rows_copied, rep.rows_quarantined), (3, 1));
    let report = plan.report();
    assert!(
        report.contains("  - m.price (double precision): 2 value(s) loaded as NULL"),
        "{report}"
    );
    let c = pg(&db.url).await;
    let rows = testkit::pg::rows(
        &c,
        "SELECT id, price, d::text, note FROM m ORDER BY id",
        |r| {
            (
                r.get::<_, i64>(0),
                r.get::<_, Option<f64>>(1),
                r.get::<_, Option<String>>(2),
                r.get::<_, Option<String>>(3),
            )
        },
    )
    .await;
    assert_eq!(
        rows,
        vec![
            (1, Some(1.5), Some("2020-01-01".into()), Some(String::new())),
            (2, None, None, Some("x".into())),
            (4, Some(2.0), None, None),
        ]
    );
}
