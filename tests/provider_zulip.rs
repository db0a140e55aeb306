//! Zulip through a mock server: the exact form-encoded `POST /api/v1/messages`
//! with HTTP Basic credentials, Markdown escaping that leaves no wildcard
//! mention (`@**all**`…) alive, and the classification of Zulip's real error
//! answers, none of which may carry the API key.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::*;
use discourse_relay::providers::{Action, Outcome};

const KEY: &str = "CanaryZulipKey0123456789abcdef";
/// base64("relay-bot@zulip.example:" + KEY)
const BASIC: &str =
    "Basic cmVsYXktYm90QHp1bGlwLmV4YW1wbGU6Q2FuYXJ5WnVsaXBLZXkwMTIzNDU2Nzg5YWJjZGVm";

fn config(realm: &str) -> String {
    format!(
        r##"[discourse]
url = "https://forum.example.org"
[providers.zulip]
realm = "{realm}"
email = "relay-bot@zulip.example"
api_key = "${{ZULIP_API_KEY}}"
[[chat]]
name = "per-topic"
provider = "zulip"
stream = "forum feed"
subscribe = ["all"]
[[chat]]
name = "fixed"
provider = "zulip"
stream = "42"
topic = "Forum"
subscribe = ["all"]
"##
    )
}

fn zulip() -> Mock {
    let mock = Mock::start();
    mock.always(Reply::new(
        200,
        r#"{"result":"success","msg":"","id":4242}"#,
    ));
    mock
}

fn run(mock: &Mock, chat: &str, fixture: Fixture) -> Outcome {
    deliver_fixture(&config(&mock.url("")), chat, fixture)
}

/// `common::deliver` for a fixture changed in memory.
fn deliver_fixture(toml: &str, chat: &str, f: Fixture) -> Outcome {
    use discourse_relay::config::MissingEnv;
    use discourse_relay::ingest::{ForumState, Ingested, WebhookRequest, normalize};
    let env = HashMap::from([("ZULIP_API_KEY".to_string(), KEY.to_string())]);
    let (p, _) =
        discourse_relay::pipeline::load_str(Path::new("test.toml"), toml, &env, MissingEnv::Error)
            .unwrap_or_else(|d| panic!("config invalid:\n{d}"));
    let req = WebhookRequest {
        headers: f.headers,
        body: f.body,
    };
    let mut state = ForumState::new(&p.config.forum().categories);
    let Ok(Ingested::Event(event)) = normalize(&req, &mut state, &p.config.forum().url) else {
        panic!("not an event");
    };
    let idx = p.chat_index(chat).unwrap();
    let (_, out) = p.message(idx, &event).unwrap();
    // What `explain` prints: neither the key nor the Basic credentials.
    let shown = out.redacted_json(&p.config.redactor).to_string();
    assert!(
        !shown.contains(KEY) && !shown.contains(&BASIC[6..]),
        "{shown}"
    );
    let sender = discourse_relay::delivery::send::Sender::new().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(sender.send(
        p.config.chats[idx].destination.as_ref(),
        &out,
        &p.config.redactor,
    ))
}

/// The hostile fixture with Zulip's own notifying syntax added to the title
/// and the post.
fn hostile() -> Fixture {
    let mut f = fixture("post_created_hostile_content");
    let zulip = "@**all** @**everyone** @**stream** @**channel** @**topic** @*admins* @_**Bob Ramirez** #**general>x** $$\\pi$$";
    let mut body: serde_json::Value = serde_json::from_slice(&f.body).unwrap();
    let post = &mut body["post"];
    post["topic_title"] = format!("{zulip} {}", post["topic_title"].as_str().unwrap()).into();
    post["cooked"] = format!("<p>{zulip}</p>{}", post["cooked"].as_str().unwrap()).into();
    f.body = body.to_string().into_bytes();
    f
}

fn form(body: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect()
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
    let mock = zulip();
    let out = run(&mock, "per-topic", hostile());
    assert_eq!(
        out,
        Outcome::Sent {
            remote_id: Some("4242".into())
        }
    );
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/api/v1/messages");
    assert_eq!(r.header("authorization"), Some(BASIC));
    assert_eq!(
        r.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let f = form(&r.body);
    let names: Vec<&str> = f.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, vec!["type", "to", "topic", "content"]);
    assert_eq!(f[0].1, "stream");
    assert_eq!(f[1].1, "\"forum feed\"");
    // The topic is the forum title, plain text, cut to 60 characters.
    let topic = &f[2].1;
    assert!(
        topic.chars().count() <= 60 && topic.ends_with('…'),
        "{topic}"
    );
    assert!(topic.starts_with("@**all** @**everyone**"), "{topic}");

    let content = &f[3].1;
    for inert in [
        "@\u{200B}\\*\\*all\\*\\*",
        "@\u{200B}\\*\\*everyone\\*\\*",
        "@\u{200B}\\*\\*stream\\*\\*",
        "@\u{200B}\\*\\*channel\\*\\*",
        "@\u{200B}\\*\\*topic\\*\\*",
        "@\u{200B}\\*admins\\*",
        "@\u{200B}\\_\\*\\*Bob Ramirez\\*\\*",
        "#\\*\\*general\\>x\\*\\*",
        "\\$\\$\\\\pi\\$\\$",
        "\\<!channel\\>",
        "\\<script\\>",
        "\\[link\\](javascript:x)",
    ] {
        assert!(content.contains(inert), "{inert} missing in {content}");
    }
    assert!(!content.contains("@**") && !content.contains("@*a") && !content.contains("@_"));
    assert!(mentions_broken(content), "{content}");
    // The only links are the template's, to the post and its category.
    for (i, _) in content.match_indices("](") {
        let escaped = content[..i].ends_with('\\');
        let ours = content[i + 2..].starts_with("https://forum.example.org/t/")
            || content[i + 2..].starts_with("https://forum.example.org/c/general/4)");
        assert!(escaped || ours, "live link at {i} in {content}");
    }
    assert!(
        content.starts_with("**[@\u{200B}\\*\\*all\\*\\* "),
        "{content}"
    );
    assert!(content.contains("](https://forum.example.org/t/channel-everyone-script-alert-1-script-bold-link-javascript-x-b/105/1)**\nMallory Mischief · new topic · [general](https://forum.example.org/c/general/4)\n> "), "{content}");
}

