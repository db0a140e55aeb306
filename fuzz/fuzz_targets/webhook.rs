//! Webhook ingest: arbitrary request bodies (and a few header variants)
//! through `ingest::normalize` with a persistent `ForumState`, then, for
//! events, `Pipeline::decide` against a small fixed config, as
//! `service::App::accept` and the scheduler would.
//!
//! Input: up to 4 requests separated by a 0xFF byte. Each request is one
//! selector byte followed by the body:
//! - bits 0-3: `X-Discourse-Event` (15 = header missing), see `EVENTS`;
//! - bits 4-5: `X-Discourse-Instance`: none, the forum, the forum with a
//!   trailing slash, the second forum;
//! - bit 6: `X-Discourse-Event-Id` present;
//! - bit 7: a (wrong or malformed) `X-Discourse-Event-Signature` is checked.
//!
//! Invariants: nothing panics; every event survives the queue's JSON
//! round trip unchanged; deliveries point at chats of the event's forum; a
//! JSON-dialect chat's text parses as JSON; no chat fails to render (every
//! template of the config is guarded for topic events).
//!
//! The body is `discourse_relay::fuzzing::webhook`, shared with the corpus
//! replay in `tests/fuzz_corpus.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| discourse_relay::fuzzing::webhook(data));
