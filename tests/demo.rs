//! `ficus demo` end to end: the binary runs the whole story on this machine and says what it did.

use std::process::Command;

#[test]
fn demo_completes_and_narrates_each_step() {
    let dir = std::env::temp_dir().join(format!("ficus-demo-test-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_ficus"))
        .args(["demo", "--tasks", "200", "--dir"])
        .arg(&dir)
        .output()
        .expect("run ficus demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "demo failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for want in [
        "Start PostgreSQL",
        "200 tasks in",
        "legacy (SQLite)",
        "new    (PostgreSQL)",
        "unknown task",
        "verify: clean",
        "extra         /service_version",
        "value         /created_at",
        "100%        0     200",
        "rollback: tasks-read 100%→0%",
        "Done",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in:\n{stdout}");
    }
    assert!(!stdout.contains(" NO"), "a side disagreed:\n{stdout}");
    assert!(!stdout.contains("BROKEN"), "stickiness broken:\n{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}
