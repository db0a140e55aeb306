//! Google Chat through a mock incoming-webhook endpoint: the exact request
//! for the hostile fixture (no `<users/…>` mention or `<url|text>` link can
//! come from a post), and the classification of Google's error answers,
//! none of which may carry the webhook's `key` or `token`.

mod common;

use common::*;
use discourse_relay::providers::{Action, Outcome, Thread};
use serde_json::json;

const KEY: &str = "AIzaCanaryKey4242";
const TOKEN: &str = "canaryToken4242gchat";

const POST_URL: &str = "https://forum.example.org/t/channel-everyone-script-alert-1-script-bold-link-javascript-x-b/105/1";

fn config() -> String {
    r##"[discourse]
url = "https://forum.example.org"
[[chat]]
name = "space"
provider = "googlechat"
webhook_url = "${GOOGLE_CHAT_WEBHOOK}"
subscribe = ["all"]
"##
    .to_string()
}

fn hook_path() -> String {
    format!("/v1/spaces/AAAAx1y2z3/messages?key={KEY}&token={TOKEN}")
}

fn run_at(url: &str, fixture: &str) -> Outcome {
    deliver(&config(), "space", fixture, &[("GOOGLE_CHAT_WEBHOOK", url)])
}

fn run(mock: &Mock, fixture: &str) -> Outcome {
    run_at(&mock.url(&hook_path()), fixture)
}

fn google_error(code: u16, status: &str, message: &str) -> Reply {
    Reply::new(
        code,
        &json!({"error": {"code": code, "message": message, "status": status}}).to_string(),
    )
    .header("Content-Type", "application/json; charset=UTF-8")
}

#[test]
fn hostile_post_request_is_exact_and_inert() {
    let mock = Mock::start();
    mock.script([Reply::new(
        200,
        r#"{"name":"spaces/AAAAx1y2z3/messages/Kq1.Kq1","sender":{"type":"BOT"},"text":"…"}"#,
    )]);
    let out = run(&mock, "post_created_hostile_content");
    assert_eq!(
        out,
        Outcome::Sent {
            remote_id: Some("spaces/AAAAx1y2z3/messages/Kq1.Kq1".into())
        }
    );
    let r = &mock.requests()[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, hook_path());
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert!(r.header("authorization").is_none());
    let text = format!(
        "*<{POST_URL}|‹!channel› @everyone ‹script›alert(1)‹/script› *bold* [link](javascript:x) & ‹/b›>* by Mallory Mischief in general\n‹!channel› @everyone ‹script›alert(1)‹/script› bold [link](javascript:x) & ‹/b› @here @room ‹@U024BE7LH› ‹https://evil.example|click me› strike code ||spoiler||"
    );
    let body = r.json();
    let keys: Vec<&str> = (body.as_object().unwrap().keys())
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["cardsV2", "text"]);
    assert_eq!(body["text"], text);
    // The card: the header is plain text (look-alikes, as in the text), the
    // excerpt HTML (Chat's card subset): entities, no tag from the post.
    let card = &body["cardsV2"][0]["card"];
    assert_eq!(
        card["header"]["title"],
        "‹!channel› @everyone ‹script›alert(1)‹/script› *bold* [link](javascript:x) & ‹/b›"
    );
    assert_eq!(
        card["sections"][0]["widgets"][0]["textParagraph"]["text"],
        "&lt;!channel&gt; @\u{200B}everyone &lt;script&gt;alert(1)&lt;/script&gt; bold [link](javascript:x) &amp; &lt;/b&gt; @\u{200B}here @\u{200B}room &lt;@\u{200B}U024BE7LH&gt; &lt;https://evil.example|click me&gt; strike code ||spoiler||"
    );
    let button = &card["sections"][1]["widgets"][1]["buttonList"]["buttons"][0];
    assert_eq!(button["onClick"]["openLink"]["url"], POST_URL);
    // The only `<…>` construct is the template's link to the post: no
    // mention (`<users/…>`) and no other link can come from the post.
    let sent = r.json()["text"].as_str().unwrap().to_string();
    assert_eq!(sent.matches('<').count(), 1, "{sent}");
    assert_eq!(sent.matches('>').count(), 1, "{sent}");
    assert!(sent.starts_with(&format!("*<{POST_URL}|")));
    assert!(!sent.contains("&lt;") && !sent.contains("&amp;"), "{sent}");
}

