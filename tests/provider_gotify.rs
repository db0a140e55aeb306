//! Gotify through a mock server: the exact request for the hostile fixture,
//! per-chat token override, and the classification of Gotify's real
//! answers, none of which may carry a token.

mod common;

use common::*;
use discourse_relay::providers::Outcome;
use serde_json::json;

const TOKEN: &str = "AcanaryGotifyApp1";
const CHAT_TOKEN: &str = "AcanaryGotifyApp2";

fn config(mock: &Mock) -> String {
    format!(
        r##"[discourse]
url = "https://forum.example.org"
[providers.gotify]
server = "{}"
token = "${{GOTIFY_TOKEN}}"
priority = 5
[[chat]]
name = "md"
provider = "gotify"
subscribe = ["all"]
style = "text"
[[chat]]
name = "own-app"
provider = "gotify"
token = "${{GOTIFY_CHAT_TOKEN}}"
priority = 9
subscribe = ["all"]
style = "text"
"##,
        mock.url("/gotify/")
    )
}

fn env() -> [(&'static str, &'static str); 2] {
    [("GOTIFY_TOKEN", TOKEN), ("GOTIFY_CHAT_TOKEN", CHAT_TOKEN)]
}

fn run(mock: &Mock, chat: &str, fixture: &str) -> Outcome {
    deliver(&config(mock), chat, fixture, &env())
}

#[test]
fn request_is_exact_and_escaped() {
    let mock = Mock::start();
    mock.script([Reply::new(
        200,
        r#"{"id":17,"appid":3,"message":"x","title":"y","priority":5,"date":"2026-03-10T16:00:04.5Z"}"#,
    )]);
    let out = run(&mock, "md", "post_created_hostile_content");
    assert_eq!(
        out,
        Outcome::Sent {
            remote_id: Some("17".into())
        }
    );
    let r = &mock.requests()[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/gotify/message");
    assert_eq!(r.header("x-gotify-key"), Some(TOKEN));
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(
        r.json(),
        json!({
            // The title is a plain field: shown as is, never rendered.
            "title": "<!channel> @everyone <script>alert(1)</script> *bold* [link](javascript:x) & </b>",
            "message": "by Mallory Mischief in general\n\n\\<!channel\\> @\u{200B}everyone \\<script\\>alert(1)\\</script\\> bold \\[link\\](javascript:x) & \\</b\\> @\u{200B}here @\u{200B}room \\<@\u{200B}U024BE7LH\\> \\<https://evil.example\\|click me\\> strike code \\|\\|spoiler\\|\\|",
            "priority": 5,
            "extras": {
                "client::display": {"contentType": "text/markdown"},
                "client::notification": {"click": {"url": "https://forum.example.org/t/channel-everyone-script-alert-1-script-bold-link-javascript-x-b/105/1"}},
            },
        })
    );
}

#[test]
fn chat_token_and_priority_override() {
    let mock = Mock::start();
    run(&mock, "own-app", "post_created_first_post");
    let r = &mock.requests()[0];
    assert_eq!(r.header("x-gotify-key"), Some(CHAT_TOKEN));
    assert_eq!(r.json()["priority"], 9);
}

#[test]
fn real_answers_are_classified_without_secrets() {
    let mock = Mock::start();
    mock.script([
        Reply::new(
            401,
            r#"{"error":"Unauthorized","errorCode":401,"errorDescription":"you need to provide a valid access token or user credentials to access this api"}"#,
        ),
        Reply::new(
            403,
            r#"{"error":"Forbidden","errorCode":403,"errorDescription":"you are not allowed to access this api"}"#,
        ),
        Reply::new(429, "slow down").header("Retry-After", "3"),
        Reply::new(500, r#"{"error":"Internal Server Error","errorCode":500,"errorDescription":"database is locked"}"#),
    ]);
    let outs: Vec<Outcome> = (0..4)
        .map(|_| run(&mock, "md", "post_created_first_post"))
        .collect();
    assert!(
        matches!(&outs[0], Outcome::Permanent { reason } if reason.contains("Unauthorized") && reason.contains("`token`")),
        "{:?}",
        outs[0]
    );
    assert!(matches!(&outs[1], Outcome::Permanent { reason } if reason.contains("Forbidden")));
    assert!(matches!(&outs[2], Outcome::Retry { after: Some(d), .. } if d.as_secs() == 3));
    assert!(
        matches!(&outs[3], Outcome::Retry { reason, .. } if reason.contains("database is locked")),
        "{:?}",
        outs[3]
    );
    for o in &outs {
        let shown = format!("{o:?}");
        assert!(
            !shown.contains(TOKEN) && !shown.contains(CHAT_TOKEN),
            "{shown}"
        );
    }
}

#[test]
fn network_errors_retry_without_secrets() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mock = Mock::start();
    let toml = config(&mock).replace(&mock.url(""), &format!("http://127.0.0.1:{port}"));
    let o = deliver(&toml, "md", "post_created_first_post", &env());
    let Outcome::Retry { reason, .. } = o else {
        panic!("{o:?}")
    };
    assert!(!reason.contains(TOKEN), "{reason}");
}
