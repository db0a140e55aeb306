//! Mattermost slash commands (form-encoded), verified by the command's token:
//! `Authorization: Token <token>` (or the `token` form field when the header
//! is absent), compared in constant time. Answered with an ephemeral
//! message. See shared/providers.md §4.2.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{CommandError, auths, field, form, header, slash_command, verbs, verified};
use crate::http::server::constant_time_eq;
use crate::service::App;

pub async fn handle(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    match answer(&app, &headers, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn answer(app: &App, headers: &HeaderMap, body: &[u8]) -> Result<Response, CommandError> {
    let p = app.pipeline.load_full();
    let auths = auths(&p, "mattermost")?;
    let form = form(body);
    let given = match header(headers, "authorization").strip_prefix("Token ") {
        Some(t) => t.trim().to_string(),
        None => field(&form, "token"),
    };
    if given.is_empty() {
        return Err(CommandError::Unauthorized(
            "missing the command token (Authorization: Token …)",
        ));
    }
    let instances = verified(
        &auths,
        |a| constant_time_eq(given.as_bytes(), a.secret.expose().as_bytes()),
        "the command token matches no configured command_token",
    )?;

    let cmd = slash_command("mattermost", instances, &form, '~', "channel_id")?;
    let reply = verbs::run(app, &p, &cmd).await;
    Ok(axum::Json(json!({"response_type": "ephemeral", "text": reply.markdown()})).into_response())
}
