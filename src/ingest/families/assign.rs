//! `assign`: a topic (or a post in it) assigned or unassigned
//! (discourse-assign). The payload carries the topic id and title, who
//! assigned and to whom (a user or a group); the topic's category and tags
//! come from what the relay learned.

use serde::Deserialize;

use super::{Draft, Family, FilterKind, Incoming, Look, Private, Source, TopicHint, notice};
use crate::ingest::event::Change;

pub static FAMILY: Family = Family {
    name: "assign",
    about: "assignments (discourse-assign): a topic assigned to or unassigned from a user or group",
    events: &["assigned", "unassigned"],
    filters: &[FilterKind::Topic, FilterKind::Group],
    private: Private::Nothing,
    slot: 6,
    source: Source::Payload(parse),
    finish: None,
    look: Look {
        color: 0x9B59B6,
        action: "View topic",
    },
};

#[derive(Debug, Deserialize)]
struct Assign {
    topic_id: u64,
    #[serde(default)]
    topic_title: Option<String>,
    #[serde(default)]
    assigned_by_username: Option<String>,
    #[serde(default)]
    assigned_to_username: Option<String>,
    #[serde(default)]
    assigned_to_group_name: Option<String>,
    #[serde(default)]
    unassigned_by_username: Option<String>,
    #[serde(default)]
    unassigned_to_username: Option<String>,
    #[serde(default)]
    unassigned_to_group_name: Option<String>,
}

fn parse(i: &Incoming<'_>) -> Result<Draft, serde_json::Error> {
    let a: Assign = serde_json::from_str(i.payload)?;
    let assigned = i.event == "assigned";
    let (by, user, group) = match assigned {
        true => (
            a.assigned_by_username,
            a.assigned_to_username,
            a.assigned_to_group_name,
        ),
        false => (
            a.unassigned_by_username,
            a.unassigned_to_username,
            a.unassigned_to_group_name,
        ),
    };
    let to = user.or(group.clone()).unwrap_or_else(|| "someone".into());
    let title = match (assigned, by.as_deref()) {
        (true, Some(b)) => format!("Assigned to {to} by {b}"),
        (true, None) => format!("Assigned to {to}"),
        (false, Some(b)) => format!("Unassigned from {to} by {b}"),
        (false, None) => format!("Unassigned from {to}"),
    };
    let mut n = notice(
        &FAMILY,
        Change::Opened,
        "📋",
        title,
        format!("{}/t/{}", i.forum, a.topic_id),
    );
    n.groups = group.iter().map(|g| g.to_lowercase()).collect();
    n.data = serde_json::json!({"to": to, "by": by});
    Ok(Draft {
        notice: n,
        topic: Some(TopicHint {
            id: a.topic_id,
            title: a.topic_title,
            category_id: None,
            tags: None,
        }),
    })
}
