//! Webhook request → [`Ingested`]: one normalized [`Event`], a ping, or an
//! event the relay has no use for. Learns from every topic event on the way.

use super::event::{Event, EventKind, Post, PostType, Topic};
use super::families::{self, Draft, Family, Source, TopicHint};
use super::forum::ForumState;
use super::payload::{PostPayload, TopicPayload};
use super::request::WebhookRequest;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    Ping,
    Event(Box<Event>),
    /// A well-formed event the relay does not act on (`user_created`, ...).
    Unsupported(String),
}

/// Why a request is malformed; the text is the one-line reason of a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    #[error("body is not valid JSON: {0}")]
    BadJson(String),
    #[error("body must be an object with one key (the event type), got {0}")]
    BadEnvelope(String),
    #[error("invalid {kind} payload: {reason}")]
    BadPayload { kind: String, reason: String },
}

/// Normalizes one request. `forum_url` is the configured base URL, used when
/// the request has no `X-Discourse-Instance`.
pub fn normalize(
    req: &WebhookRequest,
    state: &mut ForumState,
    forum_url: &str,
) -> Result<Ingested, IngestError> {
    parse(req, forum_url).map(|p| p.resolve(state))
}

/// A request parsed, before the forum's state fills in what the payload
/// lacks: [`parse`] needs no state, so callers run it outside the state's lock.
#[derive(Debug)]
pub enum Parsed {
    Ping,
    Unsupported(String),
    Topic {
        kind: EventKind,
        id: Option<u64>,
        forum: String,
        payload: Box<TopicPayload>,
    },
    Post {
        kind: EventKind,
        id: Option<u64>,
        forum: String,
        payload: Box<PostPayload>,
        post: Box<Post>,
    },
    /// An event of a family beyond posts ([`families`]).
    Notice {
        kind: EventKind,
        id: Option<u64>,
        forum: String,
        family: &'static Family,
        draft: Box<Draft>,
    },
}

/// The state-free half of [`normalize`]: headers and JSON.
pub fn parse(req: &WebhookRequest, forum_url: &str) -> Result<Parsed, IngestError> {
    let name = req
        .header("X-Discourse-Event")
        .ok_or(IngestError::MissingHeader("X-Discourse-Event"))?;
    let kind = EventKind::parse(name);
    let id = req
        .header("X-Discourse-Event-Id")
        .and_then(|v| v.trim().parse().ok());
    let forum = req
        .header("X-Discourse-Instance")
        .unwrap_or(forum_url)
        .trim_end_matches('/')
        .to_string();

    // The payload stays raw until its type is known: parsed once, straight
    // into its struct (no JSON tree per webhook).
    let map: std::collections::BTreeMap<String, Box<serde_json::value::RawValue>> =
        match serde_json::from_slice(&req.body) {
            Ok(m) => m,
            // Not an object, or not JSON: parse again only to say which.
            Err(_) => {
                let body: serde_json::Value = serde_json::from_slice(&req.body)
                    .map_err(|e| IngestError::BadJson(e.to_string()))?;
                return Err(IngestError::BadEnvelope(json_kind(&body).into()));
            }
        };
    if map.len() != 1 {
        return Err(IngestError::BadEnvelope(format!("{} keys", map.len())));
    }
    let Some((key, payload)) = map.into_iter().next() else {
        return Err(IngestError::BadEnvelope("no key".into()));
    };
    if kind == EventKind::Ping {
        return Ok(Parsed::Ping);
    }

    let bad = |e: serde_json::Error| IngestError::BadPayload {
        kind: key.clone(),
        reason: e.to_string(),
    };
    // The event name decides, not only the body key: an unknown name with a
    // post body must not be stored (its body hash would make the real event
    // a "duplicate"), and `accepted_solution` bodies are posts too.
    let is_post_event = matches!(
        kind,
        EventKind::PostCreated
            | EventKind::PostEdited
            | EventKind::PostDestroyed
            | EventKind::PostRecovered
    );
    let solved_event = matches!(
        kind,
        EventKind::AcceptedSolution | EventKind::UnacceptedSolution
    );
    if let Some(family) = families::for_event(kind.as_str())
        && let Source::Payload(parse_family) = family.source
    {
        let incoming = families::Incoming {
            event: kind.as_str(),
            key: &key,
            payload: payload.get(),
            forum: &forum,
        };
        let draft = parse_family(&incoming).map_err(bad)?;
        return Ok(Parsed::Notice {
            kind,
            id,
            forum,
            family,
            draft: Box::new(draft),
        });
    }
    match (key.as_str(), &kind) {
        ("topic", _) if kind.as_str().starts_with("topic_") => Ok(Parsed::Topic {
            payload: serde_json::from_str(payload.get()).map_err(bad)?,
            kind,
            id,
            forum,
        }),
        // `solved` carries the answer post: it marks the topic (routing
        // skips it, as every event but post_created).
        ("post", _) | ("solved", _)
            if (key == "post" && is_post_event) || (key == "solved" && solved_event) =>
        {
            let payload: Box<PostPayload> = serde_json::from_str(payload.get()).map_err(bad)?;
            Ok(Parsed::Post {
                post: Box::new(post_from(&forum, &payload)),
                payload,
                kind,
                id,
                forum,
            })
        }
        _ => Ok(Parsed::Unsupported(kind.as_str().to_string())),
    }
}

