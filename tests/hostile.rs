//! Hostile input against the real binary: forged, replayed, malformed,
//! oversized and slow webhooks against `serve`, and hostile configs through
//! `validate` / `explain`. Each case states the clean answer expected (a
//! status code or exit code and a one-line reason), never a crash or a hang.
//! RELIABILITY.md "Fuzzing and hostile input" lists the scenarios.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use discourse_relay::ingest::request::sign;

/// A relay with one webhook chat (to a mock) watching everything, no delay.
fn relay(dir: &Path, mock: &Mock) -> Relay {
    let cfg = write(
        dir,
        "relay.toml",
        config("0s", &[("hook", &mock.url("/hook"))], ""),
    );
    Relay::start(&cfg, &dir.join("data"), &[])
}

/// Kilobytes of `field` (VmRSS, VmHWM) in /proc/<pid>/status.
fn proc_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn healthy(relay: &Relay) {
    let url = format!("http://{}/healthz", relay.public);
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let resp = client.get(&url).send().unwrap();
    assert_eq!(resp.status().as_u16(), 200, "relay unhealthy");
}

// ---------------------------------------------------------------------------
// Webhooks

/// Request headers and body.
type Request = (Vec<(String, String)>, Vec<u8>);

/// What a case does to the recorded `post_created_first_post` request.
struct Case {
    name: &'static str,
    /// Builds (headers, body) from the fixture.
    make: fn() -> Request,
    status: u16,
    /// A piece of the answer's one-line reason.
    reason: &'static str,
}

fn signed(body: Vec<u8>) -> Request {
    let mut f = fixture("post_created_first_post");
    f.set_header(
        "X-Discourse-Event-Signature",
        &sign(SECRET.as_bytes(), &body),
    );
    (f.headers, body)
}

fn with_header(name: &str, value: &str) -> Request {
    let mut f = fixture("post_created_first_post");
    f.set_header(name, value);
    (f.headers, f.body)
}

fn nested(depth: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(2 * depth + 16);
    b.extend_from_slice(b"{\"post\":");
    b.extend(std::iter::repeat_n(b'[', depth));
    b.extend(std::iter::repeat_n(b']', depth));
    b.push(b'}');
    b
}

