//! `matrix`: a message event through the client-server API v3, `PUT
//! {homeserver}/_matrix/client/v3/rooms/{roomId}/send/m.room.message/{txnId}`,
//! with an access token as `Authorization: Bearer` (never the deprecated
//! `?access_token=`). The `gitter` kind (`super::gitter`) is this provider
//! with Gitter's homeserver as the default.
//!
//! HTML: the rendered text is the `formatted_body` (values escaped as
//! entities, `@name` broken with U+200B; checked by Matrix's parser in
//! tests/parser_escaping.rs); `body` is that HTML as plain text, links kept
//! as `text (url)`. `"m.mentions": {}` says the event mentions nobody, so
//! `@room` or a display name cannot notify; `m.notice` marks a bot.
//!
//! Cards (the default style): HTML laid out like a card, within Element's
//! `formatted_body` allowlist: the headline, bold and linked; the author
//! (linked to their profile) and @username · what happened · a `■` in the
//! category's colour (`<font color>`, the only colour Matrix clients draw)
//! and the linked category; the excerpt in a `<blockquote>`; 🏷️ the tags as
//! links; the forum and the time (UTC). No avatar: Matrix clients show
//! images from `mxc://` URLs only, and uploading one per author is not a
//! relay's job. `body` is that card as plain text, with a post's `<`/`>` as
//! `‹`/`›` and `@` broken with U+200B, for clients without HTML and
//! notifications. Everything else holds as for text: `m.notice`,
//! `"m.mentions": {}`, threads, and edits carrying the card in
//! `m.new_content`. A chat's own card is an object with `formatted_body`
//! (and optionally `body`; else it is derived), at most 16 KB each.
//!
//! The transaction id is a hash of the delivery, so a retry gets the first
//! event back instead of a second post. The `event_id` is the remote id:
//! `m.thread` replies, `m.replace` edits, redactions. Errors
//! `{"errcode","error"}`; see shared/providers.md §2.5.

use super::kit::prelude::*;

pub const REGISTRATION: Registration =
    kit::registration::<Matrix>("matrix", "Matrix room (client-server API, access token)");

/// `[providers.NAME]` for `kind = "matrix"`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(rename = "MatrixSettings")]
pub struct Settings {
    /// Client-server API base URL of the homeserver, e.g. `https://matrix.example.org`: the `m.homeserver` `base_url` of `https://SERVER/.well-known/matrix/client`, which may differ from the server name in ids. Required.
    pub homeserver: Option<Located<String>>,
    /// Access token of the account that posts, as `${VAR}`. The account must have joined every room it posts to. Sent as `Authorization: Bearer`. Required.
    pub access_token: Option<Located<String>>,
}

/// Chat fields for a Matrix chat.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(rename = "MatrixTarget")]
pub struct Target {
    /// Room id, e.g. `!AbCdEf123:example.org` (Element: Room settings → Advanced → Internal room ID). Aliases (`#room:example.org`) are refused: resolve one once with `GET /_matrix/client/v3/directory/room/{alias}`.
    pub room: Option<Located<String>>,
}

/// What differs between the kinds built on this provider.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Flavor {
    pub kind: &'static str,
    /// `homeserver` when the settings give none.
    pub default_homeserver: Option<&'static str>,
}

const MATRIX: Flavor = Flavor {
    kind: "matrix",
    default_homeserver: None,
};

/// Spec'd limit of a whole event (with signatures and federation fields).
const EVENT_MAX_BYTES: usize = 65_536;

#[derive(Debug)]
pub(crate) struct Matrix {
    flavor: Flavor,
    homeserver: Option<String>,
    token: Option<Secret>,
}

impl Matrix {
    /// Reads the settings shared by `matrix` and `gitter`, from `table`.
    pub(crate) fn read(
        flavor: Flavor,
        table: &Table,
        homeserver: Option<&Located<String>>,
        access_token: Option<&Located<String>>,
        cx: &mut Ctx<'_>,
    ) -> Option<Self> {
        let homeserver = match homeserver {
            Some(u) => Some(cx.url("homeserver", u, false)?.expose().to_string()),
            None => flavor.default_homeserver.map(str::to_string),
        };
        let token = match access_token {
            Some(t) => Some(cx.secret("access_token", t)?),
            None => None,
        };
        let p = Matrix {
            flavor,
            homeserver: homeserver.map(|h| h.trim_end_matches('/').to_string()),
            token,
        };
        table.complete(cx, p.incomplete())?;
        Some(p)
    }

