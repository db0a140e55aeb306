//! The delay stage: accepted events wait in the inbox for `delay`; edits,
//! deletes and late topic data that arrive meanwhile are merged into them
//! ([`absorb`], called by whoever accepts events);
//! when due, each is routed with the config then serving and becomes one
//! delivery per matched chat, atomically.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::store::{NewDelivery, Payload, Store};
use super::worker::{Workers, blocking, now_ms};
use crate::ingest::{Event, EventKind};
use crate::pipeline::Pipeline;
use crate::rules::Routing;

/// Longest sleep between inbox checks when nothing wakes the scheduler.
const IDLE_POLL: Duration = Duration::from_millis(250);

pub struct Scheduler {
    pub store: Arc<dyn Store>,
    pub pipeline: Arc<ArcSwap<Pipeline>>,
    pub workers: Arc<Workers>,
    pub wake: Arc<Notify>,
    pub shutdown: CancellationToken,
}

impl Scheduler {
    pub async fn run(self) {
        loop {
            if let Err(e) = self.route_due().await {
                tracing::error!(error = %e, "cannot route due events; retrying");
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
                _ = self.shutdown.cancelled() => return,
            }
        }
    }

    async fn route_due(&self) -> Result<(), super::store::StoreError> {
        loop {
            let now = now_ms();
            let due = blocking(&self.store, move |s| s.due_events(now, 256)).await?;
            if due.is_empty() {
                return Ok(());
            }
            for stored in due {
                let event = stored.event;
                let p = self.pipeline.load();
                let deliveries: Vec<NewDelivery> = match p.route(&event) {
                    Routing::Matched(ms) => ms
                        .into_iter()
                        .map(|m| NewDelivery {
                            chat: p.config.chats[m.chat].name.clone(),
                            payload: Payload::Event {
                                event: Box::new(event.clone()),
                                filter: m.filter,
                            },
                        })
                        .collect(),
                    Routing::Skipped(reason) => {
                        tracing::debug!(event = event.kind.as_str(), %reason, "not relayed");
                        vec![]
                    }
                };
                let chats: Vec<String> = deliveries.iter().map(|d| d.chat.clone()).collect();
                let id = stored.id;
                blocking(&self.store, move |s| s.route(id, &deliveries, now_ms())).await?;
                for chat in chats {
                    self.workers.wake(&chat);
                }
            }
        }
    }
}

/// Whether [`absorb`] can change anything for an event of this kind (so
/// callers skip the store round trip for the common `post_created`).
pub fn absorbs(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::PostDestroyed
            | EventKind::PostEdited
            | EventKind::TopicCreated
            | EventKind::TopicEdited
            | EventKind::TopicDestroyed
    )
}

/// Merges an event that just arrived into the events still waiting out
/// their delay: a deleted post cancels its notification, an edit replaces
/// its content, topic data fills its topic. Blocking: call off the runtime.
pub fn absorb(store: &dyn Store, arrived: &Event) -> Result<(), super::store::StoreError> {
    if !absorbs(&arrived.kind) {
        return Ok(());
    }
    for pending in store.pending_events()? {
        let mut e = pending.event;
        if e.kind != EventKind::PostCreated || e.topic.id != arrived.topic.id {
            continue;
        }
        let same_post = matches!((&e.post, &arrived.post), (Some(a), Some(b)) if a.id == b.id);
        match arrived.kind {
            EventKind::PostDestroyed if same_post => {
                store.cancel_pending(pending.id)?;
            }
            EventKind::TopicDestroyed => {
                store.cancel_pending(pending.id)?;
            }
            EventKind::PostEdited if same_post => {
                if let (Some(p), Some(new)) = (e.post.as_mut(), arrived.post.as_ref()) {
                    p.raw = new.raw.clone();
                    p.cooked = new.cooked.clone();
                    p.hidden = new.hidden;
                    p.mentions = new.mentions.clone();
                }
                e.topic.title = arrived.topic.title.clone();
                store.update_pending(pending.id, &e)?;
            }
            EventKind::TopicCreated | EventKind::TopicEdited => {
                if !arrived.topic.tags.is_empty() {
                    e.topic.tags = arrived.topic.tags.clone();
                }
                if arrived.topic.category.is_some() {
                    e.topic.category = arrived.topic.category.clone();
                }
                if !arrived.topic.title.is_empty() {
                    e.topic.title = arrived.topic.title.clone();
                }
                store.update_pending(pending.id, &e)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Fills the topic of pending events with what the API told about it (tags,
/// PM groups) after they were accepted. Blocking: call off the runtime.
pub fn refresh_topic(
    store: &dyn Store,
    topic_id: u64,
    tags: Option<&[crate::ingest::Tag]>,
    pm_groups: Option<&[String]>,
) -> Result<usize, super::store::StoreError> {
    let mut updated = 0;
    for pending in store.pending_events()? {
        let mut e = pending.event;
        if e.topic.id != topic_id {
            continue;
        }
        if let Some(tags) = tags {
            e.topic.tags = tags.to_vec();
        }
        if let Some(groups) = pm_groups {
            e.topic.pm_groups = groups.to_vec();
        }
        if store.update_pending(pending.id, &e)? {
            updated += 1;
        }
    }
    Ok(updated)
}