impl Parsed {
    /// The half of [`normalize`] that reads (and, from topic events,
    /// updates) the forum's state.
    pub fn resolve(self, state: &mut ForumState) -> Ingested {
        match self {
            Parsed::Ping => Ingested::Ping,
            Parsed::Unsupported(name) => Ingested::Unsupported(name),
            Parsed::Topic {
                kind,
                id,
                forum,
                payload,
            } => {
                state.learn_topic(&payload);
                let topic = topic_from(state, &forum, payload.id, None);
                Ingested::Event(announced(Event {
                    kind,
                    id,
                    forum,
                    topic,
                    post: None,
                    notice: None,
                    brand: state.brand().cloned(),
                }))
            }
            Parsed::Post {
                kind,
                id,
                forum,
                payload,
                post,
            } => {
                let topic = topic_from(state, &forum, payload.topic_id, Some(&payload));
                Ingested::Event(announced(Event {
                    kind,
                    id,
                    forum,
                    topic,
                    post: Some(*post),
                    notice: None,
                    brand: state.brand().cloned(),
                }))
            }
            Parsed::Notice {
                kind,
                id,
                forum,
                family,
                draft,
            } => {
                let Draft { mut notice, topic } = *draft;
                let topic = match topic {
                    Some(hint) => topic_from_hint(state, &forum, hint),
                    None => Topic::default(),
                };
                if let Some(finish) = family.finish {
                    finish(&mut notice, state);
                }
                Ingested::Event(Box::new(Event {
                    kind,
                    id,
                    forum,
                    topic,
                    post: None,
                    notice: Some(Box::new(notice)),
                    brand: state.brand().cloned(),
                }))
            }
        }
    }
}

/// A resolved post or topic event, with the notice a family adds to it
/// (a solved note, a topic closed).
fn announced(mut event: Event) -> Box<Event> {
    event.notice = families::annotate(&event).map(Box::new);
    Box::new(event)
}

/// The topic a family event names, as best known: what the relay learned
/// of it, with the payload's title, category and tags over that. A queued
/// post has no topic yet (id 0): only its category and title.
fn topic_from_hint(state: &ForumState, forum: &str, hint: TopicHint) -> Topic {
    let mut topic = match hint.id {
        0 => Topic::default(),
        id => topic_from(state, forum, id, None),
    };
    if let Some(title) = hint.title.filter(|t| !t.trim().is_empty()) {
        topic.title = title;
    }
    if let Some(cid) = hint.category_id {
        topic.category = state.category(cid, None);
    }
    if let Some(tags) = hint.tags.filter(|t| !t.is_empty()) {
        topic.tags = state.tags_of(&tags);
    }
    topic
}

/// A post fetched through the API (`/posts/ID.json`) as the `post_created`
/// event its webhook would have been: the topic's title, category and
/// archetype (which the post answer lacks) merged in from `topic`
/// (`/t/ID.json`, learned into `state` first: tags, PM groups, visibility),
/// then normalized like any webhook.
pub fn event_from_api(
    mut post: serde_json::Map<String, serde_json::Value>,
    topic: &super::payload::TopicPayload,
    state: &mut ForumState,
    forum_url: &str,
) -> Result<Event, IngestError> {
    state.learn_topic(topic);
    let fields = [
        ("topic_title", topic.title.clone().map(Into::into)),
        ("category_id", topic.category_id.map(Into::into)),
        ("topic_archetype", topic.archetype.clone().map(Into::into)),
    ];
    for (key, value) in fields {
        if let Some(v) = value {
            post.entry(key).or_insert(v);
        }
    }
    let body = serde_json::to_vec(&serde_json::json!({ "post": post }))
        .map_err(|e| IngestError::BadJson(e.to_string()))?;
    let req = WebhookRequest {
        headers: vec![("X-Discourse-Event".into(), "post_created".into())],
        body,
    };
    match normalize(&req, state, forum_url)? {
        Ingested::Event(e) => Ok(*e),
        _ => Err(IngestError::BadEnvelope("not a post".into())),
    }
}

