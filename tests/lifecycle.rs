//! Message lifecycle through the real binary and a mock Slack Web API: a
//! reply lands in the first post's thread, an edit changes the sent
//! message, a delete removes it (or strikes it through, per chat), a
//! recovery restores it, and the mapping survives kill -9 and a restart.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const TOKEN: &str = "xoxb-canary-lifecycle";

fn slack_config(api: &str) -> String {
    format!(
        r##"[discourse]
url = "https://forum.example.org"
webhook_secret = "${{DISCOURSE_WEBHOOK_SECRET}}"
delay = "0s"

[providers.slack]
kind = "slack"
token = "${{SLACK_TOKEN}}"
api_url = "{api}"

[[chat]]
name = "threaded"
provider = "slack"
channel = "#dev"
rate_limit = "100/s"
[[chat.rule]]
filter = "thread"

[[chat]]
name = "struck"
provider = "slack"
channel = "#ops"
rate_limit = "100/s"
on_delete = "strike"
subscribe = ["all"]
"##
    )
}

/// What the mock Slack saw, per chat: (method, body).
struct Seen {
    /// Slack method (`chat.postMessage`...) and body of each request.
    calls: Vec<(String, Value)>,
    /// The ts the mock answered each post with (see `Mock`'s default reply).
    ts: Vec<String>,
}

fn seen(mock: &Mock) -> Seen {
    let reqs = mock.requests();
    let ts = (0..reqs.len())
        .map(|n| format!("{}.000100", 1_700_000_000 + n))
        .collect();
    let calls = reqs
        .iter()
        .map(|r| {
            let method = r.path.rsplit('/').next().unwrap_or("").to_string();
            (method, r.json())
        })
        .collect();
    Seen { calls, ts }
}

/// The new requests after the first `from`, by Slack channel they concern:
/// posts name the configured channel; edits and deletes name a ts, which
/// `owner` maps back to the chat's channel.
fn by_channel(
    s: &Seen,
    from: usize,
    owner: &HashMap<String, String>,
) -> HashMap<String, Vec<(String, Value)>> {
    let mut out: HashMap<String, Vec<(String, Value)>> = HashMap::new();
    for (method, body) in &s.calls[from..] {
        let channel = match method.as_str() {
            "chat.postMessage" => body["channel"].as_str().unwrap().to_string(),
            _ => owner[body["ts"].as_str().unwrap()].clone(),
        };
        out.entry(channel)
            .or_default()
            .push((method.clone(), body.clone()));
    }
    out
}

fn reply(number: u64, id: u64, raw: &str) -> impl FnOnce(&mut Value) {
    let raw = raw.to_string();
    move |b: &mut Value| {
        let p = &mut b["post"];
        p["id"] = json!(id);
        p["post_number"] = json!(number);
        p["raw"] = json!(raw);
        p["cooked"] = json!(format!("<p>{raw}</p>"));
    }
}

