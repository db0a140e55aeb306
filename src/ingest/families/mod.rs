//! Event families beyond posts: the review queue, users, solved answers,
//! topic states, likes, assignments, Discourse chat. Each family is one file
//! here and one line in [`FAMILIES`]: the event names it takes, the filters
//! its rules may use, what a private item becomes, and a parser that turns
//! its payload into a [`Draft`] (the [`Notice`] plus the topic or post it
//! is tied to, which [`super::normalize`] resolves against the forum state).
//!
//! A family decides nothing about who gets a message (that is
//! [`crate::rules`]) and knows nothing of dialects: its words are plain
//! text, escaped by render for each chat.

mod assign;
mod chat;
mod likes;
mod review;
mod solved;
mod topics;
mod users;

use serde::Deserialize;

use super::event::{Change, Notice};
use super::payload::TagPayload;

/// The families, in the order the schema and README list them. A family's
/// `slot` is stored with the chat messages it became: never change or reuse one.
pub static FAMILIES: &[&Family] = &[
    &review::FAMILY,
    &users::FAMILY,
    &solved::FAMILY,
    &topics::FAMILY,
    &likes::FAMILY,
    &assign::FAMILY,
    &chat::FAMILY,
];

/// The filters a rule may use; each family names the ones that mean
/// something for its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterKind {
    /// `category` and `tags`: the topic the event is about.
    Topic,
    /// `group`: the groups the event is about.
    Group,
    /// `channel`: the Discourse chat channel.
    Channel,
}

/// What a chat whose rule does not name a private item (a PM, a restricted
/// category, a direct message) gets of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Private {
    /// The neutral headline and the link, nothing of the content.
    Neutral,
    /// Nothing.
    Nothing,
}

/// One event family.
#[derive(Debug)]
pub struct Family {
    /// The name rules use (`family = "review"`, `subscribe = ["review ..."]`).
    pub name: &'static str,
    /// One line for the schema and `explain`.
    pub about: &'static str,
    /// The `X-Discourse-Event` names it takes.
    pub events: &'static [&'static str],
    pub filters: &'static [FilterKind],
    pub private: Private,
    /// Where its items' messages are remembered (see the module doc).
    slot: u64,
    pub source: Source,
    /// Fills in what only the forum state knows (a group's name), after
    /// the topic is resolved.
    pub finish: Option<fn(&mut Notice, &super::forum::ForumState)>,
    /// How its cards differ from a post's (a flag is not a new topic).
    pub look: Look,
}

/// A family's card: its accent colour and the label of its button.
#[derive(Debug, Clone, Copy)]
pub struct Look {
    /// `0xRRGGBB`.
    pub color: u32,
    /// The button that opens the item (`Review`, `View user`).
    pub action: &'static str,
}

/// Where a family's notice comes from.
#[derive(Debug)]
pub enum Source {
    /// Its own payload (under its own body key), parsed into a [`Draft`].
    Payload(fn(&Incoming<'_>) -> Result<Draft, serde_json::Error>),
    /// An event the post and topic path already reads (a solved answer, a
    /// topic closed): the notice is added to it once resolved, and the
    /// event does its usual work as well.
    Event(fn(&super::event::Event) -> Option<Notice>),
}

impl Family {
    pub fn allows(&self, filter: FilterKind) -> bool {
        self.filters.contains(&filter)
    }
}

/// One request's parts, as a family parser reads them.
#[derive(Debug)]
pub struct Incoming<'a> {
    /// `X-Discourse-Event`.
    pub event: &'a str,
    /// The body key (`reviewable`, `user`...).
    pub key: &'a str,
    /// The payload under it, raw JSON.
    pub payload: &'a str,
    /// The forum's base URL, without trailing slash.
    pub forum: &'a str,
}

/// What a family parser makes of a payload, before the forum state fills in
/// the topic's category path, tags and privacy.
#[derive(Debug)]
pub struct Draft {
    pub notice: Notice,
    /// The topic the event is about, as far as the payload says.
    pub topic: Option<TopicHint>,
}

/// What a payload says of its topic.
#[derive(Debug, Default)]
pub struct TopicHint {
    pub id: u64,
    pub title: Option<String>,
    pub category_id: Option<u64>,
    pub tags: Option<Vec<TagPayload>>,
}

/// The family that takes event `name`.
pub fn for_event(name: &str) -> Option<&'static Family> {
    FAMILIES.iter().copied().find(|f| f.events.contains(&name))
}

/// The family named `name` (as rules write it).
pub fn named(name: &str) -> Option<&'static Family> {
    FAMILIES.iter().copied().find(|f| f.name == name)
}

/// The post number under which family `name`'s items keep their messages:
/// far above any real post number, so an item and a topic of the same id
/// never meet.
pub fn slot(name: &str) -> Option<u64> {
    named(name).map(|f| SLOT_BASE + f.slot)
}

const SLOT_BASE: u64 = 1 << 62;

/// The notice a resolved post or topic event also carries, if a family
/// announces it.
pub fn annotate(event: &super::event::Event) -> Option<Notice> {
    match for_event(event.kind.as_str())?.source {
        Source::Event(f) => f(event),
        Source::Payload(_) => None,
    }
}

/// A notice with the parts every family sets; the rest empty.
fn notice(family: &Family, change: Change, mark: &str, title: String, url: String) -> Notice {
    Notice {
        family: family.name.to_string(),
        change,
        subject: None,
        groups: vec![],
        channel: None,
        private: false,
        mark: mark.to_string(),
        title,
        url,
        text: String::new(),
        cooked: String::new(),
        neutral: String::new(),
        status: String::new(),
        data: serde_json::Value::Null,
    }
}

/// The display name a payload gives, or the username.
fn who(name: Option<&str>, username: &str) -> String {
    match name.map(str::trim).filter(|n| !n.is_empty()) {
        Some(n) if !n.eq_ignore_ascii_case(username) => format!("{username} ({n})"),
        _ => username.to_string(),
    }
}

/// A user as payloads embed it (`like.user`, `message.user`).
#[derive(Debug, Default, Deserialize)]
struct UserRef {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

#[cfg(test)]
mod tests;
