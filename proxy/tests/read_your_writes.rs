//! Read your writes while reads move first, through a real proxy on a manual clock: on a read
//! route with `read_your_writes_ms = N`, a read whose sticky key was written through the proxy
//! less than N ms ago (on any route with the same sticky source) goes to the side that took
//! the write, whatever the read route's split says; N ms later on the proxy's clock it follows
//! the split again. Both directions (writes on legacy while reads are on new, and the
//! reverse), routes without the setting untouched, and the setting's validation.

mod common;

use std::time::Duration;

use common::{echo, get, metric, send};
use ficus_proxy::{Config, ManualClock, Proxy, ProxyHandle};
use testkit::ProxyToml;

const N: Duration = Duration::from_millis(2_000);

const ROUTES: &str = r#"
[[routes]]
name = "tasks-read"
methods = ["GET"]
path = "/api/tasks/{task_id}"
percent = 100.0
sticky = "header:X-User-Id"
read_your_writes_ms = 2000

[[routes]]
name = "tasks-list"
methods = ["GET"]
path = "/api/tasks/"
percent = 100.0
sticky = "header:X-User-Id"

[[routes]]
name = "tasks-write"
methods = ["POST", "PUT", "DELETE"]
path = "/api/tasks/*"
percent = 0.0
sticky = "header:X-User-Id"
"#;

async fn read(p: &ProxyHandle, path: &str, user: &str) -> String {
    let r = get(p.listen_addr(), path, &[("x-user-id", user)]).await;
    assert_eq!(r.status, 200);
    r.header("x-ficus-backend").to_string()
}

async fn write(p: &ProxyHandle, user: &str) -> String {
    let r = send(
        p.listen_addr(),
        "PUT",
        "/api/tasks/1",
        &[("x-user-id", user)],
        "{}",
    )
    .await;
    assert_eq!(r.status, 200);
    r.header("x-ficus-backend").to_string()
}

