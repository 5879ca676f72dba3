//! `ficus migrate watch` and `ficus migrate rollback` through the real binary: exit codes, the
//! report file, text and JSON output, the proxy state store switched to legacy.

use std::process::Output;

use testkit::cli::text as out;

fn ficus(args: &[&str]) -> Output {
    testkit::cli::run(env!("CARGO_BIN_EXE_ficus"), args)
}

#[test]
fn watch_and_rollback_through_the_binary() {
    let tmp = testkit::temp_dir("cli-dualwrite");
    let dir = tmp.path();
    let src = dir.join("legacy.db");
    ficus_taskapp::seed_sqlite(&src, &ficus_taskapp::seed_tasks(30, 3)).unwrap();
    let cfg = dir.join("migration.toml");
    std::fs::write(
        &cfg,
        "[watch.tables.task_events]\nignore_columns = [\"id\"]\n\n[watch.routes.tasks-write]\ntable = \"tasks\"\ncolumn = \"task_id\"\n",
    )
    .unwrap();
    let db = testkit::pg::fresh_database("dw_cli").unwrap();
    let state = dir.join("ficus-state.db");
    let report = dir.join("drift.jsonl");
    let (s, c, st, rp) = (
        src.to_str().unwrap(),
        cfg.to_str().unwrap(),
        state.to_str().unwrap(),
        report.to_str().unwrap(),
    );
    let common = ["--source", s, "--target", &db.url, "--config", c];
    let o = ficus(&[&["migrate", "run"][..], &common, &["--quiet"]].concat());
    assert!(o.status.success(), "{}", out(&o));

    // A clean pass: exit 0.
    let watch = |extra: &[&str]| {
        ficus(
            &[
                &["migrate", "watch"][..],
                &common,
                &[
                    "--once",
                    "--settle-ms",
                    "200",
                    "--proxy-state",
                    st,
                    "--report",
                    rp,
                ],
                extra,
            ]
            .concat(),
        )
    };
    let o = watch(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(out(&o).contains("no drift"), "{}", out(&o));

    // A change made behind the apps' backs (in SQLite): exit 1, named in the output and the
    // report.
    let title = |p: &std::path::Path| -> String {
        testkit::sqlite::open(p)
            .query_row(
                "SELECT title FROM tasks WHERE task_id = 'TASK-110'",
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    let original = title(&src);
    testkit::sqlite::open(&src)
        .execute(
            "UPDATE tasks SET title = 'changed in sqlite' WHERE task_id = 'TASK-110'",
            [],
        )
        .unwrap();
    let o = watch(&["--format", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let summary: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(summary["clean"], false);
    assert_eq!(summary["drift"][0]["key"], "{\"task_id\":\"TASK-110\"}");
    assert_eq!(summary["drift"][0]["columns"][0]["column"], "title");
    let lines = std::fs::read_to_string(&report).unwrap();
    assert!(lines.contains("\"class\":\"value_differs\""), "{lines}");

    // Rollback (new wins: legacy's version is not newer): a dry run lists the row (exit 0,
    // nothing written); then the real one writes it back and sets the routes to legacy in the
    // state store.
    let since = ["--since", "2000-01-01T00:00:00Z"];
    let o = ficus(
        &[
            &["migrate", "rollback"][..],
            &common,
            &since,
            &["--dry-run"],
        ]
        .concat(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(
        out(&o).contains("update") && out(&o).contains("nothing written"),
        "{}",
        out(&o)
    );
    assert_eq!(title(&src), "changed in sqlite");
    // Without --admin or --proxy-state the routes are not switched: not complete, exit 1.
    let o = ficus(&[&["migrate", "rollback"][..], &common, &since].concat());
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("NOT switched"), "{}", out(&o));
    assert_eq!(title(&src), original);
    // A state store that knows no route, and no proxy config: the switch fails, exit 1.
    let o = ficus(
        &[
            &["migrate", "rollback"][..],
            &common,
            &since,
            &["--proxy-state", st],
        ]
        .concat(),
    );
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("knows no route"), "{}", out(&o));
    let proxy_cfg = dir.join("ficus.toml");
    std::fs::write(
        &proxy_cfg,
        // The proxy's own configuration: writes all on new by `target = "new"` (no
        // `percent`), which the proxy reads as 100 %.
        testkit::ProxyToml::new("127.0.0.1:9", "127.0.0.1:9")
            .routes(
                "[[routes]]\nname = \"tasks-write\"\npath = \"/api/tasks/*\"\ntarget = \"new\"\n",
            )
            .to_string(),
    )
    .unwrap();
    let o = ficus(
        &[
            &["migrate", "rollback"][..],
            &common,
            &since,
            &[
                "--proxy-state",
                st,
                "--proxy-config",
                proxy_cfg.to_str().unwrap(),
            ],
        ]
        .concat(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(out(&o).contains("rollback complete"), "{}", out(&o));
    let c = testkit::sqlite::open(&state);
    let percent: i64 = c
        .query_row(
            "SELECT percent_bp FROM rollout WHERE route = 'tasks-write'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(percent, 0);
    // Audited from what the proxy was routing by: 100 % (the hand-parsed TOML of old read
    // `target = "new"` without `percent` as 0 %).
    let (from_bp, to_bp, actor): (i64, i64, String) = c
        .query_row(
            "SELECT from_bp, to_bp, actor FROM audit WHERE route = 'tasks-write' ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(
        (from_bp, to_bp, actor.as_str()),
        (10_000, 0, "migrate-rollback")
    );

    // And the watch is clean again.
    let o = watch(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
}
