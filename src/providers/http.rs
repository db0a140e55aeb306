//! The HTTP request a destination builds and the response it classifies,
//! plus the classification shared by every HTTP platform (Alertmanager's
//! rules: 2xx sent, 429/408/5xx retry, other 4xx permanent).

use std::time::Duration;

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

    /// `Retry-After` in seconds (the HTTP-date form is rare on chat APIs and
    /// treated as absent: the retry stage's backoff applies).
    pub fn retry_after(&self) -> Option<Duration> {
        let v = self.header("Retry-After")?.trim();
        v.parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_secs_f64(s.min(86_400.0)))
    }

    /// The start of the body as text, for error reasons.
    pub fn body_snippet(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let text = text.trim();
        let mut out: String = text.chars().take(200).collect();
        if text.chars().count() > 200 {
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

/// `s` as one URL path segment: everything but RFC 3986 unreserved
/// characters percent-encoded, so a stored message id cannot add path
/// segments, a query or a fragment to the platform's URL.
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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

/// Milliseconds since the Unix epoch, for request signatures (DingTalk,
/// Lark); a plain `fn` so tests can pin it.
pub(crate) type Clock = fn() -> u64;

pub(crate) fn system_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::super::Outcome;
    use super::*;

    fn resp(status: u16, headers: &[(&str, &str)], body: &str) -> HttpResponse {
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
