//! Migrations against a real PostgreSQL: idempotent, and every table of the contract exists.

use netqoe_db::{connect, ensure_database, migrate, PoolConfig};
use netqoe_test_support::PgServer;

#[tokio::test]
async fn migrations_apply_twice_to_an_empty_database() -> anyhow::Result<()> {
    let pg = PgServer::start()?;
    let url = pg.url("netqoe");
    ensure_database(&url).await?;
    ensure_database(&url).await?;
    let pool = connect(&url, &PoolConfig::default()).await?;
    migrate(&pool).await?;
    migrate(&pool).await?;

    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&pool)
        .await?;
    assert_eq!(applied as usize, netqoe_db::migration_count());

    for table in [
        "events_seen",
        "agg_1m",
        "baselines",
        "diagnoses",
        "incidents",
        "diagnoser_watermark",
    ] {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(table)
            .fetch_one(&pool)
            .await?;
        assert!(exists, "table {table} missing");
    }

    let mut expected: Vec<String> = [
        "client_id",
        "target",
        "window_start_ts",
        "count_total",
        "count_success",
        "count_error",
        "dns_error_count",
        "tcp_error_count",
        "tls_error_count",
        "http_error_count",
        "throughput_error_count",
        "timeout_error_count",
        "throughput_p05",
        "throughput_p50",
        "throughput_p95",
        "ping_sent",
        "ping_received",
        "jitter_p50",
        "sketch_state",
        "diagnosis_label",
        "updated_at",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for m in ["dns", "tcp", "tls", "ttfb", "total"] {
        for s in ["count", "p50", "p95", "p99", "min", "max"] {
            expected.push(format!("{m}_{s}"));
        }
    }
    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns WHERE table_name = 'agg_1m'",
    )
    .fetch_all(&pool)
    .await?;
    for c in &expected {
        assert!(columns.contains(c), "agg_1m.{c} missing");
    }
    let ts_type: String = sqlx::query_scalar(
        "SELECT data_type::text FROM information_schema.columns WHERE table_name = 'agg_1m' AND column_name = 'window_start_ts'",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(ts_type, "timestamp with time zone");
    Ok(())
}

#[tokio::test]
async fn a_restarted_server_keeps_its_data() -> anyhow::Result<()> {
    let mut pg = PgServer::start()?;
    let url = pg.create_database("restart").await?;
    {
        let pool = connect(&url, &PoolConfig::default()).await?;
        migrate(&pool).await?;
        sqlx::query("INSERT INTO events_seen (event_id, client_id, ts_ms) VALUES (gen_random_uuid(), 'c', 1)")
            .execute(&pool)
            .await?;
        pool.close().await;
    }
    let pid = pg.pid();
    pg.restart()?;
    assert_ne!(pg.pid(), pid);
    let pool = connect(&url, &PoolConfig::default()).await?;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM events_seen")
        .fetch_one(&pool)
        .await?;
    assert_eq!(n, 1);
    Ok(())
}
