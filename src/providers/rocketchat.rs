//! `rocketchat`: an incoming webhook (`POST {webhook_url}`; the URL
//! `https://HOST/hooks/ID/TOKEN` is the credential) or, for a `room_id`, the REST
//! API (`POST {server_url}/api/v1/chat.postMessage`, `chat.update`, `chat.delete`
//! with `X-User-Id` and `X-Auth-Token`), whose answers name the message
//! (`remote_id` = `ROOM_ID/MESSAGE_ID`). Body: JSON `{"text", "parseUrls": false}`.
//!
//! Dialect: [`Dialect::RocketChat`]: its parser honours a backslash only before a
//! few characters and never in a link label, so link, spoiler, KaTeX and emphasis
//! characters go as look-alikes or with U+200B (as does every mentioning `@`);
//! checked with `@rocket.chat/message-parser` in tests/parser_escaping.rs.
//! Limit: 5000 characters.
//!
//! Cards: one attachment (what the reference plugin sent), with no message
//! text above it: `color` the category's; `author_name` (name, `@username`
//! and what happened) with `author_icon` (the avatar) and `author_link`
//! (the profile); `title` (marks and topic title) linked by `title_link`;
//! the excerpt as `text`; `fields` for the category and the tags (short,
//! as links); `ts` (when the post was written, shown as a time).
//! Rocket.Chat draws no attachment footer or button that opens a link, so
//! the forum's name is left out and the title is the link. Escaping per
//! field, from Rocket.Chat's renderer: `text` and field values are Markdown
//! (`mrkdwn_in: ["text", "fields"]`, its message parser) and get the
//! Rocket.Chat dialect; `author_name` and `title` are shown as plain text,
//! where look-alikes would be a needless change, so they only get their
//! `@`, `<` and `](` broken by U+200B ([`super::mattermost::inert`]). Edits
//! change the text only: `chat.update` takes no attachments, so an edited
//! post's new card goes as the message text above the old attachment,
//! which stays (struck through, a deleted post's text shows above it). A
//! chat's own card is an object with `attachments` (and optionally `text`).
//!
//! Answers: `{"success":true}`, or `{"success":false,"error"}` with 400, 429 ("You
//! must wait N seconds"), 503 (disabled), or 200 from a script. shared/providers.md §2.7.

use super::kit::prelude::*;
use crate::render::text::truncate;

pub const REGISTRATION: Registration = kit::registration::<RocketChat>(
    "rocketchat",
    "Rocket.Chat REST API (user id + token) or incoming webhook",
);

/// Rocket.Chat's default `Message_MaxAllowedSize`, in characters.
const TEXT_MAX: usize = 5000;
/// Tags shown in the card's field.
const MAX_TAGS: usize = 10;

/// `[providers.NAME]` for `kind = "rocketchat"`: optional defaults for its chats.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(rename = "RocketchatSettings")]
pub struct Settings {
    /// Display name shown instead of the integration's user (`alias`).
    pub alias: Option<String>,
    /// Avatar image URL (`avatar`); takes precedence over `emoji`.
    pub avatar: Option<Located<String>>,
    /// Emoji used as avatar, e.g. `:speech_balloon:` (`emoji`).
    pub emoji: Option<String>,
    /// The Rocket.Chat server (e.g. `https://chat.example.org`), for chats that name a `room_id` (REST API).
    pub server_url: Option<Located<String>>,
    /// The bot's user id (`X-User-Id`), for the REST API.
    pub user_id: Option<Located<String>>,
    /// The bot's personal access token (`X-Auth-Token`), as `${VAR}`, for the REST API.
    pub auth_token: Option<Located<String>>,
}

/// Chat fields for a Rocket.Chat chat.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(rename = "RocketchatTarget")]
pub struct Target {
    /// Incoming webhook URL (`https://HOST/hooks/ID/TOKEN`, Administration → Integrations), as `${VAR}`: the URL is the credential. The integration decides the channel.
    pub webhook_url: Option<Located<String>>,
    /// Room id (REST API; needs `server_url`, `user_id` and `auth_token` on the provider): threads, edits and deletes work.
    pub room_id: Option<Located<String>>,
}

