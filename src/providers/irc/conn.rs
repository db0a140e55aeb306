//! The IRC side of the connection task ([`persistent`]): registration
//! (PASS, SASL PLAIN, NICK/USER, a taken nick grows `_`), joins, lines paced
//! by a token bucket, a PING after the last line whose PONG confirms them,
//! PINGs answered and a silent link probed while idle, `QUIT` on close.
//!
//! [`persistent`]: crate::providers::persistent

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use tokio::time::{Instant, timeout_at};

use super::{Auth, ConnConfig, estimated_prefix_len, message_lines, text_budget};
use crate::providers::Outcome;
use crate::providers::persistent::{
    Protocol, Sender, Wire, dial, permanent, retry, short as clip, tls_wrap,
};

const REGISTER_TIMEOUT: Duration = Duration::from_secs(30);
const JOIN_TIMEOUT: Duration = Duration::from_secs(20);
/// After the last line, how long the server may take to answer our PING.
const ACK_TIMEOUT: Duration = Duration::from_secs(60);
/// Silence after which the link is probed with a PING; no answer within
/// the same time again and it is dropped.
const KEEPALIVE: Duration = Duration::from_secs(120);
/// How often a relay that had to take `nick_` tries its own nick again.
const RECLAIM_EVERY: Duration = Duration::from_secs(60);
const MAX_NICK_TRIES: usize = 8;
/// Server lines longer than this (tags included) end the connection.
const MAX_READ_LINE: usize = 16 * 1024;

/// The [`NativeSender`](crate::providers::NativeSender) of one `[providers.NAME]` of kind `irc`.
pub(crate) type IrcSender = Sender<Session>;

/// One message for one channel, as built by `IrcChat::request`.
#[derive(Debug)]
pub(crate) struct Job {
    channel: String,
    key: Option<String>,
    command: String,
    lines: Vec<String>,
}

impl Job {
    fn from_payload(p: &serde_json::Value) -> Option<Self> {
        let command = p["command"]
            .as_str()
            .filter(|c| matches!(*c, "PRIVMSG" | "NOTICE"))?;
        let channel = p["channel"].as_str()?;
        super::check_channel(channel).ok()?;
        Some(Self {
            channel: channel.to_string(),
            key: p["key"].as_str().map(str::to_string),
            command: command.to_string(),
            lines: p["lines"]
                .as_array()?
                .iter()
                .filter_map(|l| l.as_str().map(str::to_string))
                .collect(),
        })
    }
}

/// One parsed server line (tags skipped).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Msg<'a> {
    /// `nick!user@host` or a server name, without the `:`.
    pub prefix: Option<&'a str>,
    pub command: &'a str,
    pub params: Vec<&'a str>,
}

impl<'a> Msg<'a> {
    pub(crate) fn parse(line: &'a str) -> Option<Self> {
        let mut rest = line.trim_end_matches(['\r', '\n']);
        if rest.starts_with('@') {
            rest = rest.split_once(' ')?.1.trim_start();
        }
        let prefix = match rest.strip_prefix(':') {
            Some(p) => {
                let (prefix, r) = p.split_once(' ')?;
                rest = r.trim_start();
                Some(prefix)
            }
            None => None,
        };
        let (command, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
        if command.is_empty() {
            return None;
        }
        let mut params = Vec::new();
        loop {
            rest = rest.trim_start_matches(' ');
            if rest.is_empty() {
                break;
            }
            if let Some(trailing) = rest.strip_prefix(':') {
                params.push(trailing);
                break;
            }
            let (p, r) = rest.split_once(' ').unwrap_or((rest, ""));
            params.push(p);
            rest = r;
        }
        Some(Self {
            prefix,
            command,
            params,
        })
    }

    fn nick(&self) -> Option<&'a str> {
        self.prefix.map(|p| p.split(['!', '@']).next().unwrap_or(p))
    }

    fn param(&self, i: usize) -> &'a str {
        self.params.get(i).copied().unwrap_or("")
    }

    fn last(&self) -> &'a str {
        self.params.last().copied().unwrap_or("")
    }
}

