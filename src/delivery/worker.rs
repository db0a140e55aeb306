//! One worker per chat: sends the head of the chat's queue, in order, at the
//! chat's rate, retrying with backoff; a slow or broken chat only ever holds
//! up its own queue.
//!
//! Requests are built from the config serving at send time; a reload swaps
//! the config between sends and never cancels one in flight.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::limits::{RateLimiter, backoff};
use super::send::Sender;
use super::store::{
    Ack, AttemptResult, DeliveryRecord, MessageRef, Payload, QueuedDelivery, RefChange, Store,
    StoreError, THREAD_ROOT,
};
use crate::config::Rate;
use crate::config::model::Filter;
use crate::pipeline::Pipeline;
use crate::providers::{Action, Outbound, Outcome, Thread};

/// Deliveries a worker takes from its queue at once: their acks are
/// committed together (a crash re-sends at most these).
const BATCH: usize = 32;

/// A worker's state across batches.
struct WorkerState {
    chat: String,
    limiter: Option<(Rate, RateLimiter)>,
    /// Sent deliveries not yet recorded, with their message-ref changes.
    acks: Vec<Ack>,
}

#[derive(Debug, PartialEq, Eq)]
enum Next {
    Continue,
    /// Stop the batch and read the queue again (a retry, a wait, shutdown).
    Reread,
}

/// Whether preparing the delivery reads message refs (a thread root, the
/// message to change), which the acks before it may have written.
fn needs_refs(payload: &Payload) -> bool {
    match payload {
        Payload::Event { filter, .. } => *filter == Filter::Thread,
        Payload::Edit { .. } | Payload::Delete { .. } => true,
        Payload::Test { .. } | Payload::Alert { .. } => false,
    }
}

/// Why an edit or delete finds nothing to change: logged, not an error.
const UNKNOWN_MESSAGE: &str =
    "no chat message is known for this post (never sent, or remembered too long ago)";

