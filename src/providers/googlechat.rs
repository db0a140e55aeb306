//! `googlechat`: a Google Chat space's incoming webhook,
//! `POST https://chat.googleapis.com/v1/spaces/{space}/messages?key=…&token=…`
//! with `{"text": …}`. The whole URL is the credential.
//!
//! Markup: Chat's own text syntax (`*bold*`, `_italic_`, `~strike~`,
//! `<url|label>` links, `<users/{id}>` and `<users/all>` mentions) is close
//! to Slack's, so the dialect is Slack mrkdwn: the renderer turns `&`, `<`,
//! `>` in every value into entities, and no `<` from a post can open a link
//! or a mention. Google documents no entity decoding for text messages (and
//! a `&gt;` sent by LibreNMS shows as `&gt;` in Chat, librenms#18234), so
//! `readable` turns the entities back into look-alikes before sending:
//! `&lt;`/`&gt;` become `‹`/`›`, `&amp;` becomes `&` unless an entity name
//! follows. The result holds no `<` or `>` from user content whether or not
//! Chat decodes entities; links and mentions written in the template stay.
//!
//! Threads: a `thread` rule's messages carry `thread.threadKey =
//! "topic-<forum topic id>"` with `messageReplyOption =
//! REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD`, so a topic's messages share one
//! Chat thread. Webhooks cannot edit or delete messages.
//!
//! Errors are Google's `{"error":{"code","message","status"}}`. See
//! shared/providers.md §2.9 and developers.google.com/workspace/chat/format-messages.

use std::ops::Range;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use serde_spanned::Spanned;

use super::http::fit;
use super::kit::{self, Provider, Spec, classify_json};
use super::{
    Action, Capabilities, Destination, HttpRequest, HttpResponse, Message, Outbound, Outcome,
    Registration,
};
use crate::config::Rate;
use crate::config::de::Ctx;
use crate::config::env::Secret;
use crate::render::Dialect;

pub const REGISTRATION: Registration =
    kit::registration::<GoogleChat>("googlechat", "Google Chat space incoming webhook");

/// Longest `text` Chat takes, counted here in UTF-16 units (never fewer than
/// characters, so the cut is safe whichever way Google counts).
const MAX_TEXT: usize = 4096;

/// `[providers.NAME]` for `kind = "googlechat"`: nothing to set (each chat
/// names its own webhook).
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Settings {}

/// Chat fields for a Google Chat chat.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Target {
    /// The space's incoming webhook URL
    /// (`https://chat.googleapis.com/v1/spaces/…/messages?key=…&token=…`),
    /// as `${VAR}`: the URL is the credential.
    #[schemars(with = "Option<String>")]
    pub webhook_url: Option<Spanned<String>>,
}

#[derive(Debug)]
struct GoogleChat;

impl Provider for GoogleChat {
    type Settings = Settings;
    type Target = Target;

    fn new(_: Settings, _: &mut Ctx<'_>) -> Option<Self> {
        Some(GoogleChat)
    }

    fn bind_target(
        self: Arc<Self>,
        t: Target,
        chat: Option<Range<usize>>,
        cx: &mut Ctx<'_>,
    ) -> Option<Box<dyn Destination>> {
        let (url, raw_span) = cx.required_url(
            &t.webhook_url,
            "webhook_url",
            chat,
            "a googlechat chat needs `webhook_url = \"${GOOGLE_CHAT_WEBHOOK_URL}\"` (the space's incoming webhook URL)",
        )?;
        let mut scrub = vec![url.clone()];
        if let Ok(u) = url::Url::parse(url.expose()) {
            let path_ok = u.path().contains("/spaces/") && u.path().ends_with("/messages");
            let mut key = false;
            let mut token = false;
            for (k, v) in u.query_pairs() {
                if k == "key" || k == "token" {
                    key |= k == "key";
                    token |= k == "token";
                    scrub.push(Secret::new(v.into_owned()));
                }
            }
            if !(path_ok && key && token) {
                cx.warning(
                    Some(raw_span.clone()),
                    "`webhook_url` does not look like a Google Chat incoming webhook (https://chat.googleapis.com/v1/spaces/…/messages?key=…&token=…); copy the whole URL from the space's \"Apps & integrations\" > Webhooks",
                );
            }
        }
        Some(Box::new(GoogleChatChat { url, scrub }))
    }
}

