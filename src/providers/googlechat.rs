//! `googlechat`: a Google Chat incoming webhook, `POST
//! https://chat.googleapis.com/v1/spaces/{space}/messages?key=…&token=…` (the URL
//! is the credential) with `{"text"}`, cut to 4 096 UTF-16 units. A `thread` rule
//! adds `thread.threadKey = "topic-<id>"` and `messageReplyOption=
//! REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD`: a topic shares one Chat thread.
//!
//! Dialect: Slack mrkdwn (Chat's `*bold*`, `<url|label>`, `<users/all>`),
//! strictest reading (no parser test): Chat documents no entity decoding
//! (librenms#18234), so [`readable`] turns `&lt;`/`&gt;` into `‹`/`›`: no `<`
//! or `>` from a post reaches Chat, whether it decodes entities or not.
//!
//! Cards: one `cardsV2` card (Chat API `Message.cardsV2`, `CardWithId`,
//! `GoogleAppsCardV1Card`), with the rendered `text` kept above it, what
//! notifications show: a header with the marks and topic title (`title`),
//! the author and what happened (`subtitle`) and the avatar (`imageUrl`,
//! `imageType: CIRCLE`); a section with the excerpt (`textParagraph`); a
//! section with the category (`decoratedText`, a dot in its colour before
//! the link), the tags (`decoratedText`, links) and a `buttonList` whose
//! button ("View topic", in the category's colour) opens the post
//! (`openLink`). Escaping per field, from Chat's card reference: the header
//! is plain text (no markup is read there), so its `<`/`>` become `‹`/`›`
//! like the text's; `textParagraph` and `decoratedText` take a small HTML
//! subset (`<a href>`, `<b>`, `<font color>`...) and get the HTML dialect,
//! not Chat's text markup (`*bold*` or `<url|label>` mean nothing there);
//! the button's text is plain. Limits by construction: 32,000 bytes a
//! message (the text is cut to what the card leaves), 4,096 characters of
//! text, 6 widgets of the 100 a card may hold. A chat's own card is an
//! object with `cardsV2` (and optionally `text`).
//!
//! Answers: `{"error":{"code","message","status"}}` by status; the created
//! message's `name` is its id. See shared/providers.md §2.9.

use super::kit::prelude::*;

pub const REGISTRATION: Registration =
    kit::registration::<Hook<Settings, Target>>("googlechat", "Google Chat space incoming webhook");

/// Longest `text` Chat takes, counted here in UTF-16 units (never fewer than
/// characters, so the cut is safe whichever way Google counts).
const MAX_TEXT: usize = 4096;
/// A message's whole JSON, text and cards, in bytes (Chat API limits).
const MAX_MESSAGE_BYTES: usize = 32_000;
/// Widgets a card may hold; Chat ignores any beyond.
const MAX_WIDGETS: usize = 100;
/// Tags shown in the card.
const MAX_TAGS: usize = 10;

/// `[providers.NAME]` for `kind = "googlechat"`: nothing to set (each chat
/// names its own webhook).
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Settings {}

/// Chat fields for a Google Chat chat.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Target {
    /// The space's incoming webhook URL
    /// (`https://chat.googleapis.com/v1/spaces/…/messages?key=…&token=…`),
    /// as `${VAR}`: the URL is the credential.
    pub webhook_url: Option<Located<String>>,
}

impl kit::HookTarget for Target {
    fn bind(self, chat: Span, cx: &mut Ctx<'_>) -> Bound {
        let missing = "a googlechat chat needs `webhook_url = \"${GOOGLE_CHAT_WEBHOOK_URL}\"` (the space's incoming webhook URL)";
        let (url, span) = cx.required_url(&self.webhook_url, "webhook_url", chat, missing)?;
        let mut scrub = vec![url.clone()];
        if let Ok(u) = url::Url::parse(url.expose()) {
            let path_ok = u.path().contains("/spaces/") && u.path().ends_with("/messages");
            let (mut key, mut token) = (false, false);
            for (k, v) in u.query_pairs().filter(|(k, _)| k == "key" || k == "token") {
                key |= k == "key";
                token |= k == "token";
                scrub.push(Secret::new(v.into_owned()));
            }
            let shape = "`webhook_url` does not look like a Google Chat incoming webhook (https://chat.googleapis.com/v1/spaces/…/messages?key=…&token=…); copy the whole URL from the space's \"Apps & integrations\" > Webhooks";
            if !(path_ok && key && token) {
                cx.warning(Some(span), shape);
            }
        }
        Some(Box::new(GoogleChatChat { url, scrub }))
    }
}

