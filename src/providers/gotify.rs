//! `gotify`: push notifications through a self-hosted Gotify server.
//!
//! `POST {server}/message` with the application token in `X-Gotify-Key`
//! (never in the URL, so it stays out of proxy logs) and a JSON body
//! `{"title","message","priority"?,"extras"}`: the topic title, the rendered
//! text, and `extras["client::notification"]["click"]["url"]` = the post, so
//! tapping the notification opens it.
//!
//! Dialect: Markdown by default, declared with
//! `extras["client::display"]["contentType"] = "text/markdown"` (the web UI
//! and the Android app render it); `markdown = false` sends plain text.
//! Gotify has no mentions to disable.
//!
//! Answers: `200` with the stored message (`id`); errors
//! `{"error","errorCode","errorDescription"}`: 400 bad message, 401/403 bad
//! token (permanent). Swagger: gotify/server `docs/spec.json`.

use std::ops::Range;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use serde_spanned::Spanned;
use toml_edit::Item;

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
    kind: "gotify",
    about: "Gotify push notifications (self-hosted)",
    parse,
    settings_schema: schema_of::<Settings>,
    target_schema: schema_of::<Target>,
};

/// The title is its own field and the link opens on tap: the message is the
/// byline and the excerpt.
const BODY_TEMPLATE: &str = concat!(
    "{{#if post}}by {{#if post.name}}{{post.name}}{{else}}{{post.username}}{{/if}}{{/if}}",
    "{{#if topic.category}} in {{topic.category.path}}{{/if}}",
    "{{#if topic.tags}} [{{join topic.tags \", \"}}]{{/if}}",
    "{{#if post}}{{#if post.excerpt}}\n\n{{post.excerpt}}{{/if}}{{/if}}",
);

/// `[providers.NAME]` for `kind = "gotify"`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Settings {
    /// Gotify server base URL, e.g. `https://push.example.org` (required).
    #[schemars(with = "Option<String>")]
    pub server: Option<Spanned<String>>,
    /// Application token (Apps → token), as `${VAR}`; sent as `X-Gotify-Key`. Chats may set their own.
    #[schemars(with = "Option<String>")]
    pub token: Option<Spanned<String>>,
    /// Message priority, 0 to 10 (Android: 0 silent, 1–3 quiet, 4–7 sound, 8–10 persistent); default: the application's.
    #[schemars(with = "Option<i64>")]
    pub priority: Option<Spanned<i64>>,
    /// Send Markdown (`client::display` contentType `text/markdown`), the default; `false` sends plain text.
    pub markdown: Option<bool>,
}

/// Chat fields for a Gotify chat (each overrides the provider's).
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Target {
    /// Application token for this chat, as `${VAR}` (messages show under that application).
    #[schemars(with = "Option<String>")]
    pub token: Option<Spanned<String>>,
    /// Message priority for this chat, 0 to 10.
    #[schemars(with = "Option<i64>")]
    pub priority: Option<Spanned<i64>>,
}

#[derive(Debug)]
struct Gotify {
    server: Secret,
    host: Option<String>,
    token: Option<Secret>,
    priority: Option<u8>,
    markdown: bool,
}

fn priority(p: &Option<Spanned<i64>>, cx: &mut Ctx<'_>) -> Result<Option<u8>, ()> {
    match p {
        Some(p) => match u8::try_from(*p.get_ref()) {
            Ok(v @ 0..=10) => Ok(Some(v)),
            _ => {
                cx.error(Some(p.span()), "`priority` must be between 0 and 10");
                Err(())
            }
        },
        None => Ok(None),
    }
}

