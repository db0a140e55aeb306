//! Delivery: the durable queue, per-chat workers, retries, rate limits.
//!
//! Everything accepted is in the [`store::Store`] before the webhook is
//! answered. Each chat has its own worker, so a slow or broken chat never
//! delays the others. Delivery builds requests with the config serving at
//! send time and never reaches back into ingest.

pub mod group_commit;
pub mod lifecycle;
pub mod limits;
pub mod pg_store;
pub mod redb_store;
pub mod running;
pub mod scheduler;
pub mod send;
pub mod store;
#[cfg(test)]
pub(crate) mod store_suite;
pub mod worker;
