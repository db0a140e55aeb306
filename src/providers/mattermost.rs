//! `mattermost`: the REST API (`POST {api_url}/api/v4/posts`, a bot or personal
//! token as `Bearer`; the post's `id` is the `remote_id`: replies set `root_id`,
//! edits `PUT …/posts/{id}/patch`, deletes `DELETE …/posts/{id}`) or an incoming
//! webhook URL (the credential; answers `ok`). Body: JSON `{"channel_id", "message"}`
//! or `{"text"}`.
//!
//! Dialect: Markdown (backslashes, U+200B after a mentioning `@`: Mattermost
//! cannot switch mentions off), checked with `marked` in tests/parser_escaping.rs.
//! Limit: 16,383 characters.
//!
//! Cards: one message attachment (what the reference plugin sent), in
//! `props.attachments` (REST) or `attachments` (webhook), with no message
//! text above it (the card says it all; a text style chat keeps the text):
//! the category's colour bar; `author_name` (name, `@username` and what
//! happened), `author_icon` (the avatar) and `author_link` (the profile);
//! `title` (marks and topic title) linked to the post by `title_link`; the
//! excerpt as `text`; `fields` for the category and the tags (short,
//! side by side, as links); `footer` (the forum) with its logo as
//! `footer_icon`; `ts` (the post's time, shown in each reader's zone).
//! `fallback`, what notifications and clients without attachments show, is
//! plain text (the headline, what happened and who), not the rendered
//! Markdown text, whose escapes would show there. No button: attachment buttons call
//! an integration back (`integration.url`), they cannot open a link; the
//! title is the link. Escaping per field, from Mattermost's renderer:
//! `title`, `text` and field values go through its Markdown (and mention
//! parsing in `text`), so they get the Markdown dialect; `author_name` and
//! `footer` are shown as plain text, where a backslash would show, so they
//! only get their `@`, `<` and `](` broken by U+200B ([`inert`]). A chat's
//! own card is an object with `attachments` (and optionally `text`, the
//! message above them).
//!
//! Answers: JSON `{"id":"…app_error","message"}` with the status; 429 carries
//! `Retry-After` and `X-Ratelimit-Reset`. See shared/providers.md §2.4.

use super::kit::prelude::*;
use crate::render::text::truncate;

pub const REGISTRATION: Registration = kit::registration::<Mattermost>(
    "mattermost",
    "Mattermost REST API (bot token) or incoming webhook",
);

/// Post length limit in characters (runes) since Mattermost 5.0
/// (`model.PostMessageMaxRunesV2`). REST refuses longer posts; webhooks
/// split them into several.
const MAX_MESSAGE: usize = 16_383;

/// `props` beyond this many characters (as JSON) are refused
/// (`model.PostPropsMaxUserRunes`: 800,000 less 40,000 kept for the server).
const MAX_PROPS: usize = 760_000;
/// The web app cuts a footer at 300 characters (`MAX_ATTACHMENT_FOOTER_LENGTH`).
const MAX_FOOTER: usize = 300;
/// Tags shown in the card's field: more would wrap into a wall of links.
const MAX_TAGS: usize = 10;

/// `[providers.NAME]` for `kind = "mattermost"`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Settings {
    /// Bot access token or personal access token, as `${VAR}`. Needed for chats that name a `channel_id`.
    pub token: Option<Located<String>>,
    /// The Mattermost server (e.g. `https://chat.example.org`); posts go to `{api_url}/api/v4/posts`. Needed for chats that name a `channel_id`.
    pub api_url: Option<Located<String>>,
    /// Display name for webhook posts (incoming webhooks only; needs "Enable integrations to override usernames" on the server).
    pub username: Option<String>,
    /// Profile picture URL for webhook posts (incoming webhooks only; needs "Enable integrations to override profile picture icons").
    pub icon_url: Option<Located<String>>,
}

/// Chat fields for a Mattermost chat: `channel_id` (REST API) or `webhook_url`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Target {
    /// Channel id (26 letters and digits, from the channel's "View Info"), for the REST API; the bot must be a member of the channel.
    pub channel_id: Option<Located<String>>,
    /// Incoming webhook URL (`https://chat.example.org/hooks/KEY`), as `${VAR}` (the URL is the credential).
    pub webhook_url: Option<Located<String>>,
    /// With `webhook_url`: post to this channel (its URL name, e.g. `town-square`) instead of the webhook's own, unless the webhook is locked to its channel.
    pub channel: Option<Located<String>>,
}

#[derive(Debug)]
struct Mattermost {
    token: Option<Secret>,
    api_url: Option<String>,
    username: Option<String>,
    icon_url: Option<String>,
}

impl Provider for Mattermost {
    type Settings = Settings;
    type Target = Target;

    fn new(s: Settings, _: &Table, cx: &mut Ctx<'_>) -> Option<Self> {
        let token = cx.opt_secret("token", &s.token)?;
        // Accept the API root too: `https://h/api/v4` means `https://h`.
        let api_url = kit::opt_url(cx, "api_url", &s.api_url)?.map(|u| {
            let base = u.trim_end_matches('/');
            base.strip_suffix("/api/v4").unwrap_or(base).to_string()
        });
        Some(Mattermost {
            token,
            api_url,
            username: s.username,
            icon_url: kit::opt_url(cx, "icon_url", &s.icon_url)?,
        })
    }

