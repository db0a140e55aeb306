//! `xmpp`: a multi-user chat room (XEP-0045) over one persistent client
//! connection per provider instance (= per bot account), shared by its
//! chats. [`conn`] logs in on the first send: TCP to `server` (default the
//! JID's domain, no SRV) port 5222, STARTTLS checked for the JID's domain
//! (`tls = "none"` only on the loopback), SASL SCRAM-SHA-1 or PLAIN, bind.
//!
//! Body: `<message type="groupchat">` with an origin id (XEP-0359), dialect
//! plain, escaped by [`xml::escape`] (strictest reading: the characters XML
//! 1.0 forbids go, a title `</body><message>` arrives as text; the unit
//! tests parse the stanza back). `Sent` (no remote id) once the room echoed it.
//!
//! Answers: lost links, timeouts, `wait` errors → Retry; login failures, no
//! STARTTLS and room refusals (`forbidden`, `item-not-found`, members-only,
//! password, nick `conflict`) → Permanent. See shared/providers.md §3 (XMPP).

mod conn;
mod sasl;
use super::kit::prelude::*;
pub mod xml;

use serde::Serialize;

use super::kit::ensure;
use super::persistent::{NativeChat, is_loopback};

pub const REGISTRATION: Registration = kit::registration::<Xmpp>(
    "xmpp",
    "XMPP multi-user chat room over one persistent client connection (STARTTLS)",
);

/// Longest message body sent, in bytes (servers often limit a stanza to
/// 64 KiB; longer text is cut at a character boundary with "…").
pub const MAX_BODY: usize = 60_000;
/// Longest JID part (RFC 7622: 1023 bytes each).
const MAX_PART: usize = 1023;

/// `[providers.NAME]` for `kind = "xmpp"`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Settings {
    /// The bot's account, `name@example.org` (a `/resource` may follow; without one the server picks it).
    pub jid: Located<String>,
    /// The account's password, as `${VAR}`.
    pub password: Located<String>,
    /// Host to connect to (default: the JID's domain; no DNS SRV lookup).
    pub server: Option<Located<String>>,
    /// TCP port (default 5222).
    pub port: Option<Located<u16>>,
    /// `starttls` (the default: TLS is required, the certificate is checked for the JID's domain) or `none` (clear text, password included: only allowed when `server` is 127.0.0.1, ::1 or localhost, for test servers).
    pub tls: Option<Located<Tls>>,
    /// The bot's nickname in rooms (default: the JID's name part).
    pub nick: Option<Located<String>>,
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
    pub room: Located<String>,
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
        kit::host_port(&self.server, self.port)
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

impl Provider for Xmpp {
    type Settings = Settings;
    type Target = Target;

    fn new(s: Settings, _: &Table, cx: &mut Ctx<'_>) -> Option<Self> {
        let ok = &mut true;
        let jid = s.jid.get_ref().trim();
        let (user, domain, resource) = match parse_jid(jid) {
            Ok(j) => (j.node.to_string(), j.domain.to_lowercase(), j.resource),
            Err(why) => return kit::reject(cx, Some(s.jid.span()), format!("`jid` {why}")),
        };
        let password = cx.secret("password", &s.password)?;
        let msg = "`server` must be a host name or address only, like \"xmpp.example.org\" (set `port` separately)";
        let server = match &s.server {
            Some(v) => kit::host(cx, ok, v, msg)?,
            None => domain.clone(),
        };
        let tls = s.tls.as_ref().map_or(Tls::Starttls, |t| *t.get_ref());
        let msg = "`tls = \"none\"` sends the password in clear text: it is only allowed for a test server on 127.0.0.1, ::1 or localhost (set `server`)";
        let clear_ok = tls != Tls::None || is_loopback(&server);
        ensure(cx, ok, clear_ok, s.tls.as_ref().map(Located::span), msg);
        let nick = match &s.nick {
            Some(n) => kit::checked(cx, ok, "nick", n, check_nick),
            None => user.clone(),
        };
        let port = s.port.as_ref().map_or(5222, |p| *p.get_ref());
        let span = s.port.as_ref().map(Located::span);
        ensure(cx, ok, port != 0, span, "`port` must not be 0");
        if !*ok {
            return None;
        }
        let cfg = Arc::new(ConnConfig {
            user,
            domain,
            resource: resource.map(str::to_string),
            server,
            port,
            tls,
            password,
            nick,
        });
        Some(Xmpp {
            sender: Arc::new(conn::XmppSender::new(cfg.clone())),
            cfg,
        })
    }

