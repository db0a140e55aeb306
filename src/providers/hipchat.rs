//! `hipchat`: a room notification on a self-hosted HipChat Server or Data
//! Center, API v2: `POST {server}/v2/room/{room}/notification` with a token
//! as `Authorization: Bearer`, answered `204 No Content` (so no message id:
//! no threads, no edits).
//!
//! **HipChat Cloud was retired on 2019-02-15** (Slack bought the IP;
//! `api.hipchat.com` no longer answers), and Atlassian stopped renewing
//! Server/Data Center licences after 2019-07-26, so their support has ended
//! too. This provider is for installations that still run; a `server` on
//! `hipchat.com` draws a warning.
//!
//! HTML ([`Dialect::Html`], `message_format: "html"`): values are escaped by
//! the renderer, and HipChat's HTML format supports no @mentions at all.
//! HipChat keeps only a few tags (a, b, i, strong, em, br, img, pre, code,
//! lists, tables) and, being HTML, ignores newlines, so every `\n` of the
//! rendered text is sent as `<br>`. Messages are at most 10 000 characters,
//! markup included; longer ones are cut outside tags and entities, with the
//! elements left open closed again. `notify` is false unless set.
//!
//! The token is a room notification token (Room → Integrations → Build your
//! own, for that room only) or a user token with the `send_notification`
//! scope; a chat's own `token` overrides the provider's. Errors are JSON
//! `{"error": {"code", "message", "type"}}`. Limits: 30 messages a minute
//! per room (`X-FloodControl-*`), 500 (Server default for user tokens: 100)
//! requests per 5 minutes per token (`X-Ratelimit-*`), both with Unix-time
//! resets; 429 is retried after the reset, 401/403/404 are permanent. See
//! shared/providers.md §2.14 and developer.atlassian.com
//! `/server/hipchat/send-room-notification`, `…/hipchat-rest-api-rate-limits`.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use serde_spanned::Spanned;
use toml_edit::Item;

use super::http::path_segment;
use super::http::retry_hint;
use super::{
    Capabilities, Destination, HttpRequest, HttpResponse, Instance, Message, Outbound, Outcome,
    Registration, http::classify_status, schema_of,
};
use crate::config::Rate;
use crate::config::de::Ctx;
use crate::config::env::Secret;
use crate::render::Dialect;
use crate::render::text::truncate;

pub const REGISTRATION: Registration = Registration {
    kind: "hipchat",
    about: "HipChat Server / Data Center room notification, API v2 (HipChat Cloud was retired in 2019)",
    parse,
    settings_schema: schema_of::<Settings>,
    target_schema: schema_of::<Target>,
};

/// `message`: "Valid length range: 1 - 10000".
const MAX_MESSAGE: usize = 10_000;

/// `from`: "Valid length range: 0 - 64".
const MAX_FROM: usize = 64;

/// Room names are at most 50 characters; ids are numbers.
const MAX_ROOM: usize = 100;

/// Room flood control: 30 messages a minute per room.
const PER_ROOM_PER_MINUTE: u32 = 30;

/// Elements that never close.
const VOID_ELEMENTS: &[&str] = &["br", "img", "hr", "wbr"];

/// The background colour of a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(rename = "HipchatColor")]
pub enum Color {
    Yellow,
    Green,
    Red,
    Purple,
    Gray,
    Random,
}

impl Color {
    fn as_str(self) -> &'static str {
        match self {
            Color::Yellow => "yellow",
            Color::Green => "green",
            Color::Red => "red",
            Color::Purple => "purple",
            Color::Gray => "gray",
            Color::Random => "random",
        }
    }
}

/// `[providers.NAME]` for `kind = "hipchat"`: one HipChat Server.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(rename = "HipchatSettings")]
pub struct Settings {
    /// Base URL of the self-hosted HipChat Server or Data Center, e.g. `https://hipchat.example.com` (without `/v2`). Required: HipChat Cloud (`api.hipchat.com`) was retired on 2019-02-15.
    #[schemars(with = "Option<String>")]
    pub server: Option<Spanned<String>>,
    /// Token for every chat of this provider that sets none, as `${VAR}`: a user token with the `send_notification` scope (a room notification token works only for its own room). Sent as `Authorization: Bearer`.
    #[schemars(with = "Option<String>")]
    pub token: Option<Spanned<String>>,
    /// A label shown next to the sender's name (up to 64 characters).
    #[schemars(with = "Option<String>")]
    pub from: Option<Spanned<String>>,
    /// Background colour: `yellow` (default), `green`, `red`, `purple`, `gray` or `random`.
    pub color: Option<Color>,
    /// Whether messages notify the room's members (sound, tab colour, phones); default false.
    pub notify: Option<bool>,
}

