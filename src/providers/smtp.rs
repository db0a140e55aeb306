//! `smtp`: email through a submission server (RFC 5321/5322), with
//! [`lettre`] over tokio and rustls (the same TLS stack and platform
//! certificate roots as the HTTP providers).
//!
//! One message per delivery, to every address in the chat's `to`:
//! `Subject` = the forum topic's title (every control character removed, so
//! a title can never add a header; non-ASCII is RFC 2047-encoded by lettre),
//! body = the rendered template as `text/plain; charset=utf-8` (dialect
//! plain: the honest choice for a notification, readable in every client;
//! lettre picks quoted-printable or base64 so no line exceeds 998 octets).
//! `References` names the topic, so mail clients thread a topic's posts.
//!
//! TLS: `starttls` (default, port 587, the upgrade is required), `tls`
//! (implicit TLS, port 465) or `none` (port 25, clear text; refused unless
//! the server is loopback: it exists for a local test sink).
//!
//! Errors: connection, TLS, timeouts and 4xx replies (421, 450, 451, 452...)
//! → Retry; 5xx replies (550 mailbox unavailable, 553, 554, 535 auth
//! failed...) → Permanent. A rejected recipient fails the whole message.
//! Reasons carry lettre's text of the server reply, never the password.
//! One connection per message (notifications are rare; no pool to keep).

use crate::providers::persistent::{is_loopback, valid_host};
use std::ops::Range;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use serde_spanned::Spanned;
use toml_edit::Item;

use super::{
    Capabilities, Destination, Instance, Message, NativeMessage, NativeSender, Outbound, Outcome,
    Registration, schema_of,
};
use crate::config::Rate;
use crate::config::de::Ctx;
use crate::render::Dialect;

pub const REGISTRATION: Registration = Registration {
    kind: "smtp",
    about: "email through an SMTP submission server (STARTTLS by default)",
    parse,
    settings_schema: schema_of::<Settings>,
    target_schema: schema_of::<Target>,
};

const TIMEOUT: Duration = Duration::from_secs(30);
/// The whole SMTP exchange of one message.
const SEND_TIMEOUT: Duration = Duration::from_secs(120);
/// Subjects are cut to this many characters.
const MAX_SUBJECT: usize = 200;
const MAX_RECIPIENTS: usize = 100;

/// `[providers.NAME]` for `kind = "smtp"`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Settings {
    /// SMTP server host name, e.g. `smtp.example.org` (no scheme, no port).
    #[schemars(with = "String")]
    pub server: Spanned<String>,
    /// Port: default 587 with `starttls`, 465 with `tls`, 25 with `none`.
    pub port: Option<u16>,
    /// `starttls` (default: plain connection upgraded with STARTTLS, required), `tls` (implicit TLS, "SMTPS"), or `none` (clear text, only for a server on localhost, for testing).
    pub tls: Option<TlsMode>,
    /// Login name for SMTP AUTH (needs `password`).
    pub username: Option<String>,
    /// Password for SMTP AUTH, as `${VAR}`.
    #[schemars(with = "Option<String>")]
    pub password: Option<Spanned<String>>,
    /// Sender, e.g. "Forum <forum@example.org>" or "forum@example.org".
    #[schemars(with = "String")]
    pub from: Spanned<String>,
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(rename = "SmtpTls")]
pub enum TlsMode {
    /// Plain connect, then STARTTLS (required; no fallback to clear text).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only for a test sink on localhost.
    None,
}

/// One address or several.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "SmtpRecipients")]
pub enum Recipients {
    One(String),
    Many(Vec<String>),
}

/// Chat fields for an email chat.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Target {
    /// Recipient address, or a list of them: "team@example.org" or ["a@example.org", "B <b@example.org>"].
    #[schemars(with = "Recipients")]
    pub to: Spanned<Recipients>,
}

#[derive(Debug)]
struct Smtp {
    server: String,
    port: u16,
    tls: TlsMode,
    from: Mailbox,
    sender: Arc<SmtpSender>,
}

