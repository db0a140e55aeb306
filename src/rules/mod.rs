//! Rules: the compiled matcher that decides which chats an event reaches.
//!
//! Semantics follow the Discourse chat integration: per chat, the rules whose
//! type, category and tags match are ordered by type (group_message,
//! group_mention, normal) then filter (mute, thread, watch, follow); the first
//! decides. This stage is pure: no I/O, no templates, no providers.
//!
//! Routing never looks at every rule. Rules get ids in (chat, type, filter)
//! order, so after sorting the candidate ids of one event the first id of
//! each chat is that chat's deciding rule. Candidates come from indexes:
//! category globs (cached per category path), tag globs, and group names.

mod families;
mod index;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use serde_spanned::Spanned;

use crate::config::Problem;
use crate::config::model::{Filter, RuleType};
use crate::ingest::families::Family;
use crate::ingest::{Event, EventKind, Post, PostType, Topic};

use index::{BoundedCache, GlobIndex, GlobInterner};

/// One rule of one chat, after the compact `subscribe` form has been expanded.
#[derive(Debug, Clone)]
pub struct RuleDef {
    pub filter: Filter,
    pub kind: RuleType,
    /// Glob over the category slug path; `None` = any category.
    pub category: Option<Spanned<String>>,
    /// Globs over tag names (or slugs); empty = any tags.
    pub tags: Vec<Spanned<String>>,
    /// Group name for `group_message` / `group_mention` rules, and for the
    /// families whose events are about groups.
    pub group: Option<Spanned<String>>,
    /// The event family beyond posts this rule is for; `None`: posts.
    pub family: Option<&'static Family>,
    /// Glob over the Discourse chat channel (the `chat` family).
    pub channel: Option<Spanned<String>>,
    /// Where the rule is written (its `type` or `filter` value, or the
    /// `subscribe` entry), for problems about the rule as a whole.
    pub span: Option<std::ops::Range<usize>>,
}

impl RuleDef {
    /// Compact human form used on the status page and by `explain`:
    /// `watch c/support/** t/bug t/release-*`, `follow all`, `mute c/staff`,
    /// `watch group_message:support-team`, `thread group_mention:staff-group c/general`.
    pub fn compact(&self) -> String {
        let mut out = String::from(self.filter.as_str());
        if let Some(f) = self.family {
            out.push(' ');
            out.push_str(f.name);
            if let Some(g) = &self.group {
                out.push_str(" group:");
                out.push_str(g.get_ref());
            }
            if let Some(c) = &self.channel {
                out.push_str(" channel:");
                out.push_str(c.get_ref());
            }
        }
        let group = self.group.as_ref().map_or("?", |g| g.get_ref().as_str());
        match self.kind {
            RuleType::GroupMessage | RuleType::GroupMention => {
                out.push(' ');
                out.push_str(self.kind.as_str());
                out.push(':');
                out.push_str(group);
            }
            // A group on a normal rule is a config error reported by compile;
            // it means nothing here.
            RuleType::Normal => {}
        }
        if let Some(category) = &self.category {
            out.push_str(" c/");
            out.push_str(category.get_ref());
        }
        for tag in &self.tags {
            out.push_str(" t/");
            out.push_str(tag.get_ref());
        }
        let open = self.category.is_none() && self.tags.is_empty();
        if self.kind == RuleType::Normal && open && self.family.is_none() {
            out.push_str(" all");
        }
        out
    }
}

/// Why an event reaches no chat at all, before any rule is looked at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkipReason {
    /// Only `post_created` notifies; other events teach or edit.
    #[error(
        "`{0}` does not notify (only post_created does); edits, deletions and recoveries change the chat messages a post already became, which `serve` remembers, and topic events update what the relay knows"
    )]
    NotNotifying(String),
    #[error("whisper (only the category-changed post is relayed)")]
    Whisper,
    #[error("small action (only the category-changed post is relayed)")]
    SmallAction,
    #[error("moderator action post")]
    ModeratorAction,
    #[error("hidden post")]
    Hidden,
    #[error("deleted post")]
    Deleted,
    /// Unlisted topics are never announced, whatever the rule.
    #[error("unlisted topic (never announced)")]
    Unlisted,
    /// A private message that names no group the relay knows of.
    #[error("private message to no known group (PMs reach chats only through group_message rules)")]
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