    /// `${MATRIX_TOKEN}` for the flavor's kind, in problems.
    fn token_var(&self) -> String {
        format!("${{{}_TOKEN}}", self.flavor.kind.to_uppercase())
    }
}

impl Provider for Matrix {
    type Settings = Settings;
    type Target = Target;

    fn new(s: Settings, table: &Table, cx: &mut Ctx<'_>) -> Option<Self> {
        Matrix::read(
            MATRIX,
            table,
            s.homeserver.as_ref(),
            s.access_token.as_ref(),
            cx,
        )
    }

    fn bind_target(self: Arc<Self>, t: Target, chat: Span, cx: &mut Ctx<'_>) -> Bound {
        let kind = self.flavor.kind;
        let missing =
            format!("a {kind} chat needs `room`, a room id like \"!AbCdEf123:example.org\"");
        let room = kit::required(cx, &t.room, chat.clone(), &missing)?;
        let room = room_id(room, cx)?;
        let (Some(homeserver), Some(token)) = (&self.homeserver, &self.token) else {
            let token = format!("`access_token = \"{}\"`", self.token_var());
            let needs = match self.homeserver {
                None => format!("`homeserver` and {token}"),
                Some(_) => token,
            };
            return kit::reject(cx, chat, kit::chat_needs(kind, &needs));
        };
        Some(Box::new(MatrixChat {
            kind,
            homeserver: homeserver.clone(),
            token: token.clone(),
            room,
        }))
    }
}

impl Matrix {
    /// The problem of a table that lacks a required key ([`kit::needs`]).
    fn incomplete(&self) -> Option<String> {
        let token = format!("`access_token` (e.g. \"{}\")", self.token_var());
        let keys = [
            (
                self.homeserver.is_none(),
                "`homeserver` (e.g. \"https://matrix.example.org\")",
            ),
            (self.token.is_none(), token.as_str()),
        ];
        kit::needs(self.flavor.kind, " and ", &keys)
    }
}

/// Checks a `room` value: a room id, never an alias. Room ids are `!` and an
/// opaque part, with `:server` before room version 12 and without it since.
fn room_id(room: &Located<String>, cx: &mut Ctx<'_>) -> Option<String> {
    let id = room.get_ref().trim();
    if id.starts_with('#') {
        let msg = "`room` must be a room id (`!…`), not an alias: find the id in Element under Room settings → Advanced, or with GET /_matrix/client/v3/directory/room/%23ALIAS:SERVER";
        return kit::reject(cx, Some(room.span()), msg);
    }
    let valid = id.len() > 1
        && id.starts_with('!')
        && !id.chars().any(|c| c.is_whitespace() || c.is_control());
    if !valid {
        let msg = "`room` must be a room id like \"!AbCdEf123:example.org\"";
        return kit::reject(cx, Some(room.span()), msg);
    }
    Some(id.to_string())
}

#[derive(Debug)]
pub(crate) struct MatrixChat {
    kind: &'static str,
    homeserver: String,
    token: Secret,
    room: String,
}

impl Destination for MatrixChat {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn dialect(&self) -> Dialect {
        Dialect::Html
    }

    fn capabilities(&self) -> Capabilities {
        // The answer carries the `event_id`: replies can go into an
        // `m.thread`, edits are `m.replace` events, deletions redactions.
        Capabilities::ALL
    }

    fn default_rate(&self) -> Option<Rate> {
        // Synapse's default `rc_message`: 0.2 messages/s per user, bursts of 10.
        Some(Rate::per_secs(10, 50))
    }

    fn target(&self) -> String {
        self.room.clone()
    }

    fn cards(&self) -> bool {
        true
    }

    fn check_card(&self, card: &Value) -> Result<(), String> {
        check_card(card)
    }

    fn request(&self, msg: &Message<'_>) -> Outbound {
        let txn = txn_id(msg);
        let (html, plain) = match msg.card {
            Some(card) => card_parts(card, msg.custom),
            None => (msg.text.to_string(), html_to_plain(msg.text)),
        };
        let notice = || {
            json!({
                "msgtype": "m.notice",
                "body": plain,
                "format": "org.matrix.custom.html",
                "formatted_body": html,
                "m.mentions": {},
            })
        };
        let (path, content) = match msg.action {
            Action::Post { thread } => {
                let mut content = notice();
                if let Some(root) = thread.and_then(|t| t.root) {
                    // Clients without threads show it as a reply to the root.
                    content["m.relates_to"] = json!({
                        "rel_type": "m.thread",
                        "event_id": root,
                        "is_falling_back": true,
                        "m.in_reply_to": {"event_id": root},
                    });
                }
                (format!("send/m.room.message/{txn}"), content)
            }
            Action::Edit { remote_id } => {
                // The outer body is the fallback for clients without edits.
                let mut content = notice();
                content["body"] = json!(format!("* {plain}"));
                content["formatted_body"] = json!(format!("* {html}"));
                content["m.new_content"] = notice();
                content["m.relates_to"] = json!({"rel_type": "m.replace", "event_id": remote_id});
                (format!("send/m.room.message/{txn}"), content)
            }
            Action::Delete { remote_id } => (
                format!("redact/{}/{txn}", path_segment(remote_id)),
                json!({"reason": "deleted in the forum"}),
            ),
        };
        let url = Secret::new(format!(
            "{}/_matrix/client/v3/rooms/{}/{path}",
            self.homeserver,
            path_segment(&self.room)
        ));
        Outbound::Http(HttpRequest::put_json(&url, &content).bearer(&self.token))
    }

