//! ficus-demo: the `ficus demo` story — seeds the legacy app, starts PostgreSQL, both task apps
//! and the proxy, and walks through each capability, printing what it did.
