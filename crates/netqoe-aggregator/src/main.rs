//! `netqoe-aggregator`: parse the command line, set up logging, run the chosen subcommand.

use std::process::ExitCode;

use clap::Parser;
use netqoe_aggregator::cli::{Cli, Command, DlqCommand};
use netqoe_common::exit;

/// mimalloc instead of the system allocator: the consume loop allocates and frees batches of
/// thousands of events and window states per transaction, and with glibc's allocator that
/// churn (page faults on regrown buffers, fragmentation) cost about a tenth of the
/// throughput in `make bench`.
#[global_allocator]
static ALLOCATOR: netqoe_common::alloc::MiMalloc = netqoe_common::alloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    netqoe_common::alloc::tune();
    let mut cli = Cli::parse();
    netqoe_common::logging::init(cli.log.log_format);
    let command = cli.command.take().unwrap_or(Command::Run);
    let (result, code_on_error) = match command {
        Command::Migrate => (
            netqoe_aggregator::migrate(&cli.db.database_url).await,
            exit::UNAVAILABLE,
        ),
        Command::Run => (run(&cli).await, exit::FAILURE),
        Command::Dlq { command } => (dlq(&cli, command).await, exit::FAILURE),
    };
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "netqoe-aggregator failed");
            ExitCode::from(code_on_error)
        }
    }
}

async fn run(cli: &Cli) -> anyhow::Result<()> {
    let handle = netqoe_common::metrics_http::install_recorder()?;
    let listener = tokio::net::TcpListener::bind(cli.run.metrics_listen).await?;
    let pool = netqoe_db::lazy_pool(
        &cli.db.database_url,
        &netqoe_db::PoolConfig {
            max_connections: cli.run.db_connections,
            ..Default::default()
        },
    )?;
    let settings = netqoe_aggregator::RunSettings::from_cli(&cli.nats.nats_url, &cli.run);
    let shutdown = netqoe_common::shutdown_token();
    netqoe_aggregator::run(settings, pool, Some((listener, handle)), shutdown).await
}

async fn dlq(cli: &Cli, command: DlqCommand) -> anyhow::Result<()> {
    let client = netqoe_nats::connect(&cli.nats.nats_url, "netqoe-aggregator-dlq", true).await?;
    let js = async_nats::jetstream::new(client);
    match command {
        DlqCommand::List { json } => {
            for e in netqoe_aggregator::dlq::list(&js).await? {
                if json {
                    println!("{}", serde_json::to_string(&e)?);
                } else {
                    println!(
                        "{}\t{}\tdeliveries={}\t{}",
                        e.seq, e.subject, e.deliveries, e.reason
                    );
                }
            }
        }
        DlqCommand::Replay { seq, .. } => {
            let n = netqoe_aggregator::dlq::replay(&js, seq).await?;
            println!("replayed {n} dead letters");
        }
    }
    Ok(())
}
