//! Accepting connections and speaking HTTP/1.1 on them, with the limits that keep slow or
//! oversized clients from holding the server: a deadline for a request's headers (which also
//! closes keep-alive connections left idle that long) and a cap on their size.
//!
//! This replaces `axum::serve`, which gives hyper no timer, so hyper's header deadline never
//! fires there: a client trickling one header byte a minute (slowloris) would keep its
//! connection, and its memory, for good. The request body's limits are the routers' business
//! ([`crate::request_limits`]), so that they answer in each listener's own error format.
//!
//! HTTP/2 is not offered: the simulator, browsers behind the load balancer and the load
//! balancer itself all speak HTTP/1.1 to us, and h2c (cleartext HTTP/2) would need limits of
//! its own.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::Response;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

/// The most bytes a request's start line and headers may take together; more is answered
/// 431 by hyper. A browser's cookies and the longest URI we route fit many times over.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Serves `router` on `listener` until `stopping` fires, then stops accepting and waits for
/// the requests in flight to finish. Each request carries its peer's address as
/// [`ConnectInfo`].
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_read_timeout: Duration,
    stopping: CancellationToken,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_header_size(MAX_HEADER_BYTES);
    let connections = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = stopping.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    wait_after_accept_error(err).await;
                    continue;
                }
            },
        };
        // Answers are small and whole: sending them at once beats Nagle's batching.
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(error = %err, "cannot set TCP_NODELAY");
        }
        let router = router.clone();
        let service =
            hyper::service::service_fn(move |request| handle(router.clone(), peer, request));
        let connection = connections.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // A client that goes away or breaks the protocol is its own problem, not ours.
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    connections.shutdown().await;
}

async fn handle(
    router: Router,
    peer: SocketAddr,
    mut request: hyper::Request<Incoming>,
) -> Result<Response, Infallible> {
    request.extensions_mut().insert(ConnectInfo(peer));
    router.oneshot(request.map(Body::new)).await
}

/// After a failed `accept`: a connection that died before it was accepted costs nothing; any
/// other error (out of file descriptors, most likely) would fail again at once, so the loop
/// pauses rather than spin and flood the log.
async fn wait_after_accept_error(err: io::Error) {
    match err.kind() {
        io::ErrorKind::ConnectionAborted
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionRefused => {}
        _ => {
            tracing::error!(error = %err, "cannot accept connections; retrying in a second");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}
