//! The embedded [`Store`]: one redb file holding the inbox, the per-chat
//! queues, the dead letters, the dedupe window and the message-id map.
//!
//! # Tables
//!
//! Values are JSON (simple to debug, tolerant of added fields), each row
//! opening with its format version (`{"v":1,...}`, [`ROW_FORMAT`]); rows of
//! earlier releases, without one, read as version 0 (same fields). Readers
//! ignore unknown fields (so older relays read these rows too) and default
//! the missing ones where that is safe. Where a
//! value carries a field that an index is keyed by, that field is also kept
//! in front of the JSON as a plain `u64`, so index upkeep never depends on
//! decoding a record.
//!
//! | table            | key                             | value                              |
//! |------------------|---------------------------------|------------------------------------|
//! | `inbox`          | id `u64`                        | (`due_at_ms`, JSON [`StoredEvent`])|
//! | `inbox_due`      | (`due_at_ms`, id)               | `()` — index for `due_events`      |
//! | `queue`          | (chat, seq)                     | JSON [`QueuedDelivery`]            |
//! | `queue_depth`    | chat                            | rows of the chat in `queue`        |
//! | `next_seq`       | chat                            | the chat's next seq (never reused) |
//! | `dead`           | dead-letter id `u64` (global)   | JSON [`DeadLetter`]                |
//! | `dead_by_chat`   | (chat, dead-letter id)          | `()` — index for a chat filter     |
//! | `dead_count`     | chat                            | rows of the chat in `dead`         |
//! | `dedupe_batches` | (first seen, first inbox id)    | the batch's dedupe keys, 16-byte hashes |
//! | `dedupe`, `dedupe_by_time` | key / (first seen, key) | the older per-key form: read at open and pruned, no longer written |
//! | `message_refs`   | (chat, topic id, post number)   | (`stored_at_ms`, JSON [`MessageRef`]) |
//! | `message_refs_by_time` | (`stored_at_ms`, chat, topic, number) | `()` — index for `prune` |
//! | `posts`          | (forum URL, topic id, post number) | (`stored_at_ms`, JSON [`PostRecord`]) |
//! | `posts_by_time`  | (`stored_at_ms`, forum, topic, number) | `()` — index for `prune`      |
//! | `hourly_counts`  | (hour = ms / 3 600 000, chat)   | (delivered, failed, retried) — see [`Store::hourly_counts`] |
//! | `recent_deliveries` | (chat, n)                    | JSON [`DeliveryRecord`]: the chat's newest [`RECENT_PER_CHAT`] |
//! | `meta`           | name                            | `u64` (schema, next ids)           |
//! | `quarantine`     | id `u64`                        | (when, table, key, error, raw bytes) of an unreadable row |
//!
//! The dedupe window is looked up in memory (`seen`: key hash -> first
//! seen), loaded at open from `dedupe_batches`: an accept writes one row per
//! batch at the end of that table, where one row per key in a table keyed
//! by the key cost a random B-tree insert each (most of an accept's cost,
//! `benches/store.rs`). A day of keys at one event per second is ~9 MB.
//!
//! The counters (`queue_depth`, `dead_count`) are kept in the same
//! transactions as the rows they count, so the status page reads one row per
//! chat instead of scanning the queues. So are a chat's activity rows: an
//! ack, reschedule or dead letter adds to its hour in `hourly_counts` and
//! appends to `recent_deliveries` (dropping the oldest beyond
//! [`RECENT_PER_CHAT`]) in its own transaction, costing no commit of its own.
//! `hourly_counts` is keyed hour first so that the pane's last 24 hours and
//! pruning are each one range.
//!
//! # Durability
//!
//! Every transaction is [`Durability::Immediate`] (fsync before returning),
//! except [`Store::route_many`], [`Store::ack`] (unless it empties the
//! chat's queue) and [`Store::reschedule`]:
//! they use [`Durability::None`], which redb makes durable with the next
//! immediate commit (any accept, dead letter...), the relay's once-a-second
//! [`Store::sync`], or a clean close. A crash loses at most the routes, acks
//! and reschedules since the last immediate commit: their events are still
//! in the inbox (accepts are always durable) and are routed again, and their
//! deliveries are sent again (at-least-once allows it) or retried early.
//! Routing is internal: the promise made to Discourse (202) rests on the
//! accept alone, so routing need not wait for its own fsync. Because redb only reuses pages freed by non-durable commits after
//! a durable one, and to bound what a crash can undo, a cheap commit is
//! promoted to an immediate one after [`MAX_CHEAP_COMMITS`] of them in a row
//! or when the last immediate commit is older than [`MAX_CHEAP_AGE`].
//!
//! # Failures
//!
//! A redb I/O failure (disk full, unwritable, read error) is returned as
//! [`StoreError::Io`]. redb then refuses every later operation until the
//! database is reopened, so the store closes and reopens the file itself on
//! the next call (at most once per [`REOPEN_INTERVAL`]): once space is
//! freed, the relay recovers without a restart. A row that cannot be read
//! (bad JSON, a newer format) is moved to `quarantine` with its raw bytes,
//! where it came from and why, keeping the indexes and counters in step, and
//! is skipped: one bad row never stops routing or a chat's queue
//! ([`Store::quarantined`] shows them).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use redb::{
    Database, DatabaseError, Durability, ReadTransaction, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, Table, TableDefinition, WriteTransaction,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::store::{
    AcceptOutcome, Ack, AttemptResult, DeadLetter, DedupeKey, DeliveryRecord, FollowUp, HOUR_MS,
    HourCount, InboundEvent, Lease, MessageRef, NewDelivery, Payload, PendingChange, PostChat,
    PostKey, PostRecord, QuarantineSummary, QuarantinedRow, QueuedDelivery, RECENT_PER_CHAT,
    RefChange, Routed, Store, StoreError, StoredEvent,
};
use crate::ingest::Event;

const INBOX: TableDefinition<u64, (u64, &[u8])> = TableDefinition::new("inbox");
const INBOX_DUE: TableDefinition<(u64, u64), ()> = TableDefinition::new("inbox_due");
const QUEUE: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("queue");
const QUEUE_DEPTH: TableDefinition<&str, u64> = TableDefinition::new("queue_depth");
const NEXT_SEQ: TableDefinition<&str, u64> = TableDefinition::new("next_seq");
const DEAD: TableDefinition<u64, &[u8]> = TableDefinition::new("dead");
const DEAD_BY_CHAT: TableDefinition<(&str, u64), ()> = TableDefinition::new("dead_by_chat");
const DEAD_COUNT: TableDefinition<&str, u64> = TableDefinition::new("dead_count");
const DEDUPE: TableDefinition<&str, u64> = TableDefinition::new("dedupe");
/// The older per-key form of the dedupe window: read at open, pruned, no
/// longer written (it empties itself a dedupe window after an upgrade).
const DEDUPE_BY_TIME: TableDefinition<(u64, &str), ()> = TableDefinition::new("dedupe_by_time");
/// The dedupe keys an accept stored, one row per batch (time first, so
/// appended at the end): concatenated [`hash_of`]s.
const DEDUPE_BATCHES: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("dedupe_batches");
const REFS: TableDefinition<(&str, u64, u64), (u64, &[u8])> = TableDefinition::new("message_refs");
const REFS_BY_TIME: TableDefinition<(u64, &str, u64, u64), ()> =
    TableDefinition::new("message_refs_by_time");
const POSTS: TableDefinition<(&str, u64, u64), (u64, &[u8])> = TableDefinition::new("posts");
const POSTS_BY_TIME: TableDefinition<(u64, &str, u64, u64), ()> =
    TableDefinition::new("posts_by_time");
/// The refs of the first releases (keyed by post id alone): dropped at open.
const OLD_REFS: [&str; 2] = ["refs", "refs_by_time"];
/// (hour, chat) -> (delivered, failed, retried): fixed-width numbers, like
/// the other counters, so no row format to version.
const HOURLY: TableDefinition<(u64, &str), (u64, u64, u64)> = TableDefinition::new("hourly_counts");
/// (chat, n) -> JSON [`DeliveryRecord`]; `n` grows per chat.
const RECENT: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("recent_deliveries");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Rows that could not be read: (when, table, key, error, raw bytes).
const QUARANTINE: TableDefinition<u64, (u64, &str, &str, &str, &[u8])> =
    TableDefinition::new("quarantine");
/// How many of the newest quarantined rows [`Store::quarantined`] lists.
const QUARANTINE_NEWEST: usize = 10;
/// Most dead letters one pruning transaction removes (a long backlog is
/// pruned in several, so accepts never wait long behind one).
const PRUNE_ROWS: usize = 10_000;

const SCHEMA_KEY: &str = "schema_version";
const SCHEMA_VERSION: u64 = 1;
const NEXT_INBOX_ID: &str = "next_inbox_id";
const NEXT_DEAD_ID: &str = "next_dead_id";

/// redb's page cache (its default is 1 GiB).
const CACHE_BYTES: usize = 64 * 1024 * 1024;
/// Cheap (non-durable) commits in a row before one is made durable.
pub const MAX_CHEAP_COMMITS: u32 = 64;
/// A cheap commit is made durable when the last durable one is this old.
pub const MAX_CHEAP_AGE: Duration = Duration::from_secs(1);
/// After an I/O failure, how often reopening the database is tried.
pub const REOPEN_INTERVAL: Duration = Duration::from_secs(1);

/// How a write transaction commits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Commit {
    /// fsync before returning.
    Durable,
    /// Made durable by the next durable commit; see the module docs.
    Cheap,
}

/// Internal error: keeps redb's error until the boundary so that the store
/// can tell an I/O failure (which needs a reopen) from anything else.
enum Fail {
    Store(StoreError),
    Db(redb::Error),
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::Store(e)
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for Fail {
            fn from(e: $t) -> Self {
                Fail::Db(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::StorageError,
    redb::TransactionError,
    redb::TableError,
    redb::CommitError,
    redb::SetDurabilityError,
    redb::DatabaseError
);

type R<T> = Result<T, Fail>;

/// Whether redb has latched the failure: every later call fails until the
/// database is closed and reopened.
fn latches(e: &redb::Error) -> bool {
    matches!(
        e,
        redb::Error::Io(_)
            | redb::Error::PreviousIo
            | redb::Error::Backend(_)
            | redb::Error::DatabaseClosed
    )
}

/// The format version of the JSON rows this relay writes. Rows without a
/// version are version 0: the same fields, written before rows had one.
pub const ROW_FORMAT: u64 = 1;
/// What every row written opens with (`ROW_FORMAT`, checked by a test).
const ROW_PREFIX: &[u8] = b"{\"v\":1";

/// The format version a row says it has (0: none).
fn row_version(bytes: &[u8]) -> Result<u64, String> {
    let Some(rest) = bytes.strip_prefix(b"{\"v\":") else {
        return Ok(0);
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits])
        .ok()
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| "malformed format version".to_string())
}

/// Reads a stored row; the error says why it cannot be (the caller sets
/// the row aside).
pub(super) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    match row_version(bytes)? {
        // Versions 0 and 1 have the same fields; `v` itself is ignored.
        0 | ROW_FORMAT => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
        v => Err(format!(
            "format version {v} is newer than this relay reads ({ROW_FORMAT})"
        )),
    }
}

