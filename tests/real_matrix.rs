//! The Matrix provider against a REAL Synapse homeserver (not a mock): two
//! recorded Discourse posts go through `deliver` (the relay's own loader,
//! renderer, request and sender) into a room, and another account reads the
//! room back. Proves that Synapse accepts the request as built, that what a
//! member sees is the bot's `m.notice` with inert HTML, broken `@room`
//! mentions, an empty `m.mentions` and a plain-text `body`, and that a retry
//! (same transaction id) does not post twice.
//!
//! Needs `scripts/ci/start-synapse` first, then its env file in the
//! environment: `SYNAPSE_URL`, `SYNAPSE_BOT_TOKEN`, `SYNAPSE_READER_TOKEN`,
//! `SYNAPSE_ROOM`. Without `SYNAPSE_URL` the test prints a SKIP line to
//! stderr and passes, except under `CI=true`, where it fails
//! (`common::peer_missing`).

mod common;

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use discourse_relay::providers::Outcome;
use serde_json::{Value, json};

const HOSTILE: &str = "post_created_hostile_content";
const FIRST: &str = "post_created_first_post";
const HOSTILE_LINK: &str = "https://forum.example.org/t/channel-everyone-script-alert-1-script-bold-link-javascript-x-b/105/1";

struct Synapse {
    url: String,
    bot_token: String,
    reader_token: String,
    room: String,
}

fn synapse() -> Option<Synapse> {
    let url = std::env::var("SYNAPSE_URL")
        .ok()
        .filter(|u| !u.is_empty())?;
    let var = |k: &str| {
        std::env::var(k).unwrap_or_else(|_| {
            panic!("SYNAPSE_URL is set but {k} is not: source target/synapse/env")
        })
    };
    Some(Synapse {
        url: url.trim_end_matches('/').to_string(),
        bot_token: var("SYNAPSE_BOT_TOKEN"),
        reader_token: var("SYNAPSE_READER_TOKEN"),
        room: var("SYNAPSE_ROOM"),
    })
}

/// The relay's config: one matrix provider on the real homeserver, one chat.
fn config(homeserver: &str, room: &str, chat: &str) -> String {
    format!(
        r#"[discourse]
url = "https://forum.example.org"

[providers.synapse]
kind = "matrix"
homeserver = "{homeserver}"
access_token = "${{SYNAPSE_BOT_TOKEN}}"

[[chat]]
name = "{chat}"
provider = "synapse"
room = "{room}"
subscribe = ["all"]
# The text path: tests/cards.rs has the card.
style = "text"
"#
    )
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// GET as the account with `token`; the answer must be a 2xx JSON object.
fn get(url: &str, token: &str) -> Value {
    let resp = client().get(url).bearer_auth(token).send().unwrap();
    let status = resp.status();
    let text = resp.text().unwrap();
    assert!(status.is_success(), "GET {url}: HTTP {status}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {url}: {e}: {text}"))
}

/// The room's latest 20 events, newest first, as the reader sees them.
fn latest_events(s: &Synapse) -> Vec<Value> {
    let url = format!(
        "{}/_matrix/client/v3/rooms/{}/messages?dir=b&limit=20",
        s.url,
        encode(&s.room)
    );
    get(&url, &s.reader_token)["chunk"]
        .as_array()
        .unwrap_or_else(|| panic!("no chunk from {url}"))
        .clone()
}

fn sent(out: Outcome, what: &str) -> String {
    match out {
        Outcome::Sent {
            remote_id: Some(id),
        } => {
            assert!(id.starts_with('$'), "{what}: event id {id}");
            id
        }
        other => panic!("{what}: expected Sent with an event id, got {other:?}"),
    }
}

/// Every `@` that could notify is followed by U+200B (an email-like `a@b`
/// is not a mention).
fn mentions_broken(text: &str) -> bool {
    let chars: Vec<char> = text.chars().collect();
    chars.iter().enumerate().all(|(i, &c)| {
        c != '@'
            || chars.get(i + 1) == Some(&'\u{200B}')
            || i.checked_sub(1).is_some_and(|p| chars[p].is_alphanumeric())
    })
}

