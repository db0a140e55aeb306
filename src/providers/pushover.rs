//! `pushover`: `POST {api_url}/messages.json`, form-encoded, with the
//! application `token` and the `user` (or group) key in the body (both
//! `${VAR}`s, so the redactor hides them wherever the request is shown),
//! `message`, `html=1`, `title` (the topic), `url` (the post), `url_title`,
//! and optional `device`, `priority`, `sound`.
//!
//! Cards (the default style): `title` = the headline, `url` = the post
//! with `url_title` = "View topic"/"View reply", `timestamp` = when it was
//! written, and an `html=1` message laid out in lines: the author,
//! @username · what happened · the category in its colour (`<font
//! color>`); the excerpt in italics; 🏷️ the tags; the forum and the time
//! in grey. Every piece is cut by its escaped cost so the message stays
//! within 1 024 characters (the excerpt takes what the rest leaves). No
//! `<b>`: the title is bold already. A chat's own card is an object with
//! `message` and optionally `title`, `url_title`.
//!
//! Dialect: HTML (Pushover renders `<b> <i> <u> <font color> <a href>`);
//! values entity-escaped, no mentions exist. No parser test: the strictest
//! reading, checked on the hostile fixture in `tests/provider_pushover.rs`.
//! Limits: message 1 024 characters (cut outside tags and entities), title
//! 250, URL 512, URL title 100. Answers: `{"status":1}` sent; `"status":0`
//! permanent (HTTP 200 too), naming the bad parameter; 429 when the monthly
//! quota is spent; 5xx retried no sooner than 5 s, as Pushover asks. See
//! shared/providers.md §3.

use super::kit::prelude::*;

use crate::render::escape::escape;
use crate::render::text::truncate;

pub const REGISTRATION: Registration =
    kit::registration::<Pushover>("pushover", "Pushover push notifications");

const DEFAULT_API_URL: &str = "https://api.pushover.net/1";
const MAX_MESSAGE_CHARS: usize = 1024;
const MAX_TITLE_CHARS: usize = 250;
const MAX_URL_CHARS: usize = 512;
const MAX_URL_TITLE_CHARS: usize = 100;
/// Pushover asks clients to wait at least this long before retrying a 5xx.
const MIN_RETRY: Duration = Duration::from_secs(5);

/// `[providers.NAME]` for `kind = "pushover"`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Settings {
    /// Application API token, as `${VAR}` (required; sent in the request body).
    pub token: Option<Located<String>>,
    /// API base URL (default `https://api.pushover.net/1`).
    pub api_url: Option<Located<String>>,
    /// Priority from -2 (no alert) to 1 (high, bypasses quiet hours); default 0. Emergency (2) is not supported.
    pub priority: Option<Located<i64>>,
    /// Notification sound name (e.g. `pushover`, `none`); default: the user's.
    pub sound: Option<String>,
}

/// Chat fields for a Pushover chat.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Target {
    /// User or group key to notify, as `${VAR}` (sent in the request body).
    pub user: Option<Located<String>>,
    /// Device name(s) to notify, comma-separated; default: all of the user's devices.
    pub device: Option<String>,
}

#[derive(Debug)]
struct Pushover {
    token: Secret,
    api_url: String,
    priority: Option<i8>,
    sound: Option<String>,
}

impl Provider for Pushover {
    type Settings = Settings;
    type Target = Target;

    fn new(s: Settings, table: &Table, cx: &mut Ctx<'_>) -> Option<Self> {
        let missing = "a pushover provider needs the application `token = \"${PUSHOVER_TOKEN}\"`: define [providers.NAME] with kind = \"pushover\"";
        let (token, _) = kit::required_secret(cx, &s.token, "token", table.span.clone(), missing)?;
        let priority = "`priority` must be between -2 and 1 (emergency priority 2 needs acknowledgements the relay does not handle)";
        Some(Pushover {
            token,
            api_url: cx.base_url("api_url", &s.api_url, DEFAULT_API_URL)?,
            priority: kit::ranged(cx, &s.priority, -2..=1, priority)?,
            sound: s.sound.filter(|v| !v.trim().is_empty()),
        })
    }

