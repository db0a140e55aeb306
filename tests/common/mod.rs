//! Test harness: the real `discourse-relay serve` binary on port 0 with a
//! temp data dir, and mock chat servers on 127.0.0.1 that record every
//! request and answer from a script.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod cards;

pub const BIN: &str = env!("CARGO_BIN_EXE_discourse-relay");
pub const SECRET: &str = "fixture-secret";

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// One request as the mock received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub at: Instant,
    /// The status the mock answered (or will answer, after `Reply::delay`).
    pub status: u16,
}

impl Recorded {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A scripted answer: status, headers, body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Answer only after this long (a hanging server).
    pub delay: Option<Duration>,
}

impl Reply {
    pub fn new(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: vec![],
            body: body.into(),
            delay: None,
        }
    }
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = Some(d);
        self
    }
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
}

#[derive(Default)]
struct MockState {
    requests: Vec<Recorded>,
    script: VecDeque<Reply>,
    default: Option<Reply>,
    routes: Vec<(String, Reply)>,
}

/// A chat platform stand-in. Answers `{"ok":true,"ts":"<n>"}` by default
/// (Slack's shape; fine for generic webhooks too).
pub struct Mock {
    pub addr: SocketAddr,
    state: Arc<Mutex<MockState>>,
    _rt: tokio::runtime::Runtime,
}

