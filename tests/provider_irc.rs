//! The `irc` provider against a real IRC server: ngircd (Debian package) on
//! 127.0.0.1 with a temp config (server password, a keyed, an invite-only,
//! a moderated and a banning channel), and a second plain TCP client in the
//! channel that records what it receives. Checks: the hostile fixture
//! arrives as PRIVMSG lines only, no CR/LF injection, no line over 512
//! bytes, long text split in order, one connection reused, the server's
//! refusals classified, and a reconnect (with rejoin) after the server
//! restarts.
//!
//! ngircd comes from `RELAY_TEST_IRCD` (set by scripts/ci/start-ircd), else
//! /usr/sbin/ngircd or PATH; without it every test prints a SKIP line to
//! stderr and passes, except under `CI=true`, where it fails
//! (`common::peer_missing`).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use discourse_relay::providers::{Message, Outbound, Outcome};

const SERVER_PASS: &str = "ircd-canary-pass";
const CHAN_KEY: &str = "chankey42";

fn ngircd() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("RELAY_TEST_IRCD")
        && !p.is_empty()
    {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Some(p);
        }
        eprintln!("RELAY_TEST_IRCD={} is not a file", p.display());
    }
    let mut candidates = vec![PathBuf::from("/usr/sbin/ngircd")];
    if let Ok(path) = std::env::var("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("ngircd")));
    }
    candidates.into_iter().find(|p| p.is_file())
}

