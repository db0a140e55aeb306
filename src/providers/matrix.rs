//! `matrix`: a message event in a Matrix room through the client-server API
//! v3 (`PUT /_matrix/client/v3/rooms/{roomId}/send/m.room.message/{txnId}`),
//! as an account with an access token (`Authorization: Bearer`, never the
//! deprecated `?access_token=` query). The `gitter` kind (`super::gitter`) is
//! this provider with Gitter's homeserver as the default.
//!
//! Dialect: HTML. The rendered text is the `formatted_body` (values escaped
//! as entities, `@name` broken with U+200B); `body` is that HTML as plain
//! text, links kept as `text (url)`. `"m.mentions": {}` declares that the
//! event mentions nobody, so `@room` or a display name in a post cannot
//! notify (the legacy body-keyword push rules are skipped for events that
//! carry `m.mentions`); `m.notice` marks the event as a bot's.
//!
//! The transaction id is a hash of the chat and the message, so a retry of
//! the same delivery reuses it and the homeserver answers with the first
//! event instead of posting twice. Errors are `{"errcode","error"}`;
//! see shared/providers.md §2.5 and matrix-org/matrix-spec
//! `data/api/client-server/room_send.yaml`.

use std::ops::Range;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use serde_spanned::Spanned;
use sha2::{Digest, Sha256};
use toml_edit::Item;

use super::http::path_segment;
use super::http::retry_hint;
use super::{
    Action, Capabilities, Destination, HttpRequest, HttpResponse, Instance, Message, Outbound,
    Outcome, Registration, http::classify_status, schema_of,
};
use crate::config::Rate;
use crate::config::de::Ctx;
use crate::config::env::Secret;
use crate::render::Dialect;

pub const REGISTRATION: Registration = Registration {
    kind: "matrix",
    about: "Matrix room (client-server API, access token)",
    parse,
    settings_schema: schema_of::<Settings>,
    target_schema: schema_of::<Target>,
};

/// `[providers.NAME]` for `kind = "matrix"`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(rename = "MatrixSettings")]
pub struct Settings {
    /// Client-server API base URL of the homeserver, e.g. `https://matrix.example.org`: the `m.homeserver` `base_url` of `https://SERVER/.well-known/matrix/client`, which may differ from the server name in ids. Required.
    #[schemars(with = "Option<String>")]
    pub homeserver: Option<Spanned<String>>,
    /// Access token of the account that posts, as `${VAR}`. The account must have joined every room it posts to. Sent as `Authorization: Bearer`. Required.
    #[schemars(with = "Option<String>")]
    pub access_token: Option<Spanned<String>>,
}

