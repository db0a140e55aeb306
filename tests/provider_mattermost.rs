//! Mattermost through a mock server: the exact REST (`/api/v4/posts`) and
//! incoming-webhook requests, the hostile fixture's Markdown escaping, and
//! the classification of Mattermost's real error answers, none of which
//! may carry the token or the webhook key.

mod common;

use common::*;
use discourse_relay::providers::{Action, Outcome, Thread};

const TOKEN: &str = "canary-mm-token-7f3k9q";
const HOOK_KEY: &str = "canaryhookkey9x8y7z6w5v4u3";
const CHANNEL: &str = "4xp9fdt77pncbef59f4k1qe83o";

fn config(api_url: &str) -> String {
    format!(
        r##"[discourse]
url = "https://forum.example.org"
[providers.mm]
kind = "mattermost"
token = "${{MM_TOKEN}}"
api_url = "{api_url}"
username = "Forum"
[[chat]]
name = "api"
provider = "mm"
channel_id = "{CHANNEL}"
subscribe = ["all"]
[[chat]]
name = "hook"
provider = "mm"
webhook_url = "${{MM_HOOK}}"
channel = "town-square"
subscribe = ["all"]
[[chat]]
name = "hook-text"
provider = "mm"
webhook_url = "${{MM_HOOK}}"
channel = "town-square"
style = "text"
subscribe = ["all"]
"##
    )
}

fn run_at(api_url: &str, hook: &str, chat: &str, fixture: &str) -> Outcome {
    deliver(
        &config(api_url),
        chat,
        fixture,
        &[("MM_TOKEN", TOKEN), ("MM_HOOK", hook)],
    )
}

fn run(mock: &Mock, chat: &str, fixture: &str) -> Outcome {
    run_at(
        &mock.url(""),
        &mock.url(&format!("/hooks/{HOOK_KEY}")),
        chat,
        fixture,
    )
}

fn post_reply(id: &str) -> Reply {
    Reply::new(
        201,
        &format!(
            r#"{{"id":"{id}","create_at":1700000000000,"update_at":1700000000000,"user_id":"u","channel_id":"{CHANNEL}","root_id":"","message":"x","type":"","props":{{}}}}"#
        ),
    )
    .header("Content-Type", "application/json")
}

fn error(status: u16, id: &str, message: &str) -> Reply {
    Reply::new(
        status,
        &format!(
            r#"{{"id":"{id}","message":"{message}","detailed_error":"","request_id":"8h3kq1","status_code":{status}}}"#
        ),
    )
    .header("Content-Type", "application/json")
}

const EXPECTED_TEXT: &str = concat!(
    "**[\\<!channel\\> @\u{200B}everyone \\<script\\>alert(1)\\</script\\> \\*bold\\* \\[link\\](javascript:x) & \\</b\\>]",
    "(https://forum.example.org/t/channel-everyone-script-alert-1-script-bold-link-javascript-x-b/105/1)** by Mallory Mischief in general\n",
    "> \\<!channel\\> @\u{200B}everyone \\<script\\>alert(1)\\</script\\> bold \\[link\\](javascript:x) & \\</b\\> ",
    "@\u{200B}here @\u{200B}room \\<@\u{200B}U024BE7LH\\> \\<https://evil.example\\|click me\\> strike code \\|\\|spoiler\\|\\|"
);

fn assert_inert(text: &str) {
    assert_eq!(text, EXPECTED_TEXT);
    // Mattermost's mentions and the Slack forms its webhooks translate.
    for active in ["@everyone", "@here", "@channel", "@room"] {
        assert!(!text.contains(active), "{active} survived in {text}");
    }
    // Every `<` is escaped, so no `<!channel>` or `<url|text>` is translated.
    assert_eq!(text.matches('<').count(), text.matches("\\<").count());
}

