#![allow(dead_code)] // each test module uses the fixtures it needs
//! Fixtures the providers' unit tests share: a message for an action, the
//! HTTP request a destination builds for it, its headers and JSON body, and
//! canned answers. Test-only; no provider code depends on it.

use serde_json::{Value, json};

pub(crate) use super::http::tests::resp;
use super::{Action, Destination, HttpRequest, Message, Outbound, Thread};

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

// ---- testkit additions, group A ----
// (keep additions inside this section until the groups are merged)

// ---- testkit additions, group B ----
// (keep additions inside this section until the groups are merged)

/// `env` as the map a `Ctx` reads.
fn env_of(env: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    env.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// What `reg` makes of a `[providers.NAME]` table of `settings` (TOML
/// lines), with `env` set: whether it parsed, and every problem's message.
pub fn settings_problems(
    reg: &super::Registration,
    env: &[(&str, &str)],
    settings: &str,
) -> (bool, Vec<String>) {
    let env = env_of(env);
    let mut cx = crate::config::de::Ctx::new(&env, crate::config::de::MissingEnv::Warn);
    let doc = toml_edit::Document::parse(format!("[p]\n{settings}\n"))
        .unwrap_or_else(|e| panic!("bad TOML ({e}): {settings}"));
    let parsed = (reg.parse)(&doc["p"], &mut cx).is_some();
    (
        parsed,
        cx.problems().iter().map(|p| p.message.clone()).collect(),
    )
}

/// The destination `reg` makes of the settings `s` and the chat `t` (TOML
/// inline tables; the chat located at `0..1`), with `env` set, and every
/// problem's message.
pub fn bind_problems(
    reg: &super::Registration,
    env: &[(&str, &str)],
    s: &str,
    t: &str,
) -> (Option<Box<dyn Destination>>, Vec<String>) {
    let env = env_of(env);
    let mut cx = crate::config::de::Ctx::new(&env, crate::config::de::MissingEnv::Warn);
    let doc = toml_edit::Document::parse(format!("s = {s}\nt = {t}\n"))
        .unwrap_or_else(|e| panic!("bad TOML ({e}): {s} {t}"));
    let dest =
        (reg.parse)(&doc["s"], &mut cx).and_then(|inst| inst.bind(&doc["t"], Some(0..1), &mut cx));
    (
        dest,
        cx.problems().iter().map(|p| p.message.clone()).collect(),
    )
}

// ---- testkit additions, group C ----
// (keep additions inside this section until the groups are merged)

// ---- testkit additions, group D ----
// (keep additions inside this section until the groups are merged)

// ---- testkit additions, group E ----
// (keep additions inside this section until the groups are merged)
