//! Reading one `subscriptions.toml` into a [`Config`]: syntax, sections,
//! provider settings (each provider reads its own through the registry),
//! chats and their rules, secrets. Reports every problem; touches no network
//! and no disk beyond the text it is given. It lives with the pipeline, not
//! in `config`, because it calls the stages (providers, rules) that `config`
//! must stay below.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use serde_spanned::Spanned;
use sha2::{Digest, Sha256};
use toml_edit::{Item, Value};

use crate::config::de::{Ctx, MissingEnv, key_span, known_keys};
use crate::config::diag::{Problem, SourceMap, did_you_mean};
use crate::config::env::{Env, Redactor, Secret};
use crate::config::model::{
    self, CategoryEntry, Filter, Forum, Located, OnDelete, OnEdit, Rate, RuleType, StaticCategory,
    Style, forum_index,
};
use crate::ingest::families;
use crate::providers::{Destination, Instance, registry};
use crate::rules::RuleDef;

/// Top-level tables of the file.
pub(crate) const SECTIONS: &[&str] = &[
    "discourse",
    "forums",
    "server",
    "providers",
    "templates",
    "chat",
];

const DEFAULT_DELAY: Duration = Duration::from_secs(20);

/// A validated config: everything later stages need, secrets resolved.
#[derive(Debug)]
pub struct Config {
    /// SHA-256 of the file's bytes, hex: identifies what is serving.
    pub hash: String,
    /// Every forum: `[discourse]` first, then `[forums.NAME]` in name order.
    pub forums: Vec<Forum>,
    pub server: ServerConfig,
    pub templates: BTreeMap<String, TemplateSource>,
    pub chats: Vec<ChatConfig>,
    /// Chat command credentials, one per provider instance that sets one.
    pub commands: Vec<CommandAuth>,
    /// Replaces every secret value in printed text.
    pub redactor: Redactor,
}

/// The keys of chat command settings and the provider kind each belongs to.
pub const COMMAND_KEYS: &[(&str, &str)] = &[
    ("signing_secret", "slack"),
    ("command_token", "mattermost"),
    ("webhook_secret_token", "telegram"),
    ("public_key", "discord"),
];

/// What verifies chat commands from one provider instance.
#[derive(Debug, Clone)]
pub struct CommandAuth {
    /// The `[providers.NAME]` name; chats naming it answer its commands.
    pub instance: String,
    /// The provider kind (`slack`, `mattermost`, `telegram`, `discord`).
    pub kind: &'static str,
    /// Slack signing secret, Mattermost token, Telegram secret token, or
    /// the Discord public key (hex, validated at load).
    pub secret: Secret,
}

/// `[server]`, with defaults applied.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub admin_token: Option<Secret>,
    pub body_limit: usize,
    pub max_age: Duration,
    /// How long message refs and post records are kept.
    pub remember: Duration,
    /// Dead letters older than this are pruned.
    pub dead_letter_max_age: Duration,
    /// A chat keeps at most this many dead letters (its newest).
    pub dead_letter_max_count: u64,
    /// Link to edit the config in its repository, shown in command replies.
    pub config_edit_url: Option<String>,
    /// Slow clients (slow-loris) are dropped after these; see `http::server`.
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    /// Connections each listener serves at once; more get a 503.
    pub max_connections: usize,
    /// A platform's retry hint is cut to this.
    pub max_retry_delay: Duration,
    /// The chat that hears about failing chats (`[server] alerts`).
    pub alerts: Option<String>,
    /// Least time between two alerts about one chat.
    pub alert_every: Duration,
    /// `[server] store`: a PostgreSQL URL; `None` = the redb file.
    pub store: Option<Secret>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            admin_token: None,
            body_limit: 1024 * 1024,
            max_age: Duration::from_secs(24 * 3600),
            remember: Duration::from_secs(30 * 24 * 3600),
            dead_letter_max_age: Duration::from_secs(30 * 24 * 3600),
            dead_letter_max_count: 10_000,
            config_edit_url: None,
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_retry_delay: Duration::from_secs(3600),
            alerts: None,
            alert_every: Duration::from_secs(15 * 60),
            store: None,
        }
    }
}

/// A `[templates]` entry and where its text starts in the file, so template
/// errors can be placed at file:line:col.
#[derive(Debug, Clone)]
pub struct TemplateSource {
    pub text: String,
    pub span: Range<usize>,
    content_start: usize,
}

impl TemplateSource {
    /// The file span of a 1-based (line, col) inside the template text.
    pub fn locate(&self, line: Option<usize>, col: Option<usize>) -> Range<usize> {
        let (Some(line), Some(col)) = (line, col) else {
            return self.span.clone();
        };
        let mut offset = self.content_start;
        for l in self.text.split('\n').take(line.saturating_sub(1)) {
            offset += l.len() + 1;
        }
        let this_line = self
            .text
            .split('\n')
            .nth(line.saturating_sub(1))
            .unwrap_or("");
        offset += this_line
            .chars()
            .take(col.saturating_sub(1))
            .map(char::len_utf8)
            .sum::<usize>();
        offset..offset + 1
    }
}

#[derive(Debug)]
pub struct ChatConfig {
    pub name: String,
    /// The `provider` as written: an instance name or a kind.
    pub provider: String,
    pub destination: Box<dyn Destination>,
    pub template: Option<Spanned<String>>,
    /// `card` only where the destination has a card format.
    pub style: Style,
    /// The chat's own card template (a `[templates]` name), for `style = card`.
    pub card: Option<Spanned<String>>,
    pub rules: Vec<RuleDef>,
    /// Index into [`Config::forums`] of the forum whose events it receives.
    pub forum: usize,
    /// `rate_limit`, if the chat sets one (else the provider's default).
    pub rate_limit: Option<Rate>,
    /// What edits and deletes of forum posts do here; `ignore` where the
    /// destination cannot.
    pub on_edit: OnEdit,
    pub on_delete: OnDelete,
    /// Span of the chat's `name` value.
    pub span: Range<usize>,
    /// 1-based line where the chat is written (its `[[chat]]` header).
    pub line: usize,
    /// `command_channels`: more platform ids whose commands speak for it.
    pub command_channels: Vec<String>,
    /// Where each rule (same index as `rules`) is written.
    pub rule_sources: Vec<RuleSource>,
}

