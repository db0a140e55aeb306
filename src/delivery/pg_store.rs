//! The PostgreSQL [`Store`] (`[server] store = "postgres://..."`): the same
//! durable state as the redb file, in a database that several relays can
//! share. Each trait method is one SQL transaction.
//!
//! # Tables
//!
//! `pg_migrations/V*.sql`, run by [`PgStore::open`] through refinery
//! (history in `relay_schema_history`, under an advisory lock so relays
//! starting together migrate once). A database migrated by a newer relay
//! is refused: its applied migrations are missing here. Rows hold the JSON
//! records of `redb_store.rs` (`{"v":1,...}`, read by the same `decode`),
//! with the numbers queries need as columns beside them; an unreadable row
//! is moved to `quarantine`, as there.
//!
//! # Durability
//!
//! As redb's: `accept` (202 means committed), `follow_up`, `enqueue`,
//! `dead_letter` and the dead-letter and pruning methods commit durably (the
//! WAL is flushed before COMMIT returns). `route_many`, `heads`, `ack_many`
//! and `reschedule` are cheap commits (`SET LOCAL synchronous_commit =
//! off`): a crash of the database may lose the last ones (never half of
//! one), which is redb's `Durability::None`. [`Store::sync`] flushes them;
//! so does any durable commit. An ack that leaves its chat's queue empty
//! commits durably, so a relay between bursts has nothing to re-send.
//!
//! # Leases, and what it does not do (yet)
//!
//! A chat's lease (`chats.owner`, `epoch`, `lease_until`, on the database's
//! clock) says which relay delivers it; once a store has claimed a chat,
//! its owner writes for chats are fenced by owner and epoch. The running
//! relay does not claim yet, so several relays on one database would each
//! deliver every chat: until the workers take leases, one relay per
//! database. TLS to the database is not supported (`NoTls`): use a local
//! socket, loopback or a private network. The password in the URL is never
//! logged or put in an error.
//!
//! The client is the synchronous `postgres` crate: the trait is blocking
//! and called from blocking threads only (`worker::blocking`, the
//! group-commit thread), never on the async runtime, where its internal
//! `block_on` would panic.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use postgres::types::Type;
use postgres::{Client, NoTls, Transaction};
use r2d2_postgres::{PostgresConnectionManager, r2d2};

use super::redb_store::{
    QueuedDeliveryRef, StoredEventRef, decode, decode_event, dedupe_hashes, encode_row,
    revision_of, wall_ms,
};
use super::store::{
    AcceptOutcome, Ack, AttemptResult, DeadLetter, DeliveryRecord, FollowUp, HOUR_MS, HourCount,
    InboundEvent, Lease, MessageRef, NewDelivery, Payload, PendingChange, PostChat, PostKey,
    PostRecord, QuarantineSummary, QuarantinedRow, QueuedDelivery, RECENT_PER_CHAT, RefChange,
    Routed, Store, StoreError, StoredEvent,
};

mod embedded {
    refinery::embed_migrations!("src/delivery/pg_migrations");
}

/// Where refinery keeps which migrations ran.
const MIGRATIONS_TABLE: &str = "relay_schema_history";
/// The advisory lock held while migrating (any constant unique to the relay).
const MIGRATION_LOCK: i64 = 0x6472_656c_6179_0001;
/// Connections per relay: the group commit, the scheduler, housekeeping and
/// a few workers at once; more callers wait for one.
const POOL_SIZE: u32 = 16;
/// How long a caller waits for a connection (the database down: 503 after this).
const POOL_WAIT: Duration = Duration::from_secs(3);
/// Connect timeout when the URL sets none.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How many of the newest quarantined rows [`Store::quarantined`] lists.
const QUARANTINE_NEWEST: i64 = 10;

type Pool = r2d2::Pool<PostgresConnectionManager<NoTls>>;

