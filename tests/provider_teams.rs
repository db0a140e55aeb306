//! Microsoft Teams (Workflows webhook) through a mock trigger endpoint: the
//! exact Adaptive Card request for the hostile fixture (escaped Markdown,
//! one button to the post, nothing that can mention), and the
//! classification of the trigger's answers, none of which may carry the
//! URL's `sig`.

mod common;

use common::*;
use discourse_relay::providers::Outcome;
use serde_json::json;

const SIG: &str = "canarySig4242teams";

const POST_URL: &str = "https://forum.example.org/t/channel-everyone-script-alert-1-script-bold-link-javascript-x-b/105/1";

fn config() -> String {
    r##"[discourse]
url = "https://forum.example.org"
[providers.teams]
button = "Read on the forum"
[[chat]]
name = "team"
provider = "teams"
webhook_url = "${TEAMS_WEBHOOK_URL}"
subscribe = ["all"]
style = "text"
"##
    .to_string()
}

fn trigger_path() -> String {
    format!(
        "/workflows/0a1b2c/triggers/manual/paths/invoke?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={SIG}"
    )
}

fn run_at(url: &str, fixture: &str) -> Outcome {
    deliver(&config(), "team", fixture, &[("TEAMS_WEBHOOK_URL", url)])
}

fn run(mock: &Mock, fixture: &str) -> Outcome {
    run_at(&mock.url(&trigger_path()), fixture)
}

#[test]
fn hostile_post_becomes_an_exact_inert_card() {
    let mock = Mock::start();
    mock.script([Reply::new(202, "")]);
    let out = run(&mock, "post_created_hostile_content");
    assert_eq!(out, Outcome::Sent { remote_id: None });
    let r = &mock.requests()[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, trigger_path());
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert!(r.header("authorization").is_none());
    let z = '\u{200B}';
    let text = format!(
        "**[\\<!channel\\> @{z}everyone \\<script\\>alert(1)\\</script\\> \\*bold\\* \\[link\\](javascript:x) & \\</b\\>]({POST_URL})** by Mallory Mischief in general\n\n\\<!channel\\> @{z}everyone \\<script\\>alert(1)\\</script\\> bold \\[link\\](javascript:x) & \\</b\\> @{z}here @{z}room \\<@{z}U024BE7LH\\> \\<https://evil.example\\|click me\\> strike code \\|\\|spoiler\\|\\|"
    );
    assert_eq!(
        r.json(),
        json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": [{"type": "TextBlock", "text": text, "wrap": true}],
                    "actions": [{"type": "Action.OpenUrl", "title": "Read on the forum", "url": POST_URL}],
                }
            }]
        })
    );
    // Nothing active survives: every `<`, `>`, `|`, `[`, `]`, `*` from the
    // post is backslash-escaped, every `@` is broken, the one link is the post's.
    let sent = r.json()["attachments"][0]["content"]["body"][0]["text"]
        .as_str()
        .unwrap()
        .to_string();
    let chars: Vec<char> = sent.chars().collect();
    let unescaped = |c: char| {
        (0..chars.len())
            .filter(|&i| chars[i] == c && (i == 0 || chars[i - 1] != '\\'))
            .count()
    };
    for c in ['<', '>', '|'] {
        assert_eq!(unescaped(c), 0, "unescaped {c} in {sent}");
    }
    assert_eq!(
        (unescaped('['), unescaped(']'), unescaped('*')),
        (1, 1, 4),
        "{sent}"
    );
    for (i, c) in chars.iter().enumerate() {
        if *c == '@' {
            assert_eq!(chars.get(i + 1), Some(&z), "live mention at {i} in {sent}");
        }
    }
    assert!(sent.starts_with("**[") && sent.contains(&format!("]({POST_URL})** by")));
    assert!(!r.body.contains("<at>") && !r.body.contains("msteams"));
}

