//! Mastodon through a mock instance: the exact `POST /api/v1/statuses` for
//! the hostile fixture (plain text, every mention broken), an
//! `Idempotency-Key` that stays the same when a delivery is retried, the cut
//! to `max_chars`, the classification of Mastodon's real error answers (none
//! of which may carry the token), and `explain` hiding the token.

mod common;

use common::*;
use discourse_relay::providers::{Action, Outcome, Thread};

const TOKEN: &str = "canary-mastodon-token-4242";
const STATUS_ID: &str = "113456789012345678";

fn config(instance: &str) -> String {
    format!(
        r##"[discourse]
url = "https://forum.example.org"
[providers.masto]
kind = "mastodon"
instance = "{instance}"
access_token = "${{MASTODON_TOKEN}}"
[providers.short]
kind = "mastodon"
instance = "{instance}"
access_token = "${{MASTODON_TOKEN}}"
max_chars = 100
spoiler_text = "forum"
[[chat]]
name = "toots"
provider = "masto"
subscribe = ["all"]
[[chat]]
name = "public"
provider = "masto"
visibility = "public"
subscribe = ["all"]
[[chat]]
name = "short"
provider = "short"
subscribe = ["all"]
"##
    )
}

fn run(mock: &Mock, chat: &str, fixture: &str) -> Outcome {
    deliver(
        &config(&mock.url("")),
        chat,
        fixture,
        &[("MASTODON_TOKEN", TOKEN)],
    )
}

fn instance() -> Mock {
    let mock = Mock::start();
    mock.always(Reply::new(
        200,
        &format!(r#"{{"id":"{STATUS_ID}","visibility":"unlisted","content":"<p>x</p>"}}"#),
    ));
    mock
}

/// No `@` that Mastodon would read as a mention (`Account::MENTION_RE`: not
/// after a word character, `=` or `/`, followed by a username character).
fn no_live_mention(text: &str) -> bool {
    let chars: Vec<char> = text.chars().collect();
    chars.iter().enumerate().all(|(i, &c)| {
        c != '@'
            || !chars
                .get(i + 1)
                .is_some_and(|n| n.is_ascii_alphanumeric() || *n == '_')
            || i.checked_sub(1)
                .is_some_and(|p| chars[p].is_alphanumeric() || "_=/".contains(chars[p]))
    })
}

#[test]
fn hostile_post_request_is_exact_and_inert() {
    let mock = instance();
    let out = run(&mock, "toots", "post_created_hostile_content");
    assert_eq!(
        out,
        Outcome::Sent {
            remote_id: Some(STATUS_ID.into())
        }
    );
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/api/v1/statuses");
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let key = r.header("idempotency-key").unwrap();
    assert!(
        key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()),
        "{key}"
    );

    let body = r.json();
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, vec!["status", "visibility"]);
    assert_eq!(body["visibility"], "unlisted");
    let status = body["status"].as_str().unwrap();
    assert_eq!(
        status,
        "<!channel> @\u{200B}everyone <script>alert(1)</script> *bold* [link](javascript:x) & </b> \
         (https://forum.example.org/t/channel-everyone-script-alert-1-script-bold-link-javascript-x-b/105/1) \
         by Mallory Mischief in general\n\
         <!channel> @\u{200B}everyone <script>alert(1)</script> bold [link](javascript:x) & </b> \
         @\u{200B}here @\u{200B}room <@\u{200B}U024BE7LH> <https://evil.example|click me> strike code ||spoiler||"
    );
    // Plain text: markup shows as typed, mentions cannot notify.
    assert!(no_live_mention(status), "{status}");
    assert!(!r.body.contains(TOKEN));
}

#[test]
fn chats_choose_visibility_and_the_limit_cuts() {
    let mock = instance();
    run(&mock, "public", "post_created_first_post");
    run(&mock, "short", "post_created_hostile_content");
    let reqs = mock.requests();
    assert_eq!(reqs[0].json()["visibility"], "public");
    let body = reqs[1].json();
    assert_eq!(body["spoiler_text"], "forum");
    let status = body["status"].as_str().unwrap();
    assert!(status.ends_with('…'), "{status}");
    // Mastodon counts the content warning too; every URL counts 23.
    assert!(status.chars().count() + "forum".len() <= 100, "{status}");
    assert!(no_live_mention(status), "{status}");
}

#[test]
fn retries_reuse_the_idempotency_key() {
    let mock = instance();
    for _ in 0..2 {
        run(&mock, "toots", "post_created_hostile_content");
    }
    run(&mock, "toots", "post_created_first_post");
    run(&mock, "public", "post_created_hostile_content");
    let keys: Vec<String> = mock
        .requests()
        .iter()
        .map(|r| r.header("idempotency-key").unwrap_or("").to_string())
        .collect();
    assert_eq!(keys[0], keys[1], "a retry must reuse the key");
    assert_ne!(keys[0], keys[2], "another post needs another key");
    assert_ne!(keys[0], keys[3], "another chat needs another key");
}

