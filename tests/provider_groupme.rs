//! GroupMe through a mock bots API: the exact `POST /v3/bots/post` for the
//! hostile fixture (plain text: nothing can mention without an attachment),
//! the bot id hidden wherever a request is shown (`explain`), and the
//! classification of GroupMe's answers, none of which may carry the bot id.

mod common;

use common::*;
use discourse_relay::providers::Outcome;
use serde_json::json;

const BOT_ID: &str = "c4a7a2b0d1e2f3a4b5c6d7e8f9";

const POST_URL: &str = "https://forum.example.org/t/channel-everyone-script-alert-1-script-bold-link-javascript-x-b/105/1";

fn config(api_url: &str) -> String {
    format!(
        r##"[discourse]
url = "https://forum.example.org"
[providers.groupme]
api_url = "{api_url}"
[[chat]]
name = "group"
provider = "groupme"
bot_id = "${{GROUPME_BOT_ID}}"
subscribe = ["all"]
"##
    )
}

fn run_at(api_url: &str, fixture: &str) -> Outcome {
    deliver(
        &config(api_url),
        "group",
        fixture,
        &[("GROUPME_BOT_ID", BOT_ID)],
    )
}

fn run(mock: &Mock, fixture: &str) -> Outcome {
    run_at(&mock.url("/gm"), fixture)
}

fn groupme_error(status: u16, errors: &[&str]) -> Reply {
    Reply::new(
        status,
        &json!({"meta": {"code": status, "errors": errors}, "response": null}).to_string(),
    )
    .header("Content-Type", "application/json")
}

#[test]
fn hostile_post_request_is_exact() {
    let mock = Mock::start();
    mock.script([Reply::new(202, "")]);
    let out = run(&mock, "post_created_hostile_content");
    assert_eq!(out, Outcome::Sent { remote_id: None });
    let r = &mock.requests()[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/gm/v3/bots/post");
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert!(r.header("authorization").is_none());
    // Plain text, as the post wrote it: GroupMe shows it literally and only
    // a `mentions` attachment (never sent) can notify anyone.
    let text = format!(
        "<!channel> @everyone <script>alert(1)</script> *bold* [link](javascript:x) & </b> ({POST_URL}) by Mallory Mischief in general\n<!channel> @everyone <script>alert(1)</script> bold [link](javascript:x) & </b> @here @room <@U024BE7LH> <https://evil.example|click me> strike code ||spoiler||"
    );
    assert_eq!(r.json(), json!({"bot_id": BOT_ID, "text": text}));
    let keys: Vec<String> = r.json().as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["bot_id", "text"]);
}

#[test]
fn explain_hides_the_bot_id_in_the_body() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("groupme.toml");
    std::fs::write(&cfg, config("https://api.groupme.com")).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["explain", "--json", "--config"])
        .arg(&cfg)
        .arg(root().join("tests/fixtures/webhooks/post_created_hostile_content.json"))
        .env("GROUPME_BOT_ID", BOT_ID)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stdout.contains(BOT_ID) && !stderr.contains(BOT_ID));
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let request = &v["deliveries"][0]["request"];
    assert_eq!(request["url"], "https://api.groupme.com/v3/bots/post");
    let body: serde_json::Value = serde_json::from_str(request["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["bot_id"], "[redacted]");
}

#[test]
fn groupme_answers_are_classified_without_the_bot_id() {
    let mock = Mock::start();
    mock.script([
        Reply::new(429, "").header("Retry-After", "15"),
        // An unknown or deleted bot ("bad token" and "unknown room" at once);
        // this answer even quotes the id.
        groupme_error(404, &[&format!("bot {BOT_ID} not found")]),
        groupme_error(400, &["text is required"]),
        Reply::new(500, "<html>Internal Server Error</html>"),
        Reply::new(202, ""),
    ]);
    let outs: Vec<Outcome> = (0..5)
        .map(|_| run(&mock, "post_created_first_post"))
        .collect();
    assert!(
        matches!(&outs[0], Outcome::Retry { after: Some(d), .. } if d.as_secs() == 15),
        "{:?}",
        outs[0]
    );
    assert!(
        matches!(&outs[1], Outcome::Permanent { reason } if reason.contains("unknown bot_id") && reason.contains("not found")),
        "{:?}",
        outs[1]
    );
    assert!(
        matches!(&outs[2], Outcome::Permanent { reason } if reason.contains("text is required")),
        "{:?}",
        outs[2]
    );
    assert!(
        matches!(&outs[3], Outcome::Retry { after: None, .. }),
        "{:?}",
        outs[3]
    );
    assert_eq!(outs[4], Outcome::Sent { remote_id: None });
    for o in &outs {
        assert!(!format!("{o:?}").contains(BOT_ID), "{o:?}");
    }
}

#[test]
fn network_errors_retry_and_hide_the_bot_id() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let o = run_at(
        &format!("http://127.0.0.1:{port}"),
        "post_created_first_post",
    );
    let Outcome::Retry { reason, .. } = o else {
        panic!("{o:?}")
    };
    assert!(!reason.contains(BOT_ID), "{reason}");
}
