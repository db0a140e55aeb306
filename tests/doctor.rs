//! `discourse-relay doctor` through the binary against mock platforms and a
//! mock forum: passing checks, a bad token, a bot that is not in its
//! channel, a forum webhook without the events the rules need, the exit
//! codes 0/1/2, and that no token reaches stdout or stderr. The real-peer
//! check against Synapse is at the end (skipped without one, unless CI=true).

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

const SLACK: &str = "xoxb-doctor-canary-5151";
const TG: &str = "777:doctor-canary-tg";
const MX: &str = "syt_doctor_canary_mx";
const HOOK: &str = "doctorhooktoken99";
const KEY: &str = "forum-key-canary-31";

fn config(mock: &Mock) -> String {
    format!(
        r##"[discourse]
url = "{forum}"
webhook_secret = "${{DISCOURSE_WEBHOOK_SECRET}}"
api_key = "${{DISCOURSE_API_KEY}}"
[providers.slack]
token = "${{SLACK_TOKEN}}"
api_url = "{slack}"
[providers.telegram]
token = "${{TG_TOKEN}}"
api_url = "{tg}"
[providers.matrix]
homeserver = "{mx}"
access_token = "${{MX_TOKEN}}"
[[chat]]
name = "slack-api"
provider = "slack"
channel = "C0123456789"
subscribe = ["c/support"]
[[chat]]
name = "tg"
provider = "telegram"
chat_id = -1001234567890
subscribe = ["all"]
[[chat]]
name = "disc"
provider = "discord"
webhook_url = "${{DISCORD_HOOK}}"
subscribe = ["all"]
[[chat]]
name = "mx"
provider = "matrix"
room = "!room:example.org"
subscribe = ["all"]
[[chat]]
name = "teams"
provider = "webhook"
url = "{hook}"
[[chat.rule]]
family = "review"
"##,
        forum = mock.url(""),
        slack = mock.url("/api"),
        tg = mock.url("/tg"),
        mx = mock.url(""),
        hook = mock.url("/generic"),
    )
}