/// Learns from an API response file (`/site.json` or `/t/{id}.json`);
/// returns what it was, or `None` if it is neither.
pub fn learn_api_response(
    json: &serde_json::Value,
    state: &mut ForumState,
) -> Option<&'static str> {
    if json.get("categories").is_some_and(|c| c.is_array()) && json.get("post_types").is_some() {
        let site = serde_json::from_value(json.clone()).ok()?;
        state.learn_site(&site);
        return Some("site");
    }
    if json.get("tag_groups").is_some_and(|g| g.is_array()) {
        let groups = serde_json::from_value(json.clone()).ok()?;
        state.learn_tag_groups(&groups);
        return Some("tag groups");
    }
    if json.get("post_stream").is_some() && json.get("id").is_some() {
        let t: TopicPayload = serde_json::from_value(json.clone()).ok()?;
        state.learn_topic(&t);
        return Some("topic");
    }
    None
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The topic as best known: the post payload (current title, category) over
/// what topic events taught (tags, PM groups).
fn topic_from(state: &ForumState, forum: &str, id: u64, post: Option<&PostPayload>) -> Topic {
    let known = state.topic(id).cloned().unwrap_or_default();
    let title = post
        .and_then(|p| p.topic_title.clone())
        .or(known.title)
        .unwrap_or_default();
    let slug = post
        .and_then(|p| p.topic_slug.clone())
        .or(known.slug)
        .unwrap_or_else(|| "topic".into());
    let private_message = match post.and_then(|p| p.topic_archetype.as_deref()) {
        Some(a) => a == "private_message",
        None => known.private_message,
    };
    let category_id = post.and_then(|p| p.category_id).or(known.category_id);
    let fallback_slug = post.and_then(|p| p.category_slug.as_deref());
    let category = category_id.and_then(|cid| state.category(cid, fallback_slug));
    Topic {
        id,
        url: format!("{forum}/t/{slug}/{id}"),
        title,
        slug,
        private_message,
        category,
        tags: known.tags.unwrap_or_default(),
        pm_groups: known.pm_groups.unwrap_or_default(),
        unlisted: known.visible == Some(false),
        state: known.state,
    }
}

pub(crate) fn post_from(forum: &str, p: &PostPayload) -> Post {
    let raw = p.raw.clone().unwrap_or_default();
    let number = p.post_number.unwrap_or(0);
    let url = match &p.post_url {
        Some(u) if u.starts_with('/') => format!("{forum}{u}"),
        Some(u) => u.clone(),
        None => format!(
            "{forum}/t/{}/{}/{number}",
            p.topic_slug.as_deref().unwrap_or("topic"),
            p.topic_id
        ),
    };
    Post {
        id: p.id,
        number,
        post_type: PostType::from_code(p.post_type.unwrap_or(1)),
        action_code: p.action_code.clone(),
        username: p.username.clone().unwrap_or_default(),
        name: p.name.clone().unwrap_or_default(),
        mentions: mentions(&raw),
        raw,
        cooked: p.cooked.clone().unwrap_or_default(),
        url,
        created_at: p.created_at.clone().unwrap_or_default(),
        hidden: p.hidden.unwrap_or(false),
        deleted: p.deleted_at.is_some() || p.user_deleted.unwrap_or(false),
        avatar: absolute(forum, p.avatar_template.as_deref().unwrap_or_default()),
    }
}

/// A forum path (`/user_avatar/…`, `//cdn…/…`) as an absolute `https` URL;
/// anything that is neither a path nor an `http(s)` URL is dropped.
pub(crate) fn absolute(forum: &str, path: &str) -> String {
    if let Some(rest) = path.strip_prefix("//") {
        format!("https://{rest}")
    } else if path.starts_with('/') {
        format!("{forum}{path}")
    } else if path.starts_with("https://") || path.starts_with("http://") {
        path.to_string()
    } else {
        String::new()
    }
}