#[test]
fn rest_request_is_exact_and_escaped() {
    let mock = Mock::start();
    mock.script([post_reply("ab1cd2ef3gh4ij5kl6mn7op8qr")]);
    let out = run(&mock, "api", "post_created_hostile_content");
    assert_eq!(
        out,
        Outcome::Sent {
            remote_id: Some("ab1cd2ef3gh4ij5kl6mn7op8qr".into())
        }
    );
    let r = &mock.requests()[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/api/v4/posts");
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
    assert_eq!(keys, vec!["channel_id", "message", "props"]);
    assert_eq!(body["channel_id"], CHANNEL);
    // The card alone: no text above it.
    assert_eq!(body["message"], "");
    let card = &body["props"]["attachments"][0];
    assert_eq!(card["title"], CARD_TITLE);
    assert_eq!(card["text"], CARD_TEXT);
    assert_eq!(
        card["author_name"],
        "Mallory Mischief @\u{200B}mallory · New topic"
    );
    assert_eq!(
        card["fallback"],
        "<\u{200B}!channel> @\u{200B}everyone <\u{200B}script>alert(1)<\u{200B}/script> *bold* [link]\u{200B}(javascript:x) & <\u{200B}/b> · New topic by Mallory Mischief"
    );
    for field in [&card["title"], &card["text"], &card["fallback"]] {
        let text = field.as_str().unwrap();
        for active in [
            "@everyone",
            "@here",
            "@channel",
            "@room",
            "<!",
            "<s",
            "<h",
            "<@",
        ] {
            assert!(!text.contains(active), "{active} survived in {text}");
        }
    }
}

/// The hostile title and excerpt in the card's Markdown fields: escaped,
/// `<` and `>` as entities (marked shows them as the same characters).
const CARD_TITLE: &str = "&lt;!channel&gt; @\u{200B}everyone &lt;script&gt;alert(1)&lt;/script&gt; \\*bold\\* \\[link\\](javascript:x) & &lt;/b&gt;";
const CARD_TEXT: &str = concat!(
    "&lt;!channel&gt; @\u{200B}everyone &lt;script&gt;alert(1)&lt;/script&gt; bold \\[link\\](javascript:x) & &lt;/b&gt; ",
    "@\u{200B}here @\u{200B}room &lt;@\u{200B}U024BE7LH&gt; &lt;https://evil.example\\|click me&gt; strike code \\|\\|spoiler\\|\\|"
);

#[test]
fn webhook_request_is_exact_and_escaped() {
    let mock = Mock::start();
    mock.script([Reply::new(200, "ok").header("Content-Type", "text/plain")]);
    let out = run(&mock, "hook-text", "post_created_hostile_content");
    assert_eq!(out, Outcome::Sent { remote_id: None });
    let r = &mock.requests()[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, format!("/hooks/{HOOK_KEY}"));
    assert!(r.header("authorization").is_none());
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
    assert_eq!(keys, vec!["channel", "text", "username"]);
    assert_eq!(body["channel"], "town-square");
    assert_eq!(body["username"], "Forum");
    assert_inert(body["text"].as_str().unwrap());
}

#[test]
fn real_error_answers_are_classified_without_secrets() {
    let mock = Mock::start();
    mock.script([
        Reply::new(429, "limit exceeded")
            .header("X-Ratelimit-Limit", "10")
            .header("X-Ratelimit-Remaining", "0")
            .header("X-Ratelimit-Reset", "6"),
        error(
            401,
            "api.context.session_expired.app_error",
            "Invalid or expired session, please login again.",
        ),
        error(
            403,
            "api.context.permissions.app_error",
            "You do not have the appropriate permissions.",
        ),
        error(
            404,
            "app.channel.get.existing.app_error",
            "Unable to find the existing channel.",
        ),
        Reply::new(503, "<html>503 Service Unavailable</html>"),
        // An answer echoing the token: the redactor must catch it.
        error(400, "x.app_error", &format!("bad token {TOKEN}")),
    ]);
    let outs: Vec<Outcome> = (0..6)
        .map(|_| run(&mock, "api", "post_created_first_post"))
        .collect();
    assert!(
        matches!(&outs[0], Outcome::Retry { after: Some(d), .. } if d.as_secs() == 6),
        "{:?}",
        outs[0]
    );
    assert!(
        matches!(&outs[1], Outcome::Permanent { reason } if reason.contains("session_expired") && reason.contains("token was rejected"))
    );
    assert!(matches!(&outs[2], Outcome::Permanent { reason } if reason.contains("add the bot")));
    assert!(
        matches!(&outs[3], Outcome::Permanent { reason } if reason.contains("check channel_id"))
    );
    assert!(matches!(&outs[4], Outcome::Retry { .. }));
    assert!(matches!(&outs[5], Outcome::Permanent { .. }));
    for o in &outs {
        let shown = format!("{o:?}");
        assert!(!shown.contains(TOKEN), "{shown}");
    }

    // Webhook errors: a status with JSON or text.
    let hook = Mock::start();
    hook.script([
        error(
            400,
            "web.incoming_webhook.channel.app_error",
            "Couldn't find the channel.",
        ),
        error(
            400,
            "web.incoming_webhook.invalid.app_error",
            "Invalid webhook.",
        ),
        error(
            501,
            "web.incoming_webhook.disabled.app_error",
            "Incoming webhooks have been disabled by the system admin.",
        ),
        Reply::new(429, "").header("Retry-After", "3"),
        Reply::new(404, &format!("404 page not found: /hooks/{HOOK_KEY}")),
    ]);
    let outs: Vec<Outcome> = (0..5)
        .map(|_| run(&hook, "hook", "post_created_first_post"))
        .collect();
    assert!(
        matches!(&outs[0], Outcome::Permanent { reason } if reason.contains("check `channel`"))
    );
    assert!(
        matches!(&outs[1], Outcome::Permanent { reason } if reason.contains("webhook was deleted"))
    );
    assert!(
        matches!(&outs[2], Outcome::Permanent { reason } if reason.contains("disabled on this server"))
    );
    assert!(matches!(&outs[3], Outcome::Retry { after: Some(d), .. } if d.as_secs() == 3));
    assert!(matches!(&outs[4], Outcome::Permanent { .. }));
    for o in &outs {
        let shown = format!("{o:?}");
        assert!(!shown.contains(HOOK_KEY), "{shown}");
    }
}

#[test]
fn network_errors_retry_and_hide_secrets() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let base = format!("http://127.0.0.1:{port}");
    for chat in ["api", "hook"] {
        let o = run_at(
            &base,
            &format!("{base}/hooks/{HOOK_KEY}"),
            chat,
            "post_created_first_post",
        );
        let Outcome::Retry { reason, .. } = o else {
            panic!("{o:?}")
        };
        assert!(
            !reason.contains(TOKEN) && !reason.contains(HOOK_KEY),
            "{reason}"
        );
    }
}

