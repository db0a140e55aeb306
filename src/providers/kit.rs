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

// ---- kit additions, group C (telegram, discord, mattermost, slack, rocketchat) ----
// (keep additions inside this section until the groups are merged)

// ---- kit additions, group D (irc, xmpp, smtp, persistent) ----
// (keep additions inside this section until the groups are merged)

/// Reports `msg` at `span` unless `cond`, clearing `ok` (settings checks go
/// on after a failure, to report every problem at once).
pub fn ensure(
    cx: &mut Ctx<'_>,
    ok: &mut bool,
    cond: bool,
    span: Option<Range<usize>>,
    msg: impl Into<String>,
) {
    if !cond {
        cx.error(span, msg);
        *ok = false;
    }
}

/// The trimmed text of `v`; "`field` why" is reported at it when `check` refuses it.
pub fn checked(
    cx: &mut Ctx<'_>,
    ok: &mut bool,
    field: &str,
    v: &serde_spanned::Spanned<String>,
    check: impl Fn(&str) -> Result<(), &'static str>,
) -> String {
    let s = v.get_ref().trim().to_string();
    if let Err(why) = check(&s) {
        ensure(cx, ok, false, Some(v.span()), format!("`{field}` {why}"));
    }
    s
}

/// A `server` that is a host name or address only (`msg` otherwise), as
/// the socket providers take it; `${VAR}`s are expanded.
pub fn host(
    cx: &mut Ctx<'_>,
    ok: &mut bool,
    v: &serde_spanned::Spanned<String>,
    msg: &str,
) -> Option<String> {
    let h = cx.string(v)?.expose().trim().to_string();
    let valid = h.contains("${") || super::persistent::valid_host(&h);
    ensure(cx, ok, valid, Some(v.span()), msg);
    Some(h)
}

/// A message for a provider that speaks its own protocol, shown to
/// `explain` as `{"method", "url", "headers", "body"}`.
pub fn native(
    [method, url, body]: [&str; 3],
    headers: Value,
    payload: Value,
    sender: Arc<dyn super::NativeSender>,
) -> super::Outbound {
    let shown = serde_json::json!({"method": method, "url": url, "headers": headers, "body": body});
    super::Outbound::Native(super::NativeMessage {
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
