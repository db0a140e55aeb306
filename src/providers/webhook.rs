//! `webhook`: a generic JSON POST to any URL (a chat's `url`, or its
//! provider's), `Content-Type: application/json`, with extra headers for
//! auth (`Authorization = "Bearer ${HOOK_TOKEN}"`; a chat's override its
//! provider's, names matched without case). The body is the rendered
//! template as is: its dialect is JSON, so every value is escaped as JSON
//! string content (`render::tests::json_values_stay_valid_json` parses
//! hostile values back), and the default is a JSON document of the event's
//! main fields.
//!
//! No limits beyond a polite default rate; answers by status alone (2xx
//! sent, 408/429/5xx retried with `Retry-After`, other 4xx permanent).

use super::kit::prelude::*;
use std::collections::BTreeMap;

pub const REGISTRATION: Registration =
    kit::registration::<Webhook>("webhook", "generic JSON POST to a URL");

/// `[providers.NAME]` for `kind = "webhook"`: defaults for its chats.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Settings {
    /// Default URL for chats that set none. May contain `${VAR}`s.
    pub url: Option<Located<String>>,
    /// Extra headers sent with every request (e.g. `Authorization = "Bearer ${HOOK_TOKEN}"`).
    #[serde(default)]
    pub headers: BTreeMap<String, Located<String>>,
}

/// Chat fields for a webhook chat.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Target {
    /// Where to POST (webhook provider). May contain `${VAR}`s.
    pub url: Option<Located<String>>,
    /// Extra headers for this chat; they override the provider's.
    #[serde(default)]
    pub headers: BTreeMap<String, Located<String>>,
}

#[derive(Debug)]
struct Webhook {
    url: Option<Secret>,
    headers: BTreeMap<String, Secret>,
}

/// Header values may hold `${VAR}`s (a token): they are secrets.
fn read_headers(
    raw: &BTreeMap<String, Located<String>>,
    cx: &mut Ctx<'_>,
) -> BTreeMap<String, Secret> {
    raw.iter()
        .filter_map(|(k, v)| Some((k.clone(), cx.string(v)?)))
        .collect()
}

impl Provider for Webhook {
    type Settings = Settings;
    type Target = Target;

    fn new(s: Settings, _: &Table, cx: &mut Ctx<'_>) -> Option<Self> {
        let url = match &s.url {
            Some(u) => Some(cx.url("url", u, false)?),
            None => None,
        };
        let headers = read_headers(&s.headers, cx);
        Some(Webhook { url, headers })
    }

    fn bind_target(self: Arc<Self>, t: Target, chat: Span, cx: &mut Ctx<'_>) -> Bound {
        let url = match &t.url {
            Some(u) => Some(cx.url("url", u, false)?),
            None => self.url.clone(),
        };
        let missing = "a webhook chat needs `url` (or a `url` on its provider)";
        let url = cx.require_token(&url, chat, missing)?;
        let mut headers = self.headers.clone();
        headers.extend(read_headers(&t.headers, cx));
        Some(Box::new(WebhookChat { url, headers }))
    }
}

#[derive(Debug)]
struct WebhookChat {
    url: Secret,
    headers: BTreeMap<String, Secret>,
}

impl kit::Chat for WebhookChat {
    const KIND: &str = REGISTRATION.kind;
    const DIALECT: Dialect = Dialect::Json;
    // Unknown receivers: polite by default, `rate_limit` raises it.
    const RATE: Option<Rate> = Some(Rate::per_second(10));
    const READS_CONTEXT: bool = false;

    fn target(&self) -> String {
        // The URL may carry a token in its path: show only its origin.
        match url::Url::parse(self.url.expose()) {
            Ok(u) => format!("{}://{}/…", u.scheme(), u.host_str().unwrap_or("?")),
            Err(_) => "webhook".into(),
        }
    }

    fn request(&self, msg: &Message<'_>) -> Outbound {
        // The body is already JSON: sent as rendered, not re-serialized.
        let mut req = HttpRequest {
            method: "POST",
            url: self.url.clone(),
            headers: vec![("Content-Type".into(), Secret::new("application/json"))],
            body: msg.text.to_string(),
        };
        for (k, v) in &self.headers {
            req.headers
                .retain(|(name, _)| !name.eq_ignore_ascii_case(k));
            req.headers.push((k.clone(), v.clone()));
        }
        Outbound::Http(req)
    }
}
