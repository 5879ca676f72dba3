//! Several proxy replicas on one PostgreSQL state database (real PostgreSQL through pgtemp):
//! a change made on one replica is applied by the other (LISTEN/NOTIFY: the replicas run on a
//! manual clock that does not move, so their fallback re-read cannot be what applied it), the
//! audit row is visible from both, and a change that arrives without a notification is picked
//! up by the fallback re-read once the clock has moved past its period.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use ficus_proxy::config::Secret;
use ficus_proxy::{Config, ManualClock, Proxy, ProxyHandle, SharedClock};

const TOKEN: &str = "replica-admin";
const ROUTE: &str = "tasks";

/// The replicas' fallback re-read period (`admin_thread::STATE_POLL`).
const STATE_POLL: Duration = Duration::from_secs(2);

fn start(legacy: SocketAddr, new: SocketAddr, state: &str, clock: SharedClock) -> ProxyHandle {
    let toml = config_toml(
        legacy,
        new,
        "",
        r#"
[[routes]]
name = "tasks"
path = "/api/tasks/*"
percent = 0.0
sticky = "header:X-User-Id"
"#,
    )
    .replace("state = \":memory:\"", &format!("state = {state:?}"));
    let mut c = Config::from_toml_str(&toml).unwrap();
    c.proxy.admin_token = Some(Secret(TOKEN.into()));
    Proxy::start_with_clock(c, None, clock).unwrap()
}

/// Which backend a replica sends a keyed request to.
async fn backend_of(p: &ProxyHandle, user: &str) -> String {
    get(p.listen_addr(), "/api/tasks/1", &[("x-user-id", user)])
        .await
        .header("x-ficus-backend")
        .to_string()
}

/// The percentage a replica applies to traffic (its gauge is set only when it applies a value).
fn applied_percent(p: &ProxyHandle) -> f64 {
    metric(
        &p.metrics_text(),
        &format!("ficus_rollout_percent{{route=\"{ROUTE}\"}}"),
    )
}

