//! Chapters 9 and 10, the rollouts. Reads: 10 → 50 → 100 % of users to the new side, sticky
//! (a user on new stays there as the percentage grows). Writes: the write routes' primary moves
//! to new while legacy still receives every write mirrored, and the watch still finds no drift.

use std::collections::BTreeSet;

use crate::chapters::drift::watch_clean;
use crate::chapters::dualwrite::write_through;
use crate::narrator::Narrator;
use crate::proxy_config::{CREATE_ROUTE, READ_ROUTE, WRITE_ROUTE};
use crate::stage::Stage;
use crate::traffic::{drive_reads, Shape, WritePlan};
use crate::DemoError;

/// Users reading at each step.
const USERS: u32 = 200;

/// Chapter 9.
pub async fn roll_reads(n: &mut Narrator<'_>, stage: &Stage) -> Result<(), DemoError> {
    n.step("Roll reads out: 10 → 50 → 100 % of users to the new side (v1)");
    n.say(format!(
        "{:>8}  {:>6} {:>6}   ({USERS} users, one GET each, sticky on X-User-Id)",
        "percent", "legacy", "new"
    ));
    let mut previous: BTreeSet<u32> = BTreeSet::new();
    for pct in [10.0, 50.0, 100.0] {
        stage.operator.set_rollout(READ_ROUTE, pct).await?;
        let reads = drive_reads(&stage.client, &stage.entry(), USERS).await?;
        let kept = previous.is_subset(&reads.on_new);
        n.say(format!(
            "{pct:>7}%  {:>6} {:>6}   {}",
            reads.legacy,
            reads.on_new.len(),
            match (previous.is_empty(), kept) {
                (true, _) => "the first users on new",
                (false, true) => "every user already on new stays there",
                (false, false) => "STICKINESS BROKEN",
            }
        ));
        crate::expect(kept, || {
            format!("raising to {pct}% moved users back to legacy")
        })?;
        let share = reads.on_new.len() as f64 / f64::from(USERS) * 100.0;
        crate::expect((share - pct).abs() <= 10.0, || {
            format!("{pct}% asked, {share:.0}% of users on new")
        })?;
        previous = reads.on_new;
    }
    n.cli(format!(
        "ficus rollout set {READ_ROUTE} 10   # then 50, then 100"
    ));
    Ok(())
}

/// Chapter 10.
pub async fn roll_writes(n: &mut Narrator<'_>, stage: &Stage) -> Result<(), DemoError> {
    n.step("Roll writes: the new side becomes primary, legacy still gets every write");
    for route in [CREATE_ROUTE, WRITE_ROUTE] {
        let c = stage.operator.set_rollout(route, 100.0).await?;
        n.say(format!("{}: {}% → {}%", c.route, c.from, c.to));
    }
    n.cli(format!(
        "ficus rollout set {CREATE_ROUTE} 100 && ficus rollout set {WRITE_ROUTE} 100"
    ));
    let shape = Shape {
        writers: 3,
        creates: 2,
        tasks: 2,
        rounds: 2,
    };
    let plan = WritePlan::new(shape, 9101, 121, "new");
    write_through(n, stage, &plan).await?;
    watch_clean(n, stage).await
}
