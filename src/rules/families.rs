//! Rules of the event families beyond posts (`ingest::families`): per chat,
//! the first matching rule of the event's family decides (mute > watch >
//! follow; among equals, rules with filters first), as for posts. Family
//! events are few, so their rules are scanned, not indexed: the post index
//! is untouched by them.
//!
//! Private items (a PM or restricted category the item is about, a direct
//! message channel) reach only rules that name them exactly: the category
//! path or the channel, without wildcards. A family with a neutral form
//! (the review queue) lets other chats have that instead.

use std::collections::HashMap;

use globset::{GlobBuilder, GlobMatcher};
use serde_spanned::Spanned;

use super::{GLOB_META, Match, RuleDef, SkipReason, lower};
use crate::config::Problem;
use crate::config::model::{Filter, RuleType};
use crate::ingest::families::{Family, FilterKind, Private};
use crate::ingest::{Event, Notice};

/// One glob and, when it has no wildcard, the exact text it names.
#[derive(Debug, Clone)]
struct Pattern {
    glob: GlobMatcher,
    literal: Option<String>,
}

impl Pattern {
    fn compile(value: &Spanned<String>, what: &str, problems: &mut Vec<Problem>) -> Option<Self> {
        let text = value.get_ref().trim().to_lowercase();
        match GlobBuilder::new(&text).literal_separator(true).build() {
            Ok(g) => Some(Pattern {
                glob: g.compile_matcher(),
                literal: (!text.contains(GLOB_META)).then_some(text),
            }),
            Err(e) => {
                problems.push(Problem::error(
                    Some(value.span()),
                    format!("invalid {what} glob `{}`: {}", value.get_ref(), e.kind()),
                ));
                None
            }
        }
    }

    fn matches(&self, text: &str) -> bool {
        self.glob.is_match(lower(text).as_ref())
    }

    /// Names `text` exactly (no wildcard).
    fn names(&self, text: &str) -> bool {
        self.literal.as_deref() == Some(lower(text).as_ref())
    }
}

#[derive(Debug, Clone)]
struct FamilyRule {
    chat: u32,
    index: u32,
    filter: Filter,
    category: Option<Pattern>,
    tags: Vec<Pattern>,
    group: Option<String>,
    channel: Option<Pattern>,
}

/// How a rule meets an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Meets {
    No,
    /// Matches, naming the private item exactly (or it is not private).
    Fully,
    /// Matches only the item's neutral form.
    Neutrally,
}

/// The family rules of all chats, by family name.
#[derive(Debug, Default)]
pub(super) struct FamilyRules {
    by_family: HashMap<&'static str, Vec<FamilyRule>>,
}

impl FamilyRules {
    /// Takes the family rules of every chat; reports filters a family cannot
    /// use, at their spans.
    pub(super) fn compile<R: AsRef<[RuleDef]>>(chats: &[R], problems: &mut Vec<Problem>) -> Self {
        let mut by_family: HashMap<&'static str, Vec<FamilyRule>> = HashMap::new();
        for (chat, defs) in chats.iter().enumerate() {
            for (index, def) in defs.as_ref().iter().enumerate() {
                let Some(family) = def.family else { continue };
                if let Some(rule) = compile_rule(family, def, chat, index, problems) {
                    by_family.entry(family.name).or_default().push(rule);
                }
            }
        }
        for rules in by_family.values_mut() {
            // Per chat in precedence order; a rule with filters before a
            // catch-all of the same filter, then as written.
            rules.sort_by_key(|r| {
                let open = r.category.is_none()
                    && r.tags.is_empty()
                    && r.group.is_none()
                    && r.channel.is_none();
                (r.chat, r.filter, open, r.index)
            });
        }
        FamilyRules { by_family }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.by_family.is_empty()
    }

    /// Each chat's deciding rule for `notice`, with how it meets it.
    fn decide(&self, event: &Event, notice: &Notice) -> Result<Vec<(Match, Meets)>, SkipReason> {
        let Some(family) = crate::ingest::families::named(&notice.family) else {
            return Err(SkipReason::NotNotifying(event.kind.as_str().to_string()));
        };
        if family.allows(FilterKind::Topic) && event.topic.unlisted {
            return Err(SkipReason::Unlisted);
        }
        let Some(rules) = self.by_family.get(family.name) else {
            return Ok(vec![]);
        };
        let mut out = Vec::new();
        let mut decided = None;
        for r in rules {
            if decided == Some(r.chat) {
                continue;
            }
            let meets = meets(r, family, event, notice);
            if meets == Meets::No {
                continue;
            }
            decided = Some(r.chat);
            if r.filter == Filter::Mute {
                continue;
            }
            let m = Match {
                chat: r.chat as usize,
                rule: r.index as usize,
                filter: r.filter,
            };
            out.push((m, meets));
        }
        Ok(out)
    }

