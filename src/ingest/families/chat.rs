//! `chat`: Discourse chat channels mirrored one way into external chats.
//! A message posts, its edit edits, trashing follows `on_delete`, restoring
//! brings it back. Direct-message channels (`dm/ID` to rules), and
//! channels of restricted categories, reach only rules that name the
//! channel exactly.
//!
//! The payload has no message URL; `/chat/c/SLUG/CHANNEL/MESSAGE` is
//! Discourse's own link to a message.

use serde::Deserialize;

use super::{
    Draft, Family, FilterKind, Incoming, Look, Private, Source, TopicHint, UserRef, notice, who,
};
use crate::ingest::event::Change;

pub static FAMILY: Family = Family {
    name: "chat",
    about: "Discourse chat: messages of chosen channels, with their edits and deletions",
    events: &[
        "chat_message_created",
        "chat_message_edited",
        "chat_message_trashed",
        "chat_message_restored",
    ],
    filters: &[FilterKind::Channel],
    private: Private::Nothing,
    slot: 7,
    source: Source::Payload(parse),
    finish: None,
    look: Look {
        color: 0x25AAE2,
        action: "Open in chat",
    },
};

#[derive(Debug, Deserialize)]
struct Body {
    message: Message,
    channel: Channel,
}

#[derive(Debug, Deserialize)]
struct Message {
    id: u64,
    #[serde(default)]
    cooked: Option<String>,
    #[serde(default)]
    user: UserRef,
    #[serde(default)]
    thread_id: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct Channel {
    id: u64,
    #[serde(default)]
    slug: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    chatable_type: Option<String>,
    #[serde(default)]
    chatable_id: Option<u64>,
    #[serde(default)]
    chatable: Option<Chatable>,
}

#[derive(Debug, Deserialize)]
struct Chatable {
    #[serde(default)]
    read_restricted: Option<bool>,
}

fn parse(i: &Incoming<'_>) -> Result<Draft, serde_json::Error> {
    let b: Body = serde_json::from_str(i.payload)?;
    let (m, c) = (b.message, b.channel);
    let category = c.chatable_type.as_deref() == Some("Category");
    let slug = c.slug.clone().filter(|s| !s.is_empty());
    let name = c
        .title
        .clone()
        .or(slug.clone())
        .unwrap_or_else(|| format!("channel {}", c.id));
    let author = match &m.user.username {
        Some(u) => who(m.user.name.as_deref(), u),
        None => "someone".into(),
    };
    let change = match i.event {
        "chat_message_created" => Change::Opened,
        "chat_message_trashed" => Change::Removed,
        "chat_message_restored" => Change::Restored,
        _ => Change::Updated,
    };
    let url = format!(
        "{}/chat/c/{}/{}/{}",
        i.forum,
        slug.as_deref().unwrap_or("-"),
        c.id,
        m.id
    );
    let mut n = notice(&FAMILY, change, "💬", format!("{author} in #{name}"), url);
    n.subject = Some(m.id);
    // A direct message channel is `dm/ID`, whatever its slug: only a rule
    // naming that exactly mirrors it.
    n.channel = Some(match (category, slug) {
        (true, Some(slug)) => slug,
        (true, None) => c.id.to_string(),
        (false, _) => format!("dm/{}", c.id),
    });
    // A direct message, or anything that is not a category's channel, is
    // private; so is a restricted category's (the forum state may say so
    // too, from the category id).
    let restricted = c.chatable.as_ref().and_then(|x| x.read_restricted) == Some(true);
    n.private = !category || restricted;
    n.cooked = m.cooked.unwrap_or_default();
    n.data = serde_json::json!({
        "message_id": m.id,
        "channel_id": c.id,
        "channel": name,
        "thread_id": m.thread_id,
        "username": m.user.username,
    });
    Ok(Draft {
        notice: n,
        topic: category.then_some(TopicHint {
            id: 0,
            title: None,
            category_id: c.chatable_id,
            tags: None,
        }),
    })
}
