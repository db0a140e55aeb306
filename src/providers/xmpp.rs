//! `xmpp`: a multi-user chat room (XEP-0045) on an XMPP server, through one
//! persistent client connection per provider instance (= per bot account),
//! shared by its chats.
//!
//! The connection ([`conn`]) is opened on the first send: TCP to `server`
//! (default: the JID's domain; no SRV lookup) port 5222, STARTTLS with the
//! certificate checked for the JID's domain against the platform's roots
//! (`tls = "none"` only for a test server on the loopback), SASL
//! SCRAM-SHA-1 when offered, else PLAIN (only ever inside TLS, or on the
//! loopback when the server offers it), resource binding (the server picks
//! the resource unless `jid` names one, so two relays never kick each
//! other), and the legacy session when the server asks for it. Rooms are
//! joined on demand with a presence to `room/nick` (no history) and the
//! relay waits for its own presence back (status 110); joined rooms are
//! remembered and joined again after a reconnect. While idle the link gets a
//! whitespace keepalive every minute, and an XMPP ping when the server has
//! been silent for three; a dropped link is reopened with backoff (1 s
//! doubling to 5 min). Server pings and other requests are answered.
//!
//! A message is `<message type="groupchat" to="room"><body>text</body></message>`
//! with an origin id (XEP-0359). The text (dialect plain) is XML-escaped
//! (`& < > " '`) and stripped of the characters XML 1.0 forbids, so a post
//! titled `</body><message to="x">` arrives as text. The room reflects every
//! message to its sender: the relay reports `Sent` (no remote id) only once
//! its own message came back, and a room's refusal is seen first.
//!
//! Errors: refused or timed-out connections, dropped links, `wait` errors →
//! Retry; SASL `not-authorized` (and other SASL failures but
//! `temporary-auth-failure`), a missing STARTTLS, unknown hosts, and room
//! refusals (`forbidden` = banned, `item-not-found` = no such room and no
//! right to create it, `registration-required` = members only,
//! `not-authorized` = password-protected, `conflict` = nick taken) →
//! Permanent with a readable reason. See shared/providers.md §3 (XMPP),
//! RFC 6120, RFC 5802 and XEP-0045 §7.2.

mod conn;
mod sasl;
pub mod xml;

use crate::providers::persistent::{is_loopback, valid_host};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use serde_spanned::Spanned;
use toml_edit::Item;

use super::{
    Capabilities, Destination, Instance, Message, NativeMessage, Outbound, Registration, schema_of,
};
use crate::config::Rate;
use crate::config::de::Ctx;
use crate::config::env::Secret;
use crate::render::Dialect;

pub const REGISTRATION: Registration = Registration {
    kind: "xmpp",
    about: "XMPP multi-user chat room over one persistent client connection (STARTTLS)",
    parse,
    settings_schema: schema_of::<Settings>,
    target_schema: schema_of::<Target>,
};

/// Longest message body sent, in bytes (servers often limit a stanza to
/// 64 KiB; longer text is cut at a character boundary with "…").
pub const MAX_BODY: usize = 60_000;
/// Longest JID part (RFC 7622: 1023 bytes each).
const MAX_PART: usize = 1023;

/// `[providers.NAME]` for `kind = "xmpp"`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Settings {
    /// The bot's account, `name@example.org` (a `/resource` may follow; without one the server picks it).
    #[schemars(with = "String")]
    pub jid: Spanned<String>,
    /// The account's password, as `${VAR}`.
    #[schemars(with = "String")]
    pub password: Spanned<String>,
    /// Host to connect to (default: the JID's domain; no DNS SRV lookup).
    #[schemars(with = "Option<String>")]
    pub server: Option<Spanned<String>>,
    /// TCP port (default 5222).
    pub port: Option<u16>,
    /// `starttls` (the default: TLS is required, the certificate is checked for the JID's domain) or `none` (clear text, password included: only allowed when `server` is 127.0.0.1, ::1 or localhost, for test servers).
    pub tls: Option<Tls>,
    /// The bot's nickname in rooms (default: the JID's name part).
    #[schemars(with = "Option<String>")]
    pub nick: Option<Spanned<String>>,
}

/// Transport security of the client connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Tls {
    /// Plain TCP upgraded with STARTTLS before logging in; refused if the server does not offer it.
    #[default]
    Starttls,
    /// No TLS at all: only for a test server on the loopback.
    None,
}

