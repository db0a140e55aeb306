//! Behaviour of the matcher, ported from the Discourse chat integration's
//! `manager_spec.rb` and extended to globs, restricted categories and compile
//! errors; plus a comparison against a naive rule-by-rule router.

use globset::GlobBuilder;
use serde_spanned::Spanned;

use super::*;
use crate::config::Severity;
use crate::ingest::{Category, Tag};

use Filter::{Follow, Mute, Thread, Watch};
use RuleType::{GroupMention, GroupMessage, Normal};

fn sp(s: &str) -> Spanned<String> {
    Spanned::new(0..0, s.to_string())
}

fn at(span: std::ops::Range<usize>, s: &str) -> Spanned<String> {
    Spanned::new(span, s.to_string())
}

fn rule(filter: Filter, category: Option<&str>) -> RuleDef {
    RuleDef {
        filter,
        kind: Normal,
        category: category.map(sp),
        tags: vec![],
        group: None,
        family: None,
        channel: None,
        span: None,
    }
}

fn tagged(filter: Filter, category: Option<&str>, tags: &[&str]) -> RuleDef {
    RuleDef {
        tags: tags.iter().map(|t| sp(t)).collect(),
        ..rule(filter, category)
    }
}

fn group(filter: Filter, kind: RuleType, name: &str) -> RuleDef {
    RuleDef {
        kind,
        group: Some(sp(name)),
        ..rule(filter, None)
    }
}

fn category(path: &str, restricted: bool) -> Category {
    Category {
        id: 7,
        slug: path.rsplit('/').next().unwrap_or(path).to_string(),
        path: path.to_string(),
        name: path.to_string(),
        restricted,
        unresolved: false,
        color: None,
    }
}

/// A regular post `number` in a public topic of `path`, without tags or mentions.
fn post(path: Option<&str>, number: u64) -> Event {
    let mut e = Event::sample("https://forum.example.org");
    e.topic.category = path.map(|p| category(p, false));
    e.topic.tags.clear();
    if let Some(post) = e.post.as_mut() {
        post.number = number;
    }
    e
}

fn with_tags(mut e: Event, tags: &[(&str, &str)]) -> Event {
    e.topic.tags = tags
        .iter()
        .map(|(name, slug)| Tag {
            hidden: false,
            name: name.to_string(),
            slug: slug.to_string(),
        })
        .collect();
    e
}

fn mentioning(mut e: Event, names: &[&str]) -> Event {
    if let Some(post) = e.post.as_mut() {
        post.mentions = names.iter().map(|n| n.to_string()).collect();
    }
    e
}

fn pm(groups: &[&str], number: u64) -> Event {
    let mut e = post(None, number);
    e.topic.private_message = true;
    e.topic.pm_groups = groups.iter().map(|g| g.to_string()).collect();
    e
}

fn restricted(path: &str) -> Event {
    let mut e = post(None, 1);
    e.topic.category = Some(category(path, true));
    e
}

fn category_change(post_type: PostType) -> Event {
    let mut e = post(Some("support/rust"), 4);
    if let Some(post) = e.post.as_mut() {
        post.post_type = post_type;
        post.action_code = Some("category_changed".into());
    }
    e
}

fn compile(chats: &[Vec<RuleDef>]) -> Matcher {
    Matcher::compile(chats).expect("valid rules")
}

fn matches(m: &Matcher, e: &Event) -> Vec<Match> {
    match m.route(e) {
        Routing::Matched(v) => v,
        Routing::Skipped(reason) => panic!("skipped: {reason:?}"),
    }
}

fn chats(m: &Matcher, e: &Event) -> Vec<usize> {
    matches(m, e).iter().map(|m| m.chat).collect()
}

// --- manager_spec.rb ---

#[test]
fn new_topic_reaches_watch_and_follow_not_mute() {
    let m = compile(&[
        vec![rule(Watch, Some("support/rust"))],
        vec![rule(Follow, Some("support/rust"))],
        vec![rule(Mute, Some("support/rust"))],
    ]);
    assert_eq!(chats(&m, &post(Some("support/rust"), 1)), [0, 1]);
}

#[test]
fn reply_reaches_only_watch() {
    let m = compile(&[
        vec![rule(Watch, Some("support/rust"))],
        vec![rule(Follow, Some("support/rust"))],
        vec![rule(Mute, Some("support/rust"))],
    ]);
    assert_eq!(chats(&m, &post(Some("support/rust"), 2)), [0]);
}

