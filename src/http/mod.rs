//! The HTTP side of `serve`: the listeners, chat commands, metrics and the
//! admin pane.

pub mod commands;
pub mod metrics;
pub mod server;
pub mod status;
