//! `smtp`: email through a submission server (RFC 5321/5322) with
//! [`lettre`] over tokio and rustls (platform roots); one connection per
//! message. TLS: `starttls` (default, port 587, required), `tls` (465) or
//! `none` (25, loopback only).
//!
//! Body: one `text/plain; charset=utf-8` message (dialect plain) to every
//! address in `to`; `References` names the topic so clients thread it. The
//! `Subject` is the topic's title with every control character removed
//! (strictest reading: a title can never add a header; lettre encodes
//! non-ASCII per RFC 2047 and keeps lines under 998 octets).
//!
//! Cards (the default style): `multipart/alternative` with that text part
//! first and an HTML part laid out as a card (inline styles and tables, as
//! mail clients want): a bar in the category's colour down the left, the
//! avatar (`img`, 40 px, round), the author and @username, what happened ·
//! the linked category, the linked headline, the excerpt, 🏷️ the tags as
//! links, a button to the post (in the category's colour), and the forum's
//! logo, title and the time (UTC). Every value is HTML-escaped; the
//! headers are the same as for text, so a post still cannot add one. A
//! chat's own card is an object with `html` (a string of at most 64 KB).
//! Beside a card, the text part and the subject show a post's `<`/`>` as
//! `‹`/`›` and break `@` with U+200B, like the Matrix card's `body`.
//!
//! Answers: connection, TLS, timeouts and 4xx → Retry; 5xx (550, 553, 554,
//! 535...) → Permanent; a refused recipient fails the whole message. See
//! shared/providers.md §3 (Email).

use super::kit::prelude::*;
use std::str::FromStr;
use std::sync::OnceLock;

use lettre::message::Mailbox;
use lettre::message::MultiPart;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::Serialize;

use super::NativeSender;
use super::kit::ensure;
use super::persistent::{NativeChat, is_loopback, permanent, retry};

pub const REGISTRATION: Registration = kit::registration::<Smtp>(
    "smtp",
    "email through an SMTP submission server (STARTTLS by default)",
);

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
    pub server: Located<String>,
    /// Port: default 587 with `starttls`, 465 with `tls`, 25 with `none`.
    pub port: Option<u16>,
    /// `starttls` (default: plain connection upgraded with STARTTLS, required), `tls` (implicit TLS, "SMTPS"), or `none` (clear text, only for a server on localhost, for testing).
    pub tls: Option<Located<TlsMode>>,
    /// Login name for SMTP AUTH (needs `password`).
    pub username: Option<Located<String>>,
    /// Password for SMTP AUTH, as `${VAR}`.
    pub password: Option<Located<String>>,
    /// Sender, e.g. "Forum <forum@example.org>" or "forum@example.org".
    pub from: Located<String>,
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
    pub to: Located<Recipients>,
}

#[derive(Debug)]
struct Smtp {
    from: Mailbox,
    sender: Arc<SmtpSender>,
}

impl Provider for Smtp {
    type Settings = Settings;
    type Target = Target;

    fn new(s: Settings, _: &Table, cx: &mut Ctx<'_>) -> Option<Self> {
        let ok = &mut true;
        let msg = "`server` must be a host name or address only, like \"smtp.example.org\" (set `port` and `tls` separately)";
        let server = kit::host(cx, ok, &s.server, msg)?;
        let tls = s.tls.as_ref().map_or(TlsMode::Starttls, |t| *t.get_ref());
        let msg = "`tls = \"none\"` sends mail (and any password) in clear text and is only allowed for a server on localhost (a test sink); use \"starttls\" or \"tls\"";
        let clear_ok = tls != TlsMode::None || server.contains("${") || is_loopback(&server);
        ensure(cx, ok, clear_ok, s.tls.as_ref().map(Located::span), msg);
        let password = cx.opt_secret("password", &s.password)?;
        let credentials = match (&s.username, password) {
            (Some(u), Some(p)) => Some(Credentials::new(u.get_ref().clone(), p.expose().into())),
            (Some(u), None) => {
                let msg = "`username` needs `password = \"${SMTP_PASSWORD}\"`";
                ensure(cx, ok, false, Some(u.span()), msg);
                None
            }
            (None, Some(_)) => {
                let span = s.password.as_ref().map(Located::span);
                ensure(cx, ok, false, span, "`password` needs a `username`");
                None
            }
            (None, None) => None,
        };
        let from = cx.string(&s.from)?;
        let from = parse_mailbox(from.expose())
            .map_err(|why| cx.error(Some(s.from.span()), format!("`from` {why}")))
            .ok();
        let (true, Some(from)) = (*ok, from) else {
            return None;
        };
        let port = s.port.unwrap_or(match tls {
            TlsMode::Starttls => 587,
            TlsMode::Tls => 465,
            TlsMode::None => 25,
        });
        let sender = Arc::new(SmtpSender {
            server,
            port,
            tls,
            credentials,
            transport: OnceLock::new(),
        });
        Some(Smtp { from, sender })
    }