/// A rule as written in the file, for people (chat command `status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSource {
    /// 1-based line of the rule's first line.
    pub line: usize,
    /// The `subscribe` entry (`"c/support"`) or the `[[chat.rule]]` table's lines.
    pub text: String,
}

/// Parses and validates `source`. The config is `None` only when nothing
/// usable was read; callers must check the problems for errors.
pub fn parse(
    source: &SourceMap,
    env: &dyn Env,
    missing: MissingEnv,
) -> (Option<Config>, Vec<Problem>) {
    let doc = match toml_edit::Document::parse(source.text().to_string()) {
        Ok(d) => d,
        Err(e) => {
            let msg = e.message().trim().to_string();
            return (
                None,
                vec![Problem::error(e.span(), format!("invalid TOML: {msg}"))],
            );
        }
    };
    let mut cx = Ctx::new(env, missing);
    let root = doc.as_item();

    for (key, _) in doc.as_table().iter() {
        if !SECTIONS.contains(&key) {
            let span = key_span(root, key);
            cx.error(
                span,
                format!(
                    "unknown table `{key}`{}",
                    did_you_mean(key, SECTIONS.iter().copied())
                ),
            );
        }
    }

    // The root is taken apart rather than borrowed: the chats (nearly all of
    // a large file) are deserialized from owned items, with no copy.
    let mut doc = doc.into_table();
    let chat = doc.remove("chat");
    let forums = read_forums(&doc, &mut cx);
    let (server, alerts_span) = read_server(&doc, &mut cx);
    let templates = read_templates(&doc, source.text(), &mut cx);
    let (instances, commands) = read_providers(&doc, &mut cx);
    let chats = read_chats(
        chat,
        source,
        &templates,
        &instances,
        forums.as_deref().unwrap_or(&[]),
        &mut cx,
    );

    if let Some(alerts) = &server.alerts
        && !chats.iter().any(|c| &c.name == alerts)
    {
        let names: Vec<&str> = chats.iter().map(|c| c.name.as_str()).collect();
        cx.error(
            alerts_span,
            format!(
                "`alerts` names no chat of this file: `{alerts}`{}",
                did_you_mean(alerts, names.iter().copied())
            ),
        );
    }
    let hash = hex::encode(Sha256::digest(source.text().as_bytes()));
    let (problems, redactor) = cx.finish();
    // Even with errors, hand on what was read so later checks (globs,
    // templates) still run and `validate` reports every problem at once.
    let config = forums.map(|forums| Config {
        hash,
        forums,
        server,
        templates,
        chats,
        commands,
        redactor,
    });
    (config, problems)
}

impl Config {
    /// The `[discourse]` forum.
    pub fn forum(&self) -> &Forum {
        // `parse` only builds a Config with at least the [discourse] forum.
        &self.forums[0]
    }

    /// The forum whose base URL is `url` (as `X-Discourse-Instance` sends it).
    pub fn forum_index(&self, url: &str) -> Option<usize> {
        forum_index(&self.forums, url)
    }
}

/// `[discourse]` and every `[forums.NAME]`; `None` without a usable `[discourse]`.
fn read_forums(doc: &toml_edit::Table, cx: &mut Ctx<'_>) -> Option<Vec<Forum>> {
    let Some(item) = doc.get("discourse") else {
        cx.error(Some(0..0), "missing [discourse] table (at least `url`)");
        return None;
    };
    let mut forums = vec![read_forum("discourse", item, cx)?];
    if let Some(more) = doc.get("forums") {
        let Some(table) = more.as_table_like() else {
            cx.error(
                more.span(),
                "`forums` must be a table of [forums.NAME] tables",
            );
            return Some(forums);
        };
        for (name, item) in table.iter() {
            if let Some(f) = read_forum(name, item, cx) {
                if forums.iter().any(|o| o.url == f.url) {
                    let span = item.get("url").and_then(|u| u.span());
                    cx.error(
                        span,
                        format!("forum `{name}` has the same url as another forum"),
                    );
                    continue;
                }
                forums.push(f);
            }
        }
    }
    Some(forums)
}

fn read_forum(name: &str, item: &Item, cx: &mut Ctx<'_>) -> Option<Forum> {
    let d = cx.deserialize::<model::Discourse>(item)?;
    let url = cx
        .url("url", &d.url, false)?
        .expose()
        .trim_end_matches('/')
        .to_string();
    let webhook_secret = d
        .webhook_secret
        .as_ref()
        .and_then(|s| cx.secret("webhook_secret", s));
    let api_key = d.api_key.as_ref().and_then(|s| cx.secret("api_key", s));
    let api_username = d
        .api_username
        .as_ref()
        .and_then(|u| cx.string(u))
        .map(|u| u.expose().to_string())
        .unwrap_or_else(|| "system".into());
    let delay = match &d.delay {
        None => DEFAULT_DELAY,
        Some(v) => duration(cx, "delay", v, DEFAULT_DELAY),
    };
    let mut categories = Vec::new();
    let cat_table = item.get("categories");
    for (id, entry) in &d.categories {
        let Ok(num) = id.parse::<u64>() else {
            let span = cat_table.and_then(|t| key_span(t, id));
            cx.error(
                span,
                format!("category key `{id}` must be a numeric category id"),
            );
            continue;
        };
        let (path, name, restricted, color) = match entry.get_ref() {
            CategoryEntry::Path(p) => (p.clone(), None, false, None),
            CategoryEntry::Full(f) => (
                f.path.clone(),
                f.name.clone(),
                f.restricted,
                f.color.clone(),
            ),
        };
        let color = match color
            .as_deref()
            .map(|c| (c, crate::ingest::forum::hex_color(c)))
        {
            None => None,
            Some((_, Some(hex))) => Some(hex),
            Some((written, None)) => {
                cx.error(
                    Some(entry.span()),
                    format!(
                        "`color = \"{written}\"` is not a hex colour like \"0088CC\" or \"#08c\""
                    ),
                );
                None
            }
        };
        let valid = !path.is_empty()
            && path.split('/').all(|s| !s.is_empty())
            && !path.contains(['*', '?', '[', ']', '{', '}']);
        if !valid {
            cx.error(
                Some(entry.span()),
                format!("`{path}` is not a category slug path like \"support/rust\""),
            );
            continue;
        }
        categories.push(StaticCategory {
            id: num,
            path,
            name,
            restricted,
            color,
        });
    }
    let hidden_tags = hidden_tags(&d.hidden_tags, cx)?;
    let title = (d.title.as_ref()).map(|t| t.get_ref().trim().to_string());
    let logo_url = (d.logo_url.as_ref())
        .and_then(|u| cx.url("logo_url", u, false))
        .map(|u| u.expose().to_string());
    Some(Forum {
        name: name.to_string(),
        url,
        webhook_secret,
        api_key,
        api_username,
        delay,
        categories,
        hidden_tags,
        title,
        logo_url,
    })
}

