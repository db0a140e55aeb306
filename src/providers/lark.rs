//! `lark`: a Lark / Feishu custom bot, `POST https://open.feishu.cn/open-apis/bot/v2/hook/<token>`
//! (or `open.larksuite.com`; the URL is the credential) with `{"msg_type":"text",
//! "content":{"text"}}`, cut to 16 KiB (bodies over 20 KB are refused). With
//! signature verification on, the body adds `timestamp` (Unix seconds, a string)
//! and `sign` = base64(HMAC-SHA256(key = "<timestamp>\n<secret>", message = "")).
//!
//! Dialect: plain text, strictest reading (no parser test): Lark reads
//! `<at user_id="all">` in text, so every `<at` gets U+200B after `<`.
//!
//! Cards: `msg_type: "interactive"` with a card (message card JSON 1.0):
//! a `header` with the marks and topic title (`plain_text`) and the
//! `template` colour nearest the category's among Lark's named ones; a
//! `div` with the excerpt (`lark_md`); a `note` with the author, what
//! happened, the category and tags (`lark_md`, links) and the forum; an
//! `action` with one `button` ("View topic", `primary`) opening the post.
//! No avatar: card images take an uploaded `img_key`, not a URL. Escaping
//! per field: `plain_text` is shown as it is, so only `<` gets U+200B (no
//! tag from a post reads as one); `lark_md` is Lark's own Markdown, which
//! reads `<at>`, `<font>`, `[t](u)`, `**`, `~~`... and takes HTML
//! entities for its special characters, so every one of them goes as a
//! numeric entity ([`lark_md`]). Limits: Lark refuses bodies over 20 KB
//! (custom bots; a card alone may be 30 KB): the card drops its tags, then
//! most of the excerpt, until the body fits. A chat's own card is an
//! object with `card`.
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
/// A custom bot's whole body, in bytes, less room for the signature.
const MAX_CARD_BYTES: usize = 20_000 - 200;
/// Tags shown in the card's note.
const MAX_TAGS: usize = 10;

/// Lark's header templates and their colours (Lark's palette, roughly).
const TEMPLATES: &[(&str, u32)] = &[
    ("blue", 0x3370FF),
    ("wathet", 0x7BC8F8),
    ("turquoise", 0x2EC1B5),
    ("green", 0x34C724),
    ("yellow", 0xFFC60A),
    ("orange", 0xFF8800),
    ("red", 0xF54A45),
    ("carmine", 0xE03C8A),
    ("violet", 0xA150E6),
    ("purple", 0x7F3BF5),
    ("indigo", 0x4954E6),
    ("grey", 0x8F959E),
];

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
    const CARDS: bool = true;

    fn check_card(&self, card: &Value) -> Result<(), String> {
        check_card(card)
    }

    fn request(&self, msg: &Message<'_>) -> Outbound {
        let mut body = match (msg.card, msg.custom) {
            (Some(_), Some(custom)) => json!({"msg_type": "interactive", "card": custom["card"]}),
            (Some(card), None) => json!({"msg_type": "interactive", "card": default_card(card)}),
            (None, _) => {
                let text = break_mentions(&truncate_bytes(msg.text, MAX_TEXT_BYTES));
                json!({"msg_type": "text", "content": {"text": text}})
            }
        };
        if let Some(secret) = &self.secret {
            let timestamp = (self.clock)() / 1000;
            body["timestamp"] = json!(timestamp.to_string());
            body["sign"] = json!(sign(timestamp, secret.expose()));
        }
        Outbound::Http(HttpRequest::post_json(&self.url, &body))
    }
}

/// The default card: see the module doc. The largest that fits the body
/// limit, dropping the tags, then most of the excerpt.
fn default_card(card: &Card) -> Value {
    for (excerpt, tags) in [(1000, MAX_TAGS), (1000, 0), (200, 0)] {
        let built = card_of(card, excerpt, tags);
        if built.to_string().len() <= MAX_CARD_BYTES {
            return built;
        }
    }
    card_of(card, 0, 0)
}

