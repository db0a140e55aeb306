//! The store's behaviour tests, written once against the [`Store`] trait and
//! run for every backend: each backend's tests module provides a
//! [`Fixture`] and instantiates the suite with [`store_suite!`] (redb in
//! `redb_store.rs`, PostgreSQL in `pg_store.rs`). What only one backend has
//! (redb's older dedupe form, its disk-full recovery) stays in its own module.
//!
//! Test code only: compiled under `cfg(test)`.

use super::store::{
    AcceptOutcome, Ack, AttemptResult, DedupeKey, DeliveryRecord, FollowUp, HOUR_MS, HourCount,
    InboundEvent, MessageRef, NewDelivery, Payload, PendingChange, PostKey, QueuedDelivery,
    RECENT_PER_CHAT, RefChange, Routed, Store,
};
use crate::config::model::Filter;
use crate::ingest::Event;

/// A raw row to overwrite, for the tests of unreadable rows.
pub(crate) enum Spoil<'a> {
    Inbox(u64),
    Queue(&'a str, u64),
    Recent(&'a str, u64),
}

/// One backend under test: a store with data of its own.
pub(crate) trait Fixture {
    fn store(&self) -> &dyn Store;
    /// The seqs queued for `chat`, read without claiming them (as `heads` would).
    fn queued(&self, chat: &str) -> Vec<u64>;
    /// Closes the store and opens it again on the same data.
    fn reopen(&mut self);
    /// Overwrites an existing row with `bytes`.
    fn spoil(&self, row: Spoil<'_>, bytes: &[u8]);
    /// The raw bytes kept of the first row quarantined.
    fn first_quarantined_raw(&self) -> Option<Vec<u8>>;
}

/// `#[test]`s running every test of the suite against the fixture that
/// `$make(test_name)` returns (`None`: the backend is not available here,
/// and the test passes after its SKIP line).
macro_rules! store_suite {
    ($make:path) => {
        $crate::delivery::store_suite::store_suite!(@ $make;
            accept_stores_and_dedupes,
            due_events_oldest_due_first_with_limit,
            update_pending_changes_cancels_and_reindexes_in_one_transaction,
            routing_a_row_changed_since_it_was_read_leaves_it_pending,
            route_is_atomic_and_idempotent,
            per_chat_order_and_seqs_never_reused,
            reschedule_ack_dead_letter_and_counts,
            message_refs_and_prune,
            batches_route_ack_and_claim_what_the_worker_took,
            routed_posts_are_remembered_and_follow_ups_change_queues,
            dead_letters_are_resent_to_the_end_of_the_queue_or_dropped,
            dead_letters_are_pruned_by_age_and_count_keeping_the_newest,
            dedupe_window_survives_reopen_and_prune,
            hourly_counts_increment_roll_over_prune_and_survive_reopen,
            recent_deliveries_are_newest_first_bounded_and_say_what_happened,
            survives_drop_and_reopen,
            unreadable_queue_rows_are_set_aside_and_the_chat_goes_on,
            unreadable_inbox_row_is_set_aside_and_the_others_route,
        );
    };
    (@ $make:path; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                if let Some(mut f) = $make(stringify!($name)) {
                    $crate::delivery::store_suite::$name(&mut f);
                }
            }
        )*
    };
}
pub(crate) use store_suite;

pub(crate) fn event(n: u64) -> Event {
    let mut e = Event::sample("https://forum.example.org");
    e.id = Some(n);
    if let Some(p) = e.post.as_mut() {
        p.id = n;
    }
    e
}

pub(crate) fn hash(n: u64) -> [u8; 32] {
    let mut h = [7u8; 32];
    h[..8].copy_from_slice(&n.to_be_bytes());
    h
}

/// Event `n`, with event id `n` and a body hashing to `hash(n)`.
pub(crate) fn inbound(n: u64, due_at_ms: u64) -> InboundEvent {
    InboundEvent {
        dedupe: DedupeKey {
            event_id: Some(format!("forum.example.org:{n}")),
            body_hash: hash(n),
        },
        event: event(n),
        due_at_ms,
        received_at_ms: 1,
    }
}

pub(crate) fn delivery(chat: &str, n: u64) -> NewDelivery {
    NewDelivery {
        chat: chat.into(),
        payload: Payload::Event {
            event: Box::new(event(n)),
            filter: Filter::Watch,
        },
    }
}

/// An ack of a sent delivery (no remote id), settled at time 1.
pub(crate) fn sent(seq: u64, refs: &[RefChange]) -> Ack {
    let d = QueuedDelivery {
        chat: String::new(),
        seq,
        payload: Payload::Test {
            requested_by: "tester".into(),
        },
        created_at_ms: 0,
        attempts: 0,
        next_attempt_at_ms: 0,
        last_error: None,
    };
    let result = AttemptResult::Sent { remote_id: None };
    Ack {
        seq,
        refs: refs.to_vec(),
        record: DeliveryRecord::of(&d, 1, result),
    }
}

pub(crate) fn test_delivery(chat: &str) -> NewDelivery {
    NewDelivery {
        chat: chat.into(),
        payload: Payload::Test {
            requested_by: "tester".into(),
        },
    }
}

pub(crate) fn stored(o: AcceptOutcome) -> u64 {
    match o {
        AcceptOutcome::Stored(id) => id,
        AcceptOutcome::Duplicate => panic!("expected Stored, got Duplicate"),
    }
}

pub(crate) fn seqs(store: &dyn Store, chat: &str) -> Vec<u64> {
    let mut out = Vec::new();
    while let Some(d) = store.head(chat).unwrap() {
        out.push(d.seq);
        store.ack(chat, sent(d.seq, &[])).unwrap();
    }
    out
}

