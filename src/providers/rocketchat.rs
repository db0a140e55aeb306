//! `rocketchat`: a Rocket.Chat incoming webhook (`POST {webhook_url}`, the
//! URL `https://HOST/hooks/ID/TOKEN` is the credential) with `{"text": …}`,
//! or the REST API (`POST {server_url}/api/v1/chat.postMessage` with the
//! `X-User-Id` and `X-Auth-Token` headers of a bot or personal access token)
//! for a `room_id`: REST answers name the message, so threads (`tmid`),
//! edits (`chat.update`) and deletes (`chat.delete`) work there.
//!
//! Dialect: Rocket.Chat's own ([`Dialect::RocketChat`]): its message parser
//! (`@rocket.chat/message-parser`) honours a backslash only before a few
//! characters and never inside a link label, so Markdown's `\[text\](url)`
//! would be a live link there (and take over the relay's linked title).
//! Link, spoiler, KaTeX and emphasis characters from posts are sent as
//! look-alikes (`［ ］ ＜ ＞ ∗ ＿ ～ ｀`) or with U+200B after them (`| # \`), and
//! every `@` that could mention (`@all`, `@here`, `@user`) gets U+200B,
//! which the parser does not accept in a name. Checked with the parser
//! itself in tests/parser_escaping.rs. Webhooks have no switch for mentions. Link previews are off
//! (`parseUrls: false`), like Slack's unfurling. Texts longer than the
//! default `Message_MaxAllowedSize` (5000) are cut at a word boundary.
//!
//! Answers: `{"success":true}`; failures `{"success":false,"error":…}`,
//! usually with 400 (`invalid-channel`, script errors), 429 from the REST
//! rate limiter ("You must wait N seconds"), 503 when the integration is
//! disabled; a script's own response can come back as 200 with
//! `success:false`. See shared/providers.md §2.7 and RocketChat/Rocket.Chat
//! `apps/meteor/app/integrations/server/api/api.ts`,
//! `app/lib/server/functions/processWebhookMessage.ts`.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use serde_spanned::Spanned;

use super::http::retry_hint;
use super::kit::{self, Provider};
use super::{
    Action, Capabilities, Destination, HttpRequest, HttpResponse, Message, Outbound, Outcome,
    Registration, http::classify_status,
};
use crate::config::Rate;
use crate::config::de::Ctx;
use crate::config::env::Secret;
use crate::render::Dialect;
use crate::render::text::truncate;

pub const REGISTRATION: Registration = kit::registration::<RocketChat>(
    "rocketchat",
    "Rocket.Chat REST API (user id + token) or incoming webhook",
);

/// Rocket.Chat's default `Message_MaxAllowedSize`, in characters.
const TEXT_MAX: usize = 5000;

/// `[providers.NAME]` for `kind = "rocketchat"`: optional defaults for its chats.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(rename = "RocketchatSettings")]
pub struct Settings {
    /// Display name shown instead of the integration's user (`alias`).
    pub alias: Option<String>,
    /// Avatar image URL (`avatar`); takes precedence over `emoji`.
    #[schemars(with = "Option<String>")]
    pub avatar: Option<Spanned<String>>,
    /// Emoji used as avatar, e.g. `:speech_balloon:` (`emoji`).
    pub emoji: Option<String>,
    /// The Rocket.Chat server (e.g. `https://chat.example.org`), for chats that name a `room_id` (REST API).
    #[schemars(with = "Option<String>")]
    pub server_url: Option<Spanned<String>>,
    /// The bot's user id (`X-User-Id`), for the REST API.
    #[schemars(with = "Option<String>")]
    pub user_id: Option<Spanned<String>>,
    /// The bot's personal access token (`X-Auth-Token`), as `${VAR}`, for the REST API.
    #[schemars(with = "Option<String>")]
    pub auth_token: Option<Spanned<String>>,
}

/// Chat fields for a Rocket.Chat chat.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(rename = "RocketchatTarget")]
pub struct Target {
    /// Incoming webhook URL (`https://HOST/hooks/ID/TOKEN`, Administration → Integrations), as `${VAR}`: the URL is the credential. The integration decides the channel.
    #[schemars(with = "Option<String>")]
    pub webhook_url: Option<Spanned<String>>,
    /// Room id (REST API; needs `server_url`, `user_id` and `auth_token` on the provider): threads, edits and deletes work.
    #[schemars(with = "Option<String>")]
    pub room_id: Option<Spanned<String>>,
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

