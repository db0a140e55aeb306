//! Render: Handlebars templates turned into chat text, escaped per dialect.
//!
//! Every `{{value}}` is escaped for the destination's dialect ([`escape`]),
//! so a post titled `<!channel> @everyone <b>x</b>` can never ping or inject
//! markup; `{{{value}}}`/`{{&value}}` (unescaped) are refused, and so are
//! partials (they could recurse without end). Helpers ([`helpers`]) escape
//! what they write with the same rules. Templates are compiled and rendered
//! against [`Event::sample`] when they are registered: a syntax error, an
//! unknown variable or helper, bad helper arguments or (for JSON) output that
//! does not parse is a load error positioned in the template. The context a
//! template sees is [`context()`]. This stage knows nothing of providers or
//! HTTP.

pub mod card;
mod context;
pub mod escape;
pub mod helpers;
mod plan;
pub mod text;

use std::cell::OnceCell;
use std::collections::{BTreeMap, HashMap};

use handlebars::template::{Template, TemplateElement};
use handlebars::{Handlebars, RenderErrorReason, TemplateError, TemplateErrorReason};

pub use context::context;

use crate::ingest::{Event, EventKind};

/// The forum URL of the sample event templates are checked against.
const SAMPLE_FORUM: &str = "https://forum.example.org";
const SAMPLE_CHAT: &str = "sample-chat";

/// The markup language of a destination; decides how values are escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
    /// Slack mrkdwn: `&`, `<`, `>` become entities.
    SlackMrkdwn,
    /// CommonMark-like (Discord, Mattermost, Zulip, Rocket.Chat...):
    /// formatting characters backslash-escaped, mentions broken with U+200B.
    Markdown,
    /// Rocket.Chat's Markdown: its parser ignores most backslashes, so link
    /// and spoiler characters become look-alikes or get U+200B
    /// (`escape::rocketchat`).
    RocketChat,
    /// HTML (Telegram, Matrix `formatted_body`, email): `& < > " '` as entities.
    Html,
    /// Plain text: no markup, control characters removed.
    Plain,
    /// A JSON document: values are escaped as JSON string contents.
    Json,
}

/// A template problem, positioned inside the template text (1-based).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TemplateProblem {
    pub line: Option<usize>,
    pub col: Option<usize>,
    pub message: String,
}

