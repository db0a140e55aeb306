//! `googlechat`: a Google Chat incoming webhook, `POST
//! https://chat.googleapis.com/v1/spaces/{space}/messages?key=…&token=…` (the URL
//! is the credential) with `{"text"}`, cut to 4 096 UTF-16 units. A `thread` rule
//! adds `thread.threadKey = "topic-<id>"` and `messageReplyOption=
//! REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD`: a topic shares one Chat thread.
//!
//! Dialect: Slack mrkdwn (Chat's `*bold*`, `<url|label>`, `<users/all>`),
//! strictest reading (no parser test): Chat documents no entity decoding
//! (librenms#18234), so [`readable`] turns `&lt;`/`&gt;` into `‹`/`›`: no `<`
//! or `>` from a post reaches Chat, whether it decodes entities or not.
//!
//! Answers: `{"error":{"code","message","status"}}` by status; the created
//! message's `name` is its id. See shared/providers.md §2.9.

use super::kit::prelude::*;

pub const REGISTRATION: Registration =
    kit::registration::<Hook<Settings, Target>>("googlechat", "Google Chat space incoming webhook");

/// Longest `text` Chat takes, counted here in UTF-16 units (never fewer than
/// characters, so the cut is safe whichever way Google counts).
const MAX_TEXT: usize = 4096;

/// `[providers.NAME]` for `kind = "googlechat"`: nothing to set (each chat
/// names its own webhook).
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Settings {}

/// Chat fields for a Google Chat chat.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Target {
    /// The space's incoming webhook URL
    /// (`https://chat.googleapis.com/v1/spaces/…/messages?key=…&token=…`),
    /// as `${VAR}`: the URL is the credential.
    pub webhook_url: Option<Located<String>>,
}

impl kit::HookTarget for Target {
    fn bind(self, chat: Span, cx: &mut Ctx<'_>) -> Bound {
        let missing = "a googlechat chat needs `webhook_url = \"${GOOGLE_CHAT_WEBHOOK_URL}\"` (the space's incoming webhook URL)";
        let (url, span) = cx.required_url(&self.webhook_url, "webhook_url", chat, missing)?;
        let mut scrub = vec![url.clone()];
        if let Ok(u) = url::Url::parse(url.expose()) {
            let path_ok = u.path().contains("/spaces/") && u.path().ends_with("/messages");
            let (mut key, mut token) = (false, false);
            for (k, v) in u.query_pairs().filter(|(k, _)| k == "key" || k == "token") {
                key |= k == "key";
                token |= k == "token";
                scrub.push(Secret::new(v.into_owned()));
            }
            let shape = "`webhook_url` does not look like a Google Chat incoming webhook (https://chat.googleapis.com/v1/spaces/…/messages?key=…&token=…); copy the whole URL from the space's \"Apps & integrations\" > Webhooks";
            if !(path_ok && key && token) {
                cx.warning(Some(span), shape);
            }
        }
        Some(Box::new(GoogleChatChat { url, scrub }))
    }
}

#[derive(Debug)]
struct GoogleChatChat {
    url: Secret,
    /// Values no reason may show: the URL, its `key` and its `token`.
    scrub: Vec<Secret>,
}

/// Rendered mrkdwn with the renderer's entities turned into characters that
/// display as meant and cannot form Chat markup: `&lt;` → `‹`, `&gt;` → `›`,
/// `&amp;` → `&` unless what follows would make an entity again.
fn readable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 1..];
        let (with, len) = match tail {
            t if t.starts_with("lt;") => ("‹", 3),
            t if t.starts_with("gt;") => ("›", 3),
            t if t.starts_with("amp;") && starts_entity(&t[4..]) => ("&amp;", 4),
            t if t.starts_with("amp;") => ("&", 4),
            _ => ("&", 0),
        };
        out.push_str(with);
        rest = &tail[len..];
    }
    out.push_str(rest);
    out
}

/// Whether `s` starts like the rest of an entity: `name;`, `#123;`, `#x1F;`.
fn starts_entity(s: &str) -> bool {
    let body = s.strip_prefix('#').unwrap_or(s);
    let n = body.chars().take_while(char::is_ascii_alphanumeric).count();
    n > 0 && body[n..].starts_with(';')
}