/// IRC case folding (rfc1459: `[]\~` are the upper case of `{}|^`).
pub(crate) fn fold(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '[' => '{',
            ']' => '}',
            '\\' => '|',
            '~' => '^',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// Server text for a reason: one line, bounded.
fn short(s: &str) -> String {
    clip(&super::clean_line(s))
}

pub(crate) struct Conn {
    w: Wire,
    /// Our nick as the server knows it.
    nick: String,
    /// `:nick!user@host ` as the server relays our lines, learned from our JOIN.
    prefix_len: Option<usize>,
    /// Channels we are in (folded).
    joined: HashSet<String>,
    last_rx: Instant,
    probing: bool,
    pings: u64,
    last_reclaim: Instant,
}

impl Conn {
    /// Reads one line (cancel safe, as [`Wire::fill`]).
    async fn read_line(&mut self) -> io::Result<String> {
        loop {
            if let Some(pos) = self.w.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.w.buf.drain(..=pos).collect();
                self.last_rx = Instant::now();
                self.probing = false;
                let line = String::from_utf8_lossy(&line);
                return Ok(line.trim_end_matches(['\r', '\n']).to_string());
            }
            self.w
                .fill(MAX_READ_LINE, "the server sent an over-long line")
                .await?;
        }
    }

    /// Writes one line; CR, LF and NUL can never reach the wire.
    async fn write_line(&mut self, line: &str) -> Result<(), Outcome> {
        let mut wire: String = line.replace(['\r', '\n', '\0'], "");
        wire.push_str("\r\n");
        self.w.write(&wire).await
    }

    /// The next server line before `deadline` (`None` at the deadline),
    /// after the bookkeeping every line gets: PING answered, our nick,
    /// joins, parts and kicks tracked. `ERROR` and a lost link are `Err`.
    async fn next(&mut self, deadline: Instant) -> Result<Option<String>, Outcome> {
        let line = match timeout_at(deadline, self.read_line()).await {
            Err(_) => return Ok(None),
            Ok(r) => r.map_err(|e| self.w.lost(e))?,
        };
        self.observe(&line).await?;
        Ok(Some(line))
    }

    async fn observe(&mut self, line: &str) -> Result<(), Outcome> {
        let Some(m) = Msg::parse(line) else {
            return Ok(());
        };
        let ours = m.nick().is_some_and(|n| fold(n) == fold(&self.nick));
        match m.command {
            "PING" => self.write_line(&format!("PONG :{}", m.last())).await?,
            "ERROR" => {
                let why = short(m.last());
                return Err(retry(format!(
                    "irc: {} closed the link: {why}",
                    self.w.addr
                )));
            }
            "NICK" if ours => self.nick = m.param(0).to_string(),
            "JOIN" if ours => {
                self.joined.insert(fold(m.param(0)));
                self.prefix_len = m.prefix.map(|p| p.len() + 2);
            }
            "PART" if ours => _ = self.joined.remove(&fold(m.param(0))),
            "KICK" if fold(m.param(1)) == fold(&self.nick) => {
                self.joined.remove(&fold(m.param(0)));
            }
            _ => {}
        }
        Ok(())
    }
}

/// Opens the socket (TLS unless disabled) and registers. `Err` carries the
/// outcome for the message that wanted the connection.
async fn connect(cfg: &ConnConfig) -> Result<Conn, Outcome> {
    let addr = cfg.addr();
    let tcp = dial("irc", &cfg.server, cfg.port, &addr).await?;
    let io: Box<dyn crate::providers::persistent::Io> = if cfg.tls {
        Box::new(tls_wrap("irc", &cfg.server, &addr, tcp, None).await?)
    } else {
        Box::new(tcp)
    };
    let now = Instant::now();
    let mut conn = Conn {
        w: Wire::new("irc", io, addr),
        nick: cfg.nick.clone(),
        prefix_len: None,
        joined: HashSet::new(),
        last_rx: now,
        probing: false,
        pings: 0,
        last_reclaim: now,
    };
    register(&mut conn, cfg).await?;
    Ok(conn)
}