#[derive(Debug)]
struct RocketChat {
    alias: Option<String>,
    avatar: Option<String>,
    emoji: Option<String>,
    rest: Option<Arc<Rest>>,
}

/// The REST API credentials of a provider instance.
#[derive(Debug)]
struct Rest {
    server: String,
    user_id: Secret,
    token: Secret,
}

impl Provider for RocketChat {
    type Settings = Settings;
    type Target = Target;

    fn new(s: Settings, _: &Table, cx: &mut Ctx<'_>) -> Option<Self> {
        let avatar = kit::opt_url(cx, "avatar", &s.avatar)?;
        let non_empty =
            |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        let rest = match (&s.server_url, &s.user_id, &s.auth_token) {
            (None, None, None) => None,
            (Some(_), Some(user), Some(token)) => Some(Arc::new(Rest {
                server: cx.base_url("server_url", &s.server_url, "")?,
                user_id: cx.string(user)?,
                token: cx.secret("auth_token", token)?,
            })),
            _ => {
                let msg = "the Rocket.Chat REST API needs all of `server_url`, `user_id` and `auth_token = \"${ROCKETCHAT_TOKEN}\"`";
                return kit::reject(cx, None, msg);
            }
        };
        Some(RocketChat {
            alias: non_empty(s.alias),
            avatar,
            emoji: non_empty(s.emoji),
            rest,
        })
    }

    fn bind_target(self: Arc<Self>, t: Target, chat: Span, cx: &mut Ctx<'_>) -> Bound {
        let both = "set either `webhook_url` (incoming webhook) or `room_id` (REST API), not both";
        let neither = "a rocketchat chat needs `webhook_url = \"${ROCKETCHAT_HOOK}\"` (incoming webhook) or `room_id` (REST API)";
        let mode = match kit::one_of(cx, &t.room_id, &t.webhook_url, chat, both, neither)? {
            OneOf::First(room) => {
                let Some(rest) = self.rest.clone() else {
                    let msg = "`room_id` needs the REST API: set `server_url`, `user_id` and `auth_token` on a [providers.NAME] table with kind = \"rocketchat\"";
                    return kit::reject(cx, Some(room.span()), msg);
                };
                let room = room.get_ref().trim().to_string();
                if room.is_empty() {
                    return kit::reject(cx, None, "`room_id` is empty");
                }
                Mode::Rest { room, rest }
            }
            OneOf::Second(u) => Mode::Webhook {
                url: cx.url("webhook_url", u, true)?,
            },
        };
        Some(Box::new(RocketChatChat {
            instance: self,
            mode,
        }))
    }
}

#[derive(Debug)]
enum Mode {
    Webhook { url: Secret },
    Rest { room: String, rest: Arc<Rest> },
}

#[derive(Debug)]
struct RocketChatChat {
    instance: Arc<RocketChat>,
    mode: Mode,
}

impl kit::Chat for RocketChatChat {
    const KIND: &str = REGISTRATION.kind;
    const DIALECT: Dialect = Dialect::RocketChat;
    // The REST rate limiter's defaults, which also cover /hooks: 10 calls
    // per 60 s per route (API_Enable_Rate_Limiter_Limit_Calls_Default).
    const RATE: Option<Rate> = Some(Rate::per_minute(10));
    const READS_CONTEXT: bool = false;
    const CARDS: bool = true;

    fn check_card(&self, card: &Value) -> Result<(), String> {
        check_card(card)
    }

    fn capabilities(&self) -> Capabilities {
        // REST answers carry the message `_id`; the webhook just `success`.
        kit::capabilities_if(matches!(self.mode, Mode::Rest { .. }))
    }