    fn probe(&self) -> Probe {
        let url = |path: &str| Secret::new(format!("{}/_matrix/client/v3/{path}", self.homeserver));
        let get = |path| HttpRequest::get(url(path)).bearer(&self.token);
        let room = self.room.clone();
        Probe::Http(vec![
            probe::step("account/whoami", get("account/whoami"), judge_whoami),
            probe::step("the room is joined", get("joined_rooms"), move |r| {
                judge_joined(r, &room)
            }),
        ])
    }

    fn classify(&self, resp: &HttpResponse) -> Outcome {
        let body = kit::json_body(resp);
        if (200..300).contains(&resp.status) {
            return match body["event_id"].as_str() {
                Some(id) => Outcome::Sent {
                    remote_id: Some(id.to_string()),
                },
                // Retrying is safe: the same transaction id cannot post twice.
                None => Outcome::Retry {
                    reason: format!(
                        "{}: answer without an event_id: {}",
                        self.kind,
                        resp.body_snippet()
                    ),
                    after: None,
                },
            };
        }
        let Some(errcode) = body["errcode"].as_str() else {
            return classify_status(resp);
        };
        let error = match body["error"].as_str().unwrap_or("") {
            "" => String::new(),
            e if e.chars().count() > 200 => format!(": {}…", kit::clip(e, 200)),
            e => format!(": {e}"),
        };
        let reason = format!(
            "{}: HTTP {} {errcode}{error}{}",
            self.kind,
            resp.status,
            hint(errcode)
        );
        let limited = errcode == "M_LIMIT_EXCEEDED" || resp.status == 429;
        // `Retry-After` since v1.10; `retry_after_ms` before (deprecated).
        kit::explained(resp, reason, limited, || {
            resp.retry_after()
                .or_else(|| retry_hint::json_millis(&body["retry_after_ms"]))
        })
    }
}

fn hint(errcode: &str) -> &'static str {
    match errcode {
        "M_UNKNOWN_TOKEN" | "M_MISSING_TOKEN" => {
            " (the access token was rejected: logged out or expired; set a new one)"
        }
        "M_FORBIDDEN" => {
            " (the account has not joined the room, or may not post in it: invite it and join)"
        }
        "M_NOT_FOUND" => " (unknown room: check `room`)",
        "M_UNRECOGNIZED" => " (not a client-server API endpoint: check `homeserver`)",
        "M_TOO_LARGE" => " (the message is too large; shorten the template)",
        _ => "",
    }
}

/// The transaction id: Synapse answers a repeated one with the first event
/// instead of posting again (for about 30 minutes), so a retry never
/// doubles a message. It is derived from the delivery id where there is
/// one (a re-post after a recovery is a new delivery, so a new event),
/// else from the chat, the event's ids and the text.
fn txn_id(msg: &Message<'_>) -> String {
    let action = match msg.action {
        Action::Post { .. } => "post".to_string(),
        Action::Edit { remote_id } => format!("edit {remote_id}"),
        Action::Delete { remote_id } => format!("delete {remote_id}"),
    };
    match msg.delivery {
        Some(id) => kit::sha256_hex(&json!(["discourse-relay/2", msg.chat, id, action])),
        None => kit::message_key(
            "discourse-relay/1",
            msg,
            &[&json!(msg.text), &json!(action)],
        ),
    }
}

/// The rendered HTML as plain text for `body`: tags dropped, entities
/// decoded, `<br>` and block elements as line breaks, whitespace collapsed
/// within lines, and links as `text (url)` so clients that show `body` (and
/// bridges) keep them. Input beyond the event size limit is ignored.
/// A card's `formatted_body` and `body` at most, in bytes: twice each in an
/// edit (the fallback and `m.new_content`) stays well inside the event's
/// 64 KB.
const MAX_CARD_BYTES: usize = 16_000;

