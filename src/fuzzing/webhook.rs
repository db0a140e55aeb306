//! Webhook ingest: arbitrary request bodies (and a few header variants)
//! through `ingest::normalize` with a persistent `ForumState`, then, for
//! events, `Pipeline::decide` against a small fixed config, as
//! `service::App::accept` and the scheduler would.
//!
//! Input: up to 4 requests separated by a 0xFF byte. Each request is one
//! selector byte followed by the body:
//! - bits 0-3: `X-Discourse-Event` (15 = header missing), see `EVENTS`;
//! - bits 4-5: `X-Discourse-Instance`: none, the forum, the forum with a
//!   trailing slash, the second forum;
//! - bit 6: `X-Discourse-Event-Id` present;
//! - bit 7: a (wrong or malformed) `X-Discourse-Event-Signature` is checked.
//!
//! Invariants: nothing panics; every event survives the queue's JSON
//! round trip unchanged; deliveries point at chats of the event's forum; a
//! JSON-dialect chat's text parses as JSON; no chat fails to render (every
//! template of the config is guarded for topic events).

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use crate::config::MissingEnv;
use crate::ingest::{Event, ForumState, Ingested, WebhookRequest, normalize};
use crate::pipeline::{self, Pipeline};
use crate::render::Dialect;

const CONFIG: &str = r##"
[discourse]
url = "https://forum.example.org"
webhook_secret = "${DISCOURSE_WEBHOOK_SECRET}"
delay = "0s"

[discourse.categories]
"1" = "uncategorized"
"3" = { path = "staff", restricted = true, name = "Staff" }
"5" = "support"
"7" = "support/rust"
"8" = "development"
"9" = "development/rust"

[forums.second]
url = "https://second.example.net"

[providers.team-slack]
kind = "slack"
token = "${SLACK_BOT_TOKEN}"
api_url = "http://127.0.0.1:9/api"

[templates]
short = "{{topic.title}}{{#if post}} by @{{post.username}}: {{post.url}}{{/if}}"
announce = """
{{bold "New"}}: {{link topic.url topic.title}}{{#if post}}
{{excerpt post.cooked 200}}{{/if}}"""
hook = '{"text": "{{topic.title}}", "url": "{{topic.url}}", "tags": "{{join topic.tags ", "}}"}'

[[chat]]
name = "general"
provider = "team-slack"
channel = "#general"
template = "short"
subscribe = ["c/support/**", "t/release-*"]

[[chat.rule]]
filter = "follow"
category = "development/**"

[[chat.rule]]
filter = "mute"
tags = ["off-topic"]

[[chat.rule]]
filter = "thread"
tags = ["long-*"]

[[chat]]
name = "staff"
provider = "team-slack"
channel = "C0STAFF01"
template = "announce"

[[chat.rule]]
category = "staff"

[[chat.rule]]
type = "group_message"
group = "support-team"

[[chat.rule]]
type = "group_mention"
group = "staff-group"

[[chat]]
name = "hook"
provider = "webhook"
url = "http://127.0.0.1:9/hook"
template = "hook"
subscribe = ["t/async", "c/development/*"]

[[chat]]
name = "default-json"
provider = "webhook"
url = "http://127.0.0.1:9/default"
subscribe = ["all"]

[[chat]]
name = "console"
provider = "console"
subscribe = ["all"]

# Every event family, in plain text and in the default JSON document.
[[chat]]
name = "mods"
provider = "console"
subscribe = ["review", "users", "solved", "topics", "likes", "assign", "chat channel:*", "chat channel:dm/1"]

[[chat]]
name = "families-json"
provider = "webhook"
url = "http://127.0.0.1:9/families"
subscribe = ["review c/staff", "users group:staff", "chat channel:general", "likes t/*"]

[[chat]]
name = "second-console"
provider = "console"
forum = "second"
subscribe = ["all"]
"##;

const EVENTS: [&str; 15] = [
    "post_created",
    "post_edited",
    "post_destroyed",
    "post_recovered",
    "topic_created",
    "topic_edited",
    "topic_destroyed",
    "chat_message_trashed",
    "ping",
    "user_created",
    "accepted_solution",
    "reviewable_created",
    "category_created",
    "",
    "Post_Created",
];

