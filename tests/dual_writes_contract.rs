//! The proxy writes table `dual_writes` (SQLite, or `ficus_proxy.dual_writes` in a PostgreSQL
//! state store) and `ficus migrate watch` reads it: both create it if absent, so their DDL
//! must be the same text. Likewise the state store's rollout and audit tables, which
//! `ficus migrate rollback` creates in a store the stopped proxy never opened.

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

#[test]
fn proxy_and_migrator_create_the_same_state_tables() {
    assert_eq!(ficus_proxy::STATE_DDL, ficus_migrator::PROXY_STATE_DDL);
}
