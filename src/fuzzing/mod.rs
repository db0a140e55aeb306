//! The fuzz targets' bodies: `fuzz/fuzz_targets/*.rs` call these, and so
//! does `tests/fuzz_corpus.rs`, which replays the kept corpus through the
//! same code on every `cargo test`, without cargo-fuzz.
//!
//! Each function takes one fuzz input and **panics** when an invariant
//! breaks: that is how libFuzzer and the replay test see a failure. For
//! fuzzing and tests only.

mod classify;
mod config;
mod template;
mod webhook;

pub use classify::{Chat, chats, check, classify, classify_one, parse_input};
pub use config::config;
pub use template::template;
pub use webhook::webhook;
