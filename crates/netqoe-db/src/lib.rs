//! Postgres connection pool and the embedded, append-only migrations of `migrations/`.
//!
//! sqlx is pinned to 0.8: 0.9.0 stopped setting TCP_NODELAY, which stalls pipelined statements
//! about 40 ms each over TCP.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

/// Every migration of the workspace's `migrations/` folder, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// Errors of connecting and migrating.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid DATABASE_URL: {0}")]
    Url(sqlx::Error),
    #[error("failed to connect to Postgres at {target}: {source}")]
    Connect { target: String, source: sqlx::Error },
    #[error("failed to create database {name}: {source}")]
    CreateDatabase { name: String, source: sqlx::Error },
    #[error("failed to apply migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Pool settings shared by the binaries.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

fn options(url: &str) -> Result<PgConnectOptions, Error> {
    Ok(PgConnectOptions::from_str(url)
        .map_err(Error::Url)?
        .application_name("netqoe")
        .log_statements(tracing::log::LevelFilter::Trace))
}

/// Where `opts` points, without the password, for error messages.
fn describe(opts: &PgConnectOptions) -> String {
    format!(
        "{}:{}/{}",
        opts.get_host(),
        opts.get_port(),
        opts.get_database().unwrap_or("")
    )
}

/// A pool that connects lazily, so a service can start while Postgres is down.
pub fn lazy_pool(url: &str, cfg: &PoolConfig) -> Result<PgPool, Error> {
    Ok(PgPoolOptions::new()
        .max_connections(cfg.max_connections)
        .acquire_timeout(cfg.acquire_timeout)
        .connect_lazy_with(options(url)?))
}

/// A pool that has proven it can connect.
pub async fn connect(url: &str, cfg: &PoolConfig) -> Result<PgPool, Error> {
    let opts = options(url)?;
    PgPoolOptions::new()
        .max_connections(cfg.max_connections)
        .acquire_timeout(cfg.acquire_timeout)
        .connect_with(opts.clone())
        .await
        .map_err(|source| Error::Connect {
            target: describe(&opts),
            source,
        })
}

/// Creates the database named in `url` when it does not exist (connecting to `postgres`).
pub async fn ensure_database(url: &str) -> Result<(), Error> {
    let opts = options(url)?;
    let name = opts.get_database().unwrap_or("postgres").to_string();
    let admin = opts.clone().database("postgres");
    let mut conn = admin.connect().await.map_err(|source| Error::Connect {
        target: describe(&admin),
        source,
    })?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut conn)
            .await
            .map_err(|source| Error::CreateDatabase {
                name: name.clone(),
                source,
            })?;
    if !exists {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        let created = sqlx::raw_sql(&format!("CREATE DATABASE {quoted}"))
            .execute(&mut conn)
            .await;
        match created {
            Ok(_) => tracing::info!(database = %name, "created database"),
            // Another process created it in the meantime.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
            Err(source) => return Err(Error::CreateDatabase { name, source }),
        }
    }
    conn.close().await.ok();
    Ok(())
}

/// Applies every pending migration; applying twice is a no-op.
pub async fn migrate(pool: &PgPool) -> Result<(), Error> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// Number of embedded migrations.
pub fn migration_count() -> usize {
    MIGRATOR.iter().count()
}
