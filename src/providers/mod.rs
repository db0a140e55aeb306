//! Providers: one file per chat platform behind one trait.
//!
//! A provider reads its own `[providers.NAME]` settings and a chat's target
//! fields (through [`crate::config::de::Ctx`], so every problem is located),
//! then becomes a [`Destination`] bound to one chat. A destination is pure:
//! it builds the exact request for a rendered message and classifies the
//! platform's answer. Sending, retrying and rate limiting belong to delivery,
//! so `explain` shows precisely what would be sent without sending it.
//!
//! Adding a platform: one file with a [`Registration`], one line in
//! [`registry::PROVIDERS`].

pub(crate) mod adaptive;
#[cfg(test)]
pub(crate) mod card_tests;
pub mod console;
pub mod dingtalk;
pub mod discord;
pub mod gitter;
pub mod googlechat;
pub mod gotify;
pub mod groupme;
pub mod hipchat;
pub mod http;
pub(crate) mod inert;
pub mod irc;
pub mod kit;
pub mod lark;
pub mod mastodon;
pub mod matrix;
pub mod mattermost;
pub mod messenger;
pub mod ntfy;
pub(crate) mod persistent;
pub mod probe;
pub mod pushover;
pub mod registry;
pub mod rocketchat;
pub mod slack;
pub mod smtp;
pub mod teams;
pub mod telegram;
#[cfg(test)]
pub(crate) mod testkit;
pub mod webex;
pub mod webhook;
pub mod wecom;
pub mod xmpp;
pub mod zulip;

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use schemars::{Schema, SchemaGenerator};
use serde::Serialize;
use toml_edit::Item;

use crate::config::Rate;
use crate::config::de::Ctx;
use crate::config::env::Redactor;
use crate::render::Dialect;
use crate::render::card::Card;

pub use http::{HttpRequest, HttpResponse};

/// What a destination can do beyond posting a message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// Replies can go into the first post's thread (needs a message id back).
    pub thread: bool,
    pub edit: bool,
    pub delete: bool,
}

impl Capabilities {
    /// Threads, edits and deletes: the platform answers with the message's id.
    pub const ALL: Self = Self {
        thread: true,
        edit: true,
        delete: true,
    };
}

/// A rendered message for one chat.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub chat: &'a str,
    /// The rendered template, in the destination's dialect.
    pub text: &'a str,
    /// The template context, for providers that send structured fields
    /// (`topic.id`, `topic.title`... name threads on some platforms).
    pub context: &'a serde_json::Value,
    /// What to do in the chat. Delivery only asks for what
    /// [`Destination::capabilities`] allows: a destination without `edit`
    /// never sees [`Action::Edit`].
    pub action: Action<'a>,
    /// The event as a card, when the chat's style is `card` (only for a
    /// destination that [`Destination::cards`]): its parts are plain text,
    /// escaped by the provider for each field (see [`crate::render::card`]).
    /// `None`: send [`Message::text`] alone.
    pub card: Option<&'a Card>,
    /// The chat's own card: its `card` template rendered (the platform's
    /// JSON, every value already escaped), used instead of the default card
    /// built from [`Message::card`], which is then set too.
    pub custom: Option<&'a serde_json::Value>,
    /// This delivery's id (`chat#seq@created_ms`): the same across its retries,
    /// distinct from every other delivery, for platforms that take an
    /// idempotency key (Matrix transaction ids). `None` outside delivery
    /// (`explain`, previews).
    pub delivery: Option<&'a str>,
}

/// What a delivery does in the chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// A new message; `thread` is set when the deciding rule is `thread`.
    Post { thread: Option<Thread<'a>> },
    /// Replace the text of the message [`Outcome::Sent`] named `remote_id`.
    Edit { remote_id: &'a str },
    /// Remove the message named `remote_id`.
    Delete { remote_id: &'a str },
}

impl Default for Action<'_> {
    fn default() -> Self {
        Action::Post { thread: None }
    }
}

/// A message that belongs in its forum topic's thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thread<'a> {
    /// The id of the message that opened the topic's thread in this chat
    /// (its `remote_id`); `None` when this message opens it. Platforms that
    /// key threads by name (Zulip topics, Google Chat thread keys) use the
    /// topic from the context instead.
    pub root: Option<&'a str>,
}

/// What would leave the relay for one delivery.
#[derive(Debug, Clone)]
pub enum Outbound {
    Http(HttpRequest),
    /// The console provider: a line on standard output.
    Stdout(String),
    /// A platform spoken over its own protocol (IRC, SMTP...): the provider
    /// owns the connection and sends the message itself.
    Native(NativeMessage),
}

