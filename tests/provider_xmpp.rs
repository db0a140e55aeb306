//! The `xmpp` provider against a real XMPP server: prosody (Debian package)
//! with multi-user chat on 127.0.0.1, started by `scripts/ci/start-xmpp`,
//! which writes target/xmpp/env (`RELAY_TEST_XMPP=127.0.0.1:PORT`, the
//! accounts and passwords). A second account, `reader`, joins the room over
//! a raw socket (PLAIN login, its own few lines of XMPP) and records what it
//! receives. Checks: the hostile fixture and a normal post arrive as exactly
//! the text `explain` shows, a body full of `</body><message ...>` arrives as
//! text and makes no stanza of its own, one connection serves several sends,
//! and the server's refusals are classified (bad password, members-only
//! room, banned, STARTTLS against a certificate nobody vouches for,
//! connection refused).
//!
//! Without `RELAY_TEST_XMPP` (or without prosody) every test prints a SKIP
//! line to stderr and passes, except under `CI=true`, where it fails
//! (`common::peer_missing`).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use discourse_relay::providers::xmpp::xml::{self, Element, Item};
use discourse_relay::providers::{Message, Outbound, Outcome};

struct Server {
    addr: String,
    port: u16,
    domain: String,
    muc: String,
    bot: String,
    bot_pass: String,
    reader: String,
    reader_pass: String,
}

fn server() -> Option<Server> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let addr = var("RELAY_TEST_XMPP")?;
    let prosody_installed = ["/usr/bin/prosody", "/usr/sbin/prosody"]
        .iter()
        .any(|p| Path::new(p).exists())
        || std::env::var("PATH")
            .is_ok_and(|path| std::env::split_paths(&path).any(|d| d.join("prosody").is_file()));
    if !prosody_installed {
        return None;
    }
    let port = addr.rsplit(':').next()?.parse().ok()?;
    Some(Server {
        addr: addr.clone(),
        port,
        domain: var("RELAY_TEST_XMPP_DOMAIN").unwrap_or_else(|| "localhost".into()),
        muc: var("RELAY_TEST_XMPP_MUC").unwrap_or_else(|| "conference.localhost".into()),
        bot: var("RELAY_TEST_XMPP_BOT")?,
        bot_pass: var("RELAY_TEST_XMPP_BOT_PASS")?,
        reader: var("RELAY_TEST_XMPP_READER")?,
        reader_pass: var("RELAY_TEST_XMPP_READER_PASS")?,
    })
}

macro_rules! require_xmpp {
    () => {
        match server() {
            Some(s) => s,
            None => {
                peer_missing(
                    "prosody",
                    "no prosody server (RELAY_TEST_XMPP* unset or prosody not installed: \
                     run scripts/ci/start-xmpp and source target/xmpp/env)",
                );
                return;
            }
        }
    };
}

/// A room name no other test (or earlier run) used.
fn unique_room(s: &Server, what: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{what}-{}-{nanos}-{}@{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        s.muc
    )
}

// ---------------------------------------------------------------------------
// The reader: a minimal XMPP client over a blocking socket.

struct Reader {
    sock: TcpStream,
    buf: Vec<u8>,
    /// Every byte received after the room was joined.
    raw: Vec<u8>,
    recording: bool,
    nick: String,
    ids: u32,
}

