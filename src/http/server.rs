//! The two listeners of `serve`, as thin adapters over [`App`]:
//!
//! - public (`[server] listen`): `POST /webhooks/discourse`, chat commands
//!   (`POST /commands/{slack,mattermost,telegram,discord}`, see [`super::commands`]);
//! - admin (`[server] admin_listen`, optional token as bearer or login
//!   cookie): the pane (`/`, a chat's page `/chats/{name}` with its recent
//!   deliveries, dead letters, "send test message" forms with a CSRF token),
//!   `/api/status`, `/api/chats/{name}/deliveries`, `/metrics`,
//!   `POST /-/reload`, test messages, health.
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
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::status::{
    DeadLetterView, DeliveryView, FILTER_SCRIPT, Pane, path_segment, render_chat,
    render_dead_letters, render_html, render_login,
};
use crate::delivery::running::DeadLetterChange;
use crate::delivery::store::{AttemptResult, DeadLetter, DeliveryRecord, Payload};
use crate::ingest::WebhookRequest;
use crate::observe::metrics::{CONTENT_TYPE, EventOutcome};
use crate::observe::status::rfc3339;
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
    // Each listener has its own limit, so a flood of the public one leaves
    // the admin pane and /metrics reachable.
    let public_srv = serve_listener(
        public,
        public_router(app.clone(), server.body_limit),
        timeouts,
        Admission::new("public", server.max_connections, app.metrics.clone()),
        shutdown.clone(),
    );
    let admin_srv = serve_listener(
        admin,
        admin_router(app.clone()),
        timeouts,
        Admission::new("admin", server.max_connections, app.metrics.clone()),
        shutdown.clone(),
    );
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

/// How many connections one listener serves at once, and what happens to
/// the others.
///
/// A connection over the limit is accepted and answered `503` with
/// `Retry-After` at once, rather than left waiting in the kernel backlog
/// (a semaphore taken before `accept`): Discourse then gets a quick answer
/// it retries later instead of a request that hangs until its own timeout,
/// the operator sees the refusals in `connections_refused_total`, and no
/// accepted socket ever waits for an unbounded time.
struct Admission {
    /// The `listener` label: `public` or `admin`.
    listener: &'static str,
    open: Arc<tokio::sync::Semaphore>,
    /// Refusals in progress (see [`REFUSING_AT_ONCE`]).
    refusing: Arc<tokio::sync::Semaphore>,
    metrics: Arc<crate::observe::metrics::Metrics>,
}

/// Refused connections answered at the same time. Each lingers up to
/// [`REFUSAL_LINGER`], so this bounds what a connection flood can hold;
/// beyond it, an excess connection is closed without an answer.
const REFUSING_AT_ONCE: usize = 64;

/// How long a refused connection is kept: to read its request's head,
/// answer, and read and discard the rest (closing with unread bytes would
/// send a reset, which many clients report instead of the answer).
const REFUSAL_LINGER: Duration = Duration::from_secs(2);

/// How often, at most, a listener logs that it is refusing connections.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// The body of the 503 answer to a connection over the limit.
const REFUSAL_BODY: &str = "too many connections: try again shortly ([server] max_connections)\n";

impl Admission {
    fn new(
        listener: &'static str,
        max: usize,
        metrics: Arc<crate::observe::metrics::Metrics>,
    ) -> Self {
        // The semaphore's own ceiling; a config can ask for more (usize).
        let max = max.clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        Self {
            listener,
            open: Arc::new(tokio::sync::Semaphore::new(max)),
            refusing: Arc::new(tokio::sync::Semaphore::new(REFUSING_AT_ONCE)),
            metrics,
        }
    }

    /// A slot for a new connection, or `None` when the listener is full.
    fn admit(&self) -> Option<OpenConnection> {
        let permit = self.open.clone().try_acquire_owned().ok()?;
        self.metrics.connection_opened(self.listener);
        Some(OpenConnection {
            _permit: permit,
            listener: self.listener,
            metrics: self.metrics.clone(),
        })
    }

