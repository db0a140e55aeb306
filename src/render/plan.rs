//! Templates in the common subset, run as a plan straight off the [`Event`].
//!
//! Handlebars resolves every path through its JSON context at each render
//! and needs that context built (every string copied) first; a message is
//! a handful of lookups. A template made only of text, `{{path}}`,
//! `{{#if path}}` / `{{#unless path}}` (with `{{else}}`), and the relay's
//! helpers called with paths or literals is compiled here into a plan that
//! reads the event's fields in place and writes through the same escaper
//! and helper functions. Anything else (each, with, lookup, subexpressions,
//! hashes, `this`, `../`, unknown paths) has no plan and is rendered by
//! Handlebars, and so is any render where the plan meets something it does
//! not decide itself (a missing value, a wrong argument): Handlebars then
//! gives the exact answer or error. `tests::plans_render_what_handlebars_renders`
//! holds the two to the same output.

use std::borrow::Cow;

use handlebars::template::{HelperTemplate, Parameter, Template, TemplateElement};
use handlebars::{JsonRender, JsonTruthy, Path, PathSeg};
use serde_json::Value;

use super::escape::escape;
use super::helpers::{self, format_date};
use super::{Dialect, RenderContext, text};
use crate::ingest::Tag;

/// A compiled template.
#[derive(Debug)]
pub struct Plan(Vec<Node>);

#[derive(Debug)]
enum Node {
    Text(String),
    /// `{{path}}`: the value as text, escaped.
    Value(Field),
    /// `{{#if path}}` (`negate` for `unless`).
    If {
        test: Field,
        negate: bool,
        then: Vec<Node>,
        otherwise: Vec<Node>,
    },
    Helper(Helper, Vec<Arg>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Helper {
    Link,
    Bold,
    Join,
    Truncate,
    Excerpt,
    Date,
}

impl Helper {
    fn parse(name: &str) -> Option<(Self, usize, usize)> {
        // (helper, required arguments, most arguments), as helpers.rs checks them.
        Some(match name {
            "link" => (Self::Link, 1, 2),
            "bold" => (Self::Bold, 1, 1),
            "join" => (Self::Join, 1, 2),
            "truncate" => (Self::Truncate, 2, 2),
            "excerpt" => (Self::Excerpt, 1, 2),
            "date" => (Self::Date, 1, 2),
            _ => return None,
        })
    }
}

#[derive(Debug)]
enum Arg {
    Field(Field),
    Literal(Value),
}

/// Every path of the template context (`render::context`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Event,
    Forum,
    ForumUrl,
    Chat,
    ChatName,
    Topic,
    TopicId,
    TopicTitle,
    TopicSlug,
    TopicUrl,
    TopicTags,
    TopicPrivate,
    TopicClosed,
    TopicArchived,
    TopicPinned,
    TopicSolved,
    Category,
    CategoryId,
    CategorySlug,
    CategoryPath,
    CategoryName,
    Post,
    PostId,
    PostNumber,
    PostUsername,
    PostName,
    PostExcerpt,
    PostRaw,
    PostCooked,
    PostUrl,
    PostIsFirst,
    PostCreatedAt,
    PostActionCode,
}

impl Field {
    fn parse(segs: &[&str]) -> Option<Self> {
        use Field::*;
        Some(match segs {
            ["event"] => Event,
            ["forum"] => Forum,
            ["forum", "url"] => ForumUrl,
            ["chat"] => Chat,
            ["chat", "name"] => ChatName,
            ["topic"] => Topic,
            ["topic", "id"] => TopicId,
            ["topic", "title"] => TopicTitle,
            ["topic", "slug"] => TopicSlug,
            ["topic", "url"] => TopicUrl,
            ["topic", "tags"] => TopicTags,
            ["topic", "private_message"] => TopicPrivate,
            ["topic", "closed"] => TopicClosed,
            ["topic", "archived"] => TopicArchived,
            ["topic", "pinned"] => TopicPinned,
            ["topic", "solved"] => TopicSolved,
            ["topic", "category"] => Category,
            ["topic", "category", "id"] => CategoryId,
            ["topic", "category", "slug"] => CategorySlug,
            ["topic", "category", "path"] => CategoryPath,
            ["topic", "category", "name"] => CategoryName,
            ["post"] => Post,
            ["post", "id"] => PostId,
            ["post", "number"] => PostNumber,
            ["post", "username"] => PostUsername,
            ["post", "name"] => PostName,
            ["post", "excerpt"] => PostExcerpt,
            ["post", "raw"] => PostRaw,
            ["post", "cooked"] => PostCooked,
            ["post", "url"] => PostUrl,
            ["post", "is_first"] => PostIsFirst,
            ["post", "created_at"] => PostCreatedAt,
            ["post", "action_code"] => PostActionCode,
            _ => return None,
        })
    }

