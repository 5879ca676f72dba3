//! The proxy's `ficus.toml` for each phase of the story. One template: the phases differ only
//! in which build of the new service `[backends.new]` points at, whether the write routes
//! mirror to both sides (`dual_write`), and whether reads carry a `[routes.guard]` and a
//! `[routes.plan]`.

use std::path::Path;

/// The route the read rollout moves (GET one task, sticky per user).
pub const READ_ROUTE: &str = "tasks-read";
/// Creates (`POST /api/tasks/`); the row is named by the `X-Task-Id` header.
pub const CREATE_ROUTE: &str = "tasks-create";
/// Every write on one task (`POST /api/tasks/{task_id}/...`).
pub const WRITE_ROUTE: &str = "tasks-write";

/// How the write routes treat a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writes {
    /// `dual_write = true`: the primary side (by rollout) answers, the other gets it mirrored.
    Dual,
    /// Cut over: no mirror; writes reach whichever side the rollout picks, alone.
    Single,
}

/// `[routes.guard]` of the read route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guard {
    pub max_p99_ms: u64,
    pub window_s: u64,
    pub min_requests: u64,
}

/// `[routes.plan]` of the read route: short phases, so the story is quick (the proxy judges
/// once a second).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub min_requests: u64,
    /// `on_fail = "pause"` (else rollback).
    pub pause: bool,
}

/// The plan's steps, in percent.
pub const PLAN_STEPS: [u32; 3] = [10, 50, 100];

/// One phase of the proxy's configuration.
#[derive(Debug, Clone)]
pub struct Phase {
    /// `[backends.new] url`: the build of the new service in service.
    pub new_url: String,
    pub writes: Writes,
    pub guard: Option<Guard>,
    pub plan: Option<Plan>,
}

/// Headers that differ between any two answers (the clock, the request id, the length).
const IGNORE_HEADERS: &str = r#"ignore_headers = ["date", "x-request-id", "content-length"]"#;

/// The configuration file text for `phase`; the demo's files live in `dir`.
pub fn render(dir: &Path, legacy_url: &str, phase: &Phase) -> String {
    let state = dir.join("ficus-state.db");
    let store = dir.join("ficus-shadow.db");
    let mut s = format!(
        r#"# ficus demo: the proxy in front of the Task API (written by `ficus demo`).
[proxy]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
state = "{state}"
workers = 1
watch_config = false

[backends.legacy]
url = "{legacy_url}"
[backends.new]
url = "{new_url}"

[shadow]
store = "{store}"

[[routes]]
name = "{READ_ROUTE}"
methods = ["GET"]
path = "/api/tasks/{{task_id}}"
target = "split"
percent = 0.0
sticky = "header:X-User-Id"
[routes.shadow]
sample = 1.0
{IGNORE_HEADERS}
"#,
        state = state.display(),
        store = store.display(),
        new_url = phase.new_url,
    );
    if let Some(g) = phase.guard {
        s.push_str(&format!(
            "[routes.guard]\nmax_p99_ms = {}\nwindow_s = {}\nmin_requests = {}\n",
            g.max_p99_ms, g.window_s, g.min_requests
        ));
    }
    if let Some(p) = phase.plan {
        s.push_str(&format!(
            "[routes.plan]\nsteps = {PLAN_STEPS:?}\nhold = \"1s\"\npreflight = \"1s\"\nmin_requests = {}\n\
             max_error_rate = 0.01\nmax_mismatch_rate = 0.01\non_fail = \"{}\"\n",
            p.min_requests,
            if p.pause { "pause" } else { "rollback" }
        ));
    }
    // Creates take turns per route: each side numbers new tasks itself (max(id) + 1), so two
    // creates must reach both sides in the same order.
    for (name, path, key, order) in [
        (
            CREATE_ROUTE,
            "/api/tasks/",
            "header:X-Task-Id",
            Some("route"),
        ),
        (WRITE_ROUTE, "/api/tasks/{task_id}/*", "path:task_id", None),
    ] {
        s.push_str(&write_route(name, path, key, order, phase.writes));
    }
    s.push_str(
        r#"
[[routes]]
name = "tasks-rest"
path = "/api/tasks/*"
target = "legacy"
"#,
    );
    s
}

/// A write route: split by the row it touches, mirrored to both sides while dual writing
/// (its writes taking turns per row, or per route with `order = Some("route")`).
fn write_route(name: &str, path: &str, key: &str, order: Option<&str>, writes: Writes) -> String {
    let mut s = format!(
        r#"
[[routes]]
name = "{name}"
methods = ["POST"]
path = "{path}"
target = "split"
percent = 0.0
sticky = "{key}"
"#
    );
    if writes == Writes::Dual {
        s.push_str(&format!("dual_write = true\nkey = \"{key}\"\n"));
        if let Some(order) = order {
            s.push_str(&format!("write_order = \"{order}\"\n"));
        }
        s.push_str(&format!(
            "[routes.shadow]\nsample = 1.0\n{IGNORE_HEADERS}\n"
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(writes: Writes, guard: Option<Guard>) -> Phase {
        Phase {
            new_url: "http://127.0.0.1:2".into(),
            writes,
            guard,
            plan: guard.map(|_| Plan {
                min_requests: 10,
                pause: true,
            }),
        }
    }

    #[test]
    fn every_phase_is_a_valid_proxy_configuration() {
        let guard = Guard {
            max_p99_ms: 150,
            window_s: 5,
            min_requests: 20,
        };
        for (writes, guard) in [
            (Writes::Dual, None),
            (Writes::Dual, Some(guard)),
            (Writes::Single, Some(guard)),
        ] {
            let text = render(
                Path::new("/tmp/d"),
                "http://127.0.0.1:1",
                &phase(writes, guard),
            );
            let c =
                ficus_proxy::Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            let write = c.route(WRITE_ROUTE).unwrap();
            assert_eq!(write.dual_write, writes == Writes::Dual);
            let create = c.route(CREATE_ROUTE).unwrap();
            assert_eq!(create.dual_write, write.dual_write);
            if create.dual_write {
                assert_eq!(
                    create.write_order,
                    ficus_proxy::config::WriteOrderScope::Route
                );
            }
            assert_eq!(
                c.route(READ_ROUTE).unwrap().guard.is_some(),
                guard.is_some()
            );
            assert_eq!(c.route(READ_ROUTE).unwrap().plan.is_some(), guard.is_some());
        }
    }
}
