//! What the relay knows about one forum beyond single payloads: category
//! paths and restrictions, topic tags and PM groups. It learns from the static
//! map in the config, from topic events, and from API responses.

pub use crate::config::model::StaticCategory;

use super::event::TopicState;
use std::collections::{HashMap, VecDeque};

use super::event::{Brand, Category, Tag};
use super::payload::{BasicInfo, Site, TagGroups, TagPayload, TopicPayload};

/// Topics remembered at most; the oldest learned are forgotten first. Enough
/// for the posts that arrive while a topic is active, bounded for memory.
const MAX_TOPICS: usize = 50_000;

#[derive(Debug, Clone)]
struct CategoryInfo {
    slug: String,
    name: String,
    parent: Option<u64>,
    restricted: bool,
    /// A path given by the static map wins over one derived from parents.
    path: Option<String>,
    /// Six hex digits (`/site.json`, or the static map's `color`).
    color: Option<String>,
}

/// What a topic event or `GET /t/{id}.json` taught about a topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicInfo {
    pub title: Option<String>,
    pub slug: Option<String>,
    pub category_id: Option<u64>,
    pub private_message: bool,
    pub tags: Option<Vec<Tag>>,
    pub pm_groups: Option<Vec<String>>,
    /// `Some(false)`: unlisted; `None`: not learned yet.
    pub visible: Option<bool>,
    /// Closed, archived, pinned, as last learned.
    pub state: TopicState,
}

#[derive(Debug, Clone, Default)]
pub struct ForumState {
    categories: HashMap<u64, CategoryInfo>,
    /// The relay has a way to learn categories (an API key or a static
    /// map): an id it does not know is then not assumed public.
    fail_closed: bool,
    topics: HashMap<u64, TopicInfo>,
    order: VecDeque<u64>,
    /// Staff-only tag globs (lower-case), from `[discourse] hidden_tags`.
    hidden_tags: Option<std::sync::Arc<globset::GlobSet>>,
    /// Group names by id, from `/site.json` (group events carry ids only).
    groups: HashMap<u64, String>,
    /// Tags of restricted tag groups (lower-case), from `/tag_groups.json`:
    /// hidden like `hidden_tags`.
    restricted_tags: std::collections::HashSet<String>,
    /// The forum's title and logo: the file's, else `/site/basic-info.json`.
    brand: Option<Brand>,
    /// The file set the brand: the API does not override it.
    brand_configured: bool,
}

impl ForumState {
    /// With a static map, unknown category ids fail closed (see
    /// [`Self::category`]); [`Self::learning_from_api`] says the same of an
    /// API key.
    pub fn new(static_categories: &[StaticCategory]) -> Self {
        let mut s = Self {
            fail_closed: !static_categories.is_empty(),
            ..Self::default()
        };
        for c in static_categories {
            let slug = c.path.rsplit('/').next().unwrap_or(&c.path).to_string();
            s.categories.insert(
                c.id,
                CategoryInfo {
                    name: c.name.clone().unwrap_or_else(|| slug.clone()),
                    slug,
                    parent: None,
                    restricted: c.restricted,
                    path: Some(c.path.clone()),
                    color: c.color.clone(),
                },
            );
        }
        s
    }

    /// Learns every category of `GET /site.json`. Restrictions and names from
    /// the API win; a static path is kept (the admin chose it on purpose).
    pub fn learn_site(&mut self, site: &Site) {
        for g in &site.groups {
            self.groups.insert(g.id, g.name.clone());
        }
        for c in &site.categories {
            let old = self.categories.get(&c.id);
            let path = old.and_then(|old| old.path.clone());
            // The file's colour was chosen on purpose, like its path.
            let color = (old.and_then(|old| old.color.clone()))
                .or_else(|| c.color.as_deref().and_then(hex_color));
            self.categories.insert(
                c.id,
                CategoryInfo {
                    slug: c.slug.clone(),
                    name: c.name.clone().unwrap_or_else(|| c.slug.clone()),
                    parent: c.parent_category_id,
                    restricted: c.read_restricted,
                    path,
                    color,
                },
            );
        }
    }

    /// The forum's title and logo as the file gives them; the API's
    /// `/site/basic-info.json` fills in only when the file gives none.
    pub fn branded(mut self, brand: Option<Brand>) -> Self {
        self.brand_configured = brand.is_some();
        self.brand = brand;
        self
    }

    /// Learns the title and logo of `GET /site/basic-info.json` (unless
    /// the file set them); a logo path is made absolute on `forum`.
    pub fn learn_brand(&mut self, info: &BasicInfo, forum: &str) {
        let Some(title) = info
            .title
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        else {
            return;
        };
        if self.brand_configured {
            return;
        }
        let logo = info.logo_url.as_deref().unwrap_or_default();
        self.brand = Some(Brand {
            title: title.to_string(),
            logo: super::normalize::absolute(forum, logo),
        });
    }