#[test]
fn threads_edits_deletes_and_recoveries_reach_slack_and_survive_kill_9() {
    let mock = Mock::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = dir.path().join("relay.toml");
    std::fs::write(&cfg, slack_config(&mock.url("/api"))).unwrap();
    let env = [("SLACK_TOKEN", TOKEN)];
    let relay = Relay::start(&cfg, &data, &env);

    // 1. The first post opens the thread in `threaded`; `struck` just posts.
    assert_eq!(relay.post_fixture("post_created_first_post").0, 202);
    mock.wait_for(2, Duration::from_secs(15));
    // 2. A reply: into the thread of the first post's message in `threaded`.
    let f = edited_fixture("post_created_reply_group_mention", |_| {});
    assert_eq!(relay.post(&f.headers, f.body).0, 202);
    mock.wait_for(4, Duration::from_secs(15));

    let s = seen(&mock);
    let mut owner = HashMap::new(); // ts -> channel
    let mut first = HashMap::new(); // channel -> ts of post #1
    let mut third = HashMap::new(); // channel -> ts of post #3
    for (i, (method, body)) in s.calls.iter().enumerate() {
        assert_eq!(method, "chat.postMessage");
        let channel = body["channel"].as_str().unwrap().to_string();
        owner.insert(s.ts[i].clone(), channel.clone());
        let target = if first.contains_key(&channel) {
            &mut third
        } else {
            &mut first
        };
        target.insert(channel, s.ts[i].clone());
    }
    let posts = by_channel(&s, 0, &owner);
    assert!(
        posts["dev"][0].1.get("thread_ts").is_none(),
        "post #1 opens the thread"
    );
    assert_eq!(
        posts["dev"][1].1["thread_ts"],
        json!(first["dev"]),
        "the reply is in the thread"
    );
    assert!(
        posts["ops"]
            .iter()
            .all(|(_, b)| b.get("thread_ts").is_none()),
        "watch: no threads"
    );

    // 3. An edit of the reply updates both sent messages.
    let f = edited_fixture(
        "post_edited",
        reply(3, 1003, "Edited: use a `DashMap` instead"),
    );
    assert_eq!(relay.post(&f.headers, f.body).0, 202);
    mock.wait_for(6, Duration::from_secs(15));
    let s = seen(&mock);
    let edits = by_channel(&s, 4, &owner);
    for channel in ["dev", "ops"] {
        let (method, body) = &edits[channel][0];
        assert_eq!(method, "chat.update", "{channel}");
        assert_eq!(body["channel"], "C0DEV");
        assert_eq!(body["ts"], json!(third[channel]));
        assert!(body["text"].as_str().unwrap().contains("DashMap"), "{body}");
    }

    // 4. The mapping survives kill -9. After an idle second the acks are
    // durable too, so nothing is sent twice after the restart.
    std::thread::sleep(Duration::from_millis(1500));
    relay.kill9();
    let relay = Relay::start(&cfg, &data, &env);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        mock.requests().len(),
        6,
        "nothing re-sent: {:#?}",
        &mock.requests()[6..]
    );

    // 5. Deleting the reply: `threaded` deletes its message, `struck` strikes it.
    let f = edited_fixture(
        "post_destroyed",
        reply(3, 1003, "Edited: use a `DashMap` instead"),
    );
    assert_eq!(relay.post(&f.headers, f.body).0, 202);
    mock.wait_for(8, Duration::from_secs(15));
    let s = seen(&mock);
    let deletes = by_channel(&s, 6, &owner);
    assert_eq!(deletes["dev"][0].0, "chat.delete");
    assert_eq!(
        deletes["dev"][0].1,
        json!({"channel": "C0DEV", "ts": third["dev"]})
    );
    let (method, body) = &deletes["ops"][0];
    assert_eq!(method, "chat.update");
    let text = body["text"].as_str().unwrap();
    assert!(
        text.lines()
            .filter(|l| !l.is_empty())
            .all(|l| l.starts_with('~') && l.ends_with('~')),
        "{text}"
    );

    // 6. Recovered: posted again in the thread (deleted there), un-struck in `ops`.
    let f = edited_fixture(
        "post_recovered",
        reply(3, 1003, "Edited: use a `DashMap` instead"),
    );
    assert_eq!(relay.post(&f.headers, f.body).0, 202);
    mock.wait_for(10, Duration::from_secs(15));
    let s = seen(&mock);
    let recovered = by_channel(&s, 8, &owner);
    let (method, body) = &recovered["dev"][0];
    assert_eq!(method, "chat.postMessage");
    assert_eq!(body["thread_ts"], json!(first["dev"]));
    assert!(body["text"].as_str().unwrap().contains("DashMap"));
    let (method, body) = &recovered["ops"][0];
    assert_eq!(method, "chat.update");
    assert!(!body["text"].as_str().unwrap().starts_with('~'));

    // 7. An edit of a post the relay never sent changes nothing.
    let f = edited_fixture("post_edited", |_| {});
    assert_eq!(relay.post(&f.headers, f.body).0, 202);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(mock.requests().len(), 10, "{:#?}", &mock.requests()[10..]);
    let status = relay.status();
    for chat in status["chats"].as_array().unwrap() {
        assert_eq!(chat["dead_letters"], 0, "{chat}");
    }
    assert!(!relay.logs().contains(TOKEN));
}