/// Records a ref for post (topic, 1) of `chat`, as an ack would.
pub(crate) fn put_ref(store: &dyn Store, chat: &str, topic: u64, id: &str, at: u64) {
    let r = MessageRef {
        remote_id: id.into(),
        stored_at_ms: at,
    };
    let change = RefChange::Put {
        topic,
        number: 1,
        r,
    };
    store.ack(chat, sent(u64::MAX, &[change])).unwrap();
}

/// An ack of `seq` sent at `at_ms` with `remote_id`.
pub(crate) fn sent_at(seq: u64, at_ms: u64, remote_id: &str) -> Ack {
    let mut ack = sent(seq, &[]);
    ack.record.at_ms = at_ms;
    ack.record.result = AttemptResult::Sent {
        remote_id: Some(remote_id.into()),
    };
    ack
}

pub(crate) fn hour(chat: &str, hour: u64, delivered: u64, failed: u64, retried: u64) -> HourCount {
    HourCount {
        chat: chat.into(),
        hour,
        delivered,
        failed,
        retried,
    }
}

pub(crate) fn accept_stores_and_dedupes(f: &mut dyn Fixture) {
    let store = f.store();
    let a = stored(store.accept(&[inbound(1, 10)], 100).unwrap()[0]);

    // Same event id, other body (a manual redelivery).
    let mut by_id = inbound(2, 10);
    by_id.dedupe.event_id = Some("forum.example.org:1".into());
    // Other id, same body (an automatic retry).
    let mut by_body = inbound(3, 10);
    by_body.dedupe.body_hash = hash(1);
    // No id at all, same body.
    let mut no_id = inbound(4, 10);
    no_id.dedupe.event_id = None;
    no_id.dedupe.body_hash = hash(1);
    let out = store.accept(&[by_id, by_body, no_id], 100).unwrap();
    assert_eq!(out, vec![AcceptOutcome::Duplicate; 3]);

    // Within one batch: the second and fourth repeat the first.
    let mut again_body = inbound(6, 10);
    again_body.dedupe.event_id = None;
    again_body.dedupe.body_hash = hash(5);
    let out = store
        .accept(
            &[inbound(5, 10), inbound(5, 10), inbound(7, 10), again_body],
            100,
        )
        .unwrap();
    assert!(matches!(out[0], AcceptOutcome::Stored(_)));
    assert_eq!(out[1], AcceptOutcome::Duplicate);
    assert!(matches!(out[2], AcceptOutcome::Stored(_)));
    assert_eq!(out[3], AcceptOutcome::Duplicate);
    let b = stored(out[0]);
    let c = stored(out[2]);
    assert!(a < b && b < c, "ids increase: {a} {b} {c}");

    let pending = store.due_events(u64::MAX, usize::MAX).unwrap();
    assert_eq!(
        pending.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![a, b, c]
    );
    assert_eq!(pending[0].event, event(1));
    assert_eq!(store.accept(&[], 100).unwrap(), vec![]);
}

pub(crate) fn due_events_oldest_due_first_with_limit(f: &mut dyn Fixture) {
    let store = f.store();
    let out = store
        .accept(&[inbound(1, 300), inbound(2, 100), inbound(3, 200)], 1)
        .unwrap();
    let ids: Vec<u64> = out.into_iter().map(stored).collect();
    let due = |now, limit| -> Vec<u64> {
        store
            .due_events(now, limit)
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect()
    };
    assert_eq!(due(99, 10), Vec::<u64>::new());
    assert_eq!(due(100, 10), vec![ids[1]]);
    assert_eq!(due(250, 10), vec![ids[1], ids[2]]);
    assert_eq!(due(1000, 10), vec![ids[1], ids[2], ids[0]]);
    assert_eq!(due(1000, 2), vec![ids[1], ids[2]]);
    assert_eq!(due(1000, 0), Vec::<u64>::new());
    let first = &store.due_events(1000, 1).unwrap()[0];
    assert_eq!(first.due_at_ms, 100);
    assert_eq!(first.event, event(2));
}

pub(crate) fn update_pending_changes_cancels_and_reindexes_in_one_transaction(f: &mut dyn Fixture) {
    let store = f.store();
    let out = store
        .accept(&[inbound(1, 10), inbound(2, 20), inbound(3, 30)], 1)
        .unwrap();
    let (a, b, c) = (stored(out[0]), stored(out[1]), stored(out[2]));

    let changed = store
        .update_pending(&mut |p| {
            if p.id == a {
                p.event.topic.title = "edited in the window".into();
                PendingChange::Update
            } else if p.id == b {
                PendingChange::Cancel
            } else {
                p.due_at_ms = 5; // due earlier: the index follows
                PendingChange::Update
            }
        })
        .unwrap();
    assert_eq!(changed, 3);
    let due = |now| -> Vec<(u64, u64)> {
        (store.due_events(now, 10).unwrap().iter())
            .map(|e| (e.id, e.due_at_ms))
            .collect()
    };
    assert_eq!(due(9), vec![(c, 5)]);
    assert_eq!(due(u64::MAX), vec![(c, 5), (a, 10)]);
    let pending = store.due_events(u64::MAX, 10).unwrap();
    assert_eq!(pending[1].event.topic.title, "edited in the window");
    assert_eq!(pending[1].received_at_ms, 1);

    // An "update" that changes nothing, and Keep, write nothing.
    assert_eq!(
        store
            .update_pending(&mut |_| PendingChange::Update)
            .unwrap(),
        0
    );
    assert_eq!(
        store.update_pending(&mut |_| PendingChange::Keep).unwrap(),
        0
    );
    // Each call sees what the one before committed.
    let mut titles = Vec::new();
    store
        .update_pending(&mut |p| {
            titles.push(p.event.topic.title.clone());
            PendingChange::Keep
        })
        .unwrap();
    assert!(titles.contains(&"edited in the window".to_string()));
}