impl TemplateProblem {
    fn at(line: Option<usize>, col: Option<usize>, message: impl Into<String>) -> Self {
        Self {
            line,
            col,
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("rendering template `{template}` failed: {message}")]
pub struct RenderError {
    pub template: String,
    pub message: String,
}

/// Compiled templates, one Handlebars registry per dialect in use, and a
/// [`plan`] for each template in the subset plans cover.
#[derive(Debug, Default)]
pub struct Renderer {
    registries: BTreeMap<Dialect, Handlebars<'static>>,
    plans: BTreeMap<Dialect, HashMap<String, plan::Plan>>,
    /// Card templates (the platform's JSON), per the dialect of the
    /// platform's markup: values escaped for it, then for JSON.
    cards: BTreeMap<Dialect, Handlebars<'static>>,
}

impl Renderer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Compiles `source` under `name` for `dialect` and renders it against
    /// [`Event::sample`]; any error is returned positioned in `source`. On
    /// error, a template registered earlier under `name` stays in place.
    pub fn register(
        &mut self,
        name: &str,
        source: &str,
        dialect: Dialect,
    ) -> Result<(), TemplateProblem> {
        let template = Template::compile_with_name(source, name.to_string())
            .map_err(|e| syntax_problem(&e))?;
        check_elements(&template)?;
        let plan = plan::compile(&template);
        let registry = self
            .registries
            .entry(dialect)
            .or_insert_with(|| new_registry(dialect));
        let previous = registry.get_template(name).cloned();
        registry.register_template(name, template);
        let checked = check_samples(registry, name, dialect);
        if checked.is_err() {
            match previous {
                Some(previous) => registry.register_template(name, previous),
                None => registry.unregister_template(name),
            }
            return checked;
        }
        let plans = self.plans.entry(dialect).or_default();
        plans.remove(name);
        // A plan is used only where it renders the samples exactly as
        // Handlebars does (a guard on top of the differential tests).
        if let Some(plan) = plan
            && plan_agrees(registry, name, dialect, &plan)
        {
            plans.insert(name.to_string(), plan);
        }
        Ok(())
    }

    /// Compiles a card template (the platform's JSON, as Handlebars) under
    /// `name` for a platform whose markup is `dialect`: every value is
    /// escaped for `dialect`, then as JSON string contents, and only the
    /// text helpers exist (`link` and `bold` would write unescaped JSON).
    /// Renders it against the sample events; the sample post must render.
    /// Gives each sample's output (an object), for the platform's own
    /// checks of its limits.
    pub fn register_card(
        &mut self,
        name: &str,
        source: &str,
        dialect: Dialect,
    ) -> Result<Vec<serde_json::Value>, TemplateProblem> {
        let template = Template::compile_with_name(source, name.to_string())
            .map_err(|e| syntax_problem(&e))?;
        check_elements(&template)?;
        let registry = self.cards.entry(dialect).or_insert_with(|| {
            let mut r = Handlebars::new();
            r.set_strict_mode(true);
            r.register_escape_fn(move |v| {
                escape::escape(Dialect::Json, &escape::escape(dialect, v))
            });
            helpers::register_text(&mut r);
            r
        });
        registry.register_template(name, template);
        let [post, bare] = sample_events();
        let notice = Event::sample_notice(SAMPLE_FORUM);
        let samples = [
            (post, "the sample post event"),
            (bare, "a topic event without post, category or tags"),
            (notice, "the sample notice"),
        ];
        let mut outputs = Vec::new();
        for (i, (event, what)) in samples.iter().enumerate() {
            let data = context(event, SAMPLE_CHAT);
            let output = match registry.render(name, &data) {
                Ok(output) => output,
                // A card may rightly be meant for posts alone.
                Err(_) if i > 0 => continue,
                Err(e) => {
                    registry.unregister_template(name);
                    let mut problem = render_problem(&e, &data);
                    if let RenderErrorReason::HelperNotFound(h) = e.reason()
                        && matches!(h.as_str(), "link" | "bold")
                    {
                        problem.message = format!(
                            "`{h}` writes chat markup, which a card does not take: put the URL and the text in the card's own fields (card templates have excerpt, truncate, date and join)"
                        );
                    }
                    return Err(problem);
                }
            };
            let parsed = check_json(&output, what).and_then(|v| match v.is_object() {
                true => Ok(v),
                false => Err(TemplateProblem::at(
                    None,
                    None,
                    format!("the card for {what} is not a JSON object"),
                )),
            });
            match parsed {
                Ok(v) => outputs.push(v),
                Err(p) => {
                    registry.unregister_template(name);
                    return Err(p);
                }
            }
        }
        Ok(outputs)
    }

    /// Renders card template `name` for the platform markup `dialect`.
    pub fn render_card(
        &self,
        name: &str,
        dialect: Dialect,
        ctx: &RenderContext<'_>,
    ) -> Result<serde_json::Value, RenderError> {
        let fail = |message: String| RenderError {
            template: name.to_string(),
            message,
        };
        let registry = (self.cards.get(&dialect))
            .filter(|r| r.has_template(name))
            .ok_or_else(|| fail(format!("no card template `{name}` for {dialect:?}")))?;
        let output = registry
            .render_with_context(name, ctx.handlebars())
            .map_err(|e| fail(render_problem(&e, ctx.data()).message))?;
        serde_json::from_str(&output).map_err(|e| fail(format!("the card is not valid JSON: {e}")))
    }

    /// Renders template `name` of `dialect` for `event` sent to `chat`.
    pub fn render(
        &self,
        name: &str,
        dialect: Dialect,
        event: &Event,
        chat: &str,
    ) -> Result<String, RenderError> {
        self.render_event(name, dialect, event, chat, true)
    }

    /// Renders with a context built once per event: only `chat.name`
    /// changes between the chats of one event (no copy of the post text
    /// per chat).
    pub fn render_context(
        &self,
        name: &str,
        dialect: Dialect,
        ctx: &RenderContext<'_>,
    ) -> Result<String, RenderError> {
        let planned = (self.plans.get(&dialect))
            .and_then(|plans| plans.get(name))
            .and_then(|p| plan::render(p, dialect, ctx));
        let output = match planned {
            Some(output) => output,
            None => self.render_handlebars(name, dialect, ctx)?,
        };
        check_output(name, dialect, output)
    }

    /// [`Renderer::render`] through Handlebars even where the template has
    /// a plan: what a plan must agree with (the fuzz target compares them).
    pub fn render_without_plan(
        &self,
        name: &str,
        dialect: Dialect,
        event: &Event,
        chat: &str,
    ) -> Result<String, RenderError> {
        self.render_event(name, dialect, event, chat, false)
    }

    fn render_event(
        &self,
        name: &str,
        dialect: Dialect,
        event: &Event,
        chat: &str,
        with_plan: bool,
    ) -> Result<String, RenderError> {
        let mut ctx = RenderContext::new(event);
        ctx.set_chat(chat);
        match with_plan {
            true => self.render_context(name, dialect, &ctx),
            false => check_output(name, dialect, self.render_handlebars(name, dialect, &ctx)?),
        }
    }

    /// Renders through Handlebars, whether or not the template has a plan.
    fn render_handlebars(
        &self,
        name: &str,
        dialect: Dialect,
        ctx: &RenderContext<'_>,
    ) -> Result<String, RenderError> {
        let data = ctx.data();
        let fail = |message: String| RenderError {
            template: name.to_string(),
            message,
        };
        let registry = self
            .registries
            .get(&dialect)
            .filter(|r| r.has_template(name))
            .ok_or_else(|| {
                fail(format!(
                    "no template `{name}` is registered for {dialect:?}"
                ))
            })?;
        let output = registry
            .render_with_context(name, ctx.handlebars())
            .map_err(|e| {
                let problem = render_problem(&e, data);
                match (problem.line, problem.col) {
                    (Some(line), Some(col)) => {
                        fail(format!("{} (line {line}, column {col})", problem.message))
                    }
                    _ => fail(problem.message),
                }
            })?;
        Ok(output)
    }
}

/// The template data of one event, reused for every chat it goes to. The
/// JSON form (what Handlebars and some providers read) is built only when
/// asked for; plans read the event in place.
#[derive(Debug)]
pub struct RenderContext<'e> {
    event: &'e Event,
    chat: String,
    excerpt: OnceCell<String>,
    json: OnceCell<handlebars::Context>,
    card: OnceCell<card::Card>,
}

