//! `wecom`: a WeCom (WeChat Work, 企业微信) group robot.
//!
//! `POST https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=<key>` (the
//! URL is the credential; WeCom robots have no signature option) with
//! `{"msgtype":"markdown","markdown":{"content":…}}`.
//!
//! Dialect: Markdown, escaped by the renderer. Markdown messages cannot
//! carry `mentioned_list` (never sent anyway, so no `@all`); `<@userid>` in
//! the text is broken by the escaper (`\<@\u{200B}…`). Content is cut to
//! WeCom's 4 096-byte limit on a character boundary.
//!
//! Answers: HTTP 200 `{"errcode":0,"errmsg":"ok"}`; any other `errcode` is
//! an error: 45009 rate limit (20 messages a minute per robot), -1 busy,
//! 93000 invalid webhook key. See shared/providers.md §3, apprise
//! `wecombot.py`.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use serde_spanned::Spanned;

use super::kit::{self, CodeSpec, Provider, classify_code};
use super::{
    Capabilities, Destination, HttpRequest, HttpResponse, Message, Outbound, Outcome, Registration,
};
use crate::config::Rate;
use crate::config::de::Ctx;
use crate::config::env::Secret;
use crate::render::Dialect;

pub const REGISTRATION: Registration =
    kit::registration::<WeCom>("wecom", "WeCom (WeChat Work) group robot webhook");

/// WeCom's limit for `markdown.content`, in bytes of UTF-8.
const MAX_CONTENT_BYTES: usize = 4096;

/// Worth retrying: the robot's rate limit and "system busy".
const TRANSIENT_CODES: &[i64] = &[45009, -1];

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
    #[schemars(with = "Option<String>")]
    pub webhook_url: Option<Spanned<String>>,
}

#[derive(Debug)]
struct WeCom;

impl Provider for WeCom {
    type Settings = Settings;
    type Target = Target;

    fn new(_: Settings, _: &mut Ctx<'_>) -> Option<Self> {
        Some(WeCom)
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
            "a wecom chat needs `webhook_url` (the robot's webhook address, with its key as ${VAR})",
        )?;
        if !url.expose().contains("${") {
            let has_key = url::Url::parse(url.expose())
                .is_ok_and(|u| u.query_pairs().any(|(k, v)| k == "key" && !v.is_empty()));
            if !has_key {
                // Never echo the value: it holds the key.
                cx.error(
                    Some(raw_span.clone()),
                    "`webhook_url` has no `key=` parameter: copy the robot's whole webhook address",
                );
                return None;
            }
        }
        Some(Box::new(WeComChat { url }))
    }
}

#[derive(Debug)]
struct WeComChat {
    url: Secret,
}

/// `text` cut to at most `max` bytes on a character boundary, with `…`.
fn truncate_bytes(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let ellipsis = '…';
    let mut end = max.saturating_sub(ellipsis.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    // A trailing lone backslash would escape the ellipsis.
    let mut head = &text[..end];
    if head.ends_with('\\') && !head.ends_with("\\\\") {
        head = &head[..head.len() - 1];
    }
    format!("{head}{ellipsis}")
}

impl Destination for WeComChat {
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
        // 20 messages a minute per robot: evenly spaced, no burst.
        Some(Rate::per_secs(1, 3))
    }

    fn target(&self) -> String {
        "wecom group robot".into()
    }

    fn request(&self, msg: &Message<'_>) -> Outbound {
        let body = json!({
            "msgtype": "markdown",
            "markdown": {"content": truncate_bytes(msg.text, MAX_CONTENT_BYTES)},
        });
        Outbound::Http(HttpRequest::post_json(&self.url, &body))
    }

    fn classify(&self, resp: &HttpResponse) -> Outcome {
        classify_code(resp, &CODES)
    }
}

