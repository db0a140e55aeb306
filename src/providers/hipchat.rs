//! `hipchat`: a room notification on self-hosted HipChat Server or Data
//! Center (Cloud was retired on 2019-02-15; a `server` on `hipchat.com`
//! draws a warning). `POST {server}/v2/room/{room}/notification`, token as
//! `Authorization: Bearer` (a chat's own room token overrides the
//! provider's), body `{"message", "message_format": "html", "color",
//! "notify", "from"?}`, answered `204`: no message id, no threads or edits.
//!
//! Dialect: HTML, values escaped by the renderer, no @mentions in HipChat's
//! HTML; newlines sent as `<br>`; cut to 10 000 characters, markup included,
//! outside tags and entities with open elements closed. No parser exists
//! (the platform is gone): `tests/provider_hipchat.rs` checks that only the
//! template's tags are live in the hostile fixture. Errors `{"error":
//! {"message"}}`; 429 waits for `X-FloodControl-Reset` (30 a minute per room)
//! or `X-Ratelimit-Reset` (per token); 401/403/404 permanent. See
//! shared/providers.md §2.14.

use super::kit::prelude::*;
use serde::Serialize;

use crate::render::text::truncate;

pub const REGISTRATION: Registration = kit::registration::<HipChat>(
    "hipchat",
    "HipChat Server / Data Center room notification, API v2 (HipChat Cloud was retired in 2019)",
);

/// `message`: "Valid length range: 1 - 10000".
const MAX_MESSAGE: usize = 10_000;
/// `from`: "Valid length range: 0 - 64".
const MAX_FROM: usize = 64;
/// Room names are at most 50 characters; ids are numbers.
const MAX_ROOM: usize = 100;

/// The background colour of a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
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

/// `[providers.NAME]` for `kind = "hipchat"`: one HipChat Server.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(rename = "HipchatSettings")]
pub struct Settings {
    /// Base URL of the self-hosted HipChat Server or Data Center, e.g. `https://hipchat.example.com` (without `/v2`). Required: HipChat Cloud (`api.hipchat.com`) was retired on 2019-02-15.
    pub server: Option<Located<String>>,
    /// Token for every chat of this provider that sets none, as `${VAR}`: a user token with the `send_notification` scope (a room notification token works only for its own room). Sent as `Authorization: Bearer`.
    pub token: Option<Located<String>>,
    /// A label shown next to the sender's name (up to 64 characters).
    pub from: Option<Located<String>>,
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
    pub room: Option<Located<RoomValue>>,
    /// This room's notification token (Room → Integrations → Build your own), as `${VAR}`, instead of the provider's `token`.
    pub token: Option<Located<String>>,
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

/// `hipchat.com` and its subdomains (`api.`, `TEAM.`): the retired cloud.
fn is_cloud(url: &str) -> bool {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .is_some_and(|h| h == "hipchat.com" || h.ends_with(".hipchat.com"))
}

impl Provider for HipChat {
    type Settings = Settings;
    type Target = Target;

    fn new(s: Settings, table: &Table, cx: &mut Ctx<'_>) -> Option<Self> {
        let server = match &s.server {
            Some(u) => {
                let base = cx.base_url("server", &s.server, "")?;
                let base = base.strip_suffix("/v2").unwrap_or(&base).to_string();
                if is_cloud(&base) {
                    let msg = "HipChat Cloud was retired on 2019-02-15 and its servers no longer answer: `server` must be a self-hosted HipChat Server or Data Center";
                    cx.warning(Some(u.span()), msg);
                }
                Some(base)
            }
            None => None,
        };
        let token = cx.opt_secret("token", &s.token)?;
        let from = match &s.from {
            Some(f) => {
                let label = f.get_ref().trim();
                let ok = label.chars().count() <= MAX_FROM && !label.chars().any(char::is_control);
                let shape = format!("`from` must be a label of at most {MAX_FROM} characters");
                kit::check(cx, ok, Some(f.span()), shape)?;
                (!label.is_empty()).then(|| label.to_string())
            }
            None => None,
        };
        // A bare `provider = "hipchat"` chat says what is missing when bound.
        let missing = "a hipchat provider needs `server`, the base URL of the HipChat Server (e.g. \"https://hipchat.example.com\")";
        let ok = server.is_some() || !table.set;
        kit::check(cx, ok, table.span.clone(), missing)?;
        Some(HipChat {
            server,
            token,
            from,
            color: s.color.unwrap_or(Color::Yellow),
            notify: s.notify.unwrap_or(false),
        })
    }

