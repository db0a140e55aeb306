//! `lark`: a Lark / Feishu custom bot, `POST https://open.feishu.cn/open-apis/bot/v2/hook/<token>`
//! (or `open.larksuite.com`; the URL is the credential) with `{"msg_type":"text",
//! "content":{"text"}}`, cut to 16 KiB (bodies over 20 KB are refused). With
//! signature verification on, the body adds `timestamp` (Unix seconds, a string)
//! and `sign` = base64(HMAC-SHA256(key = "<timestamp>\n<secret>", message = "")).
//!
//! Dialect: plain text, strictest reading (no parser test): Lark reads
//! `<at user_id="all">` in text, so every `<at` gets U+200B after `<`.
//!
//! Answers: `{"code":0,"msg":"success"}` (older: `StatusCode`), HTTP 200 or 400;
//! 11232 and 230020 (100/min, 5/s per bot) retry, other codes are permanent
//! (9499 bad body, 19021 signature, 19022 IP list, 19024 keyword). See
//! shared/providers.md §3.

use super::http::{Clock, system_clock};
use super::kit::prelude::*;

pub const REGISTRATION: Registration =
    kit::registration::<Hook<Settings, Target>>("lark", "Lark / Feishu custom bot webhook");

/// Lark refuses bodies over 20 KB; JSON escaping adds a little to the text.
const MAX_TEXT_BYTES: usize = 16 * 1024;

/// `[providers.NAME]` for `kind = "lark"`: nothing to set (each bot
/// belongs to one group, so everything is on the chat).
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Settings {}

/// Chat fields for a Lark / Feishu chat.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Target {
    /// The bot's webhook URL, `https://open.feishu.cn/open-apis/bot/v2/hook/<token>` (or `open.larksuite.com`), with the token as `${VAR}`.
    pub webhook_url: Option<Located<String>>,
    /// Signing secret, as `${VAR}`, when the bot has signature verification on.
    pub secret: Option<Located<String>>,
}

impl kit::HookTarget for Target {
    fn bind(self, chat: Span, cx: &mut Ctx<'_>) -> Bound {
        let missing = "a lark chat needs `webhook_url` (the custom bot's webhook address, with its token as ${VAR})";
        let (url, span) = cx.required_url(&self.webhook_url, "webhook_url", chat, missing)?;
        // Checked once the variables are set; the message never echoes the token.
        let shape = "`webhook_url` must end in /hook/<token>, like https://open.feishu.cn/open-apis/bot/v2/hook/<token>";
        let ok = url.expose().contains("${") || has_hook_token(url.expose());
        kit::check(cx, ok, Some(span.clone()), shape)?;
        let secret = cx.opt_secret("secret", &self.secret)?;
        Some(Box::new(LarkChat {
            url,
            secret,
            clock: system_clock,
        }))
    }
}

fn has_hook_token(url: &str) -> bool {
    let path = url::Url::parse(url)
        .map(|u| u.path().to_string())
        .unwrap_or_default();
    path.rsplit_once("/hook/")
        .is_some_and(|(_, t)| !t.is_empty() && !t.contains('/'))
}

#[derive(Debug)]
struct LarkChat {
    url: Secret,
    secret: Option<Secret>,
    clock: Clock,
}

