//! `rocketchat`: a Rocket.Chat incoming webhook (`POST {webhook_url}`, the
//! URL `https://HOST/hooks/ID/TOKEN` is the credential) with `{"text": …}`.
//!
//! Dialect: Markdown, escaped by the renderer: formatting characters get a
//! backslash and every `@` that could mention (`@all`, `@here`, `@user`) gets
//! U+200B after it, which Rocket.Chat's mention parser does not accept in a
//! name. Webhooks have no switch for mentions. Link previews are off
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
use toml_edit::Item;

use super::{
    Capabilities, Destination, HttpRequest, HttpResponse, Instance, Message, Outbound, Outcome,
    Registration, http::classify_status, schema_of,
};
use crate::config::Rate;
use crate::config::de::Ctx;
use crate::config::env::Secret;
use crate::render::Dialect;
use crate::render::text::truncate;

pub const REGISTRATION: Registration = Registration {
    kind: "rocketchat",
    about: "Rocket.Chat incoming webhook",
    parse,
    settings_schema: schema_of::<Settings>,
    target_schema: schema_of::<Target>,
};

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
}

/// Chat fields for a Rocket.Chat chat.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(rename = "RocketchatTarget")]
pub struct Target {
    /// Incoming webhook URL (`https://HOST/hooks/ID/TOKEN`, Administration → Integrations), as `${VAR}`: the URL is the credential. The integration decides the channel.
    #[schemars(with = "Option<String>")]
    pub webhook_url: Option<Spanned<String>>,
}

#[derive(Debug)]
struct RocketChat {
    alias: Option<String>,
    avatar: Option<String>,
    emoji: Option<String>,
}

fn parse(item: &Item, cx: &mut Ctx<'_>) -> Option<Arc<dyn Instance>> {
    let s = cx.deserialize::<Settings>(item)?;
    let avatar = match &s.avatar {
        Some(a) => Some(cx.url("avatar", a, false)?.expose().to_string()),
        None => None,
    };
    let non_empty = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    Some(Arc::new(RocketChat {
        alias: non_empty(s.alias),
        avatar,
        emoji: non_empty(s.emoji),
    }))
}

impl Instance for RocketChat {
    fn bind(
        self: Arc<Self>,
        target: &Item,
        chat: Option<Range<usize>>,
        cx: &mut Ctx<'_>,
    ) -> Option<Box<dyn Destination>> {
        let t = cx.deserialize::<Target>(target)?;
        let Some(u) = &t.webhook_url else {
            cx.error(
                chat,
                "a rocketchat chat needs `webhook_url = \"${ROCKETCHAT_HOOK}\"`, the incoming webhook's URL",
            );
            return None;
        };
        let url = cx.url("webhook_url", u, true)?;
        Some(Box::new(RocketChatChat {
            instance: self,
            url,
        }))
    }
}

#[derive(Debug)]
struct RocketChatChat {
    instance: Arc<RocketChat>,
    url: Secret,
}

impl Destination for RocketChatChat {
    fn kind(&self) -> &'static str {
        "rocketchat"
    }

    fn dialect(&self) -> Dialect {
        Dialect::Markdown
    }

    fn capabilities(&self) -> Capabilities {
        // The webhook answers just `success`: no message id to thread or edit.
        Capabilities::default()
    }

    fn default_rate(&self) -> Option<Rate> {
        // The REST rate limiter's defaults, which also cover /hooks: 10 calls
        // per 60 s per route (API_Enable_Rate_Limiter_Limit_Calls_Default).
        Some(Rate {
            count: 10,
            per: Duration::from_secs(60),
        })
    }

    fn target(&self) -> String {
        // The path holds the token: show only the origin.
        match url::Url::parse(self.url.expose()) {
            Ok(u) => format!("{}://{}/hooks/…", u.scheme(), u.host_str().unwrap_or("?")),
            Err(_) => "incoming webhook".into(),
        }
    }

    fn request(&self, msg: &Message<'_>) -> Outbound {
        let mut body = json!({
            "text": truncate(msg.text, TEXT_MAX),
            "parseUrls": false,
        });
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
        Outbound::Http(HttpRequest::post_json(&self.url, &body))
    }

    fn classify(&self, resp: &HttpResponse) -> Outcome {
        let parsed: Option<serde_json::Value> = serde_json::from_slice(&resp.body).ok();
        let success = parsed
            .as_ref()
            .and_then(|b| b.get("success"))
            .and_then(|v| v.as_bool());
        let error = parsed
            .as_ref()
            .and_then(|b| b.get("error"))
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
        if (200..300).contains(&resp.status) {
            return match (success, &error) {
                (Some(true), _) => Outcome::Sent { remote_id: None },
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

/// The delay in the rate limiter's text: "… You must wait 42 seconds before
/// trying this endpoint again." (it sends no `Retry-After`).
fn wait_seconds(error: &str) -> Option<Duration> {
    let rest = &error[error.find("must wait ")? + "must wait ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let secs: u64 = digits.parse().ok()?;
    rest[digits.len()..]
        .trim_start()
        .starts_with("second")
        .then(|| Duration::from_secs(secs.min(86_400)))
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
    use std::collections::HashMap;

    const HOOK: &str = "http://127.0.0.1:9/hooks/abc/hooksecret42";

    fn chat(alias: Option<&str>) -> RocketChatChat {
        RocketChatChat {
            instance: Arc::new(RocketChat {
                alias: alias.map(str::to_string),
                avatar: None,
                emoji: Some(":speech_balloon:".into()),
            }),
            url: Secret::new(HOOK),
        }
    }

    fn resp(status: u16, headers: &[(&str, &str)], body: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }

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
            let d = parse(&doc["s"], &mut cx).and_then(|i| i.bind(&doc["t"], None, &mut cx));
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
