//! Chapter 5, shadow reads: legacy answers every read while the proxy asks the next build (v2)
//! the same question and compares the answers; the shadow report says what differs.

use ficus_shadow::report::RouteReport;

use crate::narrator::Narrator;
use crate::proxy_config::READ_ROUTE;
use crate::stage::Stage;
use crate::traffic::{read_as, task};
use crate::DemoError;

/// Reads sent through the proxy.
const READS: u32 = 60;

pub async fn shadow_reads(n: &mut Narrator<'_>, stage: &Stage) -> Result<(), DemoError> {
    n.step("Shadow reads: legacy answers, the next build (v2) is asked too, answers compared");
    let entry = stage.entry();
    for u in 0..READS {
        let r = read_as(&stage.client, &entry, u, &task(101 + u)).await?;
        crate::expect(r.header("x-ficus-backend") == "legacy", || {
            format!(
                "a shadowed read was answered by {:?}",
                r.header("x-ficus-backend")
            )
        })?;
    }
    stage.proxy.flush_shadow().await;
    let store = stage.ws.path("ficus-shadow.db");
    let report = tokio::task::spawn_blocking(move || {
        let store = ficus_shadow::Store::open_existing(&store)?;
        ficus_shadow::Report::build(&store, &ficus_shadow::ReportOptions::default())
    })
    .await??;
    n.say(format!(
        "{READS} reads, every one answered by legacy; what differed:"
    ));
    n.cli("ficus shadow report");
    let route = report
        .routes
        .iter()
        .find(|r| r.route == READ_ROUTE)
        .ok_or_else(|| DemoError::Step(format!("the shadow report has no route {READ_ROUTE}")))?;
    tell(n, route);
    for (kind, field) in [("extra", "/service_version"), ("value", "/created_at")] {
        crate::expect(
            route
                .groups
                .iter()
                .any(|g| g.kind == kind && g.field == field),
            || format!("shadow mode did not report the {kind} difference at {field}"),
        )?;
    }
    n.say("v2 is not ready: it adds a field and changes the timestamp format. A sample, the page:");
    let sample = route
        .groups
        .first()
        .and_then(|g| g.sample_ids.first())
        .copied()
        .unwrap_or(1);
    n.cli(format!(
        "ficus shadow show {sample};  ficus shadow report --format html --out report.html"
    ));
    Ok(())
}

/// One line per kind of difference: how often, where, an example (legacy → new).
fn tell(n: &mut Narrator<'_>, route: &RouteReport) {
    let result = |k: &str| route.results.get(k).copied().unwrap_or(0);
    n.say(format!(
        "{}: {} compared, {} match, {} mismatch",
        route.route,
        route.compared,
        result("match"),
        result("mismatch")
    ));
    for g in &route.groups {
        n.say(format!(
            "  {:>4} ({:>3.0}%)  {:<5}  {:<16}  {} → {}",
            g.count,
            g.percent_of_compared.unwrap_or(0.0),
            g.kind,
            g.field,
            g.example_legacy.as_deref().unwrap_or("(absent)"),
            g.example_new.as_deref().unwrap_or("(absent)")
        ));
    }
}
