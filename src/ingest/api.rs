//! The Discourse API, for what webhook payloads lack: category paths and
//! restrictions (`GET /site.json`), topic tags and PM groups
//! (`GET /t/{id}.json`). Used only when `api_key` is set; without it the
//! relay works from payloads and the static category map.

use std::time::Duration;

use super::payload::{Site, TopicPayload};
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

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .header("Api-Key", self.key.expose())
            .header("Api-Username", &self.username)
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| ApiError::Request(e.without_url().to_string()))?;
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

    pub async fn site(&self) -> Result<Site, ApiError> {
        self.get("/site.json").await
    }

    pub async fn topic(&self, id: u64) -> Result<TopicPayload, ApiError> {
        self.get(&format!("/t/{id}.json")).await
    }
}
