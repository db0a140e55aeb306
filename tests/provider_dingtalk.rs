//! DingTalk through a mock server: the exact (signed) request for the
//! hostile fixture, and the classification of DingTalk's real answers
//! (HTTP 200 with `errcode`), none of which may carry the token or secret.

mod common;

use base64::Engine;
use common::*;
use discourse_relay::providers::Outcome;
use hmac::{KeyInit, Mac};
use serde_json::json;

const TOKEN: &str = "canaryDingTalkAccessToken42";
const SECRET: &str = "SECcanaryDingTalkSigningSecret";
const OK: &str = r#"{"errcode":0,"errmsg":"ok"}"#;

fn config(mock: &Mock) -> String {
    format!(
        r##"[discourse]
url = "https://forum.example.org"
[[chat]]
name = "signed"
provider = "dingtalk"
webhook_url = "{base}/robot/send?access_token=${{DT_TOKEN}}"
secret = "${{DT_SECRET}}"
subscribe = ["all"]
[[chat]]
name = "plain"
provider = "dingtalk"
webhook_url = "{base}/robot/send?access_token=${{DT_TOKEN}}"
subscribe = ["all"]
"##,
        base = mock.url("")
    )
}

const ENV: [(&str, &str); 2] = [("DT_TOKEN", TOKEN), ("DT_SECRET", SECRET)];

fn run(mock: &Mock, chat: &str, fixture: &str) -> Outcome {
    deliver(&config(mock), chat, fixture, &ENV)
}

const POST_URL: &str = "https://forum.example.org/t/channel-everyone-script-alert-1-script-bold-link-javascript-x-b/105/1";
/// The card's title is plain text: mentions, `<` and `](` broken by U+200B.
const TITLE: &str = "<\u{200B}!channel> @\u{200B}everyone <\u{200B}script>alert(1)<\u{200B}/script> *bold* [link]\u{200B}(javascript:x) & <\u{200B}/b>";
/// The card's text is Markdown, `<`/`>` as look-alikes.
const TEXT: &str = concat!(
    "#### [‹!channel› @\u{200B}everyone ‹script›alert(1)‹/script› \\*bold\\* \\[link\\](javascript:x) & ‹/b›](https://forum.example.org/t/channel-everyone-script-alert-1-script-bold-link-javascript-x-b/105/1)\n\n",
    "**Mallory Mischief** @mallory · New topic · [general](https://forum.example.org/c/general/4)\n\n",
    "> ‹!channel› @\u{200B}everyone ‹script›alert(1)‹/script› bold \\[link\\](javascript:x) & ‹/b› @\u{200B}here @\u{200B}room ‹@\u{200B}U024BE7LH› ‹https://evil.example\\|click me› strike code \\|\\|spoiler\\|\\|\n\n",
    "forum.example.org"
);
const TEXT_MESSAGE: &str = "**[\\<!channel\\> @\u{200B}everyone \\<script\\>alert(1)\\</script\\> \\*bold\\* \\[link\\](javascript:x) & \\</b\\>](https://forum.example.org/t/channel-everyone-script-alert-1-script-bold-link-javascript-x-b/105/1)** by Mallory Mischief in general\n> \\<!channel\\> @\u{200B}everyone \\<script\\>alert(1)\\</script\\> bold \\[link\\](javascript:x) & \\</b\\> @\u{200B}here @\u{200B}room \\<@\u{200B}U024BE7LH\\> \\<https://evil.example\\|click me\\> strike code \\|\\|spoiler\\|\\|";

