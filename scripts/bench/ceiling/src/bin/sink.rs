//! The chat side of the benchmarks: answers every POST with 200 at once and
//! records (arrival time, path, post id). Arrival time is the wall clock in
//! nanoseconds (CLOCK_REALTIME, the clock Python's `time.time_ns()` reads),
//! so a load generator on the same machine can match its send times.
//!
//! Usage: `sink 127.0.0.1:PORT`; prints `listening ADDR` once bound.
//! - any POST/PUT: recorded, answered `200 ok`;
//! - `GET /_stats`: `{"count":N,"first_ns":..,"last_ns":..}`;
//! - `GET /_dump`: one `ARRIVAL_NS PATH POST_ID` line per request (0 = none);
//! - `POST /_reset`: forget everything.
//!
//! The post id is the first number after `"post"` and `"id":` in the body
//! (the relay's default JSON message); no JSON parsing on the hot path.

use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::Uri;
use axum::routing::{get, post};

#[derive(Default)]
struct Log {
    hits: Vec<(u64, String, u64)>,
}

type Shared = Arc<Mutex<Log>>;

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from >= hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn post_id(body: &[u8]) -> u64 {
    let Some(p) = find(body, b"\"post\"", 0) else {
        return 0;
    };
    let Some(i) = find(body, b"\"id\":", p) else {
        return 0;
    };
    body[i + 5..]
        .iter()
        .skip_while(|b| b.is_ascii_whitespace())
        .take_while(|b| b.is_ascii_digit())
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'))
}

async fn hit(State(log): State<Shared>, uri: Uri, body: Bytes) -> &'static str {
    let t = now_ns();
    let id = post_id(&body);
    let path = uri.path().to_string();
    log.lock()
        .unwrap_or_else(|e| e.into_inner())
        .hits
        .push((t, path, id));
    "ok"
}

async fn stats(State(log): State<Shared>) -> String {
    let log = log.lock().unwrap_or_else(|e| e.into_inner());
    let first = log.hits.iter().map(|h| h.0).min().unwrap_or(0);
    let last = log.hits.iter().map(|h| h.0).max().unwrap_or(0);
    format!(
        "{{\"count\":{},\"first_ns\":{first},\"last_ns\":{last}}}\n",
        log.hits.len()
    )
}

async fn dump(State(log): State<Shared>) -> String {
    let log = log.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = String::with_capacity(log.hits.len() * 40);
    for (t, path, id) in &log.hits {
        let _ = writeln!(out, "{t} {path} {id}");
    }
    out
}

async fn reset(State(log): State<Shared>) -> &'static str {
    log.lock().unwrap_or_else(|e| e.into_inner()).hits.clear();
    "reset\n"
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening {}", listener.local_addr()?);
    let log: Shared = Arc::default();
    let app = Router::new()
        .route("/_stats", get(stats))
        .route("/_dump", get(dump))
        .route("/_reset", post(reset))
        .fallback(hit)
        .with_state(log);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}
