//! The proxy writes table `dual_writes` (SQLite, or `ficus_proxy.dual_writes` in a PostgreSQL
//! state store) and `ficus migrate watch` reads it: both create it if absent, so their DDL
//! must be the same text.

#[test]
fn proxy_and_migrator_create_the_same_dual_writes_table() {
    assert_eq!(
        ficus_proxy::DUAL_WRITES_DDL,
        ficus_migrator::DUAL_WRITES_DDL
    );
    assert_eq!(
        ficus_proxy::DUAL_WRITES_PG_DDL,
        ficus_migrator::DUAL_WRITES_PG_DDL
    );
}