/// base64(HMAC-SHA256(key = "<timestamp>\n<secret>", message = "")).
fn sign(timestamp: u64, secret: &str) -> String {
    kit::hmac_sha256_base64(&format!("{timestamp}\n{secret}"), "")
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

/// `StatusCode`/`StatusMessage`: older bots.
const CODES: CodeSpec = CodeSpec {
    prefix: "lark",
    word: "code",
    code_ptrs: &["/code", "/StatusCode"],
    msg_ptrs: &["/msg", "/StatusMessage"],
    transient: &[11232, 230020],
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

impl kit::Chat for LarkChat {
    const KIND: &str = REGISTRATION.kind;
    const TARGET: &str = "lark custom bot";
    const DIALECT: Dialect = Dialect::Plain;
    // 100/min and 5/s per bot: one a second stays under both.
    const RATE: Option<Rate> = Some(Rate::per_second(1));
    const ANSWERS: &dyn kit::Answers = &CODES;

    fn request(&self, msg: &Message<'_>) -> Outbound {
        let text = break_mentions(&truncate_bytes(msg.text, MAX_TEXT_BYTES));
        let mut body = json!({"msg_type": "text", "content": {"text": text}});
        if let Some(secret) = &self.secret {
            let timestamp = (self.clock)() / 1000;
            body["timestamp"] = json!(timestamp.to_string());
            body["sign"] = json!(sign(timestamp, secret.expose()));
        }
        Outbound::Http(HttpRequest::post_json(&self.url, &body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::testkit::{assert_rejected, bind, body, post, reason, resp};

    const TOKEN: &str = "b0a1c2d3-canary-lark-token";
    const SECRET: &str = "demo-lark-secret";
    const SIGN: &str = "AgYKfD+AJab1f4YHCDJW0BIw1vLVsd0w7QfyZaWdpV8=";

    fn chat(secret: bool) -> LarkChat {
        LarkChat {
            url: Secret::new(format!("http://127.0.0.1:9/open-apis/bot/v2/hook/{TOKEN}")),
            secret: secret.then(|| Secret::new(SECRET)),
            clock: || 1_599_360_473_123,
        }
    }

    fn sent(c: &LarkChat, text: &str) -> Value {
        let r = post(c, text);
        assert_eq!(r.method, "POST");
        assert!(r.url.expose().ends_with(TOKEN));
        body(&r)
    }

    #[test]
    fn known_answer_signature() {
        // python3: base64.b64encode(hmac.new(b"1599360473\ndemo-lark-secret",
        //          digestmod=hashlib.sha256).digest())
        assert_eq!(sign(1_599_360_473, SECRET), SIGN);
    }

    #[test]
    fn request_shape_signed_and_unsigned() {
        assert_eq!(
            sent(&chat(true), "hi"),
            json!({
                "msg_type": "text",
                "content": {"text": "hi"},
                "timestamp": "1599360473",
                "sign": SIGN,
            })
        );
        assert_eq!(
            sent(&chat(false), "hi"),
            json!({"msg_type": "text", "content": {"text": "hi"}})
        );
    }

    #[test]
    fn mention_tags_are_broken() {
        let b = sent(
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
        let b = sent(&chat(false), &"字".repeat(10_000));
        let text = b["content"]["text"].as_str().unwrap_or_default();
        assert!(text.len() <= MAX_TEXT_BYTES && text.ends_with('…'));
    }

    #[test]
    fn classifies_answers() {
        let c: &dyn Destination = &chat(true);
        let c =
            |status, headers: &[(&str, &str)], body: &str| c.classify(&resp(status, headers, body));
        for ok in [
            r#"{"StatusCode":0,"StatusMessage":"success","code":0,"data":{},"msg":"success"}"#,
            r#"{"Extra":null,"StatusCode":0,"StatusMessage":"success"}"#,
        ] {
            assert_eq!(c(200, &[], ok), Outcome::Sent { remote_id: None });
        }
        assert_eq!(
            c(200, &[], r#"{"code":19021,"data":{},"msg":"sign match fail or timestamp is not within one hour from current time"}"#),
            Outcome::Permanent {
                reason: "lark: code 19021: sign match fail or timestamp is not within one hour from current time (signature rejected: check `secret`, and that this server's clock is right)".into()
            }
        );
        for (body, needle) in [
            (r#"{"code":9499,"msg":"Bad Request","data":{}}"#, "9499"),
            (r#"{"code":19024,"msg":"Key Words Not Found"}"#, "keyword"),
        ] {
            assert!(matches!(
                c(200, &[], body),
                Outcome::Permanent { reason } if reason.contains(needle)
            ));
        }
        // The rate limit arrives with HTTP 200 or 400.
        for status in [200, 400] {
            assert!(matches!(
                c(status, &[], r#"{"code":11232,"msg":"frequency limited psm[lark.oapi.app_platform_runtime]appID[1]","data":{}}"#),
                Outcome::Retry { reason, after: None } if reason.contains("11232")
            ));
        }
        assert_eq!(
            c(429, &[("x-ogw-ratelimit-reset", "7")], ""),
            Outcome::Retry {
                reason: "lark: HTTP 429".into(),
                after: Some(Duration::from_secs(7))
            }
        );
        assert!(matches!(c(502, &[], "bad gateway"), Outcome::Retry { .. }));
        assert!(matches!(
            c(404, &[], "404 page not found"),
            Outcome::Permanent { .. }
        ));
        assert!(matches!(c(200, &[], "<html>"), Outcome::Retry { .. }));
        let o = c(
            400,
            &[],
            r#"{"code":19001,"msg":"param invalid: incoming webhook access token invalid"}"#,
        );
        assert!(matches!(o, Outcome::Permanent { .. }), "{o:?}");
        let r = reason(o);
        assert!(r.contains("`webhook_url`"));
        assert!(!r.contains(TOKEN) && !r.contains(SECRET));
    }

    #[test]
    fn fields_are_validated() {
        let env = [("LARK_TOKEN", TOKEN), ("LARK_SECRET", SECRET)];
        let good = "{ webhook_url = \"https://open.feishu.cn/open-apis/bot/v2/hook/${LARK_TOKEN}\", secret = \"${LARK_SECRET}\" }";
        let (d, p) = bind(&REGISTRATION, "{}", good, &env);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(d.map(|d| d.target()).as_deref(), Some("lark custom bot"));
        assert_rejected(
            &REGISTRATION,
            &env,
            TOKEN,
            &[
                ("", "needs `webhook_url`"),
                (
                    "webhook_url = \"https://open.feishu.cn/open-apis/bot/v2/hook/abc\"",
                    "must be an environment reference",
                ),
                (
                    "webhook_url = \"https://open.feishu.cn/${LARK_TOKEN}\"",
                    "/hook/<token>",
                ),
                (
                    "webhook_url = \"https://open.feishu.cn/open-apis/bot/v2/hook/${LARK_TOKEN}\", secret = \"literal\"",
                    "must be an environment reference",
                ),
            ],
        );
        // Unset variables: `validate` works without them.
        let (d, p) = bind(
            &REGISTRATION,
            "{}",
            "{ webhook_url = \"${LARK_HOOK_UNSET}\" }",
            &env,
        );
        assert!(d.is_some() && p[0].message.contains("not set"), "{p:?}");
    }
}
