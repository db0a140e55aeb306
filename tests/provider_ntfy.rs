//! ntfy through a mock server: the exact request for the hostile fixture
//! (plain and Markdown), and the classification of ntfy's real answers,
//! none of which may carry the token.

mod common;

use common::*;
use discourse_relay::providers::Outcome;

const TOKEN: &str = "tk_canary4242ntfy";

fn config(mock: &Mock) -> String {
    format!(
        r##"[discourse]
url = "https://forum.example.org"
[providers.ntfy]
server = "{server}"
token = "${{NTFY_TOKEN}}"
tags = ["speech_balloon"]
priority = 4
[providers.ntfy-md]
kind = "ntfy"
server = "{server}/"
markdown = true
[[chat]]
name = "plain"
provider = "ntfy"
topic = "forum-alerts"
subscribe = ["all"]
style = "text"
[[chat]]
name = "md"
provider = "ntfy-md"
topic = "${{NTFY_TOPIC}}"
subscribe = ["all"]
style = "text"
"##,
        server = mock.url("/ntfy")
    )
}

fn run(mock: &Mock, chat: &str, fixture: &str) -> Outcome {
    let env = [("NTFY_TOKEN", TOKEN), ("NTFY_TOPIC", "secret_topic_77")];
    deliver(&config(mock), chat, fixture, &env)
}

const TITLE: &str =
    "<!channel> @everyone <script>alert(1)</script> *bold* [link](javascript:x) & </b>";
const CLICK: &str = "https://forum.example.org/t/channel-everyone-script-alert-1-script-bold-link-javascript-x-b/105/1";

#[test]
fn plain_request_is_exact() {
    let mock = Mock::start();
    mock.script([Reply::new(
        200,
        r#"{"id":"sPs71M8A2T","time":1773158403,"expires":1773201603,"event":"message","topic":"forum-alerts","message":"x"}"#,
    )]);
    let out = run(&mock, "plain", "post_created_hostile_content");
    assert_eq!(
        out,
        Outcome::Sent {
            remote_id: Some("sPs71M8A2T".into())
        }
    );
    let r = &mock.requests()[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/ntfy/forum-alerts");
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.header("title"), Some(TITLE));
    assert_eq!(r.header("click"), Some(CLICK));
    assert_eq!(r.header("tags"), Some("speech_balloon"));
    assert_eq!(r.header("priority"), Some("4"));
    assert_eq!(r.header("markdown"), None);
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    // Plain text: no markup, no mentions on ntfy, so the text is the post's own.
    assert_eq!(
        r.body,
        "by Mallory Mischief in general\n<!channel> @everyone <script>alert(1)</script> bold [link](javascript:x) & </b> @here @room <@U024BE7LH> <https://evil.example|click me> strike code ||spoiler||"
    );
}

#[test]
fn markdown_request_escapes_and_uses_the_topic_from_env() {
    let mock = Mock::start();
    let out = run(&mock, "md", "post_created_hostile_content");
    // The mock's default answer has no `id`.
    assert_eq!(out, Outcome::Sent { remote_id: None });
    let r = &mock.requests()[0];
    assert_eq!(r.path, "/ntfy/secret_topic_77");
    assert_eq!(r.header("markdown"), Some("yes"));
    assert_eq!(r.header("authorization"), None);
    assert_eq!(r.header("priority"), None);
    assert_eq!(r.header("tags"), None);
    assert_eq!(r.header("title"), Some(TITLE));
    // Markdown: formatting escaped, mentions broken with U+200B.
    assert_eq!(
        r.body,
        "by Mallory Mischief in general\n\\<!channel\\> @\u{200B}everyone \\<script\\>alert(1)\\</script\\> bold \\[link\\](javascript:x) & \\</b\\> @\u{200B}here @\u{200B}room \\<@\u{200B}U024BE7LH\\> \\<https://evil.example\\|click me\\> strike code \\|\\|spoiler\\|\\|"
    );
}

#[test]
fn real_answers_are_classified_without_secrets() {
    let mock = Mock::start();
    mock.script([
        Reply::new(
            429,
            r#"{"code":42901,"http":429,"error":"limit reached: too many requests, please be nice","link":"https://ntfy.sh/docs/publish/#limitations"}"#,
        )
        .header("Retry-After", "12"),
        Reply::new(
            401,
            r#"{"code":40101,"http":401,"error":"unauthorized","link":"https://ntfy.sh/docs/publish/#authentication"}"#,
        ),
        Reply::new(
            403,
            r#"{"code":40301,"http":403,"error":"forbidden","link":"https://ntfy.sh/docs/publish/#authentication"}"#,
        ),
        Reply::new(502, "<html>Bad Gateway</html>"),
        Reply::new(507, r#"{"code":50701,"http":507,"error":"insufficient storage"}"#),
    ]);
    let outs: Vec<Outcome> = (0..5)
        .map(|_| run(&mock, "plain", "post_created_first_post"))
        .collect();
    assert!(
        matches!(&outs[0], Outcome::Retry { after: Some(d), reason } if d.as_secs() == 12 && reason.contains("42901")),
        "{:?}",
        outs[0]
    );
    assert!(
        matches!(&outs[1], Outcome::Permanent { reason } if reason.contains("unauthorized") && reason.contains("`token`")),
        "{:?}",
        outs[1]
    );
    assert!(matches!(&outs[2], Outcome::Permanent { reason } if reason.contains("40301")));
    assert!(matches!(&outs[3], Outcome::Retry { .. }), "{:?}", outs[3]);
    assert!(matches!(&outs[4], Outcome::Retry { .. }), "{:?}", outs[4]);
    for o in &outs {
        let shown = format!("{o:?}");
        assert!(
            !shown.contains(TOKEN) && !shown.contains("secret_topic_77"),
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
    let env = [("NTFY_TOKEN", TOKEN), ("NTFY_TOPIC", "secret_topic_77")];
    for chat in ["plain", "md"] {
        let o = deliver(&toml, chat, "post_created_first_post", &env);
        let Outcome::Retry { reason, .. } = o else {
            panic!("{o:?}")
        };
        assert!(
            !reason.contains(TOKEN) && !reason.contains("secret_topic_77"),
            "{reason}"
        );
    }
}
