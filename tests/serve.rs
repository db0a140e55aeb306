//! `discourse-relay serve`, end to end: the real binary on port 0 with a temp
//! data dir, signed fixtures posted to it, and mock chat servers recording
//! what arrives.

mod common;

use std::time::{Duration, Instant};

use common::*;

const WAIT: Duration = Duration::from_secs(15);

#[test]
fn delivers_a_post_and_answers_discourse_correctly() {
    let mock = Mock::start();
    let dir = temp();
    let cfg = write(
        dir.path(),
        "relay.toml",
        config("0s", &[("hook", &mock.url("/hook"))], ""),
    );
    let relay = Relay::start(&cfg, &dir.path().join("data"), &[]);

    assert_eq!(relay.post_fixture("ping").0, 200);
    let (status, body) = relay.post_fixture("post_created_first_post");
    assert_eq!(status, 202, "{body}");
    let got = mock.wait_for(1, WAIT);
    assert_eq!(got[0].method, "POST");
    assert_eq!(got[0].path, "/hook");
    assert_eq!(
        got[0].json()["topic"]["title"],
        "How do I share state between async tasks?"
    );

    // No family takes logins: not relayed, but never 404/410 (Discourse
    // would disable the hook). A signup is a `users` event: accepted.
    let mut login = fixture("user_created");
    login.set_header("X-Discourse-Event", "user_logged_in");
    assert_eq!(relay.post(&login.headers, login.body).0, 200);
    assert_eq!(relay.post_fixture("user_created").0, 202);

    // Bad requests get a 4xx with a reason.
    let mut f = fixture("post_created_first_post");
    f.set_header("X-Discourse-Event-Signature", "sha256=00");
    let (s, b) = relay.post(&f.headers, f.body);
    assert_eq!(s, 401);
    assert!(b.contains("signature"), "{b}");
    let mut f = fixture("post_created_first_post");
    f.headers
        .retain(|(k, _)| k != "X-Discourse-Event-Signature");
    assert_eq!(relay.post(&f.headers, f.body).0, 401);

    let body = b"{\"post\":".to_vec();
    let mut f = fixture("post_created_first_post");
    f.set_header(
        "X-Discourse-Event-Signature",
        &discourse_relay::ingest::request::sign(SECRET.as_bytes(), &body),
    );
    let (s, b) = relay.post(&f.headers, body);
    assert_eq!(s, 400);
    assert!(b.contains("not valid JSON"), "{b}");

    let mut f = fixture("post_created_first_post");
    f.headers.retain(|(k, _)| k != "X-Discourse-Event");
    assert_eq!(relay.post(&f.headers, f.body).0, 400);

    let mut f = fixture("post_created_first_post");
    f.set_header("X-Discourse-Instance", "https://other.example.org");
    assert_eq!(relay.post(&f.headers, f.body).0, 403);

    let big = vec![b' '; 2 * 1024 * 1024];
    let f = fixture("post_created_first_post");
    assert_eq!(relay.post(&f.headers, big).0, 413);

    // Anything a rejected request queued would arrive before this marker.
    let marker = relay.post_marker("post_created_first_post");
    let sent = relay.settle(&mock, &marker, 1);
    assert_eq!(
        sent.len(),
        1,
        "rejected requests must not deliver: {sent:#?}"
    );
}

#[test]
fn deduplicates_retries_and_redeliveries() {
    let mock = Mock::start();
    let dir = temp();
    let cfg = write(
        dir.path(),
        "relay.toml",
        config("0s", &[("hook", &mock.url("/hook"))], ""),
    );
    let relay = Relay::start(&cfg, &dir.path().join("data"), &[]);

    assert_eq!(relay.post_fixture("post_created_first_post").0, 202);
    // A manual redelivery repeats the event id.
    let (s, b) = relay.post_fixture("post_created_first_post");
    assert_eq!(s, 200, "{b}");
    assert!(b.contains("duplicate"));
    // An automatic retry has a new id but the same body.
    let mut f = fixture("post_created_first_post");
    f.set_header("X-Discourse-Event-Id", "999001");
    assert_eq!(relay.post(&f.headers, f.body).0, 200);

    let marker = relay.post_marker("post_created_first_post");
    let sent = relay.settle(&mock, &marker, 1);
    assert_eq!(sent.len(), 1, "{sent:#?}");
}

