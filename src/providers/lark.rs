//! `lark`: a Lark / Feishu custom bot (group webhook).
//!
//! `POST https://open.feishu.cn/open-apis/bot/v2/hook/<token>` (Lark:
//! `open.larksuite.com`), the whole URL being the credential, with
//! `{"msg_type":"text","content":{"text":…}}`. When the bot has signature
//! verification on, the body also carries `timestamp` (Unix seconds, as a
//! string) and `sign` = base64(HMAC-SHA256(key = "<timestamp>\n<secret>",
//! message = "")): the key is the string to sign and the message is empty,
//! unlike DingTalk. The timestamp is taken when the request is built (at send
//! time) and must be within an hour of Lark's clock.
//!
//! Dialect: plain text. Lark parses `<at user_id="all">` in text messages, so
//! every `<at` gets a zero-width space after `<`: no mention can be formed,
//! by a post or by a template. The body is kept under the 20 KB limit.
//!
//! Answers: HTTP 200 `{"code":0,"msg":"success"}` (older: `StatusCode`);
//! any other `code` is an error, also with HTTP 200 or 400: 11232 is the
//! rate limit (100/min and 5/s per bot), 9499 a malformed or oversized body,
//! 19021 a bad signature, 19022 the IP allow-list, 19024 the keyword check.
//! See shared/providers.md §3 and the custom bot guide on open.larkoffice.com.

use std::ops::Range;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use serde_spanned::Spanned;
use sha2::Sha256;

use super::http::retry_hint;
use super::kit::truncate_bytes;
use super::kit::{self, CodeSpec, Provider, classify_code};
use super::{
    Capabilities, Destination, HttpRequest, HttpResponse, Message, Outbound, Outcome, Registration,
    http::{Clock, system_clock},
};
use crate::config::Rate;
use crate::config::de::Ctx;
use crate::config::env::Secret;
use crate::render::Dialect;

pub const REGISTRATION: Registration =
    kit::registration::<Lark>("lark", "Lark / Feishu custom bot webhook");

/// Lark refuses bodies over 20 KB; JSON escaping adds a little to the text.
const MAX_TEXT_BYTES: usize = 16 * 1024;

/// Codes worth retrying: the bot's rate limit and the per-chat one.
const TRANSIENT_CODES: &[i64] = &[11232, 230020];

/// `[providers.NAME]` for `kind = "lark"`: nothing to set (each bot
/// belongs to one group, so everything is on the chat).
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Settings {}

/// Chat fields for a Lark / Feishu chat.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Target {
    /// The bot's webhook URL, `https://open.feishu.cn/open-apis/bot/v2/hook/<token>` (or `open.larksuite.com`), with the token as `${VAR}`.
    #[schemars(with = "Option<String>")]
    pub webhook_url: Option<Spanned<String>>,
    /// Signing secret, as `${VAR}`, when the bot has signature verification on.
    #[schemars(with = "Option<String>")]
    pub secret: Option<Spanned<String>>,
}

#[derive(Debug)]
struct Lark;

impl Provider for Lark {
    type Settings = Settings;
    type Target = Target;

    fn new(_: Settings, _: &mut Ctx<'_>) -> Option<Self> {
        Some(Lark)
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
            "a lark chat needs `webhook_url` (the custom bot's webhook address, with its token as ${VAR})",
        )?;
        if !url.expose().contains("${") && !has_hook_token(url.expose()) {
            // Never echo the value: it holds the token.
            cx.error(
                Some(raw_span.clone()),
                "`webhook_url` must end in /hook/<token>, like https://open.feishu.cn/open-apis/bot/v2/hook/<token>",
            );
            return None;
        }
        let secret = match &t.secret {
            Some(s) => Some(cx.secret("secret", s)?),
            None => None,
        };
        Some(Box::new(LarkChat {
            url,
            secret,
            clock: system_clock,
        }))
    }
}

fn has_hook_token(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| {
        u.path()
            .rsplit_once("/hook/")
            .is_some_and(|(_, token)| !token.is_empty() && !token.contains('/'))
    })
}

#[derive(Debug)]
struct LarkChat {
    url: Secret,
    secret: Option<Secret>,
    clock: Clock,
}

/// base64(HMAC-SHA256(key = "<timestamp>\n<secret>", message = "")).
fn sign(timestamp: u64, secret: &str) -> String {
    let key = format!("{timestamp}\n{secret}");
    // HMAC takes keys of any length: this cannot fail.
    let Ok(mac) = Hmac::<Sha256>::new_from_slice(key.as_bytes()) else {
        unreachable!("HMAC takes keys of any length")
    };
    BASE64.encode(mac.finalize().into_bytes())
}

