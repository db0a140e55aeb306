//! The `subscriptions.toml` model as written: serde types with source spans.
//!
//! These types only describe the file, plus the few values every stage
//! shares once read (a [`Forum`], a [`Rate`]). Meaning (globs, templates,
//! secrets, provider settings) is checked and compiled by
//! `pipeline::load` and the stages it calls. Provider-specific settings and
//! chat target fields are not here: each provider file owns its own.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::{Deref, Range};
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::Deserialize;
use serde_spanned::Spanned;

use super::env::Secret;

/// A value of the file with its place in it: a [`Spanned`] whose JSON
/// Schema is its value's, so a field of this type needs no
/// `#[schemars(with = …)]`. Read through [`Deref`] (`span()`, `get_ref()`);
/// it serializes as its value, which is how schemars writes the `default`
/// of a `#[serde(default)]` field.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, serde::Serialize)]
// Transparent: serde_spanned recognises itself by the struct name it asks the
// deserializer for, and the wrapper forwards that request untouched.
#[serde(transparent)]
pub struct Located<T>(pub Spanned<T>);

// Inherent as well as through `Deref`, so they can be named as paths
// (`.map(Located::span)`).
impl<T> Located<T> {
    pub fn span(&self) -> Range<usize> {
        self.0.span()
    }

    pub fn into_inner(self) -> T {
        self.0.into_inner()
    }
}

impl<T> Deref for Located<T> {
    type Target = Spanned<T>;

    fn deref(&self) -> &Spanned<T> {
        &self.0
    }
}

impl<T> From<Located<T>> for Spanned<T> {
    fn from(v: Located<T>) -> Self {
        v.0
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Located<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<T: JsonSchema> JsonSchema for Located<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }

    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }

    fn schema_id() -> Cow<'static, str> {
        T::schema_id()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

/// The `[discourse]` table: the forum this relay listens to. `[forums.NAME]`
/// tables have the same keys, for more forums pointing at one relay.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct Discourse {
    /// Base URL of the forum, e.g. `https://forum.example.org`; prefixes links.
    pub url: Located<String>,
    /// Secret of the Discourse webhook, as `${VAR}`. Without it, signatures are not checked.
    pub webhook_secret: Option<Located<String>>,
    /// Discourse API key, as `${VAR}`; lets the relay fetch categories, tags and PM groups.
    pub api_key: Option<Located<String>>,
    /// User the API key acts as (default `system`).
    pub api_username: Option<Located<String>>,
    /// How long to hold a post before notifying (edits and deletes in the window count), e.g. `20s`.
    pub delay: Option<Located<String>>,
    /// Static map of category id to slug path, for offline use and forums without an API key.
    #[serde(default)]
    pub categories: BTreeMap<String, Located<CategoryEntry>>,
    /// Staff-only tags, as globs over tag names or slugs (e.g. `["staff-*"]`): never shown in a message, and matched only by rules naming the tag exactly.
    #[serde(default)]
    pub hidden_tags: Vec<Located<String>>,
    /// The forum's name in card footers; default: from the API (`/site/basic-info.json`), else the forum's host.
    pub title: Option<Located<String>>,
    /// The forum's logo in card footers (an https URL); default: from the API.
    pub logo_url: Option<Located<String>>,
}

