//! `wecom`: a WeCom (WeChat Work, 企业微信) group robot,
//! `POST https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=<key>` (the URL is
//! the credential; no signature option) with `{"msgtype":"markdown","markdown":
//! {"content"}}`, cut to 4 096 bytes.
//!
//! Dialect: Markdown, strictest reading (no parser test): `mentioned_list` is
//! never sent (no `@all`), and the escaper breaks `<@userid>` (`\<@\u{200B}…`).
//!
//! Cards: `msgtype: "template_card"` of `card_type: "text_notice"`:
//! `source` the forum (its logo as `icon_url`, its name as `desc`);
//! `main_title` the marks and topic title (`title`) and the author and what
//! happened (`desc`); `sub_title_text` the excerpt; `horizontal_content_list`
//! the author (linked to the profile), the category (linked) and the
//! tags; `jump_list` one link ("View topic"); `card_action` opens the post
//! (required for `text_notice`). Every template card field is plain text:
//! no Markdown is read there, so a backslash would show; instead `@`, `<`,
//! `](` and `$` (`$userName=…$` id translation) get U+200B. Limits: each
//! field is cut to the length WeCom's reference recommends (title 26
//! characters, desc 30, source 13, sub title 112, key names 5, values
//! 26), within the 6 rows and 3 links it allows, so nothing is cut by WeCom
//! mid-word. A chat's own card is an object with `template_card` or `news`
//! (1 to 8 articles; title ≤ 128 bytes, description ≤ 512 bytes).
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

/// `text_notice` limits (WeCom's group robot reference: rows and links
/// allowed, lengths recommended, in characters).
const MAX_ROWS: usize = 6;
const MAX_JUMPS: usize = 3;
/// News limits: articles, and bytes per title and description.
const MAX_ARTICLES: usize = 8;
const MAX_ARTICLE_TITLE: usize = 128;
const MAX_ARTICLE_DESC: usize = 512;

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

    const CARDS: bool = true;

    fn check_card(&self, card: &Value) -> Result<(), String> {
        check_card(card)
    }

    fn request(&self, msg: &Message<'_>) -> Outbound {
        let body = match (msg.card, msg.custom) {
            (Some(_), Some(custom)) => match custom.get("news") {
                Some(news) => json!({"msgtype": "news", "news": news}),
                None => {
                    json!({"msgtype": "template_card", "template_card": custom["template_card"]})
                }
            },
            (Some(card), None) => {
                json!({"msgtype": "template_card", "template_card": default_card(card)})
            }
            (None, _) => {
                let content = truncate_bytes(msg.text, MAX_CONTENT_BYTES);
                json!({"msgtype": "markdown", "markdown": {"content": content}})
            }
        };
        Outbound::Http(HttpRequest::post_json(&self.url, &body))
    }
}

/// The default card: see the module doc.
fn default_card(card: &Card) -> Value {
    // Cut by what the text costs once broken, U+200B included: WeCom
    // may count it.
    let text = |s: &str, max: usize| plain(&fit(s, max, plain_cost));
    let mut said = card.label.clone();
    if let Some(a) = &card.author {
        said = format!("{} · {said}", a.name);
    }
    let mut rows = Vec::new();
    if let Some(a) = &card.author {
        rows.push(json!({"keyname": "By", "value": text(&a.name, 26), "type": 1, "url": a.url}));
    }
    if let Some(c) = &card.category {
        rows.push(json!({"keyname": "In", "value": text(&c.text, 26), "type": 1, "url": c.url}));
    }
    if !card.tags.is_empty() {
        let tags: Vec<&str> = card.tags.iter().map(|t| t.text.as_str()).collect();
        rows.push(json!({"keyname": "Tags", "value": text(&tags.join(", "), 26)}));
    }
    rows.truncate(MAX_ROWS);
    let mut source = json!({"desc": text(&card.footer.text, 13), "desc_color": 0});
    if !card.footer.url.is_empty() {
        source["icon_url"] = json!(card.footer.url);
    }
    let mut t = json!({
        "card_type": "text_notice",
        "source": source,
        "main_title": {"title": text(&card.headline(), 26), "desc": text(&said, 30)},
        "horizontal_content_list": rows,
        "jump_list": [{"type": 1, "url": card.button.url, "title": text(&card.button.text, 13)}],
        "card_action": {"type": 1, "url": card.url},
    });
    if !card.text.is_empty() {
        t["sub_title_text"] = json!(text(&card.text, 112));
    }
    t
}

/// Plain text for a template card field: mention (`@`, `<@…>`), link and
/// id-translation (`$userName=…$`) starts broken by U+200B, shown as is.
fn plain(s: &str) -> String {
    super::mattermost::inert(s).replace('$', "$\u{200B}")
}

/// What a character costs in [`plain`]'s output, in characters (at most:
/// `(` is broken only after `]`).
fn plain_cost(c: char) -> usize {
    match c {
        '@' | '<' | '$' | '(' => 2,
        _ => 1,
    }
}

/// A chat's own card within WeCom's limits: a `template_card` with a
/// `card_type`, a `main_title.title` or `sub_title_text`, a `card_action`
/// for `text_notice`, at most 6 rows and 3 links; or `news` with 1 to 8
/// articles, each with a `title` (≤ 128 bytes) and a `url`, descriptions
/// ≤ 512 bytes.
fn check_card(card: &Value) -> Result<(), String> {
    let obj = kit::card_object(
        card,
        "a wecom card",
        "`template_card` or `news`",
        &["template_card", "news"],
    )?;
    match (obj.get("template_card"), obj.get("news")) {
        (Some(t), None) => check_template(t),
        (None, Some(n)) => check_news(n),
        _ => Err("a wecom card has one of `template_card` and `news`".into()),
    }
}

