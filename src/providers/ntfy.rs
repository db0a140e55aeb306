//! `ntfy`: push notifications through an ntfy server (the public
//! `https://ntfy.sh` or a self-hosted one).
//!
//! One request per message: `POST {server}/{topic}` with the rendered text as
//! the body and the rest in headers: `Title` (the topic title), `Click` (the
//! post's URL), `Tags`, optional `Priority`, `Markdown: yes` and
//! `Authorization: Bearer <token>`. Header values are sanitised (no control
//! characters) and RFC 2047-encoded (`=?UTF-8?B?…?=`) when not plain ASCII;
//! the server decodes them.
//!
//! Dialect: plain text by default (what every ntfy client shows as is);
//! `markdown = true` switches to Markdown, which the web app and recent
//! Android apps render. ntfy has no mentions to disable.
//!
//! Answers: `200 {"id":…}`; errors are `{"code":40301,"http":403,"error":…}`,
//! `429` (code 429xx) when the visitor's request budget is spent. See
//! shared/providers.md §3 and apprise `ntfy.py`.

use std::ops::Range;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_spanned::Spanned;
use toml_edit::Item;

use super::kit::truncate_bytes;
use super::kit::{self, Spec, classify_json};
use super::{
    Capabilities, Destination, HttpRequest, HttpResponse, Instance, Message, Outbound, Outcome,
    Registration, schema_of,
};
use crate::config::Rate;
use crate::config::de::Ctx;
use crate::config::env::Secret;
use crate::render::Dialect;
use crate::render::escape::{is_linkable, strip_controls};

pub const REGISTRATION: Registration = Registration {
    kind: "ntfy",
    about: "ntfy push notifications (ntfy.sh or self-hosted)",
    parse,
    settings_schema: schema_of::<Settings>,
    target_schema: schema_of::<Target>,
};

const DEFAULT_SERVER: &str = "https://ntfy.sh";

/// ntfy turns longer bodies into file attachments: keep messages under it.
const MAX_BODY_BYTES: usize = 4096;

/// The title travels in `Title`, the link in `Click`: the body is the byline
/// and the excerpt.
const BODY_TEMPLATE: &str = concat!(
    "{{#if post}}by {{#if post.name}}{{post.name}}{{else}}{{post.username}}{{/if}}{{/if}}",
    "{{#if topic.category}} in {{topic.category.path}}{{/if}}",
    "{{#if topic.tags}} [{{join topic.tags \", \"}}]{{/if}}",
    "{{#if post}}{{#if post.excerpt}}\n{{post.excerpt}}{{/if}}{{/if}}",
);

/// `[providers.NAME]` for `kind = "ntfy"`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Settings {
    /// ntfy server base URL (default `https://ntfy.sh`).
    #[schemars(with = "Option<String>")]
    pub server: Option<Spanned<String>>,
    /// Access token (`tk_…`) for protected topics, as `${VAR}`; sent as `Authorization: Bearer`.
    #[schemars(with = "Option<String>")]
    pub token: Option<Spanned<String>>,
    /// Message priority from 1 (min) to 5 (max); default: the server's (3).
    #[schemars(with = "Option<i64>")]
    pub priority: Option<Spanned<i64>>,
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
    #[schemars(with = "Option<String>")]
    pub topic: Option<Spanned<String>>,
}

#[derive(Debug)]
struct Ntfy {
    server: Secret,
    /// The server's host for `target()`, when the URL holds no `${VAR}`.
    host: Option<String>,
    token: Option<Secret>,
    priority: Option<u8>,
    tags: Vec<String>,
    markdown: bool,
}

fn parse(item: &Item, cx: &mut Ctx<'_>) -> Option<Arc<dyn Instance>> {
    let s = cx.deserialize::<Settings>(item)?;
    let (server, host) = match &s.server {
        Some(u) => {
            let url = cx.url("server", u, false)?;
            let host = if u.get_ref().contains("${") {
                None
            } else {
                url::Url::parse(url.expose())
                    .ok()
                    .and_then(|p| p.host_str().map(str::to_string))
            };
            (url, host)
        }
        None => (Secret::new(DEFAULT_SERVER), Some("ntfy.sh".to_string())),
    };
    let token = cx.opt_secret("token", &s.token)?;
    let priority = match &s.priority {
        Some(p) => match u8::try_from(*p.get_ref()) {
            Ok(v @ 1..=5) => Some(v),
            _ => {
                cx.error(
                    Some(p.span()),
                    "`priority` must be between 1 (min) and 5 (max)",
                );
                return None;
            }
        },
        None => None,
    };
    Some(Arc::new(Ntfy {
        server: Secret::new(server.expose().trim_end_matches('/')),
        host,
        token,
        priority,
        tags: s.tags,
        markdown: s.markdown,
    }))
}

