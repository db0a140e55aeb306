//! The running ingest stage: one webhook request in, one admitted event (or
//! an answer) out, plus what the relay learns about each forum on the way
//! (category paths from `/site.json`, topic tags and PM groups from
//! `/t/ID.json`).
//!
//! Intake knows nothing of the store: an admitted event goes to delivery
//! through the caller, and what the API teaches later is sent as
//! [`Learned`] facts on a channel, for delivery to apply to the events that
//! are still waiting out their delay.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::api::DiscourseApi;
use super::request::SignatureError;
use super::{Event, EventKind, ForumState, Ingested, Tag, WebhookRequest, parse};
use crate::config::Forum;
use crate::config::model::forum_index;
use crate::observe::metrics::EventOutcome;

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

/// Topic fetches (`/t/ID.json`) in flight at once, over all forums.
/// Discourse rate-limits API keys (by default 60 admin requests a minute,
/// with small per-second bursts); a burst of new topics fetched all at once
/// gets 429s, and those topics' tags then stay unknown. A few at a time,
/// ~100 ms each, still finish well inside the default 20 s delay window.
const TOPIC_FETCHES_AT_ONCE: usize = 4;

/// Topics waiting for a fetch or being fetched, at most: beyond this the
/// fetch is skipped (and logged) rather than queued without bound.
const TOPIC_FETCHES_WAITING: usize = 1024;

/// What the API taught after an event was admitted, for the events of that
/// forum still waiting out their delay.
#[derive(Debug)]
pub enum Learned {
    /// A topic's tags and PM groups (`None`: still unknown).
    Topic {
        forum: String,
        topic: u64,
        tags: Option<Vec<Tag>>,
        groups: Option<Vec<String>>,
        /// `Some(false)`: unlisted.
        visible: Option<bool>,
    },
    /// The forum's categories, from `/site.json`.
    Categories {
        forum: String,
        known: Box<ForumState>,
    },
}

/// How one request was taken.
#[derive(Debug)]
pub enum Admission {
    /// Answered at once (refused, a ping, an event the relay does not relay).
    Answered {
        status: u16,
        reason: String,
        outcome: EventOutcome,
        /// The event name it counts under, when not `X-Discourse-Event`'s.
        counted_as: Option<String>,
    },
    /// A normalized event, to be stored before it is answered.
    Event(Box<Admitted>),
}

/// An event ready for the inbox.
#[derive(Debug)]
pub struct Admitted {
    pub event: Event,
    /// `X-Discourse-Instance` (or the configured forum URL) + event id.
    pub event_id: Option<String>,
    /// SHA-256 of forum URL + raw body.
    pub body_hash: [u8; 32],
    pub received_at_ms: u64,
    pub due_at_ms: u64,
    /// What [`Intake::stored`] does once the event is on disk.
    pub after: AfterStore,
}

/// What to fetch for an event once it is stored (so the answer can update
/// it while it waits).
#[derive(Debug, Clone)]
pub struct AfterStore {
    forum: String,
    topic: Option<u64>,
    private_message: bool,
    /// Its category is unknown and `/site.json` may name it.
    learning: bool,
    /// It waits out a delay: the scheduler's poll finds it when due.
    pub delayed: bool,
}

/// The ingest stage of the running relay.
pub struct Intake {
    /// What each forum taught (by forum URL).
    forums: Mutex<HashMap<String, ForumState>>,
    /// The Discourse API of each forum that has an `api_key` (by forum URL).
    api: ArcSwap<HashMap<String, Arc<DiscourseApi>>>,
    /// Topics being fetched, so a burst of posts fetches each once; keyed
    /// by (forum URL, topic id): topic ids are per forum.
    fetching: Mutex<HashSet<(String, u64)>>,
    topic_fetches: Semaphore,
    site_refresh: Notify,
    learned: mpsc::Sender<Learned>,
    shutdown: CancellationToken,
}

impl Intake {
    /// The stage for `config`; what it learns is sent on `learned`.
    pub fn new(
        forums: &[Forum],
        learned: mpsc::Sender<Learned>,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let intake = Arc::new(Intake {
            forums: Mutex::new(
                forums
                    .iter()
                    .map(|f| (f.url.clone(), fresh_state(Some(f))))
                    .collect(),
            ),
            api: ArcSwap::from_pointee(HashMap::new()),
            fetching: Mutex::new(HashSet::new()),
            topic_fetches: Semaphore::new(TOPIC_FETCHES_AT_ONCE),
            site_refresh: Notify::new(),
            learned,
            shutdown,
        });
        intake.configure(forums);
        intake.clone().spawn_site_refresh();
        intake
    }

    /// Takes the API clients and hidden tags of a new config (a reload).
    pub fn configure(&self, forums: &[Forum]) {
        {
            let mut states = self.forums.lock().unwrap_or_else(|e| e.into_inner());
            for f in forums {
                if let Some(state) = states.get_mut(&f.url) {
                    state.set_hidden_tags(f.hidden_tags.clone());
                }
            }
        }
        let apis = forums
            .iter()
            .filter_map(|f| {
                let key = f.api_key.as_ref()?;
                let api = DiscourseApi::new(&f.url, key.clone(), &f.api_username).ok()?;
                Some((f.url.clone(), Arc::new(api)))
            })
            .collect();
        self.api.store(Arc::new(apis));
    }

