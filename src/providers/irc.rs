//! `irc`: a channel on an IRC server (RFC 1459/2812), through one persistent
//! connection per provider instance (= per server), shared by its chats.
//!
//! The connection ([`conn`]) is opened on the first send: TLS (verified
//! against the platform's roots) unless `tls = false`, optional `CAP REQ
//! :sasl` / `PASS`, `NICK`/`USER`, then the `001` welcome (a taken nick gets
//! `_` appended; the real nick is tried again later). Channels are joined on
//! demand and remembered: after a reconnect they are joined again at once.
//! `PING`s are answered while idle, and a silent link is probed and dropped.
//! A dropped connection is reopened with backoff (1 s doubling to 5 min).
//! A config reload that leaves a server's settings unchanged keeps its
//! connection (the new instance reuses the live sender).
//!
//! A message becomes one `PRIVMSG` (or `NOTICE`) per line of the rendered
//! text. Lines are cleaned (every control character goes, so no CR/LF, NUL,
//! CTCP `\x01` or formatting code can come from a post) and split at UTF-8
//! character boundaries, preferring spaces, so that the line the server
//! relays, `:nick!user@host PRIVMSG #chan :text\r\n`, fits in 512 bytes.
//! Lines are paced by a token bucket per connection (`burst`, `line_rate`;
//! default 4 at once, then 1/s). After the last line the relay sends a
//! `PING` and waits for its `PONG`: the server has then processed every line,
//! so an error numeric (404 moderated/banned...) is seen before `Sent`.
//!
//! Errors: connection refused, timeouts, dropped links → Retry; 464 bad
//! password, 465 banned, 432 erroneous nick, SASL failures, 403/405/473/474/
//! 475/477 on JOIN and 404 on PRIVMSG → Permanent with a readable reason.
//! See shared/providers.md §3 (IRC) and RFC 2812 §3.

mod conn;

use crate::providers::persistent::{is_loopback, valid_host};
use std::ops::Range;
use std::sync::{Arc, Mutex, Weak};
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
    kind: "irc",
    about: "IRC channel over one persistent connection per server (TLS by default)",
    parse,
    settings_schema: schema_of::<Settings>,
    target_schema: schema_of::<Target>,
};

/// An IRC line is at most 512 bytes including the final CR LF.
pub const MAX_LINE: usize = 512;
/// Longest host name a server puts in a prefix (HOSTLEN in most ircds).
const HOSTLEN: usize = 63;
/// Underscores a taken nick may grow by before the budget is exceeded; the
/// connection re-splits with the real nick anyway.
const NICK_SLACK: usize = 3;
const MAX_NICK: usize = 30;
const MAX_CHANNEL: usize = 50;

/// `[providers.NAME]` for `kind = "irc"`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Settings {
    /// Server host name or address, e.g. `irc.libera.chat` (no scheme, no port).
    #[schemars(with = "String")]
    pub server: Spanned<String>,
    /// TCP port: default 6697 with TLS, 6667 with `tls = false`.
    pub port: Option<u16>,
    /// TLS, with the certificate checked against the system's roots (default true). `false` sends everything, the password included, in clear text.
    pub tls: Option<bool>,
    /// The relay's nick. When it is taken, `_` is appended until one is free, and the nick is claimed again later.
    #[schemars(with = "String")]
    pub nick: Spanned<String>,
    /// Password, as `${VAR}`; `auth` says how it is used.
    #[schemars(with = "Option<String>")]
    pub password: Option<Spanned<String>>,
    /// How `password` is used: `pass` (server password, `PASS`; the default), `sasl` (SASL PLAIN for `account`), `nickserv` (`IDENTIFY` to NickServ after connecting).
    pub auth: Option<Auth>,
    /// Account for `sasl` and `nickserv` (default: `nick`).
    pub account: Option<String>,
    /// User name (ident) sent with `USER` (default: `nick`).
    pub username: Option<String>,
    /// Real name sent with `USER` (default "discourse-relay").
    pub realname: Option<String>,
    /// Lines sent at once before pacing starts, for all chats on this server together (default 4).
    pub burst: Option<u32>,
    /// Lines per time after the burst, e.g. "1/s" (the default) or "30/m"; most servers disconnect flooding clients.
    #[schemars(with = "Option<String>")]
    pub line_rate: Option<Spanned<String>>,
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
    #[schemars(with = "String")]
    pub channel: Spanned<String>,
    /// Channel key (mode +k), as `${VAR}`.
    #[schemars(with = "Option<String>")]
    pub key: Option<Spanned<String>>,
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
        if self.server.contains(':') {
            format!("[{}]:{}", self.server, self.port)
        } else {
            format!("{}:{}", self.server, self.port)
        }
    }
}

