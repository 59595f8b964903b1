//! The diagnoser's subcommands as its binary runs them: `migrate`, `run` (once or every
//! `--every`, with its metrics listener), `report` and `evaluate`, each ending in an exit
//! code.

use netqoe_common::exit::{self, Failure};

use crate::config::{Cli, Command, EvaluateArgs, ReportArgs, RunArgs};
use crate::Settings;

/// Runs the subcommand of `cli`; `Ok` holds the exit code of a command that ran.
pub async fn main(cli: Cli) -> Result<u8, Failure> {
    let url = cli.db.database_url.clone();
    match cli.command {
        Command::Migrate => migrate(&url).await,
        Command::Run(args) => run(&url, args).await,
        Command::Report(args) => report(&url, args).await,
        Command::Evaluate(args) => evaluate(&url, args).await,
    }
}

type Outcome = Result<u8, Failure>;

async fn connect(url: &str) -> Result<sqlx::PgPool, Failure> {
    netqoe_db::connect(url, &netqoe_db::PoolConfig::default())
        .await
        .map_err(|e| Failure::Unavailable(e.into()))
}

async fn migrate(url: &str) -> Outcome {
    netqoe_db::ensure_database(url)
        .await
        .map_err(|e| Failure::Unavailable(e.into()))?;
    let pool = connect(url).await?;
    netqoe_db::migrate(&pool)
        .await
        .map_err(|e| Failure::Failed(e.into()))?;
    Ok(exit::OK)
}

async fn run(url: &str, args: RunArgs) -> Outcome {
    let settings = Settings::from_args(&args, netqoe_model::now_ms()).map_err(Failure::config)?;
    let pool = connect(url).await?;
    let shutdown = netqoe_common::shutdown_token();
    if settings.every.is_some() {
        let handle = netqoe_common::metrics_http::install_recorder().map_err(Failure::Failed)?;
        let app = netqoe_common::metrics_http::router(handle);
        netqoe_common::metrics_http::spawn_listener(args.metrics_listen, app, shutdown.clone())
            .await
            .map_err(Failure::Unavailable)?;
    }
    crate::run(settings, pool, shutdown)
        .await
        .map_err(|e| Failure::Failed(e.into()))?;
    Ok(exit::OK)
}

async fn report(url: &str, args: ReportArgs) -> Outcome {
    let pool = connect(url).await?;
    crate::report::run(&pool, &args)
        .await
        .map_err(|e| Failure::Failed(e.into()))?;
    Ok(exit::OK)
}

async fn evaluate(url: &str, args: EvaluateArgs) -> Outcome {
    let pool = connect(url).await?;
    let passed = crate::evaluate::run(&pool, &args)
        .await
        .map_err(|e| Failure::Failed(e.into()))?;
    Ok(if passed {
        exit::OK
    } else {
        exit::BELOW_THRESHOLD
    })
}
