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

// ---- testkit additions, group C ----
// (keep additions inside this section until the groups are merged)

/// `inst` bound to the chat `t = {target}` (a TOML inline table) with no
/// environment: the destination, and the problems reported.
pub fn bind_chat(
    inst: std::sync::Arc<dyn super::Instance>,
    target: &str,
    chat: Option<std::ops::Range<usize>>,
) -> (
    Option<Box<dyn Destination>>,
    Vec<crate::config::diag::Problem>,
) {
    with_config(&format!("t = {target}"), &[], |doc, cx| {
        inst.bind(&doc["t"], chat, cx)
    })
}

/// `s = {settings}` read by `reg` and bound to the chat `t = {target}`,
/// with `env` as the environment.
pub fn configure(
    reg: &super::Registration,
    settings: &str,
    target: &str,
    env: &[(&str, &str)],
) -> (
    Option<Box<dyn Destination>>,
    Vec<crate::config::diag::Problem>,
) {
    with_config(
        &format!("s = {settings}\nt = {target}\n"),
        env,
        |doc, cx| (reg.parse)(&doc["s"], cx).and_then(|i| i.bind(&doc["t"], None, cx)),
    )
}

fn with_config<T>(
    toml: &str,
    env: &[(&str, &str)],
    f: impl FnOnce(&toml_edit::Document<String>, &mut crate::config::de::Ctx<'_>) -> T,
) -> (T, Vec<crate::config::diag::Problem>) {
    let env: std::collections::HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut cx = crate::config::de::Ctx::new(&env, crate::config::de::MissingEnv::Warn);
    let doc = toml_edit::Document::parse(toml.to_string())
        .unwrap_or_else(|e| panic!("bad TOML ({e}): {toml}"));
    let out = f(&doc, &mut cx);
    (out, cx.problems().to_vec())
}

// ---- testkit additions, group D ----
// (keep additions inside this section until the groups are merged)

// ---- testkit additions, group E ----
// (keep additions inside this section until the groups are merged)
