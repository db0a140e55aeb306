//! `gotify`: a self-hosted Gotify server, `POST {server}/message` with the
//! application token in `X-Gotify-Key` (never in the URL, so it stays out of
//! proxy logs; a chat's own `token` overrides the provider's), JSON body
//! `{"title", "message", "priority"?, "extras"?}`: the topic title, the text,
//! and `extras["client::notification"]["click"]["url"]` (the post, opened on
//! tap).
//!
//! Cards (the default style): `title` = the headline; `message` the card
//! in lines (see `super::ntfy`: the author, @username · what happened ·
//! the linked category, the excerpt as a quote, 🏷️ the linked tags, the
//! forum and the time; plain with `markdown = false`);
//! `extras["client::notification"]["click"]["url"]` = the post. Gotify
//! documents `bigImageUrl` there too, but for a picture, not a 96 px
//! avatar, and no icon per message (the application's is shown): so no
//! image. A post's `<`/`>` show as `‹`/`›` and `@` is broken, in the title
//! too. A chat's own card is an object with `message` and optionally
//! `title`.
//!
//! Dialect: Markdown, declared by `extras["client::display"]["contentType"]`
//! (`markdown = false`: plain text); no mentions exist. No parser test: the
//! strictest reading (CommonMark escaping), checked on the hostile fixture in
//! `tests/provider_gotify.rs`. No documented limit. Answers: `200` with the
//! stored message (`id` is the `remote_id`); errors `{"error",
//! "errorDescription"}`, 400/401/403 permanent. See shared/providers.md §3.

use super::kit::prelude::*;

pub const REGISTRATION: Registration =
    kit::registration::<Gotify>("gotify", "Gotify push notifications (self-hosted)");

/// `[providers.NAME]` for `kind = "gotify"`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Settings {
    /// Gotify server base URL, e.g. `https://push.example.org` (required).
    pub server: Option<Located<String>>,
    /// Application token (Apps → token), as `${VAR}`; sent as `X-Gotify-Key`. Chats may set their own.
    pub token: Option<Located<String>>,
    /// Message priority, 0 to 10 (Android: 0 silent, 1–3 quiet, 4–7 sound, 8–10 persistent); default: the application's.
    pub priority: Option<Located<i64>>,
    /// Send Markdown (`client::display` contentType `text/markdown`), the default; `false` sends plain text.
    pub markdown: Option<bool>,
}

/// Chat fields for a Gotify chat (each overrides the provider's).
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Target {
    /// Application token for this chat, as `${VAR}` (messages show under that application).
    pub token: Option<Located<String>>,
    /// Message priority for this chat, 0 to 10.
    pub priority: Option<Located<i64>>,
}

#[derive(Debug)]
struct Gotify {
    server: String,
    host: Option<String>,
    token: Option<Secret>,
    priority: Option<u8>,
    markdown: bool,
}

fn priority(p: &Option<Located<i64>>, cx: &mut Ctx<'_>) -> Option<Option<u8>> {
    kit::ranged(cx, p, 0..=10, "`priority` must be between 0 and 10")
}

impl Provider for Gotify {
    type Settings = Settings;
    type Target = Target;

    fn new(s: Settings, table: &Table, cx: &mut Ctx<'_>) -> Option<Self> {
        let missing = "a gotify provider needs `server`: define [providers.NAME] with kind = \"gotify\", `server` and `token`";
        let raw = kit::required(cx, &s.server, table.span.clone(), missing)?;
        let server = cx.base_url("server", &s.server, "")?;
        Some(Gotify {
            host: kit::shown_host(raw, &server),
            server,
            token: cx.opt_secret("token", &s.token)?,
            priority: priority(&s.priority, cx)?,
            markdown: s.markdown.unwrap_or(true),
        })
    }

    fn bind_target(self: Arc<Self>, t: Target, chat: Span, cx: &mut Ctx<'_>) -> Bound {
        let token = cx.opt_secret("token", &t.token)?.or(self.token.clone());
        let missing = "a gotify chat needs an application `token = \"${GOTIFY_TOKEN}\"` (on the chat or its provider)";
        let token = cx.require_token(&token, chat, missing)?;
        let priority = priority(&t.priority, cx)?.or(self.priority);
        Some(Box::new(GotifyChat {
            instance: self,
            token,
            priority,
        }))
    }
}

#[derive(Debug)]
struct GotifyChat {
    instance: Arc<Gotify>,
    token: Secret,
    priority: Option<u8>,
}