impl Reader {
    fn login(s: &Server) -> Self {
        let sock = TcpStream::connect(&s.addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut r = Self {
            sock,
            buf: Vec::new(),
            raw: Vec::new(),
            recording: false,
            nick: "reader".into(),
            ids: 0,
        };
        let features = r.open_stream(&s.domain);
        let mechs = features.child("mechanisms").expect("SASL mechanisms");
        assert!(
            mechs.children.iter().any(|m| m.text == "PLAIN"),
            "the reader needs PLAIN (allow_unencrypted_plain_auth): {mechs:?}"
        );
        let user = s.reader.split('@').next().unwrap();
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("\0{user}\0{}", s.reader_pass));
        r.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"
        ));
        let answer = r.until(Duration::from_secs(10), |e| {
            matches!(e.local(), "success" | "failure")
        });
        assert_eq!(answer.local(), "success", "reader login: {answer:?}");
        r.open_stream(&s.domain);
        // A resource of its own: tests run in parallel, and a second login
        // with the same full JID would kick the first off the server.
        static N: AtomicU32 = AtomicU32::new(0);
        let resource = format!("reader-{}", N.fetch_add(1, Ordering::Relaxed));
        r.iq(
            &format!("<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{resource}</resource></bind>"),
            None,
        );
        r
    }

    fn send(&mut self, data: &str) {
        self.sock.write_all(data.as_bytes()).unwrap();
    }

    fn open_stream(&mut self, domain: &str) -> Element {
        self.buf.clear();
        self.send(&format!(
            "<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
        ));
        self.until(Duration::from_secs(10), |e| e.local() == "features")
    }

    /// Sends an IQ set and waits for its result.
    fn iq(&mut self, payload: &str, to: Option<&str>) -> Element {
        self.ids += 1;
        let id = format!("reader-{}", self.ids);
        let to = to.map(|t| format!(" to='{t}'")).unwrap_or_default();
        self.send(&format!("<iq type='set' id='{id}'{to}>{payload}</iq>"));
        let answer = self.until(Duration::from_secs(10), |e| {
            e.local() == "iq" && e.attr("id") == Some(id.as_str())
        });
        assert_eq!(answer.attr("type"), Some("result"), "{answer:?}");
        answer
    }

    /// The next element, or `None` after `wait`.
    fn next(&mut self, wait: Duration) -> Option<Element> {
        let end = Instant::now() + wait;
        loop {
            match xml::next_item(&mut self.buf).expect("well-formed XML from prosody") {
                Some(Item::Element(e)) => {
                    // Answer server pings like a good client.
                    if e.local() == "iq" && e.attr("type") == Some("get") {
                        let id = e.attr("id").unwrap_or("").to_string();
                        self.send(&format!("<iq type='result' id='{id}'/>"));
                    }
                    return Some(e);
                }
                Some(_) => continue,
                None => {}
            }
            if Instant::now() >= end {
                return None;
            }
            let mut chunk = [0u8; 8192];
            match self.sock.read(&mut chunk) {
                Ok(0) => panic!("prosody closed the reader's stream"),
                Ok(n) => {
                    if self.recording {
                        self.raw.extend_from_slice(&chunk[..n]);
                    }
                    self.buf.extend_from_slice(&chunk[..n]);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("reader: {e}"),
            }
        }
    }

    fn until(&mut self, wait: Duration, f: impl Fn(&Element) -> bool) -> Element {
        let end = Instant::now() + wait;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.next(left) {
                Some(e) if f(&e) => return e,
                Some(_) => {}
                None => panic!("reader: timed out"),
            }
        }
    }

    /// Joins (creating it when new) `room` and waits for the self-presence.
    fn join(&mut self, room: &str) {
        self.send(&format!(
            "<presence to='{room}/{}'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>",
            self.nick
        ));
        let p = self.until(Duration::from_secs(10), |e| {
            e.local() == "presence"
                && e.attr("from")
                    .is_some_and(|f| f.starts_with(&format!("{room}/")))
                && (e.attr("type") == Some("error")
                    || e.child("x").is_some_and(|x| {
                        x.children
                            .iter()
                            .any(|c| c.local() == "status" && c.attr("code") == Some("110"))
                    }))
        });
        assert_ne!(p.attr("type"), Some("error"), "reader join: {p:?}");
        self.recording = true;
    }

    /// Groupchat messages from others in `room`: (nick, body), for `wait`.
    fn messages(&mut self, room: &str, n: usize, wait: Duration) -> Vec<(String, String)> {
        let end = Instant::now() + wait;
        let mut out = Vec::new();
        while out.len() < n {
            let left = end.saturating_duration_since(Instant::now());
            let Some(e) = self.next(left) else { break };
            if e.local() != "message" {
                continue;
            }
            let from = e.attr("from").unwrap_or("");
            let Some((bare, nick)) = from.split_once('/') else {
                continue;
            };
            if bare != room || nick == self.nick {
                continue;
            }
            assert_eq!(e.attr("type"), Some("groupchat"), "{e:?}");
            let body = e.child("body").map(|b| b.text.clone()).unwrap_or_default();
            out.push((nick.to_string(), body));
        }
        out
    }

    /// Stanzas seen on the wire (after the join) that open `<message`.
    fn raw_message_tags(&self) -> usize {
        String::from_utf8_lossy(&self.raw)
            .matches("<message")
            .count()
    }
}

