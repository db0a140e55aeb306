//! `telegram`: the Bot API, `POST {api_url}/bot{token}/sendMessage` (the token
//! is in the path: the whole URL is a secret), JSON `{"chat_id", "text",
//! "parse_mode": "HTML"}` with link previews off and `message_thread_id` for a
//! forum topic. The `remote_id` is the `message_id`: replies set
//! `reply_parameters`, edits are `editMessageText`, deletes `deleteMessage`.
//!
//! Dialect: HTML (entities, U+200B after a mentioning `@`), checked with an HTML
//! parser in tests/parser_escaping.rs. Limit: 4096 UTF-16 units of text.
//!
//! Answers: `{"ok":false,"error_code","description","parameters"?}` with the
//! status; `retry_after` and `migrate_to_chat_id` say what to do. shared/providers.md §2.3.

use super::kit::prelude::*;
use std::borrow::Cow;

pub const REGISTRATION: Registration =
    kit::registration::<Telegram>("telegram", "Telegram Bot API (sendMessage, HTML)");

const DEFAULT_API_URL: &str = "https://api.telegram.org";

/// `text` is limited to 4096 characters after entity parsing
/// (core.telegram.org/bots/api#sendmessage); counted here in UTF-16 units,
/// which is what Telegram measures and never less than the characters.
const MAX_TEXT: usize = 4096;

/// `[providers.NAME]` for `kind = "telegram"`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Settings {
    /// Bot token from @BotFather (`123456:ABC-…`), as `${VAR}`. Required: every telegram chat posts as this bot.
    pub token: Option<Located<String>>,
    /// Bot API base URL (default `https://api.telegram.org`; a self-hosted `telegram-bot-api` server or a test mock).
    pub api_url: Option<Located<String>>,
    /// Send silently: members get a notification without sound (default false).
    pub disable_notification: Option<bool>,
}

/// Chat fields for a Telegram chat.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Target {
    /// Chat id (groups and channels are negative, e.g. `-1001234567890`) or a public channel's `@username`. The bot must be a member (an admin, in channels).
    pub chat_id: Option<Located<ChatIdValue>>,
    /// Forum topic to post in (`message_thread_id`), for supergroups with topics enabled.
    pub message_thread_id: Option<Located<i64>>,
}

/// A Telegram chat: an integer id, or a string (`"@channelname"`, or a numeric id).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ChatIdValue {
    Id(i64),
    Text(String),
}

/// A validated chat id, as the Bot API takes it (a number, or `@name`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
enum ChatId {
    Id(i64),
    Username(String),
}

impl ChatId {
    fn read(v: &ChatIdValue) -> Result<Self, &'static str> {
        const HELP: &str =
            "`chat_id` must be a chat id like -1001234567890 or a public channel's \"@username\"";
        let s = match v {
            ChatIdValue::Id(n) => return (*n != 0).then_some(ChatId::Id(*n)).ok_or(HELP),
            ChatIdValue::Text(s) => s.trim(),
        };
        if let Ok(n) = s.parse::<i64>() {
            return (n != 0).then_some(ChatId::Id(n)).ok_or(HELP);
        }
        let name = s.strip_prefix('@').ok_or(HELP)?;
        // Telegram usernames: 4 to 32 of a-z, 0-9 and `_`.
        let ok = (4..=32).contains(&name.len())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        ok.then(|| ChatId::Username(s.to_string())).ok_or(HELP)
    }
}

#[derive(Debug)]
struct Telegram {
    token: Option<Secret>,
    api_url: String,
    disable_notification: bool,
}

impl Provider for Telegram {
    type Settings = Settings;
    type Target = Target;

    fn new(s: Settings, _: &Table, cx: &mut Ctx<'_>) -> Option<Self> {
        Some(Telegram {
            token: cx.opt_secret("token", &s.token)?,
            api_url: cx.base_url("api_url", &s.api_url, DEFAULT_API_URL)?,
            disable_notification: s.disable_notification.unwrap_or(false),
        })
    }

