//! What providers share, by topic: reading settings and chat fields with
//! every problem located ([`reject`], [`check`], [`ensure`] and the field
//! readers); the registry entry of a [`Provider`]; building requests;
//! reading answers (the two shapes chat APIs use, an HTTP status with a
//! JSON error envelope or 200 with a result code in the body, described
//! once per platform as a [`Spec`] or [`CodeSpec`]); cutting text to a
//! platform's limits; and [`Chat`], a destination as its platform's facts.
//! A provider file starts with `use super::kit::prelude::*;` and implements
//! `kit::Chat` by its path (the prelude leaves the trait out of scope, so a
//! concrete chat's methods are [`Destination`]'s alone).
//!
//! Reasons are built from the platform's own words, cut short; secrets are
//! redacted later, for every provider, by delivery (`send::redact_outcome`).

use std::marker::PhantomData;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;
use toml_edit::Item;

use super::http::{HttpResponse, classify_status};
use super::{
    Bound, Capabilities, Destination, Instance, Message, NativeMessage, NativeSender, Outbound,
    Outcome, Registration, Span, schema_of,
};
use crate::config::de::Ctx;
use crate::config::env::Secret;
use crate::config::{Located, Rate};
use crate::render::Dialect;

/// What every provider file names: `use super::kit::prelude::*;`.
pub mod prelude {
    pub use std::ops::Range;
    pub use std::sync::Arc;
    pub use std::time::Duration;

    pub use schemars::JsonSchema;
    pub use serde::Deserialize;
    pub use serde_json::{Value, json};

    pub use super::super::http::{classify_status, fit, id_url, path_segment, retry_hint};
    pub use super::super::probe::{self, Judgement, Probe};
    pub use super::super::{
        Action, Bound, Capabilities, Destination, HttpRequest, HttpResponse, Message, Outbound,
        Outcome, Registration, Span, Thread,
    };
    pub use super::{
        self as kit, CodeSpec, Hook, OneOf, Provider, Spec, Table, classify_json, truncate_bytes,
    };
    pub use crate::config::de::Ctx;
    pub use crate::config::env::Secret;
    pub use crate::config::{Located, Rate};
    pub use crate::render::Dialect;
    pub use crate::render::card::{self, Card};
    pub use crate::render::escape::escape;
    pub use crate::render::helpers::{bold, link};
}

// ---- Settings checks: every problem located, the value never echoed ----

/// Reports `message` at `span` and gives `None`: `return kit::reject(cx, span, "…")`.
pub fn reject<T>(cx: &mut Ctx<'_>, span: Span, message: impl Into<String>) -> Option<T> {
    cx.error(span, message);
    None
}

/// `Some(())` when `ok`; otherwise `message` is reported at `span`, and
/// `kit::check(…)?` stops at this first problem.
pub fn check(cx: &mut Ctx<'_>, ok: bool, span: Span, message: impl Into<String>) -> Option<()> {
    if !ok {
        cx.error(span, message);
    }
    ok.then_some(())
}

/// [`check`] that goes on, clearing `all_ok`: settings with many checks
/// report every problem at once.
pub fn ensure(
    cx: &mut Ctx<'_>,
    all_ok: &mut bool,
    ok: bool,
    span: Span,
    message: impl Into<String>,
) {
    if check(cx, ok, span, message).is_none() {
        *all_ok = false;
    }
}

/// The trimmed text of `v`; "`field` why" is reported at it ([`ensure`])
/// when `valid` refuses it.
pub fn checked(
    cx: &mut Ctx<'_>,
    all_ok: &mut bool,
    field: &str,
    v: &Located<String>,
    valid: impl Fn(&str) -> Result<(), &'static str>,
) -> String {
    let s = v.get_ref().trim().to_string();
    if let Err(why) = valid(&s) {
        let msg = format!("`{field}` {why}");
        ensure(cx, all_ok, false, Some(v.span()), msg);
    }
    s
}

/// A `server` that is a host name or address only (`message` otherwise,
/// [`ensure`]), as the socket providers take it; `${VAR}`s are expanded.
pub fn host(
    cx: &mut Ctx<'_>,
    all_ok: &mut bool,
    v: &Located<String>,
    message: &str,
) -> Option<String> {
    let h = cx.string(v)?.expose().trim().to_string();
    let valid = h.contains("${") || super::persistent::valid_host(&h);
    ensure(cx, all_ok, valid, Some(v.span()), message);
    Some(h)
}

/// A required field: `missing` is reported at `at` (the chat, or the
/// provider's table) when it is absent.
pub fn required<'v, T>(
    cx: &mut Ctx<'_>,
    v: &'v Option<Located<T>>,
    at: Span,
    missing: &str,
) -> Option<&'v Located<T>> {
    match v {
        Some(v) => Some(v),
        None => reject(cx, at, missing),
    }
}