/// Tags shown at most.
const MAX_TAGS: usize = 10;

/// The card's (`formatted_body`, `body`): the chat's own, or the default.
fn card_parts(card: &Card, custom: Option<&Value>) -> (String, String) {
    let own = custom.and_then(|c| c["formatted_body"].as_str());
    let html = match own {
        Some(html) => html.to_string(),
        None => card_html(card),
    };
    let plain = match custom.and_then(|c| c["body"].as_str()) {
        Some(body) => body.to_string(),
        None => super::inert::plain(&html_to_plain(&html)),
    };
    (html, truncate_bytes(&plain, MAX_CARD_BYTES))
}

/// The default card as HTML (see the module doc), within
/// [`MAX_CARD_BYTES`]: the tags' links go first, then the tags.
fn card_html(card: &Card) -> String {
    for (tags, tag_links) in [(true, true), (true, false), (false, false)] {
        let html = card_html_with(card, tags, tag_links);
        if html.len() <= MAX_CARD_BYTES {
            return html;
        }
    }
    // Every other part is bounded (cut texts, four URLs of at most 2,000
    // bytes): under 14 KB escaped, whatever the post.
    card_html_with(card, false, false)
}

fn card_html_with(card: &Card, tags: bool, tag_links: bool) -> String {
    const H: Dialect = Dialect::Html;
    let text = |s: &str, max: usize| escape(H, &card::cut(s, max));
    let linked = |url: &str, s: &str, max: usize| link(H, url, &card::cut(s, max));
    let mut html = format!(
        "<p><strong>{}</strong></p>",
        linked(&card.url, &card.headline(), 200)
    );
    let mut byline = Vec::new();
    if let Some(a) = &card.author {
        byline.push(format!(
            "{} @{}",
            linked(&a.url, &a.name, 80),
            text(&a.username, 60)
        ));
    }
    byline.push(text(&card.label, 200));
    if let Some(c) = &card.category {
        let swatch = match card.color {
            Some(color) => format!("<font color=\"{}\">■</font> ", color.hex()),
            None => String::new(),
        };
        byline.push(format!("{swatch}{}", linked(&c.url, &c.text, 100)));
    }
    html += &format!("<p>{}</p>", byline.join(" · "));
    if !card.text.is_empty() {
        html += &format!("<blockquote>{}</blockquote>", text(&card.text, 300));
    }
    if tags && !card.tags.is_empty() {
        let shown: Vec<String> = (card.tags.iter().take(MAX_TAGS))
            .map(|t| match tag_links {
                true => linked(&t.url, &t.text, 50),
                false => text(&t.text, 50),
            })
            .collect();
        html += &format!("<p>🏷️ {}</p>", shown.join(", "));
    }
    let mut foot = vec![text(&card.footer.text, 100)];
    if let Some(t) = &card.timestamp {
        // `2026-01-02T03:04:05Z` → `2026-01-02 03:04 UTC`.
        foot.push(match (t.get(..10), t.get(11..16)) {
            (Some(d), Some(hm)) if t.ends_with('Z') => format!("{d} {hm} UTC"),
            _ => text(t, 40),
        });
    }
    html += &format!("<p><sub>{}</sub></p>", foot.join(" · "));
    html
}

/// A chat's own card: `formatted_body` (and optionally `body`) as strings
/// of at most [`MAX_CARD_BYTES`].
fn check_card(card: &Value) -> Result<(), String> {
    let obj = kit::card_object(
        card,
        "a matrix card",
        "`formatted_body` (and optionally `body`)",
        &["formatted_body", "body"],
    )?;
    for key in ["formatted_body", "body"] {
        match obj.get(key) {
            None if key == "body" => {}
            None => return Err("a matrix card needs `formatted_body`".into()),
            Some(Value::String(s)) if s.len() > MAX_CARD_BYTES => {
                return Err(format!(
                    "/{key} has {} bytes; at most {MAX_CARD_BYTES}",
                    s.len()
                ));
            }
            Some(Value::String(_)) => {}
            Some(_) => return Err(format!("/{key} must be a string")),
        }
    }
    Ok(())
}

pub(crate) fn html_to_plain(html: &str) -> String {
    let mut end = html.len().min(EVENT_MAX_BYTES);
    while !html.is_char_boundary(end) {
        end -= 1;
    }
    let html = &html[..end];
    // The tokenizer sees template output with user content in it; should it
    // ever panic, that must not take the relay down.
    std::panic::catch_unwind(|| convert(html)).unwrap_or_default()
}