impl Mock {
    pub fn start() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let state = Arc::new(Mutex::new(MockState::default()));
        let st = state.clone();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        rt.spawn(async move {
            let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
                let st = st.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let bytes = axum::body::to_bytes(body, 10 << 20)
                        .await
                        .unwrap_or_default();
                    let delay = {
                        let mut s = st.lock().unwrap();
                        let n = s.requests.len();
                        let path_only = parts.uri.path().to_string();
                        let routed = s
                            .routes
                            .iter()
                            .find(|(p, _)| *p == path_only)
                            .map(|(_, r)| r.clone());
                        let reply = routed
                            .or_else(|| s.script.pop_front())
                            .or_else(|| s.default.clone())
                            .unwrap_or_else(|| {
                                Reply::new(
                                    200,
                                    &format!(
                                        "{{\"ok\":true,\"channel\":\"C0DEV\",\"ts\":\"{}.000100\"}}",
                                        1_700_000_000 + n
                                    ),
                                )
                            });
                        s.requests.push(Recorded {
                            method: parts.method.to_string(),
                            path: parts
                                .uri
                                .path_and_query()
                                .map(|p| p.to_string())
                                .unwrap_or_default(),
                            headers: parts
                                .headers
                                .iter()
                                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                                .collect(),
                            body: String::from_utf8_lossy(&bytes).into_owned(),
                            at: Instant::now(),
                            status: reply.status,
                        });
                        (reply.delay, reply)
                    };
                    let (delay, reply) = delay;
                    if let Some(d) = delay {
                        tokio::time::sleep(d).await;
                    }
                    let mut resp = axum::response::Response::builder().status(reply.status);
                    for (k, v) in &reply.headers {
                        resp = resp.header(k, v);
                    }
                    resp.body(axum::body::Body::from(reply.body)).unwrap()
                }
            });
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            addr,
            state,
            _rt: rt,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Answers the next requests with these, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.lock().unwrap().script.extend(replies);
    }

    /// Always answers requests for `path` with `reply` (before the script).
    pub fn route(&self, path: &str, reply: Reply) {
        self.state.lock().unwrap().routes.push((path.into(), reply));
    }

    /// Like [`Mock::route`], replacing what `path` answered before.
    pub fn set_route(&self, path: &str, reply: Reply) {
        let mut s = self.state.lock().unwrap();
        s.routes.retain(|(p, _)| p != path);
        s.routes.push((path.into(), reply));
    }

    /// Answers every request with this once the script is used up.
    pub fn always(&self, reply: Reply) {
        self.state.lock().unwrap().default = Some(reply);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Waits until at least `n` requests arrived (or panics after `timeout`).
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let end = Instant::now() + timeout;
        loop {
            let r = self.requests();
            if r.len() >= n {
                return r;
            }
            assert!(
                Instant::now() < end,
                "mock got {} requests, expected {n}: {:#?}",
                r.len(),
                r
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    /// Waits for the request whose body carries `marker` (see
    /// [`marker_fixture`]; one chat) and returns the requests that arrived
    /// before it. [`Mock::before_markers`] for a marker several chats get.
    pub fn before_marker(&self, marker: &str, timeout: Duration) -> Vec<Recorded> {
        self.before_markers(marker, 1, timeout)
    }

    /// Waits until `copies` requests carry `marker` (one per chat the
    /// marker event reaches; see [`marker_fixture`]) and returns the other
    /// requests that arrived before the last of them.
    ///
    /// The barrier for "nothing else arrived" checks: a chat delivers in
    /// the order events were accepted, so whatever the step under test put
    /// in a chat's queue has arrived once a marker accepted after it has.
    pub fn before_markers(&self, marker: &str, copies: usize, timeout: Duration) -> Vec<Recorded> {
        let end = Instant::now() + timeout;
        loop {
            let r = self.requests();
            let last = r
                .iter()
                .enumerate()
                .filter(|(_, q)| q.body.contains(marker))
                .nth(copies.saturating_sub(1))
                .map(|(i, _)| i);
            if let Some(last) = last {
                return r[..last]
                    .iter()
                    .filter(|q| !q.body.contains(marker))
                    .cloned()
                    .collect();
            }
            assert!(
                Instant::now() < end,
                "the marker {marker} did not arrive {copies} times; got {} requests: {:#?}",
                r.len(),
                r
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The relay binary, running `serve`.
pub struct Relay {
    pub child: Child,
    pub public: SocketAddr,
    pub admin: SocketAddr,
    pub config: PathBuf,
    pub data_dir: PathBuf,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Relay {
    /// Starts `serve` and waits for its "listening" line.
    pub fn start(config: &Path, data_dir: &Path, env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(BIN);
        cmd.args(["--log-format", "json", "serve", "--config"])
            .arg(config)
            .arg("--data-dir")
            .arg(data_dir)
            .args(store_for(data_dir, env))
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .env("DISCOURSE_WEBHOOK_SECRET", SECRET)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && v["fields"]["message"] == "listening"
                {
                    let _ = tx.send((
                        v["fields"]["public"].as_str().unwrap_or("").to_string(),
                        v["fields"]["admin"].as_str().unwrap_or("").to_string(),
                    ));
                }
                log2.lock().unwrap().push(line);
            }
        });
        // Drain stdout so console output can never block the relay.
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || for _ in BufReader::new(stdout).lines() {});
        let (public, admin) = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!("relay did not start: {:#?}", log.lock().unwrap());
            }
        };
        Self {
            child,
            public: public.parse().unwrap(),
            admin: admin.parse().unwrap(),
            config: config.to_path_buf(),
            data_dir: data_dir.to_path_buf(),
            log,
        }
    }

    pub fn webhook_url(&self) -> String {
        format!("http://{}/webhooks/discourse", self.public)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    /// Posts a fixture file (`webhooks/NAME`) exactly as recorded.
    pub fn post_fixture(&self, name: &str) -> (u16, String) {
        let f = fixture(name);
        self.post(&f.headers, f.body)
    }

    pub fn post(&self, headers: &[(String, String)], body: Vec<u8>) -> (u16, String) {
        let client = reqwest::blocking::Client::new();
        let mut req = client.post(self.webhook_url());
        for (k, v) in headers {
            if k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("host") {
                continue;
            }
            req = req.header(k.as_str(), v.as_str());
        }
        let resp = req.body(body).send().unwrap();
        (resp.status().as_u16(), resp.text().unwrap_or_default())
    }

    pub fn status(&self) -> Value {
        reqwest::blocking::get(self.admin_url("/api/status"))
            .unwrap()
            .json()
            .unwrap()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// kill -9: no chance to flush anything.
    pub fn kill9(mut self) {
        self.signal("KILL");
        let _ = self.child.wait();
    }

    pub fn logs(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits until `f` holds for the status JSON.
    pub fn wait_status(&self, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            let s = self.status();
            if f(&s) {
                return s;
            }
            assert!(Instant::now() < end, "timed out waiting for {what}: {s:#}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until a log line satisfies `f` (the relay logs JSON lines);
    /// for state the status does not show, such as learned categories.
    pub fn wait_log(&self, what: &str, f: impl Fn(&str) -> bool) {
        let end = Instant::now() + Duration::from_secs(15);
        while !self.log.lock().unwrap().iter().any(|l| f(l)) {
            assert!(
                Instant::now() < end,
                "timed out waiting for {what} in the log:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The barrier for "nothing else arrived" checks: waits until `marker`
    /// (posted after the step under test, see [`Relay::post_marker`]) has
    /// reached `copies` chats of `mock` and every chat's queue is empty,
    /// then returns every request but the marker's. A chat delivers in the
    /// order events were accepted, so what the step queued has arrived by
    /// the marker; the empty queues catch what would be sent again later
    /// (a delivery never acknowledged stays queued).
    pub fn settle(&self, mock: &Mock, marker: &str, copies: usize) -> Vec<Recorded> {
        mock.before_markers(marker, copies, Duration::from_secs(15));
        self.wait_status("every queue empty", |s| {
            s["chats"]
                .as_array()
                .is_some_and(|c| c.iter().all(|c| c["queue_depth"] == 0))
        });
        mock.requests()
            .into_iter()
            .filter(|r| !r.body.contains(marker))
            .collect()
    }

    /// Posts a marker event made from the fixture `base` (see
    /// [`marker_fixture`]) and returns its marker.
    pub fn post_marker(&self, base: &str) -> String {
        let (marker, f) = marker_fixture(base);
        let (status, body) = self.post(&f.headers, f.body);
        assert_eq!(status, 202, "the marker event was refused: {body}");
        marker
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A recorded webhook request from tests/fixtures/webhooks.
pub struct Fixture {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Fixture {
    pub fn set_header(&mut self, name: &str, value: &str) {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.headers.push((name.into(), value.into()));
    }
}

pub fn fixture(name: &str) -> Fixture {
    let text = std::fs::read_to_string(root().join(format!("tests/fixtures/webhooks/{name}.json")))
        .unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    Fixture {
        headers: v["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect(),
        body: v["raw_body"].as_str().unwrap().as_bytes().to_vec(),
    }
}

/// The fixture `webhooks/NAME` with its JSON body changed by `edit`,
/// signed again with [`SECRET`] and given a new event id (Discourse's
/// redeliveries repeat ids, so a reused id would be a duplicate).
pub fn edited_fixture(name: &str, edit: impl FnOnce(&mut Value)) -> Fixture {
    static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(900_000);
    let mut f = fixture(name);
    let mut body: Value = serde_json::from_slice(&f.body).unwrap();
    edit(&mut body);
    f.body = serde_json::to_vec(&body).unwrap();
    let sig = discourse_relay::ingest::request::sign(SECRET.as_bytes(), &f.body);
    f.set_header("X-Discourse-Event-Signature", &sig);
    let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    f.set_header("X-Discourse-Event-Id", &id.to_string());
    f
}

/// A marker event: the fixture `base` (a `post_created`) as a new post in
/// a new topic whose title and text are a unique marker, returned with it.
/// It routes like `base` (same category, same kind of post). Post it after
/// the step under test and wait for it with [`Mock::before_marker`].
pub fn marker_fixture(base: &str) -> (String, Fixture) {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let marker = format!("barrier-marker-{n}");
    let text = marker.clone();
    let f = edited_fixture(base, move |v| {
        let p = &mut v["post"];
        p["id"] = (700_000 + n).into();
        p["topic_id"] = (70_000 + n).into();
        p["post_number"] = 1.into();
        p["reply_to_post_number"] = Value::Null;
        p["topic_title"] = text.clone().into();
        p["topic_slug"] = text.clone().into();
        p["raw"] = text.clone().into();
        p["cooked"] = format!("<p>{text}</p>").into();
    });
    (marker, f)
}

/// Whether `CI` says this is a CI run (`true` or `1`): there every real
/// peer (IRC, XMPP, SMTP, Synapse servers, a tmpfs mount) must be present.
pub fn in_ci() -> bool {
    std::env::var("CI")
        .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1"))
}

/// Called by a real-peer test whose peer is missing, right before it
/// returns. Under `CI=true` it panics: the test would pass while running
/// nothing, so a broken install step in .ci/run would hide. Elsewhere (or
/// when `RELAY_TEST_WITHOUT`, a comma-separated list, names `peer`: a
/// machine that cannot provide it says so on purpose) it prints a SKIP line
/// to stderr (shown with `--nocapture`, and in the log of a failing run).
pub fn peer_missing(peer: &str, what: &str) {
    let waived = std::env::var("RELAY_TEST_WITHOUT")
        .is_ok_and(|list| list.split(',').any(|p| p.trim() == peer));
    if in_ci() && !waived {
        panic!(
            "CI=true but {what}: the step of .ci/run that provides {peer} is broken \
             (set RELAY_TEST_WITHOUT={peer} to skip this test on purpose)"
        );
    }
    eprintln!("SKIP: {what}");
}

/// `RELAY_TEST_STORE=postgres` runs every relay these tests start on the
/// PostgreSQL store (`--store`), one schema per data dir (a restart on the
/// same dir finds its queue): the serve, crash and reliability scenarios
/// against the second backend. Unset: redb in the data dir, as users run it.
/// A test that chooses its own store (`RELAY_STORE` in `env`) keeps it.
fn store_for(data_dir: &Path, env: &[(&str, &str)]) -> Vec<String> {
    let own = env.iter().any(|(k, _)| *k == "RELAY_STORE");
    if own || std::env::var("RELAY_TEST_STORE").as_deref() != Ok("postgres") {
        return vec![];
    }
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    data_dir.hash(&mut h);
    let schema = format!("dir_{:016x}", h.finish());
    let base = std::env::var("DISCOURSE_RELAY_TEST_PG")
        .expect("RELAY_TEST_STORE=postgres needs DISCOURSE_RELAY_TEST_PG");
    let mut c = postgres::Client::connect(&base, postgres::NoTls).unwrap();
    c.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    vec![
        "--store".into(),
        format!("{base}{sep}options=-csearch_path%3D{schema}"),
    ]
}

/// A PostgreSQL store of its own for test `name`: a fresh schema in the
/// test database (`DISCOURSE_RELAY_TEST_PG`, from scripts/ci/start-postgres),
/// as a URL whose connections use it. `None` after [`peer_missing`] when the
/// variable is not set (a failure under CI=true).
pub fn postgres_store(name: &str) -> Option<String> {
    let base = match std::env::var("DISCOURSE_RELAY_TEST_PG") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            peer_missing(
                "postgres",
                "DISCOURSE_RELAY_TEST_PG is not set (scripts/ci/start-postgres)",
            );
            return None;
        }
    };
    let schema = format!("it{}_{name}", std::process::id());
    let mut c = postgres::Client::connect(&base, postgres::NoTls).unwrap();
    c.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
    ))
    .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    Some(format!(
        "{base}{sep}options=-csearch_path%3D{schema}&application_name={schema}"
    ))
}

/// A fresh temporary directory (removed when dropped).
pub fn temp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// A config with one webhook chat per mock URL path, watching everything.
pub fn config(delay: &str, chats: &[(&str, &str)], extra: &str) -> String {
    let mut s = format!(
        "[discourse]\nurl = \"https://forum.example.org\"\nwebhook_secret = \"${{DISCOURSE_WEBHOOK_SECRET}}\"\ndelay = \"{delay}\"\n\n[server]\nmax_age = \"1h\"\n\n{extra}\n"
    );
    for (name, url) in chats {
        s.push_str(&format!(
            "[[chat]]\nname = \"{name}\"\nprovider = \"webhook\"\nurl = \"{url}\"\nrate_limit = \"100/s\"\nsubscribe = [\"all\"]\n\n"
        ));
    }
    s
}

/// Sends the fixture `webhooks/NAME` to chat `chat` of the config `toml`
/// exactly as a running relay would (same loader, renderer, request and
/// sender), and returns the provider's classified outcome. Point the
/// provider's `api_url`/`url` at a [`Mock`] to see the request.
pub fn deliver(
    toml: &str,
    chat: &str,
    fixture_name: &str,
    env: &[(&str, &str)],
) -> discourse_relay::providers::Outcome {
    let (p, idx, event) = loaded(toml, chat, fixture_name, env);
    let (_, out) = p.message(idx, &event).unwrap();
    send(&p, idx, &out)
}

/// [`deliver`] for a given action (a thread reply, an edit, a delete), as
/// the delivery worker would ask for it; `strike` strikes the text through.
pub fn deliver_as(
    toml: &str,
    chat: &str,
    fixture_name: &str,
    env: &[(&str, &str)],
    action: discourse_relay::providers::Action<'_>,
    strike: bool,
) -> discourse_relay::providers::Outcome {
    let (p, idx, event) = loaded(toml, chat, fixture_name, env);
    // A new delivery each call, as the worker would number it.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let seq = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let delivery = format!("{chat}#{seq}@1700000000000");
    let (_, out) = p
        .message_as(idx, &event, action, strike, &delivery)
        .unwrap();
    send(&p, idx, &out)
}

/// The config loaded, the chat's index and the fixture normalized.
fn loaded(
    toml: &str,
    chat: &str,
    fixture_name: &str,
    env: &[(&str, &str)],
) -> (
    discourse_relay::pipeline::Pipeline,
    usize,
    discourse_relay::ingest::Event,
) {
    use discourse_relay::config::MissingEnv;
    use discourse_relay::ingest::{ForumState, Ingested, WebhookRequest, normalize};
    let env: std::collections::HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let (p, _) =
        discourse_relay::pipeline::load_str(Path::new("test.toml"), toml, &env, MissingEnv::Error)
            .unwrap_or_else(|d| panic!("config invalid:\n{d}"));
    let f = fixture(fixture_name);
    let req = WebhookRequest {
        headers: f.headers,
        body: f.body,
    };
    let mut state = ForumState::new(&p.config.forum().categories);
    let Ok(Ingested::Event(event)) = normalize(&req, &mut state, &p.config.forum().url) else {
        panic!("{fixture_name} is not an event");
    };
    let idx = p
        .chat_index(chat)
        .unwrap_or_else(|| panic!("no chat {chat}"));
    (p, idx, *event)
}

/// Sends a built request with the relay's sender.
fn send(
    p: &discourse_relay::pipeline::Pipeline,
    idx: usize,
    out: &discourse_relay::providers::Outbound,
) -> discourse_relay::providers::Outcome {
    let sender = discourse_relay::delivery::send::Sender::new().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(sender.send(
        p.config.chats[idx].destination.as_ref(),
        out,
        &p.config.redactor,
    ))
}

/// Runs `discourse-relay doctor --config CFG [ARGS]` with `env`; returns its
/// exit code and stdout + stderr, after checking that none of `secrets`
/// appears in them.
pub fn doctor_run(
    cfg: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    secrets: &[&str],
) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .args(["doctor", "--config"])
        .arg(cfg)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    for s in secrets {
        assert!(!text.contains(s), "a secret in doctor's output:\n{text}");
    }
    (out.status.code(), text)
}
