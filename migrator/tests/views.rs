//! Views and triggers against a real PostgreSQL: the real databases' views (Northwind's 16
//! written in MS-SQL style, Sakila's 5) are all created, in dependency order, and select what
//! SQLite selects; SQLite functions are translated; a view PostgreSQL refuses is reported with
//! its message without failing the run; triggers are listed, with their SQL, as not carried.

mod common;

use std::path::Path;

use common::*;
use ficus_migrator::{MigrationConfig, Plan, RunOptions};

/// Rows of `sql` in SQLite, each value as text (NULL as "NULL").
fn sqlite_rows(src: &Path, sql: &str) -> Vec<Vec<String>> {
    testkit::sqlite::rows(src, sql, |r| {
        let n = r.as_ref().column_count();
        (0..n)
            .map(|i| {
                r.get::<_, rusqlite::types::Value>(i).map(|v| match v {
                    rusqlite::types::Value::Null => "NULL".to_string(),
                    rusqlite::types::Value::Integer(i) => i.to_string(),
                    rusqlite::types::Value::Real(f) => f.to_string(),
                    rusqlite::types::Value::Text(s) => s,
                    rusqlite::types::Value::Blob(b) => format!("{b:?}"),
                })
            })
            .collect()
    })
}

/// Rows of `sql` in PostgreSQL, each value cast to text by the query itself.
async fn pg_rows(c: &tokio_postgres::Client, sql: &str) -> Vec<Vec<String>> {
    testkit::pg::rows(c, sql, |r| {
        (0..r.len())
            .map(|i| {
                r.get::<_, Option<String>>(i)
                    .unwrap_or_else(|| "NULL".into())
            })
            .collect()
    })
    .await
}

async fn count(c: &tokio_postgres::Client, view: &str) -> i64 {
    c.query_one(&format!("SELECT count(*) FROM \"{view}\""), &[])
        .await
        .unwrap_or_else(|e| panic!("{view}: {e}"))
        .get(0)
}

fn sqlite_count(src: &Path, view: &str) -> i64 {
    testkit::sqlite::rows(src, &format!("SELECT count(*) FROM [{view}]"), |r| r.get(0))[0]
}

#[tokio::test]
async fn northwind_views_are_all_created_in_dependency_order_and_select_what_sqlite_does() {
    let d = temp_dir("views-northwind");
    let Some(src) = testkit::realdb::copy("northwind.db", d.path()) else {
        return;
    };
    let plan = build_plan(&src, &MigrationConfig::default());
    assert_eq!(plan.views.len(), 16);
    for (i, v) in plan.views.iter().enumerate() {
        assert_eq!(v.untranslated, None, "{}", v.name);
        for dep in &v.depends_on {
            let at = plan.views.iter().position(|w| &w.name == dep).unwrap();
            assert!(at < i, "{} is planned before {dep}, which it reads", v.name);
        }
    }
    let db = testkit::pg::fresh_database("views_northwind").unwrap();
    let rep = run(&plan, &src, &db.url, &RunOptions::default()).await;
    assert_eq!(
        rep.carried.views_created.len(),
        16,
        "{}",
        rep.carried.text()
    );
    assert!(rep.carried.views_not_created.is_empty());
    let c = pg(&db.url).await;
    // Every view has as many rows on both sides (text vs numeric comparisons, the 1997 date
    // ranges, views on views).
    for v in plan
        .views
        .iter()
        .filter(|v| v.name != "Sales Totals by Amount")
    {
        assert_eq!(
            count(&c, &v.name).await,
            sqlite_count(&src, &v.name),
            "rows of view {}",
            v.name
        );
    }
    // Its 1997 range compares timestamps in PostgreSQL, text in SQLite (3 orders shipped
    // '1997-12-31 00:00:00.000' sort after '1997-12-31 00:00:00' there): noted in the plan, and
    // PostgreSQL's rows are SQLite's when it compares times too.
    let by_amount = plan
        .views
        .iter()
        .find(|v| v.name == "Sales Totals by Amount")
        .unwrap();
    assert!(
        by_amount
            .notes
            .iter()
            .any(|n| n.contains("as a point in time")),
        "{:?}",
        by_amount.notes
    );
    let by_time = testkit::sqlite::rows(
        &src,
        "SELECT count(*) FROM Orders o JOIN [Order Subtotals] s ON o.OrderID = s.OrderID
         WHERE s.Subtotal > 2500 AND julianday(o.ShippedDate) BETWEEN julianday('1997-01-01') AND julianday('1997-12-31')",
        |r| r.get::<_, i64>(0),
    )[0];
    assert_eq!(count(&c, "Sales Totals by Amount").await, by_time);
    // The MS-SQL `+` is concatenation in PostgreSQL (SQLite computes 0), noted in the plan.
    let inv = plan.views.iter().find(|v| v.name == "Invoices").unwrap();
    assert!(inv.notes.iter().any(|n| n.contains("concatenation")));
    let names = pg_rows(
        &c,
        r#"SELECT DISTINCT "Salesperson" FROM "Invoices" WHERE "Salesperson" LIKE 'Nancy%'"#,
    )
    .await;
    assert_eq!(names, vec![vec!["Nancy Davolio".to_string()]]);
    // Same values, not only the same counts, for a view with a constant-folded datetime().
    let q = r#"SELECT "CustomerID", "CompanyName" FROM "Quarterly Orders" ORDER BY 1"#;
    assert_eq!(
        pg_rows(&c, q).await,
        sqlite_rows(&src, &q.replace("\"Q", "[Q").replace("s\"", "s]"))
    );
}