/// Chat fields for a HipChat chat.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(rename = "HipchatTarget")]
pub struct Target {
    /// The room: its numeric id or its name.
    #[schemars(with = "Option<RoomValue>")]
    pub room: Option<Spanned<RoomValue>>,
    /// This room's notification token (Room → Integrations → Build your own), as `${VAR}`, instead of the provider's `token`.
    #[schemars(with = "Option<String>")]
    pub token: Option<Spanned<String>>,
}

/// A room id (integer) or name (string).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "HipchatRoom")]
pub enum RoomValue {
    Id(u64),
    Name(String),
}

#[derive(Debug)]
struct HipChat {
    server: Option<String>,
    token: Option<Secret>,
    from: Option<String>,
    color: Color,
    notify: bool,
}

fn parse(item: &Item, cx: &mut Ctx<'_>) -> Option<Arc<dyn Instance>> {
    let s = cx.deserialize::<Settings>(item)?;
    let server = match &s.server {
        Some(u) => {
            let url = cx.url("server", u, false)?;
            let base = url.expose().trim_end_matches('/');
            let base = base.strip_suffix("/v2").unwrap_or(base).to_string();
            if is_cloud(&base) {
                cx.warning(
                    Some(u.span()),
                    "HipChat Cloud was retired on 2019-02-15 and its servers no longer answer: `server` must be a self-hosted HipChat Server or Data Center",
                );
            }
            Some(base)
        }
        None => None,
    };
    let token = cx.opt_secret("token", &s.token)?;
    let from = match &s.from {
        Some(f) => {
            let label = f.get_ref().trim();
            if label.chars().count() > MAX_FROM || label.chars().any(char::is_control) {
                cx.error(
                    Some(f.span()),
                    format!("`from` must be a label of at most {MAX_FROM} characters"),
                );
                return None;
            }
            (!label.is_empty()).then(|| label.to_string())
        }
        None => None,
    };
    let has_settings = item.as_table_like().is_some_and(|t| !t.is_empty());
    if has_settings && server.is_none() {
        cx.error(
            item.span(),
            "a hipchat provider needs `server`, the base URL of the HipChat Server (e.g. \"https://hipchat.example.com\")",
        );
        return None;
    }
    Some(Arc::new(HipChat {
        server,
        token,
        from,
        color: s.color.unwrap_or(Color::Yellow),
        notify: s.notify.unwrap_or(false),
    }))
}

/// `hipchat.com` and its subdomains (`api.`, `TEAM.`): the retired cloud.
fn is_cloud(url: &str) -> bool {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .is_some_and(|h| h == "hipchat.com" || h.ends_with(".hipchat.com"))
}

impl Instance for HipChat {
    fn bind(
        self: Arc<Self>,
        target: &Item,
        chat: Option<Range<usize>>,
        cx: &mut Ctx<'_>,
    ) -> Option<Box<dyn Destination>> {
        let t = cx.deserialize::<Target>(target)?;
        let Some(raw) = &t.room else {
            cx.error(chat, "a hipchat chat needs `room`, the room's id or name");
            return None;
        };
        let room = match raw.get_ref() {
            RoomValue::Id(0) => None,
            RoomValue::Id(n) => Some(n.to_string()),
            RoomValue::Name(s) => {
                let s = s.trim();
                (!s.is_empty() && s.chars().count() <= MAX_ROOM && !s.chars().any(char::is_control))
                    .then(|| s.to_string())
            }
        };
        let Some(room) = room else {
            cx.error(
                Some(raw.span()),
                format!("`room` must be a room id or a room name of 1 to {MAX_ROOM} characters"),
            );
            return None;
        };
        let token = match &t.token {
            Some(tok) => Some(cx.secret("token", tok)?),
            None => self.token.clone(),
        };
        let (Some(server), Some(token)) = (self.server.clone(), token) else {
            let needs = if self.server.is_none() {
                "`server` on a [providers.NAME] table with kind = \"hipchat\", and a `token`"
            } else {
                "a `token = \"${HIPCHAT_ROOM_TOKEN}\"` (the room's notification token) or a `token` on its provider"
            };
            cx.error(chat, format!("a hipchat chat needs {needs}"));
            return None;
        };
        Some(Box::new(HipChatChat {
            instance: self,
            server,
            token,
            room,
        }))
    }
}

