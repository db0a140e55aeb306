//! `console`: prints each message to standard output as `[chat] text`, for
//! trying the relay out (the quick start) and debugging rules. No settings,
//! no network: plain text, nothing to escape, no answers to classify.

use super::kit::prelude::*;
pub const REGISTRATION: Registration =
    kit::registration::<Console>("console", "prints messages to standard output");

/// `[providers.NAME]` for `kind = "console"`: nothing to set.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Settings {}

/// Chat fields for a console chat: none.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Target {}

/// The provider and, having nothing per chat, each chat's destination.
#[derive(Debug)]
struct Console;

impl Provider for Console {
    type Settings = Settings;
    type Target = Target;

    fn new(_: Settings, _: &Table, _: &mut Ctx<'_>) -> Option<Self> {
        Some(Console)
    }

    fn bind_target(self: Arc<Self>, _: Target, _: Span, _: &mut Ctx<'_>) -> Bound {
        Some(Box::new(Console))
    }
}

impl kit::Chat for Console {
    const KIND: &str = REGISTRATION.kind;
    const TARGET: &str = "stdout";
    const DIALECT: Dialect = Dialect::Plain;
    const READS_CONTEXT: bool = false;

    fn request(&self, msg: &Message<'_>) -> Outbound {
        Outbound::Stdout(format!("[{}] {}", msg.chat, msg.text))
    }
}
