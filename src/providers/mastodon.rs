//! `mastodon`: a status, `POST {instance}/api/v1/statuses`, with the
//! account's token as `Authorization: Bearer` (scope `write:statuses`); body
//! `{"status","visibility","spoiler_text"?,"language"?}`. The "chat" is the
//! account's timeline, with its own `visibility` and content warning.
//!
//! Plain text, but `@user[@domain]` notifies: `break_mentions` puts U+200B
//! after every `@` Mastodon's `Account::MENTION_RE` would take, template
//! included (strictest reading; unit-tested on its cases). `max_chars`
//! (default 500) covers status and warning; a URL, which Mastodon counts
//! as 23, is counted as its length plus 12, so a cut status always fits.
//!
//! An `Idempotency-Key` (kept an hour) makes a retry return the first
//! status. The status `id` is the remote id for replies (`in_reply_to_id`),
//! edits (`PUT /api/v1/statuses/:id`) and deletes. Errors `{"error"}`: 429
//! waits for `X-RateLimit-Reset`, other 4xx are permanent with a hint
//! (shared/providers.md §3).

use super::kit::prelude::*;
use serde::Serialize;

use crate::render::text::truncate;

pub const REGISTRATION: Registration =
    kit::registration::<Mastodon>("mastodon", "Mastodon status on an account (access token)");

/// Mastodon's default status limit (`StatusLengthValidator::MAX_CHARS`);
/// instances may raise it (`/api/v2/instance`).
const DEFAULT_MAX_CHARS: usize = 500;

/// The `max_chars` accepted: room for a title and a link, at least.
const MIN_MAX_CHARS: usize = 50;
const MAX_MAX_CHARS: usize = 100_000;

/// What a URL may add to the count beyond its own length: Mastodon counts a
/// URL as 23 characters, and the shortest URL (`http://a.bc`) has 11.
const URL_SLACK: usize = 23 - 11;

/// Posting limit per account: 300 statuses per 3 hours (Mastodon
/// `RateLimiter` family `statuses`).
const STATUSES_PER_3H: u32 = 300;

/// Who sees a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(rename = "MastodonVisibility")]
pub enum Visibility {
    /// Everyone, and the public timelines.
    Public,
    /// Everyone with the link and the followers, kept off public timelines and hashtag pages.
    Unlisted,
    /// Followers only.
    Private,
    /// Mentioned accounts only: since the relay breaks every mention, nobody but the account itself.
    Direct,
}

/// `[providers.NAME]` for `kind = "mastodon"`: one account on one instance.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(rename = "MastodonSettings")]
pub struct Settings {
    /// The instance's base URL, e.g. `https://mastodon.social`. Required.
    pub instance: Option<Located<String>>,
    /// Access token of the posting account, as `${VAR}` (Preferences → Development → New application, scope `write:statuses`). Sent as `Authorization: Bearer`. Required.
    pub access_token: Option<Located<String>>,
    /// Who sees the statuses: `public`, `unlisted` (default), `private` (followers only) or `direct`. A chat may override it.
    pub visibility: Option<Located<Visibility>>,
    /// Content warning shown before each status (Mastodon's `spoiler_text`); counts toward `max_chars`. A chat may override it. Default none.
    pub spoiler_text: Option<Located<String>>,
    /// ISO 639 language code of the statuses, e.g. `en`. Default: Mastodon guesses.
    pub language: Option<Located<String>>,
    /// The instance's status length limit (default 500; see `/api/v2/instance` `configuration.statuses.max_characters`). Longer statuses are cut with `…`.
    #[schemars(with = "Option<u32>", range(min = 50, max = 100000))]
    pub max_chars: Option<Located<i64>>,
}

/// Chat fields for a Mastodon chat (all optional: the account is the destination).
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(rename = "MastodonTarget")]
pub struct Target {
    /// This chat's status visibility, instead of the provider's: `public`, `unlisted`, `private` or `direct`.
    pub visibility: Option<Located<Visibility>>,
    /// This chat's content warning, instead of the provider's (`""` for none).
    pub spoiler_text: Option<Located<String>>,
}

