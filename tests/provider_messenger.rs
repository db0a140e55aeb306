//! Facebook Messenger through a mock Graph API: the exact `POST
//! /v21.0/me/messages` for the hostile fixture (plain text to one person,
//! the Page token only in the `Authorization` header), the classification
//! of the Graph API's real error answers (rate limits, bad token, unknown
//! person, the 24-hour window), none of which may carry the token, and
//! `explain` hiding it.

mod common;

use common::*;
use discourse_relay::providers::Outcome;
use serde_json::json;

const TOKEN: &str = "EAAcanaryMessengerPageToken4242";
const PSID: &str = "6543210987654321";

fn config(api_url: &str) -> String {
    format!(
        r##"[discourse]
url = "https://forum.example.org"
[providers.page]
kind = "messenger"
page_token = "${{MESSENGER_PAGE_TOKEN}}"
api_url = "{api_url}"
[providers.tagged]
kind = "messenger"
page_token = "${{MESSENGER_PAGE_TOKEN}}"
api_url = "{api_url}"
api_version = "v23.0"
tag = "ACCOUNT_UPDATE"
notification_type = "NO_PUSH"
[[chat]]
name = "alice"
provider = "page"
psid = "{PSID}"
subscribe = ["all"]
[[chat]]
name = "bob"
provider = "tagged"
psid = 1234567890123456
subscribe = ["all"]
"##
    )
}

fn run(mock: &Mock, chat: &str, fixture: &str) -> Outcome {
    deliver(
        &config(&mock.url("")),
        chat,
        fixture,
        &[("MESSENGER_PAGE_TOKEN", TOKEN)],
    )
}

