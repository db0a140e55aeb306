//! `irc`: a channel on an IRC server (RFC 1459/2812) over one persistent
//! connection per server, shared by its chats and kept across a reload that
//! leaves the settings alone. [`conn`] connects on the first send: TLS unless
//! `tls = false`; `PASS`, SASL PLAIN or NickServ; a taken nick grows `_`.
//!
//! Body: one `PRIVMSG` (or `NOTICE`) per line, dialect plain. Escaping is the
//! strictest reading: every control character goes (no CR/LF, CTCP or
//! formatting code from a post) and lines split on UTF-8 boundaries so the
//! relayed line fits 512 bytes. Lines are paced (`burst`, `line_rate`); a
//! `PING` after the last confirms them, so an error numeric precedes `Sent`.
//!
//! Answers: lost links and timeouts → Retry; 464, 465, 432, SASL failures,
//! JOIN refusals (403/473/474/475/477) and 404 → Permanent. See
//! shared/providers.md §3 (IRC).

mod conn;

use super::kit::prelude::*;
use std::sync::{Mutex, Weak};

use serde::Serialize;

use super::kit::ensure;
use super::persistent::{NativeChat, is_loopback};

pub const REGISTRATION: Registration = kit::registration::<Irc>(
    "irc",
    "IRC channel over one persistent connection per server (TLS by default)",
);

/// An IRC line is at most 512 bytes including the final CR LF.
pub const MAX_LINE: usize = 512;
/// Longest host name a server puts in a prefix (HOSTLEN in most ircds).
const HOSTLEN: usize = 63;
/// Underscores a taken nick may grow by before the budget is exceeded; the
/// connection re-splits with the real nick anyway.
const NICK_SLACK: usize = 3;

/// `[providers.NAME]` for `kind = "irc"`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Settings {
    /// Server host name or address, e.g. `irc.libera.chat` (no scheme, no port).
    pub server: Located<String>,
    /// TCP port: default 6697 with TLS, 6667 with `tls = false`.
    pub port: Option<u16>,
    /// TLS, with the certificate checked against the system's roots (default true). `false` sends everything, the password included, in clear text.
    pub tls: Option<bool>,
    /// The relay's nick. When it is taken, `_` is appended until one is free, and the nick is claimed again later.
    pub nick: Located<String>,
    /// Password, as `${VAR}`; `auth` says how it is used.
    pub password: Option<Located<String>>,
    /// How `password` is used: `pass` (server password, `PASS`; the default), `sasl` (SASL PLAIN for `account`), `nickserv` (`IDENTIFY` to NickServ after connecting).
    pub auth: Option<Located<Auth>>,
    /// Account for `sasl` and `nickserv` (default: `nick`).
    pub account: Option<Located<String>>,
    /// User name (ident) sent with `USER` (default: `nick`).
    pub username: Option<Located<String>>,
    /// Real name sent with `USER` (default "discourse-relay").
    pub realname: Option<Located<String>>,
    /// Lines sent at once before pacing starts, for all chats on this server together (default 4).
    pub burst: Option<Located<u32>>,
    /// Lines per time after the burst, e.g. "1/s" (the default) or "30/m"; most servers disconnect flooding clients.
    pub line_rate: Option<Located<String>>,
    /// Send `NOTICE` instead of `PRIVMSG` (bots never auto-reply to a notice; some clients show it less prominently).
    pub notice: Option<bool>,
}

/// How the IRC `password` is presented.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(rename = "IrcAuth")]
pub enum Auth {
    /// `PASS password` before registering (server or bouncer password).
    #[default]
    Pass,
    /// SASL PLAIN (`CAP REQ :sasl`), the usual way on Libera.Chat, OFTC...
    Sasl,
    /// `PRIVMSG NickServ :IDENTIFY account password` after the welcome.
    Nickserv,
}

/// Chat fields for an IRC chat.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Target {
    /// Channel, e.g. `#forum` (starts with `#`, `&`, `+` or `!`; no spaces, commas or control characters; at most 50 bytes).
    pub channel: Located<String>,
    /// Channel key (mode +k), as `${VAR}`.
    pub key: Option<Located<String>>,
}

