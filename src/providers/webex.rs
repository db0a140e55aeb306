//! `webex`: the Webex Messages API, `POST {api_url}/v1/messages` with a bot
//! token (Bearer), body `{"roomId", "markdown"}` cut to 7 439 bytes. The answer's
//! `id` is the `remote_id`: replies add `parentId`, edits `PUT` and deletes
//! `DELETE /v1/messages/{id}`.
//!
//! Cards (the default style): one attachment of type
//! `application/vnd.microsoft.card.adaptive`, an Adaptive Card 1.3 (the
//! newest Webex renders) in the layout of [`super::adaptive`]: a header band
//! with the avatar (`Image`, style `person`, small), the author, what
//! happened and the linked category; the linked headline; the excerpt; the
//! tags as links; the forum's logo, title and the time (written out in UTC:
//! Webex documents no `{{DATE()}}` functions); a "View topic"/"View reply"
//! `Action.OpenUrl` button. The category's colour is approximated by the
//! header's container `style` (the nearest of good, attention, warning,
//! accent, emphasis; greys and no colour leave the default). `markdown`
//! stays: Webex requires text with a card, and shows it in notifications
//! and in clients that cannot draw the card. Webex cannot edit a message
//! with an attachment (its docs: 400 "not currently supported"), so a card
//! chat gets no edits or strike-throughs (`CARD_EDITS`: the loader defaults
//! `on_edit` to `ignore` and refuses `update`); should one reach Webex
//! anyway (a message sent before `style` changed), it fails with that hint. A chat's own card is an `AdaptiveCard` object (at
//! most version 1.3, 5 buttons, 16 KB).
//!
//! Dialect: Webex Markdown, strictest reading (no parser test): the renderer
//! escapes formatting characters and `<`, and puts U+200B after a mentioning
//! `@`, so `<@all>` breaks whether Webex reads tags before the Markdown or after.
//!
//! Answers: `{"message", "errors":[{"description"}], "trackingId"}`; 429 and 423
//! retry after `Retry-After`; a 404 about a message (deleted) is done. See
//! shared/providers.md §2.10.

use super::adaptive::{self, Flavor};
use super::kit::prelude::*;

pub const REGISTRATION: Registration =
    kit::registration::<Webex>("webex", "Webex Messages API (bot token)");

const DEFAULT_API_URL: &str = "https://webexapis.com";

/// Longest `markdown` Webex accepts, in bytes (Webex docs; Alertmanager's
/// `notify/webex` cuts at the same size).
const MAX_MARKDOWN_BYTES: usize = 7439;

/// Webex renders Adaptive Cards up to 1.3 ("Buttons and Cards" guide) and
/// documents no size for a card: 16 KB is kept, twice the text's limit.
const FLAVOR: Flavor = Flavor {
    version: "1.3",
    dates: false,
    max_bytes: 16_000,
};

/// "Cards may include up to five buttons" (the same guide).
const MAX_ACTIONS: usize = 5;

/// `[providers.NAME]` for `kind = "webex"`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Settings {
    /// Bot access token, as `${VAR}` (developer.webex.com > My Webex Apps > bot).
    pub token: Option<Located<String>>,
    /// API base URL (default `https://webexapis.com`).
    pub api_url: Option<Located<String>>,
}

/// Chat fields for a Webex chat.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Target {
    /// The room (space) id, `Y2lzY29zcGFyazovL…`; the bot must be a member of the room.
    pub room_id: Option<Located<String>>,
}

#[derive(Debug)]
struct Webex {
    token: Option<Secret>,
    api_url: String,
}

impl Provider for Webex {
    type Settings = Settings;
    type Target = Target;

    fn new(s: Settings, _: &Table, cx: &mut Ctx<'_>) -> Option<Self> {
        Some(Webex {
            token: cx.opt_secret("token", &s.token)?,
            api_url: cx.base_url("api_url", &s.api_url, DEFAULT_API_URL)?,
        })
    }

    fn bind_target(self: Arc<Self>, t: Target, chat: Span, cx: &mut Ctx<'_>) -> Bound {
        let missing = "a webex chat needs `room_id` (the space's id)";
        let (room_id, span) = cx.required_str(&t.room_id, "room_id", chat, missing)?;
        let no_token = "posting to a webex room needs a bot token: set `token = \"${WEBEX_BOT_TOKEN}\"` on a [providers.NAME] table with kind = \"webex\"";
        let token = cx.require_token(&self.token, Some(span), no_token)?;
        let messages = format!("{}/v1/messages", self.api_url);
        Some(Box::new(WebexChat {
            token,
            room_id,
            messages,
        }))
    }
}

#[derive(Debug)]
struct WebexChat {
    token: Secret,
    room_id: String,
    /// `{api_url}/v1/messages`.
    messages: String,
}

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

impl kit::Chat for WebexChat {
    const KIND: &str = REGISTRATION.kind;

