//! The running delivery stage: the store, the group committer in front of
//! its inbox, the delay scheduler, one worker per chat and the housekeeping
//! that keeps the store small; plus what delivery reports (per-chat counters,
//! storage health).
//!
//! It takes admitted events and learned facts from the caller and never
//! calls back into ingest.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::group_commit::GroupCommitter;
use super::pg_store::PgStore;
use super::redb_store::RedbStore;
use super::scheduler::{Scheduler, refresh_topic};
use super::send::Sender;
use super::store::{
    AcceptOutcome, DeadLetter, DeliveryRecord, HOUR_MS, HourCount, InboundEvent, NewDelivery,
    Payload, PendingChange, Store, StoreError,
};
use super::worker::{Observer, WorkerCtx, Workers, blocking, now_ms};
use crate::config::env::Secret;
use crate::ingest::EventKind;
use crate::ingest::intake::Learned;
use crate::observe::metrics::{DeliveryResult, Metrics};
use crate::observe::status::{
    CHART_HOURS, ChatError, ChatStatus, HourStatus, QuarantinedView, StorageStatus, rfc3339,
};
use crate::pipeline::Pipeline;

/// What can be done to dead letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterChange {
    /// Queue them again, behind what the chat has queued.
    Resend,
    /// Forget them.
    Drop,
}

impl DeadLetterChange {
    /// `resend` or `drop`, as the admin API and the CLI spell them.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "resend" => Some(Self::Resend),
            "drop" => Some(Self::Drop),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Resend => "resend",
            Self::Drop => "drop",
        }
    }
}

/// Where the durable state lives.
#[derive(Debug, Clone)]
pub enum StoreAt {
    /// The embedded redb file, `relay.redb` in this directory (the default).
    Redb(PathBuf),
    /// A PostgreSQL database (`[server] store`, `serve --store`); the URL
    /// holds a password, so it is a [`Secret`] and never printed.
    Postgres(Secret),
}

impl StoreAt {
    /// Opens the store (blocking: connects, migrates or reads the file).
    pub fn open(&self) -> Result<Arc<dyn Store>, StartError> {
        Ok(match self {
            StoreAt::Redb(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| StartError::DataDir(dir.display().to_string(), e))?;
                Arc::new(RedbStore::open(&dir.join("relay.redb"))?)
            }
            StoreAt::Postgres(url) => Arc::new(PgStore::open(url.expose())?),
        })
    }
}

