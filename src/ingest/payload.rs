//! The Discourse payload shapes the relay reads, leniently: unknown keys are
//! ignored and most fields may be absent or null, because plugins and
//! versions add and drop keys (see shared/discourse/README.md §3).

use serde::Deserialize;

/// `post_*` events and the body of `accepted_solution` (`WebHookPostSerializer`).
#[derive(Debug, Clone, Deserialize)]
pub struct PostPayload {
    pub id: u64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub cooked: Option<String>,
    #[serde(default)]
    pub post_number: Option<u64>,
    #[serde(default)]
    pub post_type: Option<i64>,
    pub topic_id: u64,
    #[serde(default)]
    pub topic_slug: Option<String>,
    #[serde(default)]
    pub topic_title: Option<String>,
    #[serde(default)]
    pub category_id: Option<u64>,
    #[serde(default)]
    pub category_slug: Option<String>,
    #[serde(default)]
    pub raw: Option<String>,
    #[serde(default)]
    pub hidden: Option<bool>,
    #[serde(default)]
    pub deleted_at: Option<String>,
    #[serde(default)]
    pub user_deleted: Option<bool>,
    #[serde(default)]
    pub post_url: Option<String>,
    #[serde(default)]
    pub topic_archetype: Option<String>,
    #[serde(default)]
    pub action_code: Option<String>,
    /// `/user_avatar/HOST/NAME/{size}/ID.png` or a letter avatar; `{size}`
    /// is the pixel size to ask for.
    #[serde(default)]
    pub avatar_template: Option<String>,
}

/// `topic_*` events (`WebHookTopicViewSerializer`) and `GET /t/{id}.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct TopicPayload {
    pub id: u64,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub slug: Option<String>,
    #[serde(default)]
    pub archetype: Option<String>,
    #[serde(default)]
    pub category_id: Option<u64>,
    /// Strings before Discourse 2026.x, `{id,name,slug}` objects after.
    #[serde(default)]
    pub tags: Option<Vec<TagPayload>>,
    #[serde(default)]
    pub deleted_at: Option<String>,
    /// `false` for an unlisted topic (topic events and `GET /t/{id}.json`;
    /// post events never say).
    #[serde(default)]
    pub visible: Option<bool>,
    /// The topic's state, as topic events and `GET /t/{id}.json` tell it.
    #[serde(default)]
    pub closed: Option<bool>,
    #[serde(default)]
    pub archived: Option<bool>,
    #[serde(default)]
    pub pinned: Option<bool>,
    /// Only in `GET /t/{id}.json`: PM recipients.
    #[serde(default)]
    pub details: Option<TopicDetails>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum TagPayload {
    Name(String),
    Object {
        name: String,
        #[serde(default)]
        slug: Option<String>,
    },
}

impl TagPayload {
    pub fn into_parts(self) -> (String, String) {
        match self {
            TagPayload::Name(n) => (n.clone(), n),
            TagPayload::Object { name, slug } => {
                let slug = slug.unwrap_or_else(|| name.clone());
                (name, slug)
            }
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct TopicDetails {
    #[serde(default)]
    pub allowed_groups: Vec<NamedGroup>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NamedGroup {
    pub name: String,
}

/// One category of `GET /site.json` (`categories[]`, flat).
#[derive(Debug, Clone, Deserialize)]
pub struct SiteCategory {
    pub id: u64,
    pub slug: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub parent_category_id: Option<u64>,
    #[serde(default)]
    pub read_restricted: bool,
    /// Six hex digits, without `#`.
    #[serde(default)]
    pub color: Option<String>,
}

/// `GET /site.json`, the parts the relay reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Site {
    pub categories: Vec<SiteCategory>,
    /// The groups the API user can see (`{id, name}`): names for group events.
    #[serde(default)]
    pub groups: Vec<SiteGroup>,
}

/// `GET /site/basic-info.json`: how the forum presents itself.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BasicInfo {
    #[serde(default)]
    pub title: Option<String>,
    /// Absolute, or a path on the forum.
    #[serde(default)]
    pub logo_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SiteGroup {
    pub id: u64,
    pub name: String,
}

/// `GET /tag_groups.json` (admin keys): which tags only some groups see.
#[derive(Debug, Clone, Deserialize)]
pub struct TagGroups {
    #[serde(default)]
    pub tag_groups: Vec<TagGroup>,
}

/// One tag group (`TagGroupSerializer`): its tags, and which groups see
/// them (`{"staff": 1}`; `everyone` when anybody may).
#[derive(Debug, Clone, Deserialize)]
pub struct TagGroup {
    #[serde(default)]
    pub tag_names: Vec<String>,
    #[serde(default)]
    pub permissions: std::collections::BTreeMap<String, serde_json::Value>,
}

impl TagGroup {
    /// Only some groups may see its tags (no `everyone` permission).
    pub fn restricted(&self) -> bool {
        !self.permissions.is_empty() && !self.permissions.contains_key("everyone")
    }
}
