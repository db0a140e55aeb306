//! `solved`: a topic's answer accepted or unaccepted (discourse-solved).
//! The event also does its usual work (the topic's sent first messages get
//! or lose their ✅); this family adds an optional note for chats that ask.

use super::{Family, FilterKind, Look, Private, Source, notice};
use crate::ingest::event::{Change, Event, Notice};

pub static FAMILY: Family = Family {
    name: "solved",
    about: "solved topics: an answer accepted or unaccepted",
    events: &["accepted_solution", "unaccepted_solution"],
    filters: &[FilterKind::Topic],
    private: Private::Nothing,
    slot: 3,
    source: Source::Event(announce),
    finish: None,
    look: Look {
        color: 0x1CA551,
        action: "View answer",
    },
};

fn announce(e: &Event) -> Option<Notice> {
    let post = e.post.as_ref()?;
    let (mark, title) = match e.kind.as_str() {
        "accepted_solution" => ("✅", "Solved"),
        _ => ("↩️", "No longer solved"),
    };
    let mut n = notice(
        &FAMILY,
        Change::Opened,
        mark,
        title.into(),
        post.url.clone(),
    );
    if !post.username.is_empty() {
        n.text = format!("answer by {}", post.username);
    }
    n.data = serde_json::json!({"post_id": post.id, "post_number": post.number});
    Some(n)
}
