//! Rocket.Chat through a mock server: the exact incoming-webhook request for
//! the hostile fixture (no live mention or link survives), and the
//! classification of Rocket.Chat's answers, including `success:false` with
//! HTTP 200, none of which may carry the webhook URL's token.

mod common;

use common::*;
use discourse_relay::providers::Outcome;

const HOOK_PATH: &str = "/hooks/6a1b2c3d/hooksecret4242canary";

fn config() -> String {
    r##"[discourse]
url = "https://forum.example.org"
[providers.rc]
kind = "rocketchat"
alias = "Forum"
emoji = ":speech_balloon:"
[[chat]]
name = "hook"
provider = "rc"
webhook_url = "${ROCKETCHAT_HOOK}"
style = "text"
subscribe = ["all"]
[[chat]]
name = "card"
provider = "rc"
webhook_url = "${ROCKETCHAT_HOOK}"
subscribe = ["all"]
[[chat]]
name = "bare"
provider = "rocketchat"
webhook_url = "${ROCKETCHAT_HOOK}"
subscribe = ["all"]
"##
    .to_string()
}

fn run_at(url: &str, chat: &str, fixture: &str) -> Outcome {
    deliver(&config(), chat, fixture, &[("ROCKETCHAT_HOOK", url)])
}

fn rocketchat() -> Mock {
    let mock = Mock::start();
    mock.always(Reply::new(200, r#"{"success":true}"#));
    mock
}

/// Every `@` that could notify is followed by U+200B.
fn mentions_broken(text: &str) -> bool {
    let chars: Vec<char> = text.chars().collect();
    chars.iter().enumerate().all(|(i, &c)| {
        c != '@'
            || chars.get(i + 1) == Some(&'\u{200B}')
            || i.checked_sub(1).is_some_and(|p| chars[p].is_alphanumeric())
    })
}

#[test]
fn hostile_post_request_is_exact_and_inert() {
    let mock = rocketchat();
    let out = run_at(&mock.url(HOOK_PATH), "hook", "post_created_hostile_content");
    assert_eq!(out, Outcome::Sent { remote_id: None });
    let r = &mock.requests()[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, HOOK_PATH);
    assert!(r.header("authorization").is_none());
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
    assert_eq!(keys, vec!["alias", "emoji", "parseUrls", "text"]);
    assert_eq!(body["alias"], "Forum");
    assert_eq!(body["emoji"], ":speech_balloon:");
    assert_eq!(body["parseUrls"], false);
    let text = body["text"].as_str().unwrap();
    assert!(
        // Rocket.Chat's parser ignores `\[`, `\<`, `\|` and any backslash in
        // a link label: look-alikes and U+200B (tests/parser_escaping.rs).
        text.starts_with("**[\u{FF1C}!channel\u{FF1E} @\u{200B}everyone \u{FF1C}script\u{FF1E}alert(1)\u{FF1C}/script\u{FF1E} \u{2217}bold\u{2217} \u{FF3B}link\u{FF3D}(javascript:x) & \u{FF1C}/b\u{FF1E}](https://forum.example.org/t/channel-everyone-script-alert-1-script-bold-link-javascript-x-b/105/1)** by Mallory Mischief in general\n> "),
        "{text}"
    );
    for inert in [
        "@\u{200B}here",
        "@\u{200B}room",
        "\u{FF1C}@\u{200B}U024BE7LH\u{FF1E}",
        "\u{FF1C}https://evil.example|\u{200B}click me\u{FF1E}",
        "|\u{200B}|\u{200B}spoiler|\u{200B}|\u{200B}",
    ] {
        assert!(text.contains(inert), "{inert} missing in {text}");
    }
    assert!(mentions_broken(text), "{text}");
    // The only `[`, `]`, `<` and `|`-pairs left are the relay's own link.
    assert_eq!(text.matches("](").count(), 1, "{text}");
    assert_eq!(text.matches('[').count(), 1, "{text}");
    assert!(!text.contains('<') && !text.contains("||"), "{text}");
    // A chat naming the kind directly sends no alias or emoji.
    run_at(&mock.url(HOOK_PATH), "bare", "post_created_first_post");
    let body = mock.requests()[1].json();
    assert!(body.get("alias").is_none() && body.get("emoji").is_none());
}

#[test]
fn hostile_post_card_is_exact_and_inert() {
    let mock = rocketchat();
    let out = run_at(&mock.url(HOOK_PATH), "card", "post_created_hostile_content");
    assert_eq!(out, Outcome::Sent { remote_id: None });
    let body = mock.requests()[0].json();
    let keys: Vec<&str> = (body.as_object().unwrap().keys())
        .map(String::as_str)
        .collect();
    assert_eq!(keys, vec!["alias", "attachments", "emoji", "parseUrls"]);
    let card = &body["attachments"][0];
    // Plain-text fields: mentions, `<` and `](` broken with U+200B.
    assert_eq!(
        card["title"],
        "<\u{200B}!channel> @\u{200B}everyone <\u{200B}script>alert(1)<\u{200B}/script> *bold* [link]\u{200B}(javascript:x) & <\u{200B}/b>"
    );
    assert_eq!(
        card["author_name"],
        "Mallory Mischief @\u{200B}mallory · New topic"
    );
    // The Markdown excerpt in the Rocket.Chat dialect: look-alikes.
    let text = card["text"].as_str().unwrap();
    assert!(
        text.starts_with(
            "\u{FF1C}!channel\u{FF1E} @\u{200B}everyone \u{FF1C}script\u{FF1E}alert(1)"
        ),
        "{text}"
    );
    assert!(mentions_broken(text), "{text}");
    assert!(
        !text.contains('<') && !text.contains('[') && !text.contains("||"),
        "{text}"
    );
    assert_eq!(card["mrkdwn_in"], serde_json::json!(["text", "fields"]));
}

#[test]
fn real_error_answers_are_classified_without_the_token() {
    let mock = Mock::start();
    mock.script([
        Reply::new(
            429,
            r#"{"success":false,"error":"Error, too many requests. Please slow down. You must wait 37 seconds before trying this endpoint again. [error-too-many-requests]"}"#,
        )
        .header("X-RateLimit-Limit", "10")
        .header("X-RateLimit-Remaining", "0"),
        Reply::new(400, r#"{"success":false,"error":"invalid-channel"}"#),
        Reply::new(
            200,
            r#"{"success":false,"error":"script rejected the message"}"#,
        ),
        Reply::new(
            500,
            r#"{"success":false,"error":"Invalid integration id or token provided."}"#,
        ),
        Reply::new(
            401,
            r#"{"success":false,"error":"You must be logged in to do this."}"#,
        ),
        Reply::new(503, r#"{"success":false,"error":"Service Unavailable"}"#),
        Reply::new(502, "<html>502 Bad Gateway</html>"),
        Reply::new(200, "<!DOCTYPE html><html><head><title>Rocket.Chat</title>"),
    ]);
    let url = mock.url(HOOK_PATH);
    let outs: Vec<Outcome> = (0..8)
        .map(|_| run_at(&url, "hook", "post_created_first_post"))
        .collect();
    assert!(
        matches!(&outs[0], Outcome::Retry { after: Some(d), .. } if d.as_secs() == 37),
        "{:?}",
        outs[0]
    );
    assert!(
        matches!(&outs[1], Outcome::Permanent { reason } if reason.contains("invalid-channel")),
        "{:?}",
        outs[1]
    );
    assert!(
        matches!(&outs[2], Outcome::Permanent { reason } if reason.contains("script rejected")),
        "{:?}",
        outs[2]
    );
    assert!(
        matches!(&outs[3], Outcome::Permanent { reason } if reason.contains("check `webhook_url`")),
        "{:?}",
        outs[3]
    );
    assert!(
        matches!(&outs[4], Outcome::Permanent { .. }),
        "{:?}",
        outs[4]
    );
    assert!(
        matches!(&outs[5], Outcome::Retry { reason, .. } if reason.contains("disabled")),
        "{:?}",
        outs[5]
    );
    assert!(
        matches!(&outs[6], Outcome::Retry { after: None, .. }),
        "{:?}",
        outs[6]
    );
    assert!(
        matches!(&outs[7], Outcome::Permanent { reason } if reason.contains("check `webhook_url`")),
        "{:?}",
        outs[7]
    );
    for o in &outs {
        assert!(!format!("{o:?}").contains("hooksecret4242canary"), "{o:?}");
    }
}

#[test]
fn network_errors_retry_and_hide_the_url() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let o = run_at(
        &format!("http://127.0.0.1:{port}{HOOK_PATH}"),
        "hook",
        "post_created_first_post",
    );
    let Outcome::Retry { reason, .. } = o else {
        panic!("{o:?}")
    };
    assert!(!reason.contains("hooksecret4242canary"), "{reason}");
}