/// Chat fields for an XMPP chat.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Target {
    /// The room's address, `room@conference.example.org` (no `/nick`).
    #[schemars(with = "String")]
    pub room: Spanned<String>,
}

/// Everything the connection needs; shared by the instance and its task.
#[derive(Debug)]
pub(crate) struct ConnConfig {
    /// The JID's name part (the SASL user name).
    pub user: String,
    /// The JID's domain (stream `to`, TLS server name).
    pub domain: String,
    /// A resource named in `jid`, if any.
    pub resource: Option<String>,
    pub server: String,
    pub port: u16,
    pub tls: Tls,
    pub password: Secret,
    pub nick: String,
}

impl ConnConfig {
    pub(crate) fn addr(&self) -> String {
        if self.server.contains(':') {
            format!("[{}]:{}", self.server, self.port)
        } else {
            format!("{}:{}", self.server, self.port)
        }
    }

    pub(crate) fn bare_jid(&self) -> String {
        format!("{}@{}", self.user, self.domain)
    }
}

#[derive(Debug)]
struct Xmpp {
    cfg: Arc<ConnConfig>,
    sender: Arc<conn::XmppSender>,
}

/// A JID split into its parts.
#[derive(Debug, PartialEq, Eq)]
pub struct Jid<'a> {
    pub node: &'a str,
    pub domain: &'a str,
    pub resource: Option<&'a str>,
}

/// Parses `node@domain[/resource]`, checking each part (no stringprep: the
/// characters RFC 7622 forbids in a local part are refused).
pub fn parse_jid(s: &str) -> Result<Jid<'_>, &'static str> {
    let (bare, resource) = match s.split_once('/') {
        Some((b, r)) => (b, Some(r)),
        None => (s, None),
    };
    let Some((node, domain)) = bare.split_once('@') else {
        return Err("must look like name@example.org");
    };
    if node.is_empty() {
        return Err("needs a name before the `@`");
    }
    if node.len() > MAX_PART {
        return Err("has a name part longer than 1023 bytes");
    }
    if node
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "\"&'/:<>@".contains(c))
    {
        return Err("has a name part with a space, a control character or one of \" & ' / : < > @");
    }
    if !valid_domain(domain) {
        return Err("has an invalid domain after the `@`");
    }
    if let Some(r) = resource
        && (r.is_empty()
            || r.len() > MAX_PART
            || r.chars().any(|c| c.is_control() || !xml::allowed(c)))
    {
        return Err("has an empty or invalid resource after the `/`");
    }
    Ok(Jid {
        node,
        domain,
        resource,
    })
}

fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && !d.starts_with('.')
        && !d.ends_with('.')
        && !d.contains("..")
        && d.chars().all(|c| {
            c.is_alphanumeric()
                || matches!(c, '.' | '-' | '_')
                || (!c.is_ascii() && !c.is_whitespace() && !c.is_control())
        })
}

/// A room nickname: non-empty, at most 1023 bytes, no control characters
/// (it becomes the resource of `room@service/nick`).
pub fn check_nick(nick: &str) -> Result<(), &'static str> {
    if nick.trim().is_empty() {
        return Err("is empty");
    }
    if nick.len() > MAX_PART {
        return Err("is longer than 1023 bytes");
    }
    if nick.chars().any(|c| c.is_control() || !xml::allowed(c)) {
        return Err("must not contain control characters");
    }
    Ok(())
}

/// A room address: `room@service`, no resource.
pub fn check_room(room: &str) -> Result<(), &'static str> {
    if room.contains('/') {
        return Err(
            "must be the room's bare address, like \"forum@conference.example.org\" (no `/nick`)",
        );
    }
    parse_jid(room).map(|_| ())
}