impl kit::Chat for GotifyChat {
    const KIND: &str = REGISTRATION.kind;
    /// Unless the `markdown` setting says otherwise ([`kit::Chat::dialect`]).
    const DIALECT: Dialect = Dialect::Markdown;
    // Self-hosted, no documented limit: polite, like the generic webhook.
    const RATE: Option<Rate> = Some(Rate::per_second(10));
    const TEMPLATE: Option<&str> = Some(kit::push_template!("\n\n"));
    const ANSWERS: &dyn kit::Answers = &SPEC;

    fn dialect(&self) -> Dialect {
        kit::markdown_if(self.instance.markdown)
    }

    fn target(&self) -> String {
        match &self.instance.host {
            Some(h) => format!("gotify at {h}"),
            None => "gotify".into(),
        }
    }

    const CARDS: bool = true;

    fn check_card(&self, card: &Value) -> Result<(), String> {
        check_card(card)
    }

    fn request(&self, msg: &Message<'_>) -> Outbound {
        let mut body = json!({"title": kit::topic_title(msg.context), "message": msg.text});
        if let Some(card) = msg.card {
            let (title, message) = match msg.custom {
                Some(c) => (
                    c["title"]
                        .as_str()
                        .map_or_else(|| card.headline(), str::to_string),
                    c["message"].as_str().unwrap_or_default().to_string(),
                ),
                None => (
                    crate::providers::inert::plain(&card.headline()),
                    super::ntfy::card_body(card, self.instance.markdown, MAX_CARD_BYTES),
                ),
            };
            body = json!({"title": card::cut(&title, 250), "message": message});
        }
        if let Some(p) = self.priority {
            body["priority"] = json!(p);
        }
        let mut extras = serde_json::Map::new();
        if self.instance.markdown {
            extras.insert(
                "client::display".into(),
                json!({"contentType": "text/markdown"}),
            );
        }
        let link = match msg.card {
            Some(card) => Some(card.url.as_str()),
            None => kit::post_link(msg.context),
        };
        if let Some(url) = link {
            extras.insert(
                "client::notification".into(),
                json!({"click": {"url": url}}),
            );
        }
        if !extras.is_empty() {
            body["extras"] = extras.into();
        }
        let url = Secret::new(format!("{}/message", self.instance.server));
        Outbound::Http(
            HttpRequest::post_json(&url, &body).header("X-Gotify-Key", self.token.clone()),
        )
    }
}

/// A card's message at most, in bytes: Gotify documents no limit; a
/// notification is no place for more.
const MAX_CARD_BYTES: usize = 8_192;

/// A chat's own card: `{"message", "title"?}`.
fn check_card(card: &Value) -> Result<(), String> {
    let obj = kit::card_object(
        card,
        "a gotify card",
        "`message` (and optionally `title`)",
        &["message", "title"],
    )?;
    let message = card["message"]
        .as_str()
        .ok_or("a gotify card needs `message`, a string")?;
    if message.len() > MAX_CARD_BYTES {
        return Err(format!(
            "/message has {} bytes; at most {MAX_CARD_BYTES}",
            message.len()
        ));
    }
    if obj.get("title").is_some_and(|t| !t.is_string()) {
        return Err("/title must be a string".into());
    }
    Ok(())
}