    fn target(&self) -> String {
        match &self.mode {
            // The path holds the token: show only the origin.
            Mode::Webhook { url } => match url::Url::parse(url.expose()) {
                Ok(u) => format!("{}://{}/hooks/…", u.scheme(), u.host_str().unwrap_or("?")),
                Err(_) => "incoming webhook".into(),
            },
            Mode::Rest { room, .. } => format!("room {room}"),
        }
    }

    fn probe(&self) -> Probe {
        let Mode::Rest { room, rest } = &self.mode else {
            return Probe::webhook();
        };
        let get = |url: Secret| {
            HttpRequest::get(url)
                .header("X-User-Id", rest.user_id.clone())
                .header("X-Auth-Token", rest.token.clone())
        };
        let api = |method: &str| format!("{}/api/v1/{method}", rest.server);
        let info = probe::query(&api("rooms.info"), "roomId", room);
        Probe::Http(vec![
            probe::step("me", get(Secret::new(api("me"))), |r| {
                let ok = |b: &Value| {
                    Judgement::pass(format!("token works: @{}", probe::text(b, "/username")))
                };
                probe::rest(
                    r,
                    ok,
                    rc_error,
                    "the user id or token was rejected: create a new personal access token",
                    "no Rocket.Chat REST API there: check server_url",
                )
            }),
            probe::step("the room", get(info), |r| {
                let ok =
                    |b: &Value| Judgement::pass(format!("sees #{}", probe::text(b, "/room/name")));
                probe::rest(
                    r,
                    ok,
                    rc_error,
                    "the bot may not see this room: add it to the room",
                    "no such room: check room_id (Room info, or the room's API id)",
                )
            }),
        ])
    }

    fn request(&self, msg: &Message<'_>) -> Outbound {
        let text = truncate(msg.text, TEXT_MAX);
        let i = &self.instance;
        let mut post = json!({"text": text, "parseUrls": false});
        kit::put(&mut post, "alias", i.alias.as_ref());
        kit::put(&mut post, "avatar", i.avatar.as_ref());
        kit::put(&mut post, "emoji", i.emoji.as_ref());
        if !matches!(msg.action, Action::Edit { .. })
            && let Some((message, attachments)) = card_parts(msg)
            && let Some(o) = post.as_object_mut()
        {
            // With attachments, an empty text is no text.
            match message.is_empty() {
                true => drop(o.remove("text")),
                false => drop(o.insert("text".into(), json!(truncate(&message, TEXT_MAX)))),
            }
            o.insert("attachments".into(), attachments);
        }
        let (room, rest) = match &self.mode {
            Mode::Webhook { url } => return Outbound::Http(HttpRequest::post_json(url, &post)),
            Mode::Rest { room, rest } => (room, rest),
        };
        let (method, body) = match msg.action {
            Action::Post { thread } => {
                post["roomId"] = json!(room);
                let root = thread.and_then(|t| t.root);
                kit::put(&mut post, "tmid", root.map(|r| kit::split_id(r, room).1));
                ("chat.postMessage", post)
            }
            Action::Edit { remote_id } => {
                let (room, id) = kit::split_id(remote_id, room);
                let body = json!({"roomId": room, "msgId": id, "text": text});
                ("chat.update", body)
            }
            Action::Delete { remote_id } => {
                let (room, id) = kit::split_id(remote_id, room);
                ("chat.delete", json!({"roomId": room, "msgId": id}))
            }
        };
        let url = Secret::new(format!("{}/api/v1/{method}", rest.server));
        Outbound::Http(
            HttpRequest::post_json(&url, &body)
                .header("X-User-Id", rest.user_id.clone())
                .header("X-Auth-Token", rest.token.clone()),
        )
    }