#[test]
fn wildcard_category() {
    let m = compile(&[vec![rule(Watch, None)], vec![rule(Watch, Some("general"))]]);
    assert_eq!(chats(&m, &post(Some("support/rust"), 1)), [0]);
    // A topic without category reaches only rules without category.
    assert_eq!(chats(&m, &post(None, 1)), [0]);
}

#[test]
fn mute_over_watch() {
    let m = compile(&[vec![rule(Watch, None), rule(Mute, Some("support/rust"))]]);
    assert_eq!(
        chats(&m, &post(Some("support/rust"), 1)),
        Vec::<usize>::new()
    );
    assert_eq!(chats(&m, &post(Some("general"), 1)), [0]);
}

#[test]
fn watch_over_follow() {
    let m = compile(&[vec![rule(Follow, None), rule(Watch, Some("support/rust"))]]);
    assert_eq!(
        matches(&m, &post(Some("support/rust"), 2)),
        [Match {
            chat: 0,
            rule: 1,
            filter: Watch
        }]
    );
}

#[test]
fn thread_over_watch() {
    let m = compile(&[vec![rule(Watch, None), rule(Thread, Some("support/rust"))]]);
    assert_eq!(
        matches(&m, &post(Some("support/rust"), 2)),
        [Match {
            chat: 0,
            rule: 1,
            filter: Thread
        }]
    );
}

#[test]
fn follow_only_first_post() {
    let m = compile(&[vec![rule(Follow, None)]]);
    assert_eq!(chats(&m, &post(Some("general"), 1)), [0]);
    assert_eq!(chats(&m, &post(Some("general"), 2)), Vec::<usize>::new());
}

#[test]
fn private_messages_skip_normal_rules() {
    let m = compile(&[vec![rule(Follow, None)], vec![rule(Watch, None)]]);
    assert_eq!(chats(&m, &pm(&["support-team"], 1)), Vec::<usize>::new());
    assert_eq!(
        m.route(&pm(&[], 1)),
        Routing::Skipped(SkipReason::PrivateMessageWithoutGroups)
    );
}

#[test]
fn group_pm() {
    let m = compile(&[
        vec![rule(Watch, None)],
        vec![group(Watch, GroupMessage, "support-team")],
        vec![group(Watch, GroupMessage, "other")],
    ]);
    assert_eq!(chats(&m, &pm(&["support-team"], 1)), [1]);
    // Group names compare case-insensitively, both ways.
    assert_eq!(chats(&m, &pm(&["Support-Team"], 2)), [1]);
    let m = compile(&[vec![group(Watch, GroupMessage, "Support-Team")]]);
    assert_eq!(chats(&m, &pm(&["support-team"], 1)), [0]);
}

#[test]
fn pm_with_several_groups() {
    let m = compile(&[
        vec![group(Watch, GroupMessage, "support-team")],
        vec![group(Watch, GroupMessage, "staff-group")],
    ]);
    assert_eq!(chats(&m, &pm(&["support-team", "staff-group"], 1)), [0, 1]);
}

#[test]
fn group_mentions() {
    let m = compile(&[
        vec![rule(Watch, None)],
        vec![group(Watch, GroupMessage, "staff-group")],
        vec![group(Watch, GroupMention, "staff-group")],
    ]);
    let e = mentioning(post(Some("general"), 3), &["alice", "staff-group"]);
    assert_eq!(chats(&m, &e), [0, 2]);
    // Without the mention only the wildcard chat.
    assert_eq!(chats(&m, &post(Some("general"), 3)), [0]);
}

#[test]
fn group_rule_beats_normal_rule() {
    let e = mentioning(post(Some("general"), 3), &["staff-group"]);
    let m = compile(&[vec![rule(Mute, Some("general"))]]);
    assert_eq!(chats(&m, &e), Vec::<usize>::new());
    // Type comes before filter: a group_mention watch beats a normal mute.
    let m = compile(&[vec![
        rule(Mute, Some("general")),
        group(Watch, GroupMention, "staff-group"),
    ]]);
    assert_eq!(
        matches(&m, &e),
        [Match {
            chat: 0,
            rule: 1,
            filter: Watch
        }]
    );
}

#[test]
fn mentions_in_private_messages_do_not_trigger() {
    let m = compile(&[
        vec![group(Watch, GroupMessage, "support-team")],
        vec![group(Watch, GroupMention, "staff-group")],
    ]);
    let e = mentioning(pm(&["support-team"], 2), &["staff-group"]);
    assert_eq!(chats(&m, &e), [0]);
}

