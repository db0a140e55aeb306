//! The read-only status page: its data ([`StatusReport`], also served as
//! JSON) and its server-rendered HTML ([`render_html`]).
//!
//! The page is one self-contained HTML5 document: inline CSS, no script, a
//! viewport meta tag, and tables that stack into labelled cards on narrow
//! screens. Every dynamic string passes through [`escape_html`]. Each chat
//! row carries `id="chat-<name>"`, `data-chat="<name>"` and the class
//! `chat ok` or `chat error` (see [`ChatStatus::is_failing`]).

use std::fmt::Write as _;

use serde::Serialize;

/// How many reloads [`ConfigStatus::history`] keeps.
pub const HISTORY_LIMIT: usize = 20;

/// Everything the status page shows.
#[derive(Serialize, Clone, Debug)]
pub struct StatusReport {
    /// The relay's version (`CARGO_PKG_VERSION`).
    pub version: String,
    /// When the process started, RFC 3339.
    pub started_at: String,
    pub config: ConfigStatus,
    pub chats: Vec<ChatStatus>,
    /// Whether the durable store accepts writes; webhooks get 503 while not.
    pub storage: StorageStatus,
}

/// The store's health as the last write found it.
#[derive(Serialize, Clone, Debug, Default)]
pub struct StorageStatus {
    pub ok: bool,
    /// Why the last write failed (disk full, unwritable...), while `!ok`.
    pub error: Option<String>,
    /// When writes started failing, RFC 3339.
    pub since: Option<String>,
}

/// The configuration serving now and how reloads went.
#[derive(Serialize, Clone, Debug)]
pub struct ConfigStatus {
    /// The config file path as given on the command line.
    pub path: String,
    /// Hex SHA-256 of the serving config file.
    pub hash: String,
    /// When the serving config was loaded, RFC 3339.
    pub loaded_at: String,
    /// The latest reload attempt (successful or not); `None` before any.
    pub last_reload: Option<ReloadStatus>,
    /// Reload attempts, newest first, at most [`HISTORY_LIMIT`].
    pub history: Vec<ReloadStatus>,
}

impl ConfigStatus {
    /// Records a reload attempt: it becomes `last_reload` and the head of
    /// `history` (trimmed to [`HISTORY_LIMIT`]). On success, `hash` and
    /// `loaded_at` follow it when it carries a hash.
    pub fn record(&mut self, reload: ReloadStatus) {
        if reload.ok
            && let Some(hash) = &reload.hash
        {
            self.hash.clone_from(hash);
            self.loaded_at.clone_from(&reload.at);
        }
        self.history.insert(0, reload.clone());
        self.history.truncate(HISTORY_LIMIT);
        self.last_reload = Some(reload);
    }
}

/// One (re)load attempt.
#[derive(Serialize, Clone, Debug)]
pub struct ReloadStatus {
    /// When it was attempted, RFC 3339.
    pub at: String,
    pub ok: bool,
    /// What started it: `"start"`, `"file"`, `"sighup"` or `"http"`.
    pub trigger: String,
    /// Hex SHA-256 of the file read, when it could be read.
    pub hash: Option<String>,
    /// The problems, each `file:line:col: error: message`; empty on success.
    pub errors: Vec<String>,
}

/// One chat of the serving config and how its deliveries go.
#[derive(Serialize, Clone, Debug)]
pub struct ChatStatus {
    pub name: String,
    /// The provider instance name (`[providers.NAME]`, or the kind itself).
    pub provider: String,
    /// The provider kind (`slack`, `webhook`, ...).
    pub kind: String,
    /// The destination as shown to humans (channel, redacted URL, ...).
    pub target: String,
    /// Rules in compact form, e.g. `"watch c/support/** t/bug"`.
    pub rules: Vec<String>,
    pub delivered: u64,
    pub failed: u64,
    pub queue_depth: u64,
    pub dead_letters: u64,
    /// Last successful delivery, RFC 3339.
    pub last_success_at: Option<String>,
    pub last_error: Option<ChatError>,
}

impl ChatStatus {
    /// Failing = it has dead letters, or its last error is newer than its
    /// last success (or it never succeeded).
    pub fn is_failing(&self) -> bool {
        if self.dead_letters > 0 {
            return true;
        }
        match (&self.last_error, &self.last_success_at) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(error), Some(success)) => is_later(&error.at, success),
        }
    }
}

/// A chat's most recent delivery failure.
#[derive(Serialize, Clone, Debug)]
pub struct ChatError {
    /// RFC 3339.
    pub at: String,
    pub reason: String,
}

