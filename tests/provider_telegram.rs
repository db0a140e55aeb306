//! Telegram through a mock Bot API: the exact `sendMessage` request (token in
//! the path only), the hostile fixture's HTML escaping, and the
//! classification of the Bot API's real error answers, none of which may
//! carry the token.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::*;
use discourse_relay::config::MissingEnv;
use discourse_relay::providers::{Action, Outcome, Thread};

const TOKEN: &str = "123456789:AAcanary-telegram-4242";

fn config(api_url: &str) -> String {
    format!(
        r##"[discourse]
url = "https://forum.example.org"
[providers.tg]
kind = "telegram"
token = "${{TELEGRAM_TOKEN}}"
api_url = "{api_url}"
[[chat]]
name = "topic"
provider = "tg"
chat_id = -1001234567890
message_thread_id = 7
subscribe = ["all"]
[[chat]]
name = "channel"
provider = "tg"
chat_id = "@forum_news"
subscribe = ["all"]
"##
    )
}

fn run(api_url: &str, chat: &str, fixture: &str) -> Outcome {
    deliver(
        &config(api_url),
        chat,
        fixture,
        &[("TELEGRAM_TOKEN", TOKEN)],
    )
}

fn ok_reply(id: u64) -> Reply {
    Reply::new(
        200,
        &format!(
            r#"{{"ok":true,"result":{{"message_id":{id},"chat":{{"id":-1001234567890,"type":"supergroup"}},"date":1700000000,"text":"x"}}}}"#
        ),
    )
}

#[test]
fn send_message_request_is_exact_and_escaped() {
    let mock = Mock::start();
    mock.script([ok_reply(501)]);
    let out = run(&mock.url(""), "topic", "post_created_hostile_content");
    assert_eq!(
        out,
        Outcome::Sent {
            remote_id: Some("501".into())
        }
    );
    let r = &mock.requests()[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, format!("/bot{TOKEN}/sendMessage"));
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert!(r.header("authorization").is_none());
    assert!(!r.body.contains(TOKEN));
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
            "chat_id",
            "link_preview_options",
            "message_thread_id",
            "parse_mode",
            "text"
        ]
    );
    assert_eq!(body["chat_id"], -1001234567890i64);
    assert_eq!(body["message_thread_id"], 7);
    assert_eq!(body["parse_mode"], "HTML");
    assert_eq!(
        body["link_preview_options"],
        serde_json::json!({"is_disabled": true})
    );
    let text = body["text"].as_str().unwrap();
    assert_eq!(
        text,
        concat!(
            "<b><a href=\"https://forum.example.org/t/channel-everyone-script-alert-1-script-bold-link-javascript-x-b/105/1\">",
            "&lt;!channel&gt; @\u{200B}everyone &lt;script&gt;alert(1)&lt;/script&gt; *bold* [link](javascript:x) &amp; &lt;/b&gt;",
            "</a></b>\nMallory Mischief · new topic · <a href=\"https://forum.example.org/c/general/4\">general</a>\n<blockquote>",
            "&lt;!channel&gt; @\u{200B}everyone &lt;script&gt;alert(1)&lt;/script&gt; bold [link](javascript:x) &amp; &lt;/b&gt; ",
            "@\u{200B}here @\u{200B}room &lt;@\u{200B}U024BE7LH&gt; &lt;https://evil.example|click me&gt; strike code ||spoiler||",
            "</blockquote>"
        )
    );
    // The title arrives as text: the post's tags are entities, its mentions broken.
    for inert in [
        "&lt;!channel&gt;",
        "@\u{200B}everyone",
        "&lt;script&gt;alert(1)&lt;/script&gt;",
        "&amp; &lt;/b&gt;",
    ] {
        assert!(text.contains(inert), "{inert} missing in {text}");
    }
    assert!(!text.contains("<script") && !text.contains("javascript:x\""));
    // The only markup is the default template's own: one bold title link
    // and the category's link.
    assert_eq!(text.matches("<b>").count(), 1, "{text}");
    assert_eq!(text.matches("</b>").count(), 1, "{text}");
    assert_eq!(text.matches("<a ").count(), 2, "{text}");
    assert_eq!(
        text.matches("<a href=\"https://forum.example.org/").count(),
        2,
        "{text}"
    );
    assert!(text.starts_with("<b><a href=\"https://forum.example.org/t/"));
}

#[test]
fn channel_username_target() {
    let mock = Mock::start();
    mock.script([ok_reply(9)]);
    let out = run(&mock.url("/"), "channel", "post_created_first_post");
    assert_eq!(
        out,
        Outcome::Sent {
            remote_id: Some("9".into())
        }
    );
    let r = &mock.requests()[0];
    assert_eq!(r.path, format!("/bot{TOKEN}/sendMessage"));
    let body = r.json();
    assert_eq!(body["chat_id"], "@forum_news");
    assert!(body.get("message_thread_id").is_none());
}

