//! The delay stage: accepted events wait in the inbox for `delay`; edits,
//! deletes and late topic data that arrive meanwhile are merged into them;
//! when due, each is routed with the config then serving and becomes one
//! delivery per matched chat, atomically.
//!
//! An edit, delete or topic event is merged ([`absorb`]) when the scheduler
//! takes it from the inbox (they wait no delay), in due order with the
//! posts it may change: a post due first is routed first (and the event
//! then follows up on its messages), a post due later gets the change. One
//! task takes events in that order, so no interleaving with the accept path
//! can let a deleted post through. Each merge is one read-modify-write
//! transaction ([`Store::update_pending`]), and routing applies only to an
//! inbox row unchanged since it was read ([`Routed::revision`]), so late
//! tags ([`refresh_topic`]) and edits never overwrite each other.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::lifecycle;
use super::store::{
    FollowUp, NewDelivery, Payload, PendingChange, PostKey, Routed, Store, StoreError, StoredEvent,
};
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
/// together (one transaction); an edit, delete, recovery or topic event
/// first commits the events before it, so it finds the records of the posts
/// it follows, then merges into the posts still pending.
/// Returns the chats whose queues changed and whether more may be due.
/// Blocking: call off the runtime.
fn route_batch(
    store: &dyn Store,
    pipeline: &Pipeline,
    now: u64,
) -> Result<(Vec<String>, bool), StoreError> {
    let due = store.due_events(now, BATCH)?;
    let mut more = due.len() == BATCH;
    let mut chats = Vec::new();
    let mut batch = Vec::new();
    for stored in due {
        let mut event = stored.event;
        if absorbs(&event.kind) {
            commit(store, &mut batch, &mut chats)?;
            // Rows read above that this changed no longer match their
            // revision and are skipped below: read them again at once.
            if absorb(store, &event)? > 0 {
                more = true;
            }
        }
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
            revision: Some(stored.revision),
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
    // A solved answer or a topic closed also announces itself to the chats
    // whose family rules ask, beside what it does to sent messages.
    let notes = announcements(pipeline, &event);
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
            "no chat message is known for this post (still waiting, never relayed, or remembered too long ago); ignored"
        );
        return store
            .follow_up(id, &key, None, &notes, now)
            .map(FollowedUp::Chats);
    };
    let changed = match lifecycle::plan(pipeline, &event, record) {
        Some((record, mut steps)) => {
            steps.extend(notes);
            store.follow_up(id, &key, Some(record), &steps, now)?
        }
        None => store.follow_up(id, &key, None, &notes, now)?,
    };
    Ok(FollowedUp::Chats(changed))
}

/// The announcement an event that follows up sent messages also makes (a
/// one-off family notice: a solved note, a topic closed), as a new message
/// for each chat whose rules ask for it.
fn announcements(pipeline: &Pipeline, event: &Event) -> Vec<FollowUp> {
    if event.notice.as_ref().is_none_or(|n| n.subject.is_some()) {
        return vec![];
    }
    let Routing::Matched(ms) = pipeline.route(event) else {
        return vec![];
    };
    let event = Box::new(event.clone());
    ms.into_iter()
        .map(|m| FollowUp {
            chat: pipeline.config.chats[m.chat].name.clone(),
            queued: None,
            if_queued: None,
            otherwise: Some(Payload::Event {
                event: event.clone(),
                filter: m.filter,
            }),
        })
        .collect()
}

/// Whether [`absorb`] can change anything for an event of this kind (so
/// callers skip the store round trip for the common `post_created`).
pub fn absorbs(kind: &EventKind) -> bool {
    kind.is_topic_state()
        || matches!(
            kind,
            EventKind::PostDestroyed
                | EventKind::PostEdited
                | EventKind::TopicCreated
                | EventKind::TopicEdited
                | EventKind::TopicDestroyed
                | EventKind::TopicVisibleStatusUpdated
        )
}

/// What `arrived` does to one pending event: a deleted post cancels its
/// notification, an edit replaces its content, topic data fills its topic.
pub fn absorb_into(pending: &mut StoredEvent, arrived: &Event) -> PendingChange {
    let e = &mut pending.event;
    if e.kind != EventKind::PostCreated
        || e.topic.id != arrived.topic.id
        || e.forum != arrived.forum
    {
        return PendingChange::Keep;
    }
    let same_post = matches!((&e.post, &arrived.post), (Some(a), Some(b)) if a.id == b.id);
    match arrived.kind {
        EventKind::PostDestroyed if same_post => PendingChange::Cancel,
        EventKind::TopicDestroyed => PendingChange::Cancel,
        EventKind::PostEdited if same_post => {
            lifecycle::merge_post(e, arrived);
            PendingChange::Update
        }
        ref k
            if *k == EventKind::TopicCreated
                || *k == EventKind::TopicEdited
                || *k == EventKind::TopicVisibleStatusUpdated
                || k.is_topic_state() =>
        {
            lifecycle::merge_topic(e, arrived);
            PendingChange::Update
        }
        _ => PendingChange::Keep,
    }
}

