//! The Adaptive Card that `teams` and `webex` send for a [`Card`]: one
//! layout, two flavours (the schema version each platform renders, and
//! whether its renderer knows the `{{DATE()}}` text functions).
//!
//! Layout, top to bottom: a header band (a `Container` in the category's
//! nearest named style, see [`style_of`]) holding a `ColumnSet` with the
//! avatar (`Image`, style `person`, size `small`) and two `TextBlock`s (the
//! author's name and @username; what happened and the linked category);
//! the linked headline as a bolder, medium `TextBlock`; the excerpt
//! (wrapping); the tags as links in a subtle `TextBlock`; the footer (the
//! forum's logo, its title and the time) in a small `ColumnSet`; and one
//! `Action.OpenUrl` button to the post.
//!
//! Adaptive Cards have no per-field limits, only the message's size: each
//! text is cut to a sane length before escaping, and when the card is still
//! over the platform's budget (a forum whose URLs are thousands of bytes
//! long), optional parts go first (the tags' links, the tags, the footer,
//! the header's links and images) until it fits; the last resort is the
//! headline and the button, which always fit.
//!
//! Texts are Markdown (the Adaptive Card subset: emphasis and links),
//! escaped with [`Dialect::Markdown`]: backslashes before every formatting
//! character, U+200B after `@`; and a post's `<`/`>` become `‹`/`›` ([`inert`]),
//! as no Adaptive Card renderer documents how it reads `\<` (Teams reads
//! `<at>` tags, Webex `<@all>`), while a look-alike is text in every one.

use super::kit::prelude::*;

/// What differs between the platforms that draw Adaptive Cards.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Flavor {
    /// The schema version the platform renders (Teams 1.4 through
    /// Workflows, Webex 1.3).
    pub version: &'static str,
    /// Whether the time is written with `{{DATE(…)}}`/`{{TIME(…)}}`, which
    /// the renderer shows in each reader's zone and language.
    pub dates: bool,
    /// The most bytes the card (`content`, serialized) may take.
    pub max_bytes: usize,
}

const MD: Dialect = Dialect::Markdown;
/// Tags shown at most: a card is no tag cloud.
const MAX_TAGS: usize = 10;

/// How much of the card to keep: each step leaves out more optional parts.
#[derive(Clone, Copy, PartialEq, PartialOrd)]
enum Keep {
    All,
    TagsAsText,
    NoTags,
    NoFooter,
    Bare,
}

/// The default card for `card`, with `button` as the button's label
/// (`None`: the card's own, "View topic"/"View reply"), within
/// `flavor.max_bytes` by construction.
pub(crate) fn default_card(card: &Card, button: Option<&str>, flavor: &Flavor) -> Value {
    for keep in [
        Keep::All,
        Keep::TagsAsText,
        Keep::NoTags,
        Keep::NoFooter,
        Keep::Bare,
    ] {
        let built = build(card, button, flavor, keep);
        if serde_json::to_vec(&built).map_or(usize::MAX, |b| b.len()) <= flavor.max_bytes {
            return built;
        }
    }
    // Unreachable with the budgets used (a bare card is under 5 KB), but a
    // card without the button is the smallest there is.
    let title = text_block(md(&card.headline(), 200));
    envelope(flavor, vec![title], None)
}

/// Escaped Markdown with the post's `<` and `>` as `‹` and `›`: see the
/// module doc. (A link's URL has its `<>` percent-encoded and no `\\`.)
pub(crate) fn inert(markdown: &str) -> String {
    super::inert::markdown(markdown)
}

fn md(s: &str, max: usize) -> String {
    inert(&escape(MD, &card::cut(s, max)))
}

fn linked(url: &str, text: &str, max: usize) -> String {
    inert(&link(MD, url, &card::cut(text, max)))
}

