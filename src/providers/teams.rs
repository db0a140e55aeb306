//! `teams`: Microsoft Teams through a Workflows (Power Automate) webhook,
//! the "When a Teams webhook request is received" trigger. The body is a
//! `message` with one Adaptive Card attachment: the rendered text in a
//! wrapping `TextBlock` (Teams renders a Markdown subset there, so the
//! dialect is Markdown) and an `Action.OpenUrl` button to the post.
//!
//! Mentions: a Teams @mention needs an `<at>` tag *and* an entry in the
//! card's `msteams.entities`, which this card never has, so text cannot ping;
//! the Markdown escaper breaks `<`, `@everyone` and the like on top.
//!
//! Delivery is fire-and-forget on Microsoft's side: the trigger answers
//! `202 Accepted` before the flow runs, so a card the flow cannot post (too
//! large, channel deleted, flow owner gone) fails only in the flow's run
//! history, never in the relay. What the relay sees is the trigger: 4xx for
//! a bad or expired URL (permanent), 429 and 5xx (retry).
//!
//! The retired Office 365 connector format (`MessageCard`) is not built:
//! connectors stopped working in 2025-26 and their URLs (`…webhook.office.com`)
//! draw a warning. See shared/providers.md §2.8 and the Adaptive Card schema
//! (`adaptivecards.io/schemas/adaptive-card.json`, version 1.4).

use std::ops::Range;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use serde_spanned::Spanned;

use super::http::fit;
use super::kit::{self, Provider, Spec, classify_json};
use super::{
    Capabilities, Destination, HttpRequest, HttpResponse, Message, Outbound, Outcome, Registration,
};
use crate::config::Rate;
use crate::config::de::Ctx;
use crate::config::env::Secret;
use crate::render::Dialect;

pub const REGISTRATION: Registration = kit::registration::<Teams>(
    "teams",
    "Microsoft Teams via a Workflows (Power Automate) webhook, as an Adaptive Card",
);

/// Teams rejects posts above about 28 KB ("Request Entity too large", inside
/// the flow). The whole request body is kept under this.
/// learn.microsoft.com/connectors/teams, "Known issues and limitations".
const MAX_BODY_BYTES: usize = 28_000;

/// Links longer than this are left out of the card rather than eating the text's room.
const MAX_URL_BYTES: usize = 2_048;

const DEFAULT_BUTTON: &str = "Open in forum";

/// The default message: like the renderer's Markdown one, but with the
/// excerpt in its own paragraph (Teams has no block quotes, and only a blank
/// line breaks a line in every Adaptive Card renderer).
const DEFAULT_TEMPLATE: &str = concat!(
    "**{{#if post}}{{link post.url topic.title}}{{else}}{{link topic.url topic.title}}{{/if}}**",
    "{{#if post}} by {{#if post.name}}{{post.name}}{{else}}{{post.username}}{{/if}}{{/if}}",
    "{{#if topic.category}} in {{topic.category.path}}{{/if}}",
    "{{#if topic.tags}} [{{join topic.tags \", \"}}]{{/if}}",
    "{{#if post}}{{#if post.excerpt}}\n\n{{post.excerpt}}{{/if}}{{/if}}",
);

/// `[providers.NAME]` for `kind = "teams"`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Settings {
    /// Label of the card's button that opens the post (default "Open in forum").
    pub button: Option<String>,
}

/// Chat fields for a Teams chat.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Target {
    /// The Workflows webhook URL ("When a Teams webhook request is received";
    /// it carries its signature as `sig=`), as `${VAR}`: the URL is the credential.
    #[schemars(with = "Option<String>")]
    pub webhook_url: Option<Spanned<String>>,
}

#[derive(Debug)]
struct Teams {
    button: String,
}

impl Provider for Teams {
    type Settings = Settings;
    type Target = Target;

