//! Telegram bot commands: this endpoint is the bot's webhook (`setWebhook`
//! with `secret_token`), verified by `X-Telegram-Bot-Api-Secret-Token`
//! (constant time). `/discourse <verb> …` and the short forms `/status`,
//! `/help`, `/watch …`, `/follow …`, `/mute …`, `/thread …`, `/test` are
//! answered; a `@botname` suffix is ignored. The answer is a `sendMessage`
//! method in the webhook's HTTP response, so no outbound call is made.
//! Any other update gets an empty 200 so Telegram keeps delivering.
//! See shared/providers.md §4.3.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{Command, CommandError, auths, chat_name, header, verbs, verified};
use crate::http::server::constant_time_eq;
use crate::service::App;

/// `text` limit of sendMessage (characters after entity parsing).
const MAX_TEXT: usize = 4096;

/// Verbs that work as commands of their own (`/status`).
const SHORT: &[&str] = &[
    "status", "help", "start", "watch", "follow", "mute", "thread", "test",
];

#[derive(Debug, Deserialize)]
struct Update {
    message: Option<Message>,
    channel_post: Option<Message>,
}

#[derive(Debug, Deserialize)]
struct Message {
    message_id: i64,
    chat: Chat,
    message_thread_id: Option<i64>,
    from: Option<User>,
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Chat {
    id: i64,
    title: Option<String>,
    username: Option<String>,
}

#[derive(Debug, Deserialize)]
struct User {
    username: Option<String>,
    first_name: Option<String>,
}

pub async fn handle(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    match answer(&app, &headers, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// The verb text of a bot command, `None` when `text` is not one of ours.
fn command_text(text: &str) -> Option<String> {
    let text = text.trim();
    let rest = text.strip_prefix('/')?;
    let (word, args) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    // `/status@MyBot`: in groups commands name the bot.
    let word = word.split('@').next().unwrap_or("").to_ascii_lowercase();
    if word == "discourse" {
        Some(args.trim().to_string())
    } else if SHORT.contains(&word.as_str()) {
        Some(format!("{word} {}", args.trim()).trim().to_string())
    } else {
        None
    }
}

async fn answer(app: &App, headers: &HeaderMap, body: &[u8]) -> Result<Response, CommandError> {
    let p = app.pipeline.load_full();
    let auths = auths(&p, "telegram")?;
    let given = header(headers, "x-telegram-bot-api-secret-token");
    if given.is_empty() {
        return Err(CommandError::Unauthorized(
            "missing X-Telegram-Bot-Api-Secret-Token",
        ));
    }
    let instances = verified(
        &auths,
        |a| constant_time_eq(given.as_bytes(), a.secret.expose().as_bytes()),
        "X-Telegram-Bot-Api-Secret-Token matches no configured webhook_secret_token",
    )?;

    let update: Update = serde_json::from_slice(body)
        .map_err(|e| CommandError::BadRequest(format!("not a Telegram update: {e}")))?;
    let Some(msg) = update.message.or(update.channel_post) else {
        return Ok(StatusCode::OK.into_response());
    };
    let Some(text) = msg.text.as_deref().and_then(command_text) else {
        return Ok(StatusCode::OK.into_response());
    };
    let chat_id = msg.chat.id.to_string();
    let mut ids = vec![chat_id.clone()];
    if let Some(u) = &msg.chat.username {
        ids.push(format!("@{u}"));
    }
    let label = msg
        .chat
        .title
        .clone()
        .or_else(|| msg.chat.username.as_ref().map(|u| format!("@{u}")))
        .unwrap_or_else(|| chat_id.clone());
    let user = msg
        .from
        .as_ref()
        .and_then(|u| u.username.clone().or_else(|| u.first_name.clone()))
        .unwrap_or_else(|| "someone".into());
    let mut target = format!("chat_id = {}\n", msg.chat.id);
    if let Some(t) = msg.message_thread_id {
        target.push_str(&format!("message_thread_id = {t}\n"));
    }
    let cmd = Command {
        platform: "telegram",
        instances,
        ids,
        place: format!("{label} ({chat_id})"),
        user,
        text,
        prefix: "/discourse",
        suggested_name: chat_name(&label, &format!("telegram{chat_id}")),
        target_toml: target,
    };
    let reply = verbs::run(app, &p, &cmd).await;
    let html: String = reply.telegram_html();
    let mut method = json!({
        "method": "sendMessage",
        "chat_id": msg.chat.id,
        "text": cut(&html),
        "parse_mode": "HTML",
        "link_preview_options": {"is_disabled": true},
        "reply_parameters": {"message_id": msg.message_id, "allow_sending_without_reply": true},
    });
    if let Some(t) = msg.message_thread_id {
        method["message_thread_id"] = json!(t);
    }
    Ok(axum::Json(method).into_response())
}

/// Replies are short; a very long status is cut (at a line, so no HTML tag
/// is split) rather than refused by Telegram.
fn cut(html: &str) -> String {
    if html.chars().count() <= MAX_TEXT {
        return html.to_string();
    }
    let mut out = String::new();
    for line in html.lines() {
        if out.chars().count() + line.chars().count() + 20 > MAX_TEXT {
            break;
        }
        out.push_str(line);
        out.push('\n');
    }
    // A cut inside <pre> would leave it open.
    if out.matches("<pre>").count() > out.matches("</pre>").count() {
        out.push_str("</pre>");
    }
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_commands_and_ignores_the_rest() {
        assert_eq!(command_text("/discourse status").as_deref(), Some("status"));
        assert_eq!(
            command_text("/discourse@MyBot  watch c/x").as_deref(),
            Some("watch c/x")
        );
        assert_eq!(command_text("/status@MyBot").as_deref(), Some("status"));
        assert_eq!(command_text("/watch t/bug").as_deref(), Some("watch t/bug"));
        assert_eq!(command_text("/discourse").as_deref(), Some(""));
        assert_eq!(command_text("/other thing"), None);
        assert_eq!(command_text("hello"), None);
    }

    #[test]
    fn long_replies_are_cut_with_pre_closed() {
        let long = format!("intro\n<pre>{}</pre>", "line\n".repeat(2000));
        let c = cut(&long);
        assert!(c.chars().count() <= MAX_TEXT);
        assert_eq!(c.matches("<pre>").count(), c.matches("</pre>").count());
    }
}
