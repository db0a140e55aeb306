//! `messenger`: Facebook Messenger's Send API, `POST
//! {api_url}/{api_version}/me/messages`, body `{"recipient":{"id"},
//! "messaging_type","message":{"text"}}`: one message to one person (PSID).
//! The Page token goes as `Authorization: Bearer`, not Meta's query
//! parameter, to stay out of URLs and logs (`appsecret_proof` unsupported).
//!
//! A poor fit for forum notifications: free-form messages (`UPDATE`, the
//! default) pass only within 24 hours of the person's last message to the
//! Page, else Meta answers 10/2018278 (permanent); `tag` opts into
//! `MESSAGE_TAG` for messages that really fit a Meta tag. No threads,
//! edits or deletes. Plain text without mentions: nothing to escape; at most
//! 2000 characters, counted in UTF-16 units (never fewer than Meta counts).
//! Graph errors `{"error":{"message","code","error_subcode"}}` come mostly
//! as HTTP 400: the code decides (shared/providers.md §2.15).

use super::kit::prelude::*;
use serde::Serialize;

use crate::render::text::truncate;

pub const REGISTRATION: Registration = kit::registration::<Messenger>(
    "messenger",
    "Facebook Messenger Send API, one person per chat (Page access token; 24-hour window)",
);

const DEFAULT_API_URL: &str = "https://graph.facebook.com";

/// Used when the settings name none; Graph serves calls to a version past
/// its end of life with the oldest available one.
const DEFAULT_API_VERSION: &str = "v21.0";

/// Send API text limit (`message.text`: "UTF-8, 2000 character limit").
const MAX_TEXT: usize = 2000;

/// "Too many calls, later": application (4), user (17), Page/business (32,
/// 80006) and per-call-type (613) limits.
const RATE_LIMIT_CODES: &[u64] = &[4, 17, 32, 613, 80006];

/// Codes Meta asks to retry: unknown (1), temporary (2), send failure (1200).
const TRANSIENT_CODES: &[u64] = &[1, 2, 1200];

/// A message tag, for sending outside the 24-hour window (Meta's allowed uses only; never promotional content).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[schemars(rename = "MessengerTag")]
pub enum Tag {
    /// A non-recurring change to the person's own application or account.
    AccountUpdate,
    /// A reminder or update for an event the person registered for.
    ConfirmedEventUpdate,
    /// An update on the person's recent purchase.
    PostPurchaseUpdate,
    /// A human agent answering the person's question, within 7 days of their message.
    HumanAgent,
}

/// How the person's phone announces a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[schemars(rename = "MessengerNotificationType")]
pub enum NotificationType {
    /// Sound or vibration (Messenger's default).
    Regular,
    /// A notification without sound or vibration.
    SilentPush,
    /// No notification.
    NoPush,
}

/// `[providers.NAME]` for `kind = "messenger"`: one Facebook Page.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(rename = "MessengerSettings")]
pub struct Settings {
    /// The Page access token (permission `pages_messaging`), as `${VAR}`. Sent as `Authorization: Bearer`. Required.
    pub page_token: Option<Located<String>>,
    /// Graph API base URL (default `https://graph.facebook.com`).
    pub api_url: Option<Located<String>>,
    /// Graph API version, e.g. `v21.0` (the default).
    pub api_version: Option<Located<String>>,
    /// Send as `MESSAGE_TAG` with this tag (`ACCOUNT_UPDATE`, `CONFIRMED_EVENT_UPDATE`, `POST_PURCHASE_UPDATE`, `HUMAN_AGENT`) so messages pass outside the 24-hour window. Only for messages that really fit the tag's allowed uses: forum notifications usually do not, and misuse can restrict the Page. Default: none (`messaging_type` `UPDATE`, inside the window only).
    pub tag: Option<Located<Tag>>,
    /// `REGULAR` (default), `SILENT_PUSH` or `NO_PUSH`.
    pub notification_type: Option<NotificationType>,
}

/// Chat fields for a Messenger chat: one person.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(rename = "MessengerTarget")]
pub struct Target {
    /// The person's page-scoped id (PSID), from a webhook event of the same Page (`sender.id`) after they messaged it. Digits, as a string or an integer.
    pub psid: Option<Located<PsidValue>>,
}