#[tokio::test]
async fn sakila_views_are_all_created_and_its_triggers_listed_with_their_sql() {
    let d = temp_dir("views-sakila");
    let Some(src) = testkit::realdb::copy("sakila.db", d.path()) else {
        return;
    };
    let plan = build_plan(&src, &MigrationConfig::default());
    assert_eq!(plan.triggers.len(), 30);
    assert!(plan
        .triggers
        .iter()
        .all(|t| t.kind == "trigger" && t.sql.to_uppercase().starts_with("CREATE TRIGGER")));
    let report = plan.report();
    assert!(
        report.contains(&format!("trigger {}: NOT CARRIED", plan.triggers[0].name)),
        "{report}"
    );
    assert!(report.contains("30 trigger(s) not carried"), "{report}");
    let db = testkit::pg::fresh_database("views_sakila").unwrap();
    let rep = run(&plan, &src, &db.url, &RunOptions::default()).await;
    let carried = &rep.carried;
    assert_eq!(carried.views_created.len(), 5, "{}", carried.text());
    assert_eq!(carried.triggers_not_carried.len(), 30);
    assert!(!carried.complete);
    let text = carried.text();
    assert!(text.contains("views: 5 created, 0 not created"), "{text}");
    assert!(text.contains("triggers: 30 not carried"), "{text}");
    assert!(
        text.contains(&format!(
            "trigger {}: CREATE TRIGGER",
            plan.triggers[0].name
        )),
        "{text}"
    );
    let c = pg(&db.url).await;
    for v in &plan.views {
        assert_eq!(
            count(&c, &v.name).await,
            sqlite_count(&src, &v.name),
            "rows of view {}",
            v.name
        );
    }
    // `cu.active = 1` on a CHAR(1) column: SQLite compares as text; so does PostgreSQL.
    assert_eq!(
        pg_rows(
            &c,
            r#"SELECT "ID"::text, "name", "notes" FROM "customer_list" ORDER BY customer_list."ID" LIMIT 20"#
        )
        .await,
        sqlite_rows(
            &src,
            "SELECT ID, name, notes FROM customer_list ORDER BY ID LIMIT 20"
        )
    );
    // status shows the same summary.
    let st = ficus_migrator::status(&db.url, "public").await.unwrap();
    assert_eq!(st.carried, rep.carried);
    assert!(st.text().contains("triggers: 30 not carried"));
}

