//! Helpers shared by the migrator's integration tests (SQLite files built from SQL and a real
//! PostgreSQL come from testkit): plan + run + verify in one call, column types, the task
//! database generator.
#![allow(dead_code, unused_imports)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ficus_migrator::{
    MigrationConfig, Observer, Plan, RunOptions, RunReport, VerifyOptions, VerifyReport,
};

pub use testkit::pg::connect as pg;
pub use testkit::{temp_dir, TempDir};

/// The SQLite file `app.db` in `dir`, made afresh by `sql`.
pub fn sqlite(dir: &TempDir, sql: &str) -> PathBuf {
    testkit::sqlite::create(dir.path(), "app.db", sql)
}

pub fn build_plan(src: &Path, cfg: &MigrationConfig) -> Plan {
    Plan::build(src, cfg, "public").unwrap()
}

pub async fn run(plan: &Plan, src: &Path, url: &str, opts: &RunOptions) -> RunReport {
    ficus_migrator::run(plan, src, url, opts, &Arc::new(Observer::silent()))
        .await
        .unwrap()
}

pub async fn verify(plan: &Plan, src: &Path, url: &str) -> VerifyReport {
    ficus_migrator::verify(
        plan,
        src,
        url,
        &VerifyOptions::default(),
        &Arc::new(Observer::silent()),
    )
    .await
    .unwrap()
}

/// Plan, run and verify; assert copied + quarantined = source rows per table and a clean
/// verify. Returns the plan and the run report.
pub async fn migrate_clean(src: &Path, url: &str, cfg: &MigrationConfig) -> (Plan, RunReport) {
    let plan = build_plan(src, cfg);
    let rep = run(&plan, src, url, &RunOptions::default()).await;
    for t in &rep.tables {
        assert_eq!(
            t.rows_copied + t.rows_quarantined,
            t.source_rows,
            "table {}: copied {} + quarantined {} != source {}",
            t.table,
            t.rows_copied,
            t.rows_quarantined,
            t.source_rows
        );
    }
    let v = verify(&plan, src, url).await;
    assert!(v.clean, "verify not clean:\n{}", v.text());
    for (t, r) in v.tables.iter().zip(&rep.tables) {
        assert_eq!(t.quarantined, r.rows_quarantined, "{}", t.table);
        assert_eq!(t.target_rows, r.rows_copied, "{}", t.table);
    }
    (plan, rep)
}

/// PostgreSQL type of a column.
pub async fn col_type(c: &tokio_postgres::Client, table: &str, col: &str) -> String {
    c.query_one(
        "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a WHERE a.attrelid = format('%I.%I', 'public', $1::text)::regclass AND a.attname = $2",
        &[&table, &col],
    )
    .await
    .unwrap_or_else(|e| panic!("type of {table}.{col}: {e}"))
    .get(0)
}

/// The gen_taskdb.py script: from ../shared beside the repo, else the copy in tests/data.
pub fn gen_taskdb_script() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for p in [
        manifest.join("../../shared/bench/gen_taskdb.py"),
        // one vendored copy for clones without shared/ beside them
        manifest.join("../taskapp/tests/fixtures/gen_taskdb.py"),
    ] {
        if p.is_file() {
            return p;
        }
    }
    panic!("gen_taskdb.py not found");
}

pub fn gen_taskdb(out: &Path, tasks: u32) {
    let st = std::process::Command::new("python3")
        .arg(gen_taskdb_script())
        .arg(out)
        .args(["--tasks", &tasks.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("python3");
    assert!(st.success());
}