/// The default card for the hostile post: every text of it inert (no `<`
/// or `>` from the post, every `@` broken, the only links the relay's), the
/// button labelled by the `button` setting. The exact card for the usual
/// posts is in tests/cards/teams.*.json.
#[test]
fn hostile_post_becomes_an_inert_default_card() {
    let mock = Mock::start();
    mock.script([Reply::new(202, "")]);
    let url = mock.url(&trigger_path());
    let config = config().replace("style = \"text\"\n", "");
    let out = deliver(
        &config,
        "team",
        "post_created_hostile_content",
        &[("TEAMS_WEBHOOK_URL", &url)],
    );
    assert_eq!(out, Outcome::Sent { remote_id: None });
    let card = mock.requests()[0].json()["attachments"][0]["content"].clone();
    assert_eq!(card["version"], "1.4");
    assert_eq!(
        card["actions"],
        json!([{"type": "Action.OpenUrl", "title": "Read on the forum", "url": POST_URL}])
    );
    let title = card["body"][1]["text"].as_str().unwrap();
    assert!(
        title.starts_with("**[‹!channel› @\u{200B}everyone ‹script›"),
        "{title}"
    );
    let mut texts = Vec::new();
    strings(&card, &mut texts);
    for t in texts {
        assert!(!t.contains('<') && !t.contains('>'), "{t}");
        for (i, _) in t.match_indices('@') {
            // The relay's own `@username` after the name: text on both platforms.
            let own = t[i + 1..] == *"mallory";
            assert!(
                own || t[i + 1..].starts_with('\u{200B}'),
                "live mention in {t}"
            );
        }
        for (i, _) in t
            .match_indices("](")
            .filter(|(i, _)| !t[..*i].ends_with('\\'))
        {
            let to = &t[i + 2..];
            assert!(
                to.starts_with("https://forum.example.org/"),
                "foreign link in {t}"
            );
        }
    }
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
fn trigger_answers_are_classified_without_the_signature() {
    let mock = Mock::start();
    mock.script([
        Reply::new(429, r#"{"error":{"code":"WorkflowTriggeredTooManyTimes","message":"Rate limit reached."}}"#)
            .header("Retry-After", "30"),
        // A bad or expired signature; the answer even quotes it.
        Reply::new(
            401,
            &format!(r#"{{"error":{{"code":"DirectApiAuthorizationRequired","message":"The signature '{SIG}' could not be validated."}}}}"#),
        ),
        // The workflow (the "room") is gone.
        Reply::new(404, r#"{"error":{"code":"WorkflowNotFound","message":"The workflow '0a1b2c' could not be found."}}"#),
        Reply::new(503, "Service Unavailable"),
        Reply::new(400, r#"{"error":{"code":"InvalidRequestContent","message":"The request content is not valid JSON."}}"#),
        Reply::new(202, ""),
    ]);
    let outs: Vec<Outcome> = (0..6)
        .map(|_| run(&mock, "post_created_first_post"))
        .collect();
    assert!(
        matches!(&outs[0], Outcome::Retry { after: Some(d), reason } if d.as_secs() == 30 && reason.contains("WorkflowTriggeredTooManyTimes")),
        "{:?}",
        outs[0]
    );
    assert!(
        matches!(&outs[1], Outcome::Permanent { reason } if reason.contains("401") && reason.contains("copy it again")),
        "{:?}",
        outs[1]
    );
    assert!(
        matches!(&outs[2], Outcome::Permanent { reason } if reason.contains("WorkflowNotFound") && reason.contains("deleted or turned off")),
        "{:?}",
        outs[2]
    );
    assert!(
        matches!(&outs[3], Outcome::Retry { after: None, .. }),
        "{:?}",
        outs[3]
    );
    assert!(
        matches!(&outs[4], Outcome::Permanent { reason } if reason.contains("refused the card")),
        "{:?}",
        outs[4]
    );
    assert_eq!(outs[5], Outcome::Sent { remote_id: None });
    for o in &outs {
        assert!(!format!("{o:?}").contains(SIG), "{o:?}");
    }
}

#[test]
fn network_errors_retry_and_hide_the_url() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let o = run_at(
        &format!("http://127.0.0.1:{port}{}", trigger_path()),
        "post_created_first_post",
    );
    let Outcome::Retry { reason, .. } = o else {
        panic!("{o:?}")
    };
    assert!(!reason.contains(SIG), "{reason}");
}
