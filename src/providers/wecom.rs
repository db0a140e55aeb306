//! `wecom`: a WeCom (WeChat Work, 企业微信) group robot,
//! `POST https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=<key>` (the URL is
//! the credential; no signature option) with `{"msgtype":"markdown","markdown":
//! {"content"}}`, cut to 4 096 bytes.
//!
//! Dialect: Markdown, strictest reading (no parser test): `mentioned_list` is
//! never sent (no `@all`), and the escaper breaks `<@userid>` (`\<@\u{200B}…`).
//!
//! Answers: `{"errcode":0,"errmsg":"ok"}`, mostly HTTP 200; 45009 (20 a minute
//! per robot) and -1 busy retry, other codes are permanent (93000 bad key).
//! See shared/providers.md §3, apprise `wecombot.py`.

use super::kit::prelude::*;

pub const REGISTRATION: Registration =
    kit::registration::<Hook<Settings, Target>>("wecom", "WeCom (WeChat Work) group robot webhook");

/// WeCom's limit for `markdown.content`, in bytes of UTF-8.
const MAX_CONTENT_BYTES: usize = 4096;

/// The rate limit is per minute: wait that long when it trips.
const RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);

/// `[providers.NAME]` for `kind = "wecom"`: nothing to set (each robot
/// belongs to one group, so everything is on the chat).
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Settings {}

/// Chat fields for a WeCom chat.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Target {
    /// The robot's webhook URL, `https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=<key>`, with the key as `${VAR}`.
    pub webhook_url: Option<Located<String>>,
}

impl kit::HookTarget for Target {
    fn bind(self, chat: Span, cx: &mut Ctx<'_>) -> Bound {
        let missing = "a wecom chat needs `webhook_url` (the robot's webhook address, with its key as ${VAR})";
        let (url, span) = cx.required_url(&self.webhook_url, "webhook_url", chat, missing)?;
        // Checked once the variables are set; the message never echoes the key.
        let no_key =
            "`webhook_url` has no `key=` parameter: copy the robot's whole webhook address";
        let ok = url.expose().contains("${") || kit::has_param(url.expose(), "key");
        kit::check(cx, ok, Some(span.clone()), no_key)?;
        Some(Box::new(WeComChat { url }))
    }
}

#[derive(Debug)]
struct WeComChat {
    url: Secret,
}

/// `text` cut to `max` bytes with `…`.
fn truncate_bytes(text: &str, max: usize) -> String {
    let cut = kit::truncate_bytes(text, max);
    match cut.strip_suffix('…') {
        // A trailing lone backslash would escape the ellipsis.
        Some(head) if text.len() > max && head.ends_with('\\') && !head.ends_with("\\\\") => {
            format!("{}…", &head[..head.len() - 1])
        }
        _ => cut,
    }
}

const CODES: CodeSpec = CodeSpec {
    prefix: "wecom",
    transient: &[45009, -1],
    hint: |code| match code {
        45009 => " (rate limited: 20 messages a minute per robot)",
        93000 => " (invalid webhook key: check `webhook_url`, the robot may have been removed)",
        40058 => " (invalid message; shorten the template)",
        _ => "",
    },
    after: |resp, _, code| {
        resp.retry_after()
            .or((code == Some(45009)).then_some(RATE_LIMIT_WAIT))
    },
    ..kit::ERRCODE
};

impl kit::Chat for WeComChat {
    const KIND: &str = REGISTRATION.kind;
    const TARGET: &str = "wecom group robot";
    const DIALECT: Dialect = Dialect::Markdown;
    // 20 messages a minute per robot: evenly spaced, no burst.
    const RATE: Option<Rate> = Some(Rate::per_secs(1, 3));
    const ANSWERS: &dyn kit::Answers = &CODES;