    /// Verify, normalize and date one request for one of `forums` (the
    /// first is `[discourse]`, which serves requests that name none).
    pub fn admit(&self, forums: &[Forum], req: &WebhookRequest, now_ms: u64) -> Admission {
        let answered = |status, reason: &str, outcome| Admission::Answered {
            status,
            reason: reason.to_string(),
            outcome,
            counted_as: None,
        };
        // X-Discourse-Instance picks the forum; without it, [discourse].
        let forum = match req.header("X-Discourse-Instance") {
            None => forums.first(),
            Some(instance) => forum_index(forums, instance).and_then(|i| forums.get(i)),
        };
        let forum = match forum {
            Some(f) => f,
            None => {
                return answered(
                    403,
                    "unknown X-Discourse-Instance: this relay serves other forums",
                    EventOutcome::UnknownInstance,
                );
            }
        };
        if let Some(secret) = &forum.webhook_secret
            && let Err(e) = req.verify_signature(secret.expose().as_bytes())
        {
            let why = match e {
                SignatureError::Missing => "missing X-Discourse-Event-Signature",
                SignatureError::Malformed => "malformed X-Discourse-Event-Signature",
                SignatureError::Mismatch => "signature does not match the body",
            };
            return answered(401, why, EventOutcome::BadSignature);
        }
        // JSON is parsed outside the forum state's lock, which every
        // request takes.
        let ingested =
            parse(req, &forum.url).map(|parsed| self.with_forum(forum, |s| parsed.resolve(s)));
        let event = match ingested {
            Err(e) => return answered(400, &e.to_string(), EventOutcome::Malformed),
            Ok(Ingested::Ping) => {
                return Admission::Answered {
                    status: 200,
                    reason: "pong".into(),
                    outcome: EventOutcome::Ping,
                    counted_as: Some("ping".into()),
                };
            }
            Ok(Ingested::Unsupported(n)) => {
                if n.starts_with("category_") {
                    self.site_refresh.notify_one();
                }
                // 200, never 404/410: Discourse disables hooks that answer those.
                return Admission::Answered {
                    status: 200,
                    reason: format!("ignored: `{n}` events are not relayed"),
                    outcome: EventOutcome::Unsupported,
                    counted_as: Some(n),
                };
            }
            Ok(Ingested::Event(e)) => *e,
        };
        let mut delay = if event.kind == EventKind::PostCreated {
            forum.delay.as_millis() as u64
        } else {
            0
        };
        // A category the relay has not learned yet is treated as restricted;
        // where the API can name it, the event waits (bounded) for
        // `/site.json` rather than going out with a guess.
        let unresolved = event.topic.category.as_ref().filter(|c| c.unresolved);
        let learning = unresolved.is_some() && self.api.load().contains_key(&forum.url);
        if let Some(c) = unresolved.filter(|_| learning) {
            tracing::info!(forum = %forum.url, category = c.id, "unknown category: held for /site.json, restricted until it names it");
            delay = delay.max(UNKNOWN_CATEGORY_WAIT.as_millis() as u64);
        }
        let body_hash = Sha256::new()
            .chain_update(forum.url.as_bytes())
            .chain_update([0u8])
            .chain_update(&req.body)
            .finalize()
            .into();
        let after = AfterStore {
            forum: forum.url.clone(),
            topic: event.post.is_some().then_some(event.topic.id),
            private_message: event.topic.private_message,
            learning,
            delayed: delay > 0,
        };
        Admission::Event(Box::new(Admitted {
            event,
            event_id: req
                .header("X-Discourse-Event-Id")
                .map(|id| format!("{}#{}", forum.url, id.trim())),
            body_hash,
            received_at_ms: now_ms,
            due_at_ms: now_ms + delay,
            after,
        }))
    }

    /// After an event is on disk: post payloads carry no tags and no PM
    /// recipients, so ask the API while the event waits out its delay.
    pub fn stored(self: &Arc<Self>, after: &AfterStore) {
        if let Some(topic) = after.topic {
            let known = self.with_url(&after.forum, |f| f.topic(topic).cloned());
            let known = known.unwrap_or_default();
            // Tags and visibility are learned together from `/t/ID.json`.
            if known.tags.is_none()
                || known.visible.is_none()
                || (after.private_message && known.pm_groups.is_none())
            {
                self.spawn_topic_fetch(&after.forum, topic);
            }
        }
        if after.learning {
            self.site_refresh.notify_one();
        }
    }

    fn with_forum<R>(&self, forum: &Forum, f: impl FnOnce(&mut ForumState) -> R) -> R {
        let mut forums = self.forums.lock().unwrap_or_else(|e| e.into_inner());
        // Looked up before `entry`, which would allocate the key on every request.
        if let Some(state) = forums.get_mut(&forum.url) {
            return f(state);
        }
        f(forums
            .entry(forum.url.clone())
            .or_insert_with(|| fresh_state(Some(forum))))
    }

