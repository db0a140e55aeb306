//! Templates: an arbitrary template registered with `Renderer::register`
//! for every dialect, then rendered for events whose text fields are
//! arbitrary too.
//!
//! Input: NUL-separated pieces; the first is the template, the following
//! ones replace, in order, the sample event's topic title, username, display
//! name, raw, cooked, category path and tag name. Empty pieces keep the
//! sample's value, so the event keeps the sample's shape (the same fields
//! present, non-empty, one tag) and only the text differs.
//!
//! Invariants:
//! - nothing panics;
//! - a refused template never renders;
//! - a template accepted at load renders every event of the sample's shape,
//!   whatever the text (load-time checks promise "a template that renders the
//!   sample renders any real event"; escaping must keep it so, e.g. for
//!   JSON, quotes and backslashes in a title). Templates that compare or
//!   look up text (`eq`, `ne`, `lt`, `gt`, `len`, `lookup`, `and`, `or`,
//!   `not`) may legitimately take other branches and are exempt;
//! - when a JSON-dialect render succeeds, the output parses as JSON.
//!
//! The body is `discourse_relay::fuzzing::template`, shared with the corpus
//! replay in `tests/fuzz_corpus.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| discourse_relay::fuzzing::template(data));