/// Everything the connection needs; shared by the instance and its task.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ConnConfig {
    pub server: String,
    pub port: u16,
    pub tls: bool,
    pub nick: String,
    pub username: String,
    pub realname: String,
    pub password: Option<Secret>,
    pub auth: Auth,
    pub account: String,
    pub burst: u32,
    /// Time per line after the burst.
    pub line_interval: Duration,
}

impl ConnConfig {
    fn addr(&self) -> String {
        kit::host_port(&self.server, self.port)
    }
}

#[derive(Debug)]
struct Irc {
    cfg: Arc<ConnConfig>,
    sender: Arc<conn::IrcSender>,
    notice: bool,
}

impl Provider for Irc {
    type Settings = Settings;
    type Target = Target;

    fn new(s: Settings, _: &Table, cx: &mut Ctx<'_>) -> Option<Self> {
        let ok = &mut true;
        let msg = "`server` must be a host name or address only, like \"irc.libera.chat\" (set `port` and `tls` separately)";
        let server = kit::host(cx, ok, &s.server, msg)?;
        let nick = kit::checked(cx, ok, "nick", &s.nick, check_nick);
        let tls = s.tls.unwrap_or(true);
        let password = match &s.password {
            Some(p) => {
                let secret = cx.secret("password", p)?;
                let clean = !secret.expose().contains(['\r', '\n', '\0']);
                let msg = "`password` must not contain line breaks or NUL";
                ensure(cx, ok, clean, Some(p.span()), msg);
                Some(secret)
            }
            None => {
                if let Some(a) = &s.auth {
                    let msg = "`auth` needs a `password = \"${IRC_PASSWORD}\"`";
                    ensure(cx, ok, *a.get_ref() == Auth::Pass, Some(a.span()), msg);
                }
                None
            }
        };
        if password.is_some() && !tls && !is_loopback(&server) {
            let msg = "`tls = false` sends the IRC password in clear text";
            cx.warning(Some(s.server.span()), msg);
        }
        // Unset, they are the nick, and their problems are shown at it.
        let or_nick = |v: &Option<Located<String>>| match v {
            Some(v) => (v.get_ref().clone(), v.span()),
            None => (nick.clone(), s.nick.span()),
        };
        let (username, at) = or_nick(&s.username);
        let fine =
            username.len() <= 32 && !username.contains(|c: char| !c.is_ascii_graphic() || c == '@');
        let msg = "`username` must be up to 32 visible ASCII characters without `@`";
        ensure(cx, ok, fine, Some(at), msg);
        let realname = s
            .realname
            .as_ref()
            .map_or("discourse-relay", |r| r.get_ref());
        let span = s.realname.as_ref().map(Located::span);
        let msg = "`realname` must not contain control characters";
        ensure(cx, ok, !realname.contains(char::is_control), span, msg);
        let (account, at) = or_nick(&s.account);
        let fine = !account.is_empty() && !account.contains(|c: char| c.is_control() || c == ' ');
        let msg = "`account` must be a name without spaces or control characters";
        ensure(cx, ok, fine, Some(at), msg);
        let burst = s.burst.as_ref().map_or(4, |b| *b.get_ref());
        let span = s.burst.as_ref().map(Located::span);
        let msg = "`burst` must be between 1 and 100";
        ensure(cx, ok, (1..=100).contains(&burst), span, msg);
        let mut line_interval = Duration::from_secs(1);
        if let Some(r) = &s.line_rate {
            let rate = Rate::parse(r.get_ref());
            let msg = "`line_rate` must look like \"1/s\", \"30/m\" or \"100/h\"";
            ensure(cx, ok, rate.is_some(), Some(r.span()), msg);
            line_interval = rate.map_or(line_interval, |r| r.per / r.count);
        }
        if !*ok {
            return None;
        }
        let cfg = Arc::new(ConnConfig {
            server,
            port: s.port.unwrap_or(if tls { 6697 } else { 6667 }),
            tls,
            nick,
            username: if username.is_empty() {
                "relay".into()
            } else {
                username
            },
            realname: realname.to_string(),
            password,
            auth: s.auth.map(Located::into_inner).unwrap_or_default(),
            account,
            burst,
            line_interval,
        });
        Some(Irc {
            sender: shared_sender(cfg.clone()),
            cfg,
            notice: s.notice.unwrap_or(false),
        })
    }