/// `hidden_tags` compiled into one set (lower-case, as tags are matched);
/// `None` after reporting a bad glob.
fn hidden_tags(
    globs: &[Located<String>],
    cx: &mut Ctx<'_>,
) -> Option<Option<Arc<globset::GlobSet>>> {
    if globs.is_empty() {
        return Some(None);
    }
    let mut set = globset::GlobSetBuilder::new();
    for g in globs {
        match globset::Glob::new(&g.get_ref().trim().to_lowercase()) {
            Ok(glob) => {
                set.add(glob);
            }
            Err(e) => {
                cx.error(
                    Some(g.span()),
                    format!("invalid hidden_tags glob `{}`: {}", g.get_ref(), e.kind()),
                );
                return None;
            }
        }
    }
    match set.build() {
        Ok(set) => Some(Some(Arc::new(set))),
        Err(e) => {
            cx.error(
                globs.first().map(Located::span),
                format!("cannot compile hidden_tags: {e}"),
            );
            None
        }
    }
}

/// The longest duration any key accepts. Durations are added to instants
/// and turned into milliseconds (`u64`) downstream; a year keeps every such
/// sum far from overflow, and nothing the relay waits for needs longer.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// The duration `key = v`, or `default` after reporting why not (invalid,
/// or longer than [`MAX_DURATION`]).
fn duration(cx: &mut Ctx<'_>, key: &str, v: &Spanned<String>, default: Duration) -> Duration {
    match humantime::parse_duration(v.get_ref()) {
        Ok(d) if d > MAX_DURATION => {
            cx.error(
                Some(v.span()),
                format!(
                    "`{key}` = `{}` is longer than 365 days, the most any duration may be (write at most \"365d\")",
                    v.get_ref()
                ),
            );
            default
        }
        Ok(d) => d,
        Err(e) => {
            cx.error(
                Some(v.span()),
                format!(
                    "invalid duration `{}`: {e} (write e.g. \"20s\", \"1m\")",
                    v.get_ref()
                ),
            );
            default
        }
    }
}

/// `[server]` with defaults applied, and where `alerts` names its chat
/// (checked once the chats are read).
fn read_server(doc: &toml_edit::Table, cx: &mut Ctx<'_>) -> (ServerConfig, Option<Range<usize>>) {
    let mut out = ServerConfig::default();
    let Some(item) = doc.get("server") else {
        return (out, None);
    };
    let Some(s) = cx.deserialize::<model::Server>(item) else {
        return (out, None);
    };
    let addr = |cx: &mut Ctx<'_>, v: &Option<Located<String>>, slot: &mut SocketAddr| {
        if let Some(v) = v {
            match v.get_ref().parse::<SocketAddr>() {
                Ok(a) => *slot = a,
                Err(_) => cx.error(
                    Some(v.span()),
                    format!(
                        "`{}` is not an address like \"127.0.0.1:8080\"",
                        v.get_ref()
                    ),
                ),
            }
        }
    };
    addr(cx, &s.listen, &mut out.listen);
    addr(cx, &s.admin_listen, &mut out.admin_listen);
    out.admin_token = s
        .admin_token
        .as_ref()
        .and_then(|t| cx.secret("admin_token", t));
    if let Some(b) = s.body_limit {
        out.body_limit = usize::try_from(b).unwrap_or(usize::MAX);
    }
    if let Some(n) = s.max_connections {
        if n == 0 {
            // Zero would refuse every request, the admin pane's too.
            let span = item.get("max_connections").and_then(Item::span);
            cx.error(span, "`max_connections` must be at least 1");
        } else {
            out.max_connections = usize::try_from(n).unwrap_or(usize::MAX);
        }
    }
    if let Some(m) = &s.max_age {
        out.max_age = duration(cx, "max_age", m, out.max_age);
    }
    if let Some(r) = &s.remember {
        out.remember = duration(cx, "remember", r, out.remember);
    }
    if let Some(d) = &s.dead_letter_max_age {
        out.dead_letter_max_age = duration(cx, "dead_letter_max_age", d, out.dead_letter_max_age);
    }
    if let Some(n) = s.dead_letter_max_count {
        out.dead_letter_max_count = n;
    }
    if let Some(r) = &s.max_retry_delay {
        out.max_retry_delay = duration(cx, "max_retry_delay", r, out.max_retry_delay);
    }
    if let Some(r) = &s.alert_every {
        out.alert_every = duration(cx, "alert_every", r, out.alert_every);
    }
    out.store = s.store.as_ref().and_then(|v| store_url(cx, v));
    out.alerts = s.alerts.as_ref().map(|a| a.get_ref().trim().to_string());
    let alerts_span = s.alerts.as_ref().map(Located::span);
    out.config_edit_url = s
        .config_edit_url
        .as_ref()
        .and_then(|u| cx.url("config_edit_url", u, false))
        .map(|u| u.expose().to_string());
    for (key, value, slot) in [
        ("header_timeout", &s.header_timeout, &mut out.header_timeout),
        ("body_timeout", &s.body_timeout, &mut out.body_timeout),
    ] {
        if let Some(v) = value {
            let d = duration(cx, key, v, *slot);
            // Zero would drop every client before its first byte.
            if d.is_zero() {
                cx.error(Some(v.span()), format!("`{key}` must be longer than 0s"));
            } else {
                *slot = d;
            }
        }
    }
    (out, alerts_span)
}

