//! Config loading: arbitrary UTF-8 text through `pipeline::load_str` with an
//! empty environment and `MissingEnv::Warn` (what `validate` does).
//!
//! Invariants: nothing panics; every diagnostic is at line >= 1 and col >= 1,
//! within the text (line <= number of lines + 1); an `Err` carries at least
//! one error; an `Ok` carries none; every diagnostic prints.
//!
//! The body is `discourse_relay::fuzzing::config`, shared with the corpus
//! replay in `tests/fuzz_corpus.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| discourse_relay::fuzzing::config(data));