#[test]
fn google_errors_are_classified_without_key_or_token() {
    let mock = Mock::start();
    mock.script([
        google_error(
            429,
            "RESOURCE_EXHAUSTED",
            "Resource has been exhausted (e.g. check quota).",
        )
        .header("Retry-After", "20"),
        // A wrong key in the URL: Google answers 400, not 401.
        google_error(
            400,
            "INVALID_ARGUMENT",
            "API key not valid. Please pass a valid API key.",
        ),
        // A wrong or revoked token; this answer even quotes it.
        google_error(
            401,
            "UNAUTHENTICATED",
            &format!("Request had invalid authentication credentials: token {TOKEN}."),
        ),
        google_error(404, "NOT_FOUND", "Requested entity was not found."),
        google_error(503, "UNAVAILABLE", "The service is currently unavailable."),
    ]);
    let outs: Vec<Outcome> = (0..5)
        .map(|_| run(&mock, "post_created_first_post"))
        .collect();
    assert!(
        matches!(&outs[0], Outcome::Retry { after: Some(d), reason } if d.as_secs() == 20 && reason.contains("RESOURCE_EXHAUSTED")),
        "{:?}",
        outs[0]
    );
    assert!(
        matches!(&outs[1], Outcome::Permanent { reason } if reason.contains("API key not valid")),
        "{:?}",
        outs[1]
    );
    assert!(
        matches!(&outs[2], Outcome::Permanent { reason } if reason.contains("UNAUTHENTICATED") && reason.contains("token was rejected")),
        "{:?}",
        outs[2]
    );
    assert!(
        matches!(&outs[3], Outcome::Permanent { reason } if reason.contains("NOT_FOUND") && reason.contains("no longer exists")),
        "{:?}",
        outs[3]
    );
    assert!(
        matches!(&outs[4], Outcome::Retry { after: None, reason } if reason.contains("UNAVAILABLE")),
        "{:?}",
        outs[4]
    );
    for o in &outs {
        let shown = format!("{o:?}");
        assert!(!shown.contains(TOKEN) && !shown.contains(KEY), "{shown}");
    }
}

#[test]
fn network_errors_retry_and_hide_the_url() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let o = run_at(
        &format!("http://127.0.0.1:{port}{}", hook_path()),
        "post_created_first_post",
    );
    let Outcome::Retry { reason, .. } = o else {
        panic!("{o:?}")
    };
    assert!(!reason.contains(TOKEN) && !reason.contains(KEY), "{reason}");
}

#[test]
fn thread_messages_name_the_topic_thread() {
    let mock = Mock::start();
    mock.always(Reply::new(
        200,
        r#"{"name":"spaces/AAAAx1y2z3/messages/Kq1.Kq1","thread":{"name":"spaces/AAAAx1y2z3/threads/Kq1","threadKey":"topic-105"}}"#,
    ));
    let url = mock.url(&hook_path());
    let env = [("GOOGLE_CHAT_WEBHOOK", url.as_str())];
    for root in [None, Some("spaces/AAAAx1y2z3/messages/Kq1.Kq1")] {
        let out = deliver_as(
            &config(),
            "space",
            "post_created_hostile_content",
            &env,
            Action::Post {
                thread: Some(Thread { root }),
            },
            false,
        );
        assert!(matches!(out, Outcome::Sent { .. }), "{out:?}");
    }
    for r in mock.requests() {
        assert_eq!(r.method, "POST");
        assert_eq!(
            r.path,
            format!(
                "{}&messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD",
                hook_path()
            )
        );
        assert_eq!(r.json()["thread"], json!({"threadKey": "topic-105"}));
    }
}