#[test]
fn numeric_stream_is_an_id_and_a_fixed_topic_wins() {
    let mock = zulip();
    run(&mock, "fixed", fixture("post_created_first_post"));
    let f = form(&mock.requests()[0].body);
    assert_eq!(f[1], ("to".to_string(), "42".to_string()));
    assert_eq!(f[2], ("topic".to_string(), "Forum".to_string()));
}

#[test]
fn real_error_answers_are_classified_without_the_key() {
    let mock = Mock::start();
    mock.script([
        Reply::new(
            429,
            r#"{"result":"error","msg":"API usage exceeded rate limit","code":"RATE_LIMIT_HIT","retry-after":2.5}"#,
        )
        .header("Retry-After", "2.5"),
        Reply::new(
            401,
            r#"{"result":"error","msg":"Invalid API key","code":"INVALID_API_KEY"}"#,
        )
        .header("WWW-Authenticate", "Basic realm=\"zulip\""),
        Reply::new(
            400,
            r#"{"result":"error","msg":"Channel 'forum feed' does not exist","code":"STREAM_DOES_NOT_EXIST","stream":"forum feed"}"#,
        ),
        // A server echoing the key must not leak it either.
        Reply::new(
            400,
            &format!(r#"{{"result":"error","msg":"Bad key {KEY}","code":"BAD_REQUEST"}}"#),
        ),
        Reply::new(502, "<html>502 Bad Gateway</html>"),
        Reply::new(200, "<html>Log in to Zulip</html>"),
    ]);
    let outs: Vec<Outcome> = (0..6)
        .map(|_| run(&mock, "per-topic", fixture("post_created_first_post")))
        .collect();
    assert!(
        matches!(&outs[0], Outcome::Retry { after: Some(d), .. } if d.as_millis() == 2500),
        "{:?}",
        outs[0]
    );
    assert!(
        matches!(&outs[1], Outcome::Permanent { reason } if reason.contains("INVALID_API_KEY")),
        "{:?}",
        outs[1]
    );
    assert!(
        matches!(&outs[2], Outcome::Permanent { reason } if reason.contains("STREAM_DOES_NOT_EXIST")),
        "{:?}",
        outs[2]
    );
    assert!(
        matches!(&outs[3], Outcome::Permanent { reason } if reason.contains("BAD_REQUEST")),
        "{:?}",
        outs[3]
    );
    assert!(
        matches!(&outs[4], Outcome::Retry { after: None, .. }),
        "{:?}",
        outs[4]
    );
    assert!(
        matches!(&outs[5], Outcome::Permanent { reason } if reason.contains("check `realm`")),
        "{:?}",
        outs[5]
    );
    for o in &outs {
        let shown = format!("{o:?}");
        assert!(
            !shown.contains(KEY) && !shown.contains(&BASIC[6..]),
            "{shown}"
        );
    }
}

#[test]
fn network_errors_retry_without_the_key() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let o = deliver_fixture(
        &config(&format!("http://127.0.0.1:{port}")),
        "per-topic",
        fixture("post_created_first_post"),
    );
    let Outcome::Retry { reason, .. } = o else {
        panic!("{o:?}")
    };
    assert!(!reason.contains(KEY), "{reason}");
}

#[test]
fn edit_and_delete_requests_are_exact() {
    let mock = Mock::start();
    mock.script([
        Reply::new(
            200,
            r#"{"result":"success","msg":"","detached_uploads":[]}"#,
        ),
        Reply::new(200, r#"{"result":"success","msg":""}"#),
        // Deleted in the chat already: done.
        Reply::new(
            400,
            r#"{"code":"BAD_REQUEST","msg":"Invalid message(s)","result":"error"}"#,
        ),
    ]);
    let cfg = config(&mock.url(""));
    let env = [("ZULIP_API_KEY", KEY)];
    let edit = Action::Edit { remote_id: "4242" };
    assert_eq!(
        deliver_as(&cfg, "per-topic", "post_edited", &env, edit, false),
        Outcome::Sent { remote_id: None }
    );
    let delete = Action::Delete { remote_id: "4242" };
    for _ in 0..2 {
        assert_eq!(
            deliver_as(&cfg, "per-topic", "post_destroyed", &env, delete, false),
            Outcome::Sent { remote_id: None }
        );
    }
    let reqs = mock.requests();
    assert_eq!(reqs[0].method, "PATCH");
    assert_eq!(reqs[0].path, "/api/v1/messages/4242");
    assert_eq!(reqs[0].header("authorization"), Some(BASIC));
    let f = form(&reqs[0].body);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].0, "content");
    assert!(f[0].1.starts_with("**["), "{}", f[0].1);
    for r in &reqs[1..] {
        assert_eq!(r.method, "DELETE");
        assert_eq!(r.path, "/api/v1/messages/4242");
        assert_eq!(r.header("authorization"), Some(BASIC));
        assert!(r.body.is_empty());
    }
}
