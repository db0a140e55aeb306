//! Safe by default, through the real binary and a mock Slack. Unlisted
//! topics are never announced, whatever the rule: the first post of a topic
//! created unlisted (whichever of the two events arrives first), and a topic
//! unlisted after its announcement, whose message then follows the chat's
//! `on_delete` and comes back when the topic is listed again. Staff-only
//! tags (`hidden_tags`) never appear in a message and reach only rules that
//! name them exactly.

mod common;

use std::time::Duration;

use common::*;

fn config(api: &str, delay: &str) -> String {
    format!(
        r##"[discourse]
url = "https://forum.example.org"
webhook_secret = "${{DISCOURSE_WEBHOOK_SECRET}}"
delay = "{delay}"

[providers.slack]
kind = "slack"
token = "${{SLACK_TOKEN}}"
api_url = "{api}"

[[chat]]
name = "everything"
provider = "slack"
channel = "#all"
rate_limit = "100/s"
subscribe = ["all"]
"##
    )
}

fn posts_before(mock: &Mock, marker: &str) -> Vec<String> {
    mock.before_marker(marker, Duration::from_secs(20))
        .iter()
        .map(|r| r.path.clone())
        .collect()
}

/// A relay with [`config`]'s one `all` chat on a mock Slack.
fn everything_chat(delay: &str) -> (Mock, tempfile::TempDir, Relay) {
    let mock = Mock::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "relay.toml", config(&mock.url("/api"), delay));
    let relay = Relay::start(&cfg, &dir.path().join("data"), &[("SLACK_TOKEN", "xoxb-u")]);
    (mock, dir, relay)
}

#[test]
fn the_first_post_of_an_unlisted_topic_reaches_no_chat() {
    let (mock, _dir, relay) = everything_chat("0s");
    // The topic event first: the relay learns the topic is unlisted.
    assert_eq!(relay.post_fixture("topic_created_unlisted").0, 202);
    assert_eq!(
        relay
            .post_fixture("post_created_unlisted_topic_first_post")
            .0,
        202
    );
    let marker = relay.post_marker("post_created_first_post");
    assert_eq!(posts_before(&mock, &marker), Vec::<String>::new());
}

#[test]
fn an_unlisted_topic_event_arriving_after_the_post_still_stops_it() {
    // The post waits out its delay; the topic event arrives inside it.
    let (mock, _dir, relay) = everything_chat("2s");
    assert_eq!(
        relay
            .post_fixture("post_created_unlisted_topic_first_post")
            .0,
        202
    );
    assert_eq!(relay.post_fixture("topic_created_unlisted").0, 202);
    let marker = relay.post_marker("post_created_first_post");
    assert_eq!(posts_before(&mock, &marker), Vec::<String>::new());
    let explain = relay.logs();
    assert!(!explain.contains("panicked"), "{explain}");
}

#[test]
fn unlisting_a_topic_deletes_its_announcement_and_listing_it_again_posts_it() {
    let (mock, _dir, relay) = everything_chat("0s");
    assert_eq!(relay.post_fixture("post_created_first_post").0, 202);
    let sent = mock.wait_for(1, Duration::from_secs(15));
    assert!(sent[0].path.ends_with("/chat.postMessage"), "{:?}", sent[0]);
    let ts = "1700000000.000100"; // the mock's answer to the first post

    // Unlisted: the chat's on_delete (delete) removes the message.
    assert_eq!(relay.post_fixture("topic_visible_status_updated").0, 202);
    let after = mock.wait_for(2, Duration::from_secs(15));
    assert!(after[1].path.ends_with("/chat.delete"), "{:?}", after[1]);
    assert_eq!(after[1].json()["ts"], ts);

    // A reply in the unlisted topic reaches no chat either.
    let reply = edited_fixture("post_created_reply_group_mention", |_| {});
    assert_eq!(relay.post(&reply.headers, reply.body).0, 202);
    let marker = relay.post_marker("post_created_first_post");
    let before = posts_before(&mock, &marker);
    assert_eq!(before.len(), 2, "{before:?}");

    // Listed again: the announcement is posted anew.
    let listed = edited_fixture("topic_visible_status_updated", |v| {
        v["topic"]["visible"] = true.into();
    });
    assert_eq!(relay.post(&listed.headers, listed.body).0, 202);
    let again = mock.wait_for(4, Duration::from_secs(15));
    assert!(
        again[3].path.ends_with("/chat.postMessage"),
        "{:?}",
        again[3]
    );
    assert!(
        again[3].json()["text"]
            .as_str()
            .is_some_and(|t| t.contains("share state")),
        "{}",
        again[3].json()
    );
}