// ---------------------------------------------------------------------------
// The relay side

fn config(s: &Server, room: &str, extra: &str) -> String {
    format!(
        r##"[discourse]
url = "https://forum.example.org"

[providers.jabber]
kind = "xmpp"
jid = "{bot}"
password = "${{XMPP_PASSWORD}}"
server = "127.0.0.1"
port = {port}
tls = "none"
nick = "relay"

[[chat]]
name = "forum"
provider = "jabber"
room = "{room}"
rate_limit = "100/s"
subscribe = ["all"]
{extra}"##,
        bot = s.bot,
        port = s.port,
    )
}

fn env(s: &Server) -> Vec<(&'static str, String)> {
    vec![
        ("XMPP_PASSWORD", s.bot_pass.clone()),
        ("XMPP_BAD_PASSWORD", "wrong-password-canary".into()),
    ]
}

/// One loaded config whose provider instances (and so XMPP connections)
/// live across several sends on one runtime.
struct Relay {
    p: discourse_relay::pipeline::Pipeline,
    rt: tokio::runtime::Runtime,
}

impl Relay {
    fn load(toml: &str, env: &[(&str, String)]) -> Self {
        let env: std::collections::HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let (p, _) = discourse_relay::pipeline::load_str(
            Path::new("xmpp.toml"),
            toml,
            &env,
            discourse_relay::config::MissingEnv::Error,
        )
        .unwrap_or_else(|d| panic!("config invalid:\n{d}"));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        Self { p, rt }
    }

