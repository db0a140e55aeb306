//! Pushover through a mock server: the exact form request for the hostile
//! fixture, the redaction of the two keys that travel in the body, and the
//! classification of Pushover's real answers, none of which may carry a key.

mod common;

use std::path::Path;

use common::*;
use discourse_relay::config::MissingEnv;
use discourse_relay::ingest::{ForumState, Ingested, WebhookRequest, normalize};
use discourse_relay::providers::Outcome;

const TOKEN: &str = "azCanaryPushoverAppToken4242xx";
const USER: &str = "uqCanaryPushoverUserKey4242xxx";

fn config(mock: &Mock) -> String {
    format!(
        r##"[discourse]
url = "https://forum.example.org"
[providers.pushover]
token = "${{PUSHOVER_TOKEN}}"
api_url = "{}"
[[chat]]
name = "phone"
provider = "pushover"
user = "${{PUSHOVER_USER}}"
device = "pixel"
subscribe = ["all"]
style = "text"
"##,
        mock.url("/1")
    )
}

const ENV: [(&str, &str); 2] = [("PUSHOVER_TOKEN", TOKEN), ("PUSHOVER_USER", USER)];

fn run(mock: &Mock, fixture: &str) -> Outcome {
    deliver(&config(mock), "phone", fixture, &ENV)
}

fn form(body: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

const TITLE: &str =
    "<!channel> @everyone <script>alert(1)</script> *bold* [link](javascript:x) & </b>";
const URL: &str = "https://forum.example.org/t/channel-everyone-script-alert-1-script-bold-link-javascript-x-b/105/1";

#[test]
fn request_is_exact_and_escaped() {
    let mock = Mock::start();
    mock.script([Reply::new(
        200,
        r#"{"status":1,"request":"647d2300-702c-4b38-8b2f-d56326ae460b"}"#,
    )]);
    let out = run(&mock, "post_created_hostile_content");
    assert_eq!(out, Outcome::Sent { remote_id: None });
    let r = &mock.requests()[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/1/messages.json");
    assert_eq!(
        r.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let expected: Vec<(String, String)> = [
        ("token", TOKEN),
        ("user", USER),
        (
            "message",
            "by Mallory Mischief in general\n&lt;!channel&gt; @\u{200B}everyone &lt;script&gt;alert(1)&lt;/script&gt; bold [link](javascript:x) &amp; &lt;/b&gt; @\u{200B}here @\u{200B}room &lt;@\u{200B}U024BE7LH&gt; &lt;https://evil.example|click me&gt; strike code ||spoiler||",
        ),
        ("html", "1"),
        // Title and url_title are plain fields: Pushover never renders them.
        ("title", TITLE),
        ("url", URL),
        ("url_title", "<!channel> @everyone <script>alert(1)</script> *bold* [link](javascript:x) & </b>"),
        ("device", "pixel"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(form(&r.body), expected);
}

#[test]
fn keys_in_the_body_are_redacted_when_shown() {
    let mock = Mock::start();
    let env: std::collections::HashMap<String, String> = ENV
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let (p, _) = discourse_relay::pipeline::load_str(
        Path::new("test.toml"),
        &config(&mock),
        &env,
        MissingEnv::Error,
    )
    .unwrap_or_else(|d| panic!("config invalid:\n{d}"));
    let f = fixture("post_created_first_post");
    let req = WebhookRequest {
        headers: f.headers,
        body: f.body,
    };
    let mut state = ForumState::new(&p.config.forum().categories);
    let Ok(Ingested::Event(event)) = normalize(&req, &mut state, &p.config.forum().url) else {
        panic!("not an event");
    };
    let idx = p.chat_index("phone").unwrap();
    let (_, out) = p.message(idx, &event).unwrap();
    let shown = out.redacted_json(&p.config.redactor);
    let body = shown["body"].as_str().unwrap();
    assert!(!shown.to_string().contains(TOKEN) && !shown.to_string().contains(USER));
    let f = form(body);
    assert!(f.contains(&("token".into(), "[redacted]".into())), "{body}");
    assert!(f.contains(&("user".into(), "[redacted]".into())), "{body}");
    // Note: `HttpRequest`'s Debug prints the body as is (only the URL and
    // headers are `Secret`s), so what is printed must go through `redacted_json`.
    // And the target shown for the chat is the reference, not the key.
    assert_eq!(
        p.config.chats[idx].destination.target(),
        "user ${PUSHOVER_USER} (device pixel)"
    );
}

#[test]
fn real_answers_are_classified_without_secrets() {
    let mock = Mock::start();
    mock.script([
        Reply::new(
            429,
            r#"{"status":0,"errors":["application is over its monthly message limit"],"request":"a"}"#,
        )
        .header("X-Limit-App-Limit", "10000")
        .header("X-Limit-App-Remaining", "0")
        .header("X-Limit-App-Reset", "1775001600"),
        // Pushover names the parameter, not its value; a hostile echo is redacted anyway.
        Reply::new(
            400,
            &format!(r#"{{"token":"invalid","errors":["application token is invalid: {TOKEN}"],"status":0,"request":"b"}}"#),
        ),
        Reply::new(
            400,
            r#"{"user":"invalid","errors":["user identifier is not a valid user, group, or subscribed user key"],"status":0,"request":"c"}"#,
        ),
        Reply::new(500, "<html>oops</html>"),
    ]);
    let outs: Vec<Outcome> = (0..4)
        .map(|_| run(&mock, "post_created_first_post"))
        .collect();
    assert!(
        matches!(&outs[0], Outcome::Retry { reason, .. } if reason.contains("monthly")),
        "{:?}",
        outs[0]
    );
    assert!(
        matches!(&outs[1], Outcome::Permanent { reason } if reason.contains("application token is invalid")),
        "{:?}",
        outs[1]
    );
    assert!(
        matches!(&outs[2], Outcome::Permanent { reason } if reason.contains("`user`")),
        "{:?}",
        outs[2]
    );
    assert!(
        matches!(&outs[3], Outcome::Retry { after: Some(d), .. } if d.as_secs() == 5),
        "{:?}",
        outs[3]
    );
    for o in &outs {
        let shown = format!("{o:?}");
        assert!(!shown.contains(TOKEN) && !shown.contains(USER), "{shown}");
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
    let o = deliver(&toml, "phone", "post_created_first_post", &ENV);
    let Outcome::Retry { reason, .. } = o else {
        panic!("{o:?}")
    };
    assert!(
        !reason.contains(TOKEN) && !reason.contains(USER),
        "{reason}"
    );
}