/// A [`required`] secret (`${VAR}`) field: the value and the field as written.
pub fn required_secret<'v>(
    cx: &mut Ctx<'_>,
    v: &'v Option<Located<String>>,
    field: &str,
    at: Span,
    missing: &str,
) -> Option<(Secret, &'v Located<String>)> {
    let v = required(cx, v, at, missing)?;
    Some((cx.secret(field, v)?, v))
}

/// An optional integer setting that must lie in `range`; `message` is
/// reported at the value when it does not.
pub fn ranged<T: TryFrom<i64> + PartialOrd>(
    cx: &mut Ctx<'_>,
    v: &Option<Located<i64>>,
    range: RangeInclusive<T>,
    message: &str,
) -> Option<Option<T>> {
    opt_field(cx, v, |n| match T::try_from(*n) {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(message),
    })
}

/// An optional field that `valid` accepts (`Ok`) or refuses with a message
/// reported at the field: `Some(None)` when unset, `None` when refused.
pub fn opt_field<T, U, E: Into<String>>(
    cx: &mut Ctx<'_>,
    v: &Option<Located<T>>,
    valid: impl FnOnce(&T) -> Result<U, E>,
) -> Option<Option<U>> {
    let Some(v) = v else { return Some(None) };
    match valid(v.get_ref()) {
        Ok(u) => Some(Some(u)),
        Err(e) => reject(cx, Some(v.span()), e),
    }
}

/// An optional URL setting that is not a secret (an avatar, a server).
pub fn opt_url(
    cx: &mut Ctx<'_>,
    field: &str,
    v: &Option<Located<String>>,
) -> Option<Option<String>> {
    let Some(u) = v else { return Some(None) };
    Some(Some(cx.url(field, u, false)?.expose().to_string()))
}

/// An optional API base URL ([`Ctx::base_url`]): `Some(None)` when it is
/// not set, `None` when it is set but wrong (reported).
pub fn opt_base_url(
    cx: &mut Ctx<'_>,
    field: &str,
    v: &Option<Located<String>>,
) -> Option<Option<String>> {
    match v {
        Some(_) => cx.base_url(field, v, "").map(Some),
        None => Some(None),
    }
}

/// Which of a chat's two exclusive fields is set (an API target such as a
/// channel id, or a webhook URL).
pub enum OneOf<'a> {
    First(&'a Located<String>),
    Second(&'a Located<String>),
}

/// The one of `first` and `second` that is set; `both` is reported at
/// `first` when both are, `neither` at the chat when none is.
pub fn one_of<'a>(
    cx: &mut Ctx<'_>,
    first: &'a Option<Located<String>>,
    second: &'a Option<Located<String>>,
    chat: Span,
    both: &str,
    neither: &str,
) -> Option<OneOf<'a>> {
    match (first, second) {
        (Some(a), None) => Some(OneOf::First(a)),
        (None, Some(b)) => Some(OneOf::Second(b)),
        (Some(a), Some(_)) => reject(cx, Some(a.span()), both),
        (None, None) => reject(cx, chat, neither),
    }
}

/// `a {kind} provider needs A{sep}B`, naming the keys flagged missing;
/// `None` when none is (for [`Table::complete`]).
pub fn needs(kind: &str, sep: &str, keys: &[(bool, &str)]) -> Option<String> {
    let missing: Vec<&str> = keys.iter().filter(|(m, _)| *m).map(|(_, k)| *k).collect();
    (!missing.is_empty()).then(|| format!("a {kind} provider needs {}", missing.join(sep)))
}

/// The problem of a chat whose provider lacks `what` (a bare
/// `provider = "kind"`, or an empty table).
pub fn chat_needs(kind: &str, what: &str) -> String {
    format!("a {kind} chat needs {what} on a [providers.NAME] table with kind = \"{kind}\"")
}

/// The host of a server URL, for `target()`; `None` while the URL as
/// written holds a `${VAR}` (its value may be a secret).
pub fn shown_host(written: &Located<String>, url: &str) -> Option<String> {
    if written.get_ref().contains("${") {
        return None;
    }
    url::Url::parse(url).ok()?.host_str().map(str::to_string)
}