/// A delivery resolved against the message refs.
enum Step {
    Send {
        outbound: Outbound,
        remember: Remember,
    },
    /// Nothing to do (an edit of a message the relay does not know).
    Skip(&'static str),
}

enum Failure {
    Store(StoreError),
    /// The redacted render error.
    Render(String),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

/// What a sent delivery changes in the message refs.
enum Remember {
    Nothing,
    /// Post `number` of `topic` became a message; `root`: it opened the
    /// topic's thread in this chat.
    Posted {
        topic: u64,
        number: u64,
        root: bool,
    },
    /// The message of post `number` was deleted (`root`: it was the thread root).
    Deleted {
        topic: u64,
        number: u64,
        root: bool,
    },
}

impl Remember {
    fn changes(self, remote_id: Option<String>, now_ms: u64) -> Vec<RefChange> {
        let keys = |topic, number, root: bool| {
            std::iter::once((topic, number)).chain(root.then_some((topic, THREAD_ROOT)))
        };
        match (self, remote_id) {
            (
                Remember::Posted {
                    topic,
                    number,
                    root,
                },
                Some(id),
            ) => keys(topic, number, root)
                .map(|(topic, number)| RefChange::Put {
                    topic,
                    number,
                    r: MessageRef {
                        remote_id: id.clone(),
                        stored_at_ms: now_ms,
                    },
                })
                .collect(),
            (
                Remember::Deleted {
                    topic,
                    number,
                    root,
                },
                _,
            ) => keys(topic, number, root)
                .map(|(topic, number)| RefChange::Remove { topic, number })
                .collect(),
            _ => vec![],
        }
    }
}

/// What happened to deliveries, for metrics and the status page.
pub trait Observer: Send + Sync {
    fn sent(&self, chat: &str, provider: &str, latency: Duration);
    fn retry(&self, chat: &str, provider: &str, reason: &str);
    fn dead_letter(&self, chat: &str, provider: &str, reason: &str);
    /// The chat's worker ended unexpectedly (a panic) and was started again.
    fn worker_restarted(&self, chat: &str, reason: &str);
}

/// Everything a worker needs; shared by all workers.
pub struct WorkerCtx {
    pub store: Arc<dyn Store>,
    pub pipeline: Arc<ArcSwap<Pipeline>>,
    pub sender: Sender,
    pub observer: Arc<dyn Observer>,
    pub shutdown: CancellationToken,
}

/// Commits sent deliveries' acks. A failure is logged, not returned: the
/// deliveries stay queued and are sent again (at-least-once).
fn record_acks(store: &dyn Store, chat: &str, acks: &[Ack]) {
    if !acks.is_empty()
        && let Err(e) = store.ack_many(chat, acks)
    {
        tracing::error!(chat = %chat, error = %e, "delivered, but the queue could not record it");
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Runs a blocking store call off the async runtime.
pub async fn blocking<T: Send + 'static>(
    store: &Arc<dyn Store>,
    f: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(store.as_ref()))
        .await
        .unwrap_or_else(|e| Err(StoreError::Io(format!("store task failed: {e}"))))
}

/// The running workers, by chat name.
pub struct Workers {
    ctx: Arc<WorkerCtx>,
    running: Mutex<HashMap<String, Arc<Notify>>>,
    tasks: Mutex<tokio::task::JoinSet<()>>,
}

/// A worker's run crashing this many times in a row on the same delivery
/// moves that delivery to the dead letters: one poisonous message must not
/// keep its whole chat in a crash loop.
const CRASHES_BEFORE_DEAD_LETTER: u32 = 3;

/// The delivery a worker is sending, shared with its supervisor so that a
/// crash can be pinned on it. `0` = none (seqs start at 1).
#[derive(Default)]
struct InFlight(std::sync::atomic::AtomicU64);

impl InFlight {
    fn set(&self, seq: u64) {
        self.0.store(seq, std::sync::atomic::Ordering::Relaxed);
    }
    fn get(&self) -> Option<u64> {
        Some(self.0.load(std::sync::atomic::Ordering::Relaxed)).filter(|s| *s != 0)
    }
}

/// The text of a panic payload, for the status page.
fn panic_message(e: &(dyn std::any::Any + Send)) -> String {
    let text = e
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| e.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    // Bounded: a panic message may quote platform input.
    text.chars().take(300).collect()
}

/// Runs `run` until it returns, starting it again (after a growing pause)
/// each time it panics; `restarted` hears of every restart. A worker task
/// that dies silently would leave its chat's queue growing with nothing
/// sending and nothing shown.
pub(crate) async fn supervise<F, Fut, R, RFut>(
    mut run: F,
    shutdown: CancellationToken,
    mut restarted: R,
) where
    F: FnMut() -> Fut + Send,
    Fut: std::future::Future<Output = ()> + Send + 'static,
    R: FnMut(String) -> RFut + Send,
    RFut: std::future::Future<Output = ()> + Send,
{
    let mut crashes: u32 = 0;
    loop {
        match tokio::spawn(run()).await {
            Ok(()) => return,
            Err(e) if e.is_cancelled() => return,
            Err(e) => {
                crashes = crashes.saturating_add(1);
                let why = panic_message(e.into_panic().as_ref());
                restarted(why).await;
                if shutdown.is_cancelled() {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff(crashes).min(Duration::from_secs(30))) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        }
    }
}

impl Workers {
    pub fn new(ctx: Arc<WorkerCtx>) -> Arc<Self> {
        Arc::new(Self {
            ctx,
            running: Mutex::new(HashMap::new()),
            tasks: Mutex::new(tokio::task::JoinSet::new()),
        })
    }

    /// Wakes the chat's worker, starting one if none runs.
    pub fn wake(self: &Arc<Self>, chat: &str) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = running.get(chat) {
            n.notify_one();
            return;
        }
        let notify = Arc::new(Notify::new());
        running.insert(chat.to_string(), notify.clone());
        let this = self.clone();
        let chat = chat.to_string();
        let in_flight = Arc::new(InFlight::default());
        let task: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> =
            Box::pin(async move {
                let shutdown = this.ctx.shutdown.clone();
                let (runner, observer) = (this.clone(), this.clone());
                let (name, inflight) = (chat.clone(), in_flight.clone());
                let last_crash = Arc::new(Mutex::new(None));
                supervise(
                    move || {
                        let (this, chat, notify, in_flight) = (
                            runner.clone(),
                            name.clone(),
                            notify.clone(),
                            inflight.clone(),
                        );
                        async move { this.run(chat, notify, in_flight).await }
                    },
                    shutdown,
                    move |why| {
                        let (this, chat, in_flight, last) = (
                            observer.clone(),
                            chat.clone(),
                            in_flight.clone(),
                            last_crash.clone(),
                        );
                        async move { this.crashed(&chat, &in_flight, &last, why).await }
                    },
                )
                .await
            });
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .spawn(task);
    }

    /// Waits for every worker to finish its current send after shutdown.
    pub async fn join(&self) {
        let mut tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        while tasks.join_next().await.is_some() {}
    }

    /// A worker's run panicked: says so, and dead-letters the delivery it
    /// was sending when that one crashed it [`CRASHES_BEFORE_DEAD_LETTER`]
    /// times in a row. Called before the run is started again.
    async fn crashed(
        &self,
        chat: &str,
        in_flight: &InFlight,
        last: &Mutex<Option<(u64, u32)>>,
        why: String,
    ) {
        tracing::error!(chat = %chat, panic = %why, "the chat's worker crashed; starting it again");
        let reason = format!("the worker crashed and was restarted: {why}");
        self.ctx.observer.worker_restarted(chat, &reason);
        let Some(seq) = in_flight.get() else {
            *last.lock().unwrap_or_else(|e| e.into_inner()) = None;
            return;
        };
        let n = {
            let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
            let n = match *last {
                Some((s, n)) if s == seq => n + 1,
                _ => 1,
            };
            *last = (n < CRASHES_BEFORE_DEAD_LETTER).then_some((seq, n));
            n
        };
        if n < CRASHES_BEFORE_DEAD_LETTER {
            return;
        }
        let reason = format!("sending this delivery crashed the worker {n} times: {why}");
        tracing::warn!(chat = %chat, seq, "{reason}; moved to dead letters");
        // Recorded before the restart, so the new run starts past it.
        let p = self.ctx.pipeline.load_full();
        let provider = p
            .chat_index(chat)
            .map_or("?", |i| p.config.chats[i].provider.as_str());
        self.ctx.observer.dead_letter(chat, provider, &reason);
        let name = chat.to_string();
        if let Err(e) = blocking(&self.ctx.store, move |s| {
            s.dead_letter(&name, seq, &reason, now_ms())
        })
        .await
        {
            tracing::error!(chat = %chat, seq, error = %e, "cannot record the dead letter of a crashing delivery");
        }
    }

    async fn run(self: Arc<Self>, chat: String, wake: Arc<Notify>, in_flight: Arc<InFlight>) {
        let mut state = WorkerState {
            chat: chat.clone(),
            limiter: None,
            acks: Vec::new(),
        };
        loop {
            if self.ctx.shutdown.is_cancelled() {
                self.flush(&mut state).await;
                return;
            }
            // The last batch's acks and the next batch in one trip off the
            // runtime: a busy chat costs one hand-off per batch, not two.
            let name = chat.clone();
            let acks = std::mem::take(&mut state.acks);
            let taken = blocking(&self.ctx.store, move |s| {
                record_acks(s, &name, &acks);
                s.heads(&name, BATCH)
            });
            let batch = match taken.await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(chat = %chat, error = %e, "cannot read the queue; retrying");
                    self.pause(&wake, Duration::from_secs(1)).await;
                    continue;
                }
            };
            if batch.is_empty() {
                if self.ctx.pipeline.load().chat_index(&chat).is_none() {
                    self.retire(&chat).await;
                    return;
                }
                self.pause(&wake, Duration::from_secs(30)).await;
                continue;
            }
            for d in &batch {
                in_flight.set(d.seq);
                let next = self.deliver(d, &wake, &mut state).await;
                in_flight.set(0);
                if next == Next::Reread {
                    break;
                }
            }
        }
    }