/// Merges `arrived` into the events still waiting out their delay, in one
/// transaction ([`absorb_into`]). Returns how many changed. Blocking: call
/// off the runtime.
pub fn absorb(store: &dyn Store, arrived: &Event) -> Result<usize, StoreError> {
    if !absorbs(&arrived.kind) {
        return Ok(0);
    }
    store.update_pending(&mut |pending| absorb_into(pending, arrived))
}

/// Fills the topic of pending events with what the API told about it (tags,
/// PM groups) after they were accepted, in one transaction. Blocking: call
/// off the runtime.
pub fn refresh_topic(
    store: &dyn Store,
    forum: &str,
    topic_id: u64,
    tags: Option<&[crate::ingest::Tag]>,
    pm_groups: Option<&[String]>,
    visible: Option<bool>,
) -> Result<usize, StoreError> {
    store.update_pending(&mut |pending| {
        let e = &mut pending.event;
        // Topic ids are per forum: another forum's topic N is another topic.
        if e.topic.id != topic_id || e.forum != forum {
            return PendingChange::Keep;
        }
        if let Some(tags) = tags {
            e.topic.tags = tags.to_vec();
        }
        if let Some(groups) = pm_groups {
            e.topic.pm_groups = groups.to_vec();
        }
        if let Some(visible) = visible {
            e.topic.unlisted = !visible;
        }
        PendingChange::Update
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use super::*;
    use crate::config::MissingEnv;
    use crate::delivery::redb_store::RedbStore;
    use crate::delivery::redb_store::tests::{inbound, spoil_inbox};
    use crate::delivery::store::{AcceptOutcome, InboundEvent, QueuedDelivery};

    fn pipeline() -> Pipeline {
        // Slack can delete: a deleted post's message is deleted.
        let toml = r##"[discourse]
url = "https://forum.example.org"
[providers.slack]
kind = "slack"
token = "${T}"
[[chat]]
name = "all"
provider = "slack"
channel = "#all"
subscribe = ["all"]
"##;
        let env = HashMap::from([("T".to_string(), "xoxb-test".to_string())]);
        crate::pipeline::load_str(Path::new("t.toml"), toml, &env, MissingEnv::Error)
            .unwrap()
            .0
    }

    fn temp() -> (tempfile::TempDir, RedbStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&dir.path().join("relay.redb")).unwrap();
        (dir, store)
    }

    /// Accepts post 1 as created (due `created_due`) and `kind` of the same
    /// post (due `other_due`), each a commit of its own, like two webhooks.
    fn accept_pair(
        store: &RedbStore,
        created_due: u64,
        kind: EventKind,
        other_due: u64,
    ) -> InboundEvent {
        let created = inbound(1, created_due);
        let mut other = inbound(2, other_due);
        other.event = created.event.clone();
        other.event.kind = kind;
        for e in [&created, &other] {
            let out = store.accept(std::slice::from_ref(e), 1).unwrap();
            assert!(matches!(out[0], AcceptOutcome::Stored(_)));
        }
        other
    }

    /// What the scheduler does when woken at `now`: batches until none is left.
    fn route_all(store: &RedbStore, p: &Pipeline, now: u64) {
        for _ in 0..10 {
            if !route_batch(store, p, now).unwrap().1 {
                return;
            }
        }
        panic!("the scheduler never settles");
    }

    fn queued(store: &RedbStore) -> Vec<QueuedDelivery> {
        store.heads("all", 10).unwrap()
    }

    /// The post is due first: posted, then the delete follows it.
    #[test]
    fn a_post_due_before_its_delete_is_posted_then_deleted() {
        let (_dir, store) = temp();
        accept_pair(&store, 5, EventKind::PostDestroyed, 10);
        route_all(&store, &pipeline(), 20);
        let q = queued(&store);
        assert_eq!(q.len(), 2, "{q:?}");
        assert!(matches!(q[0].payload, Payload::Event { .. }));
        assert!(matches!(q[1].payload, Payload::Delete { .. }));
    }

    /// The delete is taken first (due just before its post, and nothing
    /// merged it at accept time): the post must not go out.
    #[test]
    fn a_delete_at_the_windows_edge_cancels_its_post() {
        let (_dir, store) = temp();
        accept_pair(&store, 10, EventKind::PostDestroyed, 5);
        route_all(&store, &pipeline(), 20);
        assert_eq!(queued(&store), vec![], "a deleted post was relayed");
        assert!(store.due_events(u64::MAX, 10).unwrap().is_empty());
        let key = PostKey::of(&inbound(1, 0).event).unwrap();
        assert_eq!(store.post_record(&key).unwrap(), None);
    }

    /// Same for an edit: the post goes out once, edited.
    #[test]
    fn an_edit_at_the_windows_edge_reaches_its_post() {
        let (_dir, store) = temp();
        let mut edit = inbound(2, 5);
        edit.event.kind = EventKind::PostEdited;
        if let Some(p) = edit.event.post.as_mut() {
            p.id = 1;
            p.raw = "edited at the edge".into();
        }
        store.accept(&[inbound(1, 10)], 1).unwrap();
        store.accept(&[edit], 1).unwrap();
        route_all(&store, &pipeline(), 20);
        let q = queued(&store);
        assert_eq!(q.len(), 1, "{q:?}");
        let Payload::Event { event, .. } = &q[0].payload else {
            panic!("{q:?}");
        };
        let raw = event.post.as_ref().map(|p| p.raw.as_str());
        assert_eq!(raw, Some("edited at the edge"));
    }

    #[test]
    fn late_tags_and_an_edit_in_the_window_both_stay() {
        let (_dir, store) = temp();
        store.accept(&[inbound(1, 10)], 1).unwrap();
        let mut edit = inbound(1, 0).event;
        edit.kind = EventKind::PostEdited;
        if let Some(p) = edit.post.as_mut() {
            p.raw = "edited".into();
        }
        let tags = [crate::ingest::Tag {
            hidden: false,
            name: "Rust".into(),
            slug: "rust".into(),
        }];
        assert_eq!(absorb(&store, &edit).unwrap(), 1);
        assert_eq!(
            refresh_topic(&store, &edit.forum, edit.topic.id, Some(&tags), None, None).unwrap(),
            1
        );
        // The same tags again change nothing.
        assert_eq!(
            refresh_topic(&store, &edit.forum, edit.topic.id, Some(&tags), None, None).unwrap(),
            0
        );
        let e = store.due_events(u64::MAX, 1).unwrap().remove(0).event;
        assert_eq!(e.topic.tags, tags);
        assert_eq!(e.post.map(|p| p.raw), Some("edited".to_string()));
    }

    #[test]
    fn late_tags_reach_only_their_own_forums_topic() {
        let (_dir, store) = temp();
        let mut other = inbound(2, 10);
        other.event.forum = "https://meta.example.org".into();
        other.event.topic.id = inbound(1, 10).event.topic.id;
        store.accept(&[inbound(1, 10), other], 1).unwrap();
        let main = inbound(1, 10).event;
        let tags = [crate::ingest::Tag {
            hidden: false,
            name: "Rust".into(),
            slug: "rust".into(),
        }];
        let changed =
            refresh_topic(&store, &main.forum, main.topic.id, Some(&tags), None, None).unwrap();
        assert_eq!(changed, 1);
        for e in store.due_events(u64::MAX, 10).unwrap() {
            let tagged = e.event.topic.tags == tags;
            assert_eq!(tagged, e.event.forum == main.forum, "{:?}", e.event.forum);
        }
    }

    #[test]
    fn an_unreadable_inbox_row_does_not_stop_routing() {
        let (_dir, store) = temp();
        let out = store
            .accept(&[inbound(1, 5), inbound(2, 6), inbound(3, 7)], 1)
            .unwrap();
        let AcceptOutcome::Stored(bad) = out[1] else {
            panic!("{out:?}");
        };
        spoil_inbox(&store, bad);
        route_all(&store, &pipeline(), 20);
        let ids: Vec<Option<u64>> = (queued(&store).iter())
            .map(|d| match &d.payload {
                Payload::Event { event, .. } => event.id,
                _ => None,
            })
            .collect();
        assert_eq!(ids, vec![Some(1), Some(3)]);
        let q = store.quarantined().unwrap();
        assert_eq!((q.count, q.newest[0].table.as_str()), (1, "inbox"));
        assert!(store.due_events(u64::MAX, 10).unwrap().is_empty());
    }
}
