//! The long-running relay (`serve`): one [`App`] owning the serving config,
//! the durable store, the delay scheduler and the chat workers, plus reload
//! and shutdown. The HTTP listeners ([`crate::http::server`]) are thin
//! adapters over its methods.
//!
//! Startup is the reload path run once: build the config fully, then start.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::env::ProcessEnv;
use crate::config::{Diagnostics, MissingEnv};
use crate::delivery::group_commit::GroupCommitter;
use crate::delivery::redb_store::RedbStore;
use crate::delivery::scheduler::{Scheduler, refresh_topic};
use crate::delivery::send::Sender;
use crate::delivery::store::{
    AcceptOutcome, DeadLetter, DedupeKey, InboundEvent, NewDelivery, Payload, PendingChange, Store,
    StoreError,
};
use crate::delivery::worker::{Observer, WorkerCtx, Workers, blocking, now_ms};
use crate::ingest::api::DiscourseApi;
use crate::ingest::request::SignatureError;
use crate::ingest::{EventKind, ForumState, IngestError, Ingested, WebhookRequest, parse};
use crate::observe::metrics::{DeliveryResult, EventOutcome, Metrics};
use crate::observe::status::{
    ChatError, ChatStatus, ConfigStatus, QuarantinedView, ReloadStatus, StatusReport, StorageStatus,
};
use crate::pipeline::{self, Pipeline};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{path} is not valid:\n{diags}")]
    Config { path: String, diags: Diagnostics },
    #[error("cannot create the data directory {0}: {1}")]
    DataDir(String, std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {0}: {1}")]
    Bind(String, std::io::Error),
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// How a webhook was answered: status code and a one-line reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    fn new(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            body: body.into(),
        }
    }
}

/// What ended a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Start,
    File,
    Sighup,
    Http,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Start => "start",
            Trigger::File => "file",
            Trigger::Sighup => "sighup",
            Trigger::Http => "http",
        }
    }
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

pub struct Stats {
    metrics: Arc<Metrics>,
    chats: Mutex<HashMap<String, ChatStat>>,
}

impl Stats {
    fn with<R>(&self, chat: &str, f: impl FnOnce(&mut ChatStat) -> R) -> R {
        let mut map = self.chats.lock().unwrap_or_else(|e| e.into_inner());
        f(map.entry(chat.to_string()).or_default())
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
        self.with(chat, |s| {
            s.last_error = Some((now_ms(), reason.to_string()))
        });
        self.metrics.delivery(chat, provider, DeliveryResult::Retry);
        self.metrics.retry(chat);
    }

    fn dead_letter(&self, chat: &str, provider: &str, reason: &str) {
        self.with(chat, |s| {
            s.failed += 1;
            s.last_error = Some((now_ms(), reason.to_string()));
        });
        self.metrics
            .delivery(chat, provider, DeliveryResult::DeadLetter);
        self.metrics.dead_letter(chat);
    }

    fn worker_restarted(&self, chat: &str, reason: &str) {
        self.with(chat, |s| {
            s.worker_restarts += 1;
            s.last_error = Some((now_ms(), reason.to_string()));
        });
        self.metrics.worker_restart(chat);
    }
}

pub struct App {
    pub config_path: PathBuf,
    pub pipeline: Arc<ArcSwap<Pipeline>>,
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
    committer: GroupCommitter,
    /// What each forum taught (by forum URL).
    forum: Mutex<HashMap<String, ForumState>>,
    /// The Discourse API of each forum that has an `api_key` (by forum URL).
    api: ArcSwap<HashMap<String, Arc<DiscourseApi>>>,
    /// Topics being fetched, so a burst of posts fetches each once.
    /// Keyed by (forum URL, topic id): topic ids are per forum.
    fetching: Mutex<std::collections::HashSet<(String, u64)>>,
    /// Topic fetches in flight, all forums together ([`TOPIC_FETCHES_AT_ONCE`]).
    topic_fetches: tokio::sync::Semaphore,
    site_refresh: Arc<Notify>,
    workers: Arc<Workers>,
    scheduler_wake: Arc<Notify>,
    stats: Arc<Stats>,
    /// The serving config and the reload history, as the status page shows them.
    config_status: Mutex<ConfigStatus>,
    /// The last store write failure (when, why); cleared by the next
    /// write that succeeds. Shown on the status page.
    storage_failure: Mutex<Option<(u64, String)>>,
    reload_lock: tokio::sync::Mutex<()>,
    started_at: String,
    ready: AtomicBool,
}