/// `@name` mentions in Markdown source, lower-cased, skipping code spans and
/// fenced blocks (Discourse does not notify from code either).
pub fn mentions(raw: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut in_fence = false;
    for line in raw.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence || line.starts_with("    ") {
            continue;
        }
        let mut in_code = false;
        let mut prev: Option<char> = None;
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == '`' {
                in_code = !in_code;
            } else if c == '@'
                && !in_code
                && !prev.is_some_and(|p| p.is_alphanumeric() || p == '_' || p == '`')
            {
                let name: String = chars[i + 1..]
                    .iter()
                    .take_while(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
                    .collect();
                let name = name.trim_end_matches(['.', '-']);
                if !name.is_empty() {
                    let lower = name.to_lowercase();
                    if !out.contains(&lower) {
                        out.push(lower);
                    }
                    i += name.chars().count();
                }
            }
            prev = Some(chars[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> WebhookRequest {
        let path = format!(
            "{}/tests/fixtures/webhooks/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        WebhookRequest::from_fixture(&json).unwrap()
    }

    fn event(i: Ingested) -> Event {
        match i {
            Ingested::Event(e) => *e,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    #[test]
    fn mentions_skip_code_and_emails() {
        assert_eq!(
            mentions("hi @Alice and @staff-group. `@nope` mail a@b.c\n```\n@fenced\n```\n@last"),
            vec!["alice", "staff-group", "last"]
        );
    }

    #[test]
    fn topic_created_teaches_tags_to_later_posts() {
        let mut state = ForumState::new(&[]);
        let t = event(normalize(&fixture("topic_created"), &mut state, "https://x").unwrap());
        assert_eq!(t.kind, EventKind::TopicCreated);
        assert_eq!(t.topic.tags.len(), 2);
        let p =
            event(normalize(&fixture("post_created_first_post"), &mut state, "https://x").unwrap());
        assert_eq!(
            p.topic
                .tags
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>(),
            vec!["async", "web_sockets"]
        );
        let post = p.post.unwrap();
        assert!(post.is_first());
        assert_eq!(p.forum, "https://forum.example.org");
        assert!(post.url.starts_with("https://forum.example.org/t/"));
    }

    #[test]
    fn ping_unsupported_and_malformed() {
        let mut state = ForumState::new(&[]);
        assert_eq!(
            normalize(&fixture("ping"), &mut state, "u").unwrap(),
            Ingested::Ping
        );
        // No family takes logins: well-formed, and of no use.
        let mut login = fixture("user_created");
        for (name, value) in &mut login.headers {
            if name.eq_ignore_ascii_case("X-Discourse-Event") {
                *value = "user_logged_in".into();
            }
        }
        assert_eq!(
            normalize(&login, &mut state, "u").unwrap(),
            Ingested::Unsupported("user_logged_in".into())
        );
        let mut bad = fixture("post_created_first_post");
        bad.body = b"{\"post\":".to_vec();
        assert!(matches!(
            normalize(&bad, &mut state, "u"),
            Err(IngestError::BadJson(_))
        ));
        bad.body = b"[1]".to_vec();
        assert!(matches!(
            normalize(&bad, &mut state, "u"),
            Err(IngestError::BadEnvelope(_))
        ));
        bad.body = br#"{"post":{"id":"x"}}"#.to_vec();
        assert!(matches!(
            normalize(&bad, &mut state, "u"),
            Err(IngestError::BadPayload { .. })
        ));
        bad.headers.retain(|(k, _)| k != "X-Discourse-Event");
        assert_eq!(
            normalize(&bad, &mut state, "u"),
            Err(IngestError::MissingHeader("X-Discourse-Event"))
        );
    }

    #[test]
    fn both_hostile_encodings_normalize_the_same() {
        let mut state = ForumState::new(&[]);
        let a =
            event(normalize(&fixture("post_created_hostile_content"), &mut state, "u").unwrap());
        let b = event(
            normalize(
                &fixture("post_created_hostile_content_html_escaped_json"),
                &mut state,
                "u",
            )
            .unwrap(),
        );
        assert_eq!(a.topic.title, b.topic.title);
        assert_eq!(a.post, b.post);
    }

    #[test]
    fn pm_groups_come_from_topic_view() {
        let mut state = ForumState::new(&[]);
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/api/t_104.json");
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(learn_api_response(&json, &mut state), Some("topic"));
        let p =
            event(normalize(&fixture("post_created_private_message"), &mut state, "u").unwrap());
        assert!(p.topic.private_message);
        assert_eq!(p.topic.pm_groups, vec!["support-team"]);
    }
}
