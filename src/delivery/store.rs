//! The durable state of the relay behind one small interface: the inbox of
//! accepted events (held for `delay`), the per-chat delivery queues, the
//! dead-letter list, the dedupe window, and the message-id map.
//!
//! The embedded redb store ([`super::redb_store::RedbStore`]) is the default;
//! the trait is what a shared backend (NATS JetStream streams + KV) would
//! implement so several relays can split the work. Every method is blocking
//! (disk I/O): async callers go through `spawn_blocking` or the group-commit
//! thread, never call these on the runtime directly.

use serde::{Deserialize, Serialize};

use crate::config::model::Filter;
use crate::ingest::Event;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The disk or database failed (full, unwritable, corrupt): the caller
    /// answers 503 so Discourse retries later.
    #[error("storage failed: {0}")]
    Io(String),
    /// The database was written by a newer schema, or a record cannot be
    /// encoded. (A single unreadable row is set aside, not an error.)
    #[error("stored record is unreadable: {0}")]
    Corrupt(String),
}

/// Identifies a webhook delivery for deduplication: Discourse's automatic
/// retries carry a new event id but the same body; manual redeliveries repeat
/// the id. Either match makes it a duplicate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupeKey {
    /// `X-Discourse-Instance` (or the configured forum URL) + event id.
    pub event_id: Option<String>,
    /// SHA-256 of forum URL + raw body.
    pub body_hash: [u8; 32],
}

/// An accepted event to store in the inbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InboundEvent {
    pub dedupe: DedupeKey,
    pub event: Event,
    /// When it may be routed (accept time + `delay` for post events).
    pub due_at_ms: u64,
    pub received_at_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptOutcome {
    /// Durably stored under this inbox id.
    Stored(u64),
    /// Seen before inside the dedupe window; nothing stored.
    Duplicate,
}

/// An event waiting in the inbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredEvent {
    pub id: u64,
    pub event: Event,
    pub due_at_ms: u64,
    #[serde(default)]
    pub received_at_ms: u64,
    /// Names the stored row as it was read (not stored itself): routing
    /// with it ([`Routed::revision`]) applies only while the row is
    /// unchanged, so an update committed meanwhile is never overwritten.
    #[serde(skip)]
    pub revision: u64,
}

/// What to do with one pending inbox event (see [`Store::update_pending`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingChange {
    Keep,
    /// Store the event (and its `due_at_ms`) as changed.
    Update,
    /// Drop it from the inbox (its post was deleted in the window).
    Cancel,
}

/// What a queued delivery carries. The request is built at send time from
/// the config then serving, so no secret is ever written to disk and a
/// template fix applies to messages still queued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Payload {
    /// A forum event routed to this chat by a rule with this filter.
    Event { event: Box<Event>, filter: Filter },
    /// Update the chat message that `event`'s post became: new content
    /// (an edit, a recovered post) or struck through (a deleted post).
    Edit { event: Box<Event>, strike: bool },
    /// Remove the chat message that `event`'s post became.
    Delete { event: Box<Event> },
    /// The test message (`send-test`, the status page button).
    Test { requested_by: String },
    /// To the `[server] alerts` chat: chat `about` is failing, and why.
    Alert { about: String, reason: String },
}

/// An inbox entry routed: removed from the inbox, these appended.
#[derive(Debug, Clone)]
pub struct Routed {
    pub id: u64,
    /// The [`StoredEvent::revision`] the deliveries were computed from: if
    /// the row changed since, nothing happens and it stays in the inbox (to
    /// be routed again as it is now). `None`: whatever the row holds.
    pub revision: Option<u64>,
    pub deliveries: Vec<NewDelivery>,
}

/// A new entry for a chat's queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewDelivery {
    pub chat: String,
    pub payload: Payload,
}

/// A delivery in a chat's queue. `seq` orders a chat's deliveries; only the
/// head (lowest `seq`) of each chat is ever sent, so order is kept per chat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedDelivery {
    pub chat: String,
    pub seq: u64,
    pub payload: Payload,
    #[serde(default)]
    pub created_at_ms: u64,
    #[serde(default)]
    pub attempts: u32,
    /// Not before this time (backoff or the platform's retry delay).
    #[serde(default)]
    pub next_attempt_at_ms: u64,
    #[serde(default)]
    pub last_error: Option<String>,
}

/// A delivery given up on, with the reason shown on the status page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The dead letter's own id (its key in the store; not in the row).
    #[serde(skip)]
    pub id: u64,
    pub delivery: QueuedDelivery,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub failed_at_ms: u64,
}

/// A stored row that could not be read, moved aside (raw bytes kept) so
/// that the rows around it are still routed and delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantinedRow {
    /// The table it was in (`inbox`, `queue`, `dead`, `posts`, `message_refs`).
    pub table: String,
    /// Its key there, as text (`17`, `chat#3`, `forum/topic/post`).
    pub key: String,
    /// Why it could not be read.
    pub error: String,
    pub at_ms: u64,
}

