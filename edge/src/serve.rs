//! The accept loop. warp's own `serve` offers no header-read timeout and no
//! connection cap, so a client could hold a connection open forever by sending half
//! its headers, and an unbounded number of such clients could exhaust the edge. This
//! is warp's graceful loop with both limits added; the routes are still warp filters.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use warp::Filter;
use warp::reply::Reply;

/// Connection limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most open connections; at the cap the edge stops accepting and the kernel's
    /// backlog holds newcomers, which is backpressure rather than failure.
    pub max_connections: usize,
    /// Longest a client may take to send its request headers.
    pub header_read_timeout: Duration,
    /// After the shutdown signal, longest to wait for in-flight requests.
    pub drain_timeout: Duration,
}

/// Serves `filter` on `listener` until `shutdown` resolves, then stops accepting and
/// lets in-flight requests finish, for at most `limits.drain_timeout`.
pub async fn serve<F>(
    listener: TcpListener,
    filter: F,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) where
    F: Filter<Error = std::convert::Infallible> + Clone + Send + Sync + 'static,
    F::Extract: Reply,
{
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(message = "Accept failed.", %error);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(warp::service(filter.clone()));
        let watcher = graceful.watcher();
        let header_read_timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout);
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(error) = watcher.watch(conn).await {
                tracing::debug!(message = "Connection ended with an error.", %error);
            }
        });
    }
    drop(listener);
    tracing::info!(message = "Stopped accepting; finishing in-flight requests.");
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(limits.drain_timeout) => {
            tracing::warn!(message = "In-flight requests still open at the shutdown timeout; closing them.");
        }
    }
}
