//! Reports (text, JSON, HTML), `show`, and retention through the writer thread.

use std::time::Duration;

use ficus_shadow::store::{StoredBody, StoredResponse};
use ficus_shadow::{
    render_noise, render_show, DiffEntry, DiffKind, MismatchRecord, Outcome, Report, ReportOptions,
    RouteShadowConfig, Side, Store,
};
use serde_json::json;

use crate::support::*;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn entry(
    path: &str,
    field: &str,
    kind: DiffKind,
    l: Option<serde_json::Value>,
    n: Option<serde_json::Value>,
) -> DiffEntry {
    DiffEntry {
        path: path.into(),
        field: field.into(),
        kind,
        legacy: l,
        new: n,
    }
}

fn record(route: &str, time_ms: i64, diff: Vec<DiffEntry>) -> MismatchRecord {
    MismatchRecord {
        id: 0,
        time_ms,
        route: route.into(),
        method: "GET".into(),
        path: "/api/tasks/".into(),
        request_id: format!("req-{time_ms}"),
        primary: Side::Legacy,
        request_headers: vec![],
        request_body: StoredBody::default(),
        legacy: StoredResponse {
            status: 200,
            headers: vec![],
            body: StoredBody {
                data: br#"[{"id":1,"updated_at":"2026-01-01T10:00:00","title":"<b>"}]"#.to_vec(),
                truncated: false,
            },
        },
        new: StoredResponse {
            status: 200,
            headers: vec![],
            body: StoredBody {
                data:
                    br#"[{"title":"<b>","id":1,"updated_at":"2026-01-01T10:00:00.000000","v":"2"}]"#
                        .to_vec(),
                truncated: false,
            },
        },
        diff,
        diff_truncated: false,
    }
}

/// Route `tasks-read`: 40 compared, 3 mismatches; route `<evil>`: 10 compared, 1 mismatch.
fn populated_store() -> (Store, i64, TempDir) {
    let dir = temp_dir("report");
    let mut s = Store::open(&dir.path().join("shadow.db")).unwrap();
    let t0 = now_ms() - 3_600_000;
    for i in 0..3 {
        let mut diff = vec![entry(
            &format!("/{i}/updated_at"),
            "/*/updated_at",
            DiffKind::Value,
            Some(json!("2026-01-01T10:00:00")),
            Some(json!("2026-01-01T10:00:00.000000")),
        )];
        if i == 2 {
            diff.push(entry(
                "/0/v",
                "/*/v",
                DiffKind::Extra,
                None,
                Some(json!("2")),
            ));
            diff.push(entry(
                "/1/updated_at",
                "/*/updated_at",
                DiffKind::Value,
                None,
                None,
            ));
        }
        s.insert_mismatch(&record("tasks-read", t0 + i * 1_000_000, diff))
            .unwrap();
    }
    s.add_count("tasks-read", Outcome::Match, t0, 37).unwrap();
    s.add_count("tasks-read", Outcome::Mismatch, t0, 3).unwrap();
    s.add_count("tasks-read", Outcome::Dropped, t0, 5).unwrap();
    s.insert_mismatch(&record(
        "<evil>",
        t0,
        vec![entry(
            "/<script>",
            "/<script>",
            DiffKind::Missing,
            Some(json!("</td><script>alert(1)</script>")),
            None,
        )],
    ))
    .unwrap();
    s.add_count("<evil>", Outcome::Mismatch, t0, 1).unwrap();
    s.add_count("<evil>", Outcome::Match, t0, 9).unwrap();
    (s, t0, dir)
}

