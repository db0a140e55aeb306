//! The forum's side of `doctor`: with an API key, `GET /site.json` (the key
//! works; the categories rules name exist) and, with an admin key,
//! `GET /admin/api/web_hooks.json` (a webhook points at this relay's
//! listener path, is active, has a secret, and sends the event types the
//! rules need). Read-only: nothing on the forum is changed.
//!
//! UNVERIFIED: the shape of `/admin/api/web_hooks.json` was not checked
//! against a live forum or its serializer. The types below are lenient (a
//! top-level array or `{"web_hooks": [...]}`; every field optional; event
//! types as objects with `name` or as plain strings); a field that is absent
//! is reported as "not shown", never as wrong.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::Value;

use super::{Check, Subject, response};
use crate::ingest::api::DiscourseApi;
use crate::ingest::payload::Site;
use crate::pipeline::Pipeline;
use crate::providers::probe::{self, Judgement, Verdict};

/// The public listener's path for forum webhooks (`http::server`'s route).
pub const WEBHOOK_PATH: &str = "/webhooks/discourse";

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Hooks {
    List(Vec<Hook>),
    Wrapped { web_hooks: Vec<Hook> },
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Hook {
    id: Option<Value>,
    payload_url: Option<String>,
    active: Option<bool>,
    /// Discourse may show the secret, mask it, or leave it out.
    secret: Option<String>,
    wildcard_web_hook: Option<bool>,
    web_hook_event_types: Vec<EventType>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum EventType {
    Named {
        name: String,
    },
    Plain(String),
    /// Anything else is skipped, not an error (the format is unverified).
    Other(#[allow(dead_code)] serde::de::IgnoredAny),
}

impl EventType {
    fn name(&self) -> Option<&str> {
        match self {
            EventType::Named { name } | EventType::Plain(name) => Some(name),
            EventType::Other(_) => None,
        }
    }
}

/// The webhook event types (Discourse's names) a family's rules need:
/// the first are required, the rest carry some of its events.
fn family_events(family: &str) -> (&'static [&'static str], &'static [&'static str]) {
    match family {
        "review" => (&["reviewable"], &[]),
        "users" => (&["user"], &["group_user", "user_badge"]),
        "likes" => (&["like"], &[]),
        "solved" => (&["solved"], &[]),
        "assign" => (&["assign"], &[]),
        "chat" => (&["chat_message"], &[]),
        "topics" => (&["topic"], &[]),
        _ => (&[], &[]),
    }
}

/// (required, wanted) event types for the rules of the forum's chats.
fn needed(p: &Pipeline, forum: usize) -> (BTreeSet<&'static str>, BTreeSet<&'static str>) {
    let (mut required, mut wanted) = (BTreeSet::new(), BTreeSet::new());
    for chat in p.config.chats.iter().filter(|c| c.forum == forum) {
        for rule in &chat.rules {
            match rule.family {
                // Posts; topic events carry edits, tags and category moves.
                None => {
                    required.insert("post");
                    wanted.insert("topic");
                }
                Some(f) => {
                    let (req, more) = family_events(f.name);
                    required.extend(req);
                    wanted.extend(more);
                }
            }
        }
    }
    wanted.retain(|w| !required.contains(w));
    (required, wanted)
}

/// The forum's checks.
pub async fn check(p: &Pipeline, forum_idx: usize) -> Vec<Check> {
    let forum = &p.config.forums[forum_idx];
    let subject = Subject {
        scope: "forum",
        name: &forum.name,
        kind: "discourse",
        target: &forum.url,
        redactor: &p.config.redactor,
    };
    let Some(key) = &forum.api_key else {
        let j = Judgement::new(
            Verdict::Info,
            "no api_key: the forum was not checked",
            "set api_key (an admin key also lets doctor check the forum's webhooks)",
        );
        return vec![subject.check("API key", j)];
    };
    let api = match DiscourseApi::new(&forum.url, key.clone(), &forum.api_username) {
        Ok(api) => api,
        Err(e) => return vec![subject.check("API key", Judgement::fail(e.to_string(), ""))],
    };
    let mut out = Vec::new();
    let site = match api.get_raw("/site.json").await {
        Ok((status, body)) => judge_site(&response(status, body), p, forum_idx),
        Err(e) => (
            Judgement::fail(e.to_string(), "the forum could not be reached: check url"),
            false,
        ),
    };
    let (j, key_works) = site;
    out.push(subject.check("/site.json (the API key works)", j));
    if !key_works {
        return out;
    }
    let j = match api.get_raw("/admin/api/web_hooks.json").await {
        Ok((status, body)) => {
            let (required, wanted) = needed(p, forum_idx);
            judge_hooks(&response(status, body), &required, &wanted)
        }
        Err(e) => Judgement::fail(e.to_string(), ""),
    };
    out.push(subject.check("the forum's webhook for this relay", j));
    out
}

/// The key's answer and whether it works; literal categories the rules name
/// (no glob characters) are looked up by slug path.
fn judge_site(
    resp: &crate::providers::HttpResponse,
    p: &Pipeline,
    forum: usize,
) -> (Judgement, bool) {
    let err = |b: &Value| crate::providers::kit::first_str(b, &["/errors/0", "/error_type"]);
    let hint = "the forum refused the key: check api_key and api_username (a user API key or a global key for that user)";
    let mut works = false;
    let j = probe::rest(
        resp,
        |b| {
            let Ok(site) = serde_json::from_value::<Site>(b.clone()) else {
                return Judgement::fail(
                    "an answer without categories",
                    "check url: is it the forum's base URL?",
                );
            };
            works = true;
            let paths = category_paths(&site);
            let mut missing: Vec<String> = Vec::new();
            for chat in p.config.chats.iter().filter(|c| c.forum == forum) {
                for rule in &chat.rules {
                    let Some(c) = &rule.category else { continue };
                    let glob = c.get_ref();
                    if !glob.contains(['*', '?', '[', '{']) && !paths.contains(glob.as_str()) {
                        missing.push(format!("{} (chat {})", glob, chat.name));
                    }
                }
            }
            let n = site.categories.len();
            if missing.is_empty() {
                Judgement::pass(format!("key works; {n} categories visible"))
            } else {
                missing.sort();
                missing.dedup();
                Judgement::warn(
                    format!("key works; categories not found: {}", missing.join(", ")),
                    "check the rules' category slugs (parent/child), or give the API user access to them",
                )
            }
        },
        err,
        hint,
        "no /site.json there: check url",
    );
    (j, works)
}

/// `parent/child` slug paths of the visible categories.
fn category_paths(site: &Site) -> BTreeSet<String> {
    let slug = |id: u64| {
        site.categories
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.slug.clone())
    };
    site.categories
        .iter()
        .map(|c| match c.parent_category_id.and_then(slug) {
            Some(parent) => format!("{parent}/{}", c.slug),
            None => c.slug.clone(),
        })
        .collect()
}