    /// Sends `text` to `chat`; returns the outcome and the body `explain` shows.
    fn send(&self, chat: &str, text: &str) -> (Outcome, String) {
        let idx = self.p.chat_index(chat).unwrap();
        let ctx = serde_json::json!({});
        let out = self.p.config.chats[idx].destination.request(&Message {
            chat,
            text,
            context: &ctx,
            card: None,
            custom: None,
            action: Default::default(),
            delivery: None,
        });
        let shown = out.redacted_json(&self.p.config.redactor)["body"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let Outbound::Native(m) = out else {
            panic!("xmpp must be native")
        };
        (self.rt.block_on(m.sender.send(&m.payload)), shown)
    }

    /// The body `explain` shows for a fixture sent to `chat`.
    fn shown_for(&self, chat: &str, fixture_name: &str) -> serde_json::Value {
        use discourse_relay::ingest::{ForumState, Ingested, WebhookRequest, normalize};
        let f = fixture(fixture_name);
        let req = WebhookRequest {
            headers: f.headers,
            body: f.body,
        };
        let mut state = ForumState::new(&self.p.config.forum().categories);
        let Ok(Ingested::Event(event)) = normalize(&req, &mut state, &self.p.config.forum().url)
        else {
            panic!("{fixture_name} is not an event");
        };
        let idx = self.p.chat_index(chat).unwrap();
        let (_, out) = self.p.message(idx, &event).unwrap();
        out.redacted_json(&self.p.config.redactor)
    }
}

fn env_refs<'a>(e: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    e.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[test]
fn hostile_and_normal_posts_arrive_as_exact_text() {
    let s = require_xmpp!();
    let room = unique_room(&s, "forum");
    let mut reader = Reader::login(&s);
    reader.join(&room);
    let toml = config(&s, &room, "");
    let env = env(&s);
    let relay = Relay::load(&toml, &env);

    let t = Instant::now();
    for fixture_name in ["post_created_hostile_content", "post_created_first_post"] {
        let out = deliver(&toml, "forum", fixture_name, &env_refs(&env));
        assert_eq!(out, Outcome::Sent { remote_id: None }, "{fixture_name}");
    }
    let got = reader.messages(&room, 2, Duration::from_secs(10));
    println!(
        "two deliveries (two logins) and the reader's copies: {:?}",
        t.elapsed()
    );
    assert_eq!(got.len(), 2, "{got:#?}");
    let hostile = relay.shown_for("forum", "post_created_hostile_content");
    let normal = relay.shown_for("forum", "post_created_first_post");
    assert_eq!(hostile["method"], "groupchat");
    assert_eq!(hostile["url"], format!("xmpp:{room}"));
    assert_eq!(
        got[0],
        (
            "relay".to_string(),
            hostile["body"].as_str().unwrap().to_string()
        )
    );
    assert_eq!(
        got[1],
        (
            "relay".to_string(),
            normal["body"].as_str().unwrap().to_string()
        )
    );
    // The markup of the hostile post arrived as text.
    assert!(
        got[0]
            .1
            .contains("<!channel> @everyone <script>alert(1)</script>"),
        "{}",
        got[0].1
    );
    assert!(
        got[1].1.contains("https://forum.example.org/t/"),
        "{}",
        got[1].1
    );
    assert_eq!(
        reader.raw_message_tags(),
        2,
        "{}",
        String::from_utf8_lossy(&reader.raw)
    );
}

#[test]
fn markup_in_a_title_cannot_make_stanzas_and_one_connection_serves_all() {
    let s = require_xmpp!();
    let room = unique_room(&s, "inject");
    let mut reader = Reader::login(&s);
    reader.join(&room);
    let relay = Relay::load(&config(&s, &room, ""), &env(&s));

    let hostile = format!(
        "Title </body></message><message to='{}' type='chat'><body>pwned</body></message><presence type='unavailable'/> & \"q\" 'a' \u{0}\u{1b}[31m\r\nsecond line",
        s.reader
    );
    let t = Instant::now();
    let (out, shown) = relay.send("forum", &hostile);
    let first = t.elapsed();
    assert_eq!(out, Outcome::Sent { remote_id: None });
    let expected = format!(
        "Title </body></message><message to='{}' type='chat'><body>pwned</body></message><presence type='unavailable'/> & \"q\" 'a' [31m\nsecond line",
        s.reader
    );
    assert_eq!(shown, expected);

    // Several more on the same connection, in order.
    let t = Instant::now();
    for i in 0..20 {
        let (out, _) = relay.send("forum", &format!("message {i}"));
        assert_eq!(out, Outcome::Sent { remote_id: None });
    }
    println!(
        "first send (connect, login, join, echo): {first:?}; 20 more on the same connection: {:?}",
        t.elapsed()
    );
    let got = reader.messages(&room, 21, Duration::from_secs(10));
    assert_eq!(got.len(), 21, "{got:#?}");
    assert_eq!(got[0].1, expected);
    for (i, (nick, body)) in got[1..].iter().enumerate() {
        assert_eq!(
            (nick.as_str(), body.as_str()),
            ("relay", format!("message {i}").as_str())
        );
    }
    // Nothing else arrived: no direct "pwned" chat message, no extra stanza.
    if let Some(e) = reader.next(Duration::from_millis(300)) {
        panic!("unexpected stanza after the messages: {e:?}");
    }
    assert_eq!(reader.raw_message_tags(), 21);
    let raw = String::from_utf8_lossy(&reader.raw);
    assert!(!raw.contains("<body>pwned"), "{raw}");
    // The relay joined once: one occupant presence for "relay".
    assert_eq!(
        raw.matches(&format!("from='{room}/relay'")).count() - 21,
        1,
        "{raw}"
    );
}

#[test]
fn refusals_are_classified() {
    let s = require_xmpp!();
    let open_room = unique_room(&s, "open");
    let members_room = unique_room(&s, "members");
    let banned_room = unique_room(&s, "banned");

    // The reader owns two rooms: one members-only, one that bans the relay.
    let mut owner = Reader::login(&s);
    owner.join(&members_room);
    owner.iq(
        "<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>\
         <field var='muc#roomconfig_membersonly'><value>1</value></field></x></query>",
        Some(&members_room),
    );
    owner.join(&banned_room);
    owner.iq(
        &format!(
            "<query xmlns='http://jabber.org/protocol/muc#admin'><item affiliation='outcast' jid='{}'/></query>",
            s.bot
        ),
        Some(&banned_room),
    );

    let extra = format!(
        r##"
[[chat]]
name = "members"
provider = "jabber"
room = "{members_room}"
subscribe = ["all"]

[[chat]]
name = "banned"
provider = "jabber"
room = "{banned_room}"
subscribe = ["all"]

[providers.badpass]
kind = "xmpp"
jid = "{bot}"
password = "${{XMPP_BAD_PASSWORD}}"
server = "127.0.0.1"
port = {port}
tls = "none"

[[chat]]
name = "badpass"
provider = "badpass"
room = "{open_room}"
subscribe = ["all"]

[providers.tls]
kind = "xmpp"
jid = "{bot}"
password = "${{XMPP_PASSWORD}}"
server = "127.0.0.1"
port = {port}

[[chat]]
name = "tls"
provider = "tls"
room = "{open_room}"
subscribe = ["all"]

[providers.closed]
kind = "xmpp"
jid = "{bot}"
password = "${{XMPP_PASSWORD}}"
server = "127.0.0.1"
port = {closed}
tls = "none"

[[chat]]
name = "closed"
provider = "closed"
room = "{open_room}"
subscribe = ["all"]
"##,
        bot = s.bot,
        port = s.port,
        closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        },
    );
    let relay = Relay::load(&config(&s, &open_room, &extra), &env(&s));