/// A row as stored: `value`'s JSON object with the format version first.
fn encode<T: Serialize>(value: &T) -> R<Vec<u8>> {
    Ok(encode_row(value)?)
}

/// [`encode`] for the other backends (the PostgreSQL store keeps the same rows).
pub(super) fn encode_row<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    let fail = |e: String| StoreError::Corrupt(format!("cannot encode a record: {e}"));
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(ROW_PREFIX);
    let at = out.len();
    serde_json::to_writer(&mut out, value).map_err(|e| fail(e.to_string()))?;
    // `{"v":1` + `{...}`: the object's `{` becomes the separator.
    match out.get(at..at + 2) {
        Some(b"{}") => {
            out.truncate(at);
            out.push(b'}');
        }
        Some([b'{', _]) => out[at] = b',',
        _ => return Err(fail("not a JSON object".into())),
    }
    Ok(out)
}

/// Names the bytes of an inbox row ([`StoredEvent::revision`]). Compared
/// only within one process, so std's fixed-key hasher does.
pub(super) fn revision_of(bytes: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = std::hash::DefaultHasher::new();
    h.write(bytes);
    h.finish()
}

/// An inbox row read back.
pub(super) fn decode_event(bytes: &[u8]) -> Result<StoredEvent, String> {
    let mut e: StoredEvent = decode(bytes)?;
    e.revision = revision_of(bytes);
    Ok(e)
}

/// Wall-clock time for rows set aside by calls that are not given one.
pub(super) fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Where an unreadable row is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Row {
    Inbox {
        id: u64,
    },
    Queue {
        chat: String,
        seq: u64,
    },
    /// `chat` when known (the per-chat listing), else found by its index.
    Dead {
        id: u64,
        chat: Option<String>,
    },
    Post {
        forum: String,
        topic: u64,
        number: u64,
    },
    Ref {
        chat: String,
        topic: u64,
        number: u64,
    },
    Recent {
        chat: String,
        n: u64,
    },
}

impl Row {
    fn table(&self) -> &'static str {
        match self {
            Row::Inbox { .. } => "inbox",
            Row::Queue { .. } => "queue",
            Row::Dead { .. } => "dead",
            Row::Post { .. } => "posts",
            Row::Ref { .. } => "message_refs",
            Row::Recent { .. } => "recent_deliveries",
        }
    }

    fn key(&self) -> String {
        match self {
            Row::Inbox { id } | Row::Dead { id, .. } => id.to_string(),
            Row::Queue { chat, seq } => format!("{chat}#{seq}"),
            Row::Recent { chat, n } => format!("{chat}#{n}"),
            Row::Post {
                forum,
                topic,
                number,
            } => format!("{forum}/{topic}/{number}"),
            Row::Ref {
                chat,
                topic,
                number,
            } => format!("{chat}/{topic}/{number}"),
        }
    }
}

/// A row that cannot be read: where, its bytes, and why.
#[derive(Debug)]
struct Unreadable {
    row: Row,
    raw: Vec<u8>,
    error: String,
}

impl Unreadable {
    fn new(row: Row, raw: &[u8], error: String) -> Self {
        Self {
            row,
            raw: raw.to_vec(),
            error,
        }
    }
}

/// Adds a row to the quarantine (the caller removed it from its table).
fn put_quarantine(txn: &WriteTransaction, bad: &Unreadable, at_ms: u64) -> R<()> {
    let mut q = txn.open_table(QUARANTINE)?;
    let id = match q.last()? {
        Some((k, _)) => k.value().saturating_add(1),
        None => 1,
    };
    let (table, key) = (bad.row.table(), bad.row.key());
    q.insert(
        id,
        (
            at_ms,
            table,
            key.as_str(),
            bad.error.as_str(),
            bad.raw.as_slice(),
        ),
    )?;
    tracing::error!(
        table,
        key = %key,
        error = %bad.error,
        "a stored row cannot be read; moved to the quarantine, the others go on"
    );
    Ok(())
}

/// Moves an unreadable row to the quarantine with its index and counter
/// entries, if it still holds the same bytes (else it changed meanwhile
/// and is left alone). Opens the tables itself: call with none of them open.
fn set_aside(txn: &WriteTransaction, bad: &Unreadable, at_ms: u64) -> R<bool> {
    let same = |now: Option<&[u8]>| now == Some(bad.raw.as_slice());
    match &bad.row {
        Row::Inbox { id } => {
            let mut inbox = txn.open_table(INBOX)?;
            let due_at = match inbox.get(*id)? {
                Some(g) if same(Some(g.value().1)) => g.value().0,
                _ => return Ok(false),
            };
            inbox.remove(*id)?;
            txn.open_table(INBOX_DUE)?.remove((due_at, *id))?;
        }
        Row::Queue { chat, seq } => {
            let mut queues = Queues::open(txn)?;
            let current = queues.queue.get((chat.as_str(), *seq))?;
            if !same(current.as_ref().map(|g| g.value())) {
                return Ok(false);
            }
            drop(current);
            queues.remove(chat, *seq)?;
        }
        Row::Dead { id, chat } => {
            let mut dead = txn.open_table(DEAD)?;
            let current = dead.get(*id)?;
            if !same(current.as_ref().map(|g| g.value())) {
                return Ok(false);
            }
            drop(current);
            dead.remove(*id)?;
            let mut index = txn.open_table(DEAD_BY_CHAT)?;
            let chat = match chat {
                Some(c) => Some(c.clone()),
                // Rare (a corrupt row in the global listing): scan the index.
                None => {
                    let mut found = None;
                    for item in index.iter()? {
                        let (k, _) = item?;
                        let (c, i) = k.value();
                        if i == *id {
                            found = Some(c.to_string());
                            break;
                        }
                    }
                    found
                }
            };
            if let Some(c) = chat
                && index.remove((c.as_str(), *id))?.is_some()
            {
                bump(&mut txn.open_table(DEAD_COUNT)?, &c, -1)?;
            }
        }
        Row::Post {
            forum,
            topic,
            number,
        } => {
            let k = (forum.as_str(), *topic, *number);
            if !remove_timed(txn, POSTS, POSTS_BY_TIME, k, &bad.raw)? {
                return Ok(false);
            }
        }
        Row::Ref {
            chat,
            topic,
            number,
        } => {
            let k = (chat.as_str(), *topic, *number);
            if !remove_timed(txn, REFS, REFS_BY_TIME, k, &bad.raw)? {
                return Ok(false);
            }
        }
        Row::Recent { chat, n } => {
            let mut recent = txn.open_table(RECENT)?;
            let current = recent.get((chat.as_str(), *n))?;
            if !same(current.as_ref().map(|g| g.value())) {
                return Ok(false);
            }
            drop(current);
            recent.remove((chat.as_str(), *n))?;
        }
    }
    put_quarantine(txn, bad, at_ms)?;
    Ok(true)
}

/// [`StoredEvent`] by reference (same JSON), to store without cloning.
#[derive(Serialize)]
pub(super) struct StoredEventRef<'a> {
    pub id: u64,
    pub event: &'a Event,
    pub due_at_ms: u64,
    pub received_at_ms: u64,
}

/// [`QueuedDelivery`] by reference (same JSON).
#[derive(Serialize)]
pub(super) struct QueuedDeliveryRef<'a> {
    pub chat: &'a str,
    pub seq: u64,
    pub payload: &'a Payload,
    pub created_at_ms: u64,
    pub attempts: u32,
    pub next_attempt_at_ms: u64,
    pub last_error: Option<&'a str>,
}

/// The dedupe keys of a delivery as the window keeps them: the event id
/// (when sent) and the body, each hashed as its older per-key row reads
/// (`id:<event id>`, `body:<hex>`), without building that string.
pub(super) fn dedupe_hashes(key: &DedupeKey) -> [Option<u128>; 2] {
    let mut hex = [0u8; 64];
    // 32 bytes always fit 64 hex digits.
    let _ = hex::encode_to_slice(key.body_hash, &mut hex);
    [
        key.event_id
            .as_ref()
            .map(|id| hash_of(&[b"id:", id.as_bytes()])),
        Some(hash_of(&[b"body:", &hex])),
    ]
}

/// What the dedupe window keeps of a key: 128 bits of its SHA-256 (a false
/// duplicate would need a collision among ~2^64 keys).
fn hash_of(parts: &[&[u8]]) -> u128 {
    let digest = parts
        .iter()
        .fold(Sha256::new(), |h, p| h.chain_update(p))
        .finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    u128::from_le_bytes(b)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Adds `delta` to a per-chat counter; a counter reaching zero is removed.
fn bump(table: &mut Table<'_, &'static str, u64>, chat: &str, delta: i64) -> R<()> {
    let current = table.get(chat)?.map(|g| g.value()).unwrap_or(0);
    let next = current.saturating_add_signed(delta);
    if next == 0 {
        table.remove(chat)?;
    } else {
        table.insert(chat, next)?;
    }
    Ok(())
}

/// Takes the next value of a `meta` counter (starting at 1).
fn next_meta(meta: &mut Table<'_, &'static str, u64>, key: &str) -> R<u64> {
    let id = meta.get(key)?.map(|g| g.value()).unwrap_or(1);
    let next = id
        .checked_add(1)
        .ok_or_else(|| StoreError::Io(format!("counter {key} is exhausted")))?;
    meta.insert(key, next)?;
    Ok(id)
}

/// The queue tables, opened together in a write transaction.
struct Queues<'t> {
    queue: Table<'t, (&'static str, u64), &'static [u8]>,
    depth: Table<'t, &'static str, u64>,
    seqs: Table<'t, &'static str, u64>,
}

impl<'t> Queues<'t> {
    fn open(txn: &'t WriteTransaction) -> R<Self> {
        Ok(Self {
            queue: txn.open_table(QUEUE)?,
            depth: txn.open_table(QUEUE_DEPTH)?,
            seqs: txn.open_table(NEXT_SEQ)?,
        })
    }

    /// The chat's next seq. The counter outlives the queue's rows, so a seq
    /// is never handed out twice.
    fn next_seq(&mut self, chat: &str) -> R<u64> {
        let seq = self.seqs.get(chat)?.map(|g| g.value()).unwrap_or(1);
        let next = seq
            .checked_add(1)
            .ok_or_else(|| StoreError::Io(format!("the sequence of chat {chat} is exhausted")))?;
        self.seqs.insert(chat, next)?;
        Ok(seq)
    }

    /// Appends at the chat's next seq, due now.
    fn append(&mut self, d: &NewDelivery, now_ms: u64) -> R<u64> {
        self.insert(&d.chat, &d.payload, (now_ms, 0, None), now_ms)
    }

    /// Queues `d` again at its chat's next seq (a resent dead letter): its
    /// payload, first queue time, attempts and last reason kept, due now.
    fn requeue(&mut self, d: &QueuedDelivery, now_ms: u64) -> R<u64> {
        let history = (d.created_at_ms, d.attempts, d.last_error.as_deref());
        self.insert(&d.chat, &d.payload, history, now_ms)
    }

    /// `payload` at the chat's next seq with its history (first queued,
    /// attempts, last error), due at `due_ms`.
    fn insert(
        &mut self,
        chat: &str,
        payload: &Payload,
        (created_at_ms, attempts, last_error): (u64, u32, Option<&str>),
        due_ms: u64,
    ) -> R<u64> {
        let seq = self.next_seq(chat)?;
        let record = encode(&QueuedDeliveryRef {
            chat,
            seq,
            payload,
            created_at_ms,
            attempts,
            next_attempt_at_ms: due_ms,
            last_error,
        })?;
        self.queue.insert((chat, seq), record.as_slice())?;
        bump(&mut self.depth, chat, 1)?;
        Ok(seq)
    }

