//! Templates: an arbitrary template registered with `Renderer::register`
//! for every dialect, then rendered for events whose text fields are
//! arbitrary too.
//!
//! Input: NUL-separated pieces; the first is the template, the following
//! ones replace, in order, the sample event's topic title, username, display
//! name, raw, cooked, category path and tag name. Empty pieces keep the
//! sample's value, so the event keeps the sample's shape (the same fields
//! present, non-empty, one tag) and only the text differs.
//!
//! Invariants:
//! - nothing panics;
//! - a refused template never renders;
//! - a template accepted at load renders every event of the sample's shape,
//!   whatever the text (load-time checks promise "a template that renders the
//!   sample renders any real event"; escaping must keep it so, e.g. for
//!   JSON, quotes and backslashes in a title). Templates that compare or
//!   look up text (`eq`, `ne`, `lt`, `gt`, `len`, `lookup`, `and`, `or`,
//!   `not`) may legitimately take other branches and are exempt;
//! - when a JSON-dialect render succeeds, the output parses as JSON;
//! - rendering gives what Handlebars alone gives (templates with a compiled
//!   plan render through it; `render::plan`).

use crate::ingest::{Event, EventKind};
use crate::render::{Dialect, Renderer};

const DIALECTS: [Dialect; 6] = [
    Dialect::SlackMrkdwn,
    Dialect::Markdown,
    Dialect::RocketChat,
    Dialect::Html,
    Dialect::Plain,
    Dialect::Json,
];

/// Helpers whose result depends on the text itself, not only on its shape.
const CONTENT_DEPENDENT: [&str; 9] = ["eq", "ne", "lt", "gt", "len", "lookup", "and", "or", "not"];

fn event(fields: &[&str]) -> Event {
    let mut e = Event::sample("https://forum.example.org");
    let mut it = fields.iter().map(|s| s.to_string());
    let mut next = |slot: &mut String| {
        if let Some(v) = it.next()
            && !v.is_empty()
        {
            *slot = v;
        }
    };
    next(&mut e.topic.title);
    let post = e.post.as_mut().expect("the sample has a post");
    next(&mut post.username);
    next(&mut post.name);
    next(&mut post.raw);
    next(&mut post.cooked);
    if let Some(c) = e.topic.category.as_mut() {
        next(&mut c.path);
        c.slug = c.path.rsplit('/').next().unwrap_or_default().to_string();
        if c.slug.is_empty() {
            c.slug = "x".into();
        }
    }
    if let Some(t) = e.topic.tags.first_mut() {
        next(&mut t.name);
        t.slug = t.name.clone();
    }
    e
}

fn content_dependent(template: &str) -> bool {
    template
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .any(|word| CONTENT_DEPENDENT.contains(&word))
}

/// One `template` fuzz input; panics when an invariant breaks.
pub fn template(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut pieces = text.split('\0');
    let template = pieces.next().unwrap_or_default();
    let fields: Vec<&str> = pieces.collect();
    let full = event(&fields);
    let mut bare = full.clone();
    bare.kind = EventKind::TopicCreated;
    bare.post = None;
    let strict = !content_dependent(template);

    let mut renderer = Renderer::new();
    for dialect in DIALECTS {
        let registered = renderer.register("t", template, dialect).is_ok();
        for (e, same_shape) in [(&full, true), (&bare, false)] {
            let out = renderer.render("t", dialect, e, "sample-chat");
            let handlebars = renderer.render_without_plan("t", dialect, e, "sample-chat");
            let text = |r: &Result<String, crate::render::RenderError>| match r {
                Ok(s) => Ok(s.clone()),
                Err(e) => Err(e.to_string()),
            };
            if text(&out) != text(&handlebars) {
                panic!(
                    "{dialect:?}: the render differs from Handlebars' for {template:?}\nplan: {:?}\nhandlebars: {:?}",
                    text(&out),
                    text(&handlebars)
                );
            }
            match &out {
                Ok(_) if !registered => panic!("a refused template rendered for {dialect:?}"),
                Ok(s) if dialect == Dialect::Json => {
                    if let Err(err) = serde_json::from_str::<serde_json::Value>(s) {
                        panic!("{dialect:?} output is not JSON ({err}): {s}");
                    }
                }
                Err(err) if registered && same_shape && strict => panic!(
                    "accepted for {dialect:?} at load, fails for an event of the sample's shape: {err}\nevent: {e:#?}"
                ),
                _ => {}
            }
        }
    }
}
