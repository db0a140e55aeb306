//! The durable state of the relay behind one small interface: the inbox of
//! accepted events (held for `delay`), the per-chat delivery queues, the
//! dead-letter list, the dedupe window, the message-id map, and each chat's
//! recent activity (hourly counts and the last deliveries, for the pane).
//!
//! The embedded redb store ([`super::redb_store::RedbStore`]) is the default;
//! [`super::pg_store::PgStore`] implements the same trait on PostgreSQL, a
//! store several relays can share. Both pass one behaviour suite
//! (`store_suite.rs`). Every method is blocking
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
    /// This relay no longer holds `chat`'s lease (it expired and another
    /// relay claimed it, or it was released): the write changed nothing,
    /// and the chat's worker must stop sending.
    #[error("lost the lease of chat {chat}")]
    LostLease { chat: String },
}

/// A chat's delivery lease: while it is held, this relay alone sends for
/// the chat. `epoch` grows with every new owner, and fences the owner's
/// writes: a relay whose lease was taken over changes nothing more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub epoch: u64,
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

/// What a delivery was, in a few words, for a chat's page. Taken from the
/// payload when the delivery is settled, so the page never decodes queued
/// events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct What {
    /// The forum event (`post_created`...), `edit`, `delete`, `test` or `alert`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post: Option<u64>,
    /// The topic's title, the test's requester or the alert's chat (user
    /// content: escaped where shown), at most [`WHAT_TITLE_CHARS`].
    #[serde(default)]
    pub title: String,
}

/// How much of a title a [`What`] keeps (the log is bounded in bytes too).
pub const WHAT_TITLE_CHARS: usize = 120;

impl What {
    pub fn of(payload: &Payload) -> Self {
        let forum = |kind: &str, e: &Event| What {
            kind: kind.to_string(),
            topic: Some(e.topic.id).filter(|id| *id != 0),
            post: e.post.as_ref().map(|p| p.number),
            title: e.headline().chars().take(WHAT_TITLE_CHARS).collect(),
        };
        match payload {
            Payload::Event { event, .. } => forum(event.kind.as_str(), event),
            Payload::Edit { event, .. } => forum("edit", event),
            Payload::Delete { event } => forum("delete", event),
            Payload::Test { requested_by } => What {
                kind: "test".into(),
                title: requested_by.chars().take(WHAT_TITLE_CHARS).collect(),
                ..What::default()
            },
            Payload::Alert { about, .. } => What {
                kind: "alert".into(),
                title: about.chars().take(WHAT_TITLE_CHARS).collect(),
                ..What::default()
            },
        }
    }
}

/// How a delivery attempt ended, as a chat's page lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum AttemptResult {
    /// The platform accepted it (`remote_id`: its message id, when it gave one).
    Sent { remote_id: Option<String> },
    /// Settled without sending (an edit of a message the relay never knew).
    Skipped { reason: String },
    /// Failed; tried again at `next_attempt_at_ms`.
    Retried {
        reason: String,
        next_attempt_at_ms: u64,
    },
    /// Given up on: moved to the dead letters.
    DeadLettered { reason: String },
}

/// One settled attempt of a delivery, kept in its chat's recent log (the
/// newest [`RECENT_PER_CHAT`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    pub seq: u64,
    /// When it was settled (acked, rescheduled, dead-lettered).
    pub at_ms: u64,
    /// When it was queued: `at_ms - created_at_ms` is its latency.
    pub created_at_ms: u64,
    pub what: What,
    #[serde(flatten)]
    pub result: AttemptResult,
}

impl DeliveryRecord {
    /// A settled attempt of `d` at `at_ms`.
    /// Reasons and ids are cut to [`RESULT_CHARS`] (a platform's error
    /// body can be long; the log is bounded in rows).
    pub fn of(d: &QueuedDelivery, at_ms: u64, result: AttemptResult) -> Self {
        let cut = |s: String| match s.char_indices().nth(RESULT_CHARS) {
            Some((i, _)) => format!("{}…", &s[..i]),
            None => s,
        };
        let result = match result {
            AttemptResult::Sent { remote_id } => AttemptResult::Sent {
                remote_id: remote_id.map(cut),
            },
            AttemptResult::Skipped { reason } => AttemptResult::Skipped {
                reason: cut(reason),
            },
            AttemptResult::Retried {
                reason,
                next_attempt_at_ms,
            } => AttemptResult::Retried {
                reason: cut(reason),
                next_attempt_at_ms,
            },
            AttemptResult::DeadLettered { reason } => AttemptResult::DeadLettered {
                reason: cut(reason),
            },
        };
        Self {
            seq: d.seq,
            at_ms,
            created_at_ms: d.created_at_ms,
            what: What::of(&d.payload),
            result,
        }
    }
}