    fn classify(&self, resp: &HttpResponse) -> Outcome {
        let body: serde_json::Value = serde_json::from_slice(&resp.body).unwrap_or_default();
        // Webhooks and REST say `error`; REST auth failures say `message`.
        let error = (body.get("error").or_else(|| body.get("message"))).map(|e| {
            kit::clip(
                &e.as_str().map_or_else(|| e.to_string(), str::to_string),
                200,
            )
        });
        let reason = |e: &str| {
            let hint = hint(e, resp.status);
            format!("rocketchat: HTTP {}: {e}{hint}", resp.status)
        };
        if let Some(e) = &error {
            if e.contains("Invalid integration id or token") {
                return Outcome::Permanent { reason: reason(e) };
            }
            if e.contains("No message found") || e.contains("error-message-not-found") {
                // Edited or deleted after someone removed it in Rocket.Chat: done.
                return Outcome::Sent { remote_id: None };
            }
        }
        if (200..300).contains(&resp.status) {
            let m = &body["message"];
            return match (body["success"].as_bool(), &error) {
                // REST: `message._id` in room `message.rid`; webhooks name none.
                (Some(true), _) => Outcome::Sent {
                    remote_id: (m["rid"].as_str().zip(m["_id"].as_str()))
                        .map(|(rid, id)| format!("{rid}/{id}")),
                },
                (Some(false), e) => Outcome::Permanent {
                    reason: reason(e.as_deref().unwrap_or("success: false")),
                },
                // No JSON: fine when empty (a proxy's 204); otherwise the URL
                // is not a Rocket.Chat hook (its web app answers HTML).
                (None, _) if resp.body.iter().all(u8::is_ascii_whitespace) => {
                    Outcome::Sent { remote_id: None }
                }
                (None, _) => Outcome::Permanent {
                    reason: format!(
                        "rocketchat: not a webhook answer (check `webhook_url`): HTTP {}: {}",
                        resp.status,
                        resp.body_snippet()
                    ),
                },
            };
        }
        match (classify_status(resp), &error) {
            (base, None) => base,
            (Outcome::Retry { after, .. }, Some(e)) => Outcome::Retry {
                reason: reason(e),
                after: after.or_else(|| wait_seconds(e)),
            },
            (_, Some(e)) => Outcome::Permanent { reason: reason(e) },
        }
    }
}

/// The card of `msg` (the chat's own, or the default), as the message text
/// above it and its attachments; `None` when the chat sends text.
fn card_parts(msg: &Message<'_>) -> Option<(String, Value)> {
    let card = msg.card?;
    let Some(custom) = msg.custom else {
        return Some((String::new(), json!([default_card(card)])));
    };
    // Only the message's look: where it goes stays the relay's.
    let message = custom["text"].as_str().unwrap_or_default().to_string();
    Some((message, custom["attachments"].clone()))
}

/// The default attachment: see the module doc. Every piece is cut as plain
/// text before escaping, so it stays far within the message limit.
fn default_card(card: &Card) -> Value {
    use super::mattermost::inert;
    const RC: Dialect = Dialect::RocketChat;
    let mut a = json!({
        "title": inert(&card::cut(&card.headline(), 250)),
        "title_link": card.url,
        "mrkdwn_in": ["text", "fields"],
    });
    kit::put(&mut a, "color", card.color.map(card::Color::hex));
    let mut byline = Vec::new();
    if let Some(au) = &card.author {
        byline.push(format!(
            "{} @{}",
            card::cut(&au.name, 80),
            card::cut(&au.username, 60)
        ));
        kit::put(&mut a, "author_link", Some(&au.url));
        kit::put(
            &mut a,
            "author_icon",
            Some(&au.avatar).filter(|u| !u.is_empty()),
        );
    }
    byline.push(card::cut(&card.label, 200));
    byline.retain(|b| !b.is_empty());
    // A notice about nobody in particular has no byline at all.
    if !byline.is_empty() {
        a["author_name"] = json!(inert(&byline.join(" · ")));
    }
    if !card.text.is_empty() {
        a["text"] = json!(escape(RC, &card::cut(&card.text, 1000)));
    }
    let mut fields = Vec::new();
    if let Some(c) = &card.category {
        let value = link(RC, &c.url, &card::cut(&c.text, 100));
        fields.push(json!({"title": "Category", "value": value, "short": true}));
    }
    if !card.tags.is_empty() {
        let tags: Vec<String> = (card.tags.iter().take(MAX_TAGS))
            .map(|t| link(RC, &t.url, &card::cut(&t.text, 60)))
            .collect();
        fields.push(json!({"title": "Tags", "value": tags.join(", "), "short": true}));
    }
    if !fields.is_empty() {
        a["fields"] = json!(fields);
    }
    kit::put(&mut a, "ts", card.timestamp.as_ref());
    a
}

