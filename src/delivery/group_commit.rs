//! Group commit for accepted webhooks: every request waits for its event to
//! be durable, but concurrent requests share one transaction and one fsync.
//!
//! One dedicated thread owns the writes: it blocks for the first waiting
//! event, takes every other one already waiting (up to [`MAX_BATCH`]), calls
//! [`Store::accept`] once, and answers each request. Under load, batches
//! grow by themselves while a commit is in progress; an idle relay commits
//! each event at once. Blocking I/O never runs on the async runtime.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc};

use tokio::sync::oneshot;

use super::store::{AcceptOutcome, InboundEvent, Store, StoreError};

/// Most events in one commit.
pub const MAX_BATCH: usize = 1024;

type Reply = oneshot::Sender<Result<AcceptOutcome, StoreError>>;

struct Request {
    event: InboundEvent,
    reply: Reply,
}

#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    events: AtomicU64,
}

/// Funnels accepts from many tasks into batched [`Store::accept`] calls.
///
/// Dropping it (or [`GroupCommitter::shutdown`]) stops taking events; the
/// thread still commits and answers everything already sent, then exits.
pub struct GroupCommitter {
    tx: Mutex<Option<mpsc::Sender<Request>>>,
    done: Mutex<Option<oneshot::Receiver<()>>>,
    counters: Arc<Counters>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn stopped() -> StoreError {
    StoreError::Io("store writer stopped".into())
}

fn copy(e: &StoreError) -> StoreError {
    match e {
        StoreError::Io(m) => StoreError::Io(m.clone()),
        StoreError::Corrupt(m) => StoreError::Corrupt(m.clone()),
        StoreError::LostLease { chat } => StoreError::LostLease { chat: chat.clone() },
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl GroupCommitter {
    /// Starts the writer thread. Should the OS refuse a thread, the error is
    /// logged and every accept fails with [`StoreError::Io`].
    pub fn new(store: Arc<dyn Store>) -> Self {
        let (tx, rx) = mpsc::channel::<Request>();
        let (done_tx, done_rx) = oneshot::channel();
        let counters = Arc::new(Counters::default());
        let thread_counters = counters.clone();
        let spawned = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                // Dropped when the thread ends, even by a panic: wakes
                // `shutdown`. Declared first, so dropped after the store.
                let _done = done_tx;
                let store = store;
                run(store.as_ref(), &rx, &thread_counters);
            });
        let tx = match spawned {
            Ok(_) => Some(tx),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the store writer thread");
                None
            }
        };
        Self {
            tx: Mutex::new(tx),
            done: Mutex::new(Some(done_rx)),
            counters,
        }
    }

    /// Stores `event` durably (or finds it a duplicate), sharing the commit
    /// with every event accepted meanwhile. If the caller is dropped before
    /// the commit starts, the event is skipped (its sender, not answered,
    /// will retry).
    pub async fn accept(&self, event: InboundEvent) -> Result<AcceptOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        let sent = match lock(&self.tx).as_ref() {
            Some(tx) => tx.send(Request { event, reply }).is_ok(),
            None => false,
        };
        if !sent {
            return Err(stopped());
        }
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Stops taking events and waits until the thread has committed and
    /// answered the ones already sent and exited (then the committer no
    /// longer holds the store). Later accepts fail with [`StoreError::Io`].
    pub async fn shutdown(&self) {
        drop(lock(&self.tx).take());
        let done = lock(&self.done).take();
        if let Some(done) = done {
            // Err only means the sender is gone, which is what we wait for.
            let _ = done.await;
        }
    }

    /// Commits made so far (calls of [`Store::accept`]).
    pub fn commits(&self) -> u64 {
        self.counters.commits.load(Ordering::Relaxed)
    }

    /// Events passed to those commits.
    pub fn committed_events(&self) -> u64 {
        self.counters.events.load(Ordering::Relaxed)
    }
}