#[test]
fn signed_request_is_exact_and_escaped() {
    let mock = Mock::start();
    mock.always(Reply::new(200, OK));
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let out = run(&mock, "signed", "post_created_hostile_content");
    assert_eq!(out, Outcome::Sent { remote_id: None });
    let r = &mock.requests()[0];
    assert_eq!(r.method, "POST");
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let (path, query) = r.path.split_once('?').unwrap();
    assert_eq!(path, "/robot/send");
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let names: Vec<&str> = params.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["access_token", "timestamp", "sign"]);
    assert_eq!(params[0].1, TOKEN);
    let ts: u64 = params[1].1.parse().unwrap();
    assert!(
        ts >= before && ts <= before + 60_000,
        "timestamp {ts} is not now (ms)"
    );
    // Independent check: key = secret, message = "<ms>\n<secret>"; the query decodes `%2B`/`%3D`.
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{ts}\n{SECRET}").as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(params[2].1, expected);
    assert_eq!(
        r.json(),
        json!({
            "msgtype": "actionCard",
            "actionCard": {
                "title": TITLE,
                "text": TEXT,
                "btnOrientation": "0",
                "singleTitle": "View topic",
                "singleURL": POST_URL,
            },
            "at": {"isAtAll": false},
        })
    );
}

#[test]
fn a_text_chat_sends_markdown() {
    let mock = Mock::start();
    mock.always(Reply::new(200, OK));
    let cfg = config(&mock).replace("name = \"plain\"\n", "name = \"plain\"\nstyle = \"text\"\n");
    let out = deliver(&cfg, "plain", "post_created_hostile_content", &ENV);
    assert_eq!(out, Outcome::Sent { remote_id: None });
    let body = mock.requests()[0].json();
    assert_eq!(body["msgtype"], "markdown");
    assert_eq!(body["markdown"]["text"], TEXT_MESSAGE);
    assert_eq!(body["at"], json!({"isAtAll": false}));
}

#[test]
fn unsigned_request() {
    let mock = Mock::start();
    mock.always(Reply::new(200, OK));
    assert_eq!(
        run(&mock, "plain", "post_created_hostile_content"),
        Outcome::Sent { remote_id: None }
    );
    let r = &mock.requests()[0];
    assert_eq!(r.path, format!("/robot/send?access_token={TOKEN}"));
    assert_eq!(r.json()["at"], json!({"isAtAll": false}));
}

#[test]
fn real_answers_are_classified_without_secrets() {
    let mock = Mock::start();
    mock.script([
        Reply::new(200, r#"{"errcode":130101,"errmsg":"send too fast, exceed 20 times per minute"}"#),
        Reply::new(200, r#"{"errcode":310000,"errmsg":"sign not match, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]"}"#),
        Reply::new(200, r#"{"errcode":310000,"errmsg":"keywords not in content, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]"}"#),
        Reply::new(200, r#"{"errcode":300001,"errmsg":"token is not exist"}"#),
        Reply::new(200, r#"{"errcode":-1,"errmsg":"系统繁忙"}"#),
        Reply::new(500, "<html>500 Internal Server Error</html>"),
    ]);
    let outs: Vec<Outcome> = (0..6)
        .map(|_| run(&mock, "signed", "post_created_first_post"))
        .collect();
    assert!(
        matches!(&outs[0], Outcome::Retry { after: Some(d), reason } if d.as_secs() == 60 && reason.contains("130101")),
        "{:?}",
        outs[0]
    );
    assert!(
        matches!(&outs[1], Outcome::Permanent { reason } if reason.contains("sign not match") && reason.contains("`secret`"))
    );
    assert!(
        matches!(&outs[2], Outcome::Permanent { reason } if reason.contains("keywords not in content"))
    );
    assert!(
        matches!(&outs[3], Outcome::Permanent { reason } if reason.contains("300001") && reason.contains("access_token"))
    );
    assert!(matches!(&outs[4], Outcome::Retry { .. }), "{:?}", outs[4]);
    assert!(matches!(&outs[5], Outcome::Retry { .. }), "{:?}", outs[5]);
    for o in &outs {
        let shown = format!("{o:?}");
        assert!(!shown.contains(TOKEN) && !shown.contains(SECRET), "{shown}");
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
    for chat in ["signed", "plain"] {
        let o = deliver(&toml, chat, "post_created_first_post", &ENV);
        let Outcome::Retry { reason, .. } = o else {
            panic!("{o:?}")
        };
        assert!(
            !reason.contains(TOKEN) && !reason.contains(SECRET),
            "{reason}"
        );
    }
}
