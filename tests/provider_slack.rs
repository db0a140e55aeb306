//! Slack through a mock server: the exact Web API and webhook requests, the
//! hostile fixture's escaping, and the classification of Slack's real error
//! answers, none of which may carry the token.

mod common;

use common::*;
use discourse_relay::providers::Outcome;

const TOKEN: &str = "xoxb-canary-4242";

fn config(mock: &Mock) -> String {
    format!(
        r##"[discourse]
url = "https://forum.example.org"
[providers.slack]
token = "${{SLACK_TOKEN}}"
api_url = "{}"
[[chat]]
name = "api"
provider = "slack"
channel = "#general"
subscribe = ["all"]
[[chat]]
name = "hook"
provider = "slack"
webhook_url = "${{SLACK_HOOK}}"
subscribe = ["all"]
"##,
        mock.url("/api")
    )
}

fn env(mock: &Mock) -> Vec<(&'static str, String)> {
    vec![
        ("SLACK_TOKEN", TOKEN.into()),
        ("SLACK_HOOK", mock.url("/services/T0/B0/hooksecret")),
    ]
}

fn run(mock: &Mock, chat: &str, fixture: &str) -> Outcome {
    let env = env(mock);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    deliver(&config(mock), chat, fixture, &env)
}

#[test]
fn web_api_request_is_exact_and_escaped() {
    let mock = Mock::start();
    let out = run(&mock, "api", "post_created_hostile_content");
    assert!(
        matches!(out, Outcome::Sent { remote_id: Some(_) }),
        "{out:?}"
    );
    let r = &mock.requests()[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/api/chat.postMessage");
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
        vec![
            "attachments",
            "channel",
            "text",
            "unfurl_links",
            "unfurl_media"
        ]
    );
    assert_eq!(body["channel"], "general");
    let text = body["text"].as_str().unwrap();
    for inert in [
        "&lt;!channel&gt;",
        "&lt;@U024BE7LH&gt;",
        "&lt;https://evil.example|click me&gt;",
        "&lt;script&gt;",
    ] {
        assert!(text.contains(inert), "{inert} missing in {text}");
    }
    assert!(!text.contains("<!") && !text.contains("<@") && !text.contains("<https://evil"));
}

#[test]
fn incoming_webhook_request() {
    let mock = Mock::start();
    mock.script([Reply::new(200, "ok")]);
    let out = run(&mock, "hook", "post_created_first_post");
    assert_eq!(out, Outcome::Sent { remote_id: None });
    let r = &mock.requests()[0];
    assert_eq!(r.path, "/services/T0/B0/hooksecret");
    assert!(r.header("authorization").is_none());
    assert_eq!(r.json()["unfurl_links"], false);
}

#[test]
fn real_error_answers_are_classified_without_secrets() {
    let mock = Mock::start();
    // Each answer quotes the token back, as a platform echoing the request
    // may: the reasons must still not carry it.
    let echo = format!("Authorization: Bearer {TOKEN}");
    mock.script([
        Reply::new(429, &format!("slow down ({echo})")).header("Retry-After", "30"),
        Reply::new(
            200,
            &format!(r#"{{"ok":false,"error":"ratelimited","warning":"{echo}"}}"#),
        ),
        Reply::new(200, r#"{"ok":false,"error":"invalid_auth"}"#),
        Reply::new(200, r#"{"ok":false,"error":"channel_not_found"}"#),
        Reply::new(503, &format!("upstream connect error; request had {echo}")),
        Reply::new(
            401,
            &format!(r#"{{"ok":false,"error":"not_authed","token":"{TOKEN}"}}"#),
        ),
        Reply::new(
            200,
            &format!(r#"{{"ok":false,"error":"token_revoked {TOKEN}"}}"#),
        ),
    ]);
    let outs: Vec<Outcome> = (0..7)
        .map(|_| run(&mock, "api", "post_created_first_post"))
        .collect();
    assert!(matches!(&outs[0], Outcome::Retry { after: Some(d), .. } if d.as_secs() == 30));
    assert!(matches!(&outs[1], Outcome::Retry { .. }));
    assert!(matches!(&outs[2], Outcome::Permanent { reason } if reason.contains("invalid_auth")));
    assert!(
        matches!(&outs[3], Outcome::Permanent { reason } if reason.contains("channel_not_found"))
    );
    assert!(matches!(&outs[4], Outcome::Retry { .. }));
    assert!(matches!(&outs[5], Outcome::Permanent { reason } if reason.contains("401")));
    assert!(matches!(&outs[6], Outcome::Permanent { reason } if reason.contains("token_revoked")));
    for o in &outs {
        assert!(!format!("{o:?}").contains(TOKEN), "{o:?}");
    }
    // Where the reason quotes the answer, the token was there and is now
    // replaced (not just absent because the reason never held it).
    for i in [0, 4, 5, 6] {
        assert!(
            format!("{:?}", outs[i]).contains("[redacted]"),
            "{:?}",
            outs[i]
        );
    }
    // Webhook errors are plain text with a status; these quote the hook URL.
    let hook = Mock::start();
    let url = hook.url("/services/T0/B0/hooksecret");
    hook.script([
        Reply::new(404, &format!("channel_not_found (POST {url})")),
        Reply::new(410, &format!("channel_is_archived: {url}")),
    ]);
    let env = env(&hook);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for _ in 0..2 {
        let o = deliver(&config(&hook), "hook", "post_created_first_post", &env);
        let Outcome::Permanent { reason } = o else {
            panic!("{o:?}")
        };
        assert!(!reason.contains("hooksecret"), "{reason}");
        assert!(reason.contains("[redacted]"), "{reason}");
    }
}

#[test]
fn network_errors_retry_and_hide_the_url_secret() {
    let mock = Mock::start();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let toml = config(&mock).replace(&mock.url("/api"), &format!("http://127.0.0.1:{port}/api"));
    let env = [
        ("SLACK_TOKEN", TOKEN),
        ("SLACK_HOOK", "http://127.0.0.1:9/services/hooksecret"),
    ];
    for chat in ["api", "hook"] {
        let o = deliver(&toml, chat, "post_created_first_post", &env);
        let Outcome::Retry { reason, .. } = o else {
            panic!("{o:?}")
        };
        assert!(
            !reason.contains(TOKEN) && !reason.contains("hooksecret"),
            "{reason}"
        );
    }
}
