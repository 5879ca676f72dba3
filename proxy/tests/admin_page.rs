//! The admin web page: served from the binary with its JSON endpoints, and driven in headless
//! Chromium by `tests/browser/admin_page.mjs` (playwright-core) — load, enter the token, set a
//! percentage, see the proxy apply it, roll back, screenshots into `<target>/browser-test/`.
//! The browser part is skipped, loudly, only when `node` or Chromium is not installed.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use ficus_proxy::config::Secret;
use ficus_proxy::{Config, Proxy, ProxyHandle};
use ficus_shadow::store::{StoredBody, StoredResponse};
use ficus_shadow::{DiffEntry, DiffKind, MismatchRecord, Side, Store};
use serde_json::json;
use testkit::browser;

const TOKEN: &str = "page-admin-token";
const ROUTE: &str = "tasks-read";
const HOSTILE: &str = "/api/tasks/<img src=x onerror=alert(1)>";

fn record(id_hint: i64, path: &str, legacy: &str, new: &str) -> MismatchRecord {
    let body = |s: &str| StoredBody {
        data: s.as_bytes().to_vec(),
        truncated: false,
    };
    MismatchRecord {
        id: 0,
        time_ms: 1_760_000_000_000 + id_hint * 1000,
        route: ROUTE.into(),
        method: "GET".into(),
        path: path.into(),
        request_id: format!("req-{id_hint}"),
        primary: Side::Legacy,
        request_headers: vec![],
        request_body: body(""),
        legacy: StoredResponse {
            status: 200,
            headers: vec![],
            body: body(&json!({ "title": legacy }).to_string()),
        },
        new: StoredResponse {
            status: 200,
            headers: vec![],
            body: body(&json!({ "title": new }).to_string()),
        },
        diff: vec![DiffEntry {
            path: "/title".into(),
            field: "/title".into(),
            kind: DiffKind::Value,
            legacy: Some(json!(legacy)),
            new: Some(json!(new)),
        }],
        diff_truncated: false,
    }
}

