//! `discord`: a channel webhook, `POST {webhook_url}?wait=true` (the URL holds
//! the token), answering the message, whose `id` is the `remote_id`
//! (`THREAD_ID/MESSAGE_ID` in a thread). Body: JSON `{"content",
//! "allowed_mentions": {"parse": []}}`. With `forum_channel` a topic opens a
//! forum post (`thread_name`) that replies join (`thread_id`); edits are `PATCH
//! …/messages/{id}`, deletes `DELETE`.
//!
//! Dialect: Markdown (backslashes, U+200B after a mentioning `@`), checked with
//! simple-markdown in tests/parser_escaping.rs. Limit: 2000 characters.
//!
//! Cards: one embed in the category's colour: the author (name, profile
//! link, avatar), the title linked to the post, the excerpt as its
//! description, the category and tags as inline fields of links, the
//! forum (title and logo) and what happened in the footer, and the post's
//! time (shown in each reader's zone). No `content`: the embed is the
//! message (its title is what notifications show). Title, description and
//! field values are Discord Markdown (escaped); author and footer are shown
//! as written, so they are only cleaned. Limits hold by construction
//! (embed 6000 characters in all, title 256, description 4096, field value
//! 1024, footer 2048, author 256). A chat's own card is `{"embeds": [...]}`
//! (and optionally `content`). `suppress_embeds` turns cards off: Discord
//! would hide the embed too.
//!
//! Answers: JSON `{"code", "message"}`; 429 carries `retry_after`; 404 is
//! permanent (Discord asks clients to stop). See shared/providers.md §2.2.

use super::kit::prelude::*;
use crate::render::escape::strip_controls;
use crate::render::text::{collapse_whitespace, truncate};

pub const REGISTRATION: Registration =
    kit::registration::<Discord>("discord", "Discord channel webhook");

/// `content` limit (discord-api-docs `resources/message`, "2000 characters").
const MAX_CONTENT: usize = 2000;

/// `thread_name` limit: a forum post's title (a channel name), 1 to 100.
const MAX_THREAD_NAME: usize = 100;

/// `username` limit for webhook messages.
const MAX_USERNAME: usize = 80;

/// `flags` bit that hides link embeds (`SUPPRESS_EMBEDS`).
const SUPPRESS_EMBEDS: u64 = 1 << 2;

/// `[providers.NAME]` for `kind = "discord"`: how its messages look.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Settings {
    /// Display name instead of the webhook's own (1 to 80 characters; Discord refuses names containing "discord" or "clyde").
    pub username: Option<Located<String>>,
    /// Avatar image URL instead of the webhook's own.
    pub avatar_url: Option<Located<String>>,
    /// Hide the link previews (embeds) Discord adds for URLs in the message (default false).
    pub suppress_embeds: Option<bool>,
}

/// Chat fields for a Discord chat.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Target {
    /// The channel's webhook URL (`https://discord.com/api/webhooks/ID/TOKEN`), as `${VAR}`: the URL is the credential.
    pub webhook_url: Option<Located<String>>,
    /// Post into this existing thread (or forum post) of the webhook's channel, by id. A forum channel needs this or `forum_channel = true`.
    pub thread_id: Option<Located<SnowflakeValue>>,
    /// The webhook belongs to a Discord forum channel: each forum topic opens a forum post named after its title, and `thread` rules put the replies into it (default false). Not with `thread_id`.
    pub forum_channel: Option<Located<bool>>,
}

/// A Discord id: an integer, or the same digits as a string.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum SnowflakeValue {
    Id(u64),
    Text(String),
}

impl SnowflakeValue {
    fn digits(&self) -> Option<String> {
        match self {
            SnowflakeValue::Id(0) => None,
            SnowflakeValue::Id(n) => Some(n.to_string()),
            SnowflakeValue::Text(s) => Some(s.trim().to_string()).filter(|s| is_id(s)),
        }
    }
}

/// Digits only, at most 20 (a snowflake is a u64).
fn is_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 20 && s.chars().all(|c| c.is_ascii_digit())
}

#[derive(Debug)]
struct Discord {
    username: Option<String>,
    avatar_url: Option<String>,
    suppress_embeds: bool,
}

impl Provider for Discord {
    type Settings = Settings;
    type Target = Target;

