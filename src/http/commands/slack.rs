//! Slack slash commands (`/discourse …`, form-encoded), verified with the
//! app's signing secret: `X-Slack-Signature` = `v0=` + hex HMAC-SHA256 over
//! `v0:{X-Slack-Request-Timestamp}:{raw body}`, timestamp within 5 minutes.
//! Answered with an ephemeral message (`response_type: ephemeral`).
//! See shared/providers.md §4.1 and docs.slack.dev "Verifying requests".

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;

use super::{CommandError, auths, form, fresh, header, slash_command, verbs, verified};
use crate::service::App;

/// Whether `signature` is Slack's `v0` signature of `body` at `timestamp`.
/// Constant-time (the MAC's own comparison).
pub fn verify(secret: &[u8], timestamp: &str, body: &[u8], signature: &str) -> bool {
    let Some(hex_sig) = signature.strip_prefix("v0=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// The `X-Slack-Signature` value for `body` (tests and tools).
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    // HMAC takes keys of any length: this never returns early.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

pub async fn handle(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    match answer(&app, &headers, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn answer(app: &App, headers: &HeaderMap, body: &[u8]) -> Result<Response, CommandError> {
    let p = app.pipeline.load_full();
    let auths = auths(&p, "slack")?;
    let timestamp = header(headers, "x-slack-request-timestamp");
    let signature = header(headers, "x-slack-signature");
    if signature.is_empty() || timestamp.is_empty() {
        return Err(CommandError::Unauthorized(
            "missing X-Slack-Signature or X-Slack-Request-Timestamp",
        ));
    }
    if !fresh(timestamp) {
        return Err(CommandError::Unauthorized(
            "X-Slack-Request-Timestamp is more than 5 minutes off: replayed or clock skew",
        ));
    }
    let instances = verified(
        &auths,
        |a| verify(a.secret.expose().as_bytes(), timestamp, body, signature),
        "X-Slack-Signature does not match any configured signing_secret",
    )?;

    let cmd = slash_command("slack", instances, &form(body), '#', "channel")?;
    let reply = verbs::run(app, &p, &cmd).await;
    Ok(axum::Json(json!({"response_type": "ephemeral", "text": reply.slack()})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_round_trip_and_forgeries() {
        // Slack's documented example (docs.slack.dev, verifying requests).
        let secret = b"8f742231b10e8888abcd99yyyzzz85a5";
        let ts = "1531420618";
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let sig = sign(secret, ts, body);
        assert_eq!(
            sig,
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
        );
        assert!(verify(secret, ts, body, &sig));
        assert!(!verify(secret, "1531420619", body, &sig));
        assert!(!verify(b"other", ts, body, &sig));
        assert!(!verify(secret, ts, b"text=x", &sig));
        assert!(!verify(secret, ts, body, &sig.replace("v0=", "v1=")));
        assert!(!verify(secret, ts, body, "v0=zz"));
        assert!(!verify(secret, ts, body, ""));
    }
}
