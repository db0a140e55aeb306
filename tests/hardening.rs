//! Hostile answers, restarts and slow APIs, through the real binary: a chat
//! platform's absurd retry hint, a category the relay has not learned yet,
//! a stored row that cannot be read.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

fn chat<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["chats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no chat {name} in {status:#}"))
}

fn admin_get(relay: &Relay, path: &str) -> String {
    reqwest::blocking::get(relay.admin_url(path))
        .unwrap()
        .text()
        .unwrap()
}

/// Discord's and Telegram's 429 bodies carry the retry delay in seconds as a
/// JSON number: 1e300 used to panic the chat's worker (a `Duration` built
/// before the clamp), which was never started again while the pane said
/// nothing. The hint is now clamped (and cut to `max_retry_delay`), the
/// error shows, and the message goes out once the platform answers 200.
#[test]
fn an_absurd_retry_hint_keeps_the_worker_and_shows_in_the_pane() {
    let discord = Mock::start();
    discord.script([Reply::new(
        429,
        r#"{"message":"You are being rate limited.","retry_after":1e300,"global":false}"#,
    )
    .header("Content-Type", "application/json")]);
    discord.always(
        Reply::new(
            200,
            r#"{"id":"1300000000000000001","type":0,"content":"x","channel_id":"111","webhook_id":"112233445566778899"}"#,
        )
        .header("Content-Type", "application/json"),
    );
    let telegram = Mock::start();
    telegram.script([Reply::new(
        429,
        r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 1e300","parameters":{"retry_after":1e300}}"#,
    )
    .header("Content-Type", "application/json")]);
    telegram.always(
        Reply::new(
            200,
            r#"{"ok":true,"result":{"message_id":77,"date":1700000000,"chat":{"id":-100123,"type":"supergroup"}}}"#,
        )
        .header("Content-Type", "application/json"),
    );
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        r#"[discourse]
url = "https://forum.example.org"
webhook_secret = "${{DISCOURSE_WEBHOOK_SECRET}}"
delay = "0s"
[server]
max_retry_delay = "2s"
[providers.tg]
kind = "telegram"
token = "${{TELEGRAM_TOKEN}}"
api_url = "{}"
[[chat]]
name = "discord"
provider = "discord"
webhook_url = "${{DISCORD_HOOK}}"
subscribe = ["all"]
[[chat]]
name = "telegram"
provider = "tg"
chat_id = -100123
subscribe = ["all"]
"#,
        telegram.url(""),
    );
    let cfg = write(dir.path(), "relay.toml", &toml);
    let relay = Relay::start(
        &cfg,
        &dir.path().join("data"),
        &[
            ("TELEGRAM_TOKEN", "123456789:AAtelegram-token"),
            (
                "DISCORD_HOOK",
                &discord.url("/api/webhooks/112233445566778899/hook-token-123"),
            ),
        ],
    );
    assert_eq!(relay.post_fixture("post_created_first_post").0, 202);

    // The 429 is shown while the retry waits.
    let status = relay.wait_status("both 429s shown", |s| {
        ["discord", "telegram"].iter().all(|c| {
            chat(s, c)["last_error"]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("429") || r.to_lowercase().contains("rate limit"))
        })
    });
    for c in ["discord", "telegram"] {
        assert_eq!(chat(&status, c)["delivered"], 0, "{status:#}");
    }
    let pane = admin_get(&relay, "/");
    assert!(pane.contains("rate limited"), "{pane}");

    // Then both deliver: the workers are alive, and never restarted.
    // (A delivery is counted when sent and leaves the queue with its ack,
    // committed a moment later: wait for both.)
    let status = relay.wait_status("both delivered after the retry", |s| {
        ["discord", "telegram"]
            .iter()
            .all(|c| chat(s, c)["delivered"] == 1 && chat(s, c)["queue_depth"] == 0)
    });
    for c in ["discord", "telegram"] {
        assert_eq!(chat(&status, c)["worker_restarts"], 0, "{status:#}");
    }
    assert_eq!(discord.requests().len(), 2);
    assert_eq!(telegram.requests().len(), 2);
    assert!(!relay.logs().contains("panicked"), "{}", relay.logs());
    // A later event goes out at once: the chat is not parked for 1e300 s.
    let marker = relay.post_marker("post_created_first_post");
    discord.before_marker(&marker, WAIT);
    telegram.before_marker(&marker, WAIT);
}

