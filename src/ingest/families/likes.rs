//! `likes`: a post liked (`post_liked`; Discourse sends no unlike event).
//! The payload has the post and the liker; the topic's tags come from what
//! the relay learned.

use serde::Deserialize;

use super::{
    Draft, Family, FilterKind, Incoming, Look, Private, Source, TopicHint, UserRef, notice,
};
use crate::ingest::event::Change;
use crate::ingest::payload::PostPayload;

pub static FAMILY: Family = Family {
    name: "likes",
    about: "likes on posts",
    events: &["post_liked"],
    filters: &[FilterKind::Topic],
    private: Private::Nothing,
    slot: 5,
    source: Source::Payload(parse),
    finish: None,
    look: Look {
        color: 0xFA6C8D,
        action: "View post",
    },
};

#[derive(Debug, Deserialize)]
struct Like {
    post: PostPayload,
    #[serde(default)]
    user: UserRef,
}

fn parse(i: &Incoming<'_>) -> Result<Draft, serde_json::Error> {
    let like: Like = serde_json::from_str(i.payload)?;
    let post = crate::ingest::normalize::post_from(i.forum, &like.post);
    let liker = like.user.username.as_deref().unwrap_or("someone");
    let title = match post.username.as_str() {
        "" => format!("{liker} liked a post"),
        author => format!("{liker} liked a post by {author}"),
    };
    let mut n = notice(&FAMILY, Change::Opened, "❤️", title, post.url.clone());
    n.data = serde_json::json!({
        "post_id": post.id,
        "post_number": post.number,
        "liker": liker,
        "author": post.username,
    });
    Ok(Draft {
        notice: n,
        topic: Some(TopicHint {
            id: like.post.topic_id,
            title: like.post.topic_title.clone(),
            category_id: like.post.category_id,
            tags: None,
        }),
    })
}