    fn bind_target(self: Arc<Self>, t: Target, chat: Span, cx: &mut Ctx<'_>) -> Bound {
        let missing = "a pushover chat needs `user = \"${PUSHOVER_USER}\"` (a user or group key)";
        let (user, raw) = kit::required_secret(cx, &t.user, "user", chat, missing)?;
        let ok = !user.expose().trim().is_empty();
        kit::check(cx, ok, Some(raw.span()), "`user` is empty")?;
        Some(Box::new(PushoverChat {
            instance: self,
            user,
            user_shown: raw.get_ref().clone(),
            device: t.device.filter(|d| !d.trim().is_empty()),
        }))
    }
}

#[derive(Debug)]
struct PushoverChat {
    instance: Arc<Pushover>,
    user: Secret,
    /// The key as written (`${VAR}`), for `target()`.
    user_shown: String,
    device: Option<String>,
}

impl kit::Chat for PushoverChat {
    const KIND: &str = REGISTRATION.kind;
    const DIALECT: Dialect = Dialect::Html;
    // No per-second limit is documented (the quota is monthly): one a second.
    const RATE: Option<Rate> = Some(Rate::per_second(1));
    const TEMPLATE: Option<&str> = Some(kit::push_template!("\n"));

    fn target(&self) -> String {
        match &self.device {
            Some(d) => format!("user {} (device {d})", self.user_shown),
            None => format!("user {}", self.user_shown),
        }
    }

    const CARDS: bool = true;

    fn check_card(&self, card: &Value) -> Result<(), String> {
        check_card(card)
    }

    fn request(&self, msg: &Message<'_>) -> Outbound {
        if let Some(card) = msg.card {
            return self.card_request(card, msg.custom);
        }
        let inst = &self.instance;
        let title = kit::topic_title(msg.context);
        let mut message = truncate_html(msg.text, MAX_MESSAGE_CHARS);
        if message.trim().is_empty() {
            // Pushover refuses a blank message.
            message = escape(Dialect::Html, &truncate(&title, MAX_MESSAGE_CHARS));
        }
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("token", inst.token.expose())
            .append_pair("user", self.user.expose())
            .append_pair("message", &message)
            .append_pair("html", "1");
        if !title.is_empty() {
            form.append_pair("title", &truncate(&title, MAX_TITLE_CHARS));
        }
        let link = kit::post_link(msg.context).filter(|u| u.chars().count() <= MAX_URL_CHARS);
        if let Some(url) = link {
            form.append_pair("url", url);
            if !title.is_empty() {
                form.append_pair("url_title", &truncate(&title, MAX_URL_TITLE_CHARS));
            }
        }
        if let Some(d) = &self.device {
            form.append_pair("device", d);
        }
        if let Some(p) = inst.priority {
            form.append_pair("priority", &p.to_string());
        }
        if let Some(s) = &inst.sound {
            form.append_pair("sound", s);
        }
        let url = Secret::new(format!("{}/messages.json", inst.api_url));
        Outbound::Http(HttpRequest::form("POST", url, form.finish()))
    }

    fn classify(&self, resp: &HttpResponse) -> Outcome {
        let body = kit::json_body(resp);
        let reason = || format!("pushover: {}", SPEC.describe(resp, &body));
        match classify_status(resp) {
            // HTTP 200 means accepted; `status: 0` with it would still be a refusal.
            Outcome::Sent { .. } if body["status"].as_i64() != Some(0) => {
                Outcome::Sent { remote_id: None }
            }
            Outcome::Sent { .. } | Outcome::Permanent { .. } => Outcome::Permanent {
                reason: format!("{}{}", reason(), hint(&body)),
            },
            Outcome::Retry { after, .. } if resp.status == 429 => Outcome::Retry {
                reason: format!(
                    "{} (the application's monthly message quota is used up)",
                    reason()
                ),
                after,
            },
            Outcome::Retry { after, .. } => Outcome::Retry {
                reason: reason(),
                after: Some(after.map_or(MIN_RETRY, |a| a.max(MIN_RETRY))),
            },
        }
    }
}

