//! Executes an [`Outbound`]: the one place that talks to chat platforms.
//! The destination that built the request classifies the answer.

use std::time::Duration;

use crate::config::env::Redactor;
use crate::providers::{Destination, HttpRequest, HttpResponse, Outbound, Outcome};

/// Answers larger than this are cut: error bodies are for people, and a
/// hostile server must not make the relay buffer gigabytes.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct Sender {
    client: reqwest::Client,
}

impl Sender {
    pub fn new() -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("discourse-relay/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()?;
        Ok(Self { client })
    }

    /// Sends and classifies. Errors never carry secrets: reqwest errors can
    /// include the URL (which may hold a token), so they pass the redactor
    /// and lose their URL.
    pub async fn send(
        &self,
        dest: &dyn Destination,
        out: &Outbound,
        redactor: &Redactor,
    ) -> Outcome {
        match out {
            Outbound::Stdout(line) => {
                // Off the runtime: a full pipe (`serve | tee`, a stalled
                // journald) blocks a blocking-pool thread, not a worker.
                // The lock keeps each line whole among concurrent chats.
                let line = line.clone();
                let written = tokio::task::spawn_blocking(move || {
                    use std::io::Write;
                    let mut stdout = std::io::stdout().lock();
                    writeln!(stdout, "{line}").and_then(|_| stdout.flush())
                })
                .await;
                match written {
                    Ok(Ok(())) => Outcome::Sent { remote_id: None },
                    Ok(Err(e)) => Outcome::Retry {
                        reason: format!("stdout: {e}"),
                        after: None,
                    },
                    Err(e) => Outcome::Retry {
                        reason: format!("stdout: the write did not finish: {e}"),
                        after: None,
                    },
                }
            }
            Outbound::Native(m) => redact_outcome(m.sender.send(&m.payload).await, redactor),
            Outbound::Http(req) => match self.fetch(req, redactor).await {
                Ok(resp) => redact_outcome(dest.classify(&resp), redactor),
                Err(reason) => Outcome::Retry {
                    reason,
                    after: None,
                },
            },
        }
    }

    /// Sends `req` and reads the answer (capped), for delivery and for
    /// `doctor`'s read-only checks. The error is a redacted reason without
    /// the URL (`timed out: …`, `connection failed: …`).
    pub async fn fetch(
        &self,
        req: &HttpRequest,
        redactor: &Redactor,
    ) -> Result<HttpResponse, String> {
        let method =
            reqwest::Method::from_bytes(req.method.as_bytes()).unwrap_or(reqwest::Method::POST);
        let mut builder = self.client.request(method, req.url.expose());
        for (k, v) in &req.headers {
            builder = builder.header(k.as_str(), v.expose());
        }
        let resp = match builder.body(req.body.clone()).send().await {
            Ok(r) => r,
            Err(e) => {
                let kind = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "connection failed"
                } else {
                    "request failed"
                };
                let detail = redactor.redact(&e.without_url().to_string());
                return Err(format!("{kind}: {detail}"));
            }
        };
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let body = read_capped(resp).await;
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }
}

async fn read_capped(mut resp: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = MAX_RESPONSE_BYTES.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if room <= chunk.len() {
            break;
        }
    }
    body
}

/// Platforms sometimes echo the request (with its token) in errors. Then
/// [`Outcome::tidy`]: after redaction, so a cut cannot leave part of a
/// secret behind.
fn redact_outcome(o: Outcome, r: &Redactor) -> Outcome {
    let redacted = match o {
        Outcome::Retry { reason, after } => Outcome::Retry {
            reason: r.redact(&reason),
            after,
        },
        Outcome::Permanent { reason } => Outcome::Permanent {
            reason: r.redact(&reason),
        },
        sent => sent,
    };
    redacted.tidy()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A secret the platform echoed across the reason's cut is redacted
    /// whole, not cut first and then missed by the redactor.
    #[test]
    fn redaction_comes_before_the_cut() {
        let secret = "tok-0123456789abcdefghijklmnopqrstuvwxyz";
        let r = Redactor::new([secret.to_string()]);
        let reason = format!(
            "{}{secret} tail",
            "x".repeat(crate::providers::MAX_REASON - 10)
        );
        let Outcome::Permanent { reason } = redact_outcome(Outcome::Permanent { reason }, &r)
        else {
            panic!()
        };
        assert!(!reason.contains("tok-"), "{reason}");
        assert!(reason.len() <= crate::providers::MAX_REASON);
    }
}
