//! `webex`: the Webex Messages API, `POST {api_url}/v1/messages` with a bot
//! token, body `{"roomId", "markdown"}`. The answer is the created message,
//! whose `id` is the `remote_id`: thread replies (`parentId` = the
//! topic's first message), edits (`PUT /v1/messages/{id}` with `roomId`
//! and `markdown`) and deletes (`DELETE /v1/messages/{id}`) work from it.
//!
//! Markup: Webex Markdown. The renderer backslash-escapes formatting
//! characters and `<`, and puts U+200B after an `@` that could mention, so
//! Webex's `<@all>` and `<@personEmail:…>` mention tags cannot form from a
//! post (the tag is broken even if Webex read it before the Markdown).
//!
//! Errors: `{"message", "errors":[{"description"}], "trackingId"}`; 429 and
//! 423 carry `Retry-After`. See shared/providers.md §2.10 and
//! developer.webex.com/docs/api/v1/messages/create-a-message.

use std::ops::Range;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use serde_spanned::Spanned;

use super::http::{fit, id_url};
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
    kit::registration::<Webex>("webex", "Webex Messages API (bot token)");

const DEFAULT_API_URL: &str = "https://webexapis.com";

/// Longest `markdown` Webex accepts, in bytes (Webex docs; Alertmanager's
/// `notify/webex` cuts at the same size).
const MAX_MARKDOWN_BYTES: usize = 7439;

/// `[providers.NAME]` for `kind = "webex"`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Settings {
    /// Bot access token, as `${VAR}` (developer.webex.com > My Webex Apps > bot).
    #[schemars(with = "Option<String>")]
    pub token: Option<Spanned<String>>,
    /// API base URL (default `https://webexapis.com`).
    #[schemars(with = "Option<String>")]
    pub api_url: Option<Spanned<String>>,
}

/// Chat fields for a Webex chat.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Target {
    /// The room (space) id, `Y2lzY29zcGFyazovL…`; the bot must be a member of the room.
    #[schemars(with = "Option<String>")]
    pub room_id: Option<Spanned<String>>,
}

#[derive(Debug)]
struct Webex {
    token: Option<Secret>,
    api_url: String,
}

impl Provider for Webex {
    type Settings = Settings;
    type Target = Target;

    fn new(s: Settings, cx: &mut Ctx<'_>) -> Option<Self> {
        Some(Webex {
            token: cx.opt_secret("token", &s.token)?,
            api_url: cx.base_url("api_url", &s.api_url, DEFAULT_API_URL)?,
        })
    }

    fn bind_target(
        self: Arc<Self>,
        t: Target,
        chat: Option<Range<usize>>,
        cx: &mut Ctx<'_>,
    ) -> Option<Box<dyn Destination>> {
        let missing = "a webex chat needs `room_id` (the space's id)";
        let (room_id, span) = cx.required_str(&t.room_id, "room_id", chat, missing)?;
        let token = cx.require_token(
            &self.token,
            Some(span),
            "posting to a webex room needs a bot token: set `token = \"${WEBEX_BOT_TOKEN}\"` on a [providers.NAME] table with kind = \"webex\"",
        )?;
        Some(Box::new(WebexChat {
            instance: self,
            token,
            room_id,
        }))
    }
}

#[derive(Debug)]
struct WebexChat {
    instance: Arc<Webex>,
    token: Secret,
    room_id: String,
}

/// Errors: `{"message", "errors":[{"description"}], "trackingId"}`.
const SPEC: Spec = Spec {
    prefix: "webex",
    id_ptr: Some("/id"),
    error: |resp, body| {
        let message = kit::first_str(body, &["/message", "/errors/0/description"])
            .unwrap_or_else(|| resp.body_snippet());
        Some(match body["trackingId"].as_str() {
            Some(id) => format!("{message} (trackingId {})", kit::clip(id, 100)),
            None => message,
        })
    },
    sep: ": ",
    hint: |status| match status {
        401 => " (the bot token was rejected)",
        403 => " (the bot may not post in this room)",
        404 => " (unknown room_id, or the bot is not a member of the room)",
        _ => "",
    },
};