impl<'e> RenderContext<'e> {
    pub fn new(event: &'e Event) -> Self {
        Self {
            event,
            chat: String::new(),
            excerpt: OnceCell::new(),
            json: OnceCell::new(),
            card: OnceCell::new(),
        }
    }

    pub fn set_chat(&mut self, chat: &str) {
        if self.chat == chat {
            return;
        }
        self.chat.clear();
        self.chat.push_str(chat);
        if let Some(json) = self.json.get_mut() {
            json.data_mut()["chat"]["name"] = serde_json::Value::String(chat.to_string());
        }
    }

    pub fn event(&self) -> &'e Event {
        self.event
    }

    /// `post.excerpt`, computed once.
    fn excerpt(&self) -> &str {
        self.excerpt.get_or_init(|| match &self.event.post {
            Some(p) => text::excerpt(&p.cooked, text::EXCERPT_MAX),
            None => String::new(),
        })
    }

    fn handlebars(&self) -> &handlebars::Context {
        self.json.get_or_init(|| {
            let data = context::context_with_excerpt(self.event, &self.chat, self.excerpt());
            handlebars::Context::from(data)
        })
    }

    /// The event as a card, built once for every chat it goes to.
    pub fn card(&self) -> &card::Card {
        self.card
            .get_or_init(|| card::Card::of(self.event, self.excerpt()))
    }

    /// The data as JSON (what providers get as `Message::context`).
    pub fn data(&self) -> &serde_json::Value {
        self.handlebars().data()
    }
}