    /// The delivery `seq` of `chat` if it is queued behind the head (the
    /// head may be in flight; nothing behind it is). An unreadable one is
    /// moved to the quarantine and counts as gone.
    fn waiting(
        &mut self,
        txn: &WriteTransaction,
        chat: &str,
        seq: u64,
        now_ms: u64,
    ) -> R<Option<QueuedDelivery>> {
        let head_seq = match self.queue.range((chat, 0)..=(chat, u64::MAX))?.next() {
            Some(item) => item?.0.value().1,
            None => return Ok(None),
        };
        if head_seq == seq {
            return Ok(None);
        }
        let read = match self.queue.get((chat, seq))? {
            Some(row) => decode(row.value()).map_err(|e| (row.value().to_vec(), e)),
            None => return Ok(None),
        };
        match read {
            Ok(d) => Ok(Some(d)),
            Err((raw, error)) => {
                self.set_aside(txn, chat, seq, raw, error, now_ms)?;
                Ok(None)
            }
        }
    }

    /// Moves the unreadable row `seq` of `chat` (holding `raw`) to the
    /// quarantine, keeping the chat's depth in step.
    fn set_aside(
        &mut self,
        txn: &WriteTransaction,
        chat: &str,
        seq: u64,
        raw: Vec<u8>,
        error: String,
        now_ms: u64,
    ) -> R<()> {
        self.remove(chat, seq)?;
        let row = Row::Queue {
            chat: chat.to_string(),
            seq,
        };
        put_quarantine(txn, &Unreadable { row, raw, error }, now_ms)
    }

    /// Removes a row, returning its bytes.
    fn remove(&mut self, chat: &str, seq: u64) -> R<Option<Vec<u8>>> {
        let removed = self.queue.remove((chat, seq))?.map(|g| g.value().to_vec());
        if removed.is_some() {
            bump(&mut self.depth, chat, -1)?;
        }
        Ok(removed)
    }
}

/// The cheap-commit budget (see the module docs).
struct CheapCommits {
    since_durable: u32,
    last_durable: Instant,
}

/// What the last failed reopen said, and when it was tried.
struct Recovery {
    last_attempt: Option<Instant>,
    last_error: String,
}

type Opener = Box<dyn Fn() -> Result<Database, DatabaseError> + Send + Sync>;

/// The default [`Store`]: an embedded redb database in one file.
pub struct RedbStore {
    path: PathBuf,
    opener: Opener,
    /// `None` only while reopening after an I/O failure failed.
    db: RwLock<Option<Database>>,
    /// Set when redb latched an I/O failure: the next call reopens.
    failed: AtomicBool,
    recovery: Mutex<Recovery>,
    cheap: Mutex<CheapCommits>,
    /// Per chat, the last seq its worker took with `heads` (in flight).
    claims: Mutex<HashMap<String, u64>>,
    /// The dedupe window: key hash -> first seen (ms). Written only after
    /// the commit that stored the keys, so it never holds a key the file
    /// does not.
    seen: Mutex<HashMap<u128, u64>>,
    /// Serializes [`Store::accept`] (see there).
    accepting: Mutex<()>,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish()
    }
}

impl RedbStore {
    /// Opens the database at `path`, creating the file (and its directory)
    /// and the tables if needed. Fails with [`StoreError::Io`] when the file
    /// cannot be opened (unwritable, already open by another relay) and with
    /// [`StoreError::Corrupt`] when it was written by a newer schema.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Io(format!("cannot create {}: {e}", dir.display())))?;
        }
        let owned = path.to_path_buf();
        let opener: Opener = Box::new(move || {
            Database::builder()
                .set_cache_size(CACHE_BYTES)
                .create(&owned)
        });
        Self::with_opener(path.to_path_buf(), opener)
    }

    fn with_opener(path: PathBuf, opener: Opener) -> Result<Self, StoreError> {
        let store = Self {
            db: RwLock::new(None),
            failed: AtomicBool::new(false),
            recovery: Mutex::new(Recovery {
                last_attempt: None,
                last_error: String::new(),
            }),
            cheap: Mutex::new(CheapCommits {
                since_durable: 0,
                last_durable: Instant::now(),
            }),
            claims: Mutex::new(HashMap::new()),
            seen: Mutex::new(HashMap::new()),
            accepting: Mutex::new(()),
            path,
            opener,
        };
        let (db, seen) = store.open_db()?;
        *store.db.write().unwrap_or_else(PoisonError::into_inner) = Some(db);
        *lock(&store.seen) = seen;
        Ok(store)
    }

    /// Opens the file, creates missing tables, checks the schema and reads
    /// the dedupe window.
    fn open_db(&self) -> Result<(Database, HashMap<u128, u64>), StoreError> {
        let db = (self.opener)().map_err(|e| {
            let hint = match e {
                DatabaseError::DatabaseAlreadyOpen => " (is another relay using it?)",
                _ => "",
            };
            StoreError::Io(format!("cannot open {}: {e}{hint}", self.path.display()))
        })?;
        let init = || -> R<()> {
            let txn = db.begin_write()?;
            txn.open_table(INBOX)?;
            txn.open_table(INBOX_DUE)?;
            txn.open_table(QUEUE)?;
            txn.open_table(QUEUE_DEPTH)?;
            txn.open_table(NEXT_SEQ)?;
            txn.open_table(DEAD)?;
            txn.open_table(DEAD_BY_CHAT)?;
            txn.open_table(DEAD_COUNT)?;
            txn.open_table(DEDUPE)?;
            txn.open_table(DEDUPE_BY_TIME)?;
            txn.open_table(DEDUPE_BATCHES)?;
            txn.open_table(REFS)?;
            txn.open_table(REFS_BY_TIME)?;
            txn.open_table(POSTS)?;
            txn.open_table(POSTS_BY_TIME)?;
            txn.open_table(QUARANTINE)?;
            txn.open_table(HOURLY)?;
            txn.open_table(RECENT)?;
            for old in OLD_REFS {
                txn.delete_table(redb::TableDefinition::<(&str, u64), ()>::new(old))?;
            }
            {
                let mut meta = txn.open_table(META)?;
                let version = meta.get(SCHEMA_KEY)?.map(|g| g.value());
                match version {
                    None => {
                        meta.insert(SCHEMA_KEY, SCHEMA_VERSION)?;
                    }
                    Some(SCHEMA_VERSION) => {}
                    Some(v) => {
                        return Err(Fail::Store(StoreError::Corrupt(format!(
                            "{} has schema version {v}; this relay reads version {SCHEMA_VERSION}",
                            self.path.display()
                        ))));
                    }
                }
            }
            txn.commit()?;
            Ok(())
        };
        let seen = || -> R<HashMap<u128, u64>> {
            let txn = db.begin_read()?;
            let mut seen = HashMap::new();
            for item in txn.open_table(DEDUPE)?.iter()? {
                let (key, at) = item?;
                seen.insert(hash_of(&[key.value().as_bytes()]), at.value());
            }
            for item in txn.open_table(DEDUPE_BATCHES)?.iter()? {
                let (key, hashes) = item?;
                let (at, _) = key.value();
                for h in hashes.value().chunks_exact(16) {
                    let mut b = [0u8; 16];
                    b.copy_from_slice(h);
                    seen.entry(u128::from_le_bytes(b)).or_insert(at);
                }
            }
            Ok(seen)
        };
        let seen = init().and_then(|()| seen()).map_err(|e| match e {
            Fail::Store(e) => e,
            Fail::Db(e) => {
                StoreError::Io(format!("cannot initialize {}: {e}", self.path.display()))
            }
        })?;
        Ok((db, seen))
    }

    /// Closes and reopens the database after redb latched an I/O failure.
    fn recover(&self) -> Result<(), StoreError> {
        let mut recovery = lock(&self.recovery);
        if !self.failed.load(Ordering::Acquire) {
            return Ok(()); // another call recovered meanwhile
        }
        if let Some(at) = recovery.last_attempt
            && at.elapsed() < REOPEN_INTERVAL
        {
            return Err(StoreError::Io(format!(
                "the database failed and is not reopened yet: {}",
                recovery.last_error
            )));
        }
        recovery.last_attempt = Some(Instant::now());
        // Waits for the calls in progress; closing releases the file lock
        // that the reopen takes.
        let mut slot = self.db.write().unwrap_or_else(PoisonError::into_inner);
        drop(slot.take());
        match self.open_db() {
            Ok((db, seen)) => {
                *slot = Some(db);
                *lock(&self.seen) = seen;
                self.failed.store(false, Ordering::Release);
                tracing::warn!(path = %self.path.display(), "store reopened after an I/O failure");
                Ok(())
            }
            Err(e) => {
                recovery.last_error = e.to_string();
                tracing::error!(path = %self.path.display(), error = %e, "cannot reopen the store");
                Err(e)
            }
        }
    }

    /// Runs `f` on the database, mapping errors to [`StoreError`].
    fn run<T>(&self, f: impl FnOnce(&Database) -> R<T>) -> Result<T, StoreError> {
        if self.failed.load(Ordering::Acquire) {
            self.recover()?;
        }
        // The read lock is released before `recovery` is locked (`recover`
        // takes them in the other order), but `failed` is set under it, so
        // that it can never mark a database reopened meanwhile.
        let result = {
            let slot = self.db.read().unwrap_or_else(PoisonError::into_inner);
            slot.as_ref().map(|db| {
                let result = f(db);
                if let Err(Fail::Db(e)) = &result
                    && latches(e)
                {
                    self.failed.store(true, Ordering::Release);
                }
                result
            })
        };
        let Some(result) = result else {
            return Err(StoreError::Io(format!(
                "the database is closed after an I/O failure: {}",
                lock(&self.recovery).last_error
            )));
        };
        match result {
            Ok(v) => Ok(v),
            Err(Fail::Store(e)) => Err(e),
            Err(Fail::Db(e)) => {
                if latches(&e) {
                    lock(&self.recovery).last_error = e.to_string();
                    tracing::error!(path = %self.path.display(), error = %e, "store I/O failure");
                }
                Err(StoreError::Io(e.to_string()))
            }
        }
    }

    fn read<T>(&self, f: impl FnOnce(&ReadTransaction) -> R<T>) -> Result<T, StoreError> {
        self.run(|db| {
            let txn = db.begin_read()?;
            f(&txn)
        })
    }

    /// Moves rows that a read found unreadable to the quarantine. A failure
    /// is only logged: the caller still answers with the readable rows, and
    /// the next read finds the bad ones again.
    fn set_aside_all(&self, bad: &[Unreadable]) {
        if bad.is_empty() {
            return;
        }
        let now = wall_ms();
        let r = self.write(Commit::Durable, |txn| {
            for b in bad {
                set_aside(txn, b, now)?;
            }
            Ok(())
        });
        if let Err(e) = r {
            tracing::warn!(error = %e, "cannot move unreadable rows to the quarantine");
        }
    }

    /// One write transaction; `f` failing aborts it.
    fn write<T>(
        &self,
        commit: Commit,
        f: impl FnOnce(&WriteTransaction) -> R<T>,
    ) -> Result<T, StoreError> {
        self.write_if(commit, |txn| f(txn).map(|out| (out, true)))
    }

    /// [`Self::write`] where `f` also says whether to commit: a
    /// transaction that changed nothing is aborted (no fsync).
    fn write_if<T>(
        &self,
        commit: Commit,
        f: impl FnOnce(&WriteTransaction) -> R<(T, bool)>,
    ) -> Result<T, StoreError> {
        self.write_as(|txn| f(txn).map(|(out, keep)| (out, keep.then_some(commit))))
    }

    /// [`Self::write`] where `f` decides how it commits (`None`: abort).
    fn write_as<T>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> R<(T, Option<Commit>)>,
    ) -> Result<T, StoreError> {
        self.run(|db| {
            let mut txn = db.begin_write()?;
            let (out, commit) = f(&txn)?;
            let Some(commit) = commit else {
                txn.abort()?;
                return Ok(out);
            };
            // Decided inside the transaction: writers are serialized by redb.
            let durable = commit == Commit::Durable || {
                let mut cheap = lock(&self.cheap);
                let promote = cheap.since_durable >= MAX_CHEAP_COMMITS
                    || cheap.last_durable.elapsed() >= MAX_CHEAP_AGE;
                if !promote {
                    cheap.since_durable += 1;
                }
                promote
            };
            txn.set_durability(if durable {
                Durability::Immediate
            } else {
                Durability::None
            })?;
            txn.commit()?;
            if durable {
                let mut cheap = lock(&self.cheap);
                cheap.since_durable = 0;
                cheap.last_durable = Instant::now();
            }
            Ok(out)
        })
    }
}