    let permanent = |chat: &str| match relay.send(chat, "hello").0 {
        Outcome::Permanent { reason } => reason,
        other => panic!("{chat}: expected permanent, got {other:?}"),
    };
    let reason = permanent("badpass");
    assert!(reason.contains("not-authorized"), "{reason}");
    assert!(!reason.contains("wrong-password-canary") && !reason.contains(&s.bot_pass));
    let reason = permanent("members");
    assert!(
        reason.contains("registration-required") && reason.contains("members-only"),
        "{reason}"
    );
    let reason = permanent("banned");
    assert!(
        reason.contains("forbidden") && reason.contains("banned"),
        "{reason}"
    );
    // The same connection still delivers to a room that accepts it.
    assert_eq!(
        relay.send("forum", "still here").0,
        Outcome::Sent { remote_id: None }
    );

    // STARTTLS happens, but prosody's self-signed certificate is not trusted.
    match relay.send("tls", "hello").0 {
        Outcome::Retry { reason, .. } => {
            assert!(reason.contains("TLS handshake"), "{reason}");
            assert!(!reason.contains(&s.bot_pass));
        }
        other => panic!("tls: expected retry, got {other:?}"),
    }
    match relay.send("closed", "hello").0 {
        Outcome::Retry { reason, .. } => assert!(reason.contains("cannot connect"), "{reason}"),
        other => panic!("closed: expected retry, got {other:?}"),
    }
}

/// `doctor` against the real prosody: the login passes, a wrong password
/// fails, and neither password is printed.
#[test]
fn doctor_logs_in_and_reports_a_bad_password() {
    let s = require_xmpp!();
    let room = unique_room(&s, "doctor");
    let extra = format!(
        r##"
[providers.badpass]
kind = "xmpp"
jid = "{bot}"
password = "${{XMPP_BAD_PASSWORD}}"
server = "127.0.0.1"
port = {port}
tls = "none"

[[chat]]
name = "badpass"
provider = "badpass"
room = "{room}"
subscribe = ["all"]
"##,
        bot = s.bot,
        port = s.port,
    );
    let dir = temp();
    let cfg = write(dir.path(), "xmpp.toml", config(&s, &room, &extra));
    let vars = env(&s);
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let secrets = [s.bot_pass.as_str(), "wrong-password-canary"];
    let doctor = |chat: &str| doctor_run(&cfg, &["--chat", chat], &vars, &secrets);
    let (code, text) = doctor("forum");
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("PASS chat forum (xmpp, "), "{text}");
    let (code, text) = doctor("badpass");
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("FAIL chat badpass (xmpp, "), "{text}");
}
