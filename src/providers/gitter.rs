//! `gitter`: a Matrix room on Gitter's homeserver. Gitter moved to Matrix on
//! 2023-02-13: its rooms are Matrix rooms of the `gitter.im` server, the old
//! REST API and `webhooks.gitter.im` activity hooks are gone. This is the
//! [`super::matrix`] provider with `homeserver` defaulting to
//! `https://gitter.ems.host` (the client-server API behind `gitter.im`), and
//! the access token of any Matrix account joined to the room (Gitter: All
//! settings → Help & About → Access token).

use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_spanned::Spanned;
use toml_edit::Item;

use super::matrix::{self, Flavor};
use super::{Instance, Registration, schema_of};
use crate::config::de::Ctx;

pub const REGISTRATION: Registration = Registration {
    kind: "gitter",
    about: "a Matrix room on Gitter's homeserver (gitter.im)",
    parse,
    settings_schema: schema_of::<Settings>,
    target_schema: schema_of::<Target>,
};

const GITTER: Flavor = Flavor {
    kind: "gitter",
    default_homeserver: Some("https://gitter.ems.host"),
};

/// `[providers.NAME]` for `kind = "gitter"`: the Matrix provider's settings.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(rename = "GitterSettings")]
pub struct Settings {
    /// Client-server API base URL (default `https://gitter.ems.host`, Gitter's homeserver).
    #[schemars(with = "Option<String>")]
    pub homeserver: Option<Spanned<String>>,
    /// Access token of the Matrix account that posts, as `${VAR}`; it must have joined the room. Sent as `Authorization: Bearer`. Required.
    #[schemars(with = "Option<String>")]
    pub access_token: Option<Spanned<String>>,
}

/// Chat fields for a Gitter chat.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(rename = "GitterTarget")]
pub struct Target {
    /// Matrix room id, e.g. `!AbCdEf123:gitter.im` (Element: Room settings → Advanced → Internal room ID). Aliases like `#org_room:gitter.im` are refused: resolve one once with `GET /_matrix/client/v3/directory/room/{alias}`.
    #[schemars(with = "Option<String>")]
    pub room: Option<Spanned<String>>,
}

fn parse(item: &Item, cx: &mut Ctx<'_>) -> Option<Arc<dyn Instance>> {
    let s = cx.deserialize::<Settings>(item)?;
    matrix::parse_settings(
        GITTER,
        item,
        s.homeserver.as_ref(),
        s.access_token.as_ref(),
        cx,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::{Message, Outbound};
    use std::collections::HashMap;

    #[test]
    fn is_matrix_on_gitters_homeserver() {
        let env = HashMap::from([("GITTER_TOKEN".to_string(), "syt_gitter".to_string())]);
        let mut cx = Ctx::new(&env, crate::config::de::MissingEnv::Warn);
        let doc = toml_edit::Document::parse(
            "s = { access_token = \"${GITTER_TOKEN}\" }\nt = { room = \"!AbC:gitter.im\" }\n"
                .to_string(),
        )
        .unwrap();
        let dest = parse(&doc["s"], &mut cx)
            .and_then(|i| i.bind(&doc["t"], None, &mut cx))
            .unwrap();
        assert!(cx.problems().is_empty(), "{:?}", cx.problems());
        assert_eq!(dest.kind(), "gitter");
        let ctx = serde_json::json!({});
        let Outbound::Http(r) = dest.request(&Message {
            chat: "c",
            text: "hi",
            context: &ctx,
            action: Default::default(),
            delivery: None,
        }) else {
            panic!("expected HTTP")
        };
        assert!(r.url.expose().starts_with(
            "https://gitter.ems.host/_matrix/client/v3/rooms/%21AbC%3Agitter.im/send/m.room.message/"
        ));

        // Without a token, the chat says what is missing.
        let mut cx = Ctx::new(&env, crate::config::de::MissingEnv::Warn);
        let empty = Item::Table(toml_edit::Table::new());
        assert!(
            parse(&empty, &mut cx)
                .and_then(|i| i.bind(&doc["t"], None, &mut cx))
                .is_none()
        );
        assert!(cx.problems()[0].message.contains("kind = \"gitter\""));
    }
}
