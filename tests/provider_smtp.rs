//! The `smtp` provider against a real SMTP server: aiosmtpd (PyPI) on
//! 127.0.0.1 with a small handler that stores each message (parsed by
//! Python's `email` package, so encoded headers are decoded independently of
//! lettre), refuses `nobody@` with 550 and `busy@` with 451, and accepts
//! AUTH PLAIN/LOGIN for one user. Checks: From/To/Subject/body of the hostile
//! fixture, no header injection through a hostile topic title, the server's
//! refusals classified, and no password in any reason.
//!
//! Python with aiosmtpd comes from `RELAY_TEST_AIOSMTPD_PYTHON` (set by
//! scripts/ci/start-smtp), else target/smtp-venv/bin/python, else python3;
//! without it every test prints a SKIP line to stderr and passes, except
//! under `CI=true`, where it fails (`common::peer_missing`).

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use discourse_relay::providers::{Message, Outbound, Outcome};
use serde_json::{Value, json};

const SMTP_USER: &str = "relay";
const SMTP_PASS: &str = "smtp-canary-pass";

const HANDLER: &str = r#"
import asyncio, email, json, os, sys, time, warnings
warnings.simplefilter("ignore")  # aiosmtpd 1.4 warns about its own Session.login_data
from email import policy
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

port, out = int(sys.argv[1]), sys.argv[2]

class Handler:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("nobody@"):
            return "550 5.1.1 mailbox unavailable"
        if address.startswith("busy@"):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=policy.default)
        body = msg.get_body(preferencelist=("plain",))
        html = msg.get_body(preferencelist=("html",))
        doc = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "header_names": [k for k in msg.keys()],
            "from": str(msg["From"]),
            "to": str(msg["To"]),
            "subject": str(msg["Subject"]),
            "references": str(msg["References"] or ""),
            "content_type": msg.get_content_type(),
            "charset": msg.get_content_charset(),
            "body": body.get_content() if body is not None else None,
            "html": html.get_content() if html is not None else None,
            "parts": [p.get_content_type() for p in msg.walk()],
            "raw": raw.decode("utf-8", "replace"),
            "authenticated": bool(session.authenticated),
        }
        n = len([f for f in os.listdir(out) if f.endswith(".json")])
        tmp = os.path.join(out, "%04d.tmp" % n)
        with open(tmp, "w") as f:
            json.dump(doc, f)
        os.rename(tmp, os.path.join(out, "%04d.json" % n))
        return "250 Message accepted"