#[derive(Debug)]
struct Mastodon {
    instance: Option<String>,
    token: Option<Secret>,
    visibility: Visibility,
    spoiler_text: Option<String>,
    language: Option<String>,
    max_chars: usize,
}

impl Provider for Mastodon {
    type Settings = Settings;
    type Target = Target;

    fn new(s: Settings, table: &Table, cx: &mut Ctx<'_>) -> Option<Self> {
        let instance = kit::opt_base_url(cx, "instance", &s.instance)?;
        let token = cx.opt_secret("access_token", &s.access_token)?;
        let max_chars = match &s.max_chars {
            None => DEFAULT_MAX_CHARS,
            Some(m) => match usize::try_from(*m.get_ref()) {
                Ok(n) if (MIN_MAX_CHARS..=MAX_MAX_CHARS).contains(&n) => n,
                _ => {
                    let range = format!("between {MIN_MAX_CHARS} and {MAX_MAX_CHARS}");
                    return kit::reject(cx, Some(m.span()), format!("`max_chars` must be {range}"));
                }
            },
        };
        let language = match &s.language {
            Some(l) if !is_language_code(l.get_ref().trim()) => {
                let msg = "`language` must be an ISO 639 code like \"en\" or \"pt-BR\"";
                return kit::reject(cx, Some(l.span()), msg);
            }
            l => l.as_ref().map(|l| l.get_ref().trim().to_string()),
        };
        let spoiler_text = match &s.spoiler_text {
            Some(t) => spoiler(t, max_chars, cx)?,
            None => None,
        };
        let p = Mastodon {
            instance,
            token,
            visibility: visibility(&s.visibility, cx).unwrap_or(Visibility::Unlisted),
            spoiler_text,
            language,
            max_chars,
        };
        table.complete(cx, p.incomplete())?;
        Some(p)
    }

    fn bind_target(self: Arc<Self>, t: Target, chat: Span, cx: &mut Ctx<'_>) -> Bound {
        let (Some(instance), Some(token)) = (&self.instance, &self.token) else {
            let what = "`instance` and `access_token = \"${MASTODON_TOKEN}\"`";
            return kit::reject(cx, chat, kit::chat_needs("mastodon", what));
        };
        let visibility = visibility(&t.visibility, cx).unwrap_or(self.visibility);
        let spoiler_text = match &t.spoiler_text {
            Some(s) => spoiler(s, self.max_chars, cx)?,
            None => self.spoiler_text.clone(),
        };
        Some(Box::new(MastodonChat {
            instance: instance.clone(),
            token: token.clone(),
            visibility,
            spoiler_text,
            provider: self,
        }))
    }
}

impl Mastodon {
    /// The problem of a table that lacks a required key ([`kit::needs`]).
    fn incomplete(&self) -> Option<String> {
        let keys = [
            (
                self.instance.is_none(),
                "`instance` (e.g. \"https://mastodon.social\")",
            ),
            (
                self.token.is_none(),
                "`access_token` (e.g. \"${MASTODON_TOKEN}\")",
            ),
        ];
        kit::needs("mastodon", " and ", &keys)
    }
}

/// `en`, `fra`, `pt-BR`, `zh-Hant`: a language and an optional subtag.
fn is_language_code(code: &str) -> bool {
    let (lang, sub) = match code.split_once('-') {
        Some((l, s)) => (l, Some(s)),
        None => (code, None),
    };
    (2..=3).contains(&lang.len())
        && lang.chars().all(|c| c.is_ascii_alphabetic())
        && sub.is_none_or(|s| {
            (2..=8).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric())
        })
}