impl Store for RedbStore {
    fn accept(
        &self,
        batch: &[InboundEvent],
        now_ms: u64,
    ) -> Result<Vec<AcceptOutcome>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        // One accept at a time (the group commit's thread is the only caller
        // in the relay): nothing can store a key between the check below and
        // the commit. `seen` itself is not held across the commit, because a
        // reopen inside it reloads the window.
        let _one = lock(&self.accepting);
        let mut stored: Vec<u128> = Vec::with_capacity(2 * batch.len());
        let fresh: Vec<bool> = {
            let seen = lock(&self.seen);
            (batch.iter())
                .map(|ev| {
                    let keys = dedupe_hashes(&ev.dedupe);
                    // Keys of this batch's earlier events count as seen.
                    let dup =
                        (keys.iter().flatten()).any(|k| seen.contains_key(k) || stored.contains(k));
                    if !dup {
                        stored.extend(keys.iter().flatten());
                    }
                    !dup
                })
                .collect()
        };
        let out = self.write(Commit::Durable, |txn| {
            let mut inbox = txn.open_table(INBOX)?;
            let mut due = txn.open_table(INBOX_DUE)?;
            let mut meta = txn.open_table(META)?;
            let mut out = Vec::with_capacity(batch.len());
            let mut first_id = None;
            for (ev, fresh) in batch.iter().zip(&fresh) {
                if !fresh {
                    out.push(AcceptOutcome::Duplicate);
                    continue;
                }
                let id = next_meta(&mut meta, NEXT_INBOX_ID)?;
                let record = encode(&StoredEventRef {
                    id,
                    event: &ev.event,
                    due_at_ms: ev.due_at_ms,
                    received_at_ms: ev.received_at_ms,
                })?;
                inbox.insert(id, (ev.due_at_ms, record.as_slice()))?;
                due.insert((ev.due_at_ms, id), ())?;
                first_id.get_or_insert(id);
                out.push(AcceptOutcome::Stored(id));
            }
            if let Some(first) = first_id {
                let bytes: Vec<u8> = stored.iter().flat_map(|k| k.to_le_bytes()).collect();
                txn.open_table(DEDUPE_BATCHES)?
                    .insert((now_ms, first), bytes.as_slice())?;
            }
            Ok(out)
        })?;
        let mut seen = lock(&self.seen);
        for k in stored {
            seen.insert(k, now_ms);
        }
        Ok(out)
    }

    fn due_events(&self, now_ms: u64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        let (out, bad) = self.read(|txn| {
            let due = txn.open_table(INBOX_DUE)?;
            let inbox = txn.open_table(INBOX)?;
            let mut out = Vec::new();
            let mut bad = Vec::new();
            for item in due.range(..=(now_ms, u64::MAX))? {
                if out.len() >= limit {
                    break;
                }
                let (key, _) = item?;
                let (_, id) = key.value();
                // An index row always has its inbox row (same transactions).
                if let Some(row) = inbox.get(id)? {
                    let bytes = row.value().1;
                    match decode_event(bytes) {
                        Ok(e) => out.push(e),
                        Err(e) => bad.push(Unreadable::new(Row::Inbox { id }, bytes, e)),
                    }
                }
            }
            Ok((out, bad))
        })?;
        self.set_aside_all(&bad);
        Ok(out)
    }

    fn update_pending(
        &self,
        f: &mut dyn FnMut(&mut StoredEvent) -> PendingChange,
    ) -> Result<usize, StoreError> {
        self.write_if(Commit::Durable, |txn| {
            // (id, due at as stored, new row: None = cancel, new due at)
            let mut changes: Vec<(u64, u64, Option<Vec<u8>>, u64)> = Vec::new();
            let mut bad = Vec::new();
            {
                let inbox = txn.open_table(INBOX)?;
                for item in inbox.iter()? {
                    let (key, row) = item?;
                    let id = key.value();
                    let (due_at, bytes) = row.value();
                    let mut e = match decode_event(bytes) {
                        Ok(e) => e,
                        Err(e) => {
                            bad.push(Unreadable::new(Row::Inbox { id }, bytes, e));
                            continue;
                        }
                    };
                    match f(&mut e) {
                        PendingChange::Keep => {}
                        PendingChange::Cancel => changes.push((id, due_at, None, due_at)),
                        PendingChange::Update => {
                            let record = encode(&StoredEventRef {
                                id,
                                event: &e.event,
                                due_at_ms: e.due_at_ms,
                                received_at_ms: e.received_at_ms,
                            })?;
                            // Unchanged after all: nothing to write.
                            if record != bytes || e.due_at_ms != due_at {
                                changes.push((id, due_at, Some(record), e.due_at_ms));
                            }
                        }
                    }
                }
            }
            {
                let mut inbox = txn.open_table(INBOX)?;
                let mut due = txn.open_table(INBOX_DUE)?;
                for (id, due_at, record, new_due) in &changes {
                    match record {
                        None => {
                            inbox.remove(*id)?;
                            due.remove((*due_at, *id))?;
                        }
                        Some(record) => {
                            inbox.insert(*id, (*new_due, record.as_slice()))?;
                            if new_due != due_at {
                                due.remove((*due_at, *id))?;
                                due.insert((*new_due, *id), ())?;
                            }
                        }
                    }
                }
            }
            let now = wall_ms();
            for b in &bad {
                set_aside(txn, b, now)?;
            }
            Ok((changes.len(), !changes.is_empty() || !bad.is_empty()))
        })
    }

    fn route_many(&self, routed: &[Routed], now_ms: u64) -> Result<(), StoreError> {
        if routed.is_empty() {
            return Ok(());
        }
        // Cheap: a lost route is routed again from the inbox (module docs).
        self.write(Commit::Cheap, |txn| {
            let mut inbox = txn.open_table(INBOX)?;
            let mut due = txn.open_table(INBOX_DUE)?;
            let mut queues = Queues::open(txn)?;
            for Routed {
                id,
                revision,
                deliveries,
            } in routed
            {
                let current = match inbox.get(*id)? {
                    Some(g) => {
                        let (due_at, bytes) = g.value();
                        (due_at, revision_of(bytes))
                    }
                    None => continue, // already routed (or cancelled)
                };
                let (due_at, now_revision) = current;
                // Changed since it was read (an edit, late tags): routed
                // again as it is now, never over the change.
                if revision.is_some_and(|r| r != now_revision) {
                    continue;
                }
                inbox.remove(*id)?;
                due.remove((due_at, *id))?;
                let mut record: Option<(PostKey, PostRecord)> = None;
                for d in deliveries {
                    let seq = queues.append(d, now_ms)?;
                    if let Payload::Event { event, filter } = &d.payload
                        && PostKey::opens(event)
                        && let Some(key) = PostKey::of(event)
                    {
                        let (_, r) = record.get_or_insert_with(|| {
                            let r = PostRecord {
                                event: (**event).clone(),
                                chats: vec![],
                                deleted: false,
                            };
                            (key, r)
                        });
                        r.chats.push(PostChat {
                            chat: d.chat.clone(),
                            seq,
                            filter: *filter,
                            dropped: false,
                        });
                    }
                }
                if let Some((key, r)) = record {
                    put_post(txn, &key, &r, now_ms)?;
                }
            }
            Ok(())
        })
    }

    fn post_record(&self, key: &PostKey) -> Result<Option<PostRecord>, StoreError> {
        let read = self.read(|txn| {
            let posts = txn.open_table(POSTS)?;
            let row = posts.get((key.forum.as_str(), key.topic, key.number))?;
            Ok(row.map(|r| {
                let bytes = r.value().1;
                decode(bytes).map_err(|e| {
                    let row = Row::Post {
                        forum: key.forum.clone(),
                        topic: key.topic,
                        number: key.number,
                    };
                    Unreadable::new(row, bytes, e)
                })
            }))
        })?;
        match read {
            None => Ok(None),
            Some(Ok(r)) => Ok(Some(r)),
            // Forgotten, as if remembered too long ago: later edits and
            // deletes of the post are ignored.
            Some(Err(bad)) => {
                self.set_aside_all(&[bad]);
                Ok(None)
            }
        }
    }

    fn follow_up(
        &self,
        id: u64,
        key: &PostKey,
        mut record: Option<PostRecord>,
        steps: &[FollowUp],
        now_ms: u64,
    ) -> Result<Vec<String>, StoreError> {
        // Held until the commit: see `heads`.
        let claims = lock(&self.claims);
        self.write(Commit::Durable, |txn| {
            let mut inbox = txn.open_table(INBOX)?;
            let Some(due_at) = inbox.remove(id)?.map(|g| g.value().0) else {
                return Ok(vec![]); // already done
            };
            txn.open_table(INBOX_DUE)?.remove((due_at, id))?;
            let mut queues = Queues::open(txn)?;
            let mut changed = Vec::new();
            for step in steps {
                let chat = step.chat.as_str();
                let waiting = match step.queued {
                    Some(seq) if claims.get(chat).is_none_or(|&c| seq > c) => {
                        queues.waiting(txn, chat, seq, now_ms)?
                    }
                    _ => None,
                };
                if let Some(mut d) = waiting {
                    match &step.if_queued {
                        Some(payload) => {
                            d.payload = payload.clone();
                            queues.queue.insert((chat, d.seq), encode(&d)?.as_slice())?;
                        }
                        None => {
                            queues.remove(chat, d.seq)?;
                            if let Some(c) = record.as_mut().and_then(|r| r.chat_mut(chat)) {
                                c.dropped = true;
                            }
                        }
                    }
                    changed.push(step.chat.clone());
                } else if let Some(payload) = &step.otherwise {
                    let new = NewDelivery {
                        chat: step.chat.clone(),
                        payload: payload.clone(),
                    };
                    let seq = queues.append(&new, now_ms)?;
                    // A re-post of the message moves the record's seq; an
                    // announcement beside it (a solved note) does not.
                    if let Payload::Event { event, .. } = payload
                        && PostKey::of(event).as_ref() == Some(key)
                        && let Some(c) = record.as_mut().and_then(|r| r.chat_mut(chat))
                    {
                        c.seq = seq;
                        c.dropped = false;
                    }
                    changed.push(step.chat.clone());
                }
            }
            if let Some(r) = &record {
                put_post(txn, key, r, now_ms)?;
            }
            Ok(changed)
        })
    }

    fn enqueue(&self, delivery: &NewDelivery, now_ms: u64) -> Result<u64, StoreError> {
        self.write(Commit::Durable, |txn| {
            Queues::open(txn)?.append(delivery, now_ms)
        })
    }

    fn head(&self, chat: &str) -> Result<Option<QueuedDelivery>, StoreError> {
        Ok(self.read_queue(chat, 1)?.into_iter().next())
    }

    fn heads(&self, chat: &str, limit: usize) -> Result<Vec<QueuedDelivery>, StoreError> {
        // Claimed before the read, under the lock `follow_up` holds until
        // it commits: a follow-up either committed before this read (and is
        // seen) or sees the claim (and queues behind).
        let mut claims = lock(&self.claims);
        claims.insert(chat.to_string(), u64::MAX);
        let heads = self.read_queue(chat, limit);
        match heads.as_ref().ok().and_then(|h| h.last()) {
            Some(last) => claims.insert(chat.to_string(), last.seq),
            None => claims.remove(chat),
        };
        heads
    }

    fn ack_many(&self, chat: &str, acks: &[Ack]) -> Result<(), StoreError> {
        if acks.is_empty() {
            return Ok(());
        }
        // Cheap: a lost ack re-sends after a crash (module docs); the refs
        // and the activity go with it, so they never name a message the
        // queue forgot. Durable when it empties the chat's queue: a relay
        // between bursts then has nothing to re-send after a crash, and
        // under load this costs one fsync per drained batch at most.
        self.write_as(|txn| {
            let mut queues = Queues::open(txn)?;
            let mut refs = txn.open_table(REFS)?;
            let mut by_time = txn.open_table(REFS_BY_TIME)?;
            let mut settled = Vec::with_capacity(acks.len());
            for Ack {
                seq,
                refs: changes,
                record,
            } in acks
            {
                // Already acked (a re-sent batch): counted the first time.
                if queues.remove(chat, *seq)?.is_some() {
                    settled.push(record);
                }
                for change in changes {
                    let (topic, number, new) = match change {
                        RefChange::Put { topic, number, r } => (*topic, *number, Some(r)),
                        RefChange::Remove { topic, number } => (*topic, *number, None),
                    };
                    let previous = match new {
                        Some(r) => refs.insert(
                            (chat, topic, number),
                            (r.stored_at_ms, encode(r)?.as_slice()),
                        )?,
                        None => refs.remove((chat, topic, number))?,
                    }
                    .map(|g| g.value().0);
                    if let Some(at) = previous {
                        by_time.remove((at, chat, topic, number))?;
                    }
                    if let Some(r) = new {
                        by_time.insert((r.stored_at_ms, chat, topic, number), ())?;
                    }
                }
            }
            // `bump` drops a chat's depth row at zero.
            let drained = queues.depth.get(chat)?.is_none();
            drop(queues);
            record_activity(txn, chat, settled)?;
            let commit = if drained {
                Commit::Durable
            } else {
                Commit::Cheap
            };
            Ok(((), Some(commit)))
        })
    }

    fn reschedule(
        &self,
        chat: &str,
        seq: u64,
        next_attempt_at_ms: u64,
        error: &str,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        // Cheap: a lost reschedule retries early after a crash (module docs).
        self.write(Commit::Cheap, |txn| {
            let mut queues = Queues::open(txn)?;
            let Some(bytes) = (queues.queue.get((chat, seq))?).map(|g| g.value().to_vec()) else {
                return Ok(()); // acked or dead-lettered meanwhile
            };
            let mut d: QueuedDelivery = match decode(&bytes) {
                Ok(d) => d,
                Err(e) => return queues.set_aside(txn, chat, seq, bytes, e, now_ms),
            };
            d.attempts = d.attempts.saturating_add(1);
            d.next_attempt_at_ms = next_attempt_at_ms;
            d.last_error = Some(error.to_string());
            queues.queue.insert((chat, seq), encode(&d)?.as_slice())?;
            drop(queues);
            let result = AttemptResult::Retried {
                reason: error.to_string(),
                next_attempt_at_ms,
            };
            record_activity(txn, chat, [&DeliveryRecord::of(&d, now_ms, result)])?;
            Ok(())
        })
    }

    fn dead_letter(
        &self,
        chat: &str,
        seq: u64,
        reason: &str,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.write(Commit::Durable, |txn| {
            let mut queues = Queues::open(txn)?;
            let Some(bytes) = queues.remove(chat, seq)? else {
                return Ok(()); // already acked or dead-lettered
            };
            let delivery: QueuedDelivery = match decode(&bytes) {
                Ok(d) => d,
                Err(error) => {
                    // Already removed from the queue: kept aside instead.
                    let row = Row::Queue {
                        chat: chat.to_string(),
                        seq,
                    };
                    let bad = Unreadable {
                        row,
                        raw: bytes,
                        error,
                    };
                    return put_quarantine(txn, &bad, now_ms);
                }
            };
            drop(queues);
            let result = AttemptResult::DeadLettered {
                reason: reason.to_string(),
            };
            record_activity(txn, chat, [&DeliveryRecord::of(&delivery, now_ms, result)])?;
            let id = next_meta(&mut txn.open_table(META)?, NEXT_DEAD_ID)?;
            let letter = DeadLetter {
                id,
                delivery,
                reason: reason.to_string(),
                failed_at_ms: now_ms,
            };
            txn.open_table(DEAD)?
                .insert(id, encode(&letter)?.as_slice())?;
            txn.open_table(DEAD_BY_CHAT)?.insert((chat, id), ())?;
            bump(&mut txn.open_table(DEAD_COUNT)?, chat, 1)?;
            Ok(())
        })
    }

    fn queue_depths(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.read(|txn| counters(&txn.open_table(QUEUE_DEPTH)?))
    }

    fn dead_letters(
        &self,
        chat: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let (out, bad) = self.read(|txn| {
            let dead = txn.open_table(DEAD)?;
            let mut out: Vec<DeadLetter> = Vec::new();
            let mut bad = Vec::new();
            let take = |out: &mut Vec<DeadLetter>, bad: &mut Vec<Unreadable>, id, bytes: &[u8]| {
                match decode::<DeadLetter>(bytes) {
                    Ok(mut d) => {
                        d.id = id;
                        out.push(d)
                    }
                    Err(e) => {
                        let chat = chat.map(str::to_string);
                        bad.push(Unreadable::new(Row::Dead { id, chat }, bytes, e));
                    }
                }
            };
            match chat {
                None => {
                    for item in dead.iter()?.rev() {
                        if out.len() >= limit {
                            break;
                        }
                        let (key, row) = item?;
                        take(&mut out, &mut bad, key.value(), row.value());
                    }
                }
                Some(chat) => {
                    let index = txn.open_table(DEAD_BY_CHAT)?;
                    for item in index.range((chat, 0)..=(chat, u64::MAX))?.rev() {
                        if out.len() >= limit {
                            break;
                        }
                        let (key, _) = item?;
                        let (_, id) = key.value();
                        if let Some(row) = dead.get(id)? {
                            take(&mut out, &mut bad, id, row.value());
                        }
                    }
                }
            }
            Ok((out, bad))
        })?;
        self.set_aside_all(&bad);
        Ok(out)
    }

    fn dead_letter_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.read(|txn| counters(&txn.open_table(DEAD_COUNT)?))
    }

    fn resend_dead_letters(
        &self,
        chat: &str,
        ids: Option<&[u64]>,
        now_ms: u64,
    ) -> Result<u64, StoreError> {
        self.write(Commit::Durable, |txn| {
            let chosen = dead_ids(txn, chat, ids)?;
            let mut letters = Vec::with_capacity(chosen.len());
            {
                let dead = txn.open_table(DEAD)?;
                for id in &chosen {
                    // An unreadable row stays where it is: the listing
                    // quarantines it, and nothing here can send it.
                    if let Some(row) = dead.get(*id)?
                        && let Ok(letter) = decode::<DeadLetter>(row.value())
                    {
                        letters.push((*id, letter));
                    }
                }
            }
            let mut queues = Queues::open(txn)?;
            for (_, letter) in &letters {
                queues.requeue(&letter.delivery, now_ms)?;
            }
            drop(queues);
            let rows: Vec<(u64, Option<String>)> = letters
                .iter()
                .map(|(id, _)| (*id, Some(chat.to_string())))
                .collect();
            remove_dead(txn, &rows)
        })
    }

    fn drop_dead_letters(&self, chat: &str, ids: Option<&[u64]>) -> Result<u64, StoreError> {
        self.write(Commit::Durable, |txn| {
            let rows: Vec<(u64, Option<String>)> = dead_ids(txn, chat, ids)?
                .into_iter()
                .map(|id| (id, Some(chat.to_string())))
                .collect();
            remove_dead(txn, &rows)
        })
    }

    fn sync(&self) -> Result<(), StoreError> {
        if lock(&self.cheap).since_durable == 0 {
            return Ok(());
        }
        self.write(Commit::Durable, |_| Ok(()))
    }

    fn prune(&self, before_ms: u64, refs_before_ms: u64) -> Result<(), StoreError> {
        self.write(Commit::Durable, |txn| {
            let mut dedupe = txn.open_table(DEDUPE)?;
            let mut by_time = txn.open_table(DEDUPE_BY_TIME)?;
            let mut old = Vec::new();
            for item in by_time.range(..(before_ms, ""))? {
                let (key, _) = item?;
                let (at, k) = key.value();
                old.push((at, k.to_string()));
            }
            for (at, key) in &old {
                by_time.remove((*at, key.as_str()))?;
                let current = dedupe.get(key.as_str())?.map(|g| g.value());
                if current == Some(*at) {
                    dedupe.remove(key.as_str())?;
                }
            }
            let mut batches = txn.open_table(DEDUPE_BATCHES)?;
            let old: Vec<(u64, u64)> = (batches.range(..(before_ms, 0))?)
                .map(|item| item.map(|(k, _)| k.value()))
                .collect::<Result<_, _>>()?;
            for key in old {
                batches.remove(key)?;
            }

            prune_timed(txn, REFS, REFS_BY_TIME, refs_before_ms)?;
            prune_timed(txn, POSTS, POSTS_BY_TIME, refs_before_ms)?;
            Ok(())
        })?;
        lock(&self.seen).retain(|_, at| *at >= before_ms);
        Ok(())
    }

    fn message_ref(
        &self,
        chat: &str,
        topic: u64,
        number: u64,
    ) -> Result<Option<MessageRef>, StoreError> {
        let read = self.read(|txn| {
            let refs = txn.open_table(REFS)?;
            let row = refs.get((chat, topic, number))?;
            Ok(row.map(|r| {
                let bytes = r.value().1;
                decode(bytes).map_err(|e| {
                    let row = Row::Ref {
                        chat: chat.to_string(),
                        topic,
                        number,
                    };
                    Unreadable::new(row, bytes, e)
                })
            }))
        })?;
        match read {
            None => Ok(None),
            Some(Ok(r)) => Ok(Some(r)),
            // As if never recorded: a reply posts at the top level, an
            // edit or delete of that message is not sent.
            Some(Err(bad)) => {
                self.set_aside_all(&[bad]);
                Ok(None)
            }
        }
    }

    fn prune_dead_letters(&self, before_ms: u64, max_per_chat: u64) -> Result<u64, StoreError> {
        let mut total = 0u64;
        // By age: dead letters are numbered in the order they failed, so
        // the oldest are first and the first young one ends the pass.
        loop {
            let (removed, more) = self.write_if(Commit::Durable, |txn| {
                let mut old: Vec<(u64, Option<String>)> = Vec::new();
                let mut bad = Vec::new();
                let mut more = false;
                {
                    let dead = txn.open_table(DEAD)?;
                    for item in dead.iter()? {
                        if old.len() >= PRUNE_ROWS {
                            more = true;
                            break;
                        }
                        let (key, row) = item?;
                        let id = key.value();
                        match decode::<DeadMeta>(row.value()) {
                            Ok(m) if m.failed_at_ms < before_ms => {
                                old.push((id, Some(m.delivery.chat)));
                            }
                            Ok(_) => break,
                            Err(e) => {
                                let at = Row::Dead { id, chat: None };
                                bad.push(Unreadable::new(at, row.value(), e));
                            }
                        }
                    }
                }
                let removed = remove_dead(txn, &old)?;
                let now = wall_ms();
                for b in &bad {
                    set_aside(txn, b, now)?;
                }
                Ok(((removed, more), removed > 0 || !bad.is_empty()))
            })?;
            total += removed;
            if !more {
                break;
            }
        }
        // By count: a chat's oldest beyond its newest `max_per_chat`.
        loop {
            let (removed, more) = self.write_if(Commit::Durable, |txn| {
                let over: Vec<(String, u64)> = counters(&txn.open_table(DEAD_COUNT)?)?
                    .into_iter()
                    .filter(|(_, n)| *n > max_per_chat)
                    .map(|(c, n)| (c, n - max_per_chat))
                    .collect();
                let mut old: Vec<(u64, Option<String>)> = Vec::new();
                let mut more = false;
                {
                    let index = txn.open_table(DEAD_BY_CHAT)?;
                    'chats: for (chat, excess) in &over {
                        let range = index.range((chat.as_str(), 0)..=(chat.as_str(), u64::MAX))?;
                        for item in range.take(usize::try_from(*excess).unwrap_or(usize::MAX)) {
                            if old.len() >= PRUNE_ROWS {
                                more = true;
                                break 'chats;
                            }
                            let (key, _) = item?;
                            old.push((key.value().1, Some(chat.clone())));
                        }
                    }
                }
                let removed = remove_dead(txn, &old)?;
                Ok(((removed, more), removed > 0))
            })?;
            total += removed;
            if !more {
                break;
            }
        }
        Ok(total)
    }

    fn hourly_counts(&self, since_ms: u64) -> Result<Vec<HourCount>, StoreError> {
        let mut out = self.read(|txn| {
            let mut out = Vec::new();
            for item in txn.open_table(HOURLY)?.range((since_ms / HOUR_MS, "")..)? {
                let (key, value) = item?;
                let (hour, chat) = key.value();
                let (delivered, failed, retried) = value.value();
                out.push(HourCount {
                    chat: chat.to_string(),
                    hour,
                    delivered,
                    failed,
                    retried,
                });
            }
            Ok(out)
        })?;
        out.sort_by(|a, b| (&a.chat, a.hour).cmp(&(&b.chat, b.hour)));
        Ok(out)
    }

    fn recent_deliveries(
        &self,
        chat: &str,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let (out, bad) = self.read(|txn| {
            let (mut out, mut bad) = (Vec::new(), Vec::new());
            let recent = txn.open_table(RECENT)?;
            for item in recent.range((chat, 0)..=(chat, u64::MAX))?.rev() {
                if out.len() >= limit {
                    break;
                }
                let (key, row) = item?;
                match decode::<DeliveryRecord>(row.value()) {
                    Ok(r) => out.push(r),
                    Err(e) => {
                        let row_key = Row::Recent {
                            chat: chat.to_string(),
                            n: key.value().1,
                        };
                        bad.push(Unreadable::new(row_key, row.value(), e));
                    }
                }
            }
            Ok((out, bad))
        })?;
        self.set_aside_all(&bad);
        Ok(out)
    }

    fn prune_hourly_counts(&self, before_ms: u64) -> Result<(), StoreError> {
        self.write_if(Commit::Durable, |txn| {
            let mut hourly = txn.open_table(HOURLY)?;
            let old: Vec<(u64, String)> = (hourly.range(..(before_ms / HOUR_MS, ""))?)
                .map(|item| item.map(|(k, _)| (k.value().0, k.value().1.to_string())))
                .collect::<Result<_, _>>()?;
            for (hour, chat) in &old {
                hourly.remove((*hour, chat.as_str()))?;
            }
            Ok(((), !old.is_empty()))
        })
    }

    // One relay opens the file (redb locks it), so it owns every chat:
    // leases are granted and never lost.
    fn claim(&self, _chat: &str, _ttl: Duration) -> Result<Option<Lease>, StoreError> {
        Ok(Some(Lease { epoch: 1 }))
    }

    fn renew(&self, _chat: &str, _ttl: Duration) -> Result<Lease, StoreError> {
        Ok(Lease { epoch: 1 })
    }

    fn release(&self, _chat: &str) -> Result<(), StoreError> {
        Ok(())
    }

    fn quarantined(&self) -> Result<QuarantineSummary, StoreError> {
        self.read(|txn| {
            let q = txn.open_table(QUARANTINE)?;
            let mut newest = Vec::new();
            for item in q.iter()?.rev().take(QUARANTINE_NEWEST) {
                let (_, row) = item?;
                let (at_ms, table, key, error, _) = row.value();
                newest.push(QuarantinedRow {
                    table: table.to_string(),
                    key: key.to_string(),
                    error: error.to_string(),
                    at_ms,
                });
            }
            Ok(QuarantineSummary {
                count: q.len()?,
                newest,
            })
        })
    }
}