impl Destination for WebexChat {
    fn kind(&self) -> &'static str {
        REGISTRATION.kind
    }

    fn dialect(&self) -> Dialect {
        Dialect::Markdown
    }

    fn capabilities(&self) -> Capabilities {
        // The answer carries the message `id`: replies go under it with
        // `parentId`, edits are `PUT /v1/messages/{id}`, deletes `DELETE`.
        Capabilities::ALL
    }

    fn default_rate(&self) -> Option<Rate> {
        // Webex publishes no fixed numbers and answers 429 + Retry-After;
        // one a second per room stays well clear of it.
        Some(Rate::per_second(1))
    }

    fn target(&self) -> String {
        format!("room {}", self.room_id)
    }

    fn request(&self, msg: &Message<'_>) -> Outbound {
        let mut body = json!({
            "roomId": self.room_id,
            "markdown": fit(msg.text, MAX_MARKDOWN_BYTES, char::len_utf8),
        });
        let messages = format!("{}/v1/messages", self.instance.api_url);
        let req = match msg.action {
            Action::Post { thread } => {
                if let Some(root) = thread.and_then(|t| t.root) {
                    body["parentId"] = json!(root);
                }
                HttpRequest::post_json(&Secret::new(messages), &body)
            }
            // Webex wants the room again with the new text.
            Action::Edit { remote_id } => {
                HttpRequest::put_json(&id_url(&messages, remote_id), &body)
            }
            Action::Delete { remote_id } => HttpRequest::delete(id_url(&messages, remote_id)),
        };
        Outbound::Http(req.bearer(&self.token))
    }

    fn classify(&self, resp: &HttpResponse) -> Outcome {
        match resp.status {
            // 423 Locked: "temporarily unavailable", with Retry-After.
            423 => Outcome::Retry {
                reason: format!("webex: {}", SPEC.describe(resp, &json_of(resp))),
                after: resp.retry_after(),
            },
            404 if message_gone(&json_of(resp)) => Outcome::Sent { remote_id: None },
            _ => classify_json(resp, &SPEC),
        }
    }
}

fn json_of(resp: &HttpResponse) -> serde_json::Value {
    serde_json::from_slice(&resp.body).unwrap_or_default()
}

