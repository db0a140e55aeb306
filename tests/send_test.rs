//! `send-test`: the test message, and with `--post` a real forum post
//! fetched through the Discourse API (a mock serving the recorded API
//! answers), sent to one chat (a mock Slack) as that chat would get it;
//! never a post the chat's rules would not give it.

mod common;

use std::process::Command;

use common::*;

fn api(name: &str) -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/api/{name}")),
    )
    .unwrap()
}

fn config(mock: &Mock, with_key: bool) -> String {
    let key = if with_key {
        "api_key = \"${DISCOURSE_API_KEY}\""
    } else {
        ""
    };
    format!(
        r##"[discourse]
url = "{forum}"
{key}

[providers.slack]
kind = "slack"
token = "${{SLACK_TOKEN}}"
api_url = "{api}"

[[chat]]
name = "dev"
provider = "slack"
channel = "#dev"
subscribe = ["c/support/**"]
"##,
        forum = mock.url(""),
        api = mock.url("/api"),
    )
}

fn send_test(cfg: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["send-test", "--config"])
        .arg(cfg)
        .args(args)
        .env("SLACK_TOKEN", "xoxb-send-test")
        .env("DISCOURSE_API_KEY", "api-key-send-test")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn posted(mock: &Mock) -> Vec<String> {
    mock.requests()
        .iter()
        .filter(|r| r.path == "/api/chat.postMessage")
        .map(|r| r.json()["text"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn a_forum_post_is_sent_as_the_chat_would_get_it_by_id_or_url() {
    let mock = Mock::start();
    mock.route("/site.json", Reply::new(200, &api("site.json")));
    mock.route("/t/101.json", Reply::new(200, &api("t_101.json")));
    mock.route("/posts/1002.json", Reply::new(200, &api("posts_1002.json")));
    mock.route(
        "/posts/by_number/101/2.json",
        Reply::new(200, &api("posts_1002.json")),
    );
    mock.route(
        "/api/chat.postMessage",
        Reply::new(200, r#"{"ok":true,"channel":"C0DEV","ts":"1.2"}"#),
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "relay.toml", config(&mock, true));

    let (ok, out) = send_test(&cfg, &["dev"]);
    assert!(
        ok && out.contains("sent the test message to `dev`"),
        "{out}"
    );

    let (ok, out) = send_test(&cfg, &["dev", "--post", "1002"]);
    assert!(ok && out.contains("sent post 1002 to `dev`"), "{out}");
    let url = mock.url("/t/how-do-i-share-state-between-async-tasks/101/2");
    let (ok, out) = send_test(&cfg, &["dev", "--post", &url]);
    assert!(ok, "{out}");

    let texts = posted(&mock);
    assert_eq!(texts.len(), 3, "{texts:?}");
    // The post in Support > Rust (category 7 from /t/101.json, its path
    // from /site.json), rendered with the chat's template: title, link, text.
    for text in &texts[1..] {
        assert!(
            text.contains("How do I share state between async tasks?"),
            "{text}"
        );
        assert!(
            text.contains("/t/how-do-i-share-state-between-async-tasks/101/2"),
            "{text}"
        );
        assert!(text.contains("RwLock"), "{text}");
    }
    // The API key went to the forum only, as Discourse asks for it.
    let site = mock
        .requests()
        .into_iter()
        .find(|r| r.path == "/site.json")
        .unwrap();
    assert_eq!(site.header("Api-Key"), Some("api-key-send-test"));
    assert_eq!(site.header("Api-Username"), Some("system"));
}

#[test]
fn a_post_the_chat_would_not_get_is_not_sent() {
    let mock = Mock::start();
    mock.route("/site.json", Reply::new(200, &api("site.json")));
    mock.route("/t/104.json", Reply::new(200, &api("t_104.json")));
    // A post in the private message to `support-team`.
    let mut pm: serde_json::Value = serde_json::from_str(&api("posts_1002.json")).unwrap();
    pm["id"] = 1014.into();
    pm["topic_id"] = 104.into();
    pm["post_number"] = 1.into();
    pm["post_url"] = "/t/account-locked-after-2fa-reset/104/1".into();
    mock.route("/posts/1014.json", Reply::new(200, &pm.to_string()));
    mock.route("/t/101.json", Reply::new(200, &api("t_101.json")));
    mock.route("/posts/1002.json", Reply::new(200, &api("posts_1002.json")));
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "relay.toml", config(&mock, true));

    let (ok, out) = send_test(&cfg, &["dev", "--post", "1014"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("not sent") && out.contains("rules do not take this post"),
        "{out}"
    );
    assert!(posted(&mock).is_empty());

    // Without an API key there is nothing to fetch the post with.
    let cfg = write(dir.path(), "nokey.toml", config(&mock, false));
    let (ok, out) = send_test(&cfg, &["dev", "--post", "1002"]);
    assert!(!ok && out.contains("set `api_key`"), "{out}");
    let (ok, out) = send_test(&cfg, &["dev", "--post", "not-a-post"]);
    assert!(
        !ok && out.contains("neither a post id nor a post URL"),
        "{out}"
    );
    assert!(posted(&mock).is_empty());
}