/// The query parameters of `url`, decoded (none when it does not parse).
pub fn query_pairs(url: &str) -> Vec<(String, String)> {
    url::Url::parse(url)
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

/// Whether `url`'s query has `name` with a value that is not empty.
pub fn has_param(url: &str, name: &str) -> bool {
    query_pairs(url)
        .iter()
        .any(|(k, v)| k == name && !v.is_empty())
}

// ---- Registration: a provider as its settings, its chat fields, its binding ----

/// A provider as its platform's facts: what `[providers.NAME]` sets, what
/// a chat sets, and how a chat becomes a destination. [`registration`]
/// does the reading (every problem located) and the schemas.
pub trait Provider: std::fmt::Debug + Send + Sync + Sized + 'static {
    type Settings: DeserializeOwned + JsonSchema;
    type Target: DeserializeOwned + JsonSchema;
    /// The instance from its settings, read from `table` (`None`: a
    /// problem was reported).
    fn new(s: Self::Settings, table: &Table, cx: &mut Ctx<'_>) -> Option<Self>;
    /// One chat's destination; `chat` locates "missing field" problems.
    fn bind_target(self: Arc<Self>, t: Self::Target, chat: Span, cx: &mut Ctx<'_>) -> Bound;
}

/// The `[providers.NAME]` table a provider's settings come from: where a
/// missing required setting is reported.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Its place in the file (`None` for a bare `provider = "kind"` chat).
    pub span: Span,
    /// Whether it sets anything: a chat naming the kind directly reads an
    /// empty table, and each chat that needs a key then says so itself.
    pub set: bool,
}

impl Table {
    /// The table `item` is.
    pub fn of(item: &Item) -> Self {
        Table {
            span: item.span(),
            set: item.as_table_like().is_some_and(|t| !t.is_empty()),
        }
    }

    /// `Some(())` unless the table sets something and lacks a required key:
    /// `problem` ([`needs`]) is reported at the table.
    pub fn complete(&self, cx: &mut Ctx<'_>, problem: Option<String>) -> Option<()> {
        match problem {
            Some(p) if self.set => reject(cx, self.span.clone(), p),
            _ => Some(()),
        }
    }
}

/// The registry entry of a [`Provider`].
pub const fn registration<P: Provider>(kind: &'static str, about: &'static str) -> Registration {
    Registration {
        kind,
        about,
        parse: parse::<P>,
        settings_schema: schema_of::<P::Settings>,
        target_schema: schema_of::<P::Target>,
    }
}

fn parse<P: Provider>(item: &Item, cx: &mut Ctx<'_>) -> Option<Arc<dyn Instance>> {
    let s = cx.deserialize::<P::Settings>(item)?;
    Some(Arc::new(P::new(s, &Table::of(item), cx)?))
}

impl<P: Provider> Instance for P {
    fn bind(self: Arc<Self>, target: &Item, chat: Span, cx: &mut Ctx<'_>) -> Bound {
        let t = cx.deserialize::<P::Target>(target)?;
        self.bind_target(t, chat, cx)
    }
}

/// The chat fields of a provider with nothing to set on `[providers.NAME]`
/// (each chat names its own webhook): they bind on their own, through [`Hook`].
pub trait HookTarget: DeserializeOwned + JsonSchema + 'static {
    fn bind(self, chat: Span, cx: &mut Ctx<'_>) -> Bound;
}

/// The provider of webhook chats: settings `S` (documentation only) and
/// chat fields `T`; `registration::<Hook<Settings, Target>>(…)`.
pub struct Hook<S, T>(PhantomData<fn() -> (S, T)>);

impl<S, T> std::fmt::Debug for Hook<S, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hook")
    }
}

impl<S: DeserializeOwned + JsonSchema + 'static, T: HookTarget> Provider for Hook<S, T> {
    type Settings = S;
    type Target = T;

    fn new(_: S, _: &Table, _: &mut Ctx<'_>) -> Option<Self> {
        Some(Hook(PhantomData))
    }

    fn bind_target(self: Arc<Self>, t: T, chat: Span, cx: &mut Ctx<'_>) -> Bound {
        t.bind(chat, cx)
    }
}

// ---- Requests ----

/// Sets `body[key]` when `v` is there (an optional field of a JSON body).
pub fn put(body: &mut Value, key: &str, v: Option<impl serde::Serialize>) {
    if let Some(v) = v {
        body[key] = serde_json::json!(v);
    }
}

/// `url` with `param` (`name=value`, encoded) added to its query.
pub fn with_query(url: &Secret, param: &str) -> Secret {
    let base = url.expose();
    let sep = if base.contains('?') { '&' } else { '?' };
    Secret::new(format!("{base}{sep}{param}"))
}

/// base64(HMAC-SHA256(key, message)), the signature of webhook robots.
pub fn hmac_sha256_base64(key: &str, message: &str) -> String {
    use base64::Engine;
    use hmac::{KeyInit, Mac};
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()) else {
        unreachable!("HMAC takes keys of any length")
    };
    mac.update(message.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// A key that names one message for a platform's deduplication (Matrix
/// transaction ids, Mastodon's `Idempotency-Key`): the SHA-256, in hex, of
/// `[tag, chat, event, topic id, post id, rest…]` as JSON.
pub fn message_key(tag: &str, msg: &Message<'_>, rest: &[&Value]) -> String {
    let c = msg.context;
    let mut key = vec![
        Value::from(tag),
        Value::from(msg.chat),
        c["event"].clone(),
        c["topic"]["id"].clone(),
        c["post"]["id"].clone(),
    ];
    key.extend(rest.iter().map(|v| (*v).clone()));
    sha256_hex(&Value::Array(key))
}

/// The SHA-256 of `key` as JSON, in hex.
pub fn sha256_hex(key: &Value) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(key.to_string().as_bytes()))
}

