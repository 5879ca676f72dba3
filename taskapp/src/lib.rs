//! ficus-taskapp: the reference Task API on both sides of the migration — the legacy monolith
//! on SQLite and the extracted service on PostgreSQL — with deliberate quirks for shadow tests.
