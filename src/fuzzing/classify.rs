//! Answer classification: arbitrary platform answers (status, headers,
//! body) through every provider's `Destination::classify`, as
//! `delivery::send` hands them over. A platform, a proxy or a captive
//! portal in between is outside input like a webhook is.
//!
//! Input: `[chat] [status hi] [status lo] headers 0xFF body`:
//! - `chat`: index into [`chats`] (one or more chats per registered
//!   provider, one per way its answers are read); an index past the end
//!   runs every chat;
//! - `status`: the HTTP status, big-endian (any `u16`, also 0 and 999);
//! - `headers`: lines `Name: value` (lossy UTF-8) up to the first 0xFF;
//!   without a 0xFF there are no headers and the rest is the body;
//! - `body`: raw bytes (not necessarily UTF-8).
//!
//! Invariants: nothing panics; a `Retry` from `classify` itself waits at
//! most [`MAX_RETRY_AFTER`] (hints are clamped where they are parsed); and
//! on the outcome as delivery keeps it ([`Outcome::tidy`], see [`check`]):
//! reasons are non-empty, at most [`MAX_REASON`] bytes, free of control
//! characters; a `Sent` remote id is short text; 401/403 are never `Sent`;
//! 429 and 5xx are never `Permanent` (501 "Not Implemented" excepted: a
//! feature switched off on the server is permanent by definition).

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use crate::config::MissingEnv;
use crate::pipeline::{self, Pipeline};
use crate::providers::http::MAX_RETRY_AFTER;
use crate::providers::{Destination, HttpResponse, MAX_REASON, MAX_REMOTE_ID, Outcome, registry};

/// One chat per way a provider reads answers (API and webhook modes, thread
/// and forum variants). Every registered kind appears (checked by [`chats`]).
const CONFIG: &str = r##"
[discourse]
url = "https://forum.example.org"

[providers.slack]
token = "${TOKEN}"
[providers.telegram]
token = "${TOKEN}"
[providers.mattermost]
token = "${TOKEN}"
api_url = "https://mm.example.org"
[providers.gotify]
server = "https://gotify.example.org"
token = "${TOKEN}"
[providers.pushover]
token = "${TOKEN}"
[providers.webex]
token = "${TOKEN}"
[providers.matrix]
homeserver = "https://matrix.example.org"
access_token = "${TOKEN}"
[providers.gitter]
homeserver = "https://gitter.example.org"
access_token = "${TOKEN}"
[providers.zulip]
realm = "https://zulip.example.org"
email = "bot@zulip.example.org"
api_key = "${TOKEN}"
[providers.mastodon]
instance = "https://mastodon.example.org"
access_token = "${TOKEN}"
[providers.messenger]
page_token = "${TOKEN}"
[providers.hipchat]
server = "https://hipchat.example.org"
token = "${TOKEN}"
[providers.xmpp]
jid = "bot@xmpp.example.org"
password = "${TOKEN}"
[providers.irc]
server = "irc.example.org"
nick = "relaybot"
[providers.smtp]
server = "smtp.example.org"
from = "forum@example.org"