/// The `[server]` table: where `serve` listens and how it delivers.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
pub struct Server {
    /// Public listener for Discourse webhooks (default `127.0.0.1:8080`).
    pub listen: Option<Located<String>>,
    /// Admin listener: status page, metrics, reload, test (default `127.0.0.1:9090`).
    pub admin_listen: Option<Located<String>>,
    /// Bearer token required on the admin listener, as `${VAR}`; unset = no token.
    pub admin_token: Option<Located<String>>,
    /// Largest accepted webhook body in bytes (default 1048576).
    pub body_limit: Option<u64>,
    /// Give up on a delivery this long after it was queued (default `24h`); it goes to dead letters.
    pub max_age: Option<Located<String>>,
    /// How long the relay remembers which chat message each post became, for threads, edits and deletes (default `30d`).
    pub remember: Option<Located<String>>,
    /// Dead letters older than this are deleted (default `30d`).
    pub dead_letter_max_age: Option<Located<String>>,
    /// A chat keeps at most this many dead letters, its newest (default 10000; 0 keeps none).
    pub dead_letter_max_count: Option<u64>,
    /// Where people edit this file in its repository (e.g. `https://github.com/org/relay-config/edit/main/subscriptions.toml`); chat command replies link to it.
    pub config_edit_url: Option<Located<String>>,
    /// A client must send a request's complete headers within this (default `30s`); slower ones are disconnected.
    pub header_timeout: Option<Located<String>>,
    /// A client must send a request's complete body within this after its headers (default `30s`); slower ones get 408.
    pub body_timeout: Option<Located<String>>,
    /// Longest wait a chat platform's retry hint (`Retry-After`, `retry_after`...) may impose before the next attempt (default `1h`); longer hints are cut to this.
    pub max_retry_delay: Option<Located<String>>,
    /// Most connections each listener (public, admin) serves at once (default 1024); more are answered 503 at once.
    pub max_connections: Option<u64>,
    /// A chat of this file that hears when another chat fails: a delivery given up on (dead letter) or a crashed worker, one message per failing chat per `alert_every`. Default: none.
    pub alerts: Option<Located<String>>,
    /// Least time between two alerts about the same chat (default `15m`).
    pub alert_every: Option<Located<String>>,
    /// The durable queue: unset = a redb file in `serve --data-dir` (default); a PostgreSQL URL `postgres://user:password@host:port/database` as `${VAR}` (it holds a password) = a store that several relays can share. Read at start; `serve --store` overrides it.
    pub store: Option<Located<String>>,
}

/// Chat command settings a `[providers.NAME]` table of the matching kind may
/// carry beside its own. Not a table of the file: the loader takes these keys
/// out of the provider table before the provider reads the rest.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
pub struct CommandSettings {
    /// slack: the app's signing secret, as `${VAR}`; enables `POST /commands/slack` (slash commands, signed `v0` HMAC).
    pub signing_secret: Option<Located<String>>,
    /// mattermost: the slash command's token, as `${VAR}`; enables `POST /commands/mattermost`.
    pub command_token: Option<Located<String>>,
    /// telegram: the `secret_token` given to `setWebhook` (1-256 of `A-Z a-z 0-9 _ -`), as `${VAR}`; enables `POST /commands/telegram`.
    pub webhook_secret_token: Option<Located<String>>,
    /// discord: the application's public key (64 hex digits, not a secret); enables `POST /commands/discord` (interactions, Ed25519).
    pub public_key: Option<Located<String>>,
}

/// A category in the static map: a slug path, or a table with more detail.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(
    untagged,
    expecting = "a slug path like \"support/rust\" or a table { path, restricted, name }"
)]
pub enum CategoryEntry {
    Path(String),
    Full(CategoryDetail),
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CategoryDetail {
    /// Slug path, parent first: `support/rust`.
    pub path: String,
    /// Read-restricted: only rules naming this exact category receive its posts.
    #[serde(default)]
    pub restricted: bool,
    /// Display name; defaults to the last slug.
    pub name: Option<String>,
    /// The category's colour on cards, as hex (`"0088CC"` or `"#08c"`); with an API key, `/site.json` gives it.
    pub color: Option<String>,
}

/// The `[templates]` table: name = Handlebars text.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Templates(pub BTreeMap<String, Located<String>>);

/// One `[[chat]]`: a destination and what it subscribes to. Provider-specific
/// target fields (`channel`, `url`, ...) sit beside these and belong to the provider.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct Chat {
    /// Unique name, used in logs, metrics, the status page and commands.
    pub name: Located<String>,
    /// A `[providers.NAME]` instance, or a provider kind that needs no settings.
    pub provider: Located<String>,
    /// A `[templates]` name; default: the provider's own message.
    pub template: Option<Located<String>>,
    /// `card`: the platform's richest message (Slack blocks, a Discord embed, an Adaptive Card...) with the rendered text as its fallback; `text`: the text alone. Default: `card` where the platform has one and the chat names no `template`.
    pub style: Option<Located<Style>>,
    /// A `[templates]` name whose text is the platform's card as JSON (Handlebars; every value is escaped for JSON and the platform's markup), instead of the default card. Checked at load against the platform's limits.
    pub card: Option<Located<String>>,
    /// Compact subscriptions, one `watch` rule each: `c/<category glob>`, `t/<tag glob>` or `all` for posts; an event family's name with its filters for the others (`review c/staff`, `users group:staff`, `chat channel:general`).
    #[serde(default)]
    pub subscribe: Vec<Located<String>>,
    /// Full rules.
    #[serde(default)]
    pub rule: Vec<Rule>,
    /// The forum whose events this chat receives: a `[forums.NAME]`; default `[discourse]`.
    pub forum: Option<Located<String>>,
    /// Most messages sent to this chat, e.g. `"1/s"`, `"20/m"`; default: the provider's.
    pub rate_limit: Option<Located<String>>,
    /// When a forum post is edited: `update` the chat message (default where the platform can edit) or `ignore`.
    pub on_edit: Option<Located<OnEdit>>,
    /// When a forum post is deleted: `delete` the chat message (default where the platform can), `strike` it through, or `ignore`.
    pub on_delete: Option<Located<OnDelete>>,
    /// Platform channel ids whose chat commands speak for this chat, beside the one its target names (a Discord or incoming-webhook target names none).
    #[serde(default)]
    pub command_channels: Vec<Located<String>>,
}

