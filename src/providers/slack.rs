//! `slack`: the Web API (`POST {api_url}/chat.postMessage`, `chat.update`,
//! `chat.delete`, bot token as `Bearer`; `remote_id` = `CHANNEL_ID/ts`) or an
//! incoming webhook URL (the credential). Body: JSON `{"channel", "text"}`,
//! unfurling off.
//!
//! Dialect: mrkdwn (`&`, `<`, `>` escaped; `link_names` never set, so
//! `<!channel>` or `@here` stays text): the strictest reading of Slack's
//! formatting docs, as no Slack parser is available to test with.
//!
//! Cards: Block Kit blocks inside one attachment, for the category's colour
//! bar (Slack draws a colour only on attachments): a context line with the
//! avatar, author, what happened and the category; a section with the
//! linked title and the excerpt; a context line with the tags, the forum
//! and the time (`<!date>`, shown in each reader's zone). The rendered text
//! stays the top-level `text`, what notifications and screen readers read.
//! No button: a URL button on an app without interactivity shows a warning
//! when clicked, and the title is the link. A chat's own card is an object
//! with `blocks` and/or `attachments` (and optionally `text`).
//!
//! Answers: the Web API says 200 with `{"ok":false,"error"}` (a few codes are
//! transient); webhooks a status and a text code. See shared/providers.md §2.1.

use super::kit::prelude::*;

pub const REGISTRATION: Registration =
    kit::registration::<Slack>("slack", "Slack Web API (bot token) or incoming webhook");

const DEFAULT_API_URL: &str = "https://slack.com/api";

/// Web API error codes worth retrying; every other `ok:false` is permanent.
const TRANSIENT_ERRORS: &[&str] = &[
    "ratelimited",
    "rate_limited",
    "fatal_error",
    "internal_error",
    "request_timeout",
    "service_unavailable",
];

/// `[providers.NAME]` for `kind = "slack"`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Settings {
    /// Bot token (`xoxb-…`) with `chat:write`, as `${VAR}`. Needed for chats that name a `channel`.
    pub token: Option<Located<String>>,
    /// Web API base URL (default `https://slack.com/api`).
    pub api_url: Option<Located<String>>,
    /// Display name override (needs `chat:write.customize`).
    pub username: Option<String>,
    /// Avatar URL override (needs `chat:write.customize`).
    pub icon_url: Option<String>,
}

/// Chat fields for a Slack chat: `channel` (Web API) or `webhook_url`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Target {
    /// Channel id (`C0123…`) or name (`#general`), for the Web API.
    pub channel: Option<Located<String>>,
    /// Incoming webhook URL, as `${VAR}` (the URL is the credential).
    pub webhook_url: Option<Located<String>>,
}

#[derive(Debug)]
struct Slack {
    token: Option<Secret>,
    api_url: String,
    username: Option<String>,
    icon_url: Option<String>,
}

impl Provider for Slack {
    type Settings = Settings;
    type Target = Target;

    fn new(s: Settings, _: &Table, cx: &mut Ctx<'_>) -> Option<Self> {
        Some(Slack {
            token: cx.opt_secret("token", &s.token)?,
            api_url: cx.base_url("api_url", &s.api_url, DEFAULT_API_URL)?,
            username: s.username,
            icon_url: s.icon_url,
        })
    }

    fn bind_target(self: Arc<Self>, t: Target, chat: Span, cx: &mut Ctx<'_>) -> Bound {
        let both = "set either `channel` (Web API) or `webhook_url` (incoming webhook), not both";
        let neither = "a slack chat needs `channel` (with a bot token) or `webhook_url`";
        let mode = match kit::one_of(cx, &t.channel, &t.webhook_url, chat, both, neither)? {
            OneOf::First(c) => {
                let missing = "posting to a `channel` needs a bot token: set `token = \"${SLACK_BOT_TOKEN}\"` on a [providers.NAME] table with kind = \"slack\", or use `webhook_url`";
                let token = cx.require_token(&self.token, Some(c.span()), missing)?;
                let channel = c.get_ref().trim().trim_start_matches('#').to_string();
                if channel.is_empty() {
                    return kit::reject(cx, Some(c.span()), "`channel` is empty");
                }
                Mode::Api { token, channel }
            }
            OneOf::Second(u) => Mode::Webhook {
                url: cx.url("webhook_url", u, true)?,
            },
        };
        Some(Box::new(SlackChat {
            instance: self,
            mode,
        }))
    }
}