/// One rule as routing needs it. Its position in [`Matcher::rules`] is its id.
#[derive(Debug, Clone)]
struct Rule {
    chat: u32,
    /// Index within the chat's rules as configured (reported in [`Match`]).
    index: u32,
    filter: Filter,
    /// Category glob id; `None` = any category.
    category: Option<u32>,
    /// Range into [`Matcher::rule_tags`]; empty = any tags.
    tags_start: u32,
    tags_end: u32,
}

/// Normal rules naming a category that matches one category path. Built on
/// first sight of a path and cached: category globs are matched once per
/// path, not once per event. Rules without category are not copied in (they
/// would repeat in every entry); routing merges them in.
#[derive(Debug, Default)]
struct CategoryEntry {
    restricted: bool,
    /// Matching category glob ids, ascending; for a restricted category only
    /// the literal globs naming it.
    globs: Vec<u32>,
    /// Matching normal rules without tags, ascending ids: candidates as is.
    plain: Vec<u32>,
    /// Matching normal rules with tags, ascending ids: candidates if a tag matches.
    tagged: Vec<u32>,
}

/// All rules of all chats, compiled for fast matching.
pub struct Matcher {
    rules: Vec<Rule>,
    /// Tag glob ids of each rule, sliced by `Rule::tags_start..tags_end`.
    rule_tags: Vec<u32>,

    category_globs: GlobIndex,
    /// Per category glob: literal (no metacharacters), so it may reach a
    /// restricted category.
    category_literal: Vec<bool>,
    /// Per category glob: normal rules without / with tags, ascending ids.
    category_plain: Vec<Vec<u32>>,
    category_tagged: Vec<Vec<u32>>,
    /// Normal rules without category, without / with tags, ascending ids.
    any_plain: Vec<u32>,
    any_tagged: Vec<u32>,
    /// The entry for topics without category: nothing but the catch-alls.
    no_category: Arc<CategoryEntry>,
    open_categories: BoundedCache<Arc<CategoryEntry>>,
    restricted_categories: BoundedCache<Arc<CategoryEntry>>,

    tag_globs: GlobIndex,
    /// Tag globs without wildcards (lower-case text → glob id).
    tag_literals: HashMap<String, u32>,
    /// Per tag glob: normal rules listing it, ascending ids.
    tag_normal: Vec<Vec<u32>>,
    /// Tag name or slug → matching tag glob ids, ascending.
    tag_cache: BoundedCache<Arc<[u32]>>,

    /// Lower-case group name → rule ids, ascending.
    group_message: HashMap<String, Vec<u32>>,
    group_mention: HashMap<String, Vec<u32>>,

    /// The rules of the families beyond posts.
    families: families::FamilyRules,
}

impl std::fmt::Debug for Matcher {
    // The indexes are large and say little; the sizes say what was compiled.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Matcher")
            .field("rules", &self.rules.len())
            .field("category_globs", &self.category_globs.len())
            .field("tag_globs", &self.tag_globs.len())
            .field(
                "groups",
                &(self.group_message.len() + self.group_mention.len()),
            )
            .finish_non_exhaustive()
    }
}

/// Characters that make a category value a pattern rather than one category.
const GLOB_META: &[char] = &['*', '?', '[', ']', '{', '}', '\\'];

impl Matcher {
    /// `chats[i]` holds the rules of chat `i`. Reports every problem (bad glob,
    /// group rule without group, ...) with the span of the offending value.
    pub fn compile<R: AsRef<[RuleDef]>>(chats: &[R]) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut categories = GlobInterner::default();
        let mut tags = GlobInterner::default();

        struct Pending {
            chat: u32,
            index: u32,
            kind: RuleType,
            filter: Filter,
            category: Option<u32>,
            tags: Vec<u32>,
            group: Option<String>,
        }
        let mut pending = Vec::new();

        let total: usize = chats.iter().map(|c| c.as_ref().len()).sum();
        if u32::try_from(total).is_err() {
            // Ids are u32 to keep the indexes small; nobody configures 4 billion rules.
            return Err(vec![Problem::error(
                None,
                format!("too many rules ({total})"),
            )]);
        }