    fn from_param(p: &Parameter) -> Option<Self> {
        match p {
            Parameter::Name(n) => Self::parse(&[n.as_str()]),
            Parameter::Path(Path::Relative((segs, _))) => {
                let mut names = Vec::with_capacity(segs.len());
                for seg in segs {
                    match seg {
                        PathSeg::Named(n) => names.push(n.as_str()),
                        // `this`, `..` and whatever else the grammar grows.
                        _ => return None,
                    }
                }
                Self::parse(&names)
            }
            _ => None,
        }
    }
}

/// A value of the context, borrowed from the event.
#[derive(Debug, Clone, Copy)]
enum V<'a> {
    Str(&'a str),
    Num(u64),
    Bool(bool),
    Null,
    Tags(&'a [Tag]),
    /// A non-empty object (`topic`, `post`...).
    Object,
    Json(&'a Value),
}

impl<'a> V<'a> {
    fn truthy(self) -> bool {
        match self {
            V::Str(s) => !s.is_empty(),
            V::Num(n) => n != 0,
            V::Bool(b) => b,
            V::Null => false,
            V::Tags(t) => !t.is_empty(),
            V::Object => true,
            V::Json(v) => v.is_truthy(false),
        }
    }

    /// The value as Handlebars writes it; `None` for lists and objects,
    /// which Handlebars writes in its own way (left to it).
    fn text(self) -> Option<Cow<'a, str>> {
        Some(match self {
            V::Str(s) => Cow::Borrowed(s),
            V::Json(Value::String(s)) => Cow::Borrowed(s.as_str()),
            V::Num(n) => Cow::Owned(n.to_string()),
            V::Bool(b) => Cow::Borrowed(if b { "true" } else { "false" }),
            V::Null => Cow::Borrowed(""),
            V::Json(v @ (Value::Number(_) | Value::Bool(_) | Value::Null)) => {
                Cow::Owned(v.render())
            }
            V::Tags(_) | V::Object | V::Json(_) => return None,
        })
    }

    fn length(self) -> Option<usize> {
        match self {
            V::Num(n) => usize::try_from(n).ok(),
            V::Json(v) => v.as_u64().and_then(|n| usize::try_from(n).ok()),
            _ => None,
        }
    }
}

/// A plan for `template`, when every element is in the subset.
pub fn compile(template: &Template) -> Option<Plan> {
    nodes(template).map(Plan)
}

fn nodes(template: &Template) -> Option<Vec<Node>> {
    let mut out = Vec::with_capacity(template.elements.len());
    for element in &template.elements {
        match element {
            TemplateElement::RawString(s) => out.push(Node::Text(s.clone())),
            TemplateElement::Comment(_) => {}
            TemplateElement::Expression(ht) => out.push(expression(ht)?),
            TemplateElement::HelperBlock(ht) => out.push(block(ht)?),
            _ => return None,
        }
    }
    Some(out)
}

fn expression(ht: &HelperTemplate) -> Option<Node> {
    if !ht.hash.is_empty() || ht.block_param.is_some() {
        return None;
    }
    if ht.params.is_empty() {
        // A bare name may also be a helper (`{{excerpt}}`): only context paths here.
        return Field::from_param(&ht.name).map(Node::Value);
    }
    let Parameter::Name(name) = &ht.name else {
        return None;
    };
    let (helper, required, most) = Helper::parse(name)?;
    if ht.params.len() < required || ht.params.len() > most {
        return None;
    }
    let args = (ht.params.iter())
        .map(|p| match p {
            Parameter::Literal(v) => Some(Arg::Literal(v.clone())),
            other => Field::from_param(other).map(Arg::Field),
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Node::Helper(helper, args))
}

fn block(ht: &HelperTemplate) -> Option<Node> {
    let negate = match &ht.name {
        Parameter::Name(n) if n == "if" => false,
        Parameter::Name(n) if n == "unless" => true,
        _ => return None,
    };
    if ht.params.len() != 1 || !ht.hash.is_empty() || ht.block_param.is_some() {
        return None;
    }
    let test = Field::from_param(&ht.params[0])?;
    let branch = |t: &Option<Template>| match t {
        Some(t) => nodes(t),
        None => Some(Vec::new()),
    };
    Some(Node::If {
        test,
        negate,
        then: branch(&ht.template)?,
        otherwise: branch(&ht.inverse)?,
    })
}

/// Renders `plan`; `None` when Handlebars must decide (see the module doc).
pub fn render(plan: &Plan, dialect: Dialect, cx: &RenderContext<'_>) -> Option<String> {
    // Hidden tags are left out of the template context; Handlebars renders
    // those (rare) events rather than every tag path here filtering them.
    if cx.event.topic.tags.iter().any(|t| t.hidden) {
        return None;
    }
    let mut out = String::with_capacity(256);
    write(&plan.0, dialect, cx, &mut out)?;
    Some(out)
}

fn write(nodes: &[Node], dialect: Dialect, cx: &RenderContext<'_>, out: &mut String) -> Option<()> {
    for node in nodes {
        match node {
            Node::Text(s) => out.push_str(s),
            Node::Value(field) => {
                // Missing (a path through null) is a strict-mode error: Handlebars words it.
                let text = resolve(*field, cx)?.text()?;
                out.push_str(&escape(dialect, &text));
            }
            Node::If {
                test,
                negate,
                then,
                otherwise,
            } => {
                // `if` reads a missing value as false, as Handlebars does.
                let truthy = resolve(*test, cx).is_some_and(V::truthy);
                let branch = if truthy != *negate { then } else { otherwise };
                write(branch, dialect, cx, out)?;
            }
            Node::Helper(helper, args) => call(*helper, args, dialect, cx, out)?,
        }
    }
    Some(())
}

fn call(
    helper: Helper,
    args: &[Arg],
    dialect: Dialect,
    cx: &RenderContext<'_>,
    out: &mut String,
) -> Option<()> {
    // Helpers refuse missing arguments in strict mode: so does the plan (Handlebars words it).
    let value = |i: usize| -> Option<Option<V<'_>>> {
        match args.get(i) {
            None => Some(None),
            Some(Arg::Literal(v)) => Some(Some(V::Json(v))),
            Some(Arg::Field(f)) => resolve(*f, cx).map(Some),
        }
    };
    let first = value(0)?.unwrap_or(V::Null);
    let second = value(1)?;
    match helper {
        Helper::Link => {
            let url = first.text()?;
            let label = match second {
                Some(v) => v.text()?,
                None => Cow::Borrowed(""),
            };
            out.push_str(&helpers::link(dialect, &url, &label));
        }
        Helper::Bold => out.push_str(&helpers::bold(dialect, &first.text()?)),
        Helper::Join => {
            let sep = match second {
                Some(v) => v.text()?,
                None => Cow::Borrowed(", "),
            };
            let joined = match first {
                V::Tags(tags) => {
                    let names: Vec<&str> = tags.iter().map(|t| t.name.as_str()).collect();
                    names.join(&sep)
                }
                V::Null => String::new(),
                _ => return None,
            };
            out.push_str(&escape(dialect, &joined));
        }
        Helper::Truncate => {
            let max = second?.length()?;
            out.push_str(&escape(dialect, &text::truncate(&first.text()?, max)));
        }
        Helper::Excerpt => {
            let max = match second {
                Some(v) => v.length()?,
                None => text::EXCERPT_MAX,
            };
            out.push_str(&escape(dialect, &text::excerpt(&first.text()?, max)));
        }
        Helper::Date => {
            let format = match second {
                None => helpers::DEFAULT_DATE_FORMAT,
                Some(V::Str(s)) => s,
                Some(V::Json(Value::String(s))) => s.as_str(),
                Some(_) => return None,
            };
            let value = match first {
                V::Str(s) => Value::String(s.to_string()),
                V::Num(n) => Value::from(n),
                V::Null => Value::Null,
                V::Json(v) => v.clone(),
                _ => return None,
            };
            out.push_str(&escape(dialect, &format_date(&value, format).ok()?));
        }
    }
    Some(())
}

/// The value at `field`; `None` when the path is missing (it runs through
/// a null `post` or `topic.category`), as Handlebars would find it.
fn resolve<'a>(field: Field, cx: &'a RenderContext<'_>) -> Option<V<'a>> {
    use Field::*;
    let event = cx.event;
    let topic = &event.topic;
    let str = |s: &'a str| Some(V::Str(s));
    match field {
        Event => str(event.kind.as_str()),
        Forum | Chat | Topic => Some(V::Object),
        ForumUrl => str(&event.forum),
        ChatName => str(&cx.chat),
        TopicId => Some(V::Num(topic.id)),
        TopicTitle => str(&topic.title),
        TopicSlug => str(&topic.slug),
        TopicUrl => str(&topic.url),
        TopicTags => Some(V::Tags(&topic.tags)),
        TopicPrivate => Some(V::Bool(topic.private_message)),
        TopicClosed => Some(V::Bool(topic.state.closed)),
        TopicArchived => Some(V::Bool(topic.state.archived)),
        TopicPinned => Some(V::Bool(topic.state.pinned)),
        TopicSolved => Some(V::Bool(topic.state.solved)),
        Category => Some(if topic.category.is_some() {
            V::Object
        } else {
            V::Null
        }),
        Post => Some(if event.post.is_some() {
            V::Object
        } else {
            V::Null
        }),
        CategoryId | CategorySlug | CategoryPath | CategoryName => {
            let c = topic.category.as_ref()?;
            match field {
                CategoryId => Some(V::Num(c.id)),
                CategorySlug => str(&c.slug),
                CategoryPath => str(&c.path),
                _ => str(&c.name),
            }
        }
        _ => {
            let p = event.post.as_ref()?;
            match field {
                PostId => Some(V::Num(p.id)),
                PostNumber => Some(V::Num(p.number)),
                PostUsername => str(&p.username),
                PostName => str(&p.name),
                PostExcerpt => str(cx.excerpt()),
                PostRaw => str(&p.raw),
                PostCooked => str(&p.cooked),
                PostUrl => str(&p.url),
                PostIsFirst => Some(V::Bool(p.is_first())),
                PostCreatedAt => str(&p.created_at),
                PostActionCode => match &p.action_code {
                    Some(code) => str(code),
                    None => Some(V::Null),
                },
                _ => None,
            }
        }
    }
}