#[derive(Debug)]
enum Mode {
    Api { token: Secret, channel: String },
    Webhook { url: Secret },
}

#[derive(Debug)]
struct SlackChat {
    instance: Arc<Slack>,
    mode: Mode,
}

impl kit::Chat for SlackChat {
    const KIND: &str = REGISTRATION.kind;
    const DIALECT: Dialect = Dialect::SlackMrkdwn;
    const RATE: Option<Rate> = Some(Rate::per_second(1));
    const READS_CONTEXT: bool = false;
    const CARDS: bool = true;

    fn check_card(&self, card: &Value) -> Result<(), String> {
        check_card(card)
    }

    fn capabilities(&self) -> Capabilities {
        // The Web API answers the message `ts`; a webhook just `ok`.
        kit::capabilities_if(matches!(self.mode, Mode::Api { .. }))
    }

    fn target(&self) -> String {
        match &self.mode {
            Mode::Api { channel, .. } => format!("#{channel}"),
            Mode::Webhook { .. } => "incoming webhook".into(),
        }
    }

    fn request(&self, msg: &Message<'_>) -> Outbound {
        let (token, channel) = match &self.mode {
            Mode::Api { token, channel } => (token, channel.as_str()),
            Mode::Webhook { url } => {
                let mut body = json!({"text": msg.text, "unfurl_links": false});
                put_card(&mut body, msg);
                return Outbound::Http(HttpRequest::post_json(url, &body));
            }
        };
        // `concat`, not `format!`: this runs for every delivery.
        let url = |method: &str| Secret::new([&self.instance.api_url, "/", method].concat());
        let req = match msg.action {
            Action::Post { thread } => {
                let body = PostMessage {
                    channel,
                    text: msg.text,
                    unfurl_links: false,
                    unfurl_media: false,
                    username: self.instance.username.as_deref(),
                    icon_url: self.instance.icon_url.as_deref(),
                    thread_ts: (thread.and_then(|t| t.root)).map(|r| kit::split_id(r, channel).1),
                };
                let mut body = serde_json::to_value(&body).unwrap_or_default();
                put_card(&mut body, msg);
                HttpRequest::post_json(&url("chat.postMessage"), &body)
            }
            // `chat.update` refuses channel names: the id comes from the post's answer.
            Action::Edit { remote_id } => {
                let (channel, ts) = kit::split_id(remote_id, channel);
                let mut body = json!({"channel": channel, "ts": ts, "text": msg.text});
                // An update keeps what it does not name: a card turned
                // into text (struck through) must clear its attachment.
                body["attachments"] = json!([]);
                put_card(&mut body, msg);
                HttpRequest::post_json(&url("chat.update"), &body)
            }
            Action::Delete { remote_id } => {
                let (channel, ts) = kit::split_id(remote_id, channel);
                HttpRequest::post_json(&url("chat.delete"), &json!({"channel": channel, "ts": ts}))
            }
        };
        Outbound::Http(req.bearer(token))
    }

