//! `review`: the review queue. A flagged post, a post queued for approval,
//! a user waiting for approval: one message with what, where and a link to
//! `/review/ID`; when a moderator handles it (`reviewable_transitioned_to`),
//! the same message is edited to say how. Score updates edit it too.
//!
//! The payload names no users (ids only), and a queued item has no topic
//! yet (its title is in `payload.title`). Emails in a user reviewable's
//! payload are never read.

use serde::Deserialize;

use super::{Draft, Family, FilterKind, Incoming, Look, Private, Source, TopicHint, notice};
use crate::ingest::event::Change;
use crate::ingest::payload::TagPayload;

pub static FAMILY: Family = Family {
    name: "review",
    about: "the review queue: flagged posts, posts and users waiting for approval, and what moderators decided",
    events: &[
        "reviewable_created",
        "reviewable_updated",
        "reviewable_score_updated",
        "reviewable_transitioned_to",
    ],
    filters: &[FilterKind::Topic],
    private: Private::Neutral,
    slot: 1,
    source: Source::Payload(parse),
    finish: None,
    look: Look {
        color: 0xE45735,
        action: "Review",
    },
};

#[derive(Debug, Deserialize)]
struct Reviewable {
    id: u64,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    status: Option<u64>,
    #[serde(default)]
    score: Option<f64>,
    #[serde(default)]
    topic_id: Option<u64>,
    #[serde(default)]
    category_id: Option<u64>,
    #[serde(default)]
    topic_tags: Option<Vec<TagPayload>>,
    #[serde(default)]
    target_url: Option<String>,
    #[serde(default)]
    cooked: Option<String>,
    #[serde(default)]
    payload: Option<QueuedPayload>,
}

/// `payload` of a queued post (`title`) or a user (`username`, `name`).
#[derive(Debug, Default, Deserialize)]
struct QueuedPayload {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

/// What kind of item, in words: (label, what a handled one is called).
fn kind_of(kind: &str) -> &'static str {
    match kind {
        "ReviewableFlaggedPost" => "Flagged post",
        "ReviewableQueuedPost" => "Post waiting for approval",
        "ReviewableUser" => "New user waiting for approval",
        "ReviewableChatMessage" => "Flagged chat message",
        _ => "Review item",
    }
}

/// The status number in words, and its mark (`enum :status` in core's
/// `reviewable.rb`). A flag "approved" is one the moderator agreed with.
fn status_of(status: u64, flag: bool) -> (&'static str, &'static str) {
    match (status, flag) {
        (0, _) => ("pending", ""),
        (1, true) => ("agreed", "✅"),
        (1, false) => ("approved", "✅"),
        (2, true) => ("disagreed", "❌"),
        (2, false) => ("rejected", "❌"),
        (3, _) => ("ignored", "➖"),
        (4, _) => ("deleted", "🗑️"),
        _ => ("changed", ""),
    }
}

fn parse(i: &Incoming<'_>) -> Result<Draft, serde_json::Error> {
    let r: Reviewable = serde_json::from_str(i.payload)?;
    let kind = r.kind.as_deref().unwrap_or("");
    let label = kind_of(kind);
    let flag = kind.starts_with("ReviewableFlagged");
    let (status, done_mark) = status_of(r.status.unwrap_or(0), flag);
    let pending = status == "pending";
    let change = match i.event {
        "reviewable_created" => Change::Opened,
        _ => Change::Updated,
    };
    let mark = match (pending, kind) {
        (false, _) => done_mark,
        (true, "ReviewableQueuedPost") => "📝",
        (true, "ReviewableUser") => "👤",
        (true, _) => "🚩",
    };
    let queued = r.payload.unwrap_or_default();
    let title = match (&queued.username, pending) {
        (Some(u), true) => format!("{label}: {}", super::who(queued.name.as_deref(), u)),
        (Some(u), false) => format!("{label}: {u}, {status}"),
        (None, true) => label.to_string(),
        (None, false) => format!("{label}: {status}"),
    };
    let mut n = notice(
        &FAMILY,
        change,
        mark,
        title,
        format!("{}/review/{}", i.forum, r.id),
    );
    n.subject = Some(r.id);
    n.status = status.to_string();
    n.neutral = match pending {
        true => format!("{label} (private)"),
        false => format!("{label} (private): {status}"),
    };
    n.cooked = r.cooked.unwrap_or_default();
    n.data = serde_json::json!({
        "id": r.id,
        "type": kind,
        "score": r.score,
        "target_url": r.target_url,
    });
    let topic = (r.topic_id.is_some() || r.category_id.is_some()).then(|| TopicHint {
        id: r.topic_id.unwrap_or(0),
        title: queued.title,
        category_id: r.category_id,
        tags: r.topic_tags,
    });
    Ok(Draft { notice: n, topic })
}
