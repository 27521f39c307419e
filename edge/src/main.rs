//! Biometric Bridge edge.
//!
//! Delivery guarantee: a webhook gets 2xx only after Kafka acknowledged its raw
//! envelope with `acks=all` on an idempotent producer; anything else is a 4xx (bad
//! input, nothing appended) or a 503 with `Retry-After` (the vendor retries). The
//! body is appended byte for byte, verified before any parsing.

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use edge::config::Config;
use edge::{app, producer};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    config.validate()?;
    let _telemetry = bridge_core::telemetry::init("edge")?;

    let app = Arc::new(app::build(&config).await.context("start-up failed")?);
    let listener = tokio::net::TcpListener::bind(config.listen_addr)
        .await
        .with_context(|| format!("EDGE_LISTEN_ADDR: cannot bind {}", config.listen_addr))?;
    tracing::info!(message = "Edge listening.", addr = %config.listen_addr, topic = %config.raw_topic);

    edge::serve::serve(
        listener,
        edge::routes::routes(app.clone()),
        edge::serve::Limits {
            max_connections: config.max_connections,
            header_read_timeout: config.header_read_timeout,
            drain_timeout: config.shutdown_timeout,
        },
        shutdown_signal(),
    )
    .await;
    tracing::info!(message = "Draining producer.");
    if let Err(error) = producer::flush(&app.producer, config.shutdown_timeout).await {
        tracing::error!(message = "Producer flush incomplete at shutdown.", %error);
    }
    tracing::info!(message = "Edge stopped.");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!(message = "Shutdown signal received; finishing in-flight requests.");
}
