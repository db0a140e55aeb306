//! `zulip`: a channel ("stream") message, `POST {realm}/api/v1/messages`,
//! form-encoded `type=stream&to=…&topic=…&content=…`, as a bot (HTTP Basic
//! `email:api_key`). The credentials ride in the URL's userinfo, which the
//! HTTP client turns into `Authorization: Basic` (and strips): a ready-made
//! header would hold the key in base64, which the redactor cannot see.
//!
//! Markdown: the renderer backslash-escapes `*`, `_`… and puts U+200B after
//! every `@` that could mention, so `@**all**`, `@*group*`, `@_**silent**`
//! in a post stay text (strictest reading: Zulip has no switch for
//! mentions; unit-tested here, and in tests/provider_zulip.rs).
//!
//! The topic is the chat's `topic`, or the forum topic's title cut to 60
//! characters (each forum topic its own Zulip topic: the thread). Edits are
//! `PATCH /api/v1/messages/{id}` with `content`, deletes `DELETE`; the
//! message id is the remote id. Errors `{"result":"error","code","msg"}`:
//! decisions use `code`, not the translated `msg`. See shared/providers.md §2.6.

use super::kit::prelude::*;
use crate::render::escape::strip_controls;
use crate::render::text::{collapse_whitespace, truncate};

pub const REGISTRATION: Registration =
    kit::registration::<Zulip>("zulip", "Zulip channel message (bot email + API key)");

/// Zulip's default `max_topic_length`, in characters.
const TOPIC_MAX: usize = 60;

/// Error codes worth retrying; every other error is permanent.
const TRANSIENT_CODES: &[&str] = &["RATE_LIMIT_HIT", "REQUEST_TIMEOUT", "SERVER_NOT_READY"];

/// `[providers.NAME]` for `kind = "zulip"`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(rename = "ZulipSettings")]
pub struct Settings {
    /// Organization URL, e.g. `https://chat.example.org` or `https://example.zulipchat.com` (`/api/v1/messages` is added). Required.
    pub realm: Option<Located<String>>,
    /// The bot's email address (Personal settings → Bots), e.g. `relay-bot@chat.example.org`. Required.
    pub email: Option<Located<String>>,
    /// The bot's API key, as `${VAR}`. Required.
    pub api_key: Option<Located<String>>,
}

/// Chat fields for a Zulip chat.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(rename = "ZulipTarget")]
pub struct Target {
    /// Channel (stream) name, or its numeric id (digits only; survives renames). The bot must be subscribed to private channels.
    pub stream: Option<Located<String>>,
    /// A fixed topic for every message (at most 60 characters). Default: the forum topic's title, cut to 60 characters, so each forum topic gets its own Zulip topic.
    pub topic: Option<Located<String>>,
}

#[derive(Debug)]
struct Zulip {
    realm: Option<String>,
    email: Option<Secret>,
    api_key: Option<Secret>,
}

impl Provider for Zulip {
    type Settings = Settings;
    type Target = Target;

    fn new(s: Settings, table: &Table, cx: &mut Ctx<'_>) -> Option<Self> {
        let realm = kit::opt_base_url(cx, "realm", &s.realm)?;
        let email = checked(
            cx,
            &s.email,
            |cx, e| cx.string(e),
            |v| v.contains('@') && v.trim() == v,
            "`email` must be the bot's email address, like \"relay-bot@chat.example.org\"",
        )?;
        // API keys are letters and digits: percent-encoding leaves them intact.
        let api_key = checked(
            cx,
            &s.api_key,
            |cx, k| cx.secret("api_key", k),
            |v| {
                !v.is_empty()
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
            },
            "`api_key` does not look like a Zulip API key (letters and digits)",
        )?;
        let p = Zulip {
            realm,
            email,
            api_key,
        };
        table.complete(cx, p.incomplete())?;
        Some(p)
    }