    fn new(s: Settings, _: &Table, cx: &mut Ctx<'_>) -> Option<Self> {
        let username = kit::opt_field(cx, &s.username, |u| {
            let name = u.trim();
            let lower = name.to_lowercase();
            if name.is_empty() || name.chars().count() > MAX_USERNAME {
                Err(format!("`username` must be 1 to {MAX_USERNAME} characters"))
            } else if lower.contains("discord") || lower.contains("clyde") {
                Err("Discord refuses webhook names containing \"discord\" or \"clyde\"".into())
            } else {
                Ok(name.to_string())
            }
        })?;
        Some(Discord {
            username,
            avatar_url: kit::opt_url(cx, "avatar_url", &s.avatar_url)?,
            suppress_embeds: s.suppress_embeds.unwrap_or(false),
        })
    }

    fn bind_target(self: Arc<Self>, t: Target, chat: Span, cx: &mut Ctx<'_>) -> Bound {
        let missing = "a discord chat needs `webhook_url = \"${DISCORD_WEBHOOK_URL}\"` (channel settings > Integrations > Webhooks)";
        let (url, raw_span) = cx.required_url(&t.webhook_url, "webhook_url", chat, missing)?;
        if !looks_like_webhook(url.expose()) {
            // Never echo the URL: it holds the webhook's token.
            let msg = "`webhook_url` is not a Discord webhook URL (expected https://discord.com/api/webhooks/ID/TOKEN)";
            return kit::reject(cx, Some(raw_span), msg);
        }
        let thread_id = kit::opt_field(cx, &t.thread_id, |v| {
            v.digits()
                .ok_or("`thread_id` must be a Discord id (digits, from \"Copy Thread ID\")")
        })?;
        let forum = t.forum_channel.as_ref().is_some_and(|f| *f.get_ref());
        if let (Some(f), true, true) = (&t.forum_channel, forum, thread_id.is_some()) {
            let msg = "`forum_channel = true` opens a forum post per topic, `thread_id` posts into one existing thread: set one of them";
            return kit::reject(cx, Some(f.span()), msg);
        }
        Some(Box::new(DiscordChat {
            instance: self,
            url,
            thread_id,
            forum,
        }))
    }
}

/// On Discord's own hosts the path must be `/api[/vN]/webhooks/ID/TOKEN`
/// (so a Slack-compatible `/slack` URL or a channel link is caught at load).
/// Other hosts (proxies, test servers) and unexpanded `${VAR}`s pass.
fn looks_like_webhook(url: &str) -> bool {
    let Ok(u) = url::Url::parse(url) else {
        return true;
    };
    let host = u.host_str().unwrap_or("").to_ascii_lowercase();
    let discord = ["discord.com", "discordapp.com"]
        .iter()
        .any(|d| host == *d || host.ends_with(&format!(".{d}")));
    if !discord {
        return true;
    }
    let segs: Vec<&str> = u.path().trim_matches('/').split('/').collect();
    let rest = match segs.as_slice() {
        ["api", v, rest @ ..]
            if v.starts_with('v') && v[1..].chars().all(|c| c.is_ascii_digit()) =>
        {
            rest
        }
        ["api", rest @ ..] => rest,
        _ => return false,
    };
    matches!(rest, ["webhooks", id, token] if !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()) && !token.is_empty())
}

/// The path segment `n` places after `webhooks` in a webhook URL (1: the
/// webhook's id, 2: its token).
fn hook_segment(url: &str, n: usize) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    let segs: Vec<&str> = u.path_segments()?.collect();
    let i = segs.iter().position(|s| *s == "webhooks")?;
    segs.get(i + n).map(|s| s.to_string())
}

#[derive(Debug)]
struct DiscordChat {
    instance: Arc<Discord>,
    url: Secret,
    thread_id: Option<String>,
    /// A forum channel's webhook: messages open or join a forum post.
    forum: bool,
}

/// Errors: `{"code": 10015, "message": "Unknown Webhook"}`, as
/// `HTTP 404 10015 Unknown Webhook`.
const SPEC: Spec = Spec {
    prefix: "discord",
    id_ptr: None,
    error: |_, body| {
        let clip = |m: &str| truncate(m.trim(), 200);
        match (body["code"].as_u64(), body["message"].as_str()) {
            (Some(c), Some(m)) => Some(format!(" {c} {}", clip(m))),
            (None, Some(m)) => Some(format!(" {}", clip(m))),
            (Some(c), None) => Some(format!(" {c}")),
            (None, None) => None,
        }
    },
    sep: "",
    hint: kit::no_hint,
};

impl kit::Chat for DiscordChat {
    const KIND: &str = REGISTRATION.kind;
    const DIALECT: Dialect = Dialect::Markdown;
    // Commonly observed per-webhook bucket (unofficial; Discord says to
    // follow the headers, which the 429 classification does).
    const RATE: Option<Rate> = Some(Rate::per_secs(5, 2));
    const CARDS: bool = true;

    fn cards(&self) -> bool {
        !self.instance.suppress_embeds
    }

