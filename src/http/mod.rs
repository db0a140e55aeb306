//! The HTTP side of `serve`: metrics and the status page.

pub mod metrics;
pub mod server;
pub mod status;