    fn classify(&self, resp: &HttpResponse) -> Outcome {
        let base = classify_status(resp);
        if !matches!(base, Outcome::Sent { .. }) || matches!(self.mode, Mode::Webhook { .. }) {
            return base;
        }
        // Slack's answers always carry a boolean `ok`; JSON without one (a
        // proxy's `null`, `{}`) is as unreadable as HTML.
        let body: serde_json::Value = match serde_json::from_slice::<serde_json::Value>(&resp.body)
        {
            Ok(v) if v["ok"].is_boolean() => v,
            _ => return kit::unreadable("slack", resp),
        };
        if body["ok"].as_bool() == Some(true) {
            let remote_id = match (body["channel"].as_str(), body["ts"].as_str()) {
                (Some(channel), Some(ts)) => Some(format!("{channel}/{ts}")),
                (None, ts) => ts.map(str::to_string),
                _ => None,
            };
            return Outcome::Sent { remote_id };
        }
        match body["error"].as_str().unwrap_or("unknown_error") {
            // Edited or deleted after someone removed it in Slack: nothing left to do.
            "message_not_found" => Outcome::Sent { remote_id: None },
            code if TRANSIENT_ERRORS.contains(&code) => Outcome::Retry {
                reason: format!("slack: {code}"),
                after: resp.retry_after(),
            },
            code => Outcome::Permanent {
                reason: format!("slack: {code}{}", hint(code)),
            },
        }
    }

    fn chat_ids(&self) -> Vec<String> {
        match &self.mode {
            // As configured: a channel id (`C0123…`) or a name without `#`.
            Mode::Api { channel, .. } => vec![channel.clone()],
            Mode::Webhook { .. } => vec![],
        }
    }

    fn probe(&self) -> Probe {
        let Mode::Api { token, channel } = &self.mode else {
            return Probe::webhook();
        };
        let url = |method: &str| format!("{}/{method}", self.instance.api_url);
        let get = |url: Secret| HttpRequest::get(url).bearer(token);
        let auth = get(Secret::new(url("auth.test")));
        let mut steps = vec![probe::step("auth.test", auth, judge_auth)];
        // conversations.info takes ids only; a name would read as channel_not_found.
        if looks_like_id(channel) {
            let info = get(probe::query(&url("conversations.info"), "channel", channel));
            steps.push(probe::step("the bot is in the channel", info, judge_member));
        }
        Probe::Http(steps)
    }
}

/// Channel ids are upper-case letters and digits starting C, G or D.
fn looks_like_id(channel: &str) -> bool {
    channel.starts_with(['C', 'G', 'D'])
        && channel.len() >= 9
        && channel
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

/// Slack's `ok:false` answer as a judgement (`ratelimited` and server
/// errors warn, every other code fails with the delivery hint).
fn judge_error(resp: &HttpResponse, body: &Value) -> Judgement {
    let code = match body["error"].as_str() {
        Some(c) => c.to_string(),
        None => {
            return Judgement::fail(
                probe::status_text(resp),
                "an unreadable answer: check api_url",
            );
        }
    };
    let hint = hint(&code)
        .trim()
        .trim_start_matches('(')
        .trim_end_matches(')');
    if TRANSIENT_ERRORS.contains(&code.as_str()) || resp.status >= 500 {
        return Judgement::warn(
            format!("slack: {code}"),
            "Slack is busy: run doctor again later",
        );
    }
    Judgement::fail(format!("slack: {code}"), hint)
}

fn judge_auth(resp: &HttpResponse) -> Judgement {
    let b = probe::body(resp);
    if b["ok"].as_bool() != Some(true) {
        return judge_error(resp, &b);
    }
    let (user, team) = (probe::text(&b, "/user"), probe::text(&b, "/team"));
    Judgement::pass(format!("token works: bot {user} in {team}"))
}

fn judge_member(resp: &HttpResponse) -> Judgement {
    let b = probe::body(resp);
    if b["ok"].as_bool() != Some(true) {
        return judge_error(resp, &b);
    }
    let name = probe::text(&b, "/channel/name");
    match b["channel"]["is_member"].as_bool() {
        Some(true) => Judgement::pass(format!("member of #{name}")),
        Some(false) if b["channel"]["is_archived"].as_bool() == Some(true) => Judgement::fail(
            format!("#{name} is archived"),
            "unarchive it or choose another channel",
        ),
        Some(false) => Judgement::warn(
            format!("not a member of #{name} (is_member: false)"),
            "invite the bot to the channel (/invite @bot); posting works without it only with chat:write.public in public channels",
        ),
        None => Judgement::warn("the answer does not say whether the bot is a member", ""),
    }
}

/// The `chat.postMessage` body, serialized straight from borrowed fields
/// (it is built for every delivery).
#[derive(serde::Serialize)]
struct PostMessage<'a> {
    channel: &'a str,
    text: &'a str,
    unfurl_links: bool,
    unfurl_media: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    icon_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thread_ts: Option<&'a str>,
}

