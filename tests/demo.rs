//! `ficus demo` end to end: the binary tells the whole story on this machine — every chapter
//! under its numbered heading, each with the outcome the story promises.

use std::process::Command;

/// The line of `out` holding every one of `parts`, if any.
fn line_with<'a>(out: &'a str, parts: &[&str]) -> Option<&'a str> {
    out.lines().find(|l| parts.iter().all(|p| l.contains(p)))
}

#[test]
fn demo_tells_the_whole_story_and_each_chapter_checks_out() {
    let tmp = testkit::temp_dir("demo-test");
    let dir = tmp.path();
    let out = Command::new(env!("CARGO_BIN_EXE_ficus"))
        .args(["demo", "--tasks", "200", "--dir"])
        .arg(dir)
        .output()
        .expect("run ficus demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "demo failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );

    // The chapters, numbered, in order.
    let headings = [
        "== 1. Start PostgreSQL",
        "== 2. Seed the legacy",
        "== 3. Migrate the legacy data",
        "== 4. Migrate a live database",
        "== 5. Cut over the live app",
        "== 6. Start everything",
        "== 7. Shadow reads",
        "== 8. Dual writes",
        "== 9. Watch",
        "== 10. Drift made behind the apps' backs",
        "== 11. Roll reads out: 10 → 50 → 100 %",
        "== 12. Roll writes",
        "== 13. Guard",
        "== 14. Plan: reads move to v1 step by step",
        "== 15. Plan: the pre-flight stops",
        "== 16. Cut over, then roll the migration back",
        "== 17. Done",
    ];
    let mut at = 0;
    for h in headings {
        let found = stdout[at..]
            .find(h)
            .unwrap_or_else(|| panic!("heading {h:?} missing or out of order in:\n{stdout}"));
        at += found + h.len();
    }

    let want: &[(&str, &[&str])] = &[
        ("seeded", &["200 tasks (TASK-101 … TASK-300)"]),
        ("migration verified", &["verify: clean"]),
        (
            "live cut-over",
            &["write pause:", "cut over: writes on new"],
        ),
        (
            "live rollback",
            &["write pause:", "rolled back: writes on legacy"],
        ),
        (
            "deletion carried back",
            &["TASK-170 is gone from live.db too"],
        ),
        (
            "writes on both sides",
            &[
                "every one on both sides",
                "no answer but an app's; verify clean",
            ],
        ),
        (
            "sides agree",
            &["set an unknown status", "422", "422", "yes"],
        ),
        ("admin page", &["admin page", "http://127.0.0.1:"]),
        ("shadow: extra field", &["extra", "/service_version"]),
        ("shadow: timestamps", &["value", "/created_at"]),
        ("zero drift", &["written key(s)", "1 sweep(s): no drift"]),
        (
            "value_differs names the column",
            &[
                "value_differs tasks {\"task_id\":\"TASK-160\"}",
                "column title",
                "new \"edited by hand\"",
            ],
        ),
        (
            "missing_in_legacy",
            &["missing_in_legacy tasks {\"task_id\":\"TASK-8002\"}"],
        ),
        (
            "missing_in_new",
            &["missing_in_new tasks {\"task_id\":\"TASK-8001\"}"],
        ),
        ("drift counted", &["3 DRIFTING row(s)"]),
        (
            "drift repaired by migrate repair",
            &["repair: insert 1, update 1, delete 1 row(s)"],
        ),
        ("verify after repair", &["verify after repair: clean"]),
        ("live: capture first", &["change capture installed first"]),
        ("live: lag 0", &["changes applied in", "lag 0"]),
        (
            "live: nothing lost",
            &["verify: clean — every acknowledged create is in PostgreSQL"],
        ),
        ("10 %", &["10%", "180", "20", "the first users on new"]),
        ("50 %", &["50%", "every user already on new stays there"]),
        (
            "100 %",
            &[
                "100%       0    200",
                "every user already on new stays there",
            ],
        ),
        (
            "writes on new, mirrored to legacy",
            &["every answer came from new (primary); legacy got each write mirrored"],
        ),
        (
            "plan pre-flights and promotes",
            &[
                "plan-promote",
                "10% →    50%",
                "cohort [10.0%, 50.0%)",
                "0 mismatched",
            ],
        ),
        ("plan reaches 100 %", &["plan-promote", "50% →   100%"]),
        (
            "plan done alone",
            &["tasks-read at 100 % in", "no operator involved"],
        ),
        (
            "pre-flight stops v4",
            &["the plan paused at 10 %: preflight gate failed: preflight_mismatch_rate"],
        ),
        (
            "current cohort clean",
            &[
                "the current cohort (the 10 % v4 answers)",
                "mismatch rate 0.00 %",
            ],
        ),
        (
            "cohort mismatches listed",
            &["mismatch: GET /api/tasks/", "user user-"],
        ),
        (
            "guard audit",
            &["tasks-read  100% → 0%  actor guard  action rollback:p99"],
        ),
        (
            "guard metric",
            &["ficus_guard_rollbacks_total{reason=\"p99\",route=\"tasks-read\"} 1"],
        ),
        ("reads back on legacy", &["10 of 10 answered by legacy"]),
        (
            "cut-over writes on new only",
            &["legacy answers 404 for TASK-9201"],
        ),
        (
            "rows written back",
            &[
                "tasks",
                "6 inserted, 2 updated",
                "reverse verify 8 rows: clean",
            ],
        ),
        (
            "reverse verify clean",
            &["SQLite:", "in one transaction; reverse verify clean"],
        ),
        (
            "routes to legacy",
            &["every route set to legacy through the admin API"],
        ),
        ("rollback complete", &["rollback complete in"]),
        (
            "new-side write kept",
            &["GET TASK-9201 through the proxy: 200 from legacy"],
        ),
        (
            "shell commands",
            &["$ ficus migrate rollback --source legacy.db"],
        ),
    ];
    for (what, parts) in want {
        assert!(
            line_with(&stdout, parts).is_some(),
            "{what}: no line with {parts:?} in:\n{stdout}"
        );
    }
    // Both write chapters: every write logged once, both sides agreeing; three clean watches
    // (after the dual writes, after the repair, after writes moved to new).
    let logs: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("dual_writes log:"))
        .collect();
    assert_eq!(logs.len(), 2, "{stdout}");
    for l in logs {
        let n: Vec<&str> = l.split_whitespace().collect();
        // "dual_writes log: N rows, N with the same status on both sides, 0 divergent"
        assert_eq!(n[2], n[4], "{l}");
        assert!(l.ends_with(", 0 divergent"), "{l}");
    }
    assert_eq!(
        stdout.matches("1 sweep(s): no drift").count(),
        3,
        "three clean watches:\n{stdout}"
    );
    for bad in [" NO", "BROKEN", "DIFFERENT", "NOT "] {
        assert!(!stdout.contains(bad), "{bad:?} in:\n{stdout}");
    }
    for file in [
        "legacy.db",
        "ficus.toml",
        "migration.toml",
        "admin-token",
        "env.sh",
    ] {
        assert!(dir.join(file).exists(), "{file} not in the work directory");
    }
}
