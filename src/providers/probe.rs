//! Read-only checks of a chat's platform (`discourse-relay doctor`): a
//! [`Probe`] is what a destination knows how to ask without posting, as a
//! list of HTTP [`Step`]s (a request and a judge of its answer) or a native
//! check for platforms with their own protocol. Pure: the runner (`doctor`)
//! sends the requests through delivery's sender, so TLS, timeouts and the
//! answer's size cap are the delivery path's.
//!
//! A probe must never post, edit or delete anything: every step is a GET or a
//! platform method documented as read-only (Slack `auth.test`). Judges quote
//! the platform's own words; the runner redacts them like any reason.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use super::http::{HttpRequest, HttpResponse};
use super::kit;
use crate::config::env::Secret;

/// How a check came out. `Info` is for "nothing could be checked": it
/// neither passes nor fails a deploy gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Info,
    Pass,
    Warn,
    Fail,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Info => "INFO",
            Verdict::Pass => "PASS",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        }
    }
}

/// One judged answer: the verdict, what the platform said (its words), and
/// what to do about it (empty when nothing needs doing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    pub verdict: Verdict,
    pub answer: String,
    pub hint: String,
}

impl Judgement {
    pub fn pass(answer: impl Into<String>) -> Self {
        Self::new(Verdict::Pass, answer, "")
    }
    pub fn warn(answer: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::new(Verdict::Warn, answer, hint)
    }
    pub fn fail(answer: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::new(Verdict::Fail, answer, hint)
    }
    pub fn new(verdict: Verdict, answer: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            verdict,
            answer: answer.into(),
            hint: hint.into(),
        }
    }
}

/// A judge of one step's answer.
pub type Judge = Box<dyn Fn(&HttpResponse) -> Judgement + Send + Sync>;

/// One read-only request and how to read its answer.
pub struct Step {
    /// What is checked, for people (`auth.test`, `the room is joined`).
    pub what: String,
    pub request: HttpRequest,
    pub judge: Judge,
}

impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Step").field("what", &self.what).finish()
    }
}

/// The result of a native check, per thing checked.
#[derive(Debug, Clone)]
pub struct NativeCheck {
    pub what: String,
    pub judgement: Judgement,
}

/// A check over a platform's own protocol (IRC, XMPP, SMTP): connect,
/// authenticate, leave; nothing sent to the room.
pub trait NativeProbe: Send + Sync {
    fn run(&self) -> Pin<Box<dyn Future<Output = Vec<NativeCheck>> + Send + '_>>;
}

/// What `doctor` can check of one chat.
pub enum Probe {
    /// Nothing can be checked without posting (an incoming webhook): why.
    Nothing(String),
    /// Requests in order; the runner stops at the first failure (later steps
    /// assume the earlier ones passed, e.g. a working token).
    Http(Vec<Step>),
    Native(Arc<dyn NativeProbe>),
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Probe::Nothing(why) => f.debug_tuple("Nothing").field(why).finish(),
            Probe::Http(steps) => f.debug_tuple("Http").field(steps).finish(),
            Probe::Native(_) => f.write_str("Native"),
        }
    }
}

/// The default for a platform without a read-only check.
pub const NO_CHECK: &str = "no read-only check exists for this platform; nothing was sent";

impl Probe {
    /// [`NO_CHECK`].
    pub fn none() -> Self {
        Probe::Nothing(NO_CHECK.into())
    }

    /// An incoming webhook: its URL is the credential and only a post would use it.
    pub fn webhook() -> Self {
        Probe::Nothing(
            "an incoming webhook: nothing can be checked without posting; nothing was sent".into(),
        )
    }
}

/// A step: `request` (a GET, or a documented read-only method) judged by `judge`.
pub fn step(
    what: impl Into<String>,
    request: HttpRequest,
    judge: impl Fn(&HttpResponse) -> Judgement + Send + Sync + 'static,
) -> Step {
    Step {
        what: what.into(),
        request,
        judge: Box::new(judge),
    }
}

/// `url` with `param=value` added to its query (`value` encoded).
pub fn query(url: &str, param: &str, value: &str) -> Secret {
    let sep = if url.contains('?') { '&' } else { '?' };
    let value = super::http::path_segment(value);
    Secret::new(format!("{url}{sep}{param}={value}"))
}

/// The answer's body as JSON (`Null` when it is not JSON).
pub fn body(resp: &HttpResponse) -> Value {
    kit::json_body(resp)
}

/// `HTTP n: start of the body`, for answers no judge understood.
pub fn status_text(resp: &HttpResponse) -> String {
    let snippet = resp.body_snippet();
    if snippet.is_empty() {
        format!("HTTP {}", resp.status)
    } else {
        format!("HTTP {}: {snippet}", resp.status)
    }
}

/// The usual reading of a REST API's answer: 2xx passes with `ok`'s words
/// (from the JSON body), 401/403 fail with `auth_hint`, 404 fails with
/// `missing_hint`, 429/5xx warn (the platform is busy, not wrong), other
/// answers fail with `HTTP n: error` (`error` finds the platform's words).
pub fn rest(
    resp: &HttpResponse,
    ok: impl FnOnce(&Value) -> Judgement,
    error: fn(&Value) -> Option<String>,
    auth_hint: &str,
    missing_hint: &str,
) -> Judgement {
    let b = body(resp);
    let said = || match error(&b) {
        Some(e) => format!("HTTP {}: {e}", resp.status),
        None => status_text(resp),
    };
    match resp.status {
        200..=299 => ok(&b),
        401 | 403 => Judgement::fail(said(), auth_hint),
        404 => Judgement::fail(said(), missing_hint),
        408 | 429 | 500..=599 => Judgement::warn(
            said(),
            "the platform is busy or down: run doctor again later",
        ),
        _ => Judgement::fail(said(), ""),
    }
}

/// The string at `ptr` in `v`, or `?`.
pub fn text<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("?")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, body: &str) -> HttpResponse {
        crate::providers::http::tests::resp(status, &[], body)
    }

    #[test]
    fn rest_reads_statuses() {
        let err = |b: &Value| kit::first_str(b, &["/message"]);
        let ok = |_: &Value| Judgement::pass("fine");
        assert_eq!(
            rest(&resp(200, "{}"), ok, err, "a", "m").verdict,
            Verdict::Pass
        );
        let bad = rest(
            &resp(401, r#"{"message":"nope"}"#),
            ok,
            err,
            "check the token",
            "m",
        );
        assert_eq!(bad, Judgement::fail("HTTP 401: nope", "check the token"));
        assert_eq!(rest(&resp(404, ""), ok, err, "a", "m").hint, "m");
        assert_eq!(
            rest(&resp(503, "x"), ok, err, "a", "m").verdict,
            Verdict::Warn
        );
    }

    #[test]
    fn query_encodes_the_value() {
        assert_eq!(
            query("http://x/a", "stream", "a b&c").expose(),
            "http://x/a?stream=a%20b%26c"
        );
        assert_eq!(
            query("http://x/a?k=1", "s", "v").expose(),
            "http://x/a?k=1&s=v"
        );
    }
}