    fn bind_target(self: Arc<Self>, t: Target, _chat: Span, cx: &mut Ctx<'_>) -> Bound {
        let ok = &mut true;
        let channel = kit::checked(cx, ok, "channel", &t.channel, check_channel);
        if !*ok {
            return None;
        }
        let key = match &t.key {
            Some(k) => Some(cx.secret("key", k)?),
            None => None,
        };
        if let (Some(k), Some(key)) = (&t.key, &key) {
            let fine = key.expose().contains("${") || valid_key(key.expose());
            // Never echo the value: it is a secret.
            let msg = "`key` must be non-empty, without spaces, commas or control characters";
            ensure(cx, ok, fine, Some(k.span()), msg);
        }
        if !*ok {
            return None;
        }
        Some(Box::new(IrcChat {
            instance: self,
            channel,
            key,
        }))
    }
}

/// The sender (and so the connection) for `cfg`: a live one with exactly
/// these settings when there is one, so a config reload that leaves the
/// server's settings alone keeps the connection (no QUIT/JOIN in the
/// channels, no nick clash with the instance being replaced).
fn shared_sender(cfg: Arc<ConnConfig>) -> Arc<conn::IrcSender> {
    static LIVE: Mutex<Vec<Weak<conn::IrcSender>>> = Mutex::new(Vec::new());
    let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    live.retain(|w| w.strong_count() > 0);
    if let Some(s) = live.iter().filter_map(Weak::upgrade).find(|s| s.cfg == cfg) {
        return s;
    }
    let s = Arc::new(conn::IrcSender::new(cfg));
    live.push(Arc::downgrade(&s));
    s
}

#[derive(Debug)]
struct IrcChat {
    instance: Arc<Irc>,
    channel: String,
    key: Option<Secret>,
}

impl NativeChat for IrcChat {
    const KIND: &'static str = REGISTRATION.kind;

    fn probe(&self) -> super::probe::Probe {
        super::probe::Probe::Native(self.instance.sender.clone())
    }
    // A message is a few lines, paced at `line_rate` per connection:
    // one message every 2 s per channel keeps the queue short.
    const RATE: Rate = Rate::per_minute(30);

    fn place(&self) -> String {
        format!("{} on {}", self.channel, self.instance.cfg.addr())
    }

    fn native(&self, msg: &Message<'_>) -> Outbound {
        let cfg = &self.instance.cfg;
        let command = if self.instance.notice {
            "NOTICE"
        } else {
            "PRIVMSG"
        };
        let prefix = estimated_prefix_len(cfg.nick.len() + NICK_SLACK, cfg.username.len());
        let lines = message_lines(msg.text, text_budget(prefix, command, &self.channel));
        let body: Vec<String> = lines
            .iter()
            .map(|l| format!("{command} {} :{l}", self.channel))
            .collect();
        let scheme = if cfg.tls { "ircs" } else { "irc" };
        let url = format!("{scheme}://{}/{}", cfg.addr(), self.channel);
        let payload = json!({
            "channel": self.channel,
            "key": self.key.as_ref().map(Secret::expose),
            "command": command,
            "lines": lines,
        });
        let shown = [command, &url, &body.join("\r\n")];
        kit::native(shown, json!({}), payload, self.instance.sender.clone())
    }
}

/// RFC 2812 nick syntax (letters, digits, `-` and `[]\`_^{|}`, not starting
/// with a digit or `-`), at most 30 bytes.
pub(crate) fn check_nick(nick: &str) -> Result<(), &'static str> {
    let special = |c: char| "[]\\`_^{|}".contains(c);
    match nick.chars().next() {
        None => Err("is empty"),
        Some(c) if !(c.is_ascii_alphabetic() || special(c)) => {
            Err("must start with a letter or one of [ ] \\ ` _ ^ { | }")
        }
        _ if nick.len() > 30 => Err("is longer than 30 characters"),
        _ if !nick
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || special(c) || c == '-') =>
        {
            Err("may only hold letters, digits, `-` and [ ] \\ ` _ ^ { | }")
        }
        _ => Ok(()),
    }
}