#[tokio::test]
async fn sqlite_functions_and_quoting_in_views_are_translated() {
    let d = temp_dir("views-functions");
    let src = sqlite(
        &d,
        "CREATE TABLE [Item List] (id INTEGER PRIMARY KEY, `Name` TEXT, qty INTEGER, price REAL,
                                   note TEXT, made DATETIME, flag TEXT, due TEXT);
         INSERT INTO [Item List] VALUES
           (1, 'Apple', 3, 1.5, NULL, '2024-02-29 13:45:10', '1', '2024-03-15'),
           (2, 'banana', 7, 0.25, 'ripe', '2023-12-31 23:59:59', '0', '2024-02-01'),
           (3, 'Cherry', 2, 10.5, 'red', '2024-07-04 08:00:00', '1', '2024-01-01');
         CREATE VIEW v_funcs AS
           SELECT id, IFNULL(note, 'none') AS note, IIF(qty > 2, 'many', 'few') AS amount,
                  substr(`Name`, 2, 3) AS mid, substr(Name, -2) AS tail, substr(name, -3, 2) AS tail2, length(name) AS len,
                  instr(name, 'an') AS pos, max(qty, 5) AS at_least_5, name || '!' AS shout,
                  date(made) AS day, strftime('%Y/%m', made) AS month, strftime('%H:%M', made) AS hm,
                  CAST(price * 100 AS INTEGER) AS cents, round(price, 1) AS r
           FROM [Item List];
         CREATE VIEW v_like AS SELECT id FROM [item list] WHERE name LIKE 'b%' OR Name LIKE '%RR%';
         CREATE VIEW v_agg AS SELECT group_concat(name, '|') AS names, total(qty) AS t FROM (SELECT name, qty FROM [Item List] ORDER BY id);
         CREATE VIEW v_now AS SELECT datetime('now') AS now_utc, date('now', '-1 day') AS yesterday,
                strftime('%s', 'now') AS epoch, datetime(made, '+1 day', 'start of day') AS next_day
           FROM [Item List] WHERE flag = 1;
         CREATE VIEW v_ops AS SELECT id FROM [Item List]
           WHERE note IS NOT 'red' AND name GLOB '[A-Z]*' AND name = 'APPLE' COLLATE NOCASE;
         CREATE VIEW v_text_dates AS SELECT id FROM [Item List] WHERE due < date(made, '+1 month');
         CREATE VIEW v_on_view AS SELECT note, amount FROM v_funcs WHERE amount == 'many';",
    );
    let plan = build_plan(&src, &MigrationConfig::default());
    let names: Vec<&str> = plan.views.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "v_funcs",
            "v_like",
            "v_agg",
            "v_now",
            "v_ops",
            "v_text_dates",
            "v_on_view"
        ]
    );
    for v in &plan.views {
        assert_eq!(v.untranslated, None, "{}", v.name);
    }
    let db = testkit::pg::fresh_database("views_functions").unwrap();
    let rep = run(&plan, &src, &db.url, &RunOptions::default()).await;
    assert_eq!(rep.carried.views_created.len(), 7, "{}", rep.carried.text());
    assert!(rep.carried.complete, "{}", rep.carried.text());
    let c = pg(&db.url).await;
    let q = "SELECT id, note, amount, mid, tail, tail2, len, pos, at_least_5, shout, day, month, hm, cents, r FROM v_funcs ORDER BY id";
    let cast_all = "SELECT id::text, note, amount, mid, tail, tail2, len::text, pos::text, at_least_5::text, shout, day::text, month, hm, cents::text, r::text FROM v_funcs ORDER BY id";
    assert_eq!(pg_rows(&c, cast_all).await, sqlite_rows(&src, q));
    assert_eq!(
        pg_rows(&c, "SELECT id::text FROM v_like ORDER BY id").await,
        sqlite_rows(&src, "SELECT id FROM v_like ORDER BY id")
    );
    assert_eq!(
        pg_rows(&c, "SELECT names, t::text FROM v_agg").await,
        vec![vec!["Apple|banana|Cherry".to_string(), "12".to_string()]]
    );
    // IS NOT with a value, GLOB, COLLATE NOCASE on one side of =; a date compared with a text
    // column, as text.
    for v in ["v_ops", "v_text_dates"] {
        let (p, l) = (
            pg_rows(&c, &format!("SELECT id::text FROM {v} ORDER BY id")).await,
            sqlite_rows(&src, &format!("SELECT id FROM {v} ORDER BY id")),
        );
        assert!(!l.is_empty(), "{v}");
        assert_eq!(p, l, "{v}");
    }
    assert_eq!(
        pg_rows(&c, "SELECT note FROM v_on_view ORDER BY note").await,
        sqlite_rows(&src, "SELECT note FROM v_on_view ORDER BY note")
    );
    // 'now' is UTC, as in SQLite: both sides agree (within the test's run time).
    let pg_now = pg_rows(
        &c,
        "SELECT extract(epoch from now_utc)::bigint::text, epoch::text, yesterday::text, next_day::text FROM v_now ORDER BY next_day",
    )
    .await;
    let lite = sqlite_rows(
        &src,
        "SELECT strftime('%s', now_utc), epoch, yesterday, next_day FROM v_now ORDER BY next_day",
    );
    assert_eq!(pg_now.len(), 2);
    for (p, l) in pg_now.iter().zip(&lite) {
        for i in 0..2 {
            let (a, b): (i64, i64) = (p[i].parse().unwrap(), l[i].parse().unwrap());
            assert!((a - b).abs() < 60, "{p:?} vs {l:?}");
        }
        assert_eq!(p[2..], l[2..]);
    }
}