async fn register(conn: &mut Conn, cfg: &ConnConfig) -> Result<(), Outcome> {
    let addr = conn.w.addr.clone();
    let password = cfg.password.as_ref().map(|p| p.expose().to_string());
    let sasl = cfg.auth == Auth::Sasl && password.is_some();
    if sasl {
        conn.write_line("CAP REQ :sasl").await?;
    }
    if let (Auth::Pass, Some(pw)) = (cfg.auth, &password) {
        conn.write_line(&format!("PASS :{pw}")).await?;
    }
    conn.write_line(&format!("NICK {}", conn.nick)).await?;
    let realname = super::clean_line(&cfg.realname);
    conn.write_line(&format!("USER {} 0 * :{realname}", cfg.username))
        .await?;
    let deadline = Instant::now() + REGISTER_TIMEOUT;
    let mut tries = 0;
    loop {
        let next = conn.next(deadline).await.map_err(|o| match o {
            // Some servers (ngircd) refuse a bad or missing PASS with
            // `ERROR :Access denied: Bad password?` and no 464.
            Outcome::Retry { reason, .. } if reason.to_lowercase().contains("password") => {
                permanent(format!("{reason} (check `password`)"))
            }
            other => other,
        })?;
        let Some(line) = next else {
            return Err(retry(format!(
                "irc: {addr} sent no welcome (001) within {} s",
                REGISTER_TIMEOUT.as_secs()
            )));
        };
        let Some(m) = Msg::parse(&line) else { continue };
        let (code, text) = (m.command, short(m.last()));
        let refused = match code {
            "001" => {
                if !m.param(0).is_empty() {
                    conn.nick = m.param(0).to_string();
                }
                break;
            }
            "433" | "436" | "437" => {
                tries += 1;
                if tries > MAX_NICK_TRIES {
                    format!(
                        "irc: the nick `{}` and {MAX_NICK_TRIES} variants are taken on {addr}",
                        cfg.nick
                    )
                } else {
                    conn.nick.push('_');
                    conn.write_line(&format!("NICK {}", conn.nick)).await?;
                    continue;
                }
            }
            "432" => format!("irc: {addr} refuses the nick `{}` (432 {text})", conn.nick),
            "464" => format!("irc: {addr} rejected the password (464 {text})"),
            "465" | "466" => format!("irc: banned from {addr} ({code} {text})"),
            "CAP" if sasl && m.param(1) == "NAK" => {
                format!("irc: {addr} does not offer SASL; use auth = \"nickserv\" or \"pass\"")
            }
            "CAP" if sasl && m.param(1) == "ACK" => {
                if m.last().split(' ').any(|c| c.eq_ignore_ascii_case("sasl")) {
                    conn.write_line("AUTHENTICATE PLAIN").await?;
                }
                continue;
            }
            "AUTHENTICATE" if sasl && m.param(0) == "+" => {
                let pw = password.as_deref().unwrap_or("");
                let token = base64::engine::general_purpose::STANDARD
                    .encode(format!("{0}\0{0}\0{pw}", cfg.account));
                // SASL payloads go in chunks of 400; an exact multiple ends with "+".
                for c in token.as_bytes().chunks(400) {
                    let c = String::from_utf8_lossy(c);
                    conn.write_line(&format!("AUTHENTICATE {c}")).await?;
                }
                if token.len() % 400 == 0 {
                    conn.write_line("AUTHENTICATE +").await?;
                }
                continue;
            }
            "903" if sasl => {
                conn.write_line("CAP END").await?;
                continue;
            }
            "902" | "904" | "905" | "906" | "908" if sasl => format!(
                "irc: SASL login as `{}` failed on {addr} ({code} {text})",
                cfg.account
            ),
            "421" if sasl && m.param(1).eq_ignore_ascii_case("CAP") => format!(
                "irc: {addr} does not support CAP/SASL; use auth = \"nickserv\" or \"pass\""
            ),
            _ => continue,
        };
        return Err(permanent(refused));
    }
    if let (Auth::Nickserv, Some(pw)) = (cfg.auth, &password) {
        conn.write_line(&format!("PRIVMSG NickServ :IDENTIFY {} {pw}", cfg.account))
            .await?;
    }
    Ok(())
}

/// Token bucket over lines, shared by every channel of the connection.
struct Bucket {
    tokens: f64,
    burst: f64,
    interval: Duration,
    last: Instant,
}

