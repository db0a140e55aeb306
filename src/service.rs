//! The long-running relay (`serve`): [`App`] composes the running stages
//! (the serving config and its reloads, ingest's intake, delivery) and
//! answers for them. The HTTP listeners ([`crate::http::server`]) are thin
//! adapters over its methods.
//!
//! Nothing here parses, routes, stores or sends: each of those is its
//! stage's. Startup is the reload path run once: build the config fully,
//! then start.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::env::ProcessEnv;
use crate::config::env::Secret;
use crate::config::{Diagnostics, MissingEnv};
use crate::delivery::running::{DeadLetterChange, Delivery, StartError, StoreAt};
use crate::delivery::store::{
    AcceptOutcome, DeadLetter, DedupeKey, DeliveryRecord, InboundEvent, StoreError,
};
use crate::delivery::worker::now_ms;
use crate::ingest::WebhookRequest;
use crate::ingest::intake::{Admission, Intake};
use crate::observe::metrics::{EventOutcome, Metrics};
use crate::observe::status::{StatusReport, rfc3339};
use crate::pipeline::reload::{Reloader, watch};
use crate::pipeline::{self, Pipeline};

pub use crate::ingest::intake::UNKNOWN_CATEGORY_WAIT;
pub use crate::pipeline::reload::Trigger;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{path} is not valid:\n{diags}")]
    Config { path: String, diags: Diagnostics },
    #[error(transparent)]
    Delivery(#[from] StartError),
    #[error("cannot listen on {0}: {1}")]
    Bind(String, std::io::Error),
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

/// Options of `serve` beyond the config file.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub config: PathBuf,
    /// The redb store's directory, unless a PostgreSQL store is chosen.
    pub data_dir: PathBuf,
    /// A PostgreSQL URL (`serve --store`): overrides `[server] store`.
    pub store: Option<Secret>,
    /// Override `[server] listen` (tests use port 0).
    pub listen: Option<std::net::SocketAddr>,
    pub admin_listen: Option<std::net::SocketAddr>,
}

/// Facts learned by ingest waiting for delivery, at most.
const LEARNED_QUEUE: usize = 1024;

pub struct App {
    pub config_path: PathBuf,
    pub pipeline: Arc<ArcSwap<Pipeline>>,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
    reloader: Reloader,
    intake: Arc<Intake>,
    delivery: Arc<Delivery>,
    started_at: String,
    ready: AtomicBool,
}