    /// The learned state of the forum at `url` (a forum dropped by a reload
    /// starts over from nothing).
    fn with_url<R>(&self, url: &str, f: impl FnOnce(&mut ForumState) -> R) -> R {
        let mut forums = self.forums.lock().unwrap_or_else(|e| e.into_inner());
        f(forums
            .entry(url.to_string())
            .or_insert_with(|| fresh_state(None)))
    }

    /// Keeps category paths and restrictions current from `/site.json`:
    /// at start, every 10 minutes, after `category_*` events and when a post
    /// names a category not known yet (at most once per
    /// [`SITE_REFRESH_MIN_GAP`]); after a failure, again within
    /// [`SITE_RETRY`].
    fn spawn_site_refresh(self: Arc<Self>) {
        tokio::spawn(async move {
            loop {
                let mut failed = false;
                for (url, api) in self.api.load_full().iter() {
                    match api.site().await {
                        Ok(site) => {
                            let n = site.categories.len();
                            // Staff-only tags, where the key may see tag
                            // groups; otherwise `hidden_tags` alone.
                            let groups = match api.tag_groups().await {
                                Ok(g) => Some(g),
                                Err(e) => {
                                    tracing::debug!(forum = %url, error = %e, "no /tag_groups.json; staff-only tags only from hidden_tags");
                                    None
                                }
                            };
                            // The card footer's title and logo; cards fall
                            // back to the forum's host without them.
                            let brand = match api.basic_info().await {
                                Ok(info) => Some(info),
                                Err(e) => {
                                    tracing::debug!(forum = %url, error = %e, "no /site/basic-info.json; cards show the forum's host");
                                    None
                                }
                            };
                            let known = self.with_url(url, |f| {
                                f.learn_site(&site);
                                if let Some(g) = &groups {
                                    f.learn_tag_groups(g);
                                }
                                if let Some(info) = &brand {
                                    f.learn_brand(info, url);
                                }
                                f.categories_only()
                            });
                            tracing::info!(forum = %url, categories = n, "learned categories from /site.json");
                            let forum = url.clone();
                            if self
                                .learned
                                .send(Learned::Categories {
                                    forum,
                                    known: Box::new(known),
                                })
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                        Err(e) => {
                            failed = true;
                            tracing::warn!(forum = %url, error = %e, "cannot fetch /site.json; unknown categories stay restricted")
                        }
                    }
                }
                let wait = if failed { SITE_RETRY } else { SITE_REFRESH };
                tokio::select! {
                    _ = self.site_refresh.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = self.shutdown.cancelled() => return,
                }
                // A burst of posts in unknown categories fetches once.
                tokio::select! {
                    _ = tokio::time::sleep(SITE_REFRESH_MIN_GAP) => {}
                    _ = self.shutdown.cancelled() => return,
                }
            }
        });
    }

    /// Fetches `/t/{id}.json` for a topic whose tags or PM groups are
    /// unknown. At most [`TOPIC_FETCHES_AT_ONCE`] run at once; the others
    /// wait their turn, and at most [`TOPIC_FETCHES_WAITING`] topics are
    /// waiting or in flight.
    fn spawn_topic_fetch(self: &Arc<Self>, forum: &str, topic: u64) {
        let Some(api) = self.api.load().get(forum).cloned() else {
            return;
        };
        let key = (forum.to_string(), topic);
        {
            let mut fetching = self.fetching.lock().unwrap_or_else(|e| e.into_inner());
            if fetching.contains(&key) {
                return;
            }
            if fetching.len() >= TOPIC_FETCHES_WAITING {
                tracing::warn!(forum = %forum, topic, "too many topic fetches waiting; this topic's tags stay unknown");
                return;
            }
            fetching.insert(key.clone());
        }
        let intake = self.clone();
        tokio::spawn(async move {
            // Waiting for a turn ends with the relay; the key is left behind
            // with the process.
            let result = tokio::select! {
                permit = intake.topic_fetches.acquire() => match permit {
                    Ok(_permit) => api.topic(topic).await,
                    Err(_) => return,
                },
                _ = intake.shutdown.cancelled() => return,
            };
            intake
                .fetching
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
            let t = match result {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(topic, error = %e, "cannot fetch the topic");
                    return;
                }
            };
            let (forum, _) = key;
            let known = intake.with_url(&forum, |f| {
                f.learn_topic(&t);
                f.topic(topic).cloned().unwrap_or_default()
            });
            let learned = Learned::Topic {
                forum,
                topic,
                tags: known.tags,
                groups: known.pm_groups,
                visible: known.visible,
            };
            let _ = intake.learned.send(learned).await;
        });
    }
}

/// A forum's state before it learned anything: its static category map, and
/// unknown categories held for the API where it has one.
fn fresh_state(forum: Option<&Forum>) -> ForumState {
    match forum {
        Some(f) => ForumState::new(&f.categories)
            .learning_from_api(f.api_key.is_some())
            .hiding_tags(f.hidden_tags.clone()),
        None => ForumState::new(&[]),
    }
}
