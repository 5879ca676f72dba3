//! End-to-end tests of `ficus migrate` (the real binary) against a real PostgreSQL: exit codes,
//! text and JSON reports, metrics endpoint, a re-run that is a no-op, and verify finding a
//! changed row.

use std::path::{Path, PathBuf};
use std::process::Output;

use testkit::cli::stdout;

const FICUS: &str = env!("CARGO_BIN_EXE_ficus");

fn ficus(args: &[&str]) -> Output {
    testkit::cli::run(FICUS, args)
}

/// `app.db` in `dir`: 3000 tasks, one of them with a note that is not UTF-8.
fn make_db(dir: &Path) -> PathBuf {
    testkit::sqlite::create(
        dir,
        "app.db",
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, task_id VARCHAR NOT NULL UNIQUE, done BOOLEAN NOT NULL,
                             created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP, notes TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
         INSERT INTO tasks SELECT i, 'TASK-' || i, i % 2, '2025-01-01 10:00:00.000000',
                                  CASE WHEN i = 77 THEN CAST(x'6e6f74ff' AS TEXT) ELSE 'note ' || i END FROM n;",
    )
}

#[test]
fn migrate_plan_run_verify_status_through_the_binary() {
    let tmp = testkit::temp_dir("cli-e2e");
    let dir = tmp.path();
    let src = make_db(dir);
    let db = testkit::pg::fresh_database("mig_cli").unwrap();
    let s = src.to_str().unwrap();

    // plan: a dry run naming the value that will not convert.
    let o = ficus(&["migrate", "plan", "--source", s]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = stdout(&o);
    assert!(text.contains("CREATE TABLE \"public\".\"tasks\""), "{text}");
    assert!(
        text.contains(r#"key {"id":77}"#) && text.contains("invalid UTF-8"),
        "{text}"
    );
    let o = ficus(&["migrate", "plan", "--source", s, "--format", "json"]);
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(plan["tables"][0]["expected_rejects"], 1);

    // run with --max-rejects 0 fails (non-zero exit); with room it succeeds.
    let o = ficus(&[
        "migrate",
        "run",
        "--source",
        s,
        "--target",
        &db.url,
        "--max-rejects",
        "0",
        "--quiet",
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("max-rejects"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = ficus(&[
        "migrate",
        "run",
        "--source",
        s,
        "--target",
        &db.url,
        "--format",
        "json",
        "--quiet",
        "--metrics-addr",
        "127.0.0.1:0",
    ]);
    // One row quarantined: not everything was carried → exit 2.
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let rep: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rep["rows_copied"], 2999);
    assert_eq!(rep["rows_quarantined"], 1);
    assert_eq!(rep["carried"]["complete"], false);

    // A re-run is a no-op; it ends with the summary, one line per kind, and exits 2 again
    // unless --allow-partial.
    let o = ficus(&[
        "migrate", "run", "--source", s, "--target", &db.url, "--quiet",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let text = stdout(&o);
    assert!(text.contains("already complete"), "{text}");
    for line in [
        "tables: 1 created",
        "rows: 2999 copied",
        "quarantined: 1 row(s)",
        "views: 0 created, 0 not created",
        "triggers: 0 not carried",
        "skipped objects: 0",
    ] {
        assert!(text.contains(line), "{line} not in:\n{text}");
    }
    let o = ficus(&[
        "migrate",
        "run",
        "--source",
        s,
        "--target",
        &db.url,
        "--quiet",
        "--allow-partial",
    ]);
    assert!(o.status.success(), "{}", stdout(&o));

    // verify: clean → exit 0.
    let o = ficus(&[
        "migrate", "verify", "--source", s, "--target", &db.url, "--quiet",
    ]);
    assert!(
        o.status.success(),
        "{}{}",
        stdout(&o),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout(&o).contains("verify: clean"));

    // Change one value in PostgreSQL → exit 1 and the row and column are named.
    let url = db.url.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let c = ficus_migrator::connect(&url).await.unwrap();
            c.batch_execute("UPDATE tasks SET notes = 'note 1234!' WHERE id = 1234")
                .await
                .unwrap();
        });
    })
    .join()
    .unwrap();
    let o = ficus(&[
        "migrate", "verify", "--source", s, "--target", &db.url, "--format", "json", "--quiet",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let d = &v["tables"][0]["differences"][0];
    assert_eq!(d["kind"], "value-differs");
    assert_eq!(d["key"], serde_json::json!({"id": 1234}));
    assert_eq!(d["column"], "notes");

    // status names copied, quarantined and the last verification.
    let o = ficus(&["migrate", "status", "--target", &db.url, "--format", "json"]);
    assert!(o.status.success());
    let st: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(st["phase"], "done");
    assert_eq!(st["tables"][0]["rows_copied"], 2999);
    assert_eq!(st["tables"][0]["rows_quarantined"], 1);
    assert_eq!(st["tables"][0]["verified_clean"], false);
    let o = ficus(&["migrate", "status", "--target", &db.url]);
    assert!(stdout(&o).contains("DIFFERENT"), "{}", stdout(&o));

    // Bad input: a missing source file is a one-line error and a non-zero exit.
    let o = ficus(&[
        "migrate",
        "plan",
        "--source",
        dir.join("nope.db").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot open SQLite source"));
}

/// The response to `GET /metrics` on `addr`, or `None` while nothing answers there.
fn scrape(addr: &str) -> Option<String> {
    testkit::http::get_blocking(addr, "/metrics")
}

/// `--metrics-linger`: a run that failed keeps its metrics up after it ended, so Prometheus
/// scrapes `ficus_migrate_phase{phase="failed"} 1` instead of a vanished target.
#[test]
fn failed_run_keeps_its_metrics_up_for_the_last_scrape() {
    let dir = testkit::temp_dir("cli-linger");
    let src = make_db(dir.path());
    let db = testkit::pg::fresh_database("mig_linger").unwrap();
    let addr = testkit::free_addr().to_string();
    let mut child = testkit::cli::command(FICUS)
        .args([
            "migrate",
            "run",
            "--source",
            src.to_str().unwrap(),
            "--target",
            &db.url,
            "--max-rejects",
            "0",
            "--quiet",
            "--metrics-addr",
            &addr,
            "--metrics-linger",
            "120",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let failed = loop {
        if let Some(m) = scrape(&addr) {
            if m.contains("ficus_migrate_phase{phase=\"failed\"} 1") {
                break m;
            }
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "ficus exited before its failed phase could be scraped"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "no failed phase on {addr} within 60 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(
        failed.contains("ficus_migrate_phase{phase=\"done\"} 0"),
        "{failed}"
    );
    // The run is over, the metrics are still served.
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(child.try_wait().unwrap().is_none(), "lingering");
    assert!(scrape(&addr).is_some_and(|m| m.contains("phase=\"failed\"} 1")));
    child.kill().unwrap();
    child.wait().unwrap();
}

/// `plan --format json` has the documented shape (docs/plan-json.md); `run` ends with the
/// per-kind summary naming a view PostgreSQL refused (its message) and the trigger, exits 2,
/// and 0 with --allow-partial; `status` shows the same summary; `--help` says so.
#[test]
fn plan_json_shape_and_run_exits_2_when_something_is_not_carried() {
    let tmp = testkit::temp_dir("cli-partial");
    let src = testkit::sqlite::create(
        tmp.path(),
        "app.db",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER NOT NULL, x TEXT);
         INSERT INTO t VALUES (1, 10, 'a'), (2, 20, 'b');
         CREATE VIEW v_ok AS SELECT id, IFNULL(x, '-') AS x FROM [t];
         CREATE VIEW v_bad AS SELECT typeof(x) AS tx FROM t;
         CREATE TRIGGER t_log AFTER INSERT ON t BEGIN SELECT 1; END;",
    );
    let db = testkit::pg::fresh_database("mig_cli_partial").unwrap();
    let s = src.to_str().unwrap();

    let o = ficus(&["migrate", "plan", "--source", s, "--format", "json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let p: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(p["format"], "ficus-plan/1");
    assert_eq!(p["tables"][0]["name"], "t");
    assert_eq!(p["tables"][0]["primary_key"], serde_json::json!(["id"]));
    // INTEGER keeps its width where the values fit (issue 14 item 5).
    assert_eq!(p["tables"][0]["columns"][1]["pg_type"], "integer");
    assert_eq!(p["tables"][0]["columns"][1]["not_null"], true);
    assert_eq!(p["views"][0]["name"], "v_ok");
    assert_eq!(p["views"][0]["translated"], true);
    assert!(p["views"][0]["sql"]
        .as_str()
        .unwrap()
        .contains("coalesce(\"x\", '-')"));
    assert_eq!(p["triggers"][0]["name"], "t_log");
    assert!(p["triggers"][0]["sql"]
        .as_str()
        .unwrap()
        .starts_with("CREATE TRIGGER"));
    assert_eq!(
        p["totals"],
        serde_json::json!({"tables": 1, "rows": 2, "expected_rejects": 0, "views": 2,
                           "views_untranslated": 0, "triggers": 1, "skipped": 0})
    );
    let ids: Vec<&str> = p["ddl"]["post_load"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"view:v_bad"), "{ids:?}");

    let o = ficus(&[
        "migrate", "run", "--source", s, "--target", &db.url, "--quiet",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    let text = stdout(&o);
    for line in [
        "tables: 1 created",
        "rows: 2 copied",
        "quarantined: 0 row(s)",
        "views: 1 created, 1 not created",
        "  view v_bad: PostgreSQL refused it: function typeof(text) does not exist",
        "triggers: 1 not carried",
        "  trigger t_log: CREATE TRIGGER t_log AFTER INSERT ON t BEGIN SELECT 1; END",
        "skipped objects: 0",
    ] {
        assert!(text.contains(line), "{line:?} not in:\n{text}");
    }
    let o = ficus(&[
        "migrate",
        "run",
        "--source",
        s,
        "--target",
        &db.url,
        "--quiet",
        "--allow-partial",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let o = ficus(&["migrate", "status", "--target", &db.url]);
    assert!(
        stdout(&o).contains("views: 1 created, 1 not created"),
        "{}",
        stdout(&o)
    );
    let o = ficus(&["migrate", "status", "--target", &db.url, "--format", "json"]);
    let st: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(st["carried"]["triggers_not_carried"][0]["name"], "t_log");
    assert_eq!(st["carried"]["complete"], false);
    let help = stdout(&ficus(&["migrate", "run", "--help"]));
    assert!(
        help.contains("--allow-partial") && help.contains("2 when something"),
        "{help}"
    );
}
