//! The ingest ceiling: the least an axum server can do for a webhook. It
//! reads the whole body (as the relay does) and answers 202, with the same
//! runtime (tokio multi-thread, one worker per core) and HTTP stack as the
//! relay. Usage: `ceiling 127.0.0.1:PORT` (port 0 = any); prints
//! `listening ADDR` on stdout once bound.

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;

async fn accept(body: Bytes) -> (StatusCode, &'static str) {
    std::hint::black_box(&body);
    (StatusCode::ACCEPTED, "accepted\n")
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening {}", listener.local_addr()?);
    let app = Router::new().route("/webhooks/discourse", post(accept));
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}
