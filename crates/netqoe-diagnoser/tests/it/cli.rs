//! The binary: `migrate`, `run` and `report` through the command line and environment.

use std::process::Command;

use crate::support::{series, Db};

fn diagnoser(db: &Db, args: &[&str]) -> anyhow::Result<std::process::Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_netqoe-diagnoser"))
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn")
        .output()?)
}

#[tokio::test]
async fn the_binary_runs_once_and_reports() -> anyhow::Result<()> {
    let db = Db::start().await?;
    let out = diagnoser(&db, &["migrate"])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    db.insert(&series("c1", "x.example:443", 0..90, 0.05, |m, w| {
        if (60..70).contains(&m) {
            w.tcp += 250.0;
        }
    }))
    .await?;
    let out = diagnoser(&db, &["run"])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(db.count("SELECT count(*) FROM incidents").await?, 1);
    // A configuration that cannot be used exits 3.
    let out = diagnoser(&db, &["run", "--min-windows", "1"])?;
    assert_eq!(out.status.code(), Some(3));
    Ok(())
}
