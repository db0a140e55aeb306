//! `ntfy`: `POST {server}/{topic}` (`https://ntfy.sh` or self-hosted) with
//! the text as the body (at most 4 096 bytes: ntfy makes longer ones
//! attachments) and the rest in headers: `Title`, `Click` (the post), `Tags`,
//! `Priority`?, `Markdown: yes`?, `Authorization: Bearer`? (protected
//! topics). Header values carry no control characters and are RFC 2047
//! encoded words when not plain ASCII.
//!
//! Cards (the default style): `Title` = the headline, `Click` = the post,
//! `Icon` = the author's avatar, `Tags` = the settings' tags and the
//! topic's; the body the card laid out in lines (Markdown with
//! `markdown = true`, else plain): the author, @username · what happened ·
//! the category (linked in Markdown), the excerpt (a quote in Markdown),
//! 🏷️ the tags (linked in Markdown), the forum and the time (UTC); at most
//! 4 096 bytes (the tags' links, then the tags, go first). A post's `<`/`>`
//! show as `‹`/`›` and `@` is broken, in the title too. A chat's own card
//! is an object with `message` (the body) and optionally `title`.
//!
//! Dialect: plain text, or Markdown with `markdown = true`; no mentions
//! exist. No parser test: plain text is inert, Markdown the strictest
//! reading, both checked on the hostile fixture in `tests/provider_ntfy.rs`.
//! Answers: `200 {"id"}` (the `remote_id`); errors `{"code": 40301, "http":
//! 403, "error"}`; 429 (code 429xx) when the visitor's budget, one request
//! per 5 s, is spent. See shared/providers.md §3.

use super::kit::prelude::*;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::render::escape::strip_controls;

pub const REGISTRATION: Registration =
    kit::registration::<Ntfy>("ntfy", "ntfy push notifications (ntfy.sh or self-hosted)");

const DEFAULT_SERVER: &str = "https://ntfy.sh";

/// ntfy turns longer bodies into file attachments: keep messages under it.
const MAX_BODY_BYTES: usize = 4096;

/// `[providers.NAME]` for `kind = "ntfy"`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Settings {
    /// ntfy server base URL (default `https://ntfy.sh`).
    pub server: Option<Located<String>>,
    /// Access token (`tk_…`) for protected topics, as `${VAR}`; sent as `Authorization: Bearer`.
    pub token: Option<Located<String>>,
    /// Message priority from 1 (min) to 5 (max); default: the server's (3).
    pub priority: Option<Located<i64>>,
    /// Tags sent before the topic's own tags; emoji short codes such as `speech_balloon` show as icons.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Send Markdown (`Markdown: yes`; rendered by the web app and recent Android apps) instead of plain text (default false).
    #[serde(default)]
    pub markdown: bool,
}

/// Chat fields for an ntfy chat.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Target {
    /// Topic to publish to: letters, digits, `-` and `_`, at most 64. On a public server anyone who knows the name can subscribe: pick an unguessable one, or keep it in `${VAR}`.
    pub topic: Option<Located<String>>,
}

#[derive(Debug)]
struct Ntfy {
    server: String,
    /// The server's host for `target()`, when the URL holds no `${VAR}`.
    host: Option<String>,
    token: Option<Secret>,
    priority: Option<u8>,
    tags: Vec<String>,
    markdown: bool,
}

impl Provider for Ntfy {
    type Settings = Settings;
    type Target = Target;

    fn new(s: Settings, _: &Table, cx: &mut Ctx<'_>) -> Option<Self> {
        let server = cx.base_url("server", &s.server, DEFAULT_SERVER)?;
        let priority = "`priority` must be between 1 (min) and 5 (max)";
        Some(Ntfy {
            host: match &s.server {
                Some(u) => kit::shown_host(u, &server),
                None => Some("ntfy.sh".into()),
            },
            server,
            token: cx.opt_secret("token", &s.token)?,
            priority: kit::ranged(cx, &s.priority, 1..=5, priority)?,
            tags: s.tags,
            markdown: s.markdown,
        })
    }