#[derive(Debug)]
struct Irc {
    cfg: Arc<ConnConfig>,
    sender: Arc<conn::IrcSender>,
    notice: bool,
}

fn parse(item: &Item, cx: &mut Ctx<'_>) -> Option<Arc<dyn Instance>> {
    let s = cx.deserialize::<Settings>(item)?;
    let server = cx.string(&s.server)?.expose().trim().to_string();
    let mut ok = true;
    if !server.contains("${") && !valid_host(&server) {
        cx.error(
            Some(s.server.span()),
            "`server` must be a host name or address only, like \"irc.libera.chat\" (set `port` and `tls` separately)",
        );
        ok = false;
    }
    let nick = s.nick.get_ref().trim().to_string();
    if let Err(why) = check_nick(&nick) {
        cx.error(Some(s.nick.span()), format!("`nick` {why}"));
        ok = false;
    }
    let tls = s.tls.unwrap_or(true);
    let auth = s.auth.unwrap_or_default();
    let password = match &s.password {
        Some(p) => {
            let secret = cx.secret("password", p)?;
            if secret
                .expose()
                .chars()
                .any(|c| matches!(c, '\r' | '\n' | '\0'))
            {
                cx.error(
                    Some(p.span()),
                    "`password` must not contain line breaks or NUL",
                );
                ok = false;
            }
            Some(secret)
        }
        None => {
            if s.auth.is_some_and(|a| a != Auth::Pass) {
                cx.error(
                    key_span(item, "auth"),
                    "`auth` needs a `password = \"${IRC_PASSWORD}\"`",
                );
                ok = false;
            }
            None
        }
    };
    if password.is_some() && !tls && !is_loopback(&server) {
        cx.warning(
            Some(s.server.span()),
            "`tls = false` sends the IRC password in clear text",
        );
    }
    let username = s.username.clone().unwrap_or_else(|| nick.clone());
    if !username.is_empty()
        && (username.len() > 32 || !username.chars().all(|c| c.is_ascii_graphic() && c != '@'))
    {
        cx.error(
            key_span(item, "username"),
            "`username` must be up to 32 visible ASCII characters without `@`",
        );
        ok = false;
    }
    let realname = s
        .realname
        .clone()
        .unwrap_or_else(|| "discourse-relay".into());
    if realname.chars().any(char::is_control) {
        cx.error(
            key_span(item, "realname"),
            "`realname` must not contain control characters",
        );
        ok = false;
    }
    let account = s.account.clone().unwrap_or_else(|| nick.clone());
    if account.is_empty() || account.chars().any(|c| c.is_control() || c == ' ') {
        cx.error(
            key_span(item, "account"),
            "`account` must be a name without spaces or control characters",
        );
        ok = false;
    }
    let burst = s.burst.unwrap_or(4);
    if burst == 0 || burst > 100 {
        cx.error(key_span(item, "burst"), "`burst` must be between 1 and 100");
        ok = false;
    }
    let line_interval = match &s.line_rate {
        Some(r) => match Rate::parse(r.get_ref()) {
            Some(rate) => rate.per / rate.count,
            None => {
                cx.error(
                    Some(r.span()),
                    "`line_rate` must look like \"1/s\", \"30/m\" or \"100/h\"",
                );
                ok = false;
                Duration::from_secs(1)
            }
        },
        None => Duration::from_secs(1),
    };
    if !ok {
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
        realname,
        password,
        auth,
        account,
        burst,
        line_interval,
    });
    Some(Arc::new(Irc {
        sender: shared_sender(cfg.clone()),
        cfg,
        notice: s.notice.unwrap_or(false),
    }))
}

/// The sender (and so the connection) for `cfg`: a live one with exactly
/// these settings when there is one, so a config reload that leaves the
/// server's settings alone keeps the connection (no QUIT/JOIN in the
/// channels, no nick clash with the instance being replaced).
fn shared_sender(cfg: Arc<ConnConfig>) -> Arc<conn::IrcSender> {
    static LIVE: Mutex<Vec<Weak<conn::IrcSender>>> = Mutex::new(Vec::new());
    let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    live.retain(|w| w.strong_count() > 0);
    if let Some(s) = live
        .iter()
        .filter_map(Weak::upgrade)
        .find(|s| *s.config() == *cfg)
    {
        return s;
    }
    let s = Arc::new(conn::IrcSender::new(cfg));
    live.push(Arc::downgrade(&s));
    s
}