pub(crate) fn routing_a_row_changed_since_it_was_read_leaves_it_pending(f: &mut dyn Fixture) {
    let store = f.store();
    let id = stored(store.accept(&[inbound(1, 10)], 1).unwrap()[0]);
    let read = store.due_events(10, 1).unwrap().remove(0);
    // Late tags arrive between the scheduler's read and its commit.
    let tags = vec![crate::ingest::Tag {
        hidden: false,
        name: "Late".into(),
        slug: "late".into(),
    }];
    store
        .update_pending(&mut |p| {
            p.event.topic.tags = tags.clone();
            PendingChange::Update
        })
        .unwrap();
    let routed = |revision| Routed {
        id,
        revision: Some(revision),
        deliveries: vec![delivery("a", 1)],
    };
    store.route_many(&[routed(read.revision)], 20).unwrap();
    assert!(
        store.queue_depths().unwrap().is_empty(),
        "stale route applied"
    );
    let again = store.due_events(10, 1).unwrap().remove(0);
    assert_eq!(again.event.topic.tags, tags);
    assert_ne!(again.revision, read.revision);
    store.route_many(&[routed(again.revision)], 20).unwrap();
    assert_eq!(store.queue_depths().unwrap(), vec![("a".to_string(), 1)]);
    assert!(store.due_events(u64::MAX, 10).unwrap().is_empty());
}

pub(crate) fn route_is_atomic_and_idempotent(f: &mut dyn Fixture) {
    let store = f.store();
    let id = stored(store.accept(&[inbound(1, 10)], 1).unwrap()[0]);
    let deliveries = [delivery("a", 1), delivery("b", 1), delivery("a", 1)];
    store.route(id, &deliveries, 50).unwrap();
    assert!(store.due_events(u64::MAX, usize::MAX).unwrap().is_empty());
    assert!(store.due_events(u64::MAX, 10).unwrap().is_empty());
    assert_eq!(
        store.queue_depths().unwrap(),
        vec![("a".to_string(), 2), ("b".to_string(), 1)]
    );
    let head = store.head("a").unwrap().unwrap();
    assert_eq!(head.seq, 1);
    assert_eq!(head.created_at_ms, 50);
    assert_eq!(head.next_attempt_at_ms, 50);
    assert_eq!(head.attempts, 0);
    assert_eq!(head.last_error, None);
    assert_eq!(head.payload, deliveries[0].payload);

    // Routed again (a crash before the caller noticed): nothing appended.
    store.route(id, &deliveries, 60).unwrap();
    store.route(12345, &deliveries, 60).unwrap();
    assert_eq!(
        store.queue_depths().unwrap(),
        vec![("a".to_string(), 2), ("b".to_string(), 1)]
    );
    // Routing to no chat just clears the inbox entry.
    let id = stored(store.accept(&[inbound(2, 10)], 1).unwrap()[0]);
    store.route(id, &[], 60).unwrap();
    assert!(store.due_events(u64::MAX, usize::MAX).unwrap().is_empty());
}

pub(crate) fn per_chat_order_and_seqs_never_reused(f: &mut dyn Fixture) {
    let store = f.store();
    assert_eq!(store.head("a").unwrap(), None);
    assert_eq!(store.enqueue(&test_delivery("a"), 1).unwrap(), 1);
    assert_eq!(store.enqueue(&test_delivery("b"), 1).unwrap(), 1);
    assert_eq!(store.enqueue(&test_delivery("a"), 1).unwrap(), 2);
    // A chat whose name prefixes another's stays separate.
    assert_eq!(store.enqueue(&test_delivery("ab"), 1).unwrap(), 1);
    let id = stored(store.accept(&[inbound(1, 1)], 1).unwrap()[0]);
    store.route(id, &[delivery("a", 1)], 2).unwrap();
    assert_eq!(seqs(store, "a"), vec![1, 2, 3]);
    assert_eq!(store.head("a").unwrap(), None);
    // Emptied, the chat's next seq still goes up.
    assert_eq!(store.enqueue(&test_delivery("a"), 3).unwrap(), 4);
    assert_eq!(seqs(store, "b"), vec![1]);
    assert_eq!(seqs(store, "ab"), vec![1]);
    assert_eq!(store.queue_depths().unwrap(), vec![("a".to_string(), 1)]);
}

