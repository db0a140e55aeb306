//! Prometheus metrics for `serve`: one registry, recorded through plain
//! arguments so callers never touch `prometheus_client` types.
//!
//! Exposed in the Prometheus text format 0.0.4 ([`CONTENT_TYPE`], no `# EOF`
//! trailer), which every Prometheus version scrapes. All names start with
//! `discourse_relay_`:
//!
//! | series | type | recorded by |
//! |---|---|---|
//! | `events_received_total{event, outcome}` | counter | [`Metrics::event`] |
//! | `deliveries_total{chat, provider, result}` | counter | [`Metrics::delivery`] |
//! | `retries_total{chat}` | counter | [`Metrics::retry`] |
//! | `dead_letters_total{chat}` | counter | [`Metrics::dead_letter`] |
//! | `queue_depth{chat}` | gauge | [`Metrics::set_queue_depth`] |
//! | `delivery_latency_seconds{chat}` | histogram | [`Metrics::delivery_latency`] |
//! | `config_last_reload_successful` | gauge 0/1 | [`Metrics::reload`] |
//! | `config_last_reload_success_timestamp_seconds` | gauge | [`Metrics::reload`] |
//! | `config_hash` | gauge | [`Metrics::reload`] |
//! | `config_reloads_total{result}` | counter | [`Metrics::reload`] |
//! | `connections_open{listener}` | gauge | [`Metrics::connection_opened`] |
//! | `connections_refused_total{listener}` | counter | [`Metrics::connection_refused`] |
//!
//! Pre-registered at zero, so dashboards and `rate()` see a series from the
//! first scrape:
//!
//! - by [`Metrics::new`]: `events_received_total{event="post_created"}` for
//!   every [`EventOutcome`], `config_reloads_total` for `success` and
//!   `failure`, and both connection series for every [`LISTENERS`] name;
//! - by [`Metrics::register_chat`] (call it for every chat of a config):
//!   `deliveries_total` for every [`DeliveryResult`], `retries_total`,
//!   `dead_letters_total`, `queue_depth` and `delivery_latency_seconds`.
//!
//! The `event` label is folded into a closed set ([`KNOWN_EVENTS`] or
//! `"other"`) because it comes from a request header anyone can send. `chat`
//! and `provider` come from the config, so they are bounded by it;
//! [`Metrics::forget_chat`] drops the series of a chat a reload removed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, PoisonError};

use prometheus_client::encoding::prometheus_text;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// The `Content-Type` of [`Metrics::encode`]'s output (Prometheus text 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// The prefix of every metric name (followed by `_`).
pub const PREFIX: &str = "discourse_relay";

/// The Discourse event names kept as `event` label values; anything else is
/// recorded as `"other"`.
pub const KNOWN_EVENTS: &[&str] = &[
    "post_created",
    "post_edited",
    "post_destroyed",
    "post_recovered",
    "topic_created",
    "topic_edited",
    "topic_destroyed",
    "topic_recovered",
    "ping",
];

/// The `listener` label values: the two listeners of `serve`.
pub const LISTENERS: [&str; 2] = ["public", "admin"];

/// Upper bounds (seconds) of `delivery_latency_seconds`: roughly ×2.5 steps
/// from 1 ms to 150 s, so both a bare send (ms) and a send measured from
/// receipt, including the configured delay (default 20 s) and retries of up
/// to a minute, land in a bucket below `+Inf`.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.006, 0.015, 0.04, 0.1, 0.25, 0.6, 1.5, 4.0, 10.0, 25.0, 60.0, 150.0,
];

/// The `event` label value for a Discourse event name (the
/// `X-Discourse-Event` header): itself if in [`KNOWN_EVENTS`], else `"other"`.
pub fn event_label(event: &str) -> &'static str {
    KNOWN_EVENTS
        .iter()
        .find(|known| **known == event)
        .copied()
        .unwrap_or("other")
}

/// What the webhook endpoint did with a request (`outcome` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventOutcome {
    /// Stored for delivery.
    Accepted,
    /// Already seen (same event id / body), acknowledged without effect.
    Duplicate,
    /// A Discourse `ping` event.
    Ping,
    /// A valid event of a kind the relay does not act on.
    Unsupported,
    /// Missing or wrong `X-Discourse-Event-Signature`.
    BadSignature,
    /// Signature valid, payload unreadable.
    Malformed,
    /// The request names no configured Discourse instance.
    UnknownInstance,
    /// Could not be stored (store or config unavailable); Discourse retries.
    Unavailable,
    /// Body over the size limit.
    TooLarge,
}

