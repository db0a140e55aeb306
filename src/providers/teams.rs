//! `teams`: Microsoft Teams through a Workflows webhook ("When a Teams webhook
//! request is received"; the URL with its `sig=` is the credential). The body
//! is a `message` with one Adaptive Card 1.4, all under 28 KB. Retired Office
//! 365 connector URLs draw a warning.
//!
//! Cards (the default style): the layout of [`super::adaptive`]: a header
//! band with the avatar (`Image`, style `person`, small), the author's name
//! and @username, what happened and the linked category; the linked
//! headline (bolder, medium); the excerpt; the tags as links; the forum's
//! logo, title and the time (`{{DATE()}}`/`{{TIME()}}`, in each reader's
//! zone); an `Action.OpenUrl` button to the post (labelled by the `button`
//! setting, else "View topic"/"View reply"). Adaptive Cards take no colour
//! values: the category's colour is approximated by the header's container
//! `style` (good, attention, warning, accent or emphasis, the nearest by
//! hue; greys and no colour leave the default). The rendered text is the
//! card's `fallbackText`. A chat's own card is an `AdaptiveCard` object (at
//! most version 1.4, 6 actions, 24 KB), sent as the attachment's `content`.
//! With `style = "text"`: the text in a wrapping `TextBlock` and a button.
//!
//! Dialect: Markdown (Teams' subset), strictest reading (no parser test): an
//! @mention needs a `msteams.entities` entry, which the card never has.
//!
//! Answers: `202 Accepted` before the flow runs (a card it cannot post fails
//! only in its run history); 4xx permanent, 429 and 5xx retry. See
//! shared/providers.md §2.8.

use super::adaptive::{self, Flavor};
use super::kit::prelude::*;

pub const REGISTRATION: Registration = kit::registration::<Teams>(
    "teams",
    "Microsoft Teams via a Workflows (Power Automate) webhook, as an Adaptive Card",
);

/// Teams rejects posts above about 28 KB ("Request Entity too large", inside
/// the flow; learn.microsoft.com/connectors/teams, "Known issues").
const MAX_BODY_BYTES: usize = 28_000;

/// Links longer than this are left out of the card rather than eating the text's room.
const MAX_URL_BYTES: usize = 2_048;

const DEFAULT_BUTTON: &str = "Open in forum";

/// Teams renders Adaptive Cards 1.4 from a Workflows webhook (1.5 features
/// show as "card not supported" on some clients); the card keeps 4 KB of
/// the 28 KB for the envelope and the fallback text.
const FLAVOR: Flavor = Flavor {
    version: "1.4",
    dates: true,
    max_bytes: 24_000,
};

/// Buttons Teams shows on one card.
const MAX_ACTIONS: usize = 6;

/// The card's `fallbackText` (the rendered text) at most, in JSON bytes.
const MAX_FALLBACK_BYTES: usize = 2_000;

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
    /// Label of the card's button that opens the post (default: "View topic" or
    /// "View reply" on a card, "Open in forum" on a text message).
    pub button: Option<String>,
}

/// Chat fields for a Teams chat.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Target {
    /// The Workflows webhook URL ("When a Teams webhook request is received";
    /// it carries its signature as `sig=`), as `${VAR}`: the URL is the credential.
    pub webhook_url: Option<Located<String>>,
}

#[derive(Debug)]
struct Teams {
    button: Option<String>,
}

impl Provider for Teams {
    type Settings = Settings;
    type Target = Target;

    fn new(s: Settings, _: &Table, _: &mut Ctx<'_>) -> Option<Self> {
        let button = s.button.as_deref().map(str::trim).filter(|b| !b.is_empty());
        Some(Teams {
            button: button.map(str::to_string),
        })
    }

