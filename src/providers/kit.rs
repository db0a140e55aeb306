//! What HTTP providers share beyond the request and response types: the
//! two answer shapes chat APIs use (an HTTP status with a JSON error
//! envelope; or 200 with a result code in the body), described once per
//! platform as a [`Spec`] or [`CodeSpec`] and classified here, plus small
//! text helpers for platform size limits.
//!
//! Reasons are built from the platform's own words, cut short; secrets are
//! redacted later, for every provider, by delivery (`send::redact_outcome`).

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;
use toml_edit::Item;

use super::http::{HttpResponse, classify_status};
use super::{Destination, Instance, Outcome, Registration, schema_of};
use crate::config::de::Ctx;
use crate::config::env::Secret;

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

pub fn no_hint(_: u16) -> &'static str {
    ""
}

/// The answer classified by its status ([`classify_status`]): the id from
/// `id_ptr` when sent, `prefix: HTTP n: error` otherwise, with the hint on
/// permanent failures.
pub fn classify_json(resp: &HttpResponse, spec: &Spec) -> Outcome {
    let body: Value = serde_json::from_slice(&resp.body).unwrap_or_default();
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

/// The first `max` characters of `s`.
pub fn clip(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
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

/// Code 0 sent, a transient code or a retryable status retried, any other
/// code permanent; a 2xx without a code is unconfirmed (retried).
pub fn classify_code(resp: &HttpResponse, spec: &CodeSpec) -> Outcome {
    let body: Value = serde_json::from_slice(&resp.body).unwrap_or_default();
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
            None => Outcome::Retry {
                reason: format!(
                    "{}: unreadable answer: {}",
                    spec.prefix,
                    resp.body_snippet()
                ),
                after: None,
            },
        },
        Outcome::Retry { .. } => Outcome::Retry {
            reason: reason(),
            after: (spec.after)(resp, &body, code),
        },
        Outcome::Permanent { .. } => Outcome::Permanent { reason: reason() },
    }
}