    fn bind_target(self: Arc<Self>, t: Target, chat: Span, cx: &mut Ctx<'_>) -> Bound {
        let both =
            "set either `channel_id` (REST API) or `webhook_url` (incoming webhook), not both";
        let neither = "a mattermost chat needs `channel_id` (with a token) or `webhook_url`";
        let mode = match kit::one_of(cx, &t.channel_id, &t.webhook_url, chat, both, neither)? {
            OneOf::First(c) => {
                if let Some(ch) = &t.channel {
                    let msg = "`channel` is for incoming webhooks; a REST chat names its channel with `channel_id` only";
                    return kit::reject(cx, Some(ch.span()), msg);
                }
                let channel_id = c.get_ref().trim().to_string();
                let is_id = channel_id.len() == 26
                    && (channel_id.chars()).all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
                if !is_id {
                    let msg = "`channel_id` must be a channel id (26 lowercase letters and digits, from the channel's \"View Info\"), not a channel name";
                    return kit::reject(cx, Some(c.span()), msg);
                }
                let (Some(token), Some(api_url)) = (self.token.clone(), self.api_url.clone())
                else {
                    let msg = "posting to a `channel_id` needs `token = \"${MATTERMOST_TOKEN}\"` and `api_url` on a [providers.NAME] table with kind = \"mattermost\", or use `webhook_url`";
                    return kit::reject(cx, Some(c.span()), msg);
                };
                Mode::Api {
                    token,
                    api_url,
                    channel_id,
                }
            }
            OneOf::Second(u) => {
                let url = cx.url("webhook_url", u, true)?;
                let channel =
                    kit::opt_field(cx, &t.channel, |c| match c.trim().trim_start_matches('#') {
                        "" => Err("`channel` is empty"),
                        name => Ok(name.to_string()),
                    })?;
                Mode::Webhook { url, channel }
            }
        };
        Some(Box::new(MattermostChat {
            instance: self,
            mode,
        }))
    }
}

#[derive(Debug)]
enum Mode {
    Api {
        token: Secret,
        api_url: String,
        channel_id: String,
    },
    Webhook {
        url: Secret,
        channel: Option<String>,
    },
}

#[derive(Debug)]
struct MattermostChat {
    instance: Arc<Mattermost>,
    mode: Mode,
}

/// Errors: `{"id":"api.context.session_expired.app_error","message"}`, as
/// `HTTP 401 id: message` (`HTTP 400: message` without an id).
const SPEC: Spec = Spec {
    prefix: "mattermost",
    id_ptr: None,
    error: |_, body| {
        let m = truncate(body["message"].as_str()?.trim(), 200);
        Some(match body["id"].as_str() {
            Some(id) => format!(" {id}: {m}"),
            None => format!(": {m}"),
        })
    },
    sep: "",
    hint: kit::no_hint,
};

impl kit::Chat for MattermostChat {
    const KIND: &str = REGISTRATION.kind;

    fn probe(&self) -> Probe {
        let Mode::Api {
            token,
            api_url,
            channel_id,
        } = &self.mode
        else {
            return Probe::webhook();
        };
        let get = |path: &str| {
            HttpRequest::get(Secret::new(format!("{api_url}/api/v4/{path}"))).bearer(token)
        };
        let channel = format!("channels/{}", path_segment(channel_id));
        Probe::Http(vec![
            probe::step("users/me", get("users/me"), |r| {
                let ok = |b: &Value| {
                    Judgement::pass(format!("token works: @{}", probe::text(b, "/username")))
                };
                probe::rest(
                    r,
                    ok,
                    mm_error,
                    "the token was rejected: check it, and that the bot account is enabled",
                    "no Mattermost API there: check api_url",
                )
            }),
            probe::step("the channel", get(&channel), |r| {
                let ok = |b: &Value| Judgement::pass(format!("sees ~{}", probe::text(b, "/name")));
                probe::rest(
                    r,
                    ok,
                    mm_error,
                    "the bot may not see this channel: add it to the team and the channel",
                    "no such channel (or the bot is not in its team): check channel_id",
                )
            }),
        ])
    }
    const DIALECT: Dialect = Dialect::Markdown;
    // The server's rate limiter defaults to 10 requests/s per user or
    // IP (when enabled, with a burst of 100).
    const RATE: Option<Rate> = Some(Rate::per_second(10));
    const READS_CONTEXT: bool = false;
    const CARDS: bool = true;

    fn check_card(&self, card: &Value) -> Result<(), String> {
        check_card(card)
    }

    fn capabilities(&self) -> Capabilities {
        // REST answers the post id (replies, patches, deletes); a webhook just `ok`.
        kit::capabilities_if(!self.is_webhook())
    }