    /// Answers a connection over the limit with a 503 (in its own task,
    /// bounded in number and time) and closes it.
    fn refuse(&self, stream: tokio::net::TcpStream) {
        self.metrics.connection_refused(self.listener);
        let Ok(permit) = self.refusing.clone().try_acquire_owned() else {
            return;
        };
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(REFUSAL_LINGER, answer_refusal(stream)).await;
        });
    }
}

/// One served connection: its slot in the listener's limit and its place
/// in `connections_open`, both given back when it is dropped.
struct OpenConnection {
    _permit: tokio::sync::OwnedSemaphorePermit,
    listener: &'static str,
    metrics: Arc<crate::observe::metrics::Metrics>,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.metrics.connection_closed(self.listener);
    }
}

/// The complete 503 answer to a connection over the limit.
fn refusal() -> String {
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{REFUSAL_BODY}",
        REFUSAL_BODY.len()
    )
}

/// The most of a refused request's head read before answering anyway.
const REFUSAL_HEAD_LIMIT: usize = 16 * 1024;

/// Reads the request's head (an answer sent before the request is, on an
/// idle connection, is an error to clients such as hyper's), writes the
/// 503, ends the sending side, then discards what the client still sends
/// until it closes (the caller bounds the time).
async fn answer_refusal(mut stream: tokio::net::TcpStream) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < REFUSAL_HEAD_LIMIT {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    stream.write_all(refusal().as_bytes()).await?;
    stream.shutdown().await?;
    while stream.read(&mut buf).await? > 0 {}
    Ok(())
}

/// Serves `router` on `listener` over HTTP/1.1 until `shutdown`, then lets
/// the requests in progress finish (idle keep-alive connections close at once).
/// At most `admission`'s limit of connections are served at once.
///
/// This replaces `axum::serve`, which sets no hyper timer and so has no
/// header read timeout, and no body timeout: a client trickling bytes
/// (slow-loris) held its connection and task forever.
async fn serve_listener(
    listener: tokio::net::TcpListener,
    router: Router,
    timeouts: Timeouts,
    admission: Admission,
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
    let mut last_refusal_log: Option<tokio::time::Instant> = None;
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
        let Some(slot) = admission.admit() else {
            if last_refusal_log.is_none_or(|t| t.elapsed() >= REFUSAL_LOG_EVERY) {
                last_refusal_log = Some(tokio::time::Instant::now());
                tracing::warn!(
                    listener = admission.listener,
                    "at [server] max_connections: answering new connections 503"
                );
            }
            admission.refuse(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = http.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(router.clone()),
        );
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _slot = slot;
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
            // Config caps durations, but a sum past the clock's range
            // must not panic a request: no deadline then.
            deadline: tokio::time::Instant::now().checked_add(limit),
            timer: None,
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
    deadline: Option<tokio::time::Instant>,
    /// Armed only when the body is not all there yet: a webhook body
    /// usually arrives with its headers, and then no timer is registered.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
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
        let Some(deadline) = self.deadline else {
            return Poll::Pending;
        };
        let timer =
            (self.timer).get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.as_mut().poll(cx).is_ready() {
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
        .merge(super::commands::router())
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::Extension(BodyLimit(body_limit)))
        .with_state(app)
}

/// The body limit the public router enforces (set at start), for the 413's reason.
#[derive(Debug, Clone, Copy)]
struct BodyLimit(usize);

async fn webhook(
    State(app): State<Arc<App>>,
    axum::Extension(BodyLimit(limit)): axum::Extension<BodyLimit>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        // The body limit is enforced while the body is read, before
        // `accept` could count it: count the 413 here.
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let event = headers
                .get("x-discourse-event")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            app.metrics.event(event, EventOutcome::TooLarge);
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                [(header::CONNECTION, "close")],
                format!("request body over the {limit}-byte limit ([server] body_limit)\n"),
            )
                .into_response();
        }
        // A body timeout: `body_deadline` turns this into a 408.
        Err(rejection) => return rejection.into_response(),
    };
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
    let keys = Arc::new(PaneKeys::new());
    let guarded = Router::new()
        .route("/", get(status_page))
        .route("/api/status", get(status_json))
        .route("/metrics", get(metrics))
        .route("/-/reload", post(reload))
        .route("/api/chats/{name}/test", post(test_message))
        .route("/api/chats/{name}/dead-letters", get(dead_letters_json))
        .route("/api/chats/{name}/deliveries", get(deliveries_json))
        .route(
            "/api/chats/{name}/dead-letters/{action}",
            post(dead_letters_act_json),
        )
        .route(
            "/chats/{name}/dead-letters/{action}",
            post(dead_letters_act_from_pane),
        )
        .route("/chats/{name}/test", post(test_from_pane))
        .route("/chats/{name}/dead-letters", get(dead_letters_page))
        .route("/chats/{name}", get(chat_page))
        .route("/logout", post(logout))
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            require_token,
        ));
    Router::new()
        .merge(guarded)
        .route("/login", get(login_page).post(login))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .layer(axum::Extension(keys))
        .with_state(app)
}

