//! `netqoe-ingest`: parse flags, set up logging and metrics, bind, run until SIGTERM.

use std::process::ExitCode;

use clap::Parser;
use netqoe_common::exit;
use netqoe_ingest::{Cli, Settings};

/// mimalloc, as in the aggregator: every request allocates and frees its body, events and
/// publish futures, and the benchmark's in-process reference handler uses the same allocator.
#[global_allocator]
static ALLOCATOR: netqoe_common::alloc::MiMalloc = netqoe_common::alloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    netqoe_common::alloc::tune();
    let cli = Cli::parse();
    netqoe_common::logging::init(cli.log.log_format);
    let settings = match Settings::from_cli(&cli) {
        Ok(s) => s,
        Err(message) => {
            tracing::error!(error = %message, "invalid configuration");
            return ExitCode::from(exit::CONFIG);
        }
    };
    let handle = match netqoe_common::metrics_http::install_recorder() {
        Ok(h) => h,
        Err(error) => {
            tracing::error!(error = %error, "failed to install the metrics recorder");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let api = match tokio::net::TcpListener::bind(cli.listen).await {
        Ok(l) => l,
        Err(error) => {
            tracing::error!(error = %error, addr = %cli.listen, "cannot bind the API address");
            return ExitCode::from(exit::UNAVAILABLE);
        }
    };
    let metrics = match tokio::net::TcpListener::bind(cli.metrics_listen).await {
        Ok(l) => l,
        Err(error) => {
            tracing::error!(error = %error, addr = %cli.metrics_listen, "cannot bind the metrics address");
            return ExitCode::from(exit::UNAVAILABLE);
        }
    };
    let shutdown = netqoe_common::shutdown_token();
    match netqoe_ingest::run(settings, api, Some((metrics, handle)), shutdown).await {
        Ok(()) => ExitCode::from(exit::OK),
        Err(error) => {
            tracing::error!(error = %error, "netqoe-ingest failed");
            ExitCode::from(error.exit_code())
        }
    }
}