/// A chat's own card as Rocket.Chat checks attachments
/// (`validateAttachment`: strings where it takes strings, fields with a
/// value), within the message size limit.
fn check_card(card: &Value) -> Result<(), String> {
    let obj = kit::card_object(
        card,
        "a rocketchat card",
        "`attachments`",
        &["attachments", "text"],
    )?;
    if let Some(text) = obj.get("text") {
        let n = text
            .as_str()
            .ok_or("/text must be a string")?
            .chars()
            .count();
        kit::ensure_len("/text", Some(n), TEXT_MAX)?;
    }
    let atts = obj
        .get("attachments")
        .ok_or("a rocketchat card needs `attachments`")?;
    let atts = atts.as_array().ok_or("/attachments must be an array")?;
    const STRINGS: &[&str] = &[
        "color",
        "text",
        "author_name",
        "author_link",
        "author_icon",
        "title",
        "title_link",
        "image_url",
        "thumb_url",
        "message_link",
    ];
    for (i, a) in atts.iter().enumerate() {
        let at = format!("/attachments/{i}");
        let a = a
            .as_object()
            .ok_or_else(|| format!("{at} must be an object"))?;
        if let Some(key) = STRINGS
            .iter()
            .find(|k| a.get(**k).is_some_and(|v| !v.is_string()))
        {
            return Err(format!("{at}/{key} must be a string"));
        }
        let text = a
            .get("text")
            .and_then(Value::as_str)
            .map(|t| t.chars().count());
        kit::ensure_len(&format!("{at}/text"), text, TEXT_MAX)?;
        if let Some(fields) = a.get("fields") {
            let fields =
                (fields.as_array()).ok_or_else(|| format!("{at}/fields must be an array"))?;
            for (j, f) in fields.iter().enumerate() {
                let v = &f["value"];
                if !(v.is_string() || v.is_number() || v.is_boolean()) {
                    return Err(format!("{at}/fields/{j} needs a `value`"));
                }
                let n = v.as_str().map(|t| t.chars().count());
                kit::ensure_len(&format!("{at}/fields/{j}/value"), n, TEXT_MAX)?;
            }
        }
    }
    let size = json!(atts).to_string().chars().count();
    // Far above any card; what Rocket.Chat stores in one message document.
    kit::ensure_len("/attachments (as JSON)", Some(size), 100 * TEXT_MAX)
}

/// The delay in the rate limiter's text: "… You must wait 42 seconds before
/// trying this endpoint again." (it sends no `Retry-After`).
fn wait_seconds(error: &str) -> Option<Duration> {
    let rest = &error[error.find("must wait ")? + "must wait ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let secs: u64 = digits.parse().ok()?;
    rest[digits.len()..]
        .trim_start()
        .starts_with("second")
        .then(|| retry_hint::secs_u64(secs))
}

fn hint(error: &str, status: u16) -> &'static str {
    if error.contains("Invalid integration id or token") {
        " (check `webhook_url`)"
    } else if error.contains("invalid-channel") {
        " (the integration's channel does not exist or its user cannot post there)"
    } else if status == 503 {
        " (the integration may be disabled)"
    } else {
        ""
    }
}