/// A content warning: `None` when empty; an error when it leaves too little
/// room for the status under `max_chars`.
fn spoiler(t: &Located<String>, max_chars: usize, cx: &mut Ctx<'_>) -> Option<Option<String>> {
    let text = t.get_ref().trim();
    if text.is_empty() {
        return Some(None);
    }
    if weight(text) + MIN_MAX_CHARS / 2 > max_chars {
        let msg = format!(
            "`spoiler_text` counts toward the {max_chars} characters of a status and leaves too little room: shorten it"
        );
        return kit::reject(cx, Some(t.span()), msg);
    }
    Some(Some(break_mentions(text)))
}

/// The visibility set, if any; `direct` is worth a warning.
fn visibility(v: &Option<Located<Visibility>>, cx: &mut Ctx<'_>) -> Option<Visibility> {
    let v = v.as_ref()?;
    if *v.get_ref() == Visibility::Direct {
        let msg = "`direct` statuses reach only the accounts they mention, and the relay breaks every mention: only the posting account will see them";
        cx.warning(Some(v.span()), msg);
    }
    Some(*v.get_ref())
}

#[derive(Debug)]
struct MastodonChat {
    instance: String,
    token: Secret,
    visibility: Visibility,
    spoiler_text: Option<String>,
    /// The `language` and `max_chars` of every chat of the account.
    provider: Arc<Mastodon>,
}

impl kit::Chat for MastodonChat {
    const KIND: &str = REGISTRATION.kind;

    fn probe(&self) -> Probe {
        let url = format!("{}/api/v1/accounts/verify_credentials", self.instance);
        let get = HttpRequest::get(Secret::new(url)).bearer(&self.token);
        Probe::Http(vec![probe::step("verify_credentials", get, |r| {
            let ok =
                |b: &Value| Judgement::pass(format!("token works: @{}", probe::text(b, "/acct")));
            let err = |b: &Value| kit::first_str(b, &["/error"]);
            // 403: a valid token without a read scope (posting may still work).
            if r.status == 403 {
                let said = probe::status_text(r);
                return Judgement::warn(
                    said,
                    "the token cannot read its account (no read:accounts or profile scope): posting is not checked",
                );
            }
            probe::rest(
                r,
                ok,
                err,
                "the access token was rejected (or lacks read:accounts / profile)",
                "no Mastodon API there: check instance",
            )
        })])
    }
    const DIALECT: Dialect = Dialect::Plain;
    // The answer is the status, with its `id`: replies (`in_reply_to_id`),
    // edits (`PUT /api/v1/statuses/:id`) and deletions all work.
    const CAPS: Capabilities = Capabilities::ALL;
    const RATE: Option<Rate> = Some(Rate::per_secs(STATUSES_PER_3H, 3 * 3600));

    fn target(&self) -> String {
        let host = url::Url::parse(&self.instance)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_else(|| "mastodon".to_string());
        let visibility = json!(self.visibility);
        format!("{host} ({})", visibility.as_str().unwrap_or_default())
    }

    fn request(&self, msg: &Message<'_>) -> Outbound {
        let budget = self
            .provider
            .max_chars
            .saturating_sub(self.spoiler_text.as_deref().map_or(0, weight));
        let mut body = json!({
            "status": fit(&break_mentions(msg.text), budget),
            "visibility": self.visibility,
        });
        if let Some(s) = &self.spoiler_text {
            body["spoiler_text"] = json!(s);
        }
        if let Some(l) = &self.provider.language {
            body["language"] = json!(l);
        }
        let statuses = format!("{}/api/v1/statuses", self.instance);
        let req = match msg.action {
            Action::Post { thread } => {
                if let Some(root) = thread.and_then(|t| t.root) {
                    body["in_reply_to_id"] = json!(root);
                }
                // Retries of one delivery share it; two posts never do.
                let key = kit::message_key("discourse-relay/mastodon/1", msg, &[&body]);
                HttpRequest::post_json(&Secret::new(statuses), &body)
                    .header("Idempotency-Key", Secret::new(key))
            }
            Action::Edit { remote_id } => {
                // `PUT` takes no visibility: the status keeps its own.
                if let Some(o) = body.as_object_mut() {
                    o.remove("visibility");
                }
                HttpRequest::put_json(&id_url(&statuses, remote_id), &body)
            }
            Action::Delete { remote_id } => HttpRequest::delete(id_url(&statuses, remote_id)),
        };
        Outbound::Http(req.bearer(&self.token))
    }

