//! The data a template sees for one event and chat.

use serde_json::{Value, json};

use super::text;
use crate::ingest::Event;

/// The template context for one event and chat:
///
/// ```text
/// { event, forum{url,title,logo_url}, chat{name},
///   topic{id,title,slug,url,tags[names],tag_links[{name,url}],category{id,slug,path,name,url,color}|null,
///         private_message,closed,archived,pinned,solved},
///   post{id,number,username,name,excerpt,raw,cooked,url,is_first,created_at,action_code,avatar_url,user_url}|null,
///   notice{family,mark,title,url,text,excerpt,status,data}|null,
///   card{headline,url,label,color,color_int,text,author{name,username,url,avatar}|null,footer{text,url},button{text,url},timestamp} }
/// ```
///
/// `card` is the event as the default cards show it ([`super::card`]):
/// plain text parts, colours as `#RRGGBB` and as an integer (null without
/// a category colour), for card templates.
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
    let card = super::card::Card::of(event, excerpt);
    let category = topic.category.as_ref().map(|c| {
        json!({
            "id": c.id,
            "slug": c.slug,
            "path": c.path,
            "name": c.name,
            "url": card.category.as_ref().map(|l| l.url.as_str()),
            "color": c.color.as_deref().and_then(super::card::Color::parse).map(super::card::Color::hex),
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
            "avatar_url": card.author.as_ref().map(|a| a.avatar.as_str()).filter(|a| !a.is_empty()),
            "user_url": card.author.as_ref().map(|a| a.url.as_str()),
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
    let brand = event.brand.as_ref();
    let card_json = json!({
        "headline": card.headline(),
        "url": card.url,
        "label": card.label,
        "color": card.color.map(super::card::Color::hex),
        "color_int": card.color.map(|c| c.0),
        "text": card.text,
        "author": card.author,
        "footer": card.footer,
        "button": card.button,
        "timestamp": card.timestamp,
    });
    json!({
        "event": event.kind.as_str(),
        "forum": {
            "url": event.forum,
            "title": brand.map(|b| b.title.as_str()),
            "logo_url": Some(card.footer.url.as_str()).filter(|l| !l.is_empty()),
        },
        "card": card_json,
        "chat": { "name": chat },
        "topic": {
            "id": topic.id,
            "title": topic.title,
            "slug": topic.slug,
            "url": topic.url,
            "tags": topic.tags.iter().filter(|t| !t.hidden).map(|t| t.name.as_str()).collect::<Vec<_>>(),
            "tag_links": card.tags.iter().map(|t| json!({"name": t.text, "url": t.url})).collect::<Vec<_>>(),
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