        for (chat, defs) in chats.iter().enumerate() {
            let defs = defs.as_ref();
            // Precedence order; among equals, rules naming a category first so
            // a category-changed post is not lost to an equal catch-all rule
            // (the plugin's order among equals is unspecified), then as written.
            let mut order: Vec<usize> = (0..defs.len()).collect();
            order.sort_by_key(|&i| (defs[i].kind, defs[i].filter, defs[i].category.is_none(), i));
            for i in order {
                let def = &defs[i];
                if def.family.is_some() {
                    continue; // see `families`
                }
                if let Some(c) = &def.channel {
                    problems.push(Problem::error(
                        Some(c.span()),
                        "`channel` is for Discourse chat rules: add `family = \"chat\"`",
                    ));
                }
                let group = validate_group(def, &mut problems);
                if def.kind == RuleType::GroupMessage
                    && let Some(category) = &def.category
                {
                    problems.push(Problem::error(
                        Some(category.span()),
                        "`category` does not apply to type = group_message: private messages \
                         have no category, so this rule would never match",
                    ));
                }
                let category = def
                    .category
                    .as_ref()
                    .and_then(|c| categories.intern(c, "category", &mut problems));
                let mut tag_ids: Vec<u32> = def
                    .tags
                    .iter()
                    .filter_map(|t| tags.intern(t, "tag", &mut problems))
                    .collect();
                tag_ids.sort_unstable();
                tag_ids.dedup();
                // Ids fit: the total was checked above.
                pending.push(Pending {
                    chat: chat as u32,
                    index: i as u32,
                    kind: def.kind,
                    filter: def.filter,
                    category,
                    tags: tag_ids,
                    group,
                });
            }
        }

        let category_literal: Vec<bool> = categories
            .texts()
            .iter()
            .map(|g| !g.contains(GLOB_META))
            .collect();
        let category_globs = categories.build("category", &mut problems);
        // Hidden tags match only rules that name them exactly.
        let tag_literals: HashMap<String, u32> = tags
            .texts()
            .iter()
            .enumerate()
            .filter(|(_, g)| !g.contains(GLOB_META))
            .map(|(id, g)| (g.clone(), id as u32))
            .collect();
        let tag_globs = tags.build("tag", &mut problems);
        let families = families::FamilyRules::compile(chats, &mut problems);
        if !problems.is_empty() {
            return Err(problems);
        }

        let mut rules = Vec::with_capacity(pending.len());
        let mut rule_tags = Vec::new();
        let mut category_plain = vec![Vec::new(); category_globs.len()];
        let mut category_tagged = vec![Vec::new(); category_globs.len()];
        let mut any_plain = Vec::new();
        let mut any_tagged = Vec::new();
        let mut tag_normal = vec![Vec::new(); tag_globs.len()];
        let mut group_message: HashMap<String, Vec<u32>> = HashMap::new();
        let mut group_mention: HashMap<String, Vec<u32>> = HashMap::new();

        // Pushed in id order, so every list below is ascending.
        for (id, p) in pending.into_iter().enumerate() {
            let id = id as u32;
            let tags_start = rule_tags.len() as u32;
            rule_tags.extend_from_slice(&p.tags);
            rules.push(Rule {
                chat: p.chat,
                index: p.index,
                filter: p.filter,
                category: p.category,
                tags_start,
                tags_end: rule_tags.len() as u32,
            });
            match (p.kind, p.group) {
                (RuleType::Normal, _) => {
                    let list = match (p.category, p.tags.is_empty()) {
                        (Some(g), true) => &mut category_plain[g as usize],
                        (Some(g), false) => &mut category_tagged[g as usize],
                        (None, true) => &mut any_plain,
                        (None, false) => &mut any_tagged,
                    };
                    list.push(id);
                    for &t in &p.tags {
                        tag_normal[t as usize].push(id);
                    }
                }
                (RuleType::GroupMessage, Some(group)) => {
                    group_message.entry(group).or_default().push(id);
                }
                (RuleType::GroupMention, Some(group)) => {
                    group_mention.entry(group).or_default().push(id);
                }
                // Unreachable: a group rule without group was reported above.
                (_, None) => {}
            }
        }

