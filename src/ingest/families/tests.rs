//! The families on the recorded Discourse requests (tests/fixtures).

use crate::ingest::event::{Change, Event};
use crate::ingest::{ForumState, Ingested, WebhookRequest, learn_api_response, normalize};

const FORUM: &str = "https://forum.example.org";

fn fixture_json(path: &str) -> serde_json::Value {
    let path = format!("{}/tests/fixtures/{path}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn request(name: &str) -> WebhookRequest {
    WebhookRequest::from_fixture(&fixture_json(&format!("webhooks/{name}"))).unwrap()
}

/// A state that has seen `/site.json` (categories and groups).
fn state() -> ForumState {
    let mut s = ForumState::new(&[]);
    learn_api_response(&fixture_json("api/site"), &mut s).unwrap();
    s
}

fn event_in(state: &mut ForumState, req: &WebhookRequest) -> Event {
    match normalize(req, state, FORUM).unwrap() {
        Ingested::Event(e) => *e,
        other => panic!("expected an event, got {other:?}"),
    }
}

fn event(name: &str) -> Event {
    event_in(&mut state(), &request(name))
}

/// `name` with its body edited by `f` (the raw body is what is parsed).
fn edited(name: &str, f: impl FnOnce(&mut serde_json::Value)) -> WebhookRequest {
    let mut req = request(name);
    let mut body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    f(&mut body);
    req.body = serde_json::to_vec(&body).unwrap();
    req
}

#[test]
fn a_flag_is_one_review_item_that_later_events_update() {
    let created = event("reviewable_created");
    let n = created.notice.as_deref().unwrap();
    assert_eq!(
        (n.family.as_str(), n.change, n.subject),
        ("review", Change::Opened, Some(7))
    );
    assert_eq!((n.mark.as_str(), n.status.as_str()), ("🚩", "pending"));
    assert_eq!(n.title, "Flagged post");
    assert_eq!(n.url, "https://forum.example.org/review/7");
    assert!(
        n.cooked.contains("&lt;!channel&gt;"),
        "the flagged content is quoted"
    );
    // Category 4 is General in /site.json.
    assert_eq!(created.topic.category.as_ref().unwrap().path, "general");
    assert_eq!(created.topic.id, 105);

    let decided = event("reviewable_transitioned_to_approved");
    let n = decided.notice.as_deref().unwrap();
    assert_eq!((n.change, n.subject), (Change::Updated, Some(7)));
    assert_eq!(
        (n.mark.as_str(), n.status.as_str(), n.title.as_str()),
        ("✅", "agreed", "Flagged post: agreed")
    );
    assert_eq!(created.message_slot(), decided.message_slot());
    let scored = event("reviewable_score_updated");
    assert_eq!(scored.notice.as_deref().unwrap().change, Change::Updated);
    assert_eq!(scored.notice.as_deref().unwrap().data["score"], 3.0);
}

#[test]
fn a_queued_post_has_its_title_and_category_but_no_topic_yet() {
    let e = event("reviewable_created_queued_post");
    let n = e.notice.as_deref().unwrap();
    assert_eq!(
        (n.mark.as_str(), n.title.as_str()),
        ("📝", "Post waiting for approval")
    );
    assert_eq!(e.topic.id, 0);
    assert_eq!(
        e.topic.title,
        "Installer hangs at 'configuring database' on Debian 12"
    );
    assert_eq!(e.topic.category.as_ref().unwrap().path, "support");
}

#[test]
fn a_family_slot_never_meets_a_post_of_the_same_number() {
    let review = event("reviewable_created");
    let (topic, number) = review.message_slot().unwrap();
    assert_eq!(topic, 7, "the reviewable's id");
    assert!(number > u32::MAX as u64, "far above any post number");
    let chat = event("chat_message_created");
    assert_ne!(
        chat.message_slot().unwrap().1,
        number,
        "one slot per family"
    );
    // One-off notes are never edited: no slot.
    assert_eq!(event("post_liked").message_slot(), None);
}

#[test]
fn user_events_never_carry_personal_fields() {
    for name in ["user_created", "user_approved"] {
        let e = event(name);
        let stored = serde_json::to_string(&e).unwrap();
        assert!(
            !stored.contains("noah.newcomer@example.com"),
            "{name}: {stored}"
        );
        assert!(!stored.contains("Europe/Berlin"), "{name}: {stored}");
        let n = e.notice.as_deref().unwrap();
        assert_eq!(n.family, "users");
        assert!(
            n.title.contains("newcomer42 (Noah Newcomer)"),
            "{}",
            n.title
        );
        assert_eq!(n.url, "https://forum.example.org/u/newcomer42");
        assert_eq!(n.groups, ["trust_level_0"]);
    }
    assert_eq!(
        event("user_created").notice.unwrap().title,
        "New user: newcomer42 (Noah Newcomer)"
    );
}

#[test]
fn a_signup_waiting_for_approval_says_so() {
    let req = edited("user_created", |b| b["user"]["approved"] = false.into());
    let e = event_in(&mut state(), &req);
    assert_eq!(
        e.notice.unwrap().title,
        "New user: newcomer42 (Noah Newcomer), waiting for approval"
    );
}

#[test]
fn group_events_name_the_group_once_site_json_did() {
    let e = event("user_added_to_group");
    let n = e.notice.as_deref().unwrap();
    assert_eq!(n.title, "user #3 added to group staff-group");
    assert_eq!(n.groups, ["staff-group"]);
    assert_eq!(n.url, "https://forum.example.org/g/staff-group");
    // Without /site.json, the id.
    let e = event_in(&mut ForumState::new(&[]), &request("user_added_to_group"));
    let n = e.notice.unwrap();
    assert_eq!(n.title, "user #3 added to group #41");
    assert!(n.groups.is_empty(), "no name, nothing for group rules");
    let badge = event("user_badge_granted").notice.unwrap();
    assert_eq!(badge.title, "Badge #13 granted to user #2");
}

#[test]
fn a_chat_message_is_mirrored_with_its_channel_and_privacy() {
    let e = event("chat_message_created");
    let n = e.notice.as_deref().unwrap();
    assert_eq!((n.family.as_str(), n.subject), ("chat", Some(4521)));
    assert_eq!(n.channel.as_deref(), Some("general"));
    assert!(!n.private);
    assert_eq!(n.url, "https://forum.example.org/chat/c/general/3/4521");
    assert_eq!(n.title, "bob (Bob Ramirez) in #General");
    assert_eq!(e.topic.category.as_ref().unwrap().path, "general");

    for (event_name, change) in [
        ("chat_message_edited", Change::Updated),
        ("chat_message_trashed", Change::Removed),
        ("chat_message_restored", Change::Restored),
    ] {
        let mut req = request("chat_message_created");
        for (k, v) in &mut req.headers {
            if k.eq_ignore_ascii_case("X-Discourse-Event") {
                *v = event_name.into();
            }
        }
        let e = event_in(&mut state(), &req);
        assert_eq!(e.notice.unwrap().change, change, "{event_name}");
    }

    let dm = edited("chat_message_created", |b| {
        b["chat_message"]["channel"]["chatable_type"] = "DirectMessage".into();
    });
    let e = event_in(&mut state(), &dm);
    let n = e.notice.unwrap();
    assert!(n.private, "direct messages are private");
    assert_eq!(
        n.channel.as_deref(),
        Some("dm/3"),
        "named by id, never by slug"
    );
    assert!(e.topic.category.is_none());
}

#[test]
fn likes_and_assignments_are_tied_to_their_topic() {
    let like = event("post_liked");
    let n = like.notice.as_deref().unwrap();
    assert_eq!(n.title, "bob liked a post by alice");
    assert_eq!(like.topic.id, 101);
    assert_eq!(like.topic.category.as_ref().unwrap().path, "support/rust");

    let assigned = event("assigned");
    let n = assigned.notice.as_deref().unwrap();
    assert_eq!(n.title, "Assigned to carol by alice");
    assert_eq!(assigned.topic.id, 101);
    assert_eq!(
        assigned.topic.title,
        "How do I share state between async tasks?"
    );
}

#[test]
fn solved_and_topic_states_keep_their_work_and_add_a_note() {
    let solved = event("accepted_solution");
    assert!(
        solved.post.is_some(),
        "still the answer post (for the ✅ mark)"
    );
    let n = solved.notice.as_deref().unwrap();
    assert_eq!((n.family.as_str(), n.subject), ("solved", None));
    assert_eq!(n.text, "answer by alice");

    let closed = event("topic_closed_status_updated");
    assert!(closed.topic.state.closed);
    assert_eq!(closed.notice.unwrap().title, "Closed");
    // Unlisting is never announced.
    assert!(event("topic_visible_status_updated").notice.is_none());
}

#[test]
fn the_neutral_form_keeps_nothing_of_the_item() {
    let e = event("reviewable_created");
    let neutral = e.neutral();
    let text = serde_json::to_string(&neutral).unwrap();
    for secret in ["alert(1)", "channel-everyone", "general"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    let n = neutral.notice.unwrap();
    assert_eq!(n.title, "Flagged post (private)");
    assert_eq!(n.url, "https://forum.example.org/review/7");
}

#[test]
fn every_family_event_of_the_fixtures_is_understood() {
    let dir = format!("{}/tests/fixtures/webhooks", env!("CARGO_MANIFEST_DIR"));
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let req = WebhookRequest::from_fixture(&json).unwrap();
        let got = normalize(&req, &mut state(), FORUM).unwrap();
        assert!(
            !matches!(got, Ingested::Unsupported(_)),
            "{}: {got:?}",
            path.display()
        );
        seen += 1;
    }
    assert!(seen >= 36, "fixtures missing: {seen}");
}

#[test]
fn tags_of_restricted_tag_groups_are_hidden_once_learned() {
    let mut s = state();
    assert_eq!(
        learn_api_response(&fixture_json("api/tag_groups"), &mut s),
        Some("tag groups")
    );
    // A flag on a topic tagged with a staff-only tag and a public one.
    let req = edited("reviewable_created", |b| {
        b["reviewable"]["topic_tags"] = serde_json::json!(["escalated", "async"]);
    });
    let e = event_in(&mut s, &req);
    let hidden: Vec<(&str, bool)> = (e.topic.tags.iter())
        .map(|t| (t.name.as_str(), t.hidden))
        .collect();
    assert_eq!(hidden, [("escalated", true), ("async", false)]);
}
