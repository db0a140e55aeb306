//! Lark / Feishu through a mock server: the exact (signed) request for the
//! hostile fixture, and the classification of Lark's real answers (HTTP 200
//! with error codes), none of which may carry the token or the secret.

mod common;

use base64::Engine;
use common::*;
use discourse_relay::providers::Outcome;
use hmac::{KeyInit, Mac};
use serde_json::json;

const TOKEN: &str = "7f3c-canary-lark-hook-token";
const SECRET: &str = "canaryLarkSigningSecret";
const OK: &str = r#"{"StatusCode":0,"StatusMessage":"success","code":0,"data":{},"msg":"success"}"#;

fn config(mock: &Mock) -> String {
    format!(
        r##"[discourse]
url = "https://forum.example.org"
[[chat]]
name = "signed"
provider = "lark"
webhook_url = "{base}/open-apis/bot/v2/hook/${{LARK_TOKEN}}"
secret = "${{LARK_SECRET}}"
subscribe = ["all"]
[[chat]]
name = "plain"
provider = "lark"
webhook_url = "${{LARK_HOOK}}"
style = "text"
subscribe = ["all"]
"##,
        base = mock.url("")
    )
}

fn run(mock: &Mock, chat: &str, fixture: &str) -> Outcome {
    let hook = mock.url(&format!("/open-apis/bot/v2/hook/{TOKEN}"));
    let env = [
        ("LARK_TOKEN", TOKEN),
        ("LARK_SECRET", SECRET),
        ("LARK_HOOK", hook.as_str()),
    ];
    deliver(&config(mock), chat, fixture, &env)
}

const TEXT: &str = "<!channel> @everyone <script>alert(1)</script> *bold* [link](javascript:x) & </b> (https://forum.example.org/t/channel-everyone-script-alert-1-script-bold-link-javascript-x-b/105/1) by Mallory Mischief in general\n<!channel> @everyone <script>alert(1)</script> bold [link](javascript:x) & </b> @here @room <@U024BE7LH> <https://evil.example|click me> strike code ||spoiler||";

#[test]
fn signed_request_is_exact() {
    let mock = Mock::start();
    mock.always(Reply::new(200, OK));
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let out = run(&mock, "signed", "post_created_hostile_content");
    assert_eq!(out, Outcome::Sent { remote_id: None });
    let r = &mock.requests()[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, format!("/open-apis/bot/v2/hook/{TOKEN}"));
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let body = r.json();
    let ts = body["timestamp"].as_str().unwrap().to_string();
    let secs: u64 = ts.parse().unwrap();
    assert!(
        secs >= before && secs <= before + 60,
        "timestamp {ts} is not now"
    );
    // Independent check of the scheme: key = "<timestamp>\n<secret>", message empty.
    let mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(format!("{ts}\n{SECRET}").as_bytes()).unwrap();
    let sign = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(body["timestamp"], ts);
    assert_eq!(body["sign"], sign);
    assert_eq!(body["msg_type"], "interactive");
    // The card: the header is plain text with every `<` broken (no tag
    // can come from the post); the excerpt is lark_md, every character it
    // reads as a numeric entity.
    let card = &body["card"];
    assert_eq!(
        card["header"]["title"]["content"],
        "<\u{200B}!channel> @everyone <\u{200B}script>alert(1)<\u{200B}/script> *bold* [link](javascript:x) & <\u{200B}/b>"
    );
    assert_eq!(
        card["elements"][0]["text"]["content"],
        "&#60;&#33;channel&#62; @everyone &#60;script&#62;alert&#40;1&#41;&#60;/script&#62; bold &#91;link&#93;&#40;javascript&#58;x&#41; &#38; &#60;/b&#62; @here @room &#60;@U024BE7LH&#62; &#60;https&#58;//evil.example&#124;click me&#62; strike code &#124;&#124;spoiler&#124;&#124;"
    );
    let button = &card["elements"][2]["actions"][0];
    assert_eq!(
        button["url"],
        "https://forum.example.org/t/channel-everyone-script-alert-1-script-bold-link-javascript-x-b/105/1"
    );
}

#[test]
fn unsigned_request_from_a_whole_url_variable() {
    let mock = Mock::start();
    mock.always(Reply::new(200, OK));
    let out = run(&mock, "plain", "post_created_hostile_content");
    assert_eq!(out, Outcome::Sent { remote_id: None });
    let r = &mock.requests()[0];
    assert_eq!(r.path, format!("/open-apis/bot/v2/hook/{TOKEN}"));
    assert_eq!(
        r.json(),
        json!({"msg_type": "text", "content": {"text": TEXT}})
    );
}

#[test]
fn real_answers_are_classified_without_secrets() {
    let mock = Mock::start();
    mock.script([
        Reply::new(200, r#"{"code":11232,"data":{},"msg":"frequency limited psm[lark.oapi.app_platform_runtime]appID[1]"}"#),
        Reply::new(429, r#"{"code":99991400,"msg":"request trigger frequency limit"}"#).header("x-ogw-ratelimit-reset", "9"),
        Reply::new(200, r#"{"code":19021,"data":{},"msg":"sign match fail or timestamp is not within one hour from current time"}"#),
        Reply::new(400, r#"{"code":19001,"data":{},"msg":"param invalid: incoming webhook access token invalid"}"#),
        Reply::new(200, r#"{"code":19024,"msg":"Key Words Not Found"}"#),
        Reply::new(200, r#"{"code":9499,"msg":"Bad Request","data":{}}"#),
        Reply::new(503, "upstream connect error"),
    ]);
    let outs: Vec<Outcome> = (0..7)
        .map(|_| run(&mock, "signed", "post_created_first_post"))
        .collect();
    assert!(
        matches!(&outs[0], Outcome::Retry { reason, .. } if reason.contains("11232")),
        "{:?}",
        outs[0]
    );
    assert!(
        matches!(&outs[1], Outcome::Retry { after: Some(d), .. } if d.as_secs() == 9),
        "{:?}",
        outs[1]
    );
    assert!(
        matches!(&outs[2], Outcome::Permanent { reason } if reason.contains("19021") && reason.contains("`secret`"))
    );
    assert!(matches!(&outs[3], Outcome::Permanent { reason } if reason.contains("19001")));
    assert!(matches!(&outs[4], Outcome::Permanent { reason } if reason.contains("keyword")));
    assert!(matches!(&outs[5], Outcome::Permanent { reason } if reason.contains("9499")));
    assert!(matches!(&outs[6], Outcome::Retry { .. }));
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
    let hook = format!("http://127.0.0.1:{port}/open-apis/bot/v2/hook/{TOKEN}");
    let env = [
        ("LARK_TOKEN", TOKEN),
        ("LARK_SECRET", SECRET),
        ("LARK_HOOK", hook.as_str()),
    ];
    for chat in ["signed", "plain"] {
        let o = deliver(&toml, chat, "post_created_first_post", &env);
        let Outcome::Retry { reason, .. } = o else {
            panic!("{o:?}")
        };
        assert!(
            !reason.contains(TOKEN) && !reason.contains(SECRET),
            "{reason}"
        );
    }
}
