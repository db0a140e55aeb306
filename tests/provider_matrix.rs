//! Matrix (and Gitter, which is Matrix) through a mock homeserver: the exact
//! `PUT …/send/m.room.message/{txnId}` for the hostile fixture, a transaction
//! id that stays the same when a delivery is retried, and the classification
//! of the homeserver's real error answers, none of which may carry the token.

mod common;

use common::*;
use discourse_relay::providers::Outcome;
use serde_json::json;

const TOKEN: &str = "syt_canary_matrix_4242";
const GITTER_TOKEN: &str = "syt_canary_gitter_4343";
const ROOM_PATH: &str = "/_matrix/client/v3/rooms/%21AbCdEf%3Aexample.org/send/m.room.message/";

fn config(homeserver: &str) -> String {
    format!(
        r##"[discourse]
url = "https://forum.example.org"
[providers.mx]
kind = "matrix"
homeserver = "{homeserver}"
access_token = "${{MATRIX_TOKEN}}"
[providers.gt]
kind = "gitter"
homeserver = "{homeserver}"
access_token = "${{GITTER_TOKEN}}"
[[chat]]
name = "room"
provider = "mx"
room = "!AbCdEf:example.org"
subscribe = ["all"]
style = "text"
[[chat]]
name = "gitter"
provider = "gt"
room = "!GiTtEr:gitter.im"
subscribe = ["all"]
style = "text"
"##
    )
}

fn run(mock: &Mock, chat: &str, fixture: &str) -> Outcome {
    let env = [("MATRIX_TOKEN", TOKEN), ("GITTER_TOKEN", GITTER_TOKEN)];
    deliver(&config(&mock.url("")), chat, fixture, &env)
}

fn homeserver() -> Mock {
    let mock = Mock::start();
    mock.always(Reply::new(200, r#"{"event_id":"$ev1:example.org"}"#));
    mock
}

/// Every `@` that could notify is followed by U+200B (an email-like `a@b` is
/// not a mention).
fn mentions_broken(text: &str) -> bool {
    let chars: Vec<char> = text.chars().collect();
    chars.iter().enumerate().all(|(i, &c)| {
        c != '@'
            || chars.get(i + 1) == Some(&'\u{200B}')
            || i.checked_sub(1).is_some_and(|p| chars[p].is_alphanumeric())
    })
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
    let mock = homeserver();
    let out = run(&mock, "room", "post_created_hostile_content");
    assert_eq!(
        out,
        Outcome::Sent {
            remote_id: Some("$ev1:example.org".into())
        }
    );
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, "PUT");
    let txn = r.path.strip_prefix(ROOM_PATH).expect(&r.path);
    assert!(
        txn.len() == 64 && txn.bytes().all(|b| b.is_ascii_hexdigit()),
        "{txn}"
    );
    assert!(
        !r.path.contains('?') && !r.path.contains(TOKEN),
        "token in the URL"
    );
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
        vec!["body", "format", "formatted_body", "m.mentions", "msgtype"]
    );
    assert_eq!(body["msgtype"], "m.notice");
    assert_eq!(body["format"], "org.matrix.custom.html");
    assert_eq!(body["m.mentions"], json!({}));

    let html = body["formatted_body"].as_str().unwrap();
    let link = "<a href=\"https://forum.example.org/t/channel-everyone-script-alert-1-script-bold-link-javascript-x-b/105/1\">";
    assert!(
        html.starts_with(&format!(
            "<b>{link}&lt;!channel&gt; @\u{200B}everyone &lt;script&gt;alert(1)&lt;/script&gt; *bold* [link](javascript:x) &amp; &lt;/b&gt;</a></b> by Mallory Mischief in general\n<blockquote>"
        )),
        "{html}"
    );
    // Only the template's own markup is live: no script, no injected tag or link.
    for t in tags(html) {
        assert!(
            ["b", "/b", "a", "/a", "blockquote", "/blockquote"].contains(&t.as_str()),
            "tag <{t}> in {html}"
        );
    }
    assert_eq!(html.matches("href=").count(), 1);
    for inert in [
        "&lt;script&gt;",
        "&lt;@\u{200B}U024BE7LH&gt;",
        "&lt;https://evil.example|click me&gt;",
    ] {
        assert!(html.contains(inert), "{inert} missing in {html}");
    }
    assert!(mentions_broken(html), "{html}");

    // The plain body: the same text without markup, the link kept as text.
    let plain = body["body"].as_str().unwrap();
    assert!(plain.starts_with("<!channel> @\u{200B}everyone <script>alert(1)</script> *bold* [link](javascript:x) & </b> (https://forum.example.org/t/channel-everyone-script-alert-1-script-bold-link-javascript-x-b/105/1) by Mallory Mischief in general\n"), "{plain}");
    assert!(plain.contains("@\u{200B}here @\u{200B}room"), "{plain}");
    assert!(mentions_broken(plain), "{plain}");
}