fn card_of(card: &Card, excerpt: usize, tags: usize) -> Value {
    let template = card.color.map_or("blue", nearest_template);
    let title = plain(&card::cut(&card.headline(), 200));
    let mut elements = Vec::new();
    if !card.text.is_empty() && excerpt > 0 {
        let text = lark_md(&card::cut(&card.text, excerpt));
        elements.push(json!({"tag": "div", "text": {"tag": "lark_md", "content": text}}));
    }
    let mut note = Vec::new();
    if let Some(a) = &card.author {
        note.push(format!(
            "**{}** @{}",
            lark_md(&card::cut(&a.name, 80)),
            lark_md(&card::cut(&a.username, 60))
        ));
    }
    note.push(lark_md(&card::cut(&card.label, 100)));
    if let Some(c) = &card.category {
        note.push(md_link(&c.url, &card::cut(&c.text, 100)));
    }
    let tags: Vec<String> = (card.tags.iter().take(tags))
        .map(|t| md_link(&t.url, &card::cut(&t.text, 60)))
        .collect();
    if !tags.is_empty() {
        note.push(tags.join(", "));
    }
    note.push(lark_md(&card::cut(&card.footer.text, 100)));
    elements.push(
        json!({"tag": "note", "elements": [{"tag": "lark_md", "content": note.join(" · ")}]}),
    );
    elements.push(json!({"tag": "action", "actions": [{
        "tag": "button",
        "text": {"tag": "plain_text", "content": plain(&card::cut(&card.button.text, 40))},
        "type": "primary",
        "url": card.button.url,
    }]}));
    json!({
        "config": {"wide_screen_mode": true},
        "header": {"title": {"tag": "plain_text", "content": title}, "template": template},
        "elements": elements,
    })
}

/// The header template nearest `color`: by hue (what a reader names a
/// colour by; plain RGB distance takes sky blue for turquoise), grey for a
/// colour with little saturation.
fn nearest_template(color: card::Color) -> &'static str {
    let Some(wanted) = hue(color.0) else {
        return "grey";
    };
    let apart = |c: u32| {
        let d = (hue(c).unwrap_or(0.0) - wanted).abs();
        d.min(360.0 - d)
    };
    TEMPLATES
        .iter()
        .filter(|(name, _)| *name != "grey")
        .min_by(|(_, a), (_, b)| apart(*a).total_cmp(&apart(*b)))
        .map_or("blue", |(name, _)| name)
}

/// The hue of `rgb` in degrees; `None` when it is nearly grey.
fn hue(rgb: u32) -> Option<f64> {
    let [r, g, b] = [16, 8, 0].map(|s| f64::from((rgb >> s) & 0xFF) / 255.0);
    let (max, min) = (r.max(g).max(b), r.min(g).min(b));
    let chroma = max - min;
    if max == 0.0 || chroma / max < 0.2 {
        return None;
    }
    let h = match max {
        m if m == r => ((g - b) / chroma).rem_euclid(6.0),
        m if m == g => (b - r) / chroma + 2.0,
        _ => (r - g) / chroma + 4.0,
    };
    Some(h * 60.0)
}

/// Text for a `plain_text` field: shown as it is, so only tags are broken
/// (U+200B after every `<`: no `<at>` or other tag can come from a post).
fn plain(s: &str) -> String {
    s.replace('<', "<\u{200B}")
}