#[derive(Debug)]
struct HipChatChat {
    instance: Arc<HipChat>,
    server: String,
    token: Secret,
    room: String,
}

impl Destination for HipChatChat {
    fn kind(&self) -> &'static str {
        REGISTRATION.kind
    }

    fn dialect(&self) -> Dialect {
        Dialect::Html
    }

    fn capabilities(&self) -> Capabilities {
        // `204 No Content`: no message id to thread under or edit.
        Capabilities::default()
    }

    fn default_rate(&self) -> Option<Rate> {
        Some(Rate::per_minute(PER_ROOM_PER_MINUTE))
    }

    fn target(&self) -> String {
        format!("room {}", self.room)
    }

    fn request(&self, msg: &Message<'_>) -> Outbound {
        let html = msg.text.replace("\r\n", "\n").replace('\n', "<br>");
        let mut body = json!({
            "message": cut_html(&html, MAX_MESSAGE),
            "message_format": "html",
            "color": self.instance.color.as_str(),
            "notify": self.instance.notify,
        });
        if let Some(f) = &self.instance.from {
            body["from"] = json!(f);
        }
        let url = Secret::new(format!(
            "{}/v2/room/{}/notification",
            self.server,
            path_segment(&self.room)
        ));
        Outbound::Http(HttpRequest::post_json(&url, &body).bearer(&self.token))
    }

    fn classify(&self, resp: &HttpResponse) -> Outcome {
        classify_answer(resp, jiff::Timestamp::now().as_second())
    }
}

/// `html` cut to at most `max` characters in all (markup included, `…`
/// and the closing tags too), never inside a tag or an entity, with the
/// elements left open at the cut closed again. The renderer's HTML is
/// well-formed (values are escaped, helpers emit balanced tags).
fn cut_html(html: &str, max: usize) -> String {
    if html.chars().count() <= max {
        return html.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    let mut open: Vec<String> = Vec::new();
    let closing = |open: &[String]| open.iter().map(|n| n.chars().count() + 3).sum::<usize>();
    let mut rest = html;
    while let Some(token) = next_token(rest) {
        let len = token.chars().count();
        let mut after = open.clone();
        track_tag(token, &mut after);
        // The token, then `…`, then what closes the elements still open.
        if used + len + 1 + closing(&after) > max {
            break;
        }
        out.push_str(token);
        used += len;
        open = after;
        rest = &rest[token.len()..];
    }
    out.push('…');
    for name in open.iter().rev() {
        out.push_str("</");
        out.push_str(name);
        out.push('>');
    }
    out
}

/// The tag, entity or character at the start of `s`.
fn next_token(s: &str) -> Option<&str> {
    let c = s.chars().next()?;
    if c == '<'
        && let Some(end) = s.find('>')
    {
        return Some(&s[..=end]);
    }
    if c == '&'
        && let Some(end) = s
            .char_indices()
            .take(12)
            .find(|(_, c)| *c == ';')
            .map(|(i, _)| i)
        && end > 1
        && s[1..end]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '#')
    {
        return Some(&s[..=end]);
    }
    Some(&s[..c.len_utf8()])
}

/// Keeps the stack of open elements up to date with one token (text and
/// void elements leave it alone).
fn track_tag(token: &str, open: &mut Vec<String>) {
    let Some(inner) = token.strip_prefix('<').and_then(|t| t.strip_suffix('>')) else {
        return;
    };
    let inner = inner.trim();
    if inner.ends_with('/') || inner.starts_with('!') {
        return;
    }
    let name = |s: &str| {
        s.split(|c: char| c.is_whitespace() || c == '/')
            .next()
            .unwrap_or("")
            .to_ascii_lowercase()
    };
    if let Some(closing) = inner.strip_prefix('/') {
        let n = name(closing.trim());
        if let Some(i) = open.iter().rposition(|o| *o == n) {
            open.truncate(i);
        }
    } else {
        let n = name(inner);
        if !n.is_empty() && !VOID_ELEMENTS.contains(&n.as_str()) {
            open.push(n);
        }
    }
}

