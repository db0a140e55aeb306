//! The XMPP side of the connection task ([`persistent`]): the client login
//! (stream, STARTTLS, SASL, bind, session), room joins, messages confirmed
//! by the room's echo; while idle, server requests answered, room exits
//! noticed, and a whitespace keepalive or a ping; `</stream:stream>` on close.
//!
//! [`persistent`]: crate::providers::persistent

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, timeout_at};

use super::xml::{self, Element, Item, escape};
use super::{ConnConfig, Tls, check_room, join_stanza, message_stanza, sasl};
use crate::providers::Outcome;
use crate::providers::persistent::{Protocol, Sender, Wire, dial, permanent, retry, tls_wrap};

/// Stream negotiation (TLS, SASL, bind) as a whole.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);
const JOIN_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the room may take to reflect our message.
const ECHO_TIMEOUT: Duration = Duration::from_secs(30);
/// A single space is written after this long without writing anything.
const WHITESPACE_EVERY: Duration = Duration::from_secs(60);
/// Server silence after which an XMPP ping is sent; the link is dropped
/// when nothing arrives within [`WHITESPACE_EVERY`] after it.
const SILENCE_PROBE: Duration = Duration::from_secs(180);
/// Unparsed server data beyond this ends the connection.
const MAX_BUFFER: usize = 1 << 20;

const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
const NS_SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
const NS_STREAMS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
const NS_MUC_USER: &str = "http://jabber.org/protocol/muc#user";
const NS_PING: &str = "urn:xmpp:ping";
const NS_SID: &str = "urn:xmpp:sid:0";

/// The [`NativeSender`](crate::providers::NativeSender) of one `[providers.NAME]` of kind `xmpp`.
pub(crate) type XmppSender = Sender<Session>;

/// One message for one room, as built by `XmppChat::request`.
#[derive(Debug)]
pub(crate) struct Job {
    room: String,
    body: String,
}

/// Server text for a reason: one line, bounded.
fn short(s: &str) -> String {
    crate::providers::persistent::short(s.replace(char::is_control, " ").trim())
}

/// The bare part of a JID (`room@service/nick` → `room@service`), lower-cased.
fn bare(jid: &str) -> String {
    jid.split('/').next().unwrap_or(jid).to_lowercase()
}

fn resource(jid: &str) -> Option<&str> {
    jid.split_once('/').map(|(_, r)| r)
}

/// The condition of an error element (its first child but `<text>`, in
/// `ns` when one is, or `none`), and it with the `<text>`: `condition: text`.
fn condition(e: &Element, ns: Option<&str>, none: &str) -> (String, String) {
    let named = |c: &&Element| c.local() != "text";
    let name = (e.children.iter())
        .find(|c| named(c) && (ns.is_none() || c.ns() == ns))
        .or_else(|| e.children.iter().find(named))
        .map_or(none, |c| c.local());
    let what = match e.child("text").map(|t| short(&t.text)) {
        Some(text) if !text.is_empty() => format!("{name}: {text}"),
        _ => name.to_string(),
    };
    (name.to_string(), what)
}

/// A stanza error: `(type, condition, condition: text)` from its `<error>`.
fn stanza_error(el: &Element) -> (String, String, String) {
    let Some(e) = el.child("error") else {
        let none = "undefined-condition".to_string();
        return ("cancel".into(), none.clone(), none);
    };
    let (condition, what) = condition(e, Some(NS_STANZAS), "undefined-condition");
    (
        e.attr("type").unwrap_or("cancel").to_string(),
        condition,
        what,
    )
}

/// A `<stream:error>` as an outcome.
fn stream_error(el: &Element, addr: &str) -> Outcome {
    let (condition, what) = condition(el, Some(NS_STREAMS), "undefined-condition");
    match condition.as_str() {
        "host-unknown" | "host-gone" => permanent(format!(
            "xmpp: {addr} does not serve the JID's domain ({what}; check `jid` and `server`)"
        )),
        "not-authorized"
        | "improper-addressing"
        | "invalid-namespace"
        | "unsupported-version"
        | "unsupported-encoding"
        | "unsupported-feature" => permanent(format!("xmpp: {addr} ended the stream ({what})")),
        _ => retry(format!("xmpp: {addr} ended the stream ({what})")),
    }
}

