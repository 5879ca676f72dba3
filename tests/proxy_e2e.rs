//! End-to-end tests of the `ficus` binary's proxy commands: a real `ficus proxy` child process
//! between real loopback backends, driven through the CLI (`rollout`, `rollback`,
//! `check-config`) and killed with SIGKILL / SIGTERM.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use testkit::backend::{echo, Generated};
use testkit::http::{body_len, empty, Conn, Resp};
use testkit::ProxyToml;

const FICUS: &str = env!("CARGO_BIN_EXE_ficus");
const TOKEN: &str = "e2e-admin-token";

struct Ficus {
    child: Child,
    listen: SocketAddr,
    admin: SocketAddr,
}

impl Drop for Ficus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `ficus proxy` and reads the bound addresses from its start-up line.
fn start(config: &Path) -> Ficus {
    let mut child = testkit::cli::command(FICUS)
        .args(["proxy", "--config"])
        .arg(config)
        .env("FICUS_ADMIN_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = loop {
        let l = lines
            .next()
            .expect("ficus proxy exited before listening")
            .unwrap();
        if l.contains("listening on") {
            break l;
        }
    };
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = |i: usize| {
        words[i]
            .trim_matches(|c| c == '(' || c == ')' || c == ',')
            .parse()
            .unwrap()
    };
    let i = words.iter().position(|w| *w == "on").unwrap();
    Ficus {
        child,
        listen: at(i + 1),
        admin: at(i + 3),
    }
}

fn write_config(dir: &Path, legacy: SocketAddr, new: SocketAddr, percent: f64) -> PathBuf {
    let p = dir.join("ficus.toml");
    let toml = ProxyToml::new(&legacy, &new)
        .state_file(&dir.join("state.db"))
        .workers(1)
        .watch_config(true)
        .proxy("max_request_bytes = 209715200")
        .routes(&format!(
            "[[routes]]\nname = \"tasks\"\npath = \"/api/tasks/*\"\npercent = {percent:.1}\nsticky = \"header:x-user-id\"\n"
        ));
    std::fs::write(&p, toml.to_string()).unwrap();
    p
}