    fn new(s: Settings, _: &mut Ctx<'_>) -> Option<Self> {
        let button = s
            .button
            .map(|b| b.trim().to_string())
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| DEFAULT_BUTTON.to_string());
        Some(Teams { button })
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
            "a teams chat needs `webhook_url = \"${TEAMS_WEBHOOK_URL}\"` (a Workflows webhook URL)",
        )?;
        let mut scrub = vec![url.clone()];
        if let Ok(u) = url::Url::parse(url.expose()) {
            let host = u.host_str().unwrap_or_default().to_ascii_lowercase();
            if host.ends_with("webhook.office.com") || host.ends_with("outlook.office.com") {
                cx.warning(
                    Some(raw_span.clone()),
                    "`webhook_url` looks like an Office 365 connector URL: connectors are retired; create a Workflows webhook (\"When a Teams webhook request is received\") instead",
                );
            } else {
                match u.query_pairs().find(|(k, _)| k == "sig") {
                    Some((_, sig)) => scrub.push(Secret::new(sig.into_owned())),
                    None => cx.warning(
                        Some(raw_span.clone()),
                        "`webhook_url` has no `sig=` parameter: Workflows URLs carry their signature there; copy the whole URL",
                    ),
                }
            }
        }
        Some(Box::new(TeamsChat {
            instance: self,
            url,
            scrub,
        }))
    }
}

#[derive(Debug)]
struct TeamsChat {
    instance: Arc<Teams>,
    url: Secret,
    /// Values no reason may show: the URL and its `sig`.
    scrub: Vec<Secret>,
}

impl TeamsChat {
    /// The Adaptive Card for `text`, with a button to `link` when there is one.
    fn card(&self, text: &str, link: Option<&str>) -> serde_json::Value {
        let mut card = json!({
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard",
            "version": "1.4",
            "body": [{"type": "TextBlock", "text": text, "wrap": true}],
        });
        if let Some(url) = link {
            card["actions"] = json!([{
                "type": "Action.OpenUrl",
                "title": self.instance.button,
                "url": url,
            }]);
        }
        json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "content": card,
            }],
        })
    }
}

/// The post's URL (or the topic's) from the template context, when it is a
/// plain absolute http(s) URL of sane length.
fn post_link(context: &serde_json::Value) -> Option<String> {
    let raw = context["post"]["url"]
        .as_str()
        .or_else(|| context["topic"]["url"].as_str())?;
    let u = url::Url::parse(raw.trim()).ok()?;
    let ok = matches!(u.scheme(), "http" | "https")
        && u.host().is_some()
        && u.as_str().len() <= MAX_URL_BYTES;
    ok.then(|| u.to_string())
}

/// Bytes `c` takes inside a JSON string (serde_json escapes only `"`, `\`
/// and control characters; everything else is written as UTF-8).
fn json_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

impl Destination for TeamsChat {
    fn kind(&self) -> &'static str {
        REGISTRATION.kind
    }

    fn dialect(&self) -> Dialect {
        Dialect::Markdown
    }

    fn capabilities(&self) -> Capabilities {
        // The trigger answers 202 with no message id: nothing to thread under or edit.
        Capabilities::default()
    }

    fn default_template(&self) -> Option<&'static str> {
        Some(DEFAULT_TEMPLATE)
    }

    fn default_rate(&self) -> Option<Rate> {
        // Each request starts a flow run that posts through the Teams
        // connector (throttled per connection); one a second per chat.
        Some(Rate::per_second(1))
    }

    fn target(&self) -> String {
        "Workflows webhook".into()
    }

    fn request(&self, msg: &Message<'_>) -> Outbound {
        let link = post_link(msg.context);
        let envelope = self.card("", link.as_deref()).to_string().len();
        let text = fit(msg.text, MAX_BODY_BYTES.saturating_sub(envelope), json_len);
        Outbound::Http(HttpRequest::post_json(
            &self.url,
            &self.card(&text, link.as_deref()),
        ))
    }

    fn classify(&self, resp: &HttpResponse) -> Outcome {
        // Retired connectors reported throttling as 200 with this in the body.
        if resp.status == 200 && String::from_utf8_lossy(&resp.body).contains("HTTP error 429") {
            return Outcome::Retry {
                reason: "teams: throttled (HTTP error 429 in the answer)".into(),
                after: resp.retry_after(),
            };
        }
        kit::scrub(classify_json(resp, &SPEC), &self.scrub)
    }
}

