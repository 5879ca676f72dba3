//! The store's tables, created when missing (see the module docs of `store` for what each
//! holds).

pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS mismatches (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ms         INTEGER NOT NULL,
    route           TEXT NOT NULL,
    method          TEXT NOT NULL,
    path            TEXT NOT NULL,
    request_id      TEXT NOT NULL,
    primary_side    TEXT NOT NULL,
    request_headers TEXT NOT NULL,
    request_body    BLOB NOT NULL,
    request_body_truncated INTEGER NOT NULL,
    legacy_status   INTEGER NOT NULL,
    legacy_headers  TEXT NOT NULL,
    legacy_body     BLOB NOT NULL,
    legacy_body_truncated INTEGER NOT NULL,
    new_status      INTEGER NOT NULL,
    new_headers     TEXT NOT NULL,
    new_body        BLOB NOT NULL,
    new_body_truncated INTEGER NOT NULL,
    diff            TEXT NOT NULL,
    diff_truncated  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS mismatches_time ON mismatches(time_ms);
CREATE TABLE IF NOT EXISTS mismatch_fields (
    mismatch_id INTEGER NOT NULL REFERENCES mismatches(id) ON DELETE CASCADE,
    route       TEXT NOT NULL,
    field       TEXT NOT NULL,
    kind        TEXT NOT NULL,
    time_ms     INTEGER NOT NULL,
    legacy      TEXT,
    new         TEXT,
    PRIMARY KEY (mismatch_id, field, kind)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS mismatch_fields_group ON mismatch_fields(route, field, kind, time_ms);
CREATE TABLE IF NOT EXISTS counts (
    route  TEXT NOT NULL,
    minute INTEGER NOT NULL,
    result TEXT NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (route, minute, result)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS noise (
    route    TEXT NOT NULL,
    field    TEXT NOT NULL,
    kind     TEXT NOT NULL,
    count    INTEGER NOT NULL,
    first_ms INTEGER NOT NULL,
    last_ms  INTEGER NOT NULL,
    PRIMARY KEY (route, field, kind)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS noise_probes (
    route    TEXT PRIMARY KEY,
    probes   INTEGER NOT NULL,
    first_ms INTEGER NOT NULL,
    last_ms  INTEGER NOT NULL
);
"#;