    fn bind_target(self: Arc<Self>, t: Target, chat: Span, cx: &mut Ctx<'_>) -> Bound {
        let raw = kit::required(cx, &t.topic, chat, "an ntfy chat needs `topic`")?;
        let topic = cx.string(raw)?;
        let v = topic.expose();
        // A topic still holding an unset `${VAR}` (validate, explain) is checked at serve time.
        let valid = (1..=64).contains(&v.len())
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        // Never echo the value: it may come from the environment.
        let shape = "`topic` must be 1 to 64 letters, digits, `-` or `_`";
        kit::check(cx, v.contains("${") || valid, Some(raw.span()), shape)?;
        Some(Box::new(NtfyChat {
            instance: self,
            topic,
            topic_shown: raw.get_ref().clone(),
        }))
    }
}

#[derive(Debug)]
struct NtfyChat {
    instance: Arc<Ntfy>,
    topic: Secret,
    /// The topic as written: `${VAR}` stays a reference.
    topic_shown: String,
}

impl kit::Chat for NtfyChat {
    const KIND: &str = REGISTRATION.kind;
    /// Unless the `markdown` setting says otherwise ([`kit::Chat::dialect`]).
    const DIALECT: Dialect = Dialect::Plain;
    // ntfy.sh refills a visitor's request budget by one every 5 s.
    const RATE: Option<Rate> = Some(Rate::per_minute(12));
    const TEMPLATE: Option<&str> = Some(kit::push_template!("\n"));
    const ANSWERS: &dyn kit::Answers = &SPEC;

    fn dialect(&self) -> Dialect {
        kit::markdown_if(self.instance.markdown)
    }

    fn target(&self) -> String {
        match &self.instance.host {
            Some(h) => format!("{h}/{}", self.topic_shown),
            None => format!("topic {}", self.topic_shown),
        }
    }