    fn classify(&self, resp: &HttpResponse) -> Outcome {
        classify_answer(resp, jiff::Timestamp::now())
    }
}

/// `text` with a zero-width space after every `@` that Mastodon would take
/// for the start of a mention: not after a word character, `=` or `/`, and
/// followed by a letter, digit or `_`. Any non-ASCII character before an `@`
/// counts as a non-word character here, so in doubt the mention is broken.
fn break_mentions(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len() + 16);
    for (i, &c) in chars.iter().enumerate() {
        out.push(c);
        let next_starts_name = chars
            .get(i + 1)
            .is_some_and(|n| n.is_alphanumeric() || *n == '_');
        let glued = i.checked_sub(1).is_some_and(|p| {
            let p = chars[p];
            p.is_ascii_alphanumeric() || matches!(p, '_' | '=' | '/')
        });
        if c == '@' && next_starts_name && !glued {
            out.push('\u{200B}');
        }
    }
    out
}

/// An upper bound of Mastodon's count for `text`: characters (never fewer
/// than its graphemes), plus [`URL_SLACK`] per URL scheme.
fn weight(text: &str) -> usize {
    text.chars().count() + URL_SLACK * schemes(text)
}

/// How many `http://` or `https://` occur in `text` (any case).
fn schemes(text: &str) -> usize {
    let lower = text.to_ascii_lowercase();
    lower.matches("http://").count() + lower.matches("https://").count()
}

/// `text` cut (at a word boundary, ending in `…`) so that its [`weight`]
/// fits `budget`, keeping as much as possible.
fn fit(text: &str, budget: usize) -> String {
    if weight(text) <= budget {
        return text.to_string();
    }
    let fits = |n: usize| weight(&truncate(text, n)) <= budget;
    // Cutting to `budget - all the slack` characters always fits; find the
    // longest cut that still does.
    let mut lo = budget.saturating_sub(URL_SLACK * schemes(text));
    let mut hi = budget;
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    truncate(text, lo)
}

/// Mastodon's `{"error"}`; OAuth (Doorkeeper) errors may add
/// `error_description`, which is then the better text.
const SPEC: Spec = Spec {
    error: |_, body| {
        let m = body["error_description"]
            .as_str()
            .or(body["error"].as_str())?;
        Some(truncate(m.trim(), 200)).filter(|m| !m.is_empty())
    },
    ..Spec::plain("mastodon")
};

fn classify_answer(resp: &HttpResponse, now: jiff::Timestamp) -> Outcome {
    let body = kit::json_body(resp);
    match resp.status {
        // The status exists even if the answer is odd: never post it twice.
        200..=299 => Outcome::Sent {
            remote_id: body["id"].as_str().map(str::to_string),
        },
        // Deleted on the instance: nothing left to delete, nothing to edit
        // (a reply to a deleted status answers another 404: an error).
        404 if body["error"] == "Record not found" => Outcome::Sent { remote_id: None },
        429 => Outcome::Retry {
            reason: format!("mastodon: {}", SPEC.describe(resp, &body)),
            after: resp
                .retry_after()
                .or_else(|| reset_after(resp.header("X-RateLimit-Reset")?, now)),
        },
        status => match kit::classify_json(resp, &SPEC) {
            Outcome::Permanent { reason } => Outcome::Permanent {
                reason: format!("{reason}{}", hint(status, &reason)),
            },
            other => other,
        },
    }
}

