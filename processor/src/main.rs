//! Biometric Bridge processor.
//!
//! Delivery guarantee: at least once into PostgreSQL and the readings topic, exactly
//! once in the `readings` table (its primary key makes replays idempotent). A raw
//! record's offset is stored only after its rows are committed and its publishes are
//! acknowledged; records that can never be processed go to the dead-letter topic with
//! their original bytes, and the partition moves on.

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use processor::config::{Cli, Command};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = cli.config;
    config.validate()?;
    let _telemetry = bridge_core::telemetry::init("processor")?;

    match cli.command.unwrap_or(Command::Run) {
        Command::Migrate => {
            let sink = processor::sink::postgres::PgSink::connect(&config.database_url, 1)
                .await
                .context("DATABASE_URL")?;
            sink.migrate().await.context("migrations failed")?;
            tracing::info!(message = "Migrations applied.");
            Ok(())
        }
        Command::Run => {
            let shutdown = CancellationToken::new();
            let metrics = Arc::new(processor::metrics::Metrics::new());
            let service = processor::service::start(&config, metrics, shutdown.clone())
                .await
                .context("start-up failed")?;
            tokio::spawn({
                let shutdown = shutdown.clone();
                async move {
                    shutdown_signal().await;
                    tracing::info!(message = "Shutdown signal received; draining.");
                    shutdown.cancel();
                }
            });
            service.await
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
