//! HipChat Server through a mock: the exact `POST /v2/room/{room}/notification`
//! for the hostile fixture (escaped HTML, no live markup, newlines as
//! `<br>`), room names percent-encoded, the chat's own token preferred, the
//! classification of HipChat's real error answers (none of which may carry
//! the token), and `explain` hiding the tokens.

mod common;

use common::*;
use discourse_relay::providers::Outcome;
use serde_json::json;

const TOKEN: &str = "canaryHipchatUserToken4242";
const ROOM_TOKEN: &str = "canaryHipchatRoomToken4343";

fn config(server: &str) -> String {
    format!(
        r##"[discourse]
url = "https://forum.example.org"
[providers.hc]
kind = "hipchat"
server = "{server}"
token = "${{HIPCHAT_TOKEN}}"
from = "Forum"
[[chat]]
name = "dev"
provider = "hc"
room = "Dev Team"
subscribe = ["all"]
[[chat]]
name = "ops"
provider = "hc"
room = 4242
token = "${{HIPCHAT_OPS_ROOM_TOKEN}}"
subscribe = ["all"]
"##
    )
}

fn env() -> [(&'static str, &'static str); 2] {
    [
        ("HIPCHAT_TOKEN", TOKEN),
        ("HIPCHAT_OPS_ROOM_TOKEN", ROOM_TOKEN),
    ]
}

fn run(mock: &Mock, chat: &str, fixture: &str) -> Outcome {
    deliver(&config(&mock.url("")), chat, fixture, &env())
}

fn server() -> Mock {
    let mock = Mock::start();
    mock.always(Reply::new(204, ""));
    mock
}

/// The tag names in `html` (`/b` for `</b>`).
fn tags(html: &str) -> Vec<String> {
    html.split('<')
        .skip(1)
        .map(|t| {
            t.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '/' || *c == '!')
                .collect()
        })
        .collect()
}

#[test]
fn hostile_post_request_is_exact_and_inert() {
    let mock = server();
    let out = run(&mock, "dev", "post_created_hostile_content");
    assert_eq!(out, Outcome::Sent { remote_id: None });
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/v2/room/Dev%20Team/notification");
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let body = r.json();
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        vec!["color", "from", "message", "message_format", "notify"]
    );
    assert_eq!(body["message_format"], "html");
    assert_eq!(body["notify"], json!(false));
    assert_eq!(body["color"], "yellow");
    assert_eq!(body["from"], "Forum");
    let html = body["message"].as_str().unwrap();
    assert_eq!(
        html,
        "<b><a href=\"https://forum.example.org/t/channel-everyone-script-alert-1-script-bold-link-javascript-x-b/105/1\">\
         &lt;!channel&gt; @\u{200B}everyone &lt;script&gt;alert(1)&lt;/script&gt; *bold* [link](javascript:x) &amp; &lt;/b&gt;</a></b> \
         by Mallory Mischief in general<br>\
         <blockquote>&lt;!channel&gt; @\u{200B}everyone &lt;script&gt;alert(1)&lt;/script&gt; bold [link](javascript:x) &amp; &lt;/b&gt; \
         @\u{200B}here @\u{200B}room &lt;@\u{200B}U024BE7LH&gt; &lt;https://evil.example|click me&gt; strike code ||spoiler||</blockquote>"
    );
    // Only the template's own markup is live: no script, no injected tag or link.
    for t in tags(html) {
        assert!(
            ["b", "/b", "a", "/a", "br", "blockquote", "/blockquote"].contains(&t.as_str()),
            "tag <{t}> in {html}"
        );
    }
    assert_eq!(html.matches("href=").count(), 1);
    assert!(!r.body.contains(TOKEN));
}

#[test]
fn a_chat_token_overrides_the_providers() {
    let mock = server();
    run(&mock, "ops", "post_created_first_post");
    let r = &mock.requests()[0];
    assert_eq!(r.path, "/v2/room/4242/notification");
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {ROOM_TOKEN}").as_str())
    );
}