    fn new(s: Settings, cx: &mut Ctx<'_>) -> Option<Self> {
        let avatar = match &s.avatar {
            Some(a) => Some(cx.url("avatar", a, false)?.expose().to_string()),
            None => None,
        };
        let non_empty =
            |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        let rest = match (&s.server_url, &s.user_id, &s.auth_token) {
            (None, None, None) => None,
            (Some(server), Some(user), Some(token)) => Some(Arc::new(Rest {
                server: (cx.url("server_url", server, false)?.expose())
                    .trim_end_matches('/')
                    .to_string(),
                user_id: cx.string(user)?,
                token: cx.secret("auth_token", token)?,
            })),
            _ => {
                cx.error(
                    None,
                    "the Rocket.Chat REST API needs all of `server_url`, `user_id` and `auth_token = \"${ROCKETCHAT_TOKEN}\"`",
                );
                return None;
            }
        };
        Some(RocketChat {
            alias: non_empty(s.alias),
            avatar,
            emoji: non_empty(s.emoji),
            rest,
        })
    }

    fn bind_target(
        self: Arc<Self>,
        t: Target,
        chat: Option<Range<usize>>,
        cx: &mut Ctx<'_>,
    ) -> Option<Box<dyn Destination>> {
        let mode = match (&t.webhook_url, &t.room_id) {
            (Some(u), None) => Mode::Webhook {
                url: cx.url("webhook_url", u, true)?,
            },
            (None, Some(room)) => {
                let Some(rest) = self.rest.clone() else {
                    cx.error(
                        Some(room.span()),
                        "`room_id` needs the REST API: set `server_url`, `user_id` and `auth_token` on a [providers.NAME] table with kind = \"rocketchat\"",
                    );
                    return None;
                };
                let room = room.get_ref().trim().to_string();
                if room.is_empty() {
                    cx.error(None, "`room_id` is empty");
                    return None;
                }
                Mode::Rest { room, rest }
            }
            (Some(_), Some(r)) => {
                cx.error(
                    Some(r.span()),
                    "set either `webhook_url` (incoming webhook) or `room_id` (REST API), not both",
                );
                return None;
            }
            (None, None) => {
                cx.error(
                    chat,
                    "a rocketchat chat needs `webhook_url = \"${ROCKETCHAT_HOOK}\"` (incoming webhook) or `room_id` (REST API)",
                );
                return None;
            }
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

impl Destination for RocketChatChat {
    fn kind(&self) -> &'static str {
        REGISTRATION.kind
    }

    fn dialect(&self) -> Dialect {
        Dialect::RocketChat
    }

    fn reads_context(&self) -> bool {
        false
    }

    fn capabilities(&self) -> Capabilities {
        match self.mode {
            // REST answers carry the message `_id`.
            Mode::Rest { .. } => Capabilities::ALL,
            // The webhook answers just `success`: no message id to thread or edit.
            Mode::Webhook { .. } => Capabilities::default(),
        }
    }

    fn default_rate(&self) -> Option<Rate> {
        // The REST rate limiter's defaults, which also cover /hooks: 10 calls
        // per 60 s per route (API_Enable_Rate_Limiter_Limit_Calls_Default).
        Some(Rate::per_minute(10))
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

    fn request(&self, msg: &Message<'_>) -> Outbound {
        let text = truncate(msg.text, TEXT_MAX);
        let post = || {
            let mut body = json!({"text": text, "parseUrls": false});
            let i = &self.instance;
            if let Some(a) = &i.alias {
                body["alias"] = json!(a);
            }
            if let Some(a) = &i.avatar {
                body["avatar"] = json!(a);
            }
            if let Some(e) = &i.emoji {
                body["emoji"] = json!(e);
            }
            body
        };
        let (room, rest) = match &self.mode {
            Mode::Webhook { url } => return Outbound::Http(HttpRequest::post_json(url, &post())),
            Mode::Rest { room, rest } => (room, rest),
        };
        let (method, body) = match msg.action {
            Action::Post { thread } => {
                let mut body = post();
                body["roomId"] = json!(room);
                if let Some(root) = thread.and_then(|t| t.root) {
                    body["tmid"] = json!(MessageId::parse(root, room).id);
                }
                ("chat.postMessage", body)
            }
            Action::Edit { remote_id } => {
                let id = MessageId::parse(remote_id, room);
                let body = json!({"roomId": id.room, "msgId": id.id, "text": text});
                ("chat.update", body)
            }
            Action::Delete { remote_id } => {
                let id = MessageId::parse(remote_id, room);
                ("chat.delete", json!({"roomId": id.room, "msgId": id.id}))
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
        let parsed: Option<serde_json::Value> = serde_json::from_slice(&resp.body).ok();
        let success = parsed
            .as_ref()
            .and_then(|b| b.get("success"))
            .and_then(|v| v.as_bool());
        // Webhooks and REST say `error`; REST auth failures say `message`.
        let error = parsed
            .as_ref()
            .and_then(|b| b.get("error").or_else(|| b.get("message")))
            .map(|e| match e.as_str() {
                Some(s) => s.to_string(),
                None => e.to_string(),
            })
            .map(|e| e.chars().take(200).collect::<String>());
        let reason = |e: &str| {
            format!(
                "rocketchat: HTTP {}: {e}{}",
                resp.status,
                hint(e, resp.status)
            )
        };
        if let Some(e) = &error
            && e.contains("Invalid integration id or token")
        {
            return Outcome::Permanent { reason: reason(e) };
        }
        if let Some(e) = &error
            && (e.contains("No message found") || e.contains("error-message-not-found"))
        {
            // Edited or deleted after someone removed it in Rocket.Chat: done.
            return Outcome::Sent { remote_id: None };
        }
        if (200..300).contains(&resp.status) {
            return match (success, &error) {
                (Some(true), _) => Outcome::Sent {
                    // REST: `message._id` in room `message.rid`; webhooks name none.
                    remote_id: parsed.as_ref().and_then(|b| {
                        let m = b.get("message")?;
                        let (rid, id) = (m.get("rid")?.as_str()?, m.get("_id")?.as_str()?);
                        Some(format!("{rid}/{id}"))
                    }),
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
        let base = classify_status(resp);
        let Some(e) = &error else {
            return base;
        };
        match base {
            Outcome::Retry { after, .. } => Outcome::Retry {
                reason: reason(e),
                after: after.or_else(|| wait_seconds(e)),
            },
            _ => Outcome::Permanent { reason: reason(e) },
        }
    }
}

/// A message as the relay remembers it: `ROOM_ID/MESSAGE_ID` (REST
/// answers name both), or a bare message id in the configured room.
struct MessageId<'a> {
    room: &'a str,
    id: &'a str,
}

impl<'a> MessageId<'a> {
    fn parse(remote_id: &'a str, room: &'a str) -> Self {
        match remote_id.split_once('/') {
            Some((room, id)) => Self { room, id },
            None => Self {
                room,
                id: remote_id,
            },
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use crate::providers::Instance;
    use std::collections::HashMap;

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
        let ctx = json!({});
        let Outbound::Http(r) = rest_chat().request(&Message {
            chat: "c",
            text: "new text",
            context: &ctx,
            action,
            delivery: None,
        }) else {
            panic!("expected HTTP")
        };
        let header = |k: &str| {
            r.headers
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.expose().to_string())
        };
        assert_eq!(header("X-Auth-Token").as_deref(), Some("canary-rc-token"));
        assert_eq!(header("X-User-Id").as_deref(), Some("botuser1"));
        (
            r.url.expose().to_string(),
            serde_json::from_str(&r.body).unwrap(),
        )
    }

    #[test]
    fn rest_posts_threads_edits_and_deletes() {
        use crate::providers::Thread;
        let (url, body) = act(Action::Post { thread: None });
        assert_eq!(url, "http://127.0.0.1:9/api/v1/chat.postMessage");
        assert_eq!(
            body,
            json!({"roomId": "GENERAL", "text": "new text", "parseUrls": false})
        );
        let root = "GENERAL/mRoot1";
        let (_, body) = act(Action::Post {
            thread: Some(Thread { root: Some(root) }),
        });
        assert_eq!(body["tmid"], "mRoot1");
        let (url, body) = act(Action::Edit { remote_id: root });
        assert_eq!(url, "http://127.0.0.1:9/api/v1/chat.update");
        assert_eq!(
            body,
            json!({"roomId": "GENERAL", "msgId": "mRoot1", "text": "new text"})
        );
        let (url, body) = act(Action::Delete { remote_id: root });
        assert_eq!(url, "http://127.0.0.1:9/api/v1/chat.delete");
        assert_eq!(body, json!({"roomId": "GENERAL", "msgId": "mRoot1"}));

        let c = rest_chat();
        assert!(c.capabilities().thread && c.capabilities().edit);
        assert!(!chat(None).capabilities().thread);
        assert_eq!(
            c.classify(&resp(
                200,
                &[],
                r#"{"ts":1,"channel":"general","message":{"_id":"m9","rid":"GENERAL","msg":"x"},"success":true}"#
            )),
            Outcome::Sent {
                remote_id: Some("GENERAL/m9".into())
            }
        );
        assert_eq!(
            c.classify(&resp(
                400,
                &[],
                r#"{"success":false,"error":"No message found with the id of \"m9\".","errorType":"error-message-not-found"}"#
            )),
            Outcome::Sent { remote_id: None }
        );
        let Outcome::Permanent { reason } = c.classify(&resp(
            401,
            &[],
            r#"{"status":"error","message":"You must be logged in to do this."}"#,
        )) else {
            panic!("401 is permanent")
        };
        assert!(!reason.contains("canary-rc-token"));
    }

    use crate::providers::http::tests::resp;

    fn request(c: &RocketChatChat, text: &str) -> HttpRequest {
        let ctx = json!({});
        match c.request(&Message {
            chat: "c",
            text,
            context: &ctx,
            action: Default::default(),
            delivery: None,
        }) {
            Outbound::Http(r) => r,
            Outbound::Stdout(_) | Outbound::Native(_) => panic!("expected HTTP"),
        }
    }

    #[test]
    fn request_shape_and_limit() {
        let r = request(&chat(Some("Forum")), "@\u{200B}all \\*x\\*");
        assert_eq!(r.method, "POST");
        assert_eq!(r.url.expose(), HOOK);
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            body,
            json!({"text": "@\u{200B}all \\*x\\*", "parseUrls": false, "alias": "Forum", "emoji": ":speech_balloon:"})
        );
        let long = "word ".repeat(2000);
        let body: serde_json::Value =
            serde_json::from_str(&request(&chat(None), &long).body).unwrap();
        let text = body["text"].as_str().unwrap();
        assert!(text.chars().count() <= TEXT_MAX && text.ends_with('…'));
        assert!(body.get("alias").is_none());
        assert_eq!(chat(None).target(), "http://127.0.0.1/hooks/…");
    }

    #[test]
    fn classifies_rocketchat_answers_without_the_url() {
        let c = chat(None);
        assert_eq!(
            c.classify(&resp(200, &[], r#"{"success":true}"#)),
            Outcome::Sent { remote_id: None }
        );
        assert_eq!(
            c.classify(&resp(204, &[], "")),
            Outcome::Sent { remote_id: None }
        );
        assert!(matches!(
            c.classify(&resp(200, &[], r#"{"success":false,"error":"error-running-script"}"#)),
            Outcome::Permanent { reason } if reason.contains("error-running-script")
        ));
        assert!(matches!(
            c.classify(&resp(200, &[], "<!DOCTYPE html><html>")),
            Outcome::Permanent { reason } if reason.contains("check `webhook_url`")
        ));
        assert!(matches!(
            c.classify(&resp(400, &[], r#"{"success":false,"error":"invalid-channel"}"#)),
            Outcome::Permanent { reason } if reason.contains("invalid-channel")
        ));
        let limited = r#"{"success":false,"error":"Error, too many requests. Please slow down. You must wait 42 seconds before trying this endpoint again. [error-too-many-requests]"}"#;
        assert!(matches!(
            c.classify(&resp(429, &[], limited)),
            Outcome::Retry { after: Some(d), .. } if d == Duration::from_secs(42)
        ));
        assert!(matches!(
            c.classify(&resp(429, &[("Retry-After", "5")], limited)),
            Outcome::Retry { after: Some(d), .. } if d == Duration::from_secs(5)
        ));
        assert!(matches!(
            c.classify(&resp(503, &[], r#"{"success":false,"error":"Service Unavailable"}"#)),
            Outcome::Retry { reason, .. } if reason.contains("disabled")
        ));
        assert!(matches!(
            c.classify(&resp(502, &[], "bad gateway")),
            Outcome::Retry { .. }
        ));
        // A wrong token, whatever status the version answers it with.
        for status in [401, 403, 500] {
            let o = c.classify(&resp(
                status,
                &[],
                r#"{"success":false,"error":"Invalid integration id or token provided."}"#,
            ));
            assert!(
                matches!(&o, Outcome::Permanent { reason } if !reason.contains("hooksecret42")),
                "{o:?}"
            );
        }
        assert!(matches!(
            c.classify(&resp(404, &[], "Not Found")),
            Outcome::Permanent { .. }
        ));
    }

    #[test]
    fn webhook_url_is_a_secret_url() {
        let env = HashMap::from([("HOOK".to_string(), HOOK.to_string())]);
        let check = |target: &str| {
            let mut cx = Ctx::new(&env, crate::config::de::MissingEnv::Warn);
            let doc = toml_edit::Document::parse(format!(
                "s = {{ alias = \"Forum\", avatar = \"https://f.example/a.png\" }}\nt = {target}\n"
            ))
            .unwrap();
            let d = (REGISTRATION.parse)(&doc["s"], &mut cx)
                .and_then(|i| i.bind(&doc["t"], None, &mut cx));
            let msgs: Vec<String> = cx.problems().iter().map(|p| p.message.clone()).collect();
            (d.is_some(), msgs)
        };
        assert_eq!(check(r#"{ webhook_url = "${HOOK}" }"#), (true, vec![]));
        let (ok, p) = check(r#"{ webhook_url = "https://h/hooks/a/b" }"#);
        assert!(!ok && p[0].contains("environment reference"), "{p:?}");
        let (ok, p) = check("{}");
        assert!(!ok && p[0].contains("needs `webhook_url"), "{p:?}");
    }
}