#[test]
fn rules_without_tags_ignore_tags() {
    let m = compile(&[vec![rule(Follow, None)]]);
    assert_eq!(chats(&m, &post(Some("general"), 1)), [0]);
    let e = with_tags(post(Some("general"), 1), &[("gsoc", "gsoc")]);
    assert_eq!(chats(&m, &e), [0]);
}

#[test]
fn rules_with_tags_need_a_matching_tag() {
    let m = compile(&[vec![tagged(Follow, Some("general"), &["gsoc"])]]);
    assert_eq!(chats(&m, &post(Some("general"), 1)), Vec::<usize>::new());
    let e = with_tags(post(Some("general"), 1), &[("other", "other")]);
    assert_eq!(chats(&m, &e), Vec::<usize>::new());
    let e = with_tags(
        post(Some("general"), 1),
        &[("other", "other"), ("GSoC", "gsoc")],
    );
    assert_eq!(chats(&m, &e), [0]);
    // The category must still match.
    let e = with_tags(post(Some("support"), 1), &[("gsoc", "gsoc")]);
    assert_eq!(chats(&m, &e), Vec::<usize>::new());
}

#[test]
fn tag_globs_match_name_or_slug() {
    let m = compile(&[
        vec![tagged(Watch, None, &["web-sockets"])],
        vec![tagged(Watch, None, &["web_*"])],
        vec![tagged(Watch, None, &["release-*", "bug"])],
    ]);
    let e = with_tags(post(Some("general"), 2), &[("web_sockets", "web-sockets")]);
    assert_eq!(chats(&m, &e), [0, 1]);
    let e = with_tags(
        post(Some("general"), 2),
        &[("Release-Notes", "release-notes")],
    );
    assert_eq!(chats(&m, &e), [2]);
}

#[test]
fn tags_apply_to_group_rules() {
    let mut mention = group(Watch, GroupMention, "staff-group");
    mention.tags = vec![sp("urgent")];
    let mut message = group(Watch, GroupMessage, "support-team");
    message.tags = vec![sp("urgent")];
    let m = compile(&[vec![mention], vec![message]]);
    let e = mentioning(post(Some("general"), 2), &["staff-group"]);
    assert_eq!(chats(&m, &e), Vec::<usize>::new());
    assert_eq!(chats(&m, &with_tags(e, &[("urgent", "urgent")])), [0]);
    let e = pm(&["support-team"], 1);
    assert_eq!(chats(&m, &e), Vec::<usize>::new());
    assert_eq!(chats(&m, &with_tags(e, &[("urgent", "urgent")])), [1]);
}

#[test]
fn category_change_reaches_chats_whose_decider_names_a_category() {
    let m = compile(&[
        vec![rule(Watch, Some("support/rust"))],
        vec![rule(Watch, None)],
        vec![rule(Follow, Some("support/**"))],
        vec![rule(Watch, None), rule(Watch, Some("support/*"))],
        vec![rule(Mute, Some("support/rust")), rule(Watch, None)],
    ]);
    // Chat 2: the plugin swaps the follow check for the category check on
    // category-changed posts. Chat 3: among equal rules, the one naming a
    // category decides.
    let expected = [
        Match {
            chat: 0,
            rule: 0,
            filter: Watch,
        },
        Match {
            chat: 2,
            rule: 0,
            filter: Follow,
        },
        Match {
            chat: 3,
            rule: 1,
            filter: Watch,
        },
    ];
    assert_eq!(matches(&m, &category_change(PostType::Whisper)), expected);
    // The pre-2024 shape: a small action.
    assert_eq!(
        matches(&m, &category_change(PostType::SmallAction)),
        expected
    );
}

#[test]
fn whispers_and_actions_are_skipped() {
    let m = compile(&[vec![rule(Watch, None)]]);
    let mut e = post(Some("general"), 2);
    let with = |e: &mut Event, t: PostType, code: Option<&str>| {
        if let Some(post) = e.post.as_mut() {
            post.post_type = t;
            post.action_code = code.map(str::to_string);
        }
    };
    with(&mut e, PostType::Whisper, None);
    assert_eq!(m.route(&e), Routing::Skipped(SkipReason::Whisper));
    with(&mut e, PostType::Whisper, Some("tags_changed"));
    assert_eq!(m.route(&e), Routing::Skipped(SkipReason::Whisper));
    with(&mut e, PostType::SmallAction, Some("closed.enabled"));
    assert_eq!(m.route(&e), Routing::Skipped(SkipReason::SmallAction));
    with(&mut e, PostType::ModeratorAction, None);
    assert_eq!(m.route(&e), Routing::Skipped(SkipReason::ModeratorAction));
    with(&mut e, PostType::Unknown, None);
    assert_eq!(m.route(&e), Routing::Skipped(SkipReason::ModeratorAction));
}