/// Branches the samples did not take can still produce broken JSON.
fn check_output(name: &str, dialect: Dialect, output: String) -> Result<String, RenderError> {
    if dialect == Dialect::Json
        && let Err(e) = serde_json::from_str::<serde_json::Value>(&output)
    {
        return Err(RenderError {
            template: name.to_string(),
            message: format!("the output is not valid JSON: {e}"),
        });
    }
    Ok(output)
}

/// The events templates are checked against at load: the full sample, and
/// a topic event without post, category or tags.
fn sample_events() -> [Event; 2] {
    let sample = Event::sample(SAMPLE_FORUM);
    let mut bare = sample.clone();
    bare.kind = EventKind::TopicCreated;
    bare.post = None;
    bare.topic.category = None;
    bare.topic.tags.clear();
    [sample, bare]
}

/// Whether `plan` renders the sample events exactly as Handlebars renders
/// template `name`.
fn plan_agrees(
    registry: &Handlebars<'static>,
    name: &str,
    dialect: Dialect,
    plan: &plan::Plan,
) -> bool {
    sample_events().iter().all(|event| {
        let mut ctx = RenderContext::new(event);
        ctx.set_chat(SAMPLE_CHAT);
        let expected = registry.render_with_context(name, ctx.handlebars()).ok();
        match plan::render(plan, dialect, &ctx) {
            Some(output) => expected.as_deref() == Some(output.as_str()),
            // The plan leaves this one to Handlebars: nothing to disagree on.
            None => true,
        }
    })
}

fn new_registry(dialect: Dialect) -> Handlebars<'static> {
    let mut registry = Handlebars::new();
    registry.set_strict_mode(true);
    registry.register_escape_fn(move |value| escape::escape(dialect, value));
    helpers::register(&mut registry, dialect);
    registry
}

/// Renders `name` against the full sample, which must succeed, then (for
/// JSON) against a bare topic event, which must give valid JSON if it renders
/// at all: a template may rightly use `post.*` without a guard when it is
/// only meant for post events.
fn check_samples(
    registry: &Handlebars<'static>,
    name: &str,
    dialect: Dialect,
) -> Result<(), TemplateProblem> {
    let ([sample, bare], what) = match name {
        NOTICE_TEMPLATE => {
            let notice = Event::sample_notice(SAMPLE_FORUM);
            let neutral = notice.neutral();
            ([notice, neutral], ["the sample notice", "a neutral notice"])
        }
        _ => (
            sample_events(),
            [
                "the sample post event",
                "a topic event without post, category or tags",
            ],
        ),
    };
    let data = context(&sample, SAMPLE_CHAT);
    let output = registry
        .render(name, &data)
        .map_err(|e| render_problem(&e, &data))?;
    if dialect != Dialect::Json {
        return Ok(());
    }
    check_json(&output, what[0])?;
    if let Ok(output) = registry.render(name, &context(&bare, SAMPLE_CHAT)) {
        check_json(&output, what[1])?;
    }
    Ok(())
}

fn check_json(output: &str, what: &str) -> Result<serde_json::Value, TemplateProblem> {
    serde_json::from_str::<serde_json::Value>(output).map_err(|e| {
        TemplateProblem::at(
            None,
            None,
            format!(
                "the template does not produce valid JSON for {what}: {e} (in the output:\n{}\n)",
                text::truncate(output, 1000)
            ),
        )
    })
}

