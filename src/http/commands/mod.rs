//! Chat commands on the public listener: `POST /commands/{slack,mattermost,
//! telegram,discord}`.
//!
//! Each platform file verifies its request over the exact bytes received
//! (signature or token, constant-time, with a replay window where the
//! platform signs a timestamp), reads it into a platform-neutral [`Command`],
//! and shapes the [`verbs::Reply`] the way the platform expects an immediate
//! answer (no outbound call, well inside the 3-second deadlines).
//!
//! Commands are an adapter at the HTTP edge: they read the serving
//! [`Pipeline`] and call [`App`] methods, never delivery internals, and never
//! edit the config (it lives in git). A platform whose provider instances set
//! no command credential answers 404 with the reason: the endpoint is off,
//! which is different from a request that failed verification (401).

pub mod discord;
pub mod mattermost;
pub mod slack;
pub mod telegram;
pub mod verbs;

use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use crate::pipeline::CommandAuth;
use crate::pipeline::Pipeline;
use crate::service::App;

/// How far a signed timestamp may be from now (Slack's 5 minutes; used for
/// Discord too), so a captured request cannot be replayed later.
pub const REPLAY_WINDOW_SECS: i64 = 300;

/// A verified command, whatever the platform.
#[derive(Debug, Clone)]
pub struct Command {
    /// The provider kind: `slack`, `mattermost`, `telegram`, `discord`.
    pub platform: &'static str,
    /// Provider instances whose credential verified the request.
    pub instances: Vec<String>,
    /// The platform's ids of the chat it came from (channel id and name,
    /// chat id and `@username`), matched against [`crate::providers::Destination::chat_ids`].
    pub ids: Vec<String>,
    /// The chat as people know it, e.g. `#general (C0123)`.
    pub place: String,
    /// Who sent it (for the test message's "requested by").
    pub user: String,
    /// The words after the command: `status`, `watch c/support`.
    pub text: String,
    /// How users type the command, for the help text: `/discourse`.
    pub prefix: &'static str,
    /// A chat name to suggest when this chat is not configured.
    pub suggested_name: String,
    /// The chat target lines (`channel = "C0123"\n`) that would add this chat.
    pub target_toml: String,
}

/// Why a command request is refused before any verb runs.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// No provider instance of the platform sets the credential.
    #[error(
        "chat commands from {platform} are off: no [providers.NAME] with kind = \"{platform}\" sets `{key}`"
    )]
    Off {
        platform: &'static str,
        key: &'static str,
    },
    /// Missing, forged or stale signature or token.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// Verified, but not a request this endpoint understands.
    #[error("{0}")]
    BadRequest(String),
}

impl IntoResponse for CommandError {
    fn into_response(self) -> Response {
        let status = match self {
            CommandError::Off { .. } => StatusCode::NOT_FOUND,
            CommandError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            CommandError::BadRequest(_) => StatusCode::BAD_REQUEST,
        };
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{self}\n"),
        )
            .into_response()
    }
}

/// The command routes, merged into the public router.
pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/commands/slack", post(slack::handle))
        .route("/commands/mattermost", post(mattermost::handle))
        .route("/commands/telegram", post(telegram::handle))
        .route("/commands/discord", post(discord::handle))
}

/// The command credentials of `platform`'s instances, or [`CommandError::Off`].
fn auths(p: &Pipeline, platform: &'static str) -> Result<Vec<CommandAuth>, CommandError> {
    let found: Vec<CommandAuth> = p
        .config
        .commands
        .iter()
        .filter(|a| a.kind == platform)
        .cloned()
        .collect();
    if found.is_empty() {
        let key = crate::pipeline::load::COMMAND_KEYS
            .iter()
            .find(|(_, k)| *k == platform)
            .map_or("?", |(key, _)| key);
        return Err(CommandError::Off { platform, key });
    }
    Ok(found)
}