    fn target(&self) -> String {
        match &self.mode {
            Mode::Api { channel_id, .. } => format!("channel {channel_id}"),
            Mode::Webhook {
                channel: Some(c), ..
            } => format!("incoming webhook, channel {c}"),
            Mode::Webhook { channel: None, .. } => "incoming webhook".into(),
        }
    }

    fn request(&self, msg: &Message<'_>) -> Outbound {
        let text = truncate(msg.text, MAX_MESSAGE);
        let (token, api_url, channel_id) = match &self.mode {
            Mode::Api {
                token,
                api_url,
                channel_id,
            } => (token, api_url, channel_id),
            Mode::Webhook { url, channel } => {
                let mut body = json!({"text": text});
                kit::put(&mut body, "channel", channel.as_ref());
                kit::put(&mut body, "username", self.instance.username.as_ref());
                kit::put(&mut body, "icon_url", self.instance.icon_url.as_ref());
                if let Some((message, attachments)) = card_parts(msg) {
                    // A webhook takes attachments alone; an empty `text` is no text.
                    match (message.is_empty(), body.as_object_mut()) {
                        (true, Some(o)) => drop(o.remove("text")),
                        _ => body["text"] = json!(message),
                    }
                    body["attachments"] = attachments;
                }
                return Outbound::Http(HttpRequest::post_json(url, &body));
            }
        };
        let posts = format!("{api_url}/api/v4/posts");
        let req = match msg.action {
            Action::Post { thread } => {
                let mut body = json!({"channel_id": channel_id, "message": text});
                kit::put(&mut body, "root_id", thread.and_then(|t| t.root));
                if let Some((message, attachments)) = card_parts(msg) {
                    body["message"] = json!(message);
                    body["props"] = json!({"attachments": attachments});
                }
                HttpRequest::post_json(&Secret::new(posts), &body)
            }
            // `patch` changes only the fields given: the thread stays. The
            // props are named always: a card struck through (a deleted
            // post, `card` unset) must lose its attachment.
            Action::Edit { remote_id } => {
                let url = Secret::new(format!("{}/patch", id_url(&posts, remote_id).expose()));
                let (message, attachments) =
                    card_parts(msg).unwrap_or_else(|| (text.clone(), json!([])));
                let body = json!({"message": message, "props": {"attachments": attachments}});
                HttpRequest::put_json(&url, &body)
            }
            Action::Delete { remote_id } => HttpRequest::delete(id_url(&posts, remote_id)),
        };
        Outbound::Http(req.bearer(token))
    }

    fn classify(&self, resp: &HttpResponse) -> Outcome {
        // The sender redacts the whole webhook URL; an answer quoting only
        // its `/hooks/KEY` path would still show the key.
        kit::scrub(self.classify_answer(resp), &self.webhook_key())
    }

    fn chat_ids(&self) -> Vec<String> {
        match &self.mode {
            Mode::Api { channel_id, .. } => vec![channel_id.clone()],
            Mode::Webhook { channel, .. } => channel.iter().cloned().collect(),
        }
    }
}

impl MattermostChat {
    fn is_webhook(&self) -> bool {
        matches!(self.mode, Mode::Webhook { .. })
    }

    fn webhook_key(&self) -> Vec<Secret> {
        let Mode::Webhook { url, .. } = &self.mode else {
            return vec![];
        };
        let key = url::Url::parse(url.expose()).ok().and_then(|u| {
            let key = u.path_segments()?.next_back()?;
            (key.len() >= 8).then(|| Secret::new(key))
        });
        key.into_iter().collect()
    }

    fn classify_answer(&self, resp: &HttpResponse) -> Outcome {
        let (status, webhook) = (resp.status, self.is_webhook());
        let body: serde_json::Value = serde_json::from_slice(&resp.body).unwrap_or_default();
        let reason = || format!("mattermost: {}", SPEC.describe(resp, &body));
        match status {
            // The status is authoritative: retrying would post twice.
            200..=299 => Outcome::Sent {
                remote_id: (body["id"].as_str().filter(|_| !webhook)).map(str::to_string),
            },
            // The post is gone (deleted in the chat): a delete has nothing
            // left to do, and an edit never can.
            404 if body["id"].as_str() == Some("app.post.get.app_error") => {
                Outcome::Sent { remote_id: None }
            }
            429 => Outcome::Retry {
                reason: reason(),
                after: resp.retry_after().or_else(|| ratelimit_reset(resp)),
            },
            // "Not implemented": the feature is switched off server-wide.
            501 => Outcome::Permanent {
                reason: reason()
                    + if webhook {
                        " (incoming webhooks are disabled on this server)"
                    } else {
                        " (the API is disabled on this server)"
                    },
            },
            _ => kit::hinted(classify_json(resp, &SPEC), hint(resp, &body, webhook)),
        }
    }
}

