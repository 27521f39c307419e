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

    let (stopping_tx, mut stopping) = tokio::sync::watch::channel(false);
    let server = warp::serve(edge::routes::routes(app.clone()))
        .incoming(listener)
        .graceful(async move {
            shutdown_signal().await;
            let _ = stopping_tx.send(true);
        })
        .run();
    // Graceful: stop accepting, let in-flight requests get their true answer, but
    // only for SHUTDOWN_TIMEOUT: a stuck client must not keep the process alive.
    let drain_bound = async {
        let _ = stopping.wait_for(|s| *s).await;
        tokio::time::sleep(config.shutdown_timeout).await;
    };
    tokio::select! {
        _ = server => {}
        _ = drain_bound => {
            tracing::warn!(message = "In-flight requests still open at the shutdown timeout; closing them.");
        }
    }
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