#[test]
fn real_error_answers_are_classified_without_secrets() {
    let mock = Mock::start();
    mock.script([
        Reply::new(
            429,
            r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 31","parameters":{"retry_after":31}}"#,
        ),
        Reply::new(401, r#"{"ok":false,"error_code":401,"description":"Unauthorized"}"#),
        Reply::new(
            400,
            r#"{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}"#,
        ),
        Reply::new(
            403,
            r#"{"ok":false,"error_code":403,"description":"Forbidden: bot was kicked from the supergroup chat"}"#,
        ),
        Reply::new(
            400,
            r#"{"ok":false,"error_code":400,"description":"Bad Request: group chat was upgraded to a supergroup chat","parameters":{"migrate_to_chat_id":-1009876543210}}"#,
        ),
        Reply::new(502, "<html><body><h1>502 Bad Gateway</h1></body></html>"),
        // A platform echoing the request URL: the redactor must catch it.
        Reply::new(
            404,
            &format!(r#"{{"ok":false,"error_code":404,"description":"Not Found: /bot{TOKEN}/sendMessage"}}"#),
        ),
    ]);
    let outs: Vec<Outcome> = (0..7)
        .map(|_| run(&mock.url(""), "topic", "post_created_first_post"))
        .collect();
    assert!(
        matches!(&outs[0], Outcome::Retry { after: Some(d), .. } if d.as_secs() == 31),
        "{:?}",
        outs[0]
    );
    assert!(
        matches!(&outs[1], Outcome::Permanent { reason } if reason.contains("401 Unauthorized (the bot token was rejected)"))
    );
    assert!(matches!(&outs[2], Outcome::Permanent { reason } if reason.contains("chat not found")));
    assert!(matches!(&outs[3], Outcome::Permanent { reason } if reason.contains("bot was kicked")));
    assert!(
        matches!(&outs[4], Outcome::Permanent { reason } if reason.contains("set `chat_id = -1009876543210`")),
        "{:?}",
        outs[4]
    );
    assert!(matches!(&outs[5], Outcome::Retry { .. }));
    assert!(matches!(&outs[6], Outcome::Permanent { .. }));
    for o in &outs {
        let shown = format!("{o:?}");
        assert!(
            !shown.contains(TOKEN) && !shown.contains("AAcanary"),
            "{shown}"
        );
    }
}

#[test]
fn network_errors_retry_and_hide_the_token() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let o = run(
        &format!("http://127.0.0.1:{port}"),
        "topic",
        "post_created_first_post",
    );
    let Outcome::Retry { reason, .. } = o else {
        panic!("{o:?}")
    };
    assert!(!reason.contains(TOKEN), "{reason}");
}

#[test]
fn config_problems_are_located() {
    let text = r##"[discourse]
url = "https://forum.example.org"
[providers.tg]
kind = "telegram"
token = "123456789:AAliteral"
[providers.notoken]
kind = "telegram"
[[chat]]
name = "a"
provider = "notoken"
chat_id = -100123
subscribe = ["all"]
[[chat]]
name = "b"
provider = "telegram"
chat_id = "general"
subscribe = ["all"]
"##;
    let env: HashMap<String, String> = HashMap::new();
    let Err(err) =
        discourse_relay::pipeline::load_str(Path::new("t.toml"), text, &env, MissingEnv::Warn)
    else {
        panic!("the config should be invalid")
    };
    let shown = err.to_string();
    assert!(
        shown.contains("t.toml:5:9") && shown.contains("`token` must be an environment reference"),
        "{shown}"
    );
    assert!(
        shown.contains("t.toml:11:11") && shown.contains("needs a bot token"),
        "{shown}"
    );
    assert!(
        shown.contains("t.toml:16:11") && shown.contains("`chat_id` must be"),
        "{shown}"
    );
    assert!(!shown.contains("AAliteral"), "{shown}");
}

fn run_as(api_url: &str, chat: &str, fixture: &str, action: Action<'_>) -> Outcome {
    deliver_as(
        &config(api_url),
        chat,
        fixture,
        &[("TELEGRAM_TOKEN", TOKEN)],
        action,
        false,
    )
}

#[test]
fn thread_reply_edit_and_delete_requests_are_exact() {
    let mock = Mock::start();
    mock.script([
        ok_reply(502),
        ok_reply(501),
        Reply::new(200, r#"{"ok":true,"result":true}"#),
        // The message was already removed in the chat: done.
        Reply::new(
            400,
            r#"{"ok":false,"error_code":400,"description":"Bad Request: message to delete not found"}"#,
        ),
    ]);
    let reply = Action::Post {
        thread: Some(Thread { root: Some("501") }),
    };
    assert_eq!(
        run_as(&mock.url(""), "topic", "post_created_first_post", reply),
        Outcome::Sent {
            remote_id: Some("502".into())
        }
    );
    let edit = Action::Edit { remote_id: "501" };
    assert_eq!(
        run_as(&mock.url(""), "topic", "post_edited", edit),
        Outcome::Sent {
            remote_id: Some("501".into())
        }
    );
    let delete = Action::Delete { remote_id: "501" };
    for _ in 0..2 {
        assert_eq!(
            run_as(&mock.url(""), "topic", "post_destroyed", delete),
            Outcome::Sent { remote_id: None }
        );
    }
    let reqs = mock.requests();
    assert_eq!(reqs[0].path, format!("/bot{TOKEN}/sendMessage"));
    let body = reqs[0].json();
    assert_eq!(body["message_thread_id"], 7);
    assert_eq!(
        body["reply_parameters"],
        serde_json::json!({"message_id": 501, "allow_sending_without_reply": true})
    );

    assert_eq!(reqs[1].method, "POST");
    assert_eq!(reqs[1].path, format!("/bot{TOKEN}/editMessageText"));
    let body = reqs[1].json();
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        vec![
            "chat_id",
            "link_preview_options",
            "message_id",
            "parse_mode",
            "text"
        ]
    );
    assert_eq!(body["chat_id"], -1001234567890i64);
    assert_eq!(body["message_id"], 501);
    assert!(body["text"].as_str().unwrap().starts_with("<b><a href="));

    for r in &reqs[2..] {
        assert_eq!(r.path, format!("/bot{TOKEN}/deleteMessage"));
        assert_eq!(
            r.json(),
            serde_json::json!({"chat_id": -1001234567890i64, "message_id": 501})
        );
    }
}
