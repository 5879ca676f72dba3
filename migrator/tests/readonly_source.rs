//! Sources are opened without ever writing next to them (issue 14 item 7): a WAL-mode
//! database migrates (plan, run, verify) with no `-wal`/`-shm` left beside it, and from a
//! directory ficus cannot write to.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use ficus_migrator::MigrationConfig;

const DATA: &str = "PRAGMA journal_mode = WAL;
    CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL);
    INSERT INTO t VALUES (1, 'a', 1.5), (2, 'b', NULL), (3, 'c', 3.25);";

fn siblings(src: &Path) -> Vec<PathBuf> {
    ["-wal", "-shm", "-journal"]
        .iter()
        .map(|s| PathBuf::from(format!("{}{s}", src.display())))
        .filter(|p| p.exists())
        .collect()
}

#[tokio::test]
async fn wal_source_leaves_no_wal_or_shm_files() {
    let d = temp_dir("wal_nofiles");
    let src = sqlite(&d, DATA);
    assert_eq!(
        siblings(&src),
        Vec::<PathBuf>::new(),
        "the setup left files"
    );
    let db = testkit::pg::fresh_database("mig_wal_nofiles").unwrap();
    let (_, rep) = migrate_clean(&src, &db.url, &MigrationConfig::default()).await;
    assert_eq!(rep.rows_copied, 3);
    assert_eq!(
        siblings(&src),
        Vec::<PathBuf>::new(),
        "ficus left files next to the source"
    );
}

/// Makes `dir` unwritable (for root too: the immutable attribute), undone on drop.
struct ReadOnlyDir(PathBuf, bool);

impl ReadOnlyDir {
    fn new(dir: &Path) -> Option<ReadOnlyDir> {
        use std::os::unix::fs::PermissionsExt;
        let chattr = Command::new("chattr")
            .arg("+i")
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        if !chattr {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        }
        let guard = ReadOnlyDir(dir.to_path_buf(), chattr);
        let probe = dir.join("probe");
        if std::fs::write(&probe, b"x").is_ok() {
            let _ = std::fs::remove_file(&probe);
            return None;
        }
        Some(guard)
    }
}

impl Drop for ReadOnlyDir {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        if self.1 {
            let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
        }
        let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o755));
    }
}

#[tokio::test]
async fn wal_source_in_a_read_only_directory() {
    let d = temp_dir("wal_rodir");
    let dir = d.path().join("legacy");
    std::fs::create_dir(&dir).unwrap();
    let src = testkit::sqlite::create(&dir, "app.db", DATA);
    let Some(_ro) = ReadOnlyDir::new(&dir) else {
        eprintln!("SKIPPED: cannot make a directory unwritable here (no chattr, running as root)");
        return;
    };
    let db = testkit::pg::fresh_database("mig_wal_rodir").unwrap();
    let (_, rep) = migrate_clean(&src, &db.url, &MigrationConfig::default()).await;
    assert_eq!(rep.rows_copied, 3);
    assert_eq!(siblings(&src), Vec::<PathBuf>::new());
}