    fn bind_target(self: Arc<Self>, t: Target, chat: Span, cx: &mut Ctx<'_>) -> Bound {
        let missing = "a telegram chat needs `chat_id` (e.g. -1001234567890, or \"@channelname\")";
        let raw = kit::required(cx, &t.chat_id, chat.clone(), missing)?;
        let chat_id = match ChatId::read(raw.get_ref()) {
            Ok(c) => c,
            Err(msg) => return kit::reject(cx, Some(raw.span()), msg),
        };
        let thread = kit::opt_field(cx, &t.message_thread_id, |n| match *n {
            n if n > 0 => Ok(n),
            _ => Err("`message_thread_id` must be a positive forum topic id"),
        })?;
        let missing = "a telegram chat needs a bot token: set `token = \"${TELEGRAM_BOT_TOKEN}\"` on a [providers.NAME] table with kind = \"telegram\"";
        let token = cx.require_token(&self.token, Some(raw.span()), missing)?;
        Some(Box::new(TelegramChat {
            instance: self,
            token,
            chat_id,
            thread,
        }))
    }
}

#[derive(Debug)]
struct TelegramChat {
    instance: Arc<Telegram>,
    token: Secret,
    chat_id: ChatId,
    thread: Option<i64>,
}

/// An answer that is not the Bot API's JSON (a proxy, a load balancer page).
const NOT_BOT_API: Spec = Spec {
    hint: status_hint,
    ..Spec::plain("telegram")
};

/// The default message, laid out as well as Telegram's HTML allows: the
/// state marks and the bold linked title; the author · what happened · the
/// linked category; the excerpt in a `<blockquote>`; 🏷️ the tags as links.
/// No `@username`: an `@name` in a Telegram message mentions whoever holds
/// that name there. Values are HTML-escaped by the renderer (in `href`s
/// too, where the forum's URL and the category's path and id, or the tag,
/// complete the link).
const DEFAULT_TEMPLATE: &str = concat!(
    "{{#if topic.solved}}✅ {{/if}}{{#if topic.closed}}🔒 {{/if}}",
    "{{#if topic.archived}}🗄️ {{/if}}{{#if topic.pinned}}📌 {{/if}}",
    "<b>{{#if post}}{{link post.url topic.title}}{{else}}{{link topic.url topic.title}}{{/if}}</b>",
    "{{#if post}}\n{{#if post.name}}{{post.name}}{{else}}{{post.username}}{{/if}}",
    " · {{#if post.is_first}}new topic{{else}}reply #{{post.number}}{{/if}}",
    "{{#if topic.category}} · ",
    "<a href=\"{{forum.url}}/c/{{topic.category.path}}/{{topic.category.id}}\">{{topic.category.name}}</a>",
    "{{/if}}",
    "{{else}}{{#if topic.category}}\n",
    "<a href=\"{{forum.url}}/c/{{topic.category.path}}/{{topic.category.id}}\">{{topic.category.name}}</a>",
    "{{/if}}{{/if}}",
    "{{#if post}}{{#if post.excerpt}}\n<blockquote>{{post.excerpt}}</blockquote>{{/if}}{{/if}}",
    "{{#if topic.tags}}\n🏷️ {{#each topic.tags}}{{#unless @first}}, {{/unless}}",
    "<a href=\"{{@root.forum.url}}/tag/{{this}}\">{{this}}</a>{{/each}}{{/if}}",
);

impl kit::Chat for TelegramChat {
    const KIND: &str = REGISTRATION.kind;
    const DIALECT: Dialect = Dialect::Html;
    const TEMPLATE: Option<&'static str> = Some(DEFAULT_TEMPLATE);
    // sendMessage returns `message_id`: replies (`reply_parameters`),
    // `editMessageText` and `deleteMessage` can use it.
    const CAPS: Capabilities = Capabilities::ALL;
    const READS_CONTEXT: bool = false;

    fn default_rate(&self) -> Option<Rate> {
        // Bot FAQ: about 1 message/s per chat, at most 20/min in a group or
        // channel (negative ids and @channel names).
        Some(match self.chat_id {
            ChatId::Id(n) if n > 0 => Rate::per_second(1),
            _ => Rate::per_minute(20),
        })
    }