/// Errors: `{"errors": ["user identifier is invalid", …], "status": 0}`.
const SPEC: Spec = Spec {
    error: |_, body| {
        let errors: Vec<&str> = body["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e.as_str())
            .collect();
        (!errors.is_empty()).then(|| kit::clip(&errors.join("; "), 240))
    },
    ..Spec::plain("pushover")
};

/// Pushover names the failing parameter (`"token":"invalid"`, `"user":"invalid"`).
fn hint(body: &serde_json::Value) -> &'static str {
    if body["token"] == "invalid" {
        " (check the application `token`)"
    } else if body["user"] == "invalid" {
        " (check `user`: a user or group key)"
    } else if body["device"] == "invalid" {
        " (check `device`)"
    } else {
        ""
    }
}

/// `html` cut to at most `max` characters, with `…`, never inside a tag
/// (`<a href=…`) or an entity (`&amp;`).
impl PushoverChat {
    /// The card as a notification: see the module doc.
    fn card_request(&self, card: &Card, custom: Option<&Value>) -> Outbound {
        let inst = &self.instance;
        let own = |key: &str| custom.and_then(|c| c[key].as_str()).map(str::to_string);
        let title =
            own("title").unwrap_or_else(|| crate::providers::inert::plain(&card.headline()));
        let message = match custom {
            Some(_) => truncate_html(&own("message").unwrap_or_default(), MAX_MESSAGE_CHARS),
            None => card_message(card),
        };
        let url_title = own("url_title").unwrap_or_else(|| card.button.text.clone());
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("token", inst.token.expose())
            .append_pair("user", self.user.expose())
            .append_pair("message", &message)
            .append_pair("html", "1")
            .append_pair("title", &truncate(&title, MAX_TITLE_CHARS));
        if card.url.chars().count() <= MAX_URL_CHARS {
            form.append_pair("url", &card.url)
                .append_pair("url_title", &truncate(&url_title, MAX_URL_TITLE_CHARS));
        }
        if let Some(t) = card.time {
            form.append_pair("timestamp", &t.to_string());
        }
        if let Some(d) = &self.device {
            form.append_pair("device", d);
        }
        if let Some(p) = inst.priority {
            form.append_pair("priority", &p.to_string());
        }
        if let Some(s) = &inst.sound {
            form.append_pair("sound", s);
        }
        let url = Secret::new(format!("{}/messages.json", inst.api_url));
        Outbound::Http(HttpRequest::form("POST", url, form.finish()))
    }
}

/// What a character costs once HTML-escaped.
fn html_cost(c: char) -> usize {
    match c {
        '&' => 5,
        '<' | '>' => 4,
        '"' | '\'' => 6,
        _ => 1,
    }
}

/// The card's message: each piece cut by its escaped cost, the excerpt
/// taking what the rest leaves of [`MAX_MESSAGE_CHARS`].
fn card_message(card: &Card) -> String {
    let text = |s: &str, budget: usize| escape(Dialect::Html, &fit(s, budget, html_cost));
    let mut by = Vec::new();
    if let Some(a) = &card.author {
        by.push(format!("{} @{}", text(&a.name, 80), text(&a.username, 60)));
    }
    by.push(text(&card.label, 100));
    if let Some(c) = &card.category {
        by.push(match card.color {
            Some(color) => format!(
                "<font color=\"{}\">{}</font>",
                color.hex(),
                text(&c.text, 80)
            ),
            None => text(&c.text, 80),
        });
    }
    let head = by.join(" · ");
    let mut foot = Vec::new();
    if !card.tags.is_empty() {
        let tags: Vec<&str> = card.tags.iter().take(10).map(|t| t.text.as_str()).collect();
        foot.push(format!("🏷️ {}", text(&tags.join(", "), 150)));
    }
    let mut forum = text(&card.footer.text, 80);
    if let Some(t) = &card.timestamp
        && let (Some(d), Some(hm), true) = (t.get(..10), t.get(11..16), t.ends_with('Z'))
    {
        forum = format!("{forum} · {d} {hm} UTC");
    }
    foot.push(format!("<font color=\"#888888\">{forum}</font>"));
    let foot = foot.join("\n");
    // `\n\n<i>` + `</i>` around the excerpt, `\n\n` before the foot.
    let used = head.chars().count() + foot.chars().count() + 2;
    let room = MAX_MESSAGE_CHARS.saturating_sub(used + 9);
    let message = match card.text.is_empty() || room < 20 {
        true => format!("{head}\n\n{foot}"),
        false => format!("{head}\n\n<i>{}</i>\n\n{foot}", text(&card.text, room)),
    };
    truncate_html(&message, MAX_MESSAGE_CHARS)
}