[[chat]]
subscribe = ["all"]
name = "console"
provider = "console"
[[chat]]
subscribe = ["all"]
name = "webhook"
provider = "webhook"
url = "https://hook.example.org/x"
[[chat]]
subscribe = ["all"]
name = "slack-api"
provider = "slack"
channel = "#general"
[[chat]]
subscribe = ["all"]
name = "slack-hook"
provider = "slack"
webhook_url = "${HOOK_SLACK_HOOK}"
[[chat]]
subscribe = ["all"]
name = "telegram"
provider = "telegram"
chat_id = -1001234567890
[[chat]]
subscribe = ["all"]
name = "telegram-topic"
provider = "telegram"
chat_id = -1001234567890
message_thread_id = 7
[[chat]]
subscribe = ["all"]
name = "discord"
provider = "discord"
webhook_url = "${HOOK_DISCORD}"
[[chat]]
subscribe = ["all"]
name = "discord-thread"
provider = "discord"
webhook_url = "${HOOK_DISCORD_THREAD}"
thread_id = "1122334455667788990"
[[chat]]
subscribe = ["all"]
name = "discord-forum"
provider = "discord"
webhook_url = "${HOOK_DISCORD_FORUM}"
forum_channel = true
[[chat]]
subscribe = ["all"]
name = "mattermost-api"
provider = "mattermost"
channel_id = "abcdefghijklmnopqrstuvwxyz"
[[chat]]
subscribe = ["all"]
name = "mattermost-hook"
provider = "mattermost"
webhook_url = "${HOOK_MATTERMOST_HOOK}"
[[chat]]
subscribe = ["all"]
name = "ntfy"
provider = "ntfy"
topic = "forum"
[[chat]]
subscribe = ["all"]
name = "gotify"
provider = "gotify"
[[chat]]
subscribe = ["all"]
name = "pushover"
provider = "pushover"
user = "${TOKEN}"
[[chat]]
subscribe = ["all"]
name = "lark"
provider = "lark"
webhook_url = "${HOOK_LARK}"
[[chat]]
subscribe = ["all"]
name = "dingtalk"
provider = "dingtalk"
webhook_url = "${HOOK_DINGTALK}"
[[chat]]
subscribe = ["all"]
name = "wecom"
provider = "wecom"
webhook_url = "${HOOK_WECOM}"
[[chat]]
subscribe = ["all"]
name = "teams"
provider = "teams"
webhook_url = "${HOOK_TEAMS}"
[[chat]]
subscribe = ["all"]
name = "googlechat"
provider = "googlechat"
webhook_url = "${HOOK_GOOGLECHAT}"
[[chat]]
subscribe = ["all"]
name = "webex"
provider = "webex"
room_id = "Y2lzY29zcGFyazovL3VzL1JPT00vYWJj"
[[chat]]
subscribe = ["all"]
name = "groupme"
provider = "groupme"
bot_id = "${GROUPME_BOT}"
[[chat]]
subscribe = ["all"]
name = "matrix"
provider = "matrix"
room = "!AbCdEf:example.org"
[[chat]]
subscribe = ["all"]
name = "gitter"
provider = "gitter"
room = "!GiTtEr:gitter.im"
[[chat]]
subscribe = ["all"]
name = "zulip"
provider = "zulip"
stream = "forum feed"
[[chat]]
subscribe = ["all"]
name = "rocketchat"
provider = "rocketchat"
webhook_url = "${HOOK_ROCKETCHAT}"
[[chat]]
subscribe = ["all"]
name = "mastodon"
provider = "mastodon"
[[chat]]
subscribe = ["all"]
name = "messenger"
provider = "messenger"
psid = "1234567890123456"
[[chat]]
subscribe = ["all"]
name = "hipchat"
provider = "hipchat"
room = "Dev Team"
[[chat]]
subscribe = ["all"]
name = "xmpp"
provider = "xmpp"
room = "forum@conference.xmpp.example.org"
[[chat]]
subscribe = ["all"]
name = "irc"
provider = "irc"
channel = "#forum"
[[chat]]
subscribe = ["all"]
name = "smtp"
provider = "smtp"
to = "team@example.org"
"##;

/// The loaded config (no connection is opened: native providers connect
/// lazily, on their first send).
fn pipeline() -> &'static Pipeline {
    static P: OnceLock<Pipeline> = OnceLock::new();
    P.get_or_init(|| {
        let env: HashMap<String, String> = [
            ("TOKEN", "fuzz-token"),
            ("GROUPME_BOT", "0123456789abcdef"),
            (
                "HOOK_SLACK_HOOK",
                "https://hooks.slack.example/services/T/B/X",
            ),
            ("HOOK_DISCORD", "https://discord.example/api/webhooks/1/t"),
            (
                "HOOK_DISCORD_THREAD",
                "https://discord.example/api/webhooks/1/t",
            ),
            (
                "HOOK_DISCORD_FORUM",
                "https://discord.example/api/webhooks/1/t",
            ),
            ("HOOK_MATTERMOST_HOOK", "https://mm.example.org/hooks/x"),
            (
                "HOOK_LARK",
                "https://open.larksuite.example/open-apis/bot/v2/hook/x",
            ),
            (
                "HOOK_DINGTALK",
                "https://oapi.dingtalk.example/robot/send?access_token=x",
            ),
            (
                "HOOK_WECOM",
                "https://qyapi.weixin.example/cgi-bin/webhook/send?key=x",
            ),
            (
                "HOOK_TEAMS",
                "https://teams.example/workflows/x?api-version=1&sig=s",
            ),
            (
                "HOOK_GOOGLECHAT",
                "https://chat.googleapis.example/v1/spaces/x/messages?key=k&token=t",
            ),
            ("HOOK_ROCKETCHAT", "https://rc.example.org/hooks/a/b"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        match pipeline::load_str(Path::new("classify.toml"), CONFIG, &env, MissingEnv::Error) {
            Ok((p, _)) => p,
            Err(d) => panic!("the classify fuzz config does not load:\n{d}"),
        }
    })
}

/// A chat of the fuzz config: its name and destination.
pub type Chat = (&'static str, &'static dyn Destination);

/// Every chat of the fuzz config, in config order; panics unless every
/// registered provider kind has at least one.
pub fn chats() -> &'static [Chat] {
    static CHATS: OnceLock<Vec<Chat>> = OnceLock::new();
    CHATS.get_or_init(|| {
        let chats: Vec<Chat> = pipeline()
            .config
            .chats
            .iter()
            .map(|c| (c.name.as_str(), &*c.destination))
            .collect();
        for reg in registry::PROVIDERS {
            assert!(
                chats.iter().any(|(_, d)| d.kind() == reg.kind),
                "no chat of kind `{}` in the classify fuzz config",
                reg.kind
            );
        }
        chats
    })
}

