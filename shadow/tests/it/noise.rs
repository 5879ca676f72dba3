//! Noise learning: a field that differs between two answers of the primary side is noise,
//! excluded from later comparisons, persisted, and listed with counts.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ficus_shadow::{DiffKind, RouteShadowConfig, Shadow, Store};
use prometheus::Registry;

use crate::support::*;

fn micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros()
}

#[tokio::test]
async fn fields_that_differ_legacy_vs_legacy_are_learned_and_excluded() {
    // Legacy stamps every answer with the current time in microseconds; new does too, and
    // differs in `title` only on the path /b.
    let legacy = serve(
        Duration::ZERO,
        json(|_, _| format!(r#"{{"id":1,"title":"a","generated_at":"{}"}}"#, micros())),
    )
    .await;
    let new = serve(
        Duration::ZERO,
        json(|r, _| {
            let title = if r.uri.ends_with("/b") { "B" } else { "a" };
            format!(
                r#"{{"id":1,"title":"{title}","generated_at":"{}"}}"#,
                micros() + 7
            )
        }),
    )
    .await;
    let h = harness("noise", |_| {});
    let learning = RouteShadowConfig {
        learn_noise: 1.0,
        ..Default::default()
    };
    let route = h.route("r", learning, false, &legacy.url(), &new.url());

    h.shadow.submit(get_job(&route, &legacy.url(), "/a").await);
    flush(&h.shadow).await;
    // The probe went to legacy a second time, and the timestamp difference is noise already.
    assert_eq!(legacy.received().len(), 2, "primary exchange + noise probe");
    assert_eq!(legacy.received()[1].headers["x-ficus-shadow"], "1");
    assert_eq!(h.results("r", "noise"), 1);
    assert_eq!(h.results("r", "mismatch"), 0);

    // A real difference is still a mismatch, listing only the real field.
    h.shadow.submit(get_job(&route, &legacy.url(), "/b").await);
    flush(&h.shadow).await;
    assert_eq!(h.results("r", "mismatch"), 1);
    let store = Store::open_existing(&h.store_path()).unwrap();
    let rec = store.mismatch(1).unwrap().unwrap();
    let fields: Vec<(&str, DiffKind)> = rec
        .diff
        .iter()
        .map(|e| (e.field.as_str(), e.kind))
        .collect();
    assert_eq!(fields, vec![("/title", DiffKind::Value)]);

    let noise = store.noise(Some("r")).unwrap();
    assert_eq!(noise.len(), 1, "{noise:?}");
    assert_eq!(noise[0].field, "/generated_at");
    assert_eq!(noise[0].kind, DiffKind::Value);
    assert_eq!((noise[0].count, noise[0].probes), (2, 2));
    assert!(store.noise(Some("other")).unwrap().is_empty());
    drop(store);

    // Learned noise survives a restart, and applies with learning switched off.
    let path = h.store_path();
    let dir = h.dir.clone();
    tokio::time::timeout(Duration::from_secs(20), h.shadow.shutdown())
        .await
        .unwrap();
    let registry = Registry::new();
    let shadow = Shadow::new(
        &ficus_shadow::ShadowGlobalConfig {
            store: path,
            ..global(&dir)
        },
        &registry,
    )
    .unwrap();
    let route = shadow
        .route(ficus_shadow::RouteSpec {
            name: "r",
            config: &RouteShadowConfig::default(),
            dual_write: false,
            legacy_url: &legacy.url(),
            new_url: &new.url(),
        })
        .unwrap();
    shadow.submit(get_job(&route, &legacy.url(), "/a").await);
    flush(&shadow).await;
    assert_eq!(
        counter(
            &registry,
            "ficus_shadow_requests_total",
            &[("route", "r"), ("result", "noise")]
        ),
        1
    );
}

#[tokio::test]
async fn without_learning_the_same_difference_is_a_mismatch() {
    let legacy = serve(
        Duration::ZERO,
        json(|_, _| format!(r#"{{"generated_at":"{}"}}"#, micros())),
    )
    .await;
    let new = serve(
        Duration::ZERO,
        json(|_, _| format!(r#"{{"generated_at":"{}"}}"#, micros() + 3)),
    )
    .await;
    let h = harness("nolearn", |_| {});
    let route = h.route(
        "r",
        RouteShadowConfig::default(),
        false,
        &legacy.url(),
        &new.url(),
    );
    h.shadow.submit(get_job(&route, &legacy.url(), "/").await);
    flush(&h.shadow).await;
    assert_eq!(h.results("r", "mismatch"), 1);
    assert_eq!(legacy.received().len(), 1, "no probe without learn_noise");
}

#[tokio::test]
async fn a_probe_with_another_status_teaches_nothing() {
    // Legacy answers 200 then 404 (the task was deleted in between): not noise.
    let legacy = serve(
        Duration::ZERO,
        std::sync::Arc::new(|_, n| {
            let status = if n % 2 == 0 { 200 } else { 404 };
            (
                status,
                vec![],
                format!(r#"{{"generated_at":"{}"}}"#, micros()),
            )
        }),
    )
    .await;
    let new = serve(
        Duration::ZERO,
        json(|_, _| format!(r#"{{"generated_at":"{}"}}"#, micros() + 3)),
    )
    .await;
    let h = harness("noise-status", |_| {});
    let route = h.route(
        "r",
        RouteShadowConfig {
            learn_noise: 1.0,
            ..Default::default()
        },
        false,
        &legacy.url(),
        &new.url(),
    );
    h.shadow.submit(get_job(&route, &legacy.url(), "/").await);
    flush(&h.shadow).await;
    assert_eq!(legacy.received().len(), 2, "the probe was sent");
    assert_eq!(h.results("r", "mismatch"), 1);
    let store = Store::open_existing(&h.store_path()).unwrap();
    assert!(store.noise(None).unwrap().is_empty());
}
