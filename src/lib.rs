//! discourse-relay: Discourse forum activity to chat rooms.
//!
//! The modules follow the data's path, one stage each:
//!
//! - [`config`]: the `subscriptions.toml` model, `${VAR}` secrets, located
//!   deserializing and problems at file:line:col (a leaf every stage reads).
//! - [`observe`]: the status and metrics models (a leaf).
//! - [`ingest`]: Discourse webhook requests and payloads → one normalized
//!   [`ingest::Event`], filling what payloads lack from what it has learned.
//! - [`rules`]: the compiled matcher: which chats an event reaches, and by
//!   which rule (precedence of the Discourse chat integration).
//! - [`render`]: Handlebars templates, helpers, per-dialect escaping.
//! - [`providers`]: one file per chat platform behind one trait, registered
//!   in one place; builds the exact request and classifies responses.
//! - [`pipeline`]: the file assembled into one immutable snapshot of the
//!   stages (`load`, `schema`), and its hot reload.
//! - [`delivery`]: the durable store, the delay scheduler, per-chat workers.
//! - [`service`] composes the running stages; [`http`] serves them.
//!
//! Each module imports only those listed before it (checked by
//! `tests/architecture.rs`).

pub mod config;
pub mod delivery;
pub mod doctor;
pub mod fuzzing;
pub mod http;
pub mod ingest;
pub mod observe;
pub mod pipeline;
pub mod providers;
pub mod render;
pub mod rules;
pub mod service;