fn judge_hooks(
    resp: &crate::providers::HttpResponse,
    required: &BTreeSet<&str>,
    wanted: &BTreeSet<&str>,
) -> Judgement {
    if matches!(resp.status, 403 | 404) {
        return Judgement::warn(
            format!("webhooks not listed ({})", probe::status_text(resp)),
            "not an admin key: check Admin > Advanced > Webhooks by hand, or run doctor with an admin key",
        );
    }
    let err = |b: &Value| crate::providers::kit::first_str(b, &["/errors/0"]);
    probe::rest(resp, |b| judge_hook_list(b, required, wanted), err, "", "")
}

fn judge_hook_list(b: &Value, required: &BTreeSet<&str>, wanted: &BTreeSet<&str>) -> Judgement {
    let hooks = match serde_json::from_value::<Hooks>(b.clone()) {
        Ok(Hooks::List(h)) | Ok(Hooks::Wrapped { web_hooks: h }) => h,
        Err(_) => {
            return Judgement::warn(
                "an answer doctor cannot read (unverified format)",
                "check Admin > Advanced > Webhooks by hand",
            );
        }
    };
    let ours: Vec<&Hook> = hooks
        .iter()
        .filter(|h| {
            h.payload_url.as_deref().is_some_and(|u| {
                let path = url::Url::parse(u)
                    .map(|u| u.path().to_string())
                    .unwrap_or_default();
                path.trim_end_matches('/') == WEBHOOK_PATH
            })
        })
        .collect();
    let about = "matched on the path only: the relay's public URL is not known to it";
    let Some(hook) = ours
        .iter()
        .find(|h| h.active != Some(false))
        .or(ours.first())
    else {
        return Judgement::fail(
            format!(
                "none of the forum's {} webhooks posts to …{WEBHOOK_PATH}",
                hooks.len()
            ),
            format!(
                "add one in Admin > Advanced > Webhooks with Payload URL https://RELAY{WEBHOOK_PATH}, content type application/json and the secret ({about})"
            ),
        );
    };
    let id = hook
        .id
        .as_ref()
        .map(|v| v.to_string())
        .unwrap_or_else(|| "?".into());
    if hook.active == Some(false) {
        return Judgement::fail(format!("webhook {id} is not active"), "tick Active on it");
    }
    let ticked: BTreeSet<&str> = hook
        .web_hook_event_types
        .iter()
        .filter_map(EventType::name)
        .collect();
    let everything = hook.wildcard_web_hook == Some(true);
    let missing = |set: &BTreeSet<&str>| -> Vec<String> {
        set.iter()
            .filter(|e| !everything && !ticked.contains(**e))
            .map(|e| e.to_string())
            .collect()
    };
    let (lacking, lacking_too) = (missing(required), missing(wanted));
    if !lacking.is_empty() {
        return Judgement::fail(
            format!(
                "webhook {id} lacks the event types {} that the rules need",
                lacking.join(", ")
            ),
            "tick them in the webhook's settings (or \"Send me everything\")",
        );
    }
    let mut notes = Vec::new();
    if !lacking_too.is_empty() {
        notes.push(format!(
            "it lacks {} (edits, tags or some family events are then missed)",
            lacking_too.join(", ")
        ));
    }
    match hook.secret.as_deref() {
        Some("") => notes.push("it has no secret: set one, and the same as webhook_secret".into()),
        None => notes.push("its secret is not shown: check that it is set".into()),
        Some(_) => {}
    }
    let answer = format!("webhook {id} posts to …{WEBHOOK_PATH}, active");
    if notes
        .iter()
        .any(|n| !n.starts_with("its secret is not shown"))
    {
        Judgement::warn(answer, format!("{}; {about}", notes.join("; ")))
    } else {
        let extra = notes.first().map(|n| format!("{n}; ")).unwrap_or_default();
        Judgement::new(Verdict::Pass, answer, format!("{extra}{about}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(v: &[&'static str]) -> BTreeSet<&'static str> {
        v.iter().copied().collect()
    }

    #[test]
    fn hooks_are_judged_by_path_state_and_events() {
        let (req, want) = (set(&["post", "reviewable"]), set(&["topic"]));
        let hook = |active: bool, events: &[&str]| {
            let types: Vec<Value> = events.iter().map(|e| json!({"name": e})).collect();
            json!({"web_hooks": [{"id": 3, "payload_url": "https://relay.example/webhooks/discourse", "active": active, "secret": "s", "web_hook_event_types": types}]})
        };
        let ok = judge_hook_list(&hook(true, &["post", "reviewable", "topic"]), &req, &want);
        assert_eq!(ok.verdict, Verdict::Pass, "{ok:?}");
        let off = judge_hook_list(&hook(false, &["post", "reviewable", "topic"]), &req, &want);
        assert_eq!(off.verdict, Verdict::Fail);
        let lacking = judge_hook_list(&hook(true, &["post"]), &req, &want);
        assert!(lacking.answer.contains("reviewable"), "{lacking:?}");
        assert_eq!(lacking.verdict, Verdict::Fail);
        let no_topic = judge_hook_list(&hook(true, &["post", "reviewable"]), &req, &want);
        assert_eq!(no_topic.verdict, Verdict::Warn);
        let elsewhere = json!([{"payload_url": "https://other.example/hook", "active": true}]);
        assert_eq!(
            judge_hook_list(&elsewhere, &req, &want).verdict,
            Verdict::Fail
        );
        let wildcard = json!([{"payload_url": "https://r/webhooks/discourse/", "wildcard_web_hook": true, "secret": "x"}]);
        assert_eq!(
            judge_hook_list(&wildcard, &req, &want).verdict,
            Verdict::Pass
        );
    }
}