fn parse(item: &Item, cx: &mut Ctx<'_>) -> Option<Arc<dyn Instance>> {
    let s = cx.deserialize::<Settings>(item)?;
    let server = cx.string(&s.server)?.expose().trim().to_string();
    let tls = s.tls.unwrap_or_default();
    let mut ok = true;
    if !server.contains("${") && !valid_host(&server) {
        cx.error(
            Some(s.server.span()),
            "`server` must be a host name or address only, like \"smtp.example.org\" (set `port` and `tls` separately)",
        );
        ok = false;
    }
    if tls == TlsMode::None && !server.contains("${") && !is_loopback(&server) {
        cx.error(
            key_span(item, "tls"),
            "`tls = \"none\"` sends mail (and any password) in clear text and is only allowed for a server on localhost (a test sink); use \"starttls\" or \"tls\"",
        );
        ok = false;
    }
    let password = match &s.password {
        Some(p) => Some(cx.secret("password", p)?),
        None => None,
    };
    let credentials = match (&s.username, password) {
        (Some(u), Some(p)) => Some(Credentials::new(u.clone(), p.expose().to_string())),
        (None, None) => None,
        (Some(_), None) => {
            cx.error(
                key_span(item, "username"),
                "`username` needs `password = \"${SMTP_PASSWORD}\"`",
            );
            ok = false;
            None
        }
        (None, Some(_)) => {
            cx.error(key_span(item, "password"), "`password` needs a `username`");
            ok = false;
            None
        }
    };
    let from = cx.string(&s.from)?;
    let from = match parse_mailbox(from.expose()) {
        Ok(m) => Some(m),
        Err(why) => {
            cx.error(Some(s.from.span()), format!("`from` {why}"));
            None
        }
    };
    let (true, Some(from)) = (ok, from) else {
        return None;
    };
    let port = s.port.unwrap_or(match tls {
        TlsMode::Starttls => 587,
        TlsMode::Tls => 465,
        TlsMode::None => 25,
    });
    let sender = Arc::new(SmtpSender {
        server: server.clone(),
        port,
        tls,
        credentials,
        transport: OnceLock::new(),
    });
    Some(Arc::new(Smtp {
        server,
        port,
        tls,
        from,
        sender,
    }))
}

fn key_span(item: &Item, key: &str) -> Option<Range<usize>> {
    crate::config::de::key_span(item, key).or_else(|| item.span())
}

impl Instance for Smtp {
    fn bind(
        self: Arc<Self>,
        target: &Item,
        _chat: Option<Range<usize>>,
        cx: &mut Ctx<'_>,
    ) -> Option<Box<dyn Destination>> {
        let t = cx.deserialize::<Target>(target)?;
        let span = t.to.span();
        let list: Vec<String> = match t.to.into_inner() {
            Recipients::One(a) => vec![a],
            Recipients::Many(v) => v,
        };
        if list.is_empty() {
            cx.error(Some(span), "`to` needs at least one address");
            return None;
        }
        if list.len() > MAX_RECIPIENTS {
            cx.error(
                Some(span),
                format!("`to` has more than {MAX_RECIPIENTS} addresses; use a mailing list"),
            );
            return None;
        }
        let mut to = Vec::new();
        for a in &list {
            match parse_mailbox(a) {
                Ok(m) => to.push(m),
                Err(why) => {
                    cx.error(Some(span.clone()), format!("`to`: {a:?} {why}"));
                    return None;
                }
            }
        }
        Some(Box::new(SmtpChat { instance: self, to }))
    }
}

#[derive(Debug)]
struct SmtpChat {
    instance: Arc<Smtp>,
    to: Vec<Mailbox>,
}

impl Destination for SmtpChat {
    fn kind(&self) -> &'static str {
        "smtp"
    }

    fn dialect(&self) -> Dialect {
        Dialect::Plain
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    fn target(&self) -> String {
        let to: Vec<String> = self.to.iter().map(|m| m.email.to_string()).collect();
        to.join(", ")
    }

    fn default_rate(&self) -> Option<Rate> {
        // Submission servers throttle bulk senders; a forum rarely needs more.
        Some(Rate {
            count: 30,
            per: Duration::from_secs(60),
        })
    }

    fn request(&self, msg: &Message<'_>) -> Outbound {
        let inst = &self.instance;
        let subject = subject(msg.context, msg.text);
        let to: Vec<String> = self.to.iter().map(ToString::to_string).collect();
        let references = topic_reference(msg.context);
        let scheme = match inst.tls {
            TlsMode::Tls => "smtps",
            TlsMode::Starttls | TlsMode::None => "smtp",
        };
        let mut headers = json!({
            "From": inst.from.to_string(),
            "To": to.join(", "),
            "Subject": subject,
            "Content-Type": "text/plain; charset=utf-8",
        });
        if let Some(r) = &references {
            headers["References"] = json!(r);
        }
        let host = if inst.server.contains(':') {
            format!("[{}]", inst.server)
        } else {
            inst.server.clone()
        };
        let shown = json!({
            "method": "SMTP",
            "url": format!("{scheme}://{host}:{}", inst.port),
            "headers": headers,
            "body": msg.text,
        });
        let payload = json!({
            "from": inst.from.to_string(),
            "to": to,
            "subject": subject,
            "body": msg.text,
            "references": references,
        });
        Outbound::Native(NativeMessage {
            shown,
            payload,
            sender: inst.sender.clone(),
        })
    }
}

