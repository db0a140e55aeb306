//! Dead letters sent again, through the real binary and a mock Slack: a
//! bad token dead-letters a post, a reload fixes the token, and the letter
//! is sent again from the CLI (`dead-letters resend`, against the running
//! relay's admin listener) and from the pane's form; the mock receives each
//! once, with the new token. Dropping forgets them.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

const POST: &str = "/api/chat.postMessage";

fn config(api: &str, token_var: &str) -> String {
    format!(
        r##"[discourse]
url = "https://forum.example.org"
webhook_secret = "${{DISCOURSE_WEBHOOK_SECRET}}"
delay = "0s"

[providers.slack]
kind = "slack"
token = "${{{token_var}}}"
api_url = "{api}"

[[chat]]
name = "dev"
provider = "slack"
channel = "#dev"
subscribe = ["all"]
"##
    )
}

fn chat(status: &Value) -> Value {
    status["chats"][0].clone()
}

fn cli(relay: &Relay, args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN)
        .arg("dead-letters")
        .arg("--admin")
        .arg(relay.admin_url(""))
        .args(args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn posts_with(mock: &Mock, token: &str) -> usize {
    let bearer = format!("Bearer {token}");
    mock.requests()
        .iter()
        .filter(|r| r.path == POST && r.header("Authorization") == Some(bearer.as_str()))
        .count()
}

#[test]
fn a_dead_letter_is_sent_again_after_the_token_is_fixed_from_the_cli_and_the_pane() {
    let mock = Mock::start();
    mock.set_route(
        POST,
        Reply::new(200, r#"{"ok":false,"error":"invalid_auth"}"#),
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "relay.toml", config(&mock.url("/api"), "BAD"));
    let env = [("BAD", "xoxb-bad"), ("GOOD", "xoxb-good")];
    let relay = Relay::start(&cfg, &dir.path().join("data"), &env);

    assert_eq!(relay.post_fixture("post_created_first_post").0, 202);
    relay.wait_status("dead-lettered", |s| chat(s)["dead_letters"] == 1);
    let (ok, listed) = cli(&relay, &["list", "dev"]);
    assert!(ok, "{listed}");
    assert!(listed.contains("invalid_auth"), "{listed}");
    assert!(listed.contains("How do I share state"), "{listed}");

    // The token is fixed by a reload; the platform accepts from now on.
    write(dir.path(), "relay.toml", config(&mock.url("/api"), "GOOD"));
    let reload = reqwest::blocking::Client::new()
        .post(relay.admin_url("/-/reload"))
        .send()
        .unwrap();
    assert!(reload.status().is_success());
    mock.set_route(
        POST,
        Reply::new(
            200,
            r#"{"ok":true,"channel":"C0DEV","ts":"1700000000.000100"}"#,
        ),
    );

    let (ok, said) = cli(&relay, &["resend", "dev"]);
    assert!(ok, "{said}");
    assert!(said.contains("queued 1 dead letter"), "{said}");
    let status = relay.wait_status("sent again", |s| {
        chat(s)["delivered"] == 1 && chat(s)["queue_depth"] == 0
    });
    assert_eq!(chat(&status)["dead_letters"], 0, "{status:#}");
    assert_eq!(posts_with(&mock, "xoxb-good"), 1);

    // A second one, sent again from the pane's form (CSRF token from the page).
    mock.set_route(
        POST,
        Reply::new(200, r#"{"ok":false,"error":"channel_not_found"}"#),
    );
    let reply = edited_fixture("post_created_reply_group_mention", |_| {});
    assert_eq!(relay.post(&reply.headers, reply.body).0, 202);
    relay.wait_status("dead-lettered again", |s| chat(s)["dead_letters"] == 1);
    mock.set_route(
        POST,
        Reply::new(
            200,
            r#"{"ok":true,"channel":"C0DEV","ts":"1700000000.000200"}"#,
        ),
    );
    let page = reqwest::blocking::get(relay.admin_url("/chats/dev/dead-letters"))
        .unwrap()
        .text()
        .unwrap();
    let value_after = |marker: &str| -> String {
        let at = page
            .find(marker)
            .unwrap_or_else(|| panic!("{marker} in {page}"));
        page[at + marker.len()..]
            .chars()
            .take_while(|c| *c != '"')
            .collect()
    };
    let csrf = value_after("name=\"csrf\" value=\"");
    let id = value_after("name=\"id\" value=\"");
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let forged = client
        .post(relay.admin_url("/chats/dev/dead-letters/resend"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("csrf=forged&id={id}"))
        .send()
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    let sent = client
        .post(relay.admin_url("/chats/dev/dead-letters/resend"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}&id={id}"))
        .send()
        .unwrap();
    assert_eq!(sent.status().as_u16(), 303);
    relay.wait_status("the reply sent again", |s| {
        chat(s)["delivered"] == 2 && chat(s)["queue_depth"] == 0
    });
    assert_eq!(
        posts_with(&mock, "xoxb-good"),
        3,
        "the first, its failed reply, the reply again"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(posts_with(&mock, "xoxb-good"), 3, "each sent once");

    // Dropping: nothing left to drop; an unknown chat is a 404 with a reason.
    let (ok, said) = cli(&relay, &["drop", "dev"]);
    assert!(ok && said.contains("dropped 0"), "{said}");
    let (ok, said) = cli(&relay, &["resend", "nope"]);
    assert!(!ok && said.contains("no chat named `nope`"), "{said}");
}

#[test]
fn a_failing_chat_is_announced_once_in_the_alerts_chat() {
    let mock = Mock::start();
    mock.set_route(
        POST,
        Reply::new(200, r#"{"ok":false,"error":"invalid_auth"}"#),
    );
    mock.set_route("/hooks/ops", Reply::new(200, "ok"));
    let dir = tempfile::tempdir().unwrap();
    let toml = config(&mock.url("/api"), "BAD")
        .replace("[[chat]]", "[server]\nalerts = \"ops\"\n\n[[chat]]")
        + &format!(
            r#"
[[chat]]
name = "ops"
provider = "webhook"
url = "{}"
"#,
            mock.url("/hooks/ops")
        );
    let cfg = write(dir.path(), "relay.toml", toml);
    let relay = Relay::start(&cfg, &dir.path().join("data"), &[("BAD", "xoxb-bad")]);

    // Two dead letters in `dev`: one alert (at most one per chat per 15 min).
    assert_eq!(relay.post_fixture("post_created_first_post").0, 202);
    let reply = edited_fixture("post_created_reply_group_mention", |_| {});
    assert_eq!(relay.post(&reply.headers, reply.body).0, 202);
    relay.wait_status("both dead-lettered", |s| chat(s)["dead_letters"] == 2);
    let end = std::time::Instant::now() + Duration::from_secs(15);
    let body = loop {
        if let Some(r) = mock.requests().into_iter().find(|r| r.path == "/hooks/ops") {
            break r.body;
        }
        assert!(
            std::time::Instant::now() < end,
            "no alert: {:?}",
            mock.requests()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(body.contains("dev is failing"), "{body}");
    assert!(body.contains("invalid_auth"), "{body}");
    assert!(!body.contains("xoxb-bad"), "{body}");
    std::thread::sleep(Duration::from_millis(500));
    let alerts = mock
        .requests()
        .into_iter()
        .filter(|r| r.path == "/hooks/ops")
        .count();
    assert_eq!(alerts, 1, "one alert per chat per alert_every");
}
