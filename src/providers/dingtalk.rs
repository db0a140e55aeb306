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
//! Cards: `msgtype: "actionCard"`: `title` (what the notification and the
//! chat list show) the marks and topic title; `text` Markdown with the
//! linked headline, the author, what happened and the category, the
//! excerpt as a quote, the tags and the forum; one button (`singleTitle`
//! "View topic", `singleURL` the post). `at.isAtAll` stays false. No
//! avatar: a Markdown image would be drawn at full width. Escaping per
//! field: `title` is plain text, so only `@`, `<` and `](` get U+200B
//! ([`super::mattermost::inert`]); `text` gets the Markdown dialect with its
//! escaped `<`/`>` as `‹`/`›` (DingTalk documents no entities or
//! backslashes in its Markdown, and the look-alikes show the same
//! whichever it honours). Limits: 20,000 bytes a message: the card drops
//! its tags, then most of the excerpt, until it fits. A chat's own card
//! is an object with `actionCard`.
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
/// A message's body in bytes (DingTalk refuses larger ones).
const MAX_BODY_BYTES: usize = 20_000;
/// Tags shown in the card.
const MAX_TAGS: usize = 10;

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

    const CARDS: bool = true;

    fn check_card(&self, card: &Value) -> Result<(), String> {
        check_card(card)
    }

    fn request(&self, msg: &Message<'_>) -> Outbound {
        let body = match (msg.card, msg.custom) {
            (Some(_), Some(custom)) => action_card(custom["actionCard"].clone()),
            (Some(card), None) => action_card(default_card(card)),
            (None, _) => {
                let title = msg.context["topic"]["title"].as_str();
                let title = title.map(|t| collapse_whitespace(&strip_controls(t)));
                let title = title.filter(|t| !t.is_empty());
                let markdown =
                    json!({"title": title.as_deref().unwrap_or("Discourse"), "text": msg.text});
                json!({"msgtype": "markdown", "markdown": markdown, "at": {"isAtAll": false}})
            }
        };
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

/// The body of an action card message; nobody is mentioned.
fn action_card(card: Value) -> Value {
    json!({"msgtype": "actionCard", "actionCard": card, "at": {"isAtAll": false}})
}

/// The default card: see the module doc. The largest that fits the body
/// limit, dropping the tags, then most of the excerpt.
fn default_card(card: &Card) -> Value {
    for (excerpt, tags) in [(1000, MAX_TAGS), (1000, 0), (200, 0)] {
        let built = card_of(card, excerpt, tags);
        if action_card(built.clone()).to_string().len() <= MAX_BODY_BYTES {
            return built;
        }
    }
    card_of(card, 0, 0)
}

fn card_of(card: &Card, excerpt: usize, tags: usize) -> Value {
    let headline = card::cut(&card.headline(), 200);
    let mut text = vec![format!("#### {}", md_link(&card.url, &headline))];
    let mut byline = Vec::new();
    if let Some(a) = &card.author {
        let name = md(&card::cut(&a.name, 80));
        byline.push(format!("**{name}** @{}", md(&card::cut(&a.username, 60))));
    }
    byline.push(md(&card::cut(&card.label, 100)));
    if let Some(c) = &card.category {
        byline.push(md_link(&c.url, &card::cut(&c.text, 100)));
    }
    text.push(byline.join(" · "));
    if !card.text.is_empty() && excerpt > 0 {
        text.push(format!("> {}", md(&card::cut(&card.text, excerpt))));
    }
    let mut foot = Vec::new();
    let tags: Vec<String> = (card.tags.iter().take(tags))
        .map(|t| md_link(&t.url, &card::cut(&t.text, 60)))
        .collect();
    if !tags.is_empty() {
        foot.push(format!("🏷️ {}", tags.join(", ")));
    }
    foot.push(md(&card::cut(&card.footer.text, 100)));
    text.push(foot.join(" · "));
    json!({
        "title": super::mattermost::inert(&card::cut(&card.headline(), 100)),
        "text": text.join("\n\n"),
        "btnOrientation": "0",
        "singleTitle": super::mattermost::inert(&card::cut(&card.button.text, 40)),
        "singleURL": card.button.url,
    })
}

/// `s` in the card's Markdown: the Markdown dialect, escaped `<`/`>` as
/// `‹`/`›` (see the module doc).
fn md(s: &str) -> String {
    escape(Dialect::Markdown, s)
        .replace("\\<", "‹")
        .replace("\\>", "›")
}

fn md_link(url: &str, text: &str) -> String {
    link(Dialect::Markdown, url, text)
        .replace("\\<", "‹")
        .replace("\\>", "›")
}

/// A chat's own card as DingTalk takes an action card: `title` and `text`,
/// and one button (`singleTitle` and `singleURL`) or a list (`btns`, each
/// with `title` and `actionURL`), within the message limit.
fn check_card(card: &Value) -> Result<(), String> {
    let obj = kit::card_object(card, "a dingtalk card", "`actionCard`", &["actionCard"])?;
    let ac = (obj.get("actionCard").and_then(Value::as_object))
        .ok_or("a dingtalk card needs an `actionCard` object")?;
    for key in ["title", "text"] {
        if !ac.get(key).is_some_and(Value::is_string) {
            return Err(format!("/actionCard/{key} must be a string"));
        }
    }
    match ac.get("btns") {
        Some(btns) => {
            let btns = btns.as_array().ok_or("/actionCard/btns must be an array")?;
            for (i, b) in btns.iter().enumerate() {
                if !b["title"].is_string() || !b["actionURL"].is_string() {
                    return Err(format!(
                        "/actionCard/btns/{i} needs `title` and `actionURL`"
                    ));
                }
            }
        }
        None if !ac.get("singleURL").is_some_and(Value::is_string) => {
            return Err("/actionCard needs `singleTitle` and `singleURL`, or `btns`".into());
        }
        None => {}
    }
    let bytes = action_card(card["actionCard"].clone()).to_string().len();
    if bytes > MAX_BODY_BYTES {
        return Err(format!(
            "the message has {bytes} bytes; DingTalk takes at most {MAX_BODY_BYTES}"
        ));
    }
    Ok(())
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

    use crate::providers::card_tests;

    #[test]
    fn the_default_card_is_an_action_card_with_one_button() {
        let card = card_tests::sample();
        let r = card_tests::request(&chat(true), "t", Some(&card), None, Action::default());
        assert!(r.url.expose().ends_with(&format!("&sign={SIGN}")));
        let url = "https://forum.example.org/t/how-do-i-share-state-between-async-tasks/101/1";
        let text = format!(
            "#### [How do I share state between async tasks?]({url})\n\n**Bob Ramirez** @bob · New topic · [Rust](https://forum.example.org/c/support/rust/7)\n\n> I have a shared map & several ‹tasks›.\n\n🏷️ [async](https://forum.example.org/tag/async) · Example Forum"
        );
        assert_eq!(
            body(&r),
            json!({
                "msgtype": "actionCard",
                "actionCard": {
                    "title": "How do I share state between async tasks?",
                    "text": text,
                    "btnOrientation": "0",
                    "singleTitle": "View topic",
                    "singleURL": url,
                },
                "at": {"isAtAll": false},
            })
        );
    }

    #[test]
    fn a_chats_own_card_replaces_the_card() {
        let custom = json!({"actionCard": {"title": "t", "text": "x", "btns": [{"title": "a", "actionURL": "https://f/1"}]}});
        check_card(&custom).unwrap();
        let card = card_tests::sample();
        let r = card_tests::request(
            &chat(false),
            "t",
            Some(&card),
            Some(&custom),
            Action::default(),
        );
        assert_eq!(body(&r), action_card(custom["actionCard"].clone()));
        assert!(check_card(&json!({"actionCard": {"title": "t", "text": "x"}})).is_err());
        assert!(check_card(&json!({"actionCard": {}, "at": {"isAtAll": true}})).is_err());
    }

    #[test]
    fn a_huge_post_still_gives_a_card_within_every_limit() {
        let mut card = card_tests::huge();
        for t in &mut card.tags {
            t.url = format!("https://forum.example.org/tag/{}", "x".repeat(1900));
        }
        let r = card_tests::request(&chat(true), "t", Some(&card), None, Action::default());
        let b = body(&r);
        check_card(&json!({"actionCard": b["actionCard"]})).unwrap();
        assert!(r.body.len() <= MAX_BODY_BYTES, "{}", r.body.len());
        assert_eq!(b["at"]["isAtAll"], false);
        assert!(b["actionCard"]["title"].as_str().unwrap().chars().count() <= 200);
    }

    #[test]
    fn check_card_names_what_is_over_the_limit() {
        let big = json!({"actionCard": {"title": "t", "text": "x".repeat(20_000), "singleTitle": "v", "singleURL": "https://f/1"}});
        assert!(check_card(&big).unwrap_err().contains("at most 20000"));
        let err = check_card(&json!({"actionCard": {"title": "t", "text": 1}})).unwrap_err();
        assert_eq!(err, "/actionCard/text must be a string");
    }
}