/// Longest an event in a category the relay does not know waits for
/// `/site.json` to name it; then it is routed as restricted (only rules
/// naming its slug get it).
pub const UNKNOWN_CATEGORY_WAIT: Duration = Duration::from_secs(60);
/// How often `/site.json` is fetched when nothing asks sooner.
const SITE_REFRESH: Duration = Duration::from_secs(600);
/// The next try after `/site.json` failed.
const SITE_RETRY: Duration = Duration::from_secs(15);
/// Fetches of `/site.json` are at least this far apart.
const SITE_REFRESH_MIN_GAP: Duration = Duration::from_secs(2);

/// Options of `serve` beyond the config file.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub config: PathBuf,
    pub data_dir: PathBuf,
    /// Override `[server] listen` (tests use port 0).
    pub listen: Option<std::net::SocketAddr>,
    pub admin_listen: Option<std::net::SocketAddr>,
}

/// Topic fetches (`/t/ID.json`) in flight at once, over all forums.
/// Discourse rate-limits API keys (by default 60 admin requests a minute,
/// with small per-second bursts); a burst of new topics fetched all at once
/// gets 429s, and those topics' tags then stay unknown. A few at a time,
/// ~100 ms each, still finish well inside the default 20 s delay window.
const TOPIC_FETCHES_AT_ONCE: usize = 4;

/// Topics waiting for a fetch or being fetched, at most: beyond this the
/// fetch is skipped (and logged) rather than queued without bound.
const TOPIC_FETCHES_WAITING: usize = 1024;

