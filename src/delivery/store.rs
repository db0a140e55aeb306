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
    /// A stored record could not be read back (written by another version?).
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
    pub received_at_ms: u64,
}

/// What a queued delivery carries. The request is built at send time from
/// the config then serving, so no secret is ever written to disk and a
/// template fix applies to messages still queued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Payload {
    /// A forum event routed to this chat by a rule with this filter.
    Event { event: Box<Event>, filter: Filter },
    /// The test message (`send-test`, the status page button).
    Test { requested_by: String },
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
    pub created_at_ms: u64,
    pub attempts: u32,
    /// Not before this time (backoff or the platform's retry delay).
    pub next_attempt_at_ms: u64,
    pub last_error: Option<String>,
}

/// A delivery given up on, with the reason shown on the status page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub delivery: QueuedDelivery,
    pub reason: String,
    pub failed_at_ms: u64,
}

/// Which chat message a forum post became (for threads, edits, deletes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRef {
    pub remote_id: String,
    pub stored_at_ms: u64,
}

pub trait Store: Send + Sync + 'static {
    /// Deduplicates and stores a batch of accepted events in ONE durable
    /// commit (the group commit: many requests, one fsync). Outcomes are in
    /// batch order; duplicates inside the batch count too.
    fn accept(&self, batch: &[InboundEvent], now_ms: u64)
    -> Result<Vec<AcceptOutcome>, StoreError>;

    /// Inbox events due at or before `now_ms`, oldest due first.
    fn due_events(&self, now_ms: u64, limit: usize) -> Result<Vec<StoredEvent>, StoreError>;

    /// Every event still in the inbox (the delay window), for merging edits,
    /// deletes and late topic data into them.
    fn pending_events(&self) -> Result<Vec<StoredEvent>, StoreError>;

    /// Replaces the event of a pending inbox entry (an edit or late tags
    /// arrived in the window). Returns false if it is no longer pending.
    fn update_pending(&self, id: u64, event: &Event) -> Result<bool, StoreError>;

    /// Drops a pending inbox entry (its post was deleted in the window).
    fn cancel_pending(&self, id: u64) -> Result<bool, StoreError>;

    /// Atomically removes inbox entry `id` and appends `deliveries` to their
    /// chats' queues (next `seq` per chat). Idempotent: a missing `id` means
    /// it was already routed, and nothing is appended.
    fn route(&self, id: u64, deliveries: &[NewDelivery], now_ms: u64) -> Result<(), StoreError>;

    /// Appends directly to a chat's queue (test messages).
    fn enqueue(&self, delivery: &NewDelivery, now_ms: u64) -> Result<u64, StoreError>;

    /// The head of a chat's queue.
    fn head(&self, chat: &str) -> Result<Option<QueuedDelivery>, StoreError>;

    /// Removes a delivered head.
    fn ack(&self, chat: &str, seq: u64) -> Result<(), StoreError>;

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

    /// Forgets dedupe keys older than `before_ms` and message refs older
    /// than `refs_before_ms`.
    fn prune(&self, before_ms: u64, refs_before_ms: u64) -> Result<(), StoreError>;

    /// Remembers which chat message a post became.
    fn put_message_ref(&self, chat: &str, post_id: u64, r: &MessageRef) -> Result<(), StoreError>;

    fn message_ref(&self, chat: &str, post_id: u64) -> Result<Option<MessageRef>, StoreError>;
}
