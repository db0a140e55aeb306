//! Discord through a mock webhook endpoint: the exact execute-webhook
//! request (`?wait=true`, mentions disabled at the API), the hostile
//! fixture's Markdown escaping, and the classification of Discord's real
//! error answers, none of which may carry the webhook token.

mod common;

use common::*;
use discourse_relay::providers::{Action, Outcome, Thread};

const HOOK_TOKEN: &str = "canary-discord-token-4242";

fn config() -> String {
    r##"[discourse]
url = "https://forum.example.org"
[providers.discord]
username = "Forum"
avatar_url = "https://forum.example.org/logo.png"
[[chat]]
name = "hook"
provider = "discord"
webhook_url = "${DISCORD_HOOK}"
style = "text"
subscribe = ["all"]
[[chat]]
name = "forum-thread"
provider = "discord"
webhook_url = "${DISCORD_HOOK}"
thread_id = "1122334455667788990"
subscribe = ["all"]
[[chat]]
name = "forum"
provider = "discord"
webhook_url = "${DISCORD_HOOK}"
forum_channel = true
subscribe = ["all"]
"##
    .to_string()
}

fn hook_path() -> String {
    format!("/api/webhooks/112233445566778899/{HOOK_TOKEN}")
}

fn run_at(hook: &str, chat: &str, fixture: &str) -> Outcome {
    deliver(&config(), chat, fixture, &[("DISCORD_HOOK", hook)])
}

fn run(mock: &Mock, chat: &str, fixture: &str) -> Outcome {
    run_at(&mock.url(&hook_path()), chat, fixture)
}

fn message_reply(id: &str) -> Reply {
    message_in(id, "111")
}

/// A message as Discord answers it; in a thread, `channel_id` is the thread.
fn message_in(id: &str, channel: &str) -> Reply {
    Reply::new(
        200,
        &format!(
            r#"{{"id":"{id}","type":0,"content":"x","channel_id":"{channel}","author":{{"bot":true,"id":"112233445566778899","username":"Forum"}},"webhook_id":"112233445566778899"}}"#
        ),
    )
    .header("Content-Type", "application/json")
}

#[test]
fn execute_webhook_request_is_exact_and_mentions_are_off() {
    let mock = Mock::start();
    mock.script([message_reply("1300000000000000001")]);
    let out = run(&mock, "hook", "post_created_hostile_content");
    assert_eq!(
        out,
        Outcome::Sent {
            remote_id: Some("1300000000000000001".into())
        }
    );
    let r = &mock.requests()[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, format!("{}?wait=true", hook_path()));
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert!(r.header("authorization").is_none());
    let body = r.json();
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        vec!["allowed_mentions", "avatar_url", "content", "username"]
    );
    assert_eq!(body["allowed_mentions"], serde_json::json!({"parse": []}));
    assert_eq!(body["username"], "Forum");
    assert_eq!(body["avatar_url"], "https://forum.example.org/logo.png");
    let content = body["content"].as_str().unwrap();
    assert_eq!(
        content,
        concat!(
            "**[\\<!channel\\> @\u{200B}everyone \\<script\\>alert(1)\\</script\\> \\*bold\\* \\[link\\](javascript:x) & \\</b\\>]",
            "(https://forum.example.org/t/channel-everyone-script-alert-1-script-bold-link-javascript-x-b/105/1)** by Mallory Mischief in general\n",
            "> \\<!channel\\> @\u{200B}everyone \\<script\\>alert(1)\\</script\\> bold \\[link\\](javascript:x) & \\</b\\> ",
            "@\u{200B}here @\u{200B}room \\<@\u{200B}U024BE7LH\\> \\<https://evil.example\\|click me\\> strike code \\|\\|spoiler\\|\\|"
        )
    );
    for inert in [
        "@\u{200B}everyone",
        "@\u{200B}here",
        "\\<@\u{200B}U024BE7LH\\>",
        "\\[link\\](javascript:x)",
    ] {
        assert!(content.contains(inert), "{inert} missing in {content}");
    }
    for active in ["@everyone", "@here", "<@U024BE7LH>", "||spoiler||"] {
        assert!(!content.contains(active), "{active} survived in {content}");
    }
    // The post's brackets are escaped: the only link is the template's.
    assert_eq!(content.matches("](").count(), 3, "{content}");
    assert_eq!(content.matches("\\](").count(), 2, "{content}");
    assert_eq!(
        content.matches("](https://forum.example.org/t/").count(),
        1,
        "{content}"
    );
    assert!(!r.body.contains(HOOK_TOKEN));
}

#[test]
fn thread_target_adds_thread_id() {
    let mock = Mock::start();
    mock.script([message_in("7", "1122334455667788990")]);
    let out = run(&mock, "forum-thread", "post_created_first_post");
    // The id names the thread too: edits and deletes need it.
    assert_eq!(
        out,
        Outcome::Sent {
            remote_id: Some("1122334455667788990/7".into())
        }
    );
    let r = &mock.requests()[0];
    assert_eq!(
        r.path,
        format!("{}?wait=true&thread_id=1122334455667788990", hook_path())
    );
}

