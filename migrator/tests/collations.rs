//! Collations an app registers and SQLite does not know (Anki's `unicase`) do not stop a
//! migration (issue 14 item 2): ficus reads every row with its documented fallback, warns
//! naming table and column, and gives PostgreSQL a case-insensitive collation where the
//! fallback is case-insensitive.

mod common;

use common::*;
use ficus_migrator::MigrationConfig;

#[tokio::test]
async fn unknown_collations_are_read_with_a_fallback_and_warned_about() {
    let d = temp_dir("collations");
    let src = d.path().join("anki.db");
    {
        // The app's own collations exist only in the app's connections.
        let c = rusqlite::Connection::open(&src).unwrap();
        c.create_collation("unicase", |a: &str, b: &str| {
            a.to_lowercase().cmp(&b.to_lowercase())
        })
        .unwrap();
        c.create_collation("mycoll", |a: &str, b: &str| a.cmp(b))
            .unwrap();
        c.execute_batch(
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT COLLATE unicase, tag TEXT COLLATE mycoll);
             CREATE INDEX ix_notes_title ON notes (title);
             INSERT INTO notes VALUES (1, 'Hello', 'a'), (2, 'Zebra', 'b'), (3, 'apple', NULL);
             CREATE TABLE decks (name TEXT NOT NULL PRIMARY KEY COLLATE unicase, n INTEGER) WITHOUT ROWID;
             INSERT INTO decks VALUES ('Default', 1), ('b', 2), ('C', 3);",
        )
        .unwrap();
    }
    let db = testkit::pg::fresh_database("mig_collations").unwrap();
    let (plan, rep) = migrate_clean(&src, &db.url, &MigrationConfig::default()).await;
    assert_eq!((rep.rows_copied, rep.rows_quarantined), (6, 0));
    for w in [
        "notes.title: collation unicase is not SQLite's own; its values were read with ficus's fallback, case-insensitive Unicode comparison; PostgreSQL gets the nondeterministic ICU collation ficus_ci (case-insensitive)",
        "notes.tag: collation mycoll is not SQLite's own; its values were read with ficus's fallback, binary comparison",
        "decks.name: collation unicase is not SQLite's own",
    ] {
        assert!(plan.warnings.iter().any(|x| x.starts_with(w)), "no warning {w:?} in {:?}", plan.warnings);
    }
    let c = pg(&db.url).await;
    let coll = |t: &'static str, col: &'static str| {
        let c = &c;
        async move {
            c.query_one(
                "SELECT coalesce(co.collname, '') FROM pg_attribute a LEFT JOIN pg_collation co ON co.oid = a.attcollation AND a.attcollation <> 100 WHERE a.attrelid = format('public.%I', $1::text)::regclass AND a.attname = $2",
                &[&t, &col],
            )
            .await
            .unwrap()
            .get::<_, String>(0)
        }
    };
    assert_eq!(coll("notes", "title").await, "ficus_ci");
    assert_eq!(coll("notes", "tag").await, "");
    assert_eq!(coll("decks", "name").await, "ficus_ci");
    // Compared as the app compares them: case-insensitively.
    let n: i64 = c
        .query_one("SELECT count(*) FROM notes WHERE title = 'HELLO'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}