/// A PSID: digits, as a string or an integer.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "MessengerPsid")]
pub enum PsidValue {
    Id(u64),
    Text(String),
}

impl PsidValue {
    fn digits(&self) -> Option<String> {
        match self {
            PsidValue::Id(0) => None,
            PsidValue::Id(n) => Some(n.to_string()),
            PsidValue::Text(s) => {
                let s = s.trim();
                (!s.is_empty() && s.len() <= 32 && s.chars().all(|c| c.is_ascii_digit()))
                    .then(|| s.to_string())
            }
        }
    }
}

#[derive(Debug)]
struct Messenger {
    token: Option<Secret>,
    /// `{api_url}/{api_version}/me/messages`.
    endpoint: String,
    tag: Option<Tag>,
    notification_type: Option<NotificationType>,
}

impl Provider for Messenger {
    type Settings = Settings;
    type Target = Target;

    fn new(s: Settings, table: &Table, cx: &mut Ctx<'_>) -> Option<Self> {
        let token = cx.opt_secret("page_token", &s.page_token)?;
        let api_url = cx.base_url("api_url", &s.api_url, DEFAULT_API_URL)?;
        let version = match &s.api_version {
            Some(v) if !is_version(v.get_ref().trim()) => {
                let msg = "`api_version` must be a Graph API version like \"v21.0\"";
                return kit::reject(cx, Some(v.span()), msg);
            }
            Some(v) => v.get_ref().trim(),
            None => DEFAULT_API_VERSION,
        };
        let p = Messenger {
            token,
            endpoint: format!("{api_url}/{version}/me/messages"),
            tag: s.tag.map(Located::into_inner),
            notification_type: s.notification_type,
        };
        table.complete(cx, p.incomplete())?;
        Some(p)
    }

    fn bind_target(self: Arc<Self>, t: Target, chat: Span, cx: &mut Ctx<'_>) -> Bound {
        let missing =
            "a messenger chat needs `psid`, the page-scoped id of a person who messaged the Page";
        let raw = kit::required(cx, &t.psid, chat.clone(), missing)?;
        let Some(psid) = raw.get_ref().digits() else {
            let msg = "`psid` must be a page-scoped id (digits, the `sender.id` of a webhook event of the Page)";
            return kit::reject(cx, Some(raw.span()), msg);
        };
        let needs = kit::chat_needs("messenger", "`page_token = \"${MESSENGER_PAGE_TOKEN}\"`");
        let token = cx.require_token(&self.token, chat, &needs)?;
        Some(Box::new(MessengerChat {
            instance: self,
            token,
            psid,
        }))
    }
}

impl Messenger {
    /// The problem of a table that lacks a required key ([`kit::needs`]).
    fn incomplete(&self) -> Option<String> {
        let token = "`page_token` (e.g. \"${MESSENGER_PAGE_TOKEN}\")";
        kit::needs("messenger", "", &[(self.token.is_none(), token)])
    }
}

/// `v21.0`.
fn is_version(v: &str) -> bool {
    let part = |s: &str| (1..=3).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    v.strip_prefix('v')
        .and_then(|rest| rest.split_once('.'))
        .is_some_and(|(major, minor)| part(major) && part(minor))
}

#[derive(Debug)]
struct MessengerChat {
    instance: Arc<Messenger>,
    token: Secret,
    psid: String,
}

impl kit::Chat for MessengerChat {
    const KIND: &str = REGISTRATION.kind;
    const DIALECT: Dialect = Dialect::Plain;
    // No CAPS: the answer has a `message_id`, but the Send API cannot reply
    // in a thread, edit or delete a message.
    // One person's inbox: at most one message a second (a courtesy; the
    // Page-wide Graph limits are signalled by the error codes).
    const RATE: Option<Rate> = Some(Rate::per_second(1));

    fn target(&self) -> String {
        format!("psid {}", self.psid)
    }

    fn request(&self, msg: &Message<'_>) -> Outbound {
        let mut body = json!({
            "recipient": {"id": self.psid},
            "messaging_type": "UPDATE",
            "message": {"text": fit(msg.text, MAX_TEXT)},
        });
        if let Some(tag) = self.instance.tag {
            body["messaging_type"] = json!("MESSAGE_TAG");
            body["tag"] = json!(tag);
        }
        if let Some(n) = self.instance.notification_type {
            body["notification_type"] = json!(n);
        }
        let url = Secret::new(self.instance.endpoint.clone());
        Outbound::Http(HttpRequest::post_json(&url, &body).bearer(&self.token))
    }