#[test]
fn report_groups_by_route_field_and_kind() {
    let (s, t0, _dir) = populated_store();
    let rep = Report::build(&s, &ReportOptions::default()).unwrap();
    assert_eq!(rep.routes.len(), 2);
    let r = rep.routes.iter().find(|r| r.route == "tasks-read").unwrap();
    assert_eq!(r.compared, 40);
    assert_eq!(r.results["dropped"], 5);
    assert_eq!(r.groups.len(), 2);
    let g = &r.groups[0];
    assert_eq!(
        (g.field.as_str(), g.kind.as_str(), g.count),
        ("/*/updated_at", "value", 3)
    );
    assert_eq!(g.percent_of_compared, Some(7.5));
    assert_eq!(g.sample_ids, vec![3, 2, 1], "newest first");
    assert_eq!(g.first_seen, ficus_shadow::report::format_time(t0));
    assert_eq!(
        g.last_seen,
        ficus_shadow::report::format_time(t0 + 2_000_000)
    );
    assert_eq!(g.example_legacy.as_deref(), Some("\"2026-01-01T10:00:00\""));
    assert_eq!((r.groups[1].field.as_str(), r.groups[1].count), ("/*/v", 1));

    // --route and --since narrow it.
    let only = Report::build(
        &s,
        &ReportOptions {
            route: Some("tasks-read".into()),
            since_ms: Some(t0 + 1_500_000),
        },
    )
    .unwrap();
    assert_eq!(only.routes.len(), 1);
    assert_eq!(only.routes[0].groups[0].count, 1);

    let text = rep.to_text();
    assert!(
        text.contains("route tasks-read: 40 compared: 37 match (92.5%), 3 mismatch (7.5%)"),
        "{text}"
    );
    assert!(text.contains("/*/updated_at"), "{text}");
    assert!(text.contains("7.50%"), "{text}");
    assert!(text.contains("3,2,1"), "{text}");

    let v: serde_json::Value = serde_json::from_str(&rep.to_json()).unwrap();
    assert_eq!(v["routes"][1]["groups"][0]["count"], 3);
    assert_eq!(v["routes"][1]["groups"][0]["kind"], "value");
    assert_eq!(v["routes"][1]["compared"], 40);
}

#[test]
fn html_report_is_self_contained_and_escaped() {
    let (s, _, _dir) = populated_store();
    let html = Report::build(&s, &ReportOptions::default())
        .unwrap()
        .to_html();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<style>"));
    for external in ["<link", "<script", "src=", "href=", "@import", "url("] {
        assert!(!html.contains(external), "{external} in the HTML report");
    }
    assert!(html.contains("&lt;evil&gt;"));
    assert!(html.contains("&lt;/td&gt;&lt;script&gt;"));
    assert!(html.contains("/*/updated_at"));
}

#[test]
fn show_prints_both_bodies_unified_diff() {
    let (s, _, _dir) = populated_store();
    let rec = s.mismatch(3).unwrap().unwrap();
    let plain = render_show(&rec, false);
    assert!(plain.contains("mismatch 3 on route tasks-read"), "{plain}");
    assert!(plain.contains("--- legacy\n+++ new\n"), "{plain}");
    assert!(
        plain.contains("-    \"updated_at\": \"2026-01-01T10:00:00\""),
        "{plain}"
    );
    assert!(
        plain.contains("+    \"updated_at\": \"2026-01-01T10:00:00.000000\""),
        "{plain}"
    );
    assert!(plain.contains("+    \"v\": \"2\""), "{plain}");
    // Key order differs between the bodies but is not shown as a change.
    assert!(!plain.contains("-    \"title\""), "{plain}");
    assert!(!plain.contains('\x1b'));
    let colored = render_show(&rec, true);
    assert!(colored.contains("\x1b[31m-    \"updated_at\""));
    assert!(colored.contains("\x1b[32m+    \"v\""));
    assert!(render_noise(&[]).contains("no noise"));
}

#[tokio::test]
async fn retention_keeps_the_newest_rows() {
    let legacy = serve(Duration::ZERO, json(|_, n| format!(r#"{{"n":{n}}}"#))).await;
    let new = serve(Duration::ZERO, json(|_, _| r#"{"n":-1}"#.into())).await;
    let h = harness("retention", |g| g.keep = 3);
    let route = h.route(
        "r",
        RouteShadowConfig::default(),
        false,
        &legacy.url(),
        &new.url(),
    );
    for _ in 0..10 {
        h.shadow.submit(get_job(&route, &legacy.url(), "/").await);
        flush(&h.shadow).await;
    }
    assert_eq!(h.results("r", "mismatch"), 10);
    let path = h.store_path();
    tokio::time::timeout(Duration::from_secs(20), h.shadow.shutdown())
        .await
        .unwrap();
    let s = Store::open_existing(&path).unwrap();
    assert_eq!(s.mismatch_count().unwrap(), 3);
    assert!(s.mismatch(10).unwrap().is_some());
    assert!(s.mismatch(7).unwrap().is_none());
    // Counts are kept (by age only), so shares stay right.
    let rep = Report::build(&s, &ReportOptions::default()).unwrap();
    assert_eq!(rep.routes[0].compared, 10);
    assert_eq!(rep.routes[0].groups[0].count, 3);
}