/// How much of a reason or remote id a [`DeliveryRecord`] keeps.
pub const RESULT_CHARS: usize = 500;

/// How many settled attempts a chat's log keeps.
pub const RECENT_PER_CHAT: u64 = 100;

/// One chat's deliveries in one hour (UTC, `hour` = Unix ms / 3 600 000).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourCount {
    pub chat: String,
    pub hour: u64,
    /// Accepted by the platform.
    pub delivered: u64,
    /// Given up on (dead-lettered).
    pub failed: u64,
    /// Failed attempts that were retried.
    pub retried: u64,
}

/// Milliseconds in an hour bucket of [`HourCount`].
pub const HOUR_MS: u64 = 3_600_000;

/// A delivery its worker sent (or settled without sending), to remove from
/// the queue with [`Store::ack_many`].
#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    pub seq: u64,
    /// What it did to the message refs.
    pub refs: Vec<RefChange>,
    /// What the chat's log keeps of it; its `result` decides how it counts.
    pub record: DeliveryRecord,
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

    /// Removes a delivered head, records what it did to the message refs,
    /// and counts and logs it (see [`Store::ack_many`]).
    fn ack(&self, chat: &str, ack: Ack) -> Result<(), StoreError> {
        self.ack_many(chat, &[ack])
    }

    /// Removes several delivered deliveries of one chat in one commit, with
    /// their message refs; in the same transaction each is counted in its
    /// hour ([`Store::hourly_counts`]) and kept in the chat's log
    /// ([`Store::recent_deliveries`]), so the pane costs no commit of its own.
    fn ack_many(&self, chat: &str, acks: &[Ack]) -> Result<(), StoreError>;

    /// Records a failed attempt and when to try again (counted as retried
    /// and logged at `now_ms`, in the same transaction).
    fn reschedule(
        &self,
        chat: &str,
        seq: u64,
        next_attempt_at_ms: u64,
        error: &str,
        now_ms: u64,
    ) -> Result<(), StoreError>;

    /// Moves a delivery to the dead-letter list with the reason (counted as
    /// failed and logged, in the same transaction).
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

    /// Every chat's [`HourCount`]s from the hour holding `since_ms` on,
    /// by chat then hour; hours without deliveries are absent.
    fn hourly_counts(&self, since_ms: u64) -> Result<Vec<HourCount>, StoreError>;

    /// A chat's newest settled attempts, newest first (at most `limit`,
    /// and the store keeps [`RECENT_PER_CHAT`]).
    fn recent_deliveries(
        &self,
        chat: &str,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError>;

    /// Forgets hourly counts of the hours before the one holding `before_ms`.
    fn prune_hourly_counts(&self, before_ms: u64) -> Result<(), StoreError>;

    /// How many stored rows could not be read and were set aside, and the
    /// newest of them.
    fn quarantined(&self) -> Result<QuarantineSummary, StoreError>;

    /// Claims `chat` for this relay for `ttl` (on the store's clock):
    /// `None` while another relay holds it. Claiming a chat it holds renews
    /// it under the same epoch; a new owner gets a higher epoch. Once a
    /// relay has claimed any chat, its writes for a chat (`heads`, acks,
    /// reschedules, dead letters) need that chat's lease, else they fail
    /// with [`StoreError::LostLease`] and change nothing. A store that one
    /// relay owns alone (redb) grants every claim.
    fn claim(&self, chat: &str, ttl: std::time::Duration) -> Result<Option<Lease>, StoreError>;

    /// Extends a held lease by `ttl` from now; [`StoreError::LostLease`]
    /// when it is no longer this relay's.
    fn renew(&self, chat: &str, ttl: std::time::Duration) -> Result<Lease, StoreError>;

    /// Gives a held lease up at once (a clean stop, a rebalance), so
    /// another relay can claim the chat without waiting for the expiry.
    fn release(&self, chat: &str) -> Result<(), StoreError>;

    /// The chat message post `number` of `topic` became in `chat`
    /// ([`THREAD_ROOT`]: the message that opened the topic's thread).
    fn message_ref(
        &self,
        chat: &str,
        topic: u64,
        number: u64,
    ) -> Result<Option<MessageRef>, StoreError>;
}