/// The topic's title as a plain field of its own (push titles): control
/// characters dropped, trimmed.
pub fn topic_title(ctx: &Value) -> String {
    ctx["topic"]["title"]
        .as_str()
        .map(|t| crate::render::escape::strip_controls(t).trim().to_string())
        .unwrap_or_default()
}

/// The post's URL (the topic's for topic events) when it is a web link:
/// what a push notification opens on tap.
pub fn post_link(ctx: &Value) -> Option<&str> {
    let url = ctx["post"]["url"]
        .as_str()
        .or_else(|| ctx["topic"]["url"].as_str())?
        .trim();
    (crate::render::escape::is_linkable(url) && !url.starts_with("mailto:")).then_some(url)
}

/// The default text of a push notification, whose title and link are
/// fields of their own: the byline, then `$gap` and the excerpt.
macro_rules! push_template {
    ($gap:literal) => {
        concat!(
            "{{#if post}}by {{#if post.name}}{{post.name}}{{else}}{{post.username}}{{/if}}{{/if}}",
            "{{#if topic.category}} in {{topic.category.path}}{{/if}}",
            "{{#if topic.tags}} [{{join topic.tags \", \"}}]{{/if}}",
            "{{#if post}}{{#if post.excerpt}}",
            $gap,
            "{{post.excerpt}}{{/if}}{{/if}}",
        )
    };
}
pub(crate) use push_template;

/// A message for a provider that speaks its own protocol, shown to
/// `explain` as `{"method", "url", "headers", "body"}`.
pub fn native(
    [method, url, body]: [&str; 3],
    headers: Value,
    payload: Value,
    sender: Arc<dyn NativeSender>,
) -> Outbound {
    let shown = serde_json::json!({"method": method, "url": url, "headers": headers, "body": body});
    Outbound::Native(NativeMessage {
        shown,
        payload,
        sender,
    })
}

/// `host:port`, with an IPv6 address in brackets.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

// ---- Answers: outcomes from the platform's words ----

/// The longest piece of a platform's error text a reason quotes.
pub const MAX_DETAIL: usize = 300;

/// How a platform answers over HTTP status codes with a JSON error body.
pub struct Spec {
    /// Starts every reason (`"webex"` → `webex: HTTP 404: …`).
    pub prefix: &'static str,
    /// Where a 2xx answer carries the new message's id (a JSON pointer such
    /// as `/id`); `None`: the platform gives none.
    pub id_ptr: Option<&'static str>,
    /// The error text of an answer, from its JSON (`Value::Null` when the
    /// body is not JSON); `None`: the body's start is quoted instead.
    pub error: fn(&HttpResponse, &Value) -> Option<String>,
    /// Between `HTTP 404` and the error text (`": "`; codes such as
    /// Google's `NOT_FOUND` read better after a space).
    pub sep: &'static str,
    /// What to check, for a permanent failure's status (` (…)` or `""`).
    pub hint: fn(u16) -> &'static str,
}

impl Spec {
    /// A spec with no id, the body's start as the error text, and no hints.
    pub const fn plain(prefix: &'static str) -> Self {
        Self {
            prefix,
            id_ptr: None,
            error: |_, _| None,
            sep: ": ",
            hint: no_hint,
        }
    }

    /// `HTTP 404{sep}error`, or `HTTP 404: start of the body` (no prefix).
    pub fn describe(&self, resp: &HttpResponse, body: &Value) -> String {
        // The body's start is at most 201 characters, below MAX_DETAIL.
        let (sep, detail) = match (self.error)(resp, body) {
            Some(e) => (self.sep, e),
            None => (": ", resp.body_snippet()),
        };
        if detail.is_empty() {
            format!("HTTP {}", resp.status)
        } else {
            format!("HTTP {}{sep}{detail}", resp.status)
        }
    }
}

/// The hint of a platform with nothing to add to its permanent failures.
pub fn no_hint(_: u16) -> &'static str {
    ""
}

/// The answer classified by its status ([`classify_status`]): the id from
/// `id_ptr` when sent, `prefix: HTTP n: error` otherwise, with the hint on
/// permanent failures.
pub fn classify_json(resp: &HttpResponse, spec: &Spec) -> Outcome {
    let body = json_body(resp);
    let reason = || format!("{}: {}", spec.prefix, spec.describe(resp, &body));
    match classify_status(resp) {
        Outcome::Sent { .. } => Outcome::Sent {
            remote_id: spec.id_ptr.and_then(|p| id_at(&body, p)),
        },
        Outcome::Retry { after, .. } => Outcome::Retry {
            reason: reason(),
            after,
        },
        Outcome::Permanent { .. } => Outcome::Permanent {
            reason: format!("{}{}", reason(), (spec.hint)(resp.status)),
        },
    }
}