fn graph() -> Mock {
    let mock = Mock::start();
    mock.always(Reply::new(
        200,
        &format!(r#"{{"recipient_id":"{PSID}","message_id":"m_AG5Hz2Uq7tuwNEhXfYYKj8mJEM"}}"#),
    ));
    mock
}

fn graph_error(status: u16, code: u64, subcode: Option<u64>, message: &str) -> Reply {
    let mut err = json!({"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbC123xyz"});
    if let Some(s) = subcode {
        err["error_subcode"] = json!(s);
    }
    Reply::new(status, &json!({ "error": err }).to_string())
}

#[test]
fn hostile_post_request_is_exact_and_inert() {
    let mock = graph();
    let out = run(&mock, "alice", "post_created_hostile_content");
    assert_eq!(
        out,
        Outcome::Sent {
            remote_id: Some("m_AG5Hz2Uq7tuwNEhXfYYKj8mJEM".into())
        }
    );
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    // The token is a header, never a query parameter.
    assert_eq!(r.path, "/v21.0/me/messages");
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    // Plain text to one person: no markup is interpreted and Messenger has
    // no mentions, so the hostile text arrives exactly as typed.
    assert_eq!(
        r.json(),
        json!({
            "recipient": {"id": PSID},
            "messaging_type": "UPDATE",
            "message": {"text": "<!channel> @everyone <script>alert(1)</script> *bold* [link](javascript:x) & </b> \
                (https://forum.example.org/t/channel-everyone-script-alert-1-script-bold-link-javascript-x-b/105/1) \
                by Mallory Mischief in general\n\
                <!channel> @everyone <script>alert(1)</script> bold [link](javascript:x) & </b> \
                @here @room <@U024BE7LH> <https://evil.example|click me> strike code ||spoiler||"},
        })
    );
    assert!(!r.body.contains(TOKEN));
}

#[test]
fn message_tags_are_opt_in() {
    let mock = graph();
    run(&mock, "bob", "post_created_first_post");
    let r = &mock.requests()[0];
    assert_eq!(r.path, "/v23.0/me/messages");
    let body = r.json();
    assert_eq!(body["recipient"]["id"], "1234567890123456");
    assert_eq!(body["messaging_type"], "MESSAGE_TAG");
    assert_eq!(body["tag"], "ACCOUNT_UPDATE");
    assert_eq!(body["notification_type"], "NO_PUSH");
}

#[test]
fn graph_errors_are_classified_without_the_token() {
    let mock = Mock::start();
    mock.script([
        // Rate limit: HTTP 400 with a code, the wait in the usage header.
        graph_error(
            400,
            613,
            None,
            "(#613) Calls to this api have exceeded the rate limit.",
        )
        .header(
            "X-Business-Use-Case-Usage",
            r#"{"112233445566":[{"type":"messenger","call_count":100,"total_cputime":2,"total_time":3,"estimated_time_to_regain_access":2}]}"#,
        ),
        graph_error(400, 4, None, "(#4) Application request limit reached"),
        graph_error(
            400,
            190,
            Some(460),
            "Error validating access token: The session has been invalidated because the user changed their password.",
        ),
        // Unknown recipient.
        graph_error(400, 100, Some(2018001), "(#100) No matching user found"),
        graph_error(
            400,
            10,
            Some(2018278),
            "(#10) This message is sent outside of allowed window.",
        ),
        graph_error(
            400,
            551,
            Some(1545041),
            "(#551) This person isn't available right now.",
        ),
        Reply::new(503, "<html>Service Unavailable</html>"),
        graph_error(
            500,
            2,
            None,
            "An unexpected error has occurred. Please retry your request later.",
        ),
        // An error that quotes the token must not leak it.
        graph_error(400, 190, None, &format!("Malformed access token {TOKEN}")),
    ]);
    let outs: Vec<Outcome> = (0..9)
        .map(|_| run(&mock, "alice", "post_created_first_post"))
        .collect();
    assert!(
        matches!(&outs[0], Outcome::Retry { after: Some(d), reason }
            if d.as_secs() == 120 && reason.contains("613")),
        "{:?}",
        outs[0]
    );
    assert!(matches!(&outs[1], Outcome::Retry { .. }), "{:?}", outs[1]);
    let permanent = |o: &Outcome, want: &str| matches!(o, Outcome::Permanent { reason } if reason.contains(want));
    assert!(permanent(&outs[2], "error 190/460"), "{:?}", outs[2]);
    assert!(permanent(&outs[2], "page_token"), "{:?}", outs[2]);
    assert!(
        permanent(&outs[3], "No matching user found"),
        "{:?}",
        outs[3]
    );
    assert!(
        permanent(&outs[4], "24-hour messaging window"),
        "{:?}",
        outs[4]
    );
    assert!(
        permanent(&outs[5], "cannot receive messages"),
        "{:?}",
        outs[5]
    );
    assert!(
        matches!(&outs[6], Outcome::Retry { after: None, .. }),
        "{:?}",
        outs[6]
    );
    assert!(matches!(&outs[7], Outcome::Retry { .. }), "{:?}", outs[7]);
    assert!(permanent(&outs[8], "[redacted]"), "{:?}", outs[8]);
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
    let o = deliver(
        &config(&format!("http://127.0.0.1:{port}")),
        "alice",
        "post_created_first_post",
        &[("MESSENGER_PAGE_TOKEN", TOKEN)],
    );
    let Outcome::Retry { reason, .. } = o else {
        panic!("{o:?}")
    };
    assert!(!reason.contains(TOKEN), "{reason}");
}

#[test]
fn explain_hides_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("messenger.toml");
    std::fs::write(&cfg, config("https://graph.facebook.com")).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["explain", "--json", "--config"])
        .arg(&cfg)
        .arg(root().join("tests/fixtures/webhooks/post_created_hostile_content.json"))
        .env("MESSENGER_PAGE_TOKEN", TOKEN)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stdout.contains(TOKEN) && !stderr.contains(TOKEN));
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let d = v["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["chat"] == "alice")
        .unwrap();
    assert_eq!(
        d["request"]["url"],
        "https://graph.facebook.com/v21.0/me/messages"
    );
    assert_eq!(
        d["request"]["headers"]["Authorization"],
        "Bearer [redacted]"
    );
}