fn rfc3339(ms: u64) -> String {
    jiff::Timestamp::from_millisecond(ms as i64)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

impl App {
    /// Loads the config (every secret must be set), opens the store and
    /// starts the scheduler and workers. Listeners are started by the caller.
    pub async fn start(opts: &ServeOptions) -> Result<Arc<Self>, ServeError> {
        let path = opts.config.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            pipeline::load(&path, &ProcessEnv, MissingEnv::Error)
        })
        .await
        .map_err(|e| ServeError::Io(std::io::Error::other(e)))?;
        let (p, warnings) = loaded.map_err(|diags| ServeError::Config {
            path: opts.config.display().to_string(),
            diags,
        })?;
        for w in &warnings.0 {
            tracing::warn!("{w}");
        }
        for f in &p.config.forums {
            if f.webhook_secret.is_none() {
                tracing::warn!(
                    forum = %f.url,
                    "no webhook_secret: webhook signatures are NOT checked, anyone who can reach the listener can post events"
                );
            }
        }

        std::fs::create_dir_all(&opts.data_dir)
            .map_err(|e| ServeError::DataDir(opts.data_dir.display().to_string(), e))?;
        let db = opts.data_dir.join("relay.redb");
        let store: Arc<dyn Store> = Arc::new(
            tokio::task::spawn_blocking(move || RedbStore::open(&db))
                .await
                .map_err(|e| ServeError::Io(std::io::Error::other(e)))??,
        );

        let metrics = Arc::new(Metrics::new());
        let stats = Arc::new(Stats {
            metrics: metrics.clone(),
            chats: Mutex::new(HashMap::new()),
        });
        let shutdown = CancellationToken::new();
        let forum = Mutex::new(
            p.config
                .forums
                .iter()
                .enumerate()
                .map(|(i, f)| (f.url.clone(), p.forum_state(i)))
                .collect::<HashMap<_, _>>(),
        );
        let hash = p.config.hash.clone();
        let chats: Vec<String> = p.config.chats.iter().map(|c| c.name.clone()).collect();
        let pipeline = Arc::new(ArcSwap::from_pointee(p));
        let workers = Workers::new(Arc::new(WorkerCtx {
            store: store.clone(),
            pipeline: pipeline.clone(),
            sender: Sender::new()?,
            observer: stats.clone(),
            shutdown: shutdown.clone(),
        }));
        let scheduler_wake = Arc::new(Notify::new());
        let now = rfc3339(now_ms());
        let app = Arc::new(App {
            config_path: opts.config.clone(),
            pipeline: pipeline.clone(),
            store: store.clone(),
            metrics: metrics.clone(),
            shutdown: shutdown.clone(),
            committer: GroupCommitter::new(store.clone()),
            forum,
            api: ArcSwap::from_pointee(HashMap::new()),
            fetching: Mutex::new(std::collections::HashSet::new()),
            topic_fetches: tokio::sync::Semaphore::new(TOPIC_FETCHES_AT_ONCE),
            site_refresh: Arc::new(Notify::new()),
            workers: workers.clone(),
            scheduler_wake: scheduler_wake.clone(),
            stats,
            config_status: Mutex::new({
                let start = ReloadStatus {
                    at: now.clone(),
                    ok: true,
                    trigger: Trigger::Start.as_str().into(),
                    hash: Some(hash.clone()),
                    errors: vec![],
                };
                ConfigStatus {
                    path: opts.config.display().to_string(),
                    hash: hash.clone(),
                    loaded_at: now.clone(),
                    last_reload: Some(start.clone()),
                    history: vec![start],
                }
            }),
            storage_failure: Mutex::new(None),
            reload_lock: tokio::sync::Mutex::new(()),
            started_at: now,
            ready: AtomicBool::new(false),
        });
        metrics.reload(true, &hash, now_ms() as f64 / 1000.0);
        for c in &app.pipeline.load().config.chats {
            metrics.register_chat(&c.name, &c.provider);
        }

        tokio::spawn(
            Scheduler {
                store: store.clone(),
                pipeline,
                workers: workers.clone(),
                wake: scheduler_wake,
                shutdown: shutdown.clone(),
            }
            .run(),
        );
        // Resume what was queued before a restart, and start every chat.
        let pending = blocking(&store, |s| s.queue_depths()).await?;
        for chat in chats.iter().chain(pending.iter().map(|(c, _)| c)) {
            workers.wake(chat);
        }
        app.set_api(&app.pipeline.load());
        app.spawn_housekeeping();
        app.spawn_site_refresh();
        app.ready.store(true, Ordering::SeqCst);
        Ok(app)
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) && !self.shutdown.is_cancelled()
    }

    /// Stops accepting, lets workers finish their current send, and flushes
    /// the store (a clean close makes cheap-durability acks durable).
    pub async fn stop(&self) {
        self.ready.store(false, Ordering::SeqCst);
        self.shutdown.cancel();
        self.workers.join().await;
        self.committer.shutdown().await;
    }

    fn set_api(&self, p: &Pipeline) {
        let apis: HashMap<String, Arc<DiscourseApi>> = p
            .config
            .forums
            .iter()
            .filter_map(|f| {
                let key = f.api_key.as_ref()?;
                let api = DiscourseApi::new(&f.url, key.clone(), &f.api_username).ok()?;
                Some((f.url.clone(), Arc::new(api)))
            })
            .collect();
        self.api.store(Arc::new(apis));
    }

    /// The learned state of the forum at `url`, created from the serving
    /// config's static map on first use.
    fn with_forum<R>(&self, url: &str, f: impl FnOnce(&mut ForumState) -> R) -> R {
        let mut forums = self.forum.lock().unwrap_or_else(|e| e.into_inner());
        // Looked up before `entry`, which would allocate the key on every request.
        if let Some(state) = forums.get_mut(url) {
            return f(state);
        }
        let state = forums.entry(url.to_string()).or_insert_with(|| {
            let p = self.pipeline.load();
            p.forum_state(p.config.forum_index(url).unwrap_or(0))
        });
        f(state)
    }

    /// Keeps category paths and restrictions current from `/site.json`:
    /// at start, every 10 minutes, after `category_*` events and when a post
    /// names a category not known yet (at most once per
    /// [`SITE_REFRESH_MIN_GAP`]); after a failure, again within
    /// [`SITE_RETRY`]. What is learned is applied to the events waiting in
    /// the inbox, which may then be routed at once.
    fn spawn_site_refresh(self: &Arc<Self>) {
        let app = self.clone();
        tokio::spawn(async move {
            loop {
                let mut failed = false;
                for (url, api) in app.api.load_full().iter() {
                    match api.site().await {
                        Ok(site) => {
                            let n = site.categories.len();
                            let known = app.with_forum(url, |f| {
                                f.learn_site(&site);
                                f.categories_only()
                            });
                            tracing::info!(forum = %url, categories = n, "learned categories from /site.json");
                            app.resolve_waiting(url, known).await;
                        }
                        Err(e) => {
                            failed = true;
                            tracing::warn!(forum = %url, error = %e, "cannot fetch /site.json; unknown categories stay restricted")
                        }
                    }
                }
                let wait = if failed { SITE_RETRY } else { SITE_REFRESH };
                tokio::select! {
                    _ = app.site_refresh.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = app.shutdown.cancelled() => return,
                }
                // A burst of posts in unknown categories fetches once.
                tokio::select! {
                    _ = tokio::time::sleep(SITE_REFRESH_MIN_GAP) => {}
                    _ = app.shutdown.cancelled() => return,
                }
            }
        });
    }

    /// Re-resolves the categories of waiting events of `forum` that were
    /// unknown when accepted; those now known are due after their own delay
    /// (at once if it has passed), the rest keep waiting out their hold.
    async fn resolve_waiting(&self, forum: &str, known: ForumState) {
        let p = self.pipeline.load();
        let delay = p
            .config
            .forum_index(forum)
            .map_or(0, |i| p.config.forums[i].delay.as_millis() as u64);
        drop(p);
        let forum = forum.to_string();
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

    /// Fetches `/t/{id}.json` for a topic whose tags or PM groups are
    /// unknown, then fills the events waiting out their delay. At most
    /// [`TOPIC_FETCHES_AT_ONCE`] run at once; the others wait their turn,
    /// and at most [`TOPIC_FETCHES_WAITING`] topics are waiting or in flight.
    fn spawn_topic_fetch(self: &Arc<Self>, forum_url: &str, topic_id: u64) {
        let Some(api) = self.api.load().get(forum_url).cloned() else {
            return;
        };
        let key = (forum_url.to_string(), topic_id);
        {
            let mut fetching = self.fetching.lock().unwrap_or_else(|e| e.into_inner());
            if fetching.contains(&key) {
                return;
            }
            if fetching.len() >= TOPIC_FETCHES_WAITING {
                tracing::warn!(forum = %forum_url, topic = topic_id, "too many topic fetches waiting; this topic's tags stay unknown");
                return;
            }
            fetching.insert(key.clone());
        }
        let forum_url = forum_url.to_string();
        let app = self.clone();
        tokio::spawn(async move {
            // Waiting for a turn ends with the relay; the key is left behind
            // with the process.
            let result = tokio::select! {
                permit = app.topic_fetches.acquire() => match permit {
                    Ok(_permit) => api.topic(topic_id).await,
                    Err(_) => return,
                },
                _ = app.shutdown.cancelled() => return,
            };
            app.fetching
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
            let t = match result {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(topic = topic_id, error = %e, "cannot fetch the topic");
                    return;
                }
            };
            let known = app.with_forum(&forum_url, |f| {
                f.learn_topic(&t);
                f.topic(topic_id).cloned().unwrap_or_default()
            });
            let (tags, groups) = (known.tags, known.pm_groups);
            let r = blocking(&app.store, move |s| {
                refresh_topic(s, &forum_url, topic_id, tags.as_deref(), groups.as_deref())
            })
            .await;
            if let Err(e) = r {
                tracing::warn!(topic = topic_id, error = %e, "cannot update waiting events");
            }
        });
    }

    /// Prunes the dedupe window and old message refs, and refreshes the
    /// queue-depth gauges.
    fn spawn_housekeeping(self: &Arc<Self>) {
        let app = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut n: u64 = 0;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = app.shutdown.cancelled() => return,
                }
                n += 1;
                // Acks are cheap commits; an idle second makes them durable,
                // so a crash after a quiet moment re-sends nothing.
                if let Err(e) = blocking(&app.store, |s| s.sync()).await {
                    tracing::warn!(error = %e, "cannot make the last acknowledgements durable");
                }
                // Prune every 5 minutes, or twice per `remember` when shorter.
                let (remember, dead_age, dead_count) = {
                    let p = app.pipeline.load();
                    let s = &p.config.server;
                    (s.remember, s.dead_letter_max_age, s.dead_letter_max_count)
                };
                if n.is_multiple_of((remember.as_secs() / 2).clamp(1, 300)) {
                    let now = now_ms();
                    let day = 24 * 3600 * 1000;
                    let remember = remember.as_millis() as u64;
                    let dead_age = u64::try_from(dead_age.as_millis()).unwrap_or(u64::MAX);
                    match blocking(&app.store, move |s| {
                        s.prune(now.saturating_sub(day), now.saturating_sub(remember))?;
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
                if let Ok(q) = blocking(&app.store, |s| s.quarantined()).await {
                    app.metrics.set_quarantined(q.count);
                }
                if let Ok(depths) = blocking(&app.store, |s| s.queue_depths()).await {
                    let mut seen: HashMap<String, u64> = depths.into_iter().collect();
                    for c in &app.pipeline.load().config.chats {
                        seen.entry(c.name.clone()).or_insert(0);
                    }
                    for (chat, depth) in seen {
                        app.metrics.set_queue_depth(&chat, depth);
                    }
                }
            }
        });
    }

    /// The whole ingest path of one webhook request: verify, normalize,
    /// store durably, answer. 202 only once the event is on disk.
    pub async fn accept(self: &Arc<Self>, req: WebhookRequest) -> Answer {
        let p = self.pipeline.load_full();
        let name = req.header("X-Discourse-Event").unwrap_or("").to_string();
        // X-Discourse-Instance picks the forum; without it, [discourse].
        let forum = match req.header("X-Discourse-Instance") {
            None => p.config.forum(),
            Some(instance) => match p.config.forum_index(instance) {
                Some(i) => &p.config.forums[i],
                None => {
                    self.metrics.event(&name, EventOutcome::UnknownInstance);
                    return Answer::new(
                        403,
                        "unknown X-Discourse-Instance: this relay serves other forums",
                    );
                }
            },
        };
        if let Some(secret) = &forum.webhook_secret
            && let Err(e) = req.verify_signature(secret.expose().as_bytes())
        {
            self.metrics.event(&name, EventOutcome::BadSignature);
            let why = match e {
                SignatureError::Missing => "missing X-Discourse-Event-Signature",
                SignatureError::Malformed => "malformed X-Discourse-Event-Signature",
                SignatureError::Mismatch => "signature does not match the body",
            };
            return Answer::new(401, why);
        }
        // JSON is parsed outside the forum state's lock, which every
        // request takes.
        let ingested = parse(&req, &forum.url)
            .map(|parsed| self.with_forum(&forum.url, |state| parsed.resolve(state)));
        let event = match ingested {
            Err(e) => {
                self.metrics.event(&name, EventOutcome::Malformed);
                let e: IngestError = e;
                return Answer::new(400, e.to_string());
            }
            Ok(Ingested::Ping) => {
                self.metrics.event("ping", EventOutcome::Ping);
                return Answer::new(200, "pong");
            }
            Ok(Ingested::Unsupported(n)) => {
                self.metrics.event(&n, EventOutcome::Unsupported);
                if n.starts_with("category_") {
                    self.site_refresh.notify_one();
                }
                // 200, never 404/410: Discourse disables hooks that answer those.
                return Answer::new(200, format!("ignored: `{n}` events are not relayed"));
            }
            Ok(Ingested::Event(e)) => *e,
        };

        let now = now_ms();
        let mut delay = if event.kind == EventKind::PostCreated {
            forum.delay.as_millis() as u64
        } else {
            0
        };
        // A category the relay has not learned yet is treated as restricted;
        // where the API can name it, the event waits (bounded) for
        // `/site.json` rather than going out with a guess.
        let unresolved = event
            .topic
            .category
            .as_ref()
            .filter(|c| c.unresolved)
            .map(|c| c.id);
        let learning = unresolved.is_some() && self.api.load().contains_key(&forum.url);
        if let Some(id) = unresolved.filter(|_| learning) {
            tracing::info!(forum = %forum.url, category = id, "unknown category: held for /site.json, restricted until it names it");
            delay = delay.max(UNKNOWN_CATEGORY_WAIT.as_millis() as u64);
        }
        let body_hash: [u8; 32] = Sha256::new()
            .chain_update(forum.url.as_bytes())
            .chain_update([0u8])
            .chain_update(&req.body)
            .finalize()
            .into();
        let inbound = InboundEvent {
            dedupe: DedupeKey {
                event_id: req
                    .header("X-Discourse-Event-Id")
                    .map(|id| format!("{}#{}", forum.url, id.trim())),
                body_hash,
            },
            event,
            due_at_ms: now + delay,
            received_at_ms: now,
        };
        // Only what is needed after the event moved into the store.
        let (has_post, topic_id, private_message) = (
            inbound.event.post.is_some(),
            inbound.event.topic.id,
            inbound.event.topic.private_message,
        );
        // Edits, deletes and topic events are merged into the pending posts
        // by the scheduler, in due order with them (`scheduler::absorb`).
        let stored = self.committer.accept(inbound).await;
        self.storage_result(stored.as_ref().err());
        match stored {
            Ok(AcceptOutcome::Stored(_)) => {
                self.metrics.event(&name, EventOutcome::Accepted);
                // Post payloads carry no tags and no PM recipients: ask the API while
                // the event waits out its delay (after it is stored, so the answer
                // can update it).
                if has_post {
                    let known = self.with_forum(&forum.url, |f| {
                        f.topic(topic_id).cloned().unwrap_or_default()
                    });
                    let missing_groups = private_message && known.pm_groups.is_none();
                    if known.tags.is_none() || missing_groups {
                        self.spawn_topic_fetch(&forum.url, topic_id);
                    }
                }
                if learning {
                    self.site_refresh.notify_one();
                }
                // An event held for `delay` is found by the scheduler's poll
                // when due; waking it now would only read the inbox for nothing.
                if delay == 0 {
                    self.scheduler_wake.notify_one();
                }
                Answer::new(202, "accepted")
            }
            Ok(AcceptOutcome::Duplicate) => {
                self.metrics.event(&name, EventOutcome::Duplicate);
                Answer::new(200, "duplicate: already accepted")
            }
            Err(e) => {
                self.metrics.event(&name, EventOutcome::Unavailable);
                tracing::error!(error = %e, "cannot store the event; answering 503 so Discourse retries");
                Answer::new(503, format!("storage unavailable, retry later: {e}"))
            }
        }
    }

    /// Reads and builds the config, then swaps it in whole. A failure
    /// changes nothing. Returns the new hash, or every problem.
    pub async fn reload(&self, trigger: Trigger) -> Result<String, Vec<String>> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let path = self.config_path.clone();
        let text = match tokio::fs::read_to_string(&path).await {
            Ok(t) => t,
            Err(e) => {
                let errors = vec![format!("{}: cannot read the file: {e}", path.display())];
                self.record_reload(trigger, None, errors.clone());
                return Err(errors);
            }
        };
        let current = self.pipeline.load().config.hash.clone();
        let hash = hex::encode(Sha256::digest(text.as_bytes()));
        if trigger == Trigger::File && hash == current {
            return Ok(hash);
        }
        let built =
            build_aside(move || pipeline::load_str(&path, &text, &ProcessEnv, MissingEnv::Error))
                .await;
        match built {
            Ok(Ok((p, _warnings))) => {
                let old = self.pipeline.load_full();
                // Only chats new here (or moved to another provider) need
                // their metric series; unchanged ones keep theirs.
                for c in &p.config.chats {
                    let same = old
                        .chat_index(&c.name)
                        .is_some_and(|i| old.config.chats[i].provider == c.provider);
                    if !same {
                        self.metrics.register_chat(&c.name, &c.provider);
                    }
                }
                self.set_api(&p);
                let new = Arc::new(p);
                self.pipeline.store(new.clone());
                for c in &old.config.chats {
                    if new.chat_index(&c.name).is_none() {
                        self.metrics.forget_chat(&c.name);
                    }
                }
                self.record_reload(trigger, Some(hash.clone()), vec![]);
                // Running workers pick the new config up at their next send;
                // only chats new in this config need one started.
                for c in &new.config.chats {
                    if old.chat_index(&c.name).is_none() {
                        self.workers.wake(&c.name);
                    }
                }
                drop(new);
                // Freeing the old config (~100k small allocations for 100k
                // rules) would stall this runtime thread; the last holder may
                // also be a worker, which is fine (it is rare and after a send).
                drop_aside(old);
                tracing::info!(trigger = trigger.as_str(), hash = %&hash[..12], "config reloaded");
                Ok(hash)
            }
            Ok(Err(diags)) => {
                let errors: Vec<String> = diags.errors().map(|d| d.to_string()).collect();
                tracing::error!(
                    trigger = trigger.as_str(),
                    "config rejected; the previous one keeps serving:\n{diags}"
                );
                self.record_reload(trigger, Some(hash), errors.clone());
                Err(errors)
            }
            Err(e) => {
                let errors = vec![format!("reload task failed: {e}")];
                self.record_reload(trigger, Some(hash), errors.clone());
                Err(errors)
            }
        }
    }

    fn record_reload(&self, trigger: Trigger, hash: Option<String>, errors: Vec<String>) {
        let ok = errors.is_empty();
        let now = now_ms();
        self.metrics
            .reload(ok, hash.as_deref().unwrap_or(""), now as f64 / 1000.0);
        // On success, the status's hash and load time follow this attempt.
        self.config_status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(ReloadStatus {
                at: rfc3339(now),
                ok,
                trigger: trigger.as_str().into(),
                hash,
                errors,
            });
    }

    /// Queues the test message for `chat`; `None` if there is no such chat.
    pub async fn send_test(
        &self,
        chat: &str,
        requested_by: &str,
    ) -> Result<Option<u64>, StoreError> {
        if self.pipeline.load().chat_index(chat).is_none() {
            return Ok(None);
        }
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
        Ok(Some(seq))
    }

    /// The newest `limit` dead letters of `chat`; `None` if there is no such chat.
    pub async fn dead_letters(
        &self,
        chat: &str,
        limit: usize,
    ) -> Result<Option<Vec<DeadLetter>>, StoreError> {
        if self.pipeline.load().chat_index(chat).is_none() {
            return Ok(None);
        }
        let name = chat.to_string();
        blocking(&self.store, move |s| s.dead_letters(Some(&name), limit))
            .await
            .map(Some)
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

    /// Everything the status page and `/api/status` show.
    pub async fn status(&self) -> StatusReport {
        let p = self.pipeline.load_full();
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
                }
            })
            .collect();
        StatusReport {
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: self.started_at.clone(),
            config: self
                .config_status
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            chats,
            storage: {
                let failure = self
                    .storage_failure
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                StorageStatus {
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
                }
            },
        }
    }
}

