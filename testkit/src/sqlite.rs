//! SQLite for tests: files made from SQL, connections that wait for a writer, rows read in one
//! call.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// A connection to `path` that waits up to 5 s for another writer's lock.
pub fn open(path: &Path) -> rusqlite::Connection {
    let c =
        rusqlite::Connection::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c
}

/// The file `dir/name` made afresh by running `sql`.
pub fn create(dir: &Path, name: &str, sql: &str) -> PathBuf {
    let p = dir.join(name);
    let _ = std::fs::remove_file(&p);
    open(&p)
        .execute_batch(sql)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    p
}

/// Every row `sql` selects from the file at `path`, each mapped by `row`.
pub fn rows<T>(
    path: &Path,
    sql: &str,
    row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Vec<T> {
    let c = open(path);
    let mut st = c.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    st.query_map([], row)
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}