fn build(card: &Card, button: Option<&str>, flavor: &Flavor, keep: Keep) -> Value {
    let linked = |url: &str, text: &str, max: usize| match keep < Keep::Bare {
        true => linked(url, text, max),
        false => md(text, max),
    };
    let mut body = Vec::new();

    // The header: who, what and where.
    let mut who = Vec::new();
    if let Some(a) = &card.author {
        let name = inert(&bold(MD, &card::cut(&a.name, 80)));
        who.push(text_block(format!("{name} @{}", md(&a.username, 60))).with("spacing", "None"));
    }
    let mut what = md(&card.label, 200);
    if let Some(c) = &card.category {
        let category = linked(&c.url, &c.text, 100);
        // A notice may say nothing of what happened: the category alone.
        what = match what.is_empty() {
            true => category,
            false => format!("{what} · {category}"),
        };
    }
    who.push(
        text_block(what)
            .with("isSubtle", true)
            .with("spacing", "None"),
    );
    let mut columns = Vec::new();
    if let Some(a) = card.author.as_ref().filter(|a| !a.avatar.is_empty())
        && keep < Keep::Bare
    {
        let avatar = json!({
            "type": "Image", "url": a.avatar, "style": "person", "size": "Small",
            "altText": card::cut(&a.name, 80),
        });
        columns.push(json!({"type": "Column", "width": "auto", "items": [avatar]}));
    }
    columns.push(json!({"type": "Column", "width": "stretch", "verticalContentAlignment": "Center", "items": who}));
    let mut header = json!({
        "type": "Container",
        "bleed": true,
        "items": [{"type": "ColumnSet", "columns": columns}],
    });
    kit::put(&mut header, "style", style_of(card.color));
    body.push(header);

    // The headline, linked to the post, and the excerpt.
    let headline = card::cut(&card.headline(), 200);
    let title = match keep < Keep::Bare {
        true => format!("**{}**", inert(&link(MD, &card.url, &headline))),
        false => inert(&bold(MD, &headline)),
    };
    body.push(
        text_block(title)
            .with("size", "Medium")
            .with("weight", "Bolder"),
    );
    if !card.text.is_empty() {
        body.push(text_block(md(&card.text, 300)));
    }

    // Tags, then the footer.
    if !card.tags.is_empty() && keep < Keep::NoTags {
        let tags: Vec<String> = (card.tags.iter().take(MAX_TAGS))
            .map(|t| match keep {
                Keep::All => linked(&t.url, &t.text, 50),
                _ => md(&t.text, 50),
            })
            .collect();
        body.push(text_block(format!("🏷️ {}", tags.join(", "))).with("isSubtle", true));
    }
    if keep < Keep::NoFooter {
        body.push(footer(card, flavor));
    }
    // A card's URLs are absolute http(s) and at most 2,000 bytes: the
    // button always fits.
    let label = Some(button.unwrap_or(&card.button.text)).filter(|l| !l.trim().is_empty());
    let action = json!({
        "type": "Action.OpenUrl",
        "title": card::cut(label.unwrap_or("Open"), 40),
        "url": card.url,
    });
    envelope(flavor, body, Some(action))
}

/// The forum's logo, title and the time, small and subtle.
fn footer(card: &Card, flavor: &Flavor) -> Value {
    let mut parts = vec![md(&card.footer.text, 100)];
    if let Some(t) = &card.timestamp {
        parts.push(match flavor.dates {
            // The renderer writes it in the reader's zone and language.
            // Its pattern takes whole seconds only.
            true => match (t.get(..19), t.ends_with('Z')) {
                (Some(s), true) => format!("{{{{DATE({s}Z, SHORT)}}}} {{{{TIME({s}Z)}}}}"),
                _ => md(t, 40),
            },
            // `2026-01-02T03:04:05Z` → `2026-01-02 03:04 UTC`.
            false => match (t.get(..10), t.get(11..16)) {
                (Some(d), Some(hm)) if t.ends_with('Z') => format!("{d} {hm} UTC"),
                _ => md(t, 40),
            },
        });
    }
    let text = text_block(parts.join(" · "))
        .with("isSubtle", true)
        .with("size", "Small");
    let mut columns = Vec::new();
    if !card.footer.url.is_empty() {
        let logo = json!({
            "type": "Image", "url": card.footer.url, "width": "16px",
            "altText": card::cut(&card.footer.text, 80),
        });
        columns.push(json!({"type": "Column", "width": "auto", "items": [logo]}));
    }
    columns.push(json!({"type": "Column", "width": "stretch", "verticalContentAlignment": "Center", "items": [text]}));
    json!({"type": "ColumnSet", "columns": columns, "spacing": "Medium"})
}