    /// What [`Self::branded`] or [`Self::learn_brand`] set.
    pub fn brand(&self) -> Option<&Brand> {
        self.brand.as_ref()
    }

    /// `has_api`: the forum has an API key, so `/site.json` will name the
    /// categories; unknown ids fail closed until it does.
    pub fn learning_from_api(mut self, has_api: bool) -> Self {
        self.fail_closed |= has_api;
        self
    }

    /// The categories alone (no topics), for resolving off the lock.
    pub fn categories_only(&self) -> Self {
        Self {
            categories: self.categories.clone(),
            fail_closed: self.fail_closed,
            groups: self.groups.clone(),
            restricted_tags: self.restricted_tags.clone(),
            hidden_tags: self.hidden_tags.clone(),
            brand: self.brand.clone(),
            brand_configured: self.brand_configured,
            ..Self::default()
        }
    }

    /// Whether the id is known (static map or `/site.json`).
    pub fn knows_category(&self, id: u64) -> bool {
        self.categories.contains_key(&id)
    }

    /// Resolves a category id; `fallback_slug` (the post payload's leaf
    /// `category_slug`) is used when the id is unknown. An unknown id is
    /// public only when the relay has no way to learn categories; otherwise
    /// it is restricted and `unresolved` until learned: a staff-only
    /// category the relay has not heard of yet must not reach wildcard
    /// rules (after a restart, while the forum's API is down, a brand-new
    /// category).
    pub fn category(&self, id: u64, fallback_slug: Option<&str>) -> Option<Category> {
        match self.categories.get(&id) {
            Some(info) => Some(Category {
                id,
                slug: info.slug.clone(),
                path: self.path_of(id),
                name: info.name.clone(),
                restricted: info.restricted,
                unresolved: false,
                color: info.color.clone(),
            }),
            None if self.fail_closed => {
                let slug = fallback_slug.unwrap_or_default();
                Some(Category {
                    id,
                    slug: slug.to_string(),
                    path: slug.to_string(),
                    name: slug.to_string(),
                    restricted: true,
                    unresolved: true,
                    color: None,
                })
            }
            None => fallback_slug.map(|slug| Category {
                id,
                slug: slug.to_string(),
                path: slug.to_string(),
                name: slug.to_string(),
                restricted: false,
                unresolved: false,
                color: None,
            }),
        }
    }

    fn path_of(&self, id: u64) -> String {
        let mut parts = Vec::new();
        let mut cur = Some(id);
        // Bounded walk: a cycle in bad data must not hang the relay.
        for _ in 0..16 {
            let Some(c) = cur.and_then(|i| self.categories.get(&i)) else {
                break;
            };
            if let Some(path) = &c.path {
                parts.push(path.clone());
                break;
            }
            parts.push(c.slug.clone());
            cur = c.parent;
        }
        parts.reverse();
        parts.join("/")
    }

    pub fn topic(&self, id: u64) -> Option<&TopicInfo> {
        self.topics.get(&id)
    }

    /// Learns from a topic event or a `GET /t/{id}.json` response: fields the
    /// payload carries replace what was known, absent ones keep it.
    /// Marks the tags matching `globs` as hidden from messages.
    pub fn hiding_tags(mut self, globs: Option<std::sync::Arc<globset::GlobSet>>) -> Self {
        self.hidden_tags = globs;
        self
    }

    /// New `hidden_tags` (a reload): the tags learned so far are marked anew.
    pub fn set_hidden_tags(&mut self, globs: Option<std::sync::Arc<globset::GlobSet>>) {
        self.hidden_tags = globs;
        let mut topics = std::mem::take(&mut self.topics);
        for tag in topics
            .values_mut()
            .flat_map(|t| t.tags.iter_mut().flatten())
        {
            tag.hidden = self.hides(&tag.name, &tag.slug);
        }
        self.topics = topics;
    }

    /// Whether a tag is staff-only (by name or slug): named by
    /// `hidden_tags`, or in a tag group only some groups may see.
    fn hides(&self, name: &str, slug: &str) -> bool {
        let (name, slug) = (name.to_lowercase(), slug.to_lowercase());
        self.restricted_tags.contains(&name)
            || self.restricted_tags.contains(&slug)
            || (self.hidden_tags.as_ref()).is_some_and(|g| g.is_match(&name) || g.is_match(&slug))
    }

    /// Learns which tags are staff-only from `/tag_groups.json`; the tags
    /// learned so far are marked anew.
    pub fn learn_tag_groups(&mut self, groups: &TagGroups) {
        self.restricted_tags = (groups.tag_groups.iter())
            .filter(|g| g.restricted())
            .flat_map(|g| g.tag_names.iter().map(|t| t.to_lowercase()))
            .collect();
        self.set_hidden_tags(self.hidden_tags.clone());
    }