    /// Sends one delivery of a batch (or settles it without sending).
    async fn deliver(&self, d: &QueuedDelivery, wake: &Notify, state: &mut WorkerState) -> Next {
        let ctx = &self.ctx;
        if ctx.shutdown.is_cancelled() {
            return Next::Reread;
        }
        let now = now_ms();
        if d.next_attempt_at_ms > now {
            self.flush(state).await;
            self.pause(wake, Duration::from_millis(d.next_attempt_at_ms - now))
                .await;
            return Next::Reread;
        }
        let p = ctx.pipeline.load_full();
        let Some(idx) = p.chat_index(&d.chat) else {
            self.flush(state).await;
            self.give_up(d, "?", "the chat is no longer in the config")
                .await;
            return Next::Continue;
        };
        let cfg = &p.config.chats[idx];
        let provider = cfg.provider.as_str();
        let max_age = p.config.server.max_age.as_millis() as u64;
        if now.saturating_sub(d.created_at_ms) > max_age {
            let reason = format!(
                "gave up after {}: {}",
                humantime::format_duration(p.config.server.max_age),
                d.last_error.as_deref().unwrap_or("no attempt succeeded")
            );
            self.flush(state).await;
            self.give_up(d, provider, &reason).await;
            return Next::Continue;
        }

        // Rate limit: the chat's own, else the platform's default.
        if let Some(rate) = cfg.rate_limit.or(cfg.destination.default_rate()) {
            loop {
                let l = match &mut state.limiter {
                    Some((r, l)) if *r == rate => l,
                    slot => &mut slot.insert((rate, RateLimiter::new(rate))).1,
                };
                let wait = l.check(Instant::now());
                if wait.is_zero() {
                    break;
                }
                self.flush(state).await;
                self.pause(&Notify::new(), wait).await;
                if ctx.shutdown.is_cancelled() {
                    return Next::Reread;
                }
            }
        }

        // Thread roots and message ids must include the acks before this one.
        if needs_refs(&d.payload) {
            self.flush(state).await;
        }
        let step = match self.prepare(d, &p, idx).await {
            Ok(step) => step,
            Err(Failure::Store(e)) => {
                tracing::warn!(chat = %d.chat, error = %e, "cannot read the message refs; retrying");
                self.flush(state).await;
                self.pause(wake, Duration::from_secs(1)).await;
                return Next::Reread;
            }
            Err(Failure::Render(e)) => {
                self.flush(state).await;
                self.give_up(d, provider, &format!("cannot render the message: {e}"))
                    .await;
                return Next::Continue;
            }
        };
        let (outbound, remember) = match step {
            Step::Send { outbound, remember } => (outbound, remember),
            Step::Skip(why) => {
                tracing::debug!(chat = %d.chat, seq = d.seq, "nothing to send: {why}");
                let reason = why.to_string();
                state.acks.push(Ack {
                    seq: d.seq,
                    refs: vec![],
                    record: DeliveryRecord::of(d, now_ms(), AttemptResult::Skipped { reason }),
                });
                return Next::Continue;
            }
        };
        let outcome = ctx
            .sender
            .send(cfg.destination.as_ref(), &outbound, &p.config.redactor)
            .await;
        match outcome {
            Outcome::Sent { remote_id } => {
                let at = now_ms();
                let result = AttemptResult::Sent {
                    remote_id: remote_id.clone(),
                };
                state.acks.push(Ack {
                    seq: d.seq,
                    refs: remember.changes(remote_id, at),
                    record: DeliveryRecord::of(d, at, result),
                });
                let latency = Duration::from_millis(at.saturating_sub(d.created_at_ms));
                ctx.observer.sent(&d.chat, provider, latency);
                Next::Continue
            }
            Outcome::Retry { reason, after } => {
                self.flush(state).await;
                // However long the platform asked for, the operator's cap.
                let after = after.map(|a| a.min(p.config.server.max_retry_delay));
                self.retry(d, provider, reason, after, max_age).await;
                Next::Reread
            }
            Outcome::Permanent { reason } => {
                self.flush(state).await;
                self.give_up(d, provider, &reason).await;
                Next::Continue
            }
        }
    }