/// What [`Store::quarantined`] reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuarantineSummary {
    /// Rows set aside so far (kept until removed by hand).
    pub count: u64,
    /// The newest few, newest first.
    pub newest: Vec<QuarantinedRow>,
}

/// Which chat message a forum post became in one chat (for threads, edits,
/// deletes). Keyed by (chat, topic id, post number): a chat belongs to one
/// forum, and post number [`THREAD_ROOT`] names the message that opened the
/// topic's thread in that chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRef {
    /// The platform's id, as the destination returned it (opaque here).
    pub remote_id: String,
    #[serde(default)]
    pub stored_at_ms: u64,
}

/// The post number under which a chat's thread root for a topic is kept.
pub const THREAD_ROOT: u64 = 0;

/// A change to the message refs, made with the acknowledgement of the
/// delivery that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefChange {
    Put {
        topic: u64,
        number: u64,
        r: MessageRef,
    },
    Remove {
        topic: u64,
        number: u64,
    },
}

/// A forum post, across chats: forum URL, topic id, post number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PostKey {
    pub forum: String,
    pub topic: u64,
    pub number: u64,
}

impl PostKey {
    /// The key of the post an event is about, or of the family item a
    /// notice is about (`None` without either; see [`Event::message_slot`]).
    pub fn of(event: &Event) -> Option<Self> {
        event.message_slot().map(|(topic, number)| Self {
            forum: event.forum.clone(),
            topic,
            number,
        })
    }

    /// Whether `event`, routed, opens a record: a new post, or a new item
    /// of a family whose items change later.
    pub fn opens(event: &Event) -> bool {
        match &event.notice {
            Some(n) => n.change == crate::ingest::Change::Opened && n.subject.is_some(),
            None => event.kind == crate::ingest::EventKind::PostCreated,
        }
    }
}

/// What the relay remembers of a routed post, so that its edits, deletion
/// and recovery reach the chats it went to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostRecord {
    /// The post as last known (edits merged in): what edits re-render.
    pub event: Event,
    /// The chats it was queued to.
    #[serde(default)]
    pub chats: Vec<PostChat>,
    /// Deleted in the forum (and not recovered since).
    #[serde(default)]
    pub deleted: bool,
}

