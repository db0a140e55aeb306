#![allow(dead_code)] // each test module uses the fixtures it needs
//! Fixtures the providers' unit tests share: a message for an action, the
//! HTTP request a destination builds for it, its headers and JSON body, and
//! canned answers. Test-only; no provider code depends on it.

use serde_json::{Value, json};

#[allow(unused_imports)] // until the provider tests move onto the testkit
pub(crate) use super::http::tests::resp;
use super::{
    Action, Bound, Destination, HttpRequest, Message, Outbound, Registration, Span, Thread,
};
use crate::config::de::{Ctx, MissingEnv};
use crate::config::diag::Problem;

// ---- Requests and answers ----

/// The context most unit tests render against: a post in topic 7.
pub fn post_ctx() -> Value {
    json!({"event": "post_created", "topic": {"id": 7, "title": "Hello"}, "post": {"id": 9}})
}

/// The request `dest` builds for `text` with `action`, against [`post_ctx`].
pub fn request(dest: &dyn Destination, text: &str, action: Action<'_>) -> HttpRequest {
    let ctx = post_ctx();
    http(dest.request(&Message {
        chat: "test-chat",
        text,
        context: &ctx,
        card: None,
        custom: None,
        action,
        delivery: Some("test-chat#1@1700000000000"),
    }))
}

/// A new message ([`Action::Post`] without a thread).
pub fn post(dest: &dyn Destination, text: &str) -> HttpRequest {
    request(dest, text, Action::default())
}

/// A reply in the thread opened by `root` (or opening one, with `None`).
pub fn reply<'a>(root: Option<&'a str>) -> Action<'a> {
    Action::Post {
        thread: Some(Thread { root }),
    }
}

/// The HTTP request inside `out`; panics on any other kind of outbound.
pub fn http(out: Outbound) -> HttpRequest {
    match out {
        Outbound::Http(r) => r,
        Outbound::Stdout(_) | Outbound::Native(_) => panic!("expected an HTTP request"),
    }
}

/// The value of the header `name` (ASCII case-insensitive).
pub fn header<'a>(r: &'a HttpRequest, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.expose())
}

/// The request's body as JSON; panics when it is not JSON.
pub fn body(r: &HttpRequest) -> Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", r.body))
}

/// The reason of a retry or a permanent failure; panics on `Sent`.
pub fn reason(o: super::Outcome) -> String {
    match o {
        super::Outcome::Retry { reason, .. } | super::Outcome::Permanent { reason } => reason,
        sent => panic!("expected a failure, got {sent:?}"),
    }
}

/// A new message's request for `text` against `ctx` instead of [`post_ctx`]
/// (for providers that send context fields: titles, links, tags).
pub fn post_in(dest: &dyn Destination, text: &str, ctx: &Value) -> HttpRequest {
    http(dest.request(&Message {
        chat: "test-chat",
        text,
        context: ctx,
        card: None,
        custom: None,
        action: Action::default(),
        delivery: None,
    }))
}

// ---- Binding configurations: one reader, four layouts ----