/// `[server] store`: a `${VAR}` holding a `postgres://` (or `postgresql://`)
/// URL. A value still holding an unset `${VAR}` (`validate` without the
/// environment) is checked only for its scheme.
fn store_url(cx: &mut Ctx<'_>, v: &Located<String>) -> Option<Secret> {
    let value = cx.secret("store", v)?;
    let s = value.expose();
    let postgres = |s: &str| s.starts_with("postgres://") || s.starts_with("postgresql://");
    let ok = if s.contains("${") {
        s.starts_with("${") || postgres(s)
    } else {
        postgres(s) && url::Url::parse(s).is_ok()
    };
    if !ok {
        // Never echo the value: it holds a password.
        cx.error(
            Some(v.span()),
            "`store` must be a PostgreSQL URL like \"postgres://user:password@host:5432/database\"",
        );
        return None;
    }
    Some(value)
}

fn read_templates(
    doc: &toml_edit::Table,
    text: &str,
    cx: &mut Ctx<'_>,
) -> BTreeMap<String, TemplateSource> {
    let Some(item) = doc.get("templates") else {
        return BTreeMap::new();
    };
    let Some(model::Templates(map)) = cx.deserialize::<model::Templates>(item) else {
        return BTreeMap::new();
    };
    map.into_iter()
        .map(|(name, v)| {
            let span = v.span();
            let rest = text.get(span.start..).unwrap_or("");
            let content_start = if rest.starts_with("\"\"\"") || rest.starts_with("'''") {
                // A newline right after the opening quotes is not part of the string.
                let after = &rest[3..];
                span.start
                    + 3
                    + if after.starts_with("\r\n") {
                        2
                    } else if after.starts_with('\n') {
                        1
                    } else {
                        0
                    }
            } else {
                span.start + 1
            };
            (
                name,
                TemplateSource {
                    text: v.into_inner(),
                    span,
                    content_start,
                },
            )
        })
        .collect()
}