#[test]
fn retries_reuse_the_transaction_id() {
    let mock = homeserver();
    for _ in 0..2 {
        run(&mock, "room", "post_created_hostile_content");
    }
    run(&mock, "room", "post_created_first_post");
    run(&mock, "gitter", "post_created_hostile_content");
    let paths: Vec<String> = mock.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths[0], paths[1], "a retry must reuse the txnId");
    assert_ne!(paths[0], paths[2], "another post needs another txnId");
    let txn = |p: &str| p.rsplit('/').next().unwrap_or("").to_string();
    assert_ne!(
        txn(&paths[0]),
        txn(&paths[3]),
        "another chat, another txnId"
    );
}

#[test]
fn gitter_is_matrix_with_its_own_token() {
    let mock = homeserver();
    let out = run(&mock, "gitter", "post_created_first_post");
    assert!(
        matches!(out, Outcome::Sent { remote_id: Some(_) }),
        "{out:?}"
    );
    let r = &mock.requests()[0];
    assert_eq!(r.method, "PUT");
    assert!(
        r.path
            .starts_with("/_matrix/client/v3/rooms/%21GiTtEr%3Agitter.im/send/m.room.message/"),
        "{}",
        r.path
    );
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {GITTER_TOKEN}").as_str())
    );
    assert_eq!(r.json()["m.mentions"], json!({}));
}

#[test]
fn real_error_answers_are_classified_without_the_token() {
    let mock = Mock::start();
    mock.script([
        Reply::new(
            429,
            r#"{"errcode":"M_LIMIT_EXCEEDED","error":"Too Many Requests","retry_after_ms":9000}"#,
        )
        .header("Retry-After", "7"),
        Reply::new(
            429,
            r#"{"errcode":"M_LIMIT_EXCEEDED","error":"Too Many Requests","retry_after_ms":1500}"#,
        ),
        Reply::new(
            401,
            r#"{"errcode":"M_UNKNOWN_TOKEN","error":"Invalid access token passed.","soft_logout":false}"#,
        ),
        // A server that echoes the token back must not leak it either.
        Reply::new(
            403,
            &format!(
                r#"{{"errcode":"M_FORBIDDEN","error":"User @bot:example.org not in room !AbCdEf:example.org (token {TOKEN})"}}"#
            ),
        ),
        Reply::new(
            404,
            r#"{"errcode":"M_NOT_FOUND","error":"Unknown room"}"#,
        ),
        Reply::new(502, "<html><body>502 Bad Gateway</body></html>"),
        Reply::new(200, "{}"),
    ]);
    let outs: Vec<Outcome> = (0..7)
        .map(|_| run(&mock, "room", "post_created_first_post"))
        .collect();
    assert!(
        matches!(&outs[0], Outcome::Retry { after: Some(d), .. } if d.as_secs() == 7),
        "{:?}",
        outs[0]
    );
    assert!(
        matches!(&outs[1], Outcome::Retry { after: Some(d), .. } if d.as_millis() == 1500),
        "{:?}",
        outs[1]
    );
    assert!(
        matches!(&outs[2], Outcome::Permanent { reason } if reason.contains("M_UNKNOWN_TOKEN")),
        "{:?}",
        outs[2]
    );
    assert!(
        matches!(&outs[3], Outcome::Permanent { reason } if reason.contains("M_FORBIDDEN") && reason.contains("join")),
        "{:?}",
        outs[3]
    );
    assert!(
        matches!(&outs[4], Outcome::Permanent { reason } if reason.contains("M_NOT_FOUND")),
        "{:?}",
        outs[4]
    );
    assert!(
        matches!(&outs[5], Outcome::Retry { after: None, .. }),
        "{:?}",
        outs[5]
    );
    // 200 without an event id: retried (safe, the txnId deduplicates).
    assert!(matches!(&outs[6], Outcome::Retry { .. }), "{:?}", outs[6]);
    for o in &outs {
        assert!(!format!("{o:?}").contains(TOKEN), "{o:?}");
    }
    // Every attempt of the same message used the same transaction.
    let paths: Vec<String> = mock.requests().into_iter().map(|r| r.path).collect();
    assert!(paths.windows(2).all(|w| w[0] == w[1]), "{paths:?}");
}

#[test]
fn network_errors_retry_without_the_token() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let toml = config(&format!("http://127.0.0.1:{port}"));
    let env = [("MATRIX_TOKEN", TOKEN), ("GITTER_TOKEN", GITTER_TOKEN)];
    for chat in ["room", "gitter"] {
        let o = deliver(&toml, chat, "post_created_first_post", &env);
        let Outcome::Retry { reason, .. } = o else {
            panic!("{o:?}")
        };
        assert!(
            !reason.contains(TOKEN) && !reason.contains(GITTER_TOKEN),
            "{reason}"
        );
    }
}

#[test]
fn aliases_are_refused_with_a_pointer_to_the_room_id() {
    let toml =
        config("https://matrix.example.org").replace("!AbCdEf:example.org", "#general:example.org");
    let env = std::collections::HashMap::from([("MATRIX_TOKEN".to_string(), TOKEN.to_string())]);
    let Err(err) = discourse_relay::pipeline::load_str(
        std::path::Path::new("test.toml"),
        &toml,
        &env,
        discourse_relay::config::MissingEnv::Warn,
    ) else {
        panic!("an alias must be refused")
    };
    let err = err.to_string();
    assert!(err.contains("not an alias"), "{err}");
}