    fn probe(&self) -> Probe {
        let api = self.messages.trim_end_matches("/messages");
        let get = |path: String| {
            HttpRequest::get(Secret::new(format!("{api}/{path}"))).bearer(&self.token)
        };
        let room = format!("rooms/{}", path_segment(&self.room_id));
        Probe::Http(vec![
            probe::step("people/me", get("people/me".into()), |r| {
                let ok = |b: &Value| {
                    Judgement::pass(format!("token works: {}", probe::text(b, "/displayName")))
                };
                probe::rest(r, ok, webex_error, "the bot token was rejected", "")
            }),
            probe::step("the room", get(room), |r| {
                let ok = |b: &Value| {
                    Judgement::pass(format!("sees room \"{}\"", probe::text(b, "/title")))
                };
                probe::rest(
                    r,
                    ok,
                    webex_error,
                    "the bot may not see this room: add it to the room",
                    "no such room for this bot: check room_id, and add the bot to the room",
                )
            }),
        ])
    }
    const TARGET: &str = "room";
    const DIALECT: Dialect = Dialect::Markdown;
    const CAPS: Capabilities = Capabilities::ALL;
    // No published numbers, 429 + Retry-After: one a second per room stays clear.
    const RATE: Option<Rate> = Some(Rate::per_second(1));
    const ANSWERS: &dyn kit::Answers = &SPEC;
    const CARDS: bool = true;
    // Webex: 400 "not currently supported" for an edit of a message with an attachment.
    const CARD_EDITS: bool = false;

    fn check_card(&self, card: &Value) -> Result<(), String> {
        adaptive::check_card(card, &FLAVOR, MAX_ACTIONS)
    }

    fn target(&self) -> String {
        format!("{} {}", Self::TARGET, self.room_id)
    }

    fn request(&self, msg: &Message<'_>) -> Outbound {
        // Beside a card, the text takes the card's look-alike `‹ ›` too
        // (`adaptive::inert`): one reading of `<` in the whole message.
        let text = match msg.card {
            Some(_) => std::borrow::Cow::Owned(adaptive::inert(msg.text)),
            None => std::borrow::Cow::Borrowed(msg.text),
        };
        let mut body = json!({
            "roomId": self.room_id,
            "markdown": fit(&text, MAX_MARKDOWN_BYTES, char::len_utf8),
        });
        let req = match msg.action {
            Action::Post { thread } => {
                if let Some(root) = thread.and_then(|t| t.root) {
                    body["parentId"] = json!(root);
                }
                if let Some(card) = msg.card {
                    let content = match msg.custom {
                        Some(custom) => custom.clone(),
                        None => adaptive::default_card(card, None, &FLAVOR),
                    };
                    let attachment = json!({
                        "contentType": "application/vnd.microsoft.card.adaptive",
                        "content": content,
                    });
                    body["attachments"] = json!([attachment]);
                }
                HttpRequest::post_json(&Secret::new(self.messages.clone()), &body)
            }
            Action::Edit { remote_id } => {
                HttpRequest::put_json(&id_url(&self.messages, remote_id), &body)
            }
            Action::Delete { remote_id } => HttpRequest::delete(id_url(&self.messages, remote_id)),
        };
        Outbound::Http(req.bearer(&self.token))
    }

    fn classify(&self, resp: &HttpResponse) -> Outcome {
        let body: Value = serde_json::from_slice(&resp.body).unwrap_or_default();
        // A 404 about a message (not a room: an unknown room answers alike)
        // means it was deleted already: nothing left to delete or edit.
        let message = body["message"].as_str().unwrap_or("").to_ascii_lowercase();
        match resp.status {
            // 423 Locked: "temporarily unavailable", with Retry-After.
            423 => Outcome::Retry {
                reason: format!("webex: {}", SPEC.describe(resp, &body)),
                after: resp.retry_after(),
            },
            404 if message.contains("message") && !message.contains("room") => {
                Outcome::Sent { remote_id: None }
            }
            // Editing a message with a card (or a file): Webex cannot.
            400 if message.contains("not currently supported")
                || message.contains("unsupported") =>
            {
                kit::hinted(
                    classify_json(resp, &SPEC),
                    " (Webex cannot edit a message with a card: set on_edit = \"ignore\" and on_delete = \"ignore\" or \"delete\", or style = \"text\")",
                )
            }
            _ => classify_json(resp, &SPEC),
        }
    }
}