/// Waits until `p` routes `user` to `side` and shows `percent`; returns how long it took.
async fn until_applied(p: &ProxyHandle, since: Instant, percent: f64, side: &str) -> Duration {
    let limit = since + Duration::from_secs(10);
    loop {
        if applied_percent(p) == percent && backend_of(p, "user-7").await == side {
            return since.elapsed();
        }
        assert!(
            Instant::now() < limit,
            "replica never applied {percent}% (gauge {})",
            applied_percent(p)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn admin(p: &ProxyHandle, method: &str, path: &str, body: &str) -> Resp {
    let auth = format!("Bearer {TOKEN}");
    send(
        p.admin_addr(),
        method,
        path,
        &[
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
            ("x-ficus-actor", "replica-test"),
        ],
        body,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_postgres_state() {
    let db = testkit::pg::fresh_database("replicas").expect("a PostgreSQL for the test");
    let (l, n) = (echo("legacy").await, echo("new").await);
    // The clock stands still until the fallback re-read is wanted: until then only a
    // notification can bring one replica's change to the other.
    let clock = ManualClock::new();
    let a = start(l, n, &db.url, clock.clone());
    let b = start(l, n, &db.url, clock.clone());
    assert_eq!(backend_of(&a, "user-7").await, "legacy");
    assert_eq!(backend_of(&b, "user-7").await, "legacy");

    // A change on A is applied by B, notified.
    let t0 = Instant::now();
    let r = admin(
        &a,
        "PUT",
        "/admin/routes/tasks/rollout",
        r#"{"percent": 100}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let on_b = until_applied(&b, t0, 100.0, "new").await;
    println!("replica B applied A's rollout after {on_b:?}");
    assert_eq!(backend_of(&a, "user-7").await, "new");

    // The audit row is visible from both.
    for p in [&a, &b] {
        let audit = get(p.admin_addr(), "/admin/audit?limit=5", &[])
            .await
            .json();
        let row = &audit["audit"][0];
        assert_eq!(row["route"], ROUTE);
        assert_eq!(row["to_bp"], 10_000);
        assert_eq!(row["actor"], "replica-test");
        assert_eq!(row["action"], "set");
        let routes = get(p.admin_addr(), "/admin/routes", &[]).await.json();
        assert_eq!(routes["routes"][0]["percent"], 100.0);
        assert_eq!(routes["routes"][0]["source"], "runtime");
    }

    // A rollback on B is applied by A, notified.
    let t0 = Instant::now();
    let r = admin(&b, "POST", "/admin/rollback", "{}").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let on_a = until_applied(&a, t0, 0.0, "legacy").await;
    println!("replica A applied B's rollback after {on_a:?}");
    let audit = get(a.admin_addr(), "/admin/audit?limit=5", &[])
        .await
        .json();
    assert_eq!(audit["audit"][0]["action"], "rollback");
    assert_eq!(audit["audit"][1]["action"], "set");

    // A change written without a notification (as if it was sent while a replica's listener
    // was reconnecting) still reaches both through the fallback re-read, once the clock has
    // moved past its period.
    let client = testkit::pg::connect(&db.url).await;
    client
        .execute(
            "UPDATE ficus_proxy.rollout SET percent_bp = 10000 WHERE route = $1",
            &[&ROUTE],
        )
        .await
        .unwrap();
    clock.advance(STATE_POLL);
    let t0 = Instant::now();
    for p in [&a, &b] {
        let took = until_applied(p, t0, 100.0, "new").await;
        println!("a replica re-read the state {took:?} after the clock moved");
    }

    // A replica started later starts from the shared value.
    let c = start(l, n, &db.url, clock.clone());
    assert_eq!(applied_percent(&c), 100.0);
    assert_eq!(backend_of(&c, "user-7").await, "new");

    for p in [a, b, c] {
        p.shutdown().await;
    }
    drop(db);
}

/// The same over TLS: a state store that accepts only `hostssl` connections, reached with
/// `sslmode=verify-full` — the store, its LISTEN follower and the audit all go through it. A
/// replica given a CA that did not sign the server's certificate does not start, and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_a_tls_only_postgres_state_with_verify_full() {
    let pg = testkit::tls::TlsPostgres::start();
    let url = pg.database("replicas_tls");
    let (l, n) = (echo("legacy").await, echo("new").await);
    let clock = ManualClock::new();
    let a = start(l, n, &url, clock.clone());
    let b = start(l, n, &url, clock.clone());
    let t0 = Instant::now();
    let r = admin(
        &a,
        "PUT",
        "/admin/routes/tasks/rollout",
        r#"{"percent": 100}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // The clock stands still: only a notification (B's LISTEN over TLS) can carry it.
    until_applied(&b, t0, 100.0, "new").await;
    let audit = get(b.admin_addr(), "/admin/audit?limit=1", &[])
        .await
        .json();
    assert_eq!(audit["audit"][0]["actor"], "replica-test");
    for p in [a, b] {
        p.shutdown().await;
    }

    let dir = testkit::temp_dir("replicas-other-ca");
    let other = testkit::tls::TestCa::new("another CA").write(dir.path(), "other");
    let wrong = url.replace(
        &pg.ca_file().display().to_string(),
        &other.display().to_string(),
    );
    let toml =
        config_toml(l, n, "", "").replace("state = \":memory:\"", &format!("state = {wrong:?}"));
    let e = Proxy::start(Config::from_toml_str(&toml).unwrap(), None)
        .err()
        .expect("an untrusted server certificate stops the replica");
    let msg = e.to_string();
    assert!(msg.contains("not trusted"), "{msg}");
    assert!(msg.contains("other.crt"), "names the CA file: {msg}");
}

#[test]
fn state_env_names_the_url_and_must_be_set() {
    let toml = r#"
[proxy]
state_env = "FICUS_TEST_STATE_URL_UNSET"
[backends.legacy]
url = "http://127.0.0.1:1"
[backends.new]
url = "http://127.0.0.1:2"
"#;
    let c = Config::from_toml_str(toml).unwrap();
    assert_eq!(
        c.proxy.state_env.as_deref(),
        Some("FICUS_TEST_STATE_URL_UNSET")
    );
    let e = Proxy::start(c, None)
        .err()
        .expect("unset variable rejected");
    assert!(e.to_string().contains("FICUS_TEST_STATE_URL_UNSET"), "{e}");
    let both = toml.replace("[proxy]\n", "[proxy]\nstate = \"x.db\"\n");
    let e = Config::from_toml_str(&both).unwrap_err();
    assert_eq!(e.field, "proxy.state_env");
}

/// The Kubernetes ConfigMap's ficus.toml is a valid configuration that takes its state URL
/// from the Secret-backed environment variable the Deployment sets.
#[test]
fn k8s_configmap_is_a_valid_replica_config() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/k8s");
    let cm = std::fs::read_to_string(dir.join("configmap.yaml")).unwrap();
    let toml: String = cm
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("ficus.toml: |"))
        .skip(1)
        .map(|l| l.strip_prefix("    ").unwrap_or(l.trim_start()))
        .collect::<Vec<_>>()
        .join("\n");
    let c = Config::from_toml_str(&toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    let var = c.proxy.state_env.clone().expect("state_env set");
    let deploy = std::fs::read_to_string(dir.join("deployment.yaml")).unwrap();
    for v in [var.as_str(), c.proxy.admin_token_env.as_str()] {
        assert!(
            deploy.contains(&format!("name: {v}")),
            "{v} not set in deployment.yaml"
        );
    }
    assert!(
        c.proxy.shutdown_grace < Duration::from_secs(30),
        "shutdown_grace must end before terminationGracePeriodSeconds"
    );
}