/// A 404 about a message (not a room): the message was deleted in the room
/// already, so a delete has nothing left to do and an edit never can.
/// Webex's generic "resource could not be found" stays an error: a post to
/// an unknown room answers alike.
fn message_gone(body: &serde_json::Value) -> bool {
    let message = body["message"].as_str().unwrap_or("").to_ascii_lowercase();
    message.contains("message") && !message.contains("room")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Instance;
    use std::collections::HashMap;
    use std::time::Duration;

    const TOKEN: &str = "canary-webex-token-789";
    const ROOM: &str =
        "Y2lzY29zcGFyazovL3VzL1JPT00vYmJjZWIxYWQtNDNmMS0zYjU4LTkxNDctZjE0YmIwYzRkMTU0";

    fn chat() -> WebexChat {
        WebexChat {
            instance: Arc::new(Webex {
                token: Some(Secret::new(TOKEN)),
                api_url: "http://127.0.0.1:9".into(),
            }),
            token: Secret::new(TOKEN),
            room_id: ROOM.into(),
        }
    }

    use crate::providers::http::tests::resp;

    #[test]
    fn request_shape() {
        let ctx = json!({});
        let Outbound::Http(r) = chat().request(&Message {
            chat: "c",
            text: "**\\<@\u{200B}all\\>**",
            context: &ctx,
            action: Default::default(),
            delivery: None,
        }) else {
            panic!("expected HTTP")
        };
        assert_eq!(r.method, "POST");
        assert_eq!(r.url.expose(), "http://127.0.0.1:9/v1/messages");
        assert!(
            r.headers
                .iter()
                .any(|(k, v)| k == "Authorization" && v.expose() == format!("Bearer {TOKEN}"))
        );
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            body,
            json!({"roomId": ROOM, "markdown": "**\\<@\u{200B}all\\>**"})
        );
    }

    #[test]
    fn thread_edit_and_delete_requests() {
        use super::super::Thread;
        const ID: &str = "Y2lzY29zcGFyazovL3VzL01FU1NBR0UvMQ";
        let ctx = json!({});
        let req = |action| {
            let Outbound::Http(r) = chat().request(&Message {
                chat: "c",
                text: "new",
                context: &ctx,
                action,
                delivery: None,
            }) else {
                panic!("expected HTTP")
            };
            let body: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
            assert!(
                r.headers
                    .iter()
                    .any(|(k, v)| k == "Authorization" && v.expose() == format!("Bearer {TOKEN}"))
            );
            (r, body)
        };
        let (r, body) = req(Action::Post {
            thread: Some(Thread { root: None }),
        });
        assert_eq!(r.url.expose(), "http://127.0.0.1:9/v1/messages");
        assert_eq!(body, json!({"roomId": ROOM, "markdown": "new"}));
        let (r, body) = req(Action::Post {
            thread: Some(Thread { root: Some(ID) }),
        });
        assert_eq!(
            (r.method, r.url.expose()),
            ("POST", "http://127.0.0.1:9/v1/messages")
        );
        assert_eq!(
            body,
            json!({"roomId": ROOM, "markdown": "new", "parentId": ID})
        );
        let (r, body) = req(Action::Edit { remote_id: ID });
        assert_eq!(r.method, "PUT");
        assert_eq!(
            r.url.expose(),
            format!("http://127.0.0.1:9/v1/messages/{ID}")
        );
        assert_eq!(body, json!({"roomId": ROOM, "markdown": "new"}));
        let (r, _) = req(Action::Delete { remote_id: ID });
        assert_eq!(r.method, "DELETE");
        assert_eq!(
            r.url.expose(),
            format!("http://127.0.0.1:9/v1/messages/{ID}")
        );
        assert!(r.body.is_empty());
    }

    #[test]
    fn classifies_edit_and_delete_answers() {
        let c = chat();
        assert_eq!(
            c.classify(&resp(204, &[], "")),
            Outcome::Sent { remote_id: None }
        );
        // The message was already deleted: done.
        assert_eq!(
            c.classify(&resp(
                404,
                &[],
                r#"{"message":"Unable to delete message.","errors":[{"description":"Unable to delete message."}],"trackingId":"ROUTER_4"}"#
            )),
            Outcome::Sent { remote_id: None }
        );
        // Not a message: still an error.
        assert!(matches!(
            c.classify(&resp(
                404,
                &[],
                r#"{"message":"The requested resource could not be found.","trackingId":"ROUTER_5"}"#
            )),
            Outcome::Permanent { .. }
        ));
    }

    #[test]
    fn markdown_is_cut_to_the_byte_limit() {
        let ctx = json!({});
        let text = "é word ".repeat(2000);
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
        let md = body["markdown"].as_str().unwrap();
        assert!(
            md.len() <= MAX_MARKDOWN_BYTES && md.len() > MAX_MARKDOWN_BYTES - 12,
            "{}",
            md.len()
        );
        assert!(md.ends_with('…'));
    }

    #[test]
    fn classifies_webex_answers_without_the_token() {
        let c = chat();
        assert_eq!(
            c.classify(&resp(
                200,
                &[],
                &format!(r#"{{"id":"Y2lzY29zcGFyazovL3VzL01FU1NBR0UvMQ","roomId":"{ROOM}"}}"#)
            )),
            Outcome::Sent {
                remote_id: Some("Y2lzY29zcGFyazovL3VzL01FU1NBR0UvMQ".into())
            }
        );
        assert_eq!(
            c.classify(&resp(
                429,
                &[("Retry-After", "17")],
                r#"{"message":"Too Many Requests","trackingId":"ROUTER_1"}"#
            )),
            Outcome::Retry {
                reason: "webex: HTTP 429: Too Many Requests (trackingId ROUTER_1)".into(),
                after: Some(Duration::from_secs(17))
            }
        );
        assert!(matches!(
            c.classify(&resp(423, &[("Retry-After", "4")], "")),
            Outcome::Retry { after: Some(d), .. } if d.as_secs() == 4
        ));
        assert!(matches!(
            c.classify(&resp(502, &[], "")),
            Outcome::Retry { .. }
        ));
        let unauthorized = format!(
            r#"{{"message":"The request requires a valid access token set in the Authorization request header. Got Bearer {TOKEN}","errors":[{{"description":"The request requires a valid access token set in the Authorization request header."}}],"trackingId":"ROUTER_2"}}"#
        );
        let Outcome::Permanent { reason } = c.classify(&resp(401, &[], &unauthorized)) else {
            panic!("401 should be permanent")
        };
        assert!(
            reason.contains("token was rejected") && reason.contains("ROUTER_2"),
            "{reason}"
        );
        let Outcome::Permanent { reason } = c.classify(&resp(
            404,
            &[],
            r#"{"message":"Could not find a room with provided ID.","errors":[{"description":"Could not find a room with provided ID."}],"trackingId":"ROUTER_3"}"#,
        )) else {
            panic!("404 should be permanent")
        };
        assert!(
            reason.contains("Could not find a room") && reason.contains("unknown room_id"),
            "{reason}"
        );
    }

    #[test]
    fn room_without_token_is_a_located_error() {
        let env = HashMap::<String, String>::new();
        let mut cx = Ctx::new(&env, crate::config::de::MissingEnv::Warn);
        let inst = Arc::new(Webex {
            token: None,
            api_url: DEFAULT_API_URL.into(),
        });
        let doc = toml_edit::Document::parse("t = { room_id = \"Y2lz\" }".to_string()).unwrap();
        assert!(inst.bind(&doc["t"], None, &mut cx).is_none());
        let p = &cx.problems()[0];
        assert!(p.message.contains("needs a bot token"), "{}", p.message);
        assert_eq!(p.span, Some(16..22));
    }
}
