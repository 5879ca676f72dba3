//! The reference Task API as both sides (two SQLite copies of one seeded database, so no
//! PostgreSQL is needed), the new side started with quirks: each quirk shows up with the right
//! path and kind; ignore rules and unordered arrays remove exactly those; a dual-write claim
//! reaches the new side's store.

use std::collections::BTreeSet;
use std::time::Duration;

use ficus_shadow::{DiffKind, RouteShadowConfig, Side, Store, Submitted};
use ficus_taskapp::{Clock, Options, Timestamp};
use http::{HeaderMap, Method};
use testkit::apps::{pair, quirks, Pair};

use crate::support::*;

const READS: &[&str] = &[
    "/api/tasks/",
    "/api/tasks/ready",
    "/api/tasks/coordinator-data",
    "/api/tasks/TASK-101",
];

fn options(new_quirks: &[&str]) -> Options {
    let start = Timestamp::from_unix_micros(1_767_261_600_000_000).unwrap();
    Options {
        quirks: quirks(new_quirks),
        // The same deterministic clock on both sides, so writes stamp the same times.
        clock: Clock::stepping(start, Duration::from_secs(1)),
    }
}

/// Both sides as the legacy app on copies of one seeded database, so they start equal; the
/// new one with `new_quirks`.
async fn sides(name: &str, new_quirks: &[&str]) -> Pair {
    pair(name)
        .new_on_sqlite()
        .legacy(options(&[]))
        .new_side(options(new_quirks))
        .start()
        .await
}

/// (field, kind) pairs of every stored mismatch of `route`.
fn found(store: &Store, ids: std::ops::RangeInclusive<i64>) -> BTreeSet<(String, DiffKind)> {
    let mut out = BTreeSet::new();
    for id in ids {
        if let Some(rec) = store.mismatch(id).unwrap() {
            out.extend(rec.diff.into_iter().map(|e| (e.field, e.kind)));
        }
    }
    out
}

async fn shadow_reads(
    quirks: &[&str],
    cfg: RouteShadowConfig,
) -> (BTreeSet<(String, DiffKind)>, u64, u64) {
    let apps = sides("shadow-taskapp", quirks).await;
    let (legacy, new) = (&apps.legacy, &apps.new);
    let h = harness("taskapp-shadow", |_| {});
    let route = h.route("tasks-read", cfg, false, &legacy.url(), &new.url());
    for path in READS {
        assert_eq!(
            h.shadow.submit(get_job(&route, &legacy.url(), path).await),
            Submitted::Queued
        );
    }
    flush(&h.shadow).await;
    let store = Store::open_existing(&h.store_path()).unwrap();
    let result = (
        found(&store, 1..=READS.len() as i64),
        h.results("tasks-read", "match"),
        h.results("tasks-read", "mismatch"),
    );
    apps.shutdown().await;
    result
}

const TIMESTAMPS: &[&str] = &["created_at", "updated_at", "last_heartbeat"];

fn is_timestamp_field(field: &str) -> bool {
    TIMESTAMPS.iter().any(|t| field.ends_with(&format!("/{t}")))
}

#[tokio::test]
async fn without_quirks_every_read_matches() {
    let (diffs, matched, mismatched) = shadow_reads(&[], RouteShadowConfig::default()).await;
    assert!(diffs.is_empty(), "{diffs:?}");
    assert_eq!((matched, mismatched), (READS.len() as u64, 0));
}

#[tokio::test]
async fn timestamp_precision_is_a_value_difference_on_timestamp_fields() {
    // The quirk shows only on timestamps whose microseconds are zero, so a single task may
    // match; the lists cannot.
    let (diffs, _, mismatched) =
        shadow_reads(&["timestamp-precision"], RouteShadowConfig::default()).await;
    assert!(mismatched >= 2, "{mismatched}");
    for (field, kind) in &diffs {
        assert_eq!(*kind, DiffKind::Value, "{field}");
        assert!(is_timestamp_field(field), "{field}");
    }
    assert!(
        diffs.iter().any(|(f, _)| f.starts_with("/*/")),
        "the task list shows it: {diffs:?}"
    );
}

#[tokio::test]
async fn extra_field_is_an_extra_on_every_task() {
    let (diffs, _, mismatched) = shadow_reads(&["extra-field"], RouteShadowConfig::default()).await;
    assert_eq!(mismatched, READS.len() as u64);
    for (field, kind) in &diffs {
        assert_eq!(*kind, DiffKind::Extra, "{field}");
        assert!(field.ends_with("/service_version"), "{field}");
    }
    assert!(diffs.contains(&("/*/service_version".to_string(), DiffKind::Extra)));
    assert!(diffs.contains(&("/service_version".to_string(), DiffKind::Extra)));
}