impl Bucket {
    fn new(burst: u32, interval: Duration) -> Self {
        Self {
            tokens: f64::from(burst),
            burst: f64::from(burst),
            interval,
            last: Instant::now(),
        }
    }

    /// Reserves a line; returns when it may be sent.
    fn reserve(&mut self, now: Instant) -> Instant {
        let per = self.interval.as_secs_f64().max(1e-6);
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed / per).min(self.burst) - 1.0;
        self.last = now;
        if self.tokens >= 0.0 {
            now
        } else {
            now + Duration::from_secs_f64(-self.tokens * per)
        }
    }
}

/// The IRC side of the connection task.
pub(crate) struct Session {
    cfg: Arc<ConnConfig>,
    bucket: Bucket,
    /// Channels to sit in (folded name → (name, key)), joined again after a reconnect.
    wanted: HashMap<String, (String, Option<String>)>,
}

impl Protocol for Session {
    type Config = ConnConfig;
    type Job = Job;
    type Conn = Conn;
    const NAME: &'static str = "irc";

    fn start(cfg: Arc<ConnConfig>) -> Self {
        Self {
            bucket: Bucket::new(cfg.burst, cfg.line_interval),
            cfg,
            wanted: HashMap::new(),
        }
    }

    fn job(payload: &serde_json::Value) -> Result<Job, Outcome> {
        match Job::from_payload(payload) {
            None => Err(permanent(
                "irc: malformed message (no channel, command or lines)",
            )),
            Some(j) if j.lines.is_empty() => Err(permanent("irc: the rendered message is empty")),
            Some(j) => Ok(j),
        }
    }

    fn addr(&self) -> String {
        self.cfg.addr()
    }

    async fn connect(&mut self) -> Result<Conn, Outcome> {
        let c = connect(&self.cfg).await?;
        tracing::info!(server = %self.cfg.addr(), nick = %c.nick, "irc connected");
        Ok(c)
    }

    async fn rejoin(&mut self, c: &mut Conn) -> Result<(), Outcome> {
        for (chan, key) in self.wanted.values() {
            c.write_line(&join_line(chan, key.as_deref())).await?;
        }
        Ok(())
    }

    fn wants_link(&self) -> bool {
        !self.wanted.is_empty()
    }

    fn keepalive_at(c: &Conn) -> Instant {
        c.last_rx + KEEPALIVE
    }

    async fn keepalive(&mut self, c: &mut Conn) -> Result<(), Outcome> {
        if c.probing {
            return Err(retry(format!(
                "irc: {} stopped answering (no PONG within {} s)",
                c.w.addr,
                KEEPALIVE.as_secs()
            )));
        }
        c.probing = true;
        c.last_rx = Instant::now();
        c.write_line("PING :keepalive").await
    }

    async fn read_idle(c: &mut Conn) -> Result<(), Outcome> {
        let line = c.read_line().await.map_err(|e| c.w.lost(e))?;
        c.observe(&line).await
    }

    /// `Err` = the connection failed; `Ok` = the message's outcome.
    async fn send(&mut self, c: &mut Conn, job: &Job) -> Result<Outcome, Outcome> {
        let folded = fold(&job.channel);
        self.wanted
            .insert(folded.clone(), (job.channel.clone(), job.key.clone()));
        let cfg = self.cfg.clone();
        // Claim our nick back when we had to take `nick_`.
        if fold(&c.nick) != fold(&cfg.nick) && c.last_reclaim.elapsed() >= RECLAIM_EVERY {
            c.last_reclaim = Instant::now();
            c.write_line(&format!("NICK {}", cfg.nick)).await?;
        }
        if !c.joined.contains(&folded)
            && let Some(o) = join(c, &job.channel, job.key.as_deref()).await?
        {
            return Ok(o);
        }
        let prefix = c
            .prefix_len
            .unwrap_or(0)
            .max(estimated_prefix_len(c.nick.len(), cfg.username.len()));
        let budget = text_budget(prefix, &job.command, &job.channel);
        let lines = job.lines.iter().flat_map(|l| message_lines(l, budget));
        let mut error = None;
        for line in lines {
            let at = self.bucket.reserve(Instant::now());
            error = pump(c, at, &job.channel).await?;
            if error.is_some() {
                break;
            }
            c.write_line(&format!("{} {} :{line}", job.command, job.channel))
                .await?;
        }
        // The server answers a PING after it has handled every line before it.
        c.pings += 1;
        let token = format!("relay-ack-{}", c.pings);
        let at = self.bucket.reserve(Instant::now());
        if error.is_none() {
            error = pump(c, at, &job.channel).await?;
        }
        c.write_line(&format!("PING :{token}")).await?;
        let deadline = Instant::now() + ACK_TIMEOUT;
        loop {
            let Some(line) = c.next(deadline).await? else {
                return Err(retry(format!(
                    "irc: {} did not confirm the message within {} s",
                    c.w.addr,
                    ACK_TIMEOUT.as_secs()
                )));
            };
            let Some(m) = Msg::parse(&line) else { continue };
            if m.command == "PONG" && m.last() == token {
                break;
            }
            if error.is_none() {
                error = send_error(&m, &job.channel, c);
            }
        }
        Ok(error.unwrap_or(Outcome::Sent { remote_id: None }))
    }

