//! WeCom through a mock server: the exact request for the hostile fixture,
//! and the classification of WeCom's real answers (HTTP 200 with `errcode`),
//! none of which may carry the webhook key.

mod common;

use common::*;
use discourse_relay::providers::Outcome;
use serde_json::json;

const KEY: &str = "5a1c-canary-wecom-robot-key";
const OK: &str = r#"{"errcode":0,"errmsg":"ok"}"#;

fn config(mock: &Mock) -> String {
    format!(
        r##"[discourse]
url = "https://forum.example.org"
[[chat]]
name = "group"
provider = "wecom"
webhook_url = "{base}/cgi-bin/webhook/send?key=${{WECOM_KEY}}"
style = "text"
subscribe = ["all"]
[[chat]]
name = "card"
provider = "wecom"
webhook_url = "{base}/cgi-bin/webhook/send?key=${{WECOM_KEY}}"
subscribe = ["all"]
"##,
        base = mock.url("")
    )
}

fn run(mock: &Mock, fixture: &str) -> Outcome {
    deliver(&config(mock), "group", fixture, &[("WECOM_KEY", KEY)])
}

#[test]
fn request_is_exact_and_escaped() {
    let mock = Mock::start();
    mock.always(Reply::new(200, OK));
    assert_eq!(
        run(&mock, "post_created_hostile_content"),
        Outcome::Sent { remote_id: None }
    );
    let r = &mock.requests()[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, format!("/cgi-bin/webhook/send?key={KEY}"));
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    // Markdown escaped; `<@U024BE7LH>` (a WeCom mention) broken; no mentioned_list.
    assert_eq!(
        r.json(),
        json!({
            "msgtype": "markdown",
            "markdown": {"content": "**[\\<!channel\\> @\u{200B}everyone \\<script\\>alert(1)\\</script\\> \\*bold\\* \\[link\\](javascript:x) & \\</b\\>](https://forum.example.org/t/channel-everyone-script-alert-1-script-bold-link-javascript-x-b/105/1)** by Mallory Mischief in general\n> \\<!channel\\> @\u{200B}everyone \\<script\\>alert(1)\\</script\\> bold \\[link\\](javascript:x) & \\</b\\> @\u{200B}here @\u{200B}room \\<@\u{200B}U024BE7LH\\> \\<https://evil.example\\|click me\\> strike code \\|\\|spoiler\\|\\|"},
        })
    );
}

#[test]
fn hostile_card_is_exact_and_inert() {
    let mock = Mock::start();
    mock.always(Reply::new(200, OK));
    let out = deliver(
        &config(&mock),
        "card",
        "post_created_hostile_content",
        &[("WECOM_KEY", KEY)],
    );
    assert_eq!(out, Outcome::Sent { remote_id: None });
    let body = mock.requests()[0].json();
    assert_eq!(body["msgtype"], "template_card");
    let t = &body["template_card"];
    // Plain text everywhere: `@`, `<`, `](` and `$` broken by U+200B, each
    // field within WeCom's recommended length.
    assert_eq!(
        t["main_title"]["title"],
        "<\u{200B}!channel> @\u{200B}everyone…"
    );
    assert_eq!(t["main_title"]["desc"], "Mallory Mischief · New topic");
    assert_eq!(
        t["sub_title_text"],
        "<\u{200B}!channel> @\u{200B}everyone <\u{200B}script>alert(1)<\u{200B}/script> bold [link]\u{200B}(javascript:x) & <\u{200B}/b> @\u{200B}here @\u{200B}room…"
    );
    let post = "https://forum.example.org/t/channel-everyone-script-alert-1-script-bold-link-javascript-x-b/105/1";
    assert_eq!(t["card_action"], json!({"type": 1, "url": post}));
    assert!(body.get("mentioned_list").is_none());
}

#[test]
fn real_answers_are_classified_without_secrets() {
    let mock = Mock::start();
    mock.script([
        Reply::new(200, r#"{"errcode":45009,"errmsg":"api freq out of limit, hint: [1773158403_10_3b9c], from ip: 203.0.113.7, more info at https://open.work.weixin.qq.com/devtool/query?e=45009"}"#),
        Reply::new(200, r#"{"errcode":93000,"errmsg":"invalid webhook url, hint: [1773158404_11_7d21], from ip: 203.0.113.7, more info at https://open.work.weixin.qq.com/devtool/query?e=93000"}"#),
        Reply::new(200, r#"{"errcode":-1,"errmsg":"system busy"}"#),
        Reply::new(502, "<html>502 Bad Gateway</html>"),
    ]);
    let outs: Vec<Outcome> = (0..4)
        .map(|_| run(&mock, "post_created_first_post"))
        .collect();
    assert!(
        matches!(&outs[0], Outcome::Retry { after: Some(d), reason } if d.as_secs() == 60 && reason.contains("45009")),
        "{:?}",
        outs[0]
    );
    assert!(
        matches!(&outs[1], Outcome::Permanent { reason } if reason.contains("93000") && reason.contains("`webhook_url`")),
        "{:?}",
        outs[1]
    );
    assert!(matches!(&outs[2], Outcome::Retry { .. }), "{:?}", outs[2]);
    assert!(matches!(&outs[3], Outcome::Retry { .. }), "{:?}", outs[3]);
    for o in &outs {
        let shown = format!("{o:?}");
        assert!(!shown.contains(KEY), "{shown}");
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
    let o = deliver(
        &toml,
        "group",
        "post_created_first_post",
        &[("WECOM_KEY", KEY)],
    );
    let Outcome::Retry { reason, .. } = o else {
        panic!("{o:?}")
    };
    assert!(!reason.contains(KEY), "{reason}");
}