    fn target(&self) -> String {
        let chat = match &self.chat_id {
            ChatId::Id(n) => format!("chat {n}"),
            ChatId::Username(u) => u.clone(),
        };
        match self.thread {
            Some(t) => format!("{chat} topic {t}"),
            None => chat,
        }
    }

    fn request(&self, msg: &Message<'_>) -> Outbound {
        let text = truncate_html(msg.text, MAX_TEXT);
        let chat_id = &self.chat_id;
        let mut body = json!({
            "chat_id": chat_id,
            "text": text,
            "parse_mode": "HTML",
            "link_preview_options": {"is_disabled": true},
        });
        let method = match msg.action {
            Action::Post { thread } => {
                kit::put(&mut body, "message_thread_id", self.thread);
                // A reply to the topic's first message; if that message was
                // deleted in the chat, post anyway rather than fail.
                let reply = (thread.and_then(|t| t.root)).map(|root| {
                    json!({"message_id": message_id(root), "allow_sending_without_reply": true})
                });
                kit::put(&mut body, "reply_parameters", reply);
                let silent = self.instance.disable_notification;
                kit::put(&mut body, "disable_notification", silent.then_some(true));
                "sendMessage"
            }
            Action::Edit { remote_id } => {
                body["message_id"] = message_id(remote_id);
                "editMessageText"
            }
            Action::Delete { remote_id } => {
                body = json!({"chat_id": chat_id, "message_id": message_id(remote_id)});
                "deleteMessage"
            }
        };
        let (api, token) = (&self.instance.api_url, self.token.expose());
        let url = Secret::new(format!("{api}/bot{token}/{method}"));
        Outbound::Http(HttpRequest::post_json(&url, &body))
    }

    fn classify(&self, resp: &HttpResponse) -> Outcome {
        let body: Option<serde_json::Value> = serde_json::from_slice(&resp.body).ok();
        let Some(body) = body.filter(|b| b["ok"].is_boolean()) else {
            return match classify_json(resp, &NOT_BOT_API) {
                Outcome::Sent { .. } => kit::unreadable("telegram", resp),
                o => o,
            };
        };
        if body["ok"].as_bool() == Some(true) && (200..300).contains(&resp.status) {
            // sendMessage and editMessageText answer the message;
            // deleteMessage answers `"result": true` (no id).
            return Outcome::Sent {
                remote_id: body["result"]["message_id"].as_i64().map(|n| n.to_string()),
            };
        }
        classify_error(resp, &body)
    }

    fn chat_ids(&self) -> Vec<String> {
        match &self.chat_id {
            ChatId::Id(n) => vec![n.to_string()],
            // `@name`: the update names the chat by `username` without `@`.
            ChatId::Username(u) => vec![u.clone()],
        }
    }

    fn probe(&self) -> Probe {
        let (api, token) = (&self.instance.api_url, self.token.expose());
        let me = Secret::new(format!("{api}/bot{token}/getMe"));
        let chat = match &self.chat_id {
            ChatId::Id(n) => n.to_string(),
            ChatId::Username(u) => u.clone(),
        };
        let get_chat = probe::query(&format!("{api}/bot{token}/getChat"), "chat_id", &chat);
        Probe::Http(vec![
            probe::step("getMe", HttpRequest::get(me), judge_me),
            probe::step("getChat", HttpRequest::get(get_chat), judge_chat),
        ])
    }
}

/// The Bot API's `{"ok": false, "error_code", "description"}` as a judgement.
fn judge_error(resp: &HttpResponse, body: &Value, hint: &str) -> Judgement {
    let said = match body["description"].as_str() {
        Some(d) => format!("telegram: {} {}", body["error_code"], kit::clip(d, 200)),
        None => probe::status_text(resp),
    };
    match resp.status {
        401 | 404 => Judgement::fail(
            said,
            "the bot token was rejected: check it (@BotFather) and api_url",
        ),
        429 | 500..=599 => Judgement::warn(said, "Telegram is busy: run doctor again later"),
        _ => Judgement::fail(said, hint),
    }
}

fn judge_me(resp: &HttpResponse) -> Judgement {
    let b = probe::body(resp);
    if b["ok"].as_bool() != Some(true) {
        return judge_error(resp, &b, "");
    }
    Judgement::pass(format!(
        "token works: bot @{}",
        probe::text(&b, "/result/username")
    ))
}

