//! The HTTP side of `serve`: the listeners, chat commands, the `/metrics` endpoint and
//! the admin pane; the models they render are in [`crate::observe`].

pub mod commands;
pub mod server;
pub mod status;