fn parse(item: &Item, cx: &mut Ctx<'_>) -> Option<Arc<dyn Instance>> {
    let s = cx.deserialize::<Settings>(item)?;
    let mut ok = true;
    let jid_text = s.jid.get_ref().trim().to_string();
    let (user, domain, resource) = match parse_jid(&jid_text) {
        Ok(j) => (
            j.node.to_string(),
            j.domain.to_lowercase(),
            j.resource.map(str::to_string),
        ),
        Err(why) => {
            cx.error(Some(s.jid.span()), format!("`jid` {why}"));
            return None;
        }
    };
    let password = cx.secret("password", &s.password)?;
    let server = match &s.server {
        Some(v) => {
            let server = cx.string(v)?.expose().trim().to_string();
            if !server.contains("${") && !valid_host(&server) {
                cx.error(
                    Some(v.span()),
                    "`server` must be a host name or address only, like \"xmpp.example.org\" (set `port` separately)",
                );
                ok = false;
            }
            server
        }
        None => domain.clone(),
    };
    let tls = s.tls.unwrap_or_default();
    if tls == Tls::None && !is_loopback(&server) {
        cx.error(
            crate::config::de::key_span(item, "tls").or_else(|| item.span()),
            "`tls = \"none\"` sends the password in clear text: it is only allowed for a test server on 127.0.0.1, ::1 or localhost (set `server`)",
        );
        ok = false;
    }
    let nick = match &s.nick {
        Some(n) => {
            let nick = n.get_ref().trim().to_string();
            if let Err(why) = check_nick(&nick) {
                cx.error(Some(n.span()), format!("`nick` {why}"));
                ok = false;
            }
            nick
        }
        None => user.clone(),
    };
    if s.port == Some(0) {
        cx.error(
            crate::config::de::key_span(item, "port").or_else(|| item.span()),
            "`port` must not be 0",
        );
        ok = false;
    }
    if !ok {
        return None;
    }
    let cfg = Arc::new(ConnConfig {
        user,
        domain,
        resource,
        server,
        port: s.port.unwrap_or(5222),
        tls,
        password,
        nick,
    });
    Some(Arc::new(Xmpp {
        sender: Arc::new(conn::XmppSender::new(cfg.clone())),
        cfg,
    }))
}

impl Instance for Xmpp {
    fn bind(
        self: Arc<Self>,
        target: &Item,
        _chat: Option<Range<usize>>,
        cx: &mut Ctx<'_>,
    ) -> Option<Box<dyn Destination>> {
        let t = cx.deserialize::<Target>(target)?;
        let room = t.room.get_ref().trim().to_string();
        if let Err(why) = check_room(&room) {
            cx.error(Some(t.room.span()), format!("`room` {why}"));
            return None;
        }
        // The service part is case-insensitive; keep the room name as written.
        let room = match room.split_once('@') {
            Some((n, d)) => format!("{n}@{}", d.to_lowercase()),
            None => room,
        };
        Some(Box::new(XmppChat {
            instance: self,
            room,
        }))
    }
}

#[derive(Debug)]
struct XmppChat {
    instance: Arc<Xmpp>,
    room: String,
}

impl Destination for XmppChat {
    fn kind(&self) -> &'static str {
        "xmpp"
    }

    fn dialect(&self) -> Dialect {
        Dialect::Plain
    }

    fn capabilities(&self) -> Capabilities {
        // No message id is kept: nothing to thread under, correct or retract.
        Capabilities::default()
    }

    fn target(&self) -> String {
        format!("{} as {}", self.room, self.instance.cfg.bare_jid())
    }

    fn default_rate(&self) -> Option<Rate> {
        // Rooms (and servers' per-session limits) dislike bursts.
        Some(Rate {
            count: 1,
            per: Duration::from_secs(1),
        })
    }

    fn request(&self, msg: &Message<'_>) -> Outbound {
        let body = message_body(msg.text);
        let shown = json!({
            "method": "groupchat",
            "url": format!("xmpp:{}", self.room),
            "headers": {},
            "body": body,
        });
        let payload = json!({
            "room": self.room,
            "body": body,
        });
        Outbound::Native(NativeMessage {
            shown,
            payload,
            sender: self.instance.sender.clone(),
        })
    }
}

/// The text as it will arrive: characters XML 1.0 forbids removed, CR LF and
/// CR made LF, outer blank lines trimmed, cut to [`MAX_BODY`] bytes.
pub fn message_body(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' if chars.peek() == Some(&'\n') => {}
            '\r' => out.push('\n'),
            c if xml::allowed(c) => out.push(c),
            _ => {}
        }
    }
    let trimmed = out.trim_matches(|c: char| c == '\n' || c == ' ' || c == '\t');
    if trimmed.len() <= MAX_BODY {
        return trimmed.to_string();
    }
    let mut end = MAX_BODY - '…'.len_utf8();
    while !trimmed.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &trimmed[..end])
}