/// How a platform answers with a result code in a JSON body (DingTalk,
/// WeCom, Lark: `{"errcode": 0, "errmsg": "ok"}`, mostly with HTTP 200).
pub struct CodeSpec {
    pub prefix: &'static str,
    /// The code's name in reasons (`errcode 310000: …`).
    pub word: &'static str,
    /// Where the code is (first present wins), and its text.
    pub code_ptrs: &'static [&'static str],
    pub msg_ptrs: &'static [&'static str],
    /// Codes that mean "try again" whatever the status.
    pub transient: &'static [i64],
    pub hint: fn(i64) -> &'static str,
    /// The wait for a retry, given the code when there is one.
    pub after: fn(&HttpResponse, &Value, Option<i64>) -> Option<Duration>,
}

/// The `{"errcode", "errmsg"}` answer of DingTalk and WeCom robots, to
/// complete: `CodeSpec { prefix, transient, hint, after, ..kit::ERRCODE }`.
pub const ERRCODE: CodeSpec = CodeSpec {
    prefix: "",
    word: "errcode",
    code_ptrs: &["/errcode"],
    msg_ptrs: &["/errmsg"],
    transient: &[],
    hint: |_| "",
    after: |_, _, _| None,
};

/// Code 0 sent, a transient code or a retryable status retried, any other
/// code permanent; a 2xx without a code is unconfirmed (retried).
pub fn classify_code(resp: &HttpResponse, spec: &CodeSpec) -> Outcome {
    let body = json_body(resp);
    let code = spec
        .code_ptrs
        .iter()
        .find_map(|p| body.pointer(p)?.as_i64());
    let reason = || match code {
        Some(c) => {
            let msg = spec
                .msg_ptrs
                .iter()
                .find_map(|p| body.pointer(p)?.as_str())
                .unwrap_or("");
            format!(
                "{}: {} {c}: {}{}",
                spec.prefix,
                spec.word,
                clip(msg, 200),
                (spec.hint)(c)
            )
        }
        None => format!(
            "{}: {}",
            spec.prefix,
            Spec::plain(spec.prefix).describe(resp, &body)
        ),
    };
    if code.is_some_and(|c| spec.transient.contains(&c)) {
        return Outcome::Retry {
            reason: reason(),
            after: (spec.after)(resp, &body, code),
        };
    }
    match classify_status(resp) {
        Outcome::Sent { .. } => match code {
            Some(0) => Outcome::Sent { remote_id: None },
            Some(_) => Outcome::Permanent { reason: reason() },
            None => unreadable(spec.prefix, resp),
        },
        Outcome::Retry { .. } => Outcome::Retry {
            reason: reason(),
            after: (spec.after)(resp, &body, code),
        },
        Outcome::Permanent { .. } => Outcome::Permanent { reason: reason() },
    }
}

/// The answer's body as JSON (`Value::Null` when it is not JSON).
pub fn json_body(resp: &HttpResponse) -> Value {
    serde_json::from_slice(&resp.body).unwrap_or_default()
}