    fn check_card(&self, card: &Value) -> Result<(), String> {
        check_card(card)
    }

    fn capabilities(&self) -> Capabilities {
        // `wait=true` answers the message id, and a webhook can edit and
        // delete its own messages; but it can only open threads in a forum
        // channel (`thread_name`), not reply in a text channel.
        Capabilities {
            thread: self.forum,
            ..Capabilities::ALL
        }
    }

    fn target(&self) -> String {
        // The webhook id is not a secret (the token after it is).
        let hook = match hook_segment(self.url.expose(), 1)
            .filter(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()))
        {
            Some(id) => format!("webhook {id}"),
            None => "webhook".to_string(),
        };
        match &self.thread_id {
            Some(t) => format!("{hook} thread {t}"),
            None => hook,
        }
    }

    fn probe(&self) -> Probe {
        // GET on the webhook URL answers the webhook object; nothing is posted.
        let get = HttpRequest::get(self.url.clone());
        Probe::Http(vec![probe::step("the webhook exists", get, judge_webhook)])
    }

    fn request(&self, msg: &Message<'_>) -> Outbound {
        let content = truncate(msg.text, MAX_CONTENT);
        let (message_id, thread) = match msg.action {
            Action::Post { thread } => return self.execute(msg, &content, thread),
            Action::Edit { remote_id } | Action::Delete { remote_id } => self.locate(remote_id),
        };
        let url = Secret::new(self.message_url(message_id, thread));
        Outbound::Http(match msg.action {
            Action::Delete { .. } => HttpRequest::delete(url),
            // Mentions are parsed again on edit unless turned off again.
            _ => {
                let mut body = json!({"content": content, "allowed_mentions": {"parse": []}});
                // An edit keeps the embeds it does not name: a card struck
                // through (text alone) must clear them.
                body["embeds"] = json!([]);
                put_card(&mut body, msg);
                HttpRequest::patch_json(&url, &body)
            }
        })
    }

    fn classify(&self, resp: &HttpResponse) -> Outcome {
        // The sender redacts the whole URL; an answer quoting only its path
        // would still show the token, so that goes too.
        let token = hook_segment(self.url.expose(), 2).filter(|t| t.len() >= 8);
        let token: Vec<Secret> = token.into_iter().map(Secret::new).collect();
        kit::scrub(self.classify_answer(resp), &token)
    }

    fn chat_ids(&self) -> Vec<String> {
        // A webhook URL does not name its channel; a thread is a channel.
        self.thread_id.iter().cloned().collect()
    }
}

impl DiscordChat {
    /// Execute Webhook: a new message, in the chat's thread, in the forum
    /// topic's forum post (`root`), or opening that post (`thread_name`).
    fn execute(&self, msg: &Message<'_>, content: &str, thread: Option<Thread<'_>>) -> Outbound {
        let i = &self.instance;
        let mut body = json!({"content": content, "allowed_mentions": {"parse": []}});
        put_card(&mut body, msg);
        kit::put(&mut body, "username", i.username.as_ref());
        kit::put(&mut body, "avatar_url", i.avatar_url.as_ref());
        kit::put(
            &mut body,
            "flags",
            i.suppress_embeds.then_some(SUPPRESS_EMBEDS),
        );
        let base = self.url.expose();
        let sep = if base.contains('?') { '&' } else { '?' };
        let mut url = format!("{base}{sep}wait=true");
        let root_thread = (thread.and_then(|t| t.root)).and_then(|root| self.locate(root).1);
        if let Some(t) = root_thread.or(self.thread_id.as_deref()) {
            url.push_str("&thread_id=");
            url.push_str(&path_segment(t));
        } else if self.forum {
            // A forum channel takes no message outside a post: without a
            // post to join (no `thread` rule, or its root is unknown), the
            // message opens one named after the topic.
            body["thread_name"] = json!(thread_name(msg.context));
        }
        Outbound::Http(HttpRequest::post_json(&Secret::new(url), &body))
    }