pub(crate) fn reschedule_ack_dead_letter_and_counts(f: &mut dyn Fixture) {
    let store = f.store();
    for _ in 0..3 {
        store.enqueue(&test_delivery("a"), 10).unwrap();
    }
    store.enqueue(&test_delivery("b"), 10).unwrap();

    store.reschedule("a", 1, 500, "HTTP 502", 1).unwrap();
    store.reschedule("a", 1, 900, "HTTP 503", 1).unwrap();
    let head = store.head("a").unwrap().unwrap();
    assert_eq!(
        (head.seq, head.attempts, head.next_attempt_at_ms),
        (1, 2, 900)
    );
    assert_eq!(head.last_error.as_deref(), Some("HTTP 503"));
    // A missing row is not an error (acked meanwhile).
    store.reschedule("a", 99, 1, "x", 1).unwrap();

    store
        .dead_letter("a", 1, "HTTP 404: no such channel", 1000)
        .unwrap();
    store.dead_letter("b", 1, "revoked", 1100).unwrap();
    store.dead_letter("a", 2, "too old", 1200).unwrap();
    store.dead_letter("a", 2, "again", 1300).unwrap(); // already moved: no-op
    store.ack("a", sent(2, &[])).unwrap(); // gone: no-op
    assert_eq!(store.queue_depths().unwrap(), vec![("a".to_string(), 1)]);
    assert_eq!(
        store.dead_letter_counts().unwrap(),
        vec![("a".to_string(), 2), ("b".to_string(), 1)]
    );

    let all = store.dead_letters(None, 10).unwrap();
    let reasons: Vec<&str> = all.iter().map(|d| d.reason.as_str()).collect();
    assert_eq!(
        reasons,
        vec!["too old", "revoked", "HTTP 404: no such channel"]
    );
    assert_eq!(all[2].delivery.attempts, 2);
    assert_eq!(all[2].delivery.last_error.as_deref(), Some("HTTP 503"));
    assert_eq!(all[2].failed_at_ms, 1000);
    let a: Vec<u64> = store
        .dead_letters(Some("a"), 10)
        .unwrap()
        .iter()
        .map(|d| d.delivery.seq)
        .collect();
    assert_eq!(a, vec![2, 1]);
    assert_eq!(store.dead_letters(Some("a"), 1).unwrap().len(), 1);
    assert_eq!(store.dead_letters(None, 2).unwrap().len(), 2);
    assert!(store.dead_letters(Some("zzz"), 10).unwrap().is_empty());

    store.ack("a", sent(3, &[])).unwrap();
    assert!(store.queue_depths().unwrap().is_empty());
    assert_eq!(store.head("a").unwrap(), None);
}

pub(crate) fn message_refs_and_prune(f: &mut dyn Fixture) {
    let store = f.store();
    let r = |id: &str, at| MessageRef {
        remote_id: id.into(),
        stored_at_ms: at,
    };
    put_ref(store, "a", 1, "m1", 100);
    put_ref(store, "a", 2, "m2", 100);
    put_ref(store, "b", 1, "m3", 100);
    assert_eq!(store.message_ref("a", 1, 1).unwrap(), Some(r("m1", 100)));
    assert_eq!(store.message_ref("b", 1, 1).unwrap(), Some(r("m3", 100)));
    assert_eq!(store.message_ref("c", 1, 1).unwrap(), None);
    assert_eq!(store.message_ref("a", 1, 2).unwrap(), None);
    // Rewritten later: the old time no longer prunes it.
    put_ref(store, "a", 2, "m2b", 300);

    store.accept(&[inbound(1, 1)], 100).unwrap();
    store.accept(&[inbound(2, 1)], 300).unwrap();

    store.prune(200, 200).unwrap();
    assert_eq!(store.message_ref("a", 1, 1).unwrap(), None);
    assert_eq!(store.message_ref("b", 1, 1).unwrap(), None);
    assert_eq!(store.message_ref("a", 2, 1).unwrap(), Some(r("m2b", 300)));
    // Event 1's keys are forgotten, event 2's kept.
    let out = store.accept(&[inbound(1, 1), inbound(2, 1)], 400).unwrap();
    assert!(matches!(out[0], AcceptOutcome::Stored(_)));
    assert_eq!(out[1], AcceptOutcome::Duplicate);

    // A removal drops the ref and its time index.
    store
        .ack(
            "a",
            sent(
                1,
                &[RefChange::Remove {
                    topic: 2,
                    number: 1,
                }],
            ),
        )
        .unwrap();
    assert_eq!(store.message_ref("a", 2, 1).unwrap(), None);
    put_ref(store, "a", 3, "m4", 300);
    store.prune(u64::MAX, u64::MAX).unwrap();
    assert_eq!(store.message_ref("a", 3, 1).unwrap(), None);
    assert!(matches!(
        store.accept(&[inbound(2, 1)], 500).unwrap()[0],
        AcceptOutcome::Stored(_)
    ));
}

pub(crate) fn batches_route_ack_and_claim_what_the_worker_took(f: &mut dyn Fixture) {
    let store = f.store();
    let a = stored(store.accept(&[inbound(1, 1)], 1).unwrap()[0]);
    let b = stored(store.accept(&[inbound(2, 1)], 1).unwrap()[0]);
    let routed = |id, n| Routed {
        id,
        revision: None,
        deliveries: vec![delivery("c", n), delivery("c", n)],
    };
    store.route_many(&[routed(a, 1), routed(b, 2)], 5).unwrap();
    assert!(store.due_events(u64::MAX, usize::MAX).unwrap().is_empty());
    assert_eq!(f.queued("c"), vec![1, 2, 3, 4]);

    // The worker took seqs 1-2: a follow-up for 2 queues behind, one
    // for 3 (not taken) rewrites it in place.
    let took: Vec<u64> = store.heads("c", 2).unwrap().iter().map(|d| d.seq).collect();
    assert_eq!(took, vec![1, 2]);
    let key = PostKey::of(&event(1)).unwrap();
    let edit = Payload::Edit {
        event: Box::new(event(1)),
        strike: false,
    };
    let step = |seq| FollowUp {
        chat: "c".into(),
        queued: Some(seq),
        if_queued: Some(test_delivery("c").payload),
        otherwise: Some(edit.clone()),
    };
    let third = stored(store.accept(&[inbound(3, 1)], 1).unwrap()[0]);
    store
        .follow_up(third, &key, None, &[step(2), step(3)], 6)
        .unwrap();
    assert_eq!(f.queued("c"), vec![1, 2, 3, 4, 5]);
    let queued = |seq| {
        store
            .heads("c", 10)
            .unwrap()
            .into_iter()
            .find(|d| d.seq == seq)
            .unwrap()
            .payload
    };
    assert!(
        matches!(queued(2), Payload::Event { .. }),
        "in flight: unchanged"
    );
    assert!(
        matches!(queued(3), Payload::Test { .. }),
        "waiting: rewritten"
    );
    assert!(matches!(queued(5), Payload::Edit { .. }));

    // One commit acks several, with their refs.
    let r = MessageRef {
        remote_id: "m".into(),
        stored_at_ms: 7,
    };
    let put = RefChange::Put {
        topic: 9,
        number: 1,
        r: r.clone(),
    };
    store
        .ack_many("c", &[sent(1, &[put]), sent(2, &[]), sent(3, &[])])
        .unwrap();
    assert_eq!(f.queued("c"), vec![4, 5]);
    assert_eq!(store.message_ref("c", 9, 1).unwrap(), Some(r));
}