#[test]
fn hidden_and_deleted_are_skipped() {
    let m = compile(&[vec![rule(Watch, None)]]);
    let mut e = post(Some("general"), 1);
    if let Some(p) = e.post.as_mut() {
        p.hidden = true;
    }
    assert_eq!(m.route(&e), Routing::Skipped(SkipReason::Hidden));
    let mut e = post(Some("general"), 1);
    if let Some(p) = e.post.as_mut() {
        p.deleted = true;
    }
    assert_eq!(m.route(&e), Routing::Skipped(SkipReason::Deleted));
}

#[test]
fn only_post_created_notifies() {
    let m = compile(&[vec![rule(Watch, None)]]);
    let mut e = post(Some("general"), 1);
    e.kind = EventKind::PostEdited;
    assert_eq!(
        m.route(&e),
        Routing::Skipped(SkipReason::NotNotifying("post_edited".into()))
    );
    e.kind = EventKind::TopicCreated;
    e.post = None;
    assert_eq!(
        m.route(&e),
        Routing::Skipped(SkipReason::NotNotifying("topic_created".into()))
    );
    e.kind = EventKind::PostCreated;
    assert_eq!(
        m.route(&e),
        Routing::Skipped(SkipReason::NotNotifying("post_created".into()))
    );
}

#[test]
fn unlisted_topics_reach_no_rule_not_even_one_naming_their_category_or_group() {
    let m = compile(&[
        vec![rule(Watch, None)],
        vec![rule(Watch, Some("general"))],
        vec![group(Watch, RuleType::GroupMessage, "support-team")],
    ]);
    let mut e = post(Some("general"), 1);
    assert!(matches!(m.route(&e), Routing::Matched(ref ms) if ms.len() == 2));
    e.topic.unlisted = true;
    assert_eq!(m.route(&e), Routing::Skipped(SkipReason::Unlisted));
    let mut p = pm(&["support-team"], 2);
    p.topic.unlisted = true;
    assert_eq!(m.route(&p), Routing::Skipped(SkipReason::Unlisted));
}

// --- beyond the spec ---

#[test]
fn category_globs() {
    let m = compile(&[
        vec![rule(Watch, Some("support/**"))],
        vec![rule(Watch, Some("support/*"))],
        vec![rule(Watch, Some("support"))],
        vec![rule(Watch, Some("**/rust"))],
        vec![rule(Watch, Some("{general,staff}"))],
    ]);
    assert_eq!(chats(&m, &post(Some("support/rust"), 2)), [0, 1, 3]);
    assert_eq!(chats(&m, &post(Some("support/rust/x"), 2)), [0]);
    assert_eq!(chats(&m, &post(Some("support"), 2)), [2]);
    assert_eq!(chats(&m, &post(Some("development/rust"), 2)), [3]);
    assert_eq!(chats(&m, &post(Some("general"), 2)), [4]);
    // Case-insensitive.
    assert_eq!(chats(&m, &post(Some("Support/Rust"), 2)), [0, 1, 3]);
    let m = compile(&[vec![rule(Watch, Some("SUPPORT/*"))]]);
    assert_eq!(chats(&m, &post(Some("support/rust"), 2)), [0]);
}

#[test]
fn restricted_category_only_for_literal_rules() {
    let m = compile(&[
        vec![rule(Watch, None)],
        vec![rule(Watch, Some("staff"))],
        vec![rule(Watch, Some("st*"))],
        vec![rule(Watch, Some("Staff"))],
        vec![group(Watch, GroupMention, "staff-group")],
        vec![RuleDef {
            category: Some(sp("staff")),
            ..group(Watch, GroupMention, "staff-group")
        }],
    ]);
    let e = mentioning(restricted("staff"), &["staff-group"]);
    assert_eq!(chats(&m, &e), [1, 3, 5]);
    // A restricted subcategory is not reached through its parent's glob.
    let m = compile(&[
        vec![rule(Watch, Some("staff/**"))],
        vec![rule(Watch, Some("staff/mods"))],
    ]);
    assert_eq!(chats(&m, &restricted("staff/mods")), [1]);
}