fn classify_answer(resp: &HttpResponse, now_secs: i64) -> Outcome {
    let status = resp.status;
    if (200..300).contains(&status) {
        return Outcome::Sent { remote_id: None };
    }
    let body: serde_json::Value = serde_json::from_slice(&resp.body).unwrap_or_default();
    let detail = match body["error"]["message"].as_str() {
        Some(m) if !m.trim().is_empty() => format!(": {}", truncate(m.trim(), 200)),
        _ => {
            let s = resp.body_snippet();
            if s.is_empty() { s } else { format!(": {s}") }
        }
    };
    if status == 429 {
        return Outcome::Retry {
            reason: format!("hipchat: HTTP 429{detail}"),
            after: resp.retry_after().or_else(|| reset_wait(resp, now_secs)),
        };
    }
    let hint = match status {
        401 => " (the token was rejected: expired, revoked or mistyped)",
        403 => {
            " (the token may not post here: a room notification token works only for its own room, a user token needs the send_notification scope)"
        }
        404 => " (unknown room, or no HipChat API v2 at `server`: check `room` and `server`)",
        400 if detail.contains("message") => " (HipChat refused the message: check the template)",
        _ => "",
    };
    match classify_status(resp) {
        Outcome::Retry { after, .. } => Outcome::Retry {
            reason: format!("hipchat: HTTP {status}{detail}"),
            after,
        },
        _ => Outcome::Permanent {
            reason: format!("hipchat: HTTP {status}{detail}{hint}"),
        },
    }
}