    async fn close(c: &mut Conn) {
        c.w.bye("QUIT :discourse-relay: configuration changed\r\n")
            .await;
    }
}

/// Reads (and handles) server lines until `until`; an error numeric about
/// `channel` ends the wait early.
async fn pump(c: &mut Conn, until: Instant, channel: &str) -> Result<Option<Outcome>, Outcome> {
    while Instant::now() < until {
        let Some(line) = c.next(until).await? else {
            break;
        };
        if let Some(m) = Msg::parse(&line)
            && let Some(o) = send_error(&m, channel, c)
        {
            return Ok(Some(o));
        }
    }
    Ok(None)
}

/// Errors the server answers a PRIVMSG to `channel` with.
fn send_error(m: &Msg<'_>, channel: &str, c: &mut Conn) -> Option<Outcome> {
    if fold(m.param(1)) != fold(channel) {
        return None;
    }
    let (code, text) = (m.command, short(m.last()));
    match code {
        "404" => Some(permanent(format!(
            "irc: cannot send to {channel}: {text} (404; the channel may be moderated (+m) or the relay banned)"
        ))),
        "401" | "403" => Some(permanent(format!(
            "irc: no such channel {channel} ({code} {text})"
        ))),
        "442" => {
            // We thought we were in: join again on the next attempt.
            c.joined.remove(&fold(channel));
            Some(retry(format!("irc: not on {channel} (442 {text})")))
        }
        _ => None,
    }
}

fn join_line(channel: &str, key: Option<&str>) -> String {
    match key {
        Some(k) => format!("JOIN {channel} {k}"),
        None => format!("JOIN {channel}"),
    }
}