    fn bind_target(self: Arc<Self>, t: Target, chat: Span, cx: &mut Ctx<'_>) -> Bound {
        let missing =
            "a teams chat needs `webhook_url = \"${TEAMS_WEBHOOK_URL}\"` (a Workflows webhook URL)";
        let (url, span) = cx.required_url(&t.webhook_url, "webhook_url", chat, missing)?;
        let mut scrub = vec![url.clone()];
        if let Ok(u) = url::Url::parse(url.expose()) {
            let host = u.host_str().unwrap_or_default().to_ascii_lowercase();
            let sig = u.query_pairs().find(|(k, _)| k == "sig");
            let connector = "`webhook_url` looks like an Office 365 connector URL: connectors are retired; create a Workflows webhook (\"When a Teams webhook request is received\") instead";
            let no_sig = "`webhook_url` has no `sig=` parameter: Workflows URLs carry their signature there; copy the whole URL";
            if host.ends_with("webhook.office.com") || host.ends_with("outlook.office.com") {
                cx.warning(Some(span), connector);
            } else if let Some((_, sig)) = sig {
                scrub.push(Secret::new(sig.into_owned()));
            } else {
                cx.warning(Some(span), no_sig);
            }
        }
        let button = self.button.clone();
        Some(Box::new(TeamsChat { button, url, scrub }))
    }
}

#[derive(Debug)]
struct TeamsChat {
    /// The `button` setting, when set.
    button: Option<String>,
    url: Secret,
    /// Values no reason may show: the URL and its `sig`.
    scrub: Vec<Secret>,
}

impl TeamsChat {
    /// The card message: the chat's own card or the default, with the
    /// rendered text as its `fallbackText` (unless the chat's own names one).
    fn card_message(&self, card: &Card, msg: &Message<'_>) -> Value {
        let mut content = match msg.custom {
            Some(custom) => custom.clone(),
            None => adaptive::default_card(card, self.button.as_deref(), &FLAVOR),
        };
        if content.get("fallbackText").is_none() && content.is_object() {
            let text = adaptive::inert(msg.text);
            content["fallbackText"] = json!(fit(&text, MAX_FALLBACK_BYTES, json_len));
        }
        message(content)
    }

    /// The Adaptive Card for `text`, with a button to `link` when there is one.
    fn card(&self, text: &str, link: Option<&str>) -> Value {
        let mut card = json!({
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard",
            "version": "1.4",
            "body": [{"type": "TextBlock", "text": text, "wrap": true}],
        });
        if let Some(url) = link {
            let title = self.button.as_deref().unwrap_or(DEFAULT_BUTTON);
            card["actions"] = json!([{"type": "Action.OpenUrl", "title": title, "url": url}]);
        }
        message(card)
    }
}

/// The Workflows message carrying `card`.
fn message(card: Value) -> Value {
    let attachment =
        json!({"contentType": "application/vnd.microsoft.card.adaptive", "content": card});
    json!({"type": "message", "attachments": [attachment]})
}