/// The topic title as a one-line subject: control characters (CR, LF...)
/// removed, whitespace runs collapsed, cut to [`MAX_SUBJECT`] characters.
/// Without a title: the first line of the text.
pub fn subject(context: &serde_json::Value, text: &str) -> String {
    let title = context["topic"]["title"].as_str().unwrap_or("");
    let s = one_line(title);
    let s = if s.is_empty() {
        one_line(text.lines().next().unwrap_or(""))
    } else {
        s
    };
    let s = if s.is_empty() {
        "Forum notification".to_string()
    } else {
        s
    };
    if s.chars().count() > MAX_SUBJECT {
        let mut cut: String = s.chars().take(MAX_SUBJECT - 1).collect();
        cut.push('…');
        cut
    } else {
        s
    }
}

fn one_line(s: &str) -> String {
    s.split(|c: char| c.is_control() || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `<topic-ID@HOST>` for the forum topic, so clients thread its messages.
fn topic_reference(context: &serde_json::Value) -> Option<String> {
    let id = context["topic"]["id"].as_u64()?;
    let url = context["topic"]["url"]
        .as_str()
        .or_else(|| context["forum"]["url"].as_str())?;
    let host = url::Url::parse(url).ok()?.host_str()?.to_string();
    Some(format!("<topic-{id}@{host}>"))
}

/// An address (`a@example.org`) or a mailbox (`Name <a@example.org>`),
/// whole: no control characters and nothing after it.
pub fn parse_mailbox(s: &str) -> Result<Mailbox, &'static str> {
    let t = s.trim();
    if t.is_empty() {
        return Err("is empty");
    }
    if t.chars().any(char::is_control) {
        return Err("must not contain line breaks or control characters");
    }
    let m = Mailbox::from_str(t).map_err(
        |_| "is not an email address like \"name@example.org\" or \"Name <name@example.org>\"",
    )?;
    // The parser stops after one mailbox: refuse anything it left behind.
    let whole = if t.contains('<') {
        t.ends_with('>')
            && t.rsplit_once('<')
                .is_some_and(|(_, a)| a.trim_end_matches('>').trim() == m.email.to_string())
    } else {
        t == m.email.to_string()
    };
    if !whole {
        return Err(
            "must be a single address like \"name@example.org\" or \"Name <name@example.org>\"",
        );
    }
    if m.email.domain().is_empty() || m.email.user().is_empty() {
        return Err("needs a user and a domain");
    }
    Ok(m)
}

// ---------------------------------------------------------------------------
// Sending

/// The [`NativeSender`] of one `[providers.NAME]` of kind `smtp`: a lettre
/// transport built on first use (TLS roots load then, not at `validate`).
struct SmtpSender {
    server: String,
    port: u16,
    tls: TlsMode,
    credentials: Option<Credentials>,
    transport: OnceLock<Result<AsyncSmtpTransport<Tokio1Executor>, String>>,
}

impl std::fmt::Debug for SmtpSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSender")
            .field("server", &self.server)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .finish()
    }
}

impl SmtpSender {
    fn transport(&self) -> Result<&AsyncSmtpTransport<Tokio1Executor>, String> {
        self.transport
            .get_or_init(|| {
                let builder = match self.tls {
                    TlsMode::Starttls => {
                        AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&self.server)
                    }
                    TlsMode::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&self.server),
                    TlsMode::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
                        &self.server,
                    )),
                }
                .map_err(|e| format!("smtp: TLS setup for {}: {e}", self.server))?;
                let mut builder = builder.port(self.port).timeout(Some(TIMEOUT));
                if let Some(c) = &self.credentials {
                    builder = builder.credentials(c.clone());
                }
                Ok(builder.build())
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    async fn deliver(&self, payload: &serde_json::Value) -> Outcome {
        let email = match build_email(payload) {
            Ok(e) => e,
            Err(reason) => return Outcome::Permanent { reason },
        };
        let transport = match self.transport() {
            Ok(t) => t,
            Err(reason) => {
                return Outcome::Retry {
                    reason,
                    after: None,
                };
            }
        };
        // lettre's own timeout covers connecting; this bounds a server that
        // stalls mid-conversation, so a delivery never hangs its chat.
        match tokio::time::timeout(SEND_TIMEOUT, transport.send(email)).await {
            Ok(Ok(_)) => Outcome::Sent { remote_id: None },
            Ok(Err(e)) => classify(&e),
            Err(_) => Outcome::Retry {
                reason: format!(
                    "smtp: {}:{} did not complete the exchange within {} s",
                    self.server,
                    self.port,
                    SEND_TIMEOUT.as_secs()
                ),
                after: None,
            },
        }
    }
}