fn valid_topic(topic: &str) -> bool {
    (1..=64).contains(&topic.len())
        && topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl Instance for Ntfy {
    fn bind(
        self: Arc<Self>,
        target: &Item,
        chat: Option<Range<usize>>,
        cx: &mut Ctx<'_>,
    ) -> Option<Box<dyn Destination>> {
        let t = cx.deserialize::<Target>(target)?;
        let Some(raw) = &t.topic else {
            cx.error(chat, "an ntfy chat needs `topic`");
            return None;
        };
        let topic = cx.string(raw)?;
        // A topic still holding an unset `${VAR}` (validate, explain) is checked at serve time.
        if !topic.expose().contains("${") && !valid_topic(topic.expose()) {
            // Never echo the value: it may come from the environment.
            cx.error(
                Some(raw.span()),
                "`topic` must be 1 to 64 letters, digits, `-` or `_`",
            );
            return None;
        }
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

impl Destination for NtfyChat {
    fn kind(&self) -> &'static str {
        REGISTRATION.kind
    }

    fn dialect(&self) -> Dialect {
        if self.instance.markdown {
            Dialect::Markdown
        } else {
            Dialect::Plain
        }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    fn default_template(&self) -> Option<&'static str> {
        Some(BODY_TEMPLATE)
    }

    fn default_rate(&self) -> Option<Rate> {
        // ntfy.sh refills a visitor's request budget by one every 5 s.
        Some(Rate::per_minute(12))
    }

    fn target(&self) -> String {
        match &self.instance.host {
            Some(h) => format!("{h}/{}", self.topic_shown),
            None => format!("topic {}", self.topic_shown),
        }
    }

    fn request(&self, msg: &Message<'_>) -> Outbound {
        let inst = &self.instance;
        let url = Secret::new(format!("{}/{}", inst.server.expose(), self.topic.expose()));
        let mut req = HttpRequest {
            method: "POST",
            url,
            headers: vec![(
                "Content-Type".into(),
                Secret::new(if inst.markdown {
                    "text/markdown; charset=utf-8"
                } else {
                    "text/plain; charset=utf-8"
                }),
            )],
            body: truncate_bytes(msg.text, MAX_BODY_BYTES),
        };
        if let Some(title) = context_str(msg.context, &["topic", "title"])
            && let Some(v) = header_text(title)
        {
            req = req.header("Title", Secret::new(v));
        }
        if let Some(click) = click_url(msg.context) {
            req = req.header("Click", Secret::new(click));
        }
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
        if let Some(v) = header_text(&tags.join(",")) {
            req = req.header("Tags", Secret::new(v));
        }
        if let Some(p) = inst.priority {
            req = req.header("Priority", Secret::new(p.to_string()));
        }
        if inst.markdown {
            req = req.header("Markdown", Secret::new("yes"));
        }
        if let Some(token) = &inst.token {
            req = req.bearer(token);
        }
        Outbound::Http(req)
    }

    fn classify(&self, resp: &HttpResponse) -> Outcome {
        classify_json(resp, &SPEC)
    }
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

/// The string at `path` in the template context.
fn context_str<'a>(ctx: &'a serde_json::Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(ctx, |v, k| v.get(*k))?.as_str()
}

/// The post's URL (the topic's for topic events), when it is a web link,
/// with anything a header cannot carry percent-encoded.
fn click_url(ctx: &serde_json::Value) -> Option<String> {
    let url = context_str(ctx, &["post", "url"]).or_else(|| context_str(ctx, &["topic", "url"]))?;
    let url = url.trim();
    if !is_linkable(url) || url.starts_with("mailto:") {
        return None;
    }
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
    Some(out)
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
    use serde_json::json;
    use std::collections::HashMap;
    use std::time::Duration;

    const TOKEN: &str = "tk_canary4242";

    fn chat(markdown: bool, token: bool) -> NtfyChat {
        NtfyChat {
            instance: Arc::new(Ntfy {
                server: Secret::new("http://127.0.0.1:9"),
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

    fn ctx() -> serde_json::Value {
        json!({
            "topic": {"title": "Ünïcode\r\nInjected: yes", "url": "https://f.example/t/x/1", "tags": ["rust", "a,b"]},
            "post": {"url": "https://f.example/t/wörld/1/2"},
        })
    }

    use crate::providers::http::tests::resp;

    fn header<'a>(r: &'a HttpRequest, name: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.expose())
    }

    #[test]
    fn request_shape() {
        let ctx = ctx();
        let Outbound::Http(r) = chat(false, true).request(&Message {
            chat: "c",
            text: "by Bob\n@everyone <b>",
            context: &ctx,
            action: Default::default(),
            delivery: None,
        }) else {
            panic!("expected HTTP")
        };
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
        let Outbound::Http(r) = c.request(&Message {
            chat: "c",
            text: "x",
            context: &ctx,
            action: Default::default(),
            delivery: None,
        }) else {
            panic!("expected HTTP")
        };
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
        let text = "é".repeat(3000);
        let cut = truncate_bytes(&text, MAX_BODY_BYTES);
        assert!(cut.len() <= MAX_BODY_BYTES && cut.ends_with('…'));
        assert_eq!(truncate_bytes("short", 10), "short");
    }

    #[test]
    fn classifies_answers() {
        let c = chat(false, true);
        assert_eq!(
            c.classify(&resp(
                200,
                &[],
                r#"{"id":"hwQ2YpKdmg","time":1635528741,"event":"message"}"#
            )),
            Outcome::Sent {
                remote_id: Some("hwQ2YpKdmg".into())
            }
        );
        assert_eq!(
            c.classify(&resp(
                429,
                &[("Retry-After", "5")],
                r#"{"code":42901,"http":429,"error":"limit reached: too many requests"}"#
            )),
            Outcome::Retry {
                reason: "ntfy: HTTP 429 limit reached: too many requests (code 42901)".into(),
                after: Some(Duration::from_secs(5))
            }
        );
        assert!(matches!(
            c.classify(&resp(502, &[], "")),
            Outcome::Retry { .. }
        ));
        let Outcome::Permanent { reason } = c.classify(&resp(
            403,
            &[],
            r#"{"code":40301,"http":403,"error":"forbidden","link":"https://ntfy.sh/docs/publish/#authentication"}"#,
        )) else {
            panic!("403 is permanent")
        };
        assert_eq!(
            reason,
            "ntfy: HTTP 403 forbidden (code 40301) (check `token` and its access to the topic)"
        );
        assert!(!reason.contains(TOKEN));
        assert!(matches!(
            c.classify(&resp(413, &[], "too large")),
            Outcome::Permanent { reason } if reason == "ntfy: HTTP 413: too large (the message is too large; shorten the template)"
        ));
    }

    fn bind(settings: &str, target: &str) -> (Option<Box<dyn Destination>>, Vec<String>) {
        let env: HashMap<String, String> = [("NTFY_TOKEN".to_string(), TOKEN.to_string())].into();
        let mut cx = Ctx::new(&env, crate::config::de::MissingEnv::Warn);
        let doc = toml_edit::Document::parse(format!("s = {{ {settings} }}\nt = {{ {target} }}"))
            .unwrap();
        let dest = parse(&doc["s"], &mut cx).and_then(|i| i.bind(&doc["t"], None, &mut cx));
        let problems = cx.problems().iter().map(|p| p.message.clone()).collect();
        (dest, problems)
    }

    #[test]
    fn settings_are_validated() {
        let (d, p) = bind("", "topic = \"alerts_1\"");
        let d = d.unwrap();
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(d.target(), "ntfy.sh/alerts_1");
        let (_, p) = bind("token = \"tk_literal\"", "topic = \"a\"");
        assert!(p[0].contains("must be an environment reference"), "{p:?}");
        let (_, p) = bind("priority = 9", "topic = \"a\"");
        assert!(p[0].contains("between 1"), "{p:?}");
        let (_, p) = bind("server = \"ftp://x\"", "topic = \"a\"");
        assert!(p[0].contains("`server` must be an absolute"), "{p:?}");
        let (_, p) = bind("", "topic = \"no/slash\"");
        assert!(p[0].contains("`topic` must be"), "{p:?}");
        let (_, p) = bind("", "");
        assert!(p[0].contains("needs `topic`"), "{p:?}");
        // A topic from the environment is never shown.
        let (d, _) = bind("token = \"${NTFY_TOKEN}\"", "topic = \"${NTFY_TOPIC}\"");
        assert_eq!(d.unwrap().target(), "ntfy.sh/${NTFY_TOPIC}");
    }
}