/// The writer thread: until every sender is gone and the channel drained.
fn run(store: &dyn Store, rx: &mpsc::Receiver<Request>, counters: &Counters) {
    let mut events = Vec::with_capacity(MAX_BATCH);
    let mut replies = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(req) = next.take() {
            // A caller that went away was never answered: skip its event.
            if !req.reply.is_closed() {
                events.push(req.event);
                replies.push(req.reply);
            }
            if events.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if events.is_empty() {
            continue;
        }
        let result = catch_unwind(AssertUnwindSafe(|| store.accept(&events, now_ms())));
        counters.commits.fetch_add(1, Ordering::Relaxed);
        counters
            .events
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        match result {
            Ok(Ok(outcomes)) if outcomes.len() == replies.len() => {
                for (reply, outcome) in replies.drain(..).zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Ok(Ok(outcomes)) => {
                let e = StoreError::Io(format!(
                    "the store answered {} outcomes for {} events",
                    outcomes.len(),
                    replies.len()
                ));
                tracing::error!(error = %e, "group commit");
                for reply in replies.drain(..) {
                    let _ = reply.send(Err(copy(&e)));
                }
            }
            Ok(Err(e)) => {
                for reply in replies.drain(..) {
                    let _ = reply.send(Err(copy(&e)));
                }
            }
            Err(_) => {
                tracing::error!("the store panicked while accepting a batch");
                for reply in replies.drain(..) {
                    let _ = reply.send(Err(StoreError::Io("the store panicked".into())));
                }
            }
        }
        events.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::delivery::redb_store::RedbStore;
    use crate::delivery::redb_store::tests::inbound;
    use crate::delivery::store::{
        Ack, DeadLetter, DeliveryRecord, FollowUp, HourCount, MessageRef, NewDelivery,
        PendingChange, PostKey, PostRecord, QuarantineSummary, QueuedDelivery, Routed, StoredEvent,
    };

    /// Delegates to a [`RedbStore`], counting and optionally slowing (like a
    /// slow disk) or failing `accept`.
    struct Counting {
        inner: RedbStore,
        accepts: AtomicU64,
        delay: Duration,
        fail_first: AtomicU64,
        panic_first: AtomicU64,
    }

    impl Counting {
        fn new(dir: &tempfile::TempDir, delay: Duration) -> Arc<Self> {
            Arc::new(Self {
                inner: RedbStore::open(&dir.path().join("relay.redb")).unwrap(),
                accepts: AtomicU64::new(0),
                delay,
                fail_first: AtomicU64::new(0),
                panic_first: AtomicU64::new(0),
            })
        }
    }

    fn take(n: &AtomicU64) -> bool {
        n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
            .is_ok()
    }

    impl Store for Counting {
        fn accept(
            &self,
            batch: &[InboundEvent],
            now_ms: u64,
        ) -> Result<Vec<AcceptOutcome>, StoreError> {
            self.accepts.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(self.delay);
            if take(&self.panic_first) {
                panic!("injected panic");
            }
            if take(&self.fail_first) {
                return Err(StoreError::Io("No space left on device".into()));
            }
            self.inner.accept(batch, now_ms)
        }
        fn due_events(&self, now_ms: u64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
            self.inner.due_events(now_ms, limit)
        }
        fn update_pending(
            &self,
            f: &mut dyn FnMut(&mut StoredEvent) -> PendingChange,
        ) -> Result<usize, StoreError> {
            self.inner.update_pending(f)
        }
        fn route_many(&self, routed: &[Routed], now_ms: u64) -> Result<(), StoreError> {
            self.inner.route_many(routed, now_ms)
        }
        fn heads(&self, chat: &str, limit: usize) -> Result<Vec<QueuedDelivery>, StoreError> {
            self.inner.heads(chat, limit)
        }
        fn enqueue(&self, d: &NewDelivery, now_ms: u64) -> Result<u64, StoreError> {
            self.inner.enqueue(d, now_ms)
        }
        fn head(&self, chat: &str) -> Result<Option<QueuedDelivery>, StoreError> {
            self.inner.head(chat)
        }
        fn ack_many(&self, chat: &str, acks: &[Ack]) -> Result<(), StoreError> {
            self.inner.ack_many(chat, acks)
        }
        fn reschedule(
            &self,
            chat: &str,
            seq: u64,
            at: u64,
            e: &str,
            now: u64,
        ) -> Result<(), StoreError> {
            self.inner.reschedule(chat, seq, at, e, now)
        }
        fn hourly_counts(&self, since_ms: u64) -> Result<Vec<HourCount>, StoreError> {
            self.inner.hourly_counts(since_ms)
        }
        fn recent_deliveries(
            &self,
            chat: &str,
            limit: usize,
        ) -> Result<Vec<DeliveryRecord>, StoreError> {
            self.inner.recent_deliveries(chat, limit)
        }
        fn prune_hourly_counts(&self, before_ms: u64) -> Result<(), StoreError> {
            self.inner.prune_hourly_counts(before_ms)
        }
        fn dead_letter(&self, chat: &str, seq: u64, r: &str, now: u64) -> Result<(), StoreError> {
            self.inner.dead_letter(chat, seq, r, now)
        }
        fn queue_depths(&self) -> Result<Vec<(String, u64)>, StoreError> {
            self.inner.queue_depths()
        }
        fn dead_letters(
            &self,
            chat: Option<&str>,
            n: usize,
        ) -> Result<Vec<DeadLetter>, StoreError> {
            self.inner.dead_letters(chat, n)
        }
        fn dead_letter_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
            self.inner.dead_letter_counts()
        }
        fn resend_dead_letters(
            &self,
            chat: &str,
            ids: Option<&[u64]>,
            now: u64,
        ) -> Result<u64, StoreError> {
            self.inner.resend_dead_letters(chat, ids, now)
        }
        fn drop_dead_letters(&self, chat: &str, ids: Option<&[u64]>) -> Result<u64, StoreError> {
            self.inner.drop_dead_letters(chat, ids)
        }
        fn sync(&self) -> Result<(), StoreError> {
            self.inner.sync()
        }
        fn prune(&self, before_ms: u64, refs_before_ms: u64) -> Result<(), StoreError> {
            self.inner.prune(before_ms, refs_before_ms)
        }
        fn prune_dead_letters(&self, before_ms: u64, max: u64) -> Result<u64, StoreError> {
            self.inner.prune_dead_letters(before_ms, max)
        }
        fn quarantined(&self) -> Result<QuarantineSummary, StoreError> {
            self.inner.quarantined()
        }
        fn post_record(&self, key: &PostKey) -> Result<Option<PostRecord>, StoreError> {
            self.inner.post_record(key)
        }
        fn follow_up(
            &self,
            id: u64,
            key: &PostKey,
            record: Option<PostRecord>,
            steps: &[FollowUp],
            now_ms: u64,
        ) -> Result<Vec<String>, StoreError> {
            self.inner.follow_up(id, key, record, steps, now_ms)
        }
        fn message_ref(
            &self,
            chat: &str,
            topic: u64,
            number: u64,
        ) -> Result<Option<MessageRef>, StoreError> {
            self.inner.message_ref(chat, topic, number)
        }
        fn claim(
            &self,
            chat: &str,
            ttl: std::time::Duration,
        ) -> Result<Option<crate::delivery::store::Lease>, StoreError> {
            self.inner.claim(chat, ttl)
        }
        fn renew(
            &self,
            chat: &str,
            ttl: std::time::Duration,
        ) -> Result<crate::delivery::store::Lease, StoreError> {
            self.inner.renew(chat, ttl)
        }
        fn release(&self, chat: &str) -> Result<(), StoreError> {
            self.inner.release(chat)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_accepts_share_commits() {
        let dir = tempfile::tempdir().unwrap();
        let store = Counting::new(&dir, Duration::from_millis(5));
        let committer = Arc::new(GroupCommitter::new(store.clone()));
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..200u64 {
            let c = committer.clone();
            // Events 0..100 twice each: one of each pair is a duplicate.
            tasks.spawn(async move { (n % 100, c.accept(inbound(n % 100, 1)).await) });
        }
        let mut ids = HashSet::new();
        let mut stored_events = HashSet::new();
        let mut duplicates = 0;
        while let Some(joined) = tasks.join_next().await {
            let (n, outcome) = joined.unwrap();
            match outcome.unwrap() {
                AcceptOutcome::Stored(id) => {
                    assert!(ids.insert(id), "id {id} handed out twice");
                    assert!(stored_events.insert(n), "event {n} stored twice");
                }
                AcceptOutcome::Duplicate => duplicates += 1,
            }
        }
        assert_eq!((ids.len(), duplicates), (100, 100));
        let commits = store.accepts.load(Ordering::SeqCst);
        assert!(commits < 50, "{commits} commits for 200 accepts");
        assert_eq!(committer.commits(), commits);
        assert_eq!(committer.committed_events(), 200);
        // Every stored event is durably in the inbox.
        assert_eq!(store.due_events(u64::MAX, usize::MAX).unwrap().len(), 100);
    }

    #[tokio::test]
    async fn errors_reach_every_waiter_and_the_thread_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = Counting::new(&dir, Duration::ZERO);
        let committer = GroupCommitter::new(store.clone());

        store.fail_first.store(1, Ordering::SeqCst);
        let err = committer.accept(inbound(1, 1)).await.unwrap_err();
        assert!(matches!(err, StoreError::Io(m) if m.contains("No space")));

        store.panic_first.store(1, Ordering::SeqCst);
        let err = committer.accept(inbound(1, 1)).await.unwrap_err();
        assert!(matches!(err, StoreError::Io(m) if m.contains("panicked")));

        // Neither stored anything, and the writer still works.
        assert!(matches!(
            committer.accept(inbound(1, 1)).await.unwrap(),
            AcceptOutcome::Stored(_)
        ));
        assert_eq!(
            committer.accept(inbound(1, 1)).await.unwrap(),
            AcceptOutcome::Duplicate
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_finishes_sent_events_then_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let store = Counting::new(&dir, Duration::from_millis(20));
        let committer = Arc::new(GroupCommitter::new(store.clone()));
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..20u64 {
            let c = committer.clone();
            tasks.spawn(async move { c.accept(inbound(n, 1)).await });
        }
        // Let every task send before shutting down.
        while store.accepts.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        committer.shutdown().await;
        let mut answered = 0;
        while let Some(joined) = tasks.join_next().await {
            // Each was either committed or refused: none is left hanging.
            match joined.unwrap() {
                Ok(AcceptOutcome::Stored(_)) => answered += 1,
                Ok(AcceptOutcome::Duplicate) => panic!("no duplicates were sent"),
                Err(StoreError::Io(m)) => assert_eq!(m, "store writer stopped"),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(
            answered,
            store.due_events(u64::MAX, usize::MAX).unwrap().len()
        );
        let err = committer.accept(inbound(99, 1)).await.unwrap_err();
        assert!(matches!(err, StoreError::Io(m) if m == "store writer stopped"));
        // The thread let go of the store: only the test's handle is left.
        assert_eq!(Arc::strong_count(&store), 1);
    }

    #[tokio::test]
    async fn drop_stops_the_thread() {
        let dir = tempfile::tempdir().unwrap();
        let store = Counting::new(&dir, Duration::ZERO);
        let committer = GroupCommitter::new(store.clone());
        committer.accept(inbound(1, 1)).await.unwrap();
        drop(committer);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&store) > 1 {
            assert!(Instant::now() < deadline, "the writer thread did not stop");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Not a correctness test: prints the accept throughput of 64 concurrent
    /// callers on a real file (`cargo test --release --lib delivery -- --nocapture`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn measure_accepts_per_second() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(RedbStore::open(&dir.path().join("relay.redb")).unwrap());
        let committer = Arc::new(GroupCommitter::new(store.clone()));
        let per_task: u64 = if cfg!(debug_assertions) { 20 } else { 200 };
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..64u64 {
            let c = committer.clone();
            tasks.spawn(async move {
                for i in 0..per_task {
                    let out = c.accept(inbound(t * 1_000_000 + i, 1)).await.unwrap();
                    assert!(matches!(out, AcceptOutcome::Stored(_)));
                }
            });
        }
        while let Some(joined) = tasks.join_next().await {
            joined.unwrap();
        }
        let elapsed = start.elapsed();
        let total = 64 * per_task;
        // One fsync alone, for comparison.
        let t = Instant::now();
        store.accept(&[inbound(u64::MAX, 1)], 1).unwrap();
        let single = t.elapsed();
        eprintln!(
            "group commit: {total} accepts by 64 tasks in {elapsed:?} = {:.0}/s; \
             {} commits (avg batch {:.1}); one lone accept commit takes {single:?}",
            total as f64 / elapsed.as_secs_f64(),
            committer.commits(),
            committer.committed_events() as f64 / committer.commits().max(1) as f64,
        );
        assert_eq!(committer.committed_events(), total);
    }
}