impl NativeSender for SmtpSender {
    fn send<'a>(
        &'a self,
        payload: &'a serde_json::Value,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Outcome> + Send + 'a>> {
        Box::pin(self.deliver(payload))
    }
}

fn build_email(p: &serde_json::Value) -> Result<lettre::Message, String> {
    let bad = |what: &str| format!("smtp: malformed message ({what})");
    let from = p["from"]
        .as_str()
        .and_then(|f| parse_mailbox(f).ok())
        .ok_or_else(|| bad("from"))?;
    // Whatever built the payload, the subject is one clean line here.
    let subject = one_line(p["subject"].as_str().unwrap_or(""));
    let mut b = lettre::Message::builder()
        .from(from)
        .subject(subject)
        // `<random@local hostname>`: lettre adds Date, not Message-ID.
        .message_id(None);
    let to = p["to"].as_array().ok_or_else(|| bad("to"))?;
    if to.is_empty() {
        return Err(bad("no recipient"));
    }
    for a in to {
        let m = a
            .as_str()
            .and_then(|a| parse_mailbox(a).ok())
            .ok_or_else(|| bad("to"))?;
        b = b.to(m);
    }
    if let Some(r) = p["references"].as_str().filter(|r| is_message_id(r)) {
        b = b.references(r.to_string());
    }
    b.header(ContentType::TEXT_PLAIN)
        .body(p["body"].as_str().unwrap_or("").to_string())
        .map_err(|e| format!("smtp: cannot build the message: {e}"))
}

