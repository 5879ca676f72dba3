//! Credentials and configured fields never reach the store file in clear: the test greps the
//! bytes of the SQLite file and its WAL.

use std::time::Duration;

use ficus_shadow::{RouteShadowConfig, Side, Store};
use http::{HeaderMap, Method};

use crate::support::*;

const SECRETS: &[&str] = &[
    "SECRET-AUTH-TOKEN",
    "SECRET-COOKIE",
    "SECRET-SET-COOKIE-LEGACY",
    "SECRET-SET-COOKIE-NEW",
    "SECRET-API-KEY",
    "SECRET-PASSWORD",
    "SECRET-FIELD-LEGACY",
    "SECRET-FIELD-NEW",
    "SECRET-QUERY",
    "SECRET-NESTED",
];

fn file_bytes(path: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let p = format!("{}{suffix}", path.display());
        if let Ok(b) = std::fs::read(&p) {
            all.extend(b);
        }
    }
    all
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn secrets_are_never_stored_in_clear() {
    let legacy = serve(
        Duration::ZERO,
        std::sync::Arc::new(|_, _| {
            (
                200,
                vec![
                    ("content-type", "application/json".to_string()),
                    (
                        "set-cookie",
                        "session=SECRET-SET-COOKIE-LEGACY; HttpOnly".to_string(),
                    ),
                ],
                r#"{"token":"SECRET-FIELD-LEGACY","user":{"password":"SECRET-NESTED"},"n":1}"#
                    .to_string(),
            )
        }),
    )
    .await;
    let new = serve(
        Duration::ZERO,
        std::sync::Arc::new(|_, _| {
            (
                200,
                vec![
                    ("content-type", "application/json".to_string()),
                    (
                        "set-cookie",
                        "session=SECRET-SET-COOKIE-NEW; HttpOnly".to_string(),
                    ),
                ],
                r#"{"token":"SECRET-FIELD-NEW","extra":{"password":"SECRET-NESTED"},"n":2}"#
                    .to_string(),
            )
        }),
    )
    .await;
    let h = harness("redact", |g| {
        g.redact_headers = vec!["X-Api-Key".into()];
        g.redact_fields = vec!["token".into(), "password".into()];
    });
    let route = h.route(
        "r",
        RouteShadowConfig {
            compare_headers: vec!["*".into()],
            ..Default::default()
        },
        true,
        &legacy.url(),
        &new.url(),
    );
    let mut headers = HeaderMap::new();
    headers.insert("authorization", "Bearer SECRET-AUTH-TOKEN".parse().unwrap());
    headers.insert("cookie", "session=SECRET-COOKIE".parse().unwrap());
    headers.insert("x-api-key", "SECRET-API-KEY".parse().unwrap());
    headers.insert("content-type", "application/json".parse().unwrap());
    let j = job(
        &route,
        Side::Legacy,
        &legacy.url(),
        Method::POST,
        "/api/login?token=SECRET-QUERY&page=2",
        headers,
        r#"{"user":"ann","password":"SECRET-PASSWORD"}"#,
        "req-redact",
    )
    .await;
    h.shadow.submit(j);
    flush(&h.shadow).await;
    assert_eq!(h.results("r", "mismatch"), 1);

    // What is stored is still useful: the differences and non-secret values are there.
    let store = Store::open_existing(&h.store_path()).unwrap();
    let rec = store.mismatch(1).unwrap().unwrap();
    let fields: Vec<&str> = rec.diff.iter().map(|e| e.path.as_str()).collect();
    assert!(fields.contains(&"header:set-cookie"), "{fields:?}");
    assert!(fields.contains(&"/token"), "{fields:?}");
    assert!(fields.contains(&"/n"), "{fields:?}");
    assert_eq!(rec.path, "/api/login?token=[redacted]&page=2");
    let auth = rec
        .request_headers
        .iter()
        .find(|(k, _)| k == "authorization")
        .unwrap();
    assert!(auth.1.starts_with("[redacted xxh3:"), "{auth:?}");
    assert!(String::from_utf8_lossy(&rec.request_body.data).contains("\"user\":\"ann\""));
    drop(store);

    let path = h.store_path();
    tokio::time::timeout(Duration::from_secs(20), h.shadow.shutdown())
        .await
        .unwrap();
    let bytes = file_bytes(&path);
    assert!(!bytes.is_empty());
    assert!(
        contains(&bytes, "req-redact"),
        "sanity: the row is in the file"
    );
    for s in SECRETS {
        assert!(!contains(&bytes, s), "{s} is in the store file in clear");
    }
}