    fn classify(&self, resp: &HttpResponse) -> Outcome {
        classify_answer(resp)
    }
}

/// `text` cut to at most `max` UTF-16 units (never fewer than characters),
/// at a word boundary, ending in `…`.
fn fit(text: &str, max: usize) -> String {
    let units = text.encode_utf16().count();
    if units <= max {
        return text.to_string();
    }
    // Characters outside the BMP take two units: leave room for all of them.
    let astral = units - text.chars().count();
    truncate(text, max.saturating_sub(astral))
}

fn classify_answer(resp: &HttpResponse) -> Outcome {
    let body = kit::json_body(resp);
    let status = resp.status;
    if (200..300).contains(&status) {
        // The message was accepted: never send it twice.
        return Outcome::Sent {
            remote_id: body["message_id"].as_str().map(str::to_string),
        };
    }
    let err = &body["error"];
    let Some(code) = err["code"].as_u64() else {
        // Not a Graph error (a proxy, an outage page): the status decides.
        return kit::prefixed("messenger", classify_status(resp));
    };
    let subcode = err["error_subcode"].as_u64();
    let message = err["message"].as_str().map(|m| truncate(m.trim(), 200));
    let sub = subcode.map(|s| format!("/{s}")).unwrap_or_default();
    let rate = RATE_LIMIT_CODES.contains(&code) || status == 429;
    let transient = TRANSIENT_CODES.contains(&code);
    let hint = match (rate, transient) {
        (true, _) => " (Graph API rate limit)",
        (_, true) => "",
        _ => hint(code, subcode),
    };
    let reason = format!(
        "messenger: HTTP {status} error {code}{sub}: {}{hint}",
        message.unwrap_or_default()
    );
    // A 5xx (or 408) is Meta's side whatever code it carries: retried (a
    // real token error comes back as a 4xx on the next try).
    kit::explained(resp, reason, rate || transient, || {
        resp.retry_after()
            .or_else(|| rate.then(|| usage_wait(resp)).flatten())
    })
}

fn hint(code: u64, subcode: Option<u64>) -> &'static str {
    match (code, subcode) {
        (190, _) => {
            " (the Page access token is invalid or expired: generate a new one and update page_token)"
        }
        (10, Some(2018278)) => {
            " (outside the 24-hour messaging window: the person must message the Page again before it can write to them; see `tag`)"
        }
        (10, Some(2018065)) => " (the app lacks the pages_messaging permission for this Page)",
        (10, _) => " (the Page may not message this person now)",
        (551, _) => {
            " (this person cannot receive messages from the Page: they blocked it or turned its messages off)"
        }
        (100, Some(2018001)) => {
            " (no person with this psid for this Page: PSIDs are page-scoped, take it from this Page's webhook)"
        }
        (100, _) => " (the Send API refused a parameter: check psid, tag and the template)",
        (200..=299, _) => " (the token lacks a permission: pages_messaging, granted for this Page)",
        (368, _) => " (the Page is temporarily blocked from messaging for policy violations)",
        _ => "",
    }
}