/// Instances whose credential `verify` accepts; 401 when none does.
fn verified(
    auths: &[CommandAuth],
    verify: impl Fn(&CommandAuth) -> bool,
    why: &'static str,
) -> Result<Vec<String>, CommandError> {
    let names: Vec<String> = auths
        .iter()
        .filter(|a| verify(a))
        .map(|a| a.instance.clone())
        .collect();
    if names.is_empty() {
        return Err(CommandError::Unauthorized(why));
    }
    Ok(names)
}

/// Whether a signed Unix timestamp is within [`REPLAY_WINDOW_SECS`] of now.
fn fresh(timestamp: &str) -> bool {
    let Ok(ts) = timestamp.trim().parse::<i64>() else {
        return false;
    };
    fresh_at(jiff::Timestamp::now().as_second(), ts)
}

/// [`fresh`] at a given `now`. `abs_diff`: `ts` is attacker-chosen and read
/// before any signature check, so `now - ts` could overflow (`i64::MIN`).
fn fresh_at(now: i64, ts: i64) -> bool {
    now.abs_diff(ts) <= REPLAY_WINDOW_SECS.unsigned_abs()
}

/// A header's value as text ("" when absent or not text).
fn header<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// A config-friendly chat name from a platform's channel name.
/// A slash command's form fields (Slack and Mattermost send the same ones).
pub(crate) type Form = std::collections::HashMap<String, String>;

pub(crate) fn form(body: &[u8]) -> Form {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// A trimmed form field, empty when absent.
pub(crate) fn field(form: &Form, key: &str) -> String {
    form.get(key)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The [`Command`] of a Slack or Mattermost slash command: the channel
/// shown as `{sigil}name (id)`, added to a config with `{target_key} = "ID"`.
pub(crate) fn slash_command(
    platform: &'static str,
    instances: Vec<String>,
    form: &Form,
    sigil: char,
    target_key: &str,
) -> Result<Command, CommandError> {
    let (channel_id, channel_name) = (field(form, "channel_id"), field(form, "channel_name"));
    if channel_id.is_empty() {
        return Err(CommandError::BadRequest(
            "not a slash command: no channel_id".into(),
        ));
    }
    Ok(Command {
        platform,
        instances,
        ids: [channel_id.clone(), channel_name.clone()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect(),
        place: format!("{sigil}{channel_name} ({channel_id})"),
        user: field(form, "user_name"),
        text: field(form, "text"),
        prefix: "/discourse",
        suggested_name: chat_name(&channel_name, &channel_id),
        target_toml: format!("{target_key} = {}\n", verbs::toml_str(&channel_id)),
    })
}

fn chat_name(name: &str, fallback: &str) -> String {
    let slug: String = name
        .trim_start_matches(['#', '@'])
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let slug = slug.trim_matches('-');
    if slug.is_empty() {
        fallback.to_string()
    } else {
        slug.chars().take(60).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_survives_extreme_timestamps() {
        let now = 1_700_000_000;
        assert!(fresh_at(now, now));
        assert!(fresh_at(now, now - REPLAY_WINDOW_SECS));
        assert!(fresh_at(now, now + REPLAY_WINDOW_SECS));
        assert!(!fresh_at(now, now - REPLAY_WINDOW_SECS - 1));
        assert!(!fresh_at(now, now + REPLAY_WINDOW_SECS + 1));
        // Attacker-chosen values read before the HMAC check: no overflow.
        for ts in [i64::MIN, i64::MIN + 1, i64::MAX, -1, 0] {
            assert!(!fresh_at(now, ts), "{ts}");
        }
        assert!(!fresh_at(i64::MIN, i64::MAX));
        assert!(fresh_at(i64::MIN, i64::MIN));
        assert!(!fresh(&i64::MIN.to_string()));
        assert!(!fresh(&i64::MAX.to_string()));
        assert!(fresh(&jiff::Timestamp::now().as_second().to_string()));
    }
}