type Job = Box<dyn FnOnce() + Send>;
type JobQueue = std::sync::OnceLock<Mutex<std::sync::mpsc::Sender<Job>>>;

/// Builds configs, on one long-lived thread started on first use. Not the
/// blocking pool: a build allocates a few hundred MB of short-lived data, and
/// on pool threads (or a fresh thread per reload) each reload may land in
/// another glibc arena that keeps that memory; RSS grew by about a config per
/// reload. Handlebars recurses per nesting level, hence the runtime's 16 MiB.
static BUILDER: JobQueue = std::sync::OnceLock::new();
/// Frees replaced configs, beside the builder so that a reload right after
/// another does not wait for the previous config to be freed. Frees go back
/// to the arena of the builder that allocated them.
static FREER: JobQueue = std::sync::OnceLock::new();

fn run_on(queue: &'static JobQueue, name: &str, job: Job) -> Result<(), std::io::Error> {
    let tx = match queue.get() {
        Some(tx) => tx,
        None => {
            let (tx, rx) = std::sync::mpsc::channel::<Job>();
            std::thread::Builder::new()
                .name(name.into())
                .stack_size(16 * 1024 * 1024)
                .spawn(move || {
                    for job in rx {
                        job();
                    }
                })?;
            // Reloads hold the reload lock, so one thread is started per queue.
            queue.get_or_init(|| Mutex::new(tx))
        }
    };
    let tx = tx.lock().unwrap_or_else(|e| e.into_inner());
    tx.send(job)
        .map_err(|_| std::io::Error::other(format!("the {name} thread is gone")))
}

