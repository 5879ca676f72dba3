//! Traffic through the proxy: one GET per user (who lands where), and concurrent writers —
//! one creating tasks, the others each working their own tasks — checking that every answer
//! came from the side the story expects.

use std::collections::BTreeSet;
use std::time::Instant;

use serde_json::json;

use crate::client::{Client, Reply};
use crate::DemoError;

/// Now, UTC, as the proxy stamps `X-Ficus-Request-Time` (`2026-01-01T10:00:00.123456Z`).
pub fn stamp() -> String {
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(&f)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000000Z".into())
}

/// `TASK-{n}`.
pub fn task(n: u32) -> String {
    format!("TASK-{n}")
}

/// GET one task through the proxy as user `user`.
pub async fn read_as(
    client: &Client,
    entry: &str,
    user: u32,
    task_id: &str,
) -> Result<Reply, DemoError> {
    let r = client
        .send(
            "GET",
            &format!("{entry}/api/tasks/{task_id}"),
            None,
            &[("x-user-id", &format!("user-{user}"))],
        )
        .await?;
    crate::expect(r.status == 200, || {
        format!("GET {task_id} through the proxy answered {}", r.status)
    })?;
    Ok(r)
}

/// Who served a batch of reads.
#[derive(Debug, Default)]
pub struct ReadTally {
    pub legacy: usize,
    /// Users served by new.
    pub on_new: BTreeSet<u32>,
}

/// One GET per user `0..users` (each reading one of the first 50 tasks), one after another.
pub async fn drive_reads(client: &Client, entry: &str, users: u32) -> Result<ReadTally, DemoError> {
    let mut tally = ReadTally::default();
    for u in 0..users {
        let r = read_as(client, entry, u, &task(101 + (u % 50))).await?;
        match r.header("x-ficus-backend") {
            "new" => {
                tally.on_new.insert(u);
            }
            _ => tally.legacy += 1,
        }
    }
    Ok(tally)
}

/// How many writers, and what each does.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub writers: u32,
    /// Tasks each writer creates (all writers at once: the creates race each other).
    pub creates: u32,
    /// Seeded tasks each writer owns and works every round ([`round_of`]).
    pub tasks: u32,
    pub rounds: usize,
}

/// Who writes what, and from which side every answer must come (`x-ficus-backend`).
#[derive(Debug, Clone)]
pub struct WritePlan {
    pub shape: Shape,
    /// Per writer: the tasks it creates, then the tasks it works.
    pub writers: Vec<(Vec<String>, Vec<String>)>,
    pub primary: &'static str,
}

impl WritePlan {
    /// Writer `w` creates `TASK-{new_from + w * creates ...}` and works
    /// `TASK-{seeded_from + w * tasks ...}`.
    pub fn new(shape: Shape, new_from: u32, seeded_from: u32, primary: &'static str) -> WritePlan {
        let ids =
            |from: u32, each: u32, w: u32| (0..each).map(|k| task(from + w * each + k)).collect();
        WritePlan {
            shape,
            writers: (0..shape.writers)
                .map(|w| {
                    (
                        ids(new_from, shape.creates, w),
                        ids(seeded_from, shape.tasks, w),
                    )
                })
                .collect(),
            primary,
        }
    }

    /// Every task created, in writer order.
    pub fn created(&self) -> impl Iterator<Item = &String> {
        self.writers.iter().flat_map(|(c, _)| c)
    }

    /// How the plan reads in the narration.
    pub fn describe(&self) -> String {
        let s = self.shape;
        let who = match s.writers {
            1 => "1 writer".to_string(),
            n => format!("{n} writers at once"),
        };
        format!(
            "{who}, each creating {} tasks, then working {} of its own for {} round(s)",
            s.creates, s.tasks, s.rounds
        )
    }
}

/// What the writers saw.
#[derive(Debug, Default)]
pub struct WriteTally {
    pub writes: usize,
    pub seconds: f64,
}

/// Runs the plan's writers concurrently through the proxy at `entry`; fails on the first
/// answer that is not 2xx or not from the plan's primary side.
pub async fn run_writers(
    client: &Client,
    entry: &str,
    plan: &WritePlan,
) -> Result<WriteTally, DemoError> {
    let started = Instant::now();
    let mut writers = tokio::task::JoinSet::new();
    for (w, (creates, tasks)) in plan.writers.iter().enumerate() {
        let (c, e) = (client.clone(), entry.to_string());
        let (creates, tasks) = (creates.clone(), tasks.clone());
        let (rounds, primary) = (plan.shape.rounds, plan.primary);
        writers.spawn(async move {
            let made = create_tasks(&c, &e, &creates, primary).await?;
            Ok::<_, DemoError>(made + work_tasks(&c, &e, w + 1, &tasks, rounds, primary).await?)
        });
    }
    let mut tally = WriteTally::default();
    while let Some(done) = writers.join_next().await {
        tally.writes += done??;
    }
    tally.seconds = started.elapsed().as_secs_f64();
    Ok(tally)
}

async fn create_tasks(
    client: &Client,
    entry: &str,
    ids: &[String],
    primary: &str,
) -> Result<usize, DemoError> {
    for id in ids {
        let body = json!({"task_id": id, "title": format!("{id}, made during the demo"), "priority": "MEDIUM"});
        let r = client
            .send(
                "POST",
                &format!("{entry}/api/tasks/"),
                Some(&body),
                &[("x-task-id", id)],
            )
            .await?;
        checked(&r, &format!("create {id}"), primary)?;
    }
    Ok(ids.len())
}

async fn work_tasks(
    client: &Client,
    entry: &str,
    writer: usize,
    tasks: &[String],
    rounds: usize,
    primary: &str,
) -> Result<usize, DemoError> {
    let agent = format!("agent-{writer}");
    let mut writes = 0;
    for round in 0..rounds {
        for id in tasks {
            for (action, body) in round_of(&agent, round) {
                let r = client
                    .send(
                        "POST",
                        &format!("{entry}/api/tasks/{id}/{action}"),
                        body.as_ref(),
                        &[],
                    )
                    .await?;
                checked(&r, &format!("{action} {id}"), primary)?;
                writes += 1;
            }
        }
    }
    Ok(writes)
}

/// The writes an updater sends each of its tasks per round; set-status stores a multi-key
/// event payload (`from`, `to`, `blocked_reason`) on both sides.
fn round_of(agent: &str, round: usize) -> [(&'static str, Option<serde_json::Value>); 5] {
    let by = json!({ "agent_name": agent });
    [
        ("unclaim", None),
        ("claim", Some(by.clone())),
        ("heartbeat", Some(by)),
        (
            "update-notes",
            Some(json!({"notes": format!("round {round} by {agent}")})),
        ),
        ("set-status", Some(json!({"status": "in_review"}))),
    ]
}

/// A write's answer must be 2xx from `primary`.
fn checked(r: &Reply, what: &str, primary: &str) -> Result<(), DemoError> {
    let backend = r.header("x-ficus-backend");
    crate::expect((200..300).contains(&r.status) && backend == primary, || {
        format!(
            "{what} through the proxy: {} from {backend:?} (expected 2xx from {primary}): {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        )
    })
}