    /// The message id and thread id a `remote_id` names. Messages in a
    /// thread (a forum post, or the chat's `thread_id`) are stored as
    /// `"<thread channel id>/<message id>"`, others as `"<message id>"`;
    /// for those, the chat's own `thread_id` (if any) is the thread.
    fn locate<'a>(&'a self, remote_id: &'a str) -> (&'a str, Option<&'a str>) {
        match remote_id.split_once('/') {
            Some((thread, message)) => (message, Some(thread)),
            None => (remote_id, self.thread_id.as_deref()),
        }
    }

    /// `…/webhooks/ID/TOKEN/messages/{message_id}[?thread_id=…]`, keeping a
    /// query the configured URL may have.
    fn message_url(&self, message_id: &str, thread: Option<&str>) -> String {
        let base = self.url.expose();
        let (path, query) = base.split_once('?').unwrap_or((base, ""));
        let path = path.trim_end_matches('/');
        let url = format!("{path}/messages/{}", path_segment(message_id));
        let thread = thread.map(|t| format!("thread_id={}", path_segment(t)));
        let params: Vec<&str> = [Some(query), thread.as_deref()]
            .into_iter()
            .flatten()
            .filter(|q| !q.is_empty())
            .collect();
        if params.is_empty() {
            url
        } else {
            format!("{url}?{}", params.join("&"))
        }
    }

    fn classify_answer(&self, resp: &HttpResponse) -> Outcome {
        let body: serde_json::Value = serde_json::from_slice(&resp.body).unwrap_or_default();
        let code = body["code"].as_u64();
        match resp.status {
            // The status is authoritative: the message exists even if the
            // answer is odd, so never retry (that would post it twice). In a
            // thread, its `channel_id` is the thread, which edits, deletes
            // and replies need (see `locate`).
            200..=299 => {
                let in_thread = self.forum || self.thread_id.is_some();
                Outcome::Sent {
                    remote_id: match (body["id"].as_str(), body["channel_id"].as_str()) {
                        (Some(id), Some(thread)) if in_thread => Some(format!("{thread}/{id}")),
                        (id, _) => id.map(str::to_string),
                    },
                }
            }
            429 => Outcome::Retry {
                reason: format!(
                    "discord: {}{}",
                    SPEC.describe(resp, &body),
                    match body["global"].as_bool() {
                        Some(true) => " (global limit)",
                        _ => "",
                    }
                ),
                after: retry_hint::json_secs(&body["retry_after"]).or_else(|| resp.retry_after()),
            },
            // Unknown Message: deleted in the chat already. A delete has
            // nothing left to do, and an edit never can.
            _ if code == Some(10008) => Outcome::Sent { remote_id: None },
            status => kit::hinted(classify_json(resp, &SPEC), hint(status, code)),
        }
    }
}

/// What to check, for a permanent failure (Discord's JSON error codes).
fn hint(status: u16, code: Option<u64>) -> &'static str {
    match (status, code) {
        (_, Some(10003)) => {
            " (unknown channel or thread: check thread_id, or the forum post was deleted)"
        }
        (404, _) | (_, Some(10015)) => {
            " (the webhook was deleted: create a new one and update webhook_url)"
        }
        (401, _) | (_, Some(50027)) => {
            " (the webhook token is invalid: copy the webhook URL again)"
        }
        (_, Some(220001)) => {
            " (a forum channel: set `forum_channel = true` for a forum post per topic, or `thread_id`)"
        }
        (_, Some(220003)) => " (`forum_channel = true` needs the webhook of a forum channel)",
        (_, Some(50083)) => " (the thread is archived)",
        (_, Some(50006)) => " (the message is empty: check the template)",
        (_, Some(50035)) => " (Discord refused the message: check username and avatar_url)",
        (403, _) => " (the webhook lacks permission to post there)",
        _ => "",
    }
}

/// A forum post's title: the topic's title on one line, cut to Discord's
/// limit (never empty: Discord refuses that).
fn thread_name(context: &serde_json::Value) -> String {
    let title = collapse_whitespace(&strip_controls(
        context["topic"]["title"].as_str().unwrap_or(""),
    ));
    match context["topic"]["id"].as_u64() {
        _ if !title.is_empty() => truncate(&title, MAX_THREAD_NAME),
        Some(id) => format!("Forum topic {id}"),
        None => "Forum topic".to_string(),
    }
}

/// Discord's answer to `GET` on a webhook URL: the webhook (never quoted
/// whole: it echoes the token) or `{"code", "message"}`.
fn judge_webhook(resp: &HttpResponse) -> Judgement {
    let error = |b: &Value| (SPEC.error)(&HttpResponse::default(), b).map(|e| e.trim().to_string());
    probe::rest(
        resp,
        |b| {
            let name = probe::text(b, "/name");
            Judgement::pass(format!(
                "webhook \"{name}\" of channel {}",
                probe::text(b, "/channel_id")
            ))
        },
        error,
        "the webhook's token was rejected: copy the URL again (channel settings > Integrations > Webhooks)",
        "the webhook was deleted (10015 Unknown Webhook): create a new one and update webhook_url",
    )
}

