//! verify on a table without a primary key, against a real PostgreSQL: a row changed in a few
//! columns is one changed row naming the columns (not one missing and one extra), a row
//! changed everywhere stays missing + extra, and JSON reports carry keys as objects.

mod common;

use common::*;
use ficus_migrator::{Difference, MigrationConfig};

#[tokio::test]
async fn a_changed_row_of_a_keyless_table_is_one_row_naming_its_columns() {
    let d = temp_dir("keyless");
    let src = sqlite(
        &d,
        "CREATE TABLE log (at TEXT, who TEXT, what TEXT, n INTEGER);
         INSERT INTO log VALUES ('2024-01-01', 'ann', 'login', 1), ('2024-01-02', 'bob', 'logout', 2),
                                ('2024-01-03', 'cy', 'login', 3), ('2024-01-03', 'cy', 'login', 3),
                                ('2024-01-04', 'dee', 'export', 4);",
    );
    let db = testkit::pg::fresh_database("mig_keyless").unwrap();
    let (plan, _) = migrate_clean(&src, &db.url, &MigrationConfig::default()).await;
    assert!(plan.tables[0].key_columns.is_empty());
    let c = pg(&db.url).await;
    // One column of one row.
    c.execute("UPDATE log SET what = 'LOGOUT' WHERE who = 'bob'", &[])
        .await
        .unwrap();
    let v = verify(&plan, &src, &db.url).await;
    let t = &v.tables[0];
    assert_eq!((t.missing, t.extra, t.differs), (0, 0, 1), "{}", v.text());
    match &t.differences[..] {
        [Difference::ValueDiffers {
            key,
            column,
            source,
            target,
        }] => {
            assert_eq!(key, r#"{"rowid":2}"#);
            assert_eq!(column, "what");
            assert_eq!(
                (source.as_str(), target.as_str()),
                ("\"logout\"", "\"LOGOUT\"")
            );
        }
        other => panic!("{other:?}\n{}", v.text()),
    }
    // JSON: every key is an object.
    let json = serde_json::to_value(&v).unwrap();
    assert_eq!(
        json["tables"][0]["differences"][0]["key"],
        serde_json::json!({"rowid": 2})
    );

    // Two columns of one of two duplicate rows, and a row changed in every column: the first
    // is one changed row naming both columns, the second one missing and one extra.
    c.execute("UPDATE log SET what = 'logout' WHERE who = 'bob'", &[])
        .await
        .unwrap();
    c.execute(
        "UPDATE log SET who = 'cyd', n = 30 WHERE ctid = (SELECT min(ctid) FROM log WHERE who = 'cy')",
        &[],
    )
    .await
    .unwrap();
    c.execute(
        "UPDATE log SET at = '1999', who = 'x', what = 'y', n = 0 WHERE who = 'dee'",
        &[],
    )
    .await
    .unwrap();
    let v = verify(&plan, &src, &db.url).await;
    let t = &v.tables[0];
    assert_eq!((t.missing, t.extra, t.differs), (1, 1, 1), "{}", v.text());
    let mut cols: Vec<&str> = t
        .differences
        .iter()
        .filter_map(|d| match d {
            Difference::ValueDiffers { column, .. } => Some(column.as_str()),
            _ => None,
        })
        .collect();
    cols.sort();
    assert_eq!(cols, ["n", "who"], "{}", v.text());
    assert!(t.differences.contains(&Difference::MissingInTarget {
        key: r#"{"rowid":5}"#.into(),
        reason: None
    }));
    let json = serde_json::to_value(&v).unwrap();
    for d in json["tables"][0]["differences"].as_array().unwrap() {
        assert!(d["key"].is_object(), "{d}");
    }
}