/// Alerts waiting to be queued, at most (a burst of failures beyond this
/// is one alert per chat anyway).
const ALERTS_WAITING: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create the data directory {0}: {1}")]
    DataDir(String, std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("start-up task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Per-chat counters for the status page (metrics keep the same in Prometheus form).
#[derive(Debug, Default, Clone)]
struct ChatStat {
    delivered: u64,
    failed: u64,
    last_success_ms: Option<u64>,
    last_error: Option<(u64, String)>,
    worker_restarts: u64,
}

struct Stats {
    metrics: Arc<Metrics>,
    chats: Mutex<HashMap<String, ChatStat>>,
    /// (chat, why) of each failure worth an alert; bounded, dropped when full.
    alerts: tokio::sync::mpsc::Sender<(String, String)>,
}

impl Stats {
    fn with<R>(&self, chat: &str, f: impl FnOnce(&mut ChatStat) -> R) -> R {
        let mut map = self.chats.lock().unwrap_or_else(|e| e.into_inner());
        f(map.entry(chat.to_string()).or_default())
    }

    fn failed(&self, chat: &str, reason: &str, count: bool) {
        self.with(chat, |s| {
            s.failed += u64::from(count);
            s.last_error = Some((now_ms(), reason.to_string()));
        });
    }
}

impl Observer for Stats {
    fn sent(&self, chat: &str, provider: &str, latency: Duration) {
        self.with(chat, |s| {
            s.delivered += 1;
            s.last_success_ms = Some(now_ms());
        });
        self.metrics.delivery(chat, provider, DeliveryResult::Sent);
        self.metrics.delivery_latency(chat, latency.as_secs_f64());
    }

    fn retry(&self, chat: &str, provider: &str, reason: &str) {
        self.failed(chat, reason, false);
        self.metrics.delivery(chat, provider, DeliveryResult::Retry);
        self.metrics.retry(chat);
    }

    fn dead_letter(&self, chat: &str, provider: &str, reason: &str) {
        self.failed(chat, reason, true);
        let _ = self
            .alerts
            .try_send((chat.to_string(), format!("gave up on a message: {reason}")));
        self.metrics
            .delivery(chat, provider, DeliveryResult::DeadLetter);
        self.metrics.dead_letter(chat);
    }

    fn worker_restarted(&self, chat: &str, reason: &str) {
        self.with(chat, |s| {
            s.worker_restarts += 1;
            s.last_error = Some((now_ms(), reason.to_string()));
        });
        let _ = self
            .alerts
            .try_send((chat.to_string(), format!("its worker crashed: {reason}")));
        self.metrics.worker_restart(chat);
    }
}

/// The delivery stage of the running relay.
pub struct Delivery {
    pub store: Arc<dyn Store>,
    pipeline: Arc<ArcSwap<Pipeline>>,
    metrics: Arc<Metrics>,
    committer: GroupCommitter,
    workers: Arc<Workers>,
    scheduler_wake: Arc<Notify>,
    stats: Arc<Stats>,
    /// The last store write failure (when, why); cleared by the next
    /// write that succeeds. Shown on the status page.
    storage_failure: Mutex<Option<(u64, String)>>,
    shutdown: CancellationToken,
}

impl Delivery {
    /// Opens the store, starts the scheduler and a worker for every chat
    /// of the serving config and every chat with queued entries.
    pub async fn start(
        at: &StoreAt,
        pipeline: Arc<ArcSwap<Pipeline>>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, StartError> {
        let at = at.clone();
        // Off the runtime: the PostgreSQL client blocks (and would panic on it).
        let store = tokio::task::spawn_blocking(move || at.open()).await??;
        let (alerts, alert_notes) = tokio::sync::mpsc::channel(ALERTS_WAITING);
        let stats = Arc::new(Stats {
            metrics: metrics.clone(),
            chats: Mutex::new(HashMap::new()),
            alerts,
        });
        let workers = Workers::new(Arc::new(WorkerCtx {
            store: store.clone(),
            pipeline: pipeline.clone(),
            sender: Sender::new()?,
            observer: stats.clone(),
            shutdown: shutdown.clone(),
        }));
        let scheduler_wake = Arc::new(Notify::new());
        tokio::spawn(
            Scheduler {
                store: store.clone(),
                pipeline: pipeline.clone(),
                workers: workers.clone(),
                wake: scheduler_wake.clone(),
                shutdown: shutdown.clone(),
            }
            .run(),
        );
        // Resume what was queued before a restart, and start every chat.
        let pending = blocking(&store, |s| s.queue_depths()).await?;
        let chats: Vec<String> = pipeline
            .load()
            .config
            .chats
            .iter()
            .map(|c| c.name.clone())
            .collect();
        for chat in chats.iter().chain(pending.iter().map(|(c, _)| c)) {
            workers.wake(chat);
        }
        let delivery = Arc::new(Delivery {
            committer: GroupCommitter::new(store.clone()),
            store,
            pipeline,
            metrics,
            workers,
            scheduler_wake,
            stats,
            storage_failure: Mutex::new(None),
            shutdown,
        });
        delivery.clone().spawn_housekeeping();
        delivery.clone().spawn_alerts(alert_notes);
        Ok(delivery)
    }

    /// Queues an alert to the `[server] alerts` chat for each failing chat,
    /// at most one per chat per `alert_every`; never about the alerts chat
    /// itself (its own failures would alert it forever).
    fn spawn_alerts(self: Arc<Self>, mut notes: tokio::sync::mpsc::Receiver<(String, String)>) {
        tokio::spawn(async move {
            let mut last: HashMap<String, u64> = HashMap::new();
            loop {
                let (about, reason) = tokio::select! {
                    note = notes.recv() => match note {
                        Some(n) => n,
                        None => return,
                    },
                    _ = self.shutdown.cancelled() => return,
                };
                let (target, every) = {
                    let p = self.pipeline.load();
                    let s = &p.config.server;
                    let every = u64::try_from(s.alert_every.as_millis()).unwrap_or(u64::MAX);
                    (s.alerts.clone(), every)
                };
                let Some(target) = target.filter(|t| *t != about) else {
                    continue;
                };
                let now = now_ms();
                if last
                    .get(&about)
                    .is_some_and(|at| now.saturating_sub(*at) < every)
                {
                    continue;
                }
                last.insert(about.clone(), now);
                let d = NewDelivery {
                    chat: target.clone(),
                    payload: Payload::Alert { about, reason },
                };
                match blocking(&self.store, move |s| s.enqueue(&d, now)).await {
                    Ok(_) => self.workers.wake(&target),
                    Err(e) => tracing::warn!(error = %e, "cannot queue an alert"),
                }
            }
        });
    }

    /// Stores an admitted event (one fsync with its batch). An event due at
    /// once wakes the scheduler; a delayed one is found by its poll.
    pub async fn accept(&self, inbound: InboundEvent) -> Result<AcceptOutcome, StoreError> {
        let now = inbound.due_at_ms <= inbound.received_at_ms;
        let stored = self.committer.accept(inbound).await;
        self.storage_result(stored.as_ref().err());
        if now && matches!(stored, Ok(AcceptOutcome::Stored(_))) {
            self.scheduler_wake.notify_one();
        }
        stored
    }

    /// Applies what ingest learned to the events still waiting.
    pub async fn learned(&self, fact: Learned) {
        match fact {
            Learned::Topic {
                forum,
                topic,
                tags,
                groups,
                visible,
            } => {
                let r = blocking(&self.store, move |s| {
                    refresh_topic(
                        s,
                        &forum,
                        topic,
                        tags.as_deref(),
                        groups.as_deref(),
                        visible,
                    )
                })
                .await;
                if let Err(e) = r {
                    tracing::warn!(topic, error = %e, "cannot update waiting events");
                }
            }
            Learned::Categories { forum, known } => self.resolve_categories(forum, *known).await,
        }
    }

    /// Re-resolves the categories of waiting events of `forum` that were
    /// unknown when accepted; those now known are due after their own delay
    /// (at once if it has passed), the rest keep waiting out their hold.
    async fn resolve_categories(&self, forum: String, known: crate::ingest::ForumState) {
        let delay = {
            let p = self.pipeline.load();
            p.config
                .forum_index(&forum)
                .map_or(0, |i| p.config.forums[i].delay.as_millis() as u64)
        };
        let now = now_ms();
        let resolved = blocking(&self.store, move |s| {
            s.update_pending(&mut |pending| {
                let e = &mut pending.event;
                let Some(c) = e.topic.category.as_ref().filter(|c| c.unresolved) else {
                    return PendingChange::Keep;
                };
                if e.forum != forum || !known.knows_category(c.id) {
                    return PendingChange::Keep;
                }
                e.topic.category = known.category(c.id, Some(&c.slug));
                let own_delay = if e.kind == EventKind::PostCreated {
                    delay
                } else {
                    0
                };
                pending.due_at_ms = pending
                    .received_at_ms
                    .saturating_add(own_delay)
                    .max(now)
                    .min(pending.due_at_ms);
                PendingChange::Update
            })
        })
        .await;
        match resolved {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(events = n, "waiting events learned their category");
                self.scheduler_wake.notify_one();
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot update waiting events with the learned categories")
            }
        }
    }

    /// Starts the worker of `chat` if it is not running.
    pub fn wake(&self, chat: &str) {
        self.workers.wake(chat);
    }

    /// Queues the test message for `chat` (a chat of the serving config).
    pub async fn send_test(&self, chat: &str, requested_by: &str) -> Result<u64, StoreError> {
        let d = NewDelivery {
            chat: chat.to_string(),
            payload: Payload::Test {
                requested_by: requested_by.to_string(),
            },
        };
        let seq = blocking(&self.store, move |s| s.enqueue(&d, now_ms())).await;
        self.storage_result(seq.as_ref().err());
        let seq = seq?;
        self.workers.wake(chat);
        Ok(seq)
    }

    /// The newest `limit` dead letters of `chat`.
    pub async fn dead_letters(
        &self,
        chat: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let name = chat.to_string();
        blocking(&self.store, move |s| s.dead_letters(Some(&name), limit)).await
    }

    /// Sends dead letters of `chat` (`ids`, or all) again, behind what is
    /// queued, or drops them; how many.
    pub async fn change_dead_letters(
        &self,
        chat: &str,
        change: DeadLetterChange,
        ids: Option<Vec<u64>>,
    ) -> Result<u64, StoreError> {
        let (name, now) = (chat.to_string(), now_ms());
        let done = blocking(&self.store, move |s| match change {
            DeadLetterChange::Resend => s.resend_dead_letters(&name, ids.as_deref(), now),
            DeadLetterChange::Drop => s.drop_dead_letters(&name, ids.as_deref()),
        })
        .await;
        self.storage_result(done.as_ref().err());
        let done = done?;
        if done > 0 {
            tracing::info!(
                chat,
                count = done,
                change = change.as_str(),
                "dead letters changed"
            );
            if matches!(change, DeadLetterChange::Resend) {
                self.workers.wake(chat);
            }
        }
        Ok(done)
    }

    /// The newest `limit` settled attempts of `chat`, newest first.
    pub async fn recent_deliveries(
        &self,
        chat: &str,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let name = chat.to_string();
        blocking(&self.store, move |s| s.recent_deliveries(&name, limit)).await
    }

    /// Lets workers finish their current send and flushes the store (a clean
    /// close makes cheap-durability acks durable). The caller cancels first.
    pub async fn stop(&self) {
        self.workers.join().await;
        self.committer.shutdown().await;
    }

    /// Records how a store write went, for the status page.
    fn storage_result(&self, error: Option<&StoreError>) {
        let mut failure = self
            .storage_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match (error, failure.as_mut()) {
            (None, Some(_)) => {
                tracing::warn!("storage works again; accepting webhooks");
                *failure = None;
            }
            (None, None) => {}
            // Keep when it started, update why.
            (Some(e), Some((_, why))) => *why = e.to_string(),
            (Some(e), None) => *failure = Some((now_ms(), e.to_string())),
        }
    }

    /// Each chat of `p` as the status page shows it, and the store's health.
    pub async fn status(&self, p: &Pipeline) -> (Vec<ChatStatus>, StorageStatus) {
        let depths: HashMap<String, u64> = blocking(&self.store, |s| s.queue_depths())
            .await
            .map(|v| v.into_iter().collect())
            .unwrap_or_default();
        let dead: HashMap<String, u64> = blocking(&self.store, |s| s.dead_letter_counts())
            .await
            .map(|v| v.into_iter().collect())
            .unwrap_or_default();
        let quarantine = blocking(&self.store, |s| s.quarantined())
            .await
            .unwrap_or_default();
        let now_hour = now_ms() / HOUR_MS;
        let first_hour = now_hour.saturating_sub(CHART_HOURS as u64 - 1);
        let counts: HashMap<(String, u64), HourCount> =
            blocking(&self.store, move |s| s.hourly_counts(first_hour * HOUR_MS))
                .await
                .map(|v| {
                    v.into_iter()
                        .map(|c| ((c.chat.clone(), c.hour), c))
                        .collect()
                })
                .unwrap_or_default();
        let hours = |chat: &str| -> Vec<HourStatus> {
            (first_hour..=now_hour)
                .map(|hour| {
                    let c = counts.get(&(chat.to_string(), hour));
                    HourStatus {
                        start: rfc3339(hour * HOUR_MS),
                        delivered: c.map_or(0, |c| c.delivered),
                        failed: c.map_or(0, |c| c.failed),
                        retried: c.map_or(0, |c| c.retried),
                    }
                })
                .collect()
        };
        let stats = self
            .stats
            .chats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let chats = p
            .config
            .chats
            .iter()
            .map(|c| {
                let s = stats.get(&c.name).cloned().unwrap_or_default();
                ChatStatus {
                    name: c.name.clone(),
                    provider: c.provider.clone(),
                    kind: c.destination.kind().to_string(),
                    target: c.destination.target(),
                    rules: c.rules.iter().map(|r| r.compact()).collect(),
                    delivered: s.delivered,
                    failed: s.failed,
                    queue_depth: depths.get(&c.name).copied().unwrap_or(0),
                    dead_letters: dead.get(&c.name).copied().unwrap_or(0),
                    last_success_at: s.last_success_ms.map(rfc3339),
                    last_error: s.last_error.map(|(at, reason)| ChatError {
                        at: rfc3339(at),
                        reason,
                    }),
                    worker_restarts: s.worker_restarts,
                    hours: hours(&c.name),
                }
            })
            .collect();
        let failure = self
            .storage_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let storage = StorageStatus {
            ok: failure.is_none(),
            quarantined: quarantine.count,
            quarantine: quarantine
                .newest
                .into_iter()
                .map(|q| QuarantinedView {
                    table: q.table,
                    key: q.key,
                    error: q.error,
                    at: rfc3339(q.at_ms),
                })
                .collect(),
            since: failure.as_ref().map(|(since, _)| rfc3339(*since)),
            error: failure.map(|(_, error)| error),
        };
        (chats, storage)
    }

    /// Makes acks durable each idle second, prunes the dedupe window, old
    /// message refs, dead letters and hourly counts, and refreshes the
    /// store gauges.
    fn spawn_housekeeping(self: Arc<Self>) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut n: u64 = 0;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = self.shutdown.cancelled() => return,
                }
                n += 1;
                // Acks are cheap commits; an idle second makes them durable,
                // so a crash after a quiet moment re-sends nothing.
                if let Err(e) = blocking(&self.store, |s| s.sync()).await {
                    tracing::warn!(error = %e, "cannot make the last acknowledgements durable");
                }
                // Prune every 5 minutes, or twice per `remember` when shorter.
                let (remember, dead_age, dead_count) = {
                    let p = self.pipeline.load();
                    let s = &p.config.server;
                    (s.remember, s.dead_letter_max_age, s.dead_letter_max_count)
                };
                if n.is_multiple_of((remember.as_secs() / 2).clamp(1, 300)) {
                    let now = now_ms();
                    let day = 24 * 3600 * 1000;
                    let remember = remember.as_millis() as u64;
                    let dead_age = u64::try_from(dead_age.as_millis()).unwrap_or(u64::MAX);
                    match blocking(&self.store, move |s| {
                        s.prune(now.saturating_sub(day), now.saturating_sub(remember))?;
                        // The pane charts 24 hours; the hour before them may be partial.
                        s.prune_hourly_counts(now.saturating_sub(day + HOUR_MS))?;
                        s.prune_dead_letters(now.saturating_sub(dead_age), dead_count)
                    })
                    .await
                    {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(removed = n, "old dead letters pruned"),
                        Err(e) => tracing::warn!(error = %e, "pruning the store failed"),
                    }
                }
                if !n.is_multiple_of(5) {
                    continue;
                }
                if let Ok(q) = blocking(&self.store, |s| s.quarantined()).await {
                    self.metrics.set_quarantined(q.count);
                }
                if let Ok(depths) = blocking(&self.store, |s| s.queue_depths()).await {
                    let mut seen: HashMap<String, u64> = depths.into_iter().collect();
                    for c in &self.pipeline.load().config.chats {
                        seen.entry(c.name.clone()).or_insert(0);
                    }
                    for (chat, depth) in seen {
                        self.metrics.set_queue_depth(&chat, depth);
                    }
                }
            }
        });
    }
}
