//! Message lifecycle through the real binary and a mock Slack Web API: a
//! reply lands in the first post's thread, an edit changes the sent
//! message, a delete removes it (or strikes it through, per chat), a
//! recovery restores it, and the mapping survives kill -9 and a restart.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const TOKEN: &str = "xoxb-canary-lifecycle";

fn slack_config(api: &str) -> String {
    format!(
        r##"[discourse]
url = "https://forum.example.org"
webhook_secret = "${{DISCOURSE_WEBHOOK_SECRET}}"
delay = "0s"

[providers.slack]
kind = "slack"
token = "${{SLACK_TOKEN}}"
api_url = "{api}"

[[chat]]
name = "threaded"
provider = "slack"
channel = "#dev"
rate_limit = "100/s"
[[chat.rule]]
filter = "thread"

[[chat]]
name = "struck"
provider = "slack"
channel = "#ops"
rate_limit = "100/s"
on_delete = "strike"
subscribe = ["all"]
"##
    )
}

/// What the mock Slack saw, per chat: (method, body).
struct Seen {
    /// Slack method (`chat.postMessage`...) and body of each request.
    calls: Vec<(String, Value)>,
    /// The ts the mock answered each post with (see `Mock`'s default reply).
    ts: Vec<String>,
}

fn seen(mock: &Mock) -> Seen {
    let reqs = mock.requests();
    let ts = (0..reqs.len())
        .map(|n| format!("{}.000100", 1_700_000_000 + n))
        .collect();
    let calls = reqs
        .iter()
        .map(|r| {
            let method = r.path.rsplit('/').next().unwrap_or("").to_string();
            (method, r.json())
        })
        .collect();
    Seen { calls, ts }
}

/// The new requests after the first `from`, by Slack channel they concern:
/// posts name the configured channel; edits and deletes name a ts, which
/// `owner` maps back to the chat's channel.
fn by_channel(
    s: &Seen,
    from: usize,
    owner: &HashMap<String, String>,
) -> HashMap<String, Vec<(String, Value)>> {
    let mut out: HashMap<String, Vec<(String, Value)>> = HashMap::new();
    for (method, body) in &s.calls[from..] {
        let channel = match method.as_str() {
            "chat.postMessage" => body["channel"].as_str().unwrap().to_string(),
            _ => owner[body["ts"].as_str().unwrap()].clone(),
        };
        out.entry(channel)
            .or_default()
            .push((method.clone(), body.clone()));
    }
    out
}

fn reply(number: u64, id: u64, raw: &str) -> impl FnOnce(&mut Value) {
    let raw = raw.to_string();
    move |b: &mut Value| {
        let p = &mut b["post"];
        p["id"] = json!(id);
        p["post_number"] = json!(number);
        p["raw"] = json!(raw);
        p["cooked"] = json!(format!("<p>{raw}</p>"));
    }
}