// Block Kit's limits (api.slack.com/reference/block-kit/blocks).
const MAX_BLOCKS: usize = 50;
const MAX_SECTION: usize = 3000;
const MAX_CONTEXT_ELEMENTS: usize = 10;
/// `text` beyond this is cut by Slack; a card's own may not exceed it.
const MAX_TEXT: usize = 40_000;
const MAX_ATTACHMENTS: usize = 20;

/// Adds the message's card (the chat's own, or the default) to `body`.
fn put_card(body: &mut Value, msg: &Message<'_>) {
    let Some(card) = msg.card else { return };
    let part = match msg.custom {
        Some(custom) => custom.clone(),
        None => default_card(card),
    };
    let Value::Object(part) = part else { return };
    for (key, value) in part {
        // Only the message's look: where it goes stays the relay's.
        if matches!(key.as_str(), "blocks" | "attachments" | "text") {
            body[key] = value;
        }
    }
}

/// The default card: see the module doc. Every text fits its field by
/// construction: pieces are cut as plain text, before escaping, against
/// what their escaped form costs.
fn default_card(card: &Card) -> Value {
    const SLACK: Dialect = Dialect::SlackMrkdwn;
    let md = |s: &str, max: usize| escape(SLACK, &card::cut(s, max));
    let mut byline = Vec::new();
    if let Some(a) = &card.author {
        byline.push(format!(
            "{} @{}",
            bold(SLACK, &card::cut(&a.name, 80)),
            md(&a.username, 60)
        ));
    }
    byline.push(md(&card.label, 200));
    if let Some(c) = &card.category {
        byline.push(link(SLACK, &c.url, &card::cut(&c.text, 100)));
    }
    let mut head = Vec::new();
    if let Some(a) = card.author.as_ref().filter(|a| !a.avatar.is_empty()) {
        head.push(
            json!({"type": "image", "image_url": a.avatar, "alt_text": card::cut(&a.name, 80)}),
        );
    }
    head.push(mrkdwn(byline.join(" · ")));
    let headline = card::cut(&card.headline(), 200);
    // `bold` escapes what it is given: the link is wrapped by hand.
    let mut title = format!("*{}*", link(SLACK, &card.url, &headline));
    if title.chars().count() > MAX_SECTION {
        title = bold(SLACK, &headline);
    }
    let room = MAX_SECTION.saturating_sub(title.chars().count() + 1);
    if !card.text.is_empty() && room > 20 {
        let excerpt = fit(&card.text, room, mrkdwn_cost);
        title = format!("{title}\n{}", escape(SLACK, &excerpt));
    }
    let mut foot = Vec::new();
    if !card.tags.is_empty() {
        let tags: Vec<String> = (card.tags.iter().take(MAX_CONTEXT_ELEMENTS))
            .map(|t| link(SLACK, &t.url, &card::cut(&t.text, 100)))
            .collect();
        foot.push(format!("🏷️ {}", tags.join(", ")));
    }
    foot.push(md(&card.footer.text, 200));
    if let (Some(t), Some(shown)) = (card.time, &card.timestamp) {
        foot.push(format!(
            "<!date^{t}^{{date_short_pretty}} {{time}}|{}>",
            md(shown, 40)
        ));
    }
    let mut tail = Vec::new();
    if !card.footer.url.is_empty() {
        tail.push(json!({"type": "image", "image_url": card.footer.url, "alt_text": card::cut(&card.footer.text, 80)}));
    }
    tail.push(mrkdwn(foot.join(" · ")));
    let blocks = json!([
        {"type": "context", "elements": head},
        {"type": "section", "text": mrkdwn(title)},
        {"type": "context", "elements": tail},
    ]);
    let mut attachment = json!({"blocks": blocks});
    kit::put(&mut attachment, "color", card.color.map(card::Color::hex));
    json!({"attachments": [attachment]})
}

