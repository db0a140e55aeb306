//! The HTTP request a destination builds and the response it classifies,
//! plus the classification shared by every HTTP platform (Alertmanager's
//! rules: 2xx sent, 429/408/5xx retry, other 4xx permanent).

use std::time::{Duration, SystemTime};

use serde_json::json;

use crate::config::env::{Redactor, Secret};

/// An exact request. The URL and header values may hold secrets (tokens in
/// paths, `Authorization`), so they are [`Secret`]s; some platforms also
/// want keys in the body, so `Debug` shows only the body's length.
#[derive(Clone)]
pub struct HttpRequest {
    pub method: &'static str,
    pub url: Secret,
    pub headers: Vec<(String, Secret)>,
    pub body: String,
}

impl std::fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &self.headers)
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

impl HttpRequest {
    /// A JSON POST. `body` is a `serde_json::Value` or, where a request is
    /// built per delivery, a borrowed struct (one allocation, no copies).
    pub fn post_json(url: &Secret, body: &impl serde::Serialize) -> Self {
        Self {
            method: "POST",
            url: url.clone(),
            headers: vec![(
                "Content-Type".into(),
                Secret::new("application/json; charset=utf-8"),
            )],
            // Values and plain structs of strings always serialize.
            body: serde_json::to_string(body).unwrap_or_default(),
        }
    }

    /// A JSON request with another method (`PUT`, `PATCH`...).
    pub fn json(method: &'static str, url: &Secret, body: &impl serde::Serialize) -> Self {
        Self {
            method,
            ..Self::post_json(url, body)
        }
    }

    pub fn put_json(url: &Secret, body: &impl serde::Serialize) -> Self {
        Self::json("PUT", url, body)
    }

    pub fn patch_json(url: &Secret, body: &impl serde::Serialize) -> Self {
        Self::json("PATCH", url, body)
    }

    /// A `GET` that asks for JSON (`doctor`'s read-only checks).
    pub fn get(url: Secret) -> Self {
        Self {
            method: "GET",
            url,
            headers: vec![("Accept".into(), Secret::new("application/json"))],
            body: String::new(),
        }
    }

    /// A `DELETE` without a body.
    pub fn delete(url: Secret) -> Self {
        Self {
            method: "DELETE",
            url,
            headers: vec![],
            body: String::new(),
        }
    }

    /// A form-encoded request; `body` from `url::form_urlencoded::Serializer`.
    pub fn form(method: &'static str, url: Secret, body: String) -> Self {
        Self {
            method,
            url,
            headers: vec![(
                "Content-Type".into(),
                Secret::new("application/x-www-form-urlencoded"),
            )],
            body,
        }
    }

    /// `Authorization: Bearer {token}`.
    pub fn bearer(self, token: &Secret) -> Self {
        self.header(
            "Authorization",
            Secret::new(format!("Bearer {}", token.expose())),
        )
    }

    pub fn header(mut self, name: &str, value: Secret) -> Self {
        self.headers.push((name.to_string(), value));
        self
    }

    pub fn redacted_json(&self, redactor: &Redactor) -> serde_json::Value {
        let headers: serde_json::Map<String, serde_json::Value> = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), json!(redactor.redact(v.expose()))))
            .collect();
        json!({
            "method": self.method,
            "url": redactor.redact(self.url.expose()),
            "headers": headers,
            "body": redactor.redact(&self.body),
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `Retry-After` (delay-seconds or an HTTP date), as [`retry_hint::header`]
    /// reads it.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after_at(SystemTime::now())
    }

    /// [`Self::retry_after`] with the clock pinned (HTTP dates are relative).
    pub fn retry_after_at(&self, now: SystemTime) -> Option<Duration> {
        retry_hint::header(self.header("Retry-After")?, now)
    }

    /// The start of the body as one line of text, for error reasons
    /// (control characters become spaces; only the start is decoded).
    pub fn body_snippet(&self) -> String {
        const CHARS: usize = 200;
        let start = self
            .body
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(self.body.len());
        let rest = &self.body[start..];
        // 4 bytes per char at most: the rest of a large body is not decoded.
        let head = &rest[..rest.len().min(CHARS * 4 + 4)];
        let text = String::from_utf8_lossy(head);
        let text = text.trim();
        let mut out: String = text
            .chars()
            .take(CHARS)
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let more = rest[head.len()..].iter().any(|b| !b.is_ascii_whitespace());
        if text.chars().count() > CHARS || more {
            out.push('…');
        }
        out
    }
}

