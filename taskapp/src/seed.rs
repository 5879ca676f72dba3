//! Preparing databases: an empty legacy database ([`create_sqlite`]), deterministic sample
//! tasks ([`seed_tasks`]) and loading the same tasks into either side ([`seed_sqlite`],
//! [`seed_postgres`]), so both start from identical data.

use std::path::Path;

use crate::error::{TaskAppError, TaskError};
use crate::model::{NewTask, Priority, Status};
use crate::pg_store::PgStore;
use crate::sqlite_store::SqliteStore;
use crate::store::Store;
use crate::timestamp::Timestamp;

const WORDS: &[&str] = &[
    "queue",
    "roll",
    "rating",
    "session",
    "thread",
    "comic",
    "import",
    "export",
    "api",
    "cache",
    "index",
    "review",
    "agent",
    "worktree",
    "claim",
    "heartbeat",
    "dashboard",
    "migrate",
    "schema",
    "test",
    "docs",
    "refactor",
    "fix",
    "bug",
    "perf",
    "latency",
    "shadow",
    "proxy",
    "backfill",
    "verify",
    "rollback",
];
const EFFORTS: &[&str] = &["1h", "2h", "half day", "1d", "3d"];
/// 2025-01-01T00:00:00Z.
const BASE_UNIX_SECS: i64 = 1_735_689_600;

/// Creates the legacy database at `path` with the task schema if it does not exist yet
/// (an existing one is checked and left as it is). Blocking.
pub fn create_sqlite(path: &Path) -> Result<(), TaskAppError> {
    SqliteStore::open(path, true).map(|_| ())
}

/// `n` sample tasks `TASK-101`..: a mix of statuses, priorities and agents; dependencies on
/// earlier tasks and now and then on a task that does not exist; datetimes in 2025, half of
/// them with a zero fraction. The same `(n, seed)` always gives the same tasks.
pub fn seed_tasks(n: usize, seed: u64) -> Vec<NewTask> {
    let mut r = SplitMix(seed);
    let mut tasks = Vec::with_capacity(n);
    for i in 1..=n {
        let status = match r.below(100) {
            0..40 => Status::Pending,
            40..55 => Status::InProgress,
            55..65 => Status::Blocked,
            65..75 => Status::InReview,
            _ => Status::Done,
        };
        let priority = Priority::ALL[r.below(3) as usize];
        let mut deps: Vec<String> = Vec::new();
        for _ in 0..r.below(4) {
            let dep = if r.below(10) == 0 {
                format!("TASK-{}", 100 + n as u64 + 1 + r.below(50))
            } else if i > 1 {
                format!("TASK-{}", 101 + r.below(i as u64 - 1))
            } else {
                continue;
            };
            if !deps.contains(&dep) {
                deps.push(dep);
            }
        }
        let agent = (status != Status::Pending).then(|| format!("agent-{}", 1 + r.below(8)));
        let micros = if i % 2 == 0 {
            0
        } else {
            r.below(1_000_000) as i64
        };
        let created_secs = BASE_UNIX_SECS + r.below(365 * 86_400) as i64;
        let created = ts(created_secs * 1_000_000 + micros);
        let updated = ts((created_secs + r.below(3 * 86_400) as i64) * 1_000_000 + micros);
        let notes: Vec<String> = (0..r.below(3))
            .map(|_| format!("[{}] {}", created.to_sqlite(), r.words(4, 10)))
            .collect();
        tasks.push(NewTask {
            task_id: format!("TASK-{}", 100 + i),
            title: capitalize(&r.words(3, 7)),
            priority: priority.as_str().into(),
            status: status.as_str().into(),
            dependencies: (!deps.is_empty()).then(|| deps.join(",")),
            worktree: agent.as_ref().map(|a| format!("wt/{a}")),
            last_heartbeat: agent.as_ref().map(|_| updated),
            assigned_agent: agent,
            status_notes: (!notes.is_empty()).then(|| notes.join("\n")),
            estimated_effort: Some(EFFORTS[r.below(EFFORTS.len() as u64) as usize].into()),
            completed: status == Status::Done,
            blocked_reason: (status == Status::Blocked).then(|| r.words(4, 8)),
            blocked_by: (status == Status::Blocked)
                .then(|| format!("TASK-{}", 101 + r.below(n as u64))),
            instructions: Some(r.words(8, 24)),
            created_at: created,
            updated_at: updated,
        });
    }
    tasks
}

/// Inserts `tasks` into the legacy database at `path` (created if absent) in one
/// transaction; returns how many. Fails, inserting nothing, if a `task_id` exists. Blocking.
pub fn seed_sqlite(path: &Path, tasks: &[NewTask]) -> Result<usize, TaskAppError> {
    let store = SqliteStore::open(path, true)?;
    store
        .insert_blocking(tasks.to_vec())
        .map(|ids| ids.len())
        .map_err(seed_error)
}

/// Inserts `tasks` into the PostgreSQL database at `url` (schema created if absent) in one
/// transaction; returns how many. Fails, inserting nothing, if a `task_id` exists.
pub async fn seed_postgres(url: &str, tasks: &[NewTask]) -> Result<usize, TaskAppError> {
    let store = PgStore::connect(url).await?;
    store
        .insert(tasks.to_vec())
        .await
        .map(|ids| ids.len())
        .map_err(seed_error)
}

fn seed_error(e: TaskError) -> TaskAppError {
    TaskAppError::Seed(e.to_string())
}

fn ts(unix_micros: i64) -> Timestamp {
    // In range by construction (2025–2026).
    Timestamp::from_unix_micros(unix_micros).unwrap_or_else(Timestamp::now)
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// splitmix64: tiny, seedable, stable across releases (unlike std's hashers).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-enough in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn words(&mut self, min: u64, max: u64) -> String {
        let count = min + self.below(max - min + 1);
        (0..count)
            .map(|_| WORDS[self.below(WORDS.len() as u64) as usize])
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_varied() {
        let a = seed_tasks(200, 7);
        assert_eq!(a, seed_tasks(200, 7));
        assert_ne!(a, seed_tasks(200, 8));
        assert_eq!(a[0].task_id, "TASK-101");
        assert_eq!(a[199].task_id, "TASK-300");
        for s in Status::ALL {
            assert!(a.iter().any(|t| t.status == s.as_str()), "no {s}");
        }
        assert!(a.iter().any(|t| t.created_at.to_api(false).len() == 19));
        assert!(a.iter().any(|t| t.created_at.to_api(false).len() == 26));
        // Some dependency points past the last task.
        assert!(a
            .iter()
            .flat_map(|t| t.dependencies.iter())
            .flat_map(|d| d.split(','))
            .any(|d| d["TASK-".len()..].parse::<usize>().unwrap() > 300));
        for t in &a {
            assert_eq!(t.completed, t.status == "done");
            assert_eq!(t.assigned_agent.is_some(), t.status != "pending");
            assert!(t.updated_at >= t.created_at);
        }
    }
}