    fn bind_target(self: Arc<Self>, t: Target, _chat: Span, cx: &mut Ctx<'_>) -> Bound {
        let span = t.to.span();
        let list = match t.to.into_inner() {
            Recipients::One(a) => vec![a],
            Recipients::Many(v) => v,
        };
        let problem = if list.is_empty() {
            Some("`to` needs at least one address".to_string())
        } else if list.len() > MAX_RECIPIENTS {
            Some(format!(
                "`to` has more than {MAX_RECIPIENTS} addresses; use a mailing list"
            ))
        } else {
            None
        };
        if let Some(p) = problem {
            return kit::reject(cx, Some(span), p);
        }
        let to = list
            .iter()
            .map(|a| parse_mailbox(a).map_err(|why| format!("`to`: {a:?} {why}")))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|p| cx.error(Some(span), p))
            .ok()?;
        Some(Box::new(SmtpChat { instance: self, to }))
    }
}

#[derive(Debug)]
struct SmtpChat {
    instance: Arc<Smtp>,
    to: Vec<Mailbox>,
}

impl NativeChat for SmtpChat {
    const KIND: &'static str = REGISTRATION.kind;
    // Submission servers throttle bulk senders; a forum rarely needs more.
    const RATE: Rate = Rate::per_minute(30);
    const CARDS: bool = true;

    fn place(&self) -> String {
        let to: Vec<String> = self.to.iter().map(|m| m.email.to_string()).collect();
        to.join(", ")
    }

    fn native(&self, msg: &Message<'_>) -> Outbound {
        let (inst, send) = (&self.instance, &self.instance.sender);
        let mut subject = subject(msg.context, msg.text);
        let mut text = std::borrow::Cow::Borrowed(msg.text);
        if msg.card.is_some() {
            // Beside a card, the text part and the subject show a post's
            // `<`/`>` as the HTML part does not need to: look-alikes, so
            // no reader of any part can take them for markup.
            subject = super::inert::plain(&subject);
            text = std::borrow::Cow::Owned(super::inert::plain(msg.text));
        }
        let to: Vec<String> = self.to.iter().map(ToString::to_string).collect();
        let references = topic_reference(msg.context);
        let scheme = match send.tls {
            TlsMode::Tls => "smtps",
            TlsMode::Starttls | TlsMode::None => "smtp",
        };
        let mut headers = json!({
            "From": inst.from.to_string(),
            "To": to.join(", "),
            "Subject": subject,
            "Content-Type": "text/plain; charset=utf-8",
        });
        let html = msg.card.map(|card| match msg.custom {
            Some(custom) => custom["html"].as_str().unwrap_or_default().to_string(),
            None => card_html(card),
        });
        if html.is_some() {
            headers["Content-Type"] = json!(
                "multipart/alternative (text/plain; charset=utf-8, text/html; charset=utf-8)"
            );
        }
        if let Some(r) = &references {
            headers["References"] = json!(r);
        }
        let url = format!("{scheme}://{}", kit::host_port(&send.server, send.port));
        let payload = json!({
            "from": inst.from.to_string(),
            "to": to,
            "subject": subject,
            "body": text,
            "html": html,
            "references": references,
        });
        let mut out = kit::native(["SMTP", &url, &text], headers, payload, send.clone());
        if let (Outbound::Native(n), Some(html)) = (&mut out, html) {
            n.shown["html"] = json!(html);
        }
        out
    }

    fn probe(&self) -> Probe {
        Probe::Native(self.instance.sender.clone())
    }

    fn check_card(&self, card: &Value) -> Result<(), String> {
        check_card(card)
    }
}