/// The post's URL (or the topic's) from the template context, when it is a
/// plain absolute http(s) URL of sane length.
fn post_link(context: &Value) -> Option<String> {
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

/// The Logic Apps / Power Platform `{"error":{"code","message"}}` →
/// `HTTP 404 WorkflowNotFound: message`.
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

impl kit::Chat for TeamsChat {
    const KIND: &str = REGISTRATION.kind;
    const TARGET: &str = "Workflows webhook";
    const DIALECT: Dialect = Dialect::Markdown;
    // No CAPS: the trigger answers 202 with no message id to thread under or edit.
    // Each request starts a flow run posting through the Teams connector
    // (throttled per connection); one a second per chat.
    const RATE: Option<Rate> = Some(Rate::per_second(1));
    const ANSWERS: &dyn kit::Answers = &SPEC;
    const TEMPLATE: Option<&'static str> = Some(DEFAULT_TEMPLATE);
    const CARDS: bool = true;

    fn check_card(&self, card: &Value) -> Result<(), String> {
        adaptive::check_card(card, &FLAVOR, MAX_ACTIONS)
    }

    fn request(&self, msg: &Message<'_>) -> Outbound {
        if let Some(card) = msg.card {
            let body = self.card_message(card, msg);
            return Outbound::Http(HttpRequest::post_json(&self.url, &body));
        }
        let link = post_link(msg.context);
        let envelope = self.card("", link.as_deref()).to_string().len();
        let text = fit(msg.text, MAX_BODY_BYTES.saturating_sub(envelope), json_len);
        let card = self.card(&text, link.as_deref());
        Outbound::Http(HttpRequest::post_json(&self.url, &card))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::testkit::{bind, body, http, messages, post_in, reason, resp};

    const URL: &str = "https://prod-01.westeurope.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=canarySig123";

    fn chat() -> TeamsChat {
        TeamsChat {
            button: None,
            url: Secret::new(URL),
            scrub: vec![Secret::new(URL), Secret::new("canarySig123")],
        }
    }

    /// The request for `text` against `ctx` (the link comes from it).
    fn send(text: &str, ctx: Value) -> (HttpRequest, Value) {
        let r = post_in(&chat(), text, &ctx);
        let v = body(&r);
        (r, v)
    }

    #[test]
    fn request_is_an_adaptive_card_with_a_button() {
        let ctx = json!({"post": {"url": "https://forum.example.org/t/x/1/2"}});
        let (r, v) = send("**\\[x\\]** \\<at\\>", ctx);
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
        assert_eq!(
            Destination::default_template(&chat()),
            Some(DEFAULT_TEMPLATE)
        );
    }

    #[test]
    fn a_huge_post_gives_a_card_within_every_limit() {
        let card = adaptive::huge_card();
        let text = "\"word\" ".repeat(10_000);
        let r = http(chat().request(&Message {
            chat: "test-chat",
            text: &text,
            context: &json!({}),
            card: Some(&card),
            custom: None,
            action: Action::default(),
            delivery: None,
        }));
        assert!(r.body.len() <= MAX_BODY_BYTES, "{}", r.body.len());
        let content = &body(&r)["attachments"][0]["content"];
        assert_eq!(chat().check_card(content), Ok(()));
        assert_eq!(content["actions"][0]["type"], "Action.OpenUrl");
        assert!(
            content["fallbackText"]
                .as_str()
                .unwrap_or_default()
                .ends_with('…')
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
            let (_, v) = send("t", ctx.clone());
            assert!(
                v["attachments"][0]["content"].get("actions").is_none(),
                "{ctx}"
            );
        }
        // The topic URL stands in when the event has no post.
        let ctx = json!({"post": null, "topic": {"url": "https://forum.example.org/t/x/1"}});
        let (_, v) = send("t", ctx);
        assert_eq!(
            v["attachments"][0]["content"]["actions"][0]["url"],
            "https://forum.example.org/t/x/1"
        );
    }

    #[test]
    fn long_text_is_cut_to_the_card_limit() {
        let ctx = json!({"post": {"url": "https://forum.example.org/t/x/1/2"}});
        // Quotes double in JSON: the limit counts the escaped size.
        let (r, v) = send(&"\"word\" ".repeat(10_000), ctx);
        assert!(r.body.len() <= MAX_BODY_BYTES, "{}", r.body.len());
        assert!(r.body.len() > MAX_BODY_BYTES - 100, "{}", r.body.len());
        let shown = v["attachments"][0]["content"]["body"][0]["text"]
            .as_str()
            .unwrap_or_default();
        assert!(
            shown.ends_with("\"word\"…"),
            "{}",
            &shown[shown.len() - 20..]
        );
    }

    #[test]
    fn fit_respects_the_budget() {
        for (text, budget, want) in [
            ("abc", 3, "abc"),
            ("alpha beta gamma", 14, "alpha beta…"),
            ("abcdefgh", 6, "abc…"),
            ("ééééé", 7, "éé…"),
            ("abc", 0, "…"),
        ] {
            assert_eq!(fit(text, budget, char::len_utf8), want);
        }
    }

    #[test]
    fn classifies_trigger_answers_without_the_signature() {
        let c: &dyn Destination = &chat();
        let c =
            |status, headers: &[(&str, &str)], body: &str| c.classify(&resp(status, headers, body));
        assert_eq!(c(202, &[], ""), Outcome::Sent { remote_id: None });
        assert_eq!(
            c(429, &[("Retry-After", "12")], ""),
            Outcome::Retry {
                reason: "teams: HTTP 429".into(),
                after: Some(Duration::from_secs(12))
            }
        );
        assert!(matches!(
            c(200, &[], "Microsoft Teams endpoint returned HTTP error 429"),
            Outcome::Retry { .. }
        ));
        assert!(matches!(c(502, &[], "bad gateway"), Outcome::Retry { .. }));
        let echo = r#"{"error":{"code":"DirectApiAuthorizationRequired","message":"The signature 'canarySig123' is not valid."}}"#;
        let o = c(401, &[], echo);
        assert!(matches!(o, Outcome::Permanent { .. }), "{o:?}");
        let r = reason(o);
        assert!(r.contains("DirectApiAuthorizationRequired"), "{r}");
        assert!(r.contains("copy it again"), "{r}");
        assert!(!r.contains("canarySig123"), "{r}");
        let o = c(
            404,
            &[],
            r#"{"error":{"code":"WorkflowNotFound","message":"The workflow 'abc' could not be found."}}"#,
        );
        assert!(matches!(o, Outcome::Permanent { .. }), "{o:?}");
        let r = reason(o);
        assert!(r.starts_with("teams: HTTP 404 WorkflowNotFound"), "{r}");
    }

    #[test]
    fn target_validation() {
        let env = [
            ("TEAMS_URL", URL),
            (
                "O365",
                "https://contoso.webhook.office.com/webhookb2/x/IncomingWebhook/y/z",
            ),
            ("NOSIG", "https://prod-01.logic.azure.com/workflows/abc"),
        ];
        let run = |t: &str| {
            let (d, p) = bind(&REGISTRATION, "{}", t, &env);
            (d, messages(&p))
        };
        let (d, p) = run("{ webhook_url = \"${TEAMS_URL}\" }");
        assert!(d.is_some() && p.is_empty(), "{p:?}");
        let (d, p) = run("{}");
        assert!(d.is_none() && p[0].contains("needs `webhook_url"), "{p:?}");
        let (d, p) = run("{ webhook_url = \"https://prod-01.logic.azure.com/x?sig=literal\" }");
        assert!(
            d.is_none() && p[0].contains("environment reference"),
            "{p:?}"
        );
        let (d, p) = run("{ webhook_url = \"${O365}\" }");
        assert!(
            d.is_some() && p[0].contains("Office 365 connector"),
            "{p:?}"
        );
        let (d, p) = run("{ webhook_url = \"${NOSIG}\" }");
        assert!(d.is_some() && p[0].contains("no `sig=`"), "{p:?}");
        let (_, p) = run("{ webhook_url = \"${UNSET}\" }");
        assert!(p.len() == 1 && p[0].contains("not set"), "{p:?}");
        // The button label comes from the settings, trimmed; blank is the default.
        let ctx = json!({"post": {"url": "https://forum.example.org/t/x/1/2"}});
        for (settings, want) in [
            ("{ button = \" Read \" }", "Read"),
            ("{ button = \" \" }", DEFAULT_BUTTON),
        ] {
            let (d, _) = bind(
                &REGISTRATION,
                settings,
                "{ webhook_url = \"${TEAMS_URL}\" }",
                &env,
            );
            let d = d.unwrap_or_else(|| panic!("{settings}"));
            let v = body(&post_in(d.as_ref(), "t", &ctx));
            assert_eq!(v["attachments"][0]["content"]["actions"][0]["title"], want);
        }
    }
}