/// Webex's `{"message", "trackingId"}` error.
fn webex_error(b: &Value) -> Option<String> {
    kit::first_str(b, &["/message", "/errors/0/description"])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::testkit::{bind, body, header, post, reason, reply, request, resp};

    const TOKEN: &str = "canary-webex-token-789";
    const ROOM: &str =
        "Y2lzY29zcGFyazovL3VzL1JPT00vYmJjZWIxYWQtNDNmMS0zYjU4LTkxNDctZjE0YmIwYzRkMTU0";
    const ID: &str = "Y2lzY29zcGFyazovL3VzL01FU1NBR0UvMQ";
    const MESSAGES: &str = "http://127.0.0.1:9/v1/messages";

    fn chat() -> WebexChat {
        WebexChat {
            token: Secret::new(TOKEN),
            room_id: ROOM.into(),
            messages: MESSAGES.into(),
        }
    }

    #[test]
    fn post_reply_edit_and_delete_requests() {
        let r = post(&chat(), "**\\<@\u{200B}all\\>**");
        assert_eq!((r.method, r.url.expose()), ("POST", MESSAGES));
        assert_eq!(
            body(&r),
            json!({"roomId": ROOM, "markdown": "**\\<@\u{200B}all\\>**"})
        );
        let message = format!("{MESSAGES}/{ID}");
        let plain = json!({"roomId": ROOM, "markdown": "new"});
        let threaded = json!({"roomId": ROOM, "markdown": "new", "parentId": ID});
        for (action, method, url, want) in [
            (reply(None), "POST", MESSAGES, Some(&plain)),
            (reply(Some(ID)), "POST", MESSAGES, Some(&threaded)),
            (
                Action::Edit { remote_id: ID },
                "PUT",
                &message,
                Some(&plain),
            ),
            (Action::Delete { remote_id: ID }, "DELETE", &message, None),
        ] {
            let r = request(&chat(), "new", action);
            assert_eq!((r.method, r.url.expose()), (method, url));
            let bearer = format!("Bearer {TOKEN}");
            assert_eq!(header(&r, "Authorization"), Some(bearer.as_str()));
            match want {
                Some(want) => assert_eq!(&body(&r), want),
                None => assert!(r.body.is_empty()),
            }
        }
    }

    #[test]
    fn a_huge_post_gives_a_card_within_every_limit() {
        let card = adaptive::huge_card();
        let text = "é word ".repeat(2000);
        let ctx = json!({});
        let r = crate::providers::testkit::http(chat().request(&Message {
            chat: "test-chat",
            text: &text,
            context: &ctx,
            card: Some(&card),
            custom: None,
            action: reply(Some(ID)),
            delivery: None,
        }));
        let b = body(&r);
        assert_eq!(b["parentId"], ID);
        assert!(b["markdown"].as_str().unwrap_or_default().len() <= MAX_MARKDOWN_BYTES);
        let att = &b["attachments"][0];
        assert_eq!(
            att["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        assert_eq!(chat().check_card(&att["content"]), Ok(()));
        assert_eq!(att["content"]["version"], "1.3");
    }

    #[test]
    fn editing_a_card_is_refused_with_a_hint() {
        let c: &dyn Destination = &chat();
        let refused = r#"{"message":"Editing messages with attachments is not currently supported","trackingId":"ROUTER_9"}"#;
        let r = reason(c.classify(&resp(400, &[], refused)));
        assert!(r.contains("on_edit = \"ignore\""), "{r}");
    }

    #[test]
    fn markdown_is_cut_to_the_byte_limit() {
        let b = body(&post(&chat(), &"é word ".repeat(2000)));
        let md = b["markdown"].as_str().unwrap_or_default();
        assert!(
            md.len() <= MAX_MARKDOWN_BYTES && md.len() > MAX_MARKDOWN_BYTES - 12,
            "{}",
            md.len()
        );
        assert!(md.ends_with('…'));
    }

    #[test]
    fn classifies_webex_answers_without_the_token() {
        let c: &dyn Destination = &chat();
        let sent = |id: Option<&str>| Outcome::Sent {
            remote_id: id.map(Into::into),
        };
        let created = format!(r#"{{"id":"{ID}","roomId":"{ROOM}"}}"#);
        assert_eq!(c.classify(&resp(200, &[], &created)), sent(Some(ID)));
        assert_eq!(c.classify(&resp(204, &[], "")), sent(None));
        // The message was already deleted: done.
        let gone = r#"{"message":"Unable to delete message.","errors":[{"description":"Unable to delete message."}],"trackingId":"ROUTER_4"}"#;
        assert_eq!(c.classify(&resp(404, &[], gone)), sent(None));
        // Not a message: still an error.
        let unknown =
            r#"{"message":"The requested resource could not be found.","trackingId":"ROUTER_5"}"#;
        assert!(matches!(
            c.classify(&resp(404, &[], unknown)),
            Outcome::Permanent { .. }
        ));
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
        let o = c.classify(&resp(401, &[], &unauthorized));
        assert!(matches!(o, Outcome::Permanent { .. }), "{o:?}");
        let r = reason(o);
        assert!(
            r.contains("token was rejected") && r.contains("ROUTER_2"),
            "{r}"
        );
        let no_room = r#"{"message":"Could not find a room with provided ID.","errors":[{"description":"Could not find a room with provided ID."}],"trackingId":"ROUTER_3"}"#;
        let o = c.classify(&resp(404, &[], no_room));
        assert!(matches!(o, Outcome::Permanent { .. }), "{o:?}");
        let r = reason(o);
        assert!(
            r.contains("Could not find a room") && r.contains("unknown room_id"),
            "{r}"
        );
    }

    #[test]
    fn room_without_token_is_a_located_error() {
        let (d, p) = bind(&REGISTRATION, "{}", "{ room_id = \"Y2lz\" }", &[]);
        assert!(d.is_none());
        assert!(
            p[0].message.contains("needs a bot token"),
            "{}",
            p[0].message
        );
        assert_eq!(p[0].span, Some(16..22));
    }
}
