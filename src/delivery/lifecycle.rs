//! What happens to the chat messages a post became when the post changes:
//! `post_edited` and `topic_edited` update them, `post_destroyed` deletes or
//! strikes them, `post_recovered` restores them, each per the chat's
//! `on_edit`/`on_delete`.
//!
//! Pure planning: from the [`PostRecord`] of the post (which chats it was
//! queued to, as what) to [`FollowUp`] steps that the store applies
//! atomically. A message still waiting in a queue is changed in place
//! instead (an edit merges into it, a delete drops it); one already sent
//! gets an edit or delete delivery behind it, so per-chat order holds.

use super::store::{FollowUp, Payload, PostKey, PostRecord};
use crate::config::model::{OnDelete, OnEdit};
use crate::ingest::{Change, Event, EventKind, Notice};
use crate::pipeline::Pipeline;

/// The post whose chat messages `event` changes, for the events that
/// change them. `topic_edited` is about the first post (its title).
pub fn target(event: &Event) -> Option<PostKey> {
    // A family item's later events (a review decided, a chat message
    // edited) change the messages its first event became.
    if let Some(n) = event.notice.as_ref().filter(|n| n.subject.is_some()) {
        return match n.change {
            Change::Opened => None,
            _ => PostKey::of(event),
        };
    }
    match event.kind {
        EventKind::PostEdited | EventKind::PostDestroyed | EventKind::PostRecovered => {
            PostKey::of(event)
        }
        ref k
            if *k == EventKind::TopicEdited
                || *k == EventKind::TopicVisibleStatusUpdated
                || k.is_topic_state() =>
        {
            Some(PostKey {
                forum: event.forum.clone(),
                topic: event.topic.id,
                number: 1,
            })
        }
        _ => None,
    }
}

/// An edited post's new content into `into` (post events carry no tags,
/// so the topic's tags stay).
pub fn merge_post(into: &mut Event, edit: &Event) {
    if let (Some(p), Some(new)) = (into.post.as_mut(), edit.post.as_ref()) {
        p.raw = new.raw.clone();
        p.cooked = new.cooked.clone();
        p.hidden = new.hidden;
        p.mentions = new.mentions.clone();
    }
    if !edit.topic.title.is_empty() {
        into.topic.title = edit.topic.title.clone();
    }
}

/// What a topic event tells about the topic into `into`.
pub fn merge_topic(into: &mut Event, topic: &Event) {
    if !topic.topic.tags.is_empty() {
        into.topic.tags = topic.topic.tags.clone();
    }
    if topic.topic.category.is_some() {
        into.topic.category = topic.topic.category.clone();
    }
    if !topic.topic.title.is_empty() {
        into.topic.title = topic.topic.title.clone();
    }
    // The solved events carry the answer post, not the topic: they change
    // only the solved mark. Topic payloads say whether the topic is listed
    // and its state, but not whether it is solved.
    match topic.kind {
        EventKind::AcceptedSolution => into.topic.state.solved = true,
        EventKind::UnacceptedSolution => into.topic.state.solved = false,
        _ => {
            into.topic.unlisted = topic.topic.unlisted;
            let solved = into.topic.state.solved;
            into.topic.state = topic.topic.state;
            into.topic.state.solved = solved;
        }
    }
}

/// The record to store and the steps for each chat the post went to.
/// `None` = nothing changes (the edit changed nothing the relay keeps, or
/// the post is already in the state the event says).
pub fn plan(
    p: &Pipeline,
    arrived: &Event,
    mut record: PostRecord,
) -> Option<(PostRecord, Vec<FollowUp>)> {
    if let Some(n) = arrived.notice.as_ref().filter(|n| n.subject.is_some()) {
        return plan_notice(p, arrived, n, record);
    }
    // A message shows while its post is not deleted and its topic listed;
    // an unlisted topic's announcement goes the way of a deleted post, and
    // listed again it comes back like a recovered one.
    let visible = |r: &PostRecord| !r.deleted && !r.event.topic.unlisted;
    let was_visible = visible(&record);
    match arrived.kind {
        ref k
            if *k == EventKind::PostEdited
                || *k == EventKind::TopicEdited
                || k.is_topic_state() =>
        {
            let mut merged = record.event.clone();
            match arrived.kind {
                EventKind::PostEdited => merge_post(&mut merged, arrived),
                _ => merge_topic(&mut merged, arrived),
            }
            if merged == record.event {
                return None;
            }
            record.event = merged;
        }
        EventKind::PostDestroyed if !record.deleted => record.deleted = true,
        EventKind::PostRecovered if record.deleted => record.deleted = false,
        EventKind::TopicVisibleStatusUpdated
            if arrived.topic.unlisted != record.event.topic.unlisted =>
        {
            record.event.topic.unlisted = arrived.topic.unlisted;
        }
        _ => return None,
    }
    let steps = match shown_change(was_visible, visible(&record)) {
        Some(change) => steps(p, &record, change, false),
        None => vec![],
    };
    Some((record, steps))
}