// Embed limits (discord-api-docs `resources/message`, "Embed Limits").
const MAX_EMBEDS: usize = 10;
const MAX_EMBED_TOTAL: usize = 6000;
const MAX_TITLE: usize = 256;
const MAX_DESCRIPTION: usize = 4096;
const MAX_FIELDS: usize = 25;
const MAX_FIELD_NAME: usize = 256;
const MAX_FIELD_VALUE: usize = 1024;
const MAX_FOOTER: usize = 2048;
const MAX_AUTHOR: usize = 256;

/// Puts the message's card (the chat's own, or the default embed) in
/// `body`. With a card the embed is the message: no `content`.
fn put_card(body: &mut Value, msg: &Message<'_>) {
    let Some(card) = msg.card else { return };
    let part = match msg.custom {
        Some(custom) => custom.clone(),
        None => json!({"embeds": [embed(card)]}),
    };
    let Value::Object(part) = part else { return };
    if let Some(o) = body.as_object_mut() {
        o.remove("content");
    }
    for (key, value) in part {
        if matches!(key.as_str(), "embeds" | "content") {
            body[key] = value;
        }
    }
}

/// `s` escaped for Discord Markdown, within `max` characters once escaped.
fn md(s: &str, max: usize) -> String {
    let mut budget = max;
    loop {
        let out = escape(Dialect::Markdown, &card::cut(s, budget));
        let n = out.chars().count();
        if n <= max || budget <= 1 {
            return out;
        }
        // Escapes lengthen the text: shrink the plain part by the excess.
        budget = budget.saturating_sub((n - max).max(1));
    }
}

/// The default embed: see the module doc.
fn embed(card: &Card) -> Value {
    let mut e = json!({
        "title": md(&card.headline(), MAX_TITLE),
        "url": card.url,
    });
    if !card.text.is_empty() {
        e["description"] = json!(md(&card.text, 1500));
    }
    kit::put(&mut e, "color", card.color.map(|c| c.0));
    if let Some(a) = &card.author {
        let name = match a.name == a.username {
            true => a.name.clone(),
            false => format!("{} (@{})", a.name, a.username),
        };
        let mut author = json!({"name": card::cut(&name, MAX_AUTHOR), "url": a.url});
        if !a.avatar.is_empty() {
            author["icon_url"] = json!(a.avatar);
        }
        e["author"] = author;
    }
    let mut fields = Vec::new();
    if let Some(c) = &card.category {
        let name = card::cut(&c.text, 200);
        let mut value = link(Dialect::Markdown, &c.url, &name);
        // A URL too long for the field: the name alone.
        if value.chars().count() > MAX_FIELD_VALUE {
            value = md(&name, MAX_FIELD_VALUE);
        }
        fields.push(json!({"name": "Category", "value": value, "inline": true}));
    }
    if !card.tags.is_empty() {
        // Whole links only: as many tags as the field holds.
        let mut value = String::new();
        for t in &card.tags {
            let l = link(Dialect::Markdown, &t.url, &card::cut(&t.text, 100));
            if value.chars().count() + l.chars().count() + 2 > MAX_FIELD_VALUE {
                break;
            }
            if !value.is_empty() {
                value.push_str(", ");
            }
            value.push_str(&l);
        }
        if !value.is_empty() {
            fields.push(json!({"name": "Tags", "value": value, "inline": true}));
        }
    }
    if !fields.is_empty() {
        e["fields"] = json!(fields);
    }
    let footer = match card.label.is_empty() {
        true => card.footer.text.clone(),
        false => format!("{} · {}", card.footer.text, card.label),
    };
    let mut footer = json!({"text": card::cut(&footer, 300)});
    if !card.footer.url.is_empty() {
        footer["icon_url"] = json!(card.footer.url);
    }
    e["footer"] = footer;
    kit::put(&mut e, "timestamp", card.timestamp.as_ref());
    e
}

