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

use common::cards::*;
use common::*;
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
            assert!(
                event.brand.is_some()
                    && event
                        .topic
                        .category
                        .as_ref()
                        .is_some_and(|c| c.color.is_some())
            );
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
