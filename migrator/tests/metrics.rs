//! `--metrics-addr`: the Prometheus endpoint serves the run's counters.

mod common;

use std::sync::Arc;

use common::*;
use ficus_migrator::{Metrics, MigrationConfig, Observer, RunOptions};

#[tokio::test]
async fn metrics_endpoint_serves_rows_rejects_and_phase() {
    let d = temp_dir("metrics");
    let src = sqlite(
        &d,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500)
         INSERT INTO t SELECT i, CASE WHEN i = 9 THEN CAST(x'ff' AS TEXT) ELSE 'v' END FROM n;",
    );
    let db = testkit::pg::fresh_database("mig_metrics").unwrap();
    let metrics = Arc::new(Metrics::new().unwrap());
    let (addr, server) =
        ficus_proxy::serve_metrics("127.0.0.1:0".parse().unwrap(), metrics.registry.clone())
            .await
            .unwrap();
    let obs = Arc::new(Observer::new(metrics, true));
    let plan = build_plan(&src, &MigrationConfig::default());
    ficus_migrator::run(&plan, &src, &db.url, &RunOptions::default(), &obs)
        .await
        .unwrap();
    let r = testkit::get(addr, "/metrics", &[]).await;
    let body = r.text();
    assert_eq!(r.status, 200, "{body}");
    assert!(
        body.contains("ficus_migrate_rows_copied_total{table=\"t\"} 499"),
        "{body}"
    );
    assert!(
        body.contains("ficus_migrate_rows_quarantined_total{table=\"t\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("ficus_migrate_phase{phase=\"done\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("ficus_migrate_source_rows{table=\"t\"} 500"),
        "{body}"
    );
    assert!(
        body.contains("ficus_migrate_rows_per_second{table=\"t\"}"),
        "{body}"
    );
    server.abort();
}