/// Elements that start or end a line.
const LINE_BREAKS: &[&[u8]] = &[
    b"br",
    b"p",
    b"div",
    b"blockquote",
    b"pre",
    b"ul",
    b"ol",
    b"li",
    b"h1",
    b"h2",
    b"h3",
    b"h4",
    b"h5",
    b"h6",
    b"hr",
    b"table",
    b"tr",
    b"details",
    b"summary",
];

fn convert(html: &str) -> String {
    use html5gum::{Token, Tokenizer};

    let mut out = String::with_capacity(html.len());
    // Open links: (href, where their text starts in `out`).
    let mut links: Vec<(String, usize)> = Vec::new();
    let mut hidden: Option<Vec<u8>> = None;
    for token in Tokenizer::new(html).flatten() {
        match token {
            Token::StartTag(tag) if hidden.is_none() => {
                let name = tag.name.0.to_ascii_lowercase();
                let attr = |a: &[u8]| {
                    let v = tag.attributes.get(a)?;
                    Some(String::from_utf8_lossy(&v.value).into_owned())
                };
                match name.as_slice() {
                    b"script" | b"style" | b"head" | b"title" if !tag.self_closing => {
                        hidden = Some(name);
                    }
                    b"a" => {
                        let href = attr(b"href").unwrap_or_default();
                        links.push((href.trim().to_string(), out.len()));
                    }
                    b"img" => push_text(&mut out, &attr(b"alt").unwrap_or_default()),
                    n if LINE_BREAKS.contains(&n) => out.push('\n'),
                    _ => {}
                }
            }
            Token::EndTag(tag) => {
                let name = tag.name.0.to_ascii_lowercase();
                if let Some(h) = &hidden {
                    if *h == name {
                        hidden = None;
                    }
                    continue;
                }
                match name.as_slice() {
                    b"a" => {
                        if let Some((href, start)) = links.pop() {
                            let text = out.get(start..).unwrap_or("").trim().to_string();
                            if text.is_empty() {
                                push_text(&mut out, &href);
                            } else if !href.is_empty() && text != href {
                                out.push_str(&format!(" ({href})"));
                            }
                        }
                    }
                    n if LINE_BREAKS.contains(&n) => out.push('\n'),
                    _ => {}
                }
            }
            Token::String(s) if hidden.is_none() => {
                push_text(&mut out, &String::from_utf8_lossy(&s.value));
            }
            _ => {}
        }
    }
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Text content: whitespace (newlines included) is a space, as in HTML.
fn push_text(out: &mut String, text: &str) {
    for c in text.chars() {
        if c.is_whitespace() {
            out.push(' ');
        } else if !c.is_control() {
            out.push(c);
        }
    }
}

/// Matrix errors: `{"errcode": "M_UNKNOWN_TOKEN", "error": "…"}`.
fn matrix_error(b: &Value) -> Option<String> {
    kit::joined(b, &["/errcode", "/error"])
}

const TOKEN_HINT: &str = "the access token was rejected (M_UNKNOWN_TOKEN: logged out or expired): log the account in again and update access_token";

fn judge_whoami(resp: &HttpResponse) -> Judgement {
    let ok = |b: &Value| Judgement::pass(format!("token works: {}", probe::text(b, "/user_id")));
    let missing =
        "no client-server API there: check homeserver (the .well-known m.homeserver base_url)";
    probe::rest(resp, ok, matrix_error, TOKEN_HINT, missing)
}

fn judge_joined(resp: &HttpResponse, room: &str) -> Judgement {
    let ok = |b: &Value| {
        let rooms = b["joined_rooms"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        if rooms.iter().any(|r| r.as_str() == Some(room)) {
            Judgement::pass(format!("joined {room}"))
        } else {
            Judgement::fail(
                format!("{room} is not among the {} joined rooms", rooms.len()),
                "invite the account to the room and join it (the relay never joins by itself)",
            )
        }
    };
    probe::rest(resp, ok, matrix_error, TOKEN_HINT, "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const TOKEN: &str = "syt_canary_4242";

    fn chat() -> MatrixChat {
        MatrixChat {
            kind: "matrix",
            homeserver: "http://127.0.0.1:9".into(),
            token: Secret::new(TOKEN),
            room: "!AbC:example.org".into(),
        }
    }

    use crate::providers::testkit::{body, header, http, messages, reply, resp};

    fn request(c: &MatrixChat, chat: &str, text: &str, ctx: &serde_json::Value) -> HttpRequest {
        http(c.request(&Message {
            chat,
            text,
            context: ctx,
            card: None,
            custom: None,
            action: Default::default(),
            delivery: None,
        }))
    }

    fn card_request(card: &Card, action: Action<'_>) -> Value {
        body(&http(chat().request(&Message {
            chat: "c",
            text: "<b>text</b>",
            context: &json!({}),
            card: Some(card),
            custom: None,
            action,
            delivery: Some("c#1@1"),
        })))
    }

    #[test]
    fn a_huge_post_gives_a_card_within_every_limit() {
        let card = crate::providers::adaptive::huge_card();
        let b = card_request(&card, Action::Edit { remote_id: "$e" });
        let new = &b["m.new_content"];
        assert_eq!(
            check_card(&json!({"formatted_body": new["formatted_body"], "body": new["body"]})),
            Ok(())
        );
        let event = serde_json::to_vec(&b).unwrap_or_default().len();
        assert!(event < EVENT_MAX_BYTES - 8_000, "{event}");
        let html = new["formatted_body"].as_str().unwrap_or_default();
        assert!(
            html.starts_with("<p><strong><a href=") && html.ends_with("</sub></p>"),
            "{html}"
        );
    }

    #[test]
    fn a_card_keeps_notice_mentions_threads_and_edits() {
        let card = Card {
            title: "T <b>".into(),
            url: "https://f.example/t/t/1/2".into(),
            label: "Reply #2".into(),
            text: "@room hi".into(),
            color: Some(card::Color(0x0088CC)),
            category: Some(card::Link {
                text: "Dev".into(),
                url: "https://f.example/c/dev/3".into(),
            }),
            footer: card::Link {
                text: "Forum".into(),
                url: String::new(),
            },
            ..Card::default()
        };
        let html = "<p><strong><a href=\"https://f.example/t/t/1/2\">T &lt;b&gt;</a></strong></p><p>Reply #2 · <font color=\"#0088CC\">■</font> <a href=\"https://f.example/c/dev/3\">Dev</a></p><blockquote>@\u{200B}room hi</blockquote><p><sub>Forum</sub></p>";
        let plain = "T ‹b› (https://f.example/t/t/1/2)\nReply #2 · ■ Dev (https://f.example/c/dev/3)\n@\u{200B}room hi\nForum";
        let notice = json!({"msgtype": "m.notice", "body": plain, "format": "org.matrix.custom.html", "formatted_body": html, "m.mentions": {}});
        let mut threaded = notice.clone();
        threaded["m.relates_to"] = json!({"rel_type": "m.thread", "event_id": "$root", "is_falling_back": true, "m.in_reply_to": {"event_id": "$root"}});
        assert_eq!(card_request(&card, reply(Some("$root"))), threaded);
        let edit = card_request(&card, Action::Edit { remote_id: "$e" });
        assert_eq!(edit["m.new_content"], notice);
        assert_eq!(edit["formatted_body"], format!("* {html}"));
        assert_eq!(edit["m.mentions"], json!({}));
        assert_eq!(
            edit["m.relates_to"],
            json!({"rel_type": "m.replace", "event_id": "$e"})
        );
    }

    #[test]
    fn own_cards_are_checked() {
        assert_eq!(check_card(&json!({"formatted_body": "<p>x</p>"})), Ok(()));
        for (bad, why) in [
            (json!("x"), "is an object"),
            (json!({"body": "x"}), "needs `formatted_body`"),
            (
                json!({"formatted_body": "x", "msgtype": "m.text"}),
                "`msgtype` is not part",
            ),
            (json!({"formatted_body": 3}), "must be a string"),
            (json!({"formatted_body": "x".repeat(16_001)}), "16001 bytes"),
        ] {
            let e = check_card(&bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn request_shape() {
        let ctx = json!({"event": "post_created", "topic": {"id": 7}, "post": {"id": 9}});
        let html = "<b><a href=\"https://f.example/t/x/7/1\">Hi &amp; &lt;b&gt;</a></b> by @\u{200B}room\n<blockquote>quoted</blockquote>";
        let r = request(&chat(), "c", html, &ctx);
        assert_eq!(r.method, "PUT");
        let prefix =
            "http://127.0.0.1:9/_matrix/client/v3/rooms/%21AbC%3Aexample.org/send/m.room.message/";
        let url = r.url.expose();
        assert!(url.starts_with(prefix), "{url}");
        let txn = &url[prefix.len()..];
        assert_eq!(txn.len(), 64);
        assert!(txn.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(
            header(&r, "Authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        assert!(!url.contains(TOKEN));
        assert_eq!(
            body(&r),
            json!({
                "msgtype": "m.notice",
                "body": "Hi & <b> (https://f.example/t/x/7/1) by @\u{200B}room\nquoted",
                "format": "org.matrix.custom.html",
                "formatted_body": html,
                "m.mentions": {},
            })
        );
    }

    fn act(action: Action<'_>, delivery: Option<&str>) -> (String, serde_json::Value) {
        let ctx = json!({"event": "post_created", "topic": {"id": 7}, "post": {"id": 9}});
        let r = http(chat().request(&Message {
            chat: "c",
            text: "<b>new</b> text",
            context: &ctx,
            card: None,
            custom: None,
            action,
            delivery,
        }));
        assert_eq!(r.method, "PUT");
        (r.url.expose().to_string(), body(&r))
    }

    #[test]
    fn threads_edits_and_redactions() {
        let room = "http://127.0.0.1:9/_matrix/client/v3/rooms/%21AbC%3Aexample.org";
        let (url, body) = act(reply(Some("$root")), Some("c#2@1"));
        assert!(url.starts_with(&format!("{room}/send/m.room.message/")));
        assert_eq!(
            body["m.relates_to"],
            json!({"rel_type": "m.thread", "event_id": "$root", "is_falling_back": true, "m.in_reply_to": {"event_id": "$root"}})
        );
        let (_, body) = act(reply(None), None);
        assert!(
            body.get("m.relates_to").is_none(),
            "the first message opens the thread"
        );

        let (_, body) = act(Action::Edit { remote_id: "$orig" }, Some("c#3@1"));
        assert_eq!(
            body["m.relates_to"],
            json!({"rel_type": "m.replace", "event_id": "$orig"})
        );
        assert_eq!(body["body"], "* new text");
        assert_eq!(
            body["m.new_content"],
            json!({"msgtype": "m.notice", "body": "new text", "format": "org.matrix.custom.html", "formatted_body": "<b>new</b> text", "m.mentions": {}})
        );

        let (url, body) = act(Action::Delete { remote_id: "$orig" }, Some("c#4@1"));
        assert!(url.starts_with(&format!("{room}/redact/%24orig/")), "{url}");
        assert_eq!(body, json!({"reason": "deleted in the forum"}));

        // One delivery keeps its transaction id across retries; another
        // delivery of the same text (a re-post) gets a new one.
        let post = || Action::Post { thread: None };
        assert_eq!(act(post(), Some("c#5@1")).0, act(post(), Some("c#5@1")).0);
        assert_ne!(act(post(), Some("c#5@1")).0, act(post(), Some("c#6@1")).0);
        assert_ne!(
            act(Action::Edit { remote_id: "$a" }, None).0,
            act(post(), None).0
        );
    }

    #[test]
    fn txn_id_is_stable_and_distinct() {
        let ctx = json!({"event": "post_created", "topic": {"id": 7}, "post": {"id": 9}});
        let url = |name: &str, text: &str, ctx: &serde_json::Value| {
            request(&chat(), name, text, ctx).url.expose().to_string()
        };
        assert_eq!(url("c", "x", &ctx), url("c", "x", &ctx));
        assert_ne!(url("c", "x", &ctx), url("d", "x", &ctx));
        assert_ne!(url("c", "x", &ctx), url("c", "y", &ctx));
        let other_post = json!({"event": "post_created", "topic": {"id": 7}, "post": {"id": 10}});
        assert_ne!(url("c", "x", &ctx), url("c", "x", &other_post));
    }

    #[test]
    fn plain_body_keeps_links_and_lines() {
        assert_eq!(
            html_to_plain("<a href=\"https://x.example/\">https://x.example/</a>"),
            "https://x.example/"
        );
        assert_eq!(
            html_to_plain(
                "<p>a\n  b</p><p>c<br>d</p><a href=\"https://e/\"></a><img src=x alt=\":smile:\">"
            ),
            "a b\nc\nd\nhttps://e/:smile:"
        );
        assert_eq!(
            html_to_plain("x<script>alert(1)</script>y<style>p{}</style>&lt;script&gt;"),
            "xy<script>"
        );
        assert_eq!(html_to_plain(""), "");
    }

    #[test]
    fn classifies_matrix_errors_without_the_token() {
        let c = chat();
        assert_eq!(
            c.classify(&resp(200, &[], r#"{"event_id":"$ev1:example.org"}"#)),
            Outcome::Sent {
                remote_id: Some("$ev1:example.org".into())
            }
        );
        assert!(matches!(
            c.classify(&resp(200, &[], "<html>")),
            Outcome::Retry { .. }
        ));
        assert!(matches!(
            c.classify(&resp(429, &[("Retry-After", "4")], r#"{"errcode":"M_LIMIT_EXCEEDED","error":"Too many requests","retry_after_ms":2000}"#)),
            Outcome::Retry { after: Some(d), .. } if d == Duration::from_secs(4)
        ));
        assert!(matches!(
            c.classify(&resp(429, &[], r#"{"errcode":"M_LIMIT_EXCEEDED","retry_after_ms":2500}"#)),
            Outcome::Retry { after: Some(d), .. } if d == Duration::from_millis(2500)
        ));
        assert!(matches!(
            c.classify(&resp(502, &[], "<html>bad gateway</html>")),
            Outcome::Retry { after: None, .. }
        ));
        assert!(matches!(
            c.classify(&resp(
                500,
                &[],
                r#"{"errcode":"M_UNKNOWN","error":"Internal server error"}"#
            )),
            Outcome::Retry { .. }
        ));
        for (status, code) in [
            (401, "M_UNKNOWN_TOKEN"),
            (401, "M_MISSING_TOKEN"),
            (403, "M_FORBIDDEN"),
            (404, "M_NOT_FOUND"),
            (413, "M_TOO_LARGE"),
            (400, "M_BAD_JSON"),
        ] {
            let body = format!(r#"{{"errcode":"{code}","error":"no"}}"#);
            let Outcome::Permanent { reason } = c.classify(&resp(status, &[], &body)) else {
                panic!("{code} should be permanent")
            };
            assert!(reason.contains(code), "{reason}");
            assert!(!reason.contains(TOKEN));
        }
        assert!(matches!(
            c.classify(&resp(404, &[], "not found")),
            Outcome::Permanent { .. }
        ));
    }

    fn bind(settings: &str, target: &str) -> (Option<Box<dyn Destination>>, Vec<String>) {
        let (d, p) = crate::providers::testkit::bind(
            &REGISTRATION,
            settings,
            target,
            &[("MATRIX_TOKEN", TOKEN)],
        );
        (d, messages(&p))
    }

    #[test]
    fn validates_settings_and_room() {
        let ok = r#"{ homeserver = "https://m.example.org/", access_token = "${MATRIX_TOKEN}" }"#;
        let (d, p) = bind(ok, r#"{ room = "!AbC:example.org" }"#);
        assert!(p.is_empty(), "{p:?}");
        let d = d.unwrap();
        assert_eq!(d.target(), "!AbC:example.org");
        assert_eq!(d.dialect(), Dialect::Html);
        // Room version 12 ids have no server part.
        assert!(
            bind(
                ok,
                r#"{ room = "!31hneApxJ_1o-63DmFrpeqnkFfWppnzWso1JvH3ogLM" }"#
            )
            .1
            .is_empty()
        );

        let (d, p) = bind(ok, r##"{ room = "#general:example.org" }"##);
        assert!(d.is_none() && p[0].contains("not an alias"), "{p:?}");
        let (d, p) = bind(ok, r#"{ room = "general" }"#);
        assert!(d.is_none() && p[0].contains("room id like"), "{p:?}");
        let (d, p) = bind(ok, "{}");
        assert!(d.is_none() && p[0].contains("needs `room`"), "{p:?}");

        let (d, p) = bind(
            r#"{ homeserver = "https://m.example.org", access_token = "syt_literal" }"#,
            r#"{ room = "!a:b" }"#,
        );
        assert!(
            d.is_none() && p[0].contains("environment reference"),
            "{p:?}"
        );
        let (d, p) = bind(
            r#"{ homeserver = "https://m.example.org" }"#,
            r#"{ room = "!a:b" }"#,
        );
        assert!(
            d.is_none() && p[0].contains("needs `access_token`"),
            "{p:?}"
        );
        let (d, p) = bind(
            r#"{ access_token = "${MATRIX_TOKEN}" }"#,
            r#"{ room = "!a:b" }"#,
        );
        assert!(d.is_none() && p[0].contains("needs `homeserver`"), "{p:?}");
        // A chat naming the kind directly: the error is the chat's.
        let (d, p) = bind("{}", r#"{ room = "!a:b" }"#);
        assert!(d.is_none() && p[0].contains("[providers.NAME]"), "{p:?}");
        let (d, p) = bind(
            r#"{ homeserver = "matrix.example.org", access_token = "${MATRIX_TOKEN}" }"#,
            r#"{ room = "!a:b" }"#,
        );
        assert!(d.is_none() && p[0].contains("absolute http"), "{p:?}");
    }
}
