//! Event families beyond posts through the real binary and a mock Slack
//! Web API (and a Slack incoming webhook, which cannot edit): the review
//! queue's message edited when a moderator decides, a Discourse chat
//! channel mirrored with its edits and deletions, solved and closed notes,
//! and nothing for what is private, unlisted or staff-only.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const TOKEN: &str = "xoxb-canary-families";

fn families_config(api: &str) -> String {
    format!(
        r##"[discourse]
url = "https://forum.example.org"
webhook_secret = "${{DISCOURSE_WEBHOOK_SECRET}}"
delay = "0s"
hidden_tags = ["staff-*"]

[discourse.categories]
"4" = "general"
"5" = "support"
"7" = "support/rust"

[providers.slack]
kind = "slack"
token = "${{SLACK_TOKEN}}"
api_url = "{api}"

# The moderators' room: every family.
[[chat]]
name = "mods"
provider = "slack"
channel = "#mods"
rate_limit = "100/s"
subscribe = ["review", "users", "solved", "topics", "likes t/*", "assign", "chat channel:general", "chat channel:dm/*"]

# One direct-message channel, named exactly.
[[chat]]
name = "dm-mirror"
provider = "slack"
channel = "#dm"
rate_limit = "100/s"
subscribe = ["chat channel:dm/3"]

# Posts only.
[[chat]]
name = "posts"
provider = "slack"
channel = "#posts"
rate_limit = "100/s"
subscribe = ["all"]

# Support's flags, through a webhook that cannot edit.
[[chat]]
name = "hook"
provider = "slack"
webhook_url = "${{HOOK_URL}}"
rate_limit = "100/s"
subscribe = ["review c/general"]
"##
    )
}

struct Setup {
    mock: Mock,
    relay: Relay,
    _dir: tempfile::TempDir,
}

fn start() -> Setup {
    let mock = Mock::start();
    mock.route("/hook", Reply::new(200, "ok"));
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "relay.toml", families_config(&mock.url("/api")));
    let hook = mock.url("/hook");
    let env = [("SLACK_TOKEN", TOKEN), ("HOOK_URL", hook.as_str())];
    let relay = Relay::start(&cfg, &dir.path().join("data"), &env);
    Setup {
        mock,
        relay,
        _dir: dir,
    }
}

impl Setup {
    fn send(&self, f: Fixture) {
        assert_eq!(self.relay.post(&f.headers, f.body).0, 202);
    }

    fn send_fixture(&self, name: &str) {
        assert_eq!(self.relay.post_fixture(name).0, 202);
    }

    /// The requests from `from` on, once there are `to`: (path, body).
    fn calls(&self, from: usize, to: usize) -> Vec<(String, Value)> {
        let reqs = self.mock.wait_for(to, Duration::from_secs(15));
        reqs[from..to]
            .iter()
            .map(|r| {
                let body = serde_json::from_str(&r.body).unwrap_or(Value::Null);
                (r.path.clone(), body)
            })
            .collect()
    }

    /// No request beyond the first `n` arrives: a marker is sent to each
    /// chat after the step under test, and each chat's queue is in order,
    /// so anything the step sent would come before its chat's marker.
    fn nothing_more_than(&self, n: usize) {
        let (post, f) = marker_fixture("post_created_first_post");
        self.send(f);
        let user = format!("usermark{n}x{}", std::process::id());
        let u = user.clone();
        self.send(edited_fixture("user_created", move |v| {
            v["user"]["username"] = json!(u);
        }));
        let review = format!("reviewmark{n}x{}", std::process::id());
        let r = review.clone();
        self.send(edited_fixture("reviewable_created", move |v| {
            v["reviewable"]["id"] = json!(90_000 + n);
            v["reviewable"]["cooked"] = json!(format!("<p>{r}</p>"));
        }));
        // posts, mods (user), mods and hook (review).
        let reqs = self.mock.wait_for(n + 4, Duration::from_secs(15));
        let extra: Vec<&str> = reqs[n..].iter().map(|r| r.body.as_str()).collect();
        assert_eq!(extra.len(), 4, "only the markers: {extra:#?}");
        for (marker, copies) in [(post.as_str(), 1), (user.as_str(), 1), (review.as_str(), 2)] {
            let seen = extra.iter().filter(|b| b.contains(marker)).count();
            assert_eq!(seen, copies, "{marker} in {extra:#?}");
        }
    }
}

fn text(body: &Value) -> &str {
    body["text"].as_str().unwrap_or("")
}