#[test]
fn deciding_follow_drops_a_reply_even_if_a_lower_rule_matches() {
    let m = compile(&[vec![
        rule(Watch, Some("general")),
        group(Follow, GroupMention, "staff-group"),
    ]]);
    let e = mentioning(post(Some("general"), 2), &["staff-group"]);
    assert_eq!(chats(&m, &e), Vec::<usize>::new());
    let e = mentioning(post(Some("general"), 1), &["staff-group"]);
    assert_eq!(
        matches(&m, &e),
        [Match {
            chat: 0,
            rule: 1,
            filter: Follow
        }]
    );
}

#[test]
fn group_mention_with_category() {
    let m = compile(&[vec![RuleDef {
        category: Some(sp("support/**")),
        ..group(Thread, GroupMention, "staff-group")
    }]]);
    let e = mentioning(post(Some("support/rust"), 2), &["Staff-Group"]);
    assert_eq!(chats(&m, &e), [0]);
    let e = mentioning(post(Some("general"), 2), &["staff-group"]);
    assert_eq!(chats(&m, &e), Vec::<usize>::new());
    let e = mentioning(post(None, 2), &["staff-group"]);
    assert_eq!(chats(&m, &e), Vec::<usize>::new());
}

#[test]
fn one_match_per_chat_in_chat_order() {
    let m = compile(&[
        vec![
            rule(Watch, None),
            rule(Watch, Some("general")),
            rule(Thread, None),
        ],
        vec![],
        vec![rule(Watch, Some("gen*")), rule(Follow, None)],
    ]);
    assert_eq!(
        matches(&m, &post(Some("general"), 1)),
        [
            Match {
                chat: 0,
                rule: 2,
                filter: Thread
            },
            Match {
                chat: 2,
                rule: 0,
                filter: Watch
            },
        ]
    );
}

#[test]
fn compile_reports_every_problem_with_its_span() {
    let chats = vec![
        vec![
            RuleDef {
                category: Some(at(10..20, "support/[rust")),
                tags: vec![at(30..35, "ok"), at(40..50, "bad{")],
                ..rule(Watch, None)
            },
            RuleDef {
                group: Some(at(60..70, "staff")),
                ..rule(Watch, None)
            },
        ],
        vec![
            RuleDef {
                group: None,
                tags: vec![at(80..85, "x")],
                ..group(Watch, GroupMention, "")
            },
            RuleDef {
                category: Some(at(90..95, "general")),
                ..group(Watch, GroupMessage, "support-team")
            },
            RuleDef {
                group: None,
                ..group(Watch, GroupMessage, "")
            },
        ],
    ];
    let problems = Matcher::compile(&chats).expect_err("invalid rules");
    let mut found: Vec<_> = problems
        .iter()
        .map(|p| (p.span.clone(), p.message.as_str()))
        .collect();
    found.sort_by_key(|(span, _)| span.as_ref().map(|s| s.start));
    assert!(problems.iter().all(|p| p.severity == Severity::Error));
    assert_eq!(found.len(), 6, "{found:#?}");
    assert_eq!(found[0].0, None);
    assert!(found[0].1.contains("group_message needs `group`"));
    assert_eq!(found[1].0, Some(10..20));
    assert!(found[1].1.contains("`support/[rust`"), "{}", found[1].1);
    assert!(
        found[1].1.contains("unclosed character class"),
        "{}",
        found[1].1
    );
    assert_eq!(found[2].0, Some(40..50));
    assert!(found[2].1.contains("`bad{`"));
    assert_eq!(found[3].0, Some(60..70));
    assert_eq!(
        found[3].1,
        "`group` only applies to type = group_message or group_mention"
    );
    assert_eq!(found[4].0, Some(80..85));
    assert!(found[4].1.contains("group_mention needs `group`"));
    assert_eq!(found[5].0, Some(90..95));
    assert!(found[5].1.contains("private messages have no category"));
}

