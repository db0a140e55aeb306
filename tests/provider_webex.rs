//! Webex through a mock Messages API: the exact `POST /v1/messages` for the
//! hostile fixture (escaped Markdown, no `<@all>` or `<@personEmail:…>`
//! mention can form), the message id kept, and the classification of
//! Webex's error answers, none of which may carry the bot token.

mod common;

use common::*;
use discourse_relay::providers::{Action, Outcome, Thread};
use serde_json::json;

const TOKEN: &str = "canaryWebexBotToken4242";
const ROOM: &str = "Y2lzY29zcGFyazovL3VzL1JPT00vYmJjZWIxYWQtNDNmMS0zYjU4LTkxNDctZjE0YmIwYzRkMTU0";

const POST_URL: &str = "https://forum.example.org/t/channel-everyone-script-alert-1-script-bold-link-javascript-x-b/105/1";

fn config(api_url: &str) -> String {
    format!(
        r##"[discourse]
url = "https://forum.example.org"
[providers.webex]
token = "${{WEBEX_BOT_TOKEN}}"
api_url = "{api_url}"
[[chat]]
name = "room"
provider = "webex"
room_id = "{ROOM}"
subscribe = ["all"]
style = "text"
"##
    )
}

fn run_at(api_url: &str, fixture: &str) -> Outcome {
    deliver(
        &config(api_url),
        "room",
        fixture,
        &[("WEBEX_BOT_TOKEN", TOKEN)],
    )
}

fn run(mock: &Mock, fixture: &str) -> Outcome {
    run_at(&mock.url("/webex"), fixture)
}

fn webex_error(status: u16, message: &str, tracking: &str) -> Reply {
    Reply::new(
        status,
        &json!({"message": message, "errors": [{"description": message}], "trackingId": tracking})
            .to_string(),
    )
    .header("Content-Type", "application/json")
}

#[test]
fn hostile_post_request_is_exact_and_inert() {
    let mock = Mock::start();
    mock.script([Reply::new(
        200,
        &format!(
            r#"{{"id":"Y2lzY29zcGFyazovL3VzL01FU1NBR0UvOTJkYjNiZTAtNDNiZC0xMWU2LThhZTktZGQ1YjNkZmM1NjVk","roomId":"{ROOM}","roomType":"group","markdown":"…","personId":"P","personEmail":"bot@webex.bot","created":"2026-03-10T16:00:05.000Z"}}"#
        ),
    )]);
    let out = run(&mock, "post_created_hostile_content");
    assert_eq!(
        out,
        Outcome::Sent {
            remote_id: Some(
                "Y2lzY29zcGFyazovL3VzL01FU1NBR0UvOTJkYjNiZTAtNDNiZC0xMWU2LThhZTktZGQ1YjNkZmM1NjVk"
                    .into()
            )
        }
    );
    let r = &mock.requests()[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/webex/v1/messages");
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let z = '\u{200B}';
    let markdown = format!(
        "**[\\<!channel\\> @{z}everyone \\<script\\>alert(1)\\</script\\> \\*bold\\* \\[link\\](javascript:x) & \\</b\\>]({POST_URL})** by Mallory Mischief in general\n> \\<!channel\\> @{z}everyone \\<script\\>alert(1)\\</script\\> bold \\[link\\](javascript:x) & \\</b\\> @{z}here @{z}room \\<@{z}U024BE7LH\\> \\<https://evil.example\\|click me\\> strike code \\|\\|spoiler\\|\\|"
    );
    assert_eq!(r.json(), json!({"roomId": ROOM, "markdown": markdown}));
    let sent = r.json()["markdown"].as_str().unwrap().to_string();
    // No Webex mention tag can form: every `<` is escaped and every `@` broken.
    assert!(!sent.contains("<@all") && !sent.contains("<@U"), "{sent}");
    let chars: Vec<char> = sent.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        if matches!(c, '<' | '>') && !(*c == '>' && i > 0 && chars[i - 1] == '\n') {
            assert_eq!(chars[i - 1], '\\', "unescaped {c} at {i} in {sent}");
        }
        if *c == '@' {
            assert_eq!(chars.get(i + 1), Some(&z), "live mention at {i} in {sent}");
        }
    }
}

