//! `dingtalk`: a DingTalk custom robot (group webhook).
//!
//! `POST https://oapi.dingtalk.com/robot/send?access_token=<token>` (the URL
//! is the credential) with
//! `{"msgtype":"markdown","markdown":{"title","text"},"at":{"isAtAll":false}}`:
//! `title` is the topic title (the notification preview), `text` the
//! rendered message. When the robot's security setting is "signature", the
//! URL also gets `&timestamp=<ms>&sign=<sign>` with sign =
//! urlencode(base64(HMAC-SHA256(key = secret, message = "<ms>\n<secret>")))
//! (unlike Lark, the secret is the key). The timestamp is taken when the
//! request is built (at send time) and must be within an hour of DingTalk's.
//!
//! Dialect: Markdown, escaped by the renderer. Mentions only notify when
//! listed in `at` (`atMobiles`/`atUserIds`) or with `isAtAll`, which is
//! always false here.
//!
//! Answers: HTTP 200 `{"errcode":0,"errmsg":"ok"}`; any other `errcode` is
//! an error: 130101 "send too fast" (20 messages a minute per robot; the
//! robot is then throttled), 310000 security check failed (keyword,
//! signature or IP), 300001 bad token, -1 busy. See shared/providers.md §3.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use serde_spanned::Spanned;
use sha2::Sha256;

use super::http::retry_hint;
use super::kit::{self, CodeSpec, Provider, classify_code};
use super::{
    Capabilities, Destination, HttpRequest, HttpResponse, Message, Outbound, Outcome, Registration,
    http::{Clock, system_clock},
};
use crate::config::Rate;
use crate::config::de::Ctx;
use crate::config::env::Secret;
use crate::render::Dialect;
use crate::render::escape::strip_controls;

pub const REGISTRATION: Registration =
    kit::registration::<DingTalk>("dingtalk", "DingTalk custom robot webhook");

/// Worth retrying: "send too fast" and "system busy".
const TRANSIENT_CODES: &[i64] = &[130101, -1];

/// How long to wait after "send too fast" when the answer names no `wait`.
const THROTTLE_WAIT: Duration = Duration::from_secs(60);

/// `[providers.NAME]` for `kind = "dingtalk"`: nothing to set (each robot
/// belongs to one group, so everything is on the chat).
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Settings {}

/// Chat fields for a DingTalk chat.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Target {
    /// The robot's webhook URL, `https://oapi.dingtalk.com/robot/send?access_token=<token>`, with the token as `${VAR}`.
    #[schemars(with = "Option<String>")]
    pub webhook_url: Option<Spanned<String>>,
    /// Signing secret (`SEC…`), as `${VAR}`, when the robot's security setting is "signature".
    #[schemars(with = "Option<String>")]
    pub secret: Option<Spanned<String>>,
}

#[derive(Debug)]
struct DingTalk;

impl Provider for DingTalk {
    type Settings = Settings;
    type Target = Target;

    fn new(_: Settings, _: &mut Ctx<'_>) -> Option<Self> {
        Some(DingTalk)
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
            "a dingtalk chat needs `webhook_url` (the robot's webhook address, with its access_token as ${VAR})",
        )?;
        if !url.expose().contains("${") {
            let params: Vec<(String, String)> = url::Url::parse(url.expose())
                .map(|u| u.query_pairs().into_owned().collect())
                .unwrap_or_default();
            // Never echo the value: it holds the token.
            if !params
                .iter()
                .any(|(k, v)| k == "access_token" && !v.is_empty())
            {
                cx.error(
                    Some(raw_span.clone()),
                    "`webhook_url` has no `access_token=` parameter: copy the robot's whole webhook address",
                );
                return None;
            }
            if params.iter().any(|(k, _)| k == "timestamp" || k == "sign") {
                cx.error(
                    Some(raw_span.clone()),
                    "`webhook_url` must not carry `timestamp` or `sign`: set `secret` and the relay signs each request",
                );
                return None;
            }
        }
        let secret = match &t.secret {
            Some(s) => Some(cx.secret("secret", s)?),
            None => None,
        };
        Some(Box::new(DingTalkChat {
            url,
            secret,
            clock: system_clock,
        }))
    }
}

#[derive(Debug)]
struct DingTalkChat {
    url: Secret,
    secret: Option<Secret>,
    clock: Clock,
}

/// urlencode(base64(HMAC-SHA256(key = secret, message = "<ms>\n<secret>"))).
fn sign(timestamp_ms: u64, secret: &str) -> String {
    // HMAC takes keys of any length: this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        unreachable!("HMAC takes keys of any length")
    };
    mac.update(format!("{timestamp_ms}\n{secret}").as_bytes());
    let b64 = BASE64.encode(mac.finalize().into_bytes());
    url::form_urlencoded::byte_serialize(b64.as_bytes()).collect()
}

