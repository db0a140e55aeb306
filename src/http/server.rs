//! The two listeners of `serve`, as thin adapters over [`App`]:
//!
//! - public (`[server] listen`): `POST /webhooks/discourse`;
//! - admin (`[server] admin_listen`, optional bearer token): status page,
//!   `/api/status`, `/metrics`, `POST /-/reload`, test messages, health.
//!
//! [`run`] starts everything and returns when SIGTERM/SIGINT has been
//! handled: listeners stop accepting, workers finish their current send.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::metrics::CONTENT_TYPE;
use super::status::render_html;
use crate::ingest::WebhookRequest;
use crate::service::{App, ServeError, ServeOptions, Trigger, watch_config};

/// Runs the relay until SIGTERM or SIGINT. `on_ready` gets the bound
/// addresses (public, admin): tests bind port 0 and read them.
pub async fn run(
    opts: ServeOptions,
    on_ready: impl FnOnce(SocketAddr, SocketAddr),
) -> Result<(), ServeError> {
    let app = App::start(&opts).await?;
    let server = app.pipeline.load().config.server.clone();
    let listen = opts.listen.unwrap_or(server.listen);
    let admin_listen = opts.admin_listen.unwrap_or(server.admin_listen);

    let public = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| ServeError::Bind(listen.to_string(), e))?;
    let admin = tokio::net::TcpListener::bind(admin_listen)
        .await
        .map_err(|e| ServeError::Bind(admin_listen.to_string(), e))?;
    let (public_addr, admin_addr) = (public.local_addr()?, admin.local_addr()?);

    let _watcher = match watch_config(app.clone()) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the config file; reload with SIGHUP or POST /-/reload");
            None
        }
    };
    spawn_signals(app.clone());

    let shutdown = app.shutdown.clone();
    let timeouts = Timeouts {
        header: server.header_timeout,
        body: server.body_timeout,
    };
    let public_srv = serve_listener(
        public,
        public_router(app.clone(), server.body_limit),
        timeouts,
        shutdown.clone(),
    );
    let admin_srv = serve_listener(admin, admin_router(app.clone()), timeouts, shutdown.clone());
    tracing::info!(public = %public_addr, admin = %admin_addr, "listening");
    on_ready(public_addr, admin_addr);

    let (a, b) = tokio::join!(public_srv, admin_srv);
    app.stop().await;
    tracing::info!("stopped");
    a?;
    b?;
    Ok(())
}

/// How long a client may take to send a request's headers, and then its body.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    header: Duration,
    body: Duration,
}

/// Serves `router` on `listener` over HTTP/1.1 until `shutdown`, then lets
/// the requests in progress finish (idle keep-alive connections close at once).
///
/// This replaces `axum::serve`, which sets no hyper timer and so has no
/// header read timeout, and no body timeout: a client trickling bytes
/// (slow-loris) held its connection and task forever.
async fn serve_listener(
    listener: tokio::net::TcpListener,
    router: Router,
    timeouts: Timeouts,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::server::graceful::GracefulShutdown;
    use hyper_util::service::TowerToHyperService;

    let router = router.layer(axum::middleware::from_fn_with_state(
        timeouts.body,
        body_deadline,
    ));
    let mut http = hyper::server::conn::http1::Builder::new();
    // The header timeout also ends keep-alive connections idle that long.
    http.timer(TokioTimer::new())
        .header_read_timeout(timeouts.header);
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    if !is_connection_error(&e) {
                        // Out of file descriptors and the like: do not spin.
                        tracing::warn!(error = %e, "cannot accept a connection");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                            _ = shutdown.cancelled() => break,
                        }
                    }
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let conn = http.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(router.clone()),
        );
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // Client errors (resets, header timeouts) end only that connection.
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Errors of one incoming connection, not of the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// Gives every request body a deadline (from the end of its headers): a
/// client still sending its body then is answered 408 and disconnected.
async fn body_deadline(
    State(limit): State<Duration>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let expired = Arc::new(AtomicBool::new(false));
    let flag = expired.clone();
    let req = req.map(|inner| {
        axum::body::Body::new(DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(limit)),
            expired: flag,
        })
    });
    let response = next.run(req).await;
    if expired.load(Ordering::Acquire) {
        tracing::info!(timeout = ?limit, "request body not received in time; closing the connection");
        return (
            StatusCode::REQUEST_TIMEOUT,
            [(header::CONNECTION, "close")],
            "request body not received in time\n",
        )
            .into_response();
    }
    response
}