    fn request(&self, msg: &Message<'_>) -> Outbound {
        if let Some(card) = msg.card {
            return self.card_request(card, msg.custom);
        }
        let inst = &self.instance;
        let content_type = if inst.markdown {
            "text/markdown; charset=utf-8"
        } else {
            "text/plain; charset=utf-8"
        };
        let topic_tags = msg.context["topic"]["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str());
        let tags: Vec<String> = inst
            .tags
            .iter()
            .map(String::as_str)
            .chain(topic_tags)
            .map(|t| t.replace(',', " ").trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        let headers = [
            ("Content-Type", Some(content_type.to_string())),
            (
                "Title",
                msg.context["topic"]["title"].as_str().and_then(header_text),
            ),
            ("Click", kit::post_link(msg.context).map(header_url)),
            ("Tags", header_text(&tags.join(","))),
            ("Priority", inst.priority.map(|p| p.to_string())),
            ("Markdown", inst.markdown.then(|| "yes".to_string())),
        ];
        let mut req = HttpRequest {
            method: "POST",
            url: Secret::new(format!("{}/{}", inst.server, self.topic.expose())),
            headers: vec![],
            body: truncate_bytes(msg.text, MAX_BODY_BYTES),
        };
        for (name, value) in headers {
            if let Some(v) = value {
                req = req.header(name, Secret::new(v));
            }
        }
        if let Some(token) = &inst.token {
            req = req.bearer(token);
        }
        Outbound::Http(req)
    }

    const CARDS: bool = true;

    fn check_card(&self, card: &Value) -> Result<(), String> {
        check_card(card)
    }
}

impl NtfyChat {
    /// The card as a notification: see the module doc.
    fn card_request(&self, card: &Card, custom: Option<&Value>) -> Outbound {
        let inst = &self.instance;
        let (title, body) = match custom {
            Some(c) => (
                c["title"].as_str().map(str::to_string),
                c["message"].as_str().unwrap_or_default().to_string(),
            ),
            None => (
                Some(crate::providers::inert::plain(&card.headline())),
                card_body(card, inst.markdown, MAX_BODY_BYTES),
            ),
        };
        // A header is no tag cloud: the first few, each cut short.
        let tags: Vec<String> = (inst.tags.iter().map(String::as_str))
            .chain(card.tags.iter().take(MAX_TAGS).map(|t| t.text.as_str()))
            .map(|t| card::cut(&t.replace(',', " "), 50).trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        let content_type = match inst.markdown {
            true => "text/markdown; charset=utf-8",
            false => "text/plain; charset=utf-8",
        };
        let avatar = card.author.as_ref().map(|a| a.avatar.as_str());
        let headers = [
            ("Content-Type", Some(content_type.to_string())),
            (
                "Title",
                title
                    .as_deref()
                    .and_then(|t| header_text(&card::cut(t, 250))),
            ),
            ("Click", Some(header_url(&card.url))),
            ("Icon", avatar.filter(|a| !a.is_empty()).map(header_url)),
            ("Tags", header_text(&tags.join(","))),
            ("Priority", inst.priority.map(|p| p.to_string())),
            ("Markdown", inst.markdown.then(|| "yes".to_string())),
        ];
        let mut req = HttpRequest {
            method: "POST",
            url: Secret::new(format!("{}/{}", inst.server, self.topic.expose())),
            headers: vec![],
            body: truncate_bytes(&body, MAX_BODY_BYTES),
        };
        for (name, value) in headers {
            if let Some(v) = value {
                req = req.header(name, Secret::new(v));
            }
        }
        if let Some(token) = &inst.token {
            req = req.bearer(token);
        }
        Outbound::Http(req)
    }
}

/// Tags shown at most.
const MAX_TAGS: usize = 10;

/// The card's lines, Markdown or plain, within `max` bytes when it can be
/// (without the tags' links, then the tags): also Gotify's message.
pub(crate) fn card_body(card: &Card, markdown: bool, max: usize) -> String {
    for tag_links in [true, false] {
        let body = card_lines(card, markdown, tag_links);
        if body.len() <= max {
            return body;
        }
    }
    let bare = Card {
        tags: Vec::new(),
        ..card.clone()
    };
    card_lines(&bare, markdown, false)
}

fn card_lines(card: &Card, markdown: bool, tag_links: bool) -> String {
    use crate::providers::inert;
    const MD: Dialect = Dialect::Markdown;
    let text = |s: &str, max: usize| match markdown {
        true => inert::markdown(&escape(MD, &card::cut(s, max))),
        false => inert::plain(&card::cut(s, max)),
    };
    let linked = |url: &str, s: &str, max: usize| match markdown {
        true => inert::markdown(&link(MD, url, &card::cut(s, max))),
        false => inert::plain(&card::cut(s, max)),
    };
    let mut by = Vec::new();
    if let Some(a) = &card.author {
        let name = match markdown {
            true => inert::markdown(&bold(MD, &card::cut(&a.name, 80))),
            false => text(&a.name, 80),
        };
        by.push(format!("{name} @{}", text(&a.username, 60)));
    }
    by.push(text(&card.label, 200));
    if let Some(c) = &card.category {
        by.push(linked(&c.url, &c.text, 100));
    }
    let mut lines = vec![by.join(" · ")];
    if !card.text.is_empty() {
        let quote = if markdown { "> " } else { "" };
        lines.push(format!("{quote}{}", text(&card.text, 300)));
    }
    let mut foot = Vec::new();
    if !card.tags.is_empty() {
        let tags: Vec<String> = (card.tags.iter().take(MAX_TAGS))
            .map(|t| match tag_links {
                true => linked(&t.url, &t.text, 50),
                false => text(&t.text, 50),
            })
            .collect();
        foot.push(format!("🏷️ {}", tags.join(", ")));
    }
    let mut forum = text(&card.footer.text, 100);
    if let Some(t) = &card.timestamp
        && let (Some(d), Some(hm), true) = (t.get(..10), t.get(11..16), t.ends_with('Z'))
    {
        forum = format!("{forum} · {d} {hm} UTC");
    }
    foot.push(forum);
    lines.push(foot.join("\n"));
    lines.join("\n\n")
}

/// A chat's own card: `{"message", "title"?}`, within ntfy's limits.
fn check_card(card: &Value) -> Result<(), String> {
    let obj = kit::card_object(
        card,
        "an ntfy card",
        "`message` (and optionally `title`)",
        &["message", "title"],
    )?;
    let message = card["message"]
        .as_str()
        .ok_or("an ntfy card needs `message`, a string")?;
    if message.len() > MAX_BODY_BYTES {
        return Err(format!(
            "/message has {} bytes; at most {MAX_BODY_BYTES}",
            message.len()
        ));
    }
    if obj.get("title").is_some_and(|t| !t.is_string()) {
        return Err("/title must be a string".into());
    }
    Ok(())
}

/// Errors: `{"code": 40301, "http": 403, "error": "forbidden"}`
/// → `ntfy: HTTP 403 forbidden (code 40301)`.
const SPEC: Spec = Spec {
    prefix: "ntfy",
    id_ptr: Some("/id"),
    error: |_, body| {
        let error = kit::clip(body["error"].as_str()?, 200);
        Some(match body["code"].as_i64() {
            Some(code) => format!("{error} (code {code})"),
            None => error,
        })
    },
    sep: " ",
    hint: |status| match status {
        401 | 403 => " (check `token` and its access to the topic)",
        404 => " (check `server`)",
        413 => " (the message is too large; shorten the template)",
        _ => "",
    },
};

/// `url` with anything a header cannot carry percent-encoded.
fn header_url(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    for c in url.chars() {
        if c.is_ascii_graphic() {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

/// A header value for `text`: control characters and line breaks become
/// spaces (no header injection), and anything but plain ASCII is sent as an
/// RFC 2047 encoded word, which ntfy decodes. `None` when blank.
fn header_text(text: &str) -> Option<String> {
    let flat: String = strip_controls(&text.replace(['\n', '\t'], " "))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if flat.is_empty() {
        return None;
    }
    // `=?` is encoded too, so a title cannot pose as an encoded word.
    if flat.is_ascii() && !flat.contains("=?") {
        Some(flat)
    } else {
        Some(format!("=?UTF-8?B?{}?=", BASE64.encode(flat.as_bytes())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::testkit::{self, header, post_in, resp};
    use serde_json::json;
    use std::time::Duration;

    const TOKEN: &str = "tk_canary4242";

    #[test]
    fn a_huge_post_gives_a_card_within_every_limit() {
        use crate::providers::adaptive::{card_request, huge_card};
        for markdown in [true, false] {
            let r = card_request(&chat(markdown, false), &huge_card());
            assert!(r.body.len() <= MAX_BODY_BYTES, "{}", r.body.len());
            assert_eq!(check_card(&json!({"message": r.body})), Ok(()));
            assert_eq!(header(&r, "Markdown").is_some(), markdown);
            // Only optional parts went: the author line and the excerpt stay.
            assert!(
                r.body.contains("word word") && r.body.contains(" · "),
                "{}",
                r.body
            );
            for h in ["Title", "Click", "Icon", "Tags"] {
                let v = header(&r, h).unwrap_or_default();
                assert!(
                    !v.is_empty() && v.len() < 8_000 && !v.contains(['\r', '\n']),
                    "{h}: {v}"
                );
            }
        }
    }

    fn chat(markdown: bool, token: bool) -> NtfyChat {
        NtfyChat {
            instance: Arc::new(Ntfy {
                server: "http://127.0.0.1:9".into(),
                host: Some("127.0.0.1".into()),
                token: token.then(|| Secret::new(TOKEN)),
                priority: Some(4),
                tags: vec!["speech_balloon".into()],
                markdown,
            }),
            topic: Secret::new("forum-alerts"),
            topic_shown: "forum-alerts".into(),
        }
    }

    #[test]
    fn request_shape() {
        let ctx = json!({
            "topic": {"title": "Ünïcode\r\nInjected: yes", "url": "https://f.example/t/x/1", "tags": ["rust", "a,b"]},
            "post": {"url": "https://f.example/t/wörld/1/2"},
        });
        let r = post_in(&chat(false, true), "by Bob\n@everyone <b>", &ctx);
        assert_eq!(r.method, "POST");
        assert_eq!(r.url.expose(), "http://127.0.0.1:9/forum-alerts");
        assert_eq!(r.body, "by Bob\n@everyone <b>");
        assert_eq!(
            header(&r, "Content-Type"),
            Some("text/plain; charset=utf-8")
        );
        // "Ünïcode Injected: yes", base64 of its UTF-8 (python3: base64.b64encode(s.encode())).
        assert_eq!(
            header(&r, "Title"),
            Some("=?UTF-8?B?w5xuw69jb2RlIEluamVjdGVkOiB5ZXM=?=")
        );
        assert_eq!(
            header(&r, "Click"),
            Some("https://f.example/t/w%C3%B6rld/1/2")
        );
        assert_eq!(header(&r, "Tags"), Some("speech_balloon,rust,a b"));
        assert_eq!(header(&r, "Priority"), Some("4"));
        assert_eq!(header(&r, "Markdown"), None);
        assert_eq!(
            header(&r, "Authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        for (_, v) in &r.headers {
            assert!(!v.expose().contains(['\r', '\n']));
        }
    }

    #[test]
    fn markdown_mode_and_no_token() {
        let ctx = json!({"topic": {"title": "Plain", "url": "javascript:alert(1)", "tags": []}, "post": null});
        let c = chat(true, false);
        assert_eq!(c.dialect(), Dialect::Markdown);
        let r = post_in(&c, "x", &ctx);
        assert_eq!(header(&r, "Markdown"), Some("yes"));
        assert_eq!(header(&r, "Title"), Some("Plain"));
        assert_eq!(header(&r, "Click"), None, "only web links");
        assert_eq!(header(&r, "Tags"), Some("speech_balloon"));
        assert_eq!(header(&r, "Authorization"), None);
        assert_eq!(chat(false, false).dialect(), Dialect::Plain);
    }

    #[test]
    fn header_text_encodes_what_is_not_plain_ascii() {
        assert_eq!(header_text("  a \t b  ").as_deref(), Some("a b"));
        assert_eq!(header_text(" \n ").as_deref(), None);
        // "=?x?=" is ASCII but would be decoded by the server: encode it.
        assert_eq!(
            header_text("=?x?=").as_deref(),
            Some("=?UTF-8?B?PT94Pz0=?=")
        );
    }

    #[test]
    fn long_bodies_are_cut_on_a_char_boundary() {
        let r = testkit::post(&chat(false, false), &"é".repeat(3000));
        assert!(r.body.len() <= MAX_BODY_BYTES && r.body.ends_with('…'));
        assert_eq!(testkit::post(&chat(false, false), "short").body, "short");
    }

    #[test]
    fn classifies_answers() {
        let c = |status, headers: &[(&str, &str)], body| {
            chat(false, true).classify(&resp(status, headers, body))
        };
        assert_eq!(
            c(
                200,
                &[],
                r#"{"id":"hwQ2YpKdmg","time":1635528741,"event":"message"}"#
            ),
            Outcome::Sent {
                remote_id: Some("hwQ2YpKdmg".into())
            }
        );
        assert_eq!(
            c(
                429,
                &[("Retry-After", "5")],
                r#"{"code":42901,"http":429,"error":"limit reached: too many requests"}"#
            ),
            Outcome::Retry {
                reason: "ntfy: HTTP 429 limit reached: too many requests (code 42901)".into(),
                after: Some(Duration::from_secs(5))
            }
        );
        assert!(matches!(c(502, &[], ""), Outcome::Retry { .. }));
        assert_eq!(
            c(
                403,
                &[],
                r#"{"code":40301,"http":403,"error":"forbidden","link":"https://ntfy.sh/docs/publish/#authentication"}"#,
            ),
            Outcome::Permanent {
                reason: "ntfy: HTTP 403 forbidden (code 40301) (check `token` and its access to the topic)".into()
            }
        );
        assert_eq!(
            c(413, &[], "too large"),
            Outcome::Permanent {
                reason:
                    "ntfy: HTTP 413: too large (the message is too large; shorten the template)"
                        .into()
            }
        );
    }

    #[test]
    fn settings_are_validated() {
        let bind = |s, t| testkit::bind_fields(&REGISTRATION, s, t, &[("NTFY_TOKEN", TOKEN)]);
        let (d, p) = bind("", "topic = \"alerts_1\"");
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(d.unwrap().target(), "ntfy.sh/alerts_1");
        for (s, t, want) in [
            (
                "token = \"tk_literal\"",
                "topic = \"a\"",
                "must be an environment reference",
            ),
            ("priority = 9", "topic = \"a\"", "between 1"),
            (
                "server = \"ftp://x\"",
                "topic = \"a\"",
                "`server` must be an absolute",
            ),
            ("", "topic = \"no/slash\"", "`topic` must be"),
            ("", "", "needs `topic`"),
        ] {
            let (_, p) = bind(s, t);
            assert!(p[0].contains(want), "{s} / {t}: {p:?}");
        }
        // A topic from the environment is never shown.
        let (d, _) = bind("token = \"${NTFY_TOKEN}\"", "topic = \"${NTFY_TOPIC}\"");
        assert_eq!(d.unwrap().target(), "ntfy.sh/${NTFY_TOPIC}");
    }
}