/// A string (or number: some platforms send numeric ids) at `ptr`.
pub fn id_at(body: &Value, ptr: &str) -> Option<String> {
    match body.pointer(ptr)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The first non-empty string at one of `ptrs`, cut to [`MAX_DETAIL`].
pub fn first_str(body: &Value, ptrs: &[&str]) -> Option<String> {
    ptrs.iter()
        .find_map(|p| body.pointer(p)?.as_str().filter(|s| !s.is_empty()))
        .map(|s| clip(s, MAX_DETAIL))
}

/// The strings at `ptrs` that are present and not empty, joined by
/// `": "` (`CODE: message`), cut to [`MAX_DETAIL`]; `None` when there are none.
pub fn joined(body: &Value, ptrs: &[&str]) -> Option<String> {
    let parts: Vec<&str> = ptrs
        .iter()
        .filter_map(|p| body.pointer(p)?.as_str().filter(|s| !s.is_empty()))
        .collect();
    (!parts.is_empty()).then(|| clip(&parts.join(": "), MAX_DETAIL))
}

/// An error answer the platform explained in `reason`: retried with
/// `after()` when `transient`, otherwise as its status says (408/429/5xx
/// retried with their `Retry-After`, the rest permanent).
pub fn explained(
    resp: &HttpResponse,
    reason: String,
    transient: bool,
    after: impl FnOnce() -> Option<Duration>,
) -> Outcome {
    if transient {
        return Outcome::Retry {
            reason,
            after: after(),
        };
    }
    match classify_status(resp) {
        Outcome::Retry { after, .. } => Outcome::Retry { reason, after },
        _ => Outcome::Permanent { reason },
    }
}

/// A 2xx whose body is not the platform's answer (a proxy's page): the
/// message may not have gone out, so it is retried.
pub fn unreadable(prefix: &str, resp: &HttpResponse) -> Outcome {
    Outcome::Retry {
        reason: format!("{prefix}: unreadable answer: {}", resp.body_snippet()),
        after: None,
    }
}

/// `o`'s reason (a retry's or a permanent failure's) rewritten by `edit`.
fn map_reason(o: Outcome, edit: impl FnOnce(String) -> String) -> Outcome {
    match o {
        Outcome::Retry { reason, after } => Outcome::Retry {
            reason: edit(reason),
            after,
        },
        Outcome::Permanent { reason } => Outcome::Permanent {
            reason: edit(reason),
        },
        sent => sent,
    }
}

/// `o` with `prefix: ` before its reason.
pub fn prefixed(prefix: &str, o: Outcome) -> Outcome {
    map_reason(o, |r| format!("{prefix}: {r}"))
}

/// `o` with `hint` after its reason when it is a permanent failure.
pub fn hinted(o: Outcome, hint: &str) -> Outcome {
    match o {
        Outcome::Permanent { reason } => Outcome::Permanent {
            reason: reason + hint,
        },
        o => o,
    }
}

/// `o` with each of `parts` (pieces of a secret webhook URL: a key, a
/// token, a signature) replaced in its reason: delivery's redactor knows
/// the whole URL, and a platform may quote one piece of it.
pub fn scrub(o: Outcome, parts: &[Secret]) -> Outcome {
    map_reason(o, |mut r| {
        for s in parts.iter().map(Secret::expose).filter(|s| s.len() >= 3) {
            r = r.replace(s, "[redacted]");
        }
        r
    })
}

/// `(container, message)` a remote id names: `CONTAINER/MESSAGE` as stored
/// from an answer that named both, or a bare message id in `default`.
pub fn split_id<'a>(remote_id: &'a str, default: &'a str) -> (&'a str, &'a str) {
    remote_id.split_once('/').unwrap_or((default, remote_id))
}

/// Exponential backoff with jitter (delivery retries, persistent-connection
/// reconnects): 1 s, 2 s, 4 s ... capped at 5 minutes,
/// each drawn from [50 %, 100 %] of the step so retries of many chats spread.
pub fn backoff(attempts: u32) -> Duration {
    const BASE_MS: u64 = 1_000;
    const MAX_MS: u64 = 5 * 60 * 1_000;
    let step = BASE_MS
        .saturating_mul(1u64 << attempts.saturating_sub(1).min(20))
        .min(MAX_MS);
    Duration::from_millis(step / 2 + fastrand::u64(0..=step / 2))
}

// ---- Text cutting: platform size limits ----

/// The first `max` characters of `s`.
pub fn clip(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// `text` cut to at most `max` bytes on a character boundary, with `…`.
pub fn truncate_bytes(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let ellipsis = '…';
    let mut end = max.saturating_sub(ellipsis.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ellipsis}", &text[..end])
}

/// The tag, entity or character at the start of `s` (for cutting HTML
/// without breaking markup).
pub fn html_token(s: &str) -> Option<&str> {
    let c = s.chars().next()?;
    if c == '<'
        && let Some(end) = s.find('>')
    {
        return Some(&s[..=end]);
    }
    if c == '&'
        && let Some((end, _)) = s.char_indices().take(12).find(|(_, c)| *c == ';')
        && end > 1
        && s[1..end]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '#')
    {
        return Some(&s[..=end]);
    }
    Some(&s[..c.len_utf8()])
}

/// Keeps `open`, the elements open so far, up to date with one token of
/// [`html_token`] (text, comments, `<x/>` and `void` elements leave it alone).
pub fn track_tag(token: &str, open: &mut Vec<String>, void: &[&str]) {
    if token.len() < 2 || !token.starts_with('<') || !token.ends_with('>') {
        return;
    }
    let inner = token.trim_start_matches('<').trim_end_matches('>').trim();
    if inner.ends_with('/') || inner.starts_with('!') {
        return;
    }
    let name = |s: &str| {
        s.split(|c: char| c.is_whitespace() || c == '/')
            .next()
            .unwrap_or("")
            .to_ascii_lowercase()
    };
    if let Some(closing) = inner.strip_prefix('/') {
        let n = name(closing.trim());
        if let Some(i) = open.iter().rposition(|o| *o == n) {
            open.truncate(i);
        }
    } else {
        let n = name(inner);
        if !n.is_empty() && !void.contains(&n.as_str()) {
            open.push(n);
        }
    }
}

// ---- Chat: a destination as its platform's facts ----