/// `HTTP 404 NOT_FOUND: message`.
const SPEC: Spec = Spec {
    prefix: "googlechat",
    id_ptr: Some("/name"),
    error: |resp, body| {
        kit::joined(body, &["/error/status", "/error/message"])
            .or_else(|| Some(resp.body_snippet()))
    },
    sep: " ",
    hint: |status| match status {
        400 => " (a wrong `key` in the webhook URL, or a message Chat refused)",
        401 | 403 => {
            " (the webhook's token was rejected: the webhook was deleted, or the app is not allowed in the space)"
        }
        404 => " (the space or its webhook no longer exists)",
        _ => "",
    },
};

impl kit::Chat for GoogleChatChat {
    const KIND: &str = REGISTRATION.kind;
    // The space id is not secret, but it sits next to the key and token.
    const TARGET: &str = "Google Chat webhook";
    const DIALECT: Dialect = Dialect::SlackMrkdwn;
    // Threads are named by a key the relay chooses, so they need no message
    // id; editing and deleting need a Chat app's auth, which a webhook lacks.
    const CAPS: Capabilities = Capabilities {
        thread: true,
        edit: false,
        delete: false,
    };
    // About one write a second per space, shared by every app and webhook
    // in it (developers.google.com/workspace/chat/limits).
    const RATE: Option<Rate> = Some(Rate::per_second(1));
    const ANSWERS: &dyn kit::Answers = &SPEC;

    fn request(&self, msg: &Message<'_>) -> Outbound {
        let mut body = json!({ "text": fit(&readable(msg.text), MAX_TEXT, char::len_utf16) });
        let topic = msg.context["topic"]["id"].as_u64();
        // Only posts reach a webhook chat (no edit or delete capability).
        if let (Action::Post { thread: Some(_) }, Some(topic)) = (msg.action, topic) {
            // The topic's first message opens the thread (the fallback), the others join it.
            body["thread"] = json!({ "threadKey": format!("topic-{topic}") });
            let reply = "messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD";
            return Outbound::Http(HttpRequest::post_json(
                &kit::with_query(&self.url, reply),
                &body,
            ));
        }
        Outbound::Http(HttpRequest::post_json(&self.url, &body))
    }

