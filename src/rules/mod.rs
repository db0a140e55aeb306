//! Rules: the compiled matcher that decides which chats an event reaches.
//!
//! Semantics follow the Discourse chat integration: per chat, the rules whose
//! type, category and tags match are ordered by type (group_message,
//! group_mention, normal) then filter (mute, thread, watch, follow); the first
//! decides. This stage is pure: no I/O, no templates, no providers.

use serde_spanned::Spanned;

use crate::config::Problem;
use crate::config::model::{Filter, RuleType};
use crate::ingest::Event;

/// One rule of one chat, after the compact `subscribe` form has been expanded.
#[derive(Debug, Clone)]
pub struct RuleDef {
    pub filter: Filter,
    pub kind: RuleType,
    /// Glob over the category slug path; `None` = any category.
    pub category: Option<Spanned<String>>,
    /// Globs over tag names (or slugs); empty = any tags.
    pub tags: Vec<Spanned<String>>,
    /// Group name for `group_message` / `group_mention` rules.
    pub group: Option<Spanned<String>>,
}

impl RuleDef {
    /// Compact human form used on the status page and by `explain`:
    /// `watch c/support/** t/bug t/release-*`, `follow all`, `thread g/staff (mention)`.
    pub fn compact(&self) -> String {
        todo!()
    }
}

/// Why an event reaches no chat at all, before any rule is looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// Only `post_created` notifies; other events teach or edit.
    NotNotifying(String),
    Whisper,
    SmallAction,
    ModeratorAction,
    Hidden,
    Deleted,
    /// A private message that names no group the relay knows of.
    PrivateMessageWithoutGroups,
}

/// The decision for one chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// Index into the `chats` slice given to [`Matcher::compile`].
    pub chat: usize,
    /// Index of the deciding rule within that chat's rules.
    pub rule: usize,
    pub filter: Filter,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routing {
    Skipped(SkipReason),
    /// Chats in ascending chat index, at most one match per chat; may be empty.
    Matched(Vec<Match>),
}

/// All rules of all chats, compiled for fast matching.
#[derive(Debug)]
pub struct Matcher {}

impl Matcher {
    /// `chats[i]` holds the rules of chat `i`. Reports every problem (bad glob,
    /// group rule without group, ...) with the span of the offending value.
    pub fn compile(chats: &[Vec<RuleDef>]) -> Result<Self, Vec<Problem>> {
        let _ = chats;
        todo!()
    }

    pub fn route(&self, event: &Event) -> Routing {
        let _ = event;
        todo!()
    }
}