/// `a > b` as instants when both parse as RFC 3339, else as strings (equal
/// formats of UTC times order the same way).
fn is_later(a: &str, b: &str) -> bool {
    match (a.parse::<jiff::Timestamp>(), b.parse::<jiff::Timestamp>()) {
        (Ok(a), Ok(b)) => a > b,
        _ => a > b,
    }
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
th, td { text-align: left; vertical-align: top; padding: .4rem .5rem; border-bottom: 1px solid var(--line); overflow-wrap: anywhere; }
thead th { font-size: .85rem; color: var(--muted); }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
ul.rules { list-style: none; margin: 0; padding: 0; }
ul.rules li { white-space: pre-wrap; }
tr.chat.ok > th { border-left: 4px solid var(--ok); }
tr.chat.error { background: var(--bad-bg); }
tr.chat.error > th { border-left: 4px solid var(--err); }
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

/// The complete status page.
pub fn render_html(report: &StatusReport) -> String {
    let mut out = String::with_capacity(8 * 1024 + report.chats.len() * 1024);
    out.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>discourse-relay status</title>\n<style>",
    );
    out.push_str(STYLE);
    out.push_str("</style>\n</head>\n<body>\n");

    let _ = write!(
        out,
        "<header>\n<h1>discourse-relay status</h1>\n\
         <p class=\"muted\">version {} · started {}</p>\n</header>\n<main>\n",
        escape_html(&report.version),
        time(&report.started_at),
    );

    render_storage(&mut out, &report.storage);
    render_config(&mut out, &report.config);
    render_chats(&mut out, &report.chats);

    out.push_str("</main>\n</body>\n</html>\n");
    out
}

/// A banner, only while the store fails: webhooks are being refused.
fn render_storage(out: &mut String, storage: &StorageStatus) {
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

fn render_chats(out: &mut String, chats: &[ChatStatus]) {
    let failing = chats.iter().filter(|c| c.is_failing()).count();
    let _ = write!(
        out,
        "<section id=\"chats\" aria-labelledby=\"chats-title\">\n\
         <h2 id=\"chats-title\">Chats ({}{})</h2>\n",
        chats.len(),
        if failing > 0 {
            format!(", <span class=\"error\">{failing} failing</span>")
        } else {
            String::new()
        },
    );
    if chats.is_empty() {
        out.push_str("<p class=\"muted\">No chats configured.</p>\n</section>\n");
        return;
    }
    out.push_str(
        "<table class=\"chats\">\n<thead><tr><th scope=\"col\">Chat</th>\
         <th scope=\"col\">Provider</th><th scope=\"col\">Target</th>\
         <th scope=\"col\">Rules</th><th scope=\"col\">Delivered</th>\
         <th scope=\"col\">Failed</th><th scope=\"col\">Queue</th>\
         <th scope=\"col\">Dead letters</th><th scope=\"col\">Last success</th>\
         <th scope=\"col\">Last error</th></tr></thead>\n<tbody>\n",
    );
    for chat in chats {
        let class = if chat.is_failing() {
            "chat error"
        } else {
            "chat ok"
        };
        let name = escape_html(&chat.name);
        let _ = write!(
            out,
            "<tr id=\"{}\" class=\"{class}\" data-chat=\"{name}\">\
             <th scope=\"row\">{name}</th>\
             <td data-label=\"Provider\">{} <span class=\"muted\">({})</span></td>\
             <td data-label=\"Target\"><code>{}</code></td>\
             <td data-label=\"Rules\"><ul class=\"rules mono\">",
            chat_row_id(&chat.name),
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
             <td data-label=\"Dead letters\" class=\"num{}\">{}</td>\
             <td data-label=\"Last success\">{}</td>\
             <td data-label=\"Last error\">",
            chat.delivered,
            chat.failed,
            chat.queue_depth,
            if chat.dead_letters > 0 { " error" } else { "" },
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
        out.push_str("</td></tr>\n");
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}

/// `<time>` for an RFC 3339 string (shown as given).
fn time(at: &str) -> String {
    let at = escape_html(at);
    format!("<time datetime=\"{at}\">{at}</time>")
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
        let html = render_html(&report());
        assert!(!html.contains("<script>"), "{html}");
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
    fn page_shape() {
        let html = render_html(&report());
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<title>discourse-relay status</title>"));
        assert!(html.contains("<meta name=\"viewport\""));
        assert!(!html.contains("<script"));
        assert!(html.trim_end().ends_with("</html>"));
        assert!(html.contains("<code>/etc/relay/subscriptions.toml</code>"));
        assert!(html.contains(&format!("<code title=\"{HASH}\">9f86d081884c</code>")));
    }

    #[test]
    fn every_chat_and_rule_appears() {
        let report = report();
        let html = render_html(&report);
        for chat in &report.chats {
            assert!(html.contains(&escape_html(&chat.name)));
            for rule in &chat.rules {
                assert!(html.contains(&format!("<li>{}</li>", escape_html(rule))));
            }
        }
        assert!(html.contains("<tr id=\"chat-general\" class=\"chat ok\" data-chat=\"general\">"));
        assert!(html.contains("<li>watch c/support/** t/bug</li>"));
        assert!(html.contains("team-slack <span class=\"muted\">(slack)</span>"));
    }

    #[test]
    fn failed_reload_errors_appear() {
        let html = render_html(&report());
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
    fn storage_banner_only_while_failing() {
        let mut r = report();
        assert!(!render_html(&r).contains("id=\"storage\""));
        r.storage = StorageStatus {
            ok: false,
            error: Some("storage failed: No space left on device <x>".into()),
            since: Some("2025-06-01T12:30:00Z".into()),
        };
        let page = render_html(&r);
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
        assert_eq!(keys(&value["storage"]), ["error", "ok", "since"]);
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
                "kind",
                "last_error",
                "last_success_at",
                "name",
                "provider",
                "queue_depth",
                "rules",
                "target"
            ]
        );
        assert_eq!(keys(&value["chats"][1]["last_error"]), ["at", "reason"]);
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
}
