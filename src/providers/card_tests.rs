//! Fixtures the card providers' unit tests share: the sample post as a
//! card, a post far over every platform's limits, and the request a
//! destination builds for a card. Test-only.

use serde_json::Value;

use super::testkit::{http, post_ctx};
use super::{Action, Destination, HttpRequest, Message};
use crate::ingest::Event;
use crate::render::card::{Author, Card, Color, Link};

/// The sample first post as a card (the fixtures' forum).
pub fn sample() -> Card {
    Card::of(
        &Event::sample("https://forum.example.org"),
        "I have a shared map & several <tasks>.",
    )
}

/// A post no platform takes whole: a 100 kB title, excerpt, names and
/// footer, and 500 tags of 200 characters each, with markup everywhere so
/// escaping grows it too.
pub fn huge() -> Card {
    let long = |unit: &str| unit.repeat(100_000 / unit.len());
    Card {
        marks: "🔒 ".into(),
        title: long("<b>*T*</b> & "),
        url: "https://forum.example.org/t/huge/1/1".into(),
        label: long("label "),
        author: Some(Author {
            name: long("_N_ "),
            username: long("u"),
            url: "https://forum.example.org/u/huge".into(),
            avatar: "https://forum.example.org/a/96.png".into(),
        }),
        color: Some(Color(0x25AAE2)),
        text: long("[x](y) <&> "),
        category: Some(Link {
            text: long("C "),
            url: "https://forum.example.org/c/huge/1".into(),
        }),
        tags: (0..500)
            .map(|i| Link {
                text: format!("{i}-{}", "t".repeat(200)),
                url: format!("https://forum.example.org/tag/t{i}"),
            })
            .collect(),
        footer: Link {
            text: long("F "),
            url: "https://forum.example.org/logo.png".into(),
        },
        timestamp: Some("2026-03-10T09:00:12Z".into()),
        time: Some(1_773_133_212),
        button: Link {
            text: long("B "),
            url: "https://forum.example.org/t/huge/1/1".into(),
        },
    }
}

/// The request `dest` builds for `card` (the default, or the chat's own
/// `custom` card) with `text` as the rendered text.
pub fn request(
    dest: &dyn Destination,
    text: &str,
    card: Option<&Card>,
    custom: Option<&Value>,
    action: Action<'_>,
) -> HttpRequest {
    let ctx = post_ctx();
    http(dest.request(&Message {
        chat: "test-chat",
        text,
        context: &ctx,
        card,
        custom,
        action,
        delivery: None,
    }))
}
