//! discourse-relay: Discourse forum activity to chat rooms.
//!
//! The modules follow the data's path, one stage each:
//!
//! - [`config`]: `subscriptions.toml` model, `${VAR}` secrets, validation with
//!   file:line:col, and the build of one immutable [`pipeline::Pipeline`].
//! - [`ingest`]: Discourse webhook requests and payloads → one normalized
//!   [`ingest::Event`], filling what payloads lack from what it has learned.
//! - [`rules`]: the compiled matcher: which chats an event reaches, and by
//!   which rule (precedence of the Discourse chat integration).
//! - [`render`]: Handlebars templates, helpers, per-dialect escaping.
//! - [`providers`]: one file per chat platform behind one trait, registered
//!   in one place; builds the exact request and classifies responses.
//! - [`pipeline`]: the composition of the stages for one config snapshot.
//!
//! Stages only call downstream; none reaches back upstream.

pub mod config;
pub mod delivery;
pub mod fuzzing;
pub mod http;
pub mod ingest;
pub mod observe;
pub mod pipeline;
pub mod providers;
pub mod render;
pub mod rules;
pub mod service;
