//! Reliability scenarios against the real `serve` binary (RELIABILITY.md):
//!
//! - disk full: 503 with the reason, status and logs say why, recovery;
//! - reload under load: alternating valid/invalid reloads during traffic;
//! - secrets: a canary never shows in logs, answers, status, metrics, explain;
//! - `#[ignore]`d long runs, driven by `scripts/reliability/*`: crash rounds
//!   (kill -9 under load) and a provider outage.
//!
//! Long runs take their size from environment variables (see each test), so
//! the scripts can run them full size and `cargo test -- --ignored` small.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use discourse_relay::ingest::request::sign;
use serde_json::Value;

fn temp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    // Whole-file replace, as editors and config managers do.
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &p).unwrap();
    p
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A distinct signed `post_created` event for post `id` (the recorded
/// fixture with the post id replaced and `pad` bytes added to the raw text).
/// A signed webhook request: its headers and exact body.
type Signed = (Vec<(String, String)>, Vec<u8>);

fn event(id: u64, pad: usize) -> Signed {
    let mut f = fixture("post_created_first_post");
    let mut v: Value = serde_json::from_slice(&f.body).unwrap();
    v["post"]["id"] = id.into();
    if pad > 0 {
        let raw = v["post"]["raw"].as_str().unwrap().to_string();
        v["post"]["raw"] = format!("{raw} {}", "x".repeat(pad)).into();
    }
    let body = serde_json::to_vec(&v).unwrap();
    f.set_header("X-Discourse-Event-Id", &id.to_string());
    f.set_header(
        "X-Discourse-Event-Signature",
        &sign(SECRET.as_bytes(), &body),
    );
    (f.headers, body)
}

/// POSTs to `url`; `Err` when there was no HTTP answer (relay down).
fn post(
    client: &reqwest::blocking::Client,
    url: &str,
    (headers, body): &Signed,
) -> Result<(u16, String), String> {
    let mut req = client.post(url);
    for (k, v) in headers {
        if k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("host") {
            continue;
        }
        req = req.header(k.as_str(), v.as_str());
    }
    let resp = req.body(body.clone()).send().map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().unwrap_or_default()))
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Post ids of the deliveries a webhook chat received, in arrival order.
fn post_ids(requests: &[Recorded]) -> Vec<u64> {
    requests
        .iter()
        .filter_map(|r| r.json()["post"]["id"].as_u64())
        .collect()
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------
// Disk full

/// A size-limited tmpfs mounted on a directory for the test's duration.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None` when this process may not mount (not root, no CAP_SYS_ADMIN).
    fn mount(dir: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes `path` until the filesystem is full; returns the bytes written.
fn fill(path: &Path) -> u64 {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0xa5u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(28), "expected ENOSPC: {e}");
                break;
            }
        }
    }
    // Smaller writes take the last partial page.
    while f.write(&[0u8; 512]).is_ok_and(|n| n > 0) {
        written += 512;
    }
    written
}

fn admin_get(relay: &Relay, path: &str) -> String {
    client()
        .get(relay.admin_url(path))
        .send()
        .unwrap()
        .text()
        .unwrap()
}