/// The invariants every outcome keeps as delivery keeps it (after
/// [`Outcome::tidy`]), whatever the answer. Panics with the chat, status
/// and outcome when one breaks.
pub fn check(chat: &str, status: u16, out: &Outcome) {
    let fail = |what: &str| -> ! {
        // The outcome may be megabytes: show its start.
        let shown: String = format!("{out:?}").chars().take(300).collect();
        panic!("chat `{chat}`, HTTP {status}: {what}: {shown}")
    };
    let text = |what: &str, s: &str, max: usize| {
        if s.is_empty() {
            fail(&format!("{what} is empty"));
        }
        if s.len() > max {
            fail(&format!("{what} is {} bytes long", s.len()));
        }
        if s.contains(char::is_control) {
            fail(&format!("{what} has control characters"));
        }
    };
    match out {
        Outcome::Sent { remote_id } => {
            if matches!(status, 401 | 403) {
                fail("a rejected credential is not a delivery");
            }
            if let Some(id) = remote_id {
                text("the remote id", id, MAX_REMOTE_ID);
            }
        }
        Outcome::Retry { reason, after } => {
            text("the reason", reason, MAX_REASON);
            if after.is_some_and(|a| a > MAX_RETRY_AFTER) {
                fail("retry hint above MAX_RETRY_AFTER");
            }
        }
        Outcome::Permanent { reason } => {
            text("the reason", reason, MAX_REASON);
            if status == 429 || ((500..=599).contains(&status) && status != 501) {
                fail("the server's own trouble is not permanent");
            }
        }
    }
}

/// Classifies `resp` for one chat as delivery does (`classify`, then
/// [`Outcome::tidy`]) and checks the invariants; returns the tidy outcome.
pub fn classify_one(chat: &str, dest: &dyn Destination, resp: &HttpResponse) -> Outcome {
    let raw = dest.classify(resp);
    // `tidy` clamps too: check the provider's own hint first.
    if let Outcome::Retry { after: Some(a), .. } = &raw
        && *a > MAX_RETRY_AFTER
    {
        panic!(
            "chat `{chat}`, HTTP {}: classify's retry hint {a:?} is above MAX_RETRY_AFTER",
            resp.status
        );
    }
    let out = raw.tidy();
    check(chat, resp.status, &out);
    out
}

/// Splits a fuzz input into (chat selector, answer); `None` when too short.
pub fn parse_input(data: &[u8]) -> Option<(usize, HttpResponse)> {
    let (&[selector, hi, lo], rest) = data.split_first_chunk::<3>()?;
    let (head, body) = match rest.iter().position(|&b| b == 0xff) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (&[][..], rest),
    };
    let headers = String::from_utf8_lossy(head)
        .lines()
        .filter_map(|line| {
            let (k, v) = line.split_once(':')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    Some((
        usize::from(selector),
        HttpResponse {
            status: u16::from_be_bytes([hi, lo]),
            headers,
            body: body.to_vec(),
        },
    ))
}

/// One `classify` fuzz input; panics when an invariant breaks.
pub fn classify(data: &[u8]) {
    let Some((selector, resp)) = parse_input(data) else {
        return;
    };
    let chats = chats();
    match chats.get(selector) {
        Some((name, dest)) => {
            classify_one(name, *dest, &resp);
        }
        None => {
            for (name, dest) in chats {
                classify_one(name, *dest, &resp);
            }
        }
    }
}