#[tokio::test]
async fn ready_order_is_one_order_difference_on_ready_only() {
    let (diffs, matched, mismatched) =
        shadow_reads(&["ready-order"], RouteShadowConfig::default()).await;
    assert_eq!(diffs, BTreeSet::from([(String::new(), DiffKind::Order)]));
    assert_eq!((matched, mismatched), (READS.len() as u64 - 1, 1));
}

#[tokio::test]
async fn ignore_rules_and_unordered_arrays_remove_exactly_the_quirks() {
    let all = ["timestamp-precision", "ready-order", "extra-field"];
    let ignore: Vec<String> = TIMESTAMPS
        .iter()
        .map(|t| format!("/**/{t}"))
        .chain(["/**/service_version".to_string()])
        .collect();
    // Ignoring timestamps and the extra field leaves only the order.
    let cfg = RouteShadowConfig {
        ignore: ignore.clone(),
        ..Default::default()
    };
    let (diffs, _, _) = shadow_reads(&all, cfg).await;
    assert_eq!(diffs, BTreeSet::from([(String::new(), DiffKind::Order)]));
    // Declaring the ready list unordered leaves nothing.
    let cfg = RouteShadowConfig {
        ignore,
        unordered_arrays: vec!["".into()],
        ..Default::default()
    };
    let (diffs, matched, _) = shadow_reads(&all, cfg).await;
    assert!(diffs.is_empty(), "{diffs:?}");
    assert_eq!(matched, READS.len() as u64);
}

#[tokio::test]
async fn dual_write_creates_and_claims_reach_the_new_side_and_match() {
    let apps = sides("shadow-taskapp-write", &[]).await;
    let (legacy, new) = (&apps.legacy, &apps.new);
    let h = harness("taskapp-write-shadow", |_| {});
    let plain = h.route(
        "tasks-write",
        RouteShadowConfig::default(),
        false,
        &legacy.url(),
        &new.url(),
    );
    let dual = h.route(
        "tasks-dual",
        RouteShadowConfig::default(),
        true,
        &legacy.url(),
        &new.url(),
    );
    let mut headers = HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    let write = |route, path: &'static str, body: &'static str, id: &'static str| {
        let (legacy, headers) = (legacy.url(), headers.clone());
        async move {
            job(
                route,
                Side::Legacy,
                &legacy,
                Method::POST,
                path,
                headers,
                body,
                id,
            )
            .await
        }
    };

    // Both sides stamp writes from the same stepping clock, so mirrored writes answer alike.
    let create = write(
        &dual,
        "/api/tasks/",
        r#"{"task_id":"TASK-900","title":"shadowed","priority":"HIGH"}"#,
        "w1",
    )
    .await;
    assert_eq!(
        create.primary.status,
        201,
        "{:?}",
        create.primary.body.to_bytes()
    );
    assert_eq!(h.shadow.submit(create), Submitted::Queued);
    flush(&h.shadow).await;
    let claim = write(
        &dual,
        "/api/tasks/TASK-900/claim",
        r#"{"agent_name":"agent-7"}"#,
        "w2",
    )
    .await;
    assert_eq!(
        claim.primary.status,
        200,
        "{:?}",
        claim.primary.body.to_bytes()
    );
    assert_eq!(h.shadow.submit(claim), Submitted::Queued);
    flush(&h.shadow).await;
    assert_eq!(
        h.results("tasks-dual", "match"),
        2,
        "{:?}",
        Store::open_existing(&h.store_path()).unwrap().mismatch(1)
    );

    // A write on the plain route is not mirrored.
    let other = write(
        &plain,
        "/api/tasks/",
        r#"{"task_id":"TASK-901","title":"not shadowed"}"#,
        "w3",
    )
    .await;
    assert_eq!(other.primary.status, 201);
    assert_eq!(h.shadow.submit(other), Submitted::NotAllowed);
    flush(&h.shadow).await;

    let get = |path: &'static str| {
        primary_exchange(
            new.url(),
            Method::GET,
            path,
            HeaderMap::new(),
            bytes::Bytes::new(),
        )
    };
    let t900 = get("/api/tasks/TASK-900").await;
    let t900: serde_json::Value = serde_json::from_slice(&t900.body.to_bytes()).unwrap();
    assert_eq!(t900["assigned_agent"], "agent-7");
    assert_eq!(get("/api/tasks/TASK-901").await.status, 404);
    apps.shutdown().await;
}
