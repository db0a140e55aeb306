//! The one normalized [`Event`] every later stage works on.
//!
//! Discourse sends several payload shapes (post, topic, solved...) that each
//! lack something (post events carry no tags, topic events no category slug).
//! Ingest fills the gaps from what it has learned and hands on this type; no
//! stage after ingest ever looks at a raw Discourse payload.

use serde::{Deserialize, Serialize};

/// The Discourse event name (`X-Discourse-Event`), with the ones the relay acts on named.
/// Serialized as the plain event name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventKind {
    PostCreated,
    PostEdited,
    PostDestroyed,
    PostRecovered,
    TopicCreated,
    TopicEdited,
    TopicDestroyed,
    TopicRecovered,
    /// A topic unlisted (`visible: false`) or listed again.
    TopicVisibleStatusUpdated,
    /// A topic closed or opened, archived or not, pinned (in its category,
    /// or globally) or unpinned: its messages' marks follow.
    TopicClosedStatusUpdated,
    TopicArchivedStatusUpdated,
    TopicPinnedStatusUpdated,
    TopicPinnedGloballyStatusUpdated,
    /// A post accepted as the topic's answer (discourse-solved), or no more.
    AcceptedSolution,
    UnacceptedSolution,
    Ping,
    /// Any other event name, kept verbatim.
    Other(String),
}

impl Serialize for EventKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Ok(Self::parse(&name))
    }
}

impl EventKind {
    /// A topic's closed, archived, pinned or solved state changed.
    pub fn is_topic_state(&self) -> bool {
        matches!(
            self,
            Self::TopicClosedStatusUpdated
                | Self::TopicArchivedStatusUpdated
                | Self::TopicPinnedStatusUpdated
                | Self::TopicPinnedGloballyStatusUpdated
                | Self::AcceptedSolution
                | Self::UnacceptedSolution
        )
    }

    pub fn parse(name: &str) -> Self {
        match name {
            "post_created" => Self::PostCreated,
            "post_edited" => Self::PostEdited,
            "post_destroyed" => Self::PostDestroyed,
            "post_recovered" => Self::PostRecovered,
            "topic_created" => Self::TopicCreated,
            "topic_edited" => Self::TopicEdited,
            "topic_destroyed" => Self::TopicDestroyed,
            "topic_recovered" => Self::TopicRecovered,
            "topic_visible_status_updated" => Self::TopicVisibleStatusUpdated,
            "topic_closed_status_updated" => Self::TopicClosedStatusUpdated,
            "topic_archived_status_updated" => Self::TopicArchivedStatusUpdated,
            "topic_pinned_status_updated" => Self::TopicPinnedStatusUpdated,
            "topic_pinned_globally_status_updated" => Self::TopicPinnedGloballyStatusUpdated,
            "accepted_solution" => Self::AcceptedSolution,
            "unaccepted_solution" => Self::UnacceptedSolution,
            "ping" => Self::Ping,
            other => Self::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::PostCreated => "post_created",
            Self::PostEdited => "post_edited",
            Self::PostDestroyed => "post_destroyed",
            Self::PostRecovered => "post_recovered",
            Self::TopicCreated => "topic_created",
            Self::TopicEdited => "topic_edited",
            Self::TopicDestroyed => "topic_destroyed",
            Self::TopicRecovered => "topic_recovered",
            Self::TopicVisibleStatusUpdated => "topic_visible_status_updated",
            Self::TopicClosedStatusUpdated => "topic_closed_status_updated",
            Self::TopicArchivedStatusUpdated => "topic_archived_status_updated",
            Self::TopicPinnedStatusUpdated => "topic_pinned_status_updated",
            Self::TopicPinnedGloballyStatusUpdated => "topic_pinned_globally_status_updated",
            Self::AcceptedSolution => "accepted_solution",
            Self::UnacceptedSolution => "unaccepted_solution",
            Self::Ping => "ping",
            Self::Other(s) => s,
        }
    }
}

/// Discourse `post_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PostType {
    Regular,
    ModeratorAction,
    SmallAction,
    Whisper,
    Unknown,
}

impl PostType {
    pub fn from_code(code: i64) -> Self {
        match code {
            1 => Self::Regular,
            2 => Self::ModeratorAction,
            3 => Self::SmallAction,
            4 => Self::Whisper,
            _ => Self::Unknown,
        }
    }
}