const INSTANCES: [Option<&str>; 4] = [
    None,
    Some("https://forum.example.org"),
    Some("https://forum.example.org/"),
    Some("https://second.example.net"),
];

fn pipeline() -> &'static Pipeline {
    static P: OnceLock<Pipeline> = OnceLock::new();
    P.get_or_init(|| {
        let env: HashMap<String, String> = [
            ("DISCOURSE_WEBHOOK_SECRET", "fuzz-secret"),
            ("SLACK_BOT_TOKEN", "xoxb-fuzz"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        match pipeline::load_str(Path::new("fuzz.toml"), CONFIG, &env, MissingEnv::Error) {
            Ok((p, _)) => p,
            Err(d) => panic!("the fuzz config does not load:\n{d}"),
        }
    })
}

fn request(selector: u8, body: &[u8]) -> WebhookRequest {
    let mut headers = Vec::new();
    let event = usize::from(selector & 0x0f);
    if let Some(name) = EVENTS.get(event) {
        headers.push(("x-discourse-event".to_string(), name.to_string()));
    }
    if let Some(instance) = INSTANCES[usize::from((selector >> 4) & 3)] {
        headers.push(("X-Discourse-Instance".to_string(), instance.to_string()));
    }
    if selector & 0x40 != 0 {
        headers.push(("X-Discourse-Event-Id".to_string(), " 4711 ".to_string()));
    }
    if selector & 0x80 != 0 {
        // Hex of the body's first bytes: malformed or mismatching, never valid.
        let sig = format!("sha256={}", hex(&body[..body.len().min(32)]));
        headers.push(("X-Discourse-Event-Signature".to_string(), sig));
    }
    WebhookRequest {
        headers,
        body: body.to_vec(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn check_event(p: &Pipeline, forum: usize, event: &Event) {
    // The queue stores events as JSON: what goes in must come out.
    let stored = serde_json::to_vec(event).expect("an event serializes");
    let back: Event = serde_json::from_slice(&stored).expect("a stored event deserializes");
    assert_eq!(&back, event, "event changed in the JSON round trip");

    let decision = p.decide(event);
    assert!(
        decision.failures.is_empty(),
        "chats failed to render: {:?}\nevent: {event:#?}",
        decision.failures
    );
    if decision.skipped.is_some() {
        assert!(decision.deliveries.is_empty());
    }
    for d in &decision.deliveries {
        let chat = &p.config.chats[d.chat];
        assert_eq!(chat.forum, forum, "chat `{}` of another forum", chat.name);
        if chat.destination.dialect() == Dialect::Json {
            serde_json::from_str::<serde_json::Value>(&d.text)
                .unwrap_or_else(|e| panic!("chat `{}`: not JSON ({e}): {}", chat.name, d.text));
        }
    }
}

/// One `webhook` fuzz input; panics when an invariant breaks.
pub fn webhook(data: &[u8]) {
    let p = pipeline();
    let mut states: Vec<ForumState> = (0..p.config.forums.len())
        .map(|i| p.forum_state(i))
        .collect();
    for segment in data.split(|&b| b == 0xff).take(4) {
        let Some((&selector, body)) = segment.split_first() else {
            continue;
        };
        let req = request(selector, body);
        let forum = match req.header("X-Discourse-Instance") {
            None => 0,
            Some(i) => match p.config.forum_index(i) {
                Some(f) => f,
                None => continue, // 403 in the relay
            },
        };
        if let Some(secret) = &p.config.forums[forum].webhook_secret {
            // A wrong signature is rejected before parsing (401); check it
            // never panics, then go on as if it matched.
            let _ = req.verify_signature(secret.expose().as_bytes());
        }
        let url = p.config.forums[forum].url.clone();
        if let Ok(Ingested::Event(event)) = normalize(&req, &mut states[forum], &url) {
            check_event(p, forum, &event);
        }
    }
}
