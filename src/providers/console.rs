//! `console`: prints each message to standard output. For trying the relay
//! out (the quick start) and for debugging rules; needs no settings.

use std::ops::Range;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;
use toml_edit::Item;

use super::{Capabilities, Destination, Instance, Message, Outbound, Registration, schema_of};
use crate::config::de::Ctx;
use crate::render::Dialect;

pub const REGISTRATION: Registration = Registration {
    kind: "console",
    about: "prints messages to standard output",
    parse,
    settings_schema: schema_of::<Settings>,
    target_schema: schema_of::<Target>,
};

/// `[providers.NAME]` for `kind = "console"`: nothing to set.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Settings {}

/// Chat fields for a console chat: none.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Target {}

#[derive(Debug)]
struct Console;

fn parse(item: &Item, cx: &mut Ctx<'_>) -> Option<Arc<dyn Instance>> {
    cx.deserialize::<Settings>(item)?;
    Some(Arc::new(Console))
}

impl Instance for Console {
    fn bind(
        self: Arc<Self>,
        target: &Item,
        _chat: Option<Range<usize>>,
        cx: &mut Ctx<'_>,
    ) -> Option<Box<dyn Destination>> {
        cx.deserialize::<Target>(target)?;
        Some(Box::new(ConsoleChat))
    }
}

#[derive(Debug)]
struct ConsoleChat;

impl Destination for ConsoleChat {
    fn kind(&self) -> &'static str {
        REGISTRATION.kind
    }

    fn dialect(&self) -> Dialect {
        Dialect::Plain
    }

    fn reads_context(&self) -> bool {
        false
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    fn target(&self) -> String {
        "stdout".into()
    }

    fn request(&self, msg: &Message<'_>) -> Outbound {
        Outbound::Stdout(format!("[{}] {}", msg.chat, msg.text))
    }
}