    /// Records the batch's sent deliveries (one commit). A failure leaves
    /// them queued: they are sent again (at-least-once).
    async fn flush(&self, state: &mut WorkerState) {
        if state.acks.is_empty() {
            return;
        }
        let acks = std::mem::take(&mut state.acks);
        let chat = state.chat.clone();
        let recorded = blocking(&self.ctx.store, move |s| {
            record_acks(s, &chat, &acks);
            Ok(())
        });
        // Only a failed store task lands here; store errors are logged inside.
        if let Err(e) = recorded.await {
            tracing::error!(chat = %state.chat, error = %e, "delivered, but the queue could not record it");
        }
    }

    /// Resolves what a delivery does against the message refs: the thread
    /// to reply in, the message to edit or delete.
    async fn prepare(&self, d: &QueuedDelivery, p: &Pipeline, idx: usize) -> Result<Step, Failure> {
        let caps = p.config.chats[idx].destination.capabilities();
        // Seqs restart with a new data dir; the creation time keeps ids apart.
        let id = format!("{}#{}@{}", d.chat, d.seq, d.created_at_ms);
        let send = |event: &crate::ingest::Event, action, strike, remember| {
            p.message_as(idx, event, action, strike, &id)
                .map(|(_, outbound)| Step::Send { outbound, remember })
                .map_err(Failure::Render)
        };
        // What to do, for which post.
        enum Todo {
            Post(Filter),
            Edit { strike: bool },
            Delete,
        }
        let (event, todo) = match &d.payload {
            Payload::Test { .. } => {
                return send(&p.test_event(), Action::default(), false, Remember::Nothing);
            }
            Payload::Alert { about, reason } => {
                let alert = p.alert_event(about, reason);
                return send(&alert, Action::default(), false, Remember::Nothing);
            }
            Payload::Event { event, filter } => (event, Todo::Post(*filter)),
            Payload::Edit { event, strike } => (event, Todo::Edit { strike: *strike }),
            Payload::Delete { event } => (event, Todo::Delete),
        };
        let Some((topic, number)) = event.message_slot() else {
            // A one-off note (a like, a topic closed): nothing edits it later.
            return send(event, Action::default(), false, Remember::Nothing);
        };
        let lookup = |number: u64| {
            let chat = d.chat.clone();
            blocking(&self.ctx.store, move |s| {
                s.message_ref(&chat, topic, number)
            })
        };
        match todo {
            Todo::Post(filter) => {
                let thread = filter == Filter::Thread && caps.thread;
                let root = match thread {
                    true => lookup(THREAD_ROOT).await?.map(|r| r.remote_id),
                    false => None,
                };
                let action = Action::Post {
                    thread: thread.then_some(Thread {
                        root: root.as_deref(),
                    }),
                };
                let root = thread && root.is_none();
                send(
                    event,
                    action,
                    false,
                    Remember::Posted {
                        topic,
                        number,
                        root,
                    },
                )
            }
            Todo::Edit { strike } => {
                if !caps.edit {
                    return Ok(Step::Skip("this destination cannot edit messages"));
                }
                let Some(r) = lookup(number).await? else {
                    return Ok(Step::Skip(UNKNOWN_MESSAGE));
                };
                let action = Action::Edit {
                    remote_id: &r.remote_id,
                };
                send(event, action, strike, Remember::Nothing)
            }
            Todo::Delete => {
                if !caps.delete {
                    return Ok(Step::Skip("this destination cannot delete messages"));
                }
                let Some(r) = lookup(number).await? else {
                    return Ok(Step::Skip(UNKNOWN_MESSAGE));
                };
                let root = lookup(THREAD_ROOT)
                    .await?
                    .is_some_and(|root| root.remote_id == r.remote_id);
                let action = Action::Delete {
                    remote_id: &r.remote_id,
                };
                send(
                    event,
                    action,
                    false,
                    Remember::Deleted {
                        topic,
                        number,
                        root,
                    },
                )
            }
        }
    }