    /// Tags as a payload names them, the staff-only ones marked.
    pub fn tags_of(&self, tags: &[TagPayload]) -> Vec<Tag> {
        tags.iter()
            .cloned()
            .map(|tag| {
                let (name, slug) = tag.into_parts();
                let hidden = self.hides(&name, &slug);
                Tag { name, slug, hidden }
            })
            .collect()
    }

    /// A group's name, as `/site.json` listed it.
    pub fn group_name(&self, id: u64) -> Option<&str> {
        self.groups.get(&id).map(String::as_str)
    }

    pub fn learn_topic(&mut self, t: &TopicPayload) {
        let tags: Option<Vec<Tag>> = t.tags.as_deref().map(|tags| self.tags_of(tags));
        let entry = match self.topics.get_mut(&t.id) {
            Some(e) => e,
            None => {
                if self.order.len() >= MAX_TOPICS
                    && let Some(old) = self.order.pop_front()
                {
                    self.topics.remove(&old);
                }
                self.order.push_back(t.id);
                self.topics.entry(t.id).or_default()
            }
        };
        if t.title.is_some() {
            entry.title = t.title.clone();
        }
        if t.slug.is_some() {
            entry.slug = t.slug.clone();
        }
        if t.category_id.is_some() {
            entry.category_id = t.category_id;
        }
        if let Some(a) = &t.archetype {
            entry.private_message = a == "private_message";
        }
        if t.visible.is_some() {
            entry.visible = t.visible;
        }
        let s = &mut entry.state;
        for (slot, value) in [
            (&mut s.closed, t.closed),
            (&mut s.archived, t.archived),
            (&mut s.pinned, t.pinned),
        ] {
            if let Some(v) = value {
                *slot = v;
            }
        }
        if tags.is_some() {
            entry.tags = tags;
        }
        if let Some(d) = &t.details {
            entry.pm_groups = Some(
                d.allowed_groups
                    .iter()
                    .map(|g| g.name.to_lowercase())
                    .collect(),
            );
        }
    }
}

/// `0088CC`, `#08c` or `08C` as six upper-case hex digits; `None` if not a colour.
pub fn hex_color(s: &str) -> Option<String> {
    let s = s.trim().trim_start_matches('#');
    if !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    match s.len() {
        6 => Some(s.to_ascii_uppercase()),
        3 => Some(
            s.chars()
                .flat_map(|c| [c, c])
                .collect::<String>()
                .to_ascii_uppercase(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> Site {
        let json = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/api/site.json"
        ))
        .unwrap();
        serde_json::from_str(&json).unwrap()
    }

    #[test]
    fn paths_walk_parents_and_keep_same_leaf_slugs_apart() {
        let mut f = ForumState::new(&[]);
        f.learn_site(&site());
        assert_eq!(f.category(7, None).unwrap().path, "support/rust");
        assert_eq!(f.category(9, None).unwrap().path, "development/rust");
        assert!(f.category(3, None).unwrap().restricted);
    }

    #[test]
    fn unknown_id_falls_back_to_leaf_slug() {
        let f = ForumState::new(&[]);
        let c = f.category(4, Some("general")).unwrap();
        assert_eq!(c.path, "general");
        assert!(!c.restricted && !c.unresolved);
        assert!(f.category(4, None).is_none());
    }

    #[test]
    fn unknown_id_fails_closed_when_categories_can_be_learned() {
        let statics = [StaticCategory {
            id: 7,
            path: "help/rust".into(),
            name: None,
            restricted: false,
            color: None,
        }];
        for f in [
            ForumState::new(&[]).learning_from_api(true),
            ForumState::new(&statics),
        ] {
            let c = f.category(4, Some("general")).unwrap();
            assert!(c.restricted && c.unresolved, "{c:?}");
            assert_eq!(c.path, "general");
            // Even without a slug in the payload, the post has a category.
            assert!(f.category(4, None).unwrap().restricted);
            assert!(!f.knows_category(4));
        }
        let mut f = ForumState::new(&[]).learning_from_api(true);
        f.learn_site(&site());
        let c = f.category(7, None).unwrap();
        assert!(!c.restricted && !c.unresolved);
        assert!(f.knows_category(7));
    }

    #[test]
    fn static_map_path_wins() {
        let mut f = ForumState::new(&[StaticCategory {
            id: 7,
            path: "help/rust".into(),
            name: None,
            restricted: false,
            color: None,
        }]);
        f.learn_site(&site());
        assert_eq!(f.category(7, None).unwrap().path, "help/rust");
        assert_eq!(f.category(7, None).unwrap().name, "Rust");
    }
}