/// A REST error in words (`error`, or `message` on auth failures).
fn rc_error(b: &Value) -> Option<String> {
    kit::first_str(b, &["/error", "/message"])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::testkit::{bind, body, header, post, reply, request, resp};

    const HOOK: &str = "http://127.0.0.1:9/hooks/abc/hooksecret42";

    fn chat(alias: Option<&str>) -> RocketChatChat {
        RocketChatChat {
            instance: Arc::new(RocketChat {
                alias: alias.map(str::to_string),
                avatar: None,
                emoji: Some(":speech_balloon:".into()),
                rest: None,
            }),
            mode: Mode::Webhook {
                url: Secret::new(HOOK),
            },
        }
    }

    fn rest_chat() -> RocketChatChat {
        let rest = Arc::new(Rest {
            server: "http://127.0.0.1:9".into(),
            user_id: Secret::new("botuser1"),
            token: Secret::new("canary-rc-token"),
        });
        RocketChatChat {
            instance: Arc::new(RocketChat {
                alias: None,
                avatar: None,
                emoji: None,
                rest: Some(rest.clone()),
            }),
            mode: Mode::Rest {
                room: "GENERAL".into(),
                rest,
            },
        }
    }

    fn act(action: Action<'_>) -> (String, serde_json::Value) {
        let r = request(&rest_chat(), "new text", action);
        assert_eq!(header(&r, "X-Auth-Token"), Some("canary-rc-token"));
        assert_eq!(header(&r, "X-User-Id"), Some("botuser1"));
        (r.url.expose().to_string(), body(&r))
    }

    #[test]
    fn rest_posts_threads_edits_and_deletes() {
        let (url, b) = act(Action::Post { thread: None });
        assert_eq!(url, "http://127.0.0.1:9/api/v1/chat.postMessage");
        assert_eq!(
            b,
            json!({"roomId": "GENERAL", "text": "new text", "parseUrls": false})
        );
        let root = "GENERAL/mRoot1";
        assert_eq!(act(reply(Some(root))).1["tmid"], "mRoot1");
        let (url, b) = act(Action::Edit { remote_id: root });
        assert_eq!(url, "http://127.0.0.1:9/api/v1/chat.update");
        assert_eq!(
            b,
            json!({"roomId": "GENERAL", "msgId": "mRoot1", "text": "new text"})
        );
        let (url, b) = act(Action::Delete { remote_id: root });
        assert_eq!(url, "http://127.0.0.1:9/api/v1/chat.delete");
        assert_eq!(b, json!({"roomId": "GENERAL", "msgId": "mRoot1"}));

        let c = rest_chat();
        assert!(c.capabilities().thread && c.capabilities().edit);
        assert!(!chat(None).capabilities().thread);
        let sent = r#"{"ts":1,"channel":"general","message":{"_id":"m9","rid":"GENERAL","msg":"x"},"success":true}"#;
        assert_eq!(
            c.classify(&resp(200, &[], sent)),
            Outcome::Sent {
                remote_id: Some("GENERAL/m9".into())
            }
        );
        let gone = r#"{"success":false,"error":"No message found with the id of \"m9\".","errorType":"error-message-not-found"}"#;
        assert_eq!(
            c.classify(&resp(400, &[], gone)),
            Outcome::Sent { remote_id: None }
        );
        let login = r#"{"status":"error","message":"You must be logged in to do this."}"#;
        let Outcome::Permanent { reason } = c.classify(&resp(401, &[], login)) else {
            panic!("401 is permanent")
        };
        assert!(!reason.contains("canary-rc-token"));
    }

    #[test]
    fn request_shape_and_limit() {
        let r = post(&chat(Some("Forum")), "@\u{200B}all \\*x\\*");
        assert_eq!(r.method, "POST");
        assert_eq!(r.url.expose(), HOOK);
        assert_eq!(
            body(&r),
            json!({"text": "@\u{200B}all \\*x\\*", "parseUrls": false, "alias": "Forum", "emoji": ":speech_balloon:"})
        );
        let b = body(&post(&chat(None), &"word ".repeat(2000)));
        let text = b["text"].as_str().unwrap_or_default();
        assert!(text.chars().count() <= TEXT_MAX && text.ends_with('…'));
        assert!(b.get("alias").is_none());
        assert_eq!(chat(None).target(), "http://127.0.0.1/hooks/…");
    }

    #[test]
    fn classifies_rocketchat_answers_without_the_url() {
        let c = |status, headers: &[(&str, &str)], body: &str| {
            chat(None).classify(&resp(status, headers, body))
        };
        let sent = Outcome::Sent { remote_id: None };
        assert_eq!(c(200, &[], r#"{"success":true}"#), sent);
        assert_eq!(c(204, &[], ""), sent);
        let limited = r#"{"success":false,"error":"Error, too many requests. Please slow down. You must wait 42 seconds before trying this endpoint again. [error-too-many-requests]"}"#;
        for (status, headers, body, retried, want) in [
            (
                200,
                &[][..],
                r#"{"success":false,"error":"error-running-script"}"#,
                false,
                "error-running-script",
            ),
            (
                200,
                &[],
                "<!DOCTYPE html><html>",
                false,
                "check `webhook_url`",
            ),
            (
                400,
                &[],
                r#"{"success":false,"error":"invalid-channel"}"#,
                false,
                "invalid-channel",
            ),
            (
                503,
                &[],
                r#"{"success":false,"error":"Service Unavailable"}"#,
                true,
                "disabled",
            ),
            (502, &[], "bad gateway", true, "HTTP 502"),
            (404, &[], "Not Found", false, "HTTP 404"),
            (429, &[], limited, true, "must wait 42"),
            (429, &[("Retry-After", "5")], limited, true, "must wait 42"),
        ] {
            let out = c(status, headers, body);
            let (Outcome::Retry { reason, .. } | Outcome::Permanent { reason }) = &out else {
                panic!("{body} was sent")
            };
            assert_eq!(matches!(out, Outcome::Retry { .. }), retried, "{out:?}");
            assert!(reason.contains(want), "{reason} lacks {want}");
        }
        let after = |headers| match c(429, headers, limited) {
            Outcome::Retry { after, .. } => after.map(|d| d.as_secs()),
            o => panic!("{o:?}"),
        };
        assert_eq!(
            (after(&[]), after(&[("Retry-After", "5")])),
            (Some(42), Some(5))
        );
        // A wrong token, whatever status the version answers it with.
        for status in [401, 403, 500] {
            let o = c(
                status,
                &[],
                r#"{"success":false,"error":"Invalid integration id or token provided."}"#,
            );
            assert!(
                matches!(&o, Outcome::Permanent { reason } if !reason.contains("hooksecret42")),
                "{o:?}"
            );
        }
    }

    #[test]
    fn webhook_url_is_a_secret_url() {
        let check = |target: &str| {
            let settings = "{ alias = \"Forum\", avatar = \"https://f.example/a.png\" }";
            let (d, p) = bind(&REGISTRATION, settings, target, &[("HOOK", HOOK)]);
            let msgs: Vec<String> = p.into_iter().map(|p| p.message).collect();
            (d.is_some(), msgs)
        };
        assert_eq!(check(r#"{ webhook_url = "${HOOK}" }"#), (true, vec![]));
        let (ok, p) = check(r#"{ webhook_url = "https://h/hooks/a/b" }"#);
        assert!(!ok && p[0].contains("environment reference"), "{p:?}");
        let (ok, p) = check("{}");
        assert!(!ok && p[0].contains("needs `webhook_url"), "{p:?}");
    }

    use crate::providers::card_tests;

    #[test]
    fn the_default_card_is_one_attachment_without_text() {
        let card = card_tests::sample();
        let want = json!([{
            "color": "#F1592A",
            "author_name": "Bob Ramirez @\u{200B}bob · New topic",
            "author_link": "https://forum.example.org/u/bob",
            "author_icon": "https://forum.example.org/user_avatar/forum.example.org/bob/96/12_2.png",
            "title": "How do I share state between async tasks?",
            "title_link": "https://forum.example.org/t/how-do-i-share-state-between-async-tasks/101/1",
            "text": "I have a shared map & several \u{FF1C}tasks\u{FF1E}.",
            "mrkdwn_in": ["text", "fields"],
            "fields": [
                {"title": "Category", "value": "[Rust](https://forum.example.org/c/support/rust/7)", "short": true},
                {"title": "Tags", "value": "[async](https://forum.example.org/tag/async)", "short": true},
            ],
            "ts": "2026-03-10T09:00:12.512Z",
        }]);
        let rest = card_tests::request(
            &rest_chat(),
            "t",
            Some(&card),
            None,
            reply(Some("GENERAL/m1")),
        );
        assert_eq!(
            body(&rest),
            json!({"roomId": "GENERAL", "tmid": "m1", "parseUrls": false, "attachments": want})
        );
        let hook = card_tests::request(
            &chat(Some("Forum")),
            "t",
            Some(&card),
            None,
            Action::default(),
        );
        assert_eq!(
            body(&hook),
            json!({"parseUrls": false, "alias": "Forum", "emoji": ":speech_balloon:", "attachments": want})
        );
        // `chat.update` takes no attachments: an edit changes the text.
        let edit = card_tests::request(
            &rest_chat(),
            "new",
            Some(&card),
            None,
            Action::Edit {
                remote_id: "GENERAL/m1",
            },
        );
        assert_eq!(
            body(&edit),
            json!({"roomId": "GENERAL", "msgId": "m1", "text": "new"})
        );
    }

    #[test]
    fn a_chats_own_card_replaces_the_attachments_and_nothing_else() {
        let custom = json!({"text": "hi", "attachments": [{"text": "mine"}]});
        check_card(&custom).unwrap();
        let card = card_tests::sample();
        let r = card_tests::request(
            &rest_chat(),
            "t",
            Some(&card),
            Some(&custom),
            Action::default(),
        );
        assert_eq!(
            body(&r),
            json!({"roomId": "GENERAL", "text": "hi", "parseUrls": false, "attachments": [{"text": "mine"}]})
        );
        assert!(check_card(&json!({"attachments": [], "roomId": "x"})).is_err());
    }

    #[test]
    fn a_huge_post_still_gives_a_card_within_every_limit() {
        let card = card_tests::huge();
        let r = card_tests::request(&rest_chat(), "t", Some(&card), None, Action::default());
        let b = body(&r);
        check_card(&json!({"attachments": b["attachments"]})).unwrap();
        let a = &b["attachments"][0];
        assert!(a["title"].as_str().unwrap().chars().count() <= 600);
        let tags = a["fields"][1]["value"].as_str().unwrap();
        assert!(tags.contains("tag/t9)") && !tags.contains("tag/t10)"));
        assert!(r.body.chars().count() < TEXT_MAX * 3, "{}", r.body.len());
    }

    #[test]
    fn check_card_names_what_is_wrong() {
        let long = "x".repeat(TEXT_MAX + 1);
        let err = check_card(&json!({"attachments": [{}, {"text": long}]})).unwrap_err();
        assert_eq!(err, "/attachments/1/text has 5001 characters; at most 5000");
        let err = check_card(&json!({"attachments": [{"title": 3}]})).unwrap_err();
        assert_eq!(err, "/attachments/0/title must be a string");
        let err = check_card(&json!({"attachments": [{"fields": [{"title": "t"}]}]})).unwrap_err();
        assert_eq!(err, "/attachments/0/fields/0 needs a `value`");
        assert!(check_card(&json!({"text": "x"})).is_err());
    }
}
