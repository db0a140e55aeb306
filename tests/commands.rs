//! Chat commands end to end: the real binary, real signed requests from each
//! platform's point of view (Slack v0 HMAC, Mattermost token, Telegram secret
//! token, Discord Ed25519), forged/stale/unsigned ones refused with 401, and
//! `test` reaching a mock chat server.

mod common;

use std::time::Duration;

use common::*;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};

const SLACK_SECRET: &str = "slack-signing-secret-for-tests";
const MM_TOKEN: &str = "mattermostcommandtoken";
const TG_SECRET: &str = "telegram_secret-token";
const WAIT: Duration = Duration::from_secs(15);

/// The Discord application's key pair, fixed so runs are reproducible.
fn discord_key() -> SigningKey {
    SigningKey::from_bytes(&[42u8; 32])
}

struct Setup {
    relay: Relay,
    toml: String,
    mock: Mock,
    _dir: tempfile::TempDir,
}

fn start() -> Setup {
    let mock = Mock::start();
    let dir = tempfile::tempdir().unwrap();
    let public_key = hex::encode(discord_key().verifying_key().to_bytes());
    let m = |p: &str| mock.url(p);
    let toml = format!(
        r#"[discourse]
url = "https://forum.example.org"
webhook_secret = "${{DISCOURSE_WEBHOOK_SECRET}}"
delay = "0s"

[server]
config_edit_url = "https://git.example.org/ops/relay/edit/main/subscriptions.toml"

[providers.team]
kind = "slack"
token = "${{SLACK_TOKEN}}"
api_url = "{slack}"
signing_secret = "${{SLACK_SIGNING_SECRET}}"

[providers.mm]
kind = "mattermost"
token = "${{MM_TOKEN}}"
api_url = "{mm}"
command_token = "${{MM_COMMAND_TOKEN}}"

[providers.tg]
kind = "telegram"
token = "${{TG_TOKEN}}"
api_url = "{tg}"
webhook_secret_token = "${{TG_SECRET}}"

[providers.dc]
kind = "discord"
public_key = "{public_key}"

[[chat]]
name = "general"
provider = "team"
channel = "C0GENERAL"
subscribe = ["c/support/**"]

[[chat.rule]]
filter = "mute"
category = "staff"

[[chat]]
name = "town-square"
provider = "mm"
channel_id = "abcdefghijklmnopqrstuvwxyz"
subscribe = ["all"]

[[chat]]
name = "tg-group"
provider = "tg"
chat_id = -1001234567890
subscribe = ["t/bug"]

[[chat]]
name = "dc-news"
provider = "dc"
webhook_url = "${{DISCORD_WEBHOOK_URL}}"
command_channels = ["5550001"]
subscribe = ["all"]
"#,
        slack = m("/slack"),
        mm = m("/mm"),
        tg = m("/tg"),
    );
    let cfg = dir.path().join("subscriptions.toml");
    std::fs::write(&cfg, &toml).unwrap();
    let relay = Relay::start(
        &cfg,
        &dir.path().join("data"),
        &[
            ("SLACK_TOKEN", "xoxb-test"),
            ("SLACK_SIGNING_SECRET", SLACK_SECRET),
            ("MM_TOKEN", "mm-bot-token"),
            ("MM_COMMAND_TOKEN", MM_TOKEN),
            ("TG_TOKEN", "123456:tg-bot-token"),
            ("TG_SECRET", TG_SECRET),
            (
                "DISCORD_WEBHOOK_URL",
                &mock.url("/api/webhooks/123/discord-webhook-token"),
            ),
        ],
    );
    Setup {
        relay,
        toml,
        mock,
        _dir: dir,
    }
}