/// A message for a provider that speaks its own protocol.
#[derive(Clone)]
pub struct NativeMessage {
    /// What `explain` shows, shaped like an HTTP request:
    /// `{"method": "PRIVMSG", "url": "irc://host:6667/#chan", "headers": {}, "body": "..."}`.
    /// Secrets in it are redacted by the caller's redactor.
    pub shown: serde_json::Value,
    /// The provider-specific payload, handed back to `sender`.
    pub payload: serde_json::Value,
    pub sender: Arc<dyn NativeSender>,
}

impl fmt::Debug for NativeMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NativeMessage")
            .field("shown", &self.shown)
            .finish()
    }
}

/// Sends native messages; one per provider instance (it may hold a
/// persistent connection, reconnecting as needed). Outcomes follow the same
/// rules as HTTP ones: reasons never contain secrets.
pub trait NativeSender: Send + Sync {
    fn send<'a>(
        &'a self,
        payload: &'a serde_json::Value,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Outcome> + Send + 'a>>;
}

impl Outbound {
    /// The request as `{"method","url","headers","body"}` with every secret
    /// redacted, or `null` when nothing goes over the network.
    pub fn redacted_json(&self, redactor: &Redactor) -> serde_json::Value {
        match self {
            Outbound::Http(r) => r.redacted_json(redactor),
            Outbound::Stdout(_) => serde_json::Value::Null,
            Outbound::Native(n) => match serde_json::to_string(&n.shown) {
                Ok(text) => serde_json::from_str(&redactor.redact(&text)).unwrap_or_default(),
                Err(_) => serde_json::Value::Null,
            },
        }
    }
}

/// A platform's answer, classified. Reasons are safe to show (no secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered; `remote_id` identifies the chat message where the platform says.
    Sent { remote_id: Option<String> },
    /// Worth trying again, after `after` when the platform said so.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Will never work as configured (bad token, unknown channel, other 4xx).
    Permanent { reason: String },
}

/// The longest reason an [`Outcome`] keeps, in bytes (logs, the status
/// pane and dead letters show it).
pub const MAX_REASON: usize = 1024;

/// The longest remote id an [`Outcome`] keeps, in bytes: ids are stored
/// with each message ref and put into later requests' URLs.
pub const MAX_REMOTE_ID: usize = 256;

impl Outcome {
    /// The outcome as delivery keeps it, whatever the platform answered:
    /// reasons one line of at most [`MAX_REASON`] bytes, a remote id that
    /// is not short text dropped (the message was sent; it just cannot be
    /// threaded or edited), a wait of at most [`http::MAX_RETRY_AFTER`].
    /// Apply it after redaction, so a cut cannot leave part of a secret.
    pub fn tidy(self) -> Self {
        match self {
            Outcome::Sent { remote_id } => Outcome::Sent {
                remote_id: remote_id.filter(|id| {
                    !id.is_empty() && id.len() <= MAX_REMOTE_ID && !id.contains(char::is_control)
                }),
            },
            Outcome::Retry { reason, after } => Outcome::Retry {
                reason: one_line(reason),
                after: after.map(|a| a.min(http::MAX_RETRY_AFTER)),
            },
            Outcome::Permanent { reason } => Outcome::Permanent {
                reason: one_line(reason),
            },
        }
    }
}

/// `reason` without control characters, cut to [`MAX_REASON`] bytes.
fn one_line(reason: String) -> String {
    let fits = reason.len() <= MAX_REASON;
    if fits && !reason.contains(char::is_control) && !reason.is_empty() {
        return reason;
    }
    let mut out = String::with_capacity(reason.len().min(MAX_REASON));
    for c in reason.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > MAX_REASON - '…'.len_utf8() {
            out.push('…');
            break;
        }
        out.push(c);
    }
    if out.trim().is_empty() {
        out = "no reason given".into();
    }
    out
}

