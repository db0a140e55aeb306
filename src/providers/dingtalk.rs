//! `dingtalk`: a DingTalk custom robot,
//! `POST https://oapi.dingtalk.com/robot/send?access_token=…` (the URL is the
//! credential) with `{"msgtype":"markdown","markdown":{"title","text"},"at":
//! {"isAtAll":false}}`, `title` the topic's (the preview). With the "signature"
//! setting the URL also gets `&timestamp=<ms>&sign=`urlencode(base64(HMAC-SHA256(
//! key = secret, "<ms>\n<secret>"))), at send time (an hour of skew allowed).
//!
//! Dialect: Markdown, strictest reading (no parser test): the renderer escapes
//! it, and mentions notify only when listed in `at`, where `isAtAll` is false.
//!
//! Answers: `{"errcode":0,"errmsg":"ok"}`, mostly HTTP 200; 130101 "send too
//! fast" (20 a minute per robot) and -1 busy retry, other codes are permanent
//! (310000 security check, 300001 bad token). See shared/providers.md §3.

use super::http::{Clock, system_clock};
use super::kit::prelude::*;
use crate::render::escape::strip_controls;
use crate::render::text::collapse_whitespace;

pub const REGISTRATION: Registration =
    kit::registration::<Hook<Settings, Target>>("dingtalk", "DingTalk custom robot webhook");

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
    pub webhook_url: Option<Located<String>>,
    /// Signing secret (`SEC…`), as `${VAR}`, when the robot's security setting is "signature".
    pub secret: Option<Located<String>>,
}

impl kit::HookTarget for Target {
    fn bind(self, chat: Span, cx: &mut Ctx<'_>) -> Bound {
        let missing = "a dingtalk chat needs `webhook_url` (the robot's webhook address, with its access_token as ${VAR})";
        let (url, span) = cx.required_url(&self.webhook_url, "webhook_url", chat, missing)?;
        // Checked once the variables are set; the messages never echo the token.
        if !url.expose().contains("${") {
            let token = kit::has_param(url.expose(), "access_token");
            let params = kit::query_pairs(url.expose());
            let signed = params.iter().any(|(k, _)| k == "timestamp" || k == "sign");
            let no_token = "`webhook_url` has no `access_token=` parameter: copy the robot's whole webhook address";
            let presigned = "`webhook_url` must not carry `timestamp` or `sign`: set `secret` and the relay signs each request";
            kit::check(cx, token, Some(span.clone()), no_token)?;
            kit::check(cx, !signed, Some(span.clone()), presigned)?;
        }
        let secret = cx.opt_secret("secret", &self.secret)?;
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
    let b64 = kit::hmac_sha256_base64(secret, &format!("{timestamp_ms}\n{secret}"));
    url::form_urlencoded::byte_serialize(b64.as_bytes()).collect()
}

const CODES: CodeSpec = CodeSpec {
    prefix: "dingtalk",
    transient: &[130101, -1],
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
    ..kit::ERRCODE
};

impl kit::Chat for DingTalkChat {
    const KIND: &str = REGISTRATION.kind;
    const TARGET: &str = "dingtalk robot";
    const DIALECT: Dialect = Dialect::Markdown;
    // 20 a minute per robot, then 10 minutes of throttling: evenly spaced,
    // no burst, so no minute ever holds more than 20.
    const RATE: Option<Rate> = Some(Rate::per_secs(1, 3));
    const ANSWERS: &dyn kit::Answers = &CODES;