#[test]
fn real_error_answers_are_classified_without_secrets() {
    let mock = Mock::start();
    mock.script([
        Reply::new(
            429,
            r#"{"message": "You are being rate limited.", "retry_after": 2.5, "global": false}"#,
        )
        .header("Retry-After", "3")
        .header("X-RateLimit-Scope", "user"),
        Reply::new(401, r#"{"message": "Invalid Webhook Token", "code": 50027}"#),
        Reply::new(404, r#"{"message": "Unknown Webhook", "code": 10015}"#),
        Reply::new(502, "<html>502 Bad Gateway</html>"),
        Reply::new(
            400,
            r#"{"message": "Webhooks posted to forum channels must have a thread_name or thread_id", "code": 220001}"#,
        ),
        // An answer echoing the URL: the redactor must catch it.
        Reply::new(
            400,
            &format!(r#"{{"message": "bad request to {}", "code": 0}}"#, hook_path()),
        ),
    ]);
    let outs: Vec<Outcome> = (0..6)
        .map(|_| run(&mock, "hook", "post_created_first_post"))
        .collect();
    assert!(
        matches!(&outs[0], Outcome::Retry { after: Some(d), .. } if d.as_millis() == 2500),
        "{:?}",
        outs[0]
    );
    assert!(
        matches!(&outs[1], Outcome::Permanent { reason } if reason.contains("50027 Invalid Webhook Token"))
    );
    assert!(
        matches!(&outs[2], Outcome::Permanent { reason } if reason.contains("10015 Unknown Webhook"))
    );
    assert!(matches!(&outs[3], Outcome::Retry { .. }));
    assert!(matches!(&outs[4], Outcome::Permanent { reason } if reason.contains("thread_id")));
    assert!(matches!(&outs[5], Outcome::Permanent { .. }));
    for o in &outs {
        let shown = format!("{o:?}");
        assert!(!shown.contains(HOOK_TOKEN), "{shown}");
    }
}

#[test]
fn retry_after_header_alone_is_honoured() {
    let mock = Mock::start();
    mock.script([Reply::new(429, "error code: 1015").header("Retry-After", "17")]);
    let o = run(&mock, "hook", "post_created_first_post");
    assert!(
        matches!(&o, Outcome::Retry { after: Some(d), .. } if d.as_secs() == 17),
        "{o:?}"
    );
}

#[test]
fn network_errors_retry_and_hide_the_url_secret() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let o = run_at(
        &format!("http://127.0.0.1:{port}{}", hook_path()),
        "hook",
        "post_created_first_post",
    );
    let Outcome::Retry { reason, .. } = o else {
        panic!("{o:?}")
    };
    assert!(!reason.contains(HOOK_TOKEN), "{reason}");
}

#[test]
fn forum_post_thread_reply_edit_and_delete_requests_are_exact() {
    const POST: &str = "1300000000000000001";
    let mock = Mock::start();
    mock.script([
        // Opening a forum post: the starter message's id is the post's.
        message_in(POST, POST),
        message_in("1300000000000000002", POST),
        message_in("1300000000000000002", POST),
        Reply::new(204, ""),
        // Already deleted in the chat: done.
        Reply::new(404, r#"{"message": "Unknown Message", "code": 10008}"#),
    ]);
    let cfg = config();
    let hook = mock.url(&hook_path());
    let env = [("DISCORD_HOOK", hook.as_str())];
    let send = |fixture, action| deliver_as(&cfg, "forum", fixture, &env, action, false);
    let root = format!("{POST}/{POST}");
    let reply_id = format!("{POST}/1300000000000000002");
    assert_eq!(
        send(
            "post_created_first_post",
            Action::Post {
                thread: Some(Thread { root: None })
            }
        ),
        Outcome::Sent {
            remote_id: Some(root.clone())
        }
    );
    assert_eq!(
        send(
            "post_created_first_post",
            Action::Post {
                thread: Some(Thread { root: Some(&root) })
            }
        ),
        Outcome::Sent {
            remote_id: Some(reply_id.clone())
        }
    );
    assert!(matches!(
        send(
            "post_edited",
            Action::Edit {
                remote_id: &reply_id
            }
        ),
        Outcome::Sent { .. }
    ));
    for _ in 0..2 {
        assert_eq!(
            send(
                "post_destroyed",
                Action::Delete {
                    remote_id: &reply_id
                }
            ),
            Outcome::Sent { remote_id: None }
        );
    }
    let reqs = mock.requests();
    let hp = hook_path();
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].path, format!("{hp}?wait=true"));
    let body = reqs[0].json();
    assert!(
        body["thread_name"]
            .as_str()
            .is_some_and(|n| !n.is_empty() && n.chars().count() <= 100),
        "{body}"
    );
    assert_eq!(body["allowed_mentions"], serde_json::json!({"parse": []}));

    assert_eq!(reqs[1].path, format!("{hp}?wait=true&thread_id={POST}"));
    assert!(reqs[1].json().get("thread_name").is_none());

    assert_eq!(reqs[2].method, "PATCH");
    assert_eq!(
        reqs[2].path,
        format!("{hp}/messages/1300000000000000002?thread_id={POST}")
    );
    let body = reqs[2].json();
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    // A card chat edits its embed; its text stays out of `content`.
    assert_eq!(keys, vec!["allowed_mentions", "embeds"]);
    assert_eq!(body["allowed_mentions"], serde_json::json!({"parse": []}));
    assert!(body["embeds"][0]["title"].is_string(), "{body}");

    for r in &reqs[3..] {
        assert_eq!(r.method, "DELETE");
        assert_eq!(
            r.path,
            format!("{hp}/messages/1300000000000000002?thread_id={POST}")
        );
        assert!(r.body.is_empty());
    }
}