/// Errors: `{"error": "Unauthorized", "errorDescription": "you need to provide…"}`
/// → `gotify: HTTP 401 Unauthorized: you need to provide…`.
const SPEC: Spec = Spec {
    prefix: "gotify",
    id_ptr: Some("/id"),
    error: |_, body| {
        kit::joined(body, &["/error", "/errorDescription"]).map(|e| kit::clip(&e, 239))
    },
    sep: " ",
    hint: |status| match status {
        401 | 403 => " (check the application `token`: a client token does not work)",
        404 => " (check `server`)",
        _ => "",
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::testkit::{self, body, header, post_in, resp};

    const TOKEN: &str = "AcanaryGotify42";

    #[test]
    fn a_huge_post_gives_a_card_within_every_limit() {
        use crate::providers::adaptive::{card_request, huge_card};
        let card = huge_card();
        let b = body(&card_request(&chat(true, None), &card));
        let own = json!({"message": b["message"], "title": b["title"]});
        assert_eq!(check_card(&own), Ok(()));
        assert!(b["title"].as_str().unwrap_or_default().chars().count() <= 250);
        assert_eq!(
            b["extras"]["client::notification"]["click"]["url"],
            card.url
        );
        assert_eq!(
            b["extras"]["client::display"]["contentType"],
            "text/markdown"
        );
    }

    fn chat(markdown: bool, priority: Option<u8>) -> GotifyChat {
        GotifyChat {
            instance: Arc::new(Gotify {
                server: "http://127.0.0.1:9/gotify".into(),
                host: Some("127.0.0.1".into()),
                token: None,
                priority: None,
                markdown,
            }),
            token: Secret::new(TOKEN),
            priority,
        }
    }

    #[test]
    fn request_shape() {
        let ctx = json!({"topic": {"title": "Hi\u{7}\u{1b}[31m there ", "url": "https://f.example/t/x/1"}, "post": {"url": "https://f.example/t/x/1/2"}});
        let r = post_in(&chat(true, Some(8)), "by **Bob**", &ctx);
        assert_eq!(r.method, "POST");
        assert_eq!(r.url.expose(), "http://127.0.0.1:9/gotify/message");
        assert_eq!(header(&r, "X-Gotify-Key"), Some(TOKEN));
        assert!(!r.url.expose().contains(TOKEN) && !r.body.contains(TOKEN));
        assert_eq!(
            body(&r),
            json!({
                "title": "Hi[31m there",
                "message": "by **Bob**",
                "priority": 8,
                "extras": {
                    "client::display": {"contentType": "text/markdown"},
                    "client::notification": {"click": {"url": "https://f.example/t/x/1/2"}},
                },
            })
        );
    }

    #[test]
    fn plain_without_priority_or_link() {
        let ctx = json!({"topic": {"title": "T", "url": "javascript:x"}, "post": null});
        let c = chat(false, None);
        assert_eq!(c.dialect(), Dialect::Plain);
        assert_eq!(
            body(&post_in(&c, "m", &ctx)),
            json!({"title": "T", "message": "m"})
        );
    }

    #[test]
    fn classifies_answers() {
        let c = |status, body| chat(true, None).classify(&resp(status, &[], body));
        assert_eq!(
            c(
                200,
                r#"{"id":25,"appid":5,"message":"m","title":"t","priority":5,"date":"2026-03-10T16:00:04Z"}"#
            ),
            Outcome::Sent {
                remote_id: Some("25".into())
            }
        );
        assert_eq!(
            c(
                401,
                r#"{"error":"Unauthorized","errorCode":401,"errorDescription":"you need to provide a valid access token or user credentials to access this api"}"#,
            ),
            Outcome::Permanent {
                reason: "gotify: HTTP 401 Unauthorized: you need to provide a valid access token or user credentials to access this api (check the application `token`: a client token does not work)".into()
            }
        );
        assert!(matches!(
            c(
                403,
                r#"{"error":"Forbidden","errorCode":403,"errorDescription":"you are not allowed to access this api"}"#
            ),
            Outcome::Permanent { .. }
        ));
        assert!(matches!(
            c(400, r#"{"error":"Bad Request","errorCode":400,"errorDescription":"Field 'message' is required"}"#),
            Outcome::Permanent { reason } if reason.contains("'message' is required")
        ));
        assert!(matches!(
            c(503, ""),
            Outcome::Retry { reason, .. } if reason == "gotify: HTTP 503"
        ));
    }

    #[test]
    fn settings_are_validated() {
        let env = [("GOTIFY_TOKEN", TOKEN)];
        let bind = |s, t| testkit::bind_fields(&REGISTRATION, s, t, &env);
        let (d, p) = bind(
            "server = \"https://push.example.org/\", token = \"${GOTIFY_TOKEN}\"",
            "priority = 2",
        );
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(d.unwrap().target(), "gotify at push.example.org");
        for (s, t, want) in [
            ("", "", "needs `server`"),
            ("server = \"https://h\"", "", "needs an application `token"),
            (
                "server = \"https://h\"",
                "token = \"Aliteral\"",
                "must be an environment reference",
            ),
            (
                "server = \"https://h\", token = \"${GOTIFY_TOKEN}\"",
                "priority = 11",
                "between 0 and 10",
            ),
            (
                "server = \"h\", token = \"${GOTIFY_TOKEN}\"",
                "",
                "`server` must be an absolute",
            ),
        ] {
            let (_, p) = bind(s, t);
            assert!(p[0].contains(want), "{s} / {t}: {p:?}");
        }
    }
}