    fn bind_target(self: Arc<Self>, t: Target, _chat: Span, cx: &mut Ctx<'_>) -> Bound {
        let ok = &mut true;
        let room = kit::checked(cx, ok, "room", &t.room, check_room);
        // The service part is case-insensitive; keep the room name as written.
        let (name, service) = room.split_once('@').filter(|_| *ok)?;
        let room = format!("{name}@{}", service.to_lowercase());
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

impl NativeChat for XmppChat {
    const KIND: &'static str = REGISTRATION.kind;

    fn probe(&self) -> super::probe::Probe {
        super::probe::Probe::Native(self.instance.sender.clone())
    }
    // Rooms (and servers' per-session limits) dislike bursts.
    const RATE: Rate = Rate::per_second(1);

    fn place(&self) -> String {
        format!("{} as {}", self.room, self.instance.cfg.bare_jid())
    }

    fn native(&self, msg: &Message<'_>) -> Outbound {
        let body = message_body(msg.text);
        let url = format!("xmpp:{}", self.room);
        let payload = json!({"room": self.room, "body": body});
        let sender = self.instance.sender.clone();
        kit::native(["groupchat", &url, &body], json!({}), payload, sender)
    }
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
    let bad_node = |c: char| c.is_whitespace() || c.is_control() || "\"&'/:<>@".contains(c);
    let bad = |c: char| c.is_control() || !xml::allowed(c);
    if node.is_empty() {
        Err("needs a name before the `@`")
    } else if node.len() > MAX_PART {
        Err("has a name part longer than 1023 bytes")
    } else if node.contains(bad_node) {
        Err("has a name part with a space, a control character or one of \" & ' / : < > @")
    } else if !valid_domain(domain) {
        Err("has an invalid domain after the `@`")
    } else if resource.is_some_and(|r| r.is_empty() || r.len() > MAX_PART || r.contains(bad)) {
        Err("has an empty or invalid resource after the `/`")
    } else {
        Ok(Jid {
            node,
            domain,
            resource,
        })
    }
}

fn valid_domain(d: &str) -> bool {
    let fine = |c: char| {
        c.is_alphanumeric()
            || matches!(c, '.' | '-' | '_')
            || (!c.is_ascii() && !c.is_whitespace() && !c.is_control())
    };
    !d.is_empty()
        && d.len() <= 253
        && !d.starts_with('.')
        && !d.ends_with('.')
        && !d.contains("..")
        && d.chars().all(fine)
}

/// A room nickname: non-empty, at most 1023 bytes, no control characters
/// (it becomes the resource of `room@service/nick`).
pub fn check_nick(nick: &str) -> Result<(), &'static str> {
    if nick.trim().is_empty() {
        Err("is empty")
    } else if nick.len() > MAX_PART {
        Err("is longer than 1023 bytes")
    } else if nick.contains(|c: char| c.is_control() || !xml::allowed(c)) {
        Err("must not contain control characters")
    } else {
        Ok(())
    }
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

/// The text as it will arrive: characters XML 1.0 forbids removed, CR LF and
/// CR made LF, outer blank lines trimmed, cut to [`MAX_BODY`] bytes.
pub fn message_body(text: &str) -> String {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let text = text.replace(|c| !xml::allowed(c), "");
    kit::truncate_bytes(text.trim_matches(['\n', ' ', '\t']), MAX_BODY)
}

/// The groupchat stanza for `body` (already cleaned by [`message_body`]).
pub fn message_stanza(room: &str, id: &str, body: &str) -> String {
    let (room, id, body) = (xml::escape(room), xml::escape(id), xml::escape(body));
    format!(
        "<message type='groupchat' to='{room}' id='{id}'><body>{body}</body><origin-id xmlns='urn:xmpp:sid:0' id='{id}'/></message>"
    )
}

/// The join presence for `room` as `nick`, asking for no history.
pub fn join_stanza(room: &str, nick: &str, id: &str) -> String {
    let (room, nick, id) = (xml::escape(room), xml::escape(nick), xml::escape(id));
    format!(
        "<presence to='{room}/{nick}' id='{id}'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::testkit::{self, native};

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
        let bad = [
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
        ];
        testkit::accepts(
            |j| parse_jid(j).map(|_| ()),
            &["bot@localhost", "bøt@exämple.org"],
            &bad,
        );
        let bad = [
            "forum",
            "#forum",
            "forum@conference.example.org/nick",
            "fo rum@conference.example.org",
            "forum@",
        ];
        testkit::accepts(check_room, &["forum@conference.example.org"], &bad);
        let long = "n".repeat(1024);
        let bad = ["", "  ", "a\nb", "a\u{0}b", &long];
        testkit::accepts(check_nick, &["Forum relay ☺"], &bad);
    }

    fn load(
        settings: &str,
        target: &str,
        env: &[(&str, &str)],
    ) -> (Option<Box<dyn Destination>>, Vec<String>) {
        testkit::load(&REGISTRATION, settings, target, env)
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
        let m = native(d.as_ref(), "T </body> & x\u{1}", &json!({}));
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
