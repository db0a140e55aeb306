//! The two listeners of `serve`, as thin adapters over [`App`]:
//!
//! - public (`[server] listen`): `POST /webhooks/discourse`, chat commands
//!   (`POST /commands/{slack,mattermost,telegram,discord}`, see [`super::commands`]);
//! - admin (`[server] admin_listen`, optional bearer token): status page,
//!   `/api/status`, `/metrics`, `POST /-/reload`, test messages, health.
//!
//! [`run`] starts everything and returns when SIGTERM/SIGINT has been
//! handled: listeners stop accepting, workers finish their current send.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

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
    let public_srv = axum::serve(public, public_router(app.clone(), server.body_limit))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let admin_srv = axum::serve(admin, admin_router(app.clone()))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    tracing::info!(public = %public_addr, admin = %admin_addr, "listening");
    on_ready(public_addr, admin_addr);

    let (a, b) = tokio::join!(public_srv.into_future(), admin_srv.into_future());
    app.stop().await;
    tracing::info!("stopped");
    a?;
    b?;
    Ok(())
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
        .merge(super::commands::router())
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

/// Equal bytes, in time independent of where they differ (tokens, CSRF).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
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