/// `text` cut so that its characters' `cost` fits `budget`, ending in `…`,
/// at a word boundary when one is near (platform size limits).
pub fn fit(text: &str, budget: usize, cost: impl Fn(char) -> usize) -> String {
    if text.chars().map(&cost).sum::<usize>() <= budget {
        return text.to_string();
    }
    let room = budget.saturating_sub(cost('…'));
    let mut used = 0;
    let mut end = 0;
    for (i, c) in text.char_indices() {
        used += cost(c);
        if used > room {
            break;
        }
        end = i + c.len_utf8();
    }
    let head = &text[..end];
    let cut = if text[end..].starts_with(char::is_whitespace) {
        head
    } else {
        match head.rfind(char::is_whitespace) {
            Some(i) if !head[..i].trim_end().is_empty() => &head[..i],
            _ => head,
        }
    };
    format!("{}…", cut.trim_end())
}

/// Everything but RFC 3986 unreserved characters (`A-Z a-z 0-9 - . _ ~`).
pub const NOT_UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `s` as one URL path segment: everything but RFC 3986 unreserved
/// characters percent-encoded, so a stored message id cannot add path
/// segments, a query or a fragment to the platform's URL.
pub fn path_segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, NOT_UNRESERVED).to_string()
}

/// `{base}/{id}` with `id` as one path segment (a message's URL).
pub fn id_url(base: &str, id: &str) -> Secret {
    Secret::new(format!("{base}/{}", path_segment(id)))
}

/// The status-code classification every HTTP provider starts from.
pub fn classify_status(resp: &HttpResponse) -> super::Outcome {
    use super::Outcome;
    let reason = || {
        let snippet = resp.body_snippet();
        if snippet.is_empty() {
            format!("HTTP {}", resp.status)
        } else {
            format!("HTTP {}: {snippet}", resp.status)
        }
    };
    match resp.status {
        200..=299 => Outcome::Sent { remote_id: None },
        408 | 429 | 500..=599 => Outcome::Retry {
            reason: reason(),
            after: resp.retry_after(),
        },
        _ => Outcome::Permanent { reason: reason() },
    }
}

/// The longest wait a platform's retry hint may impose. A longer hint is
/// cut to this: a broken or hostile answer (`retry_after: 1e300`) must
/// neither panic nor park a chat for days, and the worker's own backoff and
/// `max_age` still decide when to give up.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60 * 60);

/// Every retry hint a platform sends, read in one place: header or body;
/// seconds, milliseconds, HTTP dates, reset times. A hint is either a
/// `Duration` of at most [`MAX_RETRY_AFTER`] or no hint (`None`: the
/// worker's backoff applies). Negative, NaN, infinite and non-numeric
/// values are no hint; values are clamped *before* a `Duration` is built
/// (`Duration::from_secs_f64` panics on overflow).
pub mod retry_hint {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use super::MAX_RETRY_AFTER;

    /// A wait in (fractional) seconds.
    pub fn secs(s: f64) -> Option<Duration> {
        (s.is_finite() && s >= 0.0)
            .then(|| Duration::from_secs_f64(s.min(MAX_RETRY_AFTER.as_secs_f64())))
    }

    /// A wait in whole seconds.
    pub fn secs_u64(s: u64) -> Duration {
        Duration::from_secs(s.min(MAX_RETRY_AFTER.as_secs()))
    }