#[test]
fn hidden_tags_never_show_and_reach_only_rules_naming_them() {
    let mock = Mock::start();
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        r##"[discourse]
url = "https://forum.example.org"
webhook_secret = "${{DISCOURSE_WEBHOOK_SECRET}}"
delay = "0s"
hidden_tags = ["WEB*"]

[providers.slack]
kind = "slack"
token = "${{SLACK_TOKEN}}"
api_url = "{api}"

[templates]
tags = "tags=[{{{{join topic.tags \",\"}}}}] {{{{#each topic.tags}}}}({{{{this}}}}){{{{/each}}}}"

[[chat]]
name = "shown"
provider = "slack"
channel = "#shown"
template = "tags"
subscribe = ["all"]

[[chat]]
name = "named"
provider = "slack"
channel = "#named"
template = "tags"
subscribe = ["t/web_sockets"]

[[chat]]
name = "globbed"
provider = "slack"
channel = "#globbed"
template = "tags"
subscribe = ["t/web*"]
"##,
        api = mock.url("/api")
    );
    let cfg = write(dir.path(), "relay.toml", toml);
    let relay = Relay::start(&cfg, &dir.path().join("data"), &[("SLACK_TOKEN", "xoxb-h")]);
    // Topic 101 is tagged `async` and `web_sockets` (slug `web-sockets`).
    assert_eq!(relay.post_fixture("topic_created").0, 202);
    assert_eq!(relay.post_fixture("post_created_first_post").0, 202);
    let sent = mock.wait_for(2, Duration::from_secs(15));
    let mut by_channel: Vec<(String, String)> = sent
        .iter()
        .map(|r| {
            let b = r.json();
            (
                b["channel"].as_str().unwrap_or("").to_string(),
                b["text"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    by_channel.sort();
    assert_eq!(
        by_channel,
        [
            ("named".to_string(), "tags=[async] (async)".to_string()),
            ("shown".to_string(), "tags=[async] (async)".to_string()),
        ]
    );
    // Routing is one transaction: with the others delivered, `globbed` got
    // nothing queued at all.
    let status = relay.wait_status("the two deliveries acknowledged", |s| {
        s["chats"]
            .as_array()
            .is_some_and(|cs| cs.iter().filter(|c| c["delivered"] == 1).count() == 2)
    });
    let globbed = status["chats"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == "globbed"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(globbed["delivered"], 0, "{status:#}");
    assert_eq!(globbed["queue_depth"], 0, "{status:#}");
}

/// With an API key that may read `/tag_groups.json`, the tags of a tag
/// group only some groups see are staff-only without `hidden_tags`: not in
/// the message, and not matched by a glob.
#[test]
fn tags_of_restricted_tag_groups_are_learned_from_the_api_and_hidden() {
    let forum = Mock::start();
    let api_file = |name: &str| {
        let text =
            std::fs::read_to_string(root().join(format!("tests/fixtures/api/{name}"))).unwrap();
        Reply::new(200, &text).header("content-type", "application/json")
    };
    forum.route("/site.json", api_file("site.json"));
    forum.route("/tag_groups.json", api_file("tag_groups.json"));
    forum.always(Reply::new(404, r#"{"errors":["not found"]}"#));
    let chats = Mock::start();
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        r##"[discourse]
url = "{forum}"
webhook_secret = "${{DISCOURSE_WEBHOOK_SECRET}}"
api_key = "${{DISCOURSE_API_KEY}}"
delay = "0s"

[providers.slack]
kind = "slack"
token = "${{SLACK_TOKEN}}"
api_url = "{api}"

[templates]
tags = "tags=[{{{{join topic.tags \",\"}}}}]"

[[chat]]
name = "shown"
provider = "slack"
channel = "#shown"
template = "tags"
subscribe = ["all"]

[[chat]]
name = "globbed"
provider = "slack"
channel = "#globbed"
template = "tags"
subscribe = ["t/esc*"]
"##,
        forum = forum.url(""),
        api = chats.url("/api")
    );
    let cfg = write(dir.path(), "relay.toml", toml);
    let env = [
        ("SLACK_TOKEN", "xoxb-h"),
        ("DISCOURSE_API_KEY", "api-key-123"),
    ];
    let relay = Relay::start(&cfg, &dir.path().join("data"), &env);
    relay.wait_log("categories learned", |l| {
        l.contains("learned categories from /site.json")
    });
    let url = forum.url("");
    let mut topic = edited_fixture("topic_created", |v| {
        v["topic"]["tags"] = serde_json::json!([
            {"id": 11, "name": "async", "slug": "async"},
            {"id": 40, "name": "escalated", "slug": "escalated"}
        ]);
    });
    topic.set_header("X-Discourse-Instance", &url);
    assert_eq!(relay.post(&topic.headers, topic.body).0, 202);
    let mut post = fixture("post_created_first_post");
    post.set_header("X-Discourse-Instance", &url);
    assert_eq!(relay.post(&post.headers, post.body).0, 202);
    let sent = chats.wait_for(1, Duration::from_secs(15));
    let b = sent[0].json();
    assert_eq!(b["channel"], "shown", "{b}");
    assert_eq!(b["text"], "tags=[async]", "escalated is staff-only: {b}");
    // `globbed` got nothing: the status shows one delivery in all.
    let status = relay.wait_status("the one delivery acknowledged", |s| {
        s["chats"].as_array().is_some_and(|cs| {
            cs.iter()
                .map(|c| c["delivered"].as_u64().unwrap_or(0))
                .sum::<u64>()
                == 1
        })
    });
    assert!(
        chats.requests().iter().all(|r| !r.body.contains("globbed")),
        "{status:#}"
    );
}