/// What pruning reads of a dead letter (the rest of the row is skipped).
#[derive(Deserialize)]
struct DeadMeta {
    delivery: DeadChat,
    #[serde(default)]
    failed_at_ms: u64,
}

#[derive(Deserialize)]
struct DeadChat {
    chat: String,
}

/// Removes dead letters with their index rows and counts.
/// The ids of `chat`'s dead letters, oldest first: all, or those of `ids`
/// that are the chat's.
fn dead_ids(txn: &WriteTransaction, chat: &str, ids: Option<&[u64]>) -> R<Vec<u64>> {
    let index = txn.open_table(DEAD_BY_CHAT)?;
    let mut out = Vec::new();
    for item in index.range((chat, 0)..=(chat, u64::MAX))? {
        let (key, _) = item?;
        let (_, id) = key.value();
        if ids.is_none_or(|ids| ids.contains(&id)) {
            out.push(id);
        }
    }
    Ok(out)
}

fn remove_dead(txn: &WriteTransaction, rows: &[(u64, Option<String>)]) -> R<u64> {
    let mut dead = txn.open_table(DEAD)?;
    let mut index = txn.open_table(DEAD_BY_CHAT)?;
    let mut counts = txn.open_table(DEAD_COUNT)?;
    let mut removed = 0;
    for (id, chat) in rows {
        if dead.remove(*id)?.is_none() {
            continue;
        }
        removed += 1;
        if let Some(chat) = chat
            && index.remove((chat.as_str(), *id))?.is_some()
        {
            bump(&mut counts, chat, -1)?;
        }
    }
    Ok(removed)
}