fn hint(status: u16, reason: &str) -> &'static str {
    match status {
        401 => " (the access token was rejected: revoked or mistyped; create a new one)",
        403 => {
            " (the token lacks the write:statuses scope, or the account is disabled or suspended)"
        }
        404 if reason.contains("reply to") => " (the status this replies to was deleted)",
        404 => " (no Mastodon API there: check `instance`)",
        422 if reason.contains("character limit") => {
            " (the status is too long for the instance: lower `max_chars`)"
        }
        422 => " (Mastodon refused the status: check the template and settings)",
        _ => "",
    }
}

/// The wait until an `X-RateLimit-Reset` time (ISO 8601), from `now`.
fn reset_after(value: &str, now: jiff::Timestamp) -> Option<Duration> {
    let reset: jiff::Timestamp = value.trim().parse().ok()?;
    Some(retry_hint::until_unix_millis(
        reset.as_millisecond(),
        now.as_millisecond(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::testkit::{
        body, header, http, post, reply, request, resp, settings_problems,
    };
    use std::collections::HashMap;
    use toml_edit::{Document, Item};

    const TOKEN: &str = "canary-mastodon-token-4242";

    fn chat(spoiler: Option<&str>, max_chars: usize, language: Option<&str>) -> MastodonChat {
        MastodonChat {
            instance: "https://social.example.org".into(),
            token: Secret::new(TOKEN),
            visibility: Visibility::Unlisted,
            spoiler_text: spoiler.map(str::to_string),
            provider: Arc::new(Mastodon {
                instance: Some("https://social.example.org".into()),
                token: Some(Secret::new(TOKEN)),
                visibility: Visibility::Unlisted,
                spoiler_text: None,
                language: language.map(str::to_string),
                max_chars,
            }),
        }
    }

    /// The request for `text` in chat `name` against `ctx`.
    fn request_in(
        c: &MastodonChat,
        name: &str,
        text: &str,
        ctx: &serde_json::Value,
    ) -> HttpRequest {
        http(c.request(&Message {
            chat: name,
            text,
            context: ctx,
            card: None,
            custom: None,
            action: Default::default(),
            delivery: None,
        }))
    }

    fn bearer(r: &HttpRequest) -> Option<&str> {
        header(r, "Authorization")
    }

    #[test]
    fn request_shape() {
        let c = chat(Some("forum"), 500, Some("en"));
        let r = post(&c, "Hello @everyone (https://f.example/t/x/7/1)");
        assert_eq!(r.method, "POST");
        assert_eq!(r.url.expose(), "https://social.example.org/api/v1/statuses");
        assert_eq!(
            body(&r),
            json!({
                "status": "Hello @\u{200B}everyone (https://f.example/t/x/7/1)",
                "visibility": "unlisted",
                "spoiler_text": "forum",
                "language": "en",
            })
        );
        assert_eq!(bearer(&r), Some(format!("Bearer {TOKEN}").as_str()));
        let key = header(&r, "Idempotency-Key").unwrap();
        assert!(key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(!r.body.contains(TOKEN) && !r.url.expose().contains(TOKEN));
        assert_eq!(c.target(), "social.example.org (unlisted)");
    }

    #[test]
    fn thread_edit_and_delete_requests() {
        let c = chat(Some("forum"), 500, None);
        let req = |action| request(&c, "new @alice", action);
        let opens = req(reply(None));
        assert!(body(&opens).get("in_reply_to_id").is_none());
        let answer = req(reply(Some("109876543210")));
        assert_eq!(answer.method, "POST");
        assert_eq!(
            body(&answer),
            json!({
                "status": "new @\u{200B}alice",
                "visibility": "unlisted",
                "spoiler_text": "forum",
                "in_reply_to_id": "109876543210",
            })
        );
        // The reply is another post than the opening one: another key.
        assert_ne!(
            header(&opens, "Idempotency-Key"),
            header(&answer, "Idempotency-Key")
        );
        let url = "https://social.example.org/api/v1/statuses/109876543210";
        let edit = req(Action::Edit {
            remote_id: "109876543210",
        });
        assert_eq!((edit.method, edit.url.expose()), ("PUT", url));
        assert_eq!(
            body(&edit),
            json!({"status": "new @\u{200B}alice", "spoiler_text": "forum"})
        );
        assert_eq!(bearer(&edit), Some(format!("Bearer {TOKEN}").as_str()));
        assert!(header(&edit, "Idempotency-Key").is_none());
        let delete = req(Action::Delete {
            remote_id: "109876543210",
        });
        assert_eq!((delete.method, delete.url.expose()), ("DELETE", url));
        assert!(delete.body.is_empty());
        assert_eq!(bearer(&delete), Some(format!("Bearer {TOKEN}").as_str()));
    }

    #[test]
    fn classifies_edit_and_delete_answers() {
        let now = jiff::Timestamp::now();
        // DELETE answers the deleted status.
        assert_eq!(
            classify_answer(&resp(200, &[], r#"{"id":"109876543210","text":"x"}"#), now),
            Outcome::Sent {
                remote_id: Some("109876543210".into())
            }
        );
        // Already deleted: done.
        assert_eq!(
            classify_answer(&resp(404, &[], r#"{"error":"Record not found"}"#), now),
            Outcome::Sent { remote_id: None }
        );
        let out = classify_answer(
            &resp(
                404,
                &[],
                r#"{"error":"The post you are trying to reply to does not appear to exist."}"#,
            ),
            now,
        );
        assert!(
            matches!(&out, Outcome::Permanent { reason } if reason.contains("replies to was deleted")),
            "{out:?}"
        );
    }

    #[test]
    fn idempotency_key_is_stable_and_distinct() {
        let ctx = json!({"event": "post_created", "topic": {"id": 7}, "post": {"id": 9}});
        let other = json!({"event": "post_created", "topic": {"id": 7}, "post": {"id": 10}});
        let key = |c: &MastodonChat, name: &str, text: &str, ctx: &serde_json::Value| {
            let r = request_in(c, name, text, ctx);
            header(&r, "Idempotency-Key").unwrap().to_string()
        };
        let c = chat(None, 500, None);
        assert_eq!(key(&c, "a", "x", &ctx), key(&c, "a", "x", &ctx));
        assert_ne!(key(&c, "a", "x", &ctx), key(&c, "b", "x", &ctx));
        assert_ne!(key(&c, "a", "x", &ctx), key(&c, "a", "y", &ctx));
        assert_ne!(key(&c, "a", "x", &ctx), key(&c, "a", "x", &other));
        let mut public = chat(None, 500, None);
        public.visibility = Visibility::Public;
        assert_ne!(key(&c, "a", "x", &ctx), key(&public, "a", "x", &ctx));
        // The key of a fixed message stays what it was (a retry after an
        // upgrade must not post twice).
        assert_eq!(
            key(&c, "a", "x", &ctx),
            crate::providers::kit::sha256_hex(&json!([
                "discourse-relay/mastodon/1",
                "a",
                "post_created",
                7,
                9,
                {"status": "x", "visibility": "unlisted"}
            ]))
        );
    }

    #[test]
    fn mentions_are_broken_like_mastodon_parses_them() {
        let cases = [
            ("@alice hi", "@\u{200B}alice hi"),
            (
                "cc @alice@mastodon.social.",
                "cc @\u{200B}alice@mastodon.social.",
            ),
            ("(@Bob_2)", "(@\u{200B}Bob_2)"),
            ("<@U024BE7LH>", "<@\u{200B}U024BE7LH>"),
            ("mail bob@example.com", "mail bob@example.com"),
            (
                "https://social.example/@alice",
                "https://social.example/@alice",
            ),
            ("https://x.example/?u=@alice", "https://x.example/?u=@alice"),
            ("a @ b, @@, trailing @", "a @ b, @@, trailing @"),
            ("é@alice", "é@\u{200B}alice"),
            ("@élodie", "@\u{200B}élodie"),
        ];
        for (input, want) in cases {
            assert_eq!(break_mentions(input), want, "{input}");
        }
    }

    #[test]
    fn long_statuses_fit_mastodons_count() {
        let text = format!(
            "Title (https://f.example/t/1) by me\n{}",
            "word ".repeat(200)
        );
        let c = chat(Some("CW"), 500, None);
        let b = body(&request_in(&c, "c", &text, &json!({})));
        let status = b["status"].as_str().unwrap();
        assert!(status.ends_with('…'), "{status}");
        assert!(status.starts_with("Title (https://f.example/t/1) by me\nword"));
        // Mastodon's count: URL as 23, plus the content warning.
        let url = "https://f.example/t/1";
        let mastodon_count = status.chars().count() - url.chars().count() + 23 + 2;
        assert!(mastodon_count <= 500, "{mastodon_count}");
        // Close to the limit: only the slack of one URL is lost.
        assert!(mastodon_count >= 500 - URL_SLACK - 5, "{mastodon_count}");
        // Short text is untouched; many URLs are accounted for.
        assert_eq!(fit("short", 500), "short");
        let urls = "https://a.example ".repeat(40);
        let cut = fit(&urls, 500);
        assert!(cut.ends_with('…') && weight(&cut) <= 500, "{cut}");
        assert!(weight(&cut) > 500 - 40, "{}", weight(&cut));
    }

    #[test]
    fn classifies_mastodon_answers() {
        let now: jiff::Timestamp = "2026-11-25T04:00:00Z".parse().unwrap();
        let c = |status, headers: &[(&str, &str)], body| {
            classify_answer(&resp(status, headers, body), now)
        };
        assert_eq!(
            c(
                200,
                &[],
                r#"{"id":"113456789012345678","content":"<p>x</p>"}"#
            ),
            Outcome::Sent {
                remote_id: Some("113456789012345678".into())
            }
        );
        assert_eq!(
            c(
                429,
                &[
                    ("X-RateLimit-Limit", "300"),
                    ("X-RateLimit-Remaining", "0"),
                    ("X-RateLimit-Reset", "2026-11-25T04:05:30.123456Z")
                ],
                r#"{"error":"Too many requests"}"#
            ),
            Outcome::Retry {
                reason: "mastodon: HTTP 429: Too many requests".into(),
                after: Some(Duration::from_millis(330_123))
            }
        );
        // A reset in the past: retry now; garbage: the backoff decides.
        assert!(matches!(
            c(429, &[("X-RateLimit-Reset", "2026-11-25T03:00:00Z")], ""),
            Outcome::Retry { after: Some(d), .. } if d.is_zero()
        ));
        assert!(matches!(
            c(429, &[("X-RateLimit-Reset", "soon")], ""),
            Outcome::Retry { after: None, .. }
        ));
        assert!(matches!(
            c(502, &[], "<html>Bad Gateway</html>"),
            Outcome::Retry { .. }
        ));
        let cases = [
            (
                401,
                r#"{"error":"The access token is invalid"}"#,
                "access token was rejected",
            ),
            (
                401,
                r#"{"error":"invalid_token","error_description":"The access token was revoked"}"#,
                "The access token was revoked",
            ),
            (
                403,
                r#"{"error":"This action is outside the authorized scopes"}"#,
                "write:statuses",
            ),
            (404, "<html>Not Found</html>", "check `instance`"),
            (
                422,
                r#"{"error":"Validation failed: Text character limit of 500 exceeded"}"#,
                "lower `max_chars`",
            ),
            (
                422,
                r#"{"error":"Validation failed: Text can't be blank"}"#,
                "Text can't be blank",
            ),
        ];
        for (status, body, want) in cases {
            let out = c(status, &[], body);
            let Outcome::Permanent { reason } = &out else {
                panic!("{status} {body} should be permanent: {out:?}")
            };
            assert!(reason.contains(want), "{reason} lacks {want}");
            assert!(!reason.contains(TOKEN));
        }
        // The reason's exact text, hint included.
        assert_eq!(
            c(404, &[], r#"{"error":"  Not here "}"#),
            Outcome::Permanent {
                reason: "mastodon: HTTP 404: Not here (no Mastodon API there: check `instance`)"
                    .into()
            }
        );
    }

    #[test]
    fn settings_are_validated() {
        let env: HashMap<String, String> = [("TOK".to_string(), TOKEN.to_string())].into();
        for (text, want) in [
            ("instance = \"https://m.example\"", "needs `access_token`"),
            ("access_token = \"${TOK}\"", "needs `instance`"),
            (
                "instance = \"https://m.example\"\naccess_token = \"literal-token\"",
                "must be an environment reference",
            ),
            (
                "instance = \"mastodon.social\"\naccess_token = \"${TOK}\"",
                "absolute http",
            ),
            (
                "instance = \"https://m.example\"\naccess_token = \"${TOK}\"\nvisibility = \"friends\"",
                "unknown value",
            ),
            (
                "instance = \"https://m.example\"\naccess_token = \"${TOK}\"\nmax_chars = 10",
                "between 50 and 100000",
            ),
            (
                "instance = \"https://m.example\"\naccess_token = \"${TOK}\"\nlanguage = \"English\"",
                "ISO 639",
            ),
            (
                "instance = \"https://m.example\"\naccess_token = \"${TOK}\"\nmax_chars = 50\nspoiler_text = \"a rather long content warning\"",
                "too little room",
            ),
        ] {
            let (parsed, msgs) = settings_problems(&REGISTRATION, &[("TOK", TOKEN)], text);
            assert!(!parsed, "{text}");
            assert!(msgs.iter().any(|m| m.contains(want)), "{text}: {msgs:?}");
            assert!(
                msgs.iter()
                    .all(|m| !m.contains(TOKEN) && !m.contains("literal-token"))
            );
        }
        // A bare `provider = "mastodon"` chat: reported at the chat.
        let mut cx = Ctx::new(&env, crate::config::de::MissingEnv::Warn);
        let empty = Item::Table(toml_edit::Table::new());
        let inst = (REGISTRATION.parse)(&empty, &mut cx).unwrap();
        let doc = Document::parse("t = {}".to_string()).unwrap();
        assert!(inst.bind(&doc["t"], Some(0..1), &mut cx).is_none());
        assert!(cx.problems()[0].message.contains("needs `instance`"));
    }

    #[test]
    fn chats_override_visibility_and_spoiler() {
        let env: HashMap<String, String> = [("TOK".to_string(), TOKEN.to_string())].into();
        let mut cx = Ctx::new(&env, crate::config::de::MissingEnv::Error);
        let doc = Document::parse(
            "[p]\ninstance = \"https://m.example/\"\naccess_token = \"${TOK}\"\nspoiler_text = \"forum @staff\"\n[t]\nvisibility = \"direct\"\n[u]\nspoiler_text = \"\"\n".to_string(),
        )
        .unwrap();
        let inst = (REGISTRATION.parse)(&doc["p"], &mut cx).unwrap();
        let d = inst.clone().bind(&doc["t"], None, &mut cx).unwrap();
        assert_eq!(d.target(), "m.example (direct)");
        let b = body(&post(&*d, "x"));
        assert_eq!(b["visibility"], "direct");
        assert_eq!(b["spoiler_text"], "forum @\u{200B}staff");
        assert!(
            cx.problems()[0]
                .message
                .contains("only the posting account")
        );
        let d = inst.bind(&doc["u"], None, &mut cx).unwrap();
        let b = body(&post(&*d, "x"));
        assert_eq!(b["visibility"], "unlisted");
        assert!(b.get("spoiler_text").is_none());
        assert!(!cx.has_errors());
    }
}
