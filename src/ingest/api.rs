//! The Discourse API, for what webhook payloads lack: category paths and
//! restrictions (`GET /site.json`), topic tags and PM groups
//! (`GET /t/{id}.json`). Used only when `api_key` is set; without it the
//! relay works from payloads and the static category map.

use std::time::Duration;

use super::payload::{BasicInfo, Site, TagGroups, TopicPayload};
use crate::config::env::Secret;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Connection, timeout or TLS problem; the URL is left out (it is fine,
    /// but errors from here are logged next to secrets' neighbours).
    #[error("request failed: {0}")]
    Request(String),
    #[error("HTTP {status} from {path}")]
    Status { status: u16, path: String },
    #[error("unexpected answer from {path}: {reason}")]
    Body { path: String, reason: String },
}

#[derive(Debug, Clone)]
pub struct DiscourseApi {
    client: reqwest::Client,
    base: String,
    key: Secret,
    username: String,
}

impl DiscourseApi {
    pub fn new(base: &str, key: Secret, username: &str) -> Result<Self, ApiError> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(20))
            .user_agent(concat!("discourse-relay/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ApiError::Request(e.without_url().to_string()))?;
        Ok(Self {
            client,
            base: base.trim_end_matches('/').to_string(),
            key,
            username: username.to_string(),
        })
    }

    /// `GET path` with the key: the answer, whatever its status.
    async fn send(&self, path: &str) -> Result<reqwest::Response, ApiError> {
        self.client
            .get(format!("{}{path}", self.base))
            .header("Api-Key", self.key.expose())
            .header("Api-Username", &self.username)
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| ApiError::Request(e.without_url().to_string()))
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        let resp = self.send(path).await?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(ApiError::Status {
                status,
                path: path.to_string(),
            });
        }
        resp.json::<T>().await.map_err(|e| ApiError::Body {
            path: path.to_string(),
            reason: e.without_url().to_string(),
        })
    }

    /// `GET path` as the forum answered it, whatever the status (`doctor`
    /// quotes the forum's own error): the status and at most 1 MiB of body.
    pub async fn get_raw(&self, path: &str) -> Result<(u16, Vec<u8>), ApiError> {
        let resp = self.send(path).await?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|e| ApiError::Body {
            path: path.to_string(),
            reason: e.without_url().to_string(),
        })?;
        Ok((status, body[..body.len().min(1 << 20)].to_vec()))
    }

    pub async fn site(&self) -> Result<Site, ApiError> {
        self.get("/site.json").await
    }

    /// The forum's title and logo.
    pub async fn basic_info(&self) -> Result<BasicInfo, ApiError> {
        self.get("/site/basic-info.json").await
    }

    /// Tag groups and who may see them (admin keys; others get a 403).
    pub async fn tag_groups(&self) -> Result<TagGroups, ApiError> {
        self.get("/tag_groups.json").await
    }

    pub async fn topic(&self, id: u64) -> Result<TopicPayload, ApiError> {
        self.get(&format!("/t/{id}.json")).await
    }

    /// One post as the API shows it (`/posts/{id}.json`, or
    /// `/posts/by_number/{topic}/{n}.json`), kept as JSON: it becomes a
    /// webhook-shaped payload in [`super::normalize::event_from_api`].
    pub async fn post(
        &self,
        which: PostRef,
    ) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
        match which {
            PostRef::Id(id) => self.get(&format!("/posts/{id}.json")).await,
            PostRef::InTopic { topic, number } => {
                self.get(&format!("/posts/by_number/{topic}/{number}.json"))
                    .await
            }
        }
    }
}

/// A forum post named on the command line: its id, or its URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostRef {
    Id(u64),
    /// `/t/SLUG/TOPIC/N` (or `/t/SLUG/TOPIC`: the first post).
    InTopic {
        topic: u64,
        number: u64,
    },
}

impl PostRef {
    /// `1002`, `https://forum.example.org/t/slug/101/3`, `/t/slug/101`;
    /// `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if let Ok(id) = s.parse() {
            return Some(Self::Id(id));
        }
        let path = match s.find("/t/") {
            Some(at) => &s[at + 3..],
            None => return None,
        };
        let path = path.split(['?', '#']).next().unwrap_or("");
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let number = |p: &str| p.parse::<u64>().ok();
        match parts.as_slice() {
            [_, topic] => Some(Self::InTopic {
                topic: number(topic)?,
                number: 1,
            }),
            [_, topic, n] => Some(Self::InTopic {
                topic: number(topic)?,
                number: number(n)?,
            }),
            _ => None,
        }
    }
}