/// Errors: the Logic Apps / Power Platform shape `{"error":{"code","message"}}`
/// → `HTTP 404 WorkflowNotFound: message`.
const SPEC: Spec = Spec {
    prefix: "teams",
    id_ptr: None,
    error: |resp, body| {
        kit::joined(body, &["/error/code", "/error/message"]).or_else(|| Some(resp.body_snippet()))
    },
    sep: " ",
    hint: |status| match status {
        401 | 403 => " (the workflow URL was rejected: copy it again from the workflow's trigger)",
        404 => " (the workflow was deleted or turned off)",
        400 | 413 => " (the workflow refused the card)",
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

    const URL: &str = "https://prod-01.westeurope.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=canarySig123";

    fn chat() -> TeamsChat {
        TeamsChat {
            instance: Arc::new(Teams {
                button: DEFAULT_BUTTON.into(),
            }),
            url: Secret::new(URL),
            scrub: vec![Secret::new(URL), Secret::new("canarySig123")],
        }
    }

    use crate::providers::http::tests::resp;

    fn body(out: Outbound) -> (HttpRequest, serde_json::Value) {
        let Outbound::Http(r) = out else {
            panic!("expected HTTP")
        };
        let v = serde_json::from_str(&r.body).unwrap();
        (r, v)
    }

    #[test]
    fn request_is_an_adaptive_card_with_a_button() {
        let ctx = json!({"post": {"url": "https://forum.example.org/t/x/1/2"}});
        let (r, v) = body(chat().request(&Message {
            chat: "c",
            text: "**\\[x\\]** \\<at\\>",
            context: &ctx,
            action: Default::default(),
            delivery: None,
        }));
        assert_eq!(r.method, "POST");
        assert_eq!(r.url.expose(), URL);
        assert_eq!(
            v,
            json!({
                "type": "message",
                "attachments": [{
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "content": {
                        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                        "type": "AdaptiveCard",
                        "version": "1.4",
                        "body": [{"type": "TextBlock", "text": "**\\[x\\]** \\<at\\>", "wrap": true}],
                        "actions": [{"type": "Action.OpenUrl", "title": "Open in forum", "url": "https://forum.example.org/t/x/1/2"}],
                    }
                }]
            })
        );
    }

    #[test]
    fn unsafe_or_missing_links_leave_no_button() {
        for ctx in [
            json!({"post": {"url": "javascript:alert(1)"}}),
            json!({"post": null, "topic": {"url": "data:text/html,x"}}),
            json!({}),
            json!({"post": {"url": format!("https://h/{}", "a".repeat(3000))}}),
        ] {
            let (_, v) = body(chat().request(&Message {
                chat: "c",
                text: "t",
                context: &ctx,
                action: Default::default(),
                delivery: None,
            }));
            assert!(
                v["attachments"][0]["content"].get("actions").is_none(),
                "{ctx}"
            );
        }
        // The topic URL stands in when the event has no post.
        let ctx = json!({"post": null, "topic": {"url": "https://forum.example.org/t/x/1"}});
        let (_, v) = body(chat().request(&Message {
            chat: "c",
            text: "t",
            context: &ctx,
            action: Default::default(),
            delivery: None,
        }));
        assert_eq!(
            v["attachments"][0]["content"]["actions"][0]["url"],
            "https://forum.example.org/t/x/1"
        );
    }

    #[test]
    fn long_text_is_cut_to_the_card_limit() {
        let ctx = json!({"post": {"url": "https://forum.example.org/t/x/1/2"}});
        // Quotes double in JSON: the limit counts the escaped size.
        let text = "\"word\" ".repeat(10_000);
        let (r, v) = body(chat().request(&Message {
            chat: "c",
            text: &text,
            context: &ctx,
            action: Default::default(),
            delivery: None,
        }));
        assert!(r.body.len() <= MAX_BODY_BYTES, "{}", r.body.len());
        assert!(r.body.len() > MAX_BODY_BYTES - 100, "{}", r.body.len());
        let shown = v["attachments"][0]["content"]["body"][0]["text"]
            .as_str()
            .unwrap();
        assert!(
            shown.ends_with("\"word\"…"),
            "{}",
            &shown[shown.len() - 20..]
        );
    }

    #[test]
    fn fit_respects_the_budget() {
        assert_eq!(fit("abc", 3, char::len_utf8), "abc");
        assert_eq!(fit("alpha beta gamma", 14, char::len_utf8), "alpha beta…");
        assert_eq!(fit("abcdefgh", 6, char::len_utf8), "abc…");
        assert_eq!(fit("ééééé", 7, char::len_utf8), "éé…");
        assert_eq!(fit("abc", 0, char::len_utf8), "…");
    }

    #[test]
    fn classifies_trigger_answers_without_the_signature() {
        let c = chat();
        assert_eq!(
            c.classify(&resp(202, &[], "")),
            Outcome::Sent { remote_id: None }
        );
        assert_eq!(
            c.classify(&resp(429, &[("Retry-After", "12")], "")),
            Outcome::Retry {
                reason: "teams: HTTP 429".into(),
                after: Some(Duration::from_secs(12))
            }
        );
        assert!(matches!(
            c.classify(&resp(
                200,
                &[],
                "Microsoft Teams endpoint returned HTTP error 429"
            )),
            Outcome::Retry { .. }
        ));
        assert!(matches!(
            c.classify(&resp(502, &[], "bad gateway")),
            Outcome::Retry { .. }
        ));
        let echo = r#"{"error":{"code":"DirectApiAuthorizationRequired","message":"The signature 'canarySig123' is not valid."}}"#;
        let Outcome::Permanent { reason } = c.classify(&resp(401, &[], echo)) else {
            panic!("401 should be permanent")
        };
        assert!(
            reason.contains("DirectApiAuthorizationRequired"),
            "{reason}"
        );
        assert!(reason.contains("copy it again"), "{reason}");
        assert!(!reason.contains("canarySig123"), "{reason}");
        let Outcome::Permanent { reason } = c.classify(&resp(
            404,
            &[],
            r#"{"error":{"code":"WorkflowNotFound","message":"The workflow 'abc' could not be found."}}"#,
        )) else {
            panic!("404 should be permanent")
        };
        assert!(
            reason.starts_with("teams: HTTP 404 WorkflowNotFound"),
            "{reason}"
        );
    }

    fn bind(toml: &str) -> (Option<Box<dyn Destination>>, Vec<String>) {
        let env = HashMap::from([
            ("TEAMS_URL".to_string(), URL.to_string()),
            (
                "O365".to_string(),
                "https://contoso.webhook.office.com/webhookb2/x/IncomingWebhook/y/z".to_string(),
            ),
            (
                "NOSIG".to_string(),
                "https://prod-01.logic.azure.com/workflows/abc".to_string(),
            ),
        ]);
        let mut cx = Ctx::new(&env, crate::config::de::MissingEnv::Warn);
        let inst = Arc::new(Teams {
            button: DEFAULT_BUTTON.into(),
        });
        let doc = toml_edit::Document::parse(format!("t = {toml}")).unwrap();
        let d = inst.bind(&doc["t"], Some(0..1), &mut cx);
        (d, cx.problems().iter().map(|p| p.message.clone()).collect())
    }

    #[test]
    fn target_validation() {
        let (d, p) = bind("{ webhook_url = \"${TEAMS_URL}\" }");
        assert!(d.is_some() && p.is_empty(), "{p:?}");
        let (d, p) = bind("{}");
        assert!(d.is_none() && p[0].contains("needs `webhook_url"), "{p:?}");
        let (d, p) = bind("{ webhook_url = \"https://prod-01.logic.azure.com/x?sig=literal\" }");
        assert!(
            d.is_none() && p[0].contains("environment reference"),
            "{p:?}"
        );
        let (d, p) = bind("{ webhook_url = \"${O365}\" }");
        assert!(
            d.is_some() && p[0].contains("Office 365 connector"),
            "{p:?}"
        );
        let (d, p) = bind("{ webhook_url = \"${NOSIG}\" }");
        assert!(d.is_some() && p[0].contains("no `sig=`"), "{p:?}");
        let (_, p) = bind("{ webhook_url = \"${UNSET}\" }");
        assert!(p.len() == 1 && p[0].contains("not set"), "{p:?}");
    }
}