/// Joins `channel`; `Ok(Some)` = the message's outcome (the join failed).
async fn join(c: &mut Conn, channel: &str, key: Option<&str>) -> Result<Option<Outcome>, Outcome> {
    c.write_line(&join_line(channel, key)).await?;
    let folded = fold(channel);
    let deadline = Instant::now() + JOIN_TIMEOUT;
    loop {
        let Some(line) = c.next(deadline).await? else {
            return Ok(Some(retry(format!(
                "irc: no answer to JOIN {channel} within {} s",
                JOIN_TIMEOUT.as_secs()
            ))));
        };
        if c.joined.contains(&folded) {
            return Ok(None);
        }
        let Some(m) = Msg::parse(&line) else { continue };
        if fold(m.param(1)) != folded {
            continue;
        }
        let (code, text) = (m.command, short(m.last()));
        let why = match code {
            "403" => "no such channel",
            "405" => "the relay is in too many channels",
            "473" => "the channel is invite-only (+i): invite the relay's nick",
            "474" => "the relay is banned from the channel (+b)",
            "475" => "wrong or missing channel key (+k): check `key`",
            "476" | "479" => "the server refuses this channel name",
            "477" | "520" => "the channel needs a registered nick: set `auth` and `password`",
            "489" => "the channel needs a TLS connection",
            "471" => {
                return Ok(Some(retry(format!(
                    "irc: cannot join {channel}: the channel is full (471 {text})"
                ))));
            }
            _ => continue,
        };
        let reason = format!("irc: cannot join {channel}: {why} ({code} {text})");
        return Ok(Some(permanent(reason)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::{NativeSender, testkit};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;
    use tokio::time::timeout;

    #[test]
    fn parses_server_lines() {
        let m = Msg::parse("@time=x :nick!~u@h PRIVMSG #chan :hello :world").unwrap();
        assert_eq!(m.prefix, Some("nick!~u@h"));
        assert_eq!(m.nick(), Some("nick"));
        assert_eq!(m.command, "PRIVMSG");
        assert_eq!(m.params, vec!["#chan", "hello :world"]);
        let m = Msg::parse("PING :irc.example.org").unwrap();
        assert_eq!(
            (m.prefix, m.command, m.last()),
            (None, "PING", "irc.example.org")
        );
        let m = Msg::parse(":srv 474 relay #forum :Cannot join channel (+b)\r\n").unwrap();
        assert_eq!(
            m.params,
            vec!["relay", "#forum", "Cannot join channel (+b)"]
        );
        let m = Msg::parse(":srv 001 relay").unwrap();
        assert_eq!(m.param(0), "relay");
        assert!(Msg::parse("").is_none());
        assert!(Msg::parse(":only-prefix").is_none());
        assert_eq!(fold("#Forum[x]"), "#forum{x}");
    }

    #[test]
    fn bucket_allows_a_burst_then_paces() {
        let start = Instant::now();
        let mut b = Bucket::new(4, Duration::from_secs(1));
        for _ in 0..4 {
            assert_eq!(b.reserve(start), start);
        }
        let fifth = b.reserve(start);
        let sixth = b.reserve(start);
        assert_eq!(fifth - start, Duration::from_secs(1));
        assert_eq!(sixth - start, Duration::from_secs(2));
        // Ten idle seconds refill only up to the burst.
        let later = start + Duration::from_secs(12);
        for _ in 0..4 {
            assert_eq!(b.reserve(later), later);
        }
        assert!(b.reserve(later) > later);
    }

    fn config(port: u16, auth: Auth, password: Option<&str>) -> Arc<ConnConfig> {
        Arc::new(ConnConfig {
            server: "127.0.0.1".into(),
            port,
            tls: false,
            nick: "relay".into(),
            username: "relay".into(),
            realname: "discourse-relay".into(),
            password: password.map(crate::config::env::Secret::new),
            auth,
            account: "relayacct".into(),
            burst: 100,
            line_interval: Duration::from_millis(1),
        })
    }

    fn payload(lines: &[&str]) -> serde_json::Value {
        serde_json::json!({"channel": "#forum", "key": null, "command": "PRIVMSG", "lines": lines})
    }

    /// A scripted server: for each line received, `answer` gives the lines
    /// to send back. Returns every line received.
    async fn fake_server(
        answer: impl Fn(&str) -> Vec<String> + Send + 'static,
    ) -> (u16, tokio::task::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (sock, _) = listener.accept().await.unwrap();
            let (r, mut w) = sock.into_split();
            let mut lines = BufReader::new(r).lines();
            let mut seen = Vec::new();
            while let Ok(Ok(Some(line))) = timeout(Duration::from_secs(5), lines.next_line()).await
            {
                for out in answer(&line) {
                    if w.write_all(format!("{out}\r\n").as_bytes()).await.is_err() {
                        break;
                    }
                }
                let quit = line.starts_with("QUIT");
                seen.push(line);
                if quit {
                    break;
                }
            }
            seen
        });
        (port, task)
    }

    /// Welcome after USER, echo JOIN, answer PING.
    fn friendly(line: &str) -> Vec<String> {
        let m = Msg::parse(line).unwrap();
        match m.command {
            "USER" => vec![":srv 001 relay :Welcome".into()],
            "JOIN" => vec![format!(":relay!~relay@127.0.0.1 JOIN :{}", m.param(0))],
            "PING" => vec![format!(":srv PONG srv :{}", m.last())],
            _ => vec![],
        }
    }

    #[tokio::test]
    async fn sasl_nick_in_use_and_ack() {
        let (port, server) = fake_server(|line| {
            let m = Msg::parse(line).unwrap();
            match (m.command, m.param(0)) {
                ("CAP", "REQ") => vec![":srv CAP * ACK :sasl".into()],
                ("CAP", "END") => vec![":srv 001 relay_ :Welcome".into()],
                ("NICK", "relay") => vec![":srv 433 * relay :Nickname is already in use".into()],
                ("AUTHENTICATE", "PLAIN") => vec!["AUTHENTICATE +".into()],
                ("AUTHENTICATE", _) => {
                    vec![":srv 903 relay_ :SASL authentication successful".into()]
                }
                ("USER", _) => vec![],
                ("JOIN", chan) => vec![format!(":relay_!~relay@127.0.0.1 JOIN {chan}")],
                _ => friendly(line),
            }
        })
        .await;
        let sender = IrcSender::new(config(port, Auth::Sasl, Some("pa ss")));
        let out = sender.send(&payload(&["hello", "world"])).await;
        assert_eq!(out, Outcome::Sent { remote_id: None });
        drop(sender);
        let seen = server.await.unwrap();
        let expected_token =
            base64::engine::general_purpose::STANDARD.encode("relayacct\0relayacct\0pa ss");
        assert_eq!(
            seen,
            vec![
                "CAP REQ :sasl".to_string(),
                "NICK relay".into(),
                "USER relay 0 * :discourse-relay".into(),
                "AUTHENTICATE PLAIN".into(),
                "NICK relay_".into(),
                format!("AUTHENTICATE {expected_token}"),
                "CAP END".into(),
                "JOIN #forum".into(),
                "PRIVMSG #forum :hello".into(),
                "PRIVMSG #forum :world".into(),
                "PING :relay-ack-1".into(),
                "QUIT :discourse-relay: configuration changed".into(),
            ]
        );
    }

    #[tokio::test]
    async fn classifies_server_refusals() {
        // Bad password: permanent, without the password in the reason.
        let (port, _s) = fake_server(|line| {
            if line.starts_with("USER") {
                vec![
                    ":srv 464 * :Password incorrect".into(),
                    "ERROR :Closing link".into(),
                ]
            } else {
                vec![]
            }
        })
        .await;
        let sender = IrcSender::new(config(port, Auth::Pass, Some("hunter2-canary")));
        let Outcome::Permanent { reason } = sender.send(&payload(&["x"])).await else {
            panic!("464 must be permanent")
        };
        assert!(
            reason.contains("464") && !reason.contains("hunter2"),
            "{reason}"
        );

        // Banned from the channel; then moderated.
        for (numeric, cmd, expect) in [("474", "JOIN", "banned"), ("404", "PRIVMSG", "cannot send")]
        {
            let (port, _s) = fake_server(move |line| {
                let m = Msg::parse(line).unwrap();
                if m.command == cmd {
                    vec![format!(":srv {numeric} relay #forum :nope")]
                } else {
                    friendly(line)
                }
            })
            .await;
            let sender = IrcSender::new(config(port, Auth::Pass, None));
            let Outcome::Permanent { reason } = sender.send(&payload(&["x"])).await else {
                panic!("{numeric} must be permanent")
            };
            assert!(
                reason.contains(expect) && reason.contains(numeric),
                "{reason}"
            );
        }

        // Nothing listening: retry, and the backoff is reported.
        let sender = IrcSender::new(config(testkit::free_port(), Auth::Pass, None));
        testkit::assert_refused_then_backoff(&sender, &payload(&["x"])).await;
    }

    #[tokio::test]
    async fn answers_ping_while_idle() {
        // After the message's ack the server pings, then drops the link.
        let (port, server) = fake_server(|line| {
            let m = Msg::parse(line).unwrap();
            if m.command == "PING" {
                vec![
                    format!(":srv PONG srv :{}", m.last()),
                    "PING :are-you-there".into(),
                    "ERROR :bye".into(),
                ]
            } else {
                friendly(line)
            }
        })
        .await;
        let sender = IrcSender::new(config(port, Auth::Pass, None));
        assert_eq!(
            sender.send(&payload(&["one"])).await,
            Outcome::Sent { remote_id: None }
        );
        // The idle task answers the PING on its own.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let seen = server.await.unwrap();
        assert!(
            seen.contains(&"PONG :are-you-there".to_string()),
            "{seen:?}"
        );
    }
}