fn judge_chat(resp: &HttpResponse) -> Judgement {
    let b = probe::body(resp);
    if b["ok"].as_bool() != Some(true) {
        let hint = "check chat_id, and that the bot has been added to the chat";
        return judge_error(resp, &b, hint);
    }
    let r = &b["result"];
    let name = r["title"]
        .as_str()
        .or(r["username"].as_str())
        .unwrap_or("?");
    Judgement::pass(format!(
        "the bot sees {} {name}",
        probe::text(&b, "/result/type")
    ))
}

/// The Bot API's integer `message_id` for a `remote_id` (which is the
/// decimal message id: the chat is fixed per destination). Anything else is
/// passed as text so the Bot API's own error names the problem.
fn message_id(remote_id: &str) -> serde_json::Value {
    match remote_id.trim().parse::<i64>() {
        Ok(n) => json!(n),
        Err(_) => json!(remote_id),
    }
}

/// An `ok:false` answer (or `ok:true` with a failing status, treated alike).
fn classify_error(resp: &HttpResponse, body: &serde_json::Value) -> Outcome {
    // The body's code names the error; an HTTP status that says "the
    // server's trouble" (a proxy's 502 with a stale body) wins over it.
    let code = match resp.status {
        408 | 429 | 500..=599 => resp.status,
        _ => (body["error_code"].as_u64())
            .and_then(|c| u16::try_from(c).ok())
            .unwrap_or(resp.status),
    };
    let description = kit::clip(body["description"].as_str().unwrap_or(""), 200);
    let params = &body["parameters"];
    let reason = |hint: &str| match description.as_str() {
        "" => format!("telegram: {code}{hint}"),
        d => format!("telegram: {code} {d}{hint}"),
    };
    if let Some(new_id) = params["migrate_to_chat_id"].as_i64() {
        return Outcome::Permanent {
            reason: reason(&format!(
                " (the group was upgraded to a supergroup: set `chat_id = {new_id}` for this chat)"
            )),
        };
    }
    let retry_after = retry_hint::json_secs(&params["retry_after"]);
    if code == 429 || retry_after.is_some() || code >= 500 || code == 408 {
        return Outcome::Retry {
            reason: reason(""),
            after: retry_after.or_else(|| resp.retry_after()),
        };
    }
    let lower = description.to_ascii_lowercase();
    // The wanted state already holds: an edit that changes nothing, or a
    // delete of a message someone already removed in the chat.
    if code == 400
        && (lower.contains("message is not modified")
            || lower.contains("message to delete not found"))
    {
        return Outcome::Sent { remote_id: None };
    }
    Outcome::Permanent {
        reason: reason(hint(&lower, code)),
    }
}

/// What to check, by the description's words (then by the code).
fn hint(lower: &str, code: u16) -> &'static str {
    if lower.contains("chat not found") {
        " (check chat_id, and that the bot has been added to the chat)"
    } else if lower.contains("thread not found") {
        " (check message_thread_id: the forum topic may have been deleted)"
    } else if lower.contains("topic_closed") {
        " (the forum topic is closed)"
    } else if lower.contains("can't parse entities") {
        " (the template produced HTML Telegram refuses: use only b, i, u, s, a, code, pre, blockquote)"
    } else if lower.contains("message to edit not found") {
        " (the message was deleted in the chat)"
    } else if lower.contains("message can't be deleted") {
        " (Telegram lets a bot delete a message only within 48 hours of sending it)"
    } else if lower.contains("message can't be edited") {
        " (the message can no longer be edited)"
    } else if lower.contains("message is too long") {
        " (the message is too long; shorten the template)"
    } else if code == 403 {
        " (the bot cannot post there: add it to the chat again, with the right to post)"
    } else {
        status_hint(code)
    }
}

fn status_hint(status: u16) -> &'static str {
    match status {
        401 => " (the bot token was rejected)",
        404 => " (check the bot token and api_url)",
        _ => "",
    }
}