/// Breaks every `<at` so Lark cannot read a mention tag (`<at user_id="all">`).
fn break_mentions(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('<') {
        out.push_str(&rest[..=i]);
        rest = &rest[i + 1..];
        if rest.get(..2).is_some_and(|s| s.eq_ignore_ascii_case("at")) {
            out.push('\u{200B}');
        }
    }
    out.push_str(rest);
    out
}

impl Destination for LarkChat {
    fn kind(&self) -> &'static str {
        REGISTRATION.kind
    }

    fn dialect(&self) -> Dialect {
        Dialect::Plain
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    fn default_rate(&self) -> Option<Rate> {
        // 100/min and 5/s per bot: one a second stays under both.
        Some(Rate::per_second(1))
    }

    fn target(&self) -> String {
        "lark custom bot".into()
    }

    fn request(&self, msg: &Message<'_>) -> Outbound {
        let text = break_mentions(&truncate_bytes(msg.text, MAX_TEXT_BYTES));
        let mut body = json!({
            "msg_type": "text",
            "content": {"text": text},
        });
        if let Some(secret) = &self.secret {
            let timestamp = (self.clock)() / 1000;
            body["timestamp"] = json!(timestamp.to_string());
            body["sign"] = json!(sign(timestamp, secret.expose()));
        }
        Outbound::Http(HttpRequest::post_json(&self.url, &body))
    }

    fn classify(&self, resp: &HttpResponse) -> Outcome {
        classify_code(resp, &CODES)
    }
}