    /// A wait in whole milliseconds.
    pub fn millis_u64(ms: u64) -> Duration {
        let cap = u64::try_from(MAX_RETRY_AFTER.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(ms.min(cap))
    }

    /// A wait in seconds written as text (`"7"`, `" 1.5 "`).
    pub fn text_secs(s: &str) -> Option<Duration> {
        let s = s.trim();
        match s.parse::<u64>() {
            Ok(n) => Some(secs_u64(n)),
            Err(_) => secs(s.parse().ok()?),
        }
    }

    /// A JSON number of seconds, or a string holding one.
    pub fn json_secs(v: &serde_json::Value) -> Option<Duration> {
        match v {
            serde_json::Value::Number(n) => match n.as_u64() {
                Some(n) => Some(secs_u64(n)),
                None => secs(n.as_f64()?),
            },
            serde_json::Value::String(s) => text_secs(s),
            _ => None,
        }
    }

    /// A JSON number of milliseconds, or a string holding one.
    pub fn json_millis(v: &serde_json::Value) -> Option<Duration> {
        let ms = match v {
            serde_json::Value::Number(n) => match n.as_u64() {
                Some(n) => return Some(millis_u64(n)),
                None => n.as_f64()?,
            },
            serde_json::Value::String(s) => match s.trim().parse::<u64>() {
                Ok(n) => return Some(millis_u64(n)),
                Err(_) => s.trim().parse().ok()?,
            },
            _ => return None,
        };
        secs(ms / 1000.0)
    }

    /// A `Retry-After` value (RFC 9110 §10.2.3): delay-seconds, or an HTTP
    /// date (a date in the past means now). Chat APIs also send fractions.
    pub fn header(value: &str, now: SystemTime) -> Option<Duration> {
        let value = value.trim();
        if let Some(d) = text_secs(value) {
            return Some(d);
        }
        // A number that is not a valid wait ("-5", "NaN") is not a date either.
        if value.parse::<f64>().is_ok() {
            return None;
        }
        let at = httpdate::parse_http_date(value).ok()?;
        Some(match at.duration_since(now) {
            Ok(d) => d.min(MAX_RETRY_AFTER),
            Err(_) => Duration::ZERO,
        })
    }

    /// The wait until a reset at Unix time `at` (seconds), from `now`; a
    /// reset in the past means now.
    pub fn until_unix_secs(at: i64, now: i64) -> Duration {
        secs_u64(u64::try_from(at.saturating_sub(now)).unwrap_or(0))
    }

    /// [`until_unix_secs`] in milliseconds.
    pub fn until_unix_millis(at: i64, now: i64) -> Duration {
        millis_u64(u64::try_from(at.saturating_sub(now)).unwrap_or(0))
    }

    /// Seconds since the Unix epoch now (0 before it).
    pub fn now_unix_secs() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    }
}

/// Milliseconds since the Unix epoch, for request signatures (DingTalk,
/// Lark); a plain `fn` so tests can pin it.
pub(crate) type Clock = fn() -> u64;