impl App {
    /// Loads the config (every secret must be set), opens the store and
    /// starts the stages. Listeners are started by the caller.
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
        for f in p
            .config
            .forums
            .iter()
            .filter(|f| f.webhook_secret.is_none())
        {
            tracing::warn!(
                forum = %f.url,
                "no webhook_secret: webhook signatures are NOT checked, anyone who can reach the listener can post events"
            );
        }
        let metrics = Arc::new(Metrics::new());
        for c in &p.config.chats {
            metrics.register_chat(&c.name, &c.provider);
        }
        let shutdown = CancellationToken::new();
        let (learned_tx, mut learned) = mpsc::channel(LEARNED_QUEUE);
        let intake = Intake::new(&p.config.forums, learned_tx, shutdown.clone());
        let reloader = Reloader::new(&opts.config, p, metrics.clone(), now_ms());
        let pipeline = reloader.current.clone();
        let store_at = match opts
            .store
            .clone()
            .or(pipeline.load().config.server.store.clone())
        {
            Some(url) => StoreAt::Postgres(url),
            None => StoreAt::Redb(opts.data_dir.clone()),
        };
        let delivery = Delivery::start(
            &store_at,
            pipeline.clone(),
            metrics.clone(),
            shutdown.clone(),
        )
        .await?;
        // What the API teaches is applied to the events still waiting.
        let d = delivery.clone();
        tokio::spawn(async move {
            while let Some(fact) = learned.recv().await {
                d.learned(fact).await;
            }
        });
        Ok(Arc::new(App {
            config_path: opts.config.clone(),
            pipeline,
            metrics,
            shutdown,
            reloader,
            intake,
            delivery,
            started_at: rfc3339(now_ms()),
            ready: AtomicBool::new(true),
        }))
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) && !self.shutdown.is_cancelled()
    }

    /// Stops accepting, lets workers finish their current send, and flushes
    /// the store.
    pub async fn stop(&self) {
        self.ready.store(false, Ordering::SeqCst);
        self.shutdown.cancel();
        self.delivery.stop().await;
    }

    /// One webhook request: admitted by ingest, stored by delivery, answered
    /// 202 only once the event is on disk.
    pub async fn accept(self: &Arc<Self>, req: WebhookRequest) -> Answer {
        let p = self.pipeline.load_full();
        let name = req.header("X-Discourse-Event").unwrap_or("");
        let admitted = match self.intake.admit(&p.config.forums, &req, now_ms()) {
            Admission::Answered {
                status,
                reason,
                outcome,
                counted_as,
            } => {
                self.metrics
                    .event(counted_as.as_deref().unwrap_or(name), outcome);
                return Answer::new(status, reason);
            }
            Admission::Event(a) => *a,
        };
        let after = admitted.after.clone();
        let inbound = InboundEvent {
            dedupe: DedupeKey {
                event_id: admitted.event_id,
                body_hash: admitted.body_hash,
            },
            event: admitted.event,
            due_at_ms: admitted.due_at_ms,
            received_at_ms: admitted.received_at_ms,
        };
        // Edits, deletes and topic events are merged into the pending posts
        // by the scheduler, in due order with them.
        match self.delivery.accept(inbound).await {
            Ok(AcceptOutcome::Stored(_)) => {
                self.metrics.event(name, EventOutcome::Accepted);
                self.intake.stored(&after);
                Answer::new(202, "accepted")
            }
            Ok(AcceptOutcome::Duplicate) => {
                self.metrics.event(name, EventOutcome::Duplicate);
                Answer::new(200, "duplicate: already accepted")
            }
            Err(e) => {
                self.metrics.event(name, EventOutcome::Unavailable);
                tracing::error!(error = %e, "cannot store the event; answering 503 so Discourse retries");
                Answer::new(503, format!("storage unavailable, retry later: {e}"))
            }
        }
    }

    /// Reads and builds the config, then swaps it in whole; each stage then
    /// takes what is new. A failure changes nothing. Returns the serving
    /// hash, or every problem.
    pub async fn reload(&self, trigger: Trigger) -> Result<String, Vec<String>> {
        let swapped = self
            .reloader
            .reload(trigger, |s| {
                // Only chats new here (or moved to another provider) need
                // their metric series; unchanged ones keep theirs.
                for c in &s.new.config.chats {
                    let same = s
                        .old
                        .chat_index(&c.name)
                        .is_some_and(|i| s.old.config.chats[i].provider == c.provider);
                    if !same {
                        self.metrics.register_chat(&c.name, &c.provider);
                    }
                }
                for c in &s.old.config.chats {
                    if s.new.chat_index(&c.name).is_none() {
                        self.metrics.forget_chat(&c.name);
                    }
                }
                self.intake.configure(&s.new.config.forums);
                // Running workers pick the new config up at their next send;
                // only chats new in this config need one started.
                for c in &s.new.config.chats {
                    if s.old.chat_index(&c.name).is_none() {
                        self.delivery.wake(&c.name);
                    }
                }
            })
            .await?;
        Ok(swapped.unwrap_or_else(|| self.pipeline.load().config.hash.clone()))
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
        self.delivery.send_test(chat, requested_by).await.map(Some)
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
        self.delivery.dead_letters(chat, limit).await.map(Some)
    }

    /// The newest `limit` settled attempts of `chat`, newest first; `None`
    /// if there is no such chat.
    pub async fn recent_deliveries(
        &self,
        chat: &str,
        limit: usize,
    ) -> Result<Option<Vec<DeliveryRecord>>, StoreError> {
        if self.pipeline.load().chat_index(chat).is_none() {
            return Ok(None);
        }
        self.delivery.recent_deliveries(chat, limit).await.map(Some)
    }

    /// Sends dead letters of `chat` again (`ids`, or all), behind what is
    /// queued, or drops them; `None` if there is no such chat.
    pub async fn change_dead_letters(
        &self,
        chat: &str,
        change: DeadLetterChange,
        ids: Option<Vec<u64>>,
    ) -> Result<Option<u64>, StoreError> {
        if self.pipeline.load().chat_index(chat).is_none() {
            return Ok(None);
        }
        self.delivery
            .change_dead_letters(chat, change, ids)
            .await
            .map(Some)
    }

    /// Everything the status page and `/api/status` show.
    pub async fn status(&self) -> StatusReport {
        let p = self.pipeline.load_full();
        let (chats, storage) = self.delivery.status(&p).await;
        StatusReport {
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: self.started_at.clone(),
            config: self.reloader.status(),
            chats,
            storage,
        }
    }
}

/// Reloads on changes to the config file's directory (see
/// [`pipeline::reload::watch`]).
pub fn watch_config(app: Arc<App>) -> Result<notify::RecommendedWatcher, notify::Error> {
    let (watcher, mut changes) = watch(&app.config_path, app.shutdown.clone())?;
    tokio::spawn(async move {
        while changes.recv().await.is_some() {
            let _ = app.reload(Trigger::File).await;
        }
    });
    Ok(watcher)
}