impl EventOutcome {
    /// Every outcome, in declaration order.
    pub const ALL: [EventOutcome; 9] = [
        EventOutcome::Accepted,
        EventOutcome::Duplicate,
        EventOutcome::Ping,
        EventOutcome::Unsupported,
        EventOutcome::BadSignature,
        EventOutcome::Malformed,
        EventOutcome::UnknownInstance,
        EventOutcome::Unavailable,
        EventOutcome::TooLarge,
    ];

    /// The label value (snake_case).
    pub fn as_str(self) -> &'static str {
        match self {
            EventOutcome::Accepted => "accepted",
            EventOutcome::Duplicate => "duplicate",
            EventOutcome::Ping => "ping",
            EventOutcome::Unsupported => "unsupported",
            EventOutcome::BadSignature => "bad_signature",
            EventOutcome::Malformed => "malformed",
            EventOutcome::UnknownInstance => "unknown_instance",
            EventOutcome::Unavailable => "unavailable",
            EventOutcome::TooLarge => "too_large",
        }
    }
}

impl EncodeLabelValue for EventOutcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// The result of one delivery attempt (`result` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeliveryResult {
    /// The platform accepted the message.
    Sent,
    /// Failed, will be retried.
    Retry,
    /// Failed in a way retrying cannot fix.
    Permanent,
    /// Given up on (permanent or out of retries); moved to the dead letters.
    DeadLetter,
}

impl DeliveryResult {
    /// Every result, in declaration order.
    pub const ALL: [DeliveryResult; 4] = [
        DeliveryResult::Sent,
        DeliveryResult::Retry,
        DeliveryResult::Permanent,
        DeliveryResult::DeadLetter,
    ];

    /// The label value (snake_case).
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryResult::Sent => "sent",
            DeliveryResult::Retry => "retry",
            DeliveryResult::Permanent => "permanent",
            DeliveryResult::DeadLetter => "dead_letter",
        }
    }
}