#[test]
fn a_flag_is_edited_where_the_platform_can_and_followed_up_where_it_cannot() {
    let s = start();
    // The pane and /api/status list family rules in compact form.
    let status = s.relay.status();
    let mods = (status["chats"].as_array().unwrap().iter())
        .find(|c| c["name"] == "mods")
        .unwrap();
    let rules: Vec<&str> = (mods["rules"].as_array().unwrap().iter())
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(&rules[..2], ["watch review", "watch users"], "{mods}");
    assert!(rules.contains(&"watch chat channel:general"), "{rules:?}");
    let html = reqwest::blocking::Client::new()
        .get(s.relay.admin_url("/"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        html.contains("watch likes t/*"),
        "the pane shows family rules"
    );
    s.send_fixture("reviewable_created");
    let calls = s.calls(0, 2);
    let at = calls
        .iter()
        .position(|(p, _)| p.ends_with("chat.postMessage"))
        .unwrap();
    let to_mods = &calls[at];
    // The mock answers request #i with ts 1700000000+i.
    let ts = format!("{}.000100", 1_700_000_000 + at);
    let to_hook = calls.iter().find(|(p, _)| p == "/hook").unwrap();
    for (_, body) in [to_mods, to_hook] {
        let t = text(body);
        assert!(
            t.starts_with("🚩 *<https://forum.example.org/review/7|Flagged post>*"),
            "{t}"
        );
        // The flagged content is quoted, escaped: it cannot ping or link.
        assert!(t.contains("&lt;!channel&gt;"), "{t}");
        assert!(!t.contains("<!channel>"), "{t}");
    }
    assert_eq!(to_mods.1["channel"], "mods");

    // The score follows: the mods' message is edited; the webhook, which
    // cannot edit, gets nothing (its status did not change).
    s.send_fixture("reviewable_score_updated");
    let calls = s.calls(2, 3);
    assert!(calls[0].0.ends_with("chat.update"), "{calls:?}");
    assert_eq!(calls[0].1["ts"], ts.as_str(), "the first message");

    // Decided: edited to say so; the webhook gets a short follow-up.
    s.send_fixture("reviewable_transitioned_to_approved");
    let calls = s.calls(3, 5);
    let edit = calls
        .iter()
        .find(|(p, _)| p.ends_with("chat.update"))
        .unwrap();
    assert_eq!(edit.1["ts"], ts.as_str());
    assert!(
        text(&edit.1).starts_with("✅ *<https://forum.example.org/review/7|Flagged post: agreed>*"),
        "{edit:?}"
    );
    let follow = calls.iter().find(|(p, _)| p == "/hook").unwrap();
    assert!(
        text(&follow.1).contains("Flagged post: agreed"),
        "{follow:?}"
    );
    s.nothing_more_than(5);
}

#[test]
fn a_flag_on_a_private_message_reaches_a_wildcard_rule_only_as_a_neutral_line() {
    let s = start();
    // The relay learns that topic 104 is a PM (to support-team).
    s.send_fixture("topic_created_private_message");
    let pm_flag = edited_fixture("reviewable_created", |v| {
        let r = &mut v["reviewable"];
        r["topic_id"] = json!(104);
        r["category_id"] = Value::Null;
        r["raw"] = json!("my private details");
        r["cooked"] = json!("<p>my private details</p>");
    });
    s.send(pm_flag);
    let calls = s.calls(0, 1);
    let t = text(&calls[0].1);
    assert_eq!(calls[0].1["channel"], "mods");
    assert_eq!(
        t,
        "🚩 *<https://forum.example.org/review/7|Flagged post (private)>*"
    );
    // Nothing else: the webhook names General, which a PM is not in.
    s.nothing_more_than(1);
}

#[test]
fn a_chat_channel_is_mirrored_with_edits_and_deletions_and_direct_messages_never() {
    let s = start();
    s.send_fixture("chat_message_created");
    let calls = s.calls(0, 1);
    assert_eq!(calls[0].1["channel"], "mods");
    let t = text(&calls[0].1);
    assert!(
        t.starts_with(
            "💬 *<https://forum.example.org/chat/c/general/3/4521|bob (Bob Ramirez) in #General>*"
        ),
        "{t}"
    );
    assert!(t.contains("Has anyone tried the 2.0 beta"), "{t}");

    let mut edited = edited_fixture("chat_message_created", |v| {
        let m = &mut v["chat_message"]["message"];
        m["message"] = json!("Solved it: update the ABI crate.");
        m["cooked"] = json!("<p>Solved it: update the ABI crate.</p>");
    });
    edited.set_header("X-Discourse-Event", "chat_message_edited");
    s.send(edited);
    let calls = s.calls(1, 2);
    assert!(calls[0].0.ends_with("chat.update"), "{calls:?}");
    assert_eq!(calls[0].1["ts"], "1700000000.000100");
    assert!(text(&calls[0].1).contains("Solved it: update the ABI crate."));

    let mut trashed = edited_fixture("chat_message_created", |v| {
        v["chat_message"]["message"]["deleted_at"] = json!("2026-03-11T08:30:00Z");
    });
    trashed.set_header("X-Discourse-Event", "chat_message_trashed");
    s.send(trashed);
    let calls = s.calls(2, 3);
    assert!(calls[0].0.ends_with("chat.delete"), "{calls:?}");
    assert_eq!(calls[0].1["ts"], "1700000000.000100");

    // A direct message (channel 3, slugged like the rule's): only the chat
    // naming `dm/3` exactly gets it; `channel:general` and `channel:dm/*`
    // do not name it.
    let dm = edited_fixture("chat_message_created", |v| {
        v["chat_message"]["message"]["id"] = json!(4600);
        v["chat_message"]["channel"]["chatable_type"] = json!("DirectMessage");
    });
    s.send(dm);
    let calls = s.calls(3, 4);
    assert_eq!(calls[0].1["channel"], "dm", "{calls:?}");
    s.nothing_more_than(4);
}

#[test]
fn solved_and_closed_notes_beside_the_marks_on_the_first_post() {
    let s = start();
    s.send_fixture("post_created_first_post");
    s.calls(0, 1);
    s.send_fixture("accepted_solution");
    let calls = s.calls(1, 3);
    let mark = calls
        .iter()
        .find(|(p, _)| p.ends_with("chat.update"))
        .unwrap();
    assert!(text(&mark.1).starts_with("✅ "), "{mark:?}");
    let note = calls
        .iter()
        .find(|(p, _)| p.ends_with("chat.postMessage"))
        .unwrap();
    assert_eq!(note.1["channel"], "mods");
    assert!(text(&note.1).starts_with("✅ *<https://forum.example.org/t/how-do-i-share-state-between-async-tasks/101/2|Solved>*: “How do I share state between async tasks?”"), "{note:?}");
    assert!(text(&note.1).contains("(answer by alice)"), "{note:?}");

    let closed = edited_fixture("topic_closed_status_updated", |v| {
        let t = &mut v["topic"];
        t["id"] = 101.into();
        t["title"] = "How do I share state between async tasks?".into();
        t["slug"] = "how-do-i-share-state-between-async-tasks".into();
        t["category_id"] = 7.into();
    });
    s.send(closed);
    let calls = s.calls(3, 5);
    let note = calls
        .iter()
        .find(|(p, _)| p.ends_with("chat.postMessage"))
        .unwrap();
    assert!(
        text(&note.1).starts_with(
            "🔒 *<https://forum.example.org/t/how-do-i-share-state-between-async-tasks/101|Closed>*"
        ),
        "{note:?}"
    );
    let mark = calls
        .iter()
        .find(|(p, _)| p.ends_with("chat.update"))
        .unwrap();
    assert!(text(&mark.1).starts_with("✅ 🔒 "), "{mark:?}");
}

#[test]
fn users_and_assignments_and_nothing_for_unlisted_or_staff_only_topics() {
    let s = start();
    s.send_fixture("user_created");
    let calls = s.calls(0, 1);
    let t = text(&calls[0].1);
    assert_eq!(
        t,
        "👋 *<https://forum.example.org/u/newcomer42|New user: newcomer42 (Noah Newcomer)>*"
    );
    s.send_fixture("assigned");
    let calls = s.calls(1, 2);
    assert!(
        text(&calls[0].1)
            .starts_with("📋 *<https://forum.example.org/t/101|Assigned to carol by alice>*"),
        "{calls:?}"
    );

    // A like in a tagged topic: `likes t/*`.
    s.send_fixture("topic_created");
    s.send_fixture("post_liked");
    let calls = s.calls(2, 3);
    let t = text(&calls[0].1);
    assert!(
        t.starts_with("❤️ *<https://forum.example.org/t/how-do-i-share-state-between-async-tasks/101/2|bob liked a post by alice>*: “How do I share state between async tasks?” in support/rust"),
        "{t}"
    );
    // Tagged only with a staff-only tag now: `likes t/*` does not name
    // it, so nothing.
    let staff = edited_fixture("topic_created", |v| {
        v["topic"]["tags"] = json!([{"id": 9, "name": "staff-notes", "slug": "staff-notes"}]);
    });
    s.send(staff);
    s.send(edited_fixture("post_liked", |_| {}));
    // An unlisted topic's first post and its likes: nothing anywhere.
    s.send_fixture("topic_created_unlisted");
    s.send_fixture("post_created_unlisted_topic_first_post");
    let unlisted_like = edited_fixture("post_liked", |v| {
        v["like"]["post"]["topic_id"] = json!(106);
    });
    s.send(unlisted_like);
    s.nothing_more_than(3);
}
