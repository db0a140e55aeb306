//! `gitter`: a Matrix room on Gitter's homeserver. Gitter moved to Matrix on
//! 2023-02-13 (its REST API and `webhooks.gitter.im` hooks are gone), so this
//! is the [`super::matrix`] provider, requests, dialect, escaping and answers
//! included, with `homeserver` defaulting to `https://gitter.ems.host` (the
//! client-server API behind `gitter.im`) and the access token of any Matrix
//! account joined to the room (Gitter: All settings → Help & About → Access
//! token). See shared/providers.md §2.13.

use super::kit::prelude::*;
use toml_edit::Item;

use super::matrix::{self, Flavor};
use super::{Instance, schema_of};

/// Gitter's own settings and chat fields (their schema) read into a
/// [`matrix::Matrix`]: the one provider whose instance is another's.
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
    pub homeserver: Option<Located<String>>,
    /// Access token of the Matrix account that posts, as `${VAR}`; it must have joined the room. Sent as `Authorization: Bearer`. Required.
    pub access_token: Option<Located<String>>,
}

/// Chat fields for a Gitter chat.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(rename = "GitterTarget")]
pub struct Target {
    /// Matrix room id, e.g. `!AbCdEf123:gitter.im` (Element: Room settings → Advanced → Internal room ID). Aliases like `#org_room:gitter.im` are refused: resolve one once with `GET /_matrix/client/v3/directory/room/{alias}`.
    pub room: Option<Located<String>>,
}

fn parse(item: &Item, cx: &mut Ctx<'_>) -> Option<Arc<dyn Instance>> {
    let s = cx.deserialize::<Settings>(item)?;
    let (homeserver, token) = (s.homeserver.as_ref(), s.access_token.as_ref());
    let m = matrix::Matrix::read(GITTER, &kit::Table::of(item), homeserver, token, cx)?;
    Some(Arc::new(m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::testkit::{bind_fields, post};

    #[test]
    fn is_matrix_on_gitters_homeserver() {
        let env = [("GITTER_TOKEN", "syt_gitter")];
        let room = "room = \"!AbC:gitter.im\"";
        let (dest, p) = bind_fields(
            &REGISTRATION,
            "access_token = \"${GITTER_TOKEN}\"",
            room,
            &env,
        );
        assert!(p.is_empty(), "{p:?}");
        let dest = dest.unwrap();
        assert_eq!(dest.kind(), "gitter");
        assert!(post(dest.as_ref(), "hi").url.expose().starts_with(
            "https://gitter.ems.host/_matrix/client/v3/rooms/%21AbC%3Agitter.im/send/m.room.message/"
        ));
        // Without a token, the chat says what is missing.
        let (dest, p) = bind_fields(&REGISTRATION, "", room, &env);
        assert!(dest.is_none());
        assert!(p[0].contains("kind = \"gitter\""), "{p:?}");
    }
}
