//! What the admin pane and `/api/status` show, as data: filled by the
//! running relay ([`crate::service`]), rendered by [`crate::http::status`].
//! Below both, so neither imports the other for it.

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

/// A stored row that could not be read, set aside so the rest flows.
#[derive(Serialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct QuarantinedView {
    /// The table it was in (`inbox`, `queue`...).
    pub table: String,
    pub key: String,
    pub error: String,
    /// When it was set aside, RFC 3339.
    pub at: String,
}

/// The store's health as the last write found it.
#[derive(Serialize, Clone, Debug, Default)]
pub struct StorageStatus {
    pub ok: bool,
    /// Rows that could not be read and were set aside (kept in the store's
    /// `quarantine` table for inspection); the newest few in `quarantine`.
    pub quarantined: u64,
    pub quarantine: Vec<QuarantinedView>,
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
    /// Times the chat's worker crashed and its supervisor started it again.
    pub worker_restarts: u64,
    /// The last [`CHART_HOURS`] hours, oldest first, the current (partial)
    /// hour last; kept in the store, so a restart keeps them.
    pub hours: Vec<HourStatus>,
}

/// How many hourly buckets [`ChatStatus::hours`] has.
pub const CHART_HOURS: usize = 24;

/// One hour of a chat's deliveries.
#[derive(Serialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct HourStatus {
    /// When the hour starts, RFC 3339 (UTC).
    pub start: String,
    /// Accepted by the platform.
    pub delivered: u64,
    /// Given up on (dead-lettered).
    pub failed: u64,
    /// Failed attempts that were tried again.
    pub retried: u64,
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
/// Unix milliseconds as an RFC 3339 time (`""` when out of range).
pub fn rfc3339(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map(|t| t.to_string())
        .unwrap_or_default()
}
