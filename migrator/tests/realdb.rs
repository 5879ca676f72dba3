//! Real databases written by others (`../shared/realdb/`: Chinook, Northwind, Sakila, a
//! SpatiaLite test database) migrate with default settings: every row of every ordinary table
//! copied or quarantined, verify clean, and every table the plan leaves out named with its
//! reason. Each file is copied to a temp dir first (opening a file can leave `-wal`/`-shm`
//! next to it); without the directory the test says so and passes.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use ficus_migrator::MigrationConfig;

/// Ordinary and virtual tables of a SQLite file (what a user sees in `.tables`).
fn source_tables(src: &Path) -> Vec<String> {
    testkit::sqlite::rows(
        src,
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
        |r| r.get::<_, String>(0),
    )
}

#[tokio::test]
async fn every_real_database_migrates_with_default_settings() {
    let Some(dir) = testkit::realdb::dir() else {
        eprintln!("SKIPPED: ../shared/realdb is not beside the repository; nothing to migrate");
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "db" || e == "sqlite" || e == "sqlite3")
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no databases in {}", dir.display());
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let tmp = temp_dir("realdb");
        let src = testkit::realdb::copy(&name, tmp.path()).expect("realdb copy");

        let db = testkit::pg::fresh_database(&format!(
            "realdb_{}",
            name.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        ))
        .unwrap();
        // copied + quarantined = source rows per table, and verify clean.
        let (plan, rep) = migrate_clean(&src, &db.url, &MigrationConfig::default()).await;
        assert_eq!(rep.tables.len(), plan.tables.len(), "{name}");
        // Every table of the source is migrated or named as not migrated, with a reason.
        for t in source_tables(&src) {
            let migrated = plan.table(&t).is_some();
            let skipped = plan
                .skipped
                .iter()
                .any(|s| s.name == t && !s.reason.is_empty());
            assert!(
                migrated ^ skipped,
                "{name}: table {t} is neither migrated nor reported as not migrated"
            );
        }
        let report = plan.report();
        for s in &plan.skipped {
            assert!(
                report.contains(&format!("{} {}: ", s.kind, s.name)),
                "{report}"
            );
        }
        eprintln!(
            "{name}: {} tables, {} rows copied, {} quarantined, {} not migrated",
            rep.tables.len(),
            rep.rows_copied,
            rep.rows_quarantined,
            plan.skipped.len()
        );
    }
}
