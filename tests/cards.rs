//! Every provider's default card, for the fixtures that matter most:
//!
//! - the exact request for the first post and a reply, against the
//!   reviewed bodies in `tests/cards/KIND.CHAT.FIXTURE.json` (regenerate
//!   with `UPDATE_CARDS=1 cargo test --test cards`, then review the diff);
//! - the hostile fixtures inert in every string of the request (names,
//!   titles, alt texts, URLs), whatever field it lands in;
//! - every body written to `target/cards/` for the platforms' own schema
//!   checks (`scripts/ci/cards`, run by `.ci/run`).
//!
//! Each provider's chats are in `tests/cards/KIND.toml` (one file each, so
//! providers are added without touching the others). The forum state is
//! what a relay with an API key knows: `/site.json` (category colours) and
//! `/site/basic-info.json` (the footer's title and logo).

mod common;

use std::collections::HashMap;

use common::cards::*;
use common::*;
use discourse_relay::config::MissingEnv;
use discourse_relay::pipeline;
use discourse_relay::render::Dialect;
use serde_json::Value;

/// Every string in `v` with its JSON pointer, keys included.
fn strings<'a>(v: &'a Value, at: String, out: &mut Vec<(String, &'a str)>) {
    match v {
        Value::String(s) => out.push((at, s)),
        Value::Array(a) => {
            (a.iter().enumerate()).for_each(|(i, x)| strings(x, format!("{at}/{i}"), out))
        }
        Value::Object(o) => o.iter().for_each(|(k, x)| {
            out.push((format!("{at}/{k}#key"), k));
            strings(x, format!("{at}/{k}"), out)
        }),
        _ => {}
    }
}

#[test]
fn default_cards_are_exactly_as_reviewed() {
    let update = std::env::var_os("UPDATE_CARDS").is_some();
    let out = root().join("target/cards");
    std::fs::create_dir_all(&out).unwrap();
    let mut wrong = Vec::new();
    let mut seen = 0;
    for (kind, p) in configs() {
        for fixture_name in SHOWN {
            let event = event(&p, fixture_name);
            assert!(event.brand.is_some(), "{fixture_name}");
            for (chat, request) in requests(&p, &event) {
                let name = format!(
                    "{kind}.{chat}.{}.json",
                    fixture_name.trim_start_matches("post_created_")
                );
                let text = serde_json::to_string_pretty(&request).unwrap() + "\n";
                std::fs::write(out.join(&name), &text).unwrap();
                let golden = cards_dir().join(&name);
                if update {
                    std::fs::write(&golden, &text).unwrap();
                }
                match std::fs::read_to_string(&golden) {
                    Ok(want) if want == text => {}
                    Ok(_) => wrong.push(format!(
                        "{name}: differs (diff target/cards/{name} tests/cards/{name})"
                    )),
                    Err(_) => wrong.push(format!("{name}: no reviewed body yet (UPDATE_CARDS=1)")),
                }
                seen += 1;
            }
        }
    }
    assert!(seen >= 2, "only {seen} cards");
    assert!(wrong.is_empty(), "cards changed:\n{}", wrong.join("\n"));
}

/// What must never appear in any string of a request built from a hostile
/// post: the post's own mentions and markup, live.
const LIVE: &[&str] = &[
    "<!channel>",
    "<!here>",
    "<@U",
    "<script",
    "<https://evil",
    "</b>",
];

/// Fields the platform shows as plain text, never parsed for markup or
/// mentions, so a title stands there as written (kind, JSON pointer).
const PLAIN_FIELDS: &[(&str, &str)] = &[
    // A forum post's name is a channel name: Discord parses nothing in it.
    ("discord", "/body/thread_name"),
];

/// Mentions that notify as plain words on Markdown platforms (Discord,
/// Mattermost, Rocket.Chat, Zulip): escaping breaks them with U+200B.
const MASS: &[&str] = &["@everyone", "@here", "@channel", "@room", "@all", "[link]("];