impl Destination for DingTalkChat {
    fn kind(&self) -> &'static str {
        REGISTRATION.kind
    }

    fn dialect(&self) -> Dialect {
        Dialect::Markdown
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    fn default_rate(&self) -> Option<Rate> {
        // 20 messages a minute per robot, then 10 minutes of throttling:
        // evenly spaced, no burst, so no minute ever holds more than 20.
        Some(Rate::per_secs(1, 3))
    }

    fn target(&self) -> String {
        "dingtalk robot".into()
    }

    fn request(&self, msg: &Message<'_>) -> Outbound {
        let title = msg.context["topic"]["title"]
            .as_str()
            .map(|t| {
                strip_controls(t)
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "Discourse".to_string());
        let body = json!({
            "msgtype": "markdown",
            "markdown": {"title": title, "text": msg.text},
            "at": {"isAtAll": false},
        });
        let url = match &self.secret {
            Some(secret) => {
                let ts = (self.clock)();
                let base = self.url.expose();
                let sep = if base.contains('?') { '&' } else { '?' };
                Secret::new(format!(
                    "{base}{sep}timestamp={ts}&sign={}",
                    sign(ts, secret.expose())
                ))
            }
            None => self.url.clone(),
        };
        Outbound::Http(HttpRequest::post_json(&url, &body))
    }

    fn classify(&self, resp: &HttpResponse) -> Outcome {
        classify_code(resp, &CODES)
    }
}

/// Answers: `{"errcode": 0, "errmsg": "ok"}`, mostly with HTTP 200.
const CODES: CodeSpec = CodeSpec {
    prefix: "dingtalk",
    word: "errcode",
    code_ptrs: &["/errcode"],
    msg_ptrs: &["/errmsg"],
    transient: TRANSIENT_CODES,
    hint: |code| match code {
        130101 => " (rate limited: 20 messages a minute per robot)",
        310000 => {
            " (the robot's security settings refused it: check `secret`, the keyword (put it in the template) or the IP allow-list)"
        }
        300001 | 300005 => " (check the access_token in `webhook_url`)",
        _ => "",
    },
    after: |resp, body, code| {
        resp.retry_after().or_else(|| {
            // Throttling answers may say how long to wait (`"wait":5`).
            let wait = retry_hint::json_secs(&body["wait"]);
            (code == Some(130101)).then(|| wait.unwrap_or(THROTTLE_WAIT))
        })
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use crate::providers::Instance;
    use std::collections::HashMap;

    const TOKEN: &str = "canarydingtalkaccesstoken0123456789";
    const SECRET: &str = "SECdemo-dingtalk-secret";

    fn fixed_clock() -> u64 {
        1_599_360_473_000
    }

    fn chat(secret: bool) -> DingTalkChat {
        DingTalkChat {
            url: Secret::new(format!(
                "http://127.0.0.1:9/robot/send?access_token={TOKEN}"
            )),
            secret: secret.then(|| Secret::new(SECRET)),
            clock: fixed_clock,
        }
    }

    fn resp(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        }
    }

    fn request(c: &DingTalkChat, ctx: &serde_json::Value) -> HttpRequest {
        match c.request(&Message {
            chat: "c",
            text: "**x** \\_y\\_",
            context: ctx,
            action: Default::default(),
            delivery: None,
        }) {
            Outbound::Http(r) => r,
            _ => panic!("expected HTTP"),
        }
    }

    #[test]
    fn known_answer_signature() {
        // python3: urllib.parse.quote_plus(base64.b64encode(hmac.new(
        //   b"SECdemo-dingtalk-secret", b"1599360473000\nSECdemo-dingtalk-secret",
        //   digestmod=hashlib.sha256).digest()))
        assert_eq!(
            sign(1_599_360_473_000, SECRET),
            "scQg3DogLBo3FdEpz04DkcE60%2BmxO1SBaxSMAwfZ1jY%3D"
        );
    }

    #[test]
    fn request_shape_signed_and_unsigned() {
        let ctx = json!({"topic": {"title": "Line\nbreak\u{7} title"}});
        let r = request(&chat(true), &ctx);
        assert_eq!(r.method, "POST");
        assert_eq!(
            r.url.expose(),
            format!(
                "http://127.0.0.1:9/robot/send?access_token={TOKEN}&timestamp=1599360473000&sign=scQg3DogLBo3FdEpz04DkcE60%2BmxO1SBaxSMAwfZ1jY%3D"
            )
        );
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            body,
            json!({
                "msgtype": "markdown",
                "markdown": {"title": "Line break title", "text": "**x** \\_y\\_"},
                "at": {"isAtAll": false},
            })
        );
        let r = request(&chat(false), &json!({}));
        assert_eq!(
            r.url.expose(),
            format!("http://127.0.0.1:9/robot/send?access_token={TOKEN}")
        );
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["markdown"]["title"], "Discourse");
        assert!(!r.body.contains(TOKEN) && !r.body.contains(SECRET));
    }

    #[test]
    fn classifies_answers() {
        let c = chat(true);
        assert_eq!(
            c.classify(&resp(200, r#"{"errcode":0,"errmsg":"ok"}"#)),
            Outcome::Sent { remote_id: None }
        );
        assert_eq!(
            c.classify(&resp(200, r#"{"errcode":130101,"errmsg":"send too fast, exceed 20 times per minute"}"#)),
            Outcome::Retry {
                reason: "dingtalk: errcode 130101: send too fast, exceed 20 times per minute (rate limited: 20 messages a minute per robot)".into(),
                after: Some(THROTTLE_WAIT)
            }
        );
        assert!(matches!(
            c.classify(&resp(200, r#"{"status":1111,"wait":5,"source":"x5","punish":"deny","errcode":130101,"errmsg":"send too fast, exceed 20 times per minute"}"#)),
            Outcome::Retry { after: Some(d), .. } if d.as_secs() == 5
        ));
        assert!(matches!(
            c.classify(&resp(200, r#"{"errcode":-1,"errmsg":"系统繁忙"}"#)),
            Outcome::Retry { after: None, .. }
        ));
        for (body, needle) in [
            (
                r#"{"errcode":310000,"errmsg":"sign not match, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]"}"#,
                "`secret`",
            ),
            (
                r#"{"errcode":310000,"errmsg":"keywords not in content"}"#,
                "keyword",
            ),
            (
                r#"{"errcode":300001,"errmsg":"token is not exist"}"#,
                "access_token",
            ),
            (r#"{"errcode":400013,"errmsg":"群已被解散"}"#, "400013"),
        ] {
            let Outcome::Permanent { reason } = c.classify(&resp(200, body)) else {
                panic!("{body} should be permanent")
            };
            assert!(reason.contains(needle), "{reason}");
            assert!(!reason.contains(TOKEN) && !reason.contains(SECRET));
        }
        assert!(matches!(c.classify(&resp(502, "")), Outcome::Retry { .. }));
        assert!(matches!(
            c.classify(&resp(404, "")),
            Outcome::Permanent { .. }
        ));
        assert!(matches!(
            c.classify(&resp(200, "<html>")),
            Outcome::Retry { .. }
        ));
    }

    fn bind(target: &str) -> (Option<Box<dyn Destination>>, Vec<String>) {
        let env: HashMap<String, String> = [
            ("DT_TOKEN".to_string(), TOKEN.to_string()),
            ("DT_SECRET".to_string(), SECRET.to_string()),
        ]
        .into();
        let mut cx = Ctx::new(&env, crate::config::de::MissingEnv::Warn);
        let doc = toml_edit::Document::parse(format!("s = {{ }}\nt = {{ {target} }}")).unwrap();
        let dest =
            (REGISTRATION.parse)(&doc["s"], &mut cx).and_then(|i| i.bind(&doc["t"], None, &mut cx));
        let problems = cx.problems().iter().map(|p| p.message.clone()).collect();
        (dest, problems)
    }

    #[test]
    fn fields_are_validated() {
        let (d, p) = bind(
            "webhook_url = \"https://oapi.dingtalk.com/robot/send?access_token=${DT_TOKEN}\", secret = \"${DT_SECRET}\"",
        );
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(d.unwrap().target(), "dingtalk robot");
        let (_, p) = bind("");
        assert!(p[0].contains("needs `webhook_url`"), "{p:?}");
        let (_, p) =
            bind("webhook_url = \"https://oapi.dingtalk.com/robot/send?access_token=abc\"");
        assert!(p[0].contains("must be an environment reference"), "{p:?}");
        let (_, p) = bind("webhook_url = \"https://oapi.dingtalk.com/robot/send?x=${DT_TOKEN}\"");
        assert!(p[0].contains("no `access_token=`"), "{p:?}");
        assert!(!p[0].contains(TOKEN));
        let (_, p) = bind(
            "webhook_url = \"https://oapi.dingtalk.com/robot/send?access_token=${DT_TOKEN}&timestamp=1&sign=x\"",
        );
        assert!(p[0].contains("must not carry"), "{p:?}");
        let (_, p) = bind(
            "webhook_url = \"https://oapi.dingtalk.com/robot/send?access_token=${DT_TOKEN}\", secret = \"SECliteral\"",
        );
        assert!(p[0].contains("must be an environment reference"), "{p:?}");
    }
}