fn sasl_failure(el: &Element, who: &str, addr: &str) -> Outcome {
    let (condition, what) = condition(el, None, "failure");
    match condition.as_str() {
        "temporary-auth-failure" => {
            retry(format!("xmpp: login as {who} failed on {addr} ({what})"))
        }
        "not-authorized" => permanent(format!(
            "xmpp: login as {who} refused by {addr} ({what}; check `jid` and `password`)"
        )),
        "account-disabled" | "credentials-expired" => permanent(format!(
            "xmpp: the account {who} cannot log in on {addr} ({what})"
        )),
        _ => permanent(format!("xmpp: login as {who} failed on {addr} ({what})")),
    }
}

pub(crate) struct Conn {
    w: Wire,
    /// Our full JID, as bound.
    jid: String,
    /// Rooms we are in (bare, lower-cased) → our nick there.
    joined: HashMap<String, String>,
    last_rx: Instant,
    /// When a silence probe (ping) was sent, until anything arrives.
    probe_at: Option<Instant>,
    ids: u64,
}

impl Conn {
    fn id(&mut self, what: &str) -> String {
        self.ids += 1;
        format!("relay-{what}-{}", self.ids)
    }

    async fn write(&mut self, data: &str) -> Result<(), Outcome> {
        self.w.write(data).await
    }

    /// Reads the next item (cancel safe, as [`Wire::fill`]).
    async fn read_item(&mut self) -> io::Result<Item> {
        loop {
            let item = xml::next_item(&mut self.w.buf).map_err(|e| {
                let e = format!("the server sent bad XML ({e})");
                io::Error::new(io::ErrorKind::InvalidData, e)
            })?;
            if let Some(item) = item {
                self.last_rx = Instant::now();
                self.probe_at = None;
                return Ok(item);
            }
            self.w
                .fill(MAX_BUFFER, "the server sent an over-long stanza")
                .await?;
            // Any bytes (a whitespace keepalive too) show the link is alive.
            self.last_rx = Instant::now();
            self.probe_at = None;
        }
    }

    /// The next element before `deadline` (`None` at the deadline), after
    /// the bookkeeping every stanza gets (requests answered, room exits
    /// noticed). A stream error, a closed stream or a lost link is `Err`.
    async fn next(&mut self, deadline: Instant) -> Result<Option<Element>, Outcome> {
        loop {
            let item = match timeout_at(deadline, self.read_item()).await {
                Err(_) => return Ok(None),
                Ok(r) => r.map_err(|e| self.w.lost(e))?,
            };
            match item {
                Item::StreamOpen(_) => continue,
                Item::StreamClose => {
                    return Err(retry(format!("xmpp: {} closed the stream", self.w.addr)));
                }
                Item::Element(el) if el.local() == "error" && el.name.contains(':') => {
                    return Err(stream_error(&el, &self.w.addr));
                }
                Item::Element(el) => {
                    self.observe(&el).await?;
                    return Ok(Some(el));
                }
            }
        }
    }