#[test]
fn threads_edits_deletes_and_recoveries_reach_slack_and_survive_kill_9() {
    let mock = Mock::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = dir.path().join("relay.toml");
    std::fs::write(&cfg, slack_config(&mock.url("/api"))).unwrap();
    let env = [("SLACK_TOKEN", TOKEN)];
    let relay = Relay::start(&cfg, &data, &env);

    // 1. The first post opens the thread in `threaded`; `struck` just posts.
    assert_eq!(relay.post_fixture("post_created_first_post").0, 202);
    mock.wait_for(2, Duration::from_secs(15));
    // 2. A reply: into the thread of the first post's message in `threaded`.
    let f = edited_fixture("post_created_reply_group_mention", |_| {});
    assert_eq!(relay.post(&f.headers, f.body).0, 202);
    mock.wait_for(4, Duration::from_secs(15));

    let s = seen(&mock);
    let mut owner = HashMap::new(); // ts -> channel
    let mut first = HashMap::new(); // channel -> ts of post #1
    let mut third = HashMap::new(); // channel -> ts of post #3
    for (i, (method, body)) in s.calls.iter().enumerate() {
        assert_eq!(method, "chat.postMessage");
        let channel = body["channel"].as_str().unwrap().to_string();
        owner.insert(s.ts[i].clone(), channel.clone());
        let target = if first.contains_key(&channel) {
            &mut third
        } else {
            &mut first
        };
        target.insert(channel, s.ts[i].clone());
    }
    let posts = by_channel(&s, 0, &owner);
    assert!(
        posts["dev"][0].1.get("thread_ts").is_none(),
        "post #1 opens the thread"
    );
    assert_eq!(
        posts["dev"][1].1["thread_ts"],
        json!(first["dev"]),
        "the reply is in the thread"
    );
    assert!(
        posts["ops"]
            .iter()
            .all(|(_, b)| b.get("thread_ts").is_none()),
        "watch: no threads"
    );

    // 3. An edit of the reply updates both sent messages.
    let f = edited_fixture(
        "post_edited",
        reply(3, 1003, "Edited: use a `DashMap` instead"),
    );
    assert_eq!(relay.post(&f.headers, f.body).0, 202);
    mock.wait_for(6, Duration::from_secs(15));
    let s = seen(&mock);
    let edits = by_channel(&s, 4, &owner);
    for channel in ["dev", "ops"] {
        let (method, body) = &edits[channel][0];
        assert_eq!(method, "chat.update", "{channel}");
        assert_eq!(body["channel"], "C0DEV");
        assert_eq!(body["ts"], json!(third[channel]));
        assert!(body["text"].as_str().unwrap().contains("DashMap"), "{body}");
    }

    // 4. The mapping survives kill -9, and nothing is sent twice after the
    // restart. Acks are cheap commits, made durable by the next durable one
    // (the once-a-second sync, or any accept). Rather than guess when the
    // sync ran: wait until both chats acknowledged the edits, then accept
    // an event no chat takes (a whisper), whose 202 means its commit, and
    // so every ack before it, is on disk.
    relay.wait_status("the edits acknowledged", |s| {
        s["chats"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["delivered"] == 3 && c["queue_depth"] == 0)
    });
    let f = edited_fixture("post_created_whisper", |_| {});
    assert_eq!(relay.post(&f.headers, f.body).0, 202);
    relay.kill9();
    let relay = Relay::start(&cfg, &data, &env);
    // A re-send would be queued ahead of this marker in its chat.
    let marker = relay.post_marker("post_created_first_post");
    let sent = relay.settle(&mock, &marker, 2);
    assert_eq!(sent.len(), 6, "nothing re-sent: {:#?}", &sent[6..]);
    // The two marker posts: later steps count from here.
    let base = mock.requests().len();
    assert_eq!(base, 8);

    // 5. Deleting the reply: `threaded` deletes its message, `struck` strikes it.
    let f = edited_fixture(
        "post_destroyed",
        reply(3, 1003, "Edited: use a `DashMap` instead"),
    );
    assert_eq!(relay.post(&f.headers, f.body).0, 202);
    mock.wait_for(base + 2, Duration::from_secs(15));
    let s = seen(&mock);
    let deletes = by_channel(&s, base, &owner);
    assert_eq!(deletes["dev"][0].0, "chat.delete");
    assert_eq!(
        deletes["dev"][0].1,
        json!({"channel": "C0DEV", "ts": third["dev"]})
    );
    let (method, body) = &deletes["ops"][0];
    assert_eq!(method, "chat.update");
    let text = body["text"].as_str().unwrap();
    assert!(
        text.lines()
            .filter(|l| !l.is_empty())
            .all(|l| l.starts_with('~') && l.ends_with('~')),
        "{text}"
    );

    // 6. Recovered: posted again in the thread (deleted there), un-struck in `ops`.
    let f = edited_fixture(
        "post_recovered",
        reply(3, 1003, "Edited: use a `DashMap` instead"),
    );
    assert_eq!(relay.post(&f.headers, f.body).0, 202);
    mock.wait_for(base + 4, Duration::from_secs(15));
    let s = seen(&mock);
    let recovered = by_channel(&s, base + 2, &owner);
    let (method, body) = &recovered["dev"][0];
    assert_eq!(method, "chat.postMessage");
    assert_eq!(body["thread_ts"], json!(first["dev"]));
    assert!(body["text"].as_str().unwrap().contains("DashMap"));
    let (method, body) = &recovered["ops"][0];
    assert_eq!(method, "chat.update");
    assert!(!body["text"].as_str().unwrap().starts_with('~'));

    // 7. An edit of a post the relay never sent changes nothing.
    let f = edited_fixture("post_edited", |_| {});
    assert_eq!(relay.post(&f.headers, f.body).0, 202);
    let marker = relay.post_marker("post_created_first_post");
    let sent = relay.settle(&mock, &marker, 2);
    assert_eq!(sent.len(), base + 4, "{:#?}", &sent[base + 4..]);
    let status = relay.status();
    for chat in status["chats"].as_array().unwrap() {
        assert_eq!(chat["dead_letters"], 0, "{chat}");
    }
    assert!(!relay.logs().contains(TOKEN));
}