#[test]
fn hostile_posts_are_inert_in_every_field_of_every_card() {
    for (kind, p) in configs() {
        for fixture_name in HOSTILE {
            let event = event(&p, fixture_name);
            for (chat, request) in requests(&p, &event) {
                let dialect = p.config.chats[p.chat_index(&chat).unwrap()]
                    .destination
                    .dialect();
                let markdown = matches!(dialect, Dialect::Markdown | Dialect::RocketChat);
                let live: Vec<&str> = LIVE
                    .iter()
                    .chain(MASS.iter().filter(|_| markdown))
                    .copied()
                    .collect();
                let mut all = Vec::new();
                strings(&request, String::new(), &mut all);
                for (at, s) in all {
                    if PLAIN_FIELDS.contains(&(kind.as_str(), at.as_str())) {
                        continue;
                    }
                    // A backslash-escaped character is text in Markdown.
                    let s = match markdown {
                        true => unescaped_markdown(s),
                        false => s.to_string(),
                    };
                    for live in &live {
                        assert!(
                            !s.contains(live),
                            "{kind} chat {chat}, {fixture_name}: `{live}` is live at {at}: {s}"
                        );
                    }
                }
            }
        }
    }
}

/// `s` with every backslash escape (`\\<`) and the character it escapes
/// removed: what is left is what Markdown reads as markup.
fn unescaped_markdown(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
                out.push(' ');
            }
            c => out.push(c),
        }
    }
    out
}

#[test]
fn every_card_chat_sends_a_card() {
    for (kind, p) in configs() {
        for c in &p.config.chats {
            assert!(
                c.destination.cards(),
                "{kind} chat {} has no card format",
                c.name
            );
            assert_eq!(
                c.style,
                discourse_relay::config::model::Style::Card,
                "{kind} chat {}",
                c.name
            );
        }
    }
}

/// The example's own Discord card, for the hostile post: the platform's
/// JSON from the template, every value escaped for Discord Markdown (then
/// JSON), the destination's own fields kept.
#[test]
fn a_chats_own_card_is_its_template_with_every_value_escaped() {
    let example = std::fs::read_to_string(root().join("examples/subscriptions.toml")).unwrap();
    let doc: toml_edit::DocumentMut = example.parse().unwrap();
    let template = doc["templates"]["release_card"].as_str().unwrap();
    let config = format!(
        "[discourse]\nurl = \"{FORUM}\"\n[templates]\nrelease_card = '''{template}'''\n\
         [[chat]]\nname = \"releases\"\nprovider = \"discord\"\nwebhook_url = \"${{SECRET1}}\"\n\
         card = \"release_card\"\nsubscribe = [\"all\"]\n"
    );
    let env: HashMap<String, String> = [(
        "SECRET1".to_string(),
        "https://discord.com/api/webhooks/1/tok".to_string(),
    )]
    .into();
    let (p, _) = pipeline::load_str(
        std::path::Path::new("own.toml"),
        &config,
        &env,
        MissingEnv::Error,
    )
    .unwrap_or_else(|d| panic!("{d}"));
    let event = event(&p, "post_created_hostile_content");
    let (_, request) = requests(&p, &event).remove(0);
    let body = &request["body"];
    let embed = &body["embeds"][0];
    let title = embed["title"].as_str().unwrap();
    assert!(
        title.starts_with("🚀 \\<!channel\\> @\u{200B}everyone"),
        "{title}"
    );
    assert_eq!(
        embed["color"], 0x25AAE2,
        "the category's colour, as an integer"
    );
    assert_eq!(embed["footer"]["text"], "Example Forum · New topic");
    assert!(
        embed["description"]
            .as_str()
            .unwrap()
            .contains("@\u{200B}here")
    );
    assert_eq!(body["allowed_mentions"], serde_json::json!({"parse": []}));
    assert!(body.get("content").is_none());
}