/// The wait until the exhausted limit resets: `X-FloodControl-Reset` (the
/// room) or `X-Ratelimit-Reset` (the token), Unix seconds. A limit whose
/// `…-Remaining` is above zero is not the one that was hit; when none says
/// so, the later reset is used.
fn reset_wait(resp: &HttpResponse, now_secs: i64) -> Option<Duration> {
    let reset = |prefix: &str| -> Option<(i64, bool)> {
        let at: i64 = resp
            .header(&format!("{prefix}-Reset"))?
            .trim()
            .parse()
            .ok()?;
        let exhausted = resp
            .header(&format!("{prefix}-Remaining"))
            .and_then(|r| r.trim().parse::<i64>().ok())
            .is_none_or(|r| r <= 0);
        Some((at, exhausted))
    };
    let found: Vec<(i64, bool)> = ["X-FloodControl", "X-Ratelimit"]
        .iter()
        .filter_map(|p| reset(p))
        .collect();
    let at = found
        .iter()
        .filter(|(_, exhausted)| *exhausted)
        .map(|(at, _)| *at)
        .max()
        .or_else(|| found.iter().map(|(at, _)| *at).max())?;
    Some(retry_hint::until_unix_secs(at, now_secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const TOKEN: &str = "canaryHipchatRoomToken4242";

    fn chat(room: &str, from: Option<&str>) -> HipChatChat {
        HipChatChat {
            instance: Arc::new(HipChat {
                server: Some("https://hipchat.example.com".into()),
                token: None,
                from: from.map(str::to_string),
                color: Color::Yellow,
                notify: false,
            }),
            server: "https://hipchat.example.com".into(),
            token: Secret::new(TOKEN),
            room: room.into(),
        }
    }

    use crate::providers::http::tests::resp;

    fn http(out: Outbound) -> HttpRequest {
        match out {
            Outbound::Http(r) => r,
            Outbound::Stdout(_) | Outbound::Native(_) => panic!("expected HTTP"),
        }
    }

    #[test]
    fn request_shape() {
        let ctx = json!({});
        let text = "<b><a href=\"https://f/t/1\">&lt;b&gt; @\u{200B}all</a></b> by X\n<blockquote>quote</blockquote>";
        let r = http(chat("Dev Team/#1", Some("Forum")).request(&Message {
            chat: "c",
            text,
            context: &ctx,
            action: Default::default(),
            delivery: None,
        }));
        assert_eq!(r.method, "POST");
        assert_eq!(
            r.url.expose(),
            "https://hipchat.example.com/v2/room/Dev%20Team%2F%231/notification"
        );
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            body,
            json!({
                "message": "<b><a href=\"https://f/t/1\">&lt;b&gt; @\u{200B}all</a></b> by X<br><blockquote>quote</blockquote>",
                "message_format": "html",
                "color": "yellow",
                "notify": false,
                "from": "Forum",
            })
        );
        assert!(
            r.headers
                .iter()
                .any(|(k, v)| k == "Authorization" && v.expose() == format!("Bearer {TOKEN}"))
        );
        assert!(!r.url.expose().contains(TOKEN));
        assert_eq!(chat("42", None).target(), "room 42");
    }

    #[test]
    fn long_messages_are_cut_outside_markup_and_closed() {
        let html = format!(
            "<b><a href=\"https://f/t/1\">Title &amp; more</a></b><br><blockquote>{}</blockquote>",
            "word &lt;x&gt; ".repeat(1200)
        );
        let cut = cut_html(&html, MAX_MESSAGE);
        assert!(
            cut.chars().count() <= MAX_MESSAGE,
            "{}",
            cut.chars().count()
        );
        assert!(cut.chars().count() > MAX_MESSAGE - 20);
        assert!(
            cut.ends_with("…</blockquote>"),
            "{}",
            &cut[cut.len() - 40..]
        );
        assert!(
            cut.starts_with(
                "<b><a href=\"https://f/t/1\">Title &amp; more</a></b><br><blockquote>"
            )
        );
        // Never a broken entity before the ellipsis.
        let tail = &cut[..cut.len() - "…</blockquote>".len()];
        let last_amp = tail.rfind('&').unwrap();
        assert!(tail[last_amp..].contains(';'), "{}", &tail[last_amp..]);
        // Cut inside an open link: the link is closed, then the bold.
        let deep = format!("<b><a href=\"u\">{}</a></b>", "x".repeat(50));
        assert_eq!(cut_html(&deep, 30), "<b><a href=\"u\">xxxxxx…</a></b>");
        assert_eq!(cut_html("short", 30), "short");
    }

    #[test]
    fn classifies_hipchat_answers() {
        let now = 1_700_000_000;
        assert_eq!(
            classify_answer(&resp(204, &[], ""), now),
            Outcome::Sent { remote_id: None }
        );
        // Room flood control hit; the token's overall limit still has room.
        assert_eq!(
            classify_answer(
                &resp(
                    429,
                    &[
                        ("X-FloodControl-Limit", "30"),
                        ("X-FloodControl-Remaining", "0"),
                        ("X-FloodControl-Reset", "1700000042"),
                        ("X-Ratelimit-Limit", "500"),
                        ("X-Ratelimit-Remaining", "480"),
                        ("X-Ratelimit-Reset", "1700000200"),
                    ],
                    r#"{"error":{"code":429,"message":"You have exceeded the rate limit. `Find out why.`","type":"Too Many Requests"}}"#
                ),
                now
            ),
            Outcome::Retry {
                reason: "hipchat: HTTP 429: You have exceeded the rate limit. `Find out why.`"
                    .into(),
                after: Some(Duration::from_secs(42))
            }
        );
        assert!(matches!(
            classify_answer(&resp(429, &[("X-Ratelimit-Reset", "1700000100")], ""), now),
            Outcome::Retry { after: Some(d), .. } if d.as_secs() == 100
        ));
        assert!(matches!(
            classify_answer(&resp(429, &[("Retry-After", "5"), ("X-Ratelimit-Reset", "1700000100")], ""), now),
            Outcome::Retry { after: Some(d), .. } if d.as_secs() == 5
        ));
        assert!(matches!(
            classify_answer(&resp(503, &[], "<html>down</html>"), now),
            Outcome::Retry { after: None, .. }
        ));
        let cases = [
            (
                401,
                r#"{"error":{"code":401,"message":"Invalid OAuth session","type":"Unauthorized"}}"#,
                "Invalid OAuth session (the token was rejected",
            ),
            (
                403,
                r#"{"error":{"code":403,"message":"Access denied","type":"Forbidden"}}"#,
                "send_notification",
            ),
            (
                404,
                r#"{"error":{"code":404,"message":"Room not found","type":"Not Found"}}"#,
                "Room not found (unknown room",
            ),
            (
                400,
                r#"{"error":{"code":400,"message":"message: Value must be at most 10000 characters","type":"Bad Request"}}"#,
                "check the template",
            ),
        ];
        for (status, body, want) in cases {
            let out = classify_answer(&resp(status, &[], body), now);
            let Outcome::Permanent { reason } = &out else {
                panic!("{status} should be permanent: {out:?}")
            };
            assert!(reason.contains(want), "{reason} lacks {want}");
            assert!(!reason.contains(TOKEN));
        }
    }

    #[test]
    fn settings_and_chats_are_validated() {
        let env: HashMap<String, String> = [("TOK".to_string(), TOKEN.to_string())].into();
        for (text, want) in [
            ("token = \"${TOK}\"", "needs `server`"),
            (
                "server = \"https://h.example\"\ntoken = \"literal\"",
                "must be an environment reference",
            ),
            ("server = \"h.example\"", "absolute http"),
            (
                "server = \"https://h.example\"\ncolor = \"blue\"",
                "unknown value",
            ),
            (
                "server = \"https://h.example\"\nfrom = \"a label that is much too long to be shown next to the sender name\"",
                "at most 64",
            ),
        ] {
            let mut cx = Ctx::new(&env, crate::config::de::MissingEnv::Warn);
            let doc = toml_edit::Document::parse(format!("[p]\n{text}\n")).unwrap();
            assert!(parse(&doc["p"], &mut cx).is_none(), "{text}");
            let msgs: Vec<&str> = cx.problems().iter().map(|p| p.message.as_str()).collect();
            assert!(msgs.iter().any(|m| m.contains(want)), "{text}: {msgs:?}");
            assert!(
                msgs.iter()
                    .all(|m| !m.contains(TOKEN) && !m.contains("literal"))
            );
        }
        // The retired cloud is a warning; `/v2` at the end is tolerated.
        let mut cx = Ctx::new(&env, crate::config::de::MissingEnv::Error);
        let doc = toml_edit::Document::parse(
            "[cloud]\nserver = \"https://api.hipchat.com/v2/\"\n[p]\nserver = \"http://127.0.0.1:9/v2\"\nnotify = true\ncolor = \"red\"\n"
                .to_string(),
        )
        .unwrap();
        assert!(parse(&doc["cloud"], &mut cx).is_some());
        assert!(cx.problems()[0].message.contains("retired on 2019-02-15"));
        assert!(!cx.has_errors());
        let inst = parse(&doc["p"], &mut cx).unwrap();
        for (text, want) in [
            ("t = {}", "needs `room`"),
            ("t = { room = \"\" }", "room id or a room name"),
            ("t = { room = 0 }", "room id or a room name"),
            ("t = { room = 7 }", "needs a `token"),
            (
                "t = { room = 7, token = \"plain\" }",
                "must be an environment reference",
            ),
        ] {
            let doc = toml_edit::Document::parse(text.to_string()).unwrap();
            assert!(
                inst.clone().bind(&doc["t"], Some(0..1), &mut cx).is_none(),
                "{text}"
            );
            assert!(
                cx.problems().last().unwrap().message.contains(want),
                "{text}"
            );
        }
        let doc =
            toml_edit::Document::parse("t = { room = 7, token = \"${TOK}\" }".to_string()).unwrap();
        let d = inst.bind(&doc["t"], None, &mut cx).unwrap();
        let ctx = json!({});
        let r = http(d.request(&Message {
            chat: "c",
            text: "x",
            context: &ctx,
            action: Default::default(),
            delivery: None,
        }));
        assert_eq!(r.url.expose(), "http://127.0.0.1:9/v2/room/7/notification");
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["notify"], true);
        assert_eq!(body["color"], "red");
        // A bare `provider = "hipchat"` chat has no server.
        let mut cx = Ctx::new(&env, crate::config::de::MissingEnv::Warn);
        let bare = parse(&Item::Table(toml_edit::Table::new()), &mut cx).unwrap();
        assert!(bare.bind(&doc["t"], Some(0..1), &mut cx).is_none());
        assert!(cx.problems()[0].message.contains("needs `server`"));
    }
}
