//! The `minitwit` binary: a thin shim over the `api` library, so tests and other binaries
//! build the same application.

use api::config::Command;
use api::{Application, Config};
use clap::Parser;
use database::shutdown::shutdown_signal;

/// See the workspace manifest for why the server does not use the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    if let Some(Command::Healthcheck { live }) = config.command {
        let path = if live {
            "/health/live"
        } else {
            "/health/ready"
        };
        return api::health::probe(config.api_addr, path).await;
    }
    database::telemetry::init(&config.log_format, database::telemetry::SERVER_FILTER);
    let application = Application::build(config).await?;
    application.run_until_stopped(shutdown_signal()).await
}