/// `html` cut so that at most `max` UTF-16 units of *text* remain (tags
/// don't count; an entity counts as one), `…` included, with the elements
/// left open at the cut closed again. The renderer's HTML is well-formed
/// (values are escaped, helpers emit balanced tags), so this keeps it so.
fn truncate_html(html: &str, max: usize) -> Cow<'_, str> {
    if visible_units(html) <= max {
        return Cow::Borrowed(html);
    }
    let budget = max.saturating_sub(1);
    let mut out = String::with_capacity(html.len().min(max * 4));
    let mut open: Vec<String> = Vec::new();
    let mut used = 0;
    let mut rest = html;
    while let Some((token, units)) = next_token(rest) {
        if units == 0 {
            kit::track_tag(token, &mut open, &[]);
        } else if used + units > budget {
            break;
        } else {
            used += units;
        }
        out.push_str(token);
        rest = &rest[token.len()..];
    }
    out.push('…');
    for name in open.iter().rev() {
        out.push_str("</");
        out.push_str(name);
        out.push('>');
    }
    Cow::Owned(out)
}

fn visible_units(html: &str) -> usize {
    let mut n = 0;
    let mut rest = html;
    while let Some((token, units)) = next_token(rest) {
        n += units;
        rest = &rest[token.len()..];
    }
    n
}