#[derive(Debug)]
struct GoogleChatChat {
    url: Secret,
    /// Values no reason may show: the URL, its `key` and its `token`.
    scrub: Vec<Secret>,
}

/// Rendered mrkdwn with the renderer's entities turned into characters that
/// display as meant and cannot form Chat markup: `&lt;` → `‹`, `&gt;` → `›`,
/// `&amp;` → `&` unless what follows would make an entity again.
fn readable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 1..];
        let (with, len) = match tail {
            t if t.starts_with("lt;") => ("‹", 3),
            t if t.starts_with("gt;") => ("›", 3),
            t if t.starts_with("amp;") && starts_entity(&t[4..]) => ("&amp;", 4),
            t if t.starts_with("amp;") => ("&", 4),
            _ => ("&", 0),
        };
        out.push_str(with);
        rest = &tail[len..];
    }
    out.push_str(rest);
    out
}

/// Whether `s` starts like the rest of an entity: `name;`, `#123;`, `#x1F;`.
fn starts_entity(s: &str) -> bool {
    let body = s.strip_prefix('#').unwrap_or(s);
    let n = body.chars().take_while(char::is_ascii_alphanumeric).count();
    n > 0 && body[n..].starts_with(';')
}

/// `HTTP 404 NOT_FOUND: message`.
const SPEC: Spec = Spec {
    prefix: "googlechat",
    id_ptr: Some("/name"),
    error: |resp, body| {
        kit::joined(body, &["/error/status", "/error/message"])
            .or_else(|| Some(resp.body_snippet()))
    },
    sep: " ",
    hint: |status| match status {
        400 => " (a wrong `key` in the webhook URL, or a message Chat refused)",
        401 | 403 => {
            " (the webhook's token was rejected: the webhook was deleted, or the app is not allowed in the space)"
        }
        404 => " (the space or its webhook no longer exists)",
        _ => "",
    },
};

impl kit::Chat for GoogleChatChat {
    const KIND: &str = REGISTRATION.kind;
    // The space id is not secret, but it sits next to the key and token.
    const TARGET: &str = "Google Chat webhook";
    const DIALECT: Dialect = Dialect::SlackMrkdwn;
    // Threads are named by a key the relay chooses, so they need no message
    // id; editing and deleting need a Chat app's auth, which a webhook lacks.
    const CAPS: Capabilities = Capabilities {
        thread: true,
        edit: false,
        delete: false,
    };
    // About one write a second per space, shared by every app and webhook
    // in it (developers.google.com/workspace/chat/limits).
    const RATE: Option<Rate> = Some(Rate::per_second(1));
    const ANSWERS: &dyn kit::Answers = &SPEC;
    const CARDS: bool = true;

    fn check_card(&self, card: &Value) -> Result<(), String> {
        check_card(card)
    }

    fn request(&self, msg: &Message<'_>) -> Outbound {
        let mut body = match msg.card {
            Some(card) => card_body(msg, card),
            None => json!({ "text": fit(&readable(msg.text), MAX_TEXT, char::len_utf16) }),
        };
        let topic = msg.context["topic"]["id"].as_u64();
        // Only posts reach a webhook chat (no edit or delete capability).
        if let (Action::Post { thread: Some(_) }, Some(topic)) = (msg.action, topic) {
            // The topic's first message opens the thread (the fallback), the others join it.
            body["thread"] = json!({ "threadKey": format!("topic-{topic}") });
            let reply = "messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD";
            return Outbound::Http(HttpRequest::post_json(
                &kit::with_query(&self.url, reply),
                &body,
            ));
        }
        Outbound::Http(HttpRequest::post_json(&self.url, &body))
    }

    fn classify(&self, resp: &HttpResponse) -> Outcome {
        kit::scrub(classify_json(resp, &SPEC), &self.scrub)
    }
}

