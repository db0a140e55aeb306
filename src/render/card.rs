//! Cards: one event as structured parts (a headline linked to the post,
//! the author with an avatar, the category's colour, the excerpt, category
//! and tag links, a footer, a button), for the platforms that draw more
//! than text (Slack blocks, Discord embeds, Adaptive Cards...).
//!
//! Every string of a [`Card`] is plain text: no markup, no control or
//! direction characters, whatever the post contained. A provider escapes
//! each one for the field it puts it in ([`super::escape::escape`] with the
//! field's dialect) or sends it where the platform shows plain text, and
//! cuts it to the field's limit with [`fit`]. Every URL is absolute `http(s)`
//! on the event's forum or its CDN, or absent. A card is built once per
//! event, never per chat, and knows nothing of any platform.

use serde::Serialize;

use super::escape::{is_linkable, strip_controls};
use super::text;
use crate::ingest::families;
use crate::ingest::{Event, EventKind};

/// The avatar size asked of Discourse, in pixels: one of its default
/// `avatar_sizes`, sharp at the 48 px the platforms draw it.
pub const AVATAR_SIZE: u32 = 96;

/// An event as a card. See the module doc for what each string may hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Card {
    /// The topic's state as emoji before the title (`✅ 🔒 `), or a
    /// family's mark (`🚩`); may be empty.
    pub marks: String,
    /// The topic title, or a notice's headline.
    pub title: String,
    /// Where the title links: the post, the topic, or the notice's item.
    pub url: String,
    /// What happened, in a few words: `New topic`, `Reply #3`, a notice's
    /// detail (`by bob in support/rust`).
    pub label: String,
    pub author: Option<Author>,
    /// The category's colour, else the family's; `None`: the platform's default.
    pub color: Option<Color>,
    /// The excerpt: the post as collapsed plain text, at most
    /// [`text::EXCERPT_MAX`] characters; may be empty.
    pub text: String,
    pub category: Option<Link>,
    /// Tag links (hidden tags never).
    pub tags: Vec<Link>,
    /// The forum's title (else its host) and logo.
    pub footer: Link,
    /// When the post was written (RFC 3339), when known.
    pub timestamp: Option<String>,
    /// The same as Unix seconds.
    pub time: Option<i64>,
    /// The button: `View post`, `View topic`, a family's action.
    pub button: Link,
}

/// A post's author as a card shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Author {
    /// The display name, else the username.
    pub name: String,
    pub username: String,
    /// The profile page.
    pub url: String,
    /// The avatar at [`AVATAR_SIZE`] pixels; empty when unknown.
    pub avatar: String,
}

/// Text and where it links (`url` may be empty: no link). For the footer,
/// `url` is the forum's logo.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Link {
    pub text: String,
    pub url: String,
}

/// A colour as `0xRRGGBB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Color(pub u32);

impl Color {
    /// Six hex digits (`0088CC`), as Discourse writes them.
    pub fn parse(hex: &str) -> Option<Self> {
        let hex = hex.trim().trim_start_matches('#');
        (hex.len() == 6)
            .then(|| u32::from_str_radix(hex, 16).ok())
            .flatten()
            .map(Color)
    }

    /// `#0088CC`.
    pub fn hex(self) -> String {
        format!("#{:06X}", self.0 & 0xFF_FFFF)
    }
}

impl Card {
    /// `marks` and `title` together: what a platform's one title field shows.
    pub fn headline(&self) -> String {
        [self.marks.as_str(), self.title.as_str()].concat()
    }