/// A category as the relay knows it. `path` (`support/rust`) is its identity:
/// leaf slugs are not unique across parents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Category {
    pub id: u64,
    pub slug: String,
    pub path: String,
    pub name: String,
    /// Read-restricted (staff-only and similar): only rules naming it exactly get its posts.
    pub restricted: bool,
    /// The id is not (yet) known to the relay, which has a way to learn it
    /// (an API key, a static map): the category is treated as restricted,
    /// its path is only the payload's leaf slug, and the event waits
    /// (bounded) for `/site.json` to name it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unresolved: bool,
    /// The category's colour as six hex digits (`0088CC`), from `/site.json`
    /// or the static map: the bar or accent of a card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub name: String,
    pub slug: String,
    /// Staff-only (`[discourse] hidden_tags`): never shown in a message, and
    /// matched only by rules naming it exactly.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hidden: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topic {
    pub id: u64,
    pub title: String,
    pub slug: String,
    /// Absolute URL of the topic.
    pub url: String,
    pub private_message: bool,
    pub category: Option<Category>,
    pub tags: Vec<Tag>,
    /// Groups a private message is addressed to (lower-case names); empty when unknown.
    pub pm_groups: Vec<String>,
    /// The topic is unlisted (learned from topic events or the API; post
    /// events never say): nothing of it is announced.
    #[serde(default)]
    pub unlisted: bool,
    /// Closed, archived, pinned: marks on its messages.
    #[serde(default)]
    pub state: TopicState,
}

/// What a topic's messages show of its state (each as last learned).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicState {
    #[serde(default)]
    pub closed: bool,
    #[serde(default)]
    pub archived: bool,
    #[serde(default)]
    pub pinned: bool,
    /// An answer is accepted (discourse-solved). Known only from the
    /// solved events: topic payloads do not carry it.
    #[serde(default)]
    pub solved: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Post {
    pub id: u64,
    pub number: u64,
    pub post_type: PostType,
    /// `category_changed`, `closed.enabled`, ... for small actions and automatic posts.
    pub action_code: Option<String>,
    pub username: String,
    /// Display name; empty when the forum hides names.
    pub name: String,
    pub raw: String,
    pub cooked: String,
    /// Absolute URL of the post.
    pub url: String,
    pub created_at: String,
    pub hidden: bool,
    pub deleted: bool,
    /// Groups and users mentioned in `raw` (`@name`, lower-case, outside code).
    pub mentions: Vec<String>,
    /// The author's avatar as an absolute URL template with `{size}` in it
    /// (Discourse's `avatar_template` prefixed with the forum); empty when
    /// the payload has none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub avatar: String,
}

impl Post {
    pub fn is_first(&self) -> bool {
        self.number == 1
    }

    /// The automatic post announcing a category move (a whisper since late
    /// 2024, a small action before).
    pub fn is_category_change(&self) -> bool {
        self.action_code.as_deref() == Some("category_changed")
    }
}

/// A normalized Discourse event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub kind: EventKind,
    /// `X-Discourse-Event-Id`, when the request carried one.
    pub id: Option<u64>,
    /// Base URL of the forum that sent it (`X-Discourse-Instance` or the configured url).
    pub forum: String,
    pub topic: Topic,
    /// Absent for topic events.
    pub post: Option<Post>,
    /// What an event family beyond posts says (a flag, a signup, a chat
    /// message...): routed by that family's rules, rendered from these
    /// fields. For a family not tied to a topic, `topic` is empty (id 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<Box<Notice>>,
    /// The forum's title and logo, as known when the event arrived (the
    /// file's `[discourse] title`/`logo_url`, else the API): the footer of
    /// a card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand: Option<Brand>,
}

/// How a forum presents itself: its title and logo (an absolute URL).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Brand {
    pub title: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub logo: String,
}

/// An event of a family beyond posts (`ingest::families`), normalized: what
/// routing, rendering and the message lifecycle need of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// The family's name, as rules name it (`review`, `users`, `chat`...).
    pub family: String,
    /// What the event does to the family's item.
    pub change: Change,
    /// The item's id within its family (a reviewable, a chat message):
    /// later events about it edit the messages it became. `None`: a
    /// one-off note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<u64>,
    /// Groups the event is about (lower-case): what `group` filters match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The Discourse chat channel (slug, or its id where it has none): what
    /// `channel` filters match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// About something private beyond the topic's own flags (a direct
    /// message channel): only rules naming it exactly get it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub private: bool,
    /// The message's parts, plain text (escaped per dialect when rendered):
    /// a mark (`🚩`), a headline linked to `url`, a detail line, a quote.
    pub mark: String,
    pub title: String,
    pub url: String,
    #[serde(default)]
    pub text: String,
    /// Content quoted below, as cooked HTML (render makes the excerpt).
    #[serde(default)]
    pub cooked: String,
    /// What the headline says to a chat that may not see the item (a flag
    /// on a private message): no title, author or content.
    #[serde(default)]
    pub neutral: String,
    /// The item's state, where it has one (`pending`, `approved`...).
    #[serde(default)]
    pub status: String,
    /// The family's own fields, for custom templates (`notice.data.score`).
    /// Never personal data (emails, IPs).
    #[serde(default)]
    pub data: serde_json::Value,
}