/// What a call can fail with before it becomes a [`StoreError`].
#[derive(Debug, thiserror::Error)]
enum PgError {
    #[error("PostgreSQL: {}", db_text(.0))]
    Db(#[from] postgres::Error),
    #[error("no PostgreSQL connection: {0}")]
    Pool(#[from] r2d2::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

type R<T> = Result<T, PgError>;

/// The client's error with its cause (its `Display` leaves the cause out
/// for some kinds, such as a parameter that cannot be encoded).
fn db_text(e: &postgres::Error) -> String {
    match std::error::Error::source(e) {
        Some(cause) if !e.to_string().contains(&cause.to_string()) => format!("{e}: {cause}"),
        _ => e.to_string(),
    }
}

/// How a transaction ends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Commit {
    /// WAL flushed before returning.
    Durable,
    /// `synchronous_commit = off`; see the module docs.
    Cheap,
    /// Nothing changed: rolled back (no WAL flush).
    Nothing,
}

/// A time in ms as a column (times past `i64::MAX` ms are "never").
fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A column read back as a count, time or seq (never negative when we wrote it).
fn un(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A u64 key part (topic id, post number or family slot) as a bigint,
/// bit for bit: equality is all these columns need.
fn key(v: u64) -> i64 {
    i64::from_ne_bytes(v.to_ne_bytes())
}

fn unkey(v: i64) -> u64 {
    u64::from_ne_bytes(v.to_ne_bytes())
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Where an unreadable row is, and how to remove it.
enum Row {
    Inbox(i64),
    Queue(String, i64),
    Dead(i64),
    Post(String, i64, i64),
    Ref(String, i64, i64),
    Recent(String, i64),
}

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

    fn source_and_key(&self) -> (&'static str, String) {
        match &self.row {
            Row::Inbox(id) => ("inbox", id.to_string()),
            Row::Queue(chat, seq) => ("queue", format!("{chat}#{seq}")),
            Row::Dead(id) => ("dead", id.to_string()),
            Row::Post(forum, topic, number) => (
                "posts",
                format!("{forum}/{}/{}", unkey(*topic), unkey(*number)),
            ),
            Row::Ref(chat, topic, number) => (
                "message_refs",
                format!("{chat}/{}/{}", unkey(*topic), unkey(*number)),
            ),
            Row::Recent(chat, n) => ("recent_deliveries", format!("{chat}#{n}")),
        }
    }
}

/// Adds a row to the quarantine (the caller removed it from its table).
fn put_quarantine(tx: &mut Transaction<'_>, bad: &Unreadable, at_ms: u64) -> R<()> {
    let (source, key) = bad.source_and_key();
    tx.execute(
        "INSERT INTO quarantine (at_ms, source, key, error, raw) VALUES ($1, $2, $3, $4, $5)",
        &[&ms(at_ms), &source, &key, &bad.error, &bad.raw],
    )?;
    tracing::error!(
        table = source,
        key = %key,
        error = %bad.error,
        "a stored row cannot be read; moved to the quarantine, the others go on"
    );
    Ok(())
}

/// Moves an unreadable row to the quarantine if it still holds the same
/// bytes (else it changed meanwhile and is left alone).
fn set_aside(tx: &mut Transaction<'_>, bad: &Unreadable, at_ms: u64) -> R<()> {
    let raw = &bad.raw;
    let removed = match &bad.row {
        Row::Inbox(id) => tx.execute("DELETE FROM inbox WHERE id = $1 AND row = $2", &[id, raw])?,
        Row::Queue(chat, seq) => tx.execute(
            "DELETE FROM queue WHERE chat = $1 AND seq = $2 AND row = $3",
            &[chat, seq, raw],
        )?,
        Row::Dead(id) => tx.execute("DELETE FROM dead WHERE id = $1 AND row = $2", &[id, raw])?,
        Row::Post(forum, topic, number) => tx.execute(
            "DELETE FROM posts WHERE forum = $1 AND topic = $2 AND number = $3 AND row = $4",
            &[forum, topic, number, raw],
        )?,
        Row::Ref(chat, topic, number) => tx.execute(
            "DELETE FROM message_refs WHERE chat = $1 AND topic = $2 AND number = $3 AND row = $4",
            &[chat, topic, number, raw],
        )?,
        Row::Recent(chat, n) => tx.execute(
            "DELETE FROM recent_deliveries WHERE chat = $1 AND n = $2 AND row = $3",
            &[chat, n, raw],
        )?,
    };
    if removed > 0 {
        put_quarantine(tx, bad, at_ms)?;
    }
    Ok(())
}

/// The [`Store`] on PostgreSQL; see the module docs.
pub struct PgStore {
    /// `None` only while dropping (see `Drop`).
    pool: Option<Pool>,
    /// `user@host:port/db`, for messages (never the password).
    target: String,
    /// The password, to cut from any error text that might echo it.
    password: Option<String>,
    /// A cheap commit happened since the last durable one ([`Store::sync`]).
    cheap_pending: AtomicBool,
    /// This relay's name in `chats.owner` (unique per process).
    node: String,
    /// The chats whose lease this store was granted, with its epoch (a
    /// lost one is dropped: in leasing mode a chat not here is fenced).
    held: Mutex<HashMap<String, i64>>,
    /// Set by the first claim: from then on owner writes need the lease
    /// (a relay that never claims, as today's single relay, is not fenced).
    leasing: AtomicBool,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.target)
            .finish()
    }
}

/// `user@host:port/db` of a connection config, without the password.
fn describe(c: &postgres::Config) -> String {
    let hosts: Vec<String> = c
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let host = match h {
                postgres::config::Host::Tcp(h) => h.clone(),
                postgres::config::Host::Unix(p) => p.display().to_string(),
            };
            match c.get_ports().get(i).or(c.get_ports().first()) {
                Some(port) => format!("{host}:{port}"),
                None => host,
            }
        })
        .collect();
    format!(
        "{}@{}/{}",
        c.get_user().unwrap_or(""),
        hosts.join(","),
        c.get_dbname().unwrap_or("")
    )
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user:pass@host:port/db`,
    /// or libpq's `key=value` form), runs the migrations it lacks and opens a
    /// small pool. Fails with [`StoreError::Io`] when the database cannot be
    /// reached (the message names it, never the password) and with
    /// [`StoreError::Corrupt`] when a newer relay migrated it.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let mut config = postgres::Config::from_str(url).map_err(|_| {
            // Its message may quote the URL, password and all.
            StoreError::Io("the store is not a valid PostgreSQL URL".into())
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("discourse-relay");
        }
        let password = config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .filter(|p| !p.is_empty());
        let target = describe(&config);
        let redact = |text: String| match &password {
            Some(p) => text.replace(p.as_str(), "[redacted]"),
            None => text,
        };
        let mut first = config.connect(NoTls).map_err(|e| {
            StoreError::Io(redact(format!(
                "cannot connect to PostgreSQL at {target}: {e}"
            )))
        })?;
        migrate(&mut first, &target).map_err(|e| match e {
            PgError::Store(e) => e,
            e => StoreError::Io(redact(format!("cannot migrate the store at {target}: {e}"))),
        })?;
        drop(first);
        // Unchecked: connections are made on demand, so a database that
        // goes away later costs 503s, not a relay that cannot start again.
        let pool = r2d2::Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(Some(1))
            .connection_timeout(POOL_WAIT)
            // A broken connection is dropped on return (r2d2_postgres checks
            // `is_closed`); testing each checkout would cost a round trip.
            .test_on_check_out(false)
            .build_unchecked(PostgresConnectionManager::new(config, NoTls));
        tracing::info!(store = %target, "using the PostgreSQL store");
        Ok(Self {
            pool: Some(pool),
            target,
            password,
            cheap_pending: AtomicBool::new(false),
            node: format!("relay-{}-{:08x}", std::process::id(), fastrand::u32(..)),
            held: Mutex::new(HashMap::new()),
            leasing: AtomicBool::new(false),
        })
    }

    /// This relay's name as the `chats.owner` of the leases it holds.
    pub fn node(&self) -> &str {
        &self.node
    }

    fn held(&self) -> MutexGuard<'_, HashMap<String, i64>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Fences an owner write for `chat` in `tx`: once this store leases,
    /// the chat's row must still name it with the epoch it was granted
    /// (and, to take new work, an unexpired lease). The row is share-locked
    /// until commit, so a claim by another relay waits for this write and
    /// then fences the next.
    fn fence(&self, tx: &mut Transaction<'_>, chat: &str, taking: bool) -> R<()> {
        if !self.leasing.load(Ordering::Acquire) {
            return Ok(());
        }
        let lost = || PgError::Store(StoreError::LostLease { chat: chat.into() });
        let Some(epoch) = self.held().get(chat).copied() else {
            return Err(lost());
        };
        let row = tx.query_opt(
            "SELECT owner = $2 AND epoch = $3 AND ($4 = false OR lease_until > now()) \
             FROM chats WHERE chat = $1 FOR SHARE",
            &[&chat, &self.node, &epoch, &taking],
        )?;
        match row.map(|r| r.get::<_, Option<bool>>(0)) {
            Some(Some(true)) => Ok(()),
            _ => Err(lost()),
        }
    }

    fn error(&self, e: PgError) -> StoreError {
        match e {
            PgError::Store(e) => e,
            e => {
                let text = e.to_string();
                StoreError::Io(match &self.password {
                    Some(p) => text.replace(p.as_str(), "[redacted]"),
                    None => text,
                })
            }
        }
    }

    /// Runs `f` on a pooled connection.
    fn with<T>(&self, f: impl FnOnce(&mut Client) -> R<T>) -> Result<T, StoreError> {
        let pool =
            (self.pool.as_ref()).ok_or_else(|| StoreError::Io("the store is closed".into()))?;
        let mut conn = pool.get().map_err(|e| self.error(e.into()))?;
        f(&mut conn).map_err(|e| self.error(e))
    }

    /// One transaction; `f` says how it commits.
    fn write<T>(
        &self,
        f: impl FnOnce(&mut Transaction<'_>) -> R<(T, Commit)>,
    ) -> Result<T, StoreError> {
        self.with(|client| {
            let mut tx = client.transaction()?;
            let (out, commit) = f(&mut tx)?;
            match commit {
                Commit::Nothing => tx.rollback()?,
                Commit::Cheap => {
                    tx.batch_execute("SET LOCAL synchronous_commit = off")?;
                    tx.commit()?;
                    self.cheap_pending.store(true, Ordering::Release);
                }
                // Only `sync` clears `cheap_pending`: a durable commit that
                // wrote nothing flushes nothing.
                Commit::Durable => tx.commit()?,
            }
            Ok(out)
        })
    }

    /// A read that may find unreadable rows: they are set aside (in a
    /// transaction of their own) and the readable ones returned.
    fn read<T>(
        &self,
        f: impl FnOnce(&mut Client) -> R<(T, Vec<Unreadable>)>,
    ) -> Result<T, StoreError> {
        let (out, bad) = self.with(f)?;
        self.set_aside_all(&bad);
        Ok(out)
    }

    /// A failure is only logged: the next read finds the rows again.
    fn set_aside_all(&self, bad: &[Unreadable]) {
        if bad.is_empty() {
            return;
        }
        let now = wall_ms();
        let r = self.write(|tx| {
            for b in bad {
                set_aside(tx, b, now)?;
            }
            Ok(((), Commit::Durable))
        });
        if let Err(e) = r {
            tracing::warn!(error = %e, "cannot move unreadable rows to the quarantine");
        }
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // A `postgres::Client` closes with a `block_on` of its own, which
        // panics on a thread that drives an async runtime (the relay drops
        // its last store handle in a task at shutdown): close the pool's
        // connections on a thread of their own.
        if let Some(pool) = self.pool.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                let _ = std::thread::spawn(move || drop(pool)).join();
            } else {
                drop(pool);
            }
        }
    }
}

/// Runs the migrations this relay has and the database lacks.
fn migrate(client: &mut Client, target: &str) -> R<()> {
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])?;
    let report = embedded::migrations::runner()
        .set_migration_table_name(MIGRATIONS_TABLE)
        .run(client);
    let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
    let report = report.map_err(|e| match e.kind() {
        refinery::error::Kind::MissingVersion(m) => StoreError::Corrupt(format!(
            "the store at {target} has schema version {} ({}), which this relay does not know: \
             a newer relay migrated it; run that version",
            m.version(),
            m.name()
        )),
        _ => StoreError::Io(format!("migrating the store failed: {e}")),
    })?;
    unlocked?;
    for m in report.applied_migrations() {
        tracing::info!(version = m.version(), name = m.name(), "store migrated");
    }
    Ok(())
}

/// The first seq of `n` new deliveries for each chat (locks the chats'
/// rows until commit, in name order so that concurrent writers never
/// deadlock; per chat, seq order is commit order).
fn alloc_seqs(tx: &mut Transaction<'_>, counts: &BTreeMap<&str, i64>) -> R<HashMap<String, i64>> {
    if counts.is_empty() {
        return Ok(HashMap::new());
    }
    let chats: Vec<&str> = counts.keys().copied().collect();
    let ns: Vec<i64> = counts.values().copied().collect();
    let rows = tx.query_typed(
        "INSERT INTO chats AS c (chat, next_seq) \
         SELECT chat, 1 + n FROM unnest($1::text[], $2::bigint[]) AS t(chat, n) ORDER BY chat \
         ON CONFLICT (chat) DO UPDATE SET next_seq = c.next_seq + excluded.next_seq - 1 \
         RETURNING chat, next_seq",
        &[(&chats, Type::TEXT_ARRAY), (&ns, Type::INT8_ARRAY)],
    )?;
    let mut out = HashMap::with_capacity(rows.len());
    for row in rows {
        let chat: String = row.get(0);
        let next: i64 = row.get(1);
        let n = counts.get(chat.as_str()).copied().unwrap_or(0);
        out.insert(chat, next - n);
    }
    Ok(out)
}

/// A queue row to insert.
struct NewRow {
    chat: String,
    seq: i64,
    row: Vec<u8>,
}

fn insert_queue(tx: &mut Transaction<'_>, rows: &[NewRow]) -> R<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let chats: Vec<&str> = rows.iter().map(|r| r.chat.as_str()).collect();
    let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
    let bytes: Vec<&[u8]> = rows.iter().map(|r| r.row.as_slice()).collect();
    tx.execute_typed(
        "INSERT INTO queue (chat, seq, row) \
         SELECT * FROM unnest($1::text[], $2::bigint[], $3::bytea[])",
        &[
            (&chats, Type::TEXT_ARRAY),
            (&seqs, Type::INT8_ARRAY),
            (&bytes, Type::BYTEA_ARRAY),
        ],
    )?;
    Ok(())
}

/// A queue row for `payload` at `seq` with its history (first queued,
/// attempts, last error), due at `due_ms`.
fn queue_row(
    chat: &str,
    seq: i64,
    payload: &Payload,
    (created_at_ms, attempts, last_error): (u64, u32, Option<&str>),
    due_ms: u64,
) -> R<NewRow> {
    let row = encode_row(&QueuedDeliveryRef {
        chat,
        seq: un(seq),
        payload,
        created_at_ms,
        attempts,
        next_attempt_at_ms: due_ms,
        last_error,
    })?;
    Ok(NewRow {
        chat: chat.to_string(),
        seq,
        row,
    })
}

/// Appends one delivery at its chat's next seq.
fn append(
    tx: &mut Transaction<'_>,
    chat: &str,
    payload: &Payload,
    history: (u64, u32, Option<&str>),
    due_ms: u64,
) -> R<i64> {
    let first = alloc_seqs(tx, &BTreeMap::from([(chat, 1)]))?;
    let seq = first.get(chat).copied().ok_or_else(|| {
        PgError::Store(StoreError::Io(format!("no seq was allocated for {chat}")))
    })?;
    insert_queue(tx, &[queue_row(chat, seq, payload, history, due_ms)?])?;
    Ok(seq)
}

fn put_post(tx: &mut Transaction<'_>, k: &PostKey, r: &PostRecord, now_ms: u64) -> R<()> {
    put_posts(tx, [(k, r)], now_ms)
}

/// Stores post records in one statement (a routed batch has one per new
/// post); of two for one post, the later wins, as if stored in turn.
fn put_posts<'r>(
    tx: &mut Transaction<'_>,
    records: impl IntoIterator<Item = (&'r PostKey, &'r PostRecord)>,
    now_ms: u64,
) -> R<()> {
    let mut last: BTreeMap<(&str, i64, i64), &PostRecord> = BTreeMap::new();
    for (k, r) in records {
        last.insert((k.forum.as_str(), key(k.topic), key(k.number)), r);
    }
    if last.is_empty() {
        return Ok(());
    }
    let (mut forums, mut topics, mut numbers, mut rows) = (vec![], vec![], vec![], vec![]);
    for ((forum, topic, number), r) in last {
        forums.push(forum);
        topics.push(topic);
        numbers.push(number);
        rows.push(encode_row(r)?);
    }
    let bytes: Vec<&[u8]> = rows.iter().map(Vec::as_slice).collect();
    tx.execute_typed(
        "INSERT INTO posts (forum, topic, number, stored_at_ms, row) \
         SELECT f, t, n, $4, r FROM unnest($1::text[], $2::bigint[], $3::bigint[], $5::bytea[]) \
         AS u(f, t, n, r) \
         ON CONFLICT (forum, topic, number) \
         DO UPDATE SET stored_at_ms = excluded.stored_at_ms, row = excluded.row",
        &[
            (&forums, Type::TEXT_ARRAY),
            (&topics, Type::INT8_ARRAY),
            (&numbers, Type::INT8_ARRAY),
            (&ms(now_ms), Type::INT8),
            (&bytes, Type::BYTEA_ARRAY),
        ],
    )?;
    Ok(())
}

/// Up to `limit` readable deliveries of a chat's queue, in order; the
/// unreadable ones met on the way are moved to the quarantine (in `tx`:
/// then the flag is true, and the caller must commit).
fn read_queue(
    tx: &mut Transaction<'_>,
    chat: &str,
    limit: usize,
) -> R<(Vec<QueuedDelivery>, bool)> {
    let mut set_any = false;
    loop {
        let rows = tx.query_typed(
            "SELECT seq, row FROM queue WHERE chat = $1 ORDER BY seq LIMIT $2",
            &[(&chat, Type::TEXT), (&self::limit(limit), Type::INT8)],
        )?;
        let mut out = Vec::with_capacity(rows.len());
        let mut bad = Vec::new();
        for row in &rows {
            let seq: i64 = row.get(0);
            let bytes: &[u8] = row.get(1);
            match decode::<QueuedDelivery>(bytes) {
                Ok(d) => out.push(d),
                Err(e) => bad.push(Unreadable::new(Row::Queue(chat.into(), seq), bytes, e)),
            }
        }
        if bad.is_empty() {
            return Ok((out, set_any));
        }
        set_any = true;
        let now = wall_ms();
        for b in &bad {
            set_aside(tx, b, now)?;
        }
    }
}

/// Writes a chat's activity rows for `records` in the transaction that
/// settles them (see `redb_store::record_activity`).
fn record_activity<'r>(
    tx: &mut Transaction<'_>,
    chat: &str,
    records: impl IntoIterator<Item = &'r DeliveryRecord>,
) -> R<()> {
    let records: Vec<&DeliveryRecord> = records.into_iter().collect();
    if records.is_empty() {
        return Ok(());
    }
    let mut hours: BTreeMap<i64, [i64; 3]> = BTreeMap::new();
    let mut rows: Vec<Vec<u8>> = Vec::with_capacity(records.len());
    for r in &records {
        let slot = match r.result {
            AttemptResult::Sent { .. } => Some(0),
            AttemptResult::DeadLettered { .. } => Some(1),
            AttemptResult::Retried { .. } => Some(2),
            AttemptResult::Skipped { .. } => None,
        };
        if let Some(slot) = slot {
            hours.entry(ms(r.at_ms / HOUR_MS)).or_default()[slot] += 1;
        }
        rows.push(encode_row(r)?);
    }
    let last: i64 = tx
        .query_typed_one(
            "SELECT coalesce(max(n), 0) FROM recent_deliveries WHERE chat = $1",
            &[(&chat, Type::TEXT)],
        )?
        .get(0);
    let ns: Vec<i64> = (1..=limit(rows.len())).map(|i| last + i).collect();
    let bytes: Vec<&[u8]> = rows.iter().map(Vec::as_slice).collect();
    tx.execute_typed(
        "INSERT INTO recent_deliveries (chat, n, row) \
         SELECT $1, n, row FROM unnest($2::bigint[], $3::bytea[]) AS t(n, row)",
        &[
            (&chat, Type::TEXT),
            (&ns, Type::INT8_ARRAY),
            (&bytes, Type::BYTEA_ARRAY),
        ],
    )?;
    let next = last + limit(rows.len()) + 1;
    tx.execute_typed(
        "DELETE FROM recent_deliveries WHERE chat = $1 AND n < $2",
        &[
            (&chat, Type::TEXT),
            (&(next - ms(RECENT_PER_CHAT)), Type::INT8),
        ],
    )?;
    for (hour, [d, f, t]) in hours {
        tx.execute_typed(
            "INSERT INTO hourly_counts AS h (hour, chat, delivered, failed, retried) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (hour, chat) DO UPDATE SET \
             delivered = h.delivered + excluded.delivered, failed = h.failed + excluded.failed, \
             retried = h.retried + excluded.retried",
            &[
                (&hour, Type::INT8),
                (&chat, Type::TEXT),
                (&d, Type::INT8),
                (&f, Type::INT8),
                (&t, Type::INT8),
            ],
        )?;
    }
    Ok(())
}

/// Rows of `(chat, count)` as the trait returns them.
fn counted(rows: Vec<postgres::Row>) -> Vec<(String, u64)> {
    rows.iter()
        .map(|r| (r.get::<_, String>(0), un(r.get::<_, i64>(1))))
        .collect()
}

/// A dead-letter id filter as a nullable array parameter.
fn id_filter(ids: Option<&[u64]>) -> Option<Vec<i64>> {
    ids.map(|ids| ids.iter().map(|&i| ms(i)).collect())
}

impl Store for PgStore {
    fn accept(
        &self,
        batch: &[InboundEvent],
        now_ms: u64,
    ) -> Result<Vec<AcceptOutcome>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        // Per event, its keys (16 bytes each), or None for a duplicate of
        // an earlier event of this batch.
        let mut taken: HashSet<[u8; 16]> = HashSet::new();
        let mut keys: Vec<Option<Vec<[u8; 16]>>> = batch
            .iter()
            .map(|ev| {
                let ks: Vec<[u8; 16]> = dedupe_hashes(&ev.dedupe)
                    .into_iter()
                    .flatten()
                    .map(u128::to_le_bytes)
                    .collect();
                if ks.iter().any(|k| taken.contains(k)) {
                    return None;
                }
                taken.extend(ks.iter().copied());
                Some(ks)
            })
            .collect();
        self.write(|tx| {
            let sorted = |keys: &[Option<Vec<[u8; 16]>>]| -> Vec<Vec<u8>> {
                let mut all: Vec<Vec<u8>> = keys
                    .iter()
                    .flatten()
                    .flatten()
                    .map(|k| k.to_vec())
                    .collect();
                all.sort();
                all
            };
            // A key that is not inserted is in the window already (or being
            // committed by another relay: the insert waits for it), so its
            // event is a duplicate. In key order, so that two relays inserting
            // overlapping keys wait on each other instead of deadlocking.
            let inserted: HashSet<Vec<u8>> = tx
                .query_typed(
                    "INSERT INTO dedupe (key, seen_at_ms) \
                     SELECT k, $2 FROM unnest($1::bytea[]) AS k ORDER BY k \
                     ON CONFLICT DO NOTHING RETURNING key",
                    &[
                        (&sorted(&keys), Type::BYTEA_ARRAY),
                        (&ms(now_ms), Type::INT8),
                    ],
                )?
                .iter()
                .map(|r| r.get::<_, Vec<u8>>(0))
                .collect();
            let mut unwanted: Vec<Vec<u8>> = Vec::new();
            for k in &mut keys {
                if let Some(ks) = k
                    && ks.iter().any(|x| !inserted.contains(x.as_slice()))
                {
                    // A duplicate after all: its other keys are not kept.
                    unwanted.extend(
                        (ks.iter())
                            .filter(|x| inserted.contains(x.as_slice()))
                            .map(|x| x.to_vec()),
                    );
                    *k = None;
                }
            }
            if !unwanted.is_empty() {
                tx.execute_typed(
                    "DELETE FROM dedupe WHERE key = ANY($1)",
                    &[(&unwanted, Type::BYTEA_ARRAY)],
                )?;
            }
            let fresh = keys.iter().filter(|k| k.is_some()).count();
            let mut ids: Vec<i64> = tx
                .query_typed(
                    "SELECT nextval('inbox_id_seq') FROM generate_series(1, $1::bigint)",
                    &[(&limit(fresh), Type::INT8)],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect();
            ids.sort_unstable();
            let mut ids = ids.into_iter();
            let mut out = Vec::with_capacity(batch.len());
            let (mut row_ids, mut dues, mut rows) = (Vec::new(), Vec::new(), Vec::new());
            for (ev, k) in batch.iter().zip(&keys) {
                let Some(id) = k.as_ref().and_then(|_| ids.next()) else {
                    out.push(AcceptOutcome::Duplicate);
                    continue;
                };
                rows.push(encode_row(&StoredEventRef {
                    id: un(id),
                    event: &ev.event,
                    due_at_ms: ev.due_at_ms,
                    received_at_ms: ev.received_at_ms,
                })?);
                row_ids.push(id);
                dues.push(ms(ev.due_at_ms));
                out.push(AcceptOutcome::Stored(un(id)));
            }
            if row_ids.is_empty() {
                return Ok((out, Commit::Nothing));
            }
            let bytes: Vec<&[u8]> = rows.iter().map(Vec::as_slice).collect();
            tx.execute_typed(
                "INSERT INTO inbox (id, due_at_ms, row) \
                 SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[])",
                &[
                    (&row_ids, Type::INT8_ARRAY),
                    (&dues, Type::INT8_ARRAY),
                    (&bytes, Type::BYTEA_ARRAY),
                ],
            )?;
            Ok((out, Commit::Durable))
        })
    }

    fn due_events(&self, now_ms: u64, max: usize) -> Result<Vec<StoredEvent>, StoreError> {
        self.read(|c| {
            let rows = c.query_typed(
                "SELECT id, row FROM inbox WHERE due_at_ms <= $1 ORDER BY due_at_ms, id LIMIT $2",
                &[(&ms(now_ms), Type::INT8), (&limit(max), Type::INT8)],
            )?;
            let (mut out, mut bad) = (Vec::new(), Vec::new());
            for row in &rows {
                let id: i64 = row.get(0);
                let bytes: &[u8] = row.get(1);
                match decode_event(bytes) {
                    Ok(e) => out.push(e),
                    Err(e) => bad.push(Unreadable::new(Row::Inbox(id), bytes, e)),
                }
            }
            Ok((out, bad))
        })
    }

    fn update_pending(
        &self,
        f: &mut dyn FnMut(&mut StoredEvent) -> PendingChange,
    ) -> Result<usize, StoreError> {
        self.write(|tx| {
            // Locked: concurrent calls (and routing) wait, never undo.
            let rows = tx.query("SELECT id, row FROM inbox ORDER BY id FOR UPDATE", &[])?;
            let mut changed = 0usize;
            let mut bad = Vec::new();
            for row in &rows {
                let id: i64 = row.get(0);
                let bytes: &[u8] = row.get(1);
                let mut e = match decode_event(bytes) {
                    Ok(e) => e,
                    Err(e) => {
                        bad.push(Unreadable::new(Row::Inbox(id), bytes, e));
                        continue;
                    }
                };
                let before_due = e.due_at_ms;
                match f(&mut e) {
                    PendingChange::Keep => {}
                    PendingChange::Cancel => {
                        tx.execute("DELETE FROM inbox WHERE id = $1", &[&id])?;
                        changed += 1;
                    }
                    PendingChange::Update => {
                        let record = encode_row(&StoredEventRef {
                            id: un(id),
                            event: &e.event,
                            due_at_ms: e.due_at_ms,
                            received_at_ms: e.received_at_ms,
                        })?;
                        if record != bytes || e.due_at_ms != before_due {
                            tx.execute(
                                "UPDATE inbox SET due_at_ms = $2, row = $3 WHERE id = $1",
                                &[&id, &ms(e.due_at_ms), &record],
                            )?;
                            changed += 1;
                        }
                    }
                }
            }
            let now = wall_ms();
            for b in &bad {
                set_aside(tx, b, now)?;
            }
            let commit = if changed > 0 || !bad.is_empty() {
                Commit::Durable
            } else {
                Commit::Nothing
            };
            Ok((changed, commit))
        })
    }

    fn route_many(&self, routed: &[Routed], now_ms: u64) -> Result<(), StoreError> {
        if routed.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            let ids: Vec<i64> = routed.iter().map(|r| ms(r.id)).collect();
            let current: HashMap<i64, u64> = tx
                .query_typed(
                    "SELECT id, row FROM inbox WHERE id = ANY($1) ORDER BY id FOR UPDATE",
                    &[(&ids, Type::INT8_ARRAY)],
                )?
                .iter()
                .map(|r| (r.get::<_, i64>(0), revision_of(r.get::<_, &[u8]>(1))))
                .collect();
            let mut done: HashSet<i64> = HashSet::new();
            // Still there (else routed or cancelled already) and unchanged
            // since it was read (else routed again as it is now).
            let live: Vec<&Routed> = routed
                .iter()
                .filter(|r| {
                    let id = ms(r.id);
                    current
                        .get(&id)
                        .is_some_and(|now| r.revision.is_none_or(|rev| rev == *now))
                        && done.insert(id)
                })
                .collect();
            if live.is_empty() {
                return Ok(((), Commit::Nothing));
            }
            let gone: Vec<i64> = done.iter().copied().collect();
            tx.execute_typed(
                "DELETE FROM inbox WHERE id = ANY($1)",
                &[(&gone, Type::INT8_ARRAY)],
            )?;
            let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
            for d in live.iter().flat_map(|r| &r.deliveries) {
                *counts.entry(d.chat.as_str()).or_default() += 1;
            }
            let mut next = alloc_seqs(tx, &counts)?;
            let mut rows = Vec::new();
            let mut records: Vec<(PostKey, PostRecord)> = Vec::new();
            for r in &live {
                let mut record: Option<(PostKey, PostRecord)> = None;
                for d in &r.deliveries {
                    let slot = next.get_mut(&d.chat).ok_or_else(|| {
                        StoreError::Io(format!("no seq was allocated for {}", d.chat))
                    })?;
                    let seq = *slot;
                    *slot += 1;
                    rows.push(queue_row(
                        &d.chat,
                        seq,
                        &d.payload,
                        (now_ms, 0, None),
                        now_ms,
                    )?);
                    if let Payload::Event { event, filter } = &d.payload
                        && PostKey::opens(event)
                        && let Some(key) = PostKey::of(event)
                    {
                        let (_, rec) = record.get_or_insert_with(|| {
                            let rec = PostRecord {
                                event: (**event).clone(),
                                chats: vec![],
                                deleted: false,
                            };
                            (key, rec)
                        });
                        rec.chats.push(PostChat {
                            chat: d.chat.clone(),
                            seq: un(seq),
                            filter: *filter,
                            dropped: false,
                        });
                    }
                }
                records.extend(record);
            }
            insert_queue(tx, &rows)?;
            put_posts(tx, records.iter().map(|(k, r)| (k, r)), now_ms)?;
            // Cheap: a lost route is routed again from the inbox.
            Ok(((), Commit::Cheap))
        })
    }

    fn post_record(&self, k: &PostKey) -> Result<Option<PostRecord>, StoreError> {
        self.read(|c| {
            let (topic, number) = (key(k.topic), key(k.number));
            let row = c.query_opt(
                "SELECT row FROM posts WHERE forum = $1 AND topic = $2 AND number = $3",
                &[&k.forum, &topic, &number],
            )?;
            let Some(row) = row else {
                return Ok((None, vec![]));
            };
            let bytes: &[u8] = row.get(0);
            Ok(match decode(bytes) {
                Ok(r) => (Some(r), vec![]),
                // Forgotten, as if remembered too long ago.
                Err(e) => {
                    let at = Row::Post(k.forum.clone(), topic, number);
                    (None, vec![Unreadable::new(at, bytes, e)])
                }
            })
        })
    }

    fn follow_up(
        &self,
        id: u64,
        k: &PostKey,
        mut record: Option<PostRecord>,
        steps: &[FollowUp],
        now_ms: u64,
    ) -> Result<Vec<String>, StoreError> {
        self.write(|tx| {
            if tx.execute("DELETE FROM inbox WHERE id = $1", &[&ms(id)])? == 0 {
                return Ok((vec![], Commit::Nothing)); // already done
            }
            // Locked against `heads`: what a worker took is either seen
            // here or taken after this commits.
            let mut chats: Vec<&str> = steps.iter().map(|s| s.chat.as_str()).collect();
            chats.sort_unstable();
            chats.dedup();
            let taken: HashMap<String, i64> = tx
                .query(
                    "SELECT chat, taken_through FROM chats WHERE chat = ANY($1) \
                     ORDER BY chat FOR UPDATE",
                    &[&chats],
                )?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            let mut changed = Vec::new();
            for step in steps {
                let chat = step.chat.as_str();
                let waiting = match step.queued.map(ms) {
                    Some(seq) if taken.get(chat).is_none_or(|&t| seq > t) => {
                        waiting(tx, chat, seq, now_ms)?
                    }
                    _ => None,
                };
                if let Some(mut d) = waiting {
                    let seq = ms(d.seq);
                    match &step.if_queued {
                        Some(payload) => {
                            d.payload = payload.clone();
                            tx.execute(
                                "UPDATE queue SET row = $3 WHERE chat = $1 AND seq = $2",
                                &[&chat, &seq, &encode_row(&d)?],
                            )?;
                        }
                        None => {
                            tx.execute(
                                "DELETE FROM queue WHERE chat = $1 AND seq = $2",
                                &[&chat, &seq],
                            )?;
                            if let Some(c) = record.as_mut().and_then(|r| r.chat_mut(chat)) {
                                c.dropped = true;
                            }
                        }
                    }
                    changed.push(step.chat.clone());
                } else if let Some(payload) = &step.otherwise {
                    let seq = append(tx, chat, payload, (now_ms, 0, None), now_ms)?;
                    // A re-post moves the record's seq; a note beside it does not.
                    if let Payload::Event { event, .. } = payload
                        && PostKey::of(event).as_ref() == Some(k)
                        && let Some(c) = record.as_mut().and_then(|r| r.chat_mut(chat))
                    {
                        c.seq = un(seq);
                        c.dropped = false;
                    }
                    changed.push(step.chat.clone());
                }
            }
            if let Some(r) = &record {
                put_post(tx, k, r, now_ms)?;
            }
            Ok((changed, Commit::Durable))
        })
    }

    fn enqueue(&self, delivery: &NewDelivery, now_ms: u64) -> Result<u64, StoreError> {
        self.write(|tx| {
            let seq = append(
                tx,
                &delivery.chat,
                &delivery.payload,
                (now_ms, 0, None),
                now_ms,
            )?;
            Ok((un(seq), Commit::Durable))
        })
    }

    fn head(&self, chat: &str) -> Result<Option<QueuedDelivery>, StoreError> {
        self.write(|tx| {
            let (heads, set_aside) = read_queue(tx, chat, 1)?;
            let commit = if set_aside {
                Commit::Durable
            } else {
                Commit::Nothing
            };
            Ok((heads.into_iter().next(), commit))
        })
    }

    fn heads(&self, chat: &str, max: usize) -> Result<Vec<QueuedDelivery>, StoreError> {
        self.write(|tx| {
            self.fence(tx, chat, true)?;
            // The chat's row lock orders this against `follow_up`.
            let taken: Option<i64> = tx
                .query_typed_opt(
                    "SELECT taken_through FROM chats WHERE chat = $1 FOR UPDATE",
                    &[(&chat, Type::TEXT)],
                )?
                .map(|r| r.get(0));
            let Some(taken) = taken else {
                return Ok((vec![], Commit::Nothing)); // never queued to
            };
            let (heads, set_aside) = read_queue(tx, chat, max)?;
            let now = heads.last().map_or(0, |d| ms(d.seq));
            if now == taken {
                let commit = if set_aside {
                    Commit::Durable
                } else {
                    Commit::Nothing
                };
                return Ok((heads, commit));
            }
            tx.execute_typed(
                "UPDATE chats SET taken_through = $2 WHERE chat = $1",
                &[(&chat, Type::TEXT), (&now, Type::INT8)],
            )?;
            Ok((heads, Commit::Cheap))
        })
    }

    fn ack_many(&self, chat: &str, acks: &[Ack]) -> Result<(), StoreError> {
        if acks.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            self.fence(tx, chat, false)?;
            let seqs: Vec<i64> = acks.iter().map(|a| ms(a.seq)).collect();
            // The statement sees the queue as it was before its delete: the
            // rest of the chat's queue is what the acks do not name.
            let row = tx.query_typed_one(
                "WITH d AS (DELETE FROM queue WHERE chat = $1 AND seq = ANY($2) RETURNING seq) \
                 SELECT ARRAY(SELECT seq FROM d), \
                 NOT EXISTS (SELECT 1 FROM queue WHERE chat = $1 AND seq <> ALL($2))",
                &[(&chat, Type::TEXT), (&seqs, Type::INT8_ARRAY)],
            )?;
            let mut removed: HashSet<i64> = row.get::<_, Vec<i64>>(0).into_iter().collect();
            let drained: bool = row.get(1);
            // Already acked (a re-sent batch): counted the first time only.
            let settled: Vec<&DeliveryRecord> = acks
                .iter()
                .filter(|a| removed.remove(&ms(a.seq)))
                .map(|a| &a.record)
                .collect();
            // The last change to each ref wins, as applied in order.
            let mut refs: BTreeMap<(i64, i64), Option<&MessageRef>> = BTreeMap::new();
            for change in acks.iter().flat_map(|a| &a.refs) {
                match change {
                    RefChange::Put { topic, number, r } => {
                        refs.insert((key(*topic), key(*number)), Some(r))
                    }
                    RefChange::Remove { topic, number } => {
                        refs.insert((key(*topic), key(*number)), None)
                    }
                };
            }
            let (mut topics, mut numbers, mut ats, mut rows) = (vec![], vec![], vec![], vec![]);
            let mut gone: Vec<(i64, i64)> = Vec::new();
            for ((topic, number), r) in refs {
                match r {
                    Some(r) => {
                        topics.push(topic);
                        numbers.push(number);
                        ats.push(ms(r.stored_at_ms));
                        rows.push(encode_row(r)?);
                    }
                    None => gone.push((topic, number)),
                }
            }
            if !topics.is_empty() {
                let bytes: Vec<&[u8]> = rows.iter().map(Vec::as_slice).collect();
                tx.execute_typed(
                    "INSERT INTO message_refs (chat, topic, number, stored_at_ms, row) \
                     SELECT $1, * FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::bytea[]) \
                     ON CONFLICT (chat, topic, number) \
                     DO UPDATE SET stored_at_ms = excluded.stored_at_ms, row = excluded.row",
                    &[(&chat, Type::TEXT), (&topics, Type::INT8_ARRAY), (&numbers, Type::INT8_ARRAY), (&ats, Type::INT8_ARRAY), (&bytes, Type::BYTEA_ARRAY)],
                )?;
            }
            for (topic, number) in gone {
                tx.execute(
                    "DELETE FROM message_refs WHERE chat = $1 AND topic = $2 AND number = $3",
                    &[&chat, &topic, &number],
                )?;
            }
            record_activity(tx, chat, settled)?;
            // Cheap, unless it drained the queue: then a crash right after
            // re-sends nothing (the relay is between bursts).
            let commit = if drained {
                Commit::Durable
            } else {
                Commit::Cheap
            };
            Ok(((), commit))
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
        self.write(|tx| {
            self.fence(tx, chat, false)?;
            let seq = ms(seq);
            let Some(row) = tx.query_opt(
                "SELECT row FROM queue WHERE chat = $1 AND seq = $2 FOR UPDATE",
                &[&chat, &seq],
            )?
            else {
                return Ok(((), Commit::Nothing)); // acked or dead-lettered meanwhile
            };
            let bytes: Vec<u8> = row.get(0);
            let mut d: QueuedDelivery = match decode(&bytes) {
                Ok(d) => d,
                Err(e) => {
                    let bad = Unreadable::new(Row::Queue(chat.into(), seq), &bytes, e);
                    set_aside(tx, &bad, now_ms)?;
                    return Ok(((), Commit::Durable));
                }
            };
            d.attempts = d.attempts.saturating_add(1);
            d.next_attempt_at_ms = next_attempt_at_ms;
            d.last_error = Some(error.to_string());
            tx.execute(
                "UPDATE queue SET row = $3 WHERE chat = $1 AND seq = $2",
                &[&chat, &seq, &encode_row(&d)?],
            )?;
            let result = AttemptResult::Retried {
                reason: error.to_string(),
                next_attempt_at_ms,
            };
            record_activity(tx, chat, [&DeliveryRecord::of(&d, now_ms, result)])?;
            // Cheap: a lost reschedule retries early after a crash.
            Ok(((), Commit::Cheap))
        })
    }

    fn dead_letter(
        &self,
        chat: &str,
        seq: u64,
        reason: &str,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            self.fence(tx, chat, false)?;
            let seq = ms(seq);
            let Some(row) = tx.query_opt(
                "DELETE FROM queue WHERE chat = $1 AND seq = $2 RETURNING row",
                &[&chat, &seq],
            )?
            else {
                return Ok(((), Commit::Nothing)); // already acked or dead-lettered
            };
            let bytes: Vec<u8> = row.get(0);
            let delivery: QueuedDelivery = match decode(&bytes) {
                Ok(d) => d,
                Err(e) => {
                    // Already removed from the queue: kept aside instead.
                    let bad = Unreadable::new(Row::Queue(chat.into(), seq), &bytes, e);
                    put_quarantine(tx, &bad, now_ms)?;
                    return Ok(((), Commit::Durable));
                }
            };
            let result = AttemptResult::DeadLettered {
                reason: reason.to_string(),
            };
            record_activity(tx, chat, [&DeliveryRecord::of(&delivery, now_ms, result)])?;
            let letter = DeadLetter {
                id: 0,
                delivery,
                reason: reason.to_string(),
                failed_at_ms: now_ms,
            };
            tx.execute(
                "INSERT INTO dead (chat, failed_at_ms, row) VALUES ($1, $2, $3)",
                &[&chat, &ms(now_ms), &encode_row(&letter)?],
            )?;
            Ok(((), Commit::Durable))
        })
    }

    fn queue_depths(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.with(|c| {
            Ok(counted(c.query(
                "SELECT chat, count(*) FROM queue GROUP BY chat ORDER BY chat",
                &[],
            )?))
        })
    }

    fn dead_letters(&self, chat: Option<&str>, max: usize) -> Result<Vec<DeadLetter>, StoreError> {
        self.read(|c| {
            let rows = c.query(
                "SELECT id, row FROM dead WHERE $1::text IS NULL OR chat = $1 \
                 ORDER BY id DESC LIMIT $2",
                &[&chat, &limit(max)],
            )?;
            let (mut out, mut bad) = (Vec::new(), Vec::new());
            for row in &rows {
                let id: i64 = row.get(0);
                let bytes: &[u8] = row.get(1);
                match decode::<DeadLetter>(bytes) {
                    Ok(mut d) => {
                        d.id = un(id);
                        out.push(d);
                    }
                    Err(e) => bad.push(Unreadable::new(Row::Dead(id), bytes, e)),
                }
            }
            Ok((out, bad))
        })
    }

    fn dead_letter_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.with(|c| {
            Ok(counted(c.query(
                "SELECT chat, count(*) FROM dead GROUP BY chat ORDER BY chat",
                &[],
            )?))
        })
    }

    fn resend_dead_letters(
        &self,
        chat: &str,
        ids: Option<&[u64]>,
        now_ms: u64,
    ) -> Result<u64, StoreError> {
        self.write(|tx| {
            let rows = tx.query(
                "SELECT id, row FROM dead WHERE chat = $1 AND ($2::bigint[] IS NULL OR id = ANY($2)) \
                 ORDER BY id FOR UPDATE",
                &[&chat, &id_filter(ids)],
            )?;
            // An unreadable row stays: the listing quarantines it.
            let letters: Vec<(i64, DeadLetter)> = rows
                .iter()
                .filter_map(|r| {
                    let bytes: &[u8] = r.get(1);
                    decode::<DeadLetter>(bytes).ok().map(|d| (r.get(0), d))
                })
                .collect();
            if letters.is_empty() {
                return Ok((0, Commit::Nothing));
            }
            let first = alloc_seqs(tx, &BTreeMap::from([(chat, limit(letters.len()))]))?;
            let first = first.get(chat).copied().ok_or_else(|| {
                StoreError::Io(format!("no seq was allocated for {chat}"))
            })?;
            let mut rows = Vec::with_capacity(letters.len());
            for ((_, l), seq) in letters.iter().zip(first..) {
                let d = &l.delivery;
                let history = (d.created_at_ms, d.attempts, d.last_error.as_deref());
                rows.push(queue_row(chat, seq, &d.payload, history, now_ms)?);
            }
            insert_queue(tx, &rows)?;
            let gone: Vec<i64> = letters.iter().map(|(id, _)| *id).collect();
            let n = tx.execute("DELETE FROM dead WHERE id = ANY($1)", &[&gone])?;
            Ok((n, Commit::Durable))
        })
    }

    fn drop_dead_letters(&self, chat: &str, ids: Option<&[u64]>) -> Result<u64, StoreError> {
        self.write(|tx| {
            let n = tx.execute(
                "DELETE FROM dead WHERE chat = $1 AND ($2::bigint[] IS NULL OR id = ANY($2))",
                &[&chat, &id_filter(ids)],
            )?;
            Ok((
                n,
                if n > 0 {
                    Commit::Durable
                } else {
                    Commit::Nothing
                },
            ))
        })
    }

    fn sync(&self) -> Result<(), StoreError> {
        if !self.cheap_pending.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        // A transaction with an id commits with a WAL flush, which makes
        // every earlier asynchronous commit durable too.
        let r = self.write(|tx| {
            tx.query_one("SELECT txid_current()", &[])?;
            Ok(((), Commit::Durable))
        });
        if r.is_err() {
            self.cheap_pending.store(true, Ordering::Release);
        }
        r
    }

    fn prune(&self, before_ms: u64, refs_before_ms: u64) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM dedupe WHERE seen_at_ms < $1",
                &[&ms(before_ms)],
            )?;
            tx.execute(
                "DELETE FROM message_refs WHERE stored_at_ms < $1",
                &[&ms(refs_before_ms)],
            )?;
            tx.execute(
                "DELETE FROM posts WHERE stored_at_ms < $1",
                &[&ms(refs_before_ms)],
            )?;
            Ok(((), Commit::Durable))
        })
    }

    fn prune_dead_letters(&self, before_ms: u64, max_per_chat: u64) -> Result<u64, StoreError> {
        self.write(|tx| {
            let old = tx.execute(
                "DELETE FROM dead WHERE failed_at_ms < $1",
                &[&ms(before_ms)],
            )?;
            let over = tx.execute(
                "DELETE FROM dead WHERE id IN (SELECT id FROM (SELECT id, row_number() \
                 OVER (PARTITION BY chat ORDER BY id DESC) AS newer FROM dead) AS d \
                 WHERE newer > $1)",
                &[&ms(max_per_chat)],
            )?;
            let n = old + over;
            Ok((
                n,
                if n > 0 {
                    Commit::Durable
                } else {
                    Commit::Nothing
                },
            ))
        })
    }

    fn hourly_counts(&self, since_ms: u64) -> Result<Vec<HourCount>, StoreError> {
        self.with(|c| {
            let rows = c.query(
                "SELECT chat, hour, delivered, failed, retried FROM hourly_counts \
                 WHERE hour >= $1 ORDER BY chat, hour",
                &[&ms(since_ms / HOUR_MS)],
            )?;
            Ok(rows
                .iter()
                .map(|r| HourCount {
                    chat: r.get(0),
                    hour: un(r.get(1)),
                    delivered: un(r.get(2)),
                    failed: un(r.get(3)),
                    retried: un(r.get(4)),
                })
                .collect())
        })
    }

    fn recent_deliveries(&self, chat: &str, max: usize) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.read(|c| {
            let rows = c.query(
                "SELECT n, row FROM recent_deliveries WHERE chat = $1 ORDER BY n DESC LIMIT $2",
                &[&chat, &limit(max)],
            )?;
            let (mut out, mut bad) = (Vec::new(), Vec::new());
            for row in &rows {
                let n: i64 = row.get(0);
                let bytes: &[u8] = row.get(1);
                match decode::<DeliveryRecord>(bytes) {
                    Ok(r) => out.push(r),
                    Err(e) => bad.push(Unreadable::new(Row::Recent(chat.into(), n), bytes, e)),
                }
            }
            Ok((out, bad))
        })
    }

    fn prune_hourly_counts(&self, before_ms: u64) -> Result<(), StoreError> {
        self.write(|tx| {
            let n = tx.execute(
                "DELETE FROM hourly_counts WHERE hour < $1",
                &[&ms(before_ms / HOUR_MS)],
            )?;
            Ok((
                (),
                if n > 0 {
                    Commit::Durable
                } else {
                    Commit::Nothing
                },
            ))
        })
    }

    fn claim(&self, chat: &str, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        self.leasing.store(true, Ordering::Release);
        let granted = self.write(|tx| {
            tx.execute(
                "INSERT INTO chats (chat) VALUES ($1) ON CONFLICT DO NOTHING",
                &[&chat],
            )?;
            // Free, expired or already ours (then renewed under the same
            // epoch while unexpired); the expiry is the database's clock,
            // the same for every relay.
            let row = tx.query_opt(
                "UPDATE chats SET \
                 epoch = CASE WHEN owner = $2 AND lease_until > now() THEN epoch ELSE epoch + 1 END, \
                 owner = $2, lease_until = now() + make_interval(secs => $3) \
                 WHERE chat = $1 AND (owner IS NULL OR owner = $2 OR lease_until IS NULL \
                 OR lease_until <= now()) RETURNING epoch",
                &[&chat, &self.node, &ttl.as_secs_f64()],
            )?;
            Ok((row.map(|r| r.get::<_, i64>(0)), Commit::Durable))
        })?;
        let mut held = self.held();
        match granted {
            Some(epoch) => {
                held.insert(chat.to_string(), epoch);
                Ok(Some(Lease { epoch: un(epoch) }))
            }
            None => {
                // Someone else's: anything this store held of it is lost.
                held.remove(chat);
                Ok(None)
            }
        }
    }

    fn renew(&self, chat: &str, ttl: Duration) -> Result<Lease, StoreError> {
        let lost = || StoreError::LostLease { chat: chat.into() };
        let Some(epoch) = self.held().get(chat).copied() else {
            return Err(lost());
        };
        let renewed = self.write(|tx| {
            let n = tx.execute(
                "UPDATE chats SET lease_until = now() + make_interval(secs => $4) \
                 WHERE chat = $1 AND owner = $2 AND epoch = $3 AND lease_until > now()",
                &[&chat, &self.node, &epoch, &ttl.as_secs_f64()],
            )?;
            Ok((n == 1, Commit::Durable))
        })?;
        if renewed {
            Ok(Lease { epoch: un(epoch) })
        } else {
            self.held().remove(chat);
            Err(lost())
        }
    }

    fn release(&self, chat: &str) -> Result<(), StoreError> {
        let Some(epoch) = self.held().remove(chat) else {
            return Ok(());
        };
        self.write(|tx| {
            tx.execute(
                "UPDATE chats SET lease_until = now() \
                 WHERE chat = $1 AND owner = $2 AND epoch = $3",
                &[&chat, &self.node, &epoch],
            )?;
            Ok(((), Commit::Durable))
        })
    }

    fn quarantined(&self) -> Result<QuarantineSummary, StoreError> {
        self.with(|c| {
            let count: i64 = c.query_one("SELECT count(*) FROM quarantine", &[])?.get(0);
            let newest = c
                .query(
                    "SELECT at_ms, source, key, error FROM quarantine ORDER BY id DESC LIMIT $1",
                    &[&QUARANTINE_NEWEST],
                )?
                .iter()
                .map(|r| QuarantinedRow {
                    at_ms: un(r.get(0)),
                    table: r.get(1),
                    key: r.get(2),
                    error: r.get(3),
                })
                .collect();
            Ok(QuarantineSummary {
                count: un(count),
                newest,
            })
        })
    }

    fn message_ref(
        &self,
        chat: &str,
        topic: u64,
        number: u64,
    ) -> Result<Option<MessageRef>, StoreError> {
        self.read(|c| {
            let (topic, number) = (key(topic), key(number));
            let row = c.query_opt(
                "SELECT row FROM message_refs WHERE chat = $1 AND topic = $2 AND number = $3",
                &[&chat, &topic, &number],
            )?;
            let Some(row) = row else {
                return Ok((None, vec![]));
            };
            let bytes: &[u8] = row.get(0);
            Ok(match decode(bytes) {
                Ok(r) => (Some(r), vec![]),
                // As if never recorded: a reply posts at the top level.
                Err(e) => {
                    let at = Row::Ref(chat.into(), topic, number);
                    (None, vec![Unreadable::new(at, bytes, e)])
                }
            })
        })
    }
}

/// The delivery `seq` of `chat` if it is queued behind the head (the head
/// may be in flight). An unreadable one is moved to the quarantine and
/// counts as gone.
fn waiting(
    tx: &mut Transaction<'_>,
    chat: &str,
    seq: i64,
    now_ms: u64,
) -> R<Option<QueuedDelivery>> {
    let row = tx.query_one(
        "SELECT (SELECT min(seq) FROM queue WHERE chat = $1), \
                (SELECT row FROM queue WHERE chat = $1 AND seq = $2)",
        &[&chat, &seq],
    )?;
    let head: Option<i64> = row.get(0);
    let bytes: Option<Vec<u8>> = row.get(1);
    let (Some(head), Some(bytes)) = (head, bytes) else {
        return Ok(None);
    };
    if head == seq {
        return Ok(None);
    }
    match decode(&bytes) {
        Ok(d) => Ok(Some(d)),
        Err(e) => {
            set_aside(
                tx,
                &Unreadable::new(Row::Queue(chat.into(), seq), &bytes, e),
                now_ms,
            )?;
            Ok(None)
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! Connecting to the test database; the behaviour tests are shared
    //! with redb (`store_suite`).

    use super::*;

    use crate::delivery::store_suite::{Fixture, Spoil};

    /// A store in a schema of its own in `DISCOURSE_RELAY_TEST_PG`, so
    /// tests run in parallel; `None` (a SKIP line) when the variable is not
    /// set, a panic when `CI=true` (then `.ci/run`'s start-postgres broke).
    pub(crate) struct PgFixture {
        url: String,
        /// Also the connections' `application_name`.
        schema: String,
        store: Option<PgStore>,
    }

    pub(crate) fn fixture(test: &str) -> Option<PgFixture> {
        let base = base_url()?;
        let schema = fresh_schema(&base, test);
        let url = with_schema(&base, &schema);
        let store = Some(PgStore::open(&url).unwrap());
        Some(PgFixture { url, schema, store })
    }

    impl PgFixture {
        fn client(&self) -> Client {
            Client::connect(&self.url, NoTls).unwrap()
        }
    }

    impl Fixture for PgFixture {
        fn store(&self) -> &dyn Store {
            self.store.as_ref().unwrap()
        }

        fn queued(&self, chat: &str) -> Vec<u64> {
            (self.client())
                .query(
                    "SELECT seq FROM queue WHERE chat = $1 ORDER BY seq",
                    &[&chat],
                )
                .unwrap()
                .iter()
                .map(|r| un(r.get(0)))
                .collect()
        }

        fn reopen(&mut self) {
            drop(self.store.take());
            self.store = Some(PgStore::open(&self.url).unwrap());
        }

        fn spoil(&self, row: Spoil<'_>, bytes: &[u8]) {
            let mut c = self.client();
            let n = match row {
                Spoil::Inbox(id) => c.execute(
                    "UPDATE inbox SET row = $2 WHERE id = $1",
                    &[&ms(id), &bytes],
                ),
                Spoil::Queue(chat, seq) => c.execute(
                    "UPDATE queue SET row = $3 WHERE chat = $1 AND seq = $2",
                    &[&chat, &ms(seq), &bytes],
                ),
                Spoil::Recent(chat, n) => c.execute(
                    "UPDATE recent_deliveries SET row = $3 WHERE chat = $1 AND n = $2",
                    &[&chat, &ms(n), &bytes],
                ),
            };
            assert_eq!(n.unwrap(), 1, "no such row to spoil");
        }

        fn first_quarantined_raw(&self) -> Option<Vec<u8>> {
            (self.client())
                .query_opt("SELECT raw FROM quarantine ORDER BY id LIMIT 1", &[])
                .unwrap()
                .map(|r| r.get(0))
        }
    }

    mod suite {
        crate::delivery::store_suite::store_suite!(super::fixture);
    }

    #[test]
    fn an_unreachable_database_is_a_clear_io_error_without_the_password() {
        // Nothing listens on port 1: refused at once, no server needed.
        let err = PgStore::open("postgres://relay:s3cret-pw@127.0.0.1:1/relay").unwrap_err();
        let StoreError::Io(text) = &err else {
            panic!("{err:?}");
        };
        assert!(
            text.contains("cannot connect to PostgreSQL at relay@127.0.0.1:1/relay"),
            "{text}"
        );
        assert!(!text.contains("s3cret-pw"), "{text}");
        let err = PgStore::open("postgres://relay:s3cret-pw@[::1").unwrap_err();
        assert!(!err.to_string().contains("s3cret-pw"), "{err}");
    }

    #[test]
    fn a_schema_migrated_by_a_newer_relay_is_refused() {
        let Some(f) = fixture("newer_schema") else {
            return;
        };
        f.client()
            .execute(
                "INSERT INTO relay_schema_history (version, name, applied_on, checksum) \
                 VALUES (99, 'from_the_future', '2030-01-01T00:00:00Z', '0')",
                &[],
            )
            .unwrap();
        let err = PgStore::open(&f.url).unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt(m) if m.contains("schema version 99")),
            "{err:?}"
        );
    }

    #[test]
    fn the_database_going_away_is_an_io_error_and_the_store_recovers() {
        let Some(f) = fixture("goes_away") else {
            return;
        };
        let store = f.store();
        store.enqueue(&test("a"), 1).unwrap();
        // Every connection of the store is cut (as by a restart of the
        // database): the next calls fail or reconnect, never panic.
        f.client()
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = $1 AND pid <> pg_backend_pid()",
                &[&f.schema],
            )
            .unwrap();
        let mut failures = 0;
        let head = loop {
            match store.head("a") {
                Ok(h) => break h,
                Err(StoreError::Io(_)) if failures < POOL_SIZE => failures += 1,
                Err(e) => panic!("{e:?}"),
            }
        };
        assert_eq!(head.map(|d| d.seq), Some(1));
    }

    /// The lease of `chat` runs out now (as if its ttl had passed).
    fn expire(f: &PgFixture, chat: &str) {
        let n = f
            .client()
            .execute(
                "UPDATE chats SET lease_until = now() - interval '1 second' WHERE chat = $1",
                &[&chat],
            )
            .unwrap();
        assert_eq!(n, 1);
    }

    fn sent(seq: u64) -> Ack {
        crate::delivery::store_suite::sent(seq, &[])
    }

    fn lost(r: Result<impl std::fmt::Debug, StoreError>) -> bool {
        matches!(r, Err(StoreError::LostLease { chat }) if chat == "c")
    }

    const TTL: Duration = Duration::from_secs(60);

    #[test]
    fn one_relay_holds_a_chat_until_its_lease_expires_then_another_with_a_higher_epoch() {
        let Some(f) = fixture("lease_takeover") else {
            return;
        };
        let a = f.store.as_ref().unwrap();
        let b = PgStore::open(&f.url).unwrap();
        for _ in 0..3 {
            a.enqueue(&test("c"), 1).unwrap();
        }
        let first = a.claim("c", TTL).unwrap().expect("free");
        // Claiming again renews, under the same epoch; renew does too.
        assert_eq!(a.claim("c", TTL).unwrap(), Some(first));
        assert_eq!(a.renew("c", TTL).unwrap(), first);
        // The second relay cannot take it while it is held...
        assert_eq!(b.claim("c", TTL).unwrap(), None);
        assert!(lost(b.heads("c", 10)), "b sends nothing for c");
        // ...and the owner works as usual.
        assert_eq!(a.heads("c", 1).unwrap()[0].seq, 1);
        a.ack("c", sent(1)).unwrap();

        // The owner stops renewing (paused, partitioned): after the expiry
        // the other relay takes over with a higher epoch.
        expire(&f, "c");
        let second = b.claim("c", TTL).unwrap().expect("expired");
        assert!(second.epoch > first.epoch, "{second:?} after {first:?}");
        let took: Vec<u64> = b.heads("c", 10).unwrap().iter().map(|d| d.seq).collect();
        assert_eq!(took, vec![2, 3]);

        // The old owner's late writes change nothing and say so.
        assert!(lost(a.ack("c", sent(2))));
        assert!(lost(a.reschedule("c", 3, 99, "HTTP 500", 1)));
        assert!(lost(a.dead_letter("c", 3, "gone", 1)));
        assert!(lost(a.heads("c", 10)));
        assert!(lost(a.renew("c", TTL)));
        assert_eq!(f.queued("c"), vec![2, 3], "nothing acked by the old owner");
        assert!(a.dead_letter_counts().unwrap().is_empty());
        let head = b.head("c").unwrap().unwrap();
        assert_eq!((head.seq, head.attempts), (2, 0));
        // It cannot take it back while the new owner holds it.
        assert_eq!(a.claim("c", TTL).unwrap(), None);

        // The new owner's acks go through.
        b.ack_many("c", &[sent(2), sent(3)]).unwrap();
        assert!(f.queued("c").is_empty());
    }

    #[test]
    fn a_released_chat_is_claimed_at_once_and_other_chats_are_unaffected() {
        let Some(f) = fixture("lease_release") else {
            return;
        };
        let a = f.store.as_ref().unwrap();
        let b = PgStore::open(&f.url).unwrap();
        a.enqueue(&test("c"), 1).unwrap();
        a.enqueue(&test("d"), 1).unwrap();
        let first = a.claim("c", TTL).unwrap().unwrap();
        assert_eq!(b.claim("d", TTL).unwrap().map(|l| l.epoch), Some(1));
        a.release("c").unwrap();
        a.release("c").unwrap(); // not held: nothing to do
        let second = b.claim("c", TTL).unwrap().expect("released");
        assert!(second.epoch > first.epoch);
        // Once leasing, a relay writes only for the chats it holds.
        assert!(lost(a.ack("c", sent(1))));
        assert!(matches!(
            a.heads("d", 10),
            Err(StoreError::LostLease { chat }) if chat == "d"
        ));
        b.ack("d", sent(1)).unwrap();
        b.ack("c", sent(1)).unwrap();
        assert!(a.queue_depths().unwrap().is_empty());
        // A relay that never claims (one relay alone) is not fenced.
        let solo = PgStore::open(&f.url).unwrap();
        solo.enqueue(&test("e"), 1).unwrap();
        solo.ack("e", sent(1)).unwrap();
    }

    fn test(chat: &str) -> NewDelivery {
        NewDelivery {
            chat: chat.into(),
            payload: Payload::Test {
                requested_by: "tester".into(),
            },
        }
    }

    /// The test database's URL, or `None` after a SKIP line.
    pub(crate) fn base_url() -> Option<String> {
        match std::env::var("DISCOURSE_RELAY_TEST_PG") {
            Ok(url) if !url.is_empty() => Some(url),
            _ => {
                let waived = std::env::var("RELAY_TEST_WITHOUT")
                    .is_ok_and(|l| l.split(',').any(|p| p.trim() == "postgres"));
                if std::env::var("CI").is_ok_and(|v| v == "true") && !waived {
                    panic!(
                        "CI=true but DISCOURSE_RELAY_TEST_PG is not set: scripts/ci/start-postgres \
                         in .ci/run is broken (set RELAY_TEST_WITHOUT=postgres to skip on purpose)"
                    );
                }
                eprintln!("SKIP: DISCOURSE_RELAY_TEST_PG is not set (scripts/ci/start-postgres)");
                None
            }
        }
    }

    /// Drops and creates schema `t<pid>_<name>` and returns its name.
    pub(crate) fn fresh_schema(url: &str, name: &str) -> String {
        // Within PostgreSQL's 63 bytes; test names are unique well before 48.
        let short: String = name.chars().take(48).collect();
        let schema = format!("t{}_{short}", std::process::id());
        let mut c = postgres::Client::connect(url, NoTls).unwrap();
        c.batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
        ))
        .unwrap();
        schema
    }

    /// `url` with every table in `schema` (libpq's `options`), its
    /// connections named after it.
    pub(crate) fn with_schema(url: &str, schema: &str) -> String {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}options=-csearch_path%3D{schema}&application_name={schema}")
    }
}
