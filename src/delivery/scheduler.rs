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
use super::store::{NewDelivery, Payload, PostKey, Routed, Store, StoreError};
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

    /// Routes every due event, a batch at a time. Each batch is one trip
    /// off the runtime (read, route, commit): under load the scheduler runs
    /// once per batch, not once per event, so its thread hand-offs do not
    /// grow with the event rate.
    async fn route_due(&self) -> Result<(), StoreError> {
        loop {
            let pipeline = self.pipeline.load_full();
            let (chats, more) =
                blocking(&self.store, move |s| route_batch(s, &pipeline, now_ms())).await?;
            for chat in chats {
                self.workers.wake(&chat);
            }
            if !more {
                return Ok(());
            }
        }
    }
}

/// Most due events read and routed in one batch.
const BATCH: usize = 256;

/// Routes up to [`BATCH`] events due at `now`. Plain events are committed
/// together (one transaction); an edit, delete or recovery first commits
/// the events before it, so it finds the records of the posts it follows.
/// Returns the chats whose queues changed and whether more may be due.
/// Blocking: call off the runtime.
fn route_batch(
    store: &dyn Store,
    pipeline: &Pipeline,
    now: u64,
) -> Result<(Vec<String>, bool), StoreError> {
    let due = store.due_events(now, BATCH)?;
    let more = due.len() == BATCH;
    let mut chats = Vec::new();
    let mut batch = Vec::new();
    for stored in due {
        let mut event = stored.event;
        if let Some(key) = lifecycle::target(&event) {
            commit(store, &mut batch, &mut chats)?;
            match follow_up(store, pipeline, stored.id, key, event)? {
                FollowedUp::Chats(changed) => {
                    chats.extend(changed);
                    continue;
                }
                FollowedUp::RouteAsNew(again) => event = *again,
            }
        }
        let deliveries: Vec<NewDelivery> = match pipeline.route(&event) {
            Routing::Matched(ms) => ms
                .into_iter()
                .map(|m| NewDelivery {
                    chat: pipeline.config.chats[m.chat].name.clone(),
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
    commit(store, &mut batch, &mut chats)?;
    chats.sort_unstable();
    chats.dedup();
    Ok((chats, more))
}

/// Commits routed events; their chats join `chats`.
fn commit(
    store: &dyn Store,
    batch: &mut Vec<Routed>,
    chats: &mut Vec<String>,
) -> Result<(), StoreError> {
    if batch.is_empty() {
        return Ok(());
    }
    store.route_many(batch, now_ms())?;
    chats.extend(
        batch
            .drain(..)
            .flat_map(|r| r.deliveries.into_iter().map(|d| d.chat)),
    );
    Ok(())
}

enum FollowedUp {
    /// Applied; these chats' queues changed.
    Chats(Vec<String>),
    /// A recovered post the relay knows nothing of: route it as a new one.
    RouteAsNew(Box<Event>),
}

/// Applies an edit, deletion or recovery to the chat messages of its post.
fn follow_up(
    store: &dyn Store,
    pipeline: &Pipeline,
    id: u64,
    key: PostKey,
    event: Event,
) -> Result<FollowedUp, StoreError> {
    let now = now_ms();
    let Some(record) = store.post_record(&key)? else {
        if event.kind == EventKind::PostRecovered {
            let mut again = event;
            again.kind = EventKind::PostCreated;
            return Ok(FollowedUp::RouteAsNew(Box::new(again)));
        }
        tracing::debug!(
            event = event.kind.as_str(),
            topic = key.topic,
            post = key.number,
            "no chat message is known for this post (never relayed, or remembered too long ago); ignored"
        );
        return store
            .follow_up(id, &key, None, &[], now)
            .map(FollowedUp::Chats);
    };
    let changed = match lifecycle::plan(pipeline, &event, record) {
        Some((record, steps)) => store.follow_up(id, &key, Some(record), &steps, now)?,
        None => store.follow_up(id, &key, None, &[], now)?,
    };
    Ok(FollowedUp::Chats(changed))
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
pub fn absorb(store: &dyn Store, arrived: &Event) -> Result<(), StoreError> {
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
) -> Result<usize, StoreError> {
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