/// Text for a `lark_md` field: every character Lark's Markdown reads
/// (emphasis, links, `<at>`/`<font>` tags, lists, quotes, entities) as a
/// numeric HTML entity, which Lark shows as the character itself.
fn lark_md(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 4);
    for c in s.chars() {
        match c {
            '&' | '<' | '>' | '*' | '_' | '~' | '`' | '[' | ']' | '(' | ')' | '#' | '+' | '-'
            | '!' | '|' | '\\' | '"' | '\'' | '$' | '{' | '}' | ':' => {
                out.push_str(&format!("&#{};", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// A `lark_md` link: the text escaped, `(`/`)` in the URL encoded.
fn md_link(url: &str, text: &str) -> String {
    format!(
        "[{}]({})",
        lark_md(text),
        url.replace('(', "%28").replace(')', "%29")
    )
}

/// A chat's own card within Lark's limits: an object with `card`, itself
/// an object with `elements` (or schema 2.0's `body`), whose JSON fits a
/// custom bot's body.
fn check_card(card: &Value) -> Result<(), String> {
    let obj = kit::card_object(card, "a lark card", "`card`", &["card"])?;
    let card =
        (obj.get("card").and_then(Value::as_object)).ok_or("a lark card needs a `card` object")?;
    if let Some(h) = card.get("header")
        && !h["title"]["content"].is_string()
    {
        return Err("/card/header/title needs `tag` and `content`".into());
    }
    let elements = match (card.get("elements"), card.get("body")) {
        (Some(e), _) => e.as_array().ok_or("/card/elements must be an array")?,
        (None, Some(b)) => {
            (b["elements"].as_array()).ok_or("/card/body/elements must be an array")?
        }
        (None, None) => return Err("/card needs `elements`".into()),
    };
    if let Some(i) = elements.iter().position(|e| !e["tag"].is_string()) {
        return Err(format!("/card/elements/{i} has no `tag`"));
    }
    let bytes = Value::Object(card.clone()).to_string().len();
    if bytes > MAX_CARD_BYTES {
        return Err(format!(
            "/card has {bytes} bytes of JSON; a custom bot's message takes at most {MAX_CARD_BYTES}"
        ));
    }
    Ok(())
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

    use crate::providers::card_tests;

    #[test]
    fn the_default_card_is_an_interactive_card_with_a_button() {
        let card = card_tests::sample();
        let r = card_tests::request(&chat(true), "t", Some(&card), None, Action::default());
        let url = "https://forum.example.org/t/how-do-i-share-state-between-async-tasks/101/1";
        assert_eq!(
            body(&r),
            json!({
                "msg_type": "interactive",
                "card": {
                    "config": {"wide_screen_mode": true},
                    "header": {"title": {"tag": "plain_text", "content": "How do I share state between async tasks?"}, "template": "red"},
                    "elements": [
                        {"tag": "div", "text": {"tag": "lark_md", "content": "I have a shared map &#38; several &#60;tasks&#62;."}},
                        {"tag": "note", "elements": [{"tag": "lark_md", "content": "**Bob Ramirez** @bob · New topic · [Rust](https://forum.example.org/c/support/rust/7) · [async](https://forum.example.org/tag/async) · Example Forum"}]},
                        {"tag": "action", "actions": [{"tag": "button", "text": {"tag": "plain_text", "content": "View topic"}, "type": "primary", "url": url}]},
                    ],
                },
                "timestamp": "1599360473",
                "sign": SIGN,
            })
        );
    }

    #[test]
    fn the_template_is_the_nearest_named_colour() {
        let near = |c| nearest_template(card::Color(c));
        assert_eq!(near(0x25AAE2), "wathet");
        assert_eq!(near(0xF1592A), "red");
        assert_eq!(near(0xF7941D), "orange");
        assert_eq!(near(0x0E76BD), "wathet");
        assert_eq!(near(0x2F6FE4), "blue");
        assert_eq!(near(0x808281), "grey");
        assert_eq!(near(0xBF1E2E), "red");
        assert_eq!(near(0x3AB54A), "green");
    }

    #[test]
    fn a_chats_own_card_replaces_the_card() {
        let custom = json!({"card": {"elements": [{"tag": "markdown", "content": "mine"}]}});
        check_card(&custom).unwrap();
        let card = card_tests::sample();
        let r = card_tests::request(
            &chat(false),
            "t",
            Some(&card),
            Some(&custom),
            Action::default(),
        );
        assert_eq!(
            body(&r),
            json!({"msg_type": "interactive", "card": custom["card"]})
        );
        assert!(check_card(&json!({"card": {}, "msg_type": "text"})).is_err());
    }

    #[test]
    fn a_huge_post_still_gives_a_card_within_every_limit() {
        let mut card = card_tests::huge();
        let r = card_tests::request(&chat(true), "t", Some(&card), None, Action::default());
        check_card(&json!({"card": body(&r)["card"]})).unwrap();
        assert!(r.body.len() <= 20_000, "{}", r.body.len());
        // Long tag URLs: the tags go first, the card stays.
        for t in &mut card.tags {
            t.url = format!("https://forum.example.org/tag/{}", "x".repeat(1900));
        }
        let r = card_tests::request(&chat(true), "t", Some(&card), None, Action::default());
        let b = body(&r);
        check_card(&json!({"card": b["card"]})).unwrap();
        assert!(r.body.len() <= 20_000, "{}", r.body.len());
        assert!(!r.body.contains("/tag/"));
        assert_eq!(b["card"]["elements"][2]["tag"], "action");
    }

    #[test]
    fn check_card_names_what_is_wrong() {
        let big =
            json!({"card": {"elements": [{"tag": "markdown", "content": "x".repeat(20_000)}]}});
        assert!(check_card(&big).unwrap_err().contains("at most 19800"));
        let err = check_card(&json!({"card": {"elements": [{}]}})).unwrap_err();
        assert_eq!(err, "/card/elements/0 has no `tag`");
        assert!(check_card(&json!({"card": {"header": {"title": "x"}, "elements": []}})).is_err());
    }
}