    fn bind_target(self: Arc<Self>, t: Target, chat: Span, cx: &mut Ctx<'_>) -> Bound {
        let missing = "a zulip chat needs `stream`, the channel's name (or numeric id)";
        let stream = kit::required(cx, &t.stream, chat.clone(), missing)?;
        let name = stream.get_ref().trim().trim_start_matches('#').trim();
        if name.is_empty() || name.chars().any(char::is_control) {
            let msg = "`stream` must be a channel name or id";
            return kit::reject(cx, Some(stream.span()), msg);
        }
        let stream = if !name.bytes().all(|b| b.is_ascii_digit()) {
            Stream::Name(name.to_string())
        } else if let Ok(id) = name.parse::<u64>() {
            Stream::Id(id)
        } else {
            return kit::reject(cx, Some(stream.span()), "`stream` id is out of range");
        };
        let topic = match &t.topic {
            Some(topic) => Some(fixed_topic(topic, cx)?),
            None => None,
        };
        let (Some(realm), Some(email), Some(api_key)) = (&self.realm, &self.email, &self.api_key)
        else {
            let what = "`realm`, `email` and `api_key = \"${ZULIP_API_KEY}\"`";
            return kit::reject(cx, chat, kit::chat_needs("zulip", what));
        };
        Some(Box::new(ZulipChat {
            url: messages_url(realm, email.expose(), api_key.expose()),
            stream,
            topic,
        }))
    }
}

impl Zulip {
    /// The problem of a table that lacks a required key ([`kit::needs`]).
    fn incomplete(&self) -> Option<String> {
        let keys = [
            (self.realm.is_none(), "`realm`"),
            (self.email.is_none(), "`email`"),
            (self.api_key.is_none(), "`api_key = \"${ZULIP_API_KEY}\"`"),
        ];
        kit::needs("zulip", ", ", &keys)
    }
}