/// A chat's own card within Discord's embed limits.
fn check_card(card: &Value) -> Result<(), String> {
    let obj = kit::card_object(card, "a discord card", "`embeds`", &["embeds", "content"])?;
    let chars = |v: &Value| v.as_str().map(|s| s.chars().count());
    kit::ensure_len("/content", obj.get("content").and_then(chars), MAX_CONTENT)?;
    let embeds = obj
        .get("embeds")
        .and_then(Value::as_array)
        .ok_or("a discord card needs `embeds`, an array")?;
    if embeds.len() > MAX_EMBEDS {
        return Err(format!(
            "/embeds has {} embeds; at most {MAX_EMBEDS}",
            embeds.len()
        ));
    }
    let mut total = 0;
    for (i, e) in embeds.iter().enumerate() {
        let at = |p: &str| format!("/embeds/{i}{p}");
        let mut count = |p: &str, v: &Value, max: usize| -> Result<(), String> {
            let n = chars(v);
            total += n.unwrap_or(0);
            kit::ensure_len(&at(p), n, max)
        };
        count("/title", &e["title"], MAX_TITLE)?;
        count("/description", &e["description"], MAX_DESCRIPTION)?;
        count("/footer/text", &e["footer"]["text"], MAX_FOOTER)?;
        count("/author/name", &e["author"]["name"], MAX_AUTHOR)?;
        let fields = e["fields"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        if fields.len() > MAX_FIELDS {
            return Err(format!(
                "{} has {} fields; at most {MAX_FIELDS}",
                at("/fields"),
                fields.len()
            ));
        }
        for (j, f) in fields.iter().enumerate() {
            count(&format!("/fields/{j}/name"), &f["name"], MAX_FIELD_NAME)?;
            count(&format!("/fields/{j}/value"), &f["value"], MAX_FIELD_VALUE)?;
        }
        if let Some(c) = e.get("color")
            && c.as_u64().is_none_or(|c| c > 0xFF_FFFF)
        {
            return Err(format!(
                "{} must be an integer 0 to 16777215 (0xRRGGBB)",
                at("/color")
            ));
        }
    }
    if total > MAX_EMBED_TOTAL {
        return Err(format!(
            "the embeds have {total} characters in all; Discord takes at most {MAX_EMBED_TOTAL}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::testkit::{bind, body, http, post, reply, request, resp};
    use std::time::Duration;

    const HOOK: &str = "https://discord.com/api/webhooks/112233445566778899/canary-discord-token";
    const IN_POST: &str = "1300000000000000001/1300000000000000002";

    fn chat(username: Option<&str>, thread: Option<&str>) -> DiscordChat {
        DiscordChat {
            instance: Arc::new(Discord {
                username: username.map(str::to_string),
                avatar_url: None,
                suppress_embeds: false,
            }),
            url: Secret::new(HOOK),
            thread_id: thread.map(str::to_string),
            forum: false,
        }
    }

    fn forum_chat() -> DiscordChat {
        DiscordChat {
            forum: true,
            ..chat(Some("Forum"), None)
        }
    }

    /// The request for `action` in a topic titled `title`, and its JSON body
    /// (`null` when it has none).
    fn req(c: &DiscordChat, action: Action<'_>, title: &str) -> (HttpRequest, serde_json::Value) {
        let ctx = json!({"topic": {"id": 7, "title": title}});
        let r = http(c.request(&Message {
            chat: "c",
            text: "new @\u{200B}everyone",
            context: &ctx,
            card: None,
            custom: None,
            action,
            delivery: None,
        }));
        let b = if r.body.is_empty() {
            json!(null)
        } else {
            body(&r)
        };
        (r, b)
    }

    #[test]
    fn a_huge_post_still_makes_an_embed_discord_takes() {
        let r = crate::providers::testkit::card_request(
            &chat(None, None),
            &crate::providers::testkit::huge_card(),
        );
        let b = crate::providers::testkit::body(&r);
        assert_eq!(check_card(&json!({"embeds": b["embeds"]})), Ok(()));
        assert!(b.get("content").is_none());
        assert_eq!(b["embeds"][0]["color"], 0xF1592A);
        // Whole tag links only, within the field.
        let tags = b["embeds"][0]["fields"][1]["value"].as_str().unwrap();
        assert!(
            tags.ends_with(')') && tags.chars().count() <= MAX_FIELD_VALUE,
            "{tags}"
        );
    }

    #[test]
    fn a_chats_own_card_is_checked_against_embed_limits() {
        let ok = json!({"embeds": [{"title": "t", "description": "d", "color": 255}]});
        assert_eq!(check_card(&ok), Ok(()));
        let title = json!({"embeds": [{"title": "x".repeat(257)}]});
        assert_eq!(
            check_card(&title).unwrap_err(),
            "/embeds/0/title has 257 characters; at most 256"
        );
        let total = json!({"embeds": [{"description": "x".repeat(4000)}, {"description": "x".repeat(2001)}]});
        assert!(
            check_card(&total)
                .unwrap_err()
                .contains("6001 characters in all")
        );
        let color = json!({"embeds": [{"color": "#fff"}]});
        assert!(check_card(&color).unwrap_err().contains("/embeds/0/color"));
        assert!(check_card(&json!({"username": "x", "embeds": []})).is_err());
    }

    #[test]
    fn forum_posts_threads_edits_and_deletes() {
        let c = forum_chat();
        assert!(c.capabilities().thread && !chat(None, None).capabilities().thread);
        // The topic's first message opens a forum post named after it; so
        // does any message without a known root (a forum takes no other).
        for action in [reply(None), Action::default()] {
            let (r, b) = req(&c, action, "Printer\non fire");
            assert_eq!(r.method, "POST");
            assert_eq!(r.url.expose(), format!("{HOOK}?wait=true"));
            assert_eq!(
                b,
                json!({
                    "content": "new @\u{200B}everyone",
                    "allowed_mentions": {"parse": []},
                    "username": "Forum",
                    "thread_name": "Printer on fire",
                })
            );
        }
        let (_, b) = req(&c, Action::default(), &"long title ".repeat(20));
        let name = b["thread_name"].as_str().unwrap_or_default();
        assert!(name.chars().count() <= MAX_THREAD_NAME && name.ends_with('…'));
        assert_eq!(
            req(&c, Action::default(), " ").1["thread_name"],
            "Forum topic 7"
        );

        // Replies go into the post the root names.
        let (r, b) = req(
            &c,
            reply(Some("1300000000000000001/1300000000000000001")),
            "T",
        );
        assert_eq!(
            r.url.expose(),
            format!("{HOOK}?wait=true&thread_id=1300000000000000001")
        );
        assert!(b.get("thread_name").is_none());

        let in_post = format!("{HOOK}/messages/1300000000000000002?thread_id=1300000000000000001");
        let edited = json!({"content": "new @\u{200B}everyone", "allowed_mentions": {"parse": []}, "embeds": []});
        for (action, method, want) in [
            (Action::Edit { remote_id: IN_POST }, "PATCH", edited),
            (Action::Delete { remote_id: IN_POST }, "DELETE", json!(null)),
        ] {
            let (r, b) = req(&c, action, "T");
            assert_eq!(
                (r.method, r.url.expose(), b),
                (method, in_post.as_str(), want)
            );
        }
    }

    #[test]
    fn text_channel_and_fixed_thread_edits() {
        let edit = Action::Edit {
            remote_id: "1300000000000000002",
        };
        let r = request(&chat(None, None), "x", edit);
        assert_eq!(r.method, "PATCH");
        assert_eq!(
            r.url.expose(),
            format!("{HOOK}/messages/1300000000000000002")
        );
        // A chat with `thread_id`: an id stored without its thread still
        // finds it.
        let c = chat(None, Some("998877"));
        for id in ["998877/1300000000000000002", "1300000000000000002"] {
            let r = request(&c, "x", Action::Delete { remote_id: id });
            assert_eq!(
                r.url.expose(),
                format!("{HOOK}/messages/1300000000000000002?thread_id=998877")
            );
        }
        // A configured query stays; a stored id cannot escape its segment.
        let c = DiscordChat {
            url: Secret::new(format!("{HOOK}?x=1")),
            ..chat(None, None)
        };
        let r = request(&c, "x", Action::Delete { remote_id: "1?y=2" });
        assert_eq!(r.url.expose(), format!("{HOOK}/messages/1%3Fy%3D2?x=1"));
    }

    #[test]
    fn request_shape() {
        let text = "**[title](https://f/t/1)** @\u{200B}everyone";
        let r = post(&chat(Some("Forum"), Some("998877")), text);
        assert_eq!(r.method, "POST");
        assert_eq!(r.url.expose(), format!("{HOOK}?wait=true&thread_id=998877"));
        assert_eq!(
            body(&r),
            json!({"content": text, "allowed_mentions": {"parse": []}, "username": "Forum"})
        );
        assert_eq!(chat(None, None).target(), "webhook 112233445566778899");
    }

    #[test]
    fn long_content_is_cut_at_a_char_boundary() {
        let b = body(&post(&chat(None, None), &"é😀".repeat(1500)));
        let content = b["content"].as_str().unwrap_or_default();
        assert_eq!(content.chars().count(), MAX_CONTENT);
        assert!(content.ends_with('…'));
    }

    #[test]
    fn classifies_discord_answers() {
        let c = chat(None, None);
        let msg = r#"{"id":"1300000000000000002","type":0,"content":"x","channel_id":"1300000000000000001"}"#;
        // In a thread the id names the thread too; elsewhere just the message.
        for (chat, id) in [
            (forum_chat(), IN_POST),
            (chat(None, Some("1300000000000000001")), IN_POST),
            (chat(None, None), "1300000000000000002"),
        ] {
            assert_eq!(
                chat.classify(&resp(200, &[], msg)),
                Outcome::Sent {
                    remote_id: Some(id.into())
                }
            );
        }
        // DELETE answers 204; a message already gone is done.
        for (status, body) in [
            (204, ""),
            (404, r#"{"message": "Unknown Message", "code": 10008}"#),
        ] {
            let out = forum_chat().classify(&resp(status, &[], body));
            assert_eq!(out, Outcome::Sent { remote_id: None }, "{body}");
        }
        assert_eq!(
            c.classify(&resp(
                429,
                &[("Retry-After", "2")],
                r#"{"message":"You are being rate limited.","retry_after":1.337,"global":false}"#
            )),
            Outcome::Retry {
                reason: "discord: HTTP 429 You are being rate limited.".into(),
                after: Some(Duration::from_secs_f64(1.337))
            }
        );
        // Cloudflare's HTML 429: the header is all there is.
        assert!(matches!(
            c.classify(&resp(429, &[("Retry-After", "60")], "<html>error 1015</html>")),
            Outcome::Retry { after: Some(d), .. } if d.as_secs() == 60
        ));
        assert!(matches!(
            c.classify(&resp(503, &[], "")),
            Outcome::Retry { .. }
        ));
        let cases = [
            (
                &c,
                404,
                r#"{"message": "Unknown Webhook", "code": 10015}"#,
                "10015 Unknown Webhook (the webhook was deleted",
            ),
            (
                &c,
                401,
                r#"{"message": "Invalid Webhook Token", "code": 50027}"#,
                "50027 Invalid Webhook Token (the webhook token is invalid",
            ),
            (
                &c,
                400,
                r#"{"message": "Webhooks posted to forum channels must have a thread_name or thread_id", "code": 220001}"#,
                "set `forum_channel = true`",
            ),
            (
                &c,
                400,
                r#"{"message": "Invalid Form Body", "code": 50035, "errors": {}}"#,
                "50035 Invalid Form Body",
            ),
            (
                &c,
                403,
                r#"{"message": "Missing Permissions", "code": 50013}"#,
                "lacks permission",
            ),
            (
                &forum_chat(),
                404,
                r#"{"message": "Unknown Webhook", "code": 10015}"#,
                "(the webhook was deleted",
            ),
            (
                &forum_chat(),
                400,
                r#"{"message": "Unknown Channel", "code": 10003}"#,
                "forum post was deleted",
            ),
            (
                &forum_chat(),
                400,
                r#"{"message": "Webhooks can only create threads in forum and media channels", "code": 220003}"#,
                "needs the webhook of a forum channel",
            ),
        ];
        for (chat, status, body, want) in cases {
            let out = chat.classify(&resp(status, &[], body));
            let Outcome::Permanent { reason } = &out else {
                panic!("{body} should be permanent: {out:?}")
            };
            assert!(reason.contains(want), "{reason} lacks {want}");
            assert!(!reason.contains("canary-discord-token"));
        }
    }

    #[test]
    fn webhook_urls_and_settings_are_validated() {
        assert!(looks_like_webhook(HOOK));
        assert!(looks_like_webhook(
            "https://canary.discord.com/api/v10/webhooks/1/tok"
        ));
        assert!(looks_like_webhook("http://127.0.0.1:8080/hook"));
        assert!(looks_like_webhook("${DISCORD_HOOK}"));
        assert!(!looks_like_webhook(
            "https://discord.com/api/webhooks/1/tok/slack"
        ));
        assert!(!looks_like_webhook("https://discord.com/channels/1/2"));

        let env = [
            ("HOOK", "https://discord.com/channels/1/secretish"),
            ("GOOD", HOOK),
        ];
        for (target, want) in [
            ("{ webhook_url = \"${HOOK}\" }", "not a Discord webhook URL"),
            (
                "{ webhook_url = \"https://discord.com/api/webhooks/1/literal\" }",
                "must be an environment reference",
            ),
            ("{ thread_id = 5 }", "needs `webhook_url"),
            (
                "{ webhook_url = \"${GOOD}\", thread_id = 5, forum_channel = true }",
                "set one of them",
            ),
        ] {
            let (d, problems) = bind(&REGISTRATION, "{}", target, &env);
            assert!(d.is_none(), "{target}");
            let p = &problems[0].message;
            assert!(p.contains(want), "{target}: {p}");
            assert!(!p.contains("secretish") && !p.contains("literal"));
        }
        for (settings, want) in [
            ("{ username = \"Discord Bot\" }", "\"discord\" or \"clyde\""),
            ("{ username = \"\" }", "1 to 80"),
            ("{ avatar_url = \"not a url\" }", "absolute http"),
        ] {
            let (d, problems) = bind(&REGISTRATION, settings, "{}", &[]);
            assert!(d.is_none(), "{settings}");
            assert!(problems[0].message.contains(want), "{settings}");
        }
    }
}