/// A channel name: a `#&+!` prefix, then no space, comma, BEL, colon or
/// other control character; at most 50 bytes.
pub(crate) fn check_channel(chan: &str) -> Result<(), &'static str> {
    let bad = |c: char| c.is_control() || c.is_whitespace() || matches!(c, ',' | ':');
    if !chan.starts_with(['#', '&', '+', '!']) {
        Err("must start with `#` (or `&`, `+`, `!`), like \"#forum\"")
    } else if chan.len() < 2 {
        Err("needs a name after the `#`")
    } else if chan.len() > 50 {
        Err("is longer than 50 bytes")
    } else if chan.contains(bad) {
        Err("must not contain spaces, commas, colons or control characters")
    } else {
        Ok(())
    }
}

fn valid_key(key: &str) -> bool {
    let bad = |c: char| c.is_control() || c.is_whitespace() || c == ',';
    !key.is_empty() && key.len() <= 64 && !key.contains(bad)
}

/// `:nick!~user@host ` as a server relays it, with the longest host.
pub(crate) fn estimated_prefix_len(nick_len: usize, user_len: usize) -> usize {
    1 + nick_len + 1 + 1 + user_len + 1 + HOSTLEN + 1
}

/// Bytes of text that fit in `PREFIX COMMAND CHANNEL :TEXT\r\n` within
/// [`MAX_LINE`], given the prefix's length (with its `:` and space).
pub(crate) fn text_budget(prefix_len: usize, command: &str, channel: &str) -> usize {
    let fixed = prefix_len + command.len() + 1 + channel.len() + 2 + 2;
    // Never below a handful of bytes: a split must always make progress.
    MAX_LINE.saturating_sub(fixed).max(16)
}

/// The rendered text as IRC lines: one per line of text (CR, LF, CR LF,
/// U+2028 and U+2029 all end a line), control characters removed (tabs
/// become spaces), blank lines dropped, long lines split to `budget` bytes.
pub fn message_lines(text: &str, budget: usize) -> Vec<String> {
    text.split(['\n', '\r', '\u{2028}', '\u{2029}'])
        .map(clean_line)
        .filter(|l| !l.trim().is_empty())
        .flat_map(|l| split_line(l.trim(), budget))
        .collect()
}

/// Removes every control character (C0 incl. CR, LF, NUL, CTCP `\x01` and
/// the mIRC formatting codes; DEL; C1); a tab becomes a space.
pub fn clean_line(s: &str) -> String {
    s.chars()
        .filter_map(|c| match c {
            '\t' => Some(' '),
            c if c.is_control() => None,
            c => Some(c),
        })
        .collect()
}