#[test]
fn real_error_answers_are_classified_without_the_token() {
    let mock = Mock::start();
    let reset = (jiff::Timestamp::now().as_second() + 45).to_string();
    mock.script([
        Reply::new(
            429,
            r#"{"error":{"code":429,"message":"You have exceeded the rate limit. `Find out why.`","type":"Too Many Requests"}}"#,
        )
        .header("X-FloodControl-Limit", "30")
        .header("X-FloodControl-Remaining", "0")
        .header("X-FloodControl-Reset", &reset),
        Reply::new(
            401,
            r#"{"error":{"code":401,"message":"Invalid OAuth session","type":"Unauthorized"}}"#,
        ),
        Reply::new(
            403,
            r#"{"error":{"code":403,"message":"Access denied","type":"Forbidden"}}"#,
        ),
        // Unknown room.
        Reply::new(
            404,
            r#"{"error":{"code":404,"message":"Room not found","type":"Not Found"}}"#,
        ),
        Reply::new(502, "<html><body>502 Bad Gateway</body></html>"),
        // An answer that quotes the token must not leak it.
        Reply::new(
            401,
            &format!(
                r#"{{"error":{{"code":401,"message":"Invalid token {TOKEN}","type":"Unauthorized"}}}}"#
            ),
        ),
    ]);
    let outs: Vec<Outcome> = (0..6)
        .map(|_| run(&mock, "dev", "post_created_first_post"))
        .collect();
    assert!(
        matches!(&outs[0], Outcome::Retry { after: Some(d), reason }
            if (30..=45).contains(&d.as_secs()) && reason.contains("429")),
        "{:?}",
        outs[0]
    );
    let permanent = |o: &Outcome, want: &str| matches!(o, Outcome::Permanent { reason } if reason.contains(want));
    assert!(
        permanent(&outs[1], "Invalid OAuth session (the token was rejected"),
        "{:?}",
        outs[1]
    );
    assert!(permanent(&outs[2], "send_notification"), "{:?}", outs[2]);
    assert!(
        permanent(&outs[3], "Room not found (unknown room"),
        "{:?}",
        outs[3]
    );
    assert!(
        matches!(&outs[4], Outcome::Retry { after: None, .. }),
        "{:?}",
        outs[4]
    );
    assert!(permanent(&outs[5], "[redacted]"), "{:?}", outs[5]);
    for o in &outs {
        assert!(!format!("{o:?}").contains(TOKEN), "{o:?}");
    }
}

#[test]
fn network_errors_retry_without_the_token() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    for chat in ["dev", "ops"] {
        let o = deliver(
            &config(&format!("http://127.0.0.1:{port}")),
            chat,
            "post_created_first_post",
            &env(),
        );
        let Outcome::Retry { reason, .. } = o else {
            panic!("{o:?}")
        };
        assert!(
            !reason.contains(TOKEN) && !reason.contains(ROOM_TOKEN),
            "{reason}"
        );
    }
}

#[test]
fn explain_hides_the_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("hipchat.toml");
    std::fs::write(&cfg, config("https://hipchat.example.com")).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["explain", "--json", "--config"])
        .arg(&cfg)
        .arg(root().join("tests/fixtures/webhooks/post_created_hostile_content.json"))
        .envs(env())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for secret in [TOKEN, ROOM_TOKEN] {
        assert!(!stdout.contains(secret) && !stderr.contains(secret));
    }
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let deliveries = v["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 2);
    for d in deliveries {
        assert_eq!(
            d["request"]["headers"]["Authorization"],
            "Bearer [redacted]"
        );
    }
    let dev = deliveries.iter().find(|d| d["chat"] == "dev").unwrap();
    assert_eq!(
        dev["request"]["url"],
        "https://hipchat.example.com/v2/room/Dev%20Team/notification"
    );
}