impl RedbStore {
    /// Reads up to `limit` readable deliveries of a chat's queue, in order;
    /// unreadable ones met on the way are moved to the quarantine.
    fn read_queue(&self, chat: &str, limit: usize) -> Result<Vec<QueuedDelivery>, StoreError> {
        let (out, bad) = self.read(|txn| {
            let queue = txn.open_table(QUEUE)?;
            let mut out: Vec<QueuedDelivery> = Vec::with_capacity(limit.min(64));
            let mut bad = Vec::new();
            for item in queue.range((chat, 0)..=(chat, u64::MAX))? {
                if out.len() >= limit {
                    break;
                }
                let (key, row) = item?;
                let (_, seq) = key.value();
                match decode(row.value()) {
                    Ok(d) => out.push(d),
                    Err(e) => {
                        let row_at = Row::Queue {
                            chat: chat.to_string(),
                            seq,
                        };
                        bad.push(Unreadable::new(row_at, row.value(), e));
                    }
                }
            }
            Ok((out, bad))
        })?;
        self.set_aside_all(&bad);
        Ok(out)
    }
}

/// Stores a post record, keeping the time index in step.
fn put_post(txn: &WriteTransaction, key: &PostKey, r: &PostRecord, now_ms: u64) -> R<()> {
    let k = (key.forum.as_str(), key.topic, key.number);
    let previous = txn
        .open_table(POSTS)?
        .insert(k, (now_ms, encode(r)?.as_slice()))?
        .map(|g| g.value().0);
    let mut by_time = txn.open_table(POSTS_BY_TIME)?;
    if let Some(at) = previous {
        by_time.remove((at, k.0, k.1, k.2))?;
    }
    by_time.insert((now_ms, k.0, k.1, k.2), ())?;
    Ok(())
}

/// Removes row `k` of a (name, u64, u64)-keyed timed table (and its time
/// index entry) if it still holds `raw`; false if it changed or is gone.
fn remove_timed(
    txn: &WriteTransaction,
    table: TableDefinition<(&str, u64, u64), (u64, &[u8])>,
    index: TableDefinition<(u64, &str, u64, u64), ()>,
    k: (&str, u64, u64),
    raw: &[u8],
) -> R<bool> {
    let mut rows = txn.open_table(table)?;
    let at = match rows.get(k)? {
        Some(g) if g.value().1 == raw => g.value().0,
        _ => return Ok(false),
    };
    rows.remove(k)?;
    txn.open_table(index)?.remove((at, k.0, k.1, k.2))?;
    Ok(true)
}

/// Drops the rows of a (name, u64, u64)-keyed table stored before `before_ms`.
fn prune_timed(
    txn: &WriteTransaction,
    table: TableDefinition<(&str, u64, u64), (u64, &[u8])>,
    index: TableDefinition<(u64, &str, u64, u64), ()>,
    before_ms: u64,
) -> R<()> {
    let mut rows = txn.open_table(table)?;
    let mut by_time = txn.open_table(index)?;
    let mut old = Vec::new();
    for item in by_time.range(..(before_ms, "", 0, 0))? {
        let (key, _) = item?;
        let (at, name, a, b) = key.value();
        old.push((at, name.to_string(), a, b));
    }
    for (at, name, a, b) in &old {
        by_time.remove((*at, name.as_str(), *a, *b))?;
        let current = rows.get((name.as_str(), *a, *b))?.map(|g| g.value().0);
        if current == Some(*at) {
            rows.remove((name.as_str(), *a, *b))?;
        }
    }
    Ok(())
}