pub(crate) fn routed_posts_are_remembered_and_follow_ups_change_queues(f: &mut dyn Fixture) {
    let store = f.store();
    let id = |o: Vec<AcceptOutcome>| stored(o[0]);
    let first = id(store.accept(&[inbound(1, 1)], 1).unwrap());
    // Chat a already has a head (a test message), so post 1 waits behind it.
    store.enqueue(&test_delivery("a"), 1).unwrap();
    store
        .route(first, &[delivery("a", 1), delivery("b", 1)], 10)
        .unwrap();
    let key = PostKey::of(&event(1)).unwrap();
    let record = store.post_record(&key).unwrap().unwrap();
    assert_eq!(record.event, event(1));
    let seqs: Vec<(&str, u64)> = record
        .chats
        .iter()
        .map(|c| (c.chat.as_str(), c.seq))
        .collect();
    assert_eq!(seqs, vec![("a", 2), ("b", 1)]);

    // An edit: chat a's message is still waiting (merged in place);
    // chat b's is the head, maybe in flight (an edit is queued behind it).
    let mut edited = event(1);
    if let Some(p) = edited.post.as_mut() {
        p.raw = "edited".into();
    }
    let merged = Payload::Event {
        event: Box::new(edited.clone()),
        filter: Filter::Watch,
    };
    let edit = Payload::Edit {
        event: Box::new(edited.clone()),
        strike: false,
    };
    let step = |chat: &str, seq| FollowUp {
        chat: chat.into(),
        queued: Some(seq),
        if_queued: Some(merged.clone()),
        otherwise: Some(edit.clone()),
    };
    let second = id(store.accept(&[inbound(2, 1)], 20).unwrap());
    let mut record2 = record.clone();
    record2.event = edited.clone();
    let changed = store
        .follow_up(
            second,
            &key,
            Some(record2),
            &[step("a", 2), step("b", 1)],
            30,
        )
        .unwrap();
    assert_eq!(changed, vec!["a".to_string(), "b".to_string()]);
    assert_eq!(f.queued("a"), vec![1, 2]);
    assert_eq!(f.queued("b"), vec![1, 2]);
    assert_eq!(store.post_record(&key).unwrap().unwrap().event, edited);
    // Idempotent: the inbox entry is gone, a replay changes nothing.
    let again = store
        .follow_up(second, &key, None, &[step("a", 2)], 40)
        .unwrap();
    assert!(again.is_empty());
    assert_eq!(f.queued("b"), vec![1, 2]);

    // A delete drops the waiting message and marks the chat dropped.
    let third = id(store.accept(&[inbound(3, 1)], 50).unwrap());
    let drop = FollowUp {
        chat: "a".into(),
        queued: Some(2),
        if_queued: None,
        otherwise: None,
    };
    let before = store.post_record(&key).unwrap();
    store.follow_up(third, &key, before, &[drop], 60).unwrap();
    assert_eq!(f.queued("a"), vec![1]);
    let after = store.post_record(&key).unwrap().unwrap();
    assert!(after.chats[0].dropped && !after.chats[1].dropped);

    // A re-post (recovery) appends and the record follows the new seq.
    let fourth = id(store.accept(&[inbound(4, 1)], 70).unwrap());
    let repost = FollowUp {
        chat: "a".into(),
        queued: None,
        if_queued: None,
        otherwise: Some(merged.clone()),
    };
    store
        .follow_up(fourth, &key, Some(after), &[repost], 80)
        .unwrap();
    let last = store.post_record(&key).unwrap().unwrap();
    assert_eq!((last.chats[0].seq, last.chats[0].dropped), (3, false));
    assert_eq!(f.queued("a"), vec![1, 3]);
}