/// What to check, for a permanent failure (by status, mode and the error's text).
fn hint(resp: &HttpResponse, body: &serde_json::Value, webhook: bool) -> &'static str {
    let message = body["message"].as_str().unwrap_or("");
    let text = format!("{message} {}", resp.body_snippet()).to_ascii_lowercase();
    match (resp.status, webhook) {
        (401, _) => " (the token was rejected: check it, and that the bot account is enabled)",
        (403, false) => {
            " (the token's account may not post in this channel: add the bot to the team and the channel)"
        }
        (403, true) => " (the webhook may not post to that channel)",
        (404, false) => " (check channel_id: the channel is unknown or the bot cannot see it)",
        (404, true) => " (the webhook was deleted: create a new one and update webhook_url)",
        (400, true) if text.contains("couldn't find the channel") => {
            " (check `channel`: no such channel for this webhook's team)"
        }
        (400, true) if text.contains("invalid webhook") => {
            " (the webhook was deleted: create a new one and update webhook_url)"
        }
        (400, _) if text.contains("archived") => " (the channel is archived)",
        (400, false) if text.contains("root_id") || text.contains("rootid") => {
            " (the thread's first message was deleted in the chat)"
        }
        _ => "",
    }
}

/// `X-Ratelimit-Reset`: seconds until the limit resets (Mattermost's
/// limiter), or, from proxies that send it, a Unix time.
fn ratelimit_reset(resp: &HttpResponse) -> Option<Duration> {
    let v: u64 = resp.header("X-Ratelimit-Reset")?.trim().parse().ok()?;
    Some(if v > 1_000_000_000 {
        let at = i64::try_from(v).unwrap_or(i64::MAX);
        retry_hint::until_unix_secs(at, retry_hint::now_unix_secs())
    } else {
        retry_hint::secs_u64(v)
    })
}

/// The card of `msg` (the chat's own, or the default), as the message text
/// above it and its attachments; `None` when the chat sends text.
fn card_parts(msg: &Message<'_>) -> Option<(String, Value)> {
    let card = msg.card?;
    let Some(custom) = msg.custom else {
        return Some((String::new(), json!([default_card(card)])));
    };
    // Only the message's look: where it goes stays the relay's.
    let message = custom["text"].as_str().unwrap_or_default().to_string();
    Some((message, custom["attachments"].clone()))
}

/// The default attachment: see the module doc. Every piece is cut as plain
/// text before escaping, so each field and the whole stay far within
/// Mattermost's limits whatever the post.
fn default_card(card: &Card) -> Value {
    const MD: Dialect = Dialect::Markdown;
    let mut said = card::cut(&card.label, 100);
    if let Some(au) = &card.author {
        said = format!("{said} by {}", card::cut(&au.name, 80));
    }
    let fallback = format!("{} · {said}", card::cut(&card.headline(), 250));
    let mut a = json!({
        "fallback": inert(&fallback),
        "title": md(&card::cut(&card.headline(), 250)),
        "title_link": card.url,
        "footer": inert(&card::cut(&card.footer.text, MAX_FOOTER / 2)),
    });
    kit::put(&mut a, "color", card.color.map(card::Color::hex));
    let mut byline = Vec::new();
    if let Some(au) = &card.author {
        byline.push(format!(
            "{} @{}",
            card::cut(&au.name, 80),
            card::cut(&au.username, 60)
        ));
        kit::put(&mut a, "author_link", Some(&au.url));
        kit::put(
            &mut a,
            "author_icon",
            Some(&au.avatar).filter(|u| !u.is_empty()),
        );
    }
    byline.push(card::cut(&card.label, 200));
    byline.retain(|b| !b.is_empty());
    // A notice about nobody in particular has no byline at all.
    if !byline.is_empty() {
        a["author_name"] = json!(inert(&byline.join(" · ")));
    }
    if !card.text.is_empty() {
        a["text"] = json!(md(&card::cut(&card.text, 1000)));
    }
    let mut fields = Vec::new();
    if let Some(c) = &card.category {
        let value = angles(link(MD, &c.url, &card::cut(&c.text, 100)));
        fields.push(json!({"title": "Category", "value": value, "short": true}));
    }
    if !card.tags.is_empty() {
        let tags: Vec<String> = (card.tags.iter().take(MAX_TAGS))
            .map(|t| angles(link(MD, &t.url, &card::cut(&t.text, 60))))
            .collect();
        fields.push(json!({"title": "Tags", "value": tags.join(", "), "short": true}));
    }
    if !fields.is_empty() {
        a["fields"] = json!(fields);
    }
    kit::put(
        &mut a,
        "footer_icon",
        Some(&card.footer.url).filter(|u| !u.is_empty()),
    );
    // No `ts`: the server takes it (Slack compatibility), but the web
    // app's attachment (`@mattermost/types` MessageAttachment) has no such
    // field and draws no time; the footer carries the forum instead.
    a
}

/// `s` for a Markdown field of a card: [`angles`] of its Markdown escape,
/// and `~` followed by U+200B: `\~town-square` still shows as a channel
/// link (the Markdown dialect's known hole, tests/parser_escaping.rs), a
/// broken name does not.
fn md(s: &str) -> String {
    let md = angles(escape(Dialect::Markdown, s));
    match md.contains("\\~") {
        true => md.replace("\\~", "\\~\u{200B}"),
        false => md,
    }
}