#[test]
fn thread_reply_patch_and_delete_requests_are_exact() {
    const ROOT: &str = "ab1cd2ef3gh4ij5kl6mn7op8qr";
    let mock = Mock::start();
    mock.script([
        post_reply("zz1cd2ef3gh4ij5kl6mn7op8qr"),
        post_reply(ROOT),
        Reply::new(200, r#"{"status":"OK"}"#),
        // Deleted in the chat already: done.
        error(404, "app.post.get.app_error", "Unable to get the post."),
    ]);
    let env = [
        ("MM_TOKEN", TOKEN),
        ("MM_HOOK", "http://127.0.0.1:9/hooks/x"),
    ];
    let cfg = config(&mock.url(""));
    let reply = Action::Post {
        thread: Some(Thread { root: Some(ROOT) }),
    };
    assert_eq!(
        deliver_as(&cfg, "api", "post_created_first_post", &env, reply, false),
        Outcome::Sent {
            remote_id: Some("zz1cd2ef3gh4ij5kl6mn7op8qr".into())
        }
    );
    let edit = Action::Edit { remote_id: ROOT };
    assert!(matches!(
        deliver_as(&cfg, "api", "post_edited", &env, edit, false),
        Outcome::Sent { .. }
    ));
    let delete = Action::Delete { remote_id: ROOT };
    for _ in 0..2 {
        assert_eq!(
            deliver_as(&cfg, "api", "post_destroyed", &env, delete, false),
            Outcome::Sent { remote_id: None }
        );
    }
    let reqs = mock.requests();
    for r in &reqs {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
    }
    assert_eq!(
        (reqs[0].method.as_str(), reqs[0].path.as_str()),
        ("POST", "/api/v4/posts")
    );
    let body = reqs[0].json();
    assert_eq!(body["root_id"], ROOT);
    assert_eq!(body["channel_id"], CHANNEL);

    assert_eq!(reqs[1].method, "PUT");
    assert_eq!(reqs[1].path, format!("/api/v4/posts/{ROOT}/patch"));
    let body = reqs[1].json();
    assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
    // The card again, in place of the old one.
    assert_eq!(body["message"], "");
    let card = &body["props"]["attachments"][0];
    assert!(
        card["title_link"]
            .as_str()
            .unwrap()
            .starts_with("https://forum.example.org/t/")
    );

    for r in &reqs[2..] {
        assert_eq!(r.method, "DELETE");
        assert_eq!(r.path, format!("/api/v4/posts/{ROOT}"));
        assert!(r.body.is_empty());
    }
}

/// A chat's own card template: its values escaped for Markdown and JSON,
/// sent in place of the default attachment; one over Mattermost's limits is
/// refused at load, naming the field.
#[test]
fn a_chats_own_card_is_sent_and_checked_at_load() {
    let with_card = |footer: &str| {
        format!(
            r##"{}
[templates]
mine = '{{"attachments": [{{"title": "{{{{topic.title}}}}", "footer": "{footer}"}}]}}'
[[chat]]
name = "own"
provider = "mm"
channel_id = "{CHANNEL}"
card = "mine"
subscribe = ["all"]
"##,
            config("http://127.0.0.1:9")
        )
    };
    let env: std::collections::HashMap<String, String> =
        [("MM_TOKEN", TOKEN), ("MM_HOOK", "https://h/hooks/x")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    let long = "x".repeat(301);
    let loaded = discourse_relay::pipeline::load_str(
        std::path::Path::new("mm.toml"),
        &with_card(&long),
        &env,
        discourse_relay::config::MissingEnv::Error,
    );
    let Err(err) = loaded else {
        panic!("a footer over 300 characters is refused")
    };
    let err = err.to_string();
    assert!(
        err.contains("/attachments/0/footer has 301 characters; at most 300"),
        "{err}"
    );

    let mock = Mock::start();
    mock.script([post_reply("ab1cd2ef3gh4ij5kl6mn7op8qr")]);
    let cfg = with_card("Forum").replace("http://127.0.0.1:9", &mock.url(""));
    let env = [("MM_TOKEN", TOKEN), ("MM_HOOK", "https://h/hooks/x")];
    let out = deliver(&cfg, "own", "post_created_hostile_content", &env);
    assert!(matches!(out, Outcome::Sent { .. }), "{out:?}");
    let body = mock.requests()[0].json();
    assert_eq!(body["message"], "");
    let card = &body["props"]["attachments"];
    assert_eq!(card.as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(card[0]["footer"], "Forum");
    // The title as the template renders it for Markdown: escaped.
    let title = card[0]["title"].as_str().unwrap();
    assert!(
        title.contains("\\<script\\>") && title.contains("@\u{200B}everyone"),
        "{title}"
    );
}
