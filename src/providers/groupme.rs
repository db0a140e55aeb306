//! `groupme`: a GroupMe bot, `POST {api_url}/v3/bots/post` with
//! `{"bot_id", "text"}`; GroupMe answers `202 Accepted` with no body.
//!
//! The bot id is the credential and it travels in the *body*, so it is a
//! `${VAR}` secret like a token: the config's redactor replaces its value
//! wherever a request is shown (`explain` bodies included). It must be
//! letters and digits, so that it appears in the JSON body exactly as in the
//! environment and the redactor always finds it.
//!
//! Plain text: GroupMe has no markup, and mentions exist only as a
//! `mentions` attachment with user ids, which is never sent, so text cannot
//! ping. See shared/providers.md §2.11 and dev.groupme.com/tutorials/bots.

use std::ops::Range;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use serde_spanned::Spanned;

use super::http::fit;
use super::kit::{self, Provider, Spec, classify_json};
use super::{
    Capabilities, Destination, HttpRequest, HttpResponse, Message, Outbound, Outcome, Registration,
};
use crate::config::Rate;
use crate::config::de::Ctx;
use crate::config::env::Secret;
use crate::render::Dialect;

pub const REGISTRATION: Registration =
    kit::registration::<GroupMe>("groupme", "GroupMe bot (bot id)");

const DEFAULT_API_URL: &str = "https://api.groupme.com";

/// Longest message GroupMe takes, counted here in UTF-16 units (never fewer
/// than characters, so the cut is safe whichever way GroupMe counts).
const MAX_TEXT: usize = 1000;

/// `[providers.NAME]` for `kind = "groupme"`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Settings {
    /// API base URL (default `https://api.groupme.com`).
    #[schemars(with = "Option<String>")]
    pub api_url: Option<Spanned<String>>,
}

/// Chat fields for a GroupMe chat.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Target {
    /// The bot's id (dev.groupme.com > Bots), as `${VAR}`: whoever has it can post as the bot.
    #[schemars(with = "Option<String>")]
    pub bot_id: Option<Spanned<String>>,
}

#[derive(Debug)]
struct GroupMe {
    api_url: String,
}

impl Provider for GroupMe {
    type Settings = Settings;
    type Target = Target;

    fn new(s: Settings, cx: &mut Ctx<'_>) -> Option<Self> {
        let api_url = cx.base_url("api_url", &s.api_url, DEFAULT_API_URL)?;
        Some(GroupMe { api_url })
    }

    fn bind_target(
        self: Arc<Self>,
        t: Target,
        chat: Option<Range<usize>>,
        cx: &mut Ctx<'_>,
    ) -> Option<Box<dyn Destination>> {
        let Some(raw) = &t.bot_id else {
            cx.error(
                chat,
                "a groupme chat needs `bot_id = \"${GROUPME_BOT_ID}\"`",
            );
            return None;
        };
        let bot_id = cx.secret("bot_id", raw)?;
        let v = bot_id.expose();
        // An unset variable stays `${VAR}` (validate/explain); check real values only.
        if !v.contains("${") && (v.len() < 3 || !v.chars().all(|c| c.is_ascii_alphanumeric())) {
            // Never echo the value: it is the credential.
            cx.error(
                Some(raw.span()),
                "`bot_id` must be a GroupMe bot id (letters and digits only, as shown on dev.groupme.com > Bots)",
            );
            return None;
        }
        Some(Box::new(GroupMeChat {
            instance: self,
            bot_id,
        }))
    }
}

#[derive(Debug)]
struct GroupMeChat {
    instance: Arc<GroupMe>,
    bot_id: Secret,
}

impl Destination for GroupMeChat {
    fn kind(&self) -> &'static str {
        REGISTRATION.kind
    }

    fn dialect(&self) -> Dialect {
        Dialect::Plain
    }

    fn capabilities(&self) -> Capabilities {
        // 202 with no body: no message id to thread under, edit or delete.
        Capabilities::default()
    }

    fn default_rate(&self) -> Option<Rate> {
        // GroupMe publishes no limit; one a second per group is polite.
        Some(Rate::per_second(1))
    }

    fn target(&self) -> String {
        "GroupMe bot".into()
    }

    fn request(&self, msg: &Message<'_>) -> Outbound {
        let body = json!({
            "bot_id": self.bot_id.expose(),
            "text": fit(msg.text, MAX_TEXT, char::len_utf16),
        });
        let url = Secret::new(format!("{}/v3/bots/post", self.instance.api_url));
        Outbound::Http(HttpRequest::post_json(&url, &body))
    }

    fn classify(&self, resp: &HttpResponse) -> Outcome {
        // The bot id is a secret: delivery redacts it should GroupMe quote it.
        classify_json(resp, &SPEC)
    }
}