/// Markdown with its escaped angle brackets as entities: marked decodes
/// `&lt;` to the same `<` that `\<` shows, but no text of the card then
/// holds a `<script` or `<!channel>` that a tool copying it somewhere else
/// (or the server's Slack link translation) could take for live.
fn angles(md: String) -> String {
    if !md.contains("\\<") && !md.contains("\\>") {
        return md;
    }
    md.replace("\\<", "&lt;").replace("\\>", "&gt;")
}

/// Plain text for a card field the platform shows as it is (Mattermost's
/// and Rocket.Chat's author and title, DingTalk's and WeCom's plain
/// fields): a backslash escape would show, so the mention, tag and link
/// starts are broken with U+200B instead (invisible; nothing pings or
/// links there, and a copy of the text pasted elsewhere stays inert too).
pub(super) fn inert(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    let mut prev = '\0';
    for c in s.chars() {
        if c == '(' && prev == ']' {
            out.push('\u{200B}');
        }
        out.push(c);
        if matches!(c, '@' | '<') {
            out.push('\u{200B}');
        }
        prev = c;
    }
    out
}

/// A chat's own card within Mattermost's limits.
fn check_card(card: &Value) -> Result<(), String> {
    let obj = kit::card_object(
        card,
        "a mattermost card",
        "`attachments`",
        &["attachments", "text"],
    )?;
    if let Some(text) = obj.get("text") {
        let n = text
            .as_str()
            .ok_or("/text must be a string")?
            .chars()
            .count();
        kit::ensure_len("/text", Some(n), MAX_MESSAGE)?;
    }
    let atts = obj
        .get("attachments")
        .ok_or("a mattermost card needs `attachments`")?;
    let atts = atts.as_array().ok_or("/attachments must be an array")?;
    for (i, a) in atts.iter().enumerate() {
        let at = format!("/attachments/{i}");
        let a = a
            .as_object()
            .ok_or_else(|| format!("{at} must be an object"))?;
        for (key, v) in a {
            let text_field = !matches!(key.as_str(), "fields" | "actions" | "ts");
            if text_field && !v.is_string() {
                return Err(format!("{at}/{key} must be a string"));
            }
        }
        check_attachment(&at, a)?;
        let footer = a
            .get("footer")
            .and_then(Value::as_str)
            .map(|f| f.chars().count());
        kit::ensure_len(&format!("{at}/footer"), footer, MAX_FOOTER)?;
        if let Some(fields) = a.get("fields") {
            let fields =
                (fields.as_array()).ok_or_else(|| format!("{at}/fields must be an array"))?;
            for (j, f) in fields.iter().enumerate() {
                if !f["title"].is_string() && !f["value"].is_string() {
                    return Err(format!("{at}/fields/{j} needs a `title` or a `value`"));
                }
            }
        }
    }
    let props = json!({"attachments": atts}).to_string().chars().count();
    kit::ensure_len("/attachments (as JSON)", Some(props), MAX_PROPS)
}

/// What the server's `SlackAttachment.IsValid` refuses: a colour other
/// than a hex code or `good`/`warning`/`danger`, a link without its text,
/// a URL that is not http(s), a `ts` other than a string or an integer
/// (sent as a string: JSON numbers reach the check as floats).
fn check_attachment(at: &str, a: &serde_json::Map<String, Value>) -> Result<(), String> {
    let text = |k: &str| a.get(k).and_then(Value::as_str).unwrap_or_default();
    let color = text("color");
    let hex = color
        .strip_prefix('#')
        .is_some_and(|h| matches!(h.len(), 3 | 6) && h.chars().all(|c| c.is_ascii_hexdigit()));
    if !color.is_empty() && !hex && !matches!(color, "good" | "warning" | "danger") {
        return Err(format!(
            "{at}/color must be a hex colour (#RRGGBB) or good, warning, danger"
        ));
    }
    for (link, of) in [("author_link", "author_name"), ("title_link", "title")] {
        if !text(link).is_empty() && text(of).is_empty() {
            return Err(format!("{at}/{link} needs `{of}`"));
        }
    }
    for key in [
        "author_link",
        "author_icon",
        "title_link",
        "image_url",
        "thumb_url",
        "footer_icon",
    ] {
        let url = text(key);
        if !url.is_empty() && !card::web_url(url) {
            return Err(format!("{at}/{key} must be an http(s) URL"));
        }
    }
    if let Some(ts) = a.get("ts")
        && !(ts.is_string() || ts.is_i64())
    {
        return Err(format!("{at}/ts must be a string or an integer"));
    }
    Ok(())
}