/// What a character costs once escaped for mrkdwn.
fn mrkdwn_cost(c: char) -> usize {
    match c {
        '&' => 5,
        '<' | '>' => 4,
        _ => 1,
    }
}

/// A mrkdwn text object. Its pieces were cut to fit; the cut here is the
/// last guard (a forum with very long URLs), so Slack never refuses it.
fn mrkdwn(text: String) -> Value {
    let text = match text.chars().count() > MAX_SECTION {
        true => card::cut(&text, MAX_SECTION),
        false => text,
    };
    json!({"type": "mrkdwn", "text": text})
}

/// A chat's own card within Block Kit's limits.
fn check_card(card: &Value) -> Result<(), String> {
    let obj = kit::card_object(
        card,
        "a slack card",
        "`blocks` and/or `attachments`",
        &["blocks", "attachments", "text"],
    )?;
    if !obj.contains_key("blocks") && !obj.contains_key("attachments") {
        return Err("a slack card needs `blocks` or `attachments`".into());
    }
    if let Some(text) = obj.get("text") {
        let n = text.as_str().map(|t| t.chars().count());
        kit::ensure_len("/text", n, MAX_TEXT)?;
    }
    check_blocks("/blocks", obj.get("blocks"))?;
    if let Some(atts) = obj.get("attachments") {
        let atts = atts.as_array().ok_or("/attachments must be an array")?;
        if atts.len() > MAX_ATTACHMENTS {
            return Err(format!(
                "/attachments has {} attachments; at most {MAX_ATTACHMENTS}",
                atts.len()
            ));
        }
        for (i, a) in atts.iter().enumerate() {
            check_blocks(&format!("/attachments/{i}/blocks"), a.get("blocks"))?;
        }
    }
    Ok(())
}

fn check_blocks(at: &str, blocks: Option<&Value>) -> Result<(), String> {
    let Some(blocks) = blocks else { return Ok(()) };
    let blocks = blocks
        .as_array()
        .ok_or_else(|| format!("{at} must be an array"))?;
    if blocks.len() > MAX_BLOCKS {
        return Err(format!(
            "{at} has {} blocks; Slack takes at most {MAX_BLOCKS}",
            blocks.len()
        ));
    }
    for (i, b) in blocks.iter().enumerate() {
        let here = format!("{at}/{i}");
        if !b["type"].is_string() {
            return Err(format!("{here} has no `type`"));
        }
        if let Some(kind) = b["text"].get("type")
            && !matches!(kind.as_str(), Some("plain_text" | "mrkdwn"))
        {
            return Err(format!(
                "{here}/text/type must be \"plain_text\" or \"mrkdwn\""
            ));
        }
        let text = b["text"]["text"].as_str().map(|t| t.chars().count());
        kit::ensure_len(&format!("{here}/text/text"), text, MAX_SECTION)?;
        if let Some(els) = b["elements"].as_array().filter(|_| b["type"] == "context")
            && els.len() > MAX_CONTEXT_ELEMENTS
        {
            return Err(format!(
                "{here}/elements has {} elements; a context block takes at most {MAX_CONTEXT_ELEMENTS}",
                els.len()
            ));
        }
    }
    Ok(())
}