#[test]
fn compact_forms() {
    let cases = [
        (
            tagged(Watch, Some("support/**"), &["bug", "release-*"]),
            "watch c/support/** t/bug t/release-*",
        ),
        (rule(Follow, None), "follow all"),
        (tagged(Watch, None, &["bug"]), "watch t/bug"),
        (rule(Mute, Some("staff")), "mute c/staff"),
        (
            group(Watch, GroupMessage, "support-team"),
            "watch group_message:support-team",
        ),
        (
            RuleDef {
                category: Some(sp("general")),
                ..group(Thread, GroupMention, "staff-group")
            },
            "thread group_mention:staff-group c/general",
        ),
    ];
    for (def, want) in cases {
        assert_eq!(def.compact(), want);
    }
}

// --- the indexed matcher against a naive one ---

/// Compiled case-insensitive matchers of every glob the naive router meets.
struct Globs(std::collections::HashMap<String, globset::GlobMatcher>);

impl Globs {
    fn of(chats: &[Vec<RuleDef>]) -> Self {
        let mut map = std::collections::HashMap::new();
        for r in chats.iter().flatten() {
            for g in r.category.iter().chain(&r.tags) {
                let matcher = GlobBuilder::new(g.get_ref())
                    .literal_separator(true)
                    .case_insensitive(true)
                    .build()
                    .expect("valid glob")
                    .compile_matcher();
                map.insert(g.get_ref().clone(), matcher);
            }
        }
        Globs(map)
    }

    fn matches(&self, glob: &str, text: &str) -> bool {
        self.0[glob].is_match(text)
    }
}

/// The plugin's algorithm, rule by rule, with this crate's extensions.
fn naive_route(chats: &[Vec<RuleDef>], globs: &Globs, e: &Event) -> Vec<Match> {
    let post = e.post.as_ref().expect("a post");
    let topic = &e.topic;
    let rule_matches = |r: &RuleDef| {
        let tags_ok = r.tags.is_empty()
            || topic.tags.iter().any(|t| {
                r.tags.iter().any(|g| {
                    globs.matches(g.get_ref(), &t.name) || globs.matches(g.get_ref(), &t.slug)
                })
            });
        let group_in = |names: &[String]| {
            r.group
                .as_ref()
                .is_some_and(|g| names.iter().any(|n| n.eq_ignore_ascii_case(g.get_ref())))
        };
        if topic.private_message {
            return r.kind == GroupMessage && group_in(&topic.pm_groups) && tags_ok;
        }
        let kind_ok = match r.kind {
            Normal => true,
            GroupMention => group_in(&post.mentions),
            GroupMessage => false,
        };
        let category_ok = match (&r.category, &topic.category) {
            (None, None) => true,
            (None, Some(c)) => !c.restricted,
            (Some(_), None) => false,
            (Some(g), Some(c)) if c.restricted => {
                !g.get_ref().contains(GLOB_META) && g.get_ref().eq_ignore_ascii_case(&c.path)
            }
            (Some(g), Some(c)) => globs.matches(g.get_ref(), &c.path),
        };
        kind_ok && category_ok && tags_ok
    };
    let mut out = Vec::new();
    for (chat, rules) in chats.iter().enumerate() {
        let mut hits: Vec<(usize, &RuleDef)> = rules
            .iter()
            .enumerate()
            .filter(|(_, r)| rule_matches(r))
            .collect();
        hits.sort_by_key(|(i, r)| (r.kind, r.filter, r.category.is_none(), *i));
        let Some(&(i, r)) = hits.first() else {
            continue;
        };
        if r.filter == Mute {
            continue;
        }
        if !post.is_first() {
            if post.is_category_change() {
                if r.category.is_none() {
                    continue;
                }
            } else if r.filter == Follow {
                continue;
            }
        }
        out.push(Match {
            chat,
            rule: i,
            filter: r.filter,
        });
    }
    out
}

/// xorshift: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