fn envelope(flavor: &Flavor, body: Vec<Value>, action: Option<Value>) -> Value {
    let mut card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": flavor.version,
        "body": body,
    });
    if let Some(a) = action {
        card["actions"] = json!([a]);
    }
    card
}

fn text_block(text: String) -> Value {
    json!({"type": "TextBlock", "text": text, "wrap": true})
}

trait With {
    fn with(self, key: &str, v: impl Into<Value>) -> Self;
}

impl With for Value {
    fn with(mut self, key: &str, v: impl Into<Value>) -> Value {
        self[key] = v.into();
        self
    }
}

/// The named container style nearest the category's colour: Adaptive
/// Cards take no colour values, only `good` (green), `attention` (red),
/// `warning` (amber), `accent` (blue) and `emphasis` (grey); a colour
/// without much saturation or no colour gets none (the card's default).
pub(crate) fn style_of(color: Option<card::Color>) -> Option<&'static str> {
    let c = color?.0;
    let (r, g, b) = ((c >> 16) & 0xFF, (c >> 8) & 0xFF, c & 0xFF);
    let (max, min) = (r.max(g).max(b), r.min(g).min(b));
    if max < 40 || (max - min) * 100 < max * 25 {
        return Some("emphasis").filter(|_| (40..230).contains(&max));
    }
    // Hue in degrees, 0..360.
    let d = (max - min) as f32;
    let (r, g, b) = (r as f32, g as f32, b as f32);
    let hue = if max as f32 == r {
        60.0 * (((g - b) / d) % 6.0)
    } else if max as f32 == g {
        60.0 * ((b - r) / d + 2.0)
    } else {
        60.0 * ((r - g) / d + 4.0)
    };
    let hue = if hue < 0.0 { hue + 360.0 } else { hue };
    Some(match hue {
        h if !(15.0..330.0).contains(&h) => "attention",
        h if h < 70.0 => "warning",
        h if h < 170.0 => "good",
        h if h < 260.0 => "accent",
        // Purples and pinks have no style of their own.
        _ => "emphasis",
    })
}

/// A chat's own card: an `AdaptiveCard` object with a `body` or
/// `actions`, of a version the platform renders, within its budget.
pub(crate) fn check_card(card: &Value, flavor: &Flavor, max_actions: usize) -> Result<(), String> {
    let Some(obj) = card.as_object() else {
        return Err("an Adaptive Card is an object with \"type\": \"AdaptiveCard\"".into());
    };
    if card["type"] != "AdaptiveCard" {
        return Err("/type must be \"AdaptiveCard\"".into());
    }
    let Some(version) = card["version"].as_str() else {
        return Err("/version is missing (an Adaptive Card names its schema version)".into());
    };
    if version_above(version, flavor.version) {
        return Err(format!(
            "/version is {version}; this platform renders Adaptive Cards up to {}",
            flavor.version
        ));
    }
    if !obj.contains_key("body") && !obj.contains_key("actions") {
        return Err("an Adaptive Card needs `body` or `actions`".into());
    }
    for key in ["body", "actions"] {
        if obj.get(key).is_some_and(|v| !v.is_array()) {
            return Err(format!("/{key} must be an array"));
        }
        for (i, el) in card[key].as_array().into_iter().flatten().enumerate() {
            if !el["type"].is_string() {
                return Err(format!("/{key}/{i} has no `type`"));
            }
        }
    }
    let actions = card["actions"].as_array().map_or(0, Vec::len);
    if actions > max_actions {
        return Err(format!(
            "/actions has {actions} actions; at most {max_actions}"
        ));
    }
    let bytes = serde_json::to_vec(card).map_or(usize::MAX, |b| b.len());
    if bytes > flavor.max_bytes {
        return Err(format!(
            "the card has {bytes} bytes; at most {}",
            flavor.max_bytes
        ));
    }
    Ok(())
}

/// `1.5` above `1.4`; an unreadable version counts as above.
fn version_above(version: &str, max: &str) -> bool {
    let parse = |v: &str| -> Option<(u32, u32)> {
        let (a, b) = v.trim().split_once('.')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    };
    match (parse(version), parse(max)) {
        (Some(v), Some(m)) => v > m,
        _ => true,
    }
}