#[test]
fn delay_window_cancels_deleted_posts_and_applies_edits() {
    let mock = Mock::start();
    let dir = temp();
    let cfg = write(
        dir.path(),
        "relay.toml",
        config("1500ms", &[("hook", &mock.url("/hook"))], ""),
    );
    let relay = Relay::start(&cfg, &dir.path().join("data"), &[]);

    // Post 1006 of topic 101 is created then destroyed inside the window.
    let mut created = fixture("post_created_first_post");
    let body = String::from_utf8(created.body.clone())
        .unwrap()
        .replace("\"id\":1001", "\"id\":1006");
    created.body = body.into_bytes();
    let sig = discourse_relay::ingest::request::sign(SECRET.as_bytes(), &created.body);
    created.set_header("X-Discourse-Event-Signature", &sig);
    created.set_header("X-Discourse-Event-Id", "880001");
    assert_eq!(relay.post(&created.headers, created.body.clone()).0, 202);
    assert_eq!(relay.post_fixture("post_destroyed").0, 202);

    // Post 1002 is created, then edited inside the window: one message, edited text.
    let edited = fixture("post_edited");
    let v: serde_json::Value = serde_json::from_slice(&edited.body).unwrap();
    let mut post = v["post"].clone();
    post["raw"] = "the original text".into();
    post["cooked"] = "<p>the original text</p>".into();
    post["version"] = 1.into();
    let body = serde_json::to_vec(&serde_json::json!({ "post": post })).unwrap();
    let mut f = fixture("post_created_first_post");
    f.set_header("X-Discourse-Event-Id", "880002");
    f.set_header(
        "X-Discourse-Event-Signature",
        &discourse_relay::ingest::request::sign(SECRET.as_bytes(), &body),
    );
    let started = Instant::now();
    assert_eq!(relay.post(&f.headers, body).0, 202);
    assert_eq!(relay.post_fixture("post_edited").0, 202);

    let got = mock.wait_for(1, WAIT);
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "delay not honoured"
    );
    // Accepted after the delete, so due after it: once the marker is
    // here, a destroyed post that slipped through would be too.
    let marker = relay.post_marker("post_created_first_post");
    let got2 = relay.settle(&mock, &marker, 1);
    assert_eq!(
        got2.len(),
        1,
        "the destroyed post must not be relayed: {got2:#?}"
    );
    let text = got[0].body.clone();
    assert!(
        text.contains("keep the lock scope short"),
        "edit not applied: {text}"
    );
    assert!(!text.contains("the original text"));
}