pub(crate) fn system_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::Outcome;
    use super::*;

    /// An answer, for classification tests.
    pub(crate) fn resp(status: u16, headers: &[(&str, &str)], body: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn status_classes() {
        assert_eq!(
            classify_status(&resp(204, &[], "")),
            Outcome::Sent { remote_id: None }
        );
        assert_eq!(
            classify_status(&resp(429, &[("retry-after", "7")], "slow down")),
            Outcome::Retry {
                reason: "HTTP 429: slow down".into(),
                after: Some(Duration::from_secs(7))
            }
        );
        assert!(matches!(
            classify_status(&resp(503, &[], "")),
            Outcome::Retry { after: None, .. }
        ));
        assert_eq!(
            classify_status(&resp(404, &[], "no_service")),
            Outcome::Permanent {
                reason: "HTTP 404: no_service".into()
            }
        );
    }

    /// Every hint form, hostile values included: no panic, never above the
    /// cap, and what is not a wait is no hint.
    #[test]
    fn retry_hints_are_clamped_before_they_become_durations() {
        use serde_json::json;
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        let h = |v: &str| retry_hint::header(v, now);
        assert_eq!(h("7"), Some(Duration::from_secs(7)));
        assert_eq!(h(" 1.5 "), Some(Duration::from_millis(1500)));
        assert_eq!(h("0"), Some(Duration::ZERO));
        for huge in [
            "1e300",
            "18446744073709551616",
            "99999999999999999999999999",
        ] {
            assert_eq!(h(huge), Some(MAX_RETRY_AFTER), "{huge}");
        }
        for bad in [
            "-5", "-0.5", "NaN", "inf", "-inf", "infinity", "abc", "", "1 2", "0x10",
        ] {
            assert_eq!(h(bad), None, "{bad:?}");
        }
        // HTTP dates (all three forms of RFC 9110): relative to `now`.
        assert_eq!(
            h("Sun, 06 Nov 1994 08:50:37 GMT"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            h("Sunday, 06-Nov-94 08:49:47 GMT"),
            Some(Duration::from_secs(10))
        );
        assert_eq!(h("Sun Nov  6 08:49:57 1994"), Some(Duration::from_secs(20)));
        assert_eq!(h("Thu, 01 Jan 1970 00:00:00 GMT"), Some(Duration::ZERO));
        assert_eq!(h("Fri, 31 Dec 9999 23:59:59 GMT"), Some(MAX_RETRY_AFTER));

        assert_eq!(retry_hint::secs(1e300), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_hint::secs(f64::MAX), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_hint::secs(f64::NAN), None);
        assert_eq!(retry_hint::secs(f64::INFINITY), None);
        assert_eq!(retry_hint::secs(-1.0), None);
        assert_eq!(retry_hint::json_secs(&json!(1e300)), Some(MAX_RETRY_AFTER));
        assert_eq!(
            retry_hint::json_secs(&json!(31)),
            Some(Duration::from_secs(31))
        );
        assert_eq!(
            retry_hint::json_secs(&json!("2.5")),
            Some(Duration::from_millis(2500))
        );
        assert_eq!(retry_hint::json_secs(&json!(-1)), None);
        assert_eq!(retry_hint::json_secs(&json!(i64::MIN)), None);
        for not_a_number in [
            json!(null),
            json!([]),
            json!({}),
            json!(true),
            json!("soon"),
        ] {
            assert_eq!(retry_hint::json_secs(&not_a_number), None);
            assert_eq!(retry_hint::json_millis(&not_a_number), None);
        }
        assert_eq!(
            retry_hint::json_millis(&json!(u64::MAX)),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            retry_hint::json_millis(&json!(1e300)),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            retry_hint::json_millis(&json!(1337)),
            Some(Duration::from_millis(1337))
        );
        assert_eq!(retry_hint::json_millis(&json!(-1)), None);
        assert_eq!(retry_hint::secs_u64(u64::MAX), MAX_RETRY_AFTER);
        assert_eq!(retry_hint::millis_u64(u64::MAX), MAX_RETRY_AFTER);
        assert_eq!(
            retry_hint::until_unix_secs(i64::MAX, i64::MIN),
            MAX_RETRY_AFTER
        );
        assert_eq!(
            retry_hint::until_unix_secs(i64::MIN, i64::MAX),
            Duration::ZERO
        );
        assert_eq!(
            retry_hint::until_unix_secs(142, 100),
            Duration::from_secs(42)
        );
        assert_eq!(retry_hint::until_unix_millis(i64::MAX, 0), MAX_RETRY_AFTER);
        assert_eq!(
            retry_hint::until_unix_millis(1_500, 1_000),
            Duration::from_millis(500)
        );

        let r = resp(503, &[("Retry-After", "1e300")], "");
        assert_eq!(r.retry_after(), Some(MAX_RETRY_AFTER));
        let r = resp(503, &[("Retry-After", "Sun, 06 Nov 1994 08:49:38 GMT")], "");
        assert_eq!(r.retry_after_at(now), Some(Duration::from_secs(1)));
    }

    #[test]
    fn body_snippets_are_one_bounded_line() {
        assert_eq!(
            resp(400, &[], "  \n a\nb\u{1b}[0m\t c \n").body_snippet(),
            "a b [0m  c"
        );
        let mut big = vec![b' '; 1000];
        big.extend(std::iter::repeat_n(b'x', 10 << 20));
        let s = HttpResponse {
            body: big,
            ..Default::default()
        }
        .body_snippet();
        assert_eq!(s, format!("{}…", "x".repeat(200)));
        let s = HttpResponse {
            body: b"\xff\xfe".repeat(1 << 20),
            ..Default::default()
        }
        .body_snippet();
        assert_eq!(s.chars().count(), 201);
    }

    #[test]
    fn path_segments_stay_one_segment() {
        assert_eq!(path_segment("ab1-cd_2.x~"), "ab1-cd_2.x~");
        assert_eq!(path_segment("1/../x?y#z"), "1%2F..%2Fx%3Fy%23z");
    }

    #[test]
    fn debug_hides_url_and_headers() {
        let r = HttpRequest::post_json(&Secret::new("https://h/s3cr3t"), &json!({"a": 1}))
            .header("Authorization", Secret::new("Bearer s3cr3t"));
        assert!(!format!("{r:?}").contains("s3cr3t"));
        let shown = r.redacted_json(&Redactor::new(["s3cr3t".to_string()]));
        assert_eq!(shown["url"], "https://h/[redacted]");
        assert_eq!(shown["headers"]["Authorization"], "Bearer [redacted]");
    }
}