/// A webhook for the fixture `base` with its post moved to `category`.
fn in_category(base: &str, category: u64, slug: &str, topic: u64, post: u64) -> Fixture {
    let slug = slug.to_string();
    edited_fixture(base, move |v| {
        let p = &mut v["post"];
        p["category_id"] = category.into();
        p["category_slug"] = slug.into();
        p["topic_id"] = topic.into();
        p["id"] = post.into();
        p["topic_title"] = format!("topic {topic}").into();
    })
}

/// Posts a `category_updated` webhook: the relay answers 200 (not relayed)
/// and fetches `/site.json` again.
fn category_updated(relay: &Relay, forum: &str) {
    let mut f = fixture("post_created_first_post");
    f.body = br#"{"category":{"id":3,"slug":"staff"}}"#.to_vec();
    f.set_header("X-Discourse-Event", "category_updated");
    f.set_header("X-Discourse-Event-Type", "category");
    f.set_header("X-Discourse-Event-Id", "880001");
    f.set_header("X-Discourse-Instance", forum);
    let sig = discourse_relay::ingest::request::sign(SECRET.as_bytes(), &f.body);
    f.set_header("X-Discourse-Event-Signature", &sig);
    let (status, body) = relay.post(&f.headers, f.body);
    assert_eq!(status, 200, "{body}");
}