    /// The card of `event`, with `excerpt` (`post.excerpt`, computed once
    /// by the render context).
    pub fn of(event: &Event, excerpt: &str) -> Card {
        let forum = event.forum.as_str();
        let topic = &event.topic;
        let category = topic.category.as_ref();
        let mut card = Card {
            category: category.map(|c| Link {
                text: plain(&c.name),
                url: format!("{forum}/c/{}/{}", c.path, c.id),
            }),
            tags: (topic.tags.iter().filter(|t| !t.hidden))
                .map(|t| Link {
                    text: plain(&t.name),
                    url: format!("{forum}/tag/{}", t.slug),
                })
                .collect(),
            color: category
                .and_then(|c| c.color.as_deref())
                .and_then(Color::parse),
            footer: footer(event),
            ..Card::default()
        };
        if let Some(n) = &event.notice {
            card.marks = mark(&n.mark);
            card.title = plain(&n.title);
            card.url = safe_url(&n.url, forum, &topic.url);
            // What it is about: the family's detail, then the topic.
            let about =
                (!topic.title.trim().is_empty()).then(|| format!("on “{}”", plain(&topic.title)));
            card.label = [Some(plain(&n.text)), about]
                .into_iter()
                .flatten()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" · ");
            card.text = plain(&text::excerpt(&n.cooked, text::EXCERPT_MAX));
            // A flag looks like a flag, whatever its category's colour.
            let look = families::named(&n.family).map(|f| f.look);
            card.color = look.map(|l| Color(l.color)).or(card.color);
            card.button = Link {
                text: look.map_or("Open", |l| l.action).to_string(),
                url: card.url.clone(),
            };
            return card;
        }
        card.marks = topic_marks(event);
        card.title = plain(&topic.title);
        let Some(post) = &event.post else {
            card.url = safe_url(&topic.url, forum, forum);
            card.label = match event.kind {
                EventKind::TopicCreated => "New topic",
                _ => "Topic",
            }
            .into();
            card.button = Link {
                text: "View topic".into(),
                url: card.url.clone(),
            };
            return card;
        };
        card.url = safe_url(&post.url, forum, &topic.url);
        card.label = match post.number {
            0 | 1 => "New topic".to_string(),
            n => format!("Reply #{n}"),
        };
        card.text = plain(excerpt);
        card.author = Some(Author {
            name: plain(if post.name.trim().is_empty() {
                &post.username
            } else {
                &post.name
            }),
            username: plain(&post.username),
            url: format!(
                "{forum}/u/{}",
                super::escape::encode_url(&post.username, &['/', '?', '#', '%', ' '])
            ),
            avatar: avatar(&post.avatar),
        });
        let written = post.created_at.parse::<jiff::Timestamp>().ok();
        card.timestamp = written.map(|t| t.to_string());
        card.time = written.map(|t| t.as_second());
        card.button = Link {
            text: if post.number <= 1 {
                "View topic"
            } else {
                "View reply"
            }
            .into(),
            url: card.url.clone(),
        };
        card
    }
}

/// `value` cut to at most `max` characters at a word boundary, with `…`
/// when cut: what every provider does to respect a field's limit.
pub fn cut(value: &str, max: usize) -> String {
    text::truncate(value, max)
}

/// Text for a card: control and direction characters gone, whitespace
/// collapsed to single spaces.
fn plain(value: &str) -> String {
    // Direction overrides could make a title read backwards after the
    // relay's own words; cards drop them.
    let bidi = |c: char| matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
    let value = strip_controls(value);
    match value.contains(bidi) {
        true => text::collapse_whitespace(&value.replace(bidi, "")),
        false => text::collapse_whitespace(&value),
    }
}

fn mark(m: &str) -> String {
    let m = plain(m);
    if m.is_empty() { m } else { m + " " }
}

fn topic_marks(event: &Event) -> String {
    let s = event.topic.state;
    let marks = [
        (s.solved, "✅ "),
        (s.closed, "🔒 "),
        (s.archived, "🗄️ "),
        (s.pinned, "📌 "),
    ];
    marks
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, m)| *m)
        .collect()
}

/// `url` if it is an absolute `http(s)` URL; else `fallback` (itself
/// checked), else the forum.
fn safe_url(url: &str, forum: &str, fallback: &str) -> String {
    [url, fallback]
        .into_iter()
        .find(|u| web_url(u))
        .unwrap_or(forum)
        .to_string()
}