#[derive(Debug)]
struct GoogleChatChat {
    url: Secret,
    /// Values no reason may show: the URL, its `key` and its `token`.
    scrub: Vec<Secret>,
}

/// Rendered mrkdwn with the renderer's entities turned into characters that
/// display as meant and cannot form Chat markup: `&lt;` → `‹`, `&gt;` → `›`,
/// `&amp;` → `&` unless what follows would make an entity again.
fn readable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("&lt;") {
            out.push('‹');
            rest = after;
        } else if let Some(after) = tail.strip_prefix("&gt;") {
            out.push('›');
            rest = after;
        } else if let Some(after) = tail.strip_prefix("&amp;") {
            out.push_str(if starts_entity(after) { "&amp;" } else { "&" });
            rest = after;
        } else {
            out.push('&');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// Whether `s` starts like the rest of an entity: `name;`, `#123;`, `#x1F;`.
fn starts_entity(s: &str) -> bool {
    let body = s.strip_prefix('#').unwrap_or(s);
    let n = body.chars().take_while(char::is_ascii_alphanumeric).count();
    n > 0 && body[n..].starts_with(';')
}

impl GoogleChatChat {}

impl Destination for GoogleChatChat {
    fn kind(&self) -> &'static str {
        REGISTRATION.kind
    }

    fn dialect(&self) -> Dialect {
        Dialect::SlackMrkdwn
    }

    fn capabilities(&self) -> Capabilities {
        // Threads are named by a key the webhook chooses (the forum topic's
        // id), so no message id is needed for them; editing and deleting
        // need a Chat app's auth, which a webhook lacks.
        Capabilities {
            thread: true,
            edit: false,
            delete: false,
        }
    }

    fn default_rate(&self) -> Option<Rate> {
        // Writes to one space are limited to about one a second, shared by
        // every app and webhook in it (developers.google.com/workspace/chat/limits).
        Some(Rate::per_second(1))
    }

    fn target(&self) -> String {
        // The space id is not secret, but it sits next to the key and token.
        "Google Chat webhook".into()
    }

    fn request(&self, msg: &Message<'_>) -> Outbound {
        let text = fit(&readable(msg.text), MAX_TEXT, char::len_utf16);
        let mut body = json!({ "text": text });
        let topic = msg.context["topic"]["id"].as_u64();
        // Only posts reach a webhook chat (no edit or delete capability).
        if let (Action::Post { thread: Some(_) }, Some(topic)) = (msg.action, topic) {
            // Every message of the topic names the same thread; the first
            // one opens it (the fallback), the others join it.
            body["thread"] = json!({ "threadKey": format!("topic-{topic}") });
            let base = self.url.expose();
            let sep = if base.contains('?') { '&' } else { '?' };
            let url = Secret::new(format!(
                "{base}{sep}messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD"
            ));
            return Outbound::Http(HttpRequest::post_json(&url, &body));
        }
        Outbound::Http(HttpRequest::post_json(&self.url, &body))
    }

    fn classify(&self, resp: &HttpResponse) -> Outcome {
        kit::scrub(classify_json(resp, &SPEC), &self.scrub)
    }
}