/// Answers: `{"code": 0, "msg": "success"}` (older bots: `StatusCode`,
/// `StatusMessage`), mostly with HTTP 200.
const CODES: CodeSpec = CodeSpec {
    prefix: "lark",
    word: "code",
    code_ptrs: &["/code", "/StatusCode"],
    msg_ptrs: &["/msg", "/StatusMessage"],
    transient: TRANSIENT_CODES,
    hint: |code| match code {
        19001 => " (check the token in `webhook_url`)",
        19007 => " (the bot is disabled or no longer in the group)",
        19021 => " (signature rejected: check `secret`, and that this server's clock is right)",
        19022 => " (this server's IP is not on the bot's allow-list)",
        19024 => " (the message lacks the bot's keyword: put one in the template)",
        9499 => " (malformed or oversized request)",
        11232 | 230020 => " (rate limited)",
        _ => "",
    },
    after: |resp, _, _| {
        resp.retry_after().or_else(|| {
            resp.header("x-ogw-ratelimit-reset")
                .and_then(retry_hint::text_secs)
        })
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use crate::providers::Instance;
    use std::collections::HashMap;
    use std::time::Duration;

    const TOKEN: &str = "b0a1c2d3-canary-lark-token";
    const SECRET: &str = "demo-lark-secret";

    fn fixed_clock() -> u64 {
        1_599_360_473_123
    }

    fn chat(secret: bool) -> LarkChat {
        LarkChat {
            url: Secret::new(format!("http://127.0.0.1:9/open-apis/bot/v2/hook/{TOKEN}")),
            secret: secret.then(|| Secret::new(SECRET)),
            clock: fixed_clock,
        }
    }

    use crate::providers::http::tests::resp;

    fn body(c: &LarkChat, text: &str) -> serde_json::Value {
        let ctx = json!({});
        let Outbound::Http(r) = c.request(&Message {
            chat: "c",
            text,
            context: &ctx,
            action: Default::default(),
            delivery: None,
        }) else {
            panic!("expected HTTP")
        };
        assert_eq!(r.method, "POST");
        assert!(r.url.expose().ends_with(TOKEN));
        serde_json::from_str(&r.body).unwrap()
    }

    #[test]
    fn known_answer_signature() {
        // python3: base64.b64encode(hmac.new(b"1599360473\ndemo-lark-secret",
        //          digestmod=hashlib.sha256).digest())
        assert_eq!(
            sign(1_599_360_473, SECRET),
            "AgYKfD+AJab1f4YHCDJW0BIw1vLVsd0w7QfyZaWdpV8="
        );
    }

    #[test]
    fn request_shape_signed_and_unsigned() {
        assert_eq!(
            body(&chat(true), "hi"),
            json!({
                "msg_type": "text",
                "content": {"text": "hi"},
                "timestamp": "1599360473",
                "sign": "AgYKfD+AJab1f4YHCDJW0BIw1vLVsd0w7QfyZaWdpV8=",
            })
        );
        assert_eq!(
            body(&chat(false), "hi"),
            json!({"msg_type": "text", "content": {"text": "hi"}})
        );
    }

    #[test]
    fn mention_tags_are_broken() {
        let b = body(
            &chat(false),
            "<at user_id=\"all\">所有人</at> <AT user_id=\"ou_1\"></AT> a<b @all",
        );
        assert_eq!(
            b["content"]["text"],
            "<\u{200B}at user_id=\"all\">所有人</at> <\u{200B}AT user_id=\"ou_1\"></AT> a<b @all"
        );
        assert_eq!(break_mentions("<a"), "<a");
        assert_eq!(break_mentions("x<"), "x<");
    }

    #[test]
    fn long_text_is_cut() {
        let b = body(&chat(false), &"字".repeat(10_000));
        let text = b["content"]["text"].as_str().unwrap();
        assert!(text.len() <= MAX_TEXT_BYTES && text.ends_with('…'));
    }

    #[test]
    fn classifies_answers() {
        let c = chat(true);
        assert_eq!(
            c.classify(&resp(
                200,
                &[],
                r#"{"StatusCode":0,"StatusMessage":"success","code":0,"data":{},"msg":"success"}"#
            )),
            Outcome::Sent { remote_id: None }
        );
        assert_eq!(
            c.classify(&resp(
                200,
                &[],
                r#"{"Extra":null,"StatusCode":0,"StatusMessage":"success"}"#
            )),
            Outcome::Sent { remote_id: None }
        );
        assert_eq!(
            c.classify(&resp(200, &[], r#"{"code":19021,"data":{},"msg":"sign match fail or timestamp is not within one hour from current time"}"#)),
            Outcome::Permanent {
                reason: "lark: code 19021: sign match fail or timestamp is not within one hour from current time (signature rejected: check `secret`, and that this server's clock is right)".into()
            }
        );
        assert!(matches!(
            c.classify(&resp(200, &[], r#"{"code":9499,"msg":"Bad Request","data":{}}"#)),
            Outcome::Permanent { reason } if reason.contains("9499")
        ));
        assert!(matches!(
            c.classify(&resp(200, &[], r#"{"code":19024,"msg":"Key Words Not Found"}"#)),
            Outcome::Permanent { reason } if reason.contains("keyword")
        ));
        // The rate limit arrives with HTTP 200 or 400.
        for status in [200, 400] {
            assert!(matches!(
                c.classify(&resp(status, &[], r#"{"code":11232,"msg":"frequency limited psm[lark.oapi.app_platform_runtime]appID[1]","data":{}}"#)),
                Outcome::Retry { reason, after: None } if reason.contains("11232")
            ));
        }
        assert_eq!(
            c.classify(&resp(429, &[("x-ogw-ratelimit-reset", "7")], "")),
            Outcome::Retry {
                reason: "lark: HTTP 429".into(),
                after: Some(Duration::from_secs(7))
            }
        );
        assert!(matches!(
            c.classify(&resp(502, &[], "bad gateway")),
            Outcome::Retry { .. }
        ));
        assert!(matches!(
            c.classify(&resp(404, &[], "404 page not found")),
            Outcome::Permanent { .. }
        ));
        assert!(matches!(
            c.classify(&resp(200, &[], "<html>")),
            Outcome::Retry { .. }
        ));
        let o = c.classify(&resp(
            400,
            &[],
            r#"{"code":19001,"msg":"param invalid: incoming webhook access token invalid"}"#,
        ));
        let Outcome::Permanent { reason } = o else {
            panic!("{o:?}")
        };
        assert!(reason.contains("`webhook_url`"));
        assert!(!reason.contains(TOKEN) && !reason.contains(SECRET));
    }

    fn bind(target: &str) -> (Option<Box<dyn Destination>>, Vec<String>) {
        let env: HashMap<String, String> = [
            ("LARK_TOKEN".to_string(), TOKEN.to_string()),
            ("LARK_SECRET".to_string(), SECRET.to_string()),
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
            "webhook_url = \"https://open.feishu.cn/open-apis/bot/v2/hook/${LARK_TOKEN}\", secret = \"${LARK_SECRET}\"",
        );
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(d.unwrap().target(), "lark custom bot");
        let (_, p) = bind("");
        assert!(p[0].contains("needs `webhook_url`"), "{p:?}");
        let (_, p) = bind("webhook_url = \"https://open.feishu.cn/open-apis/bot/v2/hook/abc\"");
        assert!(p[0].contains("must be an environment reference"), "{p:?}");
        let (_, p) = bind("webhook_url = \"https://open.feishu.cn/${LARK_TOKEN}\"");
        assert!(p[0].contains("/hook/<token>"), "{p:?}");
        assert!(!p[0].contains(TOKEN));
        let (_, p) = bind(
            "webhook_url = \"https://open.feishu.cn/open-apis/bot/v2/hook/${LARK_TOKEN}\", secret = \"literal\"",
        );
        assert!(p[0].contains("must be an environment reference"), "{p:?}");
        // Unset variables: `validate` works without them.
        let (d, p) = bind("webhook_url = \"${LARK_HOOK_UNSET}\"");
        assert!(d.is_some() && p[0].contains("not set"), "{p:?}");
    }
}
