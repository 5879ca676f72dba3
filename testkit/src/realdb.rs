//! `../shared/realdb/`: real SQLite databases written by others (Chinook, Northwind, Sakila, a
//! SpatiaLite test database), found beside the repository or any directory above it (worktrees
//! live deeper than the main checkout), or at `$FICUS_REALDB_DIR`. Tests copy a file into their
//! own temp dir first (opening one can leave `-wal`/`-shm` beside it). A checkout with no such
//! directory has nothing to migrate: callers get `None` and say SKIPPED.

use std::path::{Path, PathBuf};

/// The directory, if there is one.
pub fn dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("FICUS_REALDB_DIR") {
        return Some(PathBuf::from(d));
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("shared/realdb"))
        .find(|d| d.is_dir())
}

/// `name` copied (writable) into `into`; `None` (and a SKIPPED line on stderr) without the
/// directory.
pub fn copy(name: &str, into: &Path) -> Option<PathBuf> {
    let Some(dir) = dir() else {
        eprintln!("SKIPPED: no shared/realdb beside the repository (set FICUS_REALDB_DIR)");
        return None;
    };
    let from = dir.join(name);
    let to = into.join(name);
    std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    let mut perm = std::fs::metadata(&to).expect("metadata").permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(&to, perm).expect("make the copy writable");
    Some(to)
}