fn redirected(p: &ProxyHandle) -> f64 {
    metric(
        &p.metrics_text(),
        "ficus_read_your_writes_total{route=\"tasks-read\"}",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_follows_its_keys_recent_write_for_n_ms_on_the_proxys_clock() {
    let (l, n) = (echo("legacy").await, echo("new").await);
    let clock = ManualClock::new();
    let toml = ProxyToml::new(&l, &n).routes(ROUTES).to_string();
    let p = Proxy::start_with_clock(Config::from_toml_str(&toml).unwrap(), None, clock.clone())
        .unwrap();
    let text = p.metrics_text();
    assert!(text.contains("ficus_read_your_writes_total{route=\"tasks-read\"} 0"));
    assert!(!text.contains("ficus_read_your_writes_total{route=\"tasks-list\"}"));

    // Reads have moved to new, writes are still on legacy.
    assert_eq!(read(&p, "/api/tasks/1", "alice").await, "new");
    assert_eq!(write(&p, "alice").await, "legacy");
    assert_eq!(
        read(&p, "/api/tasks/1", "alice").await,
        "legacy",
        "within N ms"
    );
    assert_eq!(
        read(&p, "/api/tasks/1", "bob").await,
        "new",
        "bob wrote nothing"
    );
    assert_eq!(
        read(&p, "/api/tasks/", "alice").await,
        "new",
        "a route without the setting follows its split"
    );
    clock.advance(N - Duration::from_millis(1));
    assert_eq!(read(&p, "/api/tasks/1", "alice").await, "legacy");
    assert_eq!(redirected(&p), 2.0);
    clock.advance(Duration::from_millis(1));
    assert_eq!(read(&p, "/api/tasks/1", "alice").await, "new", "N ms later");
    assert_eq!(redirected(&p), 2.0);

    // The other way: writes cut over to new, reads back on legacy.
    p.set_rollout("tasks-write", 100.0, "test").unwrap();
    p.set_rollout("tasks-read", 0.0, "test").unwrap();
    assert_eq!(write(&p, "carol").await, "new");
    assert_eq!(
        read(&p, "/api/tasks/9", "carol").await,
        "new",
        "within N ms"
    );
    assert_eq!(read(&p, "/api/tasks/9", "dave").await, "legacy");
    assert_eq!(redirected(&p), 3.0);
    clock.advance(N);
    assert_eq!(
        read(&p, "/api/tasks/9", "carol").await,
        "legacy",
        "N ms later"
    );
    // A later write on the other side moves the key with it.
    p.set_rollout("tasks-write", 0.0, "test").unwrap();
    assert_eq!(write(&p, "carol").await, "legacy");
    p.set_rollout("tasks-read", 100.0, "test").unwrap();
    assert_eq!(read(&p, "/api/tasks/9", "carol").await, "legacy");
    assert_eq!(redirected(&p), 4.0);
    p.shutdown().await;
}

/// A write the proxy could not deliver (its side down) took nothing: reads follow the split.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_failed_is_not_followed() {
    let n = echo("new").await;
    let down = common::free_addr();
    let toml = ProxyToml::new(&down, &n).routes(ROUTES).to_string();
    let p = Proxy::start_with_clock(
        Config::from_toml_str(&toml).unwrap(),
        None,
        ManualClock::new(),
    )
    .unwrap();
    let r = send(
        p.listen_addr(),
        "PUT",
        "/api/tasks/1",
        &[("x-user-id", "eve")],
        "{}",
    )
    .await;
    assert_eq!(r.status, 502);
    assert_eq!(read(&p, "/api/tasks/1", "eve").await, "new");
    assert_eq!(redirected(&p), 0.0);
    p.shutdown().await;
}

#[test]
fn read_your_writes_ms_is_validated_with_field_and_line() {
    let base = "[backends.legacy]\nurl = \"http://127.0.0.1:1\"\n[backends.new]\nurl = \"http://127.0.0.1:2\"\n";
    let writes = "[[routes]]\nname = \"w\"\nmethods = [\"POST\"]\npath = \"/w\"\nsticky = \"header:X-User-Id\"\n";
    let cases = [
        // No sticky key to match reads to writes by.
        (
            "[[routes]]\nname = \"r\"\npath = \"/x\"\nread_your_writes_ms = 500\n",
            8,
            "routes[0].read_your_writes_ms",
            "sticky",
        ),
        (
            "[[routes]]\nname = \"r\"\npath = \"/x\"\nsticky = \"header:X-User-Id\"\nread_your_writes_ms = 600001\n",
            9,
            "routes[0].read_your_writes_ms",
            "at most 600000",
        ),
        // No route taking writes has the same sticky source.
        (
            "[[routes]]\nname = \"r\"\nmethods = [\"GET\"]\npath = \"/x\"\nsticky = \"cookie:uid\"\nread_your_writes_ms = 500\n",
            10,
            "routes[0].read_your_writes_ms",
            "no route that takes writes has sticky = \"cookie:uid\"",
        ),
        (
            "[[routes]]\nname = \"r\"\npath = \"/x\"\nread_your_writes_ms = -1\n",
            8,
            "read_your_writes_ms",
            "",
        ),
    ];
    for (routes, line, field, says) in cases {
        let e = Config::from_toml_str(&format!("{base}{routes}{writes}")).unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (Some(line), field), "{e}");
        assert!(e.message.contains(says), "{e}");
    }
    // 0 is off; a route with the setting matched by writes elsewhere is valid, in code too.
    let ok = format!(
        "{base}[[routes]]\nname = \"r\"\npath = \"/x\"\nread_your_writes_ms = 0\n\
         [[routes]]\nname = \"r2\"\nmethods = [\"GET\"]\npath = \"/y\"\nsticky = \"header:x-user-id\"\nread_your_writes_ms = 500\n{writes}"
    );
    let mut c = Config::from_toml_str(&ok).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.routes[0].read_your_writes, None);
    assert_eq!(
        c.routes[1].read_your_writes,
        Some(Duration::from_millis(500))
    );
    c.validate().unwrap();
    c.routes.pop();
    let e = c.validate().unwrap_err();
    assert_eq!(e.field, "routes[1].read_your_writes_ms", "{e}");
}