const CASES: &[Case] = &[
    Case {
        name: "wrong signature",
        make: || {
            with_header(
                "X-Discourse-Event-Signature",
                &format!("sha256={}", "0".repeat(64)),
            )
        },
        status: 401,
        reason: "signature does not match",
    },
    Case {
        name: "signature made with another secret",
        make: || {
            let f = fixture("post_created_first_post");
            let sig = sign(b"not-the-secret", &f.body);
            with_header("X-Discourse-Event-Signature", &sig)
        },
        status: 401,
        reason: "signature does not match",
    },
    Case {
        name: "signature of another body",
        make: || {
            let (h, mut body) = signed(fixture("post_created_first_post").body);
            let at = body.iter().position(|&b| b == b'1').unwrap();
            body[at] = b'2';
            (h, body)
        },
        status: 401,
        reason: "signature does not match",
    },
    Case {
        name: "missing signature",
        make: || {
            let mut f = fixture("post_created_first_post");
            f.headers
                .retain(|(k, _)| !k.eq_ignore_ascii_case("X-Discourse-Event-Signature"));
            (f.headers, f.body)
        },
        status: 401,
        reason: "missing X-Discourse-Event-Signature",
    },
    Case {
        name: "malformed signature (md5=, not hex)",
        make: || with_header("X-Discourse-Event-Signature", "md5=zz"),
        status: 401,
        reason: "malformed",
    },
    Case {
        name: "signature not hex",
        make: || with_header("X-Discourse-Event-Signature", "sha256=xyz"),
        status: 401,
        reason: "malformed",
    },
    Case {
        name: "unknown X-Discourse-Instance",
        make: || with_header("X-Discourse-Instance", "https://evil.example.net"),
        status: 403,
        reason: "unknown X-Discourse-Instance",
    },
    Case {
        name: "truncated JSON",
        make: || {
            let mut body = fixture("post_created_first_post").body;
            body.truncate(body.len() / 2);
            signed(body)
        },
        status: 400,
        reason: "not valid JSON",
    },
    Case {
        name: "non-UTF-8 bytes",
        make: || signed(b"{\"post\":{\"id\":1,\"raw\":\"\xff\xfe\xc0\x80\"}}".to_vec()),
        status: 400,
        reason: "not valid JSON",
    },
    Case {
        name: "empty body",
        make: || signed(Vec::new()),
        status: 400,
        reason: "not valid JSON",
    },
    Case {
        name: "topic with 100k nested tags",
        make: || {
            let mut f = fixture("topic_created");
            let body = format!(
                r#"{{"topic":{{"id":101,"title":"t","tags":{}{}}}}}"#,
                "[".repeat(100_000),
                "]".repeat(100_000)
            )
            .into_bytes();
            f.set_header(
                "X-Discourse-Event-Signature",
                &sign(SECRET.as_bytes(), &body),
            );
            (f.headers, body)
        },
        status: 400,
        reason: "recursion limit exceeded",
    },
    Case {
        // Nesting is refused by the payload's typed, depth-limited parse
        // (no JSON tree is built); either way a clean 400, never a crash.
        name: "100k nested arrays",
        make: || signed(nested(100_000)),
        status: 400,
        reason: "invalid post payload",
    },
    Case {
        name: "100k nested objects",
        make: || {
            let mut b = b"{\"post\":".to_vec();
            b.extend("{\"a\":".repeat(100_000).bytes());
            b.extend(b"1");
            b.extend(std::iter::repeat_n(b'}', 100_001));
            signed(b)
        },
        status: 400,
        reason: "invalid post payload",
    },
    Case {
        name: "wrong types: post.id a string",
        make: || signed(br#"{"post":{"id":"x"}}"#.to_vec()),
        status: 400,
        reason: "invalid post payload",
    },
    Case {
        name: "wrong types: post an array",
        make: || signed(br#"{"post":[1,2,3]}"#.to_vec()),
        status: 400,
        reason: "invalid post payload",
    },
    Case {
        name: "wrong types: topic_id negative",
        make: || signed(br#"{"post":{"id":1,"topic_id":-1}}"#.to_vec()),
        status: 400,
        reason: "invalid post payload",
    },
    Case {
        name: "envelope with two keys",
        make: || signed(br#"{"post":{},"topic":{}}"#.to_vec()),
        status: 400,
        reason: "one key",
    },
    Case {
        name: "envelope not an object",
        make: || signed(b"[1]".to_vec()),
        status: 400,
        reason: "an array",
    },
    Case {
        name: "missing X-Discourse-Event",
        make: || {
            let (mut h, b) = signed(fixture("post_created_first_post").body);
            h.retain(|(k, _)| !k.eq_ignore_ascii_case("X-Discourse-Event"));
            (h, b)
        },
        status: 400,
        reason: "missing X-Discourse-Event",
    },
    Case {
        name: "unknown event name",
        make: || {
            let mut f = fixture("user_created");
            f.set_header("X-Discourse-Event", "made_up_event_from_the_future");
            (f.headers, f.body)
        },
        status: 200,
        reason: "ignored",
    },
    Case {
        name: "event name full of junk",
        make: || {
            let mut f = fixture("user_created");
            f.set_header("X-Discourse-Event", "../../admin%00<script>");
            (f.headers, f.body)
        },
        status: 200,
        reason: "ignored",
    },
    Case {
        name: "cooked HTML nested 100k tags deep",
        make: || {
            let f = fixture("post_created_first_post");
            let mut v: serde_json::Value = serde_json::from_slice(&f.body).unwrap();
            let cooked = format!(
                "{}x{}",
                "<div><b>".repeat(50_000),
                "</b></div>".repeat(50_000)
            );
            v["post"]["cooked"] = cooked.into();
            v["post"]["id"] = 999_001.into();
            let (mut h, b) = signed(serde_json::to_vec(&v).unwrap());
            h.retain(|(k, _)| !k.eq_ignore_ascii_case("X-Discourse-Event-Id"));
            h.push(("X-Discourse-Event-Id".into(), "999001".into()));
            (h, b)
        },
        status: 202,
        reason: "accepted",
    },
    // Replays: the same request twice, then the same body under a new id.
    Case {
        name: "first delivery",
        make: || {
            let f = fixture("post_created_first_post");
            (f.headers, f.body)
        },
        status: 202,
        reason: "accepted",
    },
    Case {
        name: "replayed request",
        make: || {
            let f = fixture("post_created_first_post");
            (f.headers, f.body)
        },
        status: 200,
        reason: "duplicate",
    },
    Case {
        name: "replayed body under a new X-Discourse-Event-Id",
        make: || with_header("X-Discourse-Event-Id", "999999"),
        status: 200,
        reason: "duplicate",
    },
];

#[test]
fn hostile_webhooks_get_clean_answers() {
    let mock = Mock::start();
    let dir = temp();
    let mut relay = relay(dir.path(), &mock);
    let mut wrong = Vec::new();
    for case in CASES {
        let (headers, body) = (case.make)();
        let (status, answer) = relay.post(&headers, body);
        if status != case.status || !answer.contains(case.reason) {
            wrong.push(format!(
                "{}: got {status} {answer:?}, expected {} containing {:?}",
                case.name, case.status, case.reason
            ));
        }
        // Whatever came before, the relay still answers.
        healthy(&relay);
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // Only the two good events were delivered, each once: everything the
    // cases queued arrives before a marker accepted after them.
    let marker = relay.post_marker("post_created_first_post");
    let sent = relay.settle(&mock, &marker, 1);
    assert_eq!(sent.len(), 2, "{sent:#?}");
    // Still the same process, alive and serving.
    assert!(
        relay.child.try_wait().unwrap().is_none(),
        "the relay exited:\n{}",
        relay.logs()
    );
    healthy(&relay);
    assert!(!relay.logs().contains("panicked"), "{}", relay.logs());
}

#[test]
fn an_unknown_event_with_a_post_payload_is_ignored_not_stored() {
    let mock = Mock::start();
    let dir = temp();
    let relay = relay(dir.path(), &mock);
    let mut f = fixture("post_created_first_post");
    f.set_header("X-Discourse-Event", "made_up_event");
    f.set_header("X-Discourse-Event-Id", "424242");
    let (status, answer) = relay.post(&f.headers, f.body);
    assert_eq!(
        (status, answer.trim()),
        (200, "ignored: `made_up_event` events are not relayed")
    );
    // The real event with the same body is not a duplicate of it.
    let (status, answer) = relay.post_fixture("post_created_first_post");
    assert_eq!(status, 202, "{answer}");
    mock.wait_for(1, Duration::from_secs(15));
}

/// Sends `len` bytes of body in 1 MiB chunks on one connection, reading the
/// answer concurrently. Returns (status line, bytes the relay took).
fn send_huge(relay: &Relay, len: usize, chunked: bool) -> (String, usize) {
    let mut stream = TcpStream::connect(relay.public).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let f = fixture("post_created_first_post");
    let mut head = String::from("POST /webhooks/discourse HTTP/1.1\r\nHost: relay\r\n");
    for (k, v) in &f.headers {
        if !k.eq_ignore_ascii_case("content-length") && !k.eq_ignore_ascii_case("host") {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    if chunked {
        head.push_str("Transfer-Encoding: chunked\r\n\r\n");
    } else {
        head.push_str(&format!("Content-Length: {len}\r\n\r\n"));
    }
    stream.write_all(head.as_bytes()).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let chunk = vec![b' '; 1 << 20];
        let mut sent = 0;
        while sent < len {
            let n = chunk.len().min(len - sent);
            let ok = if chunked {
                writer
                    .write_all(format!("{n:x}\r\n").as_bytes())
                    .and_then(|_| writer.write_all(&chunk[..n]))
                    .and_then(|_| writer.write_all(b"\r\n"))
            } else {
                writer.write_all(&chunk[..n])
            };
            if ok.is_err() {
                break;
            }
            sent += n;
        }
        if chunked && sent == len {
            let _ = writer.write_all(b"0\r\n\r\n");
        }
        sent
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    // The status line is enough; then stop reading and let the sender end.
    while !answer.windows(2).any(|w| w == b"\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let sent = sender.join().unwrap();
    let text = String::from_utf8_lossy(&answer);
    (text.lines().next().unwrap_or("").to_string(), sent)
}

#[test]
fn a_100_mb_body_is_refused_without_buffering_it() {
    let mock = Mock::start();
    let dir = temp();
    let relay = relay(dir.path(), &mock);
    let pid = relay.child.id();
    healthy(&relay);
    let (rss0, hwm0) = (proc_kb(pid, "VmRSS"), proc_kb(pid, "VmHWM"));
    for chunked in [false, true] {
        let (status, sent) = send_huge(&relay, 100 << 20, chunked);
        assert!(
            status.starts_with("HTTP/1.1 413"),
            "chunked={chunked}: {status:?} after {sent} bytes"
        );
        eprintln!("chunked={chunked}: {status} after the client sent {sent} bytes");
    }
    healthy(&relay);
    let (rss1, hwm1) = (proc_kb(pid, "VmRSS"), proc_kb(pid, "VmHWM"));
    eprintln!("relay RSS {rss0} -> {rss1} kB, peak {hwm0} -> {hwm1} kB");
    // The body limit is 1 MiB: the peak may grow by a few buffers, never by
    // the 100 MB the client offered.
    assert!(hwm1 < hwm0 + 32 * 1024, "peak RSS {hwm0} -> {hwm1} kB");
    assert!(rss1 < rss0 + 32 * 1024, "RSS {rss0} -> {rss1} kB");
    assert_eq!(relay.post_fixture("post_created_first_post").0, 202);
}

/// Opens a connection and sends `bytes` one per `every`; returns whether
/// the relay closed it (a failed write or a read of 0) before the end.
fn slow_client(relay: &Relay, bytes: &[u8], every: Duration) -> Option<Duration> {
    let mut stream = TcpStream::connect(relay.public).unwrap();
    stream.set_nonblocking(true).unwrap();
    let start = Instant::now();
    for b in bytes {
        if stream.write_all(&[*b]).is_err() {
            return Some(start.elapsed());
        }
        let mut buf = [0u8; 512];
        match stream.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => return Some(start.elapsed()), // an answer (408/400) ends it too
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return Some(start.elapsed()),
        }
        std::thread::sleep(every);
    }
    None
}

fn slow_request() -> Vec<u8> {
    let mut r = b"POST /webhooks/discourse HTTP/1.1\r\nHost: relay\r\n".to_vec();
    while r.len() < 4096 {
        r.extend_from_slice(b"X-Padding: slowly-slowly\r\n");
    }
    r
}

#[test]
fn slow_loris_clients_do_not_stop_other_requests() {
    let mock = Mock::start();
    let dir = temp();
    let relay = std::sync::Arc::new(relay(dir.path(), &mock));
    // 64 clients each sending headers one byte per second for 8 s.
    let slow: Vec<_> = (0..64)
        .map(|_| {
            let relay = relay.clone();
            std::thread::spawn(move || {
                slow_client(&relay, &slow_request()[..8], Duration::from_secs(1))
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let start = Instant::now();
    let mut worst = Duration::ZERO;
    let mut n = 0;
    while start.elapsed() < Duration::from_secs(5) {
        let t = Instant::now();
        healthy(&relay);
        let mut f = fixture("post_created_first_post");
        f.set_header("X-Discourse-Event-Id", &format!("{}", 10_000 + n));
        let (status, _) = relay.post(&f.headers, f.body);
        assert!(status == 202 || status == 200, "{status}");
        worst = worst.max(t.elapsed());
        n += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(n >= 10, "only {n} requests in 5 s");
    assert!(worst < Duration::from_secs(3), "slowest answer {worst:?}");
    for t in slow {
        t.join().unwrap();
    }
}

/// A relay whose listeners drop clients that take over 2 s for their
/// headers or their body (`[server] header_timeout`, `body_timeout`).
fn impatient_relay(dir: &Path, mock: &Mock) -> Relay {
    let cfg = write(
        dir,
        "relay.toml",
        config(
            "0s",
            &[("hook", &mock.url("/hook"))],
            "header_timeout = \"2s\"\nbody_timeout = \"2s\"\n",
        ),
    );
    Relay::start(&cfg, &dir.join("data"), &[])
}

#[test]
fn slow_loris_clients_are_dropped_after_the_header_timeout() {
    let mock = Mock::start();
    let dir = temp();
    let relay = impatient_relay(dir.path(), &mock);
    // Headers at 4 bytes/s would take 17 minutes.
    let closed = slow_client(&relay, &slow_request(), Duration::from_millis(250));
    let after = closed.expect("a client sending headers at 4 bytes/s was never dropped");
    eprintln!("slow headers: dropped after {after:?}");
    assert!(
        after >= Duration::from_millis(1500) && after < Duration::from_secs(6),
        "dropped after {after:?}; header_timeout is 2 s"
    );
    // Idle keep-alive is not a crime: a normal request still gets through.
    assert_eq!(relay.post_fixture("post_created_first_post").0, 202);
}

#[test]
fn slow_body_clients_get_408_after_the_body_timeout() {
    let mock = Mock::start();
    let dir = temp();
    let relay = impatient_relay(dir.path(), &mock);
    let f = fixture("post_created_first_post");
    let mut request = String::from("POST /webhooks/discourse HTTP/1.1\r\nHost: relay\r\n");
    for (k, v) in &f.headers {
        if !k.eq_ignore_ascii_case("content-length") && !k.eq_ignore_ascii_case("host") {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n", f.body.len()));
    let mut stream = TcpStream::connect(relay.public).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    // The headers are complete; now the body, 4 bytes/s.
    stream.set_nonblocking(true).unwrap();
    let start = Instant::now();
    let mut answer = Vec::new();
    let mut closed = None;
    // Read before each write: once the server has answered and closed, a
    // further write can draw a reset that discards the unread answer.
    let read_all = |stream: &TcpStream, answer: &mut Vec<u8>| -> bool {
        let mut buf = [0u8; 512];
        loop {
            match (&mut &*stream).read(&mut buf) {
                Ok(0) => return true,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
                Err(_) => return true,
            }
        }
    };
    for b in f.body.iter().take(200) {
        if read_all(&stream, &mut answer) {
            closed = Some(start.elapsed());
            break;
        }
        if stream.write_all(&[*b]).is_err() {
            read_all(&stream, &mut answer);
            closed = Some(start.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let after = closed.expect("a client sending its body at 4 bytes/s was never dropped");
    let answer = String::from_utf8_lossy(&answer);
    eprintln!("slow body: dropped after {after:?}: {answer:?}");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(
        answer.contains("request body not received in time"),
        "{answer:?}"
    );
    assert!(
        after >= Duration::from_millis(1500) && after < Duration::from_secs(6),
        "dropped after {after:?}; body_timeout is 2 s"
    );
    // Nothing of the half-sent event was stored or delivered (the same
    // event sent whole is new: 202, not a duplicate); the relay serves on.
    assert_eq!(relay.post_fixture("post_created_first_post").0, 202);
    let marker = relay.post_marker("post_created_first_post");
    let sent = relay.settle(&mock, &marker, 1);
    assert_eq!(sent.len(), 1, "{sent:#?}");
}

// ---------------------------------------------------------------------------
// Configs

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Runs the binary with `args`, killing it after `limit`.
fn run(args: &[&str], env: &[(&str, &str)], limit: Duration) -> Run {
    let out_dir = temp();
    let (out, err) = (out_dir.path().join("out"), out_dir.path().join("err"));
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{args:?} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code(),
        stdout: std::fs::read_to_string(out).unwrap_or_default(),
        stderr: std::fs::read_to_string(err).unwrap_or_default(),
        took: start.elapsed(),
    }
}

const HEAD: &str = "[discourse]\nurl = \"https://forum.example.org\"\n\n";

fn chat(name: &str, subscribe: &str) -> String {
    format!("[[chat]]\nname = \"{name}\"\nprovider = \"console\"\nsubscribe = [{subscribe}]\n\n")
}

fn nested_alternates(depth: usize) -> String {
    let mut g = String::from("z");
    for i in 0..depth {
        g = format!("{{a{i},{g}}}");
    }
    g
}

/// A config, the exit code `validate` must give (0 valid, 1 invalid), and a
/// piece of its output.
struct ConfigCase {
    name: &'static str,
    text: fn() -> Vec<u8>,
    code: i32,
    says: &'static str,
}

const CONFIGS: &[ConfigCase] = &[
    ConfigCase {
        name: "a partial calling itself",
        text: || {
            format!(
                "{HEAD}[templates]\nloop = '{{{{#*inline \"x\"}}}}{{{{> x}}}}{{{{/inline}}}}{{{{> x}}}}'\n\n[[chat]]\nname = \"c\"\nprovider = \"console\"\ntemplate = \"loop\"\nsubscribe = [\"all\"]\n"
            )
            .into_bytes()
        },
        code: 1,
        says: "partials",
    },
    ConfigCase {
        name: "a partial naming its own template",
        text: || {
            format!(
                "{HEAD}[templates]\nme = \"{{{{> me}}}}\"\n\n[[chat]]\nname = \"c\"\nprovider = \"console\"\ntemplate = \"me\"\nsubscribe = [\"all\"]\n"
            )
            .into_bytes()
        },
        code: 1,
        says: "partials",
    },
    ConfigCase {
        name: "a partial block inside an each",
        text: || {
            format!(
                "{HEAD}[templates]\nme = \"{{{{#each topic.tags}}}}{{{{#> me}}}}x{{{{/me}}}}{{{{/each}}}}\"\n\n[[chat]]\nname = \"c\"\nprovider = \"console\"\ntemplate = \"me\"\nsubscribe = [\"all\"]\n"
            )
            .into_bytes()
        },
        code: 1,
        says: "partials",
    },
    ConfigCase {
        name: "10k nested #if blocks in a template",
        text: || {
            let t = format!(
                "{}x{}",
                "{{#if topic}}".repeat(10_000),
                "{{/if}}".repeat(10_000)
            );
            format!(
                "{HEAD}[templates]\ndeep = \"{t}\"\n\n[[chat]]\nname = \"c\"\nprovider = \"console\"\ntemplate = \"deep\"\nsubscribe = [\"all\"]\n"
            )
            .into_bytes()
        },
        code: -1, // either answer is fine; crashing is not
        says: "",
    },
    ConfigCase {
        name: "** repeated: c/**/**/**/**/**/**/**/a",
        text: || format!("{HEAD}{}", chat("c", "\"c/**/**/**/**/**/**/**/a\"")).into_bytes(),
        code: -1,
        says: "",
    },
    ConfigCase {
        name: "alternates nested 64 deep",
        text: || {
            format!(
                "{HEAD}{}",
                chat("c", &format!("\"c/{}\"", nested_alternates(64)))
            )
            .into_bytes()
        },
        code: 0,
        says: "ok",
    },
    ConfigCase {
        name: "alternates nested 20k deep",
        text: || {
            format!(
                "{HEAD}{}",
                chat("c", &format!("\"c/{}\"", nested_alternates(20_000)))
            )
            .into_bytes()
        },
        code: 1,
        says: "nested too deeply",
    },
    ConfigCase {
        name: "1000 distinct globs of ** and alternates",
        text: || {
            let mut t = HEAD.to_string();
            for i in 0..1000 {
                t.push_str(&chat(
                    &format!("c{i}"),
                    &format!("\"c/**/{{a,b,c{i}}}/**/*{i}*/**\", \"t/*{i}*{{x,y}}*\""),
                ));
            }
            t.into_bytes()
        },
        code: 0,
        says: "ok (1000 chats",
    },
    ConfigCase {
        name: "non-UTF-8 file",
        text: || {
            let mut t = HEAD.as_bytes().to_vec();
            t.extend_from_slice(b"# caf\xe9 \xff\xfe\n");
            t
        },
        code: 1,
        says: "UTF-8",
    },
    ConfigCase {
        name: "100k nested TOML arrays",
        text: || format!("{HEAD}x = {}{}\n", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
        code: 1,
        says: "error",
    },
    ConfigCase {
        name: "100k nested inline tables",
        text: || {
            format!(
                "{HEAD}x = {}1{}\n",
                "{a=".repeat(100_000),
                "}".repeat(100_000)
            )
            .into_bytes()
        },
        code: 1,
        says: "error",
    },
    ConfigCase {
        name: "a 100k-part dotted key",
        text: || format!("{HEAD}{} = 1\n", vec!["a"; 100_000].join(".")).into_bytes(),
        code: 1,
        says: "error",
    },
    ConfigCase {
        name: "an unterminated ${ reference in a secret",
        text: || {
            format!(
                "[discourse]\nurl = \"https://forum.example.org\"\nwebhook_secret = \"${{{}\"\n",
                "A".repeat(100_000)
            )
            .into_bytes()
        },
        code: 1,
        says: "error",
    },
];

#[test]
fn hostile_configs_fail_cleanly_in_bounded_time() {
    let dir = temp();
    let mut wrong = Vec::new();
    for (i, case) in CONFIGS.iter().enumerate() {
        let path = write(dir.path(), &format!("c{i}.toml"), (case.text)());
        let r = run(
            &["validate", path.to_str().unwrap()],
            &[],
            Duration::from_secs(60),
        );
        eprintln!("{}: exit {:?} in {:?}", case.name, r.code, r.took);
        let clean = r.code == Some(0) || r.code == Some(1);
        let code_ok = case.code == -1 || r.code == Some(case.code);
        if !clean || !code_ok || r.stderr.contains("panicked") || !r.stdout.contains(case.says) {
            wrong.push(format!(
                "{}: exit {:?} (expected {}), stdout {:?}, stderr {:?}",
                case.name,
                r.code,
                case.code,
                truncate(&r.stdout),
                truncate(&r.stderr)
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

fn truncate(s: &str) -> String {
    s.chars().take(600).collect()
}

fn deep_template(depth: usize) -> String {
    format!(
        "{}[templates]\ndeep = \"{}x{}\"\n\n[[chat]]\nname = \"c\"\nprovider = \"console\"\ntemplate = \"deep\"\nsubscribe = [\"all\"]\n",
        config("0s", &[], ""),
        "{{#if topic}}".repeat(depth),
        "{{/if}}".repeat(depth)
    )
}

/// Handlebars recursion has no depth limit of its own: a template nested
/// 1000 `#if`s deep passes `validate` (8 MiB main-thread stack) but
/// overflows the 2 MiB stack of a tokio worker where `serve` builds the
/// pipeline (start and reload) and renders. Measured: debug build, validate
/// passes up to ~1000 and serve aborts from ~400; release build, validate
/// passes up to ~4300 and serve aborts from ~1500.
#[test]
fn a_deeply_nested_template_never_aborts_the_relay() {
    let mock = Mock::start();
    let dir = temp();
    let relay = relay(dir.path(), &mock);
    let deep = deep_template(1000);
    let r = run(
        &[
            "validate",
            write(dir.path(), "deep.toml", &deep).to_str().unwrap(),
        ],
        &[],
        Duration::from_secs(60),
    );
    assert!(
        matches!(r.code, Some(0 | 1)),
        "validate: {:?} {}",
        r.code,
        truncate(&r.stderr)
    );
    let valid = r.code == Some(0);

    // A hot reload of that file: refused or applied, never fatal.
    std::fs::write(&relay.config, &deep).unwrap();
    let reload = reqwest::blocking::Client::new()
        .post(relay.admin_url("/-/reload"))
        .send();
    std::thread::sleep(Duration::from_millis(500));
    let mut relay = relay;
    let exited = relay.child.try_wait().unwrap();
    assert!(
        exited.is_none() && reload.is_ok(),
        "the running relay died on reload ({exited:?}): {}",
        relay.logs()
    );
    healthy(&relay);

    // Starting with it agrees with validate.
    let cfg = write(dir.path(), "start.toml", &deep);
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.path().join("data2"))
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .env("DISCOURSE_WEBHOOK_SECRET", SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let status = child.try_wait().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    match status {
        None => assert!(valid, "serve runs a config validate refused"),
        Some(s) => assert!(
            !valid && s.code() == Some(1),
            "serve ended with {s} (validate said valid={valid})"
        ),
    }
}

#[test]
fn a_50_mb_config_is_refused_in_bounded_time() {
    let dir = temp();
    let mut text = String::with_capacity(52 << 20);
    text.push_str(HEAD);
    let mut i = 0;
    while text.len() < 50 << 20 {
        text.push_str(&chat(
            &format!("chat-{i}"),
            "\"c/support/**\", \"t/release-*\"",
        ));
        i += 1;
    }
    // One mistake at the very end.
    text.push_str(
        "[[chat]]\nname = \"last\"\nprovider = \"console\"\nsubscribe = [\"all\"]\nsubscibe = 1\n",
    );
    let lines = text.lines().count();
    let path = write(dir.path(), "huge.toml", &text);
    drop(text);
    let r = run(
        &["validate", path.to_str().unwrap()],
        &[],
        Duration::from_secs(240),
    );
    eprintln!("{i} chats: exit {:?} in {:?}", r.code, r.took);
    assert_eq!(r.code, Some(1), "{}", truncate(&r.stderr));
    assert!(
        r.stdout.contains(&format!(":{lines}:1: error")) && r.stdout.contains("subscibe"),
        "{}",
        truncate(&r.stdout)
    );
}

#[test]
fn a_catastrophic_glob_matches_in_bounded_time() {
    // A deep category path against stacked ** and alternates.
    let dir = temp();
    let deep: Vec<String> = (0..200).map(|i| format!("a{}", i % 3)).collect();
    let mut text = HEAD.to_string();
    text.push_str(&chat(
        "stars",
        "\"c/**/**/**/**/**/**/**/**/**/**/**/**/a9\", \"c/{a0,a1,a2}/**/{a0,a1}*/**/a2/**/b\"",
    ));
    text.push_str(&chat("all", "\"all\""));
    text.push_str(&format!(
        // The fixture's category: the deep path is what the globs meet.
        "[discourse.categories]\n\"9\" = \"{}\"\n",
        deep.join("/")
    ));
    let cfg = write(dir.path(), "globs.toml", text);
    let event = root().join("tests/fixtures/webhooks/post_created_subcategory.json");
    let r = run(
        &[
            "explain",
            "--json",
            "--config",
            cfg.to_str().unwrap(),
            event.to_str().unwrap(),
        ],
        &[],
        Duration::from_secs(30),
    );
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(r.stdout.lines().next().unwrap()).unwrap();
    let chats: Vec<&str> = v["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["chat"].as_str().unwrap())
        .collect();
    assert_eq!(chats, ["all"], "{v:#}");
    assert!(r.took < Duration::from_secs(10), "{:?}", r.took);
}

#[test]
fn an_env_var_holding_toml_stays_one_string() {
    let dir = temp();
    let injected = "x\"\n[server]\nlisten=\"0.0.0.0:1\"";
    let text = "[discourse]\nurl = \"https://forum.example.org\"\ndelay = \"0s\"\n\n\
        [server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\n\
        [providers.team-slack]\nkind = \"slack\"\ntoken = \"${X}\"\napi_url = \"http://127.0.0.1:9/api\"\n\n\
        [[chat]]\nname = \"s\"\nprovider = \"team-slack\"\nchannel = \"#s\"\nsubscribe = [\"all\"]\n";
    let cfg = write(dir.path(), "inject.toml", text);
    let env = [("X", injected)];

    let r = run(
        &["validate", cfg.to_str().unwrap()],
        &env,
        Duration::from_secs(30),
    );
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);

    let event = root().join("tests/fixtures/webhooks/post_created_first_post.json");
    let r = run(
        &[
            "explain",
            "--json",
            "--config",
            cfg.to_str().unwrap(),
            event.to_str().unwrap(),
        ],
        &env,
        Duration::from_secs(30),
    );
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(r.stdout.lines().next().unwrap()).unwrap();
    let request = &v["deliveries"][0]["request"];
    let shown = request.to_string();
    assert!(shown.contains("[redacted]"), "{request:#}");
    for piece in ["0.0.0.0", "[server]", "listen", "x\\\""] {
        assert!(!r.stdout.contains(piece), "{piece:?} leaked: {}", r.stdout);
    }

    // The running relay listens where the file says, not where X says.
    let mut child = Command::new(BIN)
        .args(["--log-format", "json", "serve", "--config"])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("X", injected)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && v["fields"]["message"] == "listening"
            {
                let _ = tx.send(v["fields"]["public"].as_str().unwrap_or("").to_string());
            }
        }
    });
    let public = rx.recv_timeout(Duration::from_secs(20));
    let _ = child.kill();
    let _ = child.wait();
    let public = public.expect("relay did not start");
    assert!(public.starts_with("127.0.0.1:"), "listening on {public}");
}