    async fn retry(
        &self,
        d: &QueuedDelivery,
        provider: &str,
        reason: String,
        after: Option<Duration>,
        max_age_ms: u64,
    ) {
        let attempts = d.attempts + 1;
        let delay = after.unwrap_or_else(|| backoff(attempts));
        let next = now_ms().saturating_add(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
        if next.saturating_sub(d.created_at_ms) > max_age_ms {
            self.give_up(d, provider, &format!("gave up: {reason}"))
                .await;
            return;
        }
        tracing::info!(chat = %d.chat, attempts, retry_in = ?delay, reason = %reason, "delivery failed; will retry");
        self.ctx.observer.retry(&d.chat, provider, &reason);
        let (chat, seq) = (d.chat.clone(), d.seq);
        if let Err(e) = blocking(&self.ctx.store, move |s| {
            s.reschedule(&chat, seq, next, &reason, now_ms())
        })
        .await
        {
            // The backoff lives in the row that could not be written: wait
            // here instead, or a failing store would see the head re-sent
            // at once, again and again.
            tracing::error!(chat = %d.chat, error = %e, "cannot record the retry");
            self.pause(&Notify::new(), delay.min(Duration::from_secs(60)))
                .await;
        }
    }

    async fn give_up(&self, d: &QueuedDelivery, provider: &str, reason: &str) {
        tracing::warn!(chat = %d.chat, seq = d.seq, reason, "delivery failed for good; moved to dead letters");
        self.ctx.observer.dead_letter(&d.chat, provider, reason);
        let (chat, seq, reason) = (d.chat.clone(), d.seq, reason.to_string());
        if let Err(e) = blocking(&self.ctx.store, move |s| {
            s.dead_letter(&chat, seq, &reason, now_ms())
        })
        .await
        {
            tracing::error!(chat = %d.chat, error = %e, "cannot record the dead letter");
            self.pause(&Notify::new(), Duration::from_secs(1)).await;
        }
    }

    /// Stops tracking a worker whose chat is gone. Work that arrives in the
    /// meantime starts a new worker (its wake finds no running one).
    async fn retire(self: &Arc<Self>, chat: &str) {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(chat);
        let name = chat.to_string();
        if let Ok(Some(_)) = blocking(&self.ctx.store, move |s| s.head(&name)).await {
            self.wake(chat);
        }
    }

    async fn pause(&self, wake: &Notify, d: Duration) {
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(d) => {}
            _ = self.ctx.shutdown.cancelled() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::config::MissingEnv;
    use crate::delivery::redb_store::RedbStore;
    use crate::delivery::store::NewDelivery;

    #[derive(Default)]
    struct Seen {
        restarts: Mutex<Vec<(String, String)>>,
        dead: Mutex<Vec<(String, String)>>,
    }

    impl Observer for Seen {
        fn sent(&self, _: &str, _: &str, _: Duration) {}
        fn retry(&self, _: &str, _: &str, _: &str) {}
        fn dead_letter(&self, chat: &str, _: &str, reason: &str) {
            self.dead.lock().unwrap().push((chat.into(), reason.into()));
        }
        fn worker_restarted(&self, chat: &str, reason: &str) {
            self.restarts
                .lock()
                .unwrap()
                .push((chat.into(), reason.into()));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_run_is_started_again_and_each_restart_is_reported() {
        let runs = Arc::new(AtomicU32::new(0));
        let reasons = Arc::new(Mutex::new(Vec::new()));
        let (r, seen) = (runs.clone(), reasons.clone());
        supervise(
            move || {
                let n = r.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < 2 {
                        panic!("hostile answer number {n}");
                    }
                }
            },
            CancellationToken::new(),
            move |why| {
                seen.lock().unwrap().push(why);
                async {}
            },
        )
        .await;
        // Two crashes, two restarts, then the third run ended normally.
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert_eq!(
            *reasons.lock().unwrap(),
            ["hostile answer number 0", "hostile answer number 1"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_the_supervisor_instead_of_restarting() {
        let shutdown = CancellationToken::new();
        let runs = Arc::new(AtomicU32::new(0));
        let (r, s) = (runs.clone(), shutdown.clone());
        supervise(
            move || {
                r.fetch_add(1, Ordering::SeqCst);
                async { panic!("boom") }
            },
            shutdown,
            move |_| {
                s.cancel();
                async {}
            },
        )
        .await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    fn workers(dir: &Path, seen: Arc<Seen>) -> Arc<Workers> {
        let toml = r#"[discourse]
url = "https://forum.example.org"
[[chat]]
name = "c"
provider = "console"
subscribe = ["all"]
"#;
        let env = HashMap::<String, String>::new();
        let (p, _) =
            crate::pipeline::load_str(Path::new("t.toml"), toml, &env, MissingEnv::Error).unwrap();
        Workers::new(Arc::new(WorkerCtx {
            store: Arc::new(RedbStore::open(&dir.join("relay.redb")).unwrap()),
            pipeline: Arc::new(ArcSwap::from_pointee(p)),
            sender: Sender::new().unwrap(),
            observer: seen,
            shutdown: CancellationToken::new(),
        }))
    }

    #[tokio::test]
    async fn a_delivery_that_crashes_the_worker_three_times_becomes_a_dead_letter() {
        let dir = tempfile::tempdir().unwrap();
        let seen = Arc::new(Seen::default());
        let w = workers(dir.path(), seen.clone());
        let test = |who: &str| NewDelivery {
            chat: "c".into(),
            payload: Payload::Test {
                requested_by: who.into(),
            },
        };
        let first = w.ctx.store.enqueue(&test("a"), now_ms()).unwrap();
        let second = w.ctx.store.enqueue(&test("b"), now_ms()).unwrap();
        let in_flight = InFlight::default();
        let last = Mutex::new(None);
        // A crash outside a delivery, then two on `first`: still queued.
        w.crashed("c", &in_flight, &last, "outside".into()).await;
        in_flight.set(first);
        w.crashed("c", &in_flight, &last, "boom".into()).await;
        w.crashed("c", &in_flight, &last, "boom".into()).await;
        assert_eq!(w.ctx.store.head("c").unwrap().unwrap().seq, first);
        assert!(seen.dead.lock().unwrap().is_empty());
        // The third in a row on the same delivery sets it aside.
        w.crashed("c", &in_flight, &last, "boom".into()).await;
        assert_eq!(w.ctx.store.head("c").unwrap().unwrap().seq, second);
        let dead = w.ctx.store.dead_letters(Some("c"), 10).unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].delivery.seq, first);
        assert!(dead[0].reason.contains("crashed the worker 3 times: boom"));
        assert_eq!(seen.restarts.lock().unwrap().len(), 4);
        assert!(seen.restarts.lock().unwrap()[0].1.contains("outside"));
        // A crash on another delivery starts its count afresh.
        in_flight.set(second);
        w.crashed("c", &in_flight, &last, "boom".into()).await;
        assert_eq!(w.ctx.store.head("c").unwrap().unwrap().seq, second);
    }
}