    fn request(&self, msg: &Message<'_>) -> Outbound {
        let title = msg.context["topic"]["title"].as_str();
        let title = title.map(|t| collapse_whitespace(&strip_controls(t)));
        let title = title.filter(|t| !t.is_empty());
        let markdown = json!({"title": title.as_deref().unwrap_or("Discourse"), "text": msg.text});
        let body = json!({"msgtype": "markdown", "markdown": markdown, "at": {"isAtAll": false}});
        let url = match &self.secret {
            Some(secret) => {
                let ts = (self.clock)();
                let query = format!("timestamp={ts}&sign={}", sign(ts, secret.expose()));
                kit::with_query(&self.url, &query)
            }
            None => self.url.clone(),
        };
        Outbound::Http(HttpRequest::post_json(&url, &body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::testkit::{assert_rejected, bind, body, post, post_in, reason, resp};

    const TOKEN: &str = "canarydingtalkaccesstoken0123456789";
    const SECRET: &str = "SECdemo-dingtalk-secret";
    const SIGN: &str = "scQg3DogLBo3FdEpz04DkcE60%2BmxO1SBaxSMAwfZ1jY%3D";

    fn chat(secret: bool) -> DingTalkChat {
        DingTalkChat {
            url: Secret::new(format!(
                "http://127.0.0.1:9/robot/send?access_token={TOKEN}"
            )),
            secret: secret.then(|| Secret::new(SECRET)),
            clock: || 1_599_360_473_000,
        }
    }

    #[test]
    fn known_answer_signature() {
        // python3: urllib.parse.quote_plus(base64.b64encode(hmac.new(
        //   b"SECdemo-dingtalk-secret", b"1599360473000\nSECdemo-dingtalk-secret",
        //   digestmod=hashlib.sha256).digest()))
        assert_eq!(sign(1_599_360_473_000, SECRET), SIGN);
    }

    #[test]
    fn request_shape_signed_and_unsigned() {
        let text = "**x** \\_y\\_";
        let ctx = json!({"topic": {"title": "Line\nbreak\u{7} title"}});
        let r = post_in(&chat(true), text, &ctx);
        assert_eq!(r.method, "POST");
        assert_eq!(
            r.url.expose(),
            format!(
                "http://127.0.0.1:9/robot/send?access_token={TOKEN}&timestamp=1599360473000&sign={SIGN}"
            )
        );
        assert_eq!(
            body(&r),
            json!({
                "msgtype": "markdown",
                "markdown": {"title": "Line break title", "text": text},
                "at": {"isAtAll": false},
            })
        );
        let r = post(&chat(false), text);
        assert_eq!(
            r.url.expose(),
            format!("http://127.0.0.1:9/robot/send?access_token={TOKEN}")
        );
        // post_ctx's topic is "Hello"; without a title: "Discourse".
        assert_eq!(body(&r)["markdown"]["title"], "Hello");
        let r = post_in(&chat(false), text, &json!({}));
        assert_eq!(body(&r)["markdown"]["title"], "Discourse");
        assert!(!r.body.contains(TOKEN) && !r.body.contains(SECRET));
    }

    #[test]
    fn classifies_answers() {
        let c: &dyn Destination = &chat(true);
        let c = |status, body: &str| c.classify(&resp(status, &[], body));
        assert_eq!(
            c(200, r#"{"errcode":0,"errmsg":"ok"}"#),
            Outcome::Sent { remote_id: None }
        );
        assert_eq!(
            c(200, r#"{"errcode":130101,"errmsg":"send too fast, exceed 20 times per minute"}"#),
            Outcome::Retry {
                reason: "dingtalk: errcode 130101: send too fast, exceed 20 times per minute (rate limited: 20 messages a minute per robot)".into(),
                after: Some(THROTTLE_WAIT)
            }
        );
        assert!(matches!(
            c(200, r#"{"status":1111,"wait":5,"source":"x5","punish":"deny","errcode":130101,"errmsg":"send too fast, exceed 20 times per minute"}"#),
            Outcome::Retry { after: Some(d), .. } if d.as_secs() == 5
        ));
        assert!(matches!(
            c(200, r#"{"errcode":-1,"errmsg":"系统繁忙"}"#),
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
            let o = c(200, body);
            assert!(matches!(o, Outcome::Permanent { .. }), "{body}: {o:?}");
            let r = reason(o);
            assert!(r.contains(needle), "{r}");
            assert!(!r.contains(TOKEN) && !r.contains(SECRET));
        }
        assert!(matches!(c(502, ""), Outcome::Retry { .. }));
        assert!(matches!(c(404, ""), Outcome::Permanent { .. }));
        assert!(matches!(c(200, "<html>"), Outcome::Retry { .. }));
    }

    #[test]
    fn fields_are_validated() {
        let env = [("DT_TOKEN", TOKEN), ("DT_SECRET", SECRET)];
        let good = "{ webhook_url = \"https://oapi.dingtalk.com/robot/send?access_token=${DT_TOKEN}\", secret = \"${DT_SECRET}\" }";
        let (d, p) = bind(&REGISTRATION, "{}", good, &env);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(d.map(|d| d.target()).as_deref(), Some("dingtalk robot"));
        assert_rejected(
            &REGISTRATION,
            &env,
            TOKEN,
            &[
                ("", "needs `webhook_url`"),
                (
                    "webhook_url = \"https://oapi.dingtalk.com/robot/send?access_token=abc\"",
                    "must be an environment reference",
                ),
                (
                    "webhook_url = \"https://oapi.dingtalk.com/robot/send?x=${DT_TOKEN}\"",
                    "no `access_token=`",
                ),
                (
                    "webhook_url = \"https://oapi.dingtalk.com/robot/send?access_token=${DT_TOKEN}&timestamp=1&sign=x\"",
                    "must not carry",
                ),
                (
                    "webhook_url = \"https://oapi.dingtalk.com/robot/send?access_token=${DT_TOKEN}\", secret = \"SECliteral\"",
                    "must be an environment reference",
                ),
            ],
        );
    }
}