#[test]
fn indexed_matcher_agrees_with_naive_router() {
    let paths = [
        "support",
        "support/rust",
        "support/rust/x",
        "Support/Installation",
        "general",
        "development/rust",
        "staff",
        "staff/mods",
    ];
    let category_globs = [
        "support",
        "support/*",
        "support/**",
        "*/rust",
        "**/rust",
        "gen*",
        "staff",
        "st*",
        "Support/Rust",
        "{general,staff}",
        "staff/mods",
    ];
    let tags = [
        ("async", "async"),
        ("web_sockets", "web-sockets"),
        ("tokio", "tokio"),
        ("release-notes", "release-notes"),
        ("Bug", "bug"),
    ];
    let tag_globs = [
        "async",
        "web-sockets",
        "web_*",
        "release-*",
        "bug",
        "*",
        "TOKIO",
    ];
    let groups = ["staff-group", "support-team", "Other"];
    let filters = [Mute, Thread, Watch, Follow];

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let chats: Vec<Vec<RuleDef>> = (0..80)
        .map(|_| {
            (0..rng.below(6))
                .map(|_| {
                    let kind = rng.pick(&[Normal, Normal, Normal, GroupMention, GroupMessage]);
                    let category = (kind != GroupMessage && rng.chance(60))
                        .then(|| sp(rng.pick(&category_globs)));
                    let tags = if rng.chance(35) {
                        (0..1 + rng.below(2))
                            .map(|_| sp(rng.pick(&tag_globs)))
                            .collect()
                    } else {
                        vec![]
                    };
                    RuleDef {
                        filter: rng.pick(&filters),
                        kind,
                        category,
                        tags,
                        group: (kind != Normal).then(|| sp(rng.pick(&groups))),
                        ..rule(Filter::Watch, None)
                    }
                })
                .collect()
        })
        .collect();
    let m = compile(&chats);
    let globs = Globs::of(&chats);

    let mut reached = 0;
    for _ in 0..3000 {
        let mut e = post(
            None,
            if rng.chance(40) {
                1
            } else {
                2 + rng.below(5) as u64
            },
        );
        if rng.chance(20) {
            e.topic.private_message = true;
            e.topic.pm_groups = (0..1 + rng.below(2))
                .map(|_| rng.pick(&groups).to_uppercase())
                .collect();
        } else if rng.chance(90) {
            e.topic.category = Some(category(rng.pick(&paths), rng.chance(25)));
        }
        e.topic.tags = (0..rng.below(3))
            .map(|_| {
                let (name, slug) = rng.pick(&tags);
                Tag {
                    hidden: false,
                    name: name.to_string(),
                    slug: slug.to_string(),
                }
            })
            .collect();
        if let Some(post) = e.post.as_mut() {
            post.mentions = (0..rng.below(3))
                .map(|_| rng.pick(&groups).to_lowercase())
                .collect();
            if rng.chance(10) {
                post.post_type = PostType::Whisper;
                post.action_code = Some("category_changed".into());
            }
        }
        let got = matches(&m, &e);
        assert_eq!(got, naive_route(&chats, &globs, &e), "{e:#?}");
        reached += got.len();
    }
    // The comparison means little if nothing ever matched.
    assert!(reached > 3000, "{reached}");
}

/// `cargo test --release --lib rules::tests::throughput -- --ignored --nocapture`
#[test]
#[ignore = "benchmark"]
fn throughput() {
    use std::time::Instant;

    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let paths: Vec<String> = (0..400)
        .flat_map(|p| (0..10).map(move |c| format!("parent-{p}/child-{c}")))
        .collect();
    let tag_names: Vec<String> = (0..2000).map(|t| format!("tag-{t}")).collect();
    let filters = [Mute, Thread, Watch, Watch, Watch, Follow];
    let chats: Vec<Vec<RuleDef>> = (0..10_000)
        .map(|_| {
            (0..10)
                .map(|_| {
                    let roll = rng.below(100);
                    let mut def = rule(rng.pick(&filters), None);
                    if roll < 70 {
                        def.category = Some(sp(&rng.pick(&paths)));
                    } else if roll < 80 {
                        def.category = Some(sp(&format!("parent-{}/**", rng.below(400))));
                    } else if roll < 95 {
                        def.tags = vec![sp(&rng.pick(&tag_names))];
                    } else {
                        def = group(Watch, GroupMention, &format!("group-{}", rng.below(500)));
                    }
                    def
                })
                .collect()
        })
        .collect();
    let start = Instant::now();
    let m = compile(&chats);
    println!("compiled 100k rules in {:?}", start.elapsed());

    let events: Vec<Event> = (0..10_000)
        .map(|_| {
            let mut e = post(Some(&rng.pick(&paths)), 1 + rng.below(3) as u64);
            e = with_tags(e, &[]);
            e.topic.tags = (0..rng.below(4))
                .map(|_| {
                    let name = rng.pick(&tag_names);
                    Tag {
                        hidden: false,
                        slug: name.clone(),
                        name,
                    }
                })
                .collect();
            if rng.chance(10) {
                e = mentioning(e, &[&format!("group-{}", rng.below(500))]);
            }
            e
        })
        .collect();

    let start = Instant::now();
    let mut reached = 0;
    for e in &events {
        reached += matches(&m, e).len();
    }
    println!("cold: {:?} for {} events", start.elapsed(), events.len());

    let rounds = 20;
    let start = Instant::now();
    for _ in 0..rounds {
        for e in &events {
            reached += matches(&m, e).len();
        }
    }
    let elapsed = start.elapsed();
    let n = rounds * events.len();
    println!(
        "warm: {:.0} events/s, {:.1} chats per event",
        n as f64 / elapsed.as_secs_f64(),
        reached as f64 / (n + events.len()) as f64
    );
}