/// A destination as its platform's facts plus what only it knows (where
/// messages go, the request, the answer): every `Chat` is a [`Destination`]
/// whose `kind` is `KIND`.
pub trait Chat: Send + Sync + std::fmt::Debug {
    /// `REGISTRATION.kind`.
    const KIND: &'static str;
    /// Where messages go, for people (status page, explain): never a secret.
    const TARGET: &'static str = Self::KIND;
    const DIALECT: Dialect;
    /// [`Capabilities::ALL`] only when answers carry the message's id.
    const CAPS: Capabilities = Capabilities {
        thread: false,
        edit: false,
        delete: false,
    };
    /// The platform's limit for one chat (`None`: unlimited).
    const RATE: Option<Rate> = None;
    /// The message for chats that name no template (`None`: the dialect's).
    const TEMPLATE: Option<&'static str> = None;
    /// How answers map to outcomes: a [`Spec`] or a [`CodeSpec`] (by
    /// default the status alone, [`classify_status`]).
    const ANSWERS: &'static dyn Answers = &ByStatus;
    /// [`Destination::reads_context`].
    const READS_CONTEXT: bool = true;
    /// [`Destination::cards`]: the platform has a card format.
    const CARDS: bool = false;
    /// [`Destination::card_edits`]: a card, once sent, can be edited.
    const CARD_EDITS: bool = true;

    /// [`Chat::CARDS`], unless the chat's kind of address decides it.
    fn cards(&self) -> bool {
        Self::CARDS
    }
    /// [`Destination::check_card`]: a chat's own card within the platform's limits.
    fn check_card(&self, card: &Value) -> Result<(), String> {
        let _ = card;
        Ok(())
    }

    /// [`Chat::TARGET`], or more when the chat's ids are not secret.
    fn target(&self) -> String {
        Self::TARGET.into()
    }
    fn request(&self, msg: &Message<'_>) -> Outbound;
    /// [`Chat::ANSWERS`]; a platform's quirks go here, before it.
    fn classify(&self, resp: &HttpResponse) -> Outcome {
        Self::ANSWERS.classify(resp)
    }
    /// [`Chat::DIALECT`], unless a setting chooses it.
    fn dialect(&self) -> Dialect {
        Self::DIALECT
    }
    /// [`Chat::CAPS`], unless the chat's kind of address decides them.
    fn capabilities(&self) -> Capabilities {
        Self::CAPS
    }
    /// [`Chat::RATE`], unless the platform's limit depends on the chat.
    fn default_rate(&self) -> Option<Rate> {
        Self::RATE
    }
    /// [`Destination::chat_ids`].
    fn chat_ids(&self) -> Vec<String> {
        Vec::new()
    }
    /// [`Destination::probe`]: the platform's read-only checks, if any.
    fn probe(&self) -> super::probe::Probe {
        super::probe::Probe::none()
    }
}

/// A way of reading answers: [`classify_json`] for a [`Spec`],
/// [`classify_code`] for a [`CodeSpec`].
pub trait Answers: Sync {
    fn classify(&self, resp: &HttpResponse) -> Outcome;
}

/// Answers read by their status alone ([`classify_status`]).
pub struct ByStatus;

impl Answers for ByStatus {
    fn classify(&self, resp: &HttpResponse) -> Outcome {
        classify_status(resp)
    }
}

impl Answers for Spec {
    fn classify(&self, resp: &HttpResponse) -> Outcome {
        classify_json(resp, self)
    }
}

impl Answers for CodeSpec {
    fn classify(&self, resp: &HttpResponse) -> Outcome {
        classify_code(resp, self)
    }
}

impl<C: Chat> Destination for C {
    fn kind(&self) -> &'static str {
        C::KIND
    }
    fn dialect(&self) -> Dialect {
        Chat::dialect(self)
    }
    fn capabilities(&self) -> Capabilities {
        Chat::capabilities(self)
    }
    fn target(&self) -> String {
        Chat::target(self)
    }
    fn default_template(&self) -> Option<&'static str> {
        C::TEMPLATE
    }
    fn default_rate(&self) -> Option<Rate> {
        Chat::default_rate(self)
    }
    fn request(&self, msg: &Message<'_>) -> Outbound {
        Chat::request(self, msg)
    }
    fn reads_context(&self) -> bool {
        C::READS_CONTEXT
    }
    fn cards(&self) -> bool {
        Chat::cards(self)
    }
    fn check_card(&self, card: &Value) -> Result<(), String> {
        Chat::check_card(self, card)
    }
    fn card_edits(&self) -> bool {
        C::CARD_EDITS
    }
    fn classify(&self, resp: &HttpResponse) -> Outcome {
        Chat::classify(self, resp)
    }
    fn chat_ids(&self) -> Vec<String> {
        Chat::chat_ids(self)
    }
    fn probe(&self) -> super::probe::Probe {
        Chat::probe(self)
    }
}