/// Refuses what would defeat escaping or loop: `{{{x}}}`, `{{&x}}`, partials.
fn check_elements(template: &Template) -> Result<(), TemplateProblem> {
    for (idx, element) in template.elements.iter().enumerate() {
        let pos = template.mapping.get(idx);
        let problem =
            |message: &str| TemplateProblem::at(pos.map(|m| m.0), pos.map(|m| m.1), message);
        match element {
            TemplateElement::HtmlExpression(_) => {
                return Err(problem(
                    "`{{{...}}}` would insert post content unescaped; use `{{...}}` (the value is escaped for the chat)",
                ));
            }
            TemplateElement::PartialExpression(_) | TemplateElement::PartialBlock(_) => {
                return Err(problem("partials (`{{> name}}`) are not supported"));
            }
            TemplateElement::HelperBlock(block) => {
                for inner in [&block.template, &block.inverse].into_iter().flatten() {
                    check_elements(inner)?;
                }
            }
            TemplateElement::DecoratorBlock(block) => {
                if let Some(inner) = &block.template {
                    check_elements(inner)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn syntax_problem(e: &TemplateError) -> TemplateProblem {
    let (line, col) = e.pos().unzip();
    let message = match e.reason() {
        // The parser's own list of expected grammar rules helps nobody.
        TemplateErrorReason::InvalidSyntax(_) => {
            "invalid Handlebars syntax: a malformed `{{...}}` or a block left open".to_string()
        }
        other => other.to_string(),
    };
    TemplateProblem::at(line, col, message)
}

/// A render error as a problem; for an unknown variable, suggests the
/// closest path of `data`.
fn render_problem(e: &handlebars::RenderError, data: &serde_json::Value) -> TemplateProblem {
    let message = match e.reason() {
        RenderErrorReason::MissingVariable(Some(path)) => {
            let mut message = format!("unknown variable `{path}`");
            if let Some(best) = closest(path, &known_paths(data)) {
                message.push_str(&format!(" (did you mean `{best}`?)"));
            }
            message
        }
        RenderErrorReason::MissingVariable(None) => "unknown variable".to_string(),
        RenderErrorReason::HelperNotFound(name) => format!(
            "unknown helper `{name}` (helpers: excerpt, truncate, date, link, join, bold, \
             and Handlebars' if, unless, each, with, lookup, eq, ne, gt, lt, and, or, not, len)"
        ),
        RenderErrorReason::TemplateError(te) => return syntax_problem(te),
        other => other.to_string(),
    };
    TemplateProblem::at(e.line_no, e.column_no, message)
}

/// Every dotted path to a value in `data` (objects only, not array items).
fn known_paths(data: &serde_json::Value) -> Vec<String> {
    fn walk(prefix: &str, value: &serde_json::Value, out: &mut Vec<String>) {
        if let serde_json::Value::Object(map) = value {
            for (key, child) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                walk(&path, child, out);
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk("", data, &mut out);
    out
}

fn closest<'a>(wanted: &str, candidates: &'a [String]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::normalized_levenshtein(wanted, c), c))
        .filter(|(score, _)| *score >= 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.as_str())
}

// Pieces of the default text templates, shared by every text dialect.
macro_rules! title_link {
    () => {
        "{{#if post}}{{link post.url topic.title}}{{else}}{{link topic.url topic.title}}{{/if}}"
    };
}
/// The topic's state before its title: solved, closed, archived, pinned
/// (each message edited as the state changes).
macro_rules! marks {
    () => {
        concat!(
            "{{#if topic.solved}}✅ {{/if}}",
            "{{#if topic.closed}}🔒 {{/if}}{{#if topic.archived}}🗄️ {{/if}}{{#if topic.pinned}}📌 {{/if}}"
        )
    };
}
macro_rules! byline {
    () => {
        concat!(
            "{{#if post}} by {{#if post.name}}{{post.name}}{{else}}{{post.username}}{{/if}}{{/if}}",
            "{{#if topic.category}} in {{topic.category.path}}{{/if}}",
            "{{#if topic.tags}} [{{join topic.tags \", \"}}]{{/if}}",
        )
    };
}
macro_rules! excerpt_line {
    ($open:literal, $close:literal) => {
        concat!(
            "{{#if post}}{{#if post.excerpt}}\n",
            $open,
            "{{post.excerpt}}",
            $close,
            "{{/if}}{{/if}}"
        )
    };
}

/// The familiar message for `dialect`: the title linked to the post, the
/// author, the category path and tags when present, then the excerpt on its
/// own line. For [`Dialect::Json`], a document of the most useful fields.
pub fn default_template(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::SlackMrkdwn => concat!(
            marks!(),
            "*",
            title_link!(),
            "*",
            byline!(),
            excerpt_line!("", "")
        ),
        Dialect::Markdown | Dialect::RocketChat => concat!(
            marks!(),
            "**",
            title_link!(),
            "**",
            byline!(),
            excerpt_line!("> ", "")
        ),
        Dialect::Html => concat!(
            marks!(),
            "<b>",
            title_link!(),
            "</b>",
            byline!(),
            excerpt_line!("<blockquote>", "</blockquote>")
        ),
        Dialect::Plain => concat!(marks!(), title_link!(), byline!(), excerpt_line!("", "")),
        Dialect::Json => JSON_TEMPLATE,
    }
}

// Pieces of the notice templates (the event families beyond posts).
macro_rules! notice_head {
    ($open:literal, $close:literal) => {
        concat!(
            "{{#if notice.mark}}{{notice.mark}} {{/if}}",
            $open,
            "{{link notice.url notice.title}}",
            $close,
            "{{#if topic.title}}: “{{topic.title}}”",
            "{{#if topic.category}} in {{topic.category.path}}{{/if}}{{/if}}",
            "{{#if notice.text}} ({{notice.text}}){{/if}}",
        )
    };
}
macro_rules! notice_quote {
    ($open:literal, $close:literal) => {
        concat!(
            "{{#if notice.excerpt}}\n",
            $open,
            "{{notice.excerpt}}",
            $close,
            "{{/if}}"
        )
    };
}

/// The message of an event family's notice for `dialect`: its mark and
/// headline linked to the item, the topic and category it is about, the
/// detail line, and the content quoted (each where the notice has it).
pub fn notice_template(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::SlackMrkdwn => concat!(notice_head!("*", "*"), notice_quote!("", "")),
        Dialect::Markdown | Dialect::RocketChat => {
            concat!(notice_head!("**", "**"), notice_quote!("> ", ""))
        }
        Dialect::Html => concat!(
            notice_head!("<b>", "</b>"),
            notice_quote!("<blockquote>", "</blockquote>")
        ),
        Dialect::Plain => concat!(notice_head!("", ""), notice_quote!("", "")),
        Dialect::Json => NOTICE_JSON_TEMPLATE,
    }
}

/// The name the notice template of each dialect is registered under.
pub const NOTICE_TEMPLATE: &str = "@notice";

const NOTICE_JSON_TEMPLATE: &str = r#"{
  "event": "{{event}}",
  "forum": "{{forum.url}}",
  "chat": "{{chat.name}}",
  "family": "{{notice.family}}",
  "title": "{{notice.title}}",
  "url": "{{notice.url}}",
  "text": "{{notice.text}}",
  "status": "{{notice.status}}",
  "excerpt": "{{notice.excerpt}}",
  "topic": {{#if topic.title}}{
    "id": {{topic.id}},
    "title": "{{topic.title}}",
    "category": {{#if topic.category}}"{{topic.category.path}}"{{else}}null{{/if}}
  }{{else}}null{{/if}}
}"#;

const JSON_TEMPLATE: &str = r#"{
  "event": "{{event}}",
  "forum": "{{forum.url}}",
  "chat": "{{chat.name}}",
  "topic": {
    "id": {{topic.id}},
    "title": "{{topic.title}}",
    "url": "{{topic.url}}",
    "category": {{#if topic.category}}"{{topic.category.path}}"{{else}}null{{/if}},
    "tags": [{{#each topic.tags}}{{#unless @first}}, {{/unless}}"{{this}}"{{/each}}],
    "private_message": {{topic.private_message}},
    "closed": {{topic.closed}},
    "archived": {{topic.archived}},
    "pinned": {{topic.pinned}},
    "solved": {{topic.solved}}
  },
  "post": {{#if post}}{
    "id": {{post.id}},
    "number": {{post.number}},
    "username": "{{post.username}}",
    "name": "{{post.name}}",
    "url": "{{post.url}}",
    "created_at": "{{post.created_at}}",
    "excerpt": "{{post.excerpt}}"
  }{{else}}null{{/if}}
}"#;

#[cfg(test)]
mod tests;
