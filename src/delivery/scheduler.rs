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

use super::lifecycle;
use super::store::{NewDelivery, Payload, PostKey, Routed, Store};
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

    /// Routes every due event. Plain events are routed in batches (one
    /// durable commit each); an edit, delete or recovery first commits the
    /// batch before it, so it finds the records of the posts it follows.
    async fn route_due(&self) -> Result<(), super::store::StoreError> {
        loop {
            let now = now_ms();
            let due = blocking(&self.store, move |s| s.due_events(now, 256)).await?;
            if due.is_empty() {
                return Ok(());
            }
            let mut batch = Vec::new();
            for stored in due {
                let mut event = stored.event;
                if let Some(key) = lifecycle::target(&event) {
                    self.commit(&mut batch).await?;
                    match self.follow_up(stored.id, key, event).await? {
                        Some(to_route) => event = to_route,
                        None => continue,
                    }
                }
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
                batch.push(Routed {
                    id: stored.id,
                    deliveries,
                });
            }
            self.commit(&mut batch).await?;
        }
    }

    /// Commits routed events and wakes their chats' workers.
    async fn commit(&self, batch: &mut Vec<Routed>) -> Result<(), super::store::StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let routed = std::mem::take(batch);
        let mut chats: Vec<String> = (routed.iter())
            .flat_map(|r| r.deliveries.iter().map(|d| d.chat.clone()))
            .collect();
        blocking(&self.store, move |s| s.route_many(&routed, now_ms())).await?;
        chats.sort_unstable();
        chats.dedup();
        for chat in chats {
            self.workers.wake(&chat);
        }
        Ok(())
    }
}

impl Scheduler {
    /// Applies an edit, deletion or recovery to the chat messages of its
    /// post. Returns the event to route by the rules instead: a recovered
    /// post the relay knows nothing of is routed as a new one.
    async fn follow_up(
        &self,
        id: u64,
        key: PostKey,
        event: Event,
    ) -> Result<Option<Event>, super::store::StoreError> {
        let pipeline = self.pipeline.load_full();
        let done = blocking(&self.store, move |s| {
            let now = now_ms();
            let Some(record) = s.post_record(&key)? else {
                if event.kind == EventKind::PostRecovered {
                    let mut again = event;
                    again.kind = EventKind::PostCreated;
                    return Ok(Err(again));
                }
                tracing::debug!(
                    event = event.kind.as_str(),
                    topic = key.topic,
                    post = key.number,
                    "no chat message is known for this post (never relayed, or remembered too long ago); ignored"
                );
                return s.follow_up(id, &key, None, &[], now).map(Ok);
            };
            match lifecycle::plan(&pipeline, &event, record) {
                Some((record, steps)) => s.follow_up(id, &key, Some(record), &steps, now).map(Ok),
                None => s.follow_up(id, &key, None, &[], now).map(Ok),
            }
        })
        .await?;
        match done {
            Ok(chats) => {
                for chat in chats {
                    self.workers.wake(&chat);
                }
                Ok(None)
            }
            Err(again) => Ok(Some(again)),
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
                lifecycle::merge_post(&mut e, arrived);
                store.update_pending(pending.id, &e)?;
            }
            EventKind::TopicCreated | EventKind::TopicEdited => {
                lifecycle::merge_topic(&mut e, arrived);
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
