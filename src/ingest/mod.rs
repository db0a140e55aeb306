//! Ingest: Discourse webhook requests in, normalized [`Event`]s out.
//!
//! Parses the payload shapes Discourse sends, verifies signatures, and fills
//! what a payload lacks (tags, category paths, PM groups) from [`ForumState`],
//! which learns from earlier events and API responses. Ingest decides nothing
//! about who gets notified: that is [`crate::rules`].

pub mod api;
pub mod event;
pub mod families;
pub mod forum;
pub mod intake;
pub mod normalize;
pub mod payload;
pub mod request;

pub use event::{
    Brand, Category, Change, Event, EventKind, Notice, Post, PostType, Tag, Topic, TopicState,
};
pub use forum::{ForumState, StaticCategory};
pub use normalize::{
    IngestError, Ingested, Parsed, event_from_api, learn_api_response, normalize, parse,
};
pub use request::WebhookRequest;