/// The text and card of a card message: the chat's own card, or the
/// default, with the rendered text cut to what the card leaves of the
/// message limit (see the module doc).
fn card_body(msg: &Message<'_>, card: &Card) -> Value {
    let (text, cards) = match msg.custom {
        // Only the message's look: where it goes stays the relay's.
        Some(custom) => (
            custom["text"].as_str().unwrap_or(msg.text),
            custom["cardsV2"].clone(),
        ),
        None => (msg.text, json!([default_card(card)])),
    };
    let room = MAX_MESSAGE_BYTES.saturating_sub(cards.to_string().len() + 64);
    let text = fit(&readable(text), MAX_TEXT, char::len_utf16);
    let text = fit(&text, room, json_bytes);
    let mut body = json!({ "text": text });
    if !cards.is_null() {
        body["cardsV2"] = cards;
    }
    body
}

/// What a character costs in the JSON body, in bytes.
fn json_bytes(c: char) -> usize {
    match c {
        '"' | '\\' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// The default card: see the module doc. Each piece is cut as plain text
/// before escaping; the whole stays under a third of the message limit.
fn default_card(card: &Card) -> Value {
    const HTML: Dialect = Dialect::Html;
    let mut header = json!({ "title": plain(&card::cut(&card.headline(), 200)) });
    let mut said = card::cut(&card.label, 100);
    if let Some(a) = &card.author {
        said = format!("{} · {said}", card::cut(&a.name, 80));
        if !a.avatar.is_empty() {
            header["imageUrl"] = json!(a.avatar);
            header["imageType"] = json!("CIRCLE");
            header["imageAltText"] = json!(plain(&card::cut(&a.name, 80)));
        }
    }
    header["subtitle"] = json!(plain(&said));
    let mut sections = Vec::new();
    if !card.text.is_empty() {
        let text = escape(HTML, &card::cut(&card.text, 1000));
        sections.push(json!({"widgets": [{"textParagraph": {"text": text}}]}));
    }
    let mut widgets = Vec::new();
    if let Some(c) = &card.category {
        let mut text = link(HTML, &c.url, &card::cut(&c.text, 100));
        if let Some(color) = card.color {
            text = format!("<font color=\"{}\">●</font> {text}", color.hex());
        }
        widgets.push(json!({"decoratedText": {
            "topLabel": "Category",
            "text": text,
            "startIcon": {"knownIcon": "BOOKMARK"},
        }}));
    }
    if !card.tags.is_empty() {
        let tags: Vec<String> = (card.tags.iter().take(MAX_TAGS))
            .map(|t| link(HTML, &t.url, &card::cut(&t.text, 60)))
            .collect();
        widgets.push(json!({"decoratedText": {
            "topLabel": "Tags",
            "text": tags.join(", "),
            "wrapText": true,
            "startIcon": {"knownIcon": "OFFER"},
        }}));
    }
    let mut button = json!({
        "text": plain(&card::cut(&card.button.text, 40)),
        "onClick": {"openLink": {"url": card.button.url}},
    });
    if let Some(color) = card.color {
        let part = |shift: u32| f64::from((color.0 >> shift) & 0xFF) / 255.0;
        let rgb = |v: f64| (v * 1000.0).round() / 1000.0;
        button["color"] =
            json!({"red": rgb(part(16)), "green": rgb(part(8)), "blue": rgb(part(0)), "alpha": 1});
    }
    widgets.push(json!({"buttonList": {"buttons": [button]}}));
    sections.push(json!({ "widgets": widgets }));
    json!({"cardId": "post", "card": {"header": header, "sections": sections}})
}

/// Plain text for a card field Chat shows as it is (the header, a
/// button): `<` and `>` as `‹` `›`, as in the text (see [`readable`]).
fn plain(s: &str) -> String {
    s.replace('<', "‹").replace('>', "›")
}

/// A chat's own card within Chat's limits: the shape of `cardsV2`
/// (`[{"cardId", "card": {"header", "sections": [{"widgets"}]}}]`), at
/// most 100 widgets a card, 4,096 characters of text, and 32,000 bytes in
/// all.
fn check_card(card: &Value) -> Result<(), String> {
    let obj = kit::card_object(card, "a googlechat card", "`cardsV2`", &["cardsV2", "text"])?;
    if let Some(text) = obj.get("text") {
        let t = text.as_str().ok_or("/text must be a string")?;
        kit::ensure_len(
            "/text",
            Some(t.chars().map(char::len_utf16).sum()),
            MAX_TEXT,
        )?;
    }
    let cards = obj
        .get("cardsV2")
        .ok_or("a googlechat card needs `cardsV2`")?;
    let cards = cards.as_array().ok_or("/cardsV2 must be an array")?;
    for (i, c) in cards.iter().enumerate() {
        let at = format!("/cardsV2/{i}");
        if c.get("cardId").is_some_and(|id| !id.is_string()) {
            return Err(format!("{at}/cardId must be a string"));
        }
        let card = (c.get("card").filter(|c| c.is_object()))
            .ok_or_else(|| format!("{at} needs a `card` object"))?;
        if card.get("header").is_some_and(|h| !h["title"].is_string()) {
            return Err(format!("{at}/card/header needs a `title`"));
        }
        let sections = (card.get("sections").map(Value::as_array))
            .unwrap_or(Some(&vec![]))
            .cloned()
            .ok_or_else(|| format!("{at}/card/sections must be an array"))?;
        let mut widgets = 0;
        for (j, s) in sections.iter().enumerate() {
            let ws = (s["widgets"].as_array())
                .ok_or_else(|| format!("{at}/card/sections/{j}/widgets must be an array"))?;
            if ws.is_empty() {
                return Err(format!(
                    "{at}/card/sections/{j}/widgets is empty; a section needs a widget"
                ));
            }
            widgets += ws.len();
        }
        if widgets > MAX_WIDGETS {
            return Err(format!(
                "{at}/card has {widgets} widgets; Chat shows at most {MAX_WIDGETS}"
            ));
        }
    }
    let bytes = card.to_string().len();
    if bytes > MAX_MESSAGE_BYTES {
        return Err(format!(
            "the card has {bytes} bytes of JSON; a Chat message takes at most {MAX_MESSAGE_BYTES}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::testkit::{bind, body, messages, post, reason, reply, request, resp};

    const URL: &str = "https://chat.googleapis.com/v1/spaces/AAAA1234/messages?key=canaryKey123&token=canaryToken456";

    fn chat() -> GoogleChatChat {
        GoogleChatChat {
            url: Secret::new(URL),
            scrub: vec![
                Secret::new(URL),
                Secret::new("canaryKey123"),
                Secret::new("canaryToken456"),
            ],
        }
    }

    #[test]
    fn entities_become_inert_look_alikes() {
        assert_eq!(
            readable("*<https://f/t/1?a=1&amp;b=2|A &amp; B &lt;users/all&gt;>* Q&amp;A"),
            "*<https://f/t/1?a=1&b=2|A & B ‹users/all›>* Q&A"
        );
        // A literal entity typed in a post stays an escaped one.
        assert_eq!(
            readable("&amp;lt;users/all&amp;gt;"),
            "&amp;lt;users/all&amp;gt;"
        );
        assert_eq!(
            readable("&amp;#60; &amp;#x3C; &amp; x;"),
            "&amp;#60; &amp;#x3C; & x;"
        );
        assert_eq!(readable("& &am &amp"), "& &am &amp");
        assert_eq!(readable("&amp;&lt;"), "&‹");
    }

    #[test]
    fn request_shape() {
        let r = post(&chat(), "*<https://f/t/1|&lt;users/all&gt; hi>*");
        assert_eq!(r.method, "POST");
        assert_eq!(r.url.expose(), URL);
        assert_eq!(r.headers.len(), 1);
        assert_eq!(
            body(&r),
            json!({"text": "*<https://f/t/1|‹users/all› hi>*"})
        );
    }

    #[test]
    fn thread_messages_share_the_topic_thread_key() {
        // post_ctx: topic 7.
        for root in [None, Some("spaces/AAAA1234/messages/x.y")] {
            let r = request(&chat(), "hi", reply(root));
            assert_eq!(
                r.url.expose(),
                format!("{URL}&messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD")
            );
            assert_eq!(
                body(&r),
                json!({"text": "hi", "thread": {"threadKey": "topic-7"}})
            );
        }
        // Without a `thread` rule: a plain message.
        let r = post(&chat(), "hi");
        assert_eq!(r.url.expose(), URL);
        assert_eq!(r.body, r#"{"text":"hi"}"#);
        let caps = Destination::capabilities(&chat());
        assert!(caps.thread && !caps.edit && !caps.delete);
    }

    #[test]
    fn long_text_is_cut_to_the_limit() {
        let b = body(&post(&chat(), &"😀 ab ".repeat(2000)));
        let sent = b["text"].as_str().unwrap_or_default();
        let units: usize = sent.chars().map(char::len_utf16).sum();
        assert!(units <= MAX_TEXT && units > MAX_TEXT - 10, "{units}");
        assert!(sent.ends_with('…'));
    }

    #[test]
    fn classifies_google_errors_without_key_or_token() {
        let c: &dyn Destination = &chat();
        assert_eq!(
            c.classify(&resp(
                200,
                &[],
                r#"{"name":"spaces/AAAA1234/messages/x.y","text":"t"}"#
            )),
            Outcome::Sent {
                remote_id: Some("spaces/AAAA1234/messages/x.y".into())
            }
        );
        assert_eq!(
            c.classify(&resp(200, &[], "")),
            Outcome::Sent { remote_id: None }
        );
        let limited = r#"{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED"}}"#;
        assert_eq!(
            c.classify(&resp(429, &[("Retry-After", "5")], limited)),
            Outcome::Retry {
                reason: "googlechat: HTTP 429 RESOURCE_EXHAUSTED: Resource has been exhausted (e.g. check quota).".into(),
                after: Some(Duration::from_secs(5))
            }
        );
        assert!(matches!(
            c.classify(&resp(503, &[], r#"{"error":{"code":503,"message":"The service is currently unavailable.","status":"UNAVAILABLE"}}"#)),
            Outcome::Retry { after: None, .. }
        ));
        for (status, body, want) in [
            (
                400,
                r#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT"}}"#,
                "INVALID_ARGUMENT",
            ),
            (
                401,
                r#"{"error":{"code":401,"message":"Request had invalid authentication credentials (token canaryToken456).","status":"UNAUTHENTICATED"}}"#,
                "token was rejected",
            ),
            (
                403,
                r#"{"error":{"code":403,"message":"The caller does not have permission","status":"PERMISSION_DENIED"}}"#,
                "PERMISSION_DENIED",
            ),
            (
                404,
                r#"{"error":{"code":404,"message":"Requested entity was not found.","status":"NOT_FOUND"}}"#,
                "no longer exists",
            ),
        ] {
            let o = c.classify(&resp(status, &[], body));
            assert!(matches!(o, Outcome::Permanent { .. }), "{status}: {o:?}");
            let r = reason(o);
            assert!(r.contains(want), "{r}");
            assert!(
                !r.contains("canaryToken456") && !r.contains("canaryKey123"),
                "{r}"
            );
        }
    }

    #[test]
    fn target_validation() {
        let env = [
            ("GC", URL),
            ("SPACE", "https://chat.google.com/room/AAAA1234"),
        ];
        let run = |t: &str| {
            let (d, p) = bind(&REGISTRATION, "{}", t, &env);
            (d.is_some(), messages(&p))
        };
        assert_eq!(run("{ webhook_url = \"${GC}\" }"), (true, vec![]));
        let (ok, p) = run("{ webhook_url = \"${SPACE}\" }");
        assert!(ok && p[0].contains("does not look like"), "{p:?}");
        let (ok, p) = run("{}");
        assert!(!ok && p[0].contains("needs `webhook_url"), "{p:?}");
        let (ok, p) = run(
            "{ webhook_url = \"https://chat.googleapis.com/v1/spaces/A/messages?key=k&token=t\" }",
        );
        assert!(!ok && p[0].contains("environment reference"), "{p:?}");
    }

    use crate::providers::card_tests;

    #[test]
    fn the_default_card_is_a_cards_v2_card_with_a_button() {
        let card = card_tests::sample();
        let r = card_tests::request(&chat(), "*hi* &lt;x&gt;", Some(&card), None, reply(None));
        assert_eq!(
            r.url.expose(),
            format!("{URL}&messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD")
        );
        let url = "https://forum.example.org/t/how-do-i-share-state-between-async-tasks/101/1";
        assert_eq!(
            body(&r),
            json!({
                "text": "*hi* ‹x›",
                "thread": {"threadKey": "topic-7"},
                "cardsV2": [{"cardId": "post", "card": {
                    "header": {
                        "title": "How do I share state between async tasks?",
                        "subtitle": "Bob Ramirez · New topic",
                        "imageUrl": "https://forum.example.org/user_avatar/forum.example.org/bob/96/12_2.png",
                        "imageType": "CIRCLE",
                        "imageAltText": "Bob Ramirez",
                    },
                    "sections": [
                        {"widgets": [{"textParagraph": {"text": "I have a shared map &amp; several &lt;tasks&gt;."}}]},
                        {"widgets": [
                            {"decoratedText": {
                                "topLabel": "Category",
                                "text": "<font color=\"#F1592A\">●</font> <a href=\"https://forum.example.org/c/support/rust/7\">Rust</a>",
                                "startIcon": {"knownIcon": "BOOKMARK"},
                            }},
                            {"decoratedText": {
                                "topLabel": "Tags",
                                "text": "<a href=\"https://forum.example.org/tag/async\">async</a>",
                                "wrapText": true,
                                "startIcon": {"knownIcon": "OFFER"},
                            }},
                            {"buttonList": {"buttons": [{
                                "text": "View topic",
                                "onClick": {"openLink": {"url": url}},
                                "color": {"red": 0.945, "green": 0.349, "blue": 0.165, "alpha": 1},
                            }]}},
                        ]},
                    ],
                }}],
            })
        );
    }

    #[test]
    fn a_chats_own_card_replaces_the_card_and_nothing_else() {
        let custom =
            json!({"text": "mine", "cardsV2": [{"cardId": "c", "card": {"sections": []}}]});
        check_card(&custom).unwrap();
        let card = card_tests::sample();
        let r = card_tests::request(&chat(), "t", Some(&card), Some(&custom), Action::default());
        assert_eq!(body(&r), custom);
        assert!(check_card(&json!({"cardsV2": [], "thread": {}})).is_err());
    }

    #[test]
    fn a_huge_post_still_gives_a_card_within_every_limit() {
        let card = card_tests::huge();
        let text = "😀 <ab> ".repeat(20_000);
        let r = card_tests::request(&chat(), &text, Some(&card), None, Action::default());
        let b = body(&r);
        check_card(&b).unwrap();
        assert!(r.body.len() <= MAX_MESSAGE_BYTES, "{}", r.body.len());
        let widgets = &b["cardsV2"][0]["card"]["sections"][1]["widgets"];
        let tags = widgets[1]["decoratedText"]["text"].as_str().unwrap();
        assert!(tags.contains("tag/t9\"") && !tags.contains("tag/t10\""));
        // A card whose text would overflow the message: the text is cut.
        let fat = "é".repeat(2000);
        let custom = json!({"cardsV2": [{"card": {"sections": [{"widgets": [{"textParagraph": {"text": fat.repeat(7)}}]}]}}]});
        let r = card_tests::request(
            &chat(),
            &text,
            Some(&card),
            Some(&custom),
            Action::default(),
        );
        assert!(r.body.len() <= MAX_MESSAGE_BYTES, "{}", r.body.len());
        assert!(body(&r)["text"].as_str().unwrap().ends_with('…'));
    }

    #[test]
    fn check_card_names_what_is_over_the_limit() {
        let widgets: Vec<Value> = (0..101).map(|_| json!({"divider": {}})).collect();
        let many = json!({"cardsV2": [{"card": {"sections": [{"widgets": widgets}]}}]});
        assert_eq!(
            check_card(&many).unwrap_err(),
            "/cardsV2/0/card has 101 widgets; Chat shows at most 100"
        );
        let big = json!({"cardsV2": [{"card": {"sections": [{"widgets": [{"textParagraph": {"text": "x".repeat(32_000)}}]}]}}]});
        assert!(check_card(&big).unwrap_err().contains("at most 32000"));
        let err = check_card(&json!({"cardsV2": [{"card": {"header": {}}}]})).unwrap_err();
        assert_eq!(err, "/cardsV2/0/card/header needs a `title`");
        assert!(check_card(&json!({"cardsV2": [{}]})).is_err());
    }
}