fn hint(code: &str) -> &'static str {
    match code {
        "channel_not_found" => " (check the channel, and invite the bot to private channels)",
        "not_in_channel" => " (invite the bot to the channel, or grant chat:write.public)",
        "is_archived" => " (the channel is archived)",
        "invalid_auth" | "not_authed" | "token_revoked" | "account_inactive" => {
            " (the bot token was rejected)"
        }
        "missing_scope" => " (the token lacks the chat:write scope)",
        "msg_too_long" => " (the message is too long; shorten the template)",
        "cant_update_message" | "cant_delete_message" => {
            " (a bot can only change its own messages)"
        }
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::testkit::{
        bind_chat, body, card_request, header, huge_card, post, reply, request, resp,
    };
    use std::time::Duration;

    const TOKEN: &str = "xoxb-canary-123";

    fn api_chat() -> SlackChat {
        SlackChat {
            instance: Arc::new(Slack {
                token: Some(Secret::new(TOKEN)),
                api_url: "http://127.0.0.1:9/api".into(),
                username: None,
                icon_url: None,
            }),
            mode: Mode::Api {
                token: Secret::new(TOKEN),
                channel: "general".into(),
            },
        }
    }

    #[test]
    fn web_api_request_shape() {
        let r = post(&api_chat(), "&lt;!channel&gt; hi");
        assert_eq!(r.method, "POST");
        assert_eq!(r.url.expose(), "http://127.0.0.1:9/api/chat.postMessage");
        assert_eq!(
            body(&r),
            json!({"channel": "general", "text": "&lt;!channel&gt; hi", "unfurl_links": false, "unfurl_media": false})
        );
        assert!(body(&r).get("link_names").is_none());
        assert_eq!(header(&r, "Authorization"), Some("Bearer xoxb-canary-123"));
    }

    #[test]
    fn a_huge_post_still_makes_a_card_slack_takes() {
        let r = card_request(&api_chat(), &huge_card());
        let b = body(&r);
        let card = json!({"attachments": b["attachments"]});
        assert_eq!(check_card(&card), Ok(()));
        // The text pieces were cut before escaping: no entity is split.
        let section = b["attachments"][0]["blocks"][1]["text"]["text"]
            .as_str()
            .unwrap();
        assert!(section.chars().count() <= MAX_SECTION);
        assert!(
            !section.contains("&am…") && !section.contains("&l…"),
            "{section}"
        );
        assert_eq!(b["attachments"][0]["color"], "#F1592A");
    }

    #[test]
    fn a_chats_own_card_is_checked_against_block_kit_limits() {
        let block = json!({"type": "section", "text": {"type": "mrkdwn", "text": "x"}});
        assert_eq!(check_card(&json!({"blocks": [block]})), Ok(()));
        let many = json!({"blocks": vec![block.clone(); 51]});
        assert_eq!(
            check_card(&many).unwrap_err(),
            "/blocks has 51 blocks; Slack takes at most 50"
        );
        let long = json!({"attachments": [{"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "x".repeat(3001)}}]}]});
        assert_eq!(
            check_card(&long).unwrap_err(),
            "/attachments/0/blocks/0/text/text has 3001 characters; at most 3000"
        );
        assert!(
            check_card(&json!({"channel": "C1", "blocks": []}))
                .unwrap_err()
                .contains("`channel`")
        );
        assert!(check_card(&json!({"text": "only text"})).is_err());
    }

    #[test]
    fn a_chats_own_card_replaces_the_look_but_not_where_it_goes() {
        let card = huge_card();
        let custom = json!({"blocks": [{"type": "divider"}], "channel": "C_EVIL"});
        let ctx = crate::providers::testkit::post_ctx();
        let r = crate::providers::testkit::http(api_chat().request(&Message {
            chat: "c",
            text: "fallback",
            context: &ctx,
            card: Some(&card),
            custom: Some(&custom),
            action: Action::default(),
            delivery: None,
        }));
        let b = body(&r);
        assert_eq!(b["blocks"], json!([{"type": "divider"}]));
        assert_eq!(b["channel"], "general");
        assert_eq!(b["text"], "fallback");
        assert!(b.get("attachments").is_none());
    }

    #[test]
    fn thread_edit_and_delete_requests() {
        let root = "C0123/1700000000.000100";
        let api = |action| {
            let r = request(&api_chat(), "new text", action);
            (r.url.expose().to_string(), body(&r))
        };
        let (url, b) = api(reply(Some(root)));
        assert!(url.ends_with("/chat.postMessage"));
        assert_eq!(b["thread_ts"], "1700000000.000100");
        assert_eq!(b["channel"], "general");
        // Opening a thread is an ordinary message.
        assert!(api(reply(None)).1.get("thread_ts").is_none());
        let (url, b) = api(Action::Edit { remote_id: root });
        assert!(url.ends_with("/chat.update"));
        assert_eq!(
            b,
            json!({"channel": "C0123", "ts": "1700000000.000100", "text": "new text", "attachments": []})
        );
        let (url, b) = api(Action::Delete { remote_id: root });
        assert!(url.ends_with("/chat.delete"));
        assert_eq!(b, json!({"channel": "C0123", "ts": "1700000000.000100"}));
        // A bare ts (older refs) uses the configured channel.
        let bare = api(Action::Delete {
            remote_id: "1700000000.000100",
        });
        assert_eq!(bare.1["channel"], "general");
    }

    #[test]
    fn classifies_web_api_answers_without_leaking_the_token() {
        let c = |status, headers: &[(&str, &str)], body: &str| {
            api_chat().classify(&resp(status, headers, body))
        };
        let sent = r#"{"ok":true,"channel":"C0123","ts":"1700000000.000100"}"#;
        assert_eq!(
            c(200, &[], sent),
            Outcome::Sent {
                remote_id: Some("C0123/1700000000.000100".into())
            }
        );
        // Changing a message that is gone already: done.
        let gone = r#"{"ok":false,"error":"message_not_found"}"#;
        assert_eq!(c(200, &[], gone), Outcome::Sent { remote_id: None });
        assert_eq!(
            c(429, &[("Retry-After", "3")], ""),
            Outcome::Retry {
                reason: "HTTP 429".into(),
                after: Some(Duration::from_secs(3))
            }
        );
        assert!(matches!(c(502, &[], ""), Outcome::Retry { .. }));
        // Slack's error answers can quote the request back (`warning`,
        // `response_metadata`): the reason is built from the error code,
        // never from the rest of the body, so the token quoted there stays
        // out. (Non-2xx answers carry a body snippet; the sender passes
        // those through the redactor: tests/provider_slack.rs.)
        for (code, retried) in [
            ("ratelimited", true),
            ("invalid_auth", false),
            ("channel_not_found", false),
        ] {
            let quoting = format!(
                r#"{{"ok":false,"error":"{code}","warning":"echo: Authorization: Bearer {TOKEN}","response_metadata":{{"messages":["[ERROR] token {TOKEN} rejected"]}}}}"#
            );
            let (Outcome::Retry { reason, .. } | Outcome::Permanent { reason }) =
                c(200, &[], &quoting)
            else {
                panic!("{code} was sent")
            };
            let out = c(200, &[], &quoting);
            assert_eq!(matches!(out, Outcome::Retry { .. }), retried, "{out:?}");
            assert!(reason.contains(code) && !reason.contains(TOKEN), "{reason}");
        }
    }

    #[test]
    fn channel_without_token_is_a_located_error() {
        let inst = Arc::new(Slack {
            token: None,
            api_url: DEFAULT_API_URL.into(),
            username: None,
            icon_url: None,
        });
        let (d, problems) = bind_chat(inst, "{ channel = \"#general\" }", None);
        assert!(d.is_none());
        assert!(problems[0].message.contains("needs a bot token"));
        assert_eq!(problems[0].span, Some(16..26));
    }
}