/// Splits `line` into pieces of at most `max` bytes, cutting only at UTF-8
/// character boundaries and preferring the last space when it is in the
/// second half of the piece. Spaces at a cut are dropped.
pub fn split_line(line: &str, max: usize) -> Vec<String> {
    // A char is at most 4 bytes: with `max >= 4` every piece makes progress.
    let max = max.max(4);
    let mut out = Vec::new();
    let mut rest = line;
    while rest.len() > max {
        let mut end = max;
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let cut = match rest[..end].rfind(' ') {
            _ if rest[end..].starts_with(' ') => end,
            Some(i) if i >= max / 2 => i,
            _ => end,
        };
        let piece = rest[..cut].trim_end();
        if !piece.is_empty() {
            out.push(piece.to_string());
        }
        rest = rest[cut..].trim_start();
    }
    if !rest.is_empty() {
        out.push(rest.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::testkit::{self, native};

    #[test]
    fn split_keeps_multibyte_chars_whole_and_fits_the_budget() {
        // 3-byte chars with no spaces: every cut must fall between chars.
        let line = "€".repeat(400);
        for max in [16, 17, 18, 100, 401] {
            let pieces = split_line(&line, max);
            assert!(pieces.iter().all(|p| p.len() <= max), "max {max}");
            assert_eq!(pieces.concat(), line, "max {max}: nothing lost");
            assert!(pieces.iter().all(|p| p.chars().all(|c| c == '€')));
        }
        // 4-byte chars (emoji) mixed with ASCII.
        let line = "a😀".repeat(300);
        let pieces = split_line(&line, 101);
        assert!(pieces.iter().all(|p| p.len() <= 101));
        assert_eq!(pieces.concat(), line);
    }

    #[test]
    fn split_prefers_word_boundaries() {
        let line = "lorem ipsum dolor sit amet ".repeat(40);
        let line = line.trim();
        let pieces = split_line(line, 100);
        assert!(pieces.len() > 1);
        for p in &pieces {
            assert!(p.len() <= 100);
            assert!(!p.starts_with(' ') && !p.ends_with(' '));
        }
        // Cut at spaces: rejoining with one space gives the line back.
        assert_eq!(pieces.join(" "), line);
        // A word longer than the budget is cut inside.
        let long = format!("short {}", "x".repeat(250));
        let pieces = split_line(&long, 100);
        assert_eq!(pieces[0], format!("short {}", "x".repeat(94)));
        assert!(pieces.iter().all(|p| p.len() <= 100));
    }

    #[test]
    fn budget_accounts_for_prefix_command_and_channel() {
        let prefix = estimated_prefix_len("relaybot".len() + NICK_SLACK, "relaybot".len());
        // ":" nick+3 "!~" user "@" host(63) " "
        assert_eq!(prefix, 1 + 11 + 2 + 8 + 1 + 63 + 1);
        let budget = text_budget(prefix, "PRIVMSG", "#forum");
        let text = "y".repeat(budget);
        let line = format!(
            ":{}!~{}@{} PRIVMSG #forum :{text}\r\n",
            "relaybot___",
            "relaybot",
            "h".repeat(63)
        );
        assert_eq!(line.len(), MAX_LINE);
        // Every split line of a long multi-byte message fits on the wire.
        let msg = "Ünïcödé wörds ".repeat(200) + "\n" + &"漢字".repeat(300);
        for l in message_lines(&msg, budget) {
            let wire = format!(
                ":{}!~relaybot@{} PRIVMSG #forum :{l}\r\n",
                "relaybot___",
                "h".repeat(63)
            );
            assert!(wire.len() <= MAX_LINE, "{} bytes", wire.len());
        }
    }

    #[test]
    fn crlf_and_controls_cannot_inject_commands() {
        let hostile = "hi\r\nQUIT :pwned\rJOIN #evil\n\n\u{1}ACTION waves\u{1} \u{2}bold\u{2}\u{3}4red\0nul\u{7f}\u{85}\u{2028}PRIVMSG x :y\ttab";
        let lines = message_lines(hostile, 400);
        assert_eq!(
            lines,
            vec![
                "hi",
                "QUIT :pwned",
                "JOIN #evil",
                "ACTION waves bold4rednul",
                "PRIVMSG x :y tab",
            ]
        );
        for l in &lines {
            assert!(!l.chars().any(char::is_control), "{l:?}");
        }
        // Each line is sent as the trailing parameter of its own PRIVMSG, so
        // "QUIT :pwned" is text in #chan, not a command.
        assert!(message_lines("\r\n \n\t\n", 400).is_empty());
    }

    #[test]
    fn validates_nicks_channels_and_keys() {
        let long_nick = "n".repeat(31);
        let bad = [
            "",
            "9lives",
            "-x",
            "with space",
            "a,b",
            "nick\r\nQUIT",
            &long_nick,
        ];
        testkit::accepts(check_nick, &["relaybot", "[bot]_2-x"], &bad);
        let long = format!("#{}", "c".repeat(50));
        let bad = [
            "forum",
            "#",
            "#a b",
            "#a,#b",
            "#a\u{7}",
            "#x\r\nQUIT",
            "#a:b",
            &long,
        ];
        testkit::accepts(check_channel, &["#forum", "&local", "#ünï"], &bad);
        let key = |k: &str| valid_key(k).then_some(()).ok_or(());
        testkit::accepts(key, &["s3cret"], &["", "a b", "a,b", "a\nb"]);
    }

    fn load(
        settings: &str,
        target: &str,
        env: &[(&str, &str)],
    ) -> (Option<Box<dyn Destination>>, Vec<String>) {
        testkit::load(&REGISTRATION, settings, target, env)
    }

    #[test]
    fn config_errors_are_located_and_never_echo_secrets() {
        let (d, p) = load(
            "server = \"irc.example.org\"\nnick = \"relay\"",
            "channel = \"#forum\"",
            &[],
        );
        assert!(d.is_some(), "{p:?}");
        let d = d.unwrap();
        assert_eq!(d.target(), "#forum on irc.example.org:6697");
        let (_, p) = load(
            "server = \"irc://x:6667\"\nnick = \"9\"",
            "channel = \"forum\"",
            &[],
        );
        assert!(p.iter().any(|m| m.contains("`server`")), "{p:?}");
        assert!(p.iter().any(|m| m.contains("`nick`")), "{p:?}");
        let (_, p) = load(
            "server = \"h\"\nnick = \"relay\"\npassword = \"literal\"",
            "channel = \"#c\"",
            &[],
        );
        assert!(
            p.iter().any(|m| m.contains("environment reference")),
            "{p:?}"
        );
        let (_, p) = load(
            "server = \"h\"\nnick = \"relay\"",
            "channel = \"#c\"\nkey = \"${K}\"",
            &[("K", "bad key\r\nQUIT")],
        );
        assert!(p.iter().any(|m| m.contains("`key`")), "{p:?}");
        assert!(!p.iter().any(|m| m.contains("bad key")), "{p:?}");
        let (_, p) = load(
            "server = \"h\"\nnick = \"relay\"\nauth = \"sasl\"",
            "channel = \"#c\"",
            &[],
        );
        assert!(p.iter().any(|m| m.contains("needs a `password")), "{p:?}");
        let (_, p) = load(
            "server = \"h\"\nnick = \"relay\"\nline_rate = \"fast\"",
            "channel = \"#c\"",
            &[],
        );
        assert!(p.iter().any(|m| m.contains("`line_rate`")), "{p:?}");
    }

    #[test]
    fn identical_settings_share_one_connection_across_reloads() {
        let sender = |settings: &str| {
            let (d, p) = load(settings, "channel = \"#c\"", &[]);
            let d = d.unwrap_or_else(|| panic!("{p:?}"));
            native(d.as_ref(), "x", &json!({})).sender
        };
        let first = sender("server = \"share.example\"\nnick = \"relay\"");
        let reloaded = sender("server = \"share.example\"\nnick = \"relay\"");
        let other = sender("server = \"share.example\"\nnick = \"other\"");
        assert!(Arc::ptr_eq(&first, &reloaded));
        assert!(!Arc::ptr_eq(&first, &other));
    }

    #[test]
    fn request_shows_the_exact_lines_and_keeps_the_key_out_of_view() {
        let (d, p) = load(
            "server = \"127.0.0.1\"\ntls = false\nnick = \"relaybot\"",
            "channel = \"#forum\"\nkey = \"${K}\"",
            &[("K", "chankey123")],
        );
        let d = d.unwrap_or_else(|| panic!("{p:?}"));
        let m = native(
            d.as_ref(),
            "Title (https://f/t/1)\r\nQUIT :x\nexcerpt",
            &json!({}),
        );
        assert_eq!(m.shown["method"], "PRIVMSG");
        assert_eq!(m.shown["url"], "irc://127.0.0.1:6667/#forum");
        assert_eq!(
            m.shown["body"],
            "PRIVMSG #forum :Title (https://f/t/1)\r\nPRIVMSG #forum :QUIT :x\r\nPRIVMSG #forum :excerpt"
        );
        assert!(!m.shown.to_string().contains("chankey123"));
        assert_eq!(m.payload["key"], "chankey123");
        assert_eq!(m.payload["lines"].as_array().map(Vec::len), Some(3));
    }
}