/// Answers: `{"errcode": 0, "errmsg": "ok"}`, mostly with HTTP 200.
const CODES: CodeSpec = CodeSpec {
    prefix: "wecom",
    word: "errcode",
    code_ptrs: &["/errcode"],
    msg_ptrs: &["/errmsg"],
    transient: TRANSIENT_CODES,
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
};

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use crate::providers::Instance;
    use std::collections::HashMap;

    const KEY: &str = "693a91f6-7xxx-canary-wecom-key";

    fn chat() -> WeComChat {
        WeComChat {
            url: Secret::new(format!("http://127.0.0.1:9/cgi-bin/webhook/send?key={KEY}")),
        }
    }

    fn resp(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        }
    }

    fn request(text: &str) -> HttpRequest {
        let ctx = json!({});
        match chat().request(&Message {
            chat: "c",
            text,
            context: &ctx,
            action: Default::default(),
            delivery: None,
        }) {
            Outbound::Http(r) => r,
            _ => panic!("expected HTTP"),
        }
    }

    #[test]
    fn request_shape() {
        let r = request("**[t](https://f.example/t/1)** \\<@\u{200B}all\\>");
        assert_eq!(r.method, "POST");
        assert_eq!(
            r.url.expose(),
            format!("http://127.0.0.1:9/cgi-bin/webhook/send?key={KEY}")
        );
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            body,
            json!({"msgtype": "markdown", "markdown": {"content": "**[t](https://f.example/t/1)** \\<@\u{200B}all\\>"}})
        );
        assert!(body.get("mentioned_list").is_none() && !r.body.contains(KEY));
    }

    #[test]
    fn content_is_cut_to_4096_bytes() {
        let r = request(&"企".repeat(2000));
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        let content = body["markdown"]["content"].as_str().unwrap();
        assert!(content.len() <= MAX_CONTENT_BYTES && content.ends_with('…'));
        let cut = truncate_bytes(&format!("{}\\*more", "a".repeat(4092)), MAX_CONTENT_BYTES);
        assert!(
            !cut.contains('\\'),
            "a lone backslash must not escape the ellipsis"
        );
    }

    #[test]
    fn classifies_answers() {
        let c = chat();
        assert_eq!(
            c.classify(&resp(200, r#"{"errcode":0,"errmsg":"ok"}"#)),
            Outcome::Sent { remote_id: None }
        );
        assert_eq!(
            c.classify(&resp(200, r#"{"errcode":45009,"errmsg":"api freq out of limit, hint: [1700000000_1_abc], from ip: 203.0.113.7, more info at https://open.work.weixin.qq.com/devtool/query?e=45009"}"#)),
            Outcome::Retry {
                reason: "wecom: errcode 45009: api freq out of limit, hint: [1700000000_1_abc], from ip: 203.0.113.7, more info at https://open.work.weixin.qq.com/devtool/query?e=45009 (rate limited: 20 messages a minute per robot)".into(),
                after: Some(RATE_LIMIT_WAIT)
            }
        );
        assert!(matches!(
            c.classify(&resp(200, r#"{"errcode":-1,"errmsg":"system busy"}"#)),
            Outcome::Retry { after: None, .. }
        ));
        let Outcome::Permanent { reason } = c.classify(&resp(
            200,
            r#"{"errcode":93000,"errmsg":"invalid webhook url, hint: [1700000000_2_def], from ip: 203.0.113.7, more info at https://open.work.weixin.qq.com/devtool/query?e=93000"}"#,
        )) else {
            panic!("93000 is permanent")
        };
        assert!(reason.contains("93000") && reason.contains("`webhook_url`"));
        assert!(!reason.contains(KEY));
        assert!(matches!(
            c.classify(&resp(
                200,
                r#"{"errcode":40058,"errmsg":"markdown.content exceed max length 4096"}"#
            )),
            Outcome::Permanent { .. }
        ));
        assert!(matches!(c.classify(&resp(503, "")), Outcome::Retry { .. }));
        assert!(matches!(c.classify(&resp(200, "")), Outcome::Retry { .. }));
    }

    fn bind(target: &str) -> (Option<Box<dyn Destination>>, Vec<String>) {
        let env: HashMap<String, String> = [("WECOM_KEY".to_string(), KEY.to_string())].into();
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
            "webhook_url = \"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=${WECOM_KEY}\"",
        );
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(d.unwrap().target(), "wecom group robot");
        let (_, p) = bind("");
        assert!(p[0].contains("needs `webhook_url`"), "{p:?}");
        let (_, p) =
            bind("webhook_url = \"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=abc\"");
        assert!(p[0].contains("must be an environment reference"), "{p:?}");
        let (_, p) =
            bind("webhook_url = \"https://qyapi.weixin.qq.com/cgi-bin/webhook/${WECOM_KEY}\"");
        assert!(p[0].contains("no `key=`"), "{p:?}");
        assert!(!p[0].contains(KEY));
    }
}
