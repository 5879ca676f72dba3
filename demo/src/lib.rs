//! ficus-demo: the reference Task API (legacy on SQLite, new on PostgreSQL), a traffic driver,
//! and the `ficus demo` story.
