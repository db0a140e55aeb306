//! Every registered provider's answer classification against hostile
//! answers: absurd retry hints (header and body; seconds, milliseconds,
//! HTTP dates, reset times; huge, negative, NaN, not numbers), non-UTF-8,
//! control characters, 10 MB and deeply nested bodies, wrong types and
//! missing fields, for statuses from 0 to 999.
//!
//! What "sane" means, per outcome (the shared invariants are
//! `discourse_relay::fuzzing::check`, also the `classify` fuzz target's):
//! - nothing panics;
//! - `Retry`: waits at most `MAX_RETRY_AFTER`; an absurd hint becomes the
//!   cap, never a panic or a `Duration` overflow;
//! - as delivery keeps it (`Outcome::tidy`, after redaction): a reason is
//!   non-empty text of at most 1 KiB without control characters (it goes
//!   to logs and the status pane), a remote id short text or none;
//! - 401/403 are never `Sent`; 429 and 5xx are never `Permanent` (501
//!   excepted: a feature switched off server-wide);
//! - a 2xx whose body is garbage (not the platform's shape) is `Sent` (the
//!   platform took it) or `Retry` (unconfirmed), never `Permanent`: nothing
//!   in it says the message can never be delivered; except, naming the
//!   setting to check, where the provider reads such an answer as "this URL
//!   is not the platform" (Zulip, Rocket.Chat), since retrying a request
//!   that may have landed could post twice;
//! - status 0 and 999 (not HTTP) are never `Sent`.

use std::time::Duration;

use discourse_relay::fuzzing::{Chat, chats, classify_one};
use discourse_relay::providers::http::MAX_RETRY_AFTER;
use discourse_relay::providers::{HttpResponse, Outcome, registry};

const STATUSES: [u16; 16] = [
    200, 201, 204, 400, 401, 403, 404, 408, 413, 429, 500, 502, 503, 599, 0, 999,
];

/// Header sets, each alone on an answer.
fn header_sets() -> Vec<(&'static str, Vec<(&'static str, String)>)> {
    let mut sets: Vec<(&'static str, Vec<(&'static str, String)>)> = vec![("none", vec![])];
    for (label, v) in [
        ("retry-after 1e300", "1e300"),
        ("retry-after -5", "-5"),
        ("retry-after NaN", "NaN"),
        ("retry-after inf", "inf"),
        ("retry-after abc", "abc"),
        ("retry-after empty", ""),
        ("retry-after past date", "Thu, 01 Jan 1970 00:00:00 GMT"),
        ("retry-after far date", "Fri, 31 Dec 9999 23:59:59 GMT"),
        (
            "retry-after huge int",
            "340282366920938463463374607431768211456",
        ),
        ("retry-after u64 max", "18446744073709551615"),
    ] {
        sets.push((label, vec![("Retry-After", v.to_string())]));
    }
    // Every reset/usage header a provider reads, all absurd at once.
    let huge = "99999999999999999999999".to_string();
    let i64_max = i64::MAX.to_string();
    sets.push((
        "reset headers huge",
        vec![
            ("X-RateLimit-Reset", i64_max.clone()),
            ("X-RateLimit-Remaining", "0".into()),
            ("X-FloodControl-Reset", i64_max.clone()),
            ("X-FloodControl-Remaining", "0".into()),
            ("x-ogw-ratelimit-reset", u64::MAX.to_string()),
            (
                "X-Business-Use-Case-Usage",
                format!(
                    r#"{{"1":[{{"estimated_time_to_regain_access":{}}}]}}"#,
                    u64::MAX
                ),
            ),
            (
                "X-Page-Usage",
                format!(r#"{{"estimated_time_to_regain_access":{huge}}}"#),
            ),
        ],
    ));
    sets.push((
        "reset headers far date",
        vec![
            ("X-RateLimit-Reset", "9999-12-31T23:59:59Z".into()),
            ("Retry-After", "Fri, 31 Dec 9999 23:59:59 GMT".into()),
        ],
    ));
    sets.push((
        "reset headers negative",
        vec![
            ("X-RateLimit-Reset", i64::MIN.to_string()),
            ("X-FloodControl-Reset", "-1".into()),
            ("x-ogw-ratelimit-reset", "-1".into()),
            (
                "X-App-Usage",
                r#"{"estimated_time_to_regain_access":-5}"#.into(),
            ),
        ],
    ));
    sets
}