    fn classify(&self, resp: &HttpResponse) -> Outcome {
        kit::scrub(classify_json(resp, &SPEC), &self.scrub)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::testkit::{bind, body, messages, post, reason, reply, request, resp};

    const URL: &str = "https://chat.googleapis.com/v1/spaces/AAAA1234/messages?key=canaryKey123&token=canaryToken456";

    fn chat() -> GoogleChatChat {
        GoogleChatChat {
            url: Secret::new(URL),
            scrub: vec![
                Secret::new(URL),
                Secret::new("canaryKey123"),
                Secret::new("canaryToken456"),
            ],
        }
    }

    #[test]
    fn entities_become_inert_look_alikes() {
        assert_eq!(
            readable("*<https://f/t/1?a=1&amp;b=2|A &amp; B &lt;users/all&gt;>* Q&amp;A"),
            "*<https://f/t/1?a=1&b=2|A & B ‹users/all›>* Q&A"
        );
        // A literal entity typed in a post stays an escaped one.
        assert_eq!(
            readable("&amp;lt;users/all&amp;gt;"),
            "&amp;lt;users/all&amp;gt;"
        );
        assert_eq!(
            readable("&amp;#60; &amp;#x3C; &amp; x;"),
            "&amp;#60; &amp;#x3C; & x;"
        );
        assert_eq!(readable("& &am &amp"), "& &am &amp");
        assert_eq!(readable("&amp;&lt;"), "&‹");
    }

    #[test]
    fn request_shape() {
        let r = post(&chat(), "*<https://f/t/1|&lt;users/all&gt; hi>*");
        assert_eq!(r.method, "POST");
        assert_eq!(r.url.expose(), URL);
        assert_eq!(r.headers.len(), 1);
        assert_eq!(
            body(&r),
            json!({"text": "*<https://f/t/1|‹users/all› hi>*"})
        );
    }

    #[test]
    fn thread_messages_share_the_topic_thread_key() {
        // post_ctx: topic 7.
        for root in [None, Some("spaces/AAAA1234/messages/x.y")] {
            let r = request(&chat(), "hi", reply(root));
            assert_eq!(
                r.url.expose(),
                format!("{URL}&messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD")
            );
            assert_eq!(
                body(&r),
                json!({"text": "hi", "thread": {"threadKey": "topic-7"}})
            );
        }
        // Without a `thread` rule: a plain message.
        let r = post(&chat(), "hi");
        assert_eq!(r.url.expose(), URL);
        assert_eq!(r.body, r#"{"text":"hi"}"#);
        let caps = Destination::capabilities(&chat());
        assert!(caps.thread && !caps.edit && !caps.delete);
    }

    #[test]
    fn long_text_is_cut_to_the_limit() {
        let b = body(&post(&chat(), &"😀 ab ".repeat(2000)));
        let sent = b["text"].as_str().unwrap_or_default();
        let units: usize = sent.chars().map(char::len_utf16).sum();
        assert!(units <= MAX_TEXT && units > MAX_TEXT - 10, "{units}");
        assert!(sent.ends_with('…'));
    }

    #[test]
    fn classifies_google_errors_without_key_or_token() {
        let c: &dyn Destination = &chat();
        assert_eq!(
            c.classify(&resp(
                200,
                &[],
                r#"{"name":"spaces/AAAA1234/messages/x.y","text":"t"}"#
            )),
            Outcome::Sent {
                remote_id: Some("spaces/AAAA1234/messages/x.y".into())
            }
        );
        assert_eq!(
            c.classify(&resp(200, &[], "")),
            Outcome::Sent { remote_id: None }
        );
        let limited = r#"{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED"}}"#;
        assert_eq!(
            c.classify(&resp(429, &[("Retry-After", "5")], limited)),
            Outcome::Retry {
                reason: "googlechat: HTTP 429 RESOURCE_EXHAUSTED: Resource has been exhausted (e.g. check quota).".into(),
                after: Some(Duration::from_secs(5))
            }
        );
        assert!(matches!(
            c.classify(&resp(503, &[], r#"{"error":{"code":503,"message":"The service is currently unavailable.","status":"UNAVAILABLE"}}"#)),
            Outcome::Retry { after: None, .. }
        ));
        for (status, body, want) in [
            (
                400,
                r#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT"}}"#,
                "INVALID_ARGUMENT",
            ),
            (
                401,
                r#"{"error":{"code":401,"message":"Request had invalid authentication credentials (token canaryToken456).","status":"UNAUTHENTICATED"}}"#,
                "token was rejected",
            ),
            (
                403,
                r#"{"error":{"code":403,"message":"The caller does not have permission","status":"PERMISSION_DENIED"}}"#,
                "PERMISSION_DENIED",
            ),
            (
                404,
                r#"{"error":{"code":404,"message":"Requested entity was not found.","status":"NOT_FOUND"}}"#,
                "no longer exists",
            ),
        ] {
            let o = c.classify(&resp(status, &[], body));
            assert!(matches!(o, Outcome::Permanent { .. }), "{status}: {o:?}");
            let r = reason(o);
            assert!(r.contains(want), "{r}");
            assert!(
                !r.contains("canaryToken456") && !r.contains("canaryKey123"),
                "{r}"
            );
        }
    }

    #[test]
    fn target_validation() {
        let env = [
            ("GC", URL),
            ("SPACE", "https://chat.google.com/room/AAAA1234"),
        ];
        let run = |t: &str| {
            let (d, p) = bind(&REGISTRATION, "{}", t, &env);
            (d.is_some(), messages(&p))
        };
        assert_eq!(run("{ webhook_url = \"${GC}\" }"), (true, vec![]));
        let (ok, p) = run("{ webhook_url = \"${SPACE}\" }");
        assert!(ok && p[0].contains("does not look like"), "{p:?}");
        let (ok, p) = run("{}");
        assert!(!ok && p[0].contains("needs `webhook_url"), "{p:?}");
        let (ok, p) = run(
            "{ webhook_url = \"https://chat.googleapis.com/v1/spaces/A/messages?key=k&token=t\" }",
        );
        assert!(!ok && p[0].contains("environment reference"), "{p:?}");
    }
}
