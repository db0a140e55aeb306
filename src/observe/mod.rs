//! What the running relay shows of itself: the status models
//! ([`status::StatusReport`] and its parts) and the Prometheus
//! [`metrics::Metrics`]. A leaf: it imports no other module of the crate, so
//! every stage may record into it and `http` renders it.

pub mod metrics;
pub mod status;