/// Connect, TLS, EHLO and AUTH (when credentials are set), then NOOP and
/// QUIT (lettre's `test_connection`): no mail is sent.
impl probe::NativeProbe for SmtpSender {
    fn run(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<probe::NativeCheck>> + Send + '_>>
    {
        Box::pin(async move {
            let what = "connect and authenticate".to_string();
            let addr = kit::host_port(&self.server, self.port);
            let judgement = match self.transport() {
                Err(reason) => Judgement::fail(reason, ""),
                Ok(t) => match tokio::time::timeout(SEND_TIMEOUT, t.test_connection()).await {
                    Ok(Ok(true)) => Judgement::pass(format!(
                        "{addr} accepted the connection{}",
                        if self.credentials.is_some() {
                            " and the login"
                        } else {
                            ""
                        }
                    )),
                    Ok(Ok(false)) => Judgement::fail(format!("{addr} did not answer NOOP"), ""),
                    Ok(Err(e)) => {
                        let hint = if e
                            .status()
                            .is_some_and(|c| matches!(u16::from(c), 530 | 534 | 535))
                        {
                            "check `username` and `password`"
                        } else {
                            "check server, port and tls"
                        };
                        Judgement::fail(format!("smtp: {e}"), hint)
                    }
                    Err(_) => Judgement::fail(
                        format!("{addr} did not finish within {} s", SEND_TIMEOUT.as_secs()),
                        "check server, port and tls",
                    ),
                },
            };
            vec![probe::NativeCheck { what, judgement }]
        })
    }
}

/// The topic title as a one-line subject: control characters (CR, LF...)
/// removed, whitespace runs collapsed, cut to [`MAX_SUBJECT`] characters.
/// Without a title: the first line of the text.
pub fn subject(context: &serde_json::Value, text: &str) -> String {
    let s = [
        one_line(context["topic"]["title"].as_str().unwrap_or("")),
        one_line(text.lines().next().unwrap_or("")),
    ]
    .into_iter()
    .find(|s| !s.is_empty())
    .unwrap_or_else(|| "Forum notification".into());
    if s.chars().count() > MAX_SUBJECT {
        let cut: String = s.chars().take(MAX_SUBJECT - 1).collect();
        cut + "…"
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
    if t.contains(char::is_control) {
        return Err("must not contain line breaks or control characters");
    }
    let m = Mailbox::from_str(t).map_err(
        |_| "is not an email address like \"name@example.org\" or \"Name <name@example.org>\"",
    )?;
    // The parser stops after one mailbox: refuse anything it left behind.
    let email = m.email.to_string();
    let whole = match t.rsplit_once('<') {
        Some((_, a)) => t.ends_with('>') && a.trim_end_matches('>').trim() == email,
        None => t == email,
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
        type T = AsyncSmtpTransport<Tokio1Executor>;
        let build = || {
            let builder = match self.tls {
                TlsMode::Starttls => T::starttls_relay(&self.server),
                TlsMode::Tls => T::relay(&self.server),
                TlsMode::None => Ok(T::builder_dangerous(&self.server)),
            }
            .map_err(|e| format!("smtp: TLS setup for {}: {e}", self.server))?;
            let mut builder = builder.port(self.port).timeout(Some(TIMEOUT));
            if let Some(c) = &self.credentials {
                builder = builder.credentials(c.clone());
            }
            Ok(builder.build())
        };
        self.transport
            .get_or_init(build)
            .as_ref()
            .map_err(Clone::clone)
    }

    async fn deliver(&self, payload: &serde_json::Value) -> Outcome {
        let email = match build_email(payload) {
            Ok(e) => e,
            Err(reason) => return permanent(reason),
        };
        let transport = match self.transport() {
            Ok(t) => t,
            Err(reason) => return retry(reason),
        };
        // lettre's own timeout covers connecting; this bounds a server that
        // stalls mid-conversation, so a delivery never hangs its chat.
        match tokio::time::timeout(SEND_TIMEOUT, transport.send(email)).await {
            Ok(Ok(_)) => Outcome::Sent { remote_id: None },
            Ok(Err(e)) => classify(&e),
            Err(_) => retry(format!(
                "smtp: {}:{} did not complete the exchange within {} s",
                self.server,
                self.port,
                SEND_TIMEOUT.as_secs()
            )),
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
    let mailbox = |v: &serde_json::Value| v.as_str().and_then(|a| parse_mailbox(a).ok());
    let from = mailbox(&p["from"]).ok_or_else(|| bad("from"))?;
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
        b = b.to(mailbox(a).ok_or_else(|| bad("to"))?);
    }
    if let Some(r) = p["references"].as_str().filter(|r| is_message_id(r)) {
        b = b.references(r.to_string());
    }
    let text = p["body"].as_str().unwrap_or("").to_string();
    let built = match p["html"].as_str() {
        // lettre picks each part's transfer encoding (quoted-printable or
        // base64 where needed), so no line passes 998 octets.
        Some(html) => b.multipart(MultiPart::alternative_plain_html(text, html.to_string())),
        None => b.header(ContentType::TEXT_PLAIN).body(text),
    };
    built.map_err(|e| format!("smtp: cannot build the message: {e}"))
}

/// A chat's own card's HTML at most, in bytes.
const MAX_HTML_BYTES: usize = 65_536;
/// Tags shown at most.
const MAX_TAGS: usize = 10;

/// A chat's own card: `{"html": "…"}`.
fn check_card(card: &Value) -> Result<(), String> {
    kit::card_object(card, "an smtp card", "`html`", &["html"])?;
    let html = card["html"]
        .as_str()
        .ok_or("an smtp card needs `html`, a string")?;
    if html.len() > MAX_HTML_BYTES {
        return Err(format!(
            "/html has {} bytes; at most {MAX_HTML_BYTES}",
            html.len()
        ));
    }
    Ok(())
}

/// The default card's HTML part: see the module doc. Every text is cut
/// and escaped, every URL is a card's (absolute http(s), at most 2,000
/// bytes) escaped in its attribute: at most about 40 KB whatever the post.
fn card_html(card: &Card) -> String {
    const H: Dialect = Dialect::Html;
    let text = |s: &str, max: usize| escape(H, &card::cut(s, max));
    let attr = |s: &str| escape(H, s);
    let color = card.color.map_or("#0088CC".to_string(), card::Color::hex);
    // White on a light colour would not read: dark text there.
    let on_color = match card.color.map_or(0, |c| {
        let (r, g, b) = ((c.0 >> 16) & 0xFF, (c.0 >> 8) & 0xFF, c.0 & 0xFF);
        (299 * r + 587 * g + 114 * b) / 1000
    }) {
        l if l > 160 => "#222222",
        _ => "#FFFFFF",
    };
    let a = |url: &str, shown: String, style: &str| {
        format!("<a href=\"{}\" style=\"{style}\">{shown}</a>", attr(url))
    };
    let mut h = String::with_capacity(4096);
    h += "<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head>";
    h += "<body style=\"margin:0;padding:16px;background:#F4F4F5;font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;color:#222222\">";
    h += &format!(
        "<table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" style=\"max-width:600px;margin:0 auto;background:#FFFFFF;border-left:4px solid {color};border-radius:4px\"><tr><td style=\"padding:16px 20px\">"
    );
    // Who, what, where.
    h += "<table role=\"presentation\" cellpadding=\"0\" cellspacing=\"0\"><tr>";
    if let Some(au) = card.author.as_ref().filter(|a| !a.avatar.is_empty()) {
        h += &format!(
            "<td style=\"padding-right:10px;vertical-align:middle\"><img src=\"{}\" width=\"40\" height=\"40\" alt=\"{}\" style=\"display:block;border-radius:20px\"></td>",
            attr(&au.avatar),
            text(&au.name, 80)
        );
    }
    h += "<td style=\"vertical-align:middle;font-size:14px;line-height:20px\">";
    if let Some(au) = &card.author {
        h += &format!(
            "{} <span style=\"color:#666666\">@{}</span><br>",
            a(
                &au.url,
                format!("<strong>{}</strong>", text(&au.name, 80)),
                "color:#222222;text-decoration:none"
            ),
            text(&au.username, 60)
        );
    }
    h += &format!("<span style=\"color:#666666\">{}", text(&card.label, 200));
    if let Some(c) = &card.category {
        h += &format!(
            " · {}",
            a(
                &c.url,
                text(&c.text, 100),
                &format!("color:{color};text-decoration:none;font-weight:600")
            )
        );
    }
    h += "</span></td></tr></table>";
    // The headline and the excerpt.
    h += &format!(
        "<p style=\"margin:14px 0 6px;font-size:18px;line-height:24px;font-weight:600\">{}</p>",
        a(
            &card.url,
            text(&card.headline(), 200),
            "color:#1A4F8B;text-decoration:none"
        )
    );
    if !card.text.is_empty() {
        h += &format!(
            "<p style=\"margin:0 0 12px;font-size:14px;line-height:21px;color:#333333\">{}</p>",
            text(&card.text, 300)
        );
    }
    if !card.tags.is_empty() {
        let tags: Vec<String> = (card.tags.iter().take(MAX_TAGS))
            .map(|t| a(&t.url, text(&t.text, 50), "color:#555555"))
            .collect();
        h += &format!(
            "<p style=\"margin:0 0 12px;font-size:13px;color:#555555\">🏷️ {}</p>",
            tags.join(", ")
        );
    }
    h += &format!(
        "<p style=\"margin:16px 0\">{}</p>",
        a(
            &card.url,
            text(&card.button.text, 40),
            &format!(
                "display:inline-block;padding:8px 16px;background:{color};color:{on_color};border-radius:4px;text-decoration:none;font-weight:600;font-size:14px"
            )
        )
    );
    // The forum and the time.
    h += "<p style=\"margin:0;font-size:12px;line-height:16px;color:#888888\">";
    if !card.footer.url.is_empty() {
        h += &format!(
            "<img src=\"{}\" height=\"16\" alt=\"\" style=\"vertical-align:middle;margin-right:6px\">",
            attr(&card.footer.url)
        );
    }
    h += &text(&card.footer.text, 100);
    if let Some(t) = &card.timestamp {
        // `2026-01-02T03:04:05Z` → `2026-01-02 03:04 UTC`.
        let shown = match (t.get(..10), t.get(11..16)) {
            (Some(d), Some(hm)) if t.ends_with('Z') => format!("{d} {hm} UTC"),
            _ => text(t, 40),
        };
        h += &format!(" · {shown}");
    }
    h += "</p></td></tr></table></body></html>";
    h
}

fn is_message_id(r: &str) -> bool {
    r.starts_with('<')
        && r.ends_with('>')
        && r.contains('@')
        && !r.contains(|c: char| c.is_control() || c.is_whitespace())
}

/// 4xx, connection, TLS and timeout errors are worth retrying; 5xx replies
/// and client-side errors are not.
fn classify(e: &lettre::transport::smtp::Error) -> Outcome {
    let code = e.status().map(u16::from);
    let hint = match code {
        Some(530 | 534 | 535) => " (check `username` and `password`)",
        Some(550 | 551 | 553) => " (check the `to` addresses and that `from` may send)",
        Some(554) => " (the server refused the message)",
        _ => "",
    };
    let reason = format!("smtp: {e}{hint}");
    if e.is_permanent() || (e.is_client() && code.is_none()) {
        permanent(reason)
    } else {
        retry(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::testkit::{self, native};

    #[test]
    fn mailbox_validation() {
        let good = [
            "forum@example.org",
            "Forum <forum@example.org>",
            "\"Doe, John\" <j.doe@example.org>",
            "root@localhost",
        ];
        let bad = [
            "",
            "not an address",
            "a@b.org\r\nBcc: victim@evil.example",
            "a@b.org\nX: y",
            "a@b.org, c@d.org",
            "Name <a@b.org> trailing",
            "a@b.org junk",
            "@b.org",
            "a@",
        ];
        testkit::accepts(parse_mailbox, &good, &bad);
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

    #[test]
    fn a_card_is_multipart_with_the_text_first_and_the_headers_unchanged() {
        let mut card = crate::providers::adaptive::huge_card();
        card.title = "Title\r\nBcc: evil@example.org <script>".into();
        let html = card_html(&card);
        // Every limit holds for a huge post: cut texts, ten tags.
        assert_eq!(check_card(&json!({"html": html})), Ok(()));
        assert!(html.len() < 45_000, "{}", html.len());
        assert_eq!(html.matches("🏷️").count(), 1);
        assert!(
            !html.contains("<script") && html.contains("&lt;script&gt;"),
            "{html}"
        );
        let payload = json!({
            "from": "Forum <forum@example.org>",
            "to": ["a@example.org"],
            "subject": "Title\r\nBcc: evil@example.org",
            "body": "the text",
            "html": html,
            "references": "<topic-1@forum.example.org>",
        });
        let raw = String::from_utf8(build_email(&payload).unwrap().formatted()).unwrap();
        let (head, rest) = raw.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains("Content-Type: multipart/alternative;"),
            "{head}"
        );
        assert!(!head.to_ascii_lowercase().contains("\r\nbcc:"), "{head}");
        let plain = rest.find("Content-Type: text/plain").unwrap();
        let html_at = rest.find("Content-Type: text/html").unwrap();
        assert!(plain < html_at, "{rest}");
        assert!(raw.lines().all(|l| l.len() <= 998));
    }

    #[test]
    fn own_cards_are_checked() {
        assert_eq!(check_card(&json!({"html": "<p>x</p>"})), Ok(()));
        for (bad, why) in [
            (json!([]), "is an object"),
            (json!({"html": 1}), "needs `html`"),
            (json!({"html": "x", "text": "y"}), "`text` is not part"),
            (json!({"html": "x".repeat(70_000)}), "70000 bytes"),
        ] {
            let e = check_card(&bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    fn load(
        settings: &str,
        target: &str,
        env: &[(&str, &str)],
    ) -> (Option<Box<dyn Destination>>, Vec<String>) {
        testkit::load(&REGISTRATION, settings, target, env)
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
        let m = native(d.as_ref(), "body", &ctx);
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
