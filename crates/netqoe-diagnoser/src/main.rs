//! `netqoe-diagnoser`: parse the command line, set up logging, run the chosen subcommand.

use std::process::ExitCode;

use clap::Parser;
use netqoe_common::exit;
use netqoe_diagnoser::config::{Cli, Command, EvaluateArgs, ReportArgs, RunArgs};
use netqoe_diagnoser::Settings;

/// Exit code of `evaluate` when a score is below its threshold.
const BELOW_THRESHOLD: u8 = 5;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    netqoe_common::logging::init(cli.log.log_format);
    let url = cli.db.database_url.clone();
    let result = match cli.command {
        Command::Migrate => migrate(&url).await,
        Command::Run(args) => run(&url, args).await,
        Command::Report(args) => report(&url, args).await,
        Command::Evaluate(args) => evaluate(&url, args).await,
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err((code, error)) => {
            tracing::error!(error = format!("{error:#}"), "netqoe-diagnoser failed");
            ExitCode::from(code)
        }
    }
}

type Outcome = Result<u8, (u8, anyhow::Error)>;

async fn connect(url: &str) -> Result<sqlx::PgPool, (u8, anyhow::Error)> {
    netqoe_db::connect(url, &netqoe_db::PoolConfig::default())
        .await
        .map_err(|e| (exit::UNAVAILABLE, e.into()))
}

async fn migrate(url: &str) -> Outcome {
    netqoe_db::ensure_database(url)
        .await
        .map_err(|e| (exit::UNAVAILABLE, e.into()))?;
    let pool = connect(url).await?;
    netqoe_db::migrate(&pool)
        .await
        .map_err(|e| (exit::FAILURE, e.into()))?;
    Ok(exit::OK)
}

async fn run(url: &str, args: RunArgs) -> Outcome {
    let settings = Settings::from_args(&args, netqoe_model::now_ms())
        .map_err(|m| (exit::CONFIG, anyhow::anyhow!(m)))?;
    let pool = connect(url).await?;
    let shutdown = netqoe_common::shutdown_token();
    if settings.every.is_some() {
        let fail = |e: anyhow::Error| (exit::CONFIG, e);
        let handle = netqoe_common::metrics_http::install_recorder().map_err(fail)?;
        let listener = tokio::net::TcpListener::bind(args.metrics_listen)
            .await
            .map_err(|e| fail(anyhow::Error::from(e).context("cannot bind the metrics address")))?;
        let app = netqoe_common::metrics_http::router(handle);
        tokio::spawn(netqoe_common::metrics_http::serve(
            listener,
            app,
            shutdown.clone(),
        ));
    }
    netqoe_diagnoser::run(settings, pool, shutdown)
        .await
        .map_err(|e| (exit::FAILURE, e.into()))?;
    Ok(exit::OK)
}

async fn report(url: &str, args: ReportArgs) -> Outcome {
    let pool = connect(url).await?;
    netqoe_diagnoser::report::run(&pool, &args)
        .await
        .map_err(|e| (exit::FAILURE, e.into()))?;
    Ok(exit::OK)
}

async fn evaluate(url: &str, args: EvaluateArgs) -> Outcome {
    let pool = connect(url).await?;
    let passed = netqoe_diagnoser::evaluate::run(&pool, &args)
        .await
        .map_err(|e| (exit::FAILURE, e.into()))?;
    Ok(if passed { exit::OK } else { BELOW_THRESHOLD })
}