/// Runs a config build on the builder thread and waits for it without
/// blocking the runtime.
async fn build_aside<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, std::io::Error> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job = move || {
        let _ = tx.send(f());
    };
    run_on(&BUILDER, "config-build", Box::new(job))?;
    rx.await
        .map_err(|_| std::io::Error::other("the config build panicked"))
}

/// Frees `old` on the freer thread: freeing ~100k small allocations would
/// stall a runtime thread. If the thread is gone, frees it here.
fn drop_aside(old: Arc<Pipeline>) {
    if let Err(e) = run_on(&FREER, "config-free", Box::new(move || drop(old))) {
        tracing::warn!(error = %e, "cannot hand the old config to the config thread");
    }
}

/// The config file's directory is watched (not the file): editors replace
/// files by rename and Kubernetes swaps a `..data` symlink, both invisible to
/// a watch on the file itself. Changes are debounced and compared by hash.
pub fn watch_config(app: Arc<App>) -> Result<notify::RecommendedWatcher, notify::Error> {
    use notify::Watcher;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(16);
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if res.is_ok() {
            let _ = tx.try_send(());
        }
    })?;
    let dir = app
        .config_path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    watcher.watch(&dir, notify::RecursiveMode::NonRecursive)?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                got = rx.recv() => if got.is_none() { return },
                _ = app.shutdown.cancelled() => return,
            }
            // Debounce: editors write in several steps.
            tokio::time::sleep(Duration::from_millis(300)).await;
            while rx.try_recv().is_ok() {}
            let _ = app.reload(Trigger::File).await;
        }
    });
    Ok(watcher)
}