/// The wait Meta announces in `X-Business-Use-Case-Usage` (or `X-Page-Usage`,
/// `X-App-Usage`): the largest `estimated_time_to_regain_access` (minutes).
fn usage_wait(resp: &HttpResponse) -> Option<Duration> {
    let mut stack: Vec<Value> = ["X-Business-Use-Case-Usage", "X-Page-Usage", "X-App-Usage"]
        .into_iter()
        .filter_map(|h| serde_json::from_str(resp.header(h)?).ok())
        .collect();
    let mut minutes = 0;
    while let Some(node) = stack.pop() {
        match node {
            Value::Object(map) => {
                let m = map.get("estimated_time_to_regain_access");
                minutes = minutes.max(m.and_then(Value::as_u64).unwrap_or(0));
                stack.extend(map.into_iter().map(|(_, v)| v));
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    (minutes > 0).then(|| retry_hint::secs_u64(minutes.saturating_mul(60)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::testkit::{body, header, post, resp, settings_problems};
    use std::collections::HashMap;
    use toml_edit::{Document, Item};

    const TOKEN: &str = "EAAcanaryMessengerToken4242";

    fn chat(tag: Option<Tag>, notification_type: Option<NotificationType>) -> MessengerChat {
        MessengerChat {
            instance: Arc::new(Messenger {
                token: Some(Secret::new(TOKEN)),
                endpoint: format!("{DEFAULT_API_URL}/{DEFAULT_API_VERSION}/me/messages"),
                tag,
                notification_type,
            }),
            token: Secret::new(TOKEN),
            psid: "6543210987654321".into(),
        }
    }

    fn graph_error(status: u16, code: u64, subcode: Option<u64>, message: &str) -> HttpResponse {
        let mut err = json!({"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbC123xyz"});
        if let Some(s) = subcode {
            err["error_subcode"] = json!(s);
        }
        resp(status, &[], &json!({ "error": err }).to_string())
    }

    #[test]
    fn request_shape() {
        let r = post(&chat(None, None), "New topic <b>x</b> @everyone");
        assert_eq!(r.method, "POST");
        assert_eq!(
            r.url.expose(),
            "https://graph.facebook.com/v21.0/me/messages"
        );
        assert!(
            !r.url.expose().contains(TOKEN),
            "the token stays out of the URL"
        );
        assert_eq!(
            body(&r),
            json!({
                "recipient": {"id": "6543210987654321"},
                "messaging_type": "UPDATE",
                "message": {"text": "New topic <b>x</b> @everyone"},
            })
        );
        assert_eq!(
            header(&r, "Authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        let tagged = chat(
            Some(Tag::ConfirmedEventUpdate),
            Some(NotificationType::SilentPush),
        );
        let b = body(&post(&tagged, "x"));
        assert_eq!(b["messaging_type"], "MESSAGE_TAG");
        assert_eq!(b["tag"], "CONFIRMED_EVENT_UPDATE");
        assert_eq!(b["notification_type"], "SILENT_PUSH");
        assert_eq!(chat(None, None).target(), "psid 6543210987654321");
    }

    #[test]
    fn long_text_is_cut_to_2000_utf16_units() {
        let text = "word 😀 ".repeat(400);
        let cut = fit(&text, MAX_TEXT);
        assert!(cut.encode_utf16().count() <= MAX_TEXT);
        assert!(cut.ends_with('…'));
        assert!(cut.chars().count() > 1500, "{}", cut.chars().count());
        assert_eq!(fit("short", MAX_TEXT), "short");
    }

    #[test]
    fn classifies_graph_errors() {
        assert_eq!(
            classify_answer(&resp(
                200,
                &[],
                r#"{"recipient_id":"6543210987654321","message_id":"m_AG5Hz2Uq7tuwNEhXfYYKj8mJEM"}"#
            )),
            Outcome::Sent {
                remote_id: Some("m_AG5Hz2Uq7tuwNEhXfYYKj8mJEM".into())
            }
        );
        // Rate limits come as HTTP 400 with a code; the usage header says how long.
        let limited = resp(
            400,
            &[(
                "X-Business-Use-Case-Usage",
                r#"{"112233":[{"type":"messenger","call_count":100,"total_cputime":3,"total_time":4,"estimated_time_to_regain_access":7}]}"#,
            )],
            r#"{"error":{"message":"(#613) Calls to this api have exceeded the rate limit.","type":"OAuthException","code":613,"fbtrace_id":"x"}}"#,
        );
        assert_eq!(
            classify_answer(&limited),
            Outcome::Retry {
                reason: "messenger: HTTP 400 error 613: (#613) Calls to this api have exceeded the rate limit. (Graph API rate limit)".into(),
                after: Some(Duration::from_secs(420))
            }
        );
        for code in [4, 17, 32, 80006] {
            assert!(matches!(
                classify_answer(&graph_error(400, code, None, "limit")),
                Outcome::Retry { after: None, .. }
            ));
        }
        for (code, message) in [
            (
                2,
                "An unexpected error has occurred. Please retry your request later.",
            ),
            (
                1200,
                "Temporary send message failure. Please try again later",
            ),
        ] {
            assert!(matches!(
                classify_answer(&graph_error(500, code, None, message)),
                Outcome::Retry { .. }
            ));
        }
        assert!(matches!(
            classify_answer(&resp(502, &[], "<html>Bad Gateway</html>")),
            Outcome::Retry { .. }
        ));
        let cases = [
            (
                400,
                190,
                Some(463),
                "Error validating access token: Session has expired",
                "generate a new one",
            ),
            (
                400,
                10,
                Some(2018278),
                "(#10) This message is sent outside of allowed window.",
                "24-hour messaging window",
            ),
            (
                400,
                551,
                Some(1545041),
                "This person isn't available right now.",
                "blocked it",
            ),
            (
                400,
                100,
                Some(2018001),
                "(#100) No matching user found",
                "page-scoped",
            ),
            (
                403,
                200,
                None,
                "(#200) Requires pages_messaging permission to manage the object",
                "pages_messaging",
            ),
            (
                400,
                368,
                None,
                "(#368) The action attempted has been deemed abusive",
                "temporarily blocked",
            ),
            (400, 12345, None, "Something new", "Something new"),
        ];
        for (status, code, subcode, message, want) in cases {
            let out = classify_answer(&graph_error(status, code, subcode, message));
            let Outcome::Permanent { reason } = &out else {
                panic!("{want}: should be permanent: {out:?}")
            };
            assert!(reason.contains(want), "{reason} lacks {want}");
            assert!(!reason.contains(TOKEN));
        }
        assert!(matches!(
            classify_answer(&resp(404, &[], "Not Found")),
            Outcome::Permanent { reason } if reason == "messenger: HTTP 404: Not Found"
        ));
    }

    #[test]
    fn settings_and_chats_are_validated() {
        let env: HashMap<String, String> = [("TOK".to_string(), TOKEN.to_string())].into();
        for (text, want) in [
            ("api_version = \"v21.0\"", "needs `page_token`"),
            (
                "page_token = \"EAAliteral\"",
                "must be an environment reference",
            ),
            (
                "page_token = \"${TOK}\"\napi_version = \"21\"",
                "Graph API version",
            ),
            (
                "page_token = \"${TOK}\"\ntag = \"PROMOTION\"",
                "unknown value",
            ),
            (
                "page_token = \"${TOK}\"\napi_url = \"graph.facebook.com\"",
                "absolute http",
            ),
        ] {
            let (parsed, msgs) = settings_problems(&REGISTRATION, &[("TOK", TOKEN)], text);
            assert!(!parsed, "{text}");
            assert!(msgs.iter().any(|m| m.contains(want)), "{text}: {msgs:?}");
            assert!(
                msgs.iter()
                    .all(|m| !m.contains(TOKEN) && !m.contains("EAAliteral"))
            );
        }
        let mut cx = Ctx::new(&env, crate::config::de::MissingEnv::Error);
        let doc = Document::parse(
            "[p]\npage_token = \"${TOK}\"\napi_url = \"http://127.0.0.1:9/\"\napi_version = \"v23.0\"\n".to_string(),
        )
        .unwrap();
        let inst = (REGISTRATION.parse)(&doc["p"], &mut cx).unwrap();
        for (text, want) in [
            ("t = { psid = \"12ab\" }", "must be a page-scoped id"),
            ("t = { psid = 0 }", "must be a page-scoped id"),
            ("t = {}", "needs `psid`"),
        ] {
            let doc = Document::parse(text.to_string()).unwrap();
            assert!(
                inst.clone().bind(&doc["t"], Some(0..1), &mut cx).is_none(),
                "{text}"
            );
            assert!(
                cx.problems().last().unwrap().message.contains(want),
                "{text}"
            );
        }
        let doc = Document::parse("t = { psid = 6543210987654321 }".to_string()).unwrap();
        let r = post(&*inst.bind(&doc["t"], None, &mut cx).unwrap(), "x");
        assert_eq!(r.url.expose(), "http://127.0.0.1:9/v23.0/me/messages");
        assert!(r.body.contains("\"id\":\"6543210987654321\""));
        // A bare `provider = "messenger"` chat has no token.
        let mut cx = Ctx::new(&env, crate::config::de::MissingEnv::Warn);
        let bare = (REGISTRATION.parse)(&Item::Table(toml_edit::Table::new()), &mut cx).unwrap();
        assert!(bare.bind(&doc["t"], Some(0..1), &mut cx).is_none());
        assert!(cx.problems()[0].message.contains("needs `page_token"));
    }
}
