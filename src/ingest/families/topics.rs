//! `topics`: a topic closed or opened, archived or not, pinned or unpinned.
//! The event also does its usual work (the marks on the topic's sent first
//! messages follow); this family adds an announcement for chats that ask.
//! Unlisting is never announced (an unlisted topic is never shown).

use super::{Family, FilterKind, Look, Private, Source, notice};
use crate::ingest::event::{Change, Event, Notice};

pub static FAMILY: Family = Family {
    name: "topics",
    about: "topic states: closed or opened, archived or not, pinned or unpinned",
    events: &[
        "topic_closed_status_updated",
        "topic_archived_status_updated",
        "topic_pinned_status_updated",
        "topic_pinned_globally_status_updated",
    ],
    filters: &[FilterKind::Topic],
    private: Private::Nothing,
    slot: 4,
    source: Source::Event(announce),
    finish: None,
    look: Look {
        color: 0x919191,
        action: "View topic",
    },
};

fn announce(e: &Event) -> Option<Notice> {
    let s = e.topic.state;
    let (mark, what) = match (e.kind.as_str(), s) {
        ("topic_closed_status_updated", s) if s.closed => ("🔒", "Closed"),
        ("topic_closed_status_updated", _) => ("🔓", "Opened again"),
        ("topic_archived_status_updated", s) if s.archived => ("🗄️", "Archived"),
        ("topic_archived_status_updated", _) => ("🗄️", "No longer archived"),
        ("topic_pinned_globally_status_updated", s) if s.pinned => ("📌", "Pinned globally"),
        ("topic_pinned_status_updated", s) if s.pinned => ("📌", "Pinned"),
        _ => ("📌", "Unpinned"),
    };
    let mut n = notice(
        &FAMILY,
        Change::Opened,
        mark,
        what.into(),
        e.topic.url.clone(),
    );
    n.status = what.to_lowercase();
    Some(n)
}
