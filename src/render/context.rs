//! The data a template sees for one event and chat.

use serde_json::{Value, json};

use super::text;
use crate::ingest::Event;

/// The template context for one event and chat:
///
/// ```text
/// { event, forum{url}, chat{name},
///   topic{id,title,slug,url,tags[names],category{id,slug,path,name}|null,private_message,closed,archived,pinned,solved},
///   post{id,number,username,name,excerpt,raw,cooked,url,is_first,created_at,action_code}|null,
///   notice{family,mark,title,url,text,excerpt,status,data}|null }
/// ```
///
/// Every key is always present (null when unknown) so strict mode never
/// trips on a real event that the sample did not; `topic.category` and
/// `post` are null for uncategorised topics and topic events, so templates
/// guard them with `{{#if}}`. `post.excerpt` is the cooked HTML as
/// collapsed plain text, at most 300 characters. `notice` is set for the
/// event families beyond posts (a flag, a signup, a chat message), null
/// otherwise; its `excerpt` is made like `post.excerpt`.
pub fn context(event: &Event, chat: &str) -> Value {
    let excerpt = (event.post.as_ref()).map(|p| text::excerpt(&p.cooked, text::EXCERPT_MAX));
    context_with_excerpt(event, chat, excerpt.as_deref().unwrap_or_default())
}

/// [`context`] with `post.excerpt` already computed (`RenderContext` keeps it).
pub(super) fn context_with_excerpt(event: &Event, chat: &str, excerpt: &str) -> Value {
    let topic = &event.topic;
    let category = topic.category.as_ref().map(|c| {
        json!({
            "id": c.id,
            "slug": c.slug,
            "path": c.path,
            "name": c.name,
        })
    });
    let post = event.post.as_ref().map(|p| {
        json!({
            "id": p.id,
            "number": p.number,
            "username": p.username,
            "name": p.name,
            "excerpt": excerpt,
            "raw": p.raw,
            "cooked": p.cooked,
            "url": p.url,
            "is_first": p.is_first(),
            "created_at": p.created_at,
            "action_code": p.action_code,
        })
    });
    let notice = event.notice.as_ref().map(|n| {
        json!({
            "family": n.family,
            "mark": n.mark,
            "title": n.title,
            "url": n.url,
            "text": n.text,
            "excerpt": text::excerpt(&n.cooked, text::EXCERPT_MAX),
            "status": n.status,
            "data": n.data,
        })
    });
    json!({
        "event": event.kind.as_str(),
        "forum": { "url": event.forum },
        "chat": { "name": chat },
        "topic": {
            "id": topic.id,
            "title": topic.title,
            "slug": topic.slug,
            "url": topic.url,
            "tags": topic.tags.iter().filter(|t| !t.hidden).map(|t| t.name.as_str()).collect::<Vec<_>>(),
            "category": category,
            "private_message": topic.private_message,
            "closed": topic.state.closed,
            "archived": topic.state.archived,
            "pinned": topic.state.pinned,
            "solved": topic.state.solved,
        },
        "post": post,
        "notice": notice,
    })
}
