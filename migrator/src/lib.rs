//! ficus-migrator: SQLite → PostgreSQL schema plan, resumable backfill, verification,
//! dual-write watch and rollback.