/// One platform in [`other_platforms_thread_edit_and_delete`]: its config
/// (one `thread` chat; `{api}` is the mock), its answers to the four
/// requests (first post, reply, edit of the reply, delete of the reply) and
/// what those requests must look like.
struct Platform {
    name: &'static str,
    config: &'static str,
    env: (&'static str, &'static str),
    /// Where the mock is mounted (a webhook URL's path).
    mount: &'static str,
    answers: fn() -> Vec<Reply>,
    /// Checks the recorded requests; `edits` says whether the platform can
    /// edit and delete (else only the two posts are sent).
    check: fn(&[Recorded]),
    edits: bool,
}

const TOPIC: &str = "How do I share state between async tasks?";

fn path_and_json(r: &Recorded) -> (&str, &str, Value) {
    (r.method.as_str(), r.path.as_str(), r.json())
}

fn form(r: &Recorded) -> HashMap<String, String> {
    url::form_urlencoded::parse(r.body.as_bytes())
        .into_owned()
        .collect()
}

fn platforms() -> Vec<Platform> {
    vec![
        Platform {
            name: "telegram",
            config: r#"[providers.tg]
kind = "telegram"
token = "${TG_TOKEN}"
api_url = "{api}"
[[chat]]
name = "c"
provider = "tg"
chat_id = -100123
"#,
            env: ("TG_TOKEN", "123:canary-tg"),
            mount: "",
            answers: || {
                let msg = |id: u64| {
                    Reply::new(
                        200,
                        &format!(r#"{{"ok":true,"result":{{"message_id":{id}}}}}"#),
                    )
                };
                vec![
                    msg(501),
                    msg(502),
                    msg(502),
                    Reply::new(200, r#"{"ok":true,"result":true}"#),
                ]
            },
            check: |r| {
                let (_, path, body) = path_and_json(&r[0]);
                assert!(path.ends_with("/sendMessage"));
                assert!(body.get("reply_parameters").is_none());
                let (_, _, body) = path_and_json(&r[1]);
                assert_eq!(body["reply_parameters"]["message_id"], 501);
                let (_, path, body) = path_and_json(&r[2]);
                assert!(path.ends_with("/editMessageText"), "{path}");
                assert_eq!(body["message_id"], 502);
                assert!(body["text"].as_str().unwrap().contains("DashMap"));
                let (_, path, body) = path_and_json(&r[3]);
                assert!(path.ends_with("/deleteMessage"), "{path}");
                assert_eq!(body, json!({"chat_id": -100123, "message_id": 502}));
            },
            edits: true,
        },
        Platform {
            name: "mattermost",
            config: r#"[providers.mm]
kind = "mattermost"
token = "${MM_TOKEN}"
api_url = "{api}"
[[chat]]
name = "c"
provider = "mm"
channel_id = "4xp9fdt77pncbef59f4k1qe83o"
"#,
            env: ("MM_TOKEN", "canary-mm"),
            mount: "",
            answers: || {
                let post = |id: &str| Reply::new(201, &format!(r#"{{"id":"{id}"}}"#));
                vec![
                    post("rootrootrootrootrootroot01"),
                    post("replyreplyreplyreplyrepl02"),
                    post("replyreplyreplyreplyrepl02"),
                    Reply::new(200, r#"{"status":"OK"}"#),
                ]
            },
            check: |r| {
                assert!(path_and_json(&r[0]).2.get("root_id").is_none());
                assert_eq!(
                    path_and_json(&r[1]).2["root_id"],
                    "rootrootrootrootrootroot01"
                );
                let (method, path, body) = path_and_json(&r[2]);
                assert_eq!(
                    (method, path),
                    ("PUT", "/api/v4/posts/replyreplyreplyreplyrepl02/patch")
                );
                // The edit sends the card again: the new excerpt is its text.
                let card = &body["props"]["attachments"][0];
                assert!(card["text"].as_str().unwrap().contains("DashMap"));
                let (method, path, _) = path_and_json(&r[3]);
                assert_eq!(
                    (method, path),
                    ("DELETE", "/api/v4/posts/replyreplyreplyreplyrepl02")
                );
            },
            edits: true,
        },
        Platform {
            name: "zulip",
            config: r#"[providers.z]
kind = "zulip"
realm = "{api}"
email = "bot@zulip.example"
api_key = "${ZULIP_KEY}"
[[chat]]
name = "c"
provider = "z"
stream = "forum"
"#,
            env: ("ZULIP_KEY", "CanaryZulipKey42"),
            mount: "",
            answers: || {
                let sent = |id: u64| {
                    Reply::new(
                        200,
                        &format!(r#"{{"result":"success","msg":"","id":{id}}}"#),
                    )
                };
                vec![
                    sent(11),
                    sent(12),
                    Reply::new(200, r#"{"result":"success","msg":""}"#),
                    Reply::new(200, r#"{"result":"success","msg":""}"#),
                ]
            },
            check: |r| {
                // The thread is the Zulip topic named after the forum topic.
                for post in &r[..2] {
                    assert_eq!(form(post)["topic"], TOPIC);
                }
                assert_eq!(
                    (r[2].method.as_str(), r[2].path.as_str()),
                    ("PATCH", "/api/v1/messages/12")
                );
                assert!(form(&r[2])["content"].contains("DashMap"));
                assert_eq!(
                    (r[3].method.as_str(), r[3].path.as_str()),
                    ("DELETE", "/api/v1/messages/12")
                );
            },
            edits: true,
        },
        Platform {
            name: "discord",
            config: r#"[[chat]]
name = "c"
provider = "discord"
webhook_url = "${DISCORD_HOOK}"
forum_channel = true
"#,
            env: ("DISCORD_HOOK", "{api}/api/webhooks/1/canary-discord"),
            mount: "/api/webhooks/1/canary-discord",
            answers: || {
                let msg =
                    |id: &str| Reply::new(200, &format!(r#"{{"id":"{id}","channel_id":"900"}}"#));
                vec![msg("900"), msg("901"), msg("901"), Reply::new(204, "")]
            },
            check: |r| {
                let hook = "/api/webhooks/1/canary-discord";
                let (_, path, body) = path_and_json(&r[0]);
                assert_eq!(path, format!("{hook}?wait=true"));
                assert_eq!(body["thread_name"], TOPIC);
                let (_, path, body) = path_and_json(&r[1]);
                assert_eq!(path, format!("{hook}?wait=true&thread_id=900"));
                assert!(body.get("thread_name").is_none());
                let (method, path, body) = path_and_json(&r[2]);
                assert_eq!(method, "PATCH");
                assert_eq!(path, format!("{hook}/messages/901?thread_id=900"));
                assert_eq!(body["allowed_mentions"], json!({"parse": []}));
                // The card is edited: the new excerpt is the embed's.
                let embed = &body["embeds"][0];
                assert!(
                    embed["description"].as_str().unwrap().contains("DashMap"),
                    "{body}"
                );
                let (method, path, _) = path_and_json(&r[3]);
                assert_eq!(method, "DELETE");
                assert_eq!(path, format!("{hook}/messages/901?thread_id=900"));
            },
            edits: true,
        },
        Platform {
            name: "webex",
            config: r#"[providers.wx]
kind = "webex"
token = "${WEBEX_TOKEN}"
api_url = "{api}"
[[chat]]
name = "c"
provider = "wx"
room_id = "Y2lzY29zcGFyazovL3VzL1JPT00vMQ"
# Webex cannot edit a card: the text message is what edits here.
style = "text"
"#,
            env: ("WEBEX_TOKEN", "canary-webex"),
            mount: "",
            answers: || {
                let msg = |id: &str| Reply::new(200, &format!(r#"{{"id":"{id}"}}"#));
                vec![msg("M1"), msg("M2"), msg("M2"), Reply::new(204, "")]
            },
            check: |r| {
                assert!(path_and_json(&r[0]).2.get("parentId").is_none());
                assert_eq!(path_and_json(&r[1]).2["parentId"], "M1");
                let (method, path, body) = path_and_json(&r[2]);
                assert_eq!((method, path), ("PUT", "/v1/messages/M2"));
                assert_eq!(body["roomId"], "Y2lzY29zcGFyazovL3VzL1JPT00vMQ");
                assert!(body["markdown"].as_str().unwrap().contains("DashMap"));
                let (method, path, _) = path_and_json(&r[3]);
                assert_eq!((method, path), ("DELETE", "/v1/messages/M2"));
            },
            edits: true,
        },
        Platform {
            name: "rocketchat",
            config: r#"[providers.rc]
kind = "rocketchat"
server_url = "{api}"
user_id = "botuser1"
auth_token = "${RC_TOKEN}"
[[chat]]
name = "c"
provider = "rc"
room_id = "GENERAL"
"#,
            env: ("RC_TOKEN", "canary-rocketchat"),
            mount: "/api/v1/",
            answers: || {
                let msg = |id: &str| {
                    Reply::new(
                        200,
                        &format!(
                            r#"{{"success":true,"message":{{"_id":"{id}","rid":"GENERAL","msg":"x"}}}}"#
                        ),
                    )
                };
                vec![
                    msg("R1"),
                    msg("R2"),
                    msg("R2"),
                    Reply::new(200, r#"{"success":true}"#),
                ]
            },
            check: |r| {
                let (_, path, body) = path_and_json(&r[0]);
                assert_eq!(path, "/api/v1/chat.postMessage");
                assert!(body.get("tmid").is_none());
                assert_eq!(r[0].header("X-Auth-Token"), Some("canary-rocketchat"));
                assert_eq!(path_and_json(&r[1]).2["tmid"], "R1");
                let (_, path, body) = path_and_json(&r[2]);
                assert_eq!(path, "/api/v1/chat.update");
                assert_eq!(
                    (body["roomId"].as_str(), body["msgId"].as_str()),
                    (Some("GENERAL"), Some("R2"))
                );
                assert!(body["text"].as_str().unwrap().contains("DashMap"));
                let (_, path, body) = path_and_json(&r[3]);
                assert_eq!(path, "/api/v1/chat.delete");
                assert_eq!(body, json!({"roomId": "GENERAL", "msgId": "R2"}));
            },
            edits: true,
        },
        Platform {
            name: "mastodon",
            config: r#"[providers.m]
kind = "mastodon"
instance = "{api}"
access_token = "${MASTODON_TOKEN}"
[[chat]]
name = "c"
provider = "m"
"#,
            env: ("MASTODON_TOKEN", "canary-mastodon"),
            mount: "",
            answers: || {
                let status = |id: &str| Reply::new(200, &format!(r#"{{"id":"{id}"}}"#));
                vec![status("71"), status("72"), status("72"), status("72")]
            },
            check: |r| {
                assert!(path_and_json(&r[0]).2.get("in_reply_to_id").is_none());
                assert_eq!(path_and_json(&r[1]).2["in_reply_to_id"], "71");
                let (method, path, body) = path_and_json(&r[2]);
                assert_eq!((method, path), ("PUT", "/api/v1/statuses/72"));
                assert!(body["status"].as_str().unwrap().contains("DashMap"));
                let (method, path, _) = path_and_json(&r[3]);
                assert_eq!((method, path), ("DELETE", "/api/v1/statuses/72"));
            },
            edits: true,
        },
        Platform {
            name: "googlechat",
            config: r#"[[chat]]
name = "c"
provider = "googlechat"
webhook_url = "${GCHAT_HOOK}"
"#,
            env: (
                "GCHAT_HOOK",
                "{api}/v1/spaces/AAAA/messages?key=k&token=canary-gchat",
            ),
            mount: "/v1/spaces/AAAA/messages",
            answers: || {
                let msg =
                    |n: &str| Reply::new(200, &format!(r#"{{"name":"spaces/AAAA/messages/{n}"}}"#));
                vec![msg("a"), msg("b")]
            },
            check: |r| {
                for post in r {
                    assert!(
                        post.path
                            .ends_with("&messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD"),
                        "{}",
                        post.path
                    );
                    assert_eq!(post.json()["thread"], json!({"threadKey": "topic-101"}));
                }
            },
            // A webhook cannot edit or delete: on_edit/on_delete default to ignore.
            edits: false,
        },
    ]
}

#[test]
fn other_platforms_thread_edit_and_delete() {
    for p in platforms() {
        let mock = Mock::start();
        mock.script((p.answers)());
        let api = mock.url("");
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("relay.toml");
        let chat = p.config.replace("{api}", &api)
            + "rate_limit = \"100/s\"\n[[chat.rule]]\nfilter = \"thread\"\n";
        std::fs::write(
            &cfg,
            format!(
                "[discourse]\nurl = \"https://forum.example.org\"\nwebhook_secret = \"${{DISCOURSE_WEBHOOK_SECRET}}\"\ndelay = \"0s\"\n\n{chat}"
            ),
        )
        .unwrap();
        let env_value = p.env.1.replace("{api}", &api);
        let relay = Relay::start(&cfg, &dir.path().join("data"), &[(p.env.0, &env_value)]);
        let step = |f: Fixture, n: usize| {
            assert_eq!(relay.post(&f.headers, f.body).0, 202, "{}", p.name);
            mock.wait_for(n, Duration::from_secs(15));
        };
        step(fixture("post_created_first_post"), 1);
        step(
            edited_fixture("post_created_reply_group_mention", |_| {}),
            2,
        );
        let edit = reply(3, 1003, "Edited: use a `DashMap` instead");
        let sent = if p.edits {
            step(edited_fixture("post_edited", edit), 3);
            let gone = reply(3, 1003, "Edited: use a `DashMap` instead");
            step(edited_fixture("post_destroyed", gone), 4);
            4
        } else {
            let f = edited_fixture("post_edited", edit);
            assert_eq!(relay.post(&f.headers, f.body).0, 202);
            2
        };
        // Whatever the steps queued arrives before a marker accepted after
        // them (a new topic: the platform answers it as it did the first post).
        mock.script((p.answers)().into_iter().take(1));
        let marker = relay.post_marker("post_created_first_post");
        let reqs = relay.settle(&mock, &marker, 1);
        assert_eq!(reqs.len(), sent, "{}: {reqs:#?}", p.name);
        assert!(
            reqs.iter().all(|r| r.path.starts_with(p.mount)),
            "{}: {reqs:#?}",
            p.name
        );
        (p.check)(&reqs);
        let status = relay.status();
        for chat in status["chats"].as_array().unwrap() {
            assert_eq!(chat["dead_letters"], 0, "{}: {chat}", p.name);
        }
        let secret = p.env.1.rsplit(['/', '=', ':']).next().unwrap_or("");
        assert!(!relay.logs().contains(secret), "{}", p.name);
    }
}

/// Once `remember` has passed, the relay forgets which message a post
/// became: an edit then changes nothing and says why at debug level.
#[test]
fn an_edit_after_the_mapping_expired_is_ignored_with_a_debug_log() {
    let mock = Mock::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("relay.toml");
    let text = slack_config(&mock.url("/api")).replace(
        "delay = \"0s\"\n",
        "delay = \"0s\"\n\n[server]\nremember = \"2s\"\n",
    );
    std::fs::write(&cfg, text).unwrap();
    let relay = Relay::start(
        &cfg,
        &dir.path().join("data"),
        &[
            ("SLACK_TOKEN", TOKEN),
            ("RUST_LOG", "info,discourse_relay=debug"),
        ],
    );
    let reply = |raw: &str| {
        let raw = raw.to_string();
        edited_fixture("post_edited", move |b| {
            b["post"]["id"] = json!(1001);
            b["post"]["post_number"] = json!(1);
            b["post"]["raw"] = json!(raw);
        })
    };
    assert_eq!(relay.post_fixture("post_created_first_post").0, 202);
    mock.wait_for(2, Duration::from_secs(15));
    // Still remembered: the edit reaches both chats.
    let f = reply("first edit");
    assert_eq!(relay.post(&f.headers, f.body).0, 202);
    let got = mock.wait_for(4, Duration::from_secs(15));
    assert!(got[2..].iter().all(|r| r.path.ends_with("/chat.update")));

    // Forgotten (pruned at least once a second with remember = 2s).
    std::thread::sleep(Duration::from_secs(4));
    let f = reply("second edit");
    assert_eq!(relay.post(&f.headers, f.body).0, 202);
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while !relay
        .logs()
        .contains("no chat message is known for this post")
    {
        assert!(
            std::time::Instant::now() < end,
            "no debug line:\n{}",
            relay.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let marker = relay.post_marker("post_created_first_post");
    let sent = relay.settle(&mock, &marker, 2);
    assert_eq!(
        sent.len(),
        4,
        "nothing sent for the forgotten post: {sent:#?}"
    );
    assert!(
        !relay.logs().contains("\"level\":\"ERROR\""),
        "{}",
        relay.logs()
    );
}

/// A relay on the two-chat Slack config whose first post of topic 101 went
/// to both chats (requests 0 and 1). The temp dir lives as long as the relay.
fn first_post_sent() -> (Mock, tempfile::TempDir, Relay) {
    let mock = Mock::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "relay.toml", slack_config(&mock.url("/api")));
    let relay = Relay::start(&cfg, &dir.path().join("data"), &[("SLACK_TOKEN", TOKEN)]);
    assert_eq!(relay.post_fixture("post_created_first_post").0, 202);
    mock.wait_for(2, Duration::from_secs(15));
    (mock, dir, relay)
}

/// The texts of requests `from..to`, each a `chat.update`.
fn updated_texts(mock: &Mock, from: usize, to: usize) -> Vec<String> {
    mock.wait_for(to, Duration::from_secs(15));
    let s = seen(mock);
    s.calls[from..to]
        .iter()
        .map(|(method, body)| {
            assert_eq!(method, "chat.update", "{body}");
            body["text"].as_str().unwrap_or("").to_string()
        })
        .collect()
}

/// A topic closed, then pinned: the message its first post became is edited
/// each time to show the state (🔒, 📌) in the default template; opened
/// again, the mark goes.
#[test]
fn topic_states_follow_on_the_first_posts_message() {
    let (mock, _dir, relay) = first_post_sent();

    // The recorded close is of topic 102; the same event for topic 101.
    let closed = edited_fixture("topic_closed_status_updated", |v| {
        let t = &mut v["topic"];
        t["id"] = 101.into();
        t["title"] = "How do I share state between async tasks?".into();
        t["slug"] = "how-do-i-share-state-between-async-tasks".into();
        t["category_id"] = 7.into();
    });
    assert_eq!(relay.post(&closed.headers, closed.body).0, 202);
    for text in updated_texts(&mock, 2, 4) {
        assert!(text.starts_with("🔒 "), "{text}");
        assert!(text.contains("How do I share state"), "{text}");
    }

    // Pinned too (the recorded pin is of topic 101, still open there).
    let pinned = edited_fixture("topic_pinned_status_updated", |v| {
        v["topic"]["closed"] = true.into();
    });
    assert_eq!(relay.post(&pinned.headers, pinned.body).0, 202);
    for text in updated_texts(&mock, 4, 6) {
        assert!(text.starts_with("🔒 📌 "), "{text}");
    }

    // Opened again: the lock goes, the pin stays.
    let opened = edited_fixture("topic_pinned_status_updated", |_| {});
    assert_eq!(relay.post(&opened.headers, opened.body).0, 202);
    for text in updated_texts(&mock, 6, 8) {
        assert!(text.starts_with("📌 *"), "{text}");
    }
}

/// An accepted answer marks the topic's first message solved (✅); the
/// answer unaccepted, the mark goes. The solved events notify nobody.
#[test]
fn a_solved_topic_is_marked_on_its_first_message() {
    let (mock, _dir, relay) = first_post_sent();

    assert_eq!(relay.post_fixture("accepted_solution").0, 202);
    for text in updated_texts(&mock, 2, 4) {
        assert!(text.starts_with("✅ *"), "{text}");
    }

    assert_eq!(relay.post_fixture("unaccepted_solution").0, 202);
    for text in updated_texts(&mock, 4, 6) {
        assert!(text.starts_with('*'), "{text}");
    }
    // Nothing else: the answer post itself is not announced again.
    let marker = relay.post_marker("post_created_first_post");
    let before = mock.before_marker(&marker, Duration::from_secs(15));
    assert_eq!(before.len(), 6, "{before:?}");
}