/// A chat's own card: `{"message", "title"?, "url_title"?}`.
fn check_card(card: &Value) -> Result<(), String> {
    kit::card_object(
        card,
        "a pushover card",
        "`message` (and optionally `title`, `url_title`)",
        &["message", "title", "url_title"],
    )?;
    let len = |key: &str| card[key].as_str().map(|s| s.chars().count());
    if len("message").is_none() {
        return Err("a pushover card needs `message`, a string".into());
    }
    kit::ensure_len("/message", len("message"), MAX_MESSAGE_CHARS)?;
    kit::ensure_len("/title", len("title"), MAX_TITLE_CHARS)?;
    kit::ensure_len("/url_title", len("url_title"), MAX_URL_TITLE_CHARS)?;
    Ok(())
}

fn truncate_html(html: &str, max: usize) -> String {
    if html.chars().count() <= max {
        return html.to_string();
    }
    let end = html
        .char_indices()
        .nth(max.saturating_sub(1))
        .map_or(html.len(), |(i, _)| i);
    let mut head = &html[..end];
    if let Some(lt) = head.rfind('<')
        && !head[lt..].contains('>')
    {
        head = &head[..lt];
    }
    if let Some(amp) = head.rfind('&')
        && !head[amp..].contains(';')
    {
        head = &head[..amp];
    }
    format!("{head}…")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::testkit::{self, header, resp};
    use serde_json::json;

    const TOKEN: &str = "azGDORePK8gMaC0QOYAMyEEuzJnyUi";
    const USER: &str = "uQiRzpo4DXghDmr9QzzfQu27cmVRsG";

    #[test]
    fn a_huge_post_gives_a_card_within_every_limit() {
        use crate::providers::adaptive::{card_request, huge_card};
        let r = card_request(&chat(), &huge_card());
        let f: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(r.body.as_bytes())
                .into_owned()
                .collect();
        let own = json!({"message": f["message"], "title": f["title"]});
        assert_eq!(check_card(&own), Ok(()));
        // The excerpt keeps its room: the rest was cut to leave it some.
        assert!(
            f["message"].contains("<i>&amp;&lt;") && f["message"].contains("…</i>\n\n🏷️"),
            "{}",
            f["message"]
        );
        // The URL is over Pushover's 512: left out rather than refused.
        assert!(!f.contains_key("url"));
        assert_eq!(f["timestamp"], "1767323045");
    }

    fn chat() -> PushoverChat {
        PushoverChat {
            instance: Arc::new(Pushover {
                token: Secret::new(TOKEN),
                api_url: "http://127.0.0.1:9/1".into(),
                priority: Some(-1),
                sound: Some("none".into()),
            }),
            user: Secret::new(USER),
            user_shown: "${PUSHOVER_USER}".into(),
            device: Some("phone".into()),
        }
    }

    /// The form fields of the request for `text` in `ctx`.
    fn form(ctx: serde_json::Value, text: &str) -> Vec<(String, String)> {
        let r = testkit::post_in(&chat(), text, &ctx);
        assert_eq!(r.method, "POST");
        assert_eq!(r.url.expose(), "http://127.0.0.1:9/1/messages.json");
        assert_eq!(
            header(&r, "Content-Type"),
            Some("application/x-www-form-urlencoded")
        );
        url::form_urlencoded::parse(r.body.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn request_shape() {
        let ctx = json!({"topic": {"title": "A & B", "url": "https://f.example/t/a-b/7"}, "post": {"url": "https://f.example/t/a-b/7/3"}});
        assert_eq!(
            form(ctx, "by <b>Bob</b> &amp; co"),
            pairs(&[
                ("token", TOKEN),
                ("user", USER),
                ("message", "by <b>Bob</b> &amp; co"),
                ("html", "1"),
                ("title", "A & B"),
                ("url", "https://f.example/t/a-b/7/3"),
                ("url_title", "A & B"),
                ("device", "phone"),
                ("priority", "-1"),
                ("sound", "none"),
            ])
        );
        assert_eq!(chat().target(), "user ${PUSHOVER_USER} (device phone)");
    }

    #[test]
    fn blank_messages_fall_back_to_the_title_and_bad_links_are_dropped() {
        let ctx = json!({"topic": {"title": "<T>", "url": "javascript:x"}, "post": null});
        let f = form(ctx, " ");
        assert!(f.contains(&("message".into(), "&lt;T&gt;".into())));
        assert!(!f.iter().any(|(k, _)| k == "url" || k == "url_title"));
    }

    #[test]
    fn html_is_cut_outside_tags_and_entities() {
        assert_eq!(truncate_html("short", 10), "short");
        assert_eq!(truncate_html("abc <a href=\"x\">d</a>", 8), "abc …");
        assert_eq!(truncate_html("abc &amp; def", 7), "abc …");
        assert_eq!(truncate_html("abc &amp; def", 11), "abc &amp; …");
        let long = "é".repeat(2000);
        assert_eq!(
            truncate_html(&long, MAX_MESSAGE_CHARS).chars().count(),
            MAX_MESSAGE_CHARS
        );
    }

    #[test]
    fn classifies_answers() {
        let c =
            |status, headers: &[(&str, &str)], body| chat().classify(&resp(status, headers, body));
        assert_eq!(
            c(
                200,
                &[],
                r#"{"status":1,"request":"647d2300-702c-4b38-8b2f-d56326ae460b"}"#
            ),
            Outcome::Sent { remote_id: None }
        );
        assert_eq!(
            c(
                400,
                &[],
                r#"{"user":"invalid","errors":["user identifier is not a valid user, group, or subscribed user key"],"status":0,"request":"5042853c-402d-4a18-abcb-168734a801de"}"#,
            ),
            Outcome::Permanent {
                reason: "pushover: HTTP 400: user identifier is not a valid user, group, or subscribed user key (check `user`: a user or group key)".into()
            }
        );
        assert!(matches!(
            c(400, &[], r#"{"token":"invalid","errors":["application token is invalid"],"status":0}"#),
            Outcome::Permanent { reason } if reason.ends_with("(check the application `token`)")
        ));
        assert!(matches!(
            c(
                200,
                &[],
                r#"{"status":0,"errors":["message cannot be blank"]}"#
            ),
            Outcome::Permanent { .. }
        ));
        assert!(matches!(
            c(429, &[("X-Limit-App-Remaining", "0")], r#"{"status":0,"errors":["application is over its monthly limit"]}"#),
            Outcome::Retry { reason, after: None } if reason.contains("monthly")
        ));
        assert_eq!(
            c(503, &[], ""),
            Outcome::Retry {
                reason: "pushover: HTTP 503".into(),
                after: Some(MIN_RETRY)
            }
        );
        assert!(matches!(
            c(500, &[("Retry-After", "60")], ""),
            Outcome::Retry { after: Some(d), .. } if d.as_secs() == 60
        ));
    }

    #[test]
    fn settings_are_validated() {
        let env = [("PUSHOVER_TOKEN", TOKEN), ("PUSHOVER_USER", USER)];
        let bind = |s, t| testkit::bind_fields(&REGISTRATION, s, t, &env);
        let (d, p) = bind(
            "token = \"${PUSHOVER_TOKEN}\"",
            "user = \"${PUSHOVER_USER}\"",
        );
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(d.unwrap().target(), "user ${PUSHOVER_USER}");
        let user = format!("user = \"{USER}\"");
        for (s, t, want) in [
            (
                "",
                "user = \"${PUSHOVER_USER}\"",
                "needs the application `token",
            ),
            ("token = \"${PUSHOVER_TOKEN}\"", "", "needs `user"),
            (
                "token = \"${PUSHOVER_TOKEN}\"",
                user.as_str(),
                "must be an environment reference",
            ),
            (
                "token = \"${PUSHOVER_TOKEN}\", priority = 2",
                "user = \"${PUSHOVER_USER}\"",
                "between -2 and 1",
            ),
            (
                "token = \"${PUSHOVER_TOKEN}\", api_url = \"nope\"",
                "user = \"${PUSHOVER_USER}\"",
                "`api_url` must be an absolute",
            ),
        ] {
            let (_, p) = bind(s, t);
            assert!(p[0].contains(want), "{s} / {t}: {p:?}");
        }
    }
}