/// What an event does to its family's item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// A new item: a new message.
    Opened,
    /// The item changed: its messages are edited (or, where the platform
    /// cannot edit, a short follow-up is sent).
    Updated,
    /// Removed (a trashed chat message): its messages follow `on_delete`.
    Removed,
    /// Back again: as a recovered post.
    Restored,
}

impl Notice {
    /// The notice as a chat that may not see the item gets it: the neutral
    /// headline and link, nothing of its content.
    pub fn redacted(&self) -> Notice {
        Notice {
            title: self.neutral.clone(),
            text: String::new(),
            cooked: String::new(),
            data: serde_json::Value::Null,
            // Nothing private is left in it.
            private: false,
            ..self.clone()
        }
    }
}

impl Event {
    /// A complete event with every field filled, used to check templates at
    /// load time (a template that renders this renders any real event).
    pub fn sample(forum: &str) -> Self {
        let forum = forum.trim_end_matches('/').to_string();
        Event {
            kind: EventKind::PostCreated,
            id: Some(1),
            topic: Topic {
                id: 101,
                title: "How do I share state between async tasks?".into(),
                slug: "how-do-i-share-state-between-async-tasks".into(),
                url: format!("{forum}/t/how-do-i-share-state-between-async-tasks/101"),
                private_message: false,
                category: Some(Category {
                    id: 7,
                    slug: "rust".into(),
                    path: "support/rust".into(),
                    name: "Rust".into(),
                    restricted: false,
                    unresolved: false,
                    color: Some("F1592A".into()),
                }),
                tags: vec![Tag {
                    hidden: false,
                    name: "async".into(),
                    slug: "async".into(),
                }],
                pm_groups: vec![],
                unlisted: false,
                state: TopicState::default(),
            },
            post: Some(Post {
                id: 1001,
                number: 1,
                post_type: PostType::Regular,
                action_code: None,
                username: "bob".into(),
                name: "Bob Ramirez".into(),
                raw: "I have a **shared** map and several tasks.".into(),
                cooked: "<p>I have a <strong>shared</strong> map and several tasks.</p>".into(),
                url: format!("{forum}/t/how-do-i-share-state-between-async-tasks/101/1"),
                created_at: "2026-03-10T09:00:12.512Z".into(),
                hidden: false,
                deleted: false,
                mentions: vec![],
                avatar: format!("{forum}/user_avatar/forum.example.org/bob/{{size}}/12_2.png"),
            }),
            notice: None,
            brand: Some(Brand {
                title: "Example Forum".into(),
                logo: format!("{forum}/uploads/default/original/1X/logo.png"),
            }),
            forum,
        }
    }

    /// What the event is about, in a few words, for operators (the pane,
    /// dead letters): a family notice's headline, else the topic's title.
    pub fn headline(&self) -> &str {
        match &self.notice {
            Some(n) => &n.title,
            None => &self.topic.title,
        }
    }

    /// This event as a chat that may not see its item gets it (see
    /// [`Notice::redacted`]): nothing of the topic but its id.
    pub fn neutral(&self) -> Event {
        Event {
            topic: Topic {
                id: self.topic.id,
                ..Topic::default()
            },
            post: None,
            notice: self.notice.as_ref().map(|n| Box::new(n.redacted())),
            ..self.clone()
        }
    }

    /// A notice event with every field filled, for checking the notice
    /// templates at load time.
    pub fn sample_notice(forum: &str) -> Self {
        let mut e = Self::sample(forum);
        e.kind = EventKind::Other("reviewable_created".into());
        e.post = None;
        e.notice = Some(Box::new(Notice {
            family: "review".into(),
            change: Change::Opened,
            subject: Some(7),
            groups: vec![],
            channel: None,
            private: false,
            mark: "🚩".into(),
            title: "Post flagged for review".into(),
            url: format!("{}/review/7", e.forum),
            text: "by bob in support/rust".into(),
            cooked: "<p>I have a <strong>shared</strong> map.</p>".into(),
            neutral: "A post was flagged for review".into(),
            status: "pending".into(),
            data: serde_json::json!({"id": 7, "score": 3.0}),
        }));
        e
    }

    /// Where this event's chat messages are remembered: (topic id, post
    /// number) for a post, (subject id, the family's slot) for a notice
    /// about an item; `None` for what is never edited later.
    pub fn message_slot(&self) -> Option<(u64, u64)> {
        match &self.notice {
            Some(n) => Some((n.subject?, super::families::slot(&n.family)?)),
            None => self.post.as_ref().map(|p| (self.topic.id, p.number)),
        }
    }
}