/// Errors: Google's `{"error":{"status","message"}}` → `HTTP 404 NOT_FOUND: message`.
const SPEC: Spec = Spec {
    prefix: "googlechat",
    // The answer is the created Message: `name` = spaces/…/messages/….
    id_ptr: Some("/name"),
    error: |resp, body| {
        kit::joined(body, &["/error/status", "/error/message"])
            .or_else(|| Some(resp.body_snippet()))
    },
    sep: " ",
    hint: |status| match status {
        400 => " (a wrong `key` in the webhook URL, or a message Chat refused)",
        401 | 403 => {
            " (the webhook's token was rejected: the webhook was deleted, or the app is not allowed in the space)"
        }
        404 => " (the space or its webhook no longer exists)",
        _ => "",
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use crate::providers::Instance;
    use std::collections::HashMap;
    use std::time::Duration;

    const URL: &str = "https://chat.googleapis.com/v1/spaces/AAAA1234/messages?key=canaryKey123&token=canaryToken456";

    fn chat() -> GoogleChatChat {
        GoogleChatChat {
            url: Secret::new(URL),
            scrub: vec![
                Secret::new(URL),
                Secret::new("canaryKey123"),
                Secret::new("canaryToken456"),
            ],
        }
    }

    use crate::providers::http::tests::resp;

    #[test]
    fn entities_become_inert_look_alikes() {
        assert_eq!(
            readable("*<https://f/t/1?a=1&amp;b=2|A &amp; B &lt;users/all&gt;>* Q&amp;A"),
            "*<https://f/t/1?a=1&b=2|A & B ‹users/all›>* Q&A"
        );
        // A literal entity typed in a post stays an escaped one.
        assert_eq!(
            readable("&amp;lt;users/all&amp;gt;"),
            "&amp;lt;users/all&amp;gt;"
        );
        assert_eq!(
            readable("&amp;#60; &amp;#x3C; &amp; x;"),
            "&amp;#60; &amp;#x3C; & x;"
        );
        assert_eq!(readable("& &am &amp"), "& &am &amp");
        assert_eq!(readable("&amp;&lt;"), "&‹");
    }

    #[test]
    fn request_shape() {
        let ctx = json!({});
        let out = chat().request(&Message {
            chat: "c",
            text: "*<https://f/t/1|&lt;users/all&gt; hi>*",
            context: &ctx,
            action: Default::default(),
            delivery: None,
        });
        let Outbound::Http(r) = out else {
            panic!("expected HTTP")
        };
        assert_eq!(r.method, "POST");
        assert_eq!(r.url.expose(), URL);
        assert_eq!(r.headers.len(), 1);
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body, json!({"text": "*<https://f/t/1|‹users/all› hi>*"}));
    }

    #[test]
    fn thread_messages_share_the_topic_thread_key() {
        use super::super::Thread;
        let ctx = json!({"topic": {"id": 105, "title": "T"}});
        for root in [None, Some("spaces/AAAA1234/messages/x.y")] {
            let Outbound::Http(r) = chat().request(&Message {
                chat: "c",
                text: "hi",
                context: &ctx,
                action: Action::Post {
                    thread: Some(Thread { root }),
                },
                delivery: None,
            }) else {
                panic!("expected HTTP")
            };
            assert_eq!(
                r.url.expose(),
                format!("{URL}&messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD")
            );
            let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
            assert_eq!(
                body,
                json!({"text": "hi", "thread": {"threadKey": "topic-105"}})
            );
        }
        // Without a `thread` rule: a plain message.
        let Outbound::Http(r) = chat().request(&Message {
            chat: "c",
            text: "hi",
            context: &ctx,
            action: Action::default(),
            delivery: None,
        }) else {
            panic!("expected HTTP")
        };
        assert_eq!(r.url.expose(), URL);
        assert_eq!(r.body, r#"{"text":"hi"}"#);
        let caps = chat().capabilities();
        assert!(caps.thread && !caps.edit && !caps.delete);
    }

    #[test]
    fn long_text_is_cut_to_the_limit() {
        let ctx = json!({});
        let text = "😀 ab ".repeat(2000);
        let Outbound::Http(r) = chat().request(&Message {
            chat: "c",
            text: &text,
            context: &ctx,
            action: Default::default(),
            delivery: None,
        }) else {
            panic!()
        };
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        let sent = body["text"].as_str().unwrap();
        let units: usize = sent.chars().map(char::len_utf16).sum();
        assert!(units <= MAX_TEXT && units > MAX_TEXT - 10, "{units}");
        assert!(sent.ends_with('…'));
    }

    #[test]
    fn classifies_google_errors_without_key_or_token() {
        let c = chat();
        assert_eq!(
            c.classify(&resp(
                200,
                &[],
                r#"{"name":"spaces/AAAA1234/messages/x.y","text":"t"}"#
            )),
            Outcome::Sent {
                remote_id: Some("spaces/AAAA1234/messages/x.y".into())
            }
        );
        assert_eq!(
            c.classify(&resp(200, &[], "")),
            Outcome::Sent { remote_id: None }
        );
        let limited = r#"{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED"}}"#;
        assert_eq!(
            c.classify(&resp(429, &[("Retry-After", "5")], limited)),
            Outcome::Retry {
                reason: "googlechat: HTTP 429 RESOURCE_EXHAUSTED: Resource has been exhausted (e.g. check quota).".into(),
                after: Some(Duration::from_secs(5))
            }
        );
        assert!(matches!(
            c.classify(&resp(503, &[], r#"{"error":{"code":503,"message":"The service is currently unavailable.","status":"UNAVAILABLE"}}"#)),
            Outcome::Retry { after: None, .. }
        ));
        for (status, body, want) in [
            (
                400,
                r#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT"}}"#,
                "INVALID_ARGUMENT",
            ),
            (
                401,
                r#"{"error":{"code":401,"message":"Request had invalid authentication credentials (token canaryToken456).","status":"UNAUTHENTICATED"}}"#,
                "token was rejected",
            ),
            (
                403,
                r#"{"error":{"code":403,"message":"The caller does not have permission","status":"PERMISSION_DENIED"}}"#,
                "PERMISSION_DENIED",
            ),
            (
                404,
                r#"{"error":{"code":404,"message":"Requested entity was not found.","status":"NOT_FOUND"}}"#,
                "no longer exists",
            ),
        ] {
            let Outcome::Permanent { reason } = c.classify(&resp(status, &[], body)) else {
                panic!("{status} should be permanent")
            };
            assert!(reason.contains(want), "{reason}");
            assert!(
                !reason.contains("canaryToken456") && !reason.contains("canaryKey123"),
                "{reason}"
            );
        }
    }

    #[test]
    fn target_validation() {
        let env = HashMap::from([
            ("GC".to_string(), URL.to_string()),
            (
                "SPACE".to_string(),
                "https://chat.google.com/room/AAAA1234".to_string(),
            ),
        ]);
        let run = |toml: &str| {
            let mut cx = Ctx::new(&env, crate::config::de::MissingEnv::Warn);
            let doc = toml_edit::Document::parse(format!("t = {toml}")).unwrap();
            let d = Arc::new(GoogleChat).bind(&doc["t"], Some(0..1), &mut cx);
            let p: Vec<String> = cx.problems().iter().map(|p| p.message.clone()).collect();
            (d.is_some(), p)
        };
        assert_eq!(run("{ webhook_url = \"${GC}\" }"), (true, vec![]));
        let (ok, p) = run("{ webhook_url = \"${SPACE}\" }");
        assert!(ok && p[0].contains("does not look like"), "{p:?}");
        let (ok, p) = run("{}");
        assert!(!ok && p[0].contains("needs `webhook_url"), "{p:?}");
        let (ok, p) = run(
            "{ webhook_url = \"https://chat.googleapis.com/v1/spaces/A/messages?key=k&token=t\" }",
        );
        assert!(!ok && p[0].contains("environment reference"), "{p:?}");
    }
}
