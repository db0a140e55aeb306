//! `discourse-relay explain` on the shared Discourse fixtures, through the
//! real binary: which chats each recorded webhook reaches, and what exactly
//! would be sent. Files are read in order, so earlier events (and API
//! responses) teach later ones, as in a running relay.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_discourse-relay");

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs explain --json with `tests/configs/good/fixture_forum.toml` over
/// fixture names (`webhooks/x` or `api/x`), one JSON object per event.
fn explain(files: &[&str], env: &[(&str, &str)]) -> Vec<Value> {
    let mut cmd = Command::new(BIN);
    cmd.arg("explain")
        .arg("--json")
        .arg("--config")
        .arg(root().join("tests/configs/good/fixture_forum.toml"))
        .env_remove("SLACK_BOT_TOKEN")
        .env_remove("DISCOURSE_WEBHOOK_SECRET");
    for (k, v) in env {
        cmd.env(k, v);
    }
    for f in files {
        cmd.arg(root().join("tests/fixtures").join(format!("{f}.json")));
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "explain failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn chats(v: &Value) -> Vec<&str> {
    v["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["chat"].as_str().unwrap())
        .collect()
}

fn delivery<'a>(v: &'a Value, chat: &str) -> &'a Value {
    v["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["chat"] == chat)
        .unwrap_or_else(|| panic!("no delivery to {chat} in {v}"))
}

#[test]
fn a_topic_and_its_replies_through_the_rules() {
    let out = explain(
        &[
            "api/site",
            "webhooks/topic_created",
            "webhooks/post_created_first_post",
            "webhooks/post_created_reply_group_mention",
            "webhooks/post_created_whisper",
            "webhooks/topic_edited_category_changed",
            "webhooks/post_created_category_changed_whisper",
            "webhooks/post_created_small_action_category_changed_legacy",
            "webhooks/post_created_small_action_closed",
            "webhooks/post_created_subcategory",
            "webhooks/ping",
            "webhooks/user_created",
            "webhooks/post_edited",
        ],
        &[],
    );
    assert_eq!(out.len(), 12, "one line per webhook file");

    // topic_created teaches (tags) and notifies nobody.
    assert_eq!(out[0]["event"], "topic_created");
    assert!(chats(&out[0]).is_empty());
    assert!(
        out[0]["skipped"]
            .as_str()
            .unwrap()
            .contains("topic_created")
    );

    // First post in General, tagged async + web_sockets (learned from topic_created):
    // the tag hook gets it; the firehose mutes web_sockets.
    assert_eq!(chats(&out[1]), vec!["async-hook"]);
    assert_eq!(delivery(&out[1], "async-hook")["filter"], "watch");
    assert_eq!(delivery(&out[1], "async-hook")["rule"], "watch t/async");

    // A reply mentioning @staff-group: the group_mention rule beats the category rules.
    assert_eq!(chats(&out[2]), vec!["staff", "async-hook"]);
    assert_eq!(
        delivery(&out[2], "staff")["rule"],
        "watch group_mention:staff-group"
    );

    // A plain whisper goes nowhere.
    assert!(chats(&out[3]).is_empty());
    assert!(
        out[3]["skipped"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("whisper")
    );

    // The move to Support > Rust is announced by the category-changed post,
    // only to chats whose deciding rule names a category.
    assert!(chats(&out[4]).is_empty(), "topic_edited notifies nobody");
    assert_eq!(chats(&out[5]), vec!["support"]);
    assert_eq!(
        chats(&out[6]),
        vec!["support"],
        "legacy small-action form too"
    );

    // Other small actions are skipped.
    assert!(chats(&out[7]).is_empty());
    assert!(
        out[7]["skipped"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("small action")
    );

    // A reply in Development > Rust: `follow` is new topics only; the firehose
    // (no web_sockets tag on this topic) gets it. Same leaf slug as
    // Support > Rust, different path.
    assert_eq!(chats(&out[8]), vec!["firehose"]);

    assert_eq!(out[9]["skipped"], "ping: nothing to relay");
    // A signup is a `users` event: no chat here has a users rule.
    assert_eq!(out[10]["skipped"], "no chat's rules match this event");
    assert!(chats(&out[11]).is_empty(), "edits do not notify");
}

#[test]
fn private_messages_only_through_group_rules() {
    let without = explain(&["webhooks/post_created_private_message"], &[]);
    assert!(chats(&without[0]).is_empty());
    assert!(
        without[0]["skipped"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("private message")
    );

    // GET /t/104.json names the support-team inbox.
    let with = explain(&["api/t_104", "webhooks/post_created_private_message"], &[]);
    assert_eq!(chats(&with[0]), vec!["staff"]);
    assert_eq!(
        delivery(&with[0], "staff")["rule"],
        "watch group_message:support-team"
    );
}

#[test]
fn requests_are_exact_escaped_and_redacted() {
    let token = "xoxb-canary-0123456789";
    for fixture in [
        "webhooks/post_created_hostile_content",
        "webhooks/post_created_hostile_content_html_escaped_json",
    ] {
        let out = explain(&[fixture], &[("SLACK_BOT_TOKEN", token)]);
        let text = serde_json::to_string(&out).unwrap();
        assert!(!text.contains(token), "token leaked: {text}");
        let d = delivery(&out[0], "firehose");
        let req = &d["request"];
        assert_eq!(req["method"], "POST");
        assert_eq!(req["url"], "http://127.0.0.1:9/api/chat.postMessage");
        assert_eq!(req["headers"]["Authorization"], "Bearer [redacted]");
        let body: Value = serde_json::from_str(req["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["channel"], "firehose");
        assert!(body.get("link_names").is_none());
        let msg = body["text"].as_str().unwrap();
        // Slack control sequences from the post are inert entities.
        assert!(msg.contains("&lt;!channel&gt;"), "{msg}");
        assert!(!msg.contains("<!channel>"));
        assert!(!msg.contains("<@U024BE7LH>"));
        assert!(!msg.contains("<https://evil.example|"));
        assert!(msg.contains("&lt;script&gt;"));
        assert_eq!(d["text"], msg);
    }
}

#[test]
fn unset_secrets_show_as_references() {
    let out = explain(&["webhooks/post_created_hostile_content"], &[]);
    let d = delivery(&out[0], "firehose");
    assert_eq!(
        d["request"]["headers"]["Authorization"],
        "Bearer ${SLACK_BOT_TOKEN}"
    );
}

#[test]
fn webhook_provider_posts_valid_json() {
    let out = explain(
        &["webhooks/topic_created", "webhooks/post_created_first_post"],
        &[],
    );
    let d = delivery(&out[1], "async-hook");
    assert_eq!(d["request"]["url"], "http://127.0.0.1:9/hook");
    let body: Value = serde_json::from_str(d["request"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        body["topic"]["title"],
        "How do I share state between async tasks?"
    );
}

#[test]
fn bad_event_files_fail_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"headers": {"X-Discourse-Event": "post_created"}, "raw_body": "{\"post\":"}"#,
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["explain", "--config"])
        .arg(root().join("examples/quickstart.toml"))
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.json") && err.contains("not valid JSON"),
        "{err}"
    );
}

#[test]
fn validate_exit_codes_and_format() {
    let ok = Command::new(BIN)
        .args(["validate"])
        .arg(root().join("examples/quickstart.toml"))
        .output()
        .unwrap();
    assert!(ok.status.success());
    let bad = Command::new(BIN)
        .current_dir(root())
        .args([
            "validate",
            "tests/configs/bad/unknown_keys.toml",
            "examples/quickstart.toml",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let out = String::from_utf8_lossy(&bad.stdout);
    assert!(
        out.contains("tests/configs/bad/unknown_keys.toml:3:1: error: unknown key `dealy`; did you mean `delay`?"),
        "{out}"
    );
    assert!(out.contains("examples/quickstart.toml: ok"), "{out}");
}

/// Runs explain --json with `config` over every recorded webhook (after
/// `/site.json`), keyed by file name.
fn explain_all(config: &str) -> Vec<(String, Value)> {
    let dir = root().join("tests/fixtures/webhooks");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    let out = Command::new(BIN)
        .arg("explain")
        .arg("--json")
        .arg("--config")
        .arg(root().join(config))
        .arg(root().join("tests/fixtures/api/site.json"))
        .args(names.iter().map(|n| dir.join(n)))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), names.len(), "one line per webhook");
    names
        .into_iter()
        .map(|n| n.trim_end_matches(".json").to_string())
        .zip(lines)
        .collect()
}

#[test]
fn every_fixture_gets_a_decision_and_the_families_route_by_their_rules() {
    let out = explain_all("tests/configs/good/families.toml");
    assert!(out.len() >= 36, "fixtures missing");
    let by: std::collections::HashMap<&str, &Value> =
        out.iter().map(|(n, v)| (n.as_str(), v)).collect();
    for (name, v) in &out {
        let skipped = v["skipped"].as_str().unwrap_or("");
        assert!(!skipped.contains("not relayed"), "{name}: {v}");
    }
    let routed = |name: &str| {
        let mut c = chats(by[name]);
        c.sort_unstable();
        c
    };
    // Flags and queued posts: the mods everywhere, support in Support.
    assert_eq!(routed("reviewable_created"), ["mods"], "a flag in General");
    assert_eq!(
        routed("reviewable_created_queued_post"),
        ["mods", "support"]
    );
    assert_eq!(routed("reviewable_transitioned_to_approved"), ["mods"]);
    let text = delivery(by["reviewable_transitioned_to_approved"], "mods")["text"]
        .as_str()
        .unwrap();
    assert!(
        text.starts_with("✅ Flagged post: agreed (https://forum.example.org/review/7)"),
        "{text}"
    );
    assert_eq!(
        delivery(by["reviewable_created_queued_post"], "support")["rule"],
        "watch review c/support"
    );
    // Users: the mods; a member added to staff-group: the team too.
    assert_eq!(routed("user_created"), ["mods"]);
    assert_eq!(routed("user_added_to_group"), ["mods", "team"]);
    assert_eq!(
        delivery(by["user_added_to_group"], "team")["rule"],
        "watch users group:staff-group"
    );
    // Solved and likes in Support > Rust.
    assert_eq!(routed("accepted_solution"), ["support"]);
    assert_eq!(routed("post_liked"), ["support"]);
    // Topic states: the team's topics rule, but Support muted for it.
    assert_eq!(
        routed("topic_closed_status_updated"),
        ["team"],
        "Development is not Support"
    );
    assert_eq!(
        routed("topic_pinned_status_updated"),
        ["support"],
        "muted for the team"
    );
    assert_eq!(routed("assigned"), ["team"]);
    assert_eq!(routed("chat_message_created"), ["team"]);
    // Not notifying: a ping, edits, unlisting.
    assert_eq!(by["ping"]["skipped"], "ping: nothing to relay");
    assert!(routed("topic_visible_status_updated").is_empty());
}