fn check_template(t: &Value) -> Result<(), String> {
    let kind = t["card_type"]
        .as_str()
        .ok_or("/template_card/card_type must be a string")?;
    if !t["main_title"]["title"].is_string() && !t["sub_title_text"].is_string() {
        return Err("/template_card needs `main_title.title` or `sub_title_text`".into());
    }
    if kind == "text_notice" && !t["card_action"]["type"].is_number() {
        return Err(
            "/template_card/card_action (with a `type`) is required for text_notice".into(),
        );
    }
    for (key, max) in [
        ("horizontal_content_list", MAX_ROWS),
        ("jump_list", MAX_JUMPS),
    ] {
        match t.get(key).map(Value::as_array) {
            None => {}
            Some(Some(list)) if list.len() <= max => {}
            Some(Some(list)) => {
                return Err(format!(
                    "/template_card/{key} has {} items; at most {max}",
                    list.len()
                ));
            }
            Some(None) => return Err(format!("/template_card/{key} must be an array")),
        }
    }
    Ok(())
}

fn check_news(n: &Value) -> Result<(), String> {
    let articles = n["articles"]
        .as_array()
        .ok_or("/news/articles must be an array")?;
    if articles.is_empty() || articles.len() > MAX_ARTICLES {
        return Err(format!(
            "/news/articles has {} articles; 1 to {MAX_ARTICLES}",
            articles.len()
        ));
    }
    for (i, a) in articles.iter().enumerate() {
        let at = format!("/news/articles/{i}");
        let title = a["title"]
            .as_str()
            .ok_or_else(|| format!("{at}/title must be a string"))?;
        if title.len() > MAX_ARTICLE_TITLE {
            return Err(format!(
                "{at}/title has {} bytes; at most {MAX_ARTICLE_TITLE}",
                title.len()
            ));
        }
        let desc = a["description"].as_str().map_or(0, str::len);
        if desc > MAX_ARTICLE_DESC {
            return Err(format!(
                "{at}/description has {desc} bytes; at most {MAX_ARTICLE_DESC}"
            ));
        }
        if !a["url"].is_string() {
            return Err(format!("{at}/url must be a string"));
        }
    }
    Ok(())
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

    use crate::providers::card_tests;

    #[test]
    fn the_default_card_is_a_text_notice_template_card() {
        let card = card_tests::sample();
        let r = card_tests::request(&chat(), "t", Some(&card), None, Action::default());
        let url = "https://forum.example.org/t/how-do-i-share-state-between-async-tasks/101/1";
        assert_eq!(
            body(&r),
            json!({
                "msgtype": "template_card",
                "template_card": {
                    "card_type": "text_notice",
                    "source": {"desc": "Example Forum", "desc_color": 0, "icon_url": card.footer.url},
                    "main_title": {"title": "How do I share state…", "desc": "Bob Ramirez · New topic"},
                    "sub_title_text": "I have a shared map & several <\u{200B}tasks>.",
                    "horizontal_content_list": [
                        {"keyname": "By", "value": "Bob Ramirez", "type": 1, "url": "https://forum.example.org/u/bob"},
                        {"keyname": "In", "value": "Rust", "type": 1, "url": "https://forum.example.org/c/support/rust/7"},
                        {"keyname": "Tags", "value": "async"},
                    ],
                    "jump_list": [{"type": 1, "url": url, "title": "View topic"}],
                    "card_action": {"type": 1, "url": url},
                },
            })
        );
    }

    #[test]
    fn a_chats_own_card_may_be_news() {
        let custom = json!({"news": {"articles": [{"title": "t", "url": "https://f/1", "picurl": "https://f/a.png"}]}});
        check_card(&custom).unwrap();
        let card = card_tests::sample();
        let r = card_tests::request(&chat(), "t", Some(&card), Some(&custom), Action::default());
        assert_eq!(body(&r), json!({"msgtype": "news", "news": custom["news"]}));
        let err =
            check_card(&json!({"news": {"articles": [{"title": "x".repeat(129), "url": "u"}]}}));
        assert_eq!(
            err.unwrap_err(),
            "/news/articles/0/title has 129 bytes; at most 128"
        );
        assert!(check_card(&json!({"news": {"articles": []}})).is_err());
    }

    #[test]
    fn a_huge_post_still_gives_a_card_within_every_limit() {
        let card = card_tests::huge();
        let r = card_tests::request(&chat(), "t", Some(&card), None, Action::default());
        let b = body(&r);
        let t = &b["template_card"];
        check_card(&json!({"template_card": t})).unwrap();
        let chars = |p: &str| {
            t.pointer(p)
                .and_then(Value::as_str)
                .unwrap()
                .chars()
                .count()
        };
        assert!(chars("/main_title/title") <= 26);
        assert!(chars("/main_title/desc") <= 30);
        assert!(chars("/sub_title_text") <= 112);
        assert!(chars("/source/desc") <= 13);
        assert!(chars("/horizontal_content_list/2/value") <= 26);
        assert!(r.body.len() < 4096, "{}", r.body.len());
    }

    #[test]
    fn check_card_names_what_is_wrong() {
        let rows: Vec<Value> = (0..7).map(|_| json!({"keyname": "k"})).collect();
        let t = json!({"template_card": {"card_type": "text_notice", "main_title": {"title": "t"}, "card_action": {"type": 1, "url": "u"}, "horizontal_content_list": rows}});
        assert_eq!(
            check_card(&t).unwrap_err(),
            "/template_card/horizontal_content_list has 7 items; at most 6"
        );
        let t =
            json!({"template_card": {"card_type": "text_notice", "main_title": {"title": "t"}}});
        assert!(check_card(&t).unwrap_err().contains("card_action"));
        assert!(check_card(&json!({"markdown": {}})).is_err());
    }
}