#[test]
fn notices_reach_a_real_synapse_room_inert_and_only_once() {
    let _room = one_at_a_time();
    let Some(s) = synapse() else {
        peer_missing(
            "synapse",
            "SYNAPSE_URL is not set (run scripts/ci/start-synapse, source target/synapse/env)",
        );
        return;
    };
    let bot = get(
        &format!("{}/_matrix/client/v3/account/whoami", s.url),
        &s.bot_token,
    )["user_id"]
        .as_str()
        .expect("whoami of the bot")
        .to_string();
    let reader = get(
        &format!("{}/_matrix/client/v3/account/whoami", s.url),
        &s.reader_token,
    )["user_id"]
        .as_str()
        .expect("whoami of the reader")
        .to_string();
    assert_ne!(bot, reader, "the reader must be another account");

    // A chat name of its own per run: the transaction id hashes it, so a
    // rerun against the same homeserver posts anew instead of being
    // answered from Synapse's transaction cache.
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let chat = format!("synapse-{nanos}");
    let env = [("SYNAPSE_BOT_TOKEN", s.bot_token.as_str())];

    // What the provider sends, captured by a mock with the same chat: the
    // real homeserver must then show exactly this content.
    let mock = Mock::start();
    mock.always(Reply::new(200, r#"{"event_id":"$mock"}"#));
    let mock_toml = config(&mock.url(""), &s.room, &chat);
    for f in [HOSTILE, FIRST] {
        sent(deliver(&mock_toml, &chat, f, &env), f);
    }
    let expected: Vec<(String, Value)> = mock
        .requests()
        .iter()
        .map(|r| {
            let txn = r.path.rsplit('/').next().unwrap().to_string();
            (txn, r.json())
        })
        .collect();
    assert_eq!(expected.len(), 2);

    let before: HashSet<String> = latest_events(&s)
        .iter()
        .filter_map(|e| e["event_id"].as_str().map(str::to_string))
        .collect();

    let toml = config(&s.url, &s.room, &chat);
    let hostile = sent(deliver(&toml, &chat, HOSTILE, &env), HOSTILE);
    let first = sent(deliver(&toml, &chat, FIRST, &env), FIRST);
    assert_ne!(hostile, first, "two posts, two events");
    // The same delivery again (a retry after a lost answer): same txnId, so
    // Synapse answers with the event it already has.
    let retried = sent(deliver(&toml, &chat, HOSTILE, &env), "retry");
    assert_eq!(retried, hostile, "a retry must return the first event");

    // Read back as the reader: exactly two new events, newest first.
    let new: Vec<Value> = latest_events(&s)
        .into_iter()
        .filter(|e| {
            e["event_id"]
                .as_str()
                .is_some_and(|id| !before.contains(id))
        })
        .collect();
    let ids: Vec<&str> = new.iter().filter_map(|e| e["event_id"].as_str()).collect();
    assert_eq!(
        ids,
        vec![first.as_str(), hostile.as_str()],
        "the room must hold each post once (3 deliveries, 2 events): {new:#?}"
    );

    for (event, (txn, sent_content)) in [&new[1], &new[0]].into_iter().zip(&expected) {
        let id = event["event_id"].as_str().unwrap();
        assert_eq!(event["type"], "m.room.message", "{event:#}");
        assert_eq!(event["sender"], bot.as_str(), "{event:#}");
        let c = &event["content"];
        assert_eq!(c, sent_content, "Synapse must store the content as sent");
        assert_eq!(c["msgtype"], "m.notice", "{event:#}");
        assert_eq!(c["format"], "org.matrix.custom.html", "{event:#}");
        assert_eq!(c["m.mentions"], json!({}), "{event:#}");

        let html = c["formatted_body"].as_str().unwrap();
        let lower = html.to_ascii_lowercase();
        assert!(!lower.contains("<script"), "raw <script> in {html}");
        assert!(
            !lower.contains("javascript:x\""),
            "live javascript: link in {html}"
        );
        assert!(!html.contains("@room"), "intact @room in {html}");
        assert!(mentions_broken(html), "{html}");

        let body = c["body"].as_str().unwrap();
        for markup in [
            "<b>",
            "<a ",
            "href=",
            "<blockquote",
            "&lt;",
            "&gt;",
            "&amp;",
        ] {
            assert!(
                !body.contains(markup),
                "{markup} in the plain body {body:?}"
            );
        }
        assert!(!body.contains("@room"), "intact @room in {body:?}");
        assert!(mentions_broken(body), "{body:?}");

        // The bot's own view carries the transaction id the provider chose.
        let own = get(
            &format!(
                "{}/_matrix/client/v3/rooms/{}/event/{}",
                s.url,
                encode(&s.room),
                encode(id)
            ),
            &s.bot_token,
        );
        assert_eq!(own["unsigned"]["transaction_id"], txn.as_str(), "{own:#}");
    }

    // The hostile post: its text arrives, but only as text.
    let html = new[1]["content"]["formatted_body"].as_str().unwrap();
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(html.contains("@\u{200B}room"), "{html}");
    assert_eq!(html.matches("href=").count(), 1, "{html}");
    assert!(
        html.contains(&format!("<a href=\"{HOSTILE_LINK}\">")),
        "{html}"
    );
    let body = new[1]["content"]["body"].as_str().unwrap();
    assert!(body.contains("@\u{200B}here @\u{200B}room"), "{body:?}");
    assert!(body.contains(&format!("({HOSTILE_LINK})")), "{body:?}");
    assert!(body.contains("<script>alert(1)</script>"), "{body:?}");

    // The ordinary post.
    let body = new[0]["content"]["body"].as_str().unwrap();
    assert!(
        body.starts_with("How do I share state between async tasks? (https://forum.example.org/t/how-do-i-share-state-between-async-tasks/101/1)"),
        "{body:?}"
    );
    println!(
        "Synapse {}: {} events from {bot} read back by {reader} in {}",
        s.url,
        new.len(),
        s.room
    );
}

/// The tests share one room and count what appears in it: one at a time.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static ROOM: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ROOM.lock().unwrap_or_else(|e| e.into_inner())
}

/// Polls the room until an event satisfies `f` (newest first).
fn wait_event(s: &Synapse, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let end = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(e) = latest_events(s).into_iter().find(|e| f(e)) {
            return e;
        }
        assert!(std::time::Instant::now() < end, "no {what} in the room");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The whole relay (real binary) threads a reply under the first post's
/// message, edits it with `m.replace` and redacts it when the post is
/// deleted, all read back from the room by another account.
#[test]
fn threads_edits_and_redactions_in_a_real_synapse_room() {
    let _room = one_at_a_time();
    let Some(s) = synapse() else {
        peer_missing(
            "synapse",
            "SYNAPSE_URL is not set (run scripts/ci/start-synapse, source target/synapse/env)",
        );
        return;
    };
    let nonce = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("relay.toml");
    let text = format!(
        r#"[discourse]
url = "https://forum.example.org"
webhook_secret = "${{DISCOURSE_WEBHOOK_SECRET}}"
delay = "0s"

[providers.synapse]
kind = "matrix"
homeserver = "{}"
access_token = "${{SYNAPSE_BOT_TOKEN}}"

[[chat]]
name = "threaded"
provider = "synapse"
room = "{}"
rate_limit = "100/s"
style = "text"
[[chat.rule]]
filter = "thread"
"#,
        s.url, s.room
    );
    std::fs::write(&cfg, text).unwrap();
    let relay = Relay::start(
        &cfg,
        &dir.path().join("data"),
        &[("SYNAPSE_BOT_TOKEN", s.bot_token.as_str())],
    );
    let post = |name: &str, number: u64, id: u64, raw: String| {
        let f = edited_fixture(name, |b| {
            let p = &mut b["post"];
            p["id"] = json!(id);
            p["post_number"] = json!(number);
            p["raw"] = json!(raw);
            p["cooked"] = json!(format!("<p>{raw}</p>"));
        });
        assert_eq!(relay.post(&f.headers, f.body).0, 202, "{name}");
    };
    let body_has = |e: &Value, needle: &str| {
        e["type"] == "m.room.message"
            && e["content"]["body"]
                .as_str()
                .is_some_and(|b| b.contains(needle))
    };

    let first = format!("first-{nonce}");
    post("post_created_first_post", 1, 1001, first.clone());
    let root = wait_event(&s, "first post", |e| body_has(e, &first));
    let root_id = root["event_id"].as_str().unwrap().to_string();
    assert!(root["content"].get("m.relates_to").is_none());

    let reply = format!("reply-{nonce}");
    post("post_created_reply_group_mention", 3, 1003, reply.clone());
    let threaded = wait_event(&s, "threaded reply", |e| body_has(e, &reply));
    let rel = &threaded["content"]["m.relates_to"];
    assert_eq!(rel["rel_type"], "m.thread", "{threaded:#}");
    assert_eq!(rel["event_id"], json!(root_id));
    let reply_id = threaded["event_id"].as_str().unwrap().to_string();

    let edited = format!("edited-{nonce}");
    post("post_edited", 3, 1003, edited.clone());
    let edit = wait_event(&s, "m.replace edit", |e| {
        e["content"]["m.relates_to"]["rel_type"] == "m.replace"
            && e["content"]["m.new_content"]["body"]
                .as_str()
                .is_some_and(|b| b.contains(&edited))
    });
    assert_eq!(edit["content"]["m.relates_to"]["event_id"], json!(reply_id));

    post("post_destroyed", 3, 1003, edited.clone());
    let url = format!(
        "{}/_matrix/client/v3/rooms/{}/event/{}",
        s.url,
        encode(&s.room),
        encode(&reply_id)
    );
    let end = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let e = get(&url, &s.reader_token);
        if e["unsigned"].get("redacted_because").is_some() {
            assert!(e["content"].get("body").is_none(), "{e:#}");
            break;
        }
        assert!(std::time::Instant::now() < end, "not redacted: {e:#}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!relay.logs().contains(&s.bot_token));
}

/// `doctor` against the real homeserver: the bot's token and its room pass;
/// a token Synapse does not know fails with M_UNKNOWN_TOKEN, never shown.
#[test]
fn doctor_checks_a_real_synapse_account_and_room() {
    let Some(s) = synapse() else {
        peer_missing(
            "synapse",
            "SYNAPSE_URL is not set (run scripts/ci/start-synapse, source target/synapse/env)",
        );
        return;
    };
    let dir = temp();
    let cfg = write(dir.path(), "relay.toml", config(&s.url, &s.room, "mx"));
    let run = |token: &str| doctor_run(&cfg, &[], &[("SYNAPSE_BOT_TOKEN", token)], &[token]);
    let (code, text) = run(&s.bot_token);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("PASS chat mx (matrix, ") && text.contains("the room is joined"),
        "{text}"
    );
    let (code, text) = run("syt_doctor_not_a_real_token_0000");
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("M_UNKNOWN_TOKEN"), "{text}");
}
