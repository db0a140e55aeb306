//! Limits on what outside input can make the relay hold, through the real
//! binary: connections per listener, oversized bodies (counted, not just
//! refused) and Discourse API topic fetches.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

const WAIT: Duration = Duration::from_secs(15);

fn metrics(relay: &Relay) -> String {
    reqwest::blocking::get(relay.admin_url("/metrics"))
        .unwrap()
        .text()
        .unwrap()
}

#[track_caller]
fn assert_line(text: &str, line: &str) {
    assert!(
        text.lines().any(|l| l == line),
        "no line {line:?} in:\n{text}"
    );
}

/// A raw `GET /healthz` on a new connection; the whole answer.
fn raw_get(addr: std::net::SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
}

#[test]
fn a_full_listener_answers_503_at_once_and_the_admin_listener_still_answers() {
    let mock = Mock::start();
    let dir = temp();
    let cfg = write(
        dir.path(),
        "relay.toml",
        config(
            "0s",
            &[("hook", &mock.url("/hook"))],
            "max_connections = 2\n",
        ),
    );
    let relay = Relay::start(&cfg, &dir.path().join("data"), &[]);

    // Two idle connections take both slots. The relay accepts in arrival
    // order, so they are admitted before any connection opened after them.
    let mut idle: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(relay.public).unwrap())
        .collect();

    // The third gets a complete 503 with Retry-After, not a hang.
    let answer = raw_get(relay.public);
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer:?}");
    assert!(answer.contains("retry-after: 1\r\n"), "{answer:?}");
    assert!(answer.contains("max_connections"), "{answer:?}");
    // So does Discourse's webhook POST (the client reads the 503 whole).
    let (status, body) = relay.post_fixture("post_created_first_post");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("too many connections"), "{body}");

    // The admin listener has its own limit: it still answers, and shows it.
    assert_eq!(
        reqwest::blocking::get(relay.admin_url("/healthz"))
            .unwrap()
            .status(),
        200
    );
    let text = metrics(&relay);
    assert_line(
        &text,
        r#"discourse_relay_connections_refused_total{listener="public"} 2"#,
    );
    assert_line(
        &text,
        r#"discourse_relay_connections_open{listener="public"} 2"#,
    );
    assert_line(
        &text,
        r#"discourse_relay_connections_refused_total{listener="admin"} 0"#,
    );

    // One idle client leaves: its slot is served again.
    drop(idle.pop());
    let end = Instant::now() + WAIT;
    loop {
        let (status, body) = relay.post_fixture("post_created_first_post");
        if status == 202 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(Instant::now() < end, "the freed slot was never served");
        std::thread::sleep(Duration::from_millis(50));
    }
    mock.wait_for(1, WAIT);
    drop(idle);
}