fn cli(args: &[&str], token: Option<&str>) -> (i32, String, String) {
    let mut c = testkit::cli::command(FICUS);
    c.args(args);
    if let Some(t) = token {
        c.env("FICUS_ADMIN_TOKEN", t);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn status_json(admin: SocketAddr) -> serde_json::Value {
    let url = format!("http://{admin}");
    let (code, out, err) = cli(&["rollout", "status", "--json", "--admin", &url], None);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

/// `GET path` as user `user` on a fresh connection.
async fn get(addr: SocketAddr, path: &str, user: &str) -> Resp {
    testkit::get(addr, path, &[("x-user-id", user)]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_via_cli_survives_kill_9() {
    let (l, n) = (echo("legacy").await, echo("new").await);
    let dir = testkit::temp_dir("e2e-kill9");
    let cfg = write_config(dir.path(), l, n, 10.0);
    let f = start(&cfg);
    let url = format!("http://{}", f.admin);

    // Auth through the CLI: no token, wrong token, right token.
    let (code, _, err) = cli(&["rollout", "set", "tasks", "40", "--admin", &url], None);
    assert_ne!(code, 0);
    assert!(err.contains("401"), "{err}");
    let (code, _, err) = cli(
        &["rollout", "set", "tasks", "40", "--admin", &url],
        Some("wrong"),
    );
    assert_ne!(code, 0);
    assert!(err.contains("403"), "{err}");
    let (code, out, err) = cli(
        &[
            "rollout", "set", "tasks", "40", "--admin", &url, "--actor", "e2e",
        ],
        Some(TOKEN),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("10% -> 40%"), "{out}");

    // SIGKILL: no chance to flush anything.
    drop(f);
    let f = start(&cfg);
    let s = status_json(f.admin);
    assert_eq!(s[0]["percent"], 40.0, "{s}");
    assert_eq!(s[0]["config_percent"], 10.0);
    assert_eq!(s[0]["source"], "runtime");
    assert_eq!(s[0]["updated_by"], "cli:e2e");
    let mut new = 0;
    for i in 0..400 {
        let r = get(f.listen, "/api/tasks/1", &format!("u{i}")).await;
        assert_eq!(r.status, 200);
        new += (r.header("x-ficus-backend") == "new") as usize;
    }
    assert!(
        (120..=200).contains(&new),
        "about 40% of 400 to new, got {new}"
    );

    // Rollback everything through the CLI, then kill -9 again: still rolled back.
    let url = format!("http://{}", f.admin);
    let (code, out, err) = cli(&["rollback", "--admin", &url], Some(TOKEN));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("tasks: 40% -> 0%"), "{out}");
    drop(f);
    let f = start(&cfg);
    assert_eq!(status_json(f.admin)[0]["percent"], 0.0);
    for i in 0..50 {
        assert_eq!(
            get(f.listen, "/api/tasks/1", &format!("u{i}"))
                .await
                .header("x-ficus-backend"),
            "legacy"
        );
    }
    drop(f);
}

fn vm_hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_100_mb_each_way_in_bounded_memory() {
    const SIZE: u64 = 100 * 1024 * 1024;
    let (l, n) = (echo("legacy").await, echo("new").await);
    let dir = testkit::temp_dir("e2e-rss");
    let f = start(&write_config(dir.path(), l, n, 0.0));
    let _ = get(f.listen, "/api/tasks/1", "warm-up").await;
    let before = vm_hwm_kib(f.child.id());

    let r = Conn::connect(f.listen)
        .await
        .send(
            hyper::Request::builder()
                .method("POST")
                .uri("/upload")
                .header("host", "x")
                .body(Generated::new(SIZE).boxed())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["bytes"].as_u64(), Some(SIZE));

    let mut d = Conn::connect(f.listen).await;
    let r = d
        .open(
            hyper::Request::builder()
                .uri(format!("/download?n={SIZE}"))
                .header("host", "x")
                .body(empty())
                .unwrap(),
        )
        .await;
    assert_eq!(body_len(r).await, SIZE);

    let after = vm_hwm_kib(f.child.id());
    let grown = after.saturating_sub(before) / 1024;
    eprintln!(
        "ficus proxy peak RSS: {} MiB before, {} MiB after 2 x 100 MiB",
        before / 1024,
        after / 1024
    );
    assert!(
        grown < 32,
        "proxy peak RSS grew by {grown} MiB streaming 2 x 100 MiB"
    );
    drop(f);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_request() {
    let (l, n) = (echo("legacy").await, echo("new").await);
    let dir = testkit::temp_dir("e2e-term");
    let mut f = start(&write_config(dir.path(), l, n, 0.0));
    let listen = f.listen;
    let inflight = tokio::spawn(async move { get(listen, "/slow?ms=800", "u").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    assert!(Command::new("kill")
        .args(["-TERM", &f.child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let r = inflight.await.unwrap();
    assert_eq!(
        (
            r.status,
            r.header("x-ficus-backend"),
            r.json()["backend"].as_str()
        ),
        (200, "legacy", Some("legacy"))
    );
    let code = f.child.wait().unwrap();
    assert!(code.success(), "exit status {code:?}");
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "waited for the in-flight request"
    );
}

#[test]
fn check_config_reports_field_and_line() {
    let tmp = testkit::temp_dir("e2e-check");
    let dir = tmp.path();
    let good = dir.join("good.toml");
    std::fs::write(&good, "[backends.legacy]\nurl = \"http://127.0.0.1:1\"\n[backends.new]\nurl = \"http://127.0.0.1:2\"\n[[routes]]\nname = \"r\"\npath = \"/x/*\"\npercent = 5\n").unwrap();
    let (code, out, _) = cli(&["check-config", good.to_str().unwrap()], None);
    assert_eq!(code, 0);
    assert!(out.contains("1 route(s)"), "{out}");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[backends.legacy]\nurl = \"http://127.0.0.1:1\"\n[backends.new]\nurl = \"http://127.0.0.1:2\"\n[[routes]]\nname = \"r\"\npath = \"/x/*\"\nsticky = \"body:x\"\n").unwrap();
    let (code, _, err) = cli(&["check-config", bad.to_str().unwrap()], None);
    assert_eq!(code, 1);
    assert!(err.contains("bad.toml:8: routes[0].sticky"), "{err}");
    // The shipped example is valid.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/ficus.toml");
    let (code, out, err) = cli(&["check-config", example.to_str().unwrap()], None);
    assert_eq!(code, 0, "{out}{err}");
}

/// The access log under `logrotate`: the file is moved away, SIGUSR1 (or SIGHUP) makes the
/// proxy open a new one at the configured path; nothing is lost in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_reopens_on_sigusr1_and_sighup_after_rotation() {
    let (l, n) = (echo("legacy").await, echo("new").await);
    let dir = testkit::temp_dir("e2e-access-log");
    let log = dir.path().join("access.log");
    let cfg = dir.path().join("ficus.toml");
    let toml = ProxyToml::new(&l, &n)
        .state_file(&dir.path().join("state.db"))
        .workers(1)
        .proxy(&format!(
            "[proxy.access_log]\npath = {:?}",
            log.display().to_string()
        ))
        .routes("[[routes]]\nname = \"tasks\"\npath = \"/api/tasks/*\"\n");
    std::fs::write(&cfg, toml.to_string()).unwrap();
    let f = start(&cfg);
    let count = |p: &Path| {
        std::fs::read_to_string(p)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    // Requests until `p` holds a line (the writer drains every few tens of milliseconds).
    let until_logged = |p: PathBuf, what: &'static str| {
        let listen = f.listen;
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut sent = 0;
            while count(&p) == 0 {
                assert!(
                    Instant::now() < deadline,
                    "{what}: no line in {}",
                    p.display()
                );
                assert_eq!(get(listen, "/api/tasks/1", "u").await.status, 200);
                sent += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            sent
        }
    };
    let sent = until_logged(log.clone(), "first file").await;
    for (signal, moved) in [("-USR1", "access.log.1"), ("-HUP", "access.log.2")] {
        let moved = dir.path().join(moved);
        std::fs::rename(&log, &moved).unwrap();
        assert!(Command::new("kill")
            .args([signal, &f.child.id().to_string()])
            .status()
            .unwrap()
            .success());
        until_logged(log.clone(), signal).await;
        assert!(
            count(&moved) >= 1,
            "{signal}: the moved file kept its lines"
        );
    }
    assert!(sent >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_plan_via_cli() {
    let (l, n) = (echo("legacy").await, echo("new").await);
    let dir = testkit::temp_dir("e2e-plan");
    let cfg = dir.path().join("ficus.toml");
    let toml = ProxyToml::new(&l, &n)
        .state_file(&dir.path().join("state.db"))
        .workers(1)
        .routes(
            "[[routes]]\nname = \"tasks\"\npath = \"/api/tasks/*\"\nsticky = \"header:x-user-id\"\n\
             [routes.plan]\nsteps = [5, 50, 100]\nhold = \"1h\"\nmin_requests = 100\nmax_error_rate = 0.01\n",
        );
    std::fs::write(&cfg, toml.to_string()).unwrap();
    let f = start(&cfg);
    let url = format!("http://{}", f.admin);
    let plan = |action: &str, token: Option<&str>| {
        cli(
            &[
                "rollout", "plan", action, "tasks", "--admin", &url, "--actor", "e2e",
            ],
            token,
        )
    };
    let (code, out, err) = plan("status", None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("no plan started"), "{out}");
    let (code, _, err) = plan("start", None);
    assert_ne!(code, 0);
    assert!(err.contains("401"), "{err}");
    let (code, out, err) = plan("start", Some(TOKEN));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("plan running"), "{out}");
    // The admin thread takes the first step on its own (nothing to hold at 0 %).
    let until = Instant::now() + Duration::from_secs(10);
    while status_json(f.admin)[0]["percent"] != 5.0 {
        assert!(Instant::now() < until, "the plan never took its first step");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, out, _) = plan("status", None);
    assert_eq!(code, 0);
    assert!(
        out.contains("at 5%") && out.contains("gate error_rate"),
        "{out}"
    );
    assert!(out.contains("waiting:"), "{out}");
    let (code, out, _) = plan("pause", Some(TOKEN));
    assert_eq!(code, 0);
    assert!(
        out.contains("plan paused") && out.contains("paused by cli:e2e"),
        "{out}"
    );
    let (code, _, err) = plan("pause", Some(TOKEN));
    assert_ne!(code, 0);
    assert!(
        err.contains("409") && err.contains("cannot pause a plan that is paused"),
        "{err}"
    );
    let (code, out, _) = plan("resume", Some(TOKEN));
    assert_eq!(code, 0);
    assert!(out.contains("plan running at 5%"), "{out}");
    let (code, out, err) = cli(
        &[
            "rollout", "plan", "abort", "tasks", "--admin", &url, "--json",
        ],
        Some(TOKEN),
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["plan"]["status"], "aborted");
    assert_eq!(
        v["percent"], 5.0,
        "an aborted plan leaves the route where it is"
    );
}
