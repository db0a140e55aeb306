//! The admin pane: its data ([`StatusReport`], also served as JSON) and its
//! server-rendered HTML ([`render_html`], [`render_chat`],
//! [`render_dead_letters`], [`render_login`]).
//!
//! Each page is one self-contained HTML5 document: inline CSS, a viewport
//! meta tag, tables that stack into labelled cards on narrow screens, and
//! forms that work without JavaScript. The one script ([`FILTER_SCRIPT`])
//! only filters chat rows as you type; without it the filter box submits
//! `?q=` and the server hides the rows. Every dynamic string passes through
//! [`escape_html`]; chat names in URLs through [`path_segment`]. Each chat
//! row carries `id="chat-<name>"`, `data-chat="<name>"`, `data-search` and
//! the class `chat ok` or `chat error` (see [`ChatStatus::is_failing`]);
//! its name links to the chat's page, above an inline SVG chart of its last
//! 24 hours ([`hours_chart`]: no script, a `<title>` per bar, `role="img"`).
//! Rendering only: authentication and CSRF checks live in the server.

use std::fmt::Write as _;

use serde::Serialize;

use crate::observe::status::{ChatStatus, ConfigStatus, HourStatus, StatusReport, StorageStatus};

/// The filter box's script: hides chat rows not containing the typed text.
/// Its SHA-256 goes into the pages' Content-Security-Policy.
pub const FILTER_SCRIPT: &str = "(function(){var q=document.getElementById('q');if(!q)return;\
var rows=document.querySelectorAll('tr.chat'),shown=document.getElementById('shown');\
function apply(){var v=q.value.trim().toLowerCase(),n=0;\
rows.forEach(function(r){var ok=!v||r.getAttribute('data-search').indexOf(v)>=0;r.hidden=!ok;if(ok)n++;});\
if(shown)shown.textContent=String(n);}\
q.addEventListener('input',apply);apply();})();";

/// What the pane needs beyond the report: the form token and the request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pane<'a> {
    /// The CSRF token every form carries.
    pub csrf: &'a str,
    /// The filter (`?q=`), as typed.
    pub query: &'a str,
    /// A chat a test message was just queued for (`?sent=`).
    pub sent: Option<&'a str>,
    /// Whether the admin listener asks for a token (shows "Log out").
    pub login: bool,
}

/// One dead letter, as the pane shows it.
#[derive(Serialize, Clone, Debug)]
pub struct DeadLetterView {
    /// Its id, for sending it again or dropping it.
    pub id: u64,
    /// When it was given up on, RFC 3339.
    pub failed_at: String,
    /// The platform's (or the relay's) reason.
    pub reason: String,
    pub attempts: u32,
    /// When it was queued, RFC 3339.
    pub queued_at: String,
    /// What it was: a topic title, or "test message requested by …".
    pub what: String,
    /// The forum post it was about.
    pub url: Option<String>,
}

/// One settled delivery attempt, as a chat's page and
/// `/api/chats/{name}/deliveries` show it.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct DeliveryView {
    /// When it was settled (sent, retried, given up on), RFC 3339.
    pub at: String,
    /// When it was queued, RFC 3339.
    pub queued_at: String,
    /// From queued to settled.
    pub latency_ms: u64,
    /// The forum event (`post_created`...), `edit`, `delete`, `test` or `alert`.
    pub kind: String,
    pub topic: Option<u64>,
    pub post: Option<u64>,
    /// The topic's title, the test's requester or the alert's chat.
    pub title: String,
    /// `sent`, `skipped`, `retried` or `dead_lettered`.
    pub result: String,
    /// The platform's message id (`sent`, when it gave one).
    pub remote_id: Option<String>,
    /// Why it failed or was skipped.
    pub reason: Option<String>,
    /// When it is tried again (`retried`), RFC 3339.
    pub next_attempt_at: Option<String>,
}

impl DeliveryView {
    /// What it was, in words.
    fn what(&self) -> String {
        match self.kind.as_str() {
            "test" => format!("test message requested by {}", self.title),
            "alert" => format!("alert: chat {} is failing", self.title),
            kind => {
                let mut out = kind.replace('_', " ");
                if let Some(t) = self.topic {
                    let _ = write!(out, " · topic {t}");
                }
                if let Some(p) = self.post {
                    let _ = write!(out, " post {p}");
                }
                if !self.title.is_empty() {
                    let _ = write!(out, ": {}", self.title);
                }
                out
            }
        }
    }
}

/// A chat name (or any text) as one URL path segment: everything but
/// unreserved characters percent-encoded.
pub fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Escapes `& < > " '` for HTML text and attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The `id` of a chat's row: `chat-` + the name with whitespace replaced by
/// `-` (ids cannot contain whitespace), escaped.
pub fn chat_row_id(name: &str) -> String {
    let name: String = name
        .chars()
        .map(|c| if c.is_whitespace() { '-' } else { c })
        .collect();
    format!("chat-{}", escape_html(&name))
}