#[tokio::test]
async fn a_view_postgresql_refuses_or_that_cannot_be_translated_is_reported_and_the_run_goes_on() {
    let d = temp_dir("views-refused");
    let src = sqlite(
        &d,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, x TEXT, made TEXT);
         INSERT INTO t VALUES (1, 'a', '2024-01-01'), (2, NULL, '2024-06-01');
         CREATE VIEW v_typeof AS SELECT id, typeof(x) AS tx FROM t;
         CREATE VIEW v_week AS SELECT id, strftime('%W', made) AS week FROM t;
         CREATE VIEW v_fine AS SELECT id FROM t WHERE x IS NOT NULL;
         CREATE VIEW v_on_refused AS SELECT tx FROM v_typeof;
         CREATE TRIGGER t_touch AFTER UPDATE ON t BEGIN UPDATE t SET made = date('now') WHERE id = new.id; END;
         CREATE TABLE old_stuff (a, b);",
    );
    let cfg = MigrationConfig::parse("[tables.old_stuff]\nskip = true\n", "test").unwrap();
    let plan = build_plan(&src, &cfg);
    let week = plan.views.iter().find(|v| v.name == "v_week").unwrap();
    assert!(
        week.untranslated
            .as_deref()
            .is_some_and(|w| w.contains("%W")),
        "{week:?}"
    );
    assert!(plan
        .report()
        .contains("view v_week: NOT CREATED, cannot be translated"));
    let db = testkit::pg::fresh_database("views_refused").unwrap();
    let rep = run(&plan, &src, &db.url, &RunOptions::default()).await;
    let c = &rep.carried;
    assert_eq!(c.views_created, vec!["v_fine".to_string()], "{}", c.text());
    let reason = |name: &str| {
        c.views_not_created
            .iter()
            .find(|v| v.name == name)
            .map(|v| v.reason.clone())
            .unwrap_or_else(|| panic!("{name} not reported:\n{}", c.text()))
    };
    // PostgreSQL's own message.
    assert!(
        reason("v_typeof").contains("function typeof(text) does not exist"),
        "{}",
        reason("v_typeof")
    );
    assert!(reason("v_on_refused").contains("does not exist"));
    assert!(reason("v_week").starts_with("not translated"));
    assert_eq!(c.triggers_not_carried.len(), 1);
    assert!(c.triggers_not_carried[0].sql.contains("date('now')"));
    assert!(!c.complete);
    assert_eq!(rep.rows_copied, 2);
    // A table skipped by configuration is a skipped object, with its reason.
    assert_eq!(c.skipped_objects.len(), 1);
    assert_eq!(
        (
            c.skipped_objects[0].kind.as_str(),
            c.skipped_objects[0].name.as_str()
        ),
        ("table", "old_stuff")
    );
    let text = c.text();
    assert!(text.contains("views: 1 created, 3 not created"), "{text}");
    assert!(
        text.contains("skipped objects: 1\n  table old_stuff: skipped by configuration"),
        "{text}"
    );
}

#[test]
fn plan_of_a_view_keeps_sqlite_text_and_dependencies() {
    let d = temp_dir("views-plan");
    let src = sqlite(
        &d,
        "CREATE TABLE a (id INTEGER PRIMARY KEY);
         CREATE VIEW top AS SELECT * FROM mid;
         CREATE VIEW mid AS SELECT * FROM base;
         CREATE VIEW base AS SELECT id FROM a;",
    );
    // SQLite accepts views on views not yet defined: the plan orders them.
    let plan = Plan::build(&src, &MigrationConfig::default(), "public").unwrap();
    let names: Vec<&str> = plan.views.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["base", "mid", "top"]);
    assert_eq!(plan.views[2].depends_on, vec!["mid".to_string()]);
    assert!(plan.views[0].sqlite.starts_with("CREATE VIEW base"));
}