    pub(super) fn route(&self, event: &Event, notice: &Notice) -> Result<Vec<Match>, SkipReason> {
        Ok(self
            .decide(event, notice)?
            .into_iter()
            .map(|(m, _)| m)
            .collect())
    }

    /// Whether chat `chat` gets only the neutral form of `event`'s notice
    /// (its rule does not name the private item the notice is about).
    pub(super) fn neutral_for(&self, chat: usize, event: &Event) -> bool {
        let Some(notice) = &event.notice else {
            return false;
        };
        self.decide(event, notice).is_ok_and(|ms| {
            ms.iter()
                .any(|(m, meets)| m.chat == chat && *meets == Meets::Neutrally)
        })
    }
}

fn compile_rule(
    family: &'static Family,
    def: &RuleDef,
    chat: usize,
    index: usize,
    problems: &mut Vec<Problem>,
) -> Option<FamilyRule> {
    let before = problems.len();
    let refuse = |problems: &mut Vec<Problem>, span, what: &str, filter: FilterKind| {
        if !family.allows(filter) {
            problems.push(Problem::error(
                Some(span),
                format!(
                    "`{what}` does not apply to {} rules: they take {}",
                    family.name,
                    takes(family)
                ),
            ));
        }
    };
    if let Some(c) = &def.category {
        refuse(problems, c.span(), "category", FilterKind::Topic);
    }
    if let Some(t) = def.tags.first() {
        refuse(problems, t.span(), "tags", FilterKind::Topic);
    }
    if let Some(g) = &def.group {
        refuse(problems, g.span(), "group", FilterKind::Group);
    }
    if let Some(c) = &def.channel {
        refuse(problems, c.span(), "channel", FilterKind::Channel);
    }
    if def.kind != RuleType::Normal {
        problems.push(Problem::error(
            def.span.clone(),
            format!("`type` is for post rules; a {} rule has none", family.name),
        ));
    }
    if def.filter == Filter::Thread {
        problems.push(Problem::error(
            def.span.clone(),
            format!(
                "`thread` is for post rules (replies under their topic); a {} rule takes watch, follow or mute",
                family.name
            ),
        ));
    }
    let category = def
        .category
        .as_ref()
        .and_then(|c| Pattern::compile(c, "category", problems));
    let tags: Vec<Pattern> = (def.tags.iter())
        .filter_map(|t| Pattern::compile(t, "tag", problems))
        .collect();
    let channel = def
        .channel
        .as_ref()
        .and_then(|c| Pattern::compile(c, "channel", problems));
    let group = def
        .group
        .as_ref()
        .map(|g| g.get_ref().trim().to_lowercase());
    if group.as_deref() == Some("") {
        problems.push(Problem::error(
            def.group.as_ref().map(Spanned::span),
            "`group` is empty",
        ));
    }
    (problems.len() == before).then_some(FamilyRule {
        chat: chat as u32,
        index: index as u32,
        filter: def.filter,
        category,
        tags,
        group,
        channel,
    })
}

/// `category and tags, group` for a problem text.
fn takes(family: &Family) -> String {
    let names: Vec<&str> = (family.filters.iter())
        .map(|f| match f {
            FilterKind::Topic => "category and tags",
            FilterKind::Group => "group",
            FilterKind::Channel => "channel",
        })
        .collect();
    match names.is_empty() {
        true => "no filters".into(),
        false => names.join(", "),
    }
}

fn meets(r: &FamilyRule, family: &Family, event: &Event, notice: &Notice) -> Meets {
    let topic = &event.topic;
    let category = topic.category.as_ref();
    let closed = category.is_some_and(|c| c.restricted || c.unresolved);
    let mut named = false;
    if let Some(p) = &r.category {
        let Some(c) = category else { return Meets::No };
        // A glob reaches a restricted category only as the private case
        // below: it does not name it.
        if p.names(&c.path) {
            named = true;
        } else if !p.matches(&c.path) {
            return Meets::No;
        }
    }
    if !r.tags.is_empty() {
        let hit = topic.tags.iter().any(|t| {
            r.tags.iter().any(|p| match t.hidden {
                // Staff-only tags match only rules naming them.
                true => p.names(&t.name) || p.names(&t.slug),
                false => p.matches(&t.name) || p.matches(&t.slug),
            })
        });
        if !hit {
            return Meets::No;
        }
    }
    if let Some(g) = &r.group
        && !notice.groups.iter().any(|n| n == g)
    {
        return Meets::No;
    }
    if let Some(p) = &r.channel {
        let Some(c) = &notice.channel else {
            return Meets::No;
        };
        if p.names(c) {
            named = true;
        } else if !p.matches(c) {
            return Meets::No;
        }
    }
    let private = notice.private || topic.private_message || closed;
    match (private && !named, family.private) {
        (false, _) => Meets::Fully,
        (true, Private::Neutral) => Meets::Neutrally,
        (true, Private::Nothing) => Meets::No,
    }
}