    fn bind_target(self: Arc<Self>, t: Target, chat: Span, cx: &mut Ctx<'_>) -> Bound {
        let missing = "a hipchat chat needs `room`, the room's id or name";
        let raw = kit::required(cx, &t.room, chat.clone(), missing)?;
        let room = match raw.get_ref() {
            RoomValue::Id(0) => None,
            RoomValue::Id(n) => Some(n.to_string()),
            RoomValue::Name(s) => Some(s.trim().to_string()).filter(|s| {
                !s.is_empty() && s.chars().count() <= MAX_ROOM && !s.chars().any(char::is_control)
            }),
        };
        let Some(room) = room else {
            let shape =
                format!("`room` must be a room id or a room name of 1 to {MAX_ROOM} characters");
            return kit::reject(cx, Some(raw.span()), shape);
        };
        let token = cx.opt_secret("token", &t.token)?.or(self.token.clone());
        let (Some(server), Some(token)) = (self.server.clone(), token) else {
            let needs = if self.server.is_none() {
                "`server` on a [providers.NAME] table with kind = \"hipchat\", and a `token`"
            } else {
                "a `token = \"${HIPCHAT_ROOM_TOKEN}\"` (the room's notification token) or a `token` on its provider"
            };
            return kit::reject(cx, chat, format!("a hipchat chat needs {needs}"));
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

impl kit::Chat for HipChatChat {
    const KIND: &str = REGISTRATION.kind;
    const DIALECT: Dialect = Dialect::Html;
    // No CAPS: `204 No Content`, no message id to thread under or edit.
    // Room flood control: 30 messages a minute per room.
    const RATE: Option<Rate> = Some(Rate::per_minute(30));

    fn target(&self) -> String {
        format!("room {}", self.room)
    }

    fn request(&self, msg: &Message<'_>) -> Outbound {
        let inst = &self.instance;
        let html = msg.text.replace("\r\n", "\n").replace('\n', "<br>");
        let mut body = json!({
            "message": cut_html(&html, MAX_MESSAGE),
            "message_format": "html",
            "color": inst.color,
            "notify": inst.notify,
        });
        if let Some(f) = &inst.from {
            body["from"] = json!(f);
        }
        let room = path_segment(&self.room);
        let url = Secret::new(format!("{}/v2/room/{room}/notification", self.server));
        Outbound::Http(HttpRequest::post_json(&url, &body).bearer(&self.token))
    }

    fn classify(&self, resp: &HttpResponse) -> Outcome {
        classify_answer(resp, jiff::Timestamp::now().as_second())
    }
}

/// `html` cut to at most `max` characters in all (markup, `…` and the
/// closing tags included), never inside a tag or an entity, with the
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
    while let Some(token) = kit::html_token(rest) {
        let len = token.chars().count();
        let mut after = open.clone();
        kit::track_tag(token, &mut after, &["br", "img", "hr", "wbr"]);
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
        out.push_str(&format!("</{name}>"));
    }
    out
}

/// Errors: `{"error": {"code": 404, "message": "Room not found", "type": …}}`.
const SPEC: Spec = Spec {
    prefix: "hipchat",
    id_ptr: None,
    error: |_, body| {
        let m = body["error"]["message"].as_str()?.trim();
        (!m.is_empty()).then(|| truncate(m, 200))
    },
    sep: ": ",
    hint: |status| match status {
        401 => " (the token was rejected: expired, revoked or mistyped)",
        403 => {
            " (the token may not post here: a room notification token works only for its own room, a user token needs the send_notification scope)"
        }
        404 => " (unknown room, or no HipChat API v2 at `server`: check `room` and `server`)",
        _ => "",
    },
};

fn classify_answer(resp: &HttpResponse, now_secs: i64) -> Outcome {
    let reason = || format!("hipchat: {}", SPEC.describe(resp, &kit::json_body(resp)));
    match resp.status {
        429 => Outcome::Retry {
            reason: reason(),
            after: resp.retry_after().or_else(|| reset_wait(resp, now_secs)),
        },
        // HipChat names the field it refused (`message: Value must be…`).
        400 => {
            let reason = reason();
            let hint = if reason.contains("message") {
                " (HipChat refused the message: check the template)"
            } else {
                ""
            };
            Outcome::Permanent {
                reason: format!("{reason}{hint}"),
            }
        }
        _ => classify_json(resp, &SPEC),
    }
}

/// The wait until the exhausted limit resets: `X-FloodControl-Reset` (the
/// room) or `X-Ratelimit-Reset` (the token), Unix seconds. A limit whose
/// `…-Remaining` is above zero is not the one that was hit; when none says
/// so, the later reset is used.
fn reset_wait(resp: &HttpResponse, now_secs: i64) -> Option<Duration> {
    let number = |name: String| resp.header(&name)?.trim().parse::<i64>().ok();
    // (exhausted, reset): the latest exhausted one, else the latest.
    let (_, at) = ["X-FloodControl", "X-Ratelimit"]
        .iter()
        .filter_map(|p| {
            let exhausted = number(format!("{p}-Remaining")).is_none_or(|r| r <= 0);
            Some((exhausted, number(format!("{p}-Reset"))?))
        })
        .max()?;
    Some(retry_hint::until_unix_secs(at, now_secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::testkit::{self, body, header, post, resp};

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

    #[test]
    fn request_shape() {
        let text = "<b><a href=\"https://f/t/1\">&lt;b&gt; @\u{200B}all</a></b> by X\n<blockquote>quote</blockquote>";
        let r = post(&chat("Dev Team/#1", Some("Forum")), text);
        assert_eq!(r.method, "POST");
        assert_eq!(
            r.url.expose(),
            "https://hipchat.example.com/v2/room/Dev%20Team%2F%231/notification"
        );
        assert_eq!(
            body(&r),
            json!({
                "message": "<b><a href=\"https://f/t/1\">&lt;b&gt; @\u{200B}all</a></b> by X<br><blockquote>quote</blockquote>",
                "message_format": "html",
                "color": "yellow",
                "notify": false,
                "from": "Forum",
            })
        );
        assert_eq!(
            header(&r, "Authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
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
        let n = cut.chars().count();
        assert!(n <= MAX_MESSAGE && n > MAX_MESSAGE - 20, "{n}");
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
        let c = |status, headers: &[(&str, &str)], body| {
            classify_answer(&resp(status, headers, body), now)
        };
        assert_eq!(c(204, &[], ""), Outcome::Sent { remote_id: None });
        // Room flood control hit; the token's overall limit still has room.
        assert_eq!(
            c(
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
            Outcome::Retry {
                reason: "hipchat: HTTP 429: You have exceeded the rate limit. `Find out why.`"
                    .into(),
                after: Some(Duration::from_secs(42))
            }
        );
        for (headers, secs) in [
            (&[("X-Ratelimit-Reset", "1700000100")][..], 100),
            (
                &[("Retry-After", "5"), ("X-Ratelimit-Reset", "1700000100")][..],
                5,
            ),
        ] {
            assert!(matches!(
                c(429, headers, ""),
                Outcome::Retry { after: Some(d), .. } if d.as_secs() == secs
            ));
        }
        assert!(matches!(
            c(503, &[], "<html>down</html>"),
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
            let out = c(status, &[], body);
            let Outcome::Permanent { reason } = &out else {
                panic!("{status} should be permanent: {out:?}")
            };
            assert!(reason.contains(want), "{reason} lacks {want}");
            assert!(!reason.contains(TOKEN));
        }
    }

    #[test]
    fn settings_and_chats_are_validated() {
        let env = [("TOK", TOKEN)];
        for (text, want) in [
            ("token = \"${TOK}\"", "needs `server`"),
            (
                "server = \"https://h.example\", token = \"literal\"",
                "must be an environment reference",
            ),
            ("server = \"h.example\"", "absolute http"),
            (
                "server = \"https://h.example\", color = \"blue\"",
                "unknown value",
            ),
            (
                "server = \"https://h.example\", from = \"a label that is much too long to be shown next to the sender name\"",
                "at most 64",
            ),
        ] {
            let (d, msgs) = testkit::bind_fields(&REGISTRATION, text, "room = 7", &env);
            assert!(d.is_none(), "{text}");
            assert!(msgs.iter().any(|m| m.contains(want)), "{text}: {msgs:?}");
            assert!(
                msgs.iter()
                    .all(|m| !m.contains(TOKEN) && !m.contains("literal"))
            );
        }
        // The retired cloud is a warning; `/v2` at the end is tolerated.
        let (d, msgs) = testkit::bind_fields(
            &REGISTRATION,
            "server = \"https://api.hipchat.com/v2/\", token = \"${TOK}\"",
            "room = 7",
            &env,
        );
        assert!(d.is_some());
        assert!(msgs.len() == 1 && msgs[0].contains("retired on 2019-02-15"));
        let p = "server = \"http://127.0.0.1:9/v2\", notify = true, color = \"red\"";
        for (text, want) in [
            ("", "needs `room`"),
            ("room = \"\"", "room id or a room name"),
            ("room = 0", "room id or a room name"),
            ("room = 7", "needs a `token"),
            (
                "room = 7, token = \"plain\"",
                "must be an environment reference",
            ),
        ] {
            let (d, msgs) = testkit::bind_fields(&REGISTRATION, p, text, &env);
            assert!(d.is_none(), "{text}");
            assert!(msgs.last().unwrap().contains(want), "{text}: {msgs:?}");
        }
        let (d, _) = testkit::bind_fields(&REGISTRATION, p, "room = 7, token = \"${TOK}\"", &env);
        let r = post(d.unwrap().as_ref(), "x");
        assert_eq!(r.url.expose(), "http://127.0.0.1:9/v2/room/7/notification");
        assert_eq!(body(&r)["notify"], true);
        assert_eq!(body(&r)["color"], "red");
        // A bare `provider = "hipchat"` chat has no server.
        let (d, msgs) =
            testkit::bind_fields(&REGISTRATION, "", "room = 7, token = \"${TOK}\"", &env);
        assert!(d.is_none());
        assert!(msgs[0].contains("needs `server`"), "{msgs:?}");
    }
}