const STYLE: &str = r#"
:root { color-scheme: light dark; --ok: #1a7f37; --err: #cf222e; --muted: #6e7781; --line: #d0d7de; --bad-bg: rgba(207, 34, 46, .08); }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto; padding: 1rem; max-width: 80rem; }
h1 { font-size: 1.4rem; margin: 0 0 .25rem; }
h2 { font-size: 1.15rem; margin: 1.5rem 0 .5rem; }
h3 { font-size: 1rem; margin: 1rem 0 .5rem; }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .9em; }
pre { white-space: pre-wrap; word-break: break-word; margin: .25rem 0; }
.muted { color: var(--muted); }
span.ok { color: var(--ok); }
span.error, td.error { color: var(--err); }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; margin: 0; }
dl.facts dt { font-weight: 600; }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
pre.errors { background: var(--bad-bg); border-left: 3px solid var(--err); padding: .5rem .75rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: .4rem .5rem; border-bottom: 1px solid var(--line); overflow-wrap: break-word; }
/* Headings and words are never broken inside (`anywhere` would size columns by the letter); only an overlong token (a URL) wraps. */
thead th { font-size: .85rem; color: var(--muted); white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
ul.rules { list-style: none; margin: 0; padding: 0; }
ul.rules li { white-space: pre-wrap; }
tr.chat.ok > th { border-left: 4px solid var(--ok); }
tr.chat.error { background: var(--bad-bg); }
tr.chat.error > th { border-left: 4px solid var(--err); }
[hidden] { display: none !important; }
svg.hours { display: block; width: 10rem; max-width: 100%; height: 2.25rem; margin-top: .3rem; }
svg.hours.big { width: 40rem; height: 6rem; }
svg.hours .bar-ok { fill: var(--ok); }
svg.hours .bar-retry { fill: #bf8700; }
svg.hours .bar-err { fill: var(--err); }
svg.hours .hit { fill: rgba(110, 119, 129, .07); }
svg.hours g.hour:hover .hit { fill: rgba(110, 119, 129, .25); }
p.axis { display: flex; justify-content: space-between; width: 40rem; max-width: 100%; font-size: .8rem; margin: .1rem 0 0; }
svg.hours .base { stroke: var(--line); stroke-width: 1; }
.legend { font-size: .85rem; color: var(--muted); margin: 0 0 .5rem; }
.legend i { display: inline-block; width: .7em; height: .7em; margin: 0 .25em 0 .6em; vertical-align: baseline; }
.legend i.ok { background: var(--ok); } .legend i.retry { background: #bf8700; } .legend i.err { background: var(--err); }
span.warn { color: #9a6700; }
a { color: inherit; }
form.inline { display: inline; margin: 0; }
button { font: inherit; padding: .3rem .7rem; border: 1px solid var(--line); border-radius: 6px; background: transparent; cursor: pointer; }
button:hover { border-color: var(--muted); }
form.filter { display: flex; gap: .5rem; align-items: center; flex-wrap: wrap; margin: .5rem 0 1rem; }
form.filter input { font: inherit; padding: .35rem .5rem; border: 1px solid var(--line); border-radius: 6px; min-width: 14rem; flex: 1 1 14rem; max-width: 28rem; }
p.notice { border-left: 3px solid var(--ok); padding: .4rem .75rem; }
nav.top { display: flex; gap: 1rem; align-items: baseline; justify-content: space-between; flex-wrap: wrap; }
@media (max-width: 48rem) {
  table, thead, tbody, tr, th, td { display: block; }
  thead { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
  tr { border: 1px solid var(--line); border-radius: 6px; margin: 0 0 .75rem; padding: .25rem 0; }
  th, td { border: 0; padding: .2rem .75rem; }
  td.num { text-align: left; }
  td[data-label]::before { content: attr(data-label) ": "; font-weight: 600; color: var(--muted); }
  dl.facts { grid-template-columns: 1fr; }
  dl.facts dd { margin-bottom: .4rem; }
}
"#;

/// The start of every page, through `<body>`.
fn head(out: &mut String, title: &str) {
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape_html(title)
    );
}

/// The admin pane: configuration, reloads, and every chat with its rules,
/// health and a "send test message" button.
pub fn render_html(report: &StatusReport, pane: &Pane<'_>) -> String {
    let mut out = String::with_capacity(8 * 1024 + report.chats.len() * 1024);
    head(&mut out, "discourse-relay status");
    let _ = write!(
        out,
        "<header>\n<nav class=\"top\"><h1>discourse-relay status</h1>{}</nav>\n\
         <p class=\"muted\">version {} · started {}</p>\n</header>\n<main>\n",
        if pane.login {
            format!(
                "<form class=\"inline\" method=\"post\" action=\"/logout\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\">Log out</button></form>",
                escape_html(pane.csrf)
            )
        } else {
            String::new()
        },
        escape_html(&report.version),
        time(&report.started_at),
    );
    if let Some(chat) = pane.sent {
        let _ = writeln!(
            out,
            "<p class=\"notice\" role=\"status\">Test message queued for chat <strong>{}</strong>.</p>",
            escape_html(chat)
        );
    }

    render_storage(&mut out, &report.storage);
    render_chats(&mut out, &report.chats, pane);
    render_config(&mut out, &report.config);

    let _ = write!(
        out,
        "</main>\n<script>{FILTER_SCRIPT}</script>\n</body>\n</html>\n"
    );
    out
}

/// A chat's dead letters: what failed, when, and the platform's reason.
pub fn render_dead_letters(chat: &str, letters: &[DeadLetterView], csrf: &str) -> String {
    let mut out = String::with_capacity(4096 + letters.len() * 512);
    head(
        &mut out,
        &format!("Dead letters of {chat} · discourse-relay"),
    );
    let _ = write!(
        out,
        "<header>\n<p><a href=\"/#{}\">← all chats</a></p>\n\
         <h1>Dead letters of {}</h1>\n<p class=\"muted\">Messages the relay gave up on \
         (a permanent error, or older than <code>max_age</code>), newest first.</p>\n</header>\n<main>\n",
        chat_row_id(chat),
        escape_html(chat),
    );
    let base = format!("/chats/{}/dead-letters", path_segment(chat));
    let form = |action: &str, id: Option<u64>, label: &str| {
        format!(
            "<form method=\"post\" action=\"{base}/{action}\" class=\"inline\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">{}\
             <button type=\"submit\">{label}</button></form>",
            escape_html(csrf),
            id.map(|id| format!("<input type=\"hidden\" name=\"id\" value=\"{id}\">"))
                .unwrap_or_default(),
        )
    };
    if letters.is_empty() {
        out.push_str("<p class=\"muted\">None.</p>\n");
    } else {
        let _ = writeln!(
            out,
            "<p class=\"actions\">{} {}</p>",
            form("resend", None, "Send all again"),
            form("drop", None, "Drop all"),
        );
        out.push_str(
            "<table class=\"dead-letters\">\n<thead><tr><th scope=\"col\">Failed at</th>\
             <th scope=\"col\">Message</th><th scope=\"col\">Reason</th>\
             <th scope=\"col\">Attempts</th><th scope=\"col\">Queued at</th>\
             <th scope=\"col\"></th></tr></thead>\n<tbody>\n",
        );
        for d in letters {
            let what = match &d.url {
                Some(url) => format!(
                    "<a href=\"{}\">{}</a>",
                    escape_html(url),
                    escape_html(&d.what)
                ),
                None => escape_html(&d.what),
            };
            let _ = writeln!(
                out,
                "<tr class=\"dead-letter\"><td data-label=\"Failed at\">{}</td>\
                 <td data-label=\"Message\">{what}</td>\
                 <td data-label=\"Reason\"><pre class=\"reason\">{}</pre></td>\
                 <td data-label=\"Attempts\" class=\"num\">{}</td>\
                 <td data-label=\"Queued at\">{}</td><td>{}</td></tr>",
                time(&d.failed_at),
                escape_html(&d.reason),
                d.attempts,
                time(&d.queued_at),
                form("resend", Some(d.id), "Send again"),
            );
        }
        out.push_str("</tbody>\n</table>\n");
    }
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

/// The login form shown instead of a page when the admin token is required.
pub fn render_login(csrf: &str, failed: bool) -> String {
    let mut out = String::with_capacity(4096);
    head(&mut out, "Log in · discourse-relay");
    let _ = write!(
        out,
        "<main>\n<h1>discourse-relay admin</h1>\n{}\
         <form method=\"post\" action=\"/login\">\n\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\n\
         <p><label for=\"token\">Admin token (<code>[server] admin_token</code>)</label><br>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required></p>\n\
         <p><button type=\"submit\">Log in</button></p>\n</form>\n</main>\n</body>\n</html>\n",
        if failed {
            "<p class=\"error\" role=\"alert\"><span class=\"error\">That token is not the admin token.</span></p>\n"
        } else {
            ""
        },
        escape_html(csrf),
    );
    out
}

/// A banner, only while the store fails: webhooks are being refused; and
/// one while unreadable rows are set aside.
fn render_storage(out: &mut String, storage: &StorageStatus) {
    if storage.quarantined > 0 {
        let _ = write!(
            out,
            "<section id=\"quarantine\" class=\"error\" role=\"alert\">\n<h2>Unreadable stored rows</h2>\n\
             <p>{} stored row{} could not be read and {} set aside (kept in the <code>quarantine</code> table); \
             everything else is delivered.</p>\n<ul>\n",
            storage.quarantined,
            if storage.quarantined == 1 { "" } else { "s" },
            if storage.quarantined == 1 {
                "was"
            } else {
                "were"
            },
        );
        for q in &storage.quarantine {
            let _ = writeln!(
                out,
                "<li>{} <code>{}</code> {}: {}</li>",
                time(&q.at),
                escape_html(&q.table),
                escape_html(&q.key),
                escape_html(&q.error),
            );
        }
        out.push_str("</ul>\n</section>\n");
    }
    if storage.ok {
        return;
    }
    let _ = write!(
        out,
        "<section id=\"storage\" class=\"error\" role=\"alert\">\n<h2>Storage failing</h2>\n\
         <p>Webhooks are answered 503 (Discourse retries them) since {}.</p>\n",
        time(storage.since.as_deref().unwrap_or("")),
    );
    render_errors(out, storage.error.as_slice());
    out.push_str("</section>\n");
}

fn render_config(out: &mut String, config: &ConfigStatus) {
    out.push_str(
        "<section id=\"config\" aria-labelledby=\"config-title\">\n\
         <h2 id=\"config-title\">Configuration</h2>\n<dl class=\"facts\">\n",
    );
    let _ = write!(
        out,
        "<dt>File</dt><dd><code>{}</code></dd>\n\
         <dt>Hash</dt><dd><code title=\"{}\">{}</code></dd>\n\
         <dt>Loaded at</dt><dd>{}</dd>\n",
        escape_html(&config.path),
        escape_html(&config.hash),
        escape_html(short_hash(&config.hash)),
        time(&config.loaded_at),
    );
    out.push_str("<dt>Last reload</dt><dd>");
    match &config.last_reload {
        None => out.push_str("<span class=\"muted\">none since start</span>"),
        Some(reload) => {
            let _ = write!(
                out,
                "{} at {} ({})",
                outcome(reload.ok),
                time(&reload.at),
                escape_html(&reload.trigger),
            );
            if let Some(hash) = &reload.hash {
                let _ = write!(
                    out,
                    ", hash <code title=\"{}\">{}</code>",
                    escape_html(hash),
                    escape_html(short_hash(hash)),
                );
            }
        }
    }
    out.push_str("</dd>\n</dl>\n");

    if let Some(reload) = &config.last_reload
        && !reload.errors.is_empty()
    {
        let _ = writeln!(
            out,
            "<h3>Errors of the last reload ({})</h3>",
            reload.errors.len()
        );
        render_errors(out, &reload.errors);
    }

    out.push_str("<h3>Reload history</h3>\n");
    if config.history.is_empty() {
        out.push_str("<p class=\"muted\">No reloads yet.</p>\n");
    } else {
        out.push_str(
            "<table class=\"history\">\n<thead><tr><th scope=\"col\">At</th>\
             <th scope=\"col\">Trigger</th><th scope=\"col\">Result</th>\
             <th scope=\"col\">Hash</th><th scope=\"col\">Errors</th></tr></thead>\n<tbody>\n",
        );
        for reload in &config.history {
            let class = if reload.ok {
                "reload ok"
            } else {
                "reload error"
            };
            let _ = write!(
                out,
                "<tr class=\"{class}\"><td data-label=\"At\">{}</td>\
                 <td data-label=\"Trigger\">{}</td><td data-label=\"Result\">{}</td>\
                 <td data-label=\"Hash\">",
                time(&reload.at),
                escape_html(&reload.trigger),
                outcome(reload.ok),
            );
            match &reload.hash {
                Some(hash) => {
                    let _ = write!(
                        out,
                        "<code title=\"{}\">{}</code>",
                        escape_html(hash),
                        escape_html(short_hash(hash)),
                    );
                }
                None => out.push_str("<span class=\"muted\">–</span>"),
            }
            out.push_str("</td><td data-label=\"Errors\">");
            if reload.errors.is_empty() {
                out.push_str("<span class=\"muted\">–</span>");
            } else {
                render_errors(out, &reload.errors);
            }
            out.push_str("</td></tr>\n");
        }
        out.push_str("</tbody>\n</table>\n");
    }
    out.push_str("</section>\n");
}

fn render_errors(out: &mut String, errors: &[String]) {
    out.push_str("<pre class=\"errors\">");
    for (i, error) in errors.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&escape_html(error));
    }
    out.push_str("</pre>\n");
}

/// The text the filter matches for a chat, lower-case.
fn search_text(chat: &ChatStatus) -> String {
    let mut s = format!(
        "{} {} {} {}",
        chat.name, chat.provider, chat.kind, chat.target
    );
    for r in &chat.rules {
        s.push(' ');
        s.push_str(r);
    }
    s.to_lowercase()
}

fn render_chats(out: &mut String, chats: &[ChatStatus], pane: &Pane<'_>) {
    let failing = chats.iter().filter(|c| c.is_failing()).count();
    let query = pane.query.trim().to_lowercase();
    let shown = chats
        .iter()
        .filter(|c| search_text(c).contains(&query))
        .count();
    let _ = write!(
        out,
        "<section id=\"chats\" aria-labelledby=\"chats-title\">\n\
         <h2 id=\"chats-title\">Chats (<span id=\"shown\">{shown}</span> of {}{})</h2>\n\
         <form class=\"filter\" method=\"get\" action=\"/\" role=\"search\">\
         <label for=\"q\">Filter</label>\
         <input id=\"q\" name=\"q\" type=\"search\" value=\"{}\" placeholder=\"chat, platform, channel or rule\" autocomplete=\"off\">\
         <button type=\"submit\">Filter</button></form>\n",
        chats.len(),
        if failing > 0 {
            format!(", <span class=\"error\">{failing} failing</span>")
        } else {
            String::new()
        },
        escape_html(pane.query),
    );
    if chats.is_empty() {
        out.push_str("<p class=\"muted\">No chats configured.</p>\n</section>\n");
        return;
    }
    out.push_str(&legend("Each chat's last 24 hours"));
    out.push_str(
        "<table class=\"chats\">\n<thead><tr><th scope=\"col\">Chat</th>\
         <th scope=\"col\">Chat system</th><th scope=\"col\">Chat id</th>\
         <th scope=\"col\">Subscriptions</th><th scope=\"col\">Delivered</th>\
         <th scope=\"col\">Failed</th><th scope=\"col\">Queue</th>\
         <th scope=\"col\">Dead letters</th><th scope=\"col\">Last success</th>\
         <th scope=\"col\">Last error</th><th scope=\"col\">Test</th></tr></thead>\n<tbody>\n",
    );
    for chat in chats {
        let class = if chat.is_failing() {
            "chat error"
        } else {
            "chat ok"
        };
        let name = escape_html(&chat.name);
        let search = search_text(chat);
        let _ = write!(
            out,
            "<tr id=\"{}\" class=\"{class}\" data-chat=\"{name}\" data-search=\"{}\"{}>\
             <th scope=\"row\"><a href=\"/chats/{}\" class=\"chat-link\">{name}</a>{}</th>\
             <td data-label=\"Chat system\">{} <span class=\"muted\">({})</span></td>\
             <td data-label=\"Chat id\"><code>{}</code></td>\
             <td data-label=\"Subscriptions\"><ul class=\"rules mono\">",
            chat_row_id(&chat.name),
            escape_html(&search),
            if search.contains(&query) {
                ""
            } else {
                " hidden"
            },
            path_segment(&chat.name),
            hours_chart(&chat.name, &chat.hours, false),
            escape_html(&chat.provider),
            escape_html(&chat.kind),
            escape_html(&chat.target),
        );
        for rule in &chat.rules {
            let _ = write!(out, "<li>{}</li>", escape_html(rule));
        }
        let _ = write!(
            out,
            "</ul></td>\
             <td data-label=\"Delivered\" class=\"num\">{}</td>\
             <td data-label=\"Failed\" class=\"num\">{}</td>\
             <td data-label=\"Queue\" class=\"num\">{}</td>\
             <td data-label=\"Dead letters\" class=\"num{}\">\
             <a href=\"/chats/{}/dead-letters\" title=\"see the failed messages\">{}</a></td>\
             <td data-label=\"Last success\">{}</td>\
             <td data-label=\"Last error\">",
            chat.delivered,
            chat.failed,
            chat.queue_depth,
            if chat.dead_letters > 0 { " error" } else { "" },
            path_segment(&chat.name),
            chat.dead_letters,
            match &chat.last_success_at {
                Some(at) => time(at),
                None => "<span class=\"muted\">never</span>".to_owned(),
            },
        );
        match &chat.last_error {
            Some(error) => {
                let _ = write!(
                    out,
                    "{}<pre class=\"reason\">{}</pre>",
                    time(&error.at),
                    escape_html(&error.reason),
                );
            }
            None => out.push_str("<span class=\"muted\">–</span>"),
        }
        if chat.worker_restarts > 0 {
            let _ = write!(
                out,
                "<p class=\"error\">worker restarted {} time{}</p>",
                chat.worker_restarts,
                if chat.worker_restarts == 1 { "" } else { "s" },
            );
        }
        let _ = writeln!(
            out,
            "</td><td data-label=\"Test\"><form class=\"inline\" method=\"post\" action=\"/chats/{}/test\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button type=\"submit\" class=\"send-test\">Send test message</button></form></td></tr>",
            path_segment(&chat.name),
            escape_html(pane.csrf),
        );
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}

/// What the chart's colours mean (bars are stacked in this order), after `intro`.
fn legend(intro: &str) -> String {
    format!(
        "<p class=\"legend\">{intro}, one bar per hour (hover for the counts):\
         <i class=\"ok\"></i>delivered<i class=\"retry\"></i>retried<i class=\"err\"></i>failed</p>\n"
    )
}

/// A chat's hourly buckets as an inline SVG bar chart: per hour delivered
/// (bottom), retried, then failed (top), scaled to the busiest hour; each
/// hour has a `<title>` with its counts (a full-height hover area, so an
/// empty hour shows its zeros too), the whole an `aria-label` summary.
pub fn hours_chart(chat: &str, hours: &[HourStatus], big: bool) -> String {
    const BAR: u64 = 10;
    const HEIGHT: u64 = 40;
    let total = |h: &HourStatus| h.delivered + h.failed + h.retried;
    let max = hours.iter().map(total).max().unwrap_or(0).max(1);
    let sum = |f: fn(&HourStatus) -> u64| hours.iter().map(f).sum::<u64>();
    let (delivered, failed, retried) =
        (sum(|h| h.delivered), sum(|h| h.failed), sum(|h| h.retried));
    let width = BAR * hours.len().max(1) as u64;
    let mut out = format!(
        "<svg class=\"hours{}\" role=\"img\" viewBox=\"0 0 {width} {HEIGHT}\" preserveAspectRatio=\"none\" \
         aria-label=\"{}: last {} hours, {delivered} delivered, {retried} retried, {failed} failed\" \
         data-delivered=\"{delivered}\" data-failed=\"{failed}\" data-retried=\"{retried}\">",
        if big { " big" } else { "" },
        escape_html(chat),
        hours.len(),
    );
    // Heights in whole units of the viewBox, at least 1 for a non-zero count.
    let scale = |n: u64| if n == 0 { 0 } else { (n * HEIGHT / max).max(1) };
    for (i, h) in hours.iter().enumerate() {
        let x = i as u64 * BAR;
        let _ = write!(
            out,
            "<g class=\"hour\"><title>{}: {} delivered, {} retried, {} failed</title>\
             <rect class=\"hit\" x=\"{x}\" y=\"0\" width=\"{BAR}\" height=\"{HEIGHT}\"/>",
            escape_html(&hour_label(&h.start)),
            h.delivered,
            h.retried,
            h.failed,
        );
        let mut top = HEIGHT;
        for (n, class) in [
            (h.delivered, "bar-ok"),
            (h.retried, "bar-retry"),
            (h.failed, "bar-err"),
        ] {
            let height = scale(n).min(top);
            if height == 0 {
                continue;
            }
            top -= height;
            let _ = write!(
                out,
                "<rect class=\"{class}\" x=\"{}\" y=\"{top}\" width=\"{}\" height=\"{height}\"/>",
                x + 1,
                BAR - 2,
            );
        }
        out.push_str("</g>");
    }
    let _ = write!(
        out,
        "<line class=\"base\" x1=\"0\" y1=\"{HEIGHT}\" x2=\"{width}\" y2=\"{HEIGHT}\"/></svg>"
    );
    out
}

/// An hour's RFC 3339 start as `2025-06-01 14:00–15:00 UTC`.
fn hour_label(start: &str) -> String {
    match start.parse::<jiff::Timestamp>() {
        Ok(t) => {
            let end = t + jiff::SignedDuration::from_hours(1);
            format!(
                "{}–{} UTC",
                t.strftime("%Y-%m-%d %H:%M"),
                end.strftime("%H:%M")
            )
        }
        Err(_) => start.to_string(),
    }
}

/// A latency in the largest unit that reads well.
fn latency(ms: u64) -> String {
    match ms {
        ..=999 => format!("{ms} ms"),
        1000..=59_999 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{} min", ms / 60_000),
        _ => format!("{:.1} h", ms as f64 / 3_600_000.0),
    }
}

/// A chat's page: its last 24 hours and its recent deliveries, newest first.
pub fn render_chat(chat: &ChatStatus, deliveries: &[DeliveryView]) -> String {
    let mut out = String::with_capacity(4096 + deliveries.len() * 512);
    head(&mut out, &format!("{} · discourse-relay", chat.name));
    let seg = path_segment(&chat.name);
    let _ = write!(
        out,
        "<header>\n<p><a href=\"/#{}\">← all chats</a></p>\n<h1>{}</h1>\n\
         <p class=\"muted\">{} <span>({})</span> · <code>{}</code> · \
         <a href=\"/chats/{seg}/dead-letters\">{} dead letter{}</a> · queue {}</p>\n</header>\n<main>\n\
         <section id=\"hours\"><h2>Last 24 hours</h2>\n{}{}\
         <p class=\"axis muted\"><span>24 h ago</span><span>now</span></p></section>\n",
        chat_row_id(&chat.name),
        escape_html(&chat.name),
        escape_html(&chat.provider),
        escape_html(&chat.kind),
        escape_html(&chat.target),
        chat.dead_letters,
        if chat.dead_letters == 1 { "" } else { "s" },
        chat.queue_depth,
        legend("Oldest on the left, the current hour on the right"),
        hours_chart(&chat.name, &chat.hours, true),
    );
    let _ = writeln!(
        out,
        "<section id=\"deliveries\"><h2>Recent deliveries</h2>\n<p class=\"muted\">The last {} \
         settled attempts (sent, retried, given up on), newest first; latency is from queued to settled.</p>",
        crate::delivery::store::RECENT_PER_CHAT,
    );
    if deliveries.is_empty() {
        out.push_str("<p class=\"muted\">None yet.</p>\n");
    } else {
        out.push_str(
            "<table class=\"deliveries\">\n<thead><tr><th scope=\"col\">When</th>\
             <th scope=\"col\">What</th><th scope=\"col\">Latency</th>\
             <th scope=\"col\">Result</th></tr></thead>\n<tbody>\n",
        );
        for d in deliveries {
            let result = match d.result.as_str() {
                "sent" => match &d.remote_id {
                    Some(id) => format!(
                        "<span class=\"ok\">sent</span> as <code>{}</code>",
                        escape_html(id)
                    ),
                    None => "<span class=\"ok\">sent</span>".to_string(),
                },
                "retried" => format!(
                    "<span class=\"warn\">retried</span>{}<pre class=\"reason\">{}</pre>",
                    d.next_attempt_at
                        .as_deref()
                        .map(|at| format!(
                            " (again at <time datetime=\"{0}\" title=\"{0}\">{0}</time>)",
                            escape_html(at)
                        ))
                        .unwrap_or_default(),
                    escape_html(d.reason.as_deref().unwrap_or("")),
                ),
                "dead_lettered" => format!(
                    "<span class=\"error\">dead-lettered</span><pre class=\"reason\">{}</pre>",
                    escape_html(d.reason.as_deref().unwrap_or(""))
                ),
                other => format!(
                    "<span class=\"muted\">{}</span><pre class=\"reason\">{}</pre>",
                    escape_html(other),
                    escape_html(d.reason.as_deref().unwrap_or(""))
                ),
            };
            let _ = writeln!(
                out,
                "<tr class=\"delivery {}\"><td data-label=\"When\">{}</td>\
                 <td data-label=\"What\">{}</td>\
                 <td data-label=\"Latency\" class=\"num\">{}</td>\
                 <td data-label=\"Result\">{result}</td></tr>",
                escape_html(&d.result),
                time(&d.at),
                escape_html(&d.what()),
                latency(d.latency_ms),
            );
        }
        out.push_str("</tbody>\n</table>\n");
    }
    out.push_str("</section>\n</main>\n</body>\n</html>\n");
    out
}

/// `<time>` for an RFC 3339 string: how long ago ("3 min ago"), with the
/// exact time on hover and in `datetime`; as given when it does not parse.
fn time(at: &str) -> String {
    let shown = match at.parse::<jiff::Timestamp>() {
        Ok(t) => ago(jiff::Timestamp::now().as_second() - t.as_second()),
        Err(_) => at.to_string(),
    };
    let at = escape_html(at);
    format!(
        "<time datetime=\"{at}\" title=\"{at}\">{}</time>",
        escape_html(&shown)
    )
}

/// `secs` seconds ago, in the largest unit that fits (a time slightly in
/// the future, from clock skew, reads "just now").
fn ago(secs: i64) -> String {
    match secs {
        ..=9 => "just now".into(),
        10..=59 => format!("{secs} s ago"),
        60..=3599 => format!("{} min ago", secs / 60),
        3600..=86_399 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86_400),
    }
}

fn outcome(ok: bool) -> &'static str {
    if ok {
        "<span class=\"ok\">succeeded</span>"
    } else {
        "<span class=\"error\">failed</span>"
    }
}

/// The first 12 characters of a hash (the whole string if shorter).
fn short_hash(hash: &str) -> &str {
    hash.char_indices()
        .nth(12)
        .map_or(hash, |(i, _)| &hash[..i])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::status::{
        CHART_HOURS, ChatError, HISTORY_LIMIT, HourStatus, QuarantinedView, ReloadStatus,
    };

    const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn failed_reload() -> ReloadStatus {
        ReloadStatus {
            at: "2025-06-01T12:05:00Z".into(),
            ok: false,
            trigger: "sighup".into(),
            hash: Some("ab".repeat(32)),
            errors: vec![
                "subscriptions.toml:12:5: error: unknown key `chanel`, did you mean `channel`?"
                    .into(),
                "subscriptions.toml:20:11: error: template `x` uses <unknown> helper".into(),
            ],
        }
    }

    /// 24 empty hours from 2025-06-01T00:00Z, with (index, delivered,
    /// failed, retried) filled in.
    fn hours(filled: &[(usize, u64, u64, u64)]) -> Vec<HourStatus> {
        let mut out: Vec<HourStatus> = (0..CHART_HOURS)
            .map(|i| HourStatus {
                start: format!("2025-06-01T{i:02}:00:00Z"),
                ..HourStatus::default()
            })
            .collect();
        for &(i, delivered, failed, retried) in filled {
            out[i].delivered = delivered;
            out[i].failed = failed;
            out[i].retried = retried;
        }
        out
    }

    fn report() -> StatusReport {
        let start = ReloadStatus {
            at: "2025-06-01T12:00:00Z".into(),
            ok: true,
            trigger: "start".into(),
            hash: Some(HASH.into()),
            errors: vec![],
        };
        let mut config = ConfigStatus {
            path: "/etc/relay/subscriptions.toml".into(),
            hash: String::new(),
            loaded_at: String::new(),
            last_reload: None,
            history: vec![],
        };
        config.record(start);
        config.record(failed_reload());
        StatusReport {
            version: "0.1.0".into(),
            started_at: "2025-06-01T12:00:00Z".into(),
            config,
            storage: StorageStatus {
                ok: true,
                ..Default::default()
            },
            chats: vec![
                ChatStatus {
                    name: "general".into(),
                    provider: "team-slack".into(),
                    kind: "slack".into(),
                    target: "#general".into(),
                    rules: vec!["watch c/support/** t/bug".into(), "mute c/staff".into()],
                    delivered: 42,
                    failed: 1,
                    queue_depth: 0,
                    dead_letters: 0,
                    last_success_at: Some("2025-06-01T12:10:00Z".into()),
                    last_error: Some(ChatError {
                        at: "2025-06-01T12:09:00Z".into(),
                        reason: "HTTP 503".into(),
                    }),
                    worker_restarts: 0,
                    hours: hours(&[(23, 5, 0, 0), (22, 2, 1, 3)]),
                },
                ChatStatus {
                    name: "<script>alert(1)</script>".into(),
                    provider: "hook".into(),
                    kind: "webhook".into(),
                    target: "https://hooks.example.org/…".into(),
                    rules: vec!["follow all".into()],
                    delivered: 0,
                    failed: 3,
                    queue_depth: 2,
                    dead_letters: 1,
                    last_success_at: None,
                    last_error: Some(ChatError {
                        at: "2025-06-01T12:11:00Z".into(),
                        reason: "HTTP 400: <b>bad</b> & \"worse\"".into(),
                    }),
                    worker_restarts: 2,
                    hours: hours(&[]),
                },
            ],
        }
    }

    #[test]
    fn escape_html_escapes_the_five() {
        assert_eq!(
            escape_html(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(escape_html("plain ü"), "plain ü");
    }

    #[test]
    fn hostile_strings_are_escaped() {
        let html = render_html(&report(), &Pane::default());
        // The one <script> is the filter's own.
        assert_eq!(html.matches("<script>").count(), 1, "{html}");
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(!html.contains("<b>"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("HTTP 400: &lt;b&gt;bad&lt;/b&gt; &amp; &quot;worse&quot;"));
        assert!(html.contains(
            "id=\"chat-&lt;script&gt;alert(1)&lt;/script&gt;\" class=\"chat error\" \
             data-chat=\"&lt;script&gt;alert(1)&lt;/script&gt;\""
        ));
        assert!(html.contains("uses &lt;unknown&gt; helper"));
    }

    #[test]
    fn worker_restarts_show_only_when_there_were_some() {
        let html = render_html(&report(), &Pane::default());
        assert_eq!(html.matches("worker restarted").count(), 1, "{html}");
        assert!(html.contains("worker restarted 2 times"));
    }

    #[test]
    fn page_shape() {
        let html = render_html(&report(), &Pane::default());
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<title>discourse-relay status</title>"));
        assert!(html.contains("<meta name=\"viewport\""));
        // One script: the filter's.
        assert_eq!(html.matches("<script").count(), 1);
        assert!(html.contains(&format!("<script>{FILTER_SCRIPT}</script>")));
        assert!(html.trim_end().ends_with("</html>"));
        assert!(html.contains("<code>/etc/relay/subscriptions.toml</code>"));
        assert!(html.contains(&format!("<code title=\"{HASH}\">9f86d081884c</code>")));
    }

    #[test]
    fn every_chat_and_rule_appears() {
        let report = report();
        let html = render_html(&report, &Pane::default());
        for chat in &report.chats {
            assert!(html.contains(&escape_html(&chat.name)));
            for rule in &chat.rules {
                assert!(html.contains(&format!("<li>{}</li>", escape_html(rule))));
            }
        }
        assert!(html.contains(
            "<tr id=\"chat-general\" class=\"chat ok\" data-chat=\"general\" \
             data-search=\"general team-slack slack #general watch c/support/** t/bug mute c/staff\">"
        ));
        assert!(html.contains("<li>watch c/support/** t/bug</li>"));
        assert!(html.contains("team-slack <span class=\"muted\">(slack)</span>"));
    }

    #[test]
    fn failed_reload_errors_appear() {
        let html = render_html(&report(), &Pane::default());
        assert!(html.contains(
            "subscriptions.toml:12:5: error: unknown key `chanel`, did you mean `channel`?"
        ));
        assert!(html.contains("Errors of the last reload (2)"));
        assert!(html.contains("<span class=\"error\">failed</span>"));
        assert!(html.contains("(sighup)"));
        // Both history rows.
        assert_eq!(html.matches("<tr class=\"reload ").count(), 2);
    }

    #[test]
    fn failing_classification() {
        let mut chat = report().chats[0].clone();
        assert!(!chat.is_failing(), "success after the error");
        chat.last_success_at = Some("2025-06-01T12:08:00Z".into());
        assert!(chat.is_failing(), "error after the success");
        // 11:10Z: before the error, though later as a string.
        chat.last_success_at = Some("2025-06-01T13:10:00+02:00".into());
        assert!(chat.is_failing(), "offsets compare as instants");
        chat.last_success_at = None;
        assert!(chat.is_failing());
        chat.last_error = None;
        assert!(!chat.is_failing());
        chat.dead_letters = 1;
        assert!(chat.is_failing());
    }

    #[test]
    fn record_keeps_newest_first_and_bounded() {
        let mut config = report().config;
        assert_eq!(config.hash, HASH, "a failed reload keeps the serving hash");
        assert_eq!(config.loaded_at, "2025-06-01T12:00:00Z");
        assert_eq!(config.history[0].trigger, "sighup");
        for i in 0..30 {
            config.record(ReloadStatus {
                at: format!("2025-06-02T00:00:{i:02}Z"),
                ok: true,
                trigger: "file".into(),
                hash: Some(format!("{i:064}")),
                errors: vec![],
            });
        }
        assert_eq!(config.history.len(), HISTORY_LIMIT);
        assert_eq!(config.history[0].at, "2025-06-02T00:00:29Z");
        assert_eq!(config.hash, format!("{:064}", 29));
        assert_eq!(
            config.last_reload.as_ref().map(|r| r.at.as_str()),
            Some("2025-06-02T00:00:29Z")
        );
    }

    #[test]
    fn filter_hides_rows_without_script_and_forms_carry_the_csrf_token() {
        let pane = Pane {
            csrf: "tok\"en",
            query: "SUPPORT",
            sent: Some("general"),
            login: true,
        };
        let html = render_html(&report(), &pane);
        assert!(html.contains("value=\"SUPPORT\""));
        assert!(html.contains("(<span id=\"shown\">1</span> of 2"));
        // The hook chat has no "support": hidden, still in the page for the script.
        assert_eq!(html.matches(" hidden>").count(), 1);
        assert!(html.contains("data-chat=\"&lt;script&gt;alert(1)&lt;/script&gt;\" data-search=\"&lt;script&gt;alert(1)&lt;/script&gt; hook webhook https://hooks.example.org/… follow all\" hidden>"));
        // One test form per chat, plus log out, each with the escaped token.
        assert_eq!(
            html.matches("name=\"csrf\" value=\"tok&quot;en\"").count(),
            3
        );
        assert!(html.contains("action=\"/chats/general/test\""));
        assert!(html.contains("action=\"/chats/%3Cscript%3Ealert%281%29%3C%2Fscript%3E/test\""));
        assert!(html.contains("href=\"/chats/general/dead-letters\""));
        assert!(html.contains("Test message queued for chat <strong>general</strong>."));
    }

    #[test]
    fn times_read_as_how_long_ago_with_the_exact_time_on_hover() {
        assert_eq!(ago(-5), "just now");
        assert_eq!(ago(42), "42 s ago");
        assert_eq!(ago(3 * 60 + 59), "3 min ago");
        assert_eq!(ago(5 * 3600), "5 h ago");
        assert_eq!(ago(3 * 86_400 + 1), "3 days ago");
        let an_hour_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(3700);
        let html = time(&an_hour_ago.to_string());
        assert!(html.contains(">1 h ago</time>"), "{html}");
        assert!(html.contains(&format!("title=\"{an_hour_ago}\"")), "{html}");
        assert_eq!(
            time("not a time"),
            "<time datetime=\"not a time\" title=\"not a time\">not a time</time>"
        );
    }

    #[test]
    fn dead_letters_and_login_pages() {
        let html = render_dead_letters(
            "a&b",
            &[DeadLetterView {
                id: 42,
                failed_at: "2025-06-01T12:00:00Z".into(),
                reason: "slack: channel_not_found <x>".into(),
                attempts: 1,
                queued_at: "2025-06-01T11:59:00Z".into(),
                what: "Title <i>".into(),
                url: Some("https://forum.example.org/t/x/1/2".into()),
            }],
            "tok<",
        );
        assert!(html.contains("<h1>Dead letters of a&amp;b</h1>"));
        // One letter, and all of them, can be sent again; the forms carry the CSRF token.
        assert!(
            html.contains("action=\"/chats/a%26b/dead-letters/resend\""),
            "{html}"
        );
        assert!(html.contains("name=\"id\" value=\"42\""), "{html}");
        assert!(
            html.contains("action=\"/chats/a%26b/dead-letters/drop\""),
            "{html}"
        );
        assert!(html.contains("name=\"csrf\" value=\"tok&lt;\""), "{html}");
        assert!(html.contains("slack: channel_not_found &lt;x&gt;"));
        assert!(html.contains("<a href=\"https://forum.example.org/t/x/1/2\">Title &lt;i&gt;</a>"));
        assert!(render_dead_letters("x", &[], "c").contains("None."));
        let login = render_login("abc", true);
        assert!(login.contains("name=\"csrf\" value=\"abc\""));
        assert!(login.contains("type=\"password\""));
        assert!(login.contains("not the admin token"));
        assert_eq!(path_segment("a b/ü"), "a%20b%2F%C3%BC");
    }

    #[test]
    fn quarantine_banner_only_with_set_aside_rows() {
        let mut r = report();
        assert!(!render_html(&r, &Pane::default()).contains("id=\"quarantine\""));
        r.storage.quarantined = 2;
        r.storage.quarantine = vec![QuarantinedView {
            table: "inbox".into(),
            key: "17".into(),
            error: "expected value <at> line 1".into(),
            at: "2025-06-01T12:00:00Z".into(),
        }];
        let html = render_html(&r, &Pane::default());
        assert!(
            html.contains("2 stored rows could not be read and were set aside"),
            "{html}"
        );
        assert!(html.contains("<code>inbox</code> 17: expected value &lt;at&gt; line 1"));
        // Not the failing-store banner: writes work.
        assert!(!html.contains("id=\"storage\""));
    }

    #[test]
    fn storage_banner_only_while_failing() {
        let mut r = report();
        assert!(!render_html(&r, &Pane::default()).contains("id=\"storage\""));
        r.storage = StorageStatus {
            ok: false,
            error: Some("storage failed: No space left on device <x>".into()),
            since: Some("2025-06-01T12:30:00Z".into()),
            ..Default::default()
        };
        let page = render_html(&r, &Pane::default());
        assert!(page.contains("Storage failing"), "{page}");
        assert!(page.contains("No space left on device &lt;x&gt;"), "{page}");
        assert!(page.contains("2025-06-01T12:30:00Z"), "{page}");
    }

    #[test]
    fn json_field_names() {
        let value = serde_json::to_value(report()).unwrap();
        let keys = |v: &serde_json::Value| {
            let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            keys.sort();
            keys
        };
        assert_eq!(
            keys(&value),
            ["chats", "config", "started_at", "storage", "version"]
        );
        assert_eq!(
            keys(&value["storage"]),
            ["error", "ok", "quarantine", "quarantined", "since"]
        );
        assert_eq!(
            keys(&value["config"]),
            ["hash", "history", "last_reload", "loaded_at", "path"]
        );
        assert_eq!(
            keys(&value["config"]["last_reload"]),
            ["at", "errors", "hash", "ok", "trigger"]
        );
        assert_eq!(
            keys(&value["chats"][1]),
            [
                "dead_letters",
                "delivered",
                "failed",
                "hours",
                "kind",
                "last_error",
                "last_success_at",
                "name",
                "provider",
                "queue_depth",
                "rules",
                "target",
                "worker_restarts"
            ]
        );
        assert_eq!(keys(&value["chats"][1]["last_error"]), ["at", "reason"]);
        assert_eq!(
            keys(&value["chats"][0]["hours"][22]),
            ["delivered", "failed", "retried", "start"]
        );
        assert_eq!(value["chats"][0]["hours"][22]["retried"], 3);
        assert_eq!(
            value["chats"][1]["last_success_at"],
            serde_json::Value::Null
        );
        assert_eq!(value["config"]["history"][0]["ok"], false);
        assert_eq!(
            value["chats"][0]["rules"][0],
            serde_json::json!("watch c/support/** t/bug")
        );
    }

    #[test]
    fn each_chat_has_a_chart_of_its_hours_with_counts_per_bar() {
        let html = render_html(&report(), &Pane::default());
        assert_eq!(html.matches("<svg class=\"hours\" role=\"img\"").count(), 2);
        assert!(
            html.contains(
                "aria-label=\"general: last 24 hours, 7 delivered, 3 retried, 1 failed\""
            )
        );
        assert!(html.contains(
            "<title>2025-06-01 23:00–00:00 UTC: 5 delivered, 0 retried, 0 failed</title>"
        ));
        assert!(html.contains(
            "<title>2025-06-01 22:00–23:00 UTC: 2 delivered, 3 retried, 1 failed</title>"
        ));
        // Every hour has its title, the empty ones too: 24 per chat.
        assert_eq!(html.matches("<g class=\"hour\"><title>").count(), 48);
        // Scaled to the busiest hour (6), stacked: delivered, retried, failed.
        for bar in [
            "<rect class=\"bar-ok\" x=\"221\" y=\"27\" width=\"8\" height=\"13\"/>",
            "<rect class=\"bar-retry\" x=\"221\" y=\"7\" width=\"8\" height=\"20\"/>",
            "<rect class=\"bar-err\" x=\"221\" y=\"1\" width=\"8\" height=\"6\"/>",
            "<rect class=\"bar-ok\" x=\"231\" y=\"7\" width=\"8\" height=\"33\"/>",
        ] {
            assert!(html.contains(bar), "{bar}");
        }
        // The name links to the chat's page; hostile names stay escaped.
        assert!(html.contains("<a href=\"/chats/general\" class=\"chat-link\">general</a><svg"));
        assert!(html.contains(
            "href=\"/chats/%3Cscript%3Ealert%281%29%3C%2Fscript%3E\" class=\"chat-link\">&lt;script&gt;"
        ));
        assert!(html.contains("aria-label=\"&lt;script&gt;alert(1)&lt;/script&gt;: last 24 hours"));
        assert!(!html.contains("<script>alert"));
    }

    #[test]
    fn chat_page_lists_deliveries_with_results_escaped() {
        let chat = &report().chats[1];
        let view = |result: &str, reason: Option<&str>| DeliveryView {
            at: "2025-06-01T12:00:01Z".into(),
            queued_at: "2025-06-01T12:00:00Z".into(),
            latency_ms: 1500,
            kind: "post_created".into(),
            topic: Some(7),
            post: Some(2),
            title: "<img src=x onerror=alert(1)>".into(),
            result: result.into(),
            remote_id: (result == "sent").then(|| "<m1>".into()),
            reason: reason.map(Into::into),
            next_attempt_at: (result == "retried").then(|| "2025-06-01T12:01:00Z".into()),
        };
        let html = render_chat(
            chat,
            &[
                view("sent", None),
                view("retried", Some("HTTP 503 <b>")),
                view("dead_lettered", Some("HTTP 400")),
            ],
        );
        assert!(html.contains("<h1>&lt;script&gt;alert(1)&lt;/script&gt;</h1>"));
        assert!(!html.contains("<img") && !html.contains("<b>") && !html.contains("<m1>"));
        assert!(html.contains("post created · topic 7 post 2: &lt;img src=x onerror=alert(1)&gt;"));
        assert!(html.contains("<span class=\"ok\">sent</span> as <code>&lt;m1&gt;</code>"));
        assert!(html.contains("<span class=\"warn\">retried</span>"));
        assert!(html.contains("HTTP 503 &lt;b&gt;"));
        assert!(html.contains(
            "<span class=\"error\">dead-lettered</span><pre class=\"reason\">HTTP 400</pre>"
        ));
        assert!(html.contains(">1.5 s</td>"));
        assert!(html.contains("title=\"2025-06-01T12:00:01Z\""));
        assert_eq!(html.matches("<tr class=\"delivery ").count(), 3);
        assert!(html.contains("<svg class=\"hours big\" role=\"img\""));
        assert!(render_chat(chat, &[]).contains("None yet."));
        assert_eq!(latency(20), "20 ms");
        assert_eq!(latency(3 * 60_000), "3 min");
    }
}