#[derive(Debug, thiserror::Error)]
#[error("request body not received in time")]
struct BodyTimeout;

/// A request body that fails once its deadline passes.
struct DeadlineBody {
    inner: axum::body::Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    expired: Arc<AtomicBool>,
}

impl hyper::body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, axum::Error>>> {
        // Data already received is taken even at the deadline.
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.expired.store(true, Ordering::Release);
            return Poll::Ready(Some(Err(axum::Error::new(BodyTimeout))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

fn spawn_signals(app: Arc<App>) {
    use tokio::signal::unix::{SignalKind, signal};
    tokio::spawn(async move {
        let (Ok(mut hup), Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::hangup()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        loop {
            tokio::select! {
                _ = hup.recv() => { let _ = app.reload(Trigger::Sighup).await; }
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        tracing::info!("shutting down: no new requests; finishing sends in flight");
        app.shutdown.cancel();
    });
}

pub fn public_router(app: Arc<App>, body_limit: usize) -> Router {
    Router::new()
        .route("/webhooks/discourse", post(webhook))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(app)
}

async fn webhook(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let req = WebhookRequest {
        headers: headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect(),
        body: body.to_vec(),
    };
    let answer = app.accept(req).await;
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, answer.body + "\n").into_response()
}

pub fn admin_router(app: Arc<App>) -> Router {
    let guarded = Router::new()
        .route("/", get(status_page))
        .route("/api/status", get(status_json))
        .route("/metrics", get(metrics))
        .route("/-/reload", post(reload))
        .route("/api/chats/{name}/test", post(test_message))
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            require_token,
        ));
    Router::new()
        .merge(guarded)
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(app)
}

/// With `[server] admin_token` set, every admin route but health needs
/// `Authorization: Bearer <token>` (compared in constant time).
async fn require_token(
    State(app): State<Arc<App>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let expected = app.pipeline.load().config.server.admin_token.clone();
    if let Some(token) = expected {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !constant_time_eq(given.as_bytes(), token.expose().as_bytes()) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "admin token required\n",
            )
                .into_response();
        }
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    // Hash first so the comparison time does not depend on lengths either.
    let (ha, hb) = (Sha256::digest(a), Sha256::digest(b));
    ha.iter()
        .zip(hb.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

async fn status_page(State(app): State<Arc<App>>) -> Html<String> {
    Html(render_html(&app.status().await))
}

async fn status_json(State(app): State<Arc<App>>) -> Response {
    axum::Json(app.status().await).into_response()
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], app.metrics.encode()).into_response()
}

async fn reload(State(app): State<Arc<App>>) -> Response {
    match app.reload(Trigger::Http).await {
        Ok(hash) => axum::Json(json!({"ok": true, "hash": hash})).into_response(),
        Err(errors) => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"ok": false, "errors": errors})),
        )
            .into_response(),
    }
}

async fn test_message(State(app): State<Arc<App>>, Path(name): Path<String>) -> Response {
    match app.send_test(&name, "admin api").await {
        Ok(Some(seq)) => (
            StatusCode::ACCEPTED,
            axum::Json(json!({"queued": true, "chat": name, "seq": seq})),
        )
            .into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"queued": false, "error": format!("no chat named `{name}`")})),
        )
            .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"queued": false, "error": e.to_string()})),
        )
            .into_response(),
    }
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    if app.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}