impl PostRecord {
    pub fn chat_mut(&mut self, chat: &str) -> Option<&mut PostChat> {
        self.chats.iter_mut().find(|c| c.chat == chat)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostChat {
    pub chat: String,
    /// The queued delivery that posts (or posted) the message.
    pub seq: u64,
    pub filter: Filter,
    /// Dropped from the queue before it was sent (the post was deleted).
    #[serde(default)]
    pub dropped: bool,
}

/// What an edit, deletion or recovery does to one chat's queue.
#[derive(Debug, Clone, PartialEq)]
pub struct FollowUp {
    pub chat: String,
    /// The delivery that posts the message, if it may still be queued.
    pub queued: Option<u64>,
    /// Replaces that delivery while it still waits behind the head of the
    /// queue (`None` drops it). The head may be in flight, so it is never
    /// changed: `otherwise` applies then.
    pub if_queued: Option<Payload>,
    /// Appended to the chat's queue when the message was sent (or is being
    /// sent). A [`Payload::Event`] here re-posts the message, and the
    /// record's `seq` for the chat follows it.
    pub otherwise: Option<Payload>,
}

pub trait Store: Send + Sync + 'static {
    /// Deduplicates and stores a batch of accepted events in ONE durable
    /// commit (the group commit: many requests, one fsync). Outcomes are in
    /// batch order; duplicates inside the batch count too.
    fn accept(&self, batch: &[InboundEvent], now_ms: u64)
    -> Result<Vec<AcceptOutcome>, StoreError>;

    /// Inbox events due at or before `now_ms`, oldest due first. A row
    /// that cannot be read is moved to the quarantine and skipped.
    fn due_events(&self, now_ms: u64, limit: usize) -> Result<Vec<StoredEvent>, StoreError>;

    /// Applies `f` to every pending inbox event in ONE write transaction
    /// (edits, deletes, late topic data, categories learned late): `f` may
    /// change the event and its `due_at_ms` ([`PendingChange::Update`]),
    /// drop it ([`PendingChange::Cancel`]) or leave it. Concurrent calls
    /// never undo each other's changes. `f` runs inside the transaction:
    /// no I/O in it. Returns how many events changed.
    fn update_pending(
        &self,
        f: &mut dyn FnMut(&mut StoredEvent) -> PendingChange,
    ) -> Result<usize, StoreError>;

    /// Atomically removes inbox entry `id` and appends `deliveries` to their
    /// chats' queues (next `seq` per chat). Idempotent: a missing `id` means
    /// it was already routed, and nothing is appended. A new post
    /// ([`Payload::Event`] of `post_created`) is remembered as a
    /// [`PostRecord`] in the same transaction.
    fn route(&self, id: u64, deliveries: &[NewDelivery], now_ms: u64) -> Result<(), StoreError> {
        self.route_many(
            &[Routed {
                id,
                revision: None,
                deliveries: deliveries.to_vec(),
            }],
            now_ms,
        )
    }

    /// [`Store::route`] for many inbox entries in one durable commit.
    fn route_many(&self, routed: &[Routed], now_ms: u64) -> Result<(), StoreError>;

    /// What is remembered of a routed post.
    fn post_record(&self, key: &PostKey) -> Result<Option<PostRecord>, StoreError>;

    /// Atomically removes inbox entry `id`, applies `steps` to the chats'
    /// queues and stores `record` (when given) under `key`. Returns the chats
    /// whose queues changed. Idempotent like [`Store::route`].
    fn follow_up(
        &self,
        id: u64,
        key: &PostKey,
        record: Option<PostRecord>,
        steps: &[FollowUp],
        now_ms: u64,
    ) -> Result<Vec<String>, StoreError>;

    /// Appends directly to a chat's queue (test messages).
    fn enqueue(&self, delivery: &NewDelivery, now_ms: u64) -> Result<u64, StoreError>;

    /// The head of a chat's queue.
    fn head(&self, chat: &str) -> Result<Option<QueuedDelivery>, StoreError>;

    /// The first `limit` deliveries of a chat's queue, in order, for its
    /// worker to send. They count as in flight (see [`FollowUp::if_queued`])
    /// until the next call for the chat: a follow-up never rewrites what
    /// the worker may already have sent.
    fn heads(&self, chat: &str, limit: usize) -> Result<Vec<QueuedDelivery>, StoreError>;

    /// Removes a delivered head and records what it did to the message refs.
    fn ack(&self, chat: &str, seq: u64, refs: &[RefChange]) -> Result<(), StoreError> {
        self.ack_many(chat, &[(seq, refs.to_vec())])
    }

    /// [`Store::ack`] for several deliveries of one chat in one commit.
    fn ack_many(&self, chat: &str, acks: &[(u64, Vec<RefChange>)]) -> Result<(), StoreError>;

    /// Records a failed attempt and when to try again.
    fn reschedule(
        &self,
        chat: &str,
        seq: u64,
        next_attempt_at_ms: u64,
        error: &str,
    ) -> Result<(), StoreError>;

    /// Moves a delivery to the dead-letter list with the reason.
    fn dead_letter(
        &self,
        chat: &str,
        seq: u64,
        reason: &str,
        now_ms: u64,
    ) -> Result<(), StoreError>;

    /// Chats with queued deliveries and their queue depth.
    fn queue_depths(&self) -> Result<Vec<(String, u64)>, StoreError>;

    /// Dead letters, newest first; `chat` filters.
    fn dead_letters(&self, chat: Option<&str>, limit: usize)
    -> Result<Vec<DeadLetter>, StoreError>;

    /// Dead-letter count per chat.
    fn dead_letter_counts(&self) -> Result<Vec<(String, u64)>, StoreError>;

    /// Moves dead letters of `chat` (those with `ids`, or all) back to the
    /// end of its queue, oldest first, in one transaction: each keeps its
    /// attempts and last reason and is due at once. Returns how many moved.
    fn resend_dead_letters(
        &self,
        chat: &str,
        ids: Option<&[u64]>,
        now_ms: u64,
    ) -> Result<u64, StoreError>;

    /// Drops dead letters of `chat` (those with `ids`, or all). Returns how
    /// many went.
    fn drop_dead_letters(&self, chat: &str, ids: Option<&[u64]>) -> Result<u64, StoreError>;

    /// Makes every earlier cheap commit (acks, reschedules) durable; a
    /// no-op when there is none.
    fn sync(&self) -> Result<(), StoreError>;

    /// Forgets dedupe keys older than `before_ms`, and message refs and
    /// post records older than `refs_before_ms`.
    fn prune(&self, before_ms: u64, refs_before_ms: u64) -> Result<(), StoreError>;

    /// Drops dead letters that failed before `before_ms`, and the oldest of
    /// a chat's beyond its newest `max_per_chat`. Returns how many went.
    fn prune_dead_letters(&self, before_ms: u64, max_per_chat: u64) -> Result<u64, StoreError>;

    /// How many stored rows could not be read and were set aside, and the
    /// newest of them.
    fn quarantined(&self) -> Result<QuarantineSummary, StoreError>;

    /// The chat message post `number` of `topic` became in `chat`
    /// ([`THREAD_ROOT`]: the message that opened the topic's thread).
    fn message_ref(
        &self,
        chat: &str,
        topic: u64,
        number: u64,
    ) -> Result<Option<MessageRef>, StoreError>;
}
