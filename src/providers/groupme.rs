//! `groupme`: a GroupMe bot, `POST {api_url}/v3/bots/post` with `{"bot_id",
//! "text"}` (cut to 1 000 UTF-16 units). The bot id is the credential, in the
//! *body*: a `${VAR}` secret the redactor hides wherever a request is shown, of
//! letters and digits so the JSON holds it exactly as the environment does.
//!
//! Dialect: plain text, strictest reading (no parser test): no markup, and
//! mentions need a `mentions` attachment, never sent.
//!
//! Answers: `202 Accepted` with no body (no id to thread or edit with); errors
//! `{"meta":{"errors":[…]}}` by status. See shared/providers.md §2.11.

use super::kit::prelude::*;

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
    pub api_url: Option<Located<String>>,
}

/// Chat fields for a GroupMe chat.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Target {
    /// The bot's id (dev.groupme.com > Bots), as `${VAR}`: whoever has it can post as the bot.
    pub bot_id: Option<Located<String>>,
}

#[derive(Debug)]
struct GroupMe {
    /// `{api_url}/v3/bots/post`.
    post_url: Secret,
}

impl Provider for GroupMe {
    type Settings = Settings;
    type Target = Target;

    fn new(s: Settings, _: &Table, cx: &mut Ctx<'_>) -> Option<Self> {
        let api_url = cx.base_url("api_url", &s.api_url, DEFAULT_API_URL)?;
        let post_url = Secret::new(format!("{api_url}/v3/bots/post"));
        Some(GroupMe { post_url })
    }

    fn bind_target(self: Arc<Self>, t: Target, chat: Span, cx: &mut Ctx<'_>) -> Bound {
        let missing = "a groupme chat needs `bot_id = \"${GROUPME_BOT_ID}\"`";
        let (bot_id, raw) = kit::required_secret(cx, &t.bot_id, "bot_id", chat, missing)?;
        let v = bot_id.expose();
        // An unset variable stays `${VAR}` (validate/explain): check real values
        // only, never echoing them.
        let ok = v.contains("${") || (v.len() >= 3 && v.chars().all(|c| c.is_ascii_alphanumeric()));
        let shape = "`bot_id` must be a GroupMe bot id (letters and digits only, as shown on dev.groupme.com > Bots)";
        kit::check(cx, ok, Some(raw.span()), shape)?;
        let url = self.post_url.clone();
        Some(Box::new(GroupMeChat { url, bot_id }))
    }
}

#[derive(Debug)]
struct GroupMeChat {
    url: Secret,
    bot_id: Secret,
}

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

impl kit::Chat for GroupMeChat {
    const KIND: &str = REGISTRATION.kind;
    const TARGET: &str = "GroupMe bot";
    const DIALECT: Dialect = Dialect::Plain;
    // GroupMe publishes no limit; one a second per group is polite.
    const RATE: Option<Rate> = Some(Rate::per_second(1));
    // Should GroupMe quote the bot id, delivery redacts it (a secret).
    const ANSWERS: &dyn kit::Answers = &SPEC;

    fn request(&self, msg: &Message<'_>) -> Outbound {
        let text = fit(msg.text, MAX_TEXT, char::len_utf16);
        let body = json!({"bot_id": self.bot_id.expose(), "text": text});
        Outbound::Http(HttpRequest::post_json(&self.url, &body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::testkit::{bind, body, messages, post, reason, resp};

    const BOT: &str = "canarybot0123456789abcdef";

    fn chat() -> GroupMeChat {
        GroupMeChat {
            url: Secret::new("http://127.0.0.1:9/v3/bots/post"),
            bot_id: Secret::new(BOT),
        }
    }

    #[test]
    fn request_shape_and_redaction() {
        let r = post(&chat(), "<!channel> @everyone hi");
        assert_eq!(r.method, "POST");
        assert_eq!(r.url.expose(), "http://127.0.0.1:9/v3/bots/post");
        assert_eq!(r.headers.len(), 1);
        assert_eq!(
            body(&r),
            json!({"bot_id": BOT, "text": "<!channel> @everyone hi"})
        );
        let shown = r.redacted_json(&crate::config::env::Redactor::new([BOT.to_string()]));
        assert!(!shown.to_string().contains(BOT));
        let shown: Value =
            serde_json::from_str(shown["body"].as_str().unwrap_or_default()).unwrap_or_default();
        assert_eq!(shown["bot_id"], "[redacted]");
    }

    #[test]
    fn text_is_cut_to_1000() {
        let b = body(&post(&chat(), &"word ".repeat(400)));
        let t = b["text"].as_str().unwrap_or_default();
        assert!(t.chars().count() <= MAX_TEXT && t.chars().count() > MAX_TEXT - 6);
        assert!(t.ends_with("word…"));
    }

    #[test]
    fn classifies_without_the_bot_id() {
        let c: &dyn Destination = &chat();
        let c =
            |status, headers: &[(&str, &str)], body: &str| c.classify(&resp(status, headers, body));
        assert_eq!(c(202, &[], ""), Outcome::Sent { remote_id: None });
        assert!(matches!(
            c(429, &[("Retry-After", "9")], ""),
            Outcome::Retry { after: Some(d), .. } if d.as_secs() == 9
        ));
        assert!(matches!(c(500, &[], ""), Outcome::Retry { .. }));
        let o = c(
            404,
            &[],
            &format!(
                r#"{{"meta":{{"code":404,"errors":["bot {BOT} not found"]}},"response":null}}"#
            ),
        );
        assert!(matches!(o, Outcome::Permanent { .. }), "{o:?}");
        let r = reason(o);
        assert!(
            r.contains("unknown bot_id") && r.contains("not found"),
            "{r}"
        );
        assert_eq!(
            c(
                400,
                &[],
                r#"{"meta":{"code":400,"errors":["text is required"]},"response":null}"#,
            ),
            Outcome::Permanent {
                reason: "groupme: HTTP 400: text is required (GroupMe refused the message)".into()
            }
        );
    }

    #[test]
    fn bot_id_must_be_a_secret_of_letters_and_digits() {
        let env = [("GOOD", BOT), ("BAD", "abc\"def")];
        let run = |t: &str| {
            let (d, p) = bind(&REGISTRATION, "{}", t, &env);
            (d.is_some(), messages(&p))
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
