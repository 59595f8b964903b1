//! `netqoe-aggregator migrate` run as a process, twice, against an empty server.

use std::process::Command;

use netqoe_test_support::PgServer;

#[tokio::test]
async fn migrate_subcommand_creates_the_database_and_is_idempotent() -> anyhow::Result<()> {
    let pg = PgServer::start()?;
    let url = pg.url("netqoe_cli");
    for run in 0..2 {
        let out = Command::new(env!("CARGO_BIN_EXE_netqoe-aggregator"))
            .arg("migrate")
            .env("DATABASE_URL", &url)
            .env("RUST_LOG", "info")
            .output()?;
        assert!(
            out.status.success(),
            "run {run}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let pool = sqlx::PgPool::connect(&url).await?;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await?;
    assert_eq!(n as usize, netqoe_db::migration_count());
    Ok(())
}
