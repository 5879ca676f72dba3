//! Virtual tables never stop a migration (issue 14 item 1): FTS3/4/5 tables become ordinary
//! tables with their content columns (shadow tables skipped, a tsvector + GIN index suggested),
//! R*Tree and unknown modules are skipped with a reason, and `skip = true` works on any table.

mod common;

use common::*;
use ficus_migrator::MigrationConfig;

const SCHEMA: &str = "
    CREATE VIRTUAL TABLE docs USING fts5(title, body);
    INSERT INTO docs(rowid, title, body) VALUES (10, 'hello world', 'the body'), (20, 'second', 'more text');
    CREATE VIRTUAL TABLE notes USING fts4(subject, note);
    INSERT INTO notes VALUES ('a', 'b');
    CREATE TABLE src (id INTEGER PRIMARY KEY, t TEXT);
    INSERT INTO src VALUES (1, 'x');
    CREATE VIRTUAL TABLE ext USING fts5(t, content='src', content_rowid='id');
    CREATE VIRTUAL TABLE geo USING rtree(id, minx, maxx);
    INSERT INTO geo VALUES (1, 0, 1);
    PRAGMA writable_schema = ON;
    INSERT INTO sqlite_master VALUES ('table', 'weird', 'weird', 0, 'CREATE VIRTUAL TABLE weird USING nosuchmodule(a, b)');
";

#[tokio::test]
async fn fts_tables_migrate_and_other_virtual_tables_are_skipped_with_a_reason() {
    let d = temp_dir("vtab");
    let src = sqlite(&d, SCHEMA);
    let db = testkit::pg::fresh_database("mig_vtab").unwrap();
    let (plan, rep) = migrate_clean(&src, &db.url, &MigrationConfig::default()).await;
    let migrated: Vec<&str> = plan.tables.iter().map(|t| t.source_name.as_str()).collect();
    assert_eq!(migrated, vec!["docs", "notes", "src"]);
    assert_eq!(rep.rows_copied, 4);
    let reason = |n: &str| {
        plan.skipped
            .iter()
            .find(|s| s.name == n)
            .map(|s| format!("{} {}", s.kind, s.reason))
            .unwrap_or_else(|| panic!("{n} not reported as skipped: {:?}", plan.skipped))
    };
    for shadow in [
        "docs_data",
        "docs_idx",
        "docs_content",
        "docs_docsize",
        "docs_config",
        "notes_content",
        "notes_segments",
        "notes_segdir",
        "notes_docsize",
        "notes_stat",
        "ext_data",
        "geo_node",
        "geo_rowid",
        "geo_parent",
    ] {
        assert!(
            reason(shadow).starts_with("shadow table internal storage of virtual table"),
            "{shadow}"
        );
    }
    assert!(
        reason("ext").contains("external content"),
        "{}",
        reason("ext")
    );
    assert!(reason("geo").contains("rtree"), "{}", reason("geo"));
    assert!(
        reason("weird").contains("module nosuchmodule"),
        "{}",
        reason("weird")
    );
    let report = plan.report();
    assert!(report.contains("USING GIN (search)"), "{report}");
    assert!(report.contains("to_tsvector('simple', coalesce(\"title\"::text, '') || ' ' || coalesce(\"body\"::text, ''))"), "{report}");
    assert!(
        report.contains("virtual table weird: NOT CARRIED: virtual table of module nosuchmodule"),
        "{report}"
    );
    let c = pg(&db.url).await;
    let rows = testkit::pg::rows(&c, "SELECT title, body FROM docs ORDER BY title", |r| {
        (r.get::<_, String>(0), r.get::<_, String>(1))
    })
    .await;
    assert_eq!(
        rows,
        vec![
            ("hello world".to_string(), "the body".to_string()),
            ("second".to_string(), "more text".to_string())
        ]
    );
    let n: i64 = c
        .query_one("SELECT count(*) FROM notes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test]
async fn skip_true_works_on_a_virtual_table() {
    let d = temp_dir("vtab_skip");
    let src = sqlite(&d, SCHEMA);
    let cfg = MigrationConfig::parse(
        "[tables.docs]\nskip = true\n[tables.geo]\nskip = true\n",
        "test",
    )
    .unwrap();
    let plan = build_plan(&src, &cfg);
    assert!(plan.table("docs").is_none());
    let docs = plan.skipped.iter().find(|s| s.name == "docs").unwrap();
    assert_eq!(
        (docs.kind.as_str(), docs.reason.as_str()),
        ("virtual table", "skipped by configuration (skip = true)")
    );
    assert!(plan.skipped.iter().any(|s| s.name == "geo"));
}
