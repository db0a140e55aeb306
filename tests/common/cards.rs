//! The cards every provider sends, built as `explain` shows them: the chats of
//! `tests/cards/KIND.toml` (tests/cards.rs reviews them; tests/card_schemas.rs
//! checks them against the platforms' own schemas) and the example configs'
//! chats that name a card template.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use discourse_relay::config::MissingEnv;
use discourse_relay::ingest::payload::{BasicInfo, Site};
use discourse_relay::ingest::{Event, Ingested, WebhookRequest, normalize};
use discourse_relay::pipeline::{self, Pipeline};
use discourse_relay::providers::{Action, Thread};
use serde_json::Value;

use super::{fixture, root};

pub const FORUM: &str = "https://forum.example.org";
/// The fixtures whose cards are reviewed exactly: a first post, a reply,
/// and a flag (an event family's own look).
pub const SHOWN: &[&str] = &[
    "post_created_first_post",
    "post_created_reply_group_mention",
    "reviewable_created",
];
pub const HOSTILE: &[&str] = &[
    "post_created_hostile_content",
    "post_created_hostile_content_html_escaped_json",
];

pub fn cards_dir() -> PathBuf {
    root().join("tests/cards")
}

/// Every `tests/cards/KIND.toml`, loaded with placeholder secrets.
pub fn configs() -> Vec<(String, Pipeline)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(cards_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no tests/cards/*.toml");
    let env: HashMap<String, String> = (1..=4)
        .map(|i| {
            (
                format!("SECRET{i}"),
                format!("https://chat.example.net/hook/secret{i}"),
            )
        })
        .chain([("TOKEN".to_string(), "token-4242".to_string())])
        .collect();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let (p, _) = pipeline::load_str(&path, &text, &env, MissingEnv::Error)
                .unwrap_or_else(|d| panic!("{}:\n{d}", path.display()));
            let kind = path.file_stem().unwrap().to_string_lossy().to_string();
            (kind, p)
        })
        .collect()
}

/// The fixture as a relay with an API key normalizes it.
pub fn event(p: &Pipeline, fixture_name: &str) -> Event {
    let mut state = p.forum_state(0);
    let read = |name: &str| std::fs::read(root().join("tests/fixtures/api").join(name)).unwrap();
    let site: Site = serde_json::from_slice(&read("site.json")).unwrap();
    let info: BasicInfo = serde_json::from_slice(&read("site_basic_info.json")).unwrap();
    state.learn_site(&site);
    state.learn_brand(&info, FORUM);
    let f = fixture(fixture_name);
    let req = WebhookRequest {
        headers: f.headers,
        body: f.body,
    };
    match normalize(&req, &mut state, FORUM) {
        Ok(Ingested::Event(e)) => *e,
        other => panic!("{fixture_name}: {other:?}"),
    }
}

/// The request chat `i` of `p` gets for `event`, as `explain` shows it, with
/// a JSON body as JSON (so each of its strings is checked alone).
pub fn request(p: &Pipeline, i: usize, event: &Event) -> Value {
    let c = &p.config.chats[i];
    let (_, out) = p
        .message(i, event)
        .unwrap_or_else(|e| panic!("{}: {e}", c.name));
    shown(p, &out)
}

/// A request as `explain` shows it, secrets redacted, a JSON body as JSON.
fn shown(p: &Pipeline, out: &discourse_relay::providers::Outbound) -> Value {
    let mut shown = out.redacted_json(&p.config.redactor);
    if let Some(body) = shown["body"]
        .as_str()
        .and_then(|b| serde_json::from_str::<Value>(b).ok())
    {
        shown["body"] = body;
    }
    shown
}

/// The request each chat of `p` gets for `event`, by chat name.
pub fn requests(p: &Pipeline, event: &Event) -> Vec<(String, Value)> {
    (0..p.config.chats.len())
        .map(|i| (p.config.chats[i].name.clone(), request(p, i, event)))
        .collect()
}

/// A fixture's short name in file names: `first_post` for
/// `post_created_first_post`.
pub fn short(fixture_name: &str) -> &str {
    fixture_name.trim_start_matches("post_created_")
}

/// A chat message id of the shape every platform's ids parse as (a Slack
/// `ts`, a Discord snowflake's digits).
const REMOTE_ID: &str = "1300000000000000002";

/// Every `tests/cards/KIND.toml` chat's request for the shown and the
/// hostile fixtures: (kind, chat, fixture, request). The first post is also
/// sent as an edit (`first_post_edit`) and as the struck-through edit of a
/// deleted post (`first_post_struck`), and the reply into its topic's thread
/// (`reply_group_mention_thread`), where the chat can do these.
pub fn card_requests() -> Vec<(String, String, String, Value)> {
    let mut out = Vec::new();
    for (kind, p) in configs() {
        for fixture_name in SHOWN.iter().chain(HOSTILE) {
            let event = event(&p, fixture_name);
            for (chat, request) in requests(&p, &event) {
                out.push((kind.clone(), chat, short(fixture_name).to_string(), request));
            }
            let thread = Action::Post {
                thread: Some(Thread {
                    root: Some(REMOTE_ID),
                }),
            };
            let edit = Action::Edit {
                remote_id: REMOTE_ID,
            };
            let more: &[(&str, Action, bool)] = match *fixture_name {
                "post_created_first_post" => &[("edit", edit, false), ("struck", edit, true)],
                "post_created_reply_group_mention" => &[("thread", thread, false)],
                _ => &[],
            };
            for (i, c) in p.config.chats.iter().enumerate() {
                for (what, action, strike) in more {
                    // A chat that cannot edit (an incoming webhook) has no such request.
                    let Ok((_, sent)) = p.message_as(i, &event, *action, *strike, "delivery-1")
                    else {
                        continue;
                    };
                    let fixture = format!("{}_{what}", short(fixture_name));
                    out.push((kind.clone(), c.name.clone(), fixture, shown(&p, &sent)));
                }
            }
        }
    }
    out
}

/// Every `examples/*.toml` chat that names a `card` template, rendered for
/// the shown fixtures: (kind, "FILE-CHAT", fixture, request). Unset secrets
/// stay `${VAR}` (as `validate` loads them); URLs are redacted anyway.
pub fn example_card_requests() -> Vec<(String, String, String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let (p, _) = pipeline::load(&file, &HashMap::<String, String>::new(), MissingEnv::Warn)
            .unwrap_or_else(|d| panic!("{}:\n{d}", file.display()));
        let stem = file_part(&file);
        for fixture_name in SHOWN {
            let event = event(&p, fixture_name);
            for (i, c) in p.config.chats.iter().enumerate() {
                if c.card.is_none() {
                    continue;
                }
                out.push((
                    c.destination.kind().to_string(),
                    format!("{stem}-{}", safe(&c.name)),
                    short(fixture_name).to_string(),
                    request(&p, i, &event),
                ));
            }
        }
    }
    out
}

fn file_part(path: &Path) -> String {
    safe(&path.file_stem().unwrap().to_string_lossy())
}

/// A name as one dot-free file name part.
fn safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