fn key_span(item: &Item, key: &str) -> Option<Range<usize>> {
    crate::config::de::key_span(item, key).or_else(|| item.span())
}

impl Instance for Irc {
    fn bind(
        self: Arc<Self>,
        target: &Item,
        _chat: Option<Range<usize>>,
        cx: &mut Ctx<'_>,
    ) -> Option<Box<dyn Destination>> {
        let t = cx.deserialize::<Target>(target)?;
        let channel = t.channel.get_ref().trim().to_string();
        if let Err(why) = check_channel(&channel) {
            cx.error(Some(t.channel.span()), format!("`channel` {why}"));
            return None;
        }
        let key = match &t.key {
            Some(k) => {
                let key = cx.secret("key", k)?;
                if !key.expose().contains("${") && !valid_key(key.expose()) {
                    // Never echo the value: it is a secret.
                    cx.error(
                        Some(k.span()),
                        "`key` must be non-empty, without spaces, commas or control characters",
                    );
                    return None;
                }
                Some(key)
            }
            None => None,
        };
        Some(Box::new(IrcChat {
            instance: self,
            channel,
            key,
        }))
    }
}

#[derive(Debug)]
struct IrcChat {
    instance: Arc<Irc>,
    channel: String,
    key: Option<Secret>,
}

impl IrcChat {
    fn command(&self) -> &'static str {
        if self.instance.notice {
            "NOTICE"
        } else {
            "PRIVMSG"
        }
    }
}

impl Destination for IrcChat {
    fn kind(&self) -> &'static str {
        "irc"
    }

    fn dialect(&self) -> Dialect {
        Dialect::Plain
    }

    fn capabilities(&self) -> Capabilities {
        // PRIVMSG returns nothing to thread under, edit or delete.
        Capabilities::default()
    }

    fn target(&self) -> String {
        format!("{} on {}", self.channel, self.instance.cfg.addr())
    }

    fn default_rate(&self) -> Option<Rate> {
        // A message is a few lines, paced at `line_rate` per connection:
        // one message every 2 s per channel keeps the queue short.
        Some(Rate {
            count: 30,
            per: Duration::from_secs(60),
        })
    }

    fn request(&self, msg: &Message<'_>) -> Outbound {
        let cfg = &self.instance.cfg;
        let command = self.command();
        let prefix = estimated_prefix_len(cfg.nick.len() + NICK_SLACK, cfg.username.len());
        let budget = text_budget(prefix, command, &self.channel);
        let lines = message_lines(msg.text, budget);
        let body = lines
            .iter()
            .map(|l| format!("{command} {} :{l}", self.channel))
            .collect::<Vec<_>>()
            .join("\r\n");
        let scheme = if cfg.tls { "ircs" } else { "irc" };
        let shown = json!({
            "method": command,
            "url": format!("{scheme}://{}/{}", cfg.addr(), self.channel),
            "headers": {},
            "body": body,
        });
        let payload = json!({
            "channel": self.channel,
            "key": self.key.as_ref().map(|k| k.expose()),
            "command": command,
            "lines": lines,
        });
        Outbound::Native(NativeMessage {
            shown,
            payload,
            sender: self.instance.sender.clone(),
        })
    }
}

// ---------------------------------------------------------------------------
// Validation

/// RFC 2812 nick syntax (letters, digits, `-` and `[]\`_^{|}`, not starting
/// with a digit or `-`), at most 30 bytes.
pub(crate) fn check_nick(nick: &str) -> Result<(), &'static str> {
    let special = |c: char| matches!(c, '[' | ']' | '\\' | '`' | '_' | '^' | '{' | '|' | '}');
    let mut chars = nick.chars();
    match chars.next() {
        None => return Err("is empty"),
        Some(c) if !(c.is_ascii_alphabetic() || special(c)) => {
            return Err("must start with a letter or one of [ ] \\ ` _ ^ { | }");
        }
        _ => {}
    }
    if nick.len() > MAX_NICK {
        return Err("is longer than 30 characters");
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || special(c) || c == '-') {
        return Err("may only hold letters, digits, `-` and [ ] \\ ` _ ^ { | }");
    }
    Ok(())
}