/// The 1-based line of the first line of `toml` that is `text`, after `after`.
fn line(toml: &str, after: &str, text: &str) -> usize {
    let start = toml.find(after).unwrap();
    let skipped = toml[..start].lines().count();
    skipped
        + toml[start..]
            .lines()
            .position(|l| l == text)
            .unwrap_or_else(|| panic!("no line {text}"))
        + 1
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn post(relay: &Relay, path: &str, headers: &[(&str, String)], body: &str) -> (u16, String) {
    let client = reqwest::blocking::Client::new();
    let mut req = client
        .post(format!("http://{}{path}", relay.public))
        .body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    let resp = req.send().unwrap();
    (resp.status().as_u16(), resp.text().unwrap_or_default())
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

// ---- Slack ----

fn slack_body(channel_id: &str, channel_name: &str, text: &str) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("token", "deprecated")
        .append_pair("team_id", "T0001")
        .append_pair("channel_id", channel_id)
        .append_pair("channel_name", channel_name)
        .append_pair("user_id", "U0001")
        .append_pair("user_name", "alice")
        .append_pair("command", "/discourse")
        .append_pair("text", text)
        .append_pair("response_url", "https://hooks.slack.com/commands/x")
        .finish()
}

fn slack(relay: &Relay, secret: &str, ts: i64, body: &str) -> (u16, String) {
    let ts = ts.to_string();
    let sig = discourse_relay::http::commands::slack::sign(secret.as_bytes(), &ts, body.as_bytes());
    post(
        relay,
        "/commands/slack",
        &[
            ("X-Slack-Request-Timestamp", ts),
            ("X-Slack-Signature", sig),
            (
                "Content-Type",
                "application/x-www-form-urlencoded".to_string(),
            ),
        ],
        body,
    )
}

/// The reply text of a signed Slack command from channel `C0GENERAL`.
fn slack_says(relay: &Relay, text: &str) -> String {
    let (status, body) = slack(
        relay,
        SLACK_SECRET,
        now(),
        &slack_body("C0GENERAL", "general", text),
    );
    assert_eq!(status, 200, "{body}");
    let v = json_of(&body);
    assert_eq!(v["response_type"], "ephemeral", "{v}");
    v["text"].as_str().unwrap().to_string()
}

#[test]
fn commands() {
    let s = start();
    let relay = &s.relay;

    // ---- Slack: status lists this chat's rules, compact and as written.
    let at = |after: &str, text: &str| line(&s.toml, after, text);
    let general = at("[[chat]]", "[[chat]]");
    let support = at("name = \"general\"", "subscribe = [\"c/support/**\"]");
    let staff = at("name = \"general\"", "[[chat.rule]]");
    let status = slack_says(relay, "status");
    assert!(
        status.contains("Chat `general` (slack via `team`, #C0GENERAL): 2 rules"),
        "{status}"
    );
    assert!(
        status.contains(&format!(
            "1. watch c/support/**\n   line {support}: \"c/support/**\""
        )),
        "{status}"
    );
    assert!(
        status.contains(&format!("2. mute c/staff\n   line {staff}: [[chat.rule]]")),
        "{status}"
    );
    assert!(status.contains("filter = \"mute\""), "{status}");
    assert!(status.contains(
        "<https://git.example.org/ops/relay/edit/main/subscriptions.toml|Edit subscriptions.toml>"
    ));
    // Only this chat's rules.
    assert!(!status.contains("t/bug"), "{status}");

    let help = slack_says(relay, "help");
    assert!(help.contains("/discourse status"), "{help}");
    assert!(help.contains("/discourse watch &lt;what&gt;"), "{help}");
    assert_eq!(slack_says(relay, ""), help, "no verb = help");

    // watch: the exact TOML to add, nothing edited.
    let watch = slack_says(relay, "watch c/bugs t/crash");
    assert!(
        watch.contains(
            "```\n[[chat.rule]]\nfilter = \"watch\"\ncategory = \"bugs\"\ntags = [\"crash\"]\n```"
        ),
        "{watch}"
    );
    assert!(
        watch.contains(&format!("below its [[chat]] table (line {general})")),
        "{watch}"
    );
    let already = slack_says(relay, "mute c/staff");
    assert!(
        already.contains(&format!(
            "already has `mute c/staff` (rule 2, line {staff})"
        )),
        "{already}"
    );

    // Unknown verbs and bad arguments: the help text, never a 500.
    for bad in [
        "frobnicate",
        "watch",
        "watch support",
        "watch c/a c/b",
        "status extra",
    ] {
        let r = slack_says(relay, bad);
        assert!(
            r.contains("/discourse status") && r.contains("Sorry"),
            "{bad}: {r}"
        );
    }

    // A chat not in the file: how to add it.
    let (status_code, body) = slack(
        relay,
        SLACK_SECRET,
        now(),
        &slack_body("C0RANDOM", "random", "status"),
    );
    assert_eq!(status_code, 200);
    let text = json_of(&body)["text"].as_str().unwrap().to_string();
    assert!(
        text.contains("#random (C0RANDOM)) is not in subscriptions.toml"),
        "{text}"
    );
    assert!(
        text.contains("[[chat]]\nname = \"random\"\nprovider = \"team\"\nchannel = \"C0RANDOM\"\nsubscribe = [\"all\"]"),
        "{text}"
    );

    // test: the test message reaches the chat.
    let r = slack_says(relay, "test");
    assert!(r.contains("Test message queued for chat `general`"), "{r}");
    let got = s.mock.wait_for(1, WAIT);
    assert_eq!(got[0].path, "/slack/chat.postMessage");
    assert_eq!(got[0].json()["channel"], "C0GENERAL");
    assert!(
        got[0].body.contains("Test message from discourse-relay"),
        "{}",
        got[0].body
    );

    // Forged, stale, unsigned: 401 and nothing else happens.
    let body = slack_body("C0GENERAL", "general", "test");
    assert_eq!(slack(relay, "wrong-secret", now(), &body).0, 401);
    let (code, why) = slack(relay, SLACK_SECRET, now() - 600, &body);
    assert_eq!(code, 401, "stale: {why}");
    assert!(why.contains("5 minutes"), "{why}");
    assert_eq!(post(relay, "/commands/slack", &[], &body).0, 401);
    let mut tampered = slack_body("C0GENERAL", "general", "status");
    let ts = now().to_string();
    let sig = discourse_relay::http::commands::slack::sign(
        SLACK_SECRET.as_bytes(),
        &ts,
        tampered.as_bytes(),
    );
    tampered.push_str("&text=test");
    let (code, _) = post(
        relay,
        "/commands/slack",
        &[
            ("X-Slack-Request-Timestamp", ts),
            ("X-Slack-Signature", sig),
        ],
        &tampered,
    );
    assert_eq!(code, 401, "a body changed after signing");

    // ---- Mattermost: token in the Authorization header.
    let mm_body = |channel_id: &str, text: &str| {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("channel_id", channel_id)
            .append_pair("channel_name", "town-square")
            .append_pair("command", "/discourse")
            .append_pair("text", text)
            .append_pair("user_name", "bob")
            .finish()
    };
    let mm = |token: Option<&str>, body: &str| {
        let mut h = vec![(
            "Content-Type",
            "application/x-www-form-urlencoded".to_string(),
        )];
        if let Some(t) = token {
            h.push(("Authorization", format!("Token {t}")));
        }
        post(relay, "/commands/mattermost", &h, body)
    };
    let (code, body) = mm(
        Some(MM_TOKEN),
        &mm_body("abcdefghijklmnopqrstuvwxyz", "status"),
    );
    assert_eq!(code, 200, "{body}");
    let v = json_of(&body);
    assert_eq!(v["response_type"], "ephemeral");
    let text = v["text"].as_str().unwrap();
    assert!(
        text.contains("Chat `town-square` (mattermost via `mm`"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "```\n1. watch all\n   line {}: \"all\"\n```",
            at("name = \"town-square\"", "subscribe = [\"all\"]")
        )),
        "{text}"
    );
    let (_, body) = mm(
        Some(MM_TOKEN),
        &mm_body("zzzzzzzzzzzzzzzzzzzzzzzzzz", "follow t/news"),
    );
    let text = json_of(&body)["text"].as_str().unwrap().to_string();
    assert!(text.contains("channel_id = \"zzzzzzzzzzzzzzzzzzzzzzzzzz\"\n[[chat.rule]]\nfilter = \"follow\"\ntags = [\"news\"]"), "{text}");
    assert_eq!(
        mm(
            Some("forged"),
            &mm_body("abcdefghijklmnopqrstuvwxyz", "status")
        )
        .0,
        401
    );
    assert_eq!(
        mm(None, &mm_body("abcdefghijklmnopqrstuvwxyz", "status")).0,
        401
    );

    // ---- Telegram: the webhook answers with a sendMessage method.
    let update = |chat_id: i64, text: &str| {
        json!({
            "update_id": 10,
            "message": {
                "message_id": 77,
                "from": {"id": 1, "is_bot": false, "first_name": "Carol", "username": "carol"},
                "chat": {"id": chat_id, "type": "supergroup", "title": "Bug hunters"},
                "date": 1700000000,
                "text": text,
                "entities": [{"type": "bot_command", "offset": 0, "length": 7}]
            }
        })
        .to_string()
    };
    let tg = |secret: Option<&str>, body: &str| {
        let mut h = vec![("Content-Type", "application/json".to_string())];
        if let Some(t) = secret {
            h.push(("X-Telegram-Bot-Api-Secret-Token", t.to_string()));
        }
        post(relay, "/commands/telegram", &h, body)
    };
    let (code, body) = tg(Some(TG_SECRET), &update(-1001234567890, "/status@RelayBot"));
    assert_eq!(code, 200, "{body}");
    let v = json_of(&body);
    assert_eq!(v["method"], "sendMessage");
    assert_eq!(v["chat_id"], -1001234567890i64);
    assert_eq!(v["parse_mode"], "HTML");
    assert_eq!(v["reply_parameters"]["message_id"], 77);
    let text = v["text"].as_str().unwrap();
    assert!(
        text.contains("Chat `tg-group` (telegram via `tg`"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "<pre>1. watch t/bug\n   line {}: &quot;t/bug&quot;</pre>",
            at("name = \"tg-group\"", "subscribe = [\"t/bug\"]")
        )),
        "{text}"
    );
    let (_, body) = tg(
        Some(TG_SECRET),
        &update(-1001234567890, "/discourse thread c/dev"),
    );
    let text = json_of(&body)["text"].as_str().unwrap().to_string();
    assert!(
        text.contains("filter = &quot;thread&quot;\ncategory = &quot;dev&quot;"),
        "{text}"
    );
    // Not a command: empty 200, so Telegram keeps delivering and nothing is said.
    let (code, body) = tg(Some(TG_SECRET), &update(-1001234567890, "hello all"));
    assert_eq!((code, body.as_str()), (200, ""));
    let (_, body) = tg(Some(TG_SECRET), &update(-100999, "/status"));
    assert!(
        json_of(&body)["text"]
            .as_str()
            .unwrap()
            .contains("chat_id = -100999"),
        "{body}"
    );
    assert_eq!(tg(Some("nope"), &update(-1001234567890, "/status")).0, 401);
    assert_eq!(tg(None, &update(-1001234567890, "/status")).0, 401);
    let (_, body) = tg(Some(TG_SECRET), &update(-1001234567890, "/test"));
    assert!(
        body.contains("Test message queued for chat `tg-group`"),
        "{body}"
    );
    let got = s.mock.wait_for(2, WAIT);
    assert!(
        got.iter()
            .any(|r| r.path == "/tg/bot123456:tg-bot-token/sendMessage"
                && r.json()["chat_id"] == -1001234567890i64),
        "{got:#?}"
    );

    // ---- Discord: Ed25519 over timestamp + body.
    let key = discord_key();
    let discord = |key: Option<&SigningKey>, ts: i64, body: &str| {
        let ts = ts.to_string();
        let mut h = vec![("Content-Type", "application/json".to_string())];
        if let Some(k) = key {
            let mut msg = ts.as_bytes().to_vec();
            msg.extend_from_slice(body.as_bytes());
            h.push(("X-Signature-Ed25519", hex::encode(k.sign(&msg).to_bytes())));
            h.push(("X-Signature-Timestamp", ts));
        }
        post(relay, "/commands/discord", &h, body)
    };
    let ping = json!({"type": 1, "id": "1", "application_id": "2", "token": "t", "version": 1})
        .to_string();
    let (code, body) = discord(Some(&key), now(), &ping);
    assert_eq!((code, json_of(&body)), (200, json!({"type": 1})));
    let command = |channel: &str, text: &str| {
        json!({
            "type": 2, "id": "3", "application_id": "2", "token": "t", "version": 1,
            "channel_id": channel, "guild_id": "9",
            "member": {"user": {"id": "4", "username": "dave"}},
            "data": {"id": "5", "name": "discourse", "type": 1,
                     "options": [{"type": 3, "name": "command", "value": text}]}
        })
        .to_string()
    };
    let (code, body) = discord(Some(&key), now(), &command("5550001", "status"));
    assert_eq!(code, 200, "{body}");
    let v = json_of(&body);
    assert_eq!(v["type"], 4);
    assert_eq!(v["data"]["flags"], 64);
    assert_eq!(v["data"]["allowed_mentions"], json!({"parse": []}));
    let content = v["data"]["content"].as_str().unwrap();
    assert!(
        content.contains("Chat `dc-news` (discord via `dc`"),
        "{content}"
    );
    let (_, body) = discord(Some(&key), now(), &command("777", "status"));
    let content = json_of(&body)["data"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        content.contains("command_channels = [\"777\"]"),
        "{content}"
    );
    let (_, body) = discord(Some(&key), now(), &command("5550001", "bogus"));
    assert!(body.contains("Sorry"), "{body}");
    let forger = SigningKey::from_bytes(&[1u8; 32]);
    assert_eq!(discord(Some(&forger), now(), &ping).0, 401);
    assert_eq!(discord(Some(&key), now() - 3600, &ping).0, 401, "stale");
    assert_eq!(discord(None, now(), &ping).0, 401);
}

#[test]
fn endpoints_without_credentials_are_off() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("relay.toml");
    std::fs::write(&cfg, config("0s", &[], "")).unwrap();
    let relay = Relay::start(&cfg, &dir.path().join("data"), &[]);
    for (platform, key) in [
        ("slack", "signing_secret"),
        ("mattermost", "command_token"),
        ("telegram", "webhook_secret_token"),
        ("discord", "public_key"),
    ] {
        let (code, body) = post(&relay, &format!("/commands/{platform}"), &[], "x");
        assert_eq!(code, 404, "{platform}");
        assert!(body.contains(key), "{body}");
    }
}