fn parse(item: &Item, cx: &mut Ctx<'_>) -> Option<Arc<dyn Instance>> {
    let s = cx.deserialize::<Settings>(item)?;
    let Some(raw) = &s.server else {
        cx.error(
            item.span(),
            "a gotify provider needs `server`: define [providers.NAME] with kind = \"gotify\", `server` and `token`",
        );
        return None;
    };
    let server = cx.url("server", raw, false)?;
    let host = if raw.get_ref().contains("${") {
        None
    } else {
        url::Url::parse(server.expose())
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
    };
    let token = cx.opt_secret("token", &s.token)?;
    let priority = priority(&s.priority, cx).ok()?;
    Some(Arc::new(Gotify {
        server: Secret::new(server.expose().trim_end_matches('/')),
        host,
        token,
        priority,
        markdown: s.markdown.unwrap_or(true),
    }))
}

impl Instance for Gotify {
    fn bind(
        self: Arc<Self>,
        target: &Item,
        chat: Option<Range<usize>>,
        cx: &mut Ctx<'_>,
    ) -> Option<Box<dyn Destination>> {
        let t = cx.deserialize::<Target>(target)?;
        let token = match (&t.token, &self.token) {
            (Some(t), _) => cx.secret("token", t)?,
            (None, Some(t)) => t.clone(),
            (None, None) => {
                cx.error(
                    chat,
                    "a gotify chat needs an application `token = \"${GOTIFY_TOKEN}\"` (on the chat or its provider)",
                );
                return None;
            }
        };
        let priority = priority(&t.priority, cx).ok()?.or(self.priority);
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

impl Destination for GotifyChat {
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
        // Self-hosted, no documented limit: polite, like the generic webhook.
        Some(Rate::per_second(10))
    }

    fn target(&self) -> String {
        match &self.instance.host {
            Some(h) => format!("gotify at {h}"),
            None => "gotify".into(),
        }
    }

    fn request(&self, msg: &Message<'_>) -> Outbound {
        let title = msg.context["topic"]["title"]
            .as_str()
            .map(|t| strip_controls(t).trim().to_string())
            .unwrap_or_default();
        let mut body = json!({
            "title": title,
            "message": msg.text,
        });
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
        if let Some(url) = click_url(msg.context) {
            extras.insert(
                "client::notification".into(),
                json!({"click": {"url": url}}),
            );
        }
        if !extras.is_empty() {
            body["extras"] = serde_json::Value::Object(extras);
        }
        let url = Secret::new(format!("{}/message", self.instance.server.expose()));
        Outbound::Http(
            HttpRequest::post_json(&url, &body).header("X-Gotify-Key", self.token.clone()),
        )
    }

    fn classify(&self, resp: &HttpResponse) -> Outcome {
        classify_json(resp, &SPEC)
    }
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

/// The post's URL (the topic's for topic events), when it is a web link.
fn click_url(ctx: &serde_json::Value) -> Option<&str> {
    let url = ctx["post"]["url"]
        .as_str()
        .or_else(|| ctx["topic"]["url"].as_str())?
        .trim();
    (is_linkable(url) && !url.starts_with("mailto:")).then_some(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const TOKEN: &str = "AcanaryGotify42";

    fn chat(markdown: bool, priority: Option<u8>) -> GotifyChat {
        GotifyChat {
            instance: Arc::new(Gotify {
                server: Secret::new("http://127.0.0.1:9/gotify"),
                host: Some("127.0.0.1".into()),
                token: None,
                priority: None,
                markdown,
            }),
            token: Secret::new(TOKEN),
            priority,
        }
    }

    fn resp(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        }
    }

    fn request(c: &GotifyChat, ctx: &serde_json::Value, text: &str) -> HttpRequest {
        match c.request(&Message {
            chat: "c",
            text,
            context: ctx,
            action: Default::default(),
            delivery: None,
        }) {
            Outbound::Http(r) => r,
            _ => panic!("expected HTTP"),
        }
    }

    #[test]
    fn request_shape() {
        let ctx = json!({"topic": {"title": "Hi\u{7}\u{1b}[31m there ", "url": "https://f.example/t/x/1"}, "post": {"url": "https://f.example/t/x/1/2"}});
        let r = request(&chat(true, Some(8)), &ctx, "by **Bob**");
        assert_eq!(r.method, "POST");
        assert_eq!(r.url.expose(), "http://127.0.0.1:9/gotify/message");
        assert!(
            r.headers
                .iter()
                .any(|(k, v)| k == "X-Gotify-Key" && v.expose() == TOKEN)
        );
        assert!(!r.url.expose().contains(TOKEN) && !r.body.contains(TOKEN));
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            body,
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
        let body: serde_json::Value = serde_json::from_str(&request(&c, &ctx, "m").body).unwrap();
        assert_eq!(body, json!({"title": "T", "message": "m"}));
    }

    #[test]
    fn classifies_answers() {
        let c = chat(true, None);
        assert_eq!(
            c.classify(&resp(
                200,
                r#"{"id":25,"appid":5,"message":"m","title":"t","priority":5,"date":"2026-03-10T16:00:04Z"}"#
            )),
            Outcome::Sent {
                remote_id: Some("25".into())
            }
        );
        let Outcome::Permanent { reason } = c.classify(&resp(
            401,
            r#"{"error":"Unauthorized","errorCode":401,"errorDescription":"you need to provide a valid access token or user credentials to access this api"}"#,
        )) else {
            panic!("401 is permanent")
        };
        assert_eq!(
            reason,
            "gotify: HTTP 401 Unauthorized: you need to provide a valid access token or user credentials to access this api (check the application `token`: a client token does not work)"
        );
        assert!(matches!(
            c.classify(&resp(403, r#"{"error":"Forbidden","errorCode":403,"errorDescription":"you are not allowed to access this api"}"#)),
            Outcome::Permanent { .. }
        ));
        assert!(matches!(
            c.classify(&resp(400, r#"{"error":"Bad Request","errorCode":400,"errorDescription":"Field 'message' is required"}"#)),
            Outcome::Permanent { reason } if reason.contains("'message' is required")
        ));
        assert!(matches!(
            c.classify(&resp(503, "")),
            Outcome::Retry { reason, .. } if reason == "gotify: HTTP 503"
        ));
    }

    fn bind(settings: &str, target: &str) -> (Option<Box<dyn Destination>>, Vec<String>) {
        let env: HashMap<String, String> = [("GOTIFY_TOKEN".to_string(), TOKEN.to_string())].into();
        let mut cx = Ctx::new(&env, crate::config::de::MissingEnv::Warn);
        let doc = toml_edit::Document::parse(format!("s = {{ {settings} }}\nt = {{ {target} }}"))
            .unwrap();
        let dest = parse(&doc["s"], &mut cx).and_then(|i| i.bind(&doc["t"], None, &mut cx));
        let problems = cx.problems().iter().map(|p| p.message.clone()).collect();
        (dest, problems)
    }

    #[test]
    fn settings_are_validated() {
        let (d, p) = bind(
            "server = \"https://push.example.org/\", token = \"${GOTIFY_TOKEN}\"",
            "priority = 2",
        );
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(d.unwrap().target(), "gotify at push.example.org");
        let (_, p) = bind("", "");
        assert!(p[0].contains("needs `server`"), "{p:?}");
        let (_, p) = bind("server = \"https://h\"", "");
        assert!(p[0].contains("needs an application `token"), "{p:?}");
        let (_, p) = bind("server = \"https://h\"", "token = \"Aliteral\"");
        assert!(p[0].contains("must be an environment reference"), "{p:?}");
        let (_, p) = bind(
            "server = \"https://h\", token = \"${GOTIFY_TOKEN}\"",
            "priority = 11",
        );
        assert!(p[0].contains("between 0 and 10"), "{p:?}");
        let (_, p) = bind("server = \"h\", token = \"${GOTIFY_TOKEN}\"", "");
        assert!(p[0].contains("`server` must be an absolute"), "{p:?}");
    }
}