/// How a chat's messages look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Style {
    Card,
    Text,
}

/// What an edited forum post does to the chat messages it became.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnEdit {
    Update,
    Ignore,
}

/// What a deleted forum post does to the chat messages it became.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnDelete {
    Delete,
    Strike,
    Ignore,
}

/// One `[[chat.rule]]`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct Rule {
    /// `watch` (every post, default), `follow` (new topics only), `mute`, or `thread`.
    pub filter: Option<Located<Filter>>,
    /// Glob over the category slug path (`support/**`); absent = any category.
    pub category: Option<Located<String>>,
    /// Globs over tag names; the rule matches when any topic tag matches any of them.
    #[serde(default)]
    pub tags: Vec<Located<String>>,
    /// `normal` (default), `group_message` (PMs to `group`) or `group_mention` (posts mentioning `@group`).
    #[serde(rename = "type")]
    pub kind: Option<Located<RuleType>>,
    /// The group for `group_message` and `group_mention` rules; for the `users` and `assign` families, the group the event is about.
    pub group: Option<Located<String>>,
    /// The events this rule is for: `posts` (default) or an event family (`review`, `users`, `solved`, `topics`, `likes`, `assign`, `chat`).
    pub family: Option<Located<String>>,
    /// Glob over the Discourse chat channel's slug (or id): for `family = "chat"` rules.
    pub channel: Option<Located<String>>,
}

/// What a matching rule does. Precedence: mute > thread > watch > follow.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Deserialize,
    serde::Serialize,
    JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    Mute,
    Thread,
    Watch,
    Follow,
}

impl Filter {
    pub fn as_str(self) -> &'static str {
        match self {
            Filter::Mute => "mute",
            Filter::Thread => "thread",
            Filter::Watch => "watch",
            Filter::Follow => "follow",
        }
    }
}

/// Which events a rule looks at. Precedence: group_message > group_mention > normal.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Deserialize,
    serde::Serialize,
    JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RuleType {
    GroupMessage,
    GroupMention,
    Normal,
}

impl RuleType {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleType::GroupMessage => "group_message",
            RuleType::GroupMention => "group_mention",
            RuleType::Normal => "normal",
        }
    }
}

/// A category from the static map in the config.
#[derive(Debug, Clone)]
pub struct StaticCategory {
    pub id: u64,
    pub path: String,
    pub name: Option<String>,
    pub restricted: bool,
    /// Six hex digits (`0088CC`).
    pub color: Option<String>,
}

#[derive(Debug)]
pub struct Forum {
    /// `discourse` for the `[discourse]` table, NAME for `[forums.NAME]`.
    pub name: String,
    pub url: String,
    pub webhook_secret: Option<Secret>,
    pub api_key: Option<Secret>,
    pub api_username: String,
    pub delay: Duration,
    pub categories: Vec<StaticCategory>,
    /// `hidden_tags`, compiled (lower-case); `None` when the file names none.
    pub hidden_tags: Option<std::sync::Arc<globset::GlobSet>>,
    /// `title` and `logo_url` as the file gives them (`None`: ask the API).
    pub title: Option<String>,
    pub logo_url: Option<String>,
}

/// The forum of `forums` whose base URL is `url` (as `X-Discourse-Instance`
/// sends it).
pub fn forum_index(forums: &[Forum], url: &str) -> Option<usize> {
    let url = url.trim_end_matches('/');
    forums.iter().position(|f| f.url == url)
}

/// At most `count` messages per `per`, with bursts up to `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

impl Rate {
    /// `"1/s"`, `"20/m"`, `"100/h"`.
    pub fn parse(s: &str) -> Option<Self> {
        let (n, unit) = s.trim().split_once('/')?;
        let count: u32 = n.trim().parse().ok().filter(|c| *c > 0)?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return None,
        };
        Some(Self { count, per })
    }
}