type Instances = HashMap<String, (&'static str, Arc<dyn Instance>)>;

fn read_providers(doc: &toml_edit::Table, cx: &mut Ctx<'_>) -> (Instances, Vec<CommandAuth>) {
    let mut out = Instances::new();
    let mut commands = Vec::new();
    let Some(item) = doc.get("providers") else {
        return (out, commands);
    };
    let Some(table) = item.as_table_like() else {
        cx.error(
            item.span(),
            "`providers` must be a table of [providers.NAME] tables",
        );
        return (out, commands);
    };
    for (name, p) in table.iter() {
        let Some(mut settings) = p
            .clone()
            .into_table()
            .ok()
            .or_else(|| p.as_inline_table().map(|t| t.clone().into_table()))
        else {
            cx.error(
                p.span().or_else(|| key_span(item, name)),
                format!("[providers.{name}] must be a table"),
            );
            continue;
        };
        let (kind, kind_span) = match settings.get("kind") {
            Some(k) => match k.as_str() {
                Some(s) => (s.to_string(), k.span()),
                None => {
                    cx.error(k.span(), "`kind` must be a string");
                    continue;
                }
            },
            None => (name.to_string(), key_span(item, name)),
        };
        settings.remove("kind");
        let Some(reg) = registry::find(&kind) else {
            let known: Vec<&str> = registry::kinds().collect();
            let hint = did_you_mean(&kind, known.iter().copied());
            // The full list only when no close name is found: it is long.
            let message = if hint.is_empty() {
                format!(
                    "unknown provider kind `{kind}` (known: {})",
                    known.join(", ")
                )
            } else {
                format!("unknown provider kind `{kind}`{hint}")
            };
            cx.error(kind_span, message);
            continue;
        };
        commands.extend(take_command_settings(name, reg.kind, &mut settings, cx));
        if let Some(inst) = (reg.parse)(&Item::Table(settings), cx) {
            out.insert(name.to_string(), (reg.kind, inst));
        }
    }
    (out, commands)
}

/// Takes the chat command keys ([`COMMAND_KEYS`]) out of a provider table
/// (the provider never sees them) and reads the one its kind may set.
fn take_command_settings(
    instance: &str,
    kind: &'static str,
    settings: &mut toml_edit::Table,
    cx: &mut Ctx<'_>,
) -> Option<CommandAuth> {
    let mut taken = toml_edit::Table::new();
    for (key, owner) in COMMAND_KEYS {
        let Some((k, v)) = settings.remove_entry(key) else {
            continue;
        };
        if *owner != kind {
            cx.error(
                k.span().or_else(|| v.span()),
                format!(
                    "`{key}` is a setting of {owner} providers (chat commands), not of {kind} ones"
                ),
            );
            continue;
        }
        taken.insert_formatted(&k, v);
    }
    if taken.is_empty() {
        return None;
    }
    let item = Item::Table(taken);
    let s = cx.deserialize::<model::CommandSettings>(&item)?;
    let secret = match kind {
        "slack" => cx.secret("signing_secret", s.signing_secret.as_ref()?)?,
        "mattermost" => cx.secret("command_token", s.command_token.as_ref()?)?,
        "telegram" => {
            let v = s.webhook_secret_token.as_ref()?;
            let token = cx.secret("webhook_secret_token", v)?;
            let t = token.expose();
            let ok = t.contains("${")
                || ((1..=256).contains(&t.len())
                    && t.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
            if !ok {
                // Never echo the value: it is a secret.
                cx.error(
                    Some(v.span()),
                    "`webhook_secret_token` must be 1 to 256 of A-Z a-z 0-9 _ - (Telegram's rule for setWebhook's secret_token)",
                );
                return None;
            }
            token
        }
        "discord" => {
            let v = s.public_key.as_ref()?;
            let key = cx.string(v)?;
            let k = key.expose().trim();
            let ok =
                k.contains("${") || (k.len() == 64 && k.chars().all(|c| c.is_ascii_hexdigit()));
            if !ok {
                cx.error(
                    Some(v.span()),
                    "`public_key` must be the application's public key: 64 hex digits (Developer Portal > General Information)",
                );
                return None;
            }
            Secret::new(k)
        }
        _ => return None,
    };
    Some(CommandAuth {
        instance: instance.to_string(),
        kind,
        secret,
    })
}

fn read_chats(
    item: Option<Item>,
    source: &SourceMap,
    templates: &BTreeMap<String, TemplateSource>,
    instances: &Instances,
    forums: &[Forum],
    cx: &mut Ctx<'_>,
) -> Vec<ChatConfig> {
    let mut out = Vec::new();
    let Some(item) = item else {
        return out;
    };
    let items: Vec<Item> = match item {
        Item::ArrayOfTables(a) => a.into_iter().map(Item::Table).collect(),
        Item::Value(Value::Array(a)) => a.into_iter().map(Item::Value).collect(),
        _ => {
            cx.error(
                item.span(),
                "`chat` must be an array of tables: write [[chat]]",
            );
            return out;
        }
    };
    out.reserve(items.len());
    // Keys of a chat and of its rules, once: what a chat table may hold
    // besides its provider's target fields.
    let chat_fields = known_keys::<model::Chat>(&[]);
    let rule_fields = known_keys::<model::Rule>(&[]);
    let mut names: HashMap<String, Range<usize>> = HashMap::new(); // name -> first span
    let mut bare: HashMap<&'static str, Arc<dyn Instance>> = HashMap::new();
    for mut chat_item in items {
        // What is needed of the item once it is deserialized (it is consumed).
        let item_span = chat_item.span();
        let rule_spans: Vec<Option<Range<usize>>> = match chat_item.get("rule") {
            Some(Item::ArrayOfTables(a)) => a.iter().map(|t| t.span()).collect(),
            _ => vec![],
        };
        let extra = take_unknown_keys(&mut chat_item, &chat_fields);
        // A misspelt key inside a rule needs the item for its span: that
        // rare case takes the copying path.
        let parsed = if has_unknown_rule_keys(&chat_item, &rule_fields) {
            cx.deserialize_open::<model::Chat>(&chat_item)
        } else {
            cx.deserialize_owned::<model::Chat>(chat_item)
        };
        let Some((chat, _)) = parsed else {
            continue;
        };
        let name = chat.name.get_ref().clone();
        if name.trim().is_empty() {
            cx.error(Some(chat.name.span()), "chat `name` is empty");
        }
        if names.contains_key(&name) {
            cx.error(
                Some(chat.name.span()),
                format!("duplicate chat name `{name}`: chat names must be unique"),
            );
        } else {
            names.insert(name.clone(), chat.name.span());
        }

        // Provider: a [providers.NAME] instance, or a bare kind with default settings.
        let provider = chat.provider.get_ref().clone();
        let instance = match instances.get(&provider) {
            Some((kind, inst)) => Some((*kind, inst.clone())),
            None => match registry::find(&provider) {
                Some(reg) => match bare.get(reg.kind) {
                    Some(i) => Some((reg.kind, i.clone())),
                    None => {
                        let empty = Item::Table(toml_edit::Table::new());
                        let inst = (reg.parse)(&empty, cx);
                        if let Some(i) = &inst {
                            bare.insert(reg.kind, i.clone());
                        }
                        inst.map(|i| (reg.kind, i))
                    }
                },
                None => {
                    let mut candidates: Vec<String> = instances.keys().cloned().collect();
                    candidates.extend(registry::kinds().map(str::to_string));
                    cx.error(
                        Some(chat.provider.span()),
                        format!(
                            "unknown provider `{provider}`: neither a [providers.{provider}] table nor a provider kind{}",
                            did_you_mean(&provider, candidates.iter().map(String::as_str))
                        ),
                    );
                    None
                }
            },
        };

        // Keys the common chat fields did not take belong to the provider's target.
        let mut target = toml_edit::InlineTable::new();
        let target_keys = instance
            .as_ref()
            .and_then(|(kind, _)| registry::find(kind))
            .map(registry::target_keys)
            .unwrap_or_default();
        for (written, value) in extra {
            let key = written.get();
            if target_keys.iter().any(|k| k == key) || instance.is_none() {
                if let Ok(v) = value.into_value() {
                    target.insert(key, v);
                }
            } else {
                let kind = instance.as_ref().map(|(k, _)| *k).unwrap_or("?");
                let span = written.span().or(item_span.clone());
                let owner = registry::PROVIDERS
                    .iter()
                    .find(|r| registry::target_keys(r).iter().any(|k| k == key));
                let message = match owner {
                    Some(r) => format!(
                        "`{key}` is not a field of {kind} chats (it is one of {} chats)",
                        r.kind
                    ),
                    None => {
                        let mut known = known_keys::<model::Chat>(&[]);
                        known.extend(registry::PROVIDERS.iter().flat_map(registry::target_keys));
                        format!(
                            "unknown key `{key}` for a {kind} chat{}",
                            did_you_mean(key, known.iter().map(String::as_str))
                        )
                    }
                };
                cx.error(span, message);
            }
        }
        let destination = instance.and_then(|(_, inst)| {
            inst.bind(
                &Item::Value(Value::InlineTable(target)),
                Some(chat.name.span()),
                cx,
            )
        });

        for t in [&chat.template, &chat.card].into_iter().flatten() {
            known_template(t, templates, cx);
        }
        let style = match &destination {
            Some(dest) => style(&chat, dest.as_ref(), cx),
            None => Style::Text,
        };

        let rules = read_rules(&chat, cx);
        let rule_sources = rule_sources(source, &rule_spans, &chat, &rules);
        let command_channels = chat
            .command_channels
            .iter()
            .map(|c| c.get_ref().trim().trim_start_matches('#').to_string())
            .filter(|c| !c.is_empty())
            .collect();
        let forum = match &chat.forum {
            None => 0,
            Some(f) => match forums.iter().position(|x| &x.name == f.get_ref()) {
                Some(i) => i,
                None => {
                    let names: Vec<&str> = forums.iter().map(|x| x.name.as_str()).collect();
                    cx.error(
                        Some(f.span()),
                        format!(
                            "unknown forum `{}`{}; forums: {}",
                            f.get_ref(),
                            did_you_mean(f.get_ref(), names.iter().copied()),
                            names.join(", ")
                        ),
                    );
                    0
                }
            },
        };
        let rate_limit = chat.rate_limit.as_ref().and_then(|r| {
            let rate = Rate::parse(r.get_ref());
            if rate.is_none() {
                cx.error(
                    Some(r.span()),
                    format!(
                        "`{}` is not a rate like \"1/s\", \"20/m\" or \"100/h\"",
                        r.get_ref()
                    ),
                );
            }
            rate
        });
        if rules.is_empty() {
            cx.warning(
                Some(chat.name.span()),
                format!(
                    "chat `{name}` has no `subscribe` and no [[chat.rule]]: it will receive nothing"
                ),
            );
        }
        if let Some(dest) = &destination
            && !dest.capabilities().thread
        {
            // Family rules cannot thread at all (reported with the rule).
            for r in chat.rule.iter().filter(|r| r.family.is_none()) {
                if let Some(f) = &r.filter
                    && *f.get_ref() == Filter::Thread
                {
                    cx.error(
                        Some(f.span()),
                        format!(
                            "`thread` needs a destination that returns message ids; this {} chat ({}) cannot thread: use `watch`",
                            dest.kind(),
                            dest.target()
                        ),
                    );
                }
            }
        }

        let (on_edit, on_delete) = match &destination {
            Some(dest) => lifecycle(&chat, dest.as_ref(), style, cx),
            None => (OnEdit::Ignore, OnDelete::Ignore),
        };
        if let Some(destination) = destination {
            out.push(ChatConfig {
                on_edit,
                on_delete,
                span: chat.name.span(),
                name,
                provider,
                destination,
                template: chat.template.map(Spanned::from),
                style,
                card: chat.card.map(Spanned::from),
                rules,
                forum,
                rate_limit,
                command_channels,
                rule_sources,
                line: source
                    .position(item_span.unwrap_or(chat.name.span()).start)
                    .0,
            });
        }
    }
    out
}

/// Reports `t` when `[templates]` does not define it.
fn known_template(
    t: &Located<String>,
    templates: &BTreeMap<String, TemplateSource>,
    cx: &mut Ctx<'_>,
) {
    if templates.contains_key(t.get_ref()) {
        return;
    }
    let defined: Vec<&str> = templates.keys().map(String::as_str).collect();
    cx.error(
        Some(t.span()),
        format!(
            "unknown template `{}`{}; define it under [templates]{}",
            t.get_ref(),
            did_you_mean(t.get_ref(), defined.iter().copied()),
            if defined.is_empty() {
                String::new()
            } else {
                format!(" (defined: {})", defined.join(", "))
            }
        ),
    );
}

/// The chat's style: as written, else `card` where the destination draws
/// cards and the chat names no text `template` of its own (that template
/// was written to be the message).
fn style(chat: &model::Chat, dest: &dyn Destination, cx: &mut Ctx<'_>) -> Style {
    let written = chat.style.as_ref().map(|s| *s.get_ref());
    if let (Some(Style::Text), Some(card)) = (written, &chat.card) {
        cx.error(
            Some(card.span()),
            "`card` is a card template, but this chat says `style = \"text\"`: remove one of them",
        );
    }
    if !dest.cards() {
        if let Some(card) = &chat.card {
            cx.error(
                Some(card.span()),
                format!("{} chats have no card format: remove `card`", dest.kind()),
            );
        }
        return Style::Text;
    }
    match written {
        Some(s) => s,
        None if chat.card.is_some() || chat.template.is_none() => Style::Card,
        None => Style::Text,
    }
}

/// Takes the keys of a chat table that are not common chat fields (its
/// provider's target fields, or mistakes), in written order.
fn take_unknown_keys(chat: &mut Item, fields: &[String]) -> Vec<(toml_edit::Key, Item)> {
    let is_unknown = |k: &str| !fields.iter().any(|f| f == k);
    match chat {
        Item::Table(t) => {
            let keys: Vec<String> = (t.iter().map(|(k, _)| k))
                .filter(|k| is_unknown(k))
                .map(str::to_string)
                .collect();
            keys.iter().filter_map(|k| t.remove_entry(k)).collect()
        }
        Item::Value(Value::InlineTable(t)) => {
            let keys: Vec<String> = (t.iter().map(|(k, _)| k))
                .filter(|k| is_unknown(k))
                .map(str::to_string)
                .collect();
            keys.iter()
                .filter_map(|k| t.remove_entry(k))
                .map(|(k, v)| (k, Item::Value(v)))
                .collect()
        }
        _ => Vec::new(),
    }
}

/// Whether a rule table of the chat holds a key rules do not have.
fn has_unknown_rule_keys(chat: &Item, fields: &[String]) -> bool {
    let unknown =
        |t: &dyn toml_edit::TableLike| t.iter().any(|(k, _)| !fields.iter().any(|f| f == k));
    match chat.get("rule") {
        Some(Item::ArrayOfTables(a)) => a.iter().any(|t| unknown(t)),
        Some(Item::Value(Value::Array(a))) => a
            .iter()
            .any(|v| v.as_inline_table().is_some_and(|t| unknown(t))),
        Some(Item::Table(t)) => unknown(t),
        Some(Item::Value(Value::InlineTable(t))) => unknown(t),
        _ => false,
    }
}

/// The chat's `on_edit`/`on_delete`: as set (an error where the platform
/// cannot do it), else the most the platform can do.
fn lifecycle(
    chat: &model::Chat,
    dest: &dyn Destination,
    style: Style,
    cx: &mut Ctx<'_>,
) -> (OnEdit, OnDelete) {
    let mut caps = dest.capabilities();
    // A card the platform cannot edit: neither updates nor strike-throughs.
    let frozen = style == Style::Card && !dest.card_edits();
    caps.edit &= !frozen;
    let mut refuse = |span: Range<usize>, key: &str, value: &str, needs: &str| {
        let why = match frozen {
            true => format!(
                "{} cannot edit a message sent as a card: use \"ignore\", or `style = \"text\"`",
                dest.kind()
            ),
            false => format!(
                "this {} chat ({}) cannot: use \"ignore\"",
                dest.kind(),
                dest.target()
            ),
        };
        cx.error(
            Some(span),
            format!("`{key} = \"{value}\"` needs a destination that can {needs} messages; {why}"),
        );
    };
    let on_edit = match &chat.on_edit {
        Some(e) if *e.get_ref() == OnEdit::Update && !caps.edit => {
            refuse(e.span(), "on_edit", "update", "edit");
            OnEdit::Ignore
        }
        Some(e) => *e.get_ref(),
        None if caps.edit => OnEdit::Update,
        None => OnEdit::Ignore,
    };
    let on_delete = match &chat.on_delete {
        Some(d) if *d.get_ref() == OnDelete::Delete && !caps.delete => {
            refuse(d.span(), "on_delete", "delete", "delete");
            OnDelete::Ignore
        }
        Some(d) if *d.get_ref() == OnDelete::Strike && !caps.edit => {
            refuse(d.span(), "on_delete", "strike", "edit");
            OnDelete::Ignore
        }
        Some(d) => *d.get_ref(),
        None if caps.delete => OnDelete::Delete,
        None => OnDelete::Ignore,
    };
    (on_edit, on_delete)
}

/// Where each rule of `rules` (as [`read_rules`] built them: `subscribe`
/// entries, then `[[chat.rule]]` tables) is written.
fn rule_sources(
    source: &SourceMap,
    tables: &[Option<Range<usize>>],
    chat: &model::Chat,
    rules: &[RuleDef],
) -> Vec<RuleSource> {
    let text = source.text();
    let line_of = |offset: usize| source.position(offset).0;
    let mut out: Vec<RuleSource> = chat
        .subscribe
        .iter()
        .filter_map(|s| {
            let span = s.span();
            Some(RuleSource {
                line: line_of(span.start),
                text: text.get(span)?.to_string(),
            })
        })
        .collect();
    for (i, rule) in rules.iter().enumerate().skip(out.len()) {
        let table = tables.get(i - chat.subscribe.len()).cloned().flatten();
        let found = match table {
            // The table's header: its lines run to the next header.
            Some(header) => {
                let start = text[..header.start.min(text.len())]
                    .rfind('\n')
                    .map_or(0, |n| n + 1);
                let body: Vec<&str> = text[start..]
                    .lines()
                    .enumerate()
                    .take_while(|(n, l)| *n == 0 || !l.trim_start().starts_with('['))
                    .map(|(_, l)| l)
                    .collect();
                let end = body
                    .iter()
                    .rposition(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
                    .map_or(1, |n| n + 1);
                Some(RuleSource {
                    line: line_of(start),
                    text: body[..end].join("\n"),
                })
            }
            // An inline table: the line of its `filter` or `type` value.
            None => rule.span.clone().and_then(|span| {
                let start = text[..span.start.min(text.len())]
                    .rfind('\n')
                    .map_or(0, |n| n + 1);
                Some(RuleSource {
                    line: line_of(start),
                    text: text[start..].lines().next()?.trim().to_string(),
                })
            }),
        };
        out.push(found.unwrap_or_else(|| RuleSource {
            line: 0,
            text: rule.compact(),
        }));
    }
    out
}

fn read_rules(chat: &model::Chat, cx: &mut Ctx<'_>) -> Vec<RuleDef> {
    let mut rules = Vec::new();
    for s in &chat.subscribe {
        if let Some(rule) = compact_rule(s, cx) {
            rules.push(rule);
        }
    }
    for r in &chat.rule {
        let family = match &r.family {
            Some(f) => match family_named(f, cx) {
                Ok(family) => family,
                Err(()) => continue,
            },
            None => None,
        };
        rules.push(RuleDef {
            filter: r
                .filter
                .as_ref()
                .map(|f| *f.get_ref())
                .unwrap_or(Filter::Watch),
            kind: r
                .kind
                .as_ref()
                .map(|k| *k.get_ref())
                .unwrap_or(RuleType::Normal),
            category: r.category.clone().map(Spanned::from),
            tags: r.tags.iter().cloned().map(Spanned::from).collect(),
            group: r.group.clone().map(Spanned::from),
            family,
            channel: r.channel.clone().map(Spanned::from),
            span: (r.kind.as_ref().map(|k| k.span()))
                .or_else(|| r.filter.as_ref().map(|f| f.span()))
                .or_else(|| r.family.as_ref().map(|f| f.span())),
        });
    }
    rules
}

/// `family = "..."`: `None` for posts, or the family; reported if unknown.
fn family_named(
    f: &Spanned<String>,
    cx: &mut Ctx<'_>,
) -> Result<Option<&'static families::Family>, ()> {
    let name = f.get_ref().trim();
    if name == "posts" {
        return Ok(None);
    }
    match families::named(name) {
        Some(family) => Ok(Some(family)),
        None => {
            let names = family_names();
            cx.error(
                Some(f.span()),
                format!(
                    "unknown event family `{name}`{} (families: {})",
                    did_you_mean(name, names.iter().copied()),
                    names.join(", ")
                ),
            );
            Err(())
        }
    }
}

/// `posts` and every family, as rules name them.
fn family_names() -> Vec<&'static str> {
    std::iter::once("posts")
        .chain(families::FAMILIES.iter().map(|f| f.name))
        .collect()
}

/// One `subscribe` entry as a `watch` rule: `all`, `c/GLOB`, `t/GLOB` for
/// posts, or a family's name and its filters (`review c/staff`,
/// `users group:staff`, `chat channel:general`).
fn compact_rule(s: &Spanned<String>, cx: &mut Ctx<'_>) -> Option<RuleDef> {
    let text = s.get_ref().trim();
    let spanned = |v: &str| Spanned::new(s.span(), v.to_string());
    let mut words = text.split_whitespace().peekable();
    let family = match words.peek() {
        Some(&"posts") => {
            words.next();
            None
        }
        Some(w) => match families::named(w) {
            Some(f) => {
                words.next();
                Some(f)
            }
            None => None,
        },
        None => None,
    };
    let mut rule = RuleDef {
        filter: Filter::Watch,
        kind: RuleType::Normal,
        category: None,
        tags: vec![],
        group: None,
        family,
        channel: None,
        span: Some(s.span()),
    };
    let mut any = false;
    for word in words {
        any = true;
        if word == "all" {
            continue;
        } else if let Some(c) = word.strip_prefix("c/").filter(|c| !c.is_empty()) {
            rule.category = Some(spanned(c));
        } else if let Some(t) = word.strip_prefix("t/").filter(|t| !t.is_empty()) {
            rule.tags.push(spanned(t));
        } else if let Some(g) = word.strip_prefix("group:").filter(|_| family.is_some()) {
            rule.group = Some(spanned(g));
        } else if let Some(c) = word.strip_prefix("channel:").filter(|_| family.is_some()) {
            rule.channel = Some(spanned(c));
        } else {
            let first = text.split_whitespace().next().unwrap_or(text);
            let names = family_names();
            cx.error(
                Some(s.span()),
                format!(
                    "`{text}` is not a subscription: write `c/<category path or glob>`, `t/<tag or glob>` or `all`, or an event family ({}) with its filters (`review c/staff`, `chat channel:general`){}",
                    names[1..].join(", "),
                    match family {
                        None => did_you_mean(first, names.iter().copied()),
                        Some(_) => String::new(),
                    }
                ),
            );
            return None;
        }
    }
    if !any && family.is_none() {
        cx.error(
            Some(s.span()),
            "an empty subscription: write `all` for every post",
        );
        return None;
    }
    Some(rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(server: &str) -> (Option<Config>, Vec<Problem>) {
        let text = format!(
            "[discourse]\nurl = \"https://forum.example.org\"\n\n[server]\n{server}\n\n\
             [[chat]]\nname = \"general\"\nprovider = \"console\"\nsubscribe = [\"all\"]\n"
        );
        let env = std::collections::BTreeMap::<String, String>::new();
        parse(&SourceMap::new("t.toml", text), &env, MissingEnv::Warn)
    }

    fn errors(problems: &[Problem]) -> Vec<&str> {
        problems
            .iter()
            .filter(|p| p.severity == crate::config::Severity::Error)
            .map(|p| p.message.as_str())
            .collect()
    }

    #[test]
    fn durations_are_capped_at_365_days() {
        let (config, problems) =
            load("max_age = \"365d\"\nremember = \"365d\"\nbody_timeout = \"365d\"");
        assert!(errors(&problems).is_empty(), "{problems:?}");
        let server = config.unwrap().server;
        assert_eq!(server.max_age, MAX_DURATION);
        assert_eq!(server.body_timeout, MAX_DURATION);

        for key in ["max_age", "remember", "header_timeout", "body_timeout"] {
            for value in ["365d 1s", "300000000000y"] {
                let (config, problems) = load(&format!("{key} = \"{value}\""));
                let errors = errors(&problems);
                assert_eq!(errors.len(), 1, "{key} = {value}: {problems:?}");
                assert!(
                    errors[0].contains(&format!("`{key}`"))
                        && errors[0].contains("longer than 365 days"),
                    "{}",
                    errors[0]
                );
                // The span points at the value, so the error is located.
                let span = problems[0].span.clone().expect("located");
                assert!(span.end > span.start);
                // The default stays: nothing downstream sees the huge value.
                if let Some(c) = config {
                    assert!(c.server.max_age <= MAX_DURATION);
                    assert!(c.server.remember <= MAX_DURATION);
                    assert!(c.server.header_timeout <= MAX_DURATION);
                    assert!(c.server.body_timeout <= MAX_DURATION);
                }
            }
        }
    }

    #[test]
    fn dead_letter_limits_default_and_read() {
        let (config, _) = load("");
        let server = config.unwrap().server;
        assert_eq!(
            server.dead_letter_max_age,
            Duration::from_secs(30 * 24 * 3600)
        );
        assert_eq!(server.dead_letter_max_count, 10_000);
        let (config, problems) = load("dead_letter_max_age = \"7d\"\ndead_letter_max_count = 50");
        assert!(errors(&problems).is_empty(), "{problems:?}");
        let server = config.unwrap().server;
        assert_eq!(
            server.dead_letter_max_age,
            Duration::from_secs(7 * 24 * 3600)
        );
        assert_eq!(server.dead_letter_max_count, 50);
        let (_, problems) = load("dead_letter_max_age = \"soon\"");
        assert_eq!(errors(&problems).len(), 1, "{problems:?}");
    }

    #[test]
    fn store_is_a_postgres_url_in_a_variable_never_echoed() {
        let (config, problems) = load("");
        assert!(errors(&problems).is_empty(), "{problems:?}");
        assert!(config.unwrap().server.store.is_none(), "redb by default");
        let (config, problems) = load("store = \"${RELAY_STORE}\"");
        assert!(errors(&problems).is_empty(), "{problems:?}");
        assert!(config.unwrap().server.store.is_some());
        let (_, problems) = load("store = \"postgres://relay:${PW}@db:5432/relay\"");
        assert!(errors(&problems).is_empty(), "{problems:?}");
        let (_, problems) = load("store = \"postgres://relay:hunter2@db/relay\"");
        assert_eq!(errors(&problems).len(), 1, "{problems:?}");
        assert!(errors(&problems)[0].contains("secrets don't belong"));
        let (_, problems) = load("store = \"mysql://relay:${PW}@db/relay\"");
        let errors = errors(&problems);
        assert_eq!(errors.len(), 1, "{problems:?}");
        assert!(errors[0].starts_with("`store` must be a PostgreSQL URL"));
        assert!(!errors[0].contains("mysql"), "never echoed: {}", errors[0]);
        assert!(problems[0].span.is_some(), "located");
    }

    #[test]
    fn max_connections_is_at_least_one() {
        let (config, problems) = load("");
        assert!(errors(&problems).is_empty(), "{problems:?}");
        assert_eq!(config.unwrap().server.max_connections, 1024);
        let (config, problems) = load("max_connections = 3");
        assert!(errors(&problems).is_empty(), "{problems:?}");
        assert_eq!(config.unwrap().server.max_connections, 3);
        let (_, problems) = load("max_connections = 0");
        assert_eq!(
            errors(&problems),
            vec!["`max_connections` must be at least 1"]
        );
        assert!(problems[0].span.is_some(), "located");
    }

    #[test]
    fn forum_delay_is_capped_too() {
        let text = "[discourse]\nurl = \"https://forum.example.org\"\ndelay = \"400d\"\n\n\
                    [[chat]]\nname = \"general\"\nprovider = \"console\"\nsubscribe = [\"all\"]\n";
        let env = std::collections::BTreeMap::<String, String>::new();
        let (_, problems) = parse(&SourceMap::new("t.toml", text), &env, MissingEnv::Warn);
        let errors = errors(&problems);
        assert_eq!(errors.len(), 1, "{problems:?}");
        assert!(errors[0].starts_with("`delay` = `400d` is longer than 365 days"));
    }
}