fn is_message_id(r: &str) -> bool {
    r.starts_with('<')
        && r.ends_with('>')
        && r.contains('@')
        && !r.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// 4xx, connection, TLS and timeout errors are worth retrying; 5xx replies
/// and client-side errors are not.
fn classify(e: &lettre::transport::smtp::Error) -> Outcome {
    let code = e.status().map(u16::from);
    let hint = match code {
        Some(535) | Some(534) | Some(530) => " (check `username` and `password`)",
        Some(550) | Some(551) | Some(553) => " (check the `to` addresses and that `from` may send)",
        Some(554) => " (the server refused the message)",
        _ => "",
    };
    let reason = format!("smtp: {e}{hint}");
    if e.is_permanent() || (e.is_client() && code.is_none()) {
        Outcome::Permanent { reason }
    } else {
        Outcome::Retry {
            reason,
            after: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn mailbox_validation() {
        for good in [
            "forum@example.org",
            "Forum <forum@example.org>",
            "\"Doe, John\" <j.doe@example.org>",
            "root@localhost",
        ] {
            assert!(parse_mailbox(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "not an address",
            "a@b.org\r\nBcc: victim@evil.example",
            "a@b.org\nX: y",
            "a@b.org, c@d.org",
            "Name <a@b.org> trailing",
            "a@b.org junk",
            "@b.org",
            "a@",
        ] {
            assert!(parse_mailbox(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn subject_is_one_clean_line() {
        let ctx = json!({"topic": {"title": "Hello\r\nBcc: victim@evil.example\r\n\r\nbody\u{0}\u{85}x"}});
        let s = subject(&ctx, "ignored");
        assert_eq!(s, "Hello Bcc: victim@evil.example body x");
        assert!(!s.contains('\r') && !s.contains('\n'));
        assert_eq!(subject(&json!({}), "First line\nsecond"), "First line");
        assert_eq!(subject(&json!({}), ""), "Forum notification");
        let long = "é".repeat(500);
        assert_eq!(
            subject(&json!({"topic": {"title": long}}), "")
                .chars()
                .count(),
            MAX_SUBJECT
        );
    }

    #[test]
    fn the_built_email_has_exactly_the_expected_headers() {
        let payload = json!({
            "from": "Forum <forum@example.org>",
            "to": ["a@example.org", "B <b@example.org>"],
            "subject": "Ünïcode\r\nBcc: evil@example.org",
            "body": "line one\nline two",
            "references": "<topic-101@forum.example.org>",
        });
        let email = build_email(&payload).unwrap();
        let raw = String::from_utf8(email.formatted()).unwrap();
        let (head, _) = raw.split_once("\r\n\r\n").unwrap();
        assert!(head.contains("From: Forum <forum@example.org>"), "{head}");
        assert!(
            head.contains("To: a@example.org, B <b@example.org>"),
            "{head}"
        );
        assert!(
            head.contains("References: <topic-101@forum.example.org>"),
            "{head}"
        );
        // The subject is one (RFC 2047-encoded) header; no Bcc appears.
        assert!(!head.to_ascii_lowercase().contains("\r\nbcc:"), "{head}");
        assert!(head.contains("Subject: =?utf-8?"), "{head}");
        let bad = json!({"from": "x", "to": ["a@example.org"], "subject": "", "body": ""});
        assert!(build_email(&bad).is_err());
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
    fn config_checks() {
        let base = "server = \"smtp.example.org\"\nfrom = \"forum@example.org\"";
        let (d, p) = load(base, "to = \"team@example.org\"", &[]);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(d.unwrap().target(), "team@example.org");
        let (d, p) = load(base, "to = [\"a@example.org\", \"B <b@example.org>\"]", &[]);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(d.unwrap().target(), "a@example.org, b@example.org");
        let (_, p) = load(base, "to = [\"a@example.org\", \"nope\"]", &[]);
        assert!(
            p.iter().any(|m| m.contains("`to`") && m.contains("nope")),
            "{p:?}"
        );
        let (_, p) = load(base, "to = []", &[]);
        assert!(p.iter().any(|m| m.contains("at least one")), "{p:?}");
        let (_, p) = load(
            "server = \"smtp.example.org\"\nfrom = \"x\"",
            "to = \"a@b.org\"",
            &[],
        );
        assert!(p.iter().any(|m| m.contains("`from`")), "{p:?}");
        let (_, p) = load(&format!("{base}\ntls = \"none\""), "to = \"a@b.org\"", &[]);
        assert!(
            p.iter()
                .any(|m| m.contains("only allowed for a server on localhost")),
            "{p:?}"
        );
        let (d, p) = load(
            "server = \"127.0.0.1\"\ntls = \"none\"\nport = 2525\nfrom = \"f@localhost\"",
            "to = \"a@localhost\"",
            &[],
        );
        assert!(d.is_some() && p.is_empty(), "{p:?}");
        let (_, p) = load(
            &format!("{base}\nusername = \"u\"\npassword = \"plain\""),
            "to = \"a@b.org\"",
            &[],
        );
        assert!(
            p.iter().any(|m| m.contains("environment reference")),
            "{p:?}"
        );
        let (_, p) = load(
            &format!("{base}\nusername = \"u\""),
            "to = \"a@b.org\"",
            &[],
        );
        assert!(p.iter().any(|m| m.contains("needs `password")), "{p:?}");
    }

    #[test]
    fn request_shows_headers_but_never_the_password() {
        let (d, p) = load(
            "server = \"smtp.example.org\"\nfrom = \"Forum <forum@example.org>\"\nusername = \"u\"\npassword = \"${P}\"",
            "to = \"team@example.org\"",
            &[("P", "smtp-canary-pass")],
        );
        let d = d.unwrap_or_else(|| panic!("{p:?}"));
        let ctx = json!({"topic": {"id": 101, "title": "Hi\r\nBcc: x@evil.example", "url": "https://forum.example.org/t/hi/101"}});
        let Outbound::Native(m) = d.request(&Message {
            chat: "c",
            text: "body",
            context: &ctx,
            action: Default::default(),
            delivery: None,
        }) else {
            panic!("native")
        };
        assert_eq!(m.shown["url"], "smtp://smtp.example.org:587");
        assert_eq!(m.shown["headers"]["Subject"], "Hi Bcc: x@evil.example");
        assert_eq!(
            m.shown["headers"]["References"],
            "<topic-101@forum.example.org>"
        );
        let all = format!("{} {} {:?}", m.shown, m.payload, d);
        assert!(!all.contains("smtp-canary-pass"), "{all}");
    }
}