/// Per-process secrets of the pane: the CSRF token every form carries, and
/// the key that turns the admin token into a session cookie. Both change on
/// restart (forms and sessions from before then stop working).
struct PaneKeys {
    csrf: String,
    session_key: [u8; 32],
}

impl PaneKeys {
    fn new() -> Self {
        let mut seed = [0u8; 64];
        if let Err(e) = getrandom::fill(&mut seed) {
            // Without OS randomness the keys would be guessable: refuse
            // every form and session rather than accept forged ones.
            tracing::error!(error = %e, "no OS randomness: the admin pane's forms and login are disabled");
            return Self {
                csrf: String::new(),
                session_key: [0; 32],
            };
        }
        let mut session_key = [0u8; 32];
        session_key.copy_from_slice(&seed[32..]);
        Self {
            csrf: hex::encode(&seed[..32]),
            session_key,
        }
    }

    /// The cookie value for an admin token: an HMAC, so the cookie never
    /// holds the token itself and dies with the process or the token.
    fn session(&self, token: &str) -> String {
        use hmac::{Hmac, KeyInit, Mac};
        let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(&self.session_key) else {
            return String::new();
        };
        mac.update(token.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

const SESSION_COOKIE: &str = "relay_admin";

/// The value of cookie `name`, if sent.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// With `[server] admin_token` set, every admin route but health and login
/// needs `Authorization: Bearer <token>` or the session cookie set by
/// `POST /login` (both compared in constant time). Browsers asking for
/// HTML get the login form with the 401.
async fn require_token(
    State(app): State<Arc<App>>,
    axum::Extension(keys): axum::Extension<Arc<PaneKeys>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let expected = app.pipeline.load().config.server.admin_token.clone();
    if let Some(token) = expected {
        let headers = req.headers();
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let by_bearer = constant_time_eq(bearer.as_bytes(), token.expose().as_bytes());
        let session = keys.session(token.expose());
        let by_cookie = !keys.csrf.is_empty()
            && cookie(headers, SESSION_COOKIE)
                .is_some_and(|c| constant_time_eq(c.as_bytes(), session.as_bytes()));
        if !by_bearer && !by_cookie {
            let wants_html = headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("text/html"));
            if wants_html {
                return (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, "Bearer")],
                    pane_headers(),
                    Html(render_login(&keys.csrf, false)),
                )
                    .into_response();
            }
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

/// Headers of every pane page: the only script allowed is the filter's,
/// forms post only here, and no other site may frame the pane.
fn pane_headers() -> [(header::HeaderName, String); 3] {
    use base64::Engine as _;
    use sha2::{Digest, Sha256};
    let script = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(FILTER_SCRIPT));
    [
        (
            header::CONTENT_SECURITY_POLICY,
            format!(
                "default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{script}'; \
                 form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
            ),
        ),
        (header::X_FRAME_OPTIONS, "DENY".into()),
        (header::REFERRER_POLICY, "same-origin".into()),
    ]
}

/// A form post is ours when it carries this process's CSRF token and, when
/// the browser says where it comes from (`Sec-Fetch-Site`, `Origin`), that
/// is this same origin.
fn check_form(headers: &HeaderMap, keys: &PaneKeys, form: &Form) -> Result<(), &'static str> {
    let given = form.get("csrf").map(String::as_str).unwrap_or("");
    if keys.csrf.is_empty() || !constant_time_eq(given.as_bytes(), keys.csrf.as_bytes()) {
        return Err("the form is stale or forged (CSRF token mismatch): reload the page");
    }
    let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if let Some(site) = site
        && !matches!(site, "same-origin" | "none")
    {
        return Err("cross-site form posts are refused");
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let same = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .is_some_and(|o| !host.is_empty() && o == host);
        if !same {
            return Err("cross-origin form posts are refused");
        }
    }
    Ok(())
}

type Form = std::collections::HashMap<String, String>;

fn parse_form(body: &[u8]) -> Form {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn forbidden(why: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{why}\n"),
    )
        .into_response()
}

async fn login_page(axum::Extension(keys): axum::Extension<Arc<PaneKeys>>) -> Response {
    (pane_headers(), Html(render_login(&keys.csrf, false))).into_response()
}

async fn login(
    State(app): State<Arc<App>>,
    axum::Extension(keys): axum::Extension<Arc<PaneKeys>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = parse_form(&body);
    if let Err(why) = check_form(&headers, &keys, &form) {
        return forbidden(why);
    }
    let Some(token) = app.pipeline.load().config.server.admin_token.clone() else {
        return Redirect::to("/").into_response();
    };
    let given = form.get("token").map(String::as_str).unwrap_or("");
    if !constant_time_eq(given.as_bytes(), token.expose().as_bytes()) {
        tracing::warn!("admin pane login with a wrong token");
        return (
            StatusCode::UNAUTHORIZED,
            pane_headers(),
            Html(render_login(&keys.csrf, true)),
        )
            .into_response();
    }
    // HttpOnly: no script reads it; SameSite=Strict: no other site's page
    // sends it. No `Secure`: the admin listener is usually plain HTTP on
    // loopback (put TLS in front and it still works).
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
        keys.session(token.expose())
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}

async fn logout(
    axum::Extension(keys): axum::Extension<Arc<PaneKeys>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(why) = check_form(&headers, &keys, &parse_form(&body)) {
        return forbidden(why);
    }
    let clear = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    ([(header::SET_COOKIE, clear)], Redirect::to("/login")).into_response()
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

#[derive(serde::Deserialize, Default)]
struct PageQuery {
    #[serde(default)]
    q: String,
    sent: Option<String>,
}

async fn status_page(
    State(app): State<Arc<App>>,
    axum::Extension(keys): axum::Extension<Arc<PaneKeys>>,
    Query(query): Query<PageQuery>,
) -> Response {
    let report = app.status().await;
    let login = app.pipeline.load().config.server.admin_token.is_some();
    let pane = Pane {
        csrf: &keys.csrf,
        query: &query.q,
        sent: query.sent.as_deref(),
        login,
    };
    (pane_headers(), Html(render_html(&report, &pane))).into_response()
}

/// The pane's "send test message" button: a CSRF-checked form post, then
/// back to the pane (303, so reloading does not send again).
async fn test_from_pane(
    State(app): State<Arc<App>>,
    axum::Extension(keys): axum::Extension<Arc<PaneKeys>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(why) = check_form(&headers, &keys, &parse_form(&body)) {
        return forbidden(why);
    }
    match app.send_test(&name, "admin pane").await {
        Ok(Some(_)) => {
            // The row's id (`chat_row_id`) before HTML escaping.
            let row: String = name
                .chars()
                .map(|c| if c.is_whitespace() { '-' } else { c })
                .collect();
            Redirect::to(&format!(
                "/?sent={}#chat-{}",
                path_segment(&name),
                path_segment(&row)
            ))
        }
        .into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, format!("no chat named `{name}`\n")).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}

/// How many dead letters a page or answer shows at most.
const DEAD_LETTER_LIMIT: usize = 200;

async fn dead_letter_views(app: &App, name: &str) -> Result<Vec<DeadLetterView>, Response> {
    chat_rows(
        name,
        app.dead_letters(name, DEAD_LETTER_LIMIT),
        dead_letter_view,
    )
    .await
}

/// A chat's stored rows as views: 404 for an unknown chat, 503 when the
/// store cannot answer.
async fn chat_rows<T, V>(
    name: &str,
    found: impl Future<Output = Result<Option<Vec<T>>, crate::delivery::store::StoreError>>,
    view: fn(T) -> V,
) -> Result<Vec<V>, Response> {
    match found.await {
        Ok(Some(rows)) => Ok(rows.into_iter().map(view).collect()),
        Ok(None) => {
            Err((StatusCode::NOT_FOUND, format!("no chat named `{name}`\n")).into_response())
        }
        Err(e) => Err((StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response()),
    }
}

fn dead_letter_view(d: DeadLetter) -> DeadLetterView {
    let link = |event: &crate::ingest::Event| {
        (event.notice.as_ref().map(|n| n.url.clone()))
            .or_else(|| event.post.as_ref().map(|p| p.url.clone()))
            .or_else(|| Some(event.topic.url.clone()))
            .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
    };
    let (what, url) = match &d.delivery.payload {
        Payload::Edit { event, strike } => (
            format!(
                "{} ({} of the sent message)",
                event.headline(),
                if *strike { "strike-through" } else { "edit" }
            ),
            link(event),
        ),
        Payload::Delete { event } => (
            format!("{} (deletion of the sent message)", event.headline()),
            link(event),
        ),
        Payload::Event { event, filter } => (
            format!("{} ({})", event.headline(), filter.as_str()),
            link(event),
        ),
        Payload::Test { requested_by } => {
            (format!("test message requested by {requested_by}"), None)
        }
        Payload::Alert { about, .. } => (format!("alert: chat {about} is failing"), None),
    };
    DeadLetterView {
        id: d.id,
        failed_at: rfc3339(d.failed_at_ms),
        reason: d.reason,
        attempts: d.delivery.attempts,
        queued_at: rfc3339(d.delivery.created_at_ms),
        what,
        url,
    }
}

async fn dead_letters_page(
    State(app): State<Arc<App>>,
    axum::Extension(keys): axum::Extension<Arc<PaneKeys>>,
    Path(name): Path<String>,
) -> Response {
    match dead_letter_views(&app, &name).await {
        Ok(v) => (
            pane_headers(),
            Html(render_dead_letters(&name, &v, &keys.csrf)),
        )
            .into_response(),
        Err(r) => r,
    }
}

/// Does `change` to `chat`'s dead letters (`ids`, or all): how many, or the
/// answer when there is no such chat or the store failed.
async fn change_dead_letters(
    app: &App,
    chat: &str,
    change: DeadLetterChange,
    ids: Option<Vec<u64>>,
) -> Result<u64, Response> {
    match app.change_dead_letters(chat, change, ids).await {
        Ok(Some(n)) => Ok(n),
        Ok(None) => {
            Err((StatusCode::NOT_FOUND, format!("no chat named `{chat}`\n")).into_response())
        }
        Err(e) => Err((StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response()),
    }
}

/// `POST /api/chats/{name}/dead-letters/{resend|drop}`, with an optional
/// JSON body `{"ids": [..]}` (none: all of the chat's).
async fn dead_letters_act_json(
    State(app): State<Arc<App>>,
    Path((name, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let Some(change) = DeadLetterChange::parse(&action) else {
        return (
            StatusCode::NOT_FOUND,
            format!("no dead-letter action `{action}` (resend, drop)\n"),
        )
            .into_response();
    };
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Chosen {
        ids: Option<Vec<u64>>,
    }
    let ids = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match serde_json::from_slice::<Chosen>(&body) {
            Ok(c) => c.ids,
            Err(e) => {
                return (
                    StatusCode::BAD_REQUEST,
                    format!("the body must be {{\"ids\": [..]}} or empty: {e}\n"),
                )
                    .into_response();
            }
        }
    };
    match change_dead_letters(&app, &name, change, ids).await {
        Ok(n) => axum::Json(json!({"chat": name, "action": action, "count": n})).into_response(),
        Err(r) => r,
    }
}

/// The dead-letter page's buttons: CSRF-checked form posts (`id`: one
/// letter, none: all), then back to the page (303).
async fn dead_letters_act_from_pane(
    State(app): State<Arc<App>>,
    axum::Extension(keys): axum::Extension<Arc<PaneKeys>>,
    Path((name, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = parse_form(&body);
    if let Err(why) = check_form(&headers, &keys, &form) {
        return forbidden(why);
    }
    let Some(change) = DeadLetterChange::parse(&action) else {
        return (
            StatusCode::NOT_FOUND,
            format!("no dead-letter action `{action}` (resend, drop)\n"),
        )
            .into_response();
    };
    let ids = match form.get("id").map(|v| v.parse::<u64>()) {
        None => None,
        Some(Ok(id)) => Some(vec![id]),
        Some(Err(_)) => {
            return (
                StatusCode::BAD_REQUEST,
                "`id` must be a dead letter's number\n",
            )
                .into_response();
        }
    };
    match change_dead_letters(&app, &name, change, ids).await {
        Ok(_) => {
            Redirect::to(&format!("/chats/{}/dead-letters", path_segment(&name))).into_response()
        }
        Err(r) => r,
    }
}

/// How many recent deliveries a chat's page or answer shows (all the
/// store keeps).
const RECENT_LIMIT: usize = crate::delivery::store::RECENT_PER_CHAT as usize;

async fn delivery_views(app: &App, name: &str) -> Result<Vec<DeliveryView>, Response> {
    chat_rows(
        name,
        app.recent_deliveries(name, RECENT_LIMIT),
        delivery_view,
    )
    .await
}

fn delivery_view(r: DeliveryRecord) -> DeliveryView {
    let (result, remote_id, reason, next) = match r.result {
        AttemptResult::Sent { remote_id } => ("sent", remote_id, None, None),
        AttemptResult::Skipped { reason } => ("skipped", None, Some(reason), None),
        AttemptResult::Retried {
            reason,
            next_attempt_at_ms,
        } => (
            "retried",
            None,
            Some(reason),
            Some(rfc3339(next_attempt_at_ms)),
        ),
        AttemptResult::DeadLettered { reason } => ("dead_lettered", None, Some(reason), None),
    };
    DeliveryView {
        at: rfc3339(r.at_ms),
        queued_at: rfc3339(r.created_at_ms),
        latency_ms: r.at_ms.saturating_sub(r.created_at_ms),
        kind: r.what.kind,
        topic: r.what.topic,
        post: r.what.post,
        title: r.what.title,
        result: result.to_string(),
        remote_id,
        reason,
        next_attempt_at: next,
    }
}

/// `GET /api/chats/{name}/deliveries`: the chat's recent deliveries, newest first.
async fn deliveries_json(State(app): State<Arc<App>>, Path(name): Path<String>) -> Response {
    match delivery_views(&app, &name).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(r) => r,
    }
}

/// `GET /chats/{name}`: the chat's last 24 hours and recent deliveries.
async fn chat_page(State(app): State<Arc<App>>, Path(name): Path<String>) -> Response {
    let deliveries = match delivery_views(&app, &name).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let report = app.status().await;
    match report.chats.iter().find(|c| c.name == name) {
        Some(chat) => (pane_headers(), Html(render_chat(chat, &deliveries))).into_response(),
        // Removed by a reload in between.
        None => (StatusCode::NOT_FOUND, format!("no chat named `{name}`\n")).into_response(),
    }
}

async fn dead_letters_json(State(app): State<Arc<App>>, Path(name): Path<String>) -> Response {
    match dead_letter_views(&app, &name).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(r) => r,
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::metrics::Metrics;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// `router` served by [`serve_listener`] on a free port.
    async fn serve(
        router: Router,
        body_timeout: Duration,
        max_connections: usize,
    ) -> (SocketAddr, CancellationToken, Arc<Metrics>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let metrics = Arc::new(Metrics::new());
        let timeouts = Timeouts {
            header: Duration::from_secs(30),
            body: body_timeout,
        };
        let admission = Admission::new("public", max_connections, metrics.clone());
        tokio::spawn(serve_listener(
            listener,
            router,
            timeouts,
            admission,
            shutdown.clone(),
        ));
        (addr, shutdown, metrics)
    }

    /// Sends `request` on a new connection; the whole answer.
    async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n";

    #[tokio::test]
    async fn an_enormous_body_timeout_does_not_panic_requests() {
        let router = Router::new().route(
            "/",
            post(|body: Bytes| async move { body.len().to_string() }),
        );
        // `Instant::now() + Duration::MAX` would panic in every request.
        let (addr, shutdown, _) = serve(router, Duration::MAX, 8).await;
        let answer = exchange(
            addr,
            b"POST / HTTP/1.1\r\nHost: relay\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer:?}");
        assert!(answer.ends_with("\r\n\r\n5"), "{answer:?}");
        shutdown.cancel();
    }

    #[tokio::test]
    async fn a_connection_over_the_limit_gets_a_503_until_a_slot_frees() {
        let router = Router::new().route("/", get(|| async { "ok" }));
        let (addr, shutdown, metrics) = serve(router, Duration::from_secs(30), 1).await;
        // Accepted in arrival order: this one takes the only slot.
        let idle = tokio::net::TcpStream::connect(addr).await.unwrap();

        let answer = exchange(addr, GET).await;
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "), "{answer:?}");
        assert!(head.contains("\r\nretry-after: 1"), "{answer:?}");
        assert!(
            head.contains(&format!("\r\ncontent-length: {}", body.len())),
            "{answer:?}"
        );
        assert_eq!(body, REFUSAL_BODY);
        // The answer waits for a request: sent to an idle connection it
        // would be an error to the client (hyper: "unexpected message").
        // One that ends without a request is only closed.
        let mut quiet = tokio::net::TcpStream::connect(addr).await.unwrap();
        quiet.shutdown().await.unwrap();
        let mut out = Vec::new();
        let _ = quiet.read_to_end(&mut out).await;
        assert!(out.is_empty(), "{:?}", String::from_utf8_lossy(&out));
        let text = metrics.encode();
        assert!(
            text.contains("discourse_relay_connections_refused_total{listener=\"public\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("discourse_relay_connections_open{listener=\"public\"} 1\n"),
            "{text}"
        );

        drop(idle);
        // The server sees the close on its own schedule: poll for the slot.
        let end = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let answer = exchange(addr, GET).await;
            if answer.starts_with("HTTP/1.1 200 ") {
                break;
            }
            assert!(answer.starts_with("HTTP/1.1 503 "), "{answer:?}");
            assert!(
                tokio::time::Instant::now() < end,
                "the slot was never freed"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        shutdown.cancel();
    }
}