/// `toml` read with `env` set (`missing`: what an unset `${VAR}` is), and
/// `f` run against it: its result and every problem, in order.
fn with_config<T>(
    toml: &str,
    env: &[(&str, &str)],
    missing: MissingEnv,
    f: impl FnOnce(&toml_edit::Document<String>, &mut Ctx<'_>) -> T,
) -> (T, Vec<Problem>) {
    let env: std::collections::HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut cx = Ctx::new(&env, missing);
    let doc = toml_edit::Document::parse(toml.to_string())
        .unwrap_or_else(|e| panic!("bad TOML ({e}): {toml}"));
    let out = f(&doc, &mut cx);
    (out, cx.problems().to_vec())
}

/// The binder: a chat of `reg`'s kind bound from TOML inline tables
/// (settings `s`, chat fields `t`, whose spans count from the document's
/// start: `t = {…`; the chat located at `0..1`) with `env` as the
/// environment: the destination and the problems.
pub fn bind(reg: &Registration, s: &str, t: &str, env: &[(&str, &str)]) -> (Bound, Vec<Problem>) {
    with_config(
        &format!("t = {t}\ns = {s}"),
        env,
        MissingEnv::Warn,
        |doc, cx| (reg.parse)(&doc["s"], cx).and_then(|i| i.bind(&doc["t"], Some(0..1), cx)),
    )
}

/// The messages of [`bind`]'s problems.
pub fn messages(problems: &[Problem]) -> Vec<String> {
    problems.iter().map(|p| p.message.clone()).collect()
}

/// [`bind`] of the insides of the two inline tables, for the messages.
pub fn bind_fields(
    reg: &Registration,
    settings: &str,
    target: &str,
    env: &[(&str, &str)],
) -> (Bound, Vec<String>) {
    let (dest, p) = bind(
        reg,
        &format!("{{ {settings} }}"),
        &format!("{{ {target} }}"),
        env,
    );
    (dest, messages(&p))
}

/// What `reg` makes of `[s]` = `settings` and a chat `[t]` = `target` (TOML
/// lines, for the many settings of native providers), with `env` set and
/// an unset variable an error: the destination, and every problem's message.
pub fn load(
    reg: &Registration,
    settings: &str,
    target: &str,
    env: &[(&str, &str)],
) -> (Bound, Vec<String>) {
    let toml = format!("[s]\n{settings}\n[t]\n{target}\n");
    let (dest, p) = with_config(&toml, env, MissingEnv::Error, |doc, cx| {
        (reg.parse)(&doc["s"], cx).and_then(|i| i.bind(&doc["t"], None, cx))
    });
    (dest, messages(&p))
}

/// What `reg` makes of a `[providers.NAME]` table of `settings` (TOML
/// lines) alone, with `env` set: whether it parsed, and every problem's message.
pub fn settings_problems(
    reg: &Registration,
    env: &[(&str, &str)],
    settings: &str,
) -> (bool, Vec<String>) {
    let toml = format!("[p]\n{settings}\n");
    let (parsed, p) = with_config(&toml, env, MissingEnv::Warn, |doc, cx| {
        (reg.parse)(&doc["p"], cx).is_some()
    });
    (parsed, messages(&p))
}

/// `inst`, an instance already read, bound to the chat `t = {target}` (a
/// TOML inline table) with no environment: the destination, and the problems.
pub fn bind_chat(
    inst: std::sync::Arc<dyn super::Instance>,
    target: &str,
    chat: Span,
) -> (Bound, Vec<Problem>) {
    with_config(
        &format!("t = {target}"),
        &[],
        MissingEnv::Warn,
        |doc, cx| inst.bind(&doc["t"], chat, cx),
    )
}

/// Each case's chat fields (inside `{ }`) bind no destination, and the first
/// problem says the case's words without quoting `secret`.
pub fn assert_rejected(
    reg: &Registration,
    env: &[(&str, &str)],
    secret: &str,
    cases: &[(&str, &str)],
) {
    for (t, want) in cases {
        let (d, p) = bind(reg, "{}", &format!("{{ {t} }}"), env);
        let first = p.first().map_or("", |p| p.message.as_str());
        assert!(d.is_none() && first.contains(want), "{t}: {p:?}");
        assert!(!first.contains(secret), "{first}");
    }
}

// ---- Native providers ----

/// The native message `dest` builds for `text` in `context`; panics on any
/// other kind of outbound.
pub fn native(dest: &dyn Destination, text: &str, context: &Value) -> super::NativeMessage {
    let out = dest.request(&Message {
        chat: "c",
        text,
        context,
        card: None,
        custom: None,
        action: Action::default(),
        delivery: None,
    });
    match out {
        Outbound::Native(m) => m,
        _ => panic!("expected a native message"),
    }
}

/// A loopback port nothing listens on (bound, then let go).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// A send to a port nothing listens on is a retry saying "cannot connect";
/// the next, inside the backoff window, a retry with the wait left.
pub async fn assert_refused_then_backoff(sender: &dyn super::NativeSender, payload: &Value) {
    let super::Outcome::Retry { reason, .. } = sender.send(payload).await else {
        panic!("refused must retry")
    };
    assert!(reason.contains("cannot connect"), "{reason}");
    let super::Outcome::Retry { after, .. } = sender.send(payload).await else {
        panic!("still retry")
    };
    assert!(after.is_some(), "inside the backoff window");
}

/// `check` takes every one of `good` and refuses every one of `bad`.
pub fn accepts<T, E>(check: impl Fn(&str) -> Result<T, E>, good: &[&str], bad: &[&str]) {
    for g in good {
        assert!(check(g).is_ok(), "{g:?} should be accepted");
    }
    for b in bad {
        assert!(check(b).is_err(), "{b:?} should be refused");
    }
}

// ---- Cards ----

/// A card as large as a forum could make one: a 100 kB title, excerpt and
/// names full of characters that escaping lengthens, 500 long tags.
pub fn huge_card() -> crate::render::card::Card {
    use crate::render::card::{Author, Card, Color, Link};
    let long = |unit: &str| unit.repeat(100_000 / unit.len());
    let forum = "https://forum.example.org";
    Card {
        marks: "✅ 🔒 ".into(),
        title: long("<&> *x* @here "),
        url: format!("{forum}/t/{}/1/1", "s".repeat(1500)),
        label: long("Reply #3 "),
        author: Some(Author {
            name: long("Ünïcødé <b> "),
            username: long("u_"),
            url: format!("{forum}/u/{}", "u".repeat(1500)),
            avatar: format!("{forum}/user_avatar/{}/96/1.png", "a".repeat(1500)),
        }),
        color: Some(Color(0xF1592A)),
        text: long("[x](y) <z> & ||s|| "),
        category: Some(Link {
            text: long("Category "),
            url: format!("{forum}/c/{}/4", "c".repeat(1500)),
        }),
        tags: (0..500)
            .map(|i| Link {
                text: format!("tag-{i}-{}", "t".repeat(90)),
                url: format!("{forum}/tag/tag-{i}-{}", "t".repeat(90)),
            })
            .collect(),
        footer: Link {
            text: long("Forum "),
            url: format!("{forum}/logo.png"),
        },
        timestamp: Some("2026-03-10T09:00:12.512Z".into()),
        time: Some(1_773_133_212),
        button: Link {
            text: long("View "),
            url: format!("{forum}/t/x/1"),
        },
    }
}

/// The request `dest` builds for a new message with `card`.
pub fn card_request(dest: &dyn Destination, card: &crate::render::card::Card) -> HttpRequest {
    let ctx = post_ctx();
    http(dest.request(&Message {
        chat: "test-chat",
        text: "fallback text",
        context: &ctx,
        card: Some(card),
        custom: None,
        action: Action::default(),
        delivery: None,
    }))
}