/// Writes a chat's activity rows for `records`, in the transaction of the
/// ack, reschedule or dead letter they record: each counted in its hour
/// (one row written per hour, however many records) and appended to the
/// chat's log, dropping what falls beyond [`RECENT_PER_CHAT`] (once, after
/// the appends).
fn record_activity<'r>(
    txn: &WriteTransaction,
    chat: &str,
    records: impl IntoIterator<Item = &'r DeliveryRecord>,
) -> R<()> {
    let mut recent = txn.open_table(RECENT)?;
    let mut hours: Vec<(u64, [u64; 3])> = Vec::new();
    let mut next: Option<u64> = None;
    for r in records {
        let slot = match r.result {
            AttemptResult::Sent { .. } => Some(0),
            AttemptResult::DeadLettered { .. } => Some(1),
            AttemptResult::Retried { .. } => Some(2),
            AttemptResult::Skipped { .. } => None,
        };
        if let Some(slot) = slot {
            let hour = r.at_ms / HOUR_MS;
            match hours.iter_mut().find(|(h, _)| *h == hour) {
                Some((_, c)) => c[slot] += 1,
                None => {
                    let mut c = [0; 3];
                    c[slot] = 1;
                    hours.push((hour, c));
                }
            }
        }
        let n = match next {
            Some(n) => n,
            None => match recent.range((chat, 0)..=(chat, u64::MAX))?.next_back() {
                Some(item) => item?.0.value().1.saturating_add(1),
                None => 1,
            },
        };
        recent.insert((chat, n), encode(r)?.as_slice())?;
        next = Some(n.saturating_add(1));
    }
    let Some(next) = next else {
        return Ok(());
    };
    // Usually as many rows as were appended: those that fell out of the window.
    let first_kept = next.saturating_sub(RECENT_PER_CHAT);
    let old: Vec<u64> = (recent.range((chat, 0)..(chat, first_kept))?)
        .map(|item| item.map(|(k, _)| k.value().1))
        .collect::<Result<_, _>>()?;
    for k in old {
        recent.remove((chat, k))?;
    }
    let mut hourly = txn.open_table(HOURLY)?;
    for (hour, [d, f, t]) in hours {
        let (od, of, ot) = hourly.get((hour, chat))?.map_or((0, 0, 0), |g| g.value());
        let counts = (
            od.saturating_add(d),
            of.saturating_add(f),
            ot.saturating_add(t),
        );
        hourly.insert((hour, chat), counts)?;
    }
    Ok(())
}

