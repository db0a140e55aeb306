//! Answer classification: arbitrary platform answers (status, headers,
//! body) through every provider's `Destination::classify`, as
//! `delivery::send` hands them over.
//!
//! Input: `[chat] [status hi] [status lo] headers 0xFF body`; `chat` picks
//! one chat of the target's config (one or more per registered provider),
//! an index past the end runs them all; headers are `Name: value` lines.
//!
//! Invariants: nothing panics; a retry hint from `classify` is at most
//! `MAX_RETRY_AFTER`; as delivery keeps it (`Outcome::tidy`), a reason is
//! short one-line text; 401/403 are never sent; 429 and 5xx (but 501) are
//! never permanent.
//!
//! The body is `discourse_relay::fuzzing::classify`, shared with the corpus
//! replay in `tests/fuzz_corpus.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| discourse_relay::fuzzing::classify(data));