#[test]
fn real_error_answers_are_classified_without_the_token() {
    let mock = Mock::start();
    let reset = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(90))
        .unwrap()
        .to_string();
    mock.script([
        // Mastodon's Rack::Attack answer: no Retry-After, an ISO reset time.
        Reply::new(429, r#"{"error":"Too many requests"}"#)
            .header("X-RateLimit-Limit", "300")
            .header("X-RateLimit-Remaining", "0")
            .header("X-RateLimit-Reset", &reset),
        Reply::new(401, r#"{"error":"The access token is invalid"}"#),
        Reply::new(
            403,
            r#"{"error":"This action is outside the authorized scopes"}"#,
        ),
        // Not a Mastodon API (wrong `instance`): the "unknown room" case.
        Reply::new(404, "<html><body>404 Not Found</body></html>"),
        Reply::new(
            422,
            r#"{"error":"Validation failed: Text character limit of 500 exceeded"}"#,
        ),
        Reply::new(503, "<html>Service Unavailable</html>"),
        // A server that echoes the token must not leak it either.
        Reply::new(401, &format!(r#"{{"error":"token {TOKEN} is not valid"}}"#)),
    ]);
    let outs: Vec<Outcome> = (0..7)
        .map(|_| run(&mock, "toots", "post_created_first_post"))
        .collect();
    assert!(
        matches!(&outs[0], Outcome::Retry { after: Some(d), reason }
            if (60..=90).contains(&d.as_secs()) && reason.contains("429")),
        "{:?}",
        outs[0]
    );
    let permanent = |o: &Outcome, want: &str| matches!(o, Outcome::Permanent { reason } if reason.contains(want));
    assert!(
        permanent(&outs[1], "access token was rejected"),
        "{:?}",
        outs[1]
    );
    assert!(permanent(&outs[2], "write:statuses"), "{:?}", outs[2]);
    assert!(permanent(&outs[3], "check `instance`"), "{:?}", outs[3]);
    assert!(permanent(&outs[4], "lower `max_chars`"), "{:?}", outs[4]);
    assert!(
        matches!(&outs[5], Outcome::Retry { after: None, .. }),
        "{:?}",
        outs[5]
    );
    assert!(permanent(&outs[6], "[redacted]"), "{:?}", outs[6]);
    for o in &outs {
        assert!(!format!("{o:?}").contains(TOKEN), "{o:?}");
    }
    // Every attempt of the same message carried the same key.
    let keys: Vec<String> = mock
        .requests()
        .iter()
        .map(|r| r.header("idempotency-key").unwrap_or("").to_string())
        .collect();
    assert!(keys.windows(2).all(|w| w[0] == w[1]), "{keys:?}");
}

#[test]
fn network_errors_retry_without_the_token() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let o = deliver(
        &config(&format!("http://127.0.0.1:{port}")),
        "toots",
        "post_created_first_post",
        &[("MASTODON_TOKEN", TOKEN)],
    );
    let Outcome::Retry { reason, .. } = o else {
        panic!("{o:?}")
    };
    assert!(!reason.contains(TOKEN), "{reason}");
}

#[test]
fn explain_hides_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("mastodon.toml");
    std::fs::write(&cfg, config("https://social.example.org")).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["explain", "--json", "--config"])
        .arg(&cfg)
        .arg(root().join("tests/fixtures/webhooks/post_created_hostile_content.json"))
        .env("MASTODON_TOKEN", TOKEN)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stdout.contains(TOKEN) && !stderr.contains(TOKEN));
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let d = v["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["chat"] == "toots")
        .unwrap();
    let request = &d["request"];
    assert_eq!(request["url"], "https://social.example.org/api/v1/statuses");
    assert_eq!(request["headers"]["Authorization"], "Bearer [redacted]");
    assert_eq!(
        request["headers"]["Idempotency-Key"].as_str().map(str::len),
        Some(64)
    );
}

#[test]
fn thread_reply_edit_and_delete_requests_are_exact() {
    let mock = Mock::start();
    mock.script([
        Reply::new(
            200,
            r#"{"id":"113456789012345679","in_reply_to_id":"113456789012345678"}"#,
        ),
        Reply::new(
            200,
            &format!(r#"{{"id":"{STATUS_ID}","edited_at":"2026-11-25T06:00:00.000Z"}}"#),
        ),
        Reply::new(200, &format!(r#"{{"id":"{STATUS_ID}","text":"x"}}"#)),
        // Already deleted on the instance: done.
        Reply::new(404, r#"{"error":"Record not found"}"#),
    ]);
    let cfg = config(&mock.url(""));
    let env = [("MASTODON_TOKEN", TOKEN)];
    let send = |fixture, action| deliver_as(&cfg, "toots", fixture, &env, action, false);
    assert_eq!(
        send(
            "post_created_first_post",
            Action::Post {
                thread: Some(Thread {
                    root: Some(STATUS_ID)
                })
            }
        ),
        Outcome::Sent {
            remote_id: Some("113456789012345679".into())
        }
    );
    assert!(matches!(
        send(
            "post_edited",
            Action::Edit {
                remote_id: STATUS_ID
            }
        ),
        Outcome::Sent { .. }
    ));
    assert!(matches!(
        send(
            "post_destroyed",
            Action::Delete {
                remote_id: STATUS_ID
            }
        ),
        Outcome::Sent { .. }
    ));
    assert_eq!(
        send(
            "post_destroyed",
            Action::Delete {
                remote_id: STATUS_ID
            }
        ),
        Outcome::Sent { remote_id: None }
    );
    let reqs = mock.requests();
    for r in &reqs {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
    }
    assert_eq!(
        (reqs[0].method.as_str(), reqs[0].path.as_str()),
        ("POST", "/api/v1/statuses")
    );
    assert_eq!(reqs[0].json()["in_reply_to_id"], STATUS_ID);
    assert!(reqs[0].header("idempotency-key").is_some());

    assert_eq!(reqs[1].method, "PUT");
    assert_eq!(reqs[1].path, format!("/api/v1/statuses/{STATUS_ID}"));
    let body = reqs[1].json();
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, vec!["status"]);
    assert!(no_live_mention(body["status"].as_str().unwrap()));

    for r in &reqs[2..] {
        assert_eq!(r.method, "DELETE");
        assert_eq!(r.path, format!("/api/v1/statuses/{STATUS_ID}"));
        assert!(r.body.is_empty());
    }
}