/// A channel name: a `#&+!` prefix, then no space, comma, BEL, colon or
/// other control character; at most 50 bytes.
pub(crate) fn check_channel(chan: &str) -> Result<(), &'static str> {
    if !chan.starts_with(['#', '&', '+', '!']) {
        return Err("must start with `#` (or `&`, `+`, `!`), like \"#forum\"");
    }
    if chan.len() < 2 {
        return Err("needs a name after the `#`");
    }
    if chan.len() > MAX_CHANNEL {
        return Err("is longer than 50 bytes");
    }
    if chan
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || matches!(c, ',' | ':'))
    {
        return Err("must not contain spaces, commas, colons or control characters");
    }
    Ok(())
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 64
        && !key
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == ',')
}

// ---------------------------------------------------------------------------
// Lines

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
    let mut out = Vec::new();
    for raw in text.split(['\n', '\r', '\u{2028}', '\u{2029}']) {
        let clean = clean_line(raw);
        let clean = clean.trim();
        if !clean.is_empty() {
            out.extend(split_line(clean, budget));
        }
    }
    out
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
        let cut = if rest[end..].starts_with(' ') {
            end
        } else {
            match rest[..end].rfind(' ') {
                Some(i) if i >= max / 2 => i,
                _ => end,
            }
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
    use std::collections::HashMap;

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
        assert!(check_nick("relaybot").is_ok());
        assert!(check_nick("[bot]_2-x").is_ok());
        for bad in [
            "",
            "9lives",
            "-x",
            "with space",
            "a,b",
            "nick\r\nQUIT",
            &"n".repeat(31),
        ] {
            assert!(check_nick(bad).is_err(), "{bad:?}");
        }
        assert!(check_channel("#forum").is_ok());
        assert!(check_channel("&local").is_ok());
        assert!(check_channel("#ünï").is_ok());
        for bad in [
            "forum",
            "#",
            "#a b",
            "#a,#b",
            "#a\u{7}",
            "#x\r\nQUIT",
            "#a:b",
            &format!("#{}", "c".repeat(50)),
        ] {
            assert!(check_channel(bad).is_err(), "{bad:?}");
        }
        assert!(valid_key("s3cret"));
        for bad in ["", "a b", "a,b", "a\nb"] {
            assert!(!valid_key(bad), "{bad:?}");
        }
        assert!(valid_host("irc.libera.chat"));
        assert!(valid_host("127.0.0.1"));
        assert!(valid_host("::1"));
        for bad in ["", "irc://x", "host:6667", "a b", "h/x"] {
            assert!(!valid_host(bad), "{bad:?}");
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
        let env = HashMap::<String, String>::new();
        let mut cx = Ctx::new(&env, crate::config::de::MissingEnv::Error);
        let doc = toml_edit::Document::parse(
            "[a]\nserver = \"share.example\"\nnick = \"relay\"\n[b]\nserver = \"share.example\"\nnick = \"other\"\n"
                .to_string(),
        )
        .unwrap();
        let sender = |cx: &mut Ctx<'_>, k: &str| {
            let d = parse(&doc[k], cx)
                .and_then(|i| i.bind(&doc_target(), None, cx))
                .unwrap();
            let ctx = json!({});
            let Outbound::Native(m) = d.request(&Message {
                chat: "c",
                text: "x",
                context: &ctx,
                action: Default::default(),
                delivery: None,
            }) else {
                panic!("native")
            };
            m.sender
        };
        let first = sender(&mut cx, "a");
        let reloaded = sender(&mut cx, "a");
        let other = sender(&mut cx, "b");
        assert!(Arc::ptr_eq(&first, &reloaded));
        assert!(!Arc::ptr_eq(&first, &other));
    }

    fn doc_target() -> Item {
        toml_edit::Document::parse("t = { channel = \"#c\" }".to_string()).unwrap()["t"].clone()
    }

    #[test]
    fn request_shows_the_exact_lines_and_keeps_the_key_out_of_view() {
        let (d, p) = load(
            "server = \"127.0.0.1\"\ntls = false\nnick = \"relaybot\"",
            "channel = \"#forum\"\nkey = \"${K}\"",
            &[("K", "chankey123")],
        );
        let d = d.unwrap_or_else(|| panic!("{p:?}"));
        let ctx = json!({});
        let out = d.request(&Message {
            chat: "c",
            text: "Title (https://f/t/1)\r\nQUIT :x\nexcerpt",
            context: &ctx,
            action: Default::default(),
            delivery: None,
        });
        let Outbound::Native(m) = out else {
            panic!("expected native")
        };
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