fn healthy(mock: &Mock) {
    mock.route(
        "/api/auth.test",
        Reply::new(200, r#"{"ok":true,"user":"relay","team":"Acme"}"#),
    );
    mock.route(
        "/api/conversations.info",
        Reply::new(
            200,
            r#"{"ok":true,"channel":{"id":"C0123456789","name":"support","is_member":true}}"#,
        ),
    );
    mock.route(
        &format!("/tg/bot{TG}/getMe"),
        Reply::new(
            200,
            r#"{"ok":true,"result":{"id":777,"is_bot":true,"username":"relay_bot"}}"#,
        ),
    );
    mock.route(
        &format!("/tg/bot{TG}/getChat"),
        Reply::new(
            200,
            r#"{"ok":true,"result":{"id":-1001234567890,"type":"supergroup","title":"Forum"}}"#,
        ),
    );
    mock.route(
        &format!("/api/webhooks/123/{HOOK}"),
        Reply::new(
            200,
            &format!(r#"{{"id":"123","name":"relay","channel_id":"456","token":"{HOOK}"}}"#),
        ),
    );
    mock.route(
        "/_matrix/client/v3/account/whoami",
        Reply::new(200, r#"{"user_id":"@relay:example.org"}"#),
    );
    mock.route(
        "/_matrix/client/v3/joined_rooms",
        Reply::new(
            200,
            r#"{"joined_rooms":["!other:example.org","!room:example.org"]}"#,
        ),
    );
    mock.route(
        "/site.json",
        Reply::new(
            200,
            r#"{"categories":[{"id":5,"slug":"support"}],"groups":[]}"#,
        ),
    );
    hooks(mock, &["post", "topic", "reviewable"]);
}

fn hooks(mock: &Mock, events: &[&str]) {
    let types: Vec<Value> = events
        .iter()
        .map(|e| serde_json::json!({"name": e}))
        .collect();
    let body = serde_json::json!({"web_hooks": [
        {"id": 1, "payload_url": "https://elsewhere.example/hook", "active": true},
        {"id": 7, "payload_url": "https://relay.example/webhooks/discourse", "active": true,
         "secret": "shown-secret", "web_hook_event_types": types}
    ]});
    mock.set_route(
        "/admin/api/web_hooks.json",
        Reply::new(200, &body.to_string()),
    );
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn doctor(mock: &Mock, args: &[&str]) -> Run {
    let dir = temp();
    let cfg = write(dir.path(), "relay.toml", config(mock));
    let out = Command::new(env!("CARGO_BIN_EXE_discourse-relay"))
        .arg("doctor")
        .arg("--config")
        .arg(&cfg)
        .args(args)
        .env("DISCOURSE_WEBHOOK_SECRET", "whsec-doctor")
        .env("DISCOURSE_API_KEY", KEY)
        .env("SLACK_TOKEN", SLACK)
        .env("TG_TOKEN", TG)
        .env("MX_TOKEN", MX)
        .env(
            "DISCORD_HOOK",
            mock.url(&format!("/api/webhooks/123/{HOOK}")),
        )
        .output()
        .unwrap();
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    for secret in [SLACK, TG, MX, HOOK, KEY, "whsec-doctor"] {
        assert!(
            !run.stdout.contains(secret),
            "{secret} in stdout:\n{}",
            run.stdout
        );
        assert!(
            !run.stderr.contains(secret),
            "{secret} in stderr:\n{}",
            run.stderr
        );
    }
    run
}

fn line<'a>(run: &'a Run, start: &str) -> &'a str {
    run.stdout
        .lines()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line starting {start:?}:\n{}", run.stdout))
}

#[test]
fn everything_passes_and_nothing_is_posted() {
    let mock = Mock::start();
    healthy(&mock);
    let run = doctor(&mock, &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    line(
        &run,
        "PASS chat slack-api (slack, #C0123456789): auth.test: token works: bot relay in Acme",
    );
    line(
        &run,
        "PASS chat slack-api (slack, #C0123456789): the bot is in the channel: member of #support",
    );
    line(
        &run,
        "PASS chat tg (telegram, chat -1001234567890): getMe: token works: bot @relay_bot",
    );
    line(
        &run,
        "PASS chat tg (telegram, chat -1001234567890): getChat",
    );
    line(
        &run,
        "PASS chat disc (discord, webhook 123): the webhook exists",
    );
    line(
        &run,
        "PASS chat mx (matrix, !room:example.org): the room is joined",
    );
    line(&run, "INFO chat teams (webhook");
    line(&run, "PASS forum");
    assert!(
        run.stdout
            .contains("webhook 7 posts to …/webhooks/discourse"),
        "{}",
        run.stdout
    );
    let methods: Vec<String> = mock.requests().iter().map(|r| r.method.clone()).collect();
    assert!(methods.iter().all(|m| m == "GET"), "{methods:?}");
    assert!(
        mock.requests()
            .iter()
            .all(|r| !r.path.starts_with("/generic")),
        "the incoming webhook was called"
    );
}

#[test]
fn a_bad_token_fails_with_the_platforms_words() {
    let mock = Mock::start();
    mock.route(
        "/api/auth.test",
        Reply::new(200, r#"{"ok":false,"error":"invalid_auth"}"#),
    );
    // A platform that echoes the token: it must be redacted.
    mock.route(
        &format!("/tg/bot{TG}/getMe"),
        Reply::new(
            401,
            &format!(r#"{{"ok":false,"error_code":401,"description":"Unauthorized {TG}"}}"#),
        ),
    );
    healthy(&mock);
    let run = doctor(&mock, &[]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    let slack = line(&run, "FAIL chat slack-api");
    assert!(
        slack.contains("slack: invalid_auth — the bot token was rejected"),
        "{slack}"
    );
    // The membership step is not run after the token failed.
    assert!(
        !run.stdout.contains("the bot is in the channel"),
        "{}",
        run.stdout
    );
    let tg = line(&run, "FAIL chat tg");
    assert!(
        tg.contains("Unauthorized [redacted]") || tg.contains("Unauthorized"),
        "{tg}"
    );
}

#[test]
fn not_a_member_warns_and_exits_1() {
    let mock = Mock::start();
    mock.route(
        "/api/conversations.info",
        Reply::new(
            200,
            r#"{"ok":true,"channel":{"id":"C0123456789","name":"support","is_member":false}}"#,
        ),
    );
    healthy(&mock);
    let run = doctor(&mock, &["--chat", "slack-api"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let warn = line(&run, "WARN chat slack-api");
    assert!(
        warn.contains("is_member: false") && warn.contains("invite the bot"),
        "{warn}"
    );
    // Only that chat, and its forum.
    assert!(!run.stdout.contains("chat tg"), "{}", run.stdout);
    assert!(run.stdout.contains("forum"), "{}", run.stdout);
}

#[test]
fn a_forum_webhook_without_the_rules_events_fails() {
    let mock = Mock::start();
    healthy(&mock);
    hooks(&mock, &["post", "topic"]);
    let run = doctor(&mock, &["--json"]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    let checks: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let forum = checks
        .iter()
        .find(|c| c["scope"] == "forum" && c["verdict"] == "fail")
        .unwrap_or_else(|| panic!("{checks:?}"));
    assert!(
        forum["answer"].as_str().unwrap().contains("reviewable"),
        "{forum}"
    );
    assert!(
        checks
            .iter()
            .all(|c| c["verdict"] != "fail" || c["scope"] == "forum")
    );
}

#[test]
fn matrix_room_not_joined_and_a_deleted_discord_webhook_fail() {
    let mock = Mock::start();
    mock.route(
        "/_matrix/client/v3/joined_rooms",
        Reply::new(200, r#"{"joined_rooms":["!other:example.org"]}"#),
    );
    mock.route(
        &format!("/api/webhooks/123/{HOOK}"),
        Reply::new(404, r#"{"message":"Unknown Webhook","code":10015}"#),
    );
    healthy(&mock);
    let run = doctor(&mock, &[]);
    assert_eq!(run.code, 2);
    assert!(line(&run, "FAIL chat mx").contains("not among the 1 joined rooms"));
    assert!(line(&run, "FAIL chat disc").contains("10015 Unknown Webhook"));
}

#[test]
fn an_unknown_chat_is_an_error() {
    let mock = Mock::start();
    let run = doctor(&mock, &["--chat", "nope"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("no chat named `nope`"),
        "{}",
        run.stderr
    );
}

/// Mattermost, Zulip, Webex and Mastodon: their checks pass on their own
/// answers; a rejected Zulip key fails.
#[test]
fn rest_platforms_are_checked() {
    let mock = Mock::start();
    let toml = format!(
        r##"[discourse]
url = "https://forum.example.org"
[providers.mm]
kind = "mattermost"
token = "${{MM_TOKEN}}"
api_url = "{base}/mm"
[providers.zulip]
realm = "{base}/z"
email = "bot@z.example"
api_key = "${{ZULIP_KEY}}"
[providers.webex]
token = "${{WEBEX_TOKEN}}"
api_url = "{base}/wx"
[providers.mastodon]
instance = "{base}/md"
access_token = "${{MD_TOKEN}}"
[providers.rc]
kind = "rocketchat"
server_url = "{base}/rc"
user_id = "rcbotid"
auth_token = "${{RC_TOKEN}}"
[[chat]]
name = "rc"
provider = "rc"
room_id = "GENERALx"
subscribe = ["all"]
[[chat]]
name = "mm"
provider = "mm"
channel_id = "abcdefghijklmnopqrstuvwxyz"
subscribe = ["all"]
[[chat]]
name = "z"
provider = "zulip"
stream = "forum news"
subscribe = ["all"]
[[chat]]
name = "wx"
provider = "webex"
room_id = "room9"
subscribe = ["all"]
[[chat]]
name = "md"
provider = "mastodon"
subscribe = ["all"]
"##,
        base = mock.url("")
    );
    mock.route(
        "/mm/api/v4/users/me",
        Reply::new(200, r#"{"username":"relaybot"}"#),
    );
    mock.route(
        "/mm/api/v4/channels/abcdefghijklmnopqrstuvwxyz",
        Reply::new(200, r#"{"name":"town-square"}"#),
    );
    mock.route(
        "/z/api/v1/users/me",
        Reply::new(
            401,
            r#"{"result":"error","code":"UNAUTHORIZED","msg":"Invalid API key"}"#,
        ),
    );
    mock.route(
        "/wx/v1/people/me",
        Reply::new(200, r#"{"displayName":"Relay"}"#),
    );
    mock.route(
        "/wx/v1/rooms/room9",
        Reply::new(200, r#"{"title":"Forum"}"#),
    );
    mock.route(
        "/md/api/v1/accounts/verify_credentials",
        Reply::new(200, r#"{"acct":"relay"}"#),
    );
    mock.route(
        "/rc/api/v1/me",
        Reply::new(
            200,
            r#"{"_id":"rcbotid","username":"relay-bot","success":true}"#,
        ),
    );
    mock.route(
        "/rc/api/v1/rooms.info",
        Reply::new(
            400,
            r#"{"success":false,"error":"The required \"roomId\" or \"roomName\" param provided does not match any channel [error-room-not-found]"}"#,
        ),
    );
    let dir = temp();
    let cfg = write(dir.path(), "relay.toml", toml);
    let secrets = [
        ("MM_TOKEN", "mm-canary-1"),
        ("ZULIP_KEY", "zulipcanary2"),
        ("WEBEX_TOKEN", "wx-canary-3"),
        ("MD_TOKEN", "md-canary-4"),
        ("RC_TOKEN", "rc-canary-5"),
    ];
    let out = Command::new(env!("CARGO_BIN_EXE_discourse-relay"))
        .args(["doctor", "--config"])
        .arg(&cfg)
        .envs(secrets)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    for (_, s) in secrets {
        assert!(!stdout.contains(s), "{stdout}");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    for want in [
        "PASS chat mm (mattermost",
        "users/me: token works: @relaybot",
        "the channel: sees ~town-square",
        "FAIL chat z (zulip",
        "UNAUTHORIZED: Invalid API key",
        "people/me: token works: Relay",
        "the room: sees room \"Forum\"",
        "verify_credentials: token works: @relay",
        "FAIL chat rc (rocketchat",
        "me: token works: @relay-bot",
        "[error-room-not-found]",
        "INFO forum",
    ] {
        assert!(stdout.contains(want), "{want}:\n{stdout}");
    }
    // Zulip's stream is not asked after its key failed.
    assert!(!stdout.contains("the stream exists"), "{stdout}");
    // Zulip's credentials went as HTTP Basic, not in the recorded path.
    assert!(
        mock.requests()
            .iter()
            .all(|r| !r.path.contains("zulipcanary2"))
    );
}