impl EncodeLabelValue for DeliveryResult {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EventLabels {
    event: &'static str,
    outcome: EventOutcome,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DeliveryLabels {
    chat: String,
    provider: String,
    result: DeliveryResult,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ChatLabels {
    chat: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ListenerLabels {
    listener: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReloadLabels {
    result: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The relay's metrics. `Send + Sync`; share one in an `Arc`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    events: Family<EventLabels, Counter>,
    deliveries: Family<DeliveryLabels, Counter>,
    retries: Family<ChatLabels, Counter>,
    dead_letters: Family<ChatLabels, Counter>,
    queue_depth: Family<ChatLabels, Gauge>,
    latency: Family<ChatLabels, Histogram>,
    reload_ok: Gauge,
    reload_success_time: Gauge<f64, AtomicU64>,
    config_hash: Gauge,
    reloads: Family<ReloadLabels, Counter>,
    connections_open: Family<ListenerLabels, Gauge>,
    connections_refused: Family<ListenerLabels, Counter>,
    worker_restarts: Family<ChatLabels, Counter>,
    quarantined: Gauge,
    /// Providers each chat has been recorded with, so `forget_chat` can find
    /// its `deliveries_total` series.
    chat_providers: Mutex<BTreeMap<String, BTreeSet<String>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every family registered and the pre-registered series
    /// (module docs) at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        let events = Family::<EventLabels, Counter>::default();
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        let retries = Family::<ChatLabels, Counter>::default();
        let dead_letters = Family::<ChatLabels, Counter>::default();
        let queue_depth = Family::<ChatLabels, Gauge>::default();
        let latency = Family::<ChatLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let reload_ok = Gauge::default();
        let reload_success_time = Gauge::<f64, AtomicU64>::default();
        let config_hash = Gauge::default();
        let reloads = Family::<ReloadLabels, Counter>::default();
        let connections_open = Family::<ListenerLabels, Gauge>::default();
        let connections_refused = Family::<ListenerLabels, Counter>::default();
        let worker_restarts = Family::<ChatLabels, Counter>::default();
        let quarantined = Gauge::default();

        // Series are created by `get_or_create`; the returned read guard is
        // dropped at once. Counter names get `_total` and units get `_<unit>` while encoding.
        registry.register(
            "events_received",
            "Discourse webhook requests received, by event (closed set) and outcome",
            events.clone(),
        );
        registry.register(
            "deliveries",
            "Delivery attempts, by chat, provider instance and result",
            deliveries.clone(),
        );
        registry.register(
            "retries",
            "Deliveries scheduled for another attempt, by chat",
            retries.clone(),
        );
        registry.register(
            "dead_letters",
            "Deliveries given up on and kept as dead letters, by chat",
            dead_letters.clone(),
        );
        registry.register(
            "queue_depth",
            "Deliveries waiting in a chat's queue",
            queue_depth.clone(),
        );
        registry.register_with_unit(
            "delivery_latency",
            "Time from receipt of an event to its successful delivery, by chat",
            Unit::Seconds,
            latency.clone(),
        );
        registry.register(
            "config_last_reload_successful",
            "Whether the last configuration reload attempt was successful",
            reload_ok.clone(),
        );
        registry.register_with_unit(
            "config_last_reload_success_timestamp",
            "Timestamp of the last successful configuration reload",
            Unit::Seconds,
            reload_success_time.clone(),
        );
        registry.register(
            "config_hash",
            "First 6 bytes of the SHA-256 of the loaded configuration file, as an integer",
            config_hash.clone(),
        );
        registry.register(
            "config_reloads",
            "Configuration reload attempts, by result (success, failure)",
            reloads.clone(),
        );

        registry.register(
            "worker_restarts",
            "Chat workers that crashed and were started again by their supervisor, by chat",
            worker_restarts.clone(),
        );

        registry.register(
            "connections_open",
            "Connections a listener is serving (at most [server] max_connections)",
            connections_open.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections answered 503 at once because their listener had max_connections open",
            connections_refused.clone(),
        );

        registry.register(
            "quarantined_rows",
            "Stored rows that could not be read and were set aside (see the status page)",
            quarantined.clone(),
        );

        for outcome in EventOutcome::ALL {
            drop(events.get_or_create(&EventLabels {
                event: "post_created",
                outcome,
            }));
        }
        for result in ["success", "failure"] {
            drop(reloads.get_or_create(&ReloadLabels { result }));
        }
        for listener in LISTENERS {
            drop(connections_open.get_or_create(&ListenerLabels { listener }));
            drop(connections_refused.get_or_create(&ListenerLabels { listener }));
        }

        Metrics {
            registry,
            events,
            deliveries,
            retries,
            dead_letters,
            queue_depth,
            latency,
            reload_ok,
            reload_success_time,
            config_hash,
            reloads,
            connections_open,
            connections_refused,
            worker_restarts,
            quarantined,
            chat_providers: Mutex::new(BTreeMap::new()),
        }
    }

    /// Counts one webhook request. `event` is the raw `X-Discourse-Event`
    /// value (folded by [`event_label`]).
    pub fn event(&self, event: &str, outcome: EventOutcome) {
        self.events
            .get_or_create(&EventLabels {
                event: event_label(event),
                outcome,
            })
            .inc();
    }

    /// Counts one connection `listener` started serving; pair it with
    /// [`Metrics::connection_closed`]. `listener` is one of [`LISTENERS`].
    pub fn connection_opened(&self, listener: &'static str) {
        self.connections_open
            .get_or_create(&ListenerLabels { listener })
            .inc();
    }

    /// Counts one connection `listener` stopped serving.
    pub fn connection_closed(&self, listener: &'static str) {
        self.connections_open
            .get_or_create(&ListenerLabels { listener })
            .dec();
    }

    /// Counts one connection `listener` refused (503) for being at its limit.
    pub fn connection_refused(&self, listener: &'static str) {
        self.connections_refused
            .get_or_create(&ListenerLabels { listener })
            .inc();
    }

    /// Creates a chat's series at zero (every [`DeliveryResult`] for
    /// `provider`, retries, dead letters, queue depth, latency). Idempotent;
    /// call it for every chat when a config is loaded.
    pub fn register_chat(&self, chat: &str, provider: &str) {
        self.note_provider(chat, provider);
        for result in DeliveryResult::ALL {
            drop(self.deliveries.get_or_create(&DeliveryLabels {
                chat: chat.to_owned(),
                provider: provider.to_owned(),
                result,
            }));
        }
        let labels = chat_labels(chat);
        drop(self.retries.get_or_create(&labels));
        drop(self.dead_letters.get_or_create(&labels));
        drop(self.queue_depth.get_or_create(&labels));
        drop(self.latency.get_or_create(&labels));
    }

    /// Counts one delivery attempt. `provider` is the provider instance name.
    pub fn delivery(&self, chat: &str, provider: &str, result: DeliveryResult) {
        self.note_provider(chat, provider);
        self.deliveries
            .get_or_create(&DeliveryLabels {
                chat: chat.to_owned(),
                provider: provider.to_owned(),
                result,
            })
            .inc();
    }

    /// Counts one retry scheduled for `chat`.
    pub fn retry(&self, chat: &str) {
        self.retries.get_or_create(&chat_labels(chat)).inc();
    }

    /// Counts one delivery of `chat` moved to the dead letters.
    pub fn dead_letter(&self, chat: &str) {
        self.dead_letters.get_or_create(&chat_labels(chat)).inc();
    }

    /// Counts one crash-and-restart of `chat`'s worker.
    pub fn worker_restart(&self, chat: &str) {
        self.worker_restarts.get_or_create(&chat_labels(chat)).inc();
    }

    /// Sets the number of stored rows set aside as unreadable.
    pub fn set_quarantined(&self, rows: u64) {
        self.quarantined
            .set(i64::try_from(rows).unwrap_or(i64::MAX));
    }

    /// Sets the number of deliveries waiting for `chat`.
    pub fn set_queue_depth(&self, chat: &str, depth: u64) {
        self.queue_depth
            .get_or_create(&chat_labels(chat))
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }

    /// Observes one successful delivery's latency, in seconds.
    pub fn delivery_latency(&self, chat: &str, seconds: f64) {
        self.latency
            .get_or_create(&chat_labels(chat))
            .observe(seconds);
    }

    /// Removes every series labelled with `chat` (a chat a reload removed).
    /// Recording for it again recreates them from zero.
    pub fn forget_chat(&self, chat: &str) {
        let providers = self
            .chat_providers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(chat)
            .unwrap_or_default();
        for provider in providers {
            for result in DeliveryResult::ALL {
                self.deliveries.remove(&DeliveryLabels {
                    chat: chat.to_owned(),
                    provider: provider.clone(),
                    result,
                });
            }
        }
        let labels = chat_labels(chat);
        self.retries.remove(&labels);
        self.dead_letters.remove(&labels);
        self.worker_restarts.remove(&labels);
        self.queue_depth.remove(&labels);
        self.latency.remove(&labels);
    }

    /// Records one config (re)load attempt. On success: successful = 1, the
    /// success timestamp = `unix_seconds`, `config_hash` from `hash_hex` (the
    /// hex SHA-256 of the file; its first 12 hex digits as an integer, like
    /// `alertmanager_config_hash`). On failure only successful = 0 and the
    /// failure count change (`hash_hex` and `unix_seconds` are ignored).
    pub fn reload(&self, ok: bool, hash_hex: &str, unix_seconds: f64) {
        let result = if ok { "success" } else { "failure" };
        self.reloads.get_or_create(&ReloadLabels { result }).inc();
        self.reload_ok.set(i64::from(ok));
        if ok {
            self.reload_success_time.set(unix_seconds);
            self.config_hash.set(hash_gauge_value(hash_hex));
        }
    }

    /// The registry in the Prometheus text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail, and no metric here returns an
        // encoding error; an empty body would only drop one scrape.
        if prometheus_text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    fn note_provider(&self, chat: &str, provider: &str) {
        let mut map = self
            .chat_providers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match map.get_mut(chat) {
            Some(set) => {
                if !set.contains(provider) {
                    set.insert(provider.to_owned());
                }
            }
            None => {
                map.insert(chat.to_owned(), BTreeSet::from([provider.to_owned()]));
            }
        }
    }
}

fn chat_labels(chat: &str) -> ChatLabels {
    ChatLabels {
        chat: chat.to_owned(),
    }
}

/// The first 6 bytes (12 hex digits) of a hex hash as an integer; 0 when the
/// string is not at least 12 hex digits.
fn hash_gauge_value(hash_hex: &str) -> i64 {
    hash_hex
        .get(..12)
        .and_then(|prefix| i64::from_str_radix(prefix, 16).ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    #[track_caller]
    fn assert_line(text: &str, line: &str) {
        assert!(
            lines(text).contains(&line),
            "missing line {line:?} in:\n{text}"
        );
    }

    #[test]
    fn metrics_are_send_and_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<Metrics>();
        check::<std::sync::Arc<Metrics>>();
    }

    #[test]
    fn events_counted_by_event_and_outcome() {
        let m = Metrics::new();
        m.event("post_created", EventOutcome::Accepted);
        m.event("post_created", EventOutcome::Accepted);
        m.event("post_created", EventOutcome::BadSignature);
        m.event("ping", EventOutcome::Ping);
        let text = m.encode();
        assert_line(
            &text,
            "# HELP discourse_relay_events_received_total Discourse webhook requests received, by event (closed set) and outcome.",
        );
        assert_line(
            &text,
            "# TYPE discourse_relay_events_received_total counter",
        );
        assert_line(
            &text,
            r#"discourse_relay_events_received_total{event="post_created",outcome="accepted"} 2"#,
        );
        assert_line(
            &text,
            r#"discourse_relay_events_received_total{event="post_created",outcome="bad_signature"} 1"#,
        );
        assert_line(
            &text,
            r#"discourse_relay_events_received_total{event="ping",outcome="ping"} 1"#,
        );
        // Pre-registered at zero. (`too_large` is counted by the webhook
        // handler on a 413; tests/bounds.rs shows it move through the binary.)
        assert_line(
            &text,
            r#"discourse_relay_events_received_total{event="post_created",outcome="unknown_instance"} 0"#,
        );
        assert!(!text.contains("# EOF"), "Prometheus 0.0.4 text has no EOF");
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn hostile_event_names_fold_into_other() {
        let m = Metrics::new();
        for hostile in [
            "post_created\"} 1\nevil",
            "x".repeat(10_000).as_str(),
            "POST_CREATED",
            "",
            "topic_created ",
        ] {
            m.event(hostile, EventOutcome::BadSignature);
        }
        let text = m.encode();
        assert_line(
            &text,
            r#"discourse_relay_events_received_total{event="other",outcome="bad_signature"} 5"#,
        );
        assert!(!text.contains("evil"));
        assert!(!text.contains("xxxx"));
        assert_eq!(event_label("topic_destroyed"), "topic_destroyed");
        assert_eq!(event_label("Topic_destroyed"), "other");
    }

    #[test]
    fn deliveries_retries_dead_letters_queue() {
        let m = Metrics::new();
        m.register_chat("general", "team-slack");
        m.delivery("general", "team-slack", DeliveryResult::Sent);
        m.delivery("general", "team-slack", DeliveryResult::Sent);
        m.delivery("general", "team-slack", DeliveryResult::Retry);
        m.retry("general");
        m.dead_letter("general");
        m.set_queue_depth("general", 7);
        let text = m.encode();
        assert_line(
            &text,
            r#"discourse_relay_deliveries_total{chat="general",provider="team-slack",result="sent"} 2"#,
        );
        assert_line(
            &text,
            r#"discourse_relay_deliveries_total{chat="general",provider="team-slack",result="retry"} 1"#,
        );
        assert_line(
            &text,
            r#"discourse_relay_deliveries_total{chat="general",provider="team-slack",result="dead_letter"} 0"#,
        );
        assert_line(&text, r#"discourse_relay_retries_total{chat="general"} 1"#);
        assert_line(
            &text,
            r#"discourse_relay_dead_letters_total{chat="general"} 1"#,
        );
        assert_line(&text, "# TYPE discourse_relay_queue_depth gauge");
        assert_line(&text, r#"discourse_relay_queue_depth{chat="general"} 7"#);
        m.set_queue_depth("general", 0);
        assert_line(
            &m.encode(),
            r#"discourse_relay_queue_depth{chat="general"} 0"#,
        );
    }

    #[test]
    fn latency_histogram_counts() {
        let m = Metrics::new();
        m.delivery_latency("ops", 0.0005);
        m.delivery_latency("ops", 0.2);
        m.delivery_latency("ops", 21.0);
        m.delivery_latency("ops", 1000.0);
        let text = m.encode();
        assert_line(
            &text,
            "# TYPE discourse_relay_delivery_latency_seconds histogram",
        );
        let bucket = |le: &str, n: u64| {
            format!(
                r#"discourse_relay_delivery_latency_seconds_bucket{{chat="ops",le="{le}"}} {n}"#
            )
        };
        assert_line(&text, &bucket("0.001", 1));
        assert_line(&text, &bucket("0.1", 1));
        assert_line(&text, &bucket("0.25", 2));
        assert_line(&text, &bucket("10", 2));
        assert_line(&text, &bucket("25", 3));
        assert_line(&text, &bucket("150", 3));
        assert_line(&text, &bucket("+Inf", 4));
        assert_line(
            &text,
            r#"discourse_relay_delivery_latency_seconds_count{chat="ops"} 4"#,
        );
        assert_line(
            &text,
            r#"discourse_relay_delivery_latency_seconds_sum{chat="ops"} 1021.2005"#,
        );
        let buckets = text
            .lines()
            .filter(|l| {
                l.starts_with("discourse_relay_delivery_latency_seconds_bucket{chat=\"ops\"")
            })
            .count();
        assert_eq!(buckets, LATENCY_BUCKETS.len() + 1);
    }

    #[test]
    fn reload_success_and_failure() {
        let m = Metrics::new();
        let text = m.encode();
        assert_line(
            &text,
            r#"discourse_relay_config_reloads_total{result="failure"} 0"#,
        );
        assert_line(&text, "discourse_relay_config_last_reload_successful 0");

        let hash = "0123456789abcdef".repeat(4);
        m.reload(true, &hash, 1_700_000_000.5);
        let text = m.encode();
        assert_line(&text, "discourse_relay_config_last_reload_successful 1");
        assert_line(
            &text,
            "discourse_relay_config_last_reload_success_timestamp_seconds 1700000000.5",
        );
        assert_line(
            &text,
            &format!("discourse_relay_config_hash {}", 0x0123_4567_89ab_i64),
        );
        assert_line(
            &text,
            r#"discourse_relay_config_reloads_total{result="success"} 1"#,
        );

        m.reload(false, "ffffffffffffffff", 1_800_000_000.0);
        let text = m.encode();
        assert_line(&text, "discourse_relay_config_last_reload_successful 0");
        assert_line(
            &text,
            "discourse_relay_config_last_reload_success_timestamp_seconds 1700000000.5",
        );
        assert_line(
            &text,
            &format!("discourse_relay_config_hash {}", 0x0123_4567_89ab_i64),
        );
        assert_line(
            &text,
            r#"discourse_relay_config_reloads_total{result="failure"} 1"#,
        );
        assert_eq!(hash_gauge_value("abc"), 0);
        assert_eq!(hash_gauge_value("zzzzzzzzzzzzzzzz"), 0);
        assert_eq!(hash_gauge_value("ffffffffffff00"), 0xffff_ffff_ffff);
    }

    #[test]
    fn forget_chat_drops_its_series() {
        let m = Metrics::new();
        m.register_chat("old", "hook");
        m.delivery("old", "other-hook", DeliveryResult::Sent);
        m.delivery_latency("old", 1.0);
        m.set_queue_depth("old", 3);
        m.register_chat("kept", "hook");
        m.forget_chat("old");
        let text = m.encode();
        assert!(!text.contains(r#"chat="old""#), "{text}");
        assert_line(&text, r#"discourse_relay_queue_depth{chat="kept"} 0"#);
        assert_line(
            &text,
            r#"discourse_relay_deliveries_total{chat="kept",provider="hook",result="sent"} 0"#,
        );
    }

    #[test]
    fn connection_series_per_listener() {
        let m = Metrics::new();
        let text = m.encode();
        for listener in LISTENERS {
            assert_line(
                &text,
                &format!(r#"discourse_relay_connections_open{{listener="{listener}"}} 0"#),
            );
            assert_line(
                &text,
                &format!(r#"discourse_relay_connections_refused_total{{listener="{listener}"}} 0"#),
            );
        }
        m.connection_opened("public");
        m.connection_opened("public");
        m.connection_opened("admin");
        m.connection_closed("public");
        m.connection_refused("public");
        let text = m.encode();
        assert_line(
            &text,
            r#"discourse_relay_connections_open{listener="public"} 1"#,
        );
        assert_line(
            &text,
            r#"discourse_relay_connections_open{listener="admin"} 1"#,
        );
        assert_line(
            &text,
            r#"discourse_relay_connections_refused_total{listener="public"} 1"#,
        );
        assert_line(
            &text,
            r#"discourse_relay_connections_refused_total{listener="admin"} 0"#,
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        m.retry("a\"b\\c\nd");
        assert_line(
            &m.encode(),
            r#"discourse_relay_retries_total{chat="a\"b\\c\nd"} 1"#,
        );
    }
}
