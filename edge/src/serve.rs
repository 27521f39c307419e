//! The accept loop: HTTP/1.1 only, with every connection on a clock from accept.
//!
//! warp's own `serve` has no header timeout and no connection cap, and hyper-util's
//! `auto` builder waits for a possible HTTP/2 preface with no timer at all, so silent
//! sockets could hold every connection slot. Vendors deliver over HTTP/1.1 (behind
//! TLS-terminating load balancers), so the edge speaks HTTP/1.1 only; a client that
//! sends an h2 preface gets a protocol error and is closed.
//!
//! Bounds, per connection:
//! - hyper's header timer starts as soon as the connection is first polled (right
//!   after accept) and again whenever a kept-alive connection goes idle, so silence
//!   before the first request, a slow request head, and an idle keep-alive are all
//!   cut off after `header_read_timeout`;
//! - the read buffer, and so the request head, is capped at `max_header_bytes`;
//! - once hyper is done with a connection the edge half-closes it and reads and
//!   discards what the client is still sending, for at most `linger_timeout` and
//!   `linger_max_bytes`, or until it goes quiet for a second (nginx's lingering close): without it, closing a socket with
//!   unread data makes the kernel send RST, and a client still writing its body
//!   would see "connection reset" instead of the 4xx already written to it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use warp::Filter;
use warp::reply::Reply;

/// Longest the lingering close waits for the next bytes (nginx's `lingering_timeout`
/// is 5 s; shorter here so quiet sockets give their connection slot back sooner).
const LINGER_IDLE: Duration = Duration::from_secs(1);

/// Connection limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most open connections; at the cap the edge stops accepting and the kernel's
    /// backlog holds newcomers, which is backpressure rather than failure.
    pub max_connections: usize,
    /// Longest a connection may go without a complete request head: from accept,
    /// and again each time a kept-alive connection goes idle.
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers); hyper's read buffer size.
    pub max_header_bytes: usize,
    /// Longest the lingering close reads what a client still sends after the answer.
    pub linger_timeout: Duration,
    /// Most bytes the lingering close reads and discards.
    pub linger_max_bytes: u64,
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
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
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
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            connection(stream, service, limits, stop).await;
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    tracing::info!(message = "Stopped accepting; finishing in-flight requests.");
    // Every connection task holds a permit: all of them back means all finished.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    tokio::select! {
        _ = permits.acquire_many(all) => {}
        _ = tokio::time::sleep(limits.drain_timeout) => {
            tracing::warn!(message = "In-flight requests still open at the shutdown timeout; closing them.");
        }
    }
}

type BoxedResponse =
    Pin<Box<dyn Future<Output = Result<warp::reply::Response, std::convert::Infallible>> + Send>>;

async fn connection<S>(
    stream: TcpStream,
    service: S,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) where
    S: hyper::service::Service<
            http::Request<hyper::body::Incoming>,
            Response = warp::reply::Response,
            Error = std::convert::Infallible,
        > + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    // `poll_without_shutdown` (which gives the socket back for the lingering close)
    // needs an `Unpin` service and future; warp's are not, so share and box them.
    let service = Arc::new(service);
    let service =
        hyper::service::service_fn(move |req| -> BoxedResponse { Box::pin(service.call(req)) });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes);
    let mut conn = builder.serve_connection(TokioIo::new(stream), service);
    let mut stopping = *stop.borrow();
    if stopping {
        std::pin::Pin::new(&mut conn).graceful_shutdown();
    }
    let result = loop {
        tokio::select! {
            r = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => break r,
            changed = stop.changed(), if !stopping => {
                stopping = true;
                if changed.is_ok() {
                    // Finishes the request in progress, then closes.
                    std::pin::Pin::new(&mut conn).graceful_shutdown();
                }
            }
        }
    };
    if let Err(error) = &result {
        tracing::debug!(message = "Connection ended with an error.", %error);
        // Nothing was answered to a client that never sent a request head in time.
        if error.is_timeout() {
            return;
        }
    }
    let io = conn.into_parts().io.into_inner();
    linger(io, limits).await;
}

/// Half-closes `stream` (the client reads our answer, then EOF) and discards what the
/// client still sends, until it closes or a bound is reached.
async fn linger(mut stream: TcpStream, limits: Limits) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let drain = async {
        let mut buf = [0u8; 8192];
        let mut total = 0u64;
        while total < limits.linger_max_bytes {
            // A client still sending its body keeps the socket busy; one that went
            // quiet (a slow-body attacker after its 408) frees the slot quickly.
            match tokio::time::timeout(LINGER_IDLE, stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
                Ok(Ok(n)) => total += n as u64,
            }
        }
    };
    let _ = tokio::time::timeout(limits.linger_timeout, drain).await;
}