/// Mattermost's `{"id", "message"}` error, as `id: message`.
fn mm_error(b: &Value) -> Option<String> {
    kit::joined(b, &["/id", "/message"])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::testkit::{bind, bind_chat, body, header, post, reply, request, resp};

    const TOKEN: &str = "canary-mm-token-8u3k2";
    const CHANNEL: &str = "4xp9fdt77pncbef59f4k1qe83o";
    const HOOK: &str = "https://chat.example.org/hooks/canaryhookkey12345";
    const POST: &str = "ab1cd2ef3gh4ij5kl6mn7op8qr";

    fn instance() -> Arc<Mattermost> {
        Arc::new(Mattermost {
            token: Some(Secret::new(TOKEN)),
            api_url: Some("http://127.0.0.1:9".into()),
            username: Some("Forum".into()),
            icon_url: None,
        })
    }

    fn api_chat() -> MattermostChat {
        MattermostChat {
            instance: instance(),
            mode: Mode::Api {
                token: Secret::new(TOKEN),
                api_url: "http://127.0.0.1:9".into(),
                channel_id: CHANNEL.into(),
            },
        }
    }

    fn hook_chat(channel: Option<&str>) -> MattermostChat {
        MattermostChat {
            instance: instance(),
            mode: Mode::Webhook {
                url: Secret::new(HOOK),
                channel: channel.map(str::to_string),
            },
        }
    }

    fn bearer(r: &HttpRequest) -> bool {
        header(r, "Authorization") == Some(&format!("Bearer {TOKEN}"))
    }

    #[test]
    fn rest_and_webhook_request_shapes() {
        let text = "**[t](https://f/t/1)** @\u{200B}channel";
        let r = post(&api_chat(), text);
        assert_eq!(r.url.expose(), "http://127.0.0.1:9/api/v4/posts");
        assert!(bearer(&r));
        assert_eq!(body(&r), json!({"channel_id": CHANNEL, "message": text}));

        let r = post(&hook_chat(Some("town-square")), text);
        assert_eq!(r.url.expose(), HOOK);
        assert_eq!(header(&r, "Authorization"), None);
        assert_eq!(
            body(&r),
            json!({"text": text, "channel": "town-square", "username": "Forum"})
        );
        assert_eq!(api_chat().target(), format!("channel {CHANNEL}"));
        assert!(!hook_chat(None).target().contains("canary"));
        assert!(api_chat().capabilities().thread && !hook_chat(None).capabilities().thread);
    }

    #[test]
    fn long_messages_are_cut() {
        let b = body(&post(&api_chat(), &"word ".repeat(4000)));
        let m = b["message"].as_str().unwrap_or_default();
        assert!(m.chars().count() <= MAX_MESSAGE && m.ends_with("word…"));
    }

    #[test]
    fn classifies_answers() {
        let (api, hook) = (api_chat(), hook_chat(None));
        let created = r#"{"id":"ab1cd2ef3gh4ij5kl6mn7op8qr","channel_id":"x","message":"m"}"#;
        assert_eq!(
            api.classify(&resp(201, &[], created)),
            Outcome::Sent {
                remote_id: Some(POST.into())
            }
        );
        assert_eq!(
            hook.classify(&resp(200, &[], "ok")),
            Outcome::Sent { remote_id: None }
        );
        let reset = [("X-Ratelimit-Reset", "4"), ("X-Ratelimit-Remaining", "0")];
        assert_eq!(
            api.classify(&resp(429, &reset, "limit exceeded")),
            Outcome::Retry {
                reason: "mattermost: HTTP 429: limit exceeded".into(),
                after: Some(std::time::Duration::from_secs(4))
            }
        );
        let both = [("Retry-After", "2"), ("X-Ratelimit-Reset", "9")];
        assert!(matches!(
            api.classify(&resp(429, &both, "")),
            Outcome::Retry { after: Some(d), .. } if d.as_secs() == 2
        ));
        assert!(matches!(
            api.classify(&resp(503, &[], "")),
            Outcome::Retry { .. }
        ));
        let err = |id: &str, msg: &str, code: u16| {
            format!(
                r#"{{"id":"{id}","message":"{msg}","detailed_error":"","request_id":"r","status_code":{code}}}"#
            )
        };
        let cases = [
            (
                &api,
                401,
                err(
                    "api.context.session_expired.app_error",
                    "Invalid or expired session, please login again.",
                    401,
                ),
                "token was rejected",
            ),
            (
                &api,
                403,
                err(
                    "api.context.permissions.app_error",
                    "You do not have the appropriate permissions.",
                    403,
                ),
                "add the bot",
            ),
            (
                &api,
                404,
                err(
                    "app.channel.get.existing.app_error",
                    "Unable to find the existing channel.",
                    404,
                ),
                "check channel_id",
            ),
            (
                &api,
                400,
                err(
                    "api.post.create_post.root_id.app_error",
                    "Invalid RootId parameter.",
                    400,
                ),
                "first message was deleted",
            ),
            (
                &hook,
                400,
                err(
                    "web.incoming_webhook.channel.app_error",
                    "Couldn't find the channel.",
                    400,
                ),
                "check `channel`",
            ),
            (&hook, 404, "".to_string(), "webhook was deleted"),
            (
                &hook,
                501,
                err(
                    "web.incoming_webhook.disabled.app_error",
                    "Incoming webhooks have been disabled by the system admin.",
                    501,
                ),
                "disabled",
            ),
        ];
        for (chat, status, body, want) in cases {
            let out = chat.classify(&resp(status, &[], &body));
            let Outcome::Permanent { reason } = &out else {
                panic!("{status} {body} should be permanent: {out:?}")
            };
            assert!(reason.contains(want), "{reason} lacks {want}");
            assert!(!reason.contains(TOKEN));
        }
        // An answer quoting the hook's path loses the key.
        let out = hook.classify(&resp(400, &[], "bad hook /hooks/canaryhookkey12345"));
        assert!(
            !format!("{out:?}").contains("canaryhookkey12345"),
            "{out:?}"
        );
        // PATCH answers the post; DELETE `{"status":"OK"}`; a post already
        // deleted in the chat is done.
        let edited =
            r#"{"id":"ab1cd2ef3gh4ij5kl6mn7op8qr","message":"new","edit_at":1700000000000}"#;
        assert_eq!(
            api.classify(&resp(200, &[], edited)),
            Outcome::Sent {
                remote_id: Some(POST.into())
            }
        );
        let gone = err("app.post.get.app_error", "Unable to get the post.", 404);
        for (status, body) in [(200, r#"{"status":"OK"}"#), (404, gone.as_str())] {
            let out = api.classify(&resp(status, &[], body));
            assert_eq!(out, Outcome::Sent { remote_id: None }, "{body}");
        }
    }

    #[test]
    fn thread_edit_and_delete_requests() {
        let req = |action| request(&api_chat(), "new **text**", action);
        let opens = req(reply(None));
        assert_eq!(
            body(&opens),
            json!({"channel_id": CHANNEL, "message": "new **text**"})
        );
        let posts = "http://127.0.0.1:9/api/v4/posts";
        let delete = format!("{posts}/{POST}");
        let patch = format!("{delete}/patch");
        for (action, method, url, want) in [
            (
                reply(Some(POST)),
                "POST",
                posts,
                json!({"channel_id": CHANNEL, "message": "new **text**", "root_id": POST}),
            ),
            (
                Action::Edit { remote_id: POST },
                "PUT",
                &patch,
                json!({"message": "new **text**", "props": {"attachments": []}}),
            ),
            (
                Action::Delete { remote_id: POST },
                "DELETE",
                &delete,
                json!(null),
            ),
        ] {
            let r = req(action);
            assert_eq!((r.method, r.url.expose()), (method, url));
            assert!(bearer(&r));
            match want {
                serde_json::Value::Null => assert!(r.body.is_empty()),
                want => assert_eq!(body(&r), want),
            }
        }
        // A stored id can never leave its path segment.
        let odd = req(Action::Delete {
            remote_id: "x/../../users?y",
        });
        assert_eq!(odd.url.expose(), format!("{posts}/x%2F..%2F..%2Fusers%3Fy"));
    }

    #[test]
    fn fields_are_validated() {
        let no_token = Arc::new(Mattermost {
            token: None,
            api_url: Some("https://chat.example.org".into()),
            username: None,
            icon_url: None,
        });
        let cases: [(&Arc<Mattermost>, String, &str); 6] = [
            (
                &no_token,
                format!("{{ channel_id = \"{CHANNEL}\" }}"),
                "needs `token",
            ),
            (
                &instance(),
                "{ channel_id = \"town-square\" }".into(),
                "not a channel name",
            ),
            (
                &instance(),
                format!("{{ channel_id = \"{CHANNEL}\", channel = \"x\" }}"),
                "`channel` is for incoming webhooks",
            ),
            (
                &instance(),
                format!("{{ channel_id = \"{CHANNEL}\", webhook_url = \"${{H}}\" }}"),
                "not both",
            ),
            (
                &instance(),
                "{ webhook_url = \"https://chat.example.org/hooks/literal\" }".into(),
                "environment reference",
            ),
            (
                &instance(),
                "{ channel = \"town-square\" }".into(),
                "needs `channel_id`",
            ),
        ];
        for (inst, text, want) in cases {
            let (d, problems) = bind_chat(inst.clone(), &text, Some(0..1));
            assert!(d.is_none(), "{text}");
            let p = &problems[0];
            assert!(p.message.contains(want), "{text}: {}", p.message);
            assert!(p.span.is_some());
        }
        // `api_url` may be given as the API root.
        let settings = "{ token = \"${T}\", api_url = \"https://chat.example.org/api/v4/\" }";
        let target = format!("{{ channel_id = \"{CHANNEL}\" }}");
        let (d, _) = bind(&REGISTRATION, settings, &target, &[]);
        let d = d.expect("a REST chat");
        assert_eq!(
            post(d.as_ref(), "x").url.expose(),
            "https://chat.example.org/api/v4/posts"
        );
    }

    use crate::providers::card_tests;

    fn card_req(chat: &MattermostChat, card: &Card, action: Action<'_>) -> Value {
        body(&card_tests::request(
            chat,
            "the *text*",
            Some(card),
            None,
            action,
        ))
    }

    #[test]
    fn the_default_card_is_one_attachment_with_a_plain_fallback() {
        let card = card_tests::sample();
        let want = json!([{
            "fallback": "How do I share state between async tasks? · New topic by Bob Ramirez",
            "color": "#F1592A",
            "author_name": "Bob Ramirez @\u{200B}bob · New topic",
            "author_link": "https://forum.example.org/u/bob",
            "author_icon": "https://forum.example.org/user_avatar/forum.example.org/bob/96/12_2.png",
            "title": "How do I share state between async tasks?",
            "title_link": "https://forum.example.org/t/how-do-i-share-state-between-async-tasks/101/1",
            "text": "I have a shared map & several &lt;tasks&gt;.",
            "fields": [
                {"title": "Category", "value": "[Rust](https://forum.example.org/c/support/rust/7)", "short": true},
                {"title": "Tags", "value": "[async](https://forum.example.org/tag/async)", "short": true},
            ],
            "footer": "Example Forum",
            "footer_icon": card.footer.url,
        }]);
        let rest = card_req(&api_chat(), &card, reply(Some(POST)));
        assert_eq!(
            rest,
            json!({"channel_id": CHANNEL, "message": "", "root_id": POST, "props": {"attachments": want}})
        );
        let hook = card_req(&hook_chat(Some("town-square")), &card, Action::default());
        assert_eq!(
            hook,
            json!({"channel": "town-square", "username": "Forum", "attachments": want})
        );
        // An edit replaces the card; one without a card (struck through)
        // clears it.
        let edit = card_req(&api_chat(), &card, Action::Edit { remote_id: POST });
        assert_eq!(edit, json!({"message": "", "props": {"attachments": want}}));
        let r = request(&api_chat(), "~~gone~~", Action::Edit { remote_id: POST });
        assert_eq!(
            body(&r),
            json!({"message": "~~gone~~", "props": {"attachments": []}})
        );
    }

    #[test]
    fn a_chats_own_card_replaces_the_attachments_and_nothing_else() {
        let custom = json!({"text": "hi", "attachments": [{"text": "mine"}], "channel_id": "x"});
        assert!(check_card(&custom).is_err(), "only the look");
        let custom = json!({"text": "hi", "attachments": [{"text": "mine"}]});
        check_card(&custom).unwrap();
        let card = card_tests::sample();
        let r = card_tests::request(
            &api_chat(),
            "t",
            Some(&card),
            Some(&custom),
            Action::default(),
        );
        assert_eq!(
            body(&r),
            json!({"channel_id": CHANNEL, "message": "hi", "props": {"attachments": [{"text": "mine"}]}})
        );
    }

    #[test]
    fn a_huge_post_still_gives_a_card_within_every_limit() {
        let card = card_tests::huge();
        let text = truncate(&"w ".repeat(60_000), MAX_MESSAGE);
        let r = card_tests::request(&api_chat(), &text, Some(&card), None, Action::default());
        let b = body(&r);
        let a = &b["props"]["attachments"][0];
        check_card(&json!({"text": b["message"], "attachments": b["props"]["attachments"]}))
            .unwrap();
        assert!(a["title"].as_str().unwrap().chars().count() <= 600);
        assert!(a["text"].as_str().unwrap().chars().count() <= 2100);
        assert!(
            a["fields"][1]["value"]
                .as_str()
                .unwrap()
                .contains("tag/t9)")
        );
        assert!(
            !a["fields"][1]["value"]
                .as_str()
                .unwrap()
                .contains("tag/t10)")
        );
        assert!(a["author_name"].as_str().unwrap().chars().count() <= 400);
        assert!(r.body.chars().count() < 40_000, "{}", r.body.len());
    }

    #[test]
    fn check_card_names_what_is_over_the_limit() {
        let long = "x".repeat(301);
        let err = check_card(&json!({"attachments": [{}, {"footer": long}]})).unwrap_err();
        assert_eq!(err, "/attachments/1/footer has 301 characters; at most 300");
        let err = check_card(&json!({"attachments": [{"title": 3}]})).unwrap_err();
        assert_eq!(err, "/attachments/0/title must be a string");
        let err = check_card(&json!({"attachments": [{"title_link": "https://f/1"}]}));
        assert_eq!(err.unwrap_err(), "/attachments/0/title_link needs `title`");
        let err = check_card(&json!({"attachments": [{"color": "blue"}]}));
        assert!(
            err.unwrap_err()
                .starts_with("/attachments/0/color must be a hex")
        );
        let err = check_card(&json!({"attachments": [{"author_icon": "javascript:x"}]}));
        assert_eq!(
            err.unwrap_err(),
            "/attachments/0/author_icon must be an http(s) URL"
        );
        let err = check_card(&json!({"attachments": [{"ts": 1.5}]}));
        assert_eq!(
            err.unwrap_err(),
            "/attachments/0/ts must be a string or an integer"
        );
        let big = json!({"attachments": [{"text": "x".repeat(MAX_PROPS)}]});
        assert!(
            check_card(&big)
                .unwrap_err()
                .starts_with("/attachments (as JSON) has")
        );
        assert!(check_card(&json!({"text": "x"})).is_err());
        assert!(check_card(&json!([])).is_err());
    }
}