/// `o` with each of `parts` (pieces of a secret webhook URL: a key, a
/// token, a signature) replaced in its reason: delivery's redactor knows
/// the whole URL, and a platform may quote one piece of it.
pub fn scrub(o: Outcome, parts: &[Secret]) -> Outcome {
    let clean = |mut r: String| {
        for s in parts.iter().map(Secret::expose).filter(|s| s.len() >= 3) {
            r = r.replace(s, "[redacted]");
        }
        r
    };
    match o {
        Outcome::Retry { reason, after } => Outcome::Retry {
            reason: clean(reason),
            after,
        },
        Outcome::Permanent { reason } => Outcome::Permanent {
            reason: clean(reason),
        },
        sent => sent,
    }
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

/// A provider as its platform's facts: what `[providers.NAME]` sets, what
/// a chat sets, and how a chat becomes a destination. [`registration`]
/// does the reading (every problem located) and the schemas.
pub trait Provider: std::fmt::Debug + Send + Sync + Sized + 'static {
    type Settings: DeserializeOwned + JsonSchema;
    type Target: DeserializeOwned + JsonSchema;
    /// The instance from its settings (`None`: a problem was reported).
    fn new(s: Self::Settings, cx: &mut Ctx<'_>) -> Option<Self>;
    /// One chat's destination; `chat` locates "missing field" problems.
    fn bind_target(
        self: Arc<Self>,
        t: Self::Target,
        chat: Option<Range<usize>>,
        cx: &mut Ctx<'_>,
    ) -> Option<Box<dyn Destination>>;
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
    Some(Arc::new(P::new(s, cx)?))
}

impl<P: Provider> Instance for P {
    fn bind(
        self: Arc<Self>,
        target: &Item,
        chat: Option<Range<usize>>,
        cx: &mut Ctx<'_>,
    ) -> Option<Box<dyn Destination>> {
        let t = cx.deserialize::<P::Target>(target)?;
        self.bind_target(t, chat, cx)
    }
}

/// Settings of a provider that has none (each chat names its own webhook).
#[derive(Debug, serde::Deserialize, JsonSchema)]
pub struct NoSettings {}

// ---- kit additions, group A (hipchat, pushover, gotify, ntfy) ----
// (keep additions inside this section until the groups are merged)

// ---- kit additions, group B (zulip, matrix, gitter, mastodon, messenger) ----
// (keep additions inside this section until the groups are merged)

/// A [`Provider`] whose `[providers.NAME]` table, once it sets anything,
/// must set every required key. An empty table (a chat naming the kind
/// directly) is not an error: each chat that needs the keys says so.
pub trait Complete: Provider {
    /// The problem of a table that lacks a required key ([`needs`]).
    fn incomplete(&self) -> Option<String>;
}

/// [`registration`] for a [`Complete`] provider.
pub const fn registration_complete<P: Complete>(
    kind: &'static str,
    about: &'static str,
) -> Registration {
    Registration {
        parse: parse_complete::<P>,
        ..registration::<P>(kind, about)
    }
}

fn parse_complete<P: Complete>(item: &Item, cx: &mut Ctx<'_>) -> Option<Arc<dyn Instance>> {
    let s = cx.deserialize::<P::Settings>(item)?;
    complete(item, P::new(s, cx)?, cx)
}

/// `p`, unless `item` sets something and `p` is incomplete (reported at
/// the table).
pub fn complete<P: Complete>(item: &Item, p: P, cx: &mut Ctx<'_>) -> Option<Arc<dyn Instance>> {
    if item.as_table_like().is_some_and(|t| !t.is_empty())
        && let Some(problem) = p.incomplete()
    {
        cx.error(item.span(), problem);
        return None;
    }
    Some(Arc::new(p))
}

/// `a {kind} provider needs A{sep}B`, naming the keys flagged missing;
/// `None` when none is.
pub fn needs(kind: &str, sep: &str, keys: &[(bool, &str)]) -> Option<String> {
    let missing: Vec<&str> = keys.iter().filter(|(m, _)| *m).map(|(_, k)| *k).collect();
    (!missing.is_empty()).then(|| format!("a {kind} provider needs {}", missing.join(sep)))
}

/// The problem of a chat whose provider lacks `what` (a bare
/// `provider = "kind"`, or an empty table).
pub fn chat_needs(kind: &str, what: &str) -> String {
    format!("a {kind} chat needs {what} on a [providers.NAME] table with kind = \"{kind}\"")
}

/// Reports `problem` at `span` and gives `None`: `return kit::refuse(…)`.
pub fn refuse<T>(
    cx: &mut Ctx<'_>,
    span: Option<Range<usize>>,
    problem: impl Into<String>,
) -> Option<T> {
    cx.error(span, problem);
    None
}

/// An optional API base URL ([`Ctx::base_url`]): `Some(None)` when it is
/// not set, `None` when it is set but wrong (reported).
pub fn opt_base_url(
    cx: &mut Ctx<'_>,
    field: &str,
    v: &Option<serde_spanned::Spanned<String>>,
) -> Option<Option<String>> {
    match v {
        Some(_) => cx.base_url(field, v, "").map(Some),
        None => Some(None),
    }
}

/// The body as JSON (`Value::Null` when it is not JSON).
pub fn json_body(resp: &HttpResponse) -> Value {
    serde_json::from_slice(&resp.body).unwrap_or_default()
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

/// `o` with `prefix: ` before its reason.
pub fn prefixed(prefix: &str, o: Outcome) -> Outcome {
    match o {
        Outcome::Retry { reason, after } => Outcome::Retry {
            reason: format!("{prefix}: {reason}"),
            after,
        },
        Outcome::Permanent { reason } => Outcome::Permanent {
            reason: format!("{prefix}: {reason}"),
        },
        sent => sent,
    }
}

/// A key that names one message for a platform's deduplication (Matrix
/// transaction ids, Mastodon's `Idempotency-Key`): the SHA-256, in hex, of
/// `[tag, chat, event, topic id, post id, rest…]` as JSON.
pub fn message_key(tag: &str, msg: &super::Message<'_>, rest: &[&Value]) -> String {
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

// ---- kit additions, group C (telegram, discord, mattermost, slack, rocketchat) ----
// (keep additions inside this section until the groups are merged)

// ---- kit additions, group D (irc, xmpp, smtp, persistent) ----
// (keep additions inside this section until the groups are merged)

// ---- kit additions, group E (dingtalk, lark, wecom, googlechat, teams, groupme, webex, webhook, console) ----
// (keep additions inside this section until the groups are merged)

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resp(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        }
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
