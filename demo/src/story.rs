//! The story, in the order a team would live it: the data first (PostgreSQL, legacy seed,
//! migration), then the services and the proxy, shadow reads, the dual-write period and its
//! drift checks, the rollouts, the rollback guard, and finally a cut-over and the way back.
//! Each chapter checks its outcome; the first that fails stops the story with its error.

use std::io::Write;

use crate::chapters::{
    cutover, drift, dualwrite, guard, live, migrate, plan, rollback, rollout, shadow, start,
};
use crate::narrator::Narrator;
use crate::stage::{Ground, Stage, Workspace};
use crate::{DemoError, DemoOptions, MIN_TASKS};

/// Run the story, narrating to `out`.
pub async fn run(opts: DemoOptions, out: &mut (dyn Write + Send)) -> Result<(), DemoError> {
    crate::expect(opts.tasks >= MIN_TASKS, || {
        format!(
            "--tasks {}: the story needs at least {MIN_TASKS}",
            opts.tasks
        )
    })?;
    let mut n = Narrator::new(out);
    let ws = Workspace::new(opts.dir.clone(), opts.tasks)?;
    let (pg, pg_url) = migrate::start_postgres(&mut n, &ws).await?;
    migrate::seed_legacy(&mut n, &ws).await?;
    let migration = migrate::migrate(&mut n, &ws, &pg_url).await?;
    live::live_migration(&mut n, &ws, &pg_url).await?;
    cutover::live_cutover(&mut n, &ws, &pg_url).await?;
    let ground = Ground {
        ws,
        pg,
        pg_url,
        migration,
    };
    let mut stage = start::start_everything(&mut n, ground).await?;
    let told = tell(&mut n, &mut stage).await;
    let took = n.elapsed_s();
    if told.is_ok() && opts.serve {
        serve(&mut n, &stage).await;
    }
    if told.is_ok() {
        n.step("Done");
        n.say(format!("the story took {took:.1} s"));
        match (stage.ws.is_temporary(), opts.serve) {
            (true, false) => n.say(
                "its work directory is removed now; keep it with --dir DIR, keep everything running with --serve",
            ),
            (true, true) => n.say("its work directory is removed now; keep it with --dir DIR"),
            (false, _) => n.say(format!("work directory kept: {}", stage.ws.dir.display())),
        }
    }
    stage.shutdown().await?;
    told
}

/// The chapters after start-up.
async fn tell(n: &mut Narrator<'_>, stage: &mut Stage) -> Result<(), DemoError> {
    shadow::shadow_reads(n, stage).await?;
    dualwrite::dual_writes(n, stage).await?;
    drift::zero_drift(n, stage).await?;
    drift::injected_drift(n, stage).await?;
    rollout::roll_reads(n, stage).await?;
    rollout::roll_writes(n, stage).await?;
    guard::guard_rollback(n, stage).await?;
    plan::plan_promotes(n, stage).await?;
    plan::preflight_stops(n, stage).await?;
    rollback::cut_over_and_roll_back(n, stage).await
}

/// `--serve`: keep everything up until Ctrl-C, with what an operator needs to look around.
async fn serve(n: &mut Narrator<'_>, stage: &Stage) {
    let admin = stage.admin();
    n.step("Serving until Ctrl-C");
    n.say(
        "every route is on legacy (the rollback); ficus.toml is the cut-over one (no dual writes)",
    );
    n.say(format!(
        "admin page   {admin}/   (paste the token from {} once)",
        stage.ws.path("admin-token").display()
    ));
    n.say(format!(
        "proxy        {}   e.g. curl -H 'X-User-Id: u1' {}/api/tasks/TASK-101",
        stage.entry(),
        stage.entry()
    ));
    n.say(format!("metrics      {admin}/metrics"));
    n.say(format!(
        "legacy       {}   new v1 {}",
        stage.legacy.url(),
        stage.v1.url()
    ));
    n.say(format!("PostgreSQL   {}", stage.pg_url));
    n.say(format!("work dir     {}", stage.ws.dir.display()));
    n.say(format!(
        "in a shell:  . {}",
        stage.ws.path("env.sh").display()
    ));
    n.cli(format!("ficus rollout status --admin {admin}"));
    n.cli("ficus rollout set tasks-read 50");
    n.cli("ficus rollback");
    n.cli("ficus shadow report");
    n.cli("ficus migrate watch --source legacy.db --config migration.toml --proxy-state ficus-state.db --once");
    let _ = tokio::signal::ctrl_c().await;
}