    async fn observe(&mut self, el: &Element) -> Result<(), Outcome> {
        match el.local() {
            "iq" if matches!(el.attr("type"), Some("get" | "set")) => {
                let id = escape(el.attr("id").unwrap_or(""));
                let to = el
                    .attr("from")
                    .map(|f| format!(" to='{}'", escape(f)))
                    .unwrap_or_default();
                let answer = if el.child_ns("ping", NS_PING).is_some() {
                    format!("<iq type='result' id='{id}'{to}/>")
                } else {
                    format!(
                        "<iq type='error' id='{id}'{to}><error type='cancel'><service-unavailable xmlns='{NS_STANZAS}'/></error></iq>"
                    )
                };
                self.write(&answer).await?;
            }
            "presence" => {
                let from = el.attr("from").unwrap_or("");
                let (room, nick) = (bare(from), resource(from).unwrap_or(""));
                let self_presence = el.child_ns("x", NS_MUC_USER).is_some_and(|x| {
                    x.children
                        .iter()
                        .any(|c| c.local() == "status" && c.attr("code") == Some("110"))
                });
                let ours = self_presence || self.joined.get(&room).is_some_and(|n| n == nick);
                match el.attr("type") {
                    Some("unavailable" | "error")
                        if ours && self.joined.remove(&room).is_some() =>
                    {
                        tracing::info!(room = %room, "xmpp: left the room (kicked, banned or the room went away)");
                    }
                    None if self_presence => {
                        self.joined.insert(room, nick.to_string());
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Sends a stream header and returns the server's `<stream:features>`.
    async fn open_stream(
        &mut self,
        cfg: &ConnConfig,
        deadline: Instant,
    ) -> Result<Element, Outcome> {
        self.w.buf.clear();
        self.write(&format!(
            "<?xml version='1.0'?><stream:stream to='{}' version='1.0' xml:lang='en' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
            escape(&cfg.domain)
        ))
        .await?;
        loop {
            let el = self.expect(deadline, "").await?;
            if el.local() == "features" {
                return Ok(el);
            }
        }
    }

    /// The next element; none by `deadline` is a retryable timeout
    /// (`what` was not answered; "" = no stream features came).
    async fn expect(&mut self, deadline: Instant, what: &str) -> Result<Element, Outcome> {
        match self.next(deadline).await? {
            Some(el) => Ok(el),
            None if what.is_empty() => Err(retry(format!(
                "xmpp: {} sent no stream features within {} s",
                self.w.addr,
                LOGIN_TIMEOUT.as_secs()
            ))),
            None => Err(retry(format!(
                "xmpp: {} did not answer {what} within {} s",
                self.w.addr,
                LOGIN_TIMEOUT.as_secs()
            ))),
        }
    }

    /// The next element named one of `ends`; others are skipped.
    async fn until(
        &mut self,
        deadline: Instant,
        what: &str,
        ends: &[&str],
    ) -> Result<Element, Outcome> {
        loop {
            let el = self.expect(deadline, what).await?;
            if ends.contains(&el.local()) {
                return Ok(el);
            }
        }
    }
}

/// Opens the socket and logs in. `Err` carries the outcome for the message
/// that wanted the connection.
async fn connect(cfg: &ConnConfig) -> Result<Conn, Outcome> {
    let addr = cfg.addr();
    let tcp = dial("xmpp", &cfg.server, cfg.port, &addr).await?;
    let mut c = Conn {
        w: Wire::new("xmpp", Box::new(tcp), addr),
        jid: String::new(),
        joined: HashMap::new(),
        last_rx: Instant::now(),
        probe_at: None,
        ids: 0,
    };
    login(&mut c, cfg, Instant::now() + LOGIN_TIMEOUT).await?;
    Ok(c)
}

async fn login(c: &mut Conn, cfg: &ConnConfig, deadline: Instant) -> Result<(), Outcome> {
    let mut features = c.open_stream(cfg, deadline).await?;
    let addr = c.w.addr.clone();
    if cfg.tls == Tls::Starttls {
        if features.child_ns("starttls", NS_TLS).is_none() {
            return Err(permanent(format!(
                "xmpp: {addr} does not offer STARTTLS; the relay will not log in without TLS"
            )));
        }
        c.write(&format!("<starttls xmlns='{NS_TLS}'/>")).await?;
        if c.until(deadline, "STARTTLS", &["proceed", "failure"])
            .await?
            .local()
            == "failure"
        {
            return Err(retry(format!("xmpp: {addr} refused STARTTLS")));
        }
        let plain = std::mem::replace(&mut c.w.io, Box::new(tokio::io::duplex(1).0));
        // The certificate names the XMPP domain, not the host connected to.
        let tls = tls_wrap("xmpp", &cfg.domain, &addr, plain, Some(deadline)).await?;
        c.w.io = Box::new(tls);
        features = c.open_stream(cfg, deadline).await?;
    }

    let offered: Vec<String> = features
        .child_ns("mechanisms", NS_SASL)
        .map(|m| {
            (m.children.iter())
                .filter(|c| c.local() == "mechanism")
                .map(|c| c.text.trim().to_string())
                .collect()
        })
        .unwrap_or_default();
    let (user, password, who) = (&cfg.user, cfg.password.expose(), cfg.bare_jid());
    let scram_failed = |e: String| format!("xmpp: SCRAM login to {addr} failed: {e}");
    let login = "the SASL login";
    if offered.iter().any(|m| m == "SCRAM-SHA-1") {
        let (mut scram, first) =
            sasl::Scram::start(user, password).map_err(|e| retry(scram_failed(e)))?;
        c.write(&format!(
            "<auth xmlns='{NS_SASL}' mechanism='SCRAM-SHA-1'>{first}</auth>"
        ))
        .await?;
        loop {
            let el = c
                .until(deadline, login, &["challenge", "success", "failure"])
                .await?;
            match el.local() {
                "challenge" => {
                    // PBKDF2 with the server's iteration count: CPU work,
                    // off the runtime's threads.
                    let challenge = el.text.clone();
                    let (back, reply) = tokio::task::spawn_blocking(move || {
                        let reply = scram.respond(&challenge);
                        (scram, reply)
                    })
                    .await
                    .map_err(|e| retry(scram_failed(e.to_string())))?;
                    scram = back;
                    let reply = reply.map_err(|e| permanent(scram_failed(e)))?;
                    c.write(&format!("<response xmlns='{NS_SASL}'>{reply}</response>"))
                        .await?;
                }
                "success" => {
                    scram
                        .verify(&el.text)
                        .map_err(|e| permanent(scram_failed(e)))?;
                    break;
                }
                _ => return Err(sasl_failure(&el, &who, &addr)),
            }
        }
    } else if offered.iter().any(|m| m == "PLAIN") {
        let plain = sasl::plain(user, password);
        c.write(&format!(
            "<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{plain}</auth>"
        ))
        .await?;
        let el = c.until(deadline, login, &["success", "failure"]).await?;
        if el.local() == "failure" {
            return Err(sasl_failure(&el, &who, &addr));
        }
    } else {
        let offered = match offered.is_empty() {
            true => "none".to_string(),
            false => short(&offered.join(", ")),
        };
        return Err(permanent(format!(
            "xmpp: {addr} offers no login the relay supports (SCRAM-SHA-1, PLAIN); offered: {offered}"
        )));
    }

    // Resource binding (and the legacy session when required).
    let features = c.open_stream(cfg, deadline).await?;
    if features.child_ns("bind", NS_BIND).is_none() {
        return Err(retry(format!(
            "xmpp: {addr} offered no resource binding after login"
        )));
    }
    let resource = (cfg.resource.as_ref())
        .map(|r| format!("<resource>{}</resource>", escape(r)))
        .unwrap_or_default();
    let bind = format!("<bind xmlns='{NS_BIND}'>{resource}</bind>");
    let el = match iq(c, deadline, ("bind", "resource binding"), &bind).await? {
        Ok(el) => el,
        Err((kind, what)) => {
            let reason = format!("xmpp: {addr} refused resource binding ({what})");
            return Err(if kind == "wait" {
                retry(reason)
            } else {
                permanent(reason)
            });
        }
    };
    c.jid = (el.child("bind").and_then(|b| b.child("jid")))
        .map(|j| j.text.trim().to_string())
        .unwrap_or(who);
    if let Some(s) = features.child_ns("session", NS_SESSION)
        && s.child("optional").is_none()
    {
        let session = format!("<session xmlns='{NS_SESSION}'/>");
        if let Err((_, what)) = iq(c, deadline, ("session", "session start"), &session).await? {
            return Err(retry(format!("xmpp: {addr} refused the session ({what})")));
        }
    }
    Ok(())
}

/// Sends `<iq type='set'>` with `child` (ids start with `id`; `what` it
/// asks for, in reasons): its result, or its error's `(type, condition: text)`.
async fn iq(
    c: &mut Conn,
    deadline: Instant,
    (id, what): (&str, &str),
    child: &str,
) -> Result<Result<Element, (String, String)>, Outcome> {
    let id = c.id(id);
    c.write(&format!("<iq type='set' id='{id}'>{child}</iq>"))
        .await?;
    loop {
        let el = c.expect(deadline, what).await?;
        if el.local() == "iq" && el.attr("id") == Some(id.as_str()) {
            if el.attr("type") == Some("result") {
                return Ok(Ok(el));
            }
            let (kind, _, what) = stanza_error(&el);
            return Ok(Err((kind, what)));
        }
    }
}

/// The XMPP side of the connection task.
pub(crate) struct Session {
    cfg: Arc<ConnConfig>,
    /// Rooms to sit in (bare, as configured), joined again after a reconnect.
    wanted: HashSet<String>,
}

impl Protocol for Session {
    type Config = ConnConfig;
    type Job = Job;
    type Conn = Conn;
    const NAME: &'static str = "xmpp";

    fn start(cfg: Arc<ConnConfig>) -> Self {
        Self {
            cfg,
            wanted: HashSet::new(),
        }
    }

    fn job(p: &serde_json::Value) -> Result<Job, Outcome> {
        let room = p["room"].as_str().filter(|r| check_room(r).is_ok());
        let (Some(room), Some(body)) = (room, p["body"].as_str()) else {
            return Err(permanent("xmpp: malformed message (no room or body)"));
        };
        if body.trim().is_empty() {
            return Err(permanent("xmpp: the rendered message is empty"));
        }
        let (room, body) = (room.to_string(), body.to_string());
        Ok(Job { room, body })
    }

    fn addr(&self) -> String {
        self.cfg.addr()
    }

    async fn connect(&mut self) -> Result<Conn, Outcome> {
        let c = connect(&self.cfg).await?;
        tracing::info!(server = %self.cfg.addr(), jid = %c.jid, "xmpp connected");
        Ok(c)
    }

    async fn rejoin(&mut self, c: &mut Conn) -> Result<(), Outcome> {
        for room in &self.wanted {
            let id = c.id("join");
            c.write(&join_stanza(room, &self.cfg.nick, &id)).await?;
        }
        Ok(())
    }

    fn wants_link(&self) -> bool {
        !self.wanted.is_empty()
    }

    fn keepalive_at(c: &Conn) -> Instant {
        c.probe_at.unwrap_or(c.w.last_tx) + WHITESPACE_EVERY
    }

    async fn keepalive(&mut self, c: &mut Conn) -> Result<(), Outcome> {
        let now = Instant::now();
        if let Some(at) = c.probe_at
            && now >= at + WHITESPACE_EVERY
        {
            return Err(retry(format!(
                "xmpp: {} stopped answering (no reply to a ping within {} s)",
                c.w.addr,
                WHITESPACE_EVERY.as_secs()
            )));
        }
        if c.probe_at.is_none() && now.duration_since(c.last_rx) >= SILENCE_PROBE {
            c.probe_at = Some(now);
            let id = c.id("ping");
            let to = escape(&self.cfg.domain);
            c.write(&format!(
                "<iq type='get' id='{id}' to='{to}'><ping xmlns='{NS_PING}'/></iq>"
            ))
            .await
        } else {
            c.write(" ").await
        }
    }

    async fn read_idle(c: &mut Conn) -> Result<(), Outcome> {
        let far = Instant::now() + Duration::from_secs(86_400);
        c.next(far).await.map(|_| ())
    }

    /// `Err` = the connection failed; `Ok` = the message's outcome.
    async fn send(&mut self, c: &mut Conn, job: &Job) -> Result<Outcome, Outcome> {
        let room = bare(&job.room);
        if !c.joined.contains_key(&room) {
            match join(c, &job.room, &self.cfg.nick).await? {
                None => _ = self.wanted.insert(job.room.clone()),
                Some(o) => {
                    if matches!(o, Outcome::Permanent { .. }) {
                        self.wanted.remove(&job.room);
                    }
                    return Ok(o);
                }
            }
        }
        let id = c.id("msg");
        c.write(&message_stanza(&job.room, &id, &job.body)).await?;
        let deadline = Instant::now() + ECHO_TIMEOUT;
        loop {
            let Some(el) = c.next(deadline).await? else {
                return Ok(retry(format!(
                    "xmpp: {} did not reflect the message within {} s",
                    job.room,
                    ECHO_TIMEOUT.as_secs()
                )));
            };
            let from = el.attr("from").unwrap_or("");
            if el.local() != "message" || bare(from) != room {
                continue;
            }
            let same_id = el.attr("id") == Some(id.as_str())
                || el
                    .child_ns("origin-id", NS_SID)
                    .is_some_and(|o| o.attr("id") == Some(id.as_str()));
            if el.attr("type") == Some("error") {
                if !same_id && el.attr("id").is_some() {
                    continue;
                }
                let (kind, condition, what) = stanza_error(&el);
                let room_ = &job.room;
                return Ok(match condition.as_str() {
                    "not-acceptable" | "item-not-found" => {
                        // Not (or no longer) an occupant: join again next time.
                        c.joined.remove(&room);
                        retry(format!(
                            "xmpp: {room_} refused the message: not in the room ({what})"
                        ))
                    }
                    "forbidden" => permanent(format!(
                        "xmpp: {room_} refused the message ({what}; the room may be moderated and the relay only a visitor: give it voice)"
                    )),
                    _ if kind == "wait" => retry(format!(
                        "xmpp: {room_} refused the message for now ({what})"
                    )),
                    _ => permanent(format!("xmpp: {room_} refused the message ({what})")),
                });
            }
            let ours_by_text = resource(from) == c.joined.get(&room).map(String::as_str)
                && el.child("body").is_some_and(|b| b.text == job.body);
            if same_id || ours_by_text {
                return Ok(Outcome::Sent { remote_id: None });
            }
        }
    }

    async fn close(c: &mut Conn) {
        c.w.bye("</stream:stream>").await;
    }
}

/// Joins `room` as `nick`; `Ok(Some)` = the message's outcome (the join failed).
async fn join(c: &mut Conn, room: &str, nick: &str) -> Result<Option<Outcome>, Outcome> {
    let id = c.id("join");
    c.write(&join_stanza(room, nick, &id)).await?;
    let bare_room = bare(room);
    let deadline = Instant::now() + JOIN_TIMEOUT;
    loop {
        let Some(el) = c.next(deadline).await? else {
            return Ok(Some(retry(format!(
                "xmpp: no answer to joining {room} within {} s",
                JOIN_TIMEOUT.as_secs()
            ))));
        };
        if c.joined.contains_key(&bare_room) {
            return Ok(None);
        }
        if el.local() != "presence"
            || el.attr("type") != Some("error")
            || bare(el.attr("from").unwrap_or("")) != bare_room
        {
            continue;
        }
        let (kind, condition, what) = stanza_error(&el);
        let why = match condition.as_str() {
            "forbidden" => "the relay is banned from the room",
            "item-not-found" => {
                "no such room, and the relay may not create it (or it is locked: the server needs muc_room_locking off, or create the room first)"
            }
            "registration-required" => "the room is members-only: make the relay's JID a member",
            "not-authorized" => "the room needs a password, which the relay does not support",
            "conflict" => "the nick is taken in this room by someone else: set another `nick`",
            "not-allowed" => {
                "the relay may not create rooms on this service: create the room first"
            }
            "jid-malformed" => "the nick or room address is not acceptable to the server",
            "remote-server-not-found" | "remote-server-timeout" => {
                return Ok(Some(retry(format!(
                    "xmpp: cannot reach the room service of {room} ({what})"
                ))));
            }
            "service-unavailable" => {
                return Ok(Some(retry(format!(
                    "xmpp: cannot join {room} now: the room is full or the service is unavailable ({what})"
                ))));
            }
            _ if kind == "wait" => {
                return Ok(Some(retry(format!(
                    "xmpp: cannot join {room} now ({what})"
                ))));
            }
            _ => "refused",
        };
        return Ok(Some(permanent(format!(
            "xmpp: cannot join {room}: {why} ({what})"
        ))));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::{NativeSender, testkit};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::time::timeout;

    #[test]
    fn classifies_stanza_and_stream_errors() {
        let mut buf = br#"<presence type='error' from='r@c/n'><error type='auth'><registration-required xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>Members only</text></error></presence>"#.to_vec();
        let Some(Item::Element(el)) = xml::next_item(&mut buf).unwrap() else {
            panic!()
        };
        assert_eq!(
            stanza_error(&el),
            (
                "auth".to_string(),
                "registration-required".to_string(),
                "registration-required: Members only".to_string()
            )
        );
        let mut buf = br#"<stream:error xmlns:stream='http://etherx.jabber.org/streams'><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"#.to_vec();
        let Some(Item::Element(el)) = xml::next_item(&mut buf).unwrap() else {
            panic!()
        };
        assert!(
            matches!(stream_error(&el, "h:5222"), Outcome::Permanent { reason } if reason.contains("host-unknown"))
        );
        assert_eq!(
            bare("Forum@Conference.Localhost/Nick"),
            "forum@conference.localhost"
        );
        assert_eq!(resource("a@b/c/d"), Some("c/d"));
    }

    fn config(port: u16, tls: Tls) -> Arc<ConnConfig> {
        Arc::new(ConnConfig {
            user: "relaybot".into(),
            domain: "localhost".into(),
            resource: None,
            server: "127.0.0.1".into(),
            port,
            tls,
            password: crate::config::env::Secret::new("pw-canary"),
            nick: "relay".into(),
        })
    }

    fn payload() -> serde_json::Value {
        serde_json::json!({"room": "forum@conference.localhost", "body": "hi"})
    }

    /// A scripted server: answers each complete element with `answer`'s
    /// strings; `stream` opens a new stream each time a header arrives.
    async fn fake_server(
        answer: impl Fn(&Element) -> Vec<String> + Send + 'static,
    ) -> (u16, tokio::task::JoinHandle<Vec<String>>) {
        fake_server_n(1, answer).await
    }

    /// Serves `conns` connections one after the other; an answer "CLOSE"
    /// drops the current one. `seen` marks each new connection with "accept".
    async fn fake_server_n(
        conns: usize,
        answer: impl Fn(&Element) -> Vec<String> + Send + 'static,
    ) -> (u16, tokio::task::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..conns {
                let Ok(Ok((mut sock, _))) =
                    timeout(Duration::from_secs(10), listener.accept()).await
                else {
                    break;
                };
                if conns > 1 {
                    seen.push("accept".to_string());
                }
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                'conn: loop {
                    let n = match timeout(Duration::from_secs(5), sock.read(&mut chunk)).await {
                        Ok(Ok(n)) if n > 0 => n,
                        _ => break,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    while let Ok(Some(item)) = xml::next_item(&mut buf) {
                        let (label, mut outs) = match item {
                            Item::StreamOpen(_) => (
                                "stream".to_string(),
                                vec!["<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' from='localhost' id='x' version='1.0'>".to_string()],
                            ),
                            Item::StreamClose => ("/stream".to_string(), vec![]),
                            Item::Element(el) => (el.local().to_string(), answer(&el)),
                        };
                        if label == "stream" {
                            outs.extend(answer(&Element {
                                name: "stream".into(),
                                ..Default::default()
                            }));
                        }
                        seen.push(label);
                        for o in outs {
                            if o == "CLOSE" || sock.write_all(o.as_bytes()).await.is_err() {
                                break 'conn;
                            }
                        }
                    }
                }
            }
            seen
        });
        (port, task)
    }

    #[tokio::test]
    async fn refusals_are_classified() {
        // No STARTTLS offered while it is required: permanent.
        let (port, _s) = fake_server(|el| match el.local() {
            "stream" => vec![format!("<stream:features><mechanisms xmlns='{NS_SASL}'><mechanism>PLAIN</mechanism></mechanisms></stream:features>")],
            _ => vec![],
        })
        .await;
        let sender = XmppSender::new(config(port, Tls::Starttls));
        let Outcome::Permanent { reason } = sender.send(&payload()).await else {
            panic!("no STARTTLS must be permanent")
        };
        assert!(reason.contains("STARTTLS"), "{reason}");

        // Bad password: permanent, without the password.
        let (port, _s) = fake_server(|el| match el.local() {
            "stream" => vec![format!("<stream:features><mechanisms xmlns='{NS_SASL}'><mechanism>PLAIN</mechanism></mechanisms></stream:features>")],
            "auth" => vec![format!("<failure xmlns='{NS_SASL}'><not-authorized/><text>Unable to authorize you</text></failure>")],
            _ => vec![],
        })
        .await;
        let sender = XmppSender::new(config(port, Tls::None));
        let Outcome::Permanent { reason } = sender.send(&payload()).await else {
            panic!("not-authorized must be permanent")
        };
        assert!(
            reason.contains("not-authorized") && !reason.contains("pw-canary"),
            "{reason}"
        );

        // Logged in, but the room refuses: each condition is readable.
        for (condition, expect) in [
            ("forbidden", "banned"),
            ("item-not-found", "no such room"),
            ("registration-required", "members-only"),
        ] {
            let (port, _s) = fake_server(move |el| {
                match (el.local(), ()) {
                    ("stream", _) => vec![format!("<stream:features><mechanisms xmlns='{NS_SASL}'><mechanism>PLAIN</mechanism></mechanisms><bind xmlns='{NS_BIND}'/></stream:features>")],
                    ("auth", _) => vec![format!("<success xmlns='{NS_SASL}'/>")],
                    ("iq", _) => vec![format!("<iq type='result' id='{}'><bind xmlns='{NS_BIND}'><jid>relaybot@localhost/r1</jid></bind></iq>", el.attr("id").unwrap_or(""))],
                    ("presence", _) => vec![format!("<presence type='error' from='forum@conference.localhost/relay' id='{}'><error type='auth'><{condition} xmlns='{NS_STANZAS}'/></error></presence>", el.attr("id").unwrap_or(""))],
                    _ => vec![],
                }
            })
            .await;
            let sender = XmppSender::new(config(port, Tls::None));
            let Outcome::Permanent { reason } = sender.send(&payload()).await else {
                panic!("{condition} must be permanent")
            };
            assert!(
                reason.contains(expect) && reason.contains(condition),
                "{reason}"
            );
        }

        // Nothing listening: retry, then the backoff is reported.
        let sender = XmppSender::new(config(testkit::free_port(), Tls::None));
        testkit::assert_refused_then_backoff(&sender, &payload()).await;
    }

    #[tokio::test]
    async fn joins_sends_and_waits_for_the_echo() {
        let (port, server) = fake_server(|el| match el.local() {
            "stream" => vec![format!("<stream:features><mechanisms xmlns='{NS_SASL}'><mechanism>PLAIN</mechanism></mechanisms><bind xmlns='{NS_BIND}'/><session xmlns='{NS_SESSION}'><optional/></session></stream:features>")],
            "auth" => vec![format!("<success xmlns='{NS_SASL}'/>")],
            "iq" => vec![format!("<iq type='result' id='{}'><bind xmlns='{NS_BIND}'><jid>relaybot@localhost/r1</jid></bind></iq>", el.attr("id").unwrap_or(""))],
            "presence" => vec![
                "<presence from='forum@conference.localhost/someone'><x xmlns='http://jabber.org/protocol/muc#user'><item role='participant'/></x></presence>".into(),
                // The server asks us something meanwhile: we must answer.
                format!("<iq type='get' id='srv-ping' from='localhost'><ping xmlns='{NS_PING}'/></iq>"),
                "<presence from='forum@conference.localhost/relay'><x xmlns='http://jabber.org/protocol/muc#user'><item role='participant'/><status code='110'/></x></presence>".into(),
            ],
            "message" => vec![format!(
                "<message type='groupchat' from='forum@conference.localhost/relay' id='{}'><body>{}</body></message>",
                el.attr("id").unwrap_or(""),
                escape(&el.child("body").map(|b| b.text.clone()).unwrap_or_default())
            )],
            _ => vec![],
        })
        .await;
        let sender = XmppSender::new(config(port, Tls::None));
        assert_eq!(
            sender.send(&payload()).await,
            Outcome::Sent { remote_id: None }
        );
        // A second message reuses the connection and the joined room.
        let p2 = serde_json::json!({"room": "forum@conference.localhost", "body": "</body><message to='x'>"});
        assert_eq!(sender.send(&p2).await, Outcome::Sent { remote_id: None });
        drop(sender);
        let seen = server.await.unwrap();
        assert_eq!(
            seen,
            vec![
                "stream", "auth", "stream", "iq", "presence", "iq", "message", "message", "/stream"
            ]
        );
    }

    #[tokio::test]
    async fn reconnects_with_backoff_and_joins_again() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let dropped = Arc::new(AtomicBool::new(false));
        let d = dropped.clone();
        let (port, server) = fake_server_n(2, move |el| match el.local() {
            "stream" => vec![format!("<stream:features><mechanisms xmlns='{NS_SASL}'><mechanism>PLAIN</mechanism></mechanisms><bind xmlns='{NS_BIND}'/></stream:features>")],
            "auth" => vec![format!("<success xmlns='{NS_SASL}'/>")],
            "iq" => vec![format!("<iq type='result' id='{}'><bind xmlns='{NS_BIND}'><jid>relaybot@localhost/r1</jid></bind></iq>", el.attr("id").unwrap_or(""))],
            "presence" => vec!["<presence from='forum@conference.localhost/relay'><x xmlns='http://jabber.org/protocol/muc#user'><status code='110'/></x></presence>".into()],
            "message" => {
                let mut out = vec![format!(
                    "<message type='groupchat' from='forum@conference.localhost/relay' id='{}'><body>x</body></message>",
                    el.attr("id").unwrap_or("")
                )];
                // The first connection drops right after the first message.
                if !d.swap(true, Ordering::SeqCst) {
                    out.push("CLOSE".into());
                }
                out
            }
            _ => vec![],
        })
        .await;
        let sender = XmppSender::new(config(port, Tls::None));
        assert_eq!(
            sender.send(&payload()).await,
            Outcome::Sent { remote_id: None }
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The drop was noticed while idle: inside the 1 s backoff, a retry.
        let Outcome::Retry { reason, after } = sender.send(&payload()).await else {
            panic!("inside the backoff a send must retry")
        };
        assert!(after.is_some() && reason.contains("lost"), "{reason}");
        // The task reconnects on its own (it has a room to sit in) and joins again.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            sender.send(&payload()).await,
            Outcome::Sent { remote_id: None }
        );
        drop(sender);
        let seen = server.await.unwrap();
        assert_eq!(
            seen,
            vec![
                "accept", "stream", "auth", "stream", "iq", "presence", "message", "accept",
                "stream", "auth", "stream", "iq", "presence", "message", "/stream"
            ]
        );
    }
}