/// With an API key, a category id the relay has not learned (here: while
/// `/site.json` fails, as after a restart with the forum's API down) is
/// restricted until learned: a staff-only post never reaches the `all`
/// chat. The events wait; once `/site.json` answers, each goes where its
/// real category says, at once.
#[test]
fn a_staff_post_in_a_category_not_yet_learned_reaches_no_wildcard_chat() {
    let forum = Mock::start();
    forum.route("/site.json", Reply::new(500, "the forum is restarting"));
    forum.always(Reply::new(404, r#"{"errors":["not found"]}"#));
    let chats = Mock::start();
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[discourse]\nurl = \"{}\"\nwebhook_secret = \"${{DISCOURSE_WEBHOOK_SECRET}}\"\napi_key = \"${{DISCOURSE_API_KEY}}\"\ndelay = \"0s\"\n\n\
[[chat]]\nname = \"everything\"\nprovider = \"webhook\"\nurl = \"{}\"\nrate_limit = \"100/s\"\nsubscribe = [\"all\"]\n\n\
[[chat]]\nname = \"staff\"\nprovider = \"webhook\"\nurl = \"{}\"\nrate_limit = \"100/s\"\nsubscribe = [\"c/staff\"]\n",
        forum.url(""),
        chats.url("/everything"),
        chats.url("/staff"),
    );
    let cfg = write(dir.path(), "relay.toml", &toml);
    let relay = Relay::start(
        &cfg,
        &dir.path().join("data"),
        &[("DISCOURSE_API_KEY", "api-key-123")],
    );
    relay.wait_log("the first /site.json failed", |l| {
        l.contains("cannot fetch /site.json")
    });
    let url = forum.url("");
    // Category 3 is `staff` (read-restricted), 4 is `general` (public).
    for f in [
        in_category("post_created_first_post", 3, "staff", 5001, 95001),
        in_category("post_created_first_post", 4, "general", 5002, 95002),
    ] {
        let mut f = f;
        f.set_header("X-Discourse-Instance", &url);
        let (status, body) = relay.post(&f.headers, f.body);
        assert_eq!(status, 202, "{body}");
    }
    relay.wait_log("both held", |l| {
        l.contains("unknown category: held") && l.contains("\"category\":4")
    });
    // Held, not guessed: nothing went out while the categories are unknown.
    let status = relay.status();
    assert_eq!(chat(&status, "everything")["delivered"], 0, "{status:#}");
    assert!(chats.requests().is_empty(), "{:#?}", chats.requests());

    // The forum's API is back; a category event asks for /site.json now.
    let site = std::fs::read_to_string(root().join("tests/fixtures/api/site.json")).unwrap();
    forum.set_route(
        "/site.json",
        Reply::new(200, &site).header("content-type", "application/json"),
    );
    category_updated(&relay, &url);
    relay.wait_log("the waiting events learned their category", |l| {
        l.contains("waiting events learned their category")
    });
    let mut marker = marker_fixture("post_created_first_post");
    marker.1.set_header("X-Discourse-Instance", &url);
    assert_eq!(relay.post(&marker.1.headers, marker.1.body).0, 202);
    let before = chats.before_marker(&marker.0, WAIT);
    let everything: Vec<String> = before
        .iter()
        .filter(|r| r.path == "/everything")
        .map(|r| {
            r.json()["topic"]["title"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(everything, ["topic 5002"], "{before:#?}");
    // Everything's one, the marker, staff's one.
    let staff = chats.wait_for(3, WAIT);
    let staff: Vec<String> = staff
        .iter()
        .filter(|r| r.path == "/staff")
        .map(|r| {
            r.json()["topic"]["title"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(staff, ["topic 5001"]);
}

/// One row the relay cannot read (a bad disk block, a row written by a
/// newer relay) used to stop routing for every chat, or delivery for its
/// chat, every 250 ms forever. Here the data dir gets an unreadable inbox
/// row and an unreadable queue head while the relay is stopped: after the
/// restart both are set aside (counted, listed on the pane) and new events
/// still reach the chat.
#[test]
fn unreadable_stored_rows_are_set_aside_and_the_rest_still_routes() {
    use redb::{ReadableDatabase, ReadableTable, TableDefinition};
    // The layout documented in src/delivery/redb_store.rs.
    const INBOX: TableDefinition<u64, (u64, &[u8])> = TableDefinition::new("inbox");
    const INBOX_DUE: TableDefinition<(u64, u64), ()> = TableDefinition::new("inbox_due");
    const QUEUE: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("queue");
    const QUEUE_DEPTH: TableDefinition<&str, u64> = TableDefinition::new("queue_depth");
    const NEXT_SEQ: TableDefinition<&str, u64> = TableDefinition::new("next_seq");

    let mock = Mock::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "relay.toml",
        config("0s", &[("hook", &mock.url("/hook"))], ""),
    );
    let data = dir.path().join("data");
    let relay = Relay::start(&cfg, &data, &[]);
    assert_eq!(relay.post_fixture("post_created_first_post").0, 202);
    mock.wait_for(1, WAIT);
    relay.wait_status("the first delivery acknowledged", |s| {
        chat(s, "hook")["queue_depth"] == 0
    });
    relay.signal("TERM");
    let mut relay = relay;
    relay.child.wait().unwrap();

    {
        let db = redb::Database::open(data.join("relay.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            // Due long ago, so it is the first row the scheduler reads.
            let mut inbox = txn.open_table(INBOX).unwrap();
            inbox
                .insert(900_001, (1, b"{\"v\":1,\"event\":{\"kind\":".as_slice()))
                .unwrap();
            txn.open_table(INBOX_DUE)
                .unwrap()
                .insert((1, 900_001), ())
                .unwrap();
            // The chat's next delivery, written by "a newer relay".
            let next = txn
                .open_table(NEXT_SEQ)
                .unwrap()
                .get("hook")
                .unwrap()
                .map_or(1, |v| v.value());
            txn.open_table(QUEUE)
                .unwrap()
                .insert(("hook", next), b"{\"v\":99,\"chat\":\"hook\"}".as_slice())
                .unwrap();
            txn.open_table(NEXT_SEQ)
                .unwrap()
                .insert("hook", next + 1)
                .unwrap();
            txn.open_table(QUEUE_DEPTH)
                .unwrap()
                .insert("hook", 1)
                .unwrap();
        }
        txn.commit().unwrap();
        // Both rows are really there (the test is not vacuous).
        let read = db.begin_read().unwrap();
        assert!(
            read.open_table(INBOX)
                .unwrap()
                .get(900_001)
                .unwrap()
                .is_some()
        );
    }

    let relay = Relay::start(&cfg, &data, &[]);
    let marker = relay.post_marker("post_created_first_post");
    let before = mock.before_marker(&marker, WAIT);
    // Only the first post (before the restart) came before the marker: the
    // unreadable rows sent nothing and stopped nothing.
    assert_eq!(before.len(), 1, "{before:#?}");
    let status = relay.wait_status("both rows set aside", |s| s["storage"]["quarantined"] == 2);
    assert_eq!(status["storage"]["ok"], true, "{status:#}");
    assert_eq!(chat(&status, "hook")["queue_depth"], 0, "{status:#}");
    let tables: Vec<&str> = status["storage"]["quarantine"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["table"].as_str().unwrap())
        .collect();
    assert!(
        tables.contains(&"inbox") && tables.contains(&"queue"),
        "{status:#}"
    );
    let pane = admin_get(&relay, "/");
    assert!(pane.contains("Unreadable stored rows"), "{pane}");
    // The gauge follows within a housekeeping round (5 s).
    let end = std::time::Instant::now() + WAIT;
    loop {
        let metrics = admin_get(&relay, "/metrics");
        if metrics.contains("discourse_relay_quarantined_rows 2") {
            break;
        }
        assert!(std::time::Instant::now() < end, "{metrics}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