pub(crate) fn dead_letters_are_resent_to_the_end_of_the_queue_or_dropped(f: &mut dyn Fixture) {
    let store = f.store();
    let mut ids = Vec::new();
    for at in [10, 20, 30] {
        let seq = store.enqueue(&test_delivery("a"), at).unwrap();
        store.reschedule("a", seq, at + 1, "HTTP 500", 1).unwrap();
        store
            .dead_letter("a", seq, &format!("gave up at {at}"), at)
            .unwrap();
        ids.push(store.dead_letters(Some("a"), 1).unwrap()[0].id);
    }
    let other = store.enqueue(&test_delivery("b"), 5).unwrap();
    store.dead_letter("b", other, "b's", 5).unwrap();
    // Something queued meanwhile: resent letters go behind it.
    let queued = store.enqueue(&test_delivery("a"), 40).unwrap();

    // One by id; an id of another chat is not this chat's.
    let b_id = store.dead_letters(Some("b"), 1).unwrap()[0].id;
    assert_eq!(
        store
            .resend_dead_letters("a", Some(&[ids[1], b_id]), 50)
            .unwrap(),
        1
    );
    let q = store.heads("a", 10).unwrap();
    assert_eq!(q.len(), 2);
    assert_eq!(q[0].seq, queued);
    assert!(q[1].seq > queued, "behind what was queued");
    assert_eq!(q[1].attempts, 1, "its history is kept");
    assert_eq!(q[1].created_at_ms, 20);
    assert_eq!(q[1].next_attempt_at_ms, 50, "due at once");
    assert_eq!(
        store.dead_letter_counts().unwrap(),
        vec![("a".to_string(), 2), ("b".to_string(), 1)]
    );
    // The rest, oldest first.
    assert_eq!(store.resend_dead_letters("a", None, 60).unwrap(), 2);
    let created: Vec<u64> = store
        .heads("a", 10)
        .unwrap()
        .iter()
        .map(|d| d.created_at_ms)
        .collect();
    assert_eq!(created, vec![40, 20, 10, 30]);
    assert_eq!(store.resend_dead_letters("a", None, 70).unwrap(), 0);
    // Dropping: only the chat's.
    assert_eq!(store.drop_dead_letters("a", None).unwrap(), 0);
    assert_eq!(store.drop_dead_letters("b", Some(&[b_id])).unwrap(), 1);
    assert!(store.dead_letter_counts().unwrap().is_empty());
    assert_eq!(store.queue_depths().unwrap(), vec![("a".to_string(), 4)]);
}

pub(crate) fn dead_letters_are_pruned_by_age_and_count_keeping_the_newest(f: &mut dyn Fixture) {
    let store = f.store();
    for (chat, at) in [
        ("a", 10),
        ("b", 15),
        ("a", 20),
        ("a", 30),
        ("a", 40),
        ("a", 50),
        ("b", 60),
    ] {
        let seq = store.enqueue(&test_delivery(chat), 1).unwrap();
        store
            .dead_letter(chat, seq, &format!("at {at}"), at)
            .unwrap();
    }
    let failed = |chat: Option<&str>| -> Vec<u64> {
        (store.dead_letters(chat, 100).unwrap().iter())
            .map(|d| d.failed_at_ms)
            .collect()
    };
    // Before 25: 10, 15 and 20 go; then a keeps its newest 2 of 30/40/50.
    assert_eq!(store.prune_dead_letters(25, 2).unwrap(), 4);
    assert_eq!(failed(Some("a")), vec![50, 40]);
    assert_eq!(failed(Some("b")), vec![60]);
    assert_eq!(failed(None), vec![60, 50, 40]);
    assert_eq!(
        store.dead_letter_counts().unwrap(),
        vec![("a".to_string(), 2), ("b".to_string(), 1)]
    );
    assert_eq!(store.prune_dead_letters(25, 2).unwrap(), 0);
    assert_eq!(store.prune_dead_letters(0, 0).unwrap(), 3);
    assert!(store.dead_letter_counts().unwrap().is_empty());
    assert!(failed(None).is_empty());
    // The age pass alone, with no count limit.
    let seq = store.enqueue(&test_delivery("a"), 1).unwrap();
    store.dead_letter("a", seq, "x", 100).unwrap();
    assert_eq!(store.prune_dead_letters(100, u64::MAX).unwrap(), 0);
    assert_eq!(store.prune_dead_letters(101, u64::MAX).unwrap(), 1);
    assert!(store.dead_letter_counts().unwrap().is_empty());
}

pub(crate) fn hourly_counts_increment_roll_over_prune_and_survive_reopen(f: &mut dyn Fixture) {
    let h = 490_000; // an hour in 2025
    let t = |hour: u64, ms: u64| hour * HOUR_MS + ms;
    {
        let store = f.store();
        for n in 1..=4 {
            store.enqueue(&delivery("a", n), t(h, 0)).unwrap();
        }
        store.enqueue(&test_delivery("b"), t(h, 0)).unwrap();
        store
            .ack_many(
                "a",
                &[sent_at(1, t(h, 10), "m1"), sent_at(2, t(h, 20), "m2")],
            )
            .unwrap();
        // Acked again (a batch re-sent after a lost commit): counted once.
        store.ack("a", sent_at(1, t(h, 30), "m1")).unwrap();
        store
            .reschedule("a", 3, t(h, 5000), "HTTP 502", t(h, HOUR_MS - 1))
            .unwrap();
        // The next hour: a new bucket.
        store.dead_letter("a", 3, "HTTP 400", t(h + 1, 0)).unwrap();
        store.ack("a", sent_at(4, t(h + 1, 7), "m4")).unwrap();
        store.ack("b", sent_at(1, t(h + 1, 8), "b1")).unwrap();
        assert_eq!(
            store.hourly_counts(t(h, 0)).unwrap(),
            [
                hour("a", h, 2, 0, 1),
                hour("a", h + 1, 1, 1, 0),
                hour("b", h + 1, 1, 0, 0)
            ]
        );
        // Any time inside an hour asks from that hour's start.
        assert_eq!(store.hourly_counts(t(h + 1, 99)).unwrap().len(), 2);
    }
    // A restart keeps them (the acks were cheap commits: the close made them durable).
    f.reopen();
    let store = f.store();
    assert_eq!(store.hourly_counts(0).unwrap().len(), 3);
    store.prune_hourly_counts(t(h + 1, 500)).unwrap();
    assert_eq!(
        store.hourly_counts(0).unwrap(),
        [hour("a", h + 1, 1, 1, 0), hour("b", h + 1, 1, 0, 0)]
    );
    store.prune_hourly_counts(t(h + 1, 500)).unwrap(); // nothing left to prune
}