/// `v` as `read` gives it, refused with `problem` unless `ok` (a value
/// still holding an unset `${VAR}` passes). Never echoes the value.
fn checked(
    cx: &mut Ctx<'_>,
    v: &Option<Located<String>>,
    read: impl FnOnce(&mut Ctx<'_>, &Located<String>) -> Option<Secret>,
    ok: fn(&str) -> bool,
    problem: &str,
) -> Option<Option<Secret>> {
    let Some(v) = v else { return Some(None) };
    let value = read(cx, v)?;
    if !value.expose().contains("${") && !ok(value.expose()) {
        return kit::reject(cx, Some(v.span()), problem);
    }
    Some(Some(value))
}

/// A chat's `topic`: one line of text within Zulip's limit.
fn fixed_topic(topic: &Located<String>, cx: &mut Ctx<'_>) -> Option<String> {
    let v = topic.get_ref().trim();
    if v.is_empty() || v.chars().any(char::is_control) {
        let msg = "`topic` must be a non-empty line of text";
        return kit::reject(cx, Some(topic.span()), msg);
    }
    if v.chars().count() > TOPIC_MAX {
        let problem = format!("`topic` is longer than Zulip's {TOPIC_MAX} characters");
        return kit::reject(cx, Some(topic.span()), problem);
    }
    Some(v.to_string())
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Stream {
    Name(String),
    Id(u64),
}

#[derive(Debug)]
struct ZulipChat {
    /// `{realm}/api/v1/messages` with the credentials as userinfo.
    url: Secret,
    stream: Stream,
    /// `None`: the forum topic's title.
    topic: Option<String>,
}

/// `https://EMAIL:KEY@host/…/api/v1/messages`. A value still holding an
/// unset `${VAR}` (only `validate`/`explain` see one) is left readable.
fn messages_url(realm: &str, email: &str, api_key: &str) -> Secret {
    let userinfo = |v: &str| {
        if v.contains("${") {
            v.to_string()
        } else {
            path_segment(v)
        }
    };
    let url = match realm.split_once("://") {
        Some((scheme, rest)) => format!(
            "{scheme}://{}:{}@{rest}/api/v1/messages",
            userinfo(email),
            userinfo(api_key)
        ),
        // `realm` is an unset `${VAR}`: nothing is sent in that case.
        None => format!("{realm}/api/v1/messages"),
    };
    Secret::new(url)
}

impl ZulipChat {
    fn topic(&self, context: &serde_json::Value) -> String {
        if let Some(t) = &self.topic {
            return t.clone();
        }
        let title = context["topic"]["title"].as_str().unwrap_or("");
        let title = collapse_whitespace(&strip_controls(title));
        if title.is_empty() {
            "forum".to_string()
        } else {
            truncate(&title, TOPIC_MAX)
        }
    }
}

/// The default message, laid out as well as Zulip's Markdown allows: the
/// state marks and the bold linked title; the author · what happened · the
/// linked category; the excerpt quoted; 🏷️ the tags as links. No
/// `@username` (Zulip's mention syntax is `@**Name**`; a plain `@name`
/// would not notify, but reads like it). Values are Markdown-escaped by
/// the renderer, in link destinations too (where `\_` reads as `_`).
const DEFAULT_TEMPLATE: &str = concat!(
    "{{#if topic.solved}}✅ {{/if}}{{#if topic.closed}}🔒 {{/if}}",
    "{{#if topic.archived}}🗄️ {{/if}}{{#if topic.pinned}}📌 {{/if}}",
    "**{{#if post}}{{link post.url topic.title}}{{else}}{{link topic.url topic.title}}{{/if}}**",
    "{{#if post}}\n{{#if post.name}}{{post.name}}{{else}}{{post.username}}{{/if}}",
    " · {{#if post.is_first}}new topic{{else}}reply #{{post.number}}{{/if}}",
    "{{#if topic.category}} · ",
    "[{{topic.category.name}}]({{forum.url}}/c/{{topic.category.path}}/{{topic.category.id}})",
    "{{/if}}",
    "{{else}}{{#if topic.category}}\n",
    "[{{topic.category.name}}]({{forum.url}}/c/{{topic.category.path}}/{{topic.category.id}})",
    "{{/if}}{{/if}}",
    "{{#if post}}{{#if post.excerpt}}\n> {{post.excerpt}}{{/if}}{{/if}}",
    "{{#if topic.tags}}\n\n🏷️ {{#each topic.tags}}{{#unless @first}}, {{/unless}}",
    "[{{this}}]({{@root.forum.url}}/tag/{{this}}){{/each}}{{/if}}",
);

impl kit::Chat for ZulipChat {
    const KIND: &str = REGISTRATION.kind;

    fn probe(&self) -> Probe {
        // The messages URL carries the credentials; its siblings share them.
        let base = self.url.expose().trim_end_matches("/messages");
        let me = HttpRequest::get(Secret::new(format!("{base}/users/me")));
        let mut steps = vec![probe::step("users/me", me, |r| {
            let ok =
                |b: &Value| Judgement::pass(format!("key works: {}", probe::text(b, "/full_name")));
            probe::rest(
                r,
                ok,
                zulip_error,
                "the key was rejected: check `email` and `api_key`",
                "no Zulip API there: check realm",
            )
        })];
        if let Stream::Name(name) = &self.stream {
            let url = probe::query(&format!("{base}/get_stream_id"), "stream", name);
            steps.push(probe::step(
                "the stream exists",
                HttpRequest::get(url),
                |r| {
                    let ok = |b: &Value| Judgement::pass(format!("stream id {}", b["stream_id"]));
                    probe::rest(r, ok, zulip_error, "", "")
                },
            ));
        }
        Probe::Http(steps)
    }
    const DIALECT: Dialect = Dialect::Markdown;
    const TEMPLATE: Option<&'static str> = Some(DEFAULT_TEMPLATE);
    // Zulip's default: 200 requests a minute per user, shared by every
    // chat of the bot; 1/s with bursts of 10 leaves room for others.
    const RATE: Option<Rate> = Some(Rate::per_secs(10, 10));

    fn capabilities(&self) -> Capabilities {
        // Topics are Zulip's threads: without a fixed `topic`, every message
        // already goes to the forum topic's own Zulip topic. The answer
        // carries the message `id` for edits and deletions.
        Capabilities {
            thread: self.topic.is_none(),
            edit: true,
            delete: true,
        }
    }

    fn target(&self) -> String {
        let stream = match &self.stream {
            Stream::Name(n) => format!("#{n}"),
            Stream::Id(id) => format!("channel {id}"),
        };
        let topic = self.topic.as_deref().unwrap_or("(forum topic title)");
        format!("{stream} > {topic}")
    }

    fn request(&self, msg: &Message<'_>) -> Outbound {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        let req = match msg.action {
            // A thread needs nothing more: the topic already is the forum
            // topic's title when the chat fixes none.
            Action::Post { .. } => {
                // `to` is JSON (the spec's encoding): a quoted name can never
                // be mistaken for an id, nor a name like `[1]` for a list.
                let to = match &self.stream {
                    Stream::Name(n) => serde_json::Value::from(n.as_str()).to_string(),
                    Stream::Id(id) => id.to_string(),
                };
                form.append_pair("type", "stream")
                    .append_pair("to", &to)
                    .append_pair("topic", &self.topic(msg.context))
                    .append_pair("content", msg.text);
                HttpRequest::form("POST", self.url.clone(), form.finish())
            }
            // Only the content: the message stays in its topic.
            Action::Edit { remote_id } => {
                form.append_pair("content", msg.text);
                HttpRequest::form("PATCH", id_url(self.url.expose(), remote_id), form.finish())
            }
            Action::Delete { remote_id } => {
                HttpRequest::delete(id_url(self.url.expose(), remote_id))
            }
        };
        Outbound::Http(req)
    }

    fn classify(&self, resp: &HttpResponse) -> Outcome {
        let body = kit::json_body(resp);
        match body["result"].as_str() {
            Some("success") if (200..300).contains(&resp.status) => {
                let id = body["id"].as_u64();
                return Outcome::Sent {
                    remote_id: id.map(|id| id.to_string()),
                };
            }
            Some("error") => {}
            // A 2xx that is not Zulip's JSON: `realm` points elsewhere (a
            // login page, a proxy). Retrying could post twice if it did land.
            _ => {
                return match classify_status(resp) {
                    Outcome::Sent { .. } => Outcome::Permanent {
                        reason: format!(
                            "zulip: not a Zulip API answer (check `realm`): HTTP {}: {}",
                            resp.status,
                            resp.body_snippet()
                        ),
                    },
                    other => other,
                };
            }
        }
        let code = body["code"].as_str().unwrap_or("BAD_REQUEST");
        let msg = kit::clip(body["msg"].as_str().unwrap_or(""), 200);
        if code == "BAD_REQUEST" && msg == "Invalid message(s)" {
            // The message no longer exists (deleted in the chat): nothing
            // left to delete, and no edit can land. Zulip says so only in
            // `msg` (English unless the bot's language differs).
            return Outcome::Sent { remote_id: None };
        }
        let status = resp.status;
        let reason = format!(
            "zulip: HTTP {status} {code}: {msg}{}",
            hint(code, &msg, status)
        );
        let transient = status == 429 || TRANSIENT_CODES.contains(&code);
        kit::explained(resp, reason, transient, || {
            resp.retry_after()
                .or_else(|| retry_hint::json_secs(&body["retry-after"]))
        })
    }
}

fn hint(code: &str, msg: &str, status: u16) -> &'static str {
    let msg = msg.to_ascii_lowercase();
    match code {
        "BAD_REQUEST" if msg.contains("permission to delete") => {
            " (the organization's settings do not let the bot delete messages)"
        }
        "BAD_REQUEST" if msg.contains("time limit for editing") => {
            " (the organization's message edit time limit has passed)"
        }
        "BAD_REQUEST" if msg.contains("time limit for deleting") => {
            " (the organization's message delete time limit has passed)"
        }
        "STREAM_DOES_NOT_EXIST" => {
            " (check `stream`; a bot must be subscribed to a private channel)"
        }
        "UNAUTHORIZED" | "INVALID_API_KEY" | "UNAUTHENTICATED_USER" | "AUTHENTICATION_FAILED" => {
            " (check `email` and `api_key`)"
        }
        "USER_DEACTIVATED" => " (the bot is deactivated)",
        "REALM_DEACTIVATED" => " (the organization is deactivated)",
        _ if status == 401 => " (check `email` and `api_key`)",
        _ => "",
    }
}