/// The default card beside the text for the hostile post: an Adaptive Card
/// 1.3 attachment whose every text is inert, and the `markdown` Webex
/// requires with the same look-alike `‹ ›`. The exact card for the usual
/// posts is in tests/cards/webex.*.json.
#[test]
fn hostile_post_becomes_an_inert_card_with_its_text() {
    let mock = Mock::start();
    mock.script([Reply::new(200, r#"{"id":"Y2lzMSG"}"#)]);
    let config = config(&mock.url("/webex")).replace("style = \"text\"\n", "");
    let out = deliver(
        &config,
        "room",
        "post_created_hostile_content",
        &[("WEBEX_BOT_TOKEN", TOKEN)],
    );
    assert_eq!(
        out,
        Outcome::Sent {
            remote_id: Some("Y2lzMSG".into())
        }
    );
    let body = mock.requests()[0].json();
    let att = &body["attachments"][0];
    assert_eq!(
        att["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(att["content"]["version"], "1.3");
    let markdown = body["markdown"].as_str().unwrap();
    assert!(
        markdown.starts_with("**[‹!channel› @\u{200B}everyone ‹script›"),
        "{markdown}"
    );
    let mut texts = vec![];
    strings(&body, &mut texts);
    for t in texts {
        assert!(!t.contains('<') && !t.contains('>') || t == markdown, "{t}");
        for (i, _) in t.match_indices('@') {
            // The relay's own `@username` after the name: text on both platforms.
            let own = t[i + 1..] == *"mallory";
            assert!(
                own || t[i + 1..].starts_with('\u{200B}'),
                "live mention in {t}"
            );
        }
    }
    // The text's only `>` is the quote that starts its excerpt.
    assert_eq!(markdown.matches(['<', '>']).collect::<Vec<_>>(), vec![">"]);
}

/// Every string value in `v`.
fn strings<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match v {
        serde_json::Value::String(s) => out.push(s),
        serde_json::Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

#[test]
fn webex_errors_are_classified_without_the_token() {
    let mock = Mock::start();
    mock.script([
        webex_error(429, "Too Many Requests", "ROUTER_429").header("Retry-After", "42"),
        // A bad token; this answer even quotes it.
        webex_error(
            401,
            &format!(
                "The request requires a valid access token set in the Authorization request header ({TOKEN})."
            ),
            "ROUTER_401",
        ),
        webex_error(404, "Could not find a room with provided ID.", "ROUTER_404"),
        webex_error(502, "Bad Gateway", "ROUTER_502"),
        webex_error(423, "Resource Locked", "ROUTER_423").header("Retry-After", "3"),
    ]);
    let outs: Vec<Outcome> = (0..5)
        .map(|_| run(&mock, "post_created_first_post"))
        .collect();
    assert_eq!(
        outs[0],
        Outcome::Retry {
            reason: "webex: HTTP 429: Too Many Requests (trackingId ROUTER_429)".into(),
            after: Some(std::time::Duration::from_secs(42))
        }
    );
    assert!(
        matches!(&outs[1], Outcome::Permanent { reason } if reason.contains("HTTP 401") && reason.contains("token was rejected")),
        "{:?}",
        outs[1]
    );
    assert!(
        matches!(&outs[2], Outcome::Permanent { reason } if reason.contains("Could not find a room") && reason.contains("unknown room_id")),
        "{:?}",
        outs[2]
    );
    assert!(
        matches!(&outs[3], Outcome::Retry { reason, after: None } if reason.contains("502")),
        "{:?}",
        outs[3]
    );
    assert!(
        matches!(&outs[4], Outcome::Retry { after: Some(d), .. } if d.as_secs() == 3),
        "{:?}",
        outs[4]
    );
    for o in &outs {
        assert!(!format!("{o:?}").contains(TOKEN), "{o:?}");
    }
}

#[test]
fn network_errors_retry_and_hide_the_token() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let o = run_at(
        &format!("http://127.0.0.1:{port}"),
        "post_created_first_post",
    );
    let Outcome::Retry { reason, .. } = o else {
        panic!("{o:?}")
    };
    assert!(!reason.contains(TOKEN), "{reason}");
}

#[test]
fn thread_reply_edit_and_delete_requests_are_exact() {
    const ROOT: &str = "Y2lzY29zcGFyazovL3VzL01FU1NBR0UvMQ";
    let message = |id: &str| {
        Reply::new(
            200,
            &json!({"id": id, "roomId": ROOM, "parentId": ROOT, "markdown": "x"}).to_string(),
        )
    };
    let mock = Mock::start();
    mock.script([
        message("Y2lzY29zcGFyazovL3VzL01FU1NBR0UvMg"),
        message(ROOT),
        Reply::new(204, ""),
        webex_error(404, "Unable to delete message.", "ROUTER_9"),
    ]);
    let cfg = config(&mock.url("/webex"));
    let env = [("WEBEX_BOT_TOKEN", TOKEN)];
    let send = |fixture, action| deliver_as(&cfg, "room", fixture, &env, action, false);
    assert_eq!(
        send(
            "post_created_first_post",
            Action::Post {
                thread: Some(Thread { root: Some(ROOT) })
            }
        ),
        Outcome::Sent {
            remote_id: Some("Y2lzY29zcGFyazovL3VzL01FU1NBR0UvMg".into())
        }
    );
    assert!(matches!(
        send("post_edited", Action::Edit { remote_id: ROOT }),
        Outcome::Sent { .. }
    ));
    for _ in 0..2 {
        assert_eq!(
            send("post_destroyed", Action::Delete { remote_id: ROOT }),
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
        ("POST", "/webex/v1/messages")
    );
    assert_eq!(reqs[0].json()["parentId"], ROOT);
    assert_eq!(reqs[0].json()["roomId"], ROOM);

    assert_eq!(reqs[1].method, "PUT");
    assert_eq!(reqs[1].path, format!("/webex/v1/messages/{ROOT}"));
    let body = reqs[1].json();
    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(keys, vec!["markdown", "roomId"]);
    assert_eq!(body["roomId"], ROOM);

    for r in &reqs[2..] {
        assert_eq!(r.method, "DELETE");
        assert_eq!(r.path, format!("/webex/v1/messages/{ROOT}"));
        assert!(r.body.is_empty());
    }
}
