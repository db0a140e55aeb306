//! The HTTP side of `serve`: metrics and the status page.

pub mod metrics;
// pub mod server; (enabled once the store lands)
pub mod status;