/// Zulip's `{"result": "error", "code", "msg"}`, as `code: msg`.
fn zulip_error(b: &Value) -> Option<String> {
    kit::joined(b, &["/code", "/msg"])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_template_lays_out_title_byline_quote_and_tag_links() {
        use crate::ingest::Event;
        use crate::render::Renderer;
        let mut event = Event::sample("https://forum.example.org");
        event.topic.tags.truncate(1);
        event.topic.tags[0].name = "rust".into();
        let mut hostile = event.clone();
        hostile.topic.tags[0].name = "<b>&\"".into();
        let mut r = Renderer::new();
        r.register("d", DEFAULT_TEMPLATE, Dialect::Markdown)
            .unwrap();
        let out = r.render("d", Dialect::Markdown, &event, "c").unwrap();
        let lines: Vec<&str> = out.lines().collect();
        // A blank line ends the quote (a next line would continue it).
        assert_eq!(lines.len(), 5, "{out}");
        assert!(
            lines[3].is_empty() && lines[4].ends_with("[rust](https://forum.example.org/tag/rust)"),
            "{out}"
        );
        let out = r.render("d", Dialect::Markdown, &hostile, "c").unwrap();
        assert!(out.contains("\\<b\\>"), "{out}");
        // Without a post: the title and the category.
        let mut bare = event.clone();
        bare.post = None;
        bare.topic.tags.clear();
        let out = r.render("d", Dialect::Markdown, &bare, "c").unwrap();
        assert_eq!(out.lines().count(), 2, "{out}");
    }
    use crate::providers::testkit::{http, messages, resp};
    use serde_json::json;
    use std::collections::HashMap;
    use std::time::Duration;

    const KEY: &str = "CanaryKey0123456789abcdefABCDEF0";

    fn chat(stream: Stream, topic: Option<&str>) -> ZulipChat {
        ZulipChat {
            url: messages_url("http://127.0.0.1:9", "relay-bot@z.example", KEY),
            stream,
            topic: topic.map(str::to_string),
        }
    }

    fn form(body: &str) -> Vec<(String, String)> {
        url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect()
    }

    fn request(c: &ZulipChat, text: &str, ctx: &serde_json::Value) -> HttpRequest {
        http(c.request(&Message {
            chat: "c",
            text,
            context: ctx,
            card: None,
            custom: None,
            action: Default::default(),
            delivery: None,
        }))
    }

    #[test]
    fn request_shape() {
        let title = format!("A very long forum topic title {}", "word ".repeat(20));
        let ctx = json!({"topic": {"title": title}});
        let r = request(
            &chat(Stream::Name("forum feed".into()), None),
            "**x** & y",
            &ctx,
        );
        assert_eq!(r.method, "POST");
        assert_eq!(
            r.url.expose(),
            format!("http://relay-bot%40z.example:{KEY}@127.0.0.1:9/api/v1/messages")
        );
        assert_eq!(
            r.headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.expose()))
                .collect::<Vec<_>>(),
            vec![("Content-Type", "application/x-www-form-urlencoded")]
        );
        let f = form(&r.body);
        let topic = &f[2].1;
        assert!(
            topic.chars().count() <= TOPIC_MAX && topic.ends_with('…'),
            "{topic}"
        );
        assert_eq!(
            f,
            vec![
                ("type".to_string(), "stream".to_string()),
                ("to".to_string(), "\"forum feed\"".to_string()),
                ("topic".to_string(), topic.clone()),
                ("content".to_string(), "**x** & y".to_string()),
            ]
        );
        // A numeric stream is an id; a fixed topic wins over the title.
        let r = request(&chat(Stream::Id(42), Some("Forum")), "t", &ctx);
        let f = form(&r.body);
        assert_eq!(f[1].1, "42");
        assert_eq!(f[2].1, "Forum");
        // Control characters never reach the topic; a missing title has a fallback.
        let r = request(
            &chat(Stream::Id(1), None),
            "t",
            &json!({"topic": {"title": "a\u{7}\nb"}}),
        );
        assert_eq!(form(&r.body)[2].1, "a b");
        let r = request(&chat(Stream::Id(1), None), "t", &json!({}));
        assert_eq!(form(&r.body)[2].1, "forum");
    }

    #[test]
    fn wildcard_mentions_are_broken_by_markdown_escaping() {
        use crate::render::escape::escape;
        for m in [
            "@**all**",
            "@**everyone**",
            "@**stream**",
            "@**channel**",
            "@**topic**",
            "@*admins*",
            "@_**Bob**",
        ] {
            let e = escape(Dialect::Markdown, m);
            assert!(e.starts_with("@\u{200B}"), "{m} -> {e}");
            assert!(
                !e.contains("@*") && !e.contains("@_") && !e.contains("**"),
                "{m} -> {e}"
            );
        }
        assert_eq!(escape(Dialect::Markdown, "$$x$$"), "\\$\\$x\\$\\$");
    }

    #[test]
    fn classifies_zulip_errors_without_the_key() {
        let c = chat(Stream::Id(1), None);
        assert_eq!(
            c.classify(&resp(200, &[], r#"{"result":"success","msg":"","id":42}"#)),
            Outcome::Sent {
                remote_id: Some("42".into())
            }
        );
        assert!(matches!(
            c.classify(&resp(200, &[], "<html>login</html>")),
            Outcome::Permanent { reason } if reason.contains("check `realm`")
        ));
        assert!(matches!(
            c.classify(&resp(429, &[("Retry-After", "1.5")], r#"{"result":"error","code":"RATE_LIMIT_HIT","msg":"API usage exceeded rate limit","retry-after":1.5}"#)),
            Outcome::Retry { after: Some(d), .. } if d == Duration::from_millis(1500)
        ));
        assert!(matches!(
            c.classify(&resp(429, &[], r#"{"result":"error","code":"RATE_LIMIT_HIT","msg":"","retry-after":3}"#)),
            Outcome::Retry { after: Some(d), .. } if d == Duration::from_secs(3)
        ));
        assert!(matches!(
            c.classify(&resp(503, &[], "<html>")),
            Outcome::Retry { .. }
        ));
        for (status, code) in [
            (400, "STREAM_DOES_NOT_EXIST"),
            (400, "BAD_REQUEST"),
            (401, "UNAUTHORIZED"),
            (401, "INVALID_API_KEY"),
            (401, "USER_DEACTIVATED"),
        ] {
            let body = format!(r#"{{"result":"error","code":"{code}","msg":"nope"}}"#);
            let Outcome::Permanent { reason } = c.classify(&resp(status, &[], &body)) else {
                panic!("{code} should be permanent")
            };
            assert!(reason.contains(code) && reason.contains("nope"), "{reason}");
            assert!(!reason.contains(KEY));
        }
        // 401 without JSON (a proxy): still permanent.
        assert!(matches!(
            c.classify(&resp(401, &[], "")),
            Outcome::Permanent { .. }
        ));
    }

    #[test]
    fn thread_edit_and_delete_requests() {
        use super::super::Thread;
        let c = chat(Stream::Name("forum feed".into()), None);
        let ctx = json!({"topic": {"id": 7, "title": "Printer on fire"}});
        let req = |action| {
            http(c.request(&Message {
                chat: "c",
                text: "new **text**",
                context: &ctx,
                card: None,
                custom: None,
                action,
                delivery: None,
            }))
        };
        let base = format!("http://relay-bot%40z.example:{KEY}@127.0.0.1:9/api/v1/messages");
        // Replies and the message opening the thread: the topic is the title.
        for root in [None, Some("4242")] {
            let r = req(Action::Post {
                thread: Some(Thread { root }),
            });
            assert_eq!((r.method, r.url.expose()), ("POST", base.as_str()));
            assert_eq!(form(&r.body)[2].1, "Printer on fire");
        }
        let edit = req(Action::Edit { remote_id: "4242" });
        assert_eq!(edit.method, "PATCH");
        assert_eq!(edit.url.expose(), format!("{base}/4242"));
        assert_eq!(
            form(&edit.body),
            vec![("content".to_string(), "new **text**".to_string())]
        );
        assert_eq!(
            edit.headers[0].1.expose(),
            "application/x-www-form-urlencoded"
        );
        let delete = req(Action::Delete { remote_id: "4242" });
        assert_eq!(delete.method, "DELETE");
        assert_eq!(delete.url.expose(), format!("{base}/4242"));
        assert!(delete.body.is_empty());
    }

    #[test]
    fn classifies_edit_and_delete_answers() {
        let c = chat(Stream::Id(1), None);
        assert_eq!(
            c.classify(&resp(
                200,
                &[],
                r#"{"result":"success","msg":"","detached_uploads":[]}"#
            )),
            Outcome::Sent { remote_id: None }
        );
        // Already deleted in the chat: done.
        assert_eq!(
            c.classify(&resp(
                400,
                &[],
                r#"{"code":"BAD_REQUEST","msg":"Invalid message(s)","result":"error"}"#
            )),
            Outcome::Sent { remote_id: None }
        );
        for (body, want) in [
            (
                r#"{"code":"BAD_REQUEST","msg":"You don't have permission to delete this message","result":"error"}"#,
                "do not let the bot delete",
            ),
            (
                r#"{"code":"BAD_REQUEST","msg":"The time limit for editing this message has passed","result":"error"}"#,
                "edit time limit",
            ),
        ] {
            let out = c.classify(&resp(400, &[], body));
            assert!(
                matches!(&out, Outcome::Permanent { reason } if reason.contains(want) && !reason.contains(KEY)),
                "{out:?}"
            );
        }
    }

    fn bind(settings: &str, target: &str) -> (Option<Box<dyn Destination>>, Vec<String>) {
        let (d, p) = crate::providers::testkit::bind(
            &REGISTRATION,
            settings,
            target,
            &[("ZULIP_API_KEY", KEY)],
        );
        (d, messages(&p))
    }

    #[test]
    fn validates_settings_and_target() {
        let ok = r#"{ realm = "https://z.example/", email = "bot@z.example", api_key = "${ZULIP_API_KEY}" }"#;
        let (d, p) = bind(ok, r##"{ stream = "#general" }"##);
        assert!(p.is_empty(), "{p:?}");
        let d = d.unwrap();
        assert_eq!(d.target(), "#general > (forum topic title)");
        assert!(d.capabilities().thread);
        let (d, p) = bind(ok, r#"{ stream = "7", topic = "Forum" }"#);
        assert!(p.is_empty(), "{p:?}");
        let d = d.unwrap();
        assert_eq!(d.target(), "channel 7 > Forum");
        assert!(!d.capabilities().thread);

        let cases = [
            (ok, "{}", "needs `stream`"),
            (ok, r#"{ stream = " " }"#, "channel name or id"),
            (ok, r#"{ stream = "g", topic = "" }"#, "non-empty"),
            (
                ok,
                &format!(r#"{{ stream = "g", topic = "{}" }}"#, "x".repeat(61)),
                "60",
            ),
            (
                r#"{ realm = "https://z.example", email = "bot@z.example", api_key = "literal" }"#,
                r#"{ stream = "g" }"#,
                "environment reference",
            ),
            (
                r#"{ realm = "https://z.example", email = "bot", api_key = "${ZULIP_API_KEY}" }"#,
                r#"{ stream = "g" }"#,
                "email address",
            ),
            (
                r#"{ realm = "z.example", email = "bot@z.example", api_key = "${ZULIP_API_KEY}" }"#,
                r#"{ stream = "g" }"#,
                "absolute http",
            ),
            (
                r#"{ realm = "https://z.example" }"#,
                r#"{ stream = "g" }"#,
                "needs `email`, `api_key",
            ),
            ("{}", r#"{ stream = "g" }"#, "[providers.NAME]"),
        ];
        for (s, t, want) in cases {
            let (d, p) = bind(s, t);
            assert!(d.is_none(), "{s} {t}");
            assert!(p.iter().any(|m| m.contains(want)), "{s} {t}: {p:?}");
        }
        // A key that is not letters and digits is refused without echoing it.
        let env = HashMap::from([("ZULIP_API_KEY".to_string(), "bad key:/@".to_string())]);
        let mut cx = Ctx::new(&env, crate::config::de::MissingEnv::Warn);
        let doc = toml_edit::Document::parse(
            format!("s = {ok}\n").replace("https://z.example/", "https://z.example"),
        )
        .unwrap();
        assert!((REGISTRATION.parse)(&doc["s"], &mut cx).is_none());
        let m = &cx.problems()[0].message;
        assert!(
            m.contains("does not look like") && !m.contains("bad key"),
            "{m}"
        );
    }
}