    fn request(&self, msg: &Message<'_>) -> Outbound {
        let content = truncate_bytes(msg.text, MAX_CONTENT_BYTES);
        let body = json!({"msgtype": "markdown", "markdown": {"content": content}});
        Outbound::Http(HttpRequest::post_json(&self.url, &body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::testkit::{assert_rejected, bind, body, post, reason, resp};

    const KEY: &str = "693a91f6-7xxx-canary-wecom-key";

    fn chat() -> WeComChat {
        WeComChat {
            url: Secret::new(format!("http://127.0.0.1:9/cgi-bin/webhook/send?key={KEY}")),
        }
    }

    #[test]
    fn request_shape() {
        let text = "**[t](https://f.example/t/1)** \\<@\u{200B}all\\>";
        let r = post(&chat(), text);
        assert_eq!(r.method, "POST");
        assert_eq!(
            r.url.expose(),
            format!("http://127.0.0.1:9/cgi-bin/webhook/send?key={KEY}")
        );
        let b = body(&r);
        assert_eq!(
            b,
            json!({"msgtype": "markdown", "markdown": {"content": text}})
        );
        assert!(b.get("mentioned_list").is_none() && !r.body.contains(KEY));
    }

    #[test]
    fn content_is_cut_to_4096_bytes() {
        let b = body(&post(&chat(), &"企".repeat(2000)));
        let content = b["markdown"]["content"].as_str().unwrap_or_default();
        assert!(content.len() <= MAX_CONTENT_BYTES && content.ends_with('…'));
        let cut = truncate_bytes(&format!("{}\\*more", "a".repeat(4092)), MAX_CONTENT_BYTES);
        assert!(
            !cut.contains('\\'),
            "a lone backslash must not escape the ellipsis"
        );
        assert_eq!(truncate_bytes("a\\…", 10), "a\\…");
    }

    #[test]
    fn classifies_answers() {
        let c: &dyn Destination = &chat();
        let c = |status, body: &str| c.classify(&resp(status, &[], body));
        assert_eq!(
            c(200, r#"{"errcode":0,"errmsg":"ok"}"#),
            Outcome::Sent { remote_id: None }
        );
        assert_eq!(
            c(200, r#"{"errcode":45009,"errmsg":"api freq out of limit, hint: [1700000000_1_abc], from ip: 203.0.113.7, more info at https://open.work.weixin.qq.com/devtool/query?e=45009"}"#),
            Outcome::Retry {
                reason: "wecom: errcode 45009: api freq out of limit, hint: [1700000000_1_abc], from ip: 203.0.113.7, more info at https://open.work.weixin.qq.com/devtool/query?e=45009 (rate limited: 20 messages a minute per robot)".into(),
                after: Some(RATE_LIMIT_WAIT)
            }
        );
        assert!(matches!(
            c(200, r#"{"errcode":-1,"errmsg":"system busy"}"#),
            Outcome::Retry { after: None, .. }
        ));
        let o = c(
            200,
            r#"{"errcode":93000,"errmsg":"invalid webhook url, hint: [1700000000_2_def], from ip: 203.0.113.7, more info at https://open.work.weixin.qq.com/devtool/query?e=93000"}"#,
        );
        assert!(matches!(o, Outcome::Permanent { .. }), "{o:?}");
        let r = reason(o);
        assert!(r.contains("93000") && r.contains("`webhook_url`"));
        assert!(!r.contains(KEY));
        assert!(matches!(
            c(
                200,
                r#"{"errcode":40058,"errmsg":"markdown.content exceed max length 4096"}"#
            ),
            Outcome::Permanent { .. }
        ));
        assert!(matches!(c(503, ""), Outcome::Retry { .. }));
        assert!(matches!(c(200, ""), Outcome::Retry { .. }));
    }

    #[test]
    fn fields_are_validated() {
        let env = [("WECOM_KEY", KEY)];
        let good = "{ webhook_url = \"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=${WECOM_KEY}\" }";
        let (d, p) = bind(&REGISTRATION, "{}", good, &env);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(d.map(|d| d.target()).as_deref(), Some("wecom group robot"));
        assert_rejected(
            &REGISTRATION,
            &env,
            KEY,
            &[
                ("", "needs `webhook_url`"),
                (
                    "webhook_url = \"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=abc\"",
                    "must be an environment reference",
                ),
                (
                    "webhook_url = \"https://qyapi.weixin.qq.com/cgi-bin/webhook/${WECOM_KEY}\"",
                    "no `key=`",
                ),
            ],
        );
    }
}
