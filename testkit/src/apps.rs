//! The reference task apps on both sides: the legacy on SQLite, the new one on PostgreSQL (a
//! fresh pgtemp database) or on a copy of the legacy's SQLite file, both seeded with the same
//! tasks and listening on loopback.
//!
//! ```no_run
//! # async fn f() {
//! use ficus_taskapp::Options;
//! let pair = testkit::apps::pair("contract")
//!     .tasks(&ficus_taskapp::seed_tasks(60, 11))
//!     .new_side(Options::with_quirks(testkit::apps::quirks(&["extra-field"])))
//!     .start()
//!     .await;
//! let (legacy, new) = (pair.legacy.url(), pair.new.url());
//! # }
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use ficus_taskapp::{
    seed_postgres, seed_sqlite, seed_tasks, serve_legacy_with, serve_new_with, Clock, NewTask,
    Options, Quirk, Server, Timestamp,
};
use tempfile::TempDir;

use crate::backend::listener;
use crate::pg::TestDatabase;

/// Quirks by name (`"extra-field"`, `"slow:300"`, ...); panics on an unknown one.
pub fn quirks(names: &[&str]) -> Vec<Quirk> {
    names
        .iter()
        .map(|q| q.parse().unwrap_or_else(|e| panic!("quirk {q:?}: {e}")))
        .collect()
}

/// A deterministic clock for comparisons: 2026-03-01 12:00:00, stepping 250 ms per reading
/// (some readings with a zero fraction, most not, so both datetime forms appear). Give each
/// side its own: a clock's steps are shared by its clones.
pub fn test_clock() -> Clock {
    let start = Timestamp::parse("2026-03-01 12:00:00").unwrap();
    Clock::stepping(start, Duration::from_millis(250))
}

/// The legacy app on the SQLite file at `sqlite`, on a free loopback port.
pub async fn legacy_app(sqlite: &Path, options: Options) -> Server {
    serve_legacy_with(sqlite, listener().await, options)
        .await
        .unwrap_or_else(|e| panic!("legacy app on {}: {e}", sqlite.display()))
}

/// The new app on the PostgreSQL database at `pg_url`, on a free loopback port.
pub async fn new_app(pg_url: &str, options: Options) -> Server {
    serve_new_with(pg_url, listener().await, options)
        .await
        .unwrap_or_else(|e| panic!("new app on {pg_url}: {e}"))
}

/// Where the new side keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NewStore {
    Postgres,
    SqliteCopy,
}

/// How to start a [`Pair`]; made by [`pair`].
#[must_use = "call .start()"]
pub struct PairBuilder {
    name: String,
    tasks: Vec<NewTask>,
    legacy: Options,
    new: Options,
    store: NewStore,
    pg_setup: Option<String>,
}

/// Both apps for the test `name` (used in the temp dir's and the database's names): by default
/// 40 seeded tasks (seed 7), no quirks, system clocks, the new side on PostgreSQL.
pub fn pair(name: &str) -> PairBuilder {
    PairBuilder {
        name: name.to_string(),
        tasks: seed_tasks(40, 7),
        legacy: Options::default(),
        new: Options::default(),
        store: NewStore::Postgres,
        pg_setup: None,
    }
}

impl PairBuilder {
    /// Seed both stores with `tasks`.
    pub fn tasks(mut self, tasks: &[NewTask]) -> Self {
        self.tasks = tasks.to_vec();
        self
    }

    /// The legacy side's quirks and clock.
    pub fn legacy(mut self, options: Options) -> Self {
        self.legacy = options;
        self
    }

    /// The new side's quirks and clock.
    pub fn new_side(mut self, options: Options) -> Self {
        self.new = options;
        self
    }

    /// The new side as the legacy app too, on a copy of the seeded SQLite file (`new.db`): no
    /// PostgreSQL needed.
    pub fn new_on_sqlite(mut self) -> Self {
        self.store = NewStore::SqliteCopy;
        self
    }

    /// SQL run on the fresh PostgreSQL database before it is seeded (e.g. tables as a
    /// migration would have made them; the new app keeps tables that exist).
    pub fn pg_setup(mut self, sql: &str) -> Self {
        self.pg_setup = Some(sql.to_string());
        self
    }

    /// Seeds the stores and starts both apps.
    pub async fn start(self) -> Pair {
        let dir = crate::temp_dir(&format!("apps-{}", self.name));
        let sqlite = dir.path().join("legacy.db");
        seed_sqlite(&sqlite, &self.tasks).unwrap();
        let (new, new_sqlite, pg) = match self.store {
            NewStore::SqliteCopy => {
                let copy = dir.path().join("new.db");
                std::fs::copy(&sqlite, &copy).unwrap();
                (legacy_app(&copy, self.new).await, Some(copy), None)
            }
            NewStore::Postgres => {
                let pg = crate::pg::fresh_database(&format!("apps_{}", self.name))
                    .expect("a PostgreSQL for the test");
                if let Some(sql) = &self.pg_setup {
                    crate::pg::connect(&pg.url)
                        .await
                        .batch_execute(sql)
                        .await
                        .unwrap();
                }
                seed_postgres(&pg.url, &self.tasks).await.unwrap();
                (new_app(&pg.url, self.new).await, None, Some(pg))
            }
        };
        let legacy = legacy_app(&sqlite, self.legacy).await;
        Pair {
            legacy,
            new,
            sqlite,
            new_sqlite,
            pg,
            dir,
        }
    }
}

/// Both apps running. Fields drop in order: the apps stop before their stores go away.
pub struct Pair {
    /// The legacy app (SQLite).
    pub legacy: Server,
    /// The new app (PostgreSQL, or a SQLite copy with [`PairBuilder::new_on_sqlite`]).
    pub new: Server,
    /// The legacy's SQLite file.
    pub sqlite: PathBuf,
    /// The new side's SQLite file, when it is on SQLite.
    pub new_sqlite: Option<PathBuf>,
    /// The new side's database, when it is on PostgreSQL.
    pub pg: Option<TestDatabase>,
    /// The directory holding the SQLite files (removed on drop); free for other files.
    pub dir: TempDir,
}

impl Pair {
    /// URL of the new side's PostgreSQL database; panics when the new side is on SQLite.
    pub fn pg_url(&self) -> &str {
        &self
            .pg
            .as_ref()
            .expect("the new side is on SQLite (new_on_sqlite)")
            .url
    }

    /// Stops both apps, letting in-flight requests finish.
    pub async fn shutdown(self) {
        self.new.shutdown().await;
        self.legacy.shutdown().await;
    }
}