#[test]
fn retries_honour_retry_after_then_dead_letter_permanent_errors() {
    let mock = Mock::start();
    mock.script([
        Reply::new(429, "slow down").header("Retry-After", "1"),
        Reply::new(500, "boom"),
        Reply::new(200, "{}"),
    ]);
    let bad = Mock::start();
    bad.always(Reply::new(404, "no_service"));
    let dir = temp();
    let cfg = write(
        dir.path(),
        "relay.toml",
        config(
            "0s",
            &[("flaky", &mock.url("/f")), ("gone", &bad.url("/g"))],
            "",
        ),
    );
    let relay = Relay::start(&cfg, &dir.path().join("data"), &[]);
    assert_eq!(relay.post_fixture("post_created_first_post").0, 202);

    let got = mock.wait_for(3, WAIT);
    let gap = got[1].at - got[0].at;
    assert!(
        gap >= Duration::from_millis(950),
        "Retry-After ignored: {gap:?}"
    );
    assert_eq!(got[0].body, got[2].body, "the retry sends the same message");

    let s = relay.wait_status("dead letter", |s| {
        s["chats"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "gone" && c["dead_letters"] == 1)
    });
    let gone = s["chats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "gone")
        .unwrap();
    assert!(
        gone["last_error"]["reason"]
            .as_str()
            .unwrap()
            .contains("404")
    );
    assert_eq!(bad.requests().len(), 1, "a permanent error is not retried");
    let flaky = s["chats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "flaky")
        .unwrap();
    assert_eq!(flaky["delivered"], 1);

    let metrics = reqwest::blocking::get(relay.admin_url("/metrics"))
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("discourse_relay_retries_total{chat=\"flaky\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("discourse_relay_dead_letters_total{chat=\"gone\"} 1"),
        "{metrics}"
    );
}

#[test]
fn a_broken_chat_does_not_delay_the_others() {
    let slow = Mock::start();
    slow.always(Reply::new(503, "down"));
    let fast = Mock::start();
    let dir = temp();
    let cfg = write(
        dir.path(),
        "relay.toml",
        config(
            "0s",
            &[("broken", &slow.url("/s")), ("healthy", &fast.url("/f"))],
            "",
        ),
    );
    let relay = Relay::start(&cfg, &dir.path().join("data"), &[]);
    for name in [
        "post_created_first_post",
        "post_created_reply_group_mention",
        "post_created_subcategory",
    ] {
        assert_eq!(relay.post_fixture(name).0, 202);
    }
    let got = fast.wait_for(3, Duration::from_secs(5));
    // Order per chat is the order of acceptance.
    let numbers: Vec<u64> = got
        .iter()
        .map(|r| r.json()["post"]["number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, vec![1, 3, 2]);
}

#[test]
fn reloads_by_file_edit_rename_symlink_sighup_and_http() {
    let a = Mock::start();
    let b = Mock::start();
    let dir = temp();
    let conf_dir = dir.path().join("conf");
    std::fs::create_dir(&conf_dir).unwrap();
    // Kubernetes layout: subscriptions.toml -> ..data/subscriptions.toml, ..data -> ..v1
    let v1 = conf_dir.join("..v1");
    std::fs::create_dir(&v1).unwrap();
    write(
        &v1,
        "subscriptions.toml",
        config("0s", &[("a", &a.url("/a"))], ""),
    );
    std::os::unix::fs::symlink("..v1", conf_dir.join("..data")).unwrap();
    std::os::unix::fs::symlink(
        "..data/subscriptions.toml",
        conf_dir.join("subscriptions.toml"),
    )
    .unwrap();
    let cfg = conf_dir.join("subscriptions.toml");
    let relay = Relay::start(&cfg, &dir.path().join("data"), &[]);
    let chats = |r: &Relay| -> Vec<String> {
        r.status()["chats"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(chats(&relay), vec!["a"]);

    // 1. Symlink swap, as a ConfigMap update does it.
    let v2 = conf_dir.join("..v2");
    std::fs::create_dir(&v2).unwrap();
    write(
        &v2,
        "subscriptions.toml",
        config("0s", &[("b", &b.url("/b"))], ""),
    );
    std::os::unix::fs::symlink("..v2", conf_dir.join("..data_tmp")).unwrap();
    std::fs::rename(conf_dir.join("..data_tmp"), conf_dir.join("..data")).unwrap();
    relay.wait_status("symlink swap reload", |s| s["chats"][0]["name"] == "b");
    assert_eq!(relay.post_fixture("post_created_first_post").0, 202);
    b.wait_for(1, WAIT);

    // 2. A broken file is rejected; the old config keeps serving.
    let plain = dir.path().join("plain.toml");
    write(
        dir.path(),
        "plain.toml",
        config("0s", &[("b", &b.url("/b"))], ""),
    );
    let relay2 = Relay::start(&plain, &dir.path().join("data2"), &[]);
    write(
        dir.path(),
        "plain.toml",
        "[discourse]\nurl = \"https://forum.example.org\"\n[[chat]]\nname = 1\n",
    );
    relay2.wait_status("rejected reload", |s| {
        s["config"]["last_reload"]["ok"] == false
    });
    let resp = reqwest::blocking::Client::new()
        .post(relay2.admin_url("/-/reload"))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let j: serde_json::Value = resp.json().unwrap();
    assert_eq!(j["ok"], false);
    let err = j["errors"][0].as_str().unwrap();
    assert!(err.contains("plain.toml:4:8: error"), "{err}");
    assert_eq!(
        relay2.status()["chats"][0]["name"],
        "b",
        "old config keeps serving"
    );
    let metrics = reqwest::blocking::get(relay2.admin_url("/metrics"))
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("discourse_relay_config_last_reload_successful 0"),
        "{metrics}"
    );

    // 3. Editor-style rename-replace with a valid file.
    let tmp = dir.path().join(".plain.toml.swp");
    std::fs::write(&tmp, config("0s", &[("c", &a.url("/c"))], "")).unwrap();
    std::fs::rename(&tmp, &plain).unwrap();
    relay2.wait_status("rename reload", |s| s["chats"][0]["name"] == "c");

    // 4. In-place edit without a watcher event is picked up by SIGHUP and by HTTP.
    write(
        dir.path(),
        "plain.toml",
        config("0s", &[("d", &a.url("/d"))], ""),
    );
    relay2.signal("HUP");
    relay2.wait_status("sighup reload", |s| s["chats"][0]["name"] == "d");
    write(
        dir.path(),
        "plain.toml",
        config("0s", &[("e", &a.url("/e"))], ""),
    );
    let resp = reqwest::blocking::Client::new()
        .post(relay2.admin_url("/-/reload"))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(relay2.status()["chats"][0]["name"], "e");
    let history = relay2.status()["config"]["history"]
        .as_array()
        .unwrap()
        .len();
    assert!(history >= 4, "reload history kept");
}

#[test]
fn kill_9_loses_nothing_that_was_accepted() {
    let dir = temp();
    let data = dir.path().join("data");
    // First run: the chat's server is down (nothing listens on the port).
    let dead_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg = write(
        dir.path(),
        "relay.toml",
        config(
            "0s",
            &[("hook", &format!("http://127.0.0.1:{dead_port}/hook"))],
            "",
        ),
    );
    let relay = Relay::start(&cfg, &data, &[]);
    let names = [
        "post_created_first_post",
        "post_created_reply_group_mention",
        "post_created_subcategory",
        "post_created_hostile_content",
    ];
    for n in names {
        assert_eq!(relay.post_fixture(n).0, 202);
    }
    relay.kill9();

    // Second run on the same data dir, chat server up.
    let mock = Mock::start();
    write(
        dir.path(),
        "relay.toml",
        config("0s", &[("hook", &mock.url("/hook"))], ""),
    );
    let relay = Relay::start(&cfg, &data, &[]);
    let got = mock.wait_for(4, Duration::from_secs(20));
    let ids: Vec<u64> = got
        .iter()
        .map(|r| r.json()["post"]["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![1001, 1003, 1012, 1016], "all delivered, in order");
    let marker = relay.post_marker("post_created_first_post");
    let sent = relay.settle(&mock, &marker, 1);
    assert_eq!(sent.len(), 4, "none twice: {sent:#?}");
    drop(relay);
}

#[test]
fn kill_9_after_the_queue_drained_re_sends_nothing() {
    let mock = Mock::start();
    let dir = temp();
    let data = dir.path().join("data");
    let cfg = write(
        dir.path(),
        "relay.toml",
        config("0s", &[("hook", &mock.url("/hook"))], ""),
    );
    let relay = Relay::start(&cfg, &data, &[]);
    let names = [
        "post_created_first_post",
        "post_created_reply_group_mention",
        "post_created_subcategory",
    ];
    for n in names {
        assert_eq!(relay.post_fixture(n).0, 202);
    }
    mock.wait_for(3, WAIT);
    // Between bursts: the ack that emptied the queue was durable, so a
    // kill at once (before the once-a-second sync) loses none of the acks.
    relay.wait_status("the queue drained", |s| s["chats"][0]["queue_depth"] == 0);
    relay.kill9();
    let relay = Relay::start(&cfg, &data, &[]);
    let marker = relay.post_marker("post_created_first_post");
    let sent = relay.settle(&mock, &marker, 1);
    assert_eq!(sent.len(), 3, "re-sent after the kill: {sent:#?}");
}

#[test]
fn test_message_admin_token_and_graceful_stop() {
    let mock = Mock::start();
    let dir = temp();
    let cfg = write(
        dir.path(),
        "relay.toml",
        config("0s", &[("hook", &mock.url("/hook"))], "").replace(
            "[server]\n",
            "[server]\nadmin_token = \"${RELAY_ADMIN_TOKEN}\"\n",
        ),
    );
    let mut relay = Relay::start(
        &cfg,
        &dir.path().join("data"),
        &[("RELAY_ADMIN_TOKEN", "admin-canary-7")],
    );
    let client = reqwest::blocking::Client::new();
    assert_eq!(
        client
            .get(relay.admin_url("/api/status"))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    assert_eq!(
        client
            .get(relay.admin_url("/api/status"))
            .bearer_auth("wrong")
            .send()
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    assert_eq!(
        client
            .get(relay.admin_url("/healthz"))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    let r = client
        .post(relay.admin_url("/api/chats/hook/test"))
        .bearer_auth("admin-canary-7")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let got = mock.wait_for(1, WAIT);
    assert!(
        got[0].body.contains("Test message from discourse-relay"),
        "{}",
        got[0].body
    );
    let page = client
        .get(relay.admin_url("/"))
        .bearer_auth("admin-canary-7")
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        page.contains("hook") && page.contains("watch all"),
        "{page}"
    );
    assert!(!page.contains("admin-canary-7") && !relay.logs().contains("admin-canary-7"));

    relay.signal("TERM");
    let end = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = relay.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}

#[test]
fn learns_pm_groups_and_categories_from_the_discourse_api() {
    let forum = Mock::start();
    let api_file = |name: &str| {
        std::fs::read_to_string(root().join(format!("tests/fixtures/api/{name}.json"))).unwrap()
    };
    forum.route(
        "/site.json",
        Reply::new(200, &api_file("site")).header("content-type", "application/json"),
    );
    forum.route(
        "/t/104.json",
        Reply::new(200, &api_file("t_104")).header("content-type", "application/json"),
    );
    let chat = Mock::start();
    let dir = temp();
    let toml = format!(
        "[discourse]\nurl = \"{}\"\nwebhook_secret = \"${{DISCOURSE_WEBHOOK_SECRET}}\"\napi_key = \"${{DISCOURSE_API_KEY}}\"\ndelay = \"1s\"\n\n\
[[chat]]\nname = \"inbox\"\nprovider = \"webhook\"\nurl = \"{}\"\nrate_limit = \"100/s\"\n\
[[chat.rule]]\ntype = \"group_message\"\ngroup = \"support-team\"\n\n\
[[chat]]\nname = \"rust\"\nprovider = \"webhook\"\nurl = \"{}\"\nrate_limit = \"100/s\"\nsubscribe = [\"c/development/rust\"]\n",
        forum.url(""),
        chat.url("/inbox"),
        chat.url("/rust"),
    );
    let cfg = write(dir.path(), "relay.toml", &toml);
    let relay = Relay::start(
        &cfg,
        &dir.path().join("data"),
        &[("DISCOURSE_API_KEY", "api-canary-99")],
    );
    // /site.json is fetched at start: category 9 is development/rust, not
    // just "rust". The mock seeing the request is not the relay knowing the
    // answer: wait for the line it logs once it has learned it.
    relay.wait_log("categories learned", |l| {
        l.contains("learned categories from /site.json")
    });
    for name in ["post_created_private_message", "post_created_subcategory"] {
        let mut f = fixture(name);
        f.set_header("X-Discourse-Instance", &forum.url(""));
        assert_eq!(relay.post(&f.headers, f.body).0, 202);
    }
    let got = chat.wait_for(2, WAIT);
    let mut paths: Vec<&str> = got.iter().map(|r| r.path.as_str()).collect();
    paths.sort();
    assert_eq!(paths, vec!["/inbox", "/rust"]);
    let asked: Vec<String> = forum.requests().iter().map(|r| r.path.clone()).collect();
    assert!(asked.contains(&"/t/104.json".to_string()), "{asked:?}");
    for r in forum.requests() {
        assert_eq!(r.header("api-key"), Some("api-canary-99"));
        assert_eq!(r.header("api-username"), Some("system"));
    }
    assert!(!relay.logs().contains("api-canary-99"));
}

#[test]
fn several_forums_share_one_relay_by_instance_header() {
    let chat = Mock::start();
    let dir = temp();
    let toml = format!(
        "[discourse]\nurl = \"https://forum.example.org\"\nwebhook_secret = \"${{DISCOURSE_WEBHOOK_SECRET}}\"\ndelay = \"0s\"\n\n\
[forums.meta]\nurl = \"https://meta.example.org/\"\nwebhook_secret = \"${{META_SECRET}}\"\ndelay = \"0s\"\n\n\
[[chat]]\nname = \"main\"\nprovider = \"webhook\"\nurl = \"{}\"\nrate_limit = \"100/s\"\nsubscribe = [\"all\"]\n\n\
[[chat]]\nname = \"meta\"\nforum = \"meta\"\nprovider = \"webhook\"\nurl = \"{}\"\nrate_limit = \"100/s\"\nsubscribe = [\"all\"]\n",
        chat.url("/main"),
        chat.url("/meta"),
    );
    let cfg = write(dir.path(), "relay.toml", &toml);
    let relay = Relay::start(
        &cfg,
        &dir.path().join("data"),
        &[("META_SECRET", "meta-secret-123")],
    );

    assert_eq!(relay.post_fixture("post_created_first_post").0, 202);
    let mut f = fixture("post_created_reply_group_mention");
    f.set_header("X-Discourse-Instance", "https://meta.example.org");
    // Signed with the main forum's secret: wrong for meta.
    assert_eq!(relay.post(&f.headers, f.body.clone()).0, 401);
    let sig = discourse_relay::ingest::request::sign(b"meta-secret-123", &f.body);
    f.set_header("X-Discourse-Event-Signature", &sig);
    assert_eq!(relay.post(&f.headers, f.body.clone()).0, 202);

    // A marker per forum (each reaches its forum's chat) bounds what the
    // four requests above delivered.
    let main_marker = relay.post_marker("post_created_first_post");
    let (meta_marker, mut f) = marker_fixture("post_created_reply_group_mention");
    f.set_header("X-Discourse-Instance", "https://meta.example.org");
    let sig = discourse_relay::ingest::request::sign(b"meta-secret-123", &f.body);
    f.set_header("X-Discourse-Event-Signature", &sig);
    assert_eq!(relay.post(&f.headers, f.body).0, 202);
    relay.settle(&chat, &main_marker, 1);
    relay.settle(&chat, &meta_marker, 1);
    let got: Vec<Recorded> = chat
        .requests()
        .into_iter()
        .filter(|r| !r.body.contains(&main_marker) && !r.body.contains(&meta_marker))
        .collect();
    let mut seen: Vec<(String, String)> = got
        .iter()
        .map(|r| {
            (
                r.path.clone(),
                r.json()["forum"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(got.len(), 2);
    assert_eq!(
        seen,
        vec![
            ("/main".to_string(), "https://forum.example.org".to_string()),
            ("/meta".to_string(), "https://meta.example.org".to_string())
        ]
    );
}