// --- event families (`families.rs`) ---

fn family_rule(family: &str, filter: Filter, category: Option<&str>) -> RuleDef {
    RuleDef {
        family: crate::ingest::families::named(family),
        ..rule(filter, category)
    }
}

/// A review item in `path` (restricted or not), as ingest makes it.
fn review_item(path: Option<&str>, restricted: bool) -> Event {
    let mut e = Event::sample_notice("https://forum.example.org");
    e.topic.category = path.map(|p| category(p, restricted));
    e
}

#[test]
fn family_rules_decide_per_chat_with_mute_first_and_ignore_posts() {
    let m = compile(&[
        // 0: all reviews, but Support's muted.
        vec![
            family_rule("review", Watch, None),
            family_rule("review", Mute, Some("support/**")),
        ],
        // 1: posts only: never a review item.
        vec![rule(Watch, None)],
        // 2: Support's reviews only; a catch-all `follow` after it.
        vec![
            family_rule("review", Follow, None),
            family_rule("review", Watch, Some("support/**")),
        ],
    ]);
    let chats = |e: &Event| -> Vec<(usize, Filter)> {
        matches(&m, e).iter().map(|x| (x.chat, x.filter)).collect()
    };
    assert_eq!(
        chats(&review_item(Some("general"), false)),
        [(0, Watch), (2, Follow)]
    );
    assert_eq!(
        chats(&review_item(Some("support/rust"), false)),
        [(2, Watch)]
    );
    // Posts never reach family rules.
    assert_eq!(chats(&post(Some("support/rust"), 1)), [(1, Watch)]);
}

#[test]
fn a_private_review_item_is_neutral_unless_the_rule_names_it() {
    let m = compile(&[
        vec![family_rule("review", Watch, None)],
        vec![family_rule("review", Watch, Some("staff"))],
        vec![family_rule("review", Watch, Some("sta*"))],
    ]);
    let e = review_item(Some("staff"), true);
    let routed: Vec<usize> = matches(&m, &e).iter().map(|x| x.chat).collect();
    assert_eq!(
        routed,
        [0, 1, 2],
        "the review queue tells every chat, some neutrally"
    );
    assert!(m.neutral_for(0, &e), "a catch-all does not name it");
    assert!(!m.neutral_for(1, &e), "the literal category names it");
    assert!(m.neutral_for(2, &e), "a glob does not name it");
    // A public item: nobody gets the neutral form.
    let open = review_item(Some("general"), false);
    assert!(!m.neutral_for(0, &open));
}

#[test]
fn private_items_of_other_families_reach_only_rules_naming_them() {
    let rule_for = |channel: &str| RuleDef {
        channel: Some(sp(channel)),
        ..family_rule("chat", Watch, None)
    };
    let m = compile(&[
        vec![rule_for("dm/*")],
        vec![rule_for("dm/3")],
        vec![rule_for("general")],
    ]);
    let mut e = review_item(None, false);
    if let Some(n) = e.notice.as_mut() {
        n.family = "chat".into();
        n.channel = Some("dm/3".into());
        n.private = true;
    }
    let routed: Vec<usize> = matches(&m, &e).iter().map(|x| x.chat).collect();
    assert_eq!(routed, [1], "only the exact name, no neutral form for chat");
    if let Some(n) = e.notice.as_mut() {
        n.channel = Some("general".into());
        n.private = false;
    }
    let routed: Vec<usize> = matches(&m, &e).iter().map(|x| x.chat).collect();
    assert_eq!(routed, [2]);
}

#[test]
fn an_unlisted_topic_is_never_announced_by_a_family_either() {
    let m = compile(&[vec![family_rule("review", Watch, None)]]);
    let mut e = review_item(Some("general"), false);
    e.topic.unlisted = true;
    assert_eq!(m.route(&e), Routing::Skipped(SkipReason::Unlisted));
}