/// Sends distinct 16 KiB events with the given ids until one gets 503;
/// those answered 202 join `accepted`. Returns the refused one.
fn send_until_refused(
    c: &reqwest::blocking::Client,
    url: &str,
    ids: std::ops::Range<u64>,
    accepted: &mut BTreeSet<u64>,
) -> (u64, Signed, String) {
    let range = format!("{ids:?}");
    for id in ids {
        let ev = event(id, 16 * 1024);
        let (status, body) = post(c, url, &ev).unwrap();
        match status {
            202 => {
                accepted.insert(id);
            }
            503 => return (id, ev, body),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    panic!("events {range} of 16 KiB on a full disk, none refused");
}

#[test]
fn disk_full_answers_503_with_the_reason_and_recovers() {
    let mock = Mock::start();
    let dir = temp();
    let data = dir.path().join("data");
    // Real ENOSPC from a real filesystem. Mounting needs root (or
    // CAP_SYS_ADMIN); without it the scenario cannot be staged honestly.
    let Some(_fs) = Tmpfs::mount(&data, "8m") else {
        peer_missing(
            "tmpfs",
            "cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)",
        );
        return;
    };
    let cfg = write(
        dir.path(),
        "relay.toml",
        &config("0s", &[("hook", &mock.url("/hook"))], ""),
    );
    let relay = Relay::start(&cfg, &data, &[]);
    let c = client();
    let url = relay.webhook_url();

    let mut accepted = BTreeSet::new();
    for id in 1..=3 {
        assert_eq!(post(&c, &url, &event(id, 0)).unwrap().0, 202);
        accepted.insert(id);
    }
    mock.wait_for(3, Duration::from_secs(15));

    let filler = data.join("filler");
    let filled = fill(&filler);
    eprintln!("filled the tmpfs with {filled} bytes");

    // redb may still have written-but-free pages: keep sending distinct
    // events (16 KiB each) until one is refused.
    let (_, _, body) = send_until_refused(&c, &url, 100..400, &mut accepted);
    eprintln!(
        "refused after {} more accepted events: {body}",
        accepted.len() - 3
    );
    assert!(body.contains("storage unavailable"), "{body}");
    assert!(body.contains("No space left on device"), "{body}");

    // Status (JSON and page), metrics and the log say why.
    let status = relay.status();
    assert_eq!(status["storage"]["ok"], false, "{status:#}");
    let why = status["storage"]["error"].as_str().unwrap_or("");
    assert!(why.contains("No space left on device"), "{status:#}");
    assert!(status["storage"]["since"].is_string(), "{status:#}");
    let page = admin_get(&relay, "/");
    assert!(
        page.contains("Storage failing") && page.contains("No space left on device"),
        "{page}"
    );
    let metrics = admin_get(&relay, "/metrics");
    assert!(
        metrics.contains(
            r#"discourse_relay_events_received_total{event="post_created",outcome="unavailable"}"#
        ),
        "{metrics}"
    );
    let logs = relay.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("cannot store the event") && l.contains("No space left on device")),
        "{logs}"
    );
    // Still refusing (not crashed, not accepting into nowhere). Reopening
    // the store after the failure can reclaim the pages the failed
    // transaction took, so a few more may honestly fit (and count as
    // accepted); the disk is still full, so refusals come back.
    let before = accepted.len();
    let (refused_id, refused_event, _) = send_until_refused(&c, &url, 400..700, &mut accepted);
    eprintln!(
        "refused again after {} more accepted events",
        accepted.len() - before
    );

    // Space returns: Discourse's retry of the refused event is accepted.
    std::fs::remove_file(&filler).unwrap();
    let t = Instant::now();
    let mut last = (0, String::new());
    while t.elapsed() < Duration::from_secs(20) {
        last = post(&c, &url, &refused_event).unwrap();
        if last.0 == 202 {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(last.0, 202, "no recovery after 20 s: {}", last.1);
    eprintln!("recovered {:?} after space returned", t.elapsed());
    accepted.insert(refused_id);
    assert_eq!(relay.status()["storage"]["ok"], true);
    assert_eq!(post(&c, &url, &event(999, 0)).unwrap().0, 202);
    accepted.insert(999);

    // Every accepted event is delivered (at least once).
    wait_until(
        "every accepted event delivered",
        Duration::from_secs(60),
        || {
            let got: BTreeSet<u64> = post_ids(&mock.requests()).into_iter().collect();
            accepted.is_subset(&got)
        },
    );
    let ids = post_ids(&mock.requests());
    eprintln!(
        "{} accepted, {} deliveries ({} duplicates)",
        accepted.len(),
        ids.len(),
        ids.len() - accepted.len()
    );
    drop(relay);
}

// ---------------------------------------------------------------------------
// Reload under load

fn valid_config(mock: &Mock, n: usize) -> String {
    // The comment changes the hash, so each valid reload really swaps.
    format!(
        "# valid config #{n}\n{}",
        config("0s", &[("hook", &mock.url("/hook"))], "")
    )
}

fn invalid_config(mock: &Mock, n: usize) -> String {
    let broken = [
        "[[chat]]\nname = \"x\"\nprovider = \"no-such-provider\"\nsubscribe = [\"all\"]\n",
        "[[chat]]\nname = \"hook\"\nprovider = \"webhook\"\nurl = \"http://x/\"\nsubscribe = [\"all\"]\n",
        "[templates]\nbad = \"{{#if}}\"\n",
        "[server\n",
    ];
    format!("{}{}", valid_config(mock, n), broken[n % broken.len()])
}

/// `RELIABILITY_RELOADS` reloads (default 100), alternating valid and
/// invalid configs, while a client sends webhooks as fast as it can.
#[test]
fn reloads_under_load_never_fail_a_request() {
    let reloads: usize = env_or("RELIABILITY_RELOADS", 100);
    let mock = Mock::start();
    let dir = temp();
    let cfg = write(dir.path(), "relay.toml", &valid_config(&mock, 0));
    let relay = Relay::start(&cfg, &dir.path().join("data"), &[]);

    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (stop, url) = (stop.clone(), relay.webhook_url());
        std::thread::spawn(move || {
            let c = client();
            let mut answers: BTreeMap<u16, u64> = BTreeMap::new();
            let mut accepted = Vec::new();
            let mut id = 1;
            while !stop.load(Ordering::Relaxed) {
                let (status, body) = post(&c, &url, &event(id, 0)).unwrap();
                assert!(status == 202, "webhook {id} answered {status}: {body}");
                *answers.entry(status).or_default() += 1;
                accepted.push(id);
                id += 1;
            }
            (answers, accepted)
        })
    };

    mock.wait_for(1, Duration::from_secs(15));
    let c = client();
    let start = Instant::now();
    let (mut ok, mut rejected) = (0, 0);
    let mut serving = relay.status()["config"]["hash"]
        .as_str()
        .unwrap()
        .to_string();
    let mut slowest = Duration::ZERO;
    for n in 1..=reloads {
        let valid = n % 2 == 0;
        let text = if valid {
            valid_config(&mock, n)
        } else {
            invalid_config(&mock, n)
        };
        write(dir.path(), "relay.toml", &text);
        let t = Instant::now();
        let resp = c.post(relay.admin_url("/-/reload")).send().unwrap();
        slowest = slowest.max(t.elapsed());
        let code = resp.status().as_u16();
        let answer: Value = resp.json().unwrap();
        if valid {
            assert_eq!(code, 200, "valid reload {n}: {answer}");
            serving = answer["hash"].as_str().unwrap().to_string();
            ok += 1;
        } else {
            assert_eq!(code, 400, "invalid reload {n} accepted: {answer}");
            assert!(!answer["errors"].as_array().unwrap().is_empty(), "{answer}");
            rejected += 1;
        }
        // The last valid config serves, whatever came after it.
        let status = relay.status();
        assert_eq!(status["config"]["hash"], serving.as_str(), "reload {n}");
        // Deliveries keep arriving: never 2 s without one.
        assert!(
            mock.requests()
                .last()
                .is_some_and(|r| r.at.elapsed() < Duration::from_secs(2)),
            "no delivery for 2 s at reload {n}"
        );
    }
    let took = start.elapsed();
    // End on a valid config, then stop the load.
    write(dir.path(), "relay.toml", &valid_config(&mock, reloads + 1));
    assert_eq!(
        c.post(relay.admin_url("/-/reload"))
            .send()
            .unwrap()
            .status(),
        200
    );
    stop.store(true, Ordering::Relaxed);
    let (answers, accepted) = load.join().unwrap();

    // The history shows the last reloads: invalid ones rejected with errors.
    let status = relay.status();
    let history = status["config"]["history"].as_array().unwrap();
    assert!(history.len() >= 10, "{status:#}");
    for r in history {
        let is_ok = r["ok"].as_bool().unwrap();
        assert_eq!(is_ok, r["errors"].as_array().unwrap().is_empty(), "{r}");
    }
    assert!(history.iter().any(|r| r["ok"] == false));

    let expected: BTreeSet<u64> = accepted.iter().copied().collect();
    wait_until(
        "every accepted webhook delivered",
        Duration::from_secs(60),
        || {
            let got: BTreeSet<u64> = post_ids(&mock.requests()).into_iter().collect();
            expected.is_subset(&got)
        },
    );
    let deliveries = mock.requests().len();
    eprintln!(
        "RESULT reload-storm: {reloads} reloads ({ok} valid applied, {rejected} invalid rejected) \
         in {took:.1?}, slowest reload answer {slowest:?}; webhooks answered {answers:?} \
         (no other status); {} accepted, {deliveries} delivered",
        accepted.len()
    );
    assert_eq!(answers.keys().copied().collect::<Vec<_>>(), vec![202]);
}

// ---------------------------------------------------------------------------
// Secrets

const CANARY_TOKEN: &str = "xoxb-canary-7f3a9c0d2e";
const CANARY_ADMIN: &str = "admin-canary-51b8e4";

#[test]
fn a_canary_secret_never_shows_anywhere() {
    let slack = Mock::start();
    // Slack refuses, quoting the token back (as misbehaving servers do).
    slack.always(Reply::new(
        200,
        &format!(
            r#"{{"ok":false,"error":"invalid_auth","detail":"token {CANARY_TOKEN} revoked"}}"#
        ),
    ));
    let dir = temp();
    let text = format!(
        r##"[discourse]
url = "https://forum.example.org"
webhook_secret = "${{DISCOURSE_WEBHOOK_SECRET}}"
delay = "0s"

[server]
admin_token = "${{ADMIN_TOKEN}}"

[providers.team]
kind = "slack"
token = "${{SLACK_TOKEN}}"
api_url = "{}"

[[chat]]
name = "general"
provider = "team"
channel = "#general"
subscribe = ["all"]
"##,
        slack.url("/api")
    );
    let cfg = write(dir.path(), "relay.toml", &text);
    let env = [
        ("SLACK_TOKEN", CANARY_TOKEN),
        ("ADMIN_TOKEN", CANARY_ADMIN),
        ("RUST_LOG", "debug"),
    ];
    let relay = Relay::start(&cfg, &dir.path().join("data"), &env);
    let c = client();
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut keep = |what: &str, text: String| seen.push((what.to_string(), text));

    // Webhook answers, good and bad.
    let (s, b) = post(&c, &relay.webhook_url(), &event(1, 0)).unwrap();
    assert_eq!(s, 202);
    keep("webhook 202", b);
    let mut bad = event(2, 0);
    bad.0.retain(|(k, _)| k != "X-Discourse-Event-Signature");
    keep(
        "webhook 401",
        post(&c, &relay.webhook_url(), &bad).unwrap().1,
    );

    // The token is really used (else this test could not fail).
    let got = slack.wait_for(1, Duration::from_secs(15));
    assert_eq!(
        got[0].header("authorization"),
        Some(format!("Bearer {CANARY_TOKEN}").as_str())
    );
    let admin = |path: &str| {
        c.get(relay.admin_url(path))
            .bearer_auth(CANARY_ADMIN)
            .send()
            .unwrap()
    };
    wait_until(
        "the failure on the status page",
        Duration::from_secs(15),
        || admin("/api/status").json::<Value>().unwrap()["chats"][0]["last_error"].is_object(),
    );

    // Admin listener: refused without the token, even with its prefix.
    for token in [None, Some("wrong"), Some(&CANARY_ADMIN[..10])] {
        let mut req = c.get(relay.admin_url("/api/status"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().unwrap();
        assert_eq!(resp.status().as_u16(), 401, "token {token:?}");
        keep("admin 401", resp.text().unwrap());
    }
    let status = admin("/api/status").text().unwrap();
    assert!(status.contains("invalid_auth"), "{status}");
    keep("status json", status);
    keep("status page", admin("/").text().unwrap());
    keep("metrics", admin("/metrics").text().unwrap());
    let test = c
        .post(relay.admin_url("/api/chats/general/test"))
        .bearer_auth(CANARY_ADMIN)
        .send()
        .unwrap();
    keep("test message", test.text().unwrap());

    // A rejected reload: its errors go to the answer, the status and the log.
    write(
        dir.path(),
        "relay.toml",
        &text.replace(
            "kind = \"slack\"",
            "kind = \"slack\"\ntokn = \"${SLACK_TOKEN}\"",
        ),
    );
    let reload = c
        .post(relay.admin_url("/-/reload"))
        .bearer_auth(CANARY_ADMIN)
        .send()
        .unwrap();
    assert_eq!(reload.status().as_u16(), 400);
    keep("reload answer", reload.text().unwrap());
    keep("status after reload", admin("/api/status").text().unwrap());

    // explain and validate of the same config, secrets set.
    std::fs::write(&cfg, &text).unwrap();
    let fixture_file = root().join("tests/fixtures/webhooks/post_created_first_post.json");
    for args in [vec!["explain", "--json"], vec!["explain"], vec!["validate"]] {
        let mut cmd = Command::new(BIN);
        cmd.args(&args);
        if args[0] == "explain" {
            cmd.arg("--config").arg(&cfg).arg(&fixture_file);
        } else {
            cmd.arg(&cfg);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd
            .env("DISCOURSE_WEBHOOK_SECRET", SECRET)
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{args:?}: {all}");
        keep(&args.join(" "), all);
    }
    drop(relay);
    // The log, through the end (graceful stop included).
    std::thread::sleep(Duration::from_millis(200));

    let mut checked = 0;
    for (what, text) in &seen {
        for secret in [CANARY_TOKEN, CANARY_ADMIN, SECRET] {
            assert!(!text.contains(secret), "{secret} in {what}:\n{text}");
            checked += 1;
        }
    }
    assert!(checked > 30);
}

/// Separate from the test above so that a leak in the log names itself.
#[test]
fn the_log_never_shows_a_canary_secret() {
    let slack = Mock::start();
    slack.always(
        Reply::new(500, &format!("upstream said: Bearer {CANARY_TOKEN}"))
            .header("Retry-After", "1"),
    );
    let dir = temp();
    let text = format!(
        "[discourse]\nurl = \"https://forum.example.org\"\nwebhook_secret = \"${{DISCOURSE_WEBHOOK_SECRET}}\"\ndelay = \"0s\"\n\
         [server]\nadmin_token = \"${{ADMIN_TOKEN}}\"\n\
         [providers.team]\nkind = \"slack\"\ntoken = \"${{SLACK_TOKEN}}\"\napi_url = \"{}\"\n\
         [[chat]]\nname = \"general\"\nprovider = \"team\"\nchannel = \"#general\"\nsubscribe = [\"all\"]\n",
        slack.url("/api")
    );
    let cfg = write(dir.path(), "relay.toml", &text);
    let relay = Relay::start(
        &cfg,
        &dir.path().join("data"),
        &[
            ("SLACK_TOKEN", CANARY_TOKEN),
            ("ADMIN_TOKEN", CANARY_ADMIN),
            ("RUST_LOG", "trace"),
        ],
    );
    let c = client();
    assert_eq!(post(&c, &relay.webhook_url(), &event(1, 0)).unwrap().0, 202);
    slack.wait_for(2, Duration::from_secs(15)); // a send and a retry
    let _ = c
        .get(relay.admin_url("/api/status"))
        .bearer_auth(CANARY_ADMIN)
        .send();
    let _ = c
        .get(relay.admin_url("/api/status"))
        .bearer_auth("nope")
        .send();
    relay.signal("TERM");
    std::thread::sleep(Duration::from_secs(1));
    let logs = relay.logs();
    assert!(logs.lines().count() > 20, "{logs}");
    for secret in [CANARY_TOKEN, CANARY_ADMIN, SECRET] {
        let hits: Vec<&str> = logs.lines().filter(|l| l.contains(secret)).collect();
        assert!(hits.is_empty(), "{secret} in the log:\n{}", hits.join("\n"));
    }
}

// ---------------------------------------------------------------------------
// Crash rounds (long: scripts/reliability/crash-rounds)

/// `RELIABILITY_CRASH_ROUNDS` (default 10) kill -9 at random moments under
/// a steady load of `RELIABILITY_CRASH_RATE` webhooks/s (default 50), each
/// followed by a restart on the same data dir. Every other kill is "between
/// bursts": the load pauses, the queue drains, and the kill comes at once
/// (before the once-a-second sync); such a kill must re-send nothing.
#[test]
#[ignore = "long: run by scripts/reliability/crash-rounds"]
fn crash_rounds_lose_nothing_accepted() {
    let rounds: usize = env_or("RELIABILITY_CRASH_ROUNDS", 10);
    let rate: u64 = env_or("RELIABILITY_CRASH_RATE", 50);
    let mock = Mock::start();
    let dir = temp();
    let data = dir.path().join("data");
    let cfg = write(
        dir.path(),
        "relay.toml",
        &config("0s", &[("hook", &mock.url("/hook"))], "")
            .replace("rate_limit = \"100/s\"", "rate_limit = \"1000/s\""),
    );
    let url = Arc::new(Mutex::new(String::new()));
    let mut relay = Relay::start(&cfg, &data, &[]);
    *url.lock().unwrap() = relay.webhook_url();

    // The generator: distinct events at a steady rate, 4 in flight, each
    // answer recorded. Errors (relay down) are retried with the same event,
    // as Discourse does.
    let stop = Arc::new(AtomicBool::new(false));
    // Set for a kill between bursts: no new event starts; `inflight` counts
    // the posts still waiting for an answer.
    let paused = Arc::new(AtomicBool::new(false));
    let inflight = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(1));
    let answers = Arc::new(Mutex::new(HashMap::<u64, u16>::new()));
    let errors = Arc::new(AtomicU64::new(0));
    let senders: Vec<_> = (0..4)
        .map(|_| {
            let (stop, next, answers, errors, url) = (
                stop.clone(),
                next.clone(),
                answers.clone(),
                errors.clone(),
                url.clone(),
            );
            let (paused, inflight) = (paused.clone(), inflight.clone());
            std::thread::spawn(move || {
                let c = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap();
                let every = Duration::from_micros(4_000_000 / rate);
                while !stop.load(Ordering::Relaxed) {
                    if paused.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                    inflight.fetch_add(1, Ordering::SeqCst);
                    if paused.load(Ordering::SeqCst) {
                        inflight.fetch_sub(1, Ordering::SeqCst);
                        continue;
                    }
                    let id = next.fetch_add(1, Ordering::Relaxed);
                    let ev = event(id, 0);
                    loop {
                        let u = url.lock().unwrap().clone();
                        match post(&c, &u, &ev) {
                            Ok((status, body)) => {
                                assert!(matches!(status, 202 | 200), "event {id}: {status} {body}");
                                answers.lock().unwrap().insert(id, status);
                                break;
                            }
                            Err(_) => {
                                errors.fetch_add(1, Ordering::Relaxed);
                                if stop.load(Ordering::Relaxed) {
                                    break;
                                }
                                std::thread::sleep(Duration::from_millis(100));
                            }
                        }
                    }
                    inflight.fetch_sub(1, Ordering::SeqCst);
                    std::thread::sleep(every);
                }
            })
        })
        .collect();

    let started = Instant::now();
    let mut kills = Vec::new();
    // The kills that came right after the queue drained.
    let mut drained_kills = Vec::new();
    for round in 1..=rounds {
        let wait = Duration::from_millis(fastrand::u64(1_000..4_000));
        std::thread::sleep(wait);
        let between_bursts = round % 2 == 0;
        if between_bursts {
            paused.store(true, Ordering::SeqCst);
            wait_until(
                "the posts in flight answered",
                Duration::from_secs(20),
                || inflight.load(Ordering::SeqCst) == 0,
            );
            relay.wait_status("the queue drained", |s| {
                s["chats"]
                    .as_array()
                    .is_some_and(|c| c.iter().all(|c| c["queue_depth"] == 0))
            });
        }
        relay.kill9();
        // After the process is gone: a send can start until the signal lands.
        let at = Instant::now();
        kills.push(at);
        if between_bursts {
            drained_kills.push(at);
        }
        std::thread::sleep(Duration::from_millis(fastrand::u64(0..500)));
        relay = Relay::start(&cfg, &data, &[]);
        *url.lock().unwrap() = relay.webhook_url();
        paused.store(false, Ordering::SeqCst);
        eprintln!(
            "round {round}: killed after {wait:?}{}, back after {:?}",
            if between_bursts {
                " (queue drained)"
            } else {
                ""
            },
            at.elapsed()
        );
    }
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.join().unwrap();
    }

    let answers = answers.lock().unwrap().clone();
    // "200 duplicate" answers a retry of an event stored before a kill
    // (the answer was lost): it must be delivered too.
    let accepted: BTreeSet<u64> = answers.keys().copied().collect();
    let duplicates_answered = answers.values().filter(|s| **s == 200).count();
    let end = Instant::now() + Duration::from_secs(120);
    loop {
        let got: BTreeSet<u64> = post_ids(&mock.requests()).into_iter().collect();
        let missing: Vec<_> = accepted.difference(&got).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < end,
            "{} accepted events never delivered: {missing:?}",
            missing.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));

    // Duplicates: explained only when the first copy went out shortly
    // before a kill (sent, acknowledgement not yet durable).
    let requests = mock.requests();
    let mut first: HashMap<u64, Instant> = HashMap::new();
    let (mut dups, mut unexplained) = (0, Vec::new());
    // Duplicates whose first copy went out before a kill between bursts
    // (the first kill after it): what that kill re-sent.
    let mut drained_resends = Vec::new();
    // The longest time from a duplicate's first copy to the kill after it.
    let mut widest = Duration::ZERO;
    for r in &requests {
        let Some(id) = r.json()["post"]["id"].as_u64() else {
            continue;
        };
        match first.get(&id) {
            None => {
                first.insert(id, r.at);
            }
            Some(t1) => {
                dups += 1;
                let cause = kills.iter().filter(|k| **k >= *t1 && r.at > **k).min();
                if cause.is_some_and(|k| drained_kills.contains(k)) {
                    drained_resends.push(id);
                }
                if let Some(gap) = kills
                    .iter()
                    .filter(|k| **k >= *t1 && r.at > **k)
                    .map(|k| k.duration_since(*t1))
                    .min()
                {
                    widest = widest.max(gap);
                }
                let explained = kills.iter().any(|k| {
                    *k >= *t1 && k.duration_since(*t1) < Duration::from_secs(5) && r.at > *k
                });
                if !explained {
                    let since_start = |t: Instant| t.duration_since(started);
                    unexplained.push(format!(
                        "post {id}: first at {:?}, again at {:?}; kills at {:?}",
                        since_start(*t1),
                        since_start(r.at),
                        kills.iter().map(|k| since_start(*k)).collect::<Vec<_>>()
                    ));
                }
            }
        }
    }
    eprintln!(
        "RESULT crash-rounds: {rounds} kill -9 rounds at ~{rate} webhooks/s; {} webhooks answered \
         ({} x 202, {duplicates_answered} x 200 duplicate: stored, answer lost to the kill), \
         {} connection errors while down; {} deliveries: every accepted event delivered, {dups} delivered twice (all sent before a kill and again after it: {}; \
         first copy at most {widest:?} before the kill); {} kills after the queue drained re-sent {}",
        answers.len(),
        accepted.len() - duplicates_answered,
        errors.load(Ordering::Relaxed),
        requests.len(),
        unexplained.is_empty(),
        drained_kills.len(),
        drained_resends.len()
    );
    assert!(accepted.len() > 100, "too little load: {}", accepted.len());
    assert!(
        unexplained.is_empty(),
        "duplicates not explained by a crash:\n{}",
        unexplained.join("\n")
    );
    assert!(
        drained_resends.is_empty(),
        "re-sent by a kill after the queue drained: posts {drained_resends:?}"
    );
    drop(relay);
}

// ---------------------------------------------------------------------------
// Provider outage (long: scripts/reliability/outage)

/// One chat's server answers 500, then hangs past the send timeout, then
/// answers 429 with Retry-After, for `RELIABILITY_OUTAGE_SECS` (default
/// 300) in all, then recovers. A second chat's server stays healthy.
/// Events arrive at 1/s throughout.
#[test]
#[ignore = "long: run by scripts/reliability/outage"]
fn a_provider_outage_delays_but_loses_nothing() {
    let outage = Duration::from_secs(env_or("RELIABILITY_OUTAGE_SECS", 300));
    let rate_limit: u32 = 5;
    let broken = Mock::start();
    let healthy = Mock::start();
    let dir = temp();
    let cfg = write(
        dir.path(),
        "relay.toml",
        &config(
            "0s",
            &[
                ("broken", &broken.url("/broken")),
                ("healthy", &healthy.url("/healthy")),
            ],
            "",
        )
        .replace(
            "rate_limit = \"100/s\"",
            &format!("rate_limit = \"{rate_limit}/s\""),
        ),
    );
    let relay = Relay::start(&cfg, &dir.path().join("data"), &[]);
    let c = client();
    let url = relay.webhook_url();

    let phase = outage / 3;
    let phases = [
        Reply::new(500, "internal error"),
        // Longer than the relay's 30 s send timeout.
        Reply::new(200, "{}").delay(Duration::from_secs(40)),
        Reply::new(429, "slow down").header("Retry-After", "7"),
    ];
    let start = Instant::now();
    let mut sent_at: HashMap<u64, Instant> = HashMap::new();
    let mut id = 0;
    for (i, reply) in phases.iter().enumerate() {
        broken.always(reply.clone());
        let until = start + phase * (i as u32 + 1);
        while Instant::now() < until {
            id += 1;
            let (status, body) = post(&c, &url, &event(id, 0)).unwrap();
            assert_eq!(status, 202, "{body}");
            sent_at.insert(id, Instant::now());
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    let sent = id;
    let recovered = Instant::now();
    broken.always(Reply::new(200, "{}"));

    // Healthy chat: everything, in order, promptly, during the outage.
    let h = healthy.wait_for(sent as usize, Duration::from_secs(30));
    let h_ids = post_ids(&h);
    assert_eq!(h_ids, (1..=sent).collect::<Vec<_>>(), "healthy chat order");
    let mut lat: Vec<Duration> = h
        .iter()
        .filter_map(|r| Some(r.at.duration_since(*sent_at.get(&r.json()["post"]["id"].as_u64()?)?)))
        .collect();
    lat.sort();
    let (p50, max) = (lat[lat.len() / 2], lat[lat.len() - 1]);
    assert!(
        max < Duration::from_secs(3),
        "healthy chat delayed: max {max:?}"
    );

    // Broken chat: once it answers 2xx again, everything arrives in order.
    let end =
        recovered + Duration::from_secs(600) + Duration::from_secs(sent / u64::from(rate_limit));
    let ok: Vec<Recorded> = loop {
        let ok: Vec<Recorded> = broken
            .requests()
            .into_iter()
            .filter(|r| r.status == 200 && r.at >= recovered)
            .collect();
        let got: BTreeSet<u64> = post_ids(&ok).into_iter().collect();
        if got.len() as u64 >= sent {
            break ok;
        }
        assert!(
            Instant::now() < end,
            "broken chat: {} of {sent} after recovery",
            got.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let ids = post_ids(&ok);
    let mut seen = BTreeSet::new();
    let firsts: Vec<u64> = ids.iter().copied().filter(|i| seen.insert(*i)).collect();
    assert_eq!(firsts, (1..=sent).collect::<Vec<_>>(), "broken chat order");
    // Rate limit: no n+1 consecutive deliveries inside (n / rate) s, with
    // the bucket's burst of `rate_limit` on top (10 ms timer slack).
    let times: Vec<Instant> = ok.iter().map(|r| r.at).collect();
    let mut worst_excess = f64::MIN;
    for i in 0..times.len() {
        for j in i + 1..times.len() {
            let span = times[j].duration_since(times[i]).as_secs_f64() + 0.01;
            let allowed = f64::from(rate_limit) + span * f64::from(rate_limit);
            worst_excess = worst_excess.max((j - i + 1) as f64 - allowed);
        }
    }
    let first_ok = times[0].duration_since(recovered);
    let drained = times[times.len() - 1].duration_since(times[0]);
    let attempts = broken.requests().len();
    eprintln!(
        "RESULT outage: {:?} outage ({phase:?} each of 500, hang 40 s, 429 Retry-After 7), {sent} events; \
         healthy chat: all {sent} in order, latency p50 {p50:?} max {max:?}; broken chat: {attempts} \
         attempts in all, first success {first_ok:?} after recovery, {} deliveries ({} duplicates) in \
         order, drained in {drained:?} = {:.2}/s (limit {rate_limit}/s; worst window {worst_excess:.2} \
         over the bucket)",
        recovered.duration_since(start),
        ids.len(),
        ids.len() - firsts.len(),
        (ids.len() as f64 - 1.0) / drained.as_secs_f64().max(0.001),
    );
    assert!(worst_excess <= 0.0, "rate limit exceeded by {worst_excess}");
    drop(relay);
}

// ---------------------------------------------------------------------------
// Config of the timeouts

#[test]
fn zero_or_malformed_timeouts_are_refused() {
    let dir = temp();
    for (value, message) in [
        ("0s", "`header_timeout` must be longer than 0s"),
        ("soon", "invalid duration `soon`"),
    ] {
        let text = config("0s", &[("hook", "http://127.0.0.1:9/hook")], "").replace(
            "[server]\n",
            &format!("[server]\nheader_timeout = \"{value}\"\n"),
        );
        let cfg = write(dir.path(), "relay.toml", &text);
        let out = Command::new(BIN)
            .arg("validate")
            .arg(&cfg)
            .env("DISCOURSE_WEBHOOK_SECRET", SECRET)
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(1), "{value}: {all}");
        assert!(
            all.contains(message) && all.contains("relay.toml:"),
            "{value}: {all}"
        );
    }
    let text = config("0s", &[("hook", "http://127.0.0.1:9/hook")], "").replace(
        "[server]\n",
        "[server]\nheader_timeout = \"5s\"\nbody_timeout = \"1m\"\n",
    );
    let cfg = write(dir.path(), "relay.toml", &text);
    let ok = Command::new(BIN)
        .arg("validate")
        .arg(&cfg)
        .env("DISCOURSE_WEBHOOK_SECRET", SECRET)
        .status()
        .unwrap();
    assert!(ok.success());
}