/// Backends, a shadow store with two mismatches (one with a hostile path), and a proxy.
async fn setup(dir: &Path) -> ProxyHandle {
    let (l, n) = (echo("legacy").await, echo("new").await);
    let store_path = dir.join("shadow.db");
    let mut store = Store::open(&store_path).unwrap();
    store
        .insert_mismatch(&record(1, "/api/tasks/7", "Old", "Older"))
        .unwrap();
    store
        .insert_mismatch(&record(2, HOSTILE, "Legacy title", "New title"))
        .unwrap();
    drop(store);
    let toml = config_toml(
        l,
        n,
        "",
        r#"
[[routes]]
name = "tasks-read"
path = "/api/tasks/*"
percent = 0.0
sticky = "header:X-User-Id"
"#,
    );
    let mut c = Config::from_toml_str(&toml).unwrap();
    c.proxy.admin_token = Some(Secret(TOKEN.into()));
    let p = Proxy::start(c, None).unwrap();
    p.set_shadow_store(Some(store_path));
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_assets_summary_and_mismatches() {
    let dir = testkit::temp_dir("admin-page-assets");
    let p = setup(dir.path()).await;
    let a = p.admin_addr();

    let page = get(a, "/", &[]).await;
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").starts_with("text/html"));
    assert!(page
        .header("content-security-policy")
        .contains("script-src 'self'"));
    let html = String::from_utf8_lossy(&page.body);
    assert!(html.contains("/assets/app.js") && html.contains("viewport"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "nothing loaded from elsewhere"
    );
    for (path, ctype) in [
        ("/assets/app.js", "text/javascript"),
        ("/assets/style.css", "text/css"),
    ] {
        let r = get(a, path, &[]).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(r.header("content-type").starts_with(ctype), "{path}");
        assert!(!String::from_utf8_lossy(&r.body).contains("https://"));
    }
    let js = String::from_utf8_lossy(&get(a, "/assets/app.js", &[]).await.body).to_string();
    assert!(
        !js.contains("innerHTML"),
        "data goes into the page as text only"
    );
    assert_eq!(send(a, "POST", "/", &[], "").await.status, 405);

    // Some traffic so the counters exist.
    for i in 0..5 {
        let user = format!("u{i}");
        get(
            p.listen_addr(),
            "/api/tasks/1",
            &[("x-user-id", user.as_str())],
        )
        .await;
    }
    let s = get(a, "/admin/summary", &[]).await.json();
    assert_eq!(s["state"], "sqlite");
    assert_eq!(s["routes"][0]["name"], ROUTE);
    assert_eq!(s["routes"][0]["source"], "config");
    let reqs = s["metrics"]["ficus_requests_total"].as_array().unwrap();
    let legacy: f64 = reqs
        .iter()
        .filter(|x| x["labels"]["route"] == ROUTE && x["labels"]["backend"] == "legacy")
        .map(|x| x["value"].as_f64().unwrap())
        .sum();
    assert_eq!(legacy, 5.0);
    assert_eq!(s["migration"]["available"], false);
    assert!(s["migration"]["note"]
        .as_str()
        .unwrap()
        .contains("ficus migrate"));
    assert_eq!(s["shadow"]["store"], true);

    // Mismatches need the token; newest first, with the diff.
    assert_eq!(get(a, "/admin/mismatches", &[]).await.status, 401);
    let auth = format!("Bearer {TOKEN}");
    let m = get(
        a,
        "/admin/mismatches?limit=5",
        &[("authorization", auth.as_str())],
    )
    .await
    .json();
    assert_eq!(m["available"], true);
    assert_eq!(m["mismatches"].as_array().unwrap().len(), 2);
    assert_eq!(m["mismatches"][0]["path"], HOSTILE);
    assert_eq!(m["mismatches"][0]["diff"][0]["new"], "New title");

    p.set_shadow_store(None);
    let m = get(a, "/admin/mismatches", &[("authorization", auth.as_str())])
        .await
        .json();
    assert_eq!(m["available"], false);
    assert!(m["note"]
        .as_str()
        .unwrap()
        .contains("no shadow mismatch store"));
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_page_in_headless_chromium() {
    let Some(browser) = browser::Browser::find("admin_page_in_headless_chromium") else {
        return;
    };

    let dir = testkit::temp_dir("admin-page-browser");
    let p = setup(dir.path()).await;
    let out = browser::out_dir();
    browser
        .run(
            "admin_page.mjs",
            &[
                (
                    "FICUS_ADMIN_URL",
                    format!("http://{}", p.admin_addr()).into(),
                ),
                (
                    "FICUS_PROXY_URL",
                    format!("http://{}", p.listen_addr()).into(),
                ),
                ("FICUS_TOKEN", TOKEN.into()),
                ("FICUS_ROUTE", ROUTE.into()),
            ],
            "browser test failed",
        )
        .await;
    assert!(out.join("admin.png").exists());
    println!("screenshots in {}", out.display());

    // What the page did (and the hold the script placed beside it) is on record.
    let audit = p.audit(10).unwrap();
    let rows: Vec<(&str, &str)> = audit
        .iter()
        .map(|a| (a.action.as_str(), a.actor.as_str()))
        .collect();
    assert_eq!(
        rows,
        [
            ("release", "admin-api"),
            ("hold", "cutover"),
            ("rollback", "admin-page"),
            ("set", "admin-page")
        ]
    );
    assert_eq!(audit[3].to_bp, 4000);
    p.shutdown().await;
}

/// Without `set_shadow_store`, the page reads the store of the running shadow mode: real
/// mirrored requests whose two answers differ show up with their diff.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mismatches_come_from_the_configured_shadow_store() {
    let dir = testkit::temp_dir("admin-page-configured");
    let (l, n) = (echo("legacy").await, echo("new").await);
    let store = dir.path().join("shadow.db");
    let toml = config_toml(
        l,
        n,
        &format!(
            "\n[shadow]\nstore = {:?}\ntimeout_ms = 1000\n",
            store.display().to_string()
        ),
        r#"
[[routes]]
name = "tasks-read"
methods = ["GET"]
path = "/api/tasks/*"
percent = 0.0
[routes.shadow]
sample = 1.0
"#,
    );
    let mut c = Config::from_toml_str(&toml).unwrap();
    c.proxy.admin_token = Some(Secret(TOKEN.into()));
    let p = Proxy::start(c, None).unwrap();
    for _ in 0..3 {
        get(p.listen_addr(), "/api/tasks/5", &[]).await;
    }
    tokio::time::timeout(Duration::from_secs(20), p.flush_shadow())
        .await
        .unwrap();
    let s = get(p.admin_addr(), "/admin/summary", &[]).await.json();
    assert_eq!(s["shadow"]["store"], true);
    assert!(s["metrics"]["ficus_shadow_requests_total"].is_array());
    let auth = format!("Bearer {TOKEN}");
    let m = get(
        p.admin_addr(),
        "/admin/mismatches",
        &[("authorization", auth.as_str())],
    )
    .await
    .json();
    assert_eq!(m["available"], true, "{m}");
    let list = m["mismatches"].as_array().unwrap();
    assert!(!list.is_empty(), "{m}");
    assert_eq!(list[0]["route"], ROUTE);
    assert!(!list[0]["diff"].as_array().unwrap().is_empty());
    p.shutdown().await;
}