fn avatar(template: &str) -> String {
    let url = template.replace("{size}", &AVATAR_SIZE.to_string());
    if web_url(&url) { url } else { String::new() }
}

/// An absolute `http(s)` URL of sane length without spaces, quotes or
/// angle brackets: safe in every platform's URL field.
pub fn web_url(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    (lower.starts_with("https://") || lower.starts_with("http://"))
        && url.len() <= 2000
        && is_linkable(url)
        && !url.contains(|c: char| c.is_whitespace() || c.is_control() || "\"'<>`".contains(c))
}

fn footer(event: &Event) -> Link {
    match &event.brand {
        Some(b) if !b.title.trim().is_empty() => Link {
            text: plain(&b.title),
            url: if web_url(&b.logo) {
                b.logo.clone()
            } else {
                String::new()
            },
        },
        _ => Link {
            text: url::Url::parse(&event.forum)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string))
                .unwrap_or_else(|| event.forum.clone()),
            url: String::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_post_becomes_a_card_of_plain_parts_with_absolute_links() {
        let mut e = Event::sample("https://forum.example.org");
        e.topic.state.closed = true;
        let card = Card::of(&e, "I have a shared map and several tasks.");
        assert_eq!(
            card.headline(),
            "🔒 How do I share state between async tasks?"
        );
        assert_eq!(
            card.url,
            "https://forum.example.org/t/how-do-i-share-state-between-async-tasks/101/1"
        );
        assert_eq!(card.label, "New topic");
        assert_eq!(card.color, Some(Color(0xF1592A)));
        assert_eq!(card.color.map(Color::hex).as_deref(), Some("#F1592A"));
        let author = card.author.as_ref().unwrap();
        assert_eq!(author.name, "Bob Ramirez");
        assert_eq!(author.url, "https://forum.example.org/u/bob");
        assert_eq!(
            author.avatar,
            "https://forum.example.org/user_avatar/forum.example.org/bob/96/12_2.png"
        );
        assert_eq!(
            card.category,
            Some(Link {
                text: "Rust".into(),
                url: "https://forum.example.org/c/support/rust/7".into()
            })
        );
        assert_eq!(
            card.tags,
            vec![Link {
                text: "async".into(),
                url: "https://forum.example.org/tag/async".into()
            }]
        );
        assert_eq!(card.footer.text, "Example Forum");
        assert_eq!(card.timestamp.as_deref(), Some("2026-03-10T09:00:12.512Z"));
        assert_eq!(card.button.text, "View topic");
    }

    #[test]
    fn hostile_parts_lose_control_characters_and_bad_links() {
        let mut e = Event::sample("https://forum.example.org");
        e.topic.title = "a\u{202E}b\nc\u{0}d".into();
        let post = e.post.as_mut().unwrap();
        post.url = "javascript:alert(1)".into();
        post.avatar = "data:image/png;base64,xx".into();
        post.number = 3;
        e.brand = None;
        let card = Card::of(&e, "");
        assert_eq!(card.title, "ab cd");
        assert_eq!(card.url, e.topic.url);
        assert_eq!(card.author.unwrap().avatar, "");
        assert_eq!(card.label, "Reply #3");
        assert_eq!(card.footer.text, "forum.example.org");
    }

    #[test]
    fn a_notice_gets_its_familys_look() {
        let mut e = Event::sample_notice("https://forum.example.org");
        e.topic.category = None;
        let card = Card::of(&e, "");
        assert_eq!(card.headline(), "🚩 Post flagged for review");
        assert_eq!(card.button.text, "Review");
        assert_eq!(card.color, Some(Color(0xE45735)));
        assert!(card.author.is_none());
    }

    #[test]
    fn cut_cuts_at_a_word_with_an_ellipsis() {
        assert_eq!(cut("alpha beta gamma", 12), "alpha beta…");
        assert_eq!(cut("short", 12), "short");
    }
}