pub(crate) fn recent_deliveries_are_newest_first_bounded_and_say_what_happened(
    f: &mut dyn Fixture,
) {
    let store = f.store();
    let n = RECENT_PER_CHAT + 5;
    for i in 1..=n {
        store.enqueue(&delivery("a", i), i).unwrap();
    }
    store.enqueue(&test_delivery("b"), 1).unwrap();
    store
        .reschedule("a", 1, 50, "HTTP 503 <b>busy</b>", 10)
        .unwrap();
    store.dead_letter("a", 1, "HTTP 400", 20).unwrap();
    for i in 2..=60 {
        store
            .ack("a", sent_at(i, 100 + i, &format!("m{i}")))
            .unwrap();
    }
    // One batch across the bound: the oldest fall out together.
    let batch: Vec<Ack> = (61..=n)
        .map(|i| sent_at(i, 100 + i, &format!("m{i}")))
        .collect();
    store.ack_many("a", &batch).unwrap();
    let all = store.recent_deliveries("a", 1000).unwrap();
    assert_eq!(all.len() as u64, RECENT_PER_CHAT);
    assert_eq!(all[0].seq, n);
    assert_eq!(
        all[0].result,
        AttemptResult::Sent {
            remote_id: Some(format!("m{n}"))
        }
    );
    assert!(all.windows(2).all(|w| w[0].at_ms > w[1].at_ms));
    assert_eq!(all.last().unwrap().seq, n - RECENT_PER_CHAT + 1);
    // The retry and dead letter fell out of the window; a short read has
    // them (chat c: a fresh log).
    store.enqueue(&delivery("c", 1), 1).unwrap();
    store.reschedule("c", 1, 50, "HTTP 503", 10).unwrap();
    store.dead_letter("c", 1, "HTTP 400", 20).unwrap();
    let got = store.recent_deliveries("c", 10).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0].result,
        AttemptResult::DeadLettered {
            reason: "HTTP 400".into()
        }
    );
    assert_eq!(
        got[1].result,
        AttemptResult::Retried {
            reason: "HTTP 503".into(),
            next_attempt_at_ms: 50
        }
    );
    assert_eq!((got[1].created_at_ms, got[1].at_ms), (1, 10));
    // What it was comes from the queued row itself.
    assert_eq!(got[0].what.kind, "post_created");
    assert_eq!(got[0].what.topic, Some(event(1).topic.id));
    assert_eq!(got[0].what.title, event(1).topic.title);
    assert!(store.recent_deliveries("b", 10).unwrap().is_empty());

    // An unreadable log row is set aside; the rest are listed.
    f.spoil(Spoil::Recent("c", 1), b"{\"v\":9}");
    assert_eq!(store.recent_deliveries("c", 10).unwrap().len(), 1);
    let q = store.quarantined().unwrap();
    assert_eq!(q.count, 1);
    assert_eq!(q.newest[0].table, "recent_deliveries");
    assert_eq!(q.newest[0].key, "c#1");
}

pub(crate) fn survives_drop_and_reopen(f: &mut dyn Fixture) {
    let (pending, routed);
    {
        let store = f.store();
        let out = store
            .accept(&[inbound(1, 10), inbound(2, 10)], 100)
            .unwrap();
        pending = stored(out[0]);
        routed = stored(out[1]);
        store
            .route(
                routed,
                &[delivery("a", 2), delivery("a", 2), delivery("b", 2)],
                100,
            )
            .unwrap();
        store.ack("a", sent(1, &[])).unwrap(); // cheap commit: made durable by the close
        store.reschedule("b", 1, 777, "HTTP 500", 1).unwrap();
        store.enqueue(&test_delivery("c"), 100).unwrap();
        store.dead_letter("c", 1, "gone", 200).unwrap();
        put_ref(store, "a", 2, "m", 1);
    }
    f.reopen();
    let store = f.store();
    let ids: Vec<u64> = store
        .due_events(u64::MAX, usize::MAX)
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, vec![pending]);
    assert_eq!(store.head("a").unwrap().unwrap().seq, 2);
    let b = store.head("b").unwrap().unwrap();
    assert_eq!((b.attempts, b.next_attempt_at_ms), (1, 777));
    assert_eq!(
        store.queue_depths().unwrap(),
        vec![("a".to_string(), 1), ("b".to_string(), 1)]
    );
    assert_eq!(
        store.dead_letter_counts().unwrap(),
        vec![("c".to_string(), 1)]
    );
    assert_eq!(
        store.message_ref("a", 2, 1).unwrap().unwrap().remote_id,
        "m"
    );
    // Dedupe keys, inbox ids and seqs carry on.
    assert_eq!(
        store.accept(&[inbound(1, 10)], 300).unwrap(),
        vec![AcceptOutcome::Duplicate]
    );
    assert!(stored(store.accept(&[inbound(3, 10)], 300).unwrap()[0]) > routed);
    assert_eq!(store.enqueue(&test_delivery("a"), 300).unwrap(), 3);
    assert_eq!(store.enqueue(&test_delivery("c"), 300).unwrap(), 2);
}