fn nested(depth: usize, open: &str, close: &str) -> Vec<u8> {
    let mut s = open.repeat(depth);
    s.push_str(&close.repeat(depth));
    s.into_bytes()
}

/// Bodies, with whether each is garbage for a 2xx (not any platform's
/// answer shape, so never a reason for `Permanent`).
fn bodies() -> Vec<(&'static str, Vec<u8>, bool)> {
    let b = |s: &str| s.as_bytes().to_vec();
    vec![
        ("empty", vec![], true),
        ("retry_after 1e300", b(r#"{"retry_after":1e300}"#), false),
        (
            "telegram parameters 1e300",
            b(
                r#"{"ok":false,"error_code":429,"description":"Too Many Requests","parameters":{"retry_after":1e300}}"#,
            ),
            false,
        ),
        (
            "parameters 1e300",
            b(r#"{"parameters":{"retry_after":1e300}}"#),
            false,
        ),
        (
            "retry_after_ms u64 max",
            b(
                r#"{"errcode":"M_LIMIT_EXCEEDED","error":"slow","retry_after_ms":18446744073709551615}"#,
            ),
            false,
        ),
        ("retry-after -1", b(r#"{"retry-after":-1}"#), false),
        (
            "zulip 1e300",
            b(r#"{"result":"error","code":"RATE_LIMIT_HIT","msg":"limited","retry-after":1e300}"#),
            false,
        ),
        (
            "discord 1e300 global",
            b(
                r#"{"message":"You are being rate limited.","retry_after":1e300,"global":true,"code":0}"#,
            ),
            false,
        ),
        (
            "dingtalk wait 1e300",
            b(r#"{"errcode":130101,"errmsg":"send too fast","wait":1e300}"#),
            false,
        ),
        (
            "rocketchat huge wait",
            b(
                r#"{"success":false,"error":"Error, too many requests. Please slow down. You must wait 99999999999999999999999 seconds before trying this endpoint again."}"#,
            ),
            false,
        ),
        (
            "messenger rate limit",
            b(r#"{"error":{"message":"(#613) limited","type":"OAuthException","code":613}}"#),
            false,
        ),
        // Each platform's own "never works" answers, also under 429 and 5xx.
        (
            "platform errors",
            b(
                r#"{"ok":false,"error":"channel_not_found","error_code":400,"description":"Bad Request: chat not found","id":"api.context.permissions.app_error","message":"Unknown Channel","code":10003,"errcode":"M_FORBIDDEN","result":"error","msg":"denied","success":false}"#,
            ),
            false,
        ),
        (
            "messenger token error",
            b(
                r#"{"error":{"message":"Invalid OAuth access token.","type":"OAuthException","code":190,"error_subcode":460}}"#,
            ),
            false,
        ),
        (
            "numeric errcode",
            b(r#"{"errcode":310000,"errmsg":"keywords not in content","code":19001}"#),
            false,
        ),
        (
            "hipchat error",
            b(r#"{"error":{"code":404,"message":"Room not found","type":"Not Found"}}"#),
            false,
        ),
        (
            "non-utf8",
            b"\xff\xfe\x00garbage\xc3\x28\xa0\xa1".to_vec(),
            true,
        ),
        (
            "control characters",
            b("line one\nline two\r\n\x1b[31mred\x1b[0m\x00\x07 tail"),
            true,
        ),
        (
            "control characters in json",
            b(
                r#"{"ok":false,"error":"a\nb\u001b[31m\u0000","description":"x\ty","message":"m\r\n","msg":"\u0007"}"#,
            ),
            false,
        ),
        ("null", b("null"), true),
        ("array", b("[]"), true),
        ("wrong types", b(r#"{"ok":"yes","result":5}"#), true),
        ("id array", b(r#"{"id":[]}"#), true),
        ("missing fields", b("{}"), true),
        ("html", b("<html><body>502 Bad Gateway</body></html>"), true),
        ("deep arrays", nested(10_000, "[", "]"), true),
        (
            "deep objects",
            nested(10_000, r#"{"a":"#, "}")
                .into_iter()
                .chain(*b"1")
                .collect(),
            true,
        ),
        (
            "deep error",
            [b(r#"{"error":"#), nested(10_000, "[", "]"), b("}")].concat(),
            true,
        ),
    ]
}

/// A 10 MB answer: valid JSON whose every commonly read field is long
/// (64 KiB, full of newlines), so a reason or id that quotes a field
/// unbounded shows; whitespace makes up the rest.
fn ten_mb() -> Vec<u8> {
    let field = "é\nx".repeat(1 << 14);
    let fields = [
        "error",
        "description",
        "message",
        "msg",
        "errmsg",
        "id",
        "ts",
        "name",
        "detail",
    ];
    let mut body = String::from("{\"ok\":false");
    for f in fields {
        body.push_str(&format!(",\"{f}\":{}", serde_json::json!(field)));
    }
    body.push_str(",\"error_code\":400}");
    while body.len() < 10 << 20 {
        body.push(' ');
    }
    body.into_bytes()
}

fn answer(status: u16, headers: &[(&str, String)], body: &[u8]) -> HttpResponse {
    HttpResponse {
        status,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        body: body.to_vec(),
    }
}

/// The outcome for one answer, after the shared invariants; with the
/// table-specific ones on top.
fn classify(
    chat: &Chat,
    status: u16,
    headers: &[(&str, String)],
    body: &[u8],
    garbage: bool,
) -> Outcome {
    let (name, dest) = *chat;
    let out = classify_one(name, dest, &answer(status, headers, body));
    if garbage && (200..300).contains(&status) {
        // Permanent only as "this URL is not the platform" (Zulip, Rocket.Chat:
        // a retry of what may have landed could post twice).
        assert!(
            !matches!(&out, Outcome::Permanent { reason } if !reason.contains("(check `")),
            "chat `{name}`: a 2xx with a garbage body is permanent: {out:?}"
        );
    }
    if matches!(status, 0 | 999) {
        assert!(
            !matches!(out, Outcome::Sent { .. }),
            "chat `{name}`: status {status} is no delivery: {out:?}"
        );
    }
    out
}

#[test]
fn every_provider_has_a_chat_in_the_table() {
    let chats = chats();
    for reg in registry::PROVIDERS {
        assert!(
            chats.iter().any(|(_, d)| d.kind() == reg.kind),
            "{}",
            reg.kind
        );
    }
}

/// Runs every case, collecting the broken invariants (the first per chat
/// and kind of failure, one line each) so one run shows them all.
struct Sweep {
    n: usize,
    failures: Vec<String>,
    seen: std::collections::HashSet<String>,
}

impl Sweep {
    fn new() -> Self {
        Self {
            n: 0,
            failures: Vec::new(),
            seen: Default::default(),
        }
    }

    fn run(&mut self, label: impl Fn() -> String, case: impl FnOnce()) {
        self.n += 1;
        install_quiet_hook();
        QUIET.with(|q| q.set(true));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(case));
        QUIET.with(|q| q.set(false));
        if let Err(e) = result {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            // "chat `x`, HTTP n: what": one line per chat and kind.
            let key: String = msg
                .split(": ")
                .take(2)
                .collect::<Vec<_>>()
                .join(": ")
                .replace(|c: char| c.is_ascii_digit(), "");
            if self.seen.insert(key) {
                self.failures.push(format!("[{}] {msg}", label()));
            }
        }
    }

    fn finish(self) {
        assert!(self.n > 0);
        assert!(
            self.failures.is_empty(),
            "{} kinds of broken invariants in {} answers:\n{}",
            self.failures.len(),
            self.n,
            self.failures.join("\n")
        );
    }
}

thread_local! {
    /// Set while a sweep runs a case on this thread: its panic is caught
    /// and reported in the sweep's summary, not printed on its own.
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A panic hook, installed once, that stays quiet for sweep cases only
/// (tests run on their own threads; any other panic prints as usual).
fn install_quiet_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) {
                default(info);
            }
        }));
    });
}

#[test]
fn hostile_answers_are_classified_sanely_by_every_provider() {
    let headers = header_sets();
    let bodies = bodies();
    let mut sweep = Sweep::new();
    {
        for chat in chats() {
            for &status in &STATUSES {
                for (hl, h) in &headers {
                    for (bl, body, garbage) in &bodies {
                        sweep.run(
                            || format!("{hl} / {bl}"),
                            || {
                                classify(chat, status, h, body, *garbage);
                            },
                        );
                    }
                }
            }
        }
    }
    assert_eq!(
        sweep.n,
        chats().len() * STATUSES.len() * headers.len() * bodies.len()
    );
    sweep.finish();
}

#[test]
fn ten_megabyte_answers_are_classified_with_short_reasons() {
    let body = ten_mb();
    let garbage = b"\xff".repeat(10 << 20);
    let mut sweep = Sweep::new();
    {
        for chat in chats() {
            for status in [200, 400, 429] {
                sweep.run(
                    || "10 MB JSON".into(),
                    || {
                        classify(chat, status, &[], &body, false);
                    },
                );
                sweep.run(
                    || "10 MB not UTF-8".into(),
                    || {
                        classify(chat, status, &[], &garbage, true);
                    },
                );
            }
        }
    }
    sweep.finish();
}

/// The answers of the original bug: the hint becomes the cap.
#[test]
fn absurd_body_hints_become_the_cap() {
    let chat = |name: &str| {
        *chats()
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no chat {name}"))
    };
    let cases: [(&str, u16, &str); 6] = [
        (
            "discord",
            429,
            r#"{"message":"You are being rate limited.","retry_after":1e300,"global":false}"#,
        ),
        ("discord-thread", 429, r#"{"retry_after":1e300}"#),
        (
            "telegram",
            429,
            r#"{"ok":false,"error_code":429,"description":"Too Many Requests","parameters":{"retry_after":1e300}}"#,
        ),
        (
            "matrix",
            429,
            r#"{"errcode":"M_LIMIT_EXCEEDED","retry_after_ms":18446744073709551615}"#,
        ),
        (
            "zulip",
            429,
            r#"{"result":"error","code":"RATE_LIMIT_HIT","msg":"x","retry-after":1e300}"#,
        ),
        (
            "dingtalk",
            200,
            r#"{"errcode":130101,"errmsg":"send too fast","wait":1e300}"#,
        ),
    ];
    for (name, status, body) in cases {
        let out = classify(&chat(name), status, &[], body.as_bytes(), false);
        assert!(
            matches!(out, Outcome::Retry { after: Some(a), .. } if a == MAX_RETRY_AFTER),
            "{name}: {out:?}"
        );
    }
    // A header hint beyond the cap, through the shared classification.
    let out = classify(
        &chat("webhook"),
        503,
        &[("Retry-After", "1e300".into())],
        b"",
        false,
    );
    assert_eq!(
        out,
        Outcome::Retry {
            reason: "HTTP 503".into(),
            after: Some(MAX_RETRY_AFTER)
        }
    );
    // An HTTP date a minute ahead: about a minute, not the cap.
    let soon = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(60));
    match classify(&chat("webhook"), 429, &[("Retry-After", soon)], b"", false) {
        Outcome::Retry { after: Some(a), .. } => {
            assert!(
                a <= Duration::from_secs(60) && a >= Duration::from_secs(55),
                "{a:?}"
            )
        }
        out => panic!("{out:?}"),
    }
}