/// One chat's destination on one platform.
pub trait Destination: Send + Sync + fmt::Debug {
    fn kind(&self) -> &'static str;
    fn dialect(&self) -> Dialect;
    fn capabilities(&self) -> Capabilities;
    /// Where messages go, for people (status page, explain): never a secret.
    fn target(&self) -> String;
    /// The message used when the chat names no template; `None` = the
    /// renderer's default for the dialect.
    fn default_template(&self) -> Option<&'static str> {
        None
    }
    /// Whether it has a card format ([`Message::card`]): chats default to
    /// `style = "card"` then.
    fn cards(&self) -> bool {
        false
    }
    /// Whether a message sent as a card can be edited (Webex refuses to
    /// edit a message with an attachment): a card chat of a destination
    /// that cannot gets no edits or strike-throughs.
    fn card_edits(&self) -> bool {
        true
    }
    /// Checks a chat's own card (its `card` template rendered for the
    /// sample events) against the platform's limits and shape at load:
    /// `Err` says what is wrong and where (a JSON pointer).
    fn check_card(&self, card: &serde_json::Value) -> Result<(), String> {
        let _ = card;
        Ok(())
    }
    /// The platform's sending limit for one chat, used when the chat sets
    /// no `rate_limit`; `None` = unlimited.
    fn default_rate(&self) -> Option<Rate> {
        None
    }
    /// The exact request for `msg`. Pure: no I/O.
    fn request(&self, msg: &Message<'_>) -> Outbound;
    /// Whether [`Destination::request`] reads [`Message::context`]. One that
    /// never does gets `null` there and spares building it for each
    /// delivery (`pipeline::tests` checks the requests are the same).
    fn reads_context(&self) -> bool {
        true
    }
    /// Classifies the platform's answer to a request built by [`Destination::request`].
    fn classify(&self, resp: &HttpResponse) -> Outcome {
        http::classify_status(resp)
    }

    /// The platform's own ids of this chat (channel id or name, chat id),
    /// which chat commands from the platform are matched against. Empty
    /// when the target names none (an incoming webhook URL).
    fn chat_ids(&self) -> Vec<String> {
        vec![]
    }

    /// The read-only checks `doctor` runs for this chat. Pure: no I/O; by
    /// default none ([`probe::NO_CHECK`]), which never fails a check.
    fn probe(&self) -> probe::Probe {
        probe::Probe::none()
    }
}

/// A chat bound to its platform, or `None` when a problem was reported.
pub type Bound = Option<Box<dyn Destination>>;

/// Where in the file a problem is reported (`None`: nowhere in particular).
pub type Span = Option<Range<usize>>;

/// A configured provider instance (`[providers.NAME]`), ready to bind chats.
pub trait Instance: Send + Sync + fmt::Debug {
    /// Reads a chat's target fields (`target` holds only those) and binds a
    /// destination. `chat` locates the chat for "missing field" problems.
    fn bind(self: Arc<Self>, target: &Item, chat: Span, cx: &mut Ctx<'_>) -> Bound;
}

/// How the registry knows a provider: its kind name, how to read its
/// settings, and the schemas of its settings and chat target fields.
pub struct Registration {
    pub kind: &'static str,
    /// One line for docs and `schema` descriptions.
    pub about: &'static str,
    /// Reads `[providers.NAME]` (without `kind`) into an instance.
    pub parse: fn(&Item, &mut Ctx<'_>) -> Option<Arc<dyn Instance>>,
    pub settings_schema: fn(&mut SchemaGenerator) -> Schema,
    pub target_schema: fn(&mut SchemaGenerator) -> Schema,
}

/// `settings_schema`/`target_schema` for a type: `schema_of::<MyTarget>`.
pub fn schema_of<T: schemars::JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tidy_bounds_what_an_answer_can_put_in_an_outcome() {
        let long = format!("é{}", "x\n\u{1b}[31m".repeat(1000));
        let Outcome::Permanent { reason } = (Outcome::Permanent { reason: long }).tidy() else {
            panic!()
        };
        assert!(reason.len() <= MAX_REASON, "{}", reason.len());
        assert!(reason.starts_with("éx  [31mx"), "{reason}");
        assert!(reason.ends_with('…'));
        assert!(!reason.contains(char::is_control));
        let short = Outcome::Retry {
            reason: "HTTP 503: busy".into(),
            after: Some(Duration::from_secs(u64::MAX)),
        };
        assert_eq!(
            short.tidy(),
            Outcome::Retry {
                reason: "HTTP 503: busy".into(),
                after: Some(http::MAX_RETRY_AFTER)
            }
        );
        let empty = Outcome::Permanent {
            reason: " \n".into(),
        };
        assert_eq!(
            empty.tidy(),
            Outcome::Permanent {
                reason: "no reason given".into()
            }
        );
        for bad in ["", "a\nb", &"1".repeat(MAX_REMOTE_ID + 1)] {
            let sent = Outcome::Sent {
                remote_id: Some(bad.to_string()),
            };
            assert_eq!(sent.tidy(), Outcome::Sent { remote_id: None });
        }
        let id = Outcome::Sent {
            remote_id: Some("C0123/1700000000.000100".into()),
        };
        assert_eq!(id.clone().tidy(), id);
    }
}