/// The opening of every `check_card`: a chat's own card is an object
/// whose keys are all in `keys` (the look of the message, never where it
/// goes). `what` names it (`"a slack card"`), `shape` says what it holds.
pub fn card_object<'a>(
    card: &'a Value,
    what: &str,
    shape: &str,
    keys: &[&str],
) -> Result<&'a serde_json::Map<String, Value>, String> {
    let obj = (card.as_object()).ok_or_else(|| format!("{what} is an object with {shape}"))?;
    match obj.keys().find(|k| !keys.contains(&k.as_str())) {
        Some(key) => Err(format!(
            "`{key}` is not part of {what} ({})",
            keys.join(", ")
        )),
        None => Ok(obj),
    }
}

/// A card field's length (`None`: absent) within `max` characters, or
/// which field is too long (`at`, a JSON pointer): for `check_card`.
pub fn ensure_len(at: &str, chars: Option<usize>, max: usize) -> Result<(), String> {
    match chars {
        Some(n) if n > max => Err(format!("{at} has {n} characters; at most {max}")),
        _ => Ok(()),
    }
}

/// `Capabilities::ALL` when the platform's answers carry the message's id
/// (threads, edits and deletes need it), none otherwise (a webhook's `ok`).
pub fn capabilities_if(answers_ids: bool) -> Capabilities {
    if answers_ids {
        Capabilities::ALL
    } else {
        Capabilities::default()
    }
}

/// Markdown when a provider's `markdown` setting is on, else plain text.
pub fn markdown_if(markdown: bool) -> Dialect {
    if markdown {
        Dialect::Markdown
    } else {
        Dialect::Plain
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resp(status: u16, body: &str) -> HttpResponse {
        crate::providers::http::tests::resp(status, &[], body)
    }

    const SPEC: Spec = Spec {
        prefix: "p",
        id_ptr: Some("/result/id"),
        error: |_, b| first_str(b, &["/message", "/errors/0"]),
        sep: ": ",
        hint: |s| if s == 404 { " (check the room)" } else { "" },
    };

    #[test]
    fn json_answers_map_to_outcomes() {
        let ok = classify_json(&resp(200, r#"{"result":{"id":42}}"#), &SPEC);
        assert_eq!(
            ok,
            Outcome::Sent {
                remote_id: Some("42".into())
            }
        );
        assert_eq!(
            classify_json(&resp(404, r#"{"errors":["gone"]}"#), &SPEC),
            Outcome::Permanent {
                reason: "p: HTTP 404: gone (check the room)".into()
            }
        );
        assert_eq!(
            classify_json(&resp(503, "down"), &SPEC),
            Outcome::Retry {
                reason: "p: HTTP 503: down".into(),
                after: None
            }
        );
        assert_eq!(
            classify_json(&resp(400, ""), &Spec::plain("q")),
            Outcome::Permanent {
                reason: "q: HTTP 400".into()
            }
        );
    }

    #[test]
    fn detail_helpers() {
        let b = json!({"e": {"code": "NOT_FOUND", "message": "", "m": "x"}});
        assert_eq!(
            joined(&b, &["/e/code", "/e/message", "/e/m"]).as_deref(),
            Some("NOT_FOUND: x")
        );
        assert_eq!(joined(&b, &["/nope"]), None);
        let long = json!({"m": "y".repeat(1000)});
        assert_eq!(first_str(&long, &["/m"]).map(|s| s.len()), Some(MAX_DETAIL));
    }

    #[test]
    fn code_answers_map_to_outcomes() {
        const CODES: CodeSpec = CodeSpec {
            prefix: "c",
            word: "errcode",
            code_ptrs: &["/errcode"],
            msg_ptrs: &["/errmsg"],
            transient: &[7],
            hint: |c| if c == 9 { " (hint)" } else { "" },
            after: |_, _, c| (c == Some(7)).then_some(Duration::from_secs(60)),
        };
        let c = |status, body| classify_code(&resp(status, body), &CODES);
        assert_eq!(
            c(200, r#"{"errcode":0}"#),
            Outcome::Sent { remote_id: None }
        );
        assert_eq!(
            c(200, r#"{"errcode":9,"errmsg":"bad"}"#),
            Outcome::Permanent {
                reason: "c: errcode 9: bad (hint)".into()
            }
        );
        assert_eq!(
            c(200, r#"{"errcode":7}"#),
            Outcome::Retry {
                reason: "c: errcode 7: ".into(),
                after: Some(Duration::from_secs(60))
            }
        );
        assert!(matches!(
            c(200, "<html>"),
            Outcome::Retry { after: None, .. }
        ));
        assert_eq!(
            c(404, "no"),
            Outcome::Permanent {
                reason: "c: HTTP 404: no".into()
            }
        );
    }

    #[test]
    fn truncate_bytes_cuts_on_a_char_boundary() {
        assert_eq!(truncate_bytes("abc", 3), "abc");
        assert_eq!(truncate_bytes("ééé", 5), "é…");
        assert_eq!(truncate_bytes("abcdéf", 6), "abc…");
    }
}