/// Errors: `{"meta":{"code","errors":[…]}}`.
const SPEC: Spec = Spec {
    prefix: "groupme",
    id_ptr: None,
    error: |_, body| {
        let errors: Vec<&str> = body["meta"]["errors"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e.as_str()).collect())
            .unwrap_or_default();
        (!errors.is_empty()).then(|| kit::clip(&errors.join("; "), kit::MAX_DETAIL))
    },
    sep: ": ",
    hint: |status| match status {
        404 => " (unknown bot_id: the bot was deleted, or the id is wrong)",
        401 | 403 => " (the bot may not post to its group)",
        400 => " (GroupMe refused the message)",
        _ => "",
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use crate::providers::Instance;
    use std::collections::HashMap;

    const BOT: &str = "canarybot0123456789abcdef";

    fn chat() -> GroupMeChat {
        GroupMeChat {
            instance: Arc::new(GroupMe {
                api_url: "http://127.0.0.1:9".into(),
            }),
            bot_id: Secret::new(BOT),
        }
    }

    use crate::providers::http::tests::resp;

    #[test]
    fn request_shape_and_redaction() {
        let ctx = json!({});
        let Outbound::Http(r) = chat().request(&Message {
            chat: "c",
            text: "<!channel> @everyone hi",
            context: &ctx,
            action: Default::default(),
            delivery: None,
        }) else {
            panic!("expected HTTP")
        };
        assert_eq!(r.method, "POST");
        assert_eq!(r.url.expose(), "http://127.0.0.1:9/v3/bots/post");
        assert_eq!(r.headers.len(), 1);
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            body,
            json!({"bot_id": BOT, "text": "<!channel> @everyone hi"})
        );
        let shown = r.redacted_json(&crate::config::env::Redactor::new([BOT.to_string()]));
        assert!(!shown.to_string().contains(BOT));
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(shown["body"].as_str().unwrap()).unwrap()["bot_id"],
            "[redacted]"
        );
    }

    #[test]
    fn text_is_cut_to_1000() {
        let ctx = json!({});
        let text = "word ".repeat(400);
        let Outbound::Http(r) = chat().request(&Message {
            chat: "c",
            text: &text,
            context: &ctx,
            action: Default::default(),
            delivery: None,
        }) else {
            panic!()
        };
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        let t = body["text"].as_str().unwrap();
        assert!(t.chars().count() <= MAX_TEXT && t.chars().count() > MAX_TEXT - 6);
        assert!(t.ends_with("word…"));
    }

    #[test]
    fn classifies_without_the_bot_id() {
        let c = chat();
        assert_eq!(
            c.classify(&resp(202, &[], "")),
            Outcome::Sent { remote_id: None }
        );
        assert!(matches!(
            c.classify(&resp(429, &[("Retry-After", "9")], "")),
            Outcome::Retry { after: Some(d), .. } if d.as_secs() == 9
        ));
        assert!(matches!(
            c.classify(&resp(500, &[], "")),
            Outcome::Retry { .. }
        ));
        let Outcome::Permanent { reason } = c.classify(&resp(
            404,
            &[],
            &format!(
                r#"{{"meta":{{"code":404,"errors":["bot {BOT} not found"]}},"response":null}}"#
            ),
        )) else {
            panic!("404 should be permanent")
        };
        assert!(
            reason.contains("unknown bot_id") && reason.contains("not found"),
            "{reason}"
        );
        let Outcome::Permanent { reason } = c.classify(&resp(
            400,
            &[],
            r#"{"meta":{"code":400,"errors":["text is required"]},"response":null}"#,
        )) else {
            panic!("400 should be permanent")
        };
        assert_eq!(
            reason,
            "groupme: HTTP 400: text is required (GroupMe refused the message)"
        );
    }

    #[test]
    fn bot_id_must_be_a_secret_of_letters_and_digits() {
        let env = HashMap::from([
            ("GOOD".to_string(), BOT.to_string()),
            ("BAD".to_string(), "abc\"def".to_string()),
        ]);
        let run = |toml: &str| {
            let mut cx = Ctx::new(&env, crate::config::de::MissingEnv::Warn);
            let doc = toml_edit::Document::parse(format!("t = {toml}")).unwrap();
            let inst = Arc::new(GroupMe {
                api_url: DEFAULT_API_URL.into(),
            });
            let d = inst.bind(&doc["t"], Some(0..1), &mut cx);
            let p: Vec<String> = cx.problems().iter().map(|p| p.message.clone()).collect();
            (d.is_some(), p)
        };
        assert_eq!(run("{ bot_id = \"${GOOD}\" }"), (true, vec![]));
        let (ok, p) = run("{ bot_id = \"${BAD}\" }");
        assert!(
            !ok && p[0].contains("letters and digits") && !p[0].contains("abc"),
            "{p:?}"
        );
        let (ok, p) = run("{ bot_id = \"literal0123\" }");
        assert!(!ok && p[0].contains("environment reference"), "{p:?}");
        let (ok, p) = run("{}");
        assert!(!ok && p[0].contains("needs `bot_id"), "{p:?}");
        let (ok, p) = run("{ bot_id = \"${UNSET}\" }");
        assert!(ok && p[0].contains("not set"), "{p:?}");
    }
}