/// A card as large as a post can make it: 100 kB titles and excerpt, 500
/// long tags, long names and URLs near the 2,000-byte limit.
#[cfg(test)]
pub(crate) fn huge_card() -> Card {
    let long = "word ".repeat(20_000);
    let url = |i: usize| format!("https://forum.example.org/{i}/{}", "a".repeat(1900));
    Card {
        marks: "✅ ".into(),
        title: format!("\"*[{long}]*\" <b>"),
        url: url(0),
        label: long.clone(),
        author: Some(card::Author {
            name: long.clone(),
            username: long.clone(),
            url: url(1),
            avatar: url(2),
        }),
        color: Some(card::Color(0x0088CC)),
        text: format!("&<>\"'\\ {long}"),
        category: Some(card::Link {
            text: long.clone(),
            url: url(3),
        }),
        tags: (0..500)
            .map(|i| card::Link {
                text: format!("tag{i} {}", "t".repeat(200)),
                url: url(10 + i),
            })
            .collect(),
        footer: card::Link {
            text: long.clone(),
            url: url(4),
        },
        timestamp: Some("2026-01-02T03:04:05Z".into()),
        time: Some(1_767_323_045),
        button: card::Link {
            text: long,
            url: url(0),
        },
    }
}

/// The request `dest` builds for a new message with `card` (text "text").
#[cfg(test)]
pub(crate) fn card_request(dest: &dyn Destination, card: &Card) -> HttpRequest {
    crate::providers::testkit::http(dest.request(&Message {
        chat: "test-chat",
        text: "text",
        context: &json!({}),
        card: Some(card),
        custom: None,
        action: Action::default(),
        delivery: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: Flavor = Flavor {
        version: "1.4",
        dates: true,
        max_bytes: 28_000,
    };

    #[test]
    fn colours_map_to_the_nearest_named_style() {
        for (hex, want) in [
            (0xE45735, Some("attention")),
            (0xF1592A, Some("attention")),
            (0xF7941D, Some("warning")),
            (0xFFD700, Some("warning")),
            (0x3AB54A, Some("good")),
            (0x0088CC, Some("accent")),
            (0x25AAE2, Some("accent")),
            (0x652D90, Some("emphasis")),
            (0x808281, Some("emphasis")),
            (0xFFFFFF, None),
            (0x000000, None),
        ] {
            assert_eq!(style_of(Some(card::Color(hex))), want, "{hex:06X}");
        }
        assert_eq!(style_of(None), None);
    }

    #[test]
    fn a_huge_post_still_gives_a_card_within_the_budget() {
        for flavor in [
            F,
            Flavor {
                max_bytes: 16_000,
                ..F
            },
        ] {
            let c = default_card(&huge_card(), None, &flavor);
            check_card(&c, &flavor, 1).unwrap();
            // Only optional parts went: the headline and the button stay.
            assert_eq!(c["actions"][0]["type"], "Action.OpenUrl");
            assert!(c["body"][1]["text"].as_str().unwrap().starts_with("**"));
        }
    }

    #[test]
    fn own_cards_are_checked() {
        let ok = json!({"type": "AdaptiveCard", "version": "1.3", "body": [{"type": "TextBlock", "text": "x"}]});
        assert_eq!(check_card(&ok, &F, 5), Ok(()));
        for (bad, why) in [
            (json!([]), "is an object"),
            (
                json!({"type": "Card", "version": "1.0", "body": []}),
                "/type",
            ),
            (json!({"type": "AdaptiveCard", "body": []}), "/version"),
            (
                json!({"type": "AdaptiveCard", "version": "1.5", "body": []}),
                "up to 1.4",
            ),
            (
                json!({"type": "AdaptiveCard", "version": "1.0"}),
                "needs `body`",
            ),
            (
                json!({"type": "AdaptiveCard", "version": "1.0", "body": [{"text": "x"}]}),
                "/body/0 has no `type`",
            ),
            (
                json!({"type": "AdaptiveCard", "version": "1.0", "body": [{"type": "TextBlock", "text": "x".repeat(30_000)}]}),
                "bytes; at most 28000",
            ),
        ] {
            let e = check_card(&bad, &F, 5).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