#[test]
fn an_oversized_webhook_is_answered_413_and_counted() {
    let mock = Mock::start();
    let dir = temp();
    let cfg = write(
        dir.path(),
        "relay.toml",
        config("0s", &[("hook", &mock.url("/hook"))], "body_limit = 1000\n"),
    );
    let relay = Relay::start(&cfg, &dir.path().join("data"), &[]);
    let too_large =
        r#"discourse_relay_events_received_total{event="post_created",outcome="too_large"}"#;
    assert_line(&metrics(&relay), &format!("{too_large} 0"));

    let f = fixture("post_created_first_post");
    let (status, body) = relay.post(&f.headers, vec![b' '; 2000]);
    assert_eq!(status, 413, "{body}");
    assert!(
        body.contains("1000-byte limit") && body.contains("body_limit"),
        "{body}"
    );
    assert_line(&metrics(&relay), &format!("{too_large} 1"));

    // A chunked body (no Content-Length) over the limit is counted too.
    let mut s = TcpStream::connect(relay.public).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut head = String::from("POST /webhooks/discourse HTTP/1.1\r\nHost: relay\r\n");
    for (k, v) in &f.headers {
        if !k.eq_ignore_ascii_case("content-length") && !k.eq_ignore_ascii_case("host") {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    head.push_str("Transfer-Encoding: chunked\r\n\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let chunk = vec![b' '; 1500];
    let _ = s
        .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
        .and_then(|_| s.write_all(&chunk))
        .and_then(|_| s.write_all(b"\r\n0\r\n\r\n"));
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer:?}");
    assert_line(&metrics(&relay), &format!("{too_large} 2"));

    // The real fixture (1681 bytes) is over this limit too; nothing
    // oversized was delivered.
    assert_eq!(relay.post_fixture("post_created_first_post").0, 413);
    assert_line(&metrics(&relay), &format!("{too_large} 3"));
    assert!(mock.requests().is_empty());
}

/// A forum mock answering `/site.json` with the API fixture.
fn forum() -> Mock {
    let forum = Mock::start();
    let site = std::fs::read_to_string(root().join("tests/fixtures/api/site.json")).unwrap();
    forum.route(
        "/site.json",
        Reply::new(200, &site).header("content-type", "application/json"),
    );
    forum
}

fn forum_toml(table: &str, url: &str) -> String {
    format!(
        "{table}\nurl = \"{url}\"\nwebhook_secret = \"${{DISCOURSE_WEBHOOK_SECRET}}\"\napi_key = \"${{DISCOURSE_API_KEY}}\"\ndelay = \"5s\"\n\n"
    )
}

fn topic_requests(forum: &Mock) -> Vec<Recorded> {
    forum
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/t/"))
        .collect()
}

fn wait_topic_requests(forum: &Mock, n: usize) -> Vec<Recorded> {
    let end = Instant::now() + WAIT;
    loop {
        let got = topic_requests(forum);
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < end,
            "forum got {} topic fetches, expected {n}: {got:#?}",
            got.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn two_forums_topics_with_the_same_id_are_fetched_each() {
    let (a, b) = (forum(), forum());
    // Forum A never answers in time: its fetch of topic 101 stays in flight.
    a.route(
        "/t/101.json",
        Reply::new(404, "{}").delay(Duration::from_secs(60)),
    );
    b.route("/t/101.json", Reply::new(404, "{}"));
    let chat = Mock::start();
    let dir = temp();
    let toml = format!(
        "{}{}[[chat]]\nname = \"hook\"\nprovider = \"webhook\"\nurl = \"{}\"\nsubscribe = [\"all\"]\n",
        forum_toml("[discourse]", &a.url("")),
        forum_toml("[forums.b]", &b.url("")),
        chat.url("/hook"),
    );
    let cfg = write(dir.path(), "relay.toml", &toml);
    let relay = Relay::start(
        &cfg,
        &dir.path().join("data"),
        &[("DISCOURSE_API_KEY", "api-key")],
    );
    for (forum, url) in [(&a, a.url("")), (&b, b.url(""))] {
        let mut f = fixture("post_created_first_post");
        f.set_header("X-Discourse-Instance", &url);
        assert_eq!(relay.post(&f.headers, f.body).0, 202);
        // Topic 101 of forum B is not topic 101 of forum A: both are asked.
        let got = wait_topic_requests(forum, 1);
        assert_eq!(got[0].path, "/t/101.json");
    }
}

#[test]
fn topic_fetches_run_a_few_at_a_time() {
    const HOLD: Duration = Duration::from_secs(2);
    let forum = forum();
    // Every topic answer is held: a fetch beyond the limit can only start
    // once an earlier one was answered.
    forum.always(Reply::new(404, "{}").delay(HOLD));
    let chat = Mock::start();
    let dir = temp();
    let toml = format!(
        "{}[[chat]]\nname = \"hook\"\nprovider = \"webhook\"\nurl = \"{}\"\nsubscribe = [\"all\"]\n",
        forum_toml("[discourse]", &forum.url("")),
        chat.url("/hook"),
    );
    let cfg = write(dir.path(), "relay.toml", &toml);
    let relay = Relay::start(
        &cfg,
        &dir.path().join("data"),
        &[("DISCOURSE_API_KEY", "api-key")],
    );
    for topic in 0..6u64 {
        let mut f = edited_fixture("post_created_first_post", |v| {
            v["post"]["topic_id"] = (5000 + topic).into();
        });
        f.set_header("X-Discourse-Instance", &forum.url(""));
        assert_eq!(relay.post(&f.headers, f.body).0, 202);
    }
    let mut got = wait_topic_requests(&forum, 6);
    got.sort_by_key(|r| r.at);
    let mut paths: Vec<&str> = got.iter().map(|r| r.path.as_str()).collect();
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), 6, "{paths:?}");
    // Causality, not speed: with 4 at a time, the 5th fetch was sent after
    // the first answer, which the mock held for HOLD after the first request.
    // All six at once would have arrived within moments of each other.
    let first = got[0].at;
    for (i, r) in got.iter().enumerate().skip(4) {
        assert!(
            r.at.duration_since(first) >= HOLD,
            "fetch {} started {:?} after the first, before any answer",
            i + 1,
            r.at.duration_since(first)
        );
    }
}