/// What a change of whether the message shows amounts to, as the post
/// event that does it; `None`: it shows neither before nor after
/// (remembered for later).
fn shown_change(was: bool, now: bool) -> Option<EventKind> {
    match (was, now) {
        (true, false) => Some(EventKind::PostDestroyed),
        (false, true) => Some(EventKind::PostRecovered),
        (true, true) => Some(EventKind::PostEdited),
        (false, false) => None,
    }
}

/// [`plan`] for a family item (a reviewable, a chat message): an update
/// replaces what the messages show, removal and restoring act as a
/// post's deletion and recovery. A platform that cannot edit gets the
/// updated message as a follow-up, when the item's status changed (a
/// review decided), not for every small change.
fn plan_notice(
    p: &Pipeline,
    arrived: &Event,
    notice: &Notice,
    mut record: PostRecord,
) -> Option<(PostRecord, Vec<FollowUp>)> {
    let was_visible = !record.deleted;
    let mut follow_up = false;
    match notice.change {
        Change::Updated => {
            let mut merged = record.event.clone();
            let old_status = (merged.notice.as_ref()).map(|n| n.status.clone());
            follow_up = old_status.as_deref() != Some(notice.status.as_str());
            merged.notice = Some(Box::new(notice.clone()));
            merged.kind = arrived.kind.clone();
            // What the first event knew of the topic stays where the
            // update knows less.
            if !arrived.topic.title.is_empty() || arrived.topic.category.is_some() {
                merged.topic = arrived.topic.clone();
            }
            if merged == record.event {
                return None;
            }
            record.event = merged;
        }
        Change::Removed if !record.deleted => record.deleted = true,
        Change::Restored if record.deleted => record.deleted = false,
        _ => return None,
    }
    let steps = match shown_change(was_visible, !record.deleted) {
        Some(change) => steps(p, &record, change, follow_up),
        None => vec![],
    };
    Some((record, steps))
}

/// The step for each chat `record` went to. `change` is what happened to
/// the message, as the post event it amounts to; `follow_up`: where the
/// platform cannot edit, an edit is posted as a new message instead.
fn steps(p: &Pipeline, record: &PostRecord, change: EventKind, follow_up: bool) -> Vec<FollowUp> {
    let event = Box::new(record.event.clone());
    let mut steps = Vec::with_capacity(record.chats.len());
    for c in &record.chats {
        let Some(idx) = p.chat_index(&c.chat) else {
            continue; // removed from the config since
        };
        let chat = &p.config.chats[idx];
        let post = || Payload::Event {
            event: event.clone(),
            filter: c.filter,
        };
        let edit = |strike| Payload::Edit {
            event: event.clone(),
            strike,
        };
        let step = match change {
            EventKind::PostDestroyed => FollowUp {
                chat: c.chat.clone(),
                queued: Some(c.seq),
                if_queued: None,
                otherwise: match chat.on_delete {
                    OnDelete::Delete => Some(Payload::Delete {
                        event: event.clone(),
                    }),
                    OnDelete::Strike => Some(edit(true)),
                    OnDelete::Ignore => None,
                },
            },
            EventKind::PostRecovered => FollowUp {
                chat: c.chat.clone(),
                queued: None,
                if_queued: None,
                // Post again where the message is gone: dropped before it
                // was sent, or deleted; a struck one is restored in place.
                otherwise: match (c.dropped, chat.on_delete) {
                    (true, _) | (false, OnDelete::Delete) => Some(post()),
                    (false, OnDelete::Strike) => Some(edit(false)),
                    (false, OnDelete::Ignore) => None,
                },
            },
            _ => FollowUp {
                chat: c.chat.clone(),
                queued: Some(c.seq),
                if_queued: Some(post()),
                otherwise: match chat.on_edit {
                    OnEdit::Update if chat.destination.capabilities().edit => Some(edit(false)),
                    _ if follow_up && !chat.destination.capabilities().edit => Some(post()),
                    OnEdit::Update => Some(edit(false)),
                    OnEdit::Ignore => None,
                },
            },
        };
        steps.push(step);
    }
    steps
}
