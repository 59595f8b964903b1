//! `netqoe-aggregator` run as a process: `migrate` twice against an empty server, and the
//! exit codes of a start that cannot go on.

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

/// `netqoe-aggregator run` with `envs`: its exit code and stderr.
fn run_exit(envs: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_netqoe-aggregator"))
        .env("RUST_LOG", "info")
        .env("NETQOE_LOG_FORMAT", "pretty")
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/netqoe")
        .envs(envs.iter().copied())
        .output()
        .expect("run netqoe-aggregator");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn an_unusable_nats_url_exits_3_and_a_taken_metrics_address_exits_4() {
    let (code, log) = run_exit(&[
        ("NATS_URL", "nats://127.0.0.1:notaport"),
        ("NETQOE_AGGREGATOR_METRICS_LISTEN", "127.0.0.1:0"),
    ]);
    assert_eq!(code, Some(3), "{log}");
    assert!(log.contains("NATS_URL"), "{log}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, log) = run_exit(&[
        ("NATS_URL", "nats://127.0.0.1:1"),
        ("NETQOE_AGGREGATOR_METRICS_LISTEN", &addr),
    ]);
    assert_eq!(code, Some(4), "{log}");
    assert!(log.contains(&addr), "{log}");
}