/// Chat fields for a Matrix chat.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(rename = "MatrixTarget")]
pub struct Target {
    /// Room id, e.g. `!AbCdEf123:example.org` (Element: Room settings → Advanced → Internal room ID). Aliases (`#room:example.org`) are refused: resolve one once with `GET /_matrix/client/v3/directory/room/{alias}`.
    #[schemars(with = "Option<String>")]
    pub room: Option<Spanned<String>>,
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

fn parse(item: &Item, cx: &mut Ctx<'_>) -> Option<Arc<dyn Instance>> {
    let s = cx.deserialize::<Settings>(item)?;
    parse_settings(
        MATRIX,
        item,
        s.homeserver.as_ref(),
        s.access_token.as_ref(),
        cx,
    )
}

/// Reads the settings shared by `matrix` and `gitter`. A table that sets
/// something but misses a required key is an error here; an empty one (a
/// chat naming the kind directly) is reported at each chat that needs it.
pub(crate) fn parse_settings(
    flavor: Flavor,
    item: &Item,
    homeserver: Option<&Spanned<String>>,
    access_token: Option<&Spanned<String>>,
    cx: &mut Ctx<'_>,
) -> Option<Arc<dyn Instance>> {
    let homeserver = match homeserver {
        Some(u) => Some(
            cx.url("homeserver", u, false)?
                .expose()
                .trim_end_matches('/')
                .to_string(),
        ),
        None => flavor.default_homeserver.map(str::to_string),
    };
    let token = match access_token {
        Some(t) => Some(cx.secret("access_token", t)?),
        None => None,
    };
    let has_settings = item.as_table_like().is_some_and(|t| !t.is_empty());
    if has_settings {
        let mut missing = Vec::new();
        if homeserver.is_none() {
            missing.push("`homeserver` (e.g. \"https://matrix.example.org\")");
        }
        let token_example = format!(
            "`access_token` (e.g. \"${{{}_TOKEN}}\")",
            flavor.kind.to_uppercase()
        );
        if token.is_none() {
            missing.push(&token_example);
        }
        if !missing.is_empty() {
            cx.error(
                item.span(),
                format!("a {} provider needs {}", flavor.kind, missing.join(" and ")),
            );
            return None;
        }
    }
    Some(Arc::new(Matrix {
        flavor,
        homeserver,
        token,
    }))
}

impl Instance for Matrix {
    fn bind(
        self: Arc<Self>,
        target: &Item,
        chat: Option<Range<usize>>,
        cx: &mut Ctx<'_>,
    ) -> Option<Box<dyn Destination>> {
        let kind = self.flavor.kind;
        let t = cx.deserialize::<Target>(target)?;
        let Some(room) = &t.room else {
            cx.error(
                chat,
                format!("a {kind} chat needs `room`, a room id like \"!AbCdEf123:example.org\""),
            );
            return None;
        };
        let room_id = room_id(room, cx)?;
        let (Some(homeserver), Some(token)) = (&self.homeserver, &self.token) else {
            let token = format!("`access_token = \"${{{}_TOKEN}}\"`", kind.to_uppercase());
            let needs = if self.homeserver.is_none() {
                format!("`homeserver` and {token}")
            } else {
                token
            };
            cx.error(
                chat,
                format!(
                    "a {kind} chat needs {needs} on a [providers.NAME] table with kind = \"{kind}\""
                ),
            );
            return None;
        };
        Some(Box::new(MatrixChat {
            kind,
            homeserver: homeserver.clone(),
            token: token.clone(),
            room: room_id,
        }))
    }
}

/// Checks a `room` value: a room id, never an alias. Room ids are `!` and an
/// opaque part, with `:server` before room version 12 and without it since.
fn room_id(room: &Spanned<String>, cx: &mut Ctx<'_>) -> Option<String> {
    let id = room.get_ref().trim();
    if id.starts_with('#') {
        cx.error(
            Some(room.span()),
            "`room` must be a room id (`!…`), not an alias: find the id in Element under Room settings → Advanced, or with GET /_matrix/client/v3/directory/room/%23ALIAS:SERVER",
        );
        return None;
    }
    let valid = id.len() > 1
        && id.starts_with('!')
        && !id.chars().any(|c| c.is_whitespace() || c.is_control());
    if !valid {
        cx.error(
            Some(room.span()),
            "`room` must be a room id like \"!AbCdEf123:example.org\"",
        );
        return None;
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

    fn request(&self, msg: &Message<'_>) -> Outbound {
        let room = path_segment(&self.room);
        let txn = txn_id(msg);
        let notice = || {
            json!({
                "msgtype": "m.notice",
                "body": html_to_plain(msg.text),
                "format": "org.matrix.custom.html",
                "formatted_body": msg.text,
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
                content["body"] = json!(format!("* {}", html_to_plain(msg.text)));
                content["formatted_body"] = json!(format!("* {}", msg.text));
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
            "{}/_matrix/client/v3/rooms/{room}/{path}",
            self.homeserver
        ));
        let mut req = HttpRequest::post_json(&url, &content).bearer(&self.token);
        req.method = "PUT";
        Outbound::Http(req)
    }

    fn classify(&self, resp: &HttpResponse) -> Outcome {
        let body: Option<serde_json::Value> = serde_json::from_slice(&resp.body).ok();
        let field = |k: &str| {
            body.as_ref()
                .and_then(|b| b.get(k))
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        if (200..300).contains(&resp.status) {
            return match field("event_id") {
                Some(id) => Outcome::Sent {
                    remote_id: Some(id),
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
        let Some(errcode) = field("errcode") else {
            return classify_status(resp);
        };
        let error = field("error").map(|e| clip(&e, 200)).unwrap_or_default();
        let reason = if error.is_empty() {
            format!(
                "{}: HTTP {} {errcode}{}",
                self.kind,
                resp.status,
                hint(&errcode)
            )
        } else {
            format!(
                "{}: HTTP {} {errcode}: {error}{}",
                self.kind,
                resp.status,
                hint(&errcode)
            )
        };
        if errcode == "M_LIMIT_EXCEEDED" || resp.status == 429 {
            // `Retry-After` since v1.10; `retry_after_ms` before (deprecated).
            let after = resp.retry_after().or_else(|| {
                body.as_ref()
                    .and_then(|b| b.get("retry_after_ms"))
                    .and_then(retry_hint::json_millis)
            });
            return Outcome::Retry { reason, after };
        }
        match classify_status(resp) {
            Outcome::Retry { after, .. } => Outcome::Retry { reason, after },
            _ => Outcome::Permanent { reason },
        }
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

/// The transaction id of a message: a hash of the chat, the event's ids and
/// the text, so retries of one delivery share it (the homeserver then returns
/// the first event) while different posts never collide, even with the same
/// text. Homeservers remember transaction ids for a limited time (Synapse:
/// about 30 minutes), after which a retry could post again.
/// The transaction id: Synapse answers a repeated one with the first
/// event instead of posting again, so a retry never doubles a message. It
/// is derived from the delivery id where there is one (a re-post after a
/// recovery is a new delivery, so a new event), else from the content.
fn txn_id(msg: &Message<'_>) -> String {
    let c = msg.context;
    let action = match msg.action {
        Action::Post { .. } => "post".to_string(),
        Action::Edit { remote_id } => format!("edit {remote_id}"),
        Action::Delete { remote_id } => format!("delete {remote_id}"),
    };
    let key = match msg.delivery {
        Some(id) => json!(["discourse-relay/2", msg.chat, id, action]),
        None => json!([
            "discourse-relay/1",
            msg.chat,
            c["event"],
            c["topic"]["id"],
            c["post"]["id"],
            msg.text,
            action,
        ]),
    };
    hex::encode(Sha256::digest(key.to_string().as_bytes()))
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max).collect();
        out.push('…');
        out
    }
}

/// The rendered HTML as plain text for `body`: tags dropped, entities
/// decoded, `<br>` and block elements as line breaks, whitespace collapsed
/// within lines, and links as `text (url)` so clients that show `body` (and
/// bridges) keep them. Input beyond the event size limit is ignored.
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

fn convert(html: &str) -> String {
    use html5gum::{Token, Tokenizer};

    let mut out = String::with_capacity(html.len());
    // Open links: (href, where their text starts in `out`).
    let mut links: Vec<(String, usize)> = Vec::new();
    let mut hidden: Option<Vec<u8>> = None;
    for token in Tokenizer::new(html).flatten() {
        match token {
            Token::StartTag(tag) => {
                let name = tag.name.0.to_ascii_lowercase();
                if hidden.is_some() {
                    continue;
                }
                if matches!(name.as_slice(), b"script" | b"style" | b"head" | b"title")
                    && !tag.self_closing
                {
                    hidden = Some(name);
                    continue;
                }
                match name.as_slice() {
                    b"a" => {
                        let href = tag
                            .attributes
                            .get(b"href".as_slice())
                            .map(|v| String::from_utf8_lossy(&v.value).trim().to_string())
                            .unwrap_or_default();
                        links.push((href, out.len()));
                    }
                    b"img" => {
                        if let Some(alt) = tag.attributes.get(b"alt".as_slice()) {
                            push_text(&mut out, &String::from_utf8_lossy(&alt.value));
                        }
                    }
                    b"br" => out.push('\n'),
                    n if is_block(n) => out.push('\n'),
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
                                out.push_str(" (");
                                out.push_str(&href);
                                out.push(')');
                            }
                        }
                    }
                    b"br" => out.push('\n'),
                    n if is_block(n) => out.push('\n'),
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

fn is_block(name: &[u8]) -> bool {
    matches!(
        name,
        b"p" | b"div"
            | b"blockquote"
            | b"pre"
            | b"ul"
            | b"ol"
            | b"li"
            | b"h1"
            | b"h2"
            | b"h3"
            | b"h4"
            | b"h5"
            | b"h6"
            | b"hr"
            | b"table"
            | b"tr"
            | b"details"
            | b"summary"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
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

    use crate::providers::http::tests::resp;

    fn request(c: &MatrixChat, chat: &str, text: &str, ctx: &serde_json::Value) -> HttpRequest {
        match c.request(&Message {
            chat,
            text,
            context: ctx,
            action: Default::default(),
            delivery: None,
        }) {
            Outbound::Http(r) => r,
            Outbound::Stdout(_) | Outbound::Native(_) => panic!("expected HTTP"),
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
        assert!(
            r.headers
                .iter()
                .any(|(k, v)| k == "Authorization" && v.expose() == format!("Bearer {TOKEN}"))
        );
        assert!(!url.contains(TOKEN));
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            body,
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
        let Outbound::Http(r) = chat().request(&Message {
            chat: "c",
            text: "<b>new</b> text",
            context: &ctx,
            action,
            delivery,
        }) else {
            panic!("expected HTTP")
        };
        assert_eq!(r.method, "PUT");
        (
            r.url.expose().to_string(),
            serde_json::from_str(&r.body).unwrap(),
        )
    }

    #[test]
    fn threads_edits_and_redactions() {
        use crate::providers::Thread;
        let room = "http://127.0.0.1:9/_matrix/client/v3/rooms/%21AbC%3Aexample.org";
        let (url, body) = act(
            Action::Post {
                thread: Some(Thread {
                    root: Some("$root"),
                }),
            },
            Some("c#2@1"),
        );
        assert!(url.starts_with(&format!("{room}/send/m.room.message/")));
        assert_eq!(
            body["m.relates_to"],
            json!({"rel_type": "m.thread", "event_id": "$root", "is_falling_back": true, "m.in_reply_to": {"event_id": "$root"}})
        );
        let (_, body) = act(
            Action::Post {
                thread: Some(Thread { root: None }),
            },
            None,
        );
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
        let env = HashMap::from([("MATRIX_TOKEN".to_string(), TOKEN.to_string())]);
        let mut cx = Ctx::new(&env, crate::config::de::MissingEnv::Warn);
        let doc = toml_edit::Document::parse(format!("s = {settings}\nt = {target}\n")).unwrap();
        let dest =
            parse(&doc["s"], &mut cx).and_then(|inst| inst.bind(&doc["t"], Some(0..1), &mut cx));
        let problems = cx.problems().iter().map(|p| p.message.clone()).collect();
        (dest, problems)
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
