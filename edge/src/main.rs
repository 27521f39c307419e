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
    let limits = edge::serve::Limits {
        max_connections: config.max_connections,
        header_read_timeout: config.header_read_timeout,
        max_header_bytes: config.max_header_bytes,
        linger_timeout: config.linger_timeout,
        // Enough to drain a body a few times the limit, which is what a vendor
        // retrying a too-large delivery sends.
        linger_max_bytes: config.max_body_bytes.saturating_mul(4).max(4 * 1024 * 1024),
        drain_timeout: config.shutdown_timeout,
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
    let stopped = |mut rx: tokio::sync::watch::Receiver<()>| async move {
        let _ = rx.changed().await;
    };
    let admin = match config.admin_addr {
        Some(addr) => {
            let admin_listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("EDGE_ADMIN_ADDR: cannot bind {addr}"))?;
            tracing::info!(message = "Admin listener (health, ready, metrics).", %addr);
            // Probes and scrapers are few and trusted: a small cap is plenty.
            let admin_limits = edge::serve::Limits {
                max_connections: 64,
                ..limits
            };
            Some(tokio::spawn(edge::serve::serve(
                admin_listener,
                edge::routes::admin_routes(app.clone()),
                admin_limits,
                stopped(stop_rx.clone()),
            )))
        }
        None => None,
    };
    let public = async {
        if admin.is_some() {
            edge::serve::serve(
                listener,
                edge::routes::webhook_routes(app.clone()),
                limits,
                stopped(stop_rx.clone()),
            )
            .await;
        } else {
            edge::serve::serve(
                listener,
                edge::routes::routes(app.clone()),
                limits,
                stopped(stop_rx.clone()),
            )
            .await;
        }
    };
    let signal = async {
        shutdown_signal().await;
        let _ = stop_tx.send(());
    };
    tokio::join!(public, signal);
    if let Some(admin) = admin {
        let _ = admin.await;
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