/// Reads a per-chat counter table (one row per chat).
fn counters(table: &impl ReadableTable<&'static str, u64>) -> R<Vec<(String, u64)>> {
    let mut out = Vec::new();
    for item in table.iter()? {
        let (chat, n) = item?;
        out.push((chat.value().to_string(), n.value()));
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use redb::StorageBackend;
    use redb::backends::InMemoryBackend;

    use super::*;
    pub(crate) use crate::delivery::store_suite::inbound;
    use crate::delivery::store_suite::{
        Fixture, Spoil, delivery, event, put_ref, quarantine_keys, sent, stored, test_delivery,
    };

    fn temp() -> (tempfile::TempDir, RedbStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&dir.path().join("relay.redb")).unwrap();
        (dir, store)
    }

    /// A redb file in a temporary directory (below a directory that
    /// `open` creates).
    pub(crate) struct RedbFixture {
        path: std::path::PathBuf,
        store: Option<RedbStore>,
        _dir: tempfile::TempDir,
    }

    pub(crate) fn fixture(_test: &str) -> Option<RedbFixture> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dir/relay.redb");
        let store = Some(RedbStore::open(&path).unwrap());
        Some(RedbFixture {
            path,
            store,
            _dir: dir,
        })
    }

    impl RedbFixture {
        fn redb(&self) -> &RedbStore {
            self.store.as_ref().unwrap()
        }
    }

    impl Fixture for RedbFixture {
        fn store(&self) -> &dyn Store {
            self.redb()
        }

        fn queued(&self, chat: &str) -> Vec<u64> {
            seqs_of(self.redb(), chat)
        }

        fn reopen(&mut self) {
            // Closed first: the file is locked while open.
            drop(self.store.take());
            self.store = Some(RedbStore::open(&self.path).unwrap());
        }

        fn spoil(&self, row: Spoil<'_>, bytes: &[u8]) {
            self.redb()
                .write(Commit::Durable, |txn| {
                    match row {
                        Spoil::Inbox(id) => {
                            let mut inbox = txn.open_table(INBOX)?;
                            let due_at = inbox.get(id)?.map(|g| g.value().0).unwrap_or(0);
                            inbox.insert(id, (due_at, bytes))?;
                        }
                        Spoil::Queue(chat, seq) => {
                            txn.open_table(QUEUE)?.insert((chat, seq), bytes)?;
                        }
                        Spoil::Recent(chat, n) => {
                            txn.open_table(RECENT)?.insert((chat, n), bytes)?;
                        }
                    }
                    Ok(())
                })
                .unwrap();
        }

        fn first_quarantined_raw(&self) -> Option<Vec<u8>> {
            self.redb()
                .read(|txn| {
                    let q = txn.open_table(QUARANTINE)?;
                    let first = q.first()?.map(|(_, v)| v.value().4.to_vec());
                    Ok(first)
                })
                .unwrap()
        }
    }

    mod suite {
        crate::delivery::store_suite::store_suite!(super::fixture);
    }

    /// The seqs queued for `chat`, without draining them.
    fn seqs_of(store: &RedbStore, chat: &str) -> Vec<u64> {
        store
            .read(|txn| {
                let queue = txn.open_table(QUEUE)?;
                let mut out = Vec::new();
                for item in queue.range((chat, 0)..=(chat, u64::MAX))? {
                    out.push(item?.0.value().1);
                }
                Ok(out)
            })
            .unwrap()
    }

    #[test]
    fn one_relay_owns_every_chat_so_leases_are_always_granted() {
        let (_dir, store) = temp();
        let ttl = Duration::from_secs(1);
        assert_eq!(store.claim("a", ttl).unwrap(), Some(Lease { epoch: 1 }));
        assert_eq!(store.renew("a", ttl).unwrap(), Lease { epoch: 1 });
        store.release("a").unwrap();
        store.enqueue(&test_delivery("a"), 1).unwrap();
        store.ack("a", sent(1, &[])).unwrap();
        assert!(store.queue_depths().unwrap().is_empty());
    }

    #[test]
    fn an_unreadable_dead_letter_met_by_pruning_is_set_aside() {
        // PostgreSQL prunes by its columns and never reads the row: redb
        // decodes it on the way, so this is redb's own.
        let (_dir, store) = temp();
        for (chat, at) in [("a", 30), ("a", 40), ("b", 60)] {
            let seq = store.enqueue(&test_delivery(chat), 1).unwrap();
            store
                .dead_letter(chat, seq, &format!("at {at}"), at)
                .unwrap();
        }
        // a's at 30 (the oldest, met first) becomes unreadable: set aside,
        // its count with it.
        store
            .write(Commit::Durable, |txn| {
                txn.open_table(DEAD)?.insert(1, b"?".as_slice())?;
                Ok(())
            })
            .unwrap();
        assert_eq!(store.prune_dead_letters(0, 0).unwrap(), 2);
        assert!(store.dead_letter_counts().unwrap().is_empty());
        assert!(store.dead_letters(None, 10).unwrap().is_empty());
        assert_eq!(store.quarantined().unwrap().count, 1);
    }

    #[test]
    fn dedupe_window_survives_reopen_prune_and_the_older_per_key_form() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.redb");
        let accept = |store: &RedbStore, n, now| store.accept(&[inbound(n, 1)], now).unwrap()[0];
        {
            let store = RedbStore::open(&path).unwrap();
            stored(accept(&store, 1, 100));
            stored(accept(&store, 2, 300));
            // A window written by an earlier version: one row per key.
            let slot = store.db.read().unwrap();
            let txn = slot.as_ref().unwrap().begin_write().unwrap();
            let older = inbound(3, 1).dedupe;
            let keys = [
                format!("id:{}", older.event_id.unwrap()),
                format!("body:{}", hex::encode(older.body_hash)),
            ];
            for key in keys {
                txn.open_table(DEDUPE)
                    .unwrap()
                    .insert(key.as_str(), 150)
                    .unwrap();
                (txn.open_table(DEDUPE_BY_TIME).unwrap())
                    .insert((150, key.as_str()), ())
                    .unwrap();
            }
            txn.commit().unwrap();
        }
        {
            let store = RedbStore::open(&path).unwrap();
            for n in [1, 2, 3] {
                assert_eq!(
                    accept(&store, n, 400),
                    AcceptOutcome::Duplicate,
                    "event {n}"
                );
            }
            store.prune(200, 0).unwrap();
            // Kept in memory after the prune: what is newer than the cut-off.
            stored(accept(&store, 4, 400));
            assert_eq!(accept(&store, 4, 401), AcceptOutcome::Duplicate);
            assert_eq!(accept(&store, 2, 401), AcceptOutcome::Duplicate);
        }
        // What the prune forgot stays forgotten after a reopen.
        let store = RedbStore::open(&path).unwrap();
        stored(accept(&store, 1, 500));
        stored(accept(&store, 3, 500));
        assert_eq!(accept(&store, 2, 500), AcceptOutcome::Duplicate);
        assert_eq!(accept(&store, 4, 500), AcceptOutcome::Duplicate);
    }

    #[test]
    fn open_failures_are_io_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"x").unwrap();
        // Its parent is a regular file.
        let err = RedbStore::open(&file.join("relay.redb")).unwrap_err();
        assert!(matches!(err, StoreError::Io(_)), "{err:?}");
        // Not a database.
        let err = RedbStore::open(&file).unwrap_err();
        assert!(matches!(err, StoreError::Io(_)), "{err:?}");
        // Already open (by another relay).
        let path = dir.path().join("relay.redb");
        let _first = RedbStore::open(&path).unwrap();
        let err = RedbStore::open(&path).unwrap_err();
        assert!(
            matches!(&err, StoreError::Io(m) if m.contains("another relay")),
            "{err:?}"
        );
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.redb");
        {
            let store = RedbStore::open(&path).unwrap();
            store
                .write(Commit::Durable, |txn| {
                    txn.open_table(META)?
                        .insert(SCHEMA_KEY, SCHEMA_VERSION + 1)?;
                    Ok(())
                })
                .unwrap();
        }
        let err = RedbStore::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    }

    /// Overwrites inbox row `id` with bytes that are not a record.
    pub(crate) fn spoil_inbox(store: &RedbStore, id: u64) {
        store
            .write(Commit::Durable, |txn| {
                let mut inbox = txn.open_table(INBOX)?;
                let due_at = inbox.get(id)?.map(|g| g.value().0).unwrap_or(0);
                inbox.insert(id, (due_at, b"\xff not json".as_slice()))?;
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn unreadable_dead_letters_post_records_and_refs_are_set_aside() {
        let (_dir, store) = temp();
        for chat in ["a", "a", "a", "b"] {
            let seq = store.enqueue(&test_delivery(chat), 1).unwrap();
            store.dead_letter(chat, seq, "gone", 5).unwrap();
        }
        let id = stored(store.accept(&[inbound(1, 1)], 1).unwrap()[0]);
        store.route(id, &[delivery("a", 1)], 2).unwrap();
        let key = PostKey::of(&event(1)).unwrap();
        assert!(store.post_record(&key).unwrap().is_some());
        put_ref(&store, "a", 5, "m", 1);
        store
            .write(Commit::Durable, |txn| {
                // Dead letters 2 (chat a) and 4 (chat b).
                txn.open_table(DEAD)?.insert(2, b"nope".as_slice())?;
                txn.open_table(DEAD)?.insert(4, b"nope".as_slice())?;
                let k = (key.forum.as_str(), key.topic, key.number);
                let at = txn.open_table(POSTS)?.get(k)?.map(|g| g.value().0);
                (txn.open_table(POSTS)?).insert(k, (at.unwrap_or(0), b"[]".as_slice()))?;
                let at = txn.open_table(REFS)?.get(("a", 5, 1))?.map(|g| g.value().0);
                (txn.open_table(REFS)?).insert(("a", 5, 1), (at.unwrap_or(0), b"7".as_slice()))?;
                Ok(())
            })
            .unwrap();
        // Per chat (the chat known) and overall (found by the index).
        assert_eq!(store.dead_letters(Some("a"), 10).unwrap().len(), 2);
        assert_eq!(store.dead_letters(None, 10).unwrap().len(), 2);
        assert_eq!(
            store.dead_letter_counts().unwrap(),
            vec![("a".to_string(), 2)]
        );
        assert_eq!(store.post_record(&key).unwrap(), None);
        assert_eq!(store.message_ref("a", 5, 1).unwrap(), None);
        let keys = quarantine_keys(&store);
        assert_eq!(keys.len(), 4, "{keys:?}");
        for table in ["dead", "posts", "message_refs"] {
            assert!(keys.iter().any(|(t, _)| t == table), "{table}: {keys:?}");
        }
        // Their time indexes went with them: pruning finds nothing to trip on.
        store.prune(u64::MAX, u64::MAX).unwrap();
        let indexed = store
            .read(|txn| {
                Ok(txn.open_table(POSTS_BY_TIME)?.len()? + txn.open_table(REFS_BY_TIME)?.len()?)
            })
            .unwrap();
        assert_eq!(indexed, 0);
    }

    #[test]
    fn rows_without_a_format_version_still_read() {
        let (_dir, store) = temp();
        // What earlier releases wrote: the bare JSON of the same records.
        let e = StoredEvent {
            id: 7,
            event: event(7),
            due_at_ms: 10,
            received_at_ms: 3,
            revision: 0,
        };
        let q = QueuedDelivery {
            chat: "a".into(),
            seq: 1,
            payload: test_delivery("a").payload,
            created_at_ms: 1,
            attempts: 2,
            next_attempt_at_ms: 3,
            last_error: Some("HTTP 502".into()),
        };
        let dead = DeadLetter {
            // Its key below: ids are read from the key.
            id: 1,
            delivery: q.clone(),
            reason: "gone".into(),
            failed_at_ms: 9,
        };
        let r = MessageRef {
            remote_id: "m".into(),
            stored_at_ms: 4,
        };
        fn json<T: Serialize>(v: &T) -> Vec<u8> {
            serde_json::to_vec(v).unwrap()
        }
        store
            .write(Commit::Durable, |txn| {
                txn.open_table(INBOX)?
                    .insert(7, (10, json(&e).as_slice()))?;
                txn.open_table(INBOX_DUE)?.insert((10, 7), ())?;
                txn.open_table(QUEUE)?
                    .insert(("a", 1), json(&q).as_slice())?;
                bump(&mut txn.open_table(QUEUE_DEPTH)?, "a", 1)?;
                txn.open_table(DEAD)?.insert(1, json(&dead).as_slice())?;
                txn.open_table(DEAD_BY_CHAT)?.insert(("a", 1), ())?;
                txn.open_table(REFS)?
                    .insert(("a", 2, 1), (4, json(&r).as_slice()))?;
                Ok(())
            })
            .unwrap();
        let read = store.due_events(u64::MAX, 10).unwrap().remove(0);
        assert_eq!((read.id, read.event, read.received_at_ms), (7, event(7), 3));
        assert_eq!(store.head("a").unwrap(), Some(q));
        assert_eq!(store.dead_letters(Some("a"), 10).unwrap(), vec![dead]);
        assert_eq!(store.message_ref("a", 2, 1).unwrap(), Some(r));
        assert_eq!(store.quarantined().unwrap(), QuarantineSummary::default());
        // A row missing fields with a safe default reads too.
        let bytes = br#"{"chat":"a","seq":1,"payload":{"Test":{"requested_by":"x"}}}"#;
        store
            .write(Commit::Durable, |txn| {
                txn.open_table(QUEUE)?.insert(("a", 1), bytes.as_slice())?;
                Ok(())
            })
            .unwrap();
        let d = store.head("a").unwrap().unwrap();
        assert_eq!((d.attempts, d.last_error), (0, None));
    }

    #[test]
    fn rows_are_written_with_their_format_version() {
        assert_eq!(row_version(ROW_PREFIX), Ok(ROW_FORMAT));
        let (_dir, store) = temp();
        store.enqueue(&test_delivery("a"), 1).unwrap();
        let bytes = store
            .read(|txn| {
                Ok(txn
                    .open_table(QUEUE)?
                    .get(("a", 1))?
                    .map(|g| g.value().to_vec()))
            })
            .unwrap()
            .unwrap();
        assert!(
            bytes.starts_with(b"{\"v\":1,\"chat\":\"a\""),
            "{}",
            String::from_utf8_lossy(&bytes)
        );
        assert_eq!(row_version(&bytes), Ok(1));
        // Earlier releases read it as before: they ignore `v`.
        let older: QueuedDelivery = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(older.chat, "a");
        assert_eq!(row_version(b"{\"chat\":1}"), Ok(0));
        assert!(row_version(b"{\"v\":x}").is_err());
        assert_eq!(
            encode(&serde_json::json!({})).ok(),
            Some(b"{\"v\":1}".to_vec())
        );
        assert!(encode(&[1]).is_err());
    }

    /// Storage that fails every write while `full` is set, like a full disk.
    #[derive(Debug)]
    struct FullDisk {
        data: Arc<InMemoryBackend>,
        full: Arc<AtomicBool>,
    }

    impl FullDisk {
        fn check(&self) -> Result<(), std::io::Error> {
            if self.full.load(Ordering::SeqCst) {
                Err(std::io::Error::new(
                    std::io::ErrorKind::StorageFull,
                    "No space left on device",
                ))
            } else {
                Ok(())
            }
        }
    }

    impl StorageBackend for FullDisk {
        fn len(&self) -> Result<u64, std::io::Error> {
            self.data.len()
        }
        fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
            self.data.read(offset, out)
        }
        fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
            self.check()?;
            self.data.set_len(len)
        }
        fn sync_data(&self) -> Result<(), std::io::Error> {
            self.check()?;
            self.data.sync_data()
        }
        fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
            self.check()?;
            self.data.write(offset, data)
        }
    }

    #[test]
    fn full_disk_is_an_io_error_and_the_store_recovers() {
        let data = Arc::new(InMemoryBackend::new());
        let full = Arc::new(AtomicBool::new(false));
        let (d, f) = (data.clone(), full.clone());
        let store = RedbStore::with_opener(
            PathBuf::from("memory"),
            Box::new(move || {
                Database::builder().create_with_backend(FullDisk {
                    data: d.clone(),
                    full: f.clone(),
                })
            }),
        )
        .unwrap();
        let id = stored(store.accept(&[inbound(1, 1)], 1).unwrap()[0]);

        full.store(true, Ordering::SeqCst);
        let err = store.accept(&[inbound(2, 1)], 1).unwrap_err();
        assert!(matches!(err, StoreError::Io(_)), "{err:?}");
        let err = store
            .route(id, &[delivery("a", 1), delivery("b", 1)], 1)
            .unwrap_err();
        assert!(matches!(err, StoreError::Io(_)), "{err:?}");
        assert!(matches!(store.queue_depths(), Err(StoreError::Io(_))));

        // Space is freed: the store reopens by itself (after REOPEN_INTERVAL).
        full.store(false, Ordering::SeqCst);
        std::thread::sleep(REOPEN_INTERVAL + Duration::from_millis(100));
        // The failed route left the event in the inbox and no queue rows.
        let pending: Vec<u64> = store
            .due_events(u64::MAX, usize::MAX)
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(pending, vec![id]);
        assert!(store.queue_depths().unwrap().is_empty());
        // The failed accept stored nothing: event 2 is not a duplicate.
        assert!(matches!(
            store.accept(&[inbound(2, 1)], 1).unwrap()[0],
            AcceptOutcome::Stored(_)
        ));
        store
            .route(id, &[delivery("a", 1), delivery("b", 1)], 1)
            .unwrap();
        assert_eq!(
            store.queue_depths().unwrap(),
            vec![("a".to_string(), 1), ("b".to_string(), 1)]
        );
    }

    /// Not a correctness test: prints what the status page's calls cost with
    /// 100k queued rows.
    #[test]
    #[cfg_attr(debug_assertions, ignore = "slow unoptimized; runs with --release")]
    fn measure_status_calls_with_100k_rows() {
        let (_dir, store) = temp();
        let chats: Vec<String> = (0..20).map(|i| format!("chat-{i}")).collect();
        let deliveries: Vec<NewDelivery> = (0..100_000)
            .map(|i| test_delivery(&chats[i % chats.len()]))
            .collect();
        let id = stored(store.accept(&[inbound(1, 1)], 1).unwrap()[0]);
        let t = Instant::now();
        store.route(id, &deliveries, 1).unwrap();
        let route = t.elapsed();
        for i in 0..100 {
            store
                .dead_letter(&chats[i % 20], (i / 20 + 1) as u64, "x", 1)
                .unwrap();
        }

        let t = Instant::now();
        let n = 100;
        let mut depth = 0;
        for _ in 0..n {
            depth = store
                .queue_depths()
                .unwrap()
                .iter()
                .map(|(_, d)| d)
                .sum::<u64>();
            store.dead_letter_counts().unwrap();
        }
        let status = t.elapsed() / n;
        assert_eq!(depth, 100_000 - 100);
        // What counting by scanning the queue would cost instead.
        let t = Instant::now();
        let scanned = store
            .read(|txn| {
                let mut per_chat = std::collections::BTreeMap::<String, u64>::new();
                for item in txn.open_table(QUEUE)?.iter()? {
                    let (key, _) = item?;
                    *per_chat.entry(key.value().0.to_string()).or_default() += 1;
                }
                Ok(per_chat.values().sum::<u64>())
            })
            .unwrap();
        let scan = t.elapsed();
        assert_eq!(scanned, depth);
        let t = Instant::now();
        for c in &chats {
            store.head(c).unwrap();
        }
        let head = t.elapsed() / chats.len() as u32;
        let t = Instant::now();
        store.ack(&chats[0], sent(6, &[])).unwrap();
        let ack = t.elapsed();
        eprintln!(
            "100k queued rows: route (one txn) {route:?}; queue_depths + dead_letter_counts \
             {status:?} per call (a scan of the queue instead: {scan:?}); head {head:?}; \
             ack {ack:?}"
        );
    }
}