/// The next tag (0 units), entity (1 unit) or character at the start of `s`.
fn next_token(s: &str) -> Option<(&str, usize)> {
    let token = kit::html_token(s)?;
    let units = match token.chars().next() {
        Some('<') if token.len() > 1 => 0,
        Some('&') if token.len() > 1 => 1,
        c => c.map_or(0, char::len_utf16),
    };
    Some((token, units))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_template_lays_out_title_byline_quote_and_tag_links() {
        use crate::ingest::Event;
        use crate::render::Renderer;
        let mut event = Event::sample("https://forum.example.org");
        event.topic.tags.truncate(1);
        event.topic.tags[0].name = "rust".into();
        let mut hostile = event.clone();
        hostile.topic.tags[0].name = "<b>&\"".into();
        let mut r = Renderer::new();
        r.register("d", DEFAULT_TEMPLATE, Dialect::Html).unwrap();
        let out = r.render("d", Dialect::Html, &event, "c").unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        assert!(
            lines[3].ends_with("<a href=\"https://forum.example.org/tag/rust\">rust</a>"),
            "{out}"
        );
        let out = r.render("d", Dialect::Html, &hostile, "c").unwrap();
        assert!(out.contains("&lt;b&gt;&amp;&quot;"), "{out}");
        // Without a post: the title and the category.
        let mut bare = event.clone();
        bare.post = None;
        bare.topic.tags.clear();
        let out = r.render("d", Dialect::Html, &bare, "c").unwrap();
        assert_eq!(out.lines().count(), 2, "{out}");
    }
    use crate::providers::testkit::{bind_chat, body, post, reply, request, resp};
    use std::time::Duration;

    const TOKEN: &str = "123456:canary-telegram-token";

    fn instance(token: Option<&str>) -> Arc<Telegram> {
        Arc::new(Telegram {
            token: token.map(Secret::new),
            api_url: "http://127.0.0.1:9".into(),
            disable_notification: false,
        })
    }

    fn chat(chat_id: ChatId, thread: Option<i64>) -> TelegramChat {
        TelegramChat {
            instance: instance(Some(TOKEN)),
            token: Secret::new(TOKEN),
            chat_id,
            thread,
        }
    }

    #[test]
    fn request_shape() {
        let text = "<b><a href=\"https://f/t/1\">&lt;b&gt;hi</a></b> by @\u{200B}bob";
        let r = post(&chat(ChatId::Id(-1001234567890), Some(42)), text);
        assert_eq!(r.method, "POST");
        assert_eq!(
            r.url.expose(),
            format!("http://127.0.0.1:9/bot{TOKEN}/sendMessage")
        );
        assert_eq!(
            body(&r),
            json!({
                "chat_id": -1001234567890i64,
                "text": text,
                "parse_mode": "HTML",
                "link_preview_options": {"is_disabled": true},
                "message_thread_id": 42,
            })
        );
        // The token is only in the URL, never in a header or the body.
        assert!(!r.body.contains(TOKEN));
        assert!(r.headers.iter().all(|(_, v)| !v.expose().contains(TOKEN)));

        let c = chat(ChatId::Username("@forum_news".into()), None);
        let b = body(&post(&c, "x"));
        assert_eq!(b["chat_id"], "@forum_news");
        assert!(b.get("message_thread_id").is_none());
        assert_eq!(c.target(), "@forum_news");
    }

    #[test]
    fn chat_ids_are_validated() {
        let read = |v: ChatIdValue| ChatId::read(&v);
        assert_eq!(read(ChatIdValue::Id(-100123)), Ok(ChatId::Id(-100123)));
        assert_eq!(
            read(ChatIdValue::Text(" -100123 ".into())),
            Ok(ChatId::Id(-100123))
        );
        assert_eq!(
            read(ChatIdValue::Text("@forum_news".into())),
            Ok(ChatId::Username("@forum_news".into()))
        );
        for bad in ["forum_news", "@ab", "@has space", "", "@", "0"] {
            assert!(read(ChatIdValue::Text(bad.into())).is_err(), "{bad}");
        }
        assert!(read(ChatIdValue::Id(0)).is_err());
    }

    /// `{"ok":false,...}` for `code` and `description`.
    fn failure(code: u16, description: &str) -> String {
        format!(r#"{{"ok":false,"error_code":{code},"description":"{description}"}}"#)
    }

    #[test]
    fn classifies_bot_api_answers() {
        let c = chat(ChatId::Id(-100123), None);
        let sent = |body: &str| c.classify(&resp(200, &[], body));
        let id = |id: &str| Outcome::Sent {
            remote_id: Some(id.into()),
        };
        assert_eq!(
            sent(r#"{"ok":true,"result":{"message_id":77,"chat":{"id":-100123}}}"#),
            id("77")
        );
        // editMessageText answers the edited message; deleteMessage `true`.
        assert_eq!(
            sent(
                r#"{"ok":true,"result":{"message_id":77,"chat":{"id":-100123},"edit_date":1700000100,"text":"new"}}"#
            ),
            id("77")
        );
        assert_eq!(
            sent(r#"{"ok":true,"result":true}"#),
            Outcome::Sent { remote_id: None }
        );
        assert_eq!(
            c.classify(&resp(
                429,
                &[("Retry-After", "9")],
                r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 31","parameters":{"retry_after":31}}"#
            )),
            Outcome::Retry {
                reason: "telegram: 429 Too Many Requests: retry after 31".into(),
                after: Some(Duration::from_secs(31))
            }
        );
        for (status, body) in [
            (502, "<html>Bad Gateway</html>".to_string()),
            (500, failure(500, "Internal Server Error")),
            (200, "not json".to_string()),
        ] {
            let out = c.classify(&resp(status, &[], &body));
            assert!(matches!(out, Outcome::Retry { .. }), "{body}: {out:?}");
        }
        // Already in the wanted state: done, not failed.
        for done in [
            "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message",
            "Bad Request: message to delete not found",
        ] {
            let out = c.classify(&resp(400, &[], &failure(400, done)));
            assert_eq!(out, Outcome::Sent { remote_id: None }, "{done}");
        }
        let cases = [
            (401, failure(401, "Unauthorized"), "token was rejected"),
            (404, failure(404, "Not Found"), "check the bot token"),
            (400, failure(400, "Bad Request: chat not found"), "check chat_id"),
            (
                403,
                failure(403, "Forbidden: bot was kicked from the supergroup chat"),
                "add it to the chat again",
            ),
            (403, failure(403, "Forbidden: bot was blocked by the user"), "bot was blocked"),
            (400, failure(400, "Bad Request: message thread not found"), "message_thread_id"),
            (
                400,
                failure(400, r#"Bad Request: can't parse entities: Unsupported start tag \"x\""#),
                "use only b, i",
            ),
            (
                400,
                r#"{"ok":false,"error_code":400,"description":"Bad Request: group chat was upgraded to a supergroup chat","parameters":{"migrate_to_chat_id":-1009876543210}}"#.to_string(),
                "set `chat_id = -1009876543210`",
            ),
            (400, failure(400, "Bad Request: message to edit not found"), "deleted in the chat"),
            (400, failure(400, "Bad Request: message can't be deleted"), "48 hours"),
        ];
        for (status, body, want) in cases {
            let out = c.classify(&resp(status, &[], &body));
            let Outcome::Permanent { reason } = &out else {
                panic!("{body} should be permanent: {out:?}")
            };
            assert!(reason.contains(want), "{reason} lacks {want}");
            assert!(!reason.contains(TOKEN));
        }
    }

    #[test]
    fn thread_edit_and_delete_requests() {
        let c = chat(ChatId::Id(-1001234567890), Some(42));
        let req = |action| {
            let r = request(&c, "<b>new</b>", action);
            assert_eq!(r.method, "POST");
            let url = r.url.expose();
            let path = url.trim_start_matches(&format!("http://127.0.0.1:9/bot{TOKEN}/"));
            (path.to_string(), body(&r))
        };
        // The message that opens the thread is a plain post.
        let (path, b) = req(reply(None));
        assert_eq!(path, "sendMessage");
        assert!(b.get("reply_parameters").is_none());
        let edited = json!({
            "chat_id": -1001234567890i64,
            "message_id": 77,
            "text": "<b>new</b>",
            "parse_mode": "HTML",
            "link_preview_options": {"is_disabled": true},
        });
        for (action, method, want) in [
            (
                reply(Some("77")),
                "sendMessage",
                json!({
                    "chat_id": -1001234567890i64,
                    "text": "<b>new</b>",
                    "parse_mode": "HTML",
                    "link_preview_options": {"is_disabled": true},
                    "message_thread_id": 42,
                    "reply_parameters": {"message_id": 77, "allow_sending_without_reply": true},
                }),
            ),
            (Action::Edit { remote_id: "77" }, "editMessageText", edited),
            (
                Action::Delete { remote_id: "77" },
                "deleteMessage",
                json!({"chat_id": -1001234567890i64, "message_id": 77}),
            ),
        ] {
            assert_eq!(req(action), (method.to_string(), want));
        }
    }

    #[test]
    fn truncation_keeps_html_balanced() {
        assert_eq!(truncate_html("<b>abc</b>", 3), "<b>abc</b>");
        assert_eq!(truncate_html("<b>abcd</b>", 3), "<b>ab…</b>");
        assert_eq!(
            truncate_html(
                "<b><a href=\"u\">a&amp;bcdef</a></b>\n<blockquote>x</blockquote>",
                4
            ),
            "<b><a href=\"u\">a&amp;b…</a></b>"
        );
        // Entities count as one character, emoji as two UTF-16 units.
        assert_eq!(visible_units("&lt;&#39;😀<i>x</i>"), 5);
        let long = format!(
            "<b>t</b>\n<blockquote>{}</blockquote>",
            "&lt;é".repeat(5000)
        );
        let cut = truncate_html(&long, MAX_TEXT);
        assert_eq!(visible_units(&cut), MAX_TEXT);
        assert!(cut.ends_with("…</blockquote>"));
        assert!(!cut.contains("&lt…") && !cut.ends_with("&…"));
    }

    #[test]
    fn missing_token_and_bad_fields_are_located_errors() {
        let (d, problems) = bind_chat(instance(None), "{ chat_id = -100123 }", None);
        assert!(d.is_none());
        assert!(problems[0].message.contains("needs a bot token"));
        for (text, want) in [
            ("{ chat_id = \"general\" }", "`chat_id` must be"),
            (
                "{ chat_id = 1, message_thread_id = 0 }",
                "positive forum topic",
            ),
            ("{ message_thread_id = 3 }", "needs `chat_id`"),
        ] {
            let (d, problems) = bind_chat(instance(Some(TOKEN)), text, Some(0..1));
            assert!(d.is_none(), "{text}");
            assert!(problems[0].message.contains(want), "{text}");
            assert!(problems[0].span.is_some(), "{text}");
        }
        let target = "{ chat_id = \"@forum_news\", message_thread_id = 5 }";
        let (d, problems) = bind_chat(instance(Some(TOKEN)), target, None);
        assert_eq!(
            d.map(|d| d.target()).as_deref(),
            Some("@forum_news topic 5")
        );
        assert!(problems.is_empty());
    }
}
