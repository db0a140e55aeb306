//! `users`: signups, approvals, group membership, badges, suspensions.
//! A signup that needs approval says so (where the payload tells:
//! `approved: false`; otherwise the review queue's user item does).
//!
//! Only the username, display name, trust level and group names are read:
//! emails, IPs and the rest of the user serializer never reach a message
//! (or a template). Group and badge payloads carry ids only; groups are
//! named from `/site.json` where the relay has learned it.

use serde::Deserialize;

use super::{Draft, Family, FilterKind, Incoming, Look, Private, Source, notice, who};
use crate::ingest::event::{Change, Notice};
use crate::ingest::forum::ForumState;

pub static FAMILY: Family = Family {
    name: "users",
    about: "users: signups (and whether they wait for approval), approvals, group membership, badges, suspensions",
    events: &[
        "user_created",
        "user_approved",
        "user_added_to_group",
        "user_removed_from_group",
        "user_badge_granted",
        "user_badge_revoked",
        "user_suspended",
        "user_unsuspended",
        "user_promoted",
        "user_destroyed",
    ],
    filters: &[FilterKind::Group],
    private: Private::Nothing,
    slot: 2,
    source: Source::Payload(parse),
    finish: Some(name_group),
    look: Look {
        color: 0x0E76BD,
        action: "View user",
    },
};

#[derive(Debug, Deserialize)]
struct User {
    #[serde(default)]
    id: Option<u64>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    trust_level: Option<u64>,
    /// Sent by some serializers; `false` = waits for a moderator.
    #[serde(default)]
    approved: Option<bool>,
    #[serde(default)]
    groups: Vec<Named>,
}

#[derive(Debug, Deserialize)]
struct Named {
    #[serde(default)]
    name: Option<String>,
}

/// `group_user` and `user_badge` bodies: ids only.
#[derive(Debug, Deserialize)]
struct Ids {
    #[serde(default)]
    user_id: Option<u64>,
    #[serde(default)]
    group_id: Option<u64>,
    #[serde(default)]
    badge_id: Option<u64>,
}

fn parse(i: &Incoming<'_>) -> Result<Draft, serde_json::Error> {
    let n = match i.key {
        "group_user" | "user_badge" => {
            let ids: Ids = serde_json::from_str(i.payload)?;
            let user = ids
                .user_id
                .map_or("a user".into(), |u| format!("user #{u}"));
            let (mark, title, url) = match (i.event, ids.group_id, ids.badge_id) {
                ("user_added_to_group" | "user_removed_from_group", Some(g), _) => {
                    let verb = match i.event {
                        "user_added_to_group" => "added to",
                        _ => "removed from",
                    };
                    (
                        "👥",
                        format!("{user} {verb} group #{g}"),
                        format!("{}/g", i.forum),
                    )
                }
                (_, _, Some(b)) => {
                    let verb = match i.event {
                        "user_badge_revoked" => "revoked from",
                        _ => "granted to",
                    };
                    (
                        "🏅",
                        format!("Badge #{b} {verb} {user}"),
                        format!("{}/badges/{b}", i.forum),
                    )
                }
                _ => (
                    "👤",
                    format!("{} for {user}", event_words(i.event)),
                    i.forum.to_string(),
                ),
            };
            let mut n = notice(&FAMILY, Change::Opened, mark, title, url);
            n.data = serde_json::json!({"user_id": ids.user_id, "group_id": ids.group_id, "badge_id": ids.badge_id});
            n
        }
        _ => {
            let u: User = serde_json::from_str(i.payload)?;
            let username = u.username.clone().unwrap_or_default();
            let shown = match username.is_empty() {
                true => u.id.map_or("a user".into(), |id| format!("user #{id}")),
                false => who(u.name.as_deref(), &username),
            };
            let (mark, mut title) = match i.event {
                "user_created" => ("👋", format!("New user: {shown}")),
                "user_approved" => ("✅", format!("User approved: {shown}")),
                "user_suspended" => ("⛔", format!("User suspended: {shown}")),
                "user_unsuspended" => ("↩️", format!("User unsuspended: {shown}")),
                "user_destroyed" => ("🗑️", format!("User deleted: {shown}")),
                "user_promoted" => (
                    "⬆️",
                    match u.trust_level {
                        Some(tl) => format!("{shown} reached trust level {tl}"),
                        None => format!("{shown} was promoted"),
                    },
                ),
                other => ("👤", format!("{}: {shown}", event_words(other))),
            };
            if i.event == "user_created" && u.approved == Some(false) {
                title.push_str(", waiting for approval");
            }
            let url = match username.is_empty() {
                true => i.forum.to_string(),
                false => format!("{}/u/{}", i.forum, path_segment(&username)),
            };
            let mut n = notice(&FAMILY, Change::Opened, mark, title, url);
            n.groups = (u.groups.iter())
                .filter_map(|g| g.name.as_deref())
                .map(str::to_lowercase)
                .collect();
            n.data = serde_json::json!({
                "username": username,
                "name": u.name,
                "trust_level": u.trust_level,
                "groups": n.groups,
            });
            n
        }
    };
    Ok(Draft {
        notice: n,
        topic: None,
    })
}

/// A group event's group by name, where `/site.json` named it: in the
/// headline, the link, and what `group` filters match.
fn name_group(n: &mut Notice, state: &ForumState) {
    let Some(id) = n.data["group_id"].as_u64() else {
        return;
    };
    let Some(name) = state.group_name(id) else {
        return;
    };
    n.title = n
        .title
        .replace(&format!("group #{id}"), &format!("group {name}"));
    n.url = format!("{}/{}", n.url, path_segment(name));
    n.groups = vec![name.to_lowercase()];
}

/// `user_suspended` → `User suspended`.
fn event_words(event: &str) -> String {
    let words = event.replace('_', " ");
    let mut c = words.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => words,
    }
}

/// A username or group name in a URL path (they may hold characters a
/// path cannot; `-`, `_` and `.` are common and stay).
fn path_segment(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}