def auth(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"relay" \
        and auth_data.password == b"smtp-canary-pass"
    # handled=False: aiosmtpd answers 535 itself (handled=True would mean
    # "the authenticator already replied" and leave the client waiting).
    return AuthResult(success=ok, handled=False)

c = Controller(Handler(), hostname="127.0.0.1", port=port,
               authenticator=auth, auth_require_tls=False)
c.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
"#;

fn python() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Ok(p) = std::env::var("RELAY_TEST_AIOSMTPD_PYTHON")
        && !p.is_empty()
    {
        candidates.push(PathBuf::from(p));
    }
    candidates.push(root().join("target/smtp-venv/bin/python"));
    candidates.push(PathBuf::from("python3"));
    candidates.into_iter().find(|py| {
        Command::new(py)
            .args(["-c", "import aiosmtpd.controller"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

macro_rules! require_aiosmtpd {
    () => {
        match python() {
            Some(p) => p,
            None => {
                peer_missing(
                    "aiosmtpd",
                    "aiosmtpd is not available (run scripts/ci/start-smtp, or pip install aiosmtpd)",
                );
                return;
            }
        }
    };
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Sink {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Sink {
    fn start(py: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("sink.py");
        std::fs::write(&script, HANDLER).unwrap();
        let out = dir.path().join("mail");
        std::fs::create_dir(&out).unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("sink.log")).unwrap();
        let mut child = Command::new(py)
            .arg(&script)
            .arg(port.to_string())
            .arg(&out)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        match lines.next() {
            Some(Ok(l)) if l == "ready" => {}
            other => {
                let _ = child.kill();
                let log = std::fs::read_to_string(dir.path().join("sink.log")).unwrap_or_default();
                panic!("aiosmtpd sink did not start: {other:?}\n{log}");
            }
        }
        Self { child, port, dir }
    }

    /// Waits for the `n`th stored message (0-based).
    fn message(&self, n: usize) -> Value {
        let path = self.dir.path().join(format!("mail/{n:04}.json"));
        let end = Instant::now() + Duration::from_secs(10);
        while !path.exists() {
            assert!(Instant::now() < end, "no message {n} arrived");
            std::thread::sleep(Duration::from_millis(20));
        }
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn count(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("mail"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "json"))
            })
            .count()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(port: u16) -> String {
    format!(
        r##"[discourse]
url = "https://forum.example.org"

[providers.mail]
kind = "smtp"
server = "127.0.0.1"
port = {port}
tls = "none"
username = "{SMTP_USER}"
password = "${{SMTP_PASS}}"
from = "Forum <forum@forum.example.org>"

[providers.anon]
kind = "smtp"
server = "127.0.0.1"
port = {port}
tls = "none"
from = "forum@forum.example.org"

[providers.wrongpass]
kind = "smtp"
server = "127.0.0.1"
port = {port}
tls = "none"
username = "{SMTP_USER}"
password = "${{SMTP_BAD_PASS}}"
from = "forum@forum.example.org"

[[chat]]
name = "team"
provider = "mail"
to = ["team@example.org", "Ops <ops@example.org>"]
subscribe = ["all"]
style = "text"

[[chat]]
name = "cards"
provider = "mail"
to = "team@example.org"
subscribe = ["all"]

[[chat]]
name = "anon"
provider = "anon"
to = "team@example.org"
subscribe = ["all"]

[[chat]]
name = "nobody"
provider = "mail"
to = "nobody@example.org"
subscribe = ["all"]

[[chat]]
name = "busy"
provider = "mail"
to = "busy@example.org"
subscribe = ["all"]

[[chat]]
name = "wrongpass"
provider = "wrongpass"
to = "team@example.org"
subscribe = ["all"]
"##
    )
}

const ENV: &[(&str, &str)] = &[
    ("SMTP_PASS", SMTP_PASS),
    ("SMTP_BAD_PASS", "wrong-smtp-canary"),
];

/// Sends `text` with topic `title` to `chat` through the provider, as the
/// relay would for a rendered message.
fn send(port: u16, chat: &str, title: &str, text: &str) -> Outcome {
    let env: std::collections::HashMap<String, String> = ENV
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let (p, _) = discourse_relay::pipeline::load_str(
        Path::new("smtp.toml"),
        &config(port),
        &env,
        discourse_relay::config::MissingEnv::Error,
    )
    .unwrap_or_else(|d| panic!("config invalid:\n{d}"));
    let idx = p.chat_index(chat).unwrap();
    let ctx = json!({"topic": {"id": 7, "title": title, "url": "https://forum.example.org/t/x/7"}});
    let out = p.config.chats[idx].destination.request(&Message {
        chat,
        text,
        context: &ctx,
        card: None,
        custom: None,
        action: Default::default(),
        delivery: None,
    });
    let Outbound::Native(m) = out else {
        panic!("smtp must be native")
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(m.sender.send(&m.payload))
}

#[test]
fn hostile_fixture_arrives_with_exact_headers() {
    let py = require_aiosmtpd!();
    let sink = Sink::start(&py);
    let out = deliver(
        &config(sink.port),
        "team",
        "post_created_hostile_content",
        ENV,
    );
    assert_eq!(out, Outcome::Sent { remote_id: None });
    let m = sink.message(0);
    assert_eq!(m["authenticated"], true);
    assert_eq!(m["mail_from"], "forum@forum.example.org");
    assert_eq!(
        m["rcpt_tos"],
        json!(["team@example.org", "ops@example.org"])
    );
    assert_eq!(m["from"], "Forum <forum@forum.example.org>");
    assert_eq!(m["to"], "team@example.org, Ops <ops@example.org>");
    assert_eq!(
        m["subject"],
        "<!channel> @everyone <script>alert(1)</script> *bold* [link](javascript:x) & </b>"
    );
    assert_eq!(m["content_type"], "text/plain");
    assert_eq!(m["charset"], "utf-8");
    let body = m["body"].as_str().unwrap();
    // Plain text: the title and excerpt literally, with the link.
    assert!(
        body.contains("<!channel> @everyone <script>alert(1)</script>"),
        "{body}"
    );
    assert!(body.contains("https://forum.example.org/t/"), "{body}");
    assert!(
        m["references"]
            .as_str()
            .unwrap()
            .ends_with("@forum.example.org>"),
        "{m}"
    );
    let names: Vec<String> = m["header_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().to_ascii_lowercase())
        .collect();
    assert!(!names.contains(&"bcc".to_string()), "{names:?}");
    assert!(names.contains(&"message-id".to_string()), "{names:?}");
    assert!(names.contains(&"date".to_string()), "{names:?}");
    assert!(!m["raw"].as_str().unwrap().contains(SMTP_PASS));
}

/// The default card: multipart/alternative, the text part first and the
/// HTML card second, as Python's `email` package reads them back; the
/// hostile post's markup arrives as escaped text in the HTML part and as
/// look-alikes in the text part and subject. The exact message is in
/// tests/cards/smtp.*.json.
#[test]
fn a_card_arrives_as_multipart_alternative_with_an_inert_html_part() {
    let py = require_aiosmtpd!();
    let sink = Sink::start(&py);
    for fixture in ["post_created_first_post", "post_created_hostile_content"] {
        let out = deliver(&config(sink.port), "cards", fixture, ENV);
        assert_eq!(out, Outcome::Sent { remote_id: None });
    }
    let m = sink.message(0);
    assert_eq!(m["content_type"], "multipart/alternative");
    assert_eq!(
        m["parts"],
        json!(["multipart/alternative", "text/plain", "text/html"])
    );
    let html = m["html"].as_str().unwrap();
    assert!(
        html.contains(">How do I share state between async tasks?</a>")
            && html.contains("<a href=\"https://forum.example.org/t/how-do-i-share-state-between-async-tasks/101/1\""),
        "{html}"
    );
    assert!(html.contains(">View topic</a>"), "{html}");
    assert!(
        m["body"]
            .as_str()
            .unwrap()
            .starts_with("How do I share state"),
        "{m}"
    );
    let m = sink.message(1);
    let html = m["html"].as_str().unwrap();
    assert!(
        !html.contains("<script") && !html.contains("href=\"javascript"),
        "{html}"
    );
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert_eq!(
        html.matches("<a href=").count(),
        html.matches("<a href=\"https://forum.example.org/").count(),
        "{html}"
    );
    let subject = m["subject"].as_str().unwrap();
    assert!(
        subject.starts_with("‹!channel› @\u{200B}everyone ‹script›"),
        "{subject}"
    );
    assert!(!m["body"].as_str().unwrap().contains('<'), "{m}");
}

#[test]
fn a_hostile_title_cannot_add_headers_or_recipients() {
    let py = require_aiosmtpd!();
    let sink = Sink::start(&py);
    let title =
        "Hello\r\nBcc: victim@evil.example\r\nX-Injected: 1\r\n\r\nfake body\nSubject: again";
    let out = send(
        sink.port,
        "anon",
        title,
        "the real body\n\r\n.\r\nline after a dot",
    );
    assert_eq!(out, Outcome::Sent { remote_id: None });
    let m = sink.message(0);
    assert_eq!(m["authenticated"], false);
    assert_eq!(m["rcpt_tos"], json!(["team@example.org"]));
    assert_eq!(
        m["subject"],
        "Hello Bcc: victim@evil.example X-Injected: 1 fake body Subject: again"
    );
    let names: Vec<String> = m["header_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().to_ascii_lowercase())
        .collect();
    for bad in ["bcc", "x-injected"] {
        assert!(!names.contains(&bad.to_string()), "{names:?}");
    }
    assert_eq!(names.iter().filter(|n| *n == "subject").count(), 1);
    // A lone "." line in the body is dot-stuffed, not the end of DATA.
    let body = m["body"].as_str().unwrap();
    assert!(body.contains("line after a dot"), "{body}");
    assert!(body.starts_with("the real body"), "{body}");
    // Non-ASCII subjects survive (RFC 2047) and decode back exactly.
    let out = send(sink.port, "anon", "Ünïcödé 漢字 — ok?", "x");
    assert_eq!(out, Outcome::Sent { remote_id: None });
    assert_eq!(sink.message(1)["subject"], "Ünïcödé 漢字 — ok?");
}

#[test]
fn server_refusals_are_classified_without_the_password() {
    let py = require_aiosmtpd!();
    let sink = Sink::start(&py);
    let check = |out: Outcome, want_permanent: bool, needle: &str| {
        let reason = match (&out, want_permanent) {
            (Outcome::Permanent { reason }, true) | (Outcome::Retry { reason, .. }, false) => {
                reason.clone()
            }
            _ => panic!("unexpected {out:?} (want permanent: {want_permanent})"),
        };
        assert!(reason.contains(needle), "{reason}");
        assert!(
            !reason.contains(SMTP_PASS) && !reason.contains("wrong-smtp-canary"),
            "{reason}"
        );
    };
    check(send(sink.port, "nobody", "t", "b"), true, "550");
    check(send(sink.port, "busy", "t", "b"), false, "451");
    check(send(sink.port, "wrongpass", "t", "b"), true, "535");
    assert_eq!(sink.count(), 0, "nothing was delivered");
    // Nothing listening: retry.
    drop(sink);
    let port = free_port();
    check(send(port, "team", "t", "b"), false, "");
}

/// `doctor` against the real aiosmtpd: the login passes, a wrong password
/// fails with the server's code, neither password is printed, and no mail
/// is sent.
#[test]
fn doctor_logs_in_without_sending_mail() {
    let py = require_aiosmtpd!();
    let sink = Sink::start(&py);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("smtp.toml");
    std::fs::write(&cfg, config(sink.port)).unwrap();
    let secrets = [SMTP_PASS, "wrong-smtp-canary"];
    let doctor = |chat: &str| doctor_run(&cfg, &["--chat", chat], ENV, &secrets);
    let (code, text) = doctor("team");
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("PASS chat team (smtp, ") && text.contains("and the login"),
        "{text}"
    );
    let (code, text) = doctor("wrongpass");
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("FAIL chat wrongpass (smtp, ") && text.contains("username"),
        "{text}"
    );
    assert_eq!(sink.count(), 0, "doctor sent mail");
}