macro_rules! require_ngircd {
    () => {
        match ngircd() {
            Some(p) => p,
            None => {
                peer_missing(
                    "ngircd",
                    "ngircd is not installed (scripts/ci/start-ircd installs it)",
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

struct Ircd {
    bin: PathBuf,
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl Ircd {
    fn start(bin: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut d = Self {
            bin: bin.to_path_buf(),
            child: None,
            port: free_port(),
            dir,
        };
        d.write_config();
        d.spawn();
        d
    }

    fn write_config(&self) {
        let uid = unsafe_uid();
        let conf = format!(
            r#"[Global]
    Name = irc.localhost
    Info = relay test ircd
    Listen = 127.0.0.1
    Ports = {port}
    Password = {SERVER_PASS}
    PidFile = {dir}/ngircd.pid
    MotdPhrase = "test"
    ServerUID = {uid}
[Limits]
    MaxConnectionsIP = 0
    MaxJoins = 0
    MaxNickLength = 30
[Options]
    PAM = no
    DNS = no
    Ident = no
[Channel]
    Name = #forum
    Modes = +n
[Channel]
    Name = #keyed
    Modes = +nk {CHAN_KEY}
[Channel]
    Name = #invite
    Modes = +ni
[Channel]
    Name = #moderated
    Modes = +nm
[Channel]
    Name = #banned
    Modes = +n
    Modes = +b relaybot*!*@*
"#,
            port = self.port,
            dir = self.dir.path().display(),
        );
        std::fs::write(self.conf(), conf).unwrap();
        let check = Command::new(&self.bin)
            .arg("-f")
            .arg(self.conf())
            .arg("--configtest")
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "ngircd --configtest: {}",
            String::from_utf8_lossy(&check.stdout)
        );
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("ngircd.conf")
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("ngircd.log")).unwrap();
        let child = Command::new(&self.bin)
            .arg("-n")
            .arg("-f")
            .arg(self.conf())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let end = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < end,
                "ngircd did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Ircd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// ngircd wants a numeric uid for ServerUID; `id -u` without libc.
fn unsafe_uid() -> String {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "0".into())
}

/// A plain IRC client (the "human" in the channel).
struct Listener {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    /// Every raw line received, with its byte length on the wire (CR LF included).
    seen: Vec<(String, usize)>,
}

impl Listener {
    fn join(port: u16, nick: &str, channel: &str) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        let mut l = Self {
            stream,
            reader,
            seen: Vec::new(),
        };
        l.send(&format!("PASS {SERVER_PASS}"));
        l.send(&format!("NICK {nick}"));
        l.send(&format!("USER {nick} 0 * :{nick}"));
        l.wait_for(Duration::from_secs(10), |line| {
            line.contains(" 376 ") || line.contains(" 422 ")
        });
        l.send(&format!("JOIN {channel}"));
        l.wait_for(Duration::from_secs(10), |line| line.contains(" 366 "));
        l.seen.clear();
        l
    }

    fn send(&mut self, line: &str) {
        self.stream
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap();
    }

    /// Reads lines (answering PINGs) until `pred` holds for one, or panics.
    fn wait_for(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + timeout;
        loop {
            assert!(
                Instant::now() < end,
                "listener timed out; saw {:#?}",
                self.seen
            );
            if let Some(line) = self.read_line()
                && pred(&line)
            {
                return line;
            }
        }
    }

    /// Reads until nothing arrives for `quiet`.
    fn drain(&mut self, quiet: Duration) {
        let mut last = Instant::now();
        while last.elapsed() < quiet {
            if self.read_line().is_some() {
                last = Instant::now();
            }
        }
    }

    fn read_line(&mut self) -> Option<String> {
        let mut raw = Vec::new();
        match self.reader.read_until(b'\n', &mut raw) {
            Ok(0) => panic!("the server closed the listener's connection"),
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return None;
            }
            Err(e) => panic!("listener read: {e}"),
        }
        let wire_len = raw.len();
        let line = String::from_utf8_lossy(&raw)
            .trim_end_matches(['\r', '\n'])
            .to_string();
        if let Some(token) = line.strip_prefix("PING ") {
            self.send(&format!("PONG {token}"));
        }
        self.seen.push((line.clone(), wire_len));
        Some(line)
    }

    /// The texts of the PRIVMSGs from a relaybot* nick to `channel`, in order.
    fn privmsgs(&self, channel: &str) -> Vec<String> {
        let needle = format!(" PRIVMSG {channel} :");
        self.seen
            .iter()
            .filter(|(l, _)| l.starts_with(":relaybot"))
            .filter_map(|(l, _)| l.split_once(&needle).map(|(_, t)| t.to_string()))
            .collect()
    }
}

fn config(port: u16) -> String {
    format!(
        r##"[discourse]
url = "https://forum.example.org"

[providers.net]
kind = "irc"
server = "127.0.0.1"
port = {port}
tls = false
nick = "relaybot"
password = "${{IRC_PASS}}"
burst = 20
line_rate = "20/s"

[providers.badpass]
kind = "irc"
server = "127.0.0.1"
port = {port}
tls = false
nick = "relaybotx"
password = "${{IRC_BAD_PASS}}"

[[chat]]
name = "forum"
provider = "net"
channel = "#forum"
subscribe = ["all"]

[[chat]]
name = "keyed"
provider = "net"
channel = "#keyed"
key = "${{IRC_KEY}}"
subscribe = ["all"]

[[chat]]
name = "keyed-nokey"
provider = "net"
channel = "#keyed"
subscribe = ["all"]

[[chat]]
name = "invite"
provider = "net"
channel = "#invite"
subscribe = ["all"]

[[chat]]
name = "moderated"
provider = "net"
channel = "#moderated"
subscribe = ["all"]

[[chat]]
name = "banned"
provider = "net"
channel = "#banned"
subscribe = ["all"]

[[chat]]
name = "badpass"
provider = "badpass"
channel = "#forum"
subscribe = ["all"]
"##
    )
}

const ENV: &[(&str, &str)] = &[
    ("IRC_PASS", SERVER_PASS),
    ("IRC_BAD_PASS", "wrong-password-canary"),
    ("IRC_KEY", CHAN_KEY),
];

/// One loaded config whose provider instances (and so IRC connections)
/// live across several sends on one runtime.
struct Relay {
    p: discourse_relay::pipeline::Pipeline,
    rt: tokio::runtime::Runtime,
}

impl Relay {
    fn load(port: u16) -> Self {
        let env: std::collections::HashMap<String, String> = ENV
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (p, _) = discourse_relay::pipeline::load_str(
            Path::new("irc.toml"),
            &config(port),
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

    /// Sends `text` (with `title` as the topic title) to `chat`; returns
    /// the outcome and the lines `explain` would show.
    fn send(&self, chat: &str, text: &str) -> (Outcome, String) {
        let idx = self.p.chat_index(chat).unwrap();
        let ctx = serde_json::json!({"topic": {"title": "t"}});
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
            panic!("irc must be native")
        };
        (self.rt.block_on(m.sender.send(&m.payload)), shown)
    }
}

fn assert_wire_clean(l: &Listener) {
    for (line, wire_len) in &l.seen {
        assert!(*wire_len <= 512, "{wire_len} bytes on the wire: {line:?}");
        assert!(
            !line.chars().any(|c| c.is_control()),
            "control character in {line:?}"
        );
    }
}

#[test]
fn hostile_fixture_arrives_as_plain_privmsg_lines() {
    let bin = require_ngircd!();
    let ircd = Ircd::start(&bin);
    let mut listener = Listener::join(ircd.port, "listener", "#forum");

    let out = deliver(
        &config(ircd.port),
        "forum",
        "post_created_hostile_content",
        ENV,
    );
    assert_eq!(out, Outcome::Sent { remote_id: None });
    listener.wait_for(Duration::from_secs(10), |l| l.contains(" PRIVMSG #forum :"));
    listener.drain(Duration::from_millis(500));
    assert_wire_clean(&listener);
    let texts = listener.privmsgs("#forum");
    assert!(!texts.is_empty(), "{:#?}", listener.seen);
    let all = texts.join("\n");
    // The title and the excerpt arrive literally: plain text, nothing to escape.
    assert!(
        all.contains("<!channel> @everyone <script>alert(1)</script>"),
        "{all}"
    );
    assert!(all.contains("https://forum.example.org/"), "{all}");
    // Only PRIVMSGs to #forum came from the relay (plus its JOIN / QUIT).
    for (line, _) in &listener.seen {
        if line.starts_with(":relaybot") {
            let cmd = line.split(' ').nth(1).unwrap_or("");
            assert!(matches!(cmd, "PRIVMSG" | "JOIN" | "QUIT"), "{line}");
        }
    }
}

#[test]
fn injection_long_lines_order_and_one_connection() {
    let bin = require_ngircd!();
    let ircd = Ircd::start(&bin);
    let mut listener = Listener::join(ircd.port, "listener", "#forum");
    let relay = Relay::load(ircd.port);

    // 1. CR/LF, NUL, CTCP and formatting codes cannot make commands.
    let hostile = "first\r\nQUIT :pwned\rJOIN #evil\n\u{1}ACTION dances\u{1}\0 \u{3}4red\u{2}bold\r\nPRIVMSG listener :private";
    let (out, shown) = relay.send("forum", hostile);
    assert_eq!(out, Outcome::Sent { remote_id: None });
    assert_eq!(
        shown,
        "PRIVMSG #forum :first\r\nPRIVMSG #forum :QUIT :pwned\r\nPRIVMSG #forum :JOIN #evil\r\nPRIVMSG #forum :ACTION dances 4redbold\r\nPRIVMSG #forum :PRIVMSG listener :private"
    );
    listener.wait_for(Duration::from_secs(10), |l| {
        l.ends_with(":PRIVMSG listener :private")
    });
    assert_eq!(
        listener.privmsgs("#forum"),
        vec![
            "first",
            "QUIT :pwned",
            "JOIN #evil",
            "ACTION dances 4redbold",
            "PRIVMSG listener :private"
        ]
    );
    // The relay is still connected and never joined #evil or wrote to us privately.
    listener.send("ISON relaybot");
    let ison = listener.wait_for(Duration::from_secs(5), |l| l.contains(" 303 "));
    assert!(ison.ends_with(":relaybot"), "{ison}");
    assert!(
        !listener
            .seen
            .iter()
            .any(|(l, _)| l.starts_with(":relaybot") && l.split(' ').nth(2) == Some("listener")),
        "{:#?}",
        listener.seen
    );
    listener.seen.clear();

    // 2. A long multi-byte message: split under 512 bytes on the wire, at
    //    word boundaries, nothing lost, order kept.
    let words: Vec<String> = (0..400).map(|i| format!("wörd{i:03}€")).collect();
    let long = words.join(" ");
    let long2 = "漢字".repeat(300);
    let (out, _) = relay.send("forum", &format!("{long}\n{long2}\nlast line"));
    assert_eq!(out, Outcome::Sent { remote_id: None });
    listener.wait_for(Duration::from_secs(20), |l| l.ends_with(":last line"));
    assert_wire_clean(&listener);
    let texts = listener.privmsgs("#forum");
    assert!(texts.len() > 3, "{texts:?}");
    assert_eq!(texts.last().map(String::as_str), Some("last line"));
    let max = listener.seen.iter().map(|(_, n)| *n).max().unwrap_or(0);
    assert!(
        max > 400,
        "lines should use most of the 512 bytes, got {max}"
    );
    // Rebuild: the word lines joined by spaces, then the CJK lines joined.
    let cjk_start = texts.iter().position(|t| t.starts_with('漢')).unwrap();
    assert_eq!(texts[..cjk_start].join(" "), long);
    assert_eq!(texts[cjk_start..texts.len() - 1].concat(), long2);

    // 3. One connection for all of it: the relay joined #forum once.
    listener.send("NAMES #forum");
    let names = listener.wait_for(Duration::from_secs(5), |l| l.contains(" 353 "));
    assert_eq!(names.matches("relaybot").count(), 1, "{names}");
}

#[test]
fn server_refusals_are_classified() {
    let bin = require_ngircd!();
    let ircd = Ircd::start(&bin);
    let relay = Relay::load(ircd.port);
    let expect_permanent = |chat: &str, needle: &str| {
        let (out, _) = relay.send(chat, "hello");
        let Outcome::Permanent { reason } = out else {
            panic!("{chat}: expected permanent, got {out:?}")
        };
        assert!(reason.contains(needle), "{chat}: {reason}");
        assert!(
            !reason.contains(SERVER_PASS) && !reason.contains("wrong-password-canary"),
            "{reason}"
        );
        reason
    };
    // ngircd answers a bad PASS with `ERROR :Access denied: Bad password?`
    // (no 464; the 464 path is covered by the unit tests).
    expect_permanent("badpass", "Bad password");
    expect_permanent("keyed-nokey", "475");
    expect_permanent("invite", "473");
    expect_permanent("banned", "474");
    expect_permanent("moderated", "404");
    // The keyed channel with its key works on the same connection.
    let (out, _) = relay.send("keyed", "with the key");
    assert_eq!(out, Outcome::Sent { remote_id: None });
    let (out, _) = relay.send("forum", "still fine");
    assert_eq!(out, Outcome::Sent { remote_id: None });
}

#[test]
fn reconnects_and_rejoins_after_the_server_restarts() {
    let bin = require_ngircd!();
    let mut ircd = Ircd::start(&bin);
    let relay = Relay::load(ircd.port);
    let (out, _) = relay.send("forum", "before the restart");
    assert_eq!(out, Outcome::Sent { remote_id: None });

    ircd.stop();
    // Down: a retry, never a permanent failure.
    let (out, _) = relay.send("forum", "while down");
    assert!(matches!(out, Outcome::Retry { .. }), "{out:?}");

    ircd.spawn();
    let mut listener = Listener::join(ircd.port, "listener", "#forum");
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let (out, _) = relay.send("forum", "after the restart");
        match out {
            Outcome::Sent { .. } => break,
            Outcome::Retry { after, .. } if Instant::now() < end => {
                std::thread::sleep(after.unwrap_or(Duration::from_millis(200)));
            }
            other => panic!("no reconnect: {other:?}"),
        }
    }
    listener.wait_for(Duration::from_secs(10), |l| {
        l.starts_with(":relaybot") && l.ends_with(" PRIVMSG #forum :after the restart")
    });
    // It sits in the channel again (joined at reconnect or on demand).
    listener.send("NAMES #forum");
    let names = listener.wait_for(Duration::from_secs(5), |l| l.contains(" 353 "));
    assert!(names.contains("relaybot"), "{names}");
}

#[test]
fn connection_refused_is_a_retry() {
    let port = free_port();
    let relay = Relay::load(port);
    let (out, _) = relay.send("forum", "nobody listens");
    let Outcome::Retry { reason, .. } = out else {
        panic!("{out:?}")
    };
    assert!(reason.contains("cannot connect"), "{reason}");
}

/// `doctor` against the real ngircd: the login passes, a wrong password
/// fails with the server's words and without either password.
#[test]
fn doctor_logs_in_and_reports_a_bad_password() {
    let bin = require_ngircd!();
    let ircd = Ircd::start(&bin);
    let dir = temp();
    let cfg = write(dir.path(), "irc.toml", config(ircd.port));
    let secrets = [SERVER_PASS, "wrong-password-canary"];
    let doctor = |chat: &str| doctor_run(&cfg, &["--chat", chat], ENV, &secrets);
    let (code, text) = doctor("forum");
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("PASS chat forum (irc, "), "{text}");
    let (code, text) = doctor("badpass");
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("FAIL chat badpass (irc, ") && text.contains("Bad password"),
        "{text}"
    );
}