/// The groupchat stanza for `body` (already cleaned by [`message_body`]).
pub fn message_stanza(room: &str, id: &str, body: &str) -> String {
    format!(
        "<message type='groupchat' to='{}' id='{}'><body>{}</body><origin-id xmlns='urn:xmpp:sid:0' id='{}'/></message>",
        xml::escape(room),
        xml::escape(id),
        xml::escape(body),
        xml::escape(id)
    )
}

/// The join presence for `room` as `nick`, asking for no history.
pub fn join_stanza(room: &str, nick: &str, id: &str) -> String {
    format!(
        "<presence to='{}/{}' id='{}'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>",
        xml::escape(room),
        xml::escape(nick),
        xml::escape(id)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn stanza_escapes_everything_and_parses_back() {
        let hostile = "Title </body><message to='victim@x' type='chat'><body>pwned</body></message> & \"q\" \u{0}\u{1b}[31m\r\nline2";
        let body = message_body(hostile);
        assert_eq!(
            body,
            "Title </body><message to='victim@x' type='chat'><body>pwned</body></message> & \"q\" [31m\nline2"
        );
        let stanza = message_stanza("forum@conference.localhost", "relay-1", &body);
        assert_eq!(
            stanza,
            "<message type='groupchat' to='forum@conference.localhost' id='relay-1'><body>Title &lt;/body&gt;&lt;message to=&apos;victim@x&apos; type=&apos;chat&apos;&gt;&lt;body&gt;pwned&lt;/body&gt;&lt;/message&gt; &amp; &quot;q&quot; [31m\nline2</body><origin-id xmlns='urn:xmpp:sid:0' id='relay-1'/></message>"
        );
        let mut buf = stanza.into_bytes();
        let Some(xml::Item::Element(m)) = xml::next_item(&mut buf).unwrap() else {
            panic!("one element")
        };
        assert!(buf.is_empty());
        assert_eq!(m.children.len(), 2);
        assert_eq!(m.attr("to"), Some("forum@conference.localhost"));
        assert_eq!(m.child("body").unwrap().text, body);
    }

    #[test]
    fn long_bodies_are_cut_at_a_char_boundary() {
        let text = "€".repeat(MAX_BODY);
        let body = message_body(&text);
        assert!(body.len() <= MAX_BODY);
        assert!(body.ends_with('…'));
        assert_eq!(message_body("\n\n  hi \n"), "hi");
    }

    #[test]
    fn join_presence_shape() {
        assert_eq!(
            join_stanza("forum@conference.localhost", "Relay <bot>", "join-1"),
            "<presence to='forum@conference.localhost/Relay &lt;bot&gt;' id='join-1'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>"
        );
    }

    #[test]
    fn validates_jids_rooms_and_nicks() {
        assert_eq!(
            parse_jid("bot@example.org/relay"),
            Ok(Jid {
                node: "bot",
                domain: "example.org",
                resource: Some("relay")
            })
        );
        assert!(parse_jid("bot@localhost").is_ok());
        assert!(parse_jid("bøt@exämple.org").is_ok());
        for bad in [
            "",
            "example.org",
            "@example.org",
            "bot@",
            "b ot@example.org",
            "b<t@example.org",
            "bot@exa mple.org",
            "bot@example..org",
            "bot@example.org/",
            "a@b@c",
        ] {
            assert!(parse_jid(bad).is_err(), "{bad:?}");
        }
        assert!(check_room("forum@conference.example.org").is_ok());
        for bad in [
            "forum",
            "#forum",
            "forum@conference.example.org/nick",
            "fo rum@conference.example.org",
            "forum@",
        ] {
            assert!(check_room(bad).is_err(), "{bad:?}");
        }
        assert!(check_nick("Forum relay ☺").is_ok());
        for bad in ["", "  ", "a\nb", "a\u{0}b", &"n".repeat(1024)] {
            assert!(check_nick(bad).is_err(), "{bad:?}");
        }
    }

    fn load(
        settings: &str,
        target: &str,
        env: &[(&str, &str)],
    ) -> (Option<Box<dyn Destination>>, Vec<String>) {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut cx = Ctx::new(&env, crate::config::de::MissingEnv::Error);
        let doc = toml_edit::Document::parse(format!("[s]\n{settings}\n[t]\n{target}\n")).unwrap();
        let dest = parse(&doc["s"], &mut cx).and_then(|i| i.bind(&doc["t"], None, &mut cx));
        let problems = cx.problems().iter().map(|p| p.message.clone()).collect();
        (dest, problems)
    }

    const PW: &[(&str, &str)] = &[("XMPP_PASSWORD", "xmpp-canary-pw")];

    #[test]
    fn config_errors_are_located_and_never_echo_secrets() {
        let (d, p) = load(
            "jid = \"bot@example.org\"\npassword = \"${XMPP_PASSWORD}\"",
            "room = \"forum@Conference.Example.org\"",
            PW,
        );
        let d = d.unwrap_or_else(|| panic!("{p:?}"));
        assert_eq!(
            d.target(),
            "forum@conference.example.org as bot@example.org"
        );
        assert_eq!(d.kind(), "xmpp");

        let (_, p) = load(
            "jid = \"example.org\"\npassword = \"${XMPP_PASSWORD}\"",
            "room = \"forum@c.example.org\"",
            PW,
        );
        assert!(p.iter().any(|m| m.contains("`jid`")), "{p:?}");
        let (_, p) = load(
            "jid = \"bot@example.org\"\npassword = \"literal-pw\"",
            "room = \"forum@c.example.org\"",
            PW,
        );
        assert!(
            p.iter().any(|m| m.contains("environment reference")),
            "{p:?}"
        );
        assert!(!p.iter().any(|m| m.contains("literal-pw")), "{p:?}");
        let (_, p) = load(
            "jid = \"bot@example.org\"\npassword = \"${XMPP_PASSWORD}\"\ntls = \"none\"",
            "room = \"forum@c.example.org\"",
            PW,
        );
        assert!(
            p.iter()
                .any(|m| m.contains("tls = \\\"none\\\"") || m.contains("clear text")),
            "{p:?}"
        );
        let (d, p) = load(
            "jid = \"bot@localhost\"\npassword = \"${XMPP_PASSWORD}\"\nserver = \"127.0.0.1\"\nport = 15222\ntls = \"none\"\nnick = \"Forum\"",
            "room = \"forum@conference.localhost\"",
            PW,
        );
        assert!(d.is_some(), "{p:?}");
        let (_, p) = load(
            "jid = \"bot@example.org\"\npassword = \"${XMPP_PASSWORD}\"\ntls = \"ssl\"",
            "room = \"forum@c.example.org\"",
            PW,
        );
        assert!(!p.is_empty());
        let (_, p) = load(
            "jid = \"bot@example.org\"\npassword = \"${XMPP_PASSWORD}\"\nserver = \"xmpp://h:5222\"\nnick = \"\"",
            "room = \"forum@c.example.org/me\"",
            PW,
        );
        assert!(p.iter().any(|m| m.contains("`server`")), "{p:?}");
        assert!(p.iter().any(|m| m.contains("`nick`")), "{p:?}");
        let (_, p) = load(
            "jid = \"bot@example.org\"\npassword = \"${XMPP_PASSWORD}\"",
            "room = \"forum@c.example.org/me\"",
            PW,
        );
        assert!(p.iter().any(|m| m.contains("`room`")), "{p:?}");
        for m in &p {
            assert!(!m.contains("xmpp-canary-pw"), "{m}");
        }
    }

    #[test]
    fn request_shows_the_text_and_keeps_the_password_out() {
        let (d, p) = load(
            "jid = \"relaybot@localhost\"\npassword = \"${XMPP_PASSWORD}\"\nserver = \"127.0.0.1\"\ntls = \"none\"",
            "room = \"forum@conference.localhost\"",
            PW,
        );
        let d = d.unwrap_or_else(|| panic!("{p:?}"));
        let ctx = json!({});
        let Outbound::Native(m) = d.request(&Message {
            chat: "c",
            text: "T </body> & x\u{1}",
            context: &ctx,
            action: Default::default(),
            delivery: None,
        }) else {
            panic!("expected native")
        };
        assert_eq!(
            m.shown,
            json!({"method": "groupchat", "url": "xmpp:forum@conference.localhost", "headers": {}, "body": "T </body> & x"})
        );
        assert_eq!(
            m.payload,
            json!({"room": "forum@conference.localhost", "body": "T </body> & x"})
        );
        assert!(!m.shown.to_string().contains("xmpp-canary-pw"));
        assert!(!m.payload.to_string().contains("xmpp-canary-pw"));
    }
}