        let no_category = Arc::new(CategoryEntry::default());
        Ok(Matcher {
            rules,
            rule_tags,
            category_globs,
            category_literal,
            category_plain,
            category_tagged,
            any_plain,
            any_tagged,
            no_category,
            open_categories: BoundedCache::default(),
            restricted_categories: BoundedCache::default(),
            tag_globs,
            tag_literals,
            tag_normal,
            tag_cache: BoundedCache::default(),
            group_message,
            group_mention,
            families,
        })
    }

    /// Whether chat `chat` gets only the neutral form of a family event
    /// (its rule does not name the private item the event is about).
    pub fn neutral_for(&self, chat: usize, event: &Event) -> bool {
        !self.families.is_empty() && self.families.neutral_for(chat, event)
    }

    pub fn route(&self, event: &Event) -> Routing {
        if let Some(notice) = &event.notice {
            return match self.families.route(event, notice) {
                Ok(ms) => Routing::Matched(ms),
                Err(reason) => Routing::Skipped(reason),
            };
        }
        let post = match (&event.kind, &event.post) {
            (EventKind::PostCreated, Some(post)) => post,
            (kind, _) => {
                return Routing::Skipped(SkipReason::NotNotifying(kind.as_str().to_string()));
            }
        };
        if let Some(reason) = skip_post(post) {
            return Routing::Skipped(reason);
        }
        let topic = &event.topic;
        if topic.unlisted {
            return Routing::Skipped(SkipReason::Unlisted);
        }
        let tag_ids = self.topic_tag_ids(topic);
        let mut extra = Vec::new();

        if topic.private_message {
            // PMs reach chats only through the groups they are addressed to;
            // category, wildcard and mention rules never see them.
            if topic.pm_groups.is_empty() {
                return Routing::Skipped(SkipReason::PrivateMessageWithoutGroups);
            }
            for group in &topic.pm_groups {
                if let Some(ids) = self.group_message.get(lower(group).as_ref()) {
                    extra.extend(ids.iter().filter(|&&id| self.tags_match(id, &tag_ids)));
                }
            }
            extra.sort_unstable();
            return Routing::Matched(self.decide([&extra], post));
        }

        let entry = match &topic.category {
            None => Arc::clone(&self.no_category),
            Some(c) => self.category_entry(&c.path, c.restricted),
        };
        // A restricted category is only for rules that name it.
        let (any_plain, any_tagged): (&[u32], &[u32]) = if entry.restricted {
            (&[], &[])
        } else {
            (&self.any_plain, &self.any_tagged)
        };
        let tagged = entry.tagged.len() + any_tagged.len();
        if !tag_ids.is_empty() && tagged > 0 {
            // Walk whichever is shorter: the tagged rules of the category, or
            // the rules of the matched tags (checking their category).
            let via_tags: usize = tag_ids
                .iter()
                .map(|&t| self.tag_normal[t as usize].len())
                .sum();
            if via_tags < tagged {
                for &t in &tag_ids {
                    extra.extend(
                        self.tag_normal[t as usize]
                            .iter()
                            .filter(|&&id| self.category_matches(id, &entry)),
                    );
                }
            } else {
                extra.extend(
                    entry
                        .tagged
                        .iter()
                        .chain(any_tagged)
                        .filter(|&&id| self.tags_match(id, &tag_ids)),
                );
            }
        }
        for mention in &post.mentions {
            if let Some(ids) = self.group_mention.get(lower(mention).as_ref()) {
                extra.extend(ids.iter().filter(|&&id| {
                    self.category_matches(id, &entry) && self.tags_match(id, &tag_ids)
                }));
            }
        }
        extra.sort_unstable();
        extra.dedup();
        Routing::Matched(self.decide([&entry.plain, any_plain, &extra], post))
    }

    /// Walks the candidates (ascending id lists, merged) and keeps each
    /// chat's first rule, then drops it as the plugin does: after picking the
    /// decider, so a deciding `mute` or `follow` silences the chat even when
    /// a lower rule would have let the post through.
    fn decide<const N: usize>(&self, lists: [&[u32]; N], post: &Post) -> Vec<Match> {
        let mut out = Vec::new();
        let mut last_chat = None;
        let mut pos = [0usize; N];
        loop {
            let mut next: Option<(usize, u32)> = None;
            for (k, list) in lists.iter().enumerate() {
                if let Some(&id) = list.get(pos[k])
                    && next.is_none_or(|(_, best)| id < best)
                {
                    next = Some((k, id));
                }
            }
            let Some((k, id)) = next else { break };
            pos[k] += 1;
            let rule = &self.rules[id as usize];
            if last_chat == Some(rule.chat) {
                continue;
            }
            last_chat = Some(rule.chat);
            if rule.filter == Filter::Mute {
                continue;
            }
            if !post.is_first() {
                // The plugin swaps the follow check for a category check on
                // category-changed posts: they reach chats whose decider names
                // a category, follow included.
                let keep = if post.is_category_change() {
                    rule.category.is_some()
                } else {
                    rule.filter != Filter::Follow
                };
                if !keep {
                    continue;
                }
            }
            out.push(Match {
                chat: rule.chat as usize,
                rule: rule.index as usize,
                filter: rule.filter,
            });
        }
        out
    }

    fn tags_match(&self, id: u32, topic_tags: &[u32]) -> bool {
        let rule = &self.rules[id as usize];
        let wanted = &self.rule_tags[rule.tags_start as usize..rule.tags_end as usize];
        wanted.is_empty() || wanted.iter().any(|t| topic_tags.binary_search(t).is_ok())
    }

    fn category_matches(&self, id: u32, entry: &CategoryEntry) -> bool {
        match self.rules[id as usize].category {
            // A restricted category is only for rules that name it.
            None => !entry.restricted,
            Some(g) => entry.globs.binary_search(&g).is_ok(),
        }
    }

    fn category_entry(&self, path: &str, restricted: bool) -> Arc<CategoryEntry> {
        let cache = if restricted {
            &self.restricted_categories
        } else {
            &self.open_categories
        };
        cache.get_or_insert_with(path, || {
            Arc::new(self.build_category_entry(path, restricted))
        })
    }

    fn build_category_entry(&self, path: &str, restricted: bool) -> CategoryEntry {
        let mut globs = self.category_globs.matches(&path.to_lowercase());
        if restricted {
            // A literal glob that matches is the category's own path.
            globs.retain(|&g| self.category_literal[g as usize]);
        }
        let (mut plain, mut tagged) = (Vec::new(), Vec::new());
        for &g in &globs {
            plain.extend_from_slice(&self.category_plain[g as usize]);
            tagged.extend_from_slice(&self.category_tagged[g as usize]);
        }
        // Each rule has one category, so no duplicates; only order is needed.
        plain.sort_unstable();
        tagged.sort_unstable();
        CategoryEntry {
            restricted,
            globs,
            plain,
            tagged,
        }
    }

    /// Tag glob ids matched by any of the topic's tag names or slugs, ascending.
    fn topic_tag_ids(&self, topic: &Topic) -> Vec<u32> {
        let mut ids = Vec::new();
        if self.tag_globs.is_empty() {
            return ids;
        }
        for tag in &topic.tags {
            if tag.hidden {
                for text in [&tag.name, &tag.slug] {
                    ids.extend(self.tag_literals.get(&text.to_lowercase()));
                }
                continue;
            }
            ids.extend_from_slice(&self.tag_matches(&tag.name));
            if tag.slug != tag.name {
                ids.extend_from_slice(&self.tag_matches(&tag.slug));
            }
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    fn tag_matches(&self, tag: &str) -> Arc<[u32]> {
        self.tag_cache.get_or_insert_with(tag, || {
            Arc::from(self.tag_globs.matches(&tag.to_lowercase()))
        })
    }
}

/// The post-level checks that come before any rule.
fn skip_post(post: &Post) -> Option<SkipReason> {
    if post.hidden {
        return Some(SkipReason::Hidden);
    }
    if post.deleted {
        return Some(SkipReason::Deleted);
    }
    match post.post_type {
        PostType::Regular => None,
        // The category-change post is a whisper today and was a small action
        // before Discourse PR #29602; both announce a move worth relaying.
        PostType::Whisper | PostType::SmallAction if post.is_category_change() => None,
        PostType::Whisper => Some(SkipReason::Whisper),
        PostType::SmallAction => Some(SkipReason::SmallAction),
        PostType::ModeratorAction | PostType::Unknown => Some(SkipReason::ModeratorAction),
    }
}

/// Checks the group of a rule; returns it lower-cased when the rule uses one.
fn validate_group(def: &RuleDef, problems: &mut Vec<Problem>) -> Option<String> {
    match (def.kind, &def.group) {
        (RuleType::Normal, Some(group)) => {
            problems.push(Problem::error(
                Some(group.span()),
                "`group` only applies to type = group_message or group_mention",
            ));
            None
        }
        (RuleType::Normal, None) => None,
        (_, Some(group)) => {
            let name = group.get_ref().trim();
            if name.is_empty() {
                problems.push(Problem::error(Some(group.span()), "`group` is empty"));
                return None;
            }
            Some(name.to_lowercase())
        }
        (kind, None) => {
            let span = def.span.clone().or_else(|| {
                def.category
                    .as_ref()
                    .or(def.tags.first())
                    .map(Spanned::span)
            });
            problems.push(Problem::error(
                span,
                format!("a rule with type = {} needs `group`", kind.as_str()),
            ));
            None
        }
    }
}

/// Group names and mentions compare case-insensitively; most are already lower-case.
fn lower(s: &str) -> Cow<'_, str> {
    if s.chars().any(char::is_uppercase) {
        Cow::Owned(s.to_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}