pub(crate) fn unreadable_queue_rows_are_set_aside_and_the_chat_goes_on(f: &mut dyn Fixture) {
    let store = f.store();
    for _ in 0..5 {
        store.enqueue(&test_delivery("a"), 1).unwrap();
    }
    store.enqueue(&test_delivery("b"), 1).unwrap();
    f.spoil(Spoil::Queue("a", 1), b"{not json");
    f.spoil(Spoil::Queue("a", 3), br#"{"v":9,"chat":"a"}"#);

    // The head is unreadable: the worker gets the next ones.
    let seqs: Vec<u64> = store
        .heads("a", 10)
        .unwrap()
        .iter()
        .map(|d| d.seq)
        .collect();
    assert_eq!(seqs, vec![2, 4, 5]);
    assert_eq!(
        store.queue_depths().unwrap(),
        vec![("a".to_string(), 3), ("b".to_string(), 1)]
    );
    let q = store.quarantined().unwrap();
    assert_eq!(q.count, 2);
    assert_eq!(
        (q.newest[0].table.as_str(), q.newest[0].key.as_str()),
        ("queue", "a#3")
    );
    assert!(q.newest[0].error.contains("newer"), "{}", q.newest[0].error);
    assert_eq!(q.newest[1].key, "a#1");
    assert!(q.newest[1].at_ms > 0);
    // The raw bytes are kept.
    let raw = f.first_quarantined_raw();
    assert_eq!(raw.as_deref(), Some(b"{not json".as_slice()));

    // A row spoiled under a reschedule or a dead letter is set aside too.
    f.spoil(Spoil::Queue("a", 4), b"[]");
    store.reschedule("a", 4, 99, "HTTP 500", 1).unwrap();
    f.spoil(Spoil::Queue("a", 5), b"[]");
    store.dead_letter("a", 5, "gone", 7).unwrap();
    assert!(store.dead_letter_counts().unwrap().is_empty());
    assert_eq!(store.head("a").unwrap().unwrap().seq, 2);
    assert_eq!(
        store.queue_depths().unwrap(),
        vec![("a".to_string(), 1), ("b".to_string(), 1)]
    );
    assert_eq!(store.quarantined().unwrap().count, 4);
    store.ack("a", sent(2, &[])).unwrap();
    assert_eq!(store.head("a").unwrap(), None);
    assert_eq!(store.queue_depths().unwrap(), vec![("b".to_string(), 1)]);
    assert_eq!(f.queued("b"), vec![1]);
}

pub(crate) fn unreadable_inbox_row_is_set_aside_and_the_others_route(f: &mut dyn Fixture) {
    let store = f.store();
    let out = store
        .accept(&[inbound(1, 10), inbound(2, 20), inbound(3, 30)], 1)
        .unwrap();
    let ids: Vec<u64> = out.into_iter().map(stored).collect();
    f.spoil(Spoil::Inbox(ids[1]), b"{\"id\":");
    let due: Vec<u64> = (store.due_events(u64::MAX, 10).unwrap().iter())
        .map(|e| e.id)
        .collect();
    assert_eq!(due, vec![ids[0], ids[2]]);
    assert_eq!(
        quarantine_keys(store),
        vec![("inbox".to_string(), ids[1].to_string())]
    );
    // Gone from the index too: not found (nor counted) again.
    assert_eq!(store.due_events(u64::MAX, 10).unwrap().len(), 2);
    assert_eq!(store.quarantined().unwrap().count, 1);
    // A merge into the window skips (and sets aside) one as well.
    f.spoil(Spoil::Inbox(ids[2]), b"{}");
    let mut seen = Vec::new();
    store
        .update_pending(&mut |p| {
            seen.push(p.id);
            PendingChange::Keep
        })
        .unwrap();
    assert_eq!(seen, vec![ids[0]]);
    assert_eq!(store.quarantined().unwrap().count, 2);
    store.route(ids[0], &[delivery("a", 1)], 40).unwrap();
    assert_eq!(store.queue_depths().unwrap(), vec![("a".to_string(), 1)]);
    assert!(store.due_events(u64::MAX, 10).unwrap().is_empty());
}

/// The (table, key) of every quarantined row, newest first.
pub(crate) fn quarantine_keys(store: &dyn Store) -> Vec<(String, String)> {
    let q = store.quarantined().unwrap();
    assert_eq!(q.count as usize, q.newest.len(), "fewer than listed");
    q.newest.into_iter().map(|r| (r.table, r.key)).collect()
}

pub(crate) fn dedupe_window_survives_reopen_and_prune(f: &mut dyn Fixture) {
    let accept = |store: &dyn Store, n, now| store.accept(&[inbound(n, 1)], now).unwrap()[0];
    stored(accept(f.store(), 1, 100));
    stored(accept(f.store(), 2, 300));
    f.reopen();
    let store = f.store();
    for n in [1, 2] {
        assert_eq!(accept(store, n, 400), AcceptOutcome::Duplicate, "event {n}");
    }
    store.prune(200, 0).unwrap();
    stored(accept(store, 4, 400));
    assert_eq!(accept(store, 4, 401), AcceptOutcome::Duplicate);
    assert_eq!(accept(store, 2, 401), AcceptOutcome::Duplicate);
    // What the prune forgot stays forgotten after a reopen.
    f.reopen();
    let store = f.store();
    stored(accept(store, 1, 500));
    assert_eq!(accept(store, 2, 500), AcceptOutcome::Duplicate);
    assert_eq!(accept(store, 4, 500), AcceptOutcome::Duplicate);
}
