//! Pipeline: the stages composed for one config snapshot.
//!
//! [`load`] reads a file and builds everything fallible (secrets, provider
//! targets, globs, templates) before anything uses it; the result is an
//! immutable [`Pipeline`] that a server swaps in whole. [`Pipeline::decide`]
//! takes a normalized event to the exact requests that would be sent: it is
//! what `explain` prints and what delivery will enqueue.

pub mod load;
pub mod reload;
pub mod schema;

pub use load::{ChatConfig, CommandAuth, Config, RuleSource, ServerConfig, TemplateSource};

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::Serialize;

use crate::config::model::{Filter, Style};
use crate::config::{Diagnostics, MissingEnv, Problem, Severity, SourceMap, env::Env};
use crate::ingest::{Event, ForumState};
use crate::providers::{Action, Message, Outbound};
use crate::render::{self, Dialect, RenderContext, Renderer};
use crate::rules::{Match, Matcher, Routing, RuleDef};

/// What destinations that never read [`Message::context`] get there.
static NO_CONTEXT: serde_json::Value = serde_json::Value::Null;

/// One config, compiled.
#[derive(Debug)]
pub struct Pipeline {
    pub config: Config,
    matcher: Matcher,
    renderer: Renderer,
    /// The template name registered for each chat (index = chat index).
    chat_templates: Vec<String>,
    /// Whether each chat's template may depend on the chat (else one render
    /// per event serves every chat sharing the template and dialect).
    per_chat: Vec<bool>,
    /// The card template each chat names (`card = "..."`), if any.
    card_templates: Vec<Option<String>>,
    chat_by_name: HashMap<String, usize>,
}

/// A message for one chat, ready to send.
#[derive(Debug)]
pub struct Delivery {
    pub chat: usize,
    pub filter: Filter,
    /// Index of the deciding rule in the chat's rules.
    pub rule: usize,
    pub text: String,
    pub outbound: Outbound,
}

/// A matched chat and its rendered text (or why it could not be rendered,
/// redacted).
pub type Rendered = (Match, Result<String, String>);

/// A chat that matched but whose message could not be built.
#[derive(Debug, Clone, Serialize)]
pub struct ChatFailure {
    pub chat: usize,
    pub error: String,
}

/// What happens to one event.
#[derive(Debug)]
pub struct Decision {
    /// Why nothing is sent, when nothing is.
    pub skipped: Option<String>,
    pub deliveries: Vec<Delivery>,
    pub failures: Vec<ChatFailure>,
}

impl Pipeline {
    /// Compiles rules and templates. Problems carry file spans.
    pub fn build(config: Config) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        // Borrowed: a copy of 100k rules cost ~10 % of loading.
        let rule_sets: Vec<&[RuleDef]> = config.chats.iter().map(|c| c.rules.as_slice()).collect();
        let matcher = Matcher::compile(&rule_sets);
        if let Err(p) = &matcher {
            problems.extend(p.iter().cloned());
        }

        let mut renderer = Renderer::new();
        let mut registered: HashSet<(String, Dialect)> = HashSet::new();
        let mut chat_templates = Vec::with_capacity(config.chats.len());
        let mut per_chat = Vec::with_capacity(config.chats.len());
        for chat in &config.chats {
            let dialect = chat.destination.dialect();
            let (name, source, located) = match &chat.template {
                Some(t) => match config.templates.get(t.get_ref()) {
                    Some(src) => (t.get_ref().clone(), src.text.as_str(), Some(src)),
                    // The loader already reported the unknown name.
                    None => continue,
                },
                None => (
                    format!("default:{}", chat.destination.kind()),
                    chat.destination
                        .default_template()
                        .unwrap_or_else(|| render::default_template(dialect)),
                    None,
                ),
            };
            if registered.insert((name.clone(), dialect))
                && let Err(p) = renderer.register(&name, source, dialect)
            {
                let span = located
                    .map(|src| src.locate(p.line, p.col))
                    .unwrap_or_else(|| chat.span.clone());
                problems.push(Problem::error(
                    Some(span),
                    format!(
                        "template `{name}` (used by {} chat `{}`): {}",
                        chat.destination.kind(),
                        chat.name,
                        p.message
                    ),
                ));
            }
            chat_templates.push(name);
            per_chat.push(may_depend_on_chat(source));
        }

        let mut card_templates = Vec::with_capacity(config.chats.len());
        let mut card_samples: HashMap<(String, Dialect), Option<Vec<serde_json::Value>>> =
            HashMap::new();
        for chat in &config.chats {
            let dialect = chat.destination.dialect();
            let named = chat.card.as_ref().filter(|_| chat.style == Style::Card);
            let Some((name, src)) = named.and_then(|n| {
                config
                    .templates
                    .get(n.get_ref())
                    .map(|src| (n.get_ref(), src))
            }) else {
                card_templates.push(None);
                continue;
            };
            let at = src.locate(Some(1), Some(1));
            let samples = card_samples
                .entry((name.clone(), dialect))
                .or_insert_with(|| match renderer.register_card(name, &src.text, dialect) {
                    Ok(samples) => Some(samples),
                    Err(p) => {
                        problems.push(Problem::error(
                            Some(src.locate(p.line, p.col)),
                            format!(
                                "card template `{name}` (used by {} chat `{}`): {}",
                                chat.destination.kind(),
                                chat.name,
                                p.message
                            ),
                        ));
                        None
                    }
                });
            // Each platform checks its own limits, even on a shared template.
            for sample in samples.iter().flatten() {
                if let Err(why) = chat.destination.check_card(sample) {
                    problems.push(Problem::error(
                        Some(at.clone()),
                        format!(
                            "card template `{name}` (used by {} chat `{}`) makes a card {} would refuse: {why}",
                            chat.destination.kind(),
                            chat.name,
                            chat.destination.kind(),
                        ),
                    ));
                    break;
                }
            }
            card_templates.push(Some(name.clone()));
        }

        // Family events render from the notice template of the chat's dialect.
        let dialects: std::collections::BTreeSet<Dialect> = config
            .chats
            .iter()
            .map(|c| c.destination.dialect())
            .collect();
        for dialect in dialects {
            let source = render::notice_template(dialect);
            if let Err(p) = renderer.register(render::NOTICE_TEMPLATE, source, dialect) {
                problems.push(Problem::error(
                    None,
                    format!("the notice template for {dialect:?}: {}", p.message),
                ));
            }
        }

        match matcher {
            Ok(matcher) if problems.is_empty() => Ok(Self {
                chat_by_name: (config.chats.iter().enumerate())
                    .map(|(i, c)| (c.name.clone(), i))
                    .collect(),
                config,
                matcher,
                renderer,
                chat_templates,
                per_chat,
                card_templates,
            }),
            _ => Err(problems),
        }
    }

    /// A fresh state for forum `forum` (an index into `config.forums`),
    /// seeded with its static category map.
    pub fn forum_state(&self, forum: usize) -> ForumState {
        match self.config.forums.get(forum) {
            Some(f) => ForumState::new(&f.categories)
                .branded(f.title.clone().map(|title| crate::ingest::Brand {
                    title,
                    logo: f.logo_url.clone().unwrap_or_default(),
                }))
                .learning_from_api(f.api_key.is_some())
                .hiding_tags(f.hidden_tags.clone()),
            None => ForumState::new(&[]),
        }
    }

    /// Only the routing decision (no rendering): which chats, by which rule.
    /// With several forums, only chats of the event's forum count.
    pub fn route(&self, event: &Event) -> Routing {
        let routing = self.matcher.route(event);
        if self.config.forums.len() == 1 {
            return routing;
        }
        let forum = self.config.forum_index(&event.forum).unwrap_or(0);
        match routing {
            Routing::Matched(mut ms) => {
                ms.retain(|m| self.config.chats[m.chat].forum == forum);
                Routing::Matched(ms)
            }
            skipped => skipped,
        }
    }

    /// Routes, renders and builds the request for every chat the event reaches.
    /// A chat whose message fails to render is reported, never blocks others.
    pub fn decide(&self, event: &Event) -> Decision {
        let mut context = RenderContext::new(event);
        let rendered = match self.route_and_render(&mut context) {
            Ok(r) => r,
            Err(skipped) => {
                return Decision {
                    skipped: Some(skipped),
                    deliveries: vec![],
                    failures: vec![],
                };
            }
        };
        let mut deliveries = Vec::with_capacity(rendered.len());
        let mut failures = Vec::new();
        for (m, text) in rendered {
            let built = match text {
                // The neutral form is built from scratch, request and all.
                Ok(_) if self.neutral(m.chat, event) => self.message(m.chat, event),
                Ok(text) => {
                    self.request(m.chat, text, &mut context, Action::default(), None, false)
                }
                Err(error) => Err(error),
            };
            match built {
                Ok((text, outbound)) => deliveries.push(Delivery {
                    chat: m.chat,
                    filter: m.filter,
                    rule: m.rule,
                    text,
                    outbound,
                }),
                Err(error) => failures.push(ChatFailure {
                    chat: m.chat,
                    error,
                }),
            }
        }
        Decision {
            skipped: None,
            deliveries,
            failures,
        }
    }

    /// Routes and renders (no requests): the text for every chat the event
    /// reaches, or why none. What `decide` does before building requests.
    pub fn render_routed(&self, event: &Event) -> Result<Vec<Rendered>, String> {
        self.route_and_render(&mut RenderContext::new(event))
    }

    fn route_and_render(&self, context: &mut RenderContext<'_>) -> Result<Vec<Rendered>, String> {
        let matches = match self.route(context.event()) {
            Routing::Skipped(reason) => return Err(reason.to_string()),
            Routing::Matched(m) if m.is_empty() => {
                return Err("no chat's rules match this event".into());
            }
            Routing::Matched(m) => m,
        };
        // Chats whose template ignores the chat share one render.
        let mut shared: HashMap<(&str, Dialect), Result<String, String>> = HashMap::new();
        let mut out = Vec::with_capacity(matches.len());
        for m in matches {
            // A notice renders one template per dialect, but its neutral
            // form is per chat.
            let per_chat = match context.event().notice {
                Some(_) => true,
                None => self.per_chat[m.chat],
            };
            let text = match per_chat {
                // Rendered from the neutral form, never from the item.
                true if self.neutral(m.chat, context.event()) => {
                    let neutral = context.event().neutral();
                    let mut cx = RenderContext::new(&neutral);
                    cx.set_chat(&self.config.chats[m.chat].name);
                    self.render(m.chat, &cx)
                }
                true => {
                    context.set_chat(&self.config.chats[m.chat].name);
                    self.render(m.chat, context)
                }
                false => {
                    let key = (
                        self.chat_templates[m.chat].as_str(),
                        self.config.chats[m.chat].destination.dialect(),
                    );
                    shared
                        .entry(key)
                        .or_insert_with(|| self.render(m.chat, context))
                        .clone()
                }
            };
            out.push((m, text));
        }
        Ok(out)
    }
}

impl Pipeline {
    /// The index of the chat named `name`.
    pub fn chat_index(&self, name: &str) -> Option<usize> {
        self.chat_by_name.get(name).copied()
    }

    /// The rendered text and exact request of `event` for chat `chat`
    /// (an index from [`Pipeline::chat_index`]). The error text is redacted.
    pub fn message(&self, chat: usize, event: &Event) -> Result<(String, Outbound), String> {
        self.message_with(
            chat,
            &mut RenderContext::new(event),
            Action::default(),
            false,
            None,
        )
    }

    /// [`Pipeline::message`] as delivery sends it: for one delivery (its
    /// id, see [`Message::delivery`]) and action (a thread reply, an edit, a
    /// delete); `strike` strikes the text through (a deleted post).
    pub fn message_as(
        &self,
        chat: usize,
        event: &Event,
        action: Action<'_>,
        strike: bool,
        delivery: &str,
    ) -> Result<(String, Outbound), String> {
        let mut context = RenderContext::new(event);
        self.message_with(chat, &mut context, action, strike, Some(delivery))
    }

    fn render(&self, chat: usize, context: &RenderContext) -> Result<String, String> {
        let dialect = self.config.chats[chat].destination.dialect();
        let event = context.event();
        let template = match event.notice {
            Some(_) => render::NOTICE_TEMPLATE,
            None => &self.chat_templates[chat],
        };
        self.renderer
            .render_context(template, dialect, context)
            .map_err(|e| self.config.redactor.redact(&e.to_string()))
    }

    /// Whether chat `chat` gets only the neutral form of `event` (a family
    /// event about a private item its rule does not name).
    fn neutral(&self, chat: usize, event: &Event) -> bool {
        event.notice.is_some() && self.matcher.neutral_for(chat, event)
    }

    fn message_with(
        &self,
        chat: usize,
        context: &mut RenderContext,
        action: Action<'_>,
        strike: bool,
        delivery: Option<&str>,
    ) -> Result<(String, Outbound), String> {
        let c = self
            .config
            .chats
            .get(chat)
            .ok_or_else(|| format!("no chat #{chat}"))?;
        if self.neutral(chat, context.event()) {
            // The text and the request (providers may read the context)
            // come from the neutral form alone.
            let neutral = context.event().neutral();
            return self.message_with(
                chat,
                &mut RenderContext::new(&neutral),
                action,
                strike,
                delivery,
            );
        }
        context.set_chat(&c.name);
        let mut text = self.render(chat, context)?;
        if strike {
            text = render::escape::strike(c.destination.dialect(), &text);
        }
        self.request(chat, text, context, action, delivery, strike)
    }

    fn request(
        &self,
        chat: usize,
        text: String,
        context: &mut RenderContext,
        action: Action<'_>,
        delivery: Option<&str>,
        struck: bool,
    ) -> Result<(String, Outbound), String> {
        let c = &self.config.chats[chat];
        // A struck-through message (a deleted post) is its text alone: a
        // card has nothing to strike.
        let card = c.style == Style::Card && !struck;
        // Providers may read the chat from the context too.
        context.set_chat(&c.name);
        let custom = match &self.card_templates[chat] {
            Some(name) if card => Some(
                self.renderer
                    .render_card(name, c.destination.dialect(), context)
                    .map_err(|e| self.config.redactor.redact(&e.to_string()))?,
            ),
            _ => None,
        };
        let outbound = c.destination.request(&Message {
            chat: &c.name,
            text: &text,
            context: match c.destination.reads_context() {
                true => context.data(),
                false => &NO_CONTEXT,
            },
            card: card.then(|| context.card()),
            custom: custom.as_ref(),
            action,
            delivery,
        });
        Ok((text, outbound))
    }

    /// The event a test message is rendered from: the sample post, titled so
    /// that nobody mistakes it for forum activity.
    pub fn test_event(&self) -> Event {
        let mut e = Event::sample(&self.config.forum().url);
        e.id = None;
        e.topic.title = "Test message from discourse-relay".into();
        if let Some(p) = e.post.as_mut() {
            p.username = "discourse-relay".into();
            p.name = "discourse-relay".into();
            p.raw = "If you can read this, messages reach this chat.".into();
            p.cooked = format!("<p>{}</p>", p.raw);
        }
        e
    }
}

impl Pipeline {
    /// The alert that chat `about` is failing, for the `[server] alerts`
    /// chat: an event its template renders like the test message (title:
    /// which chat; text: why, and where to look).
    pub fn alert_event(&self, about: &str, reason: &str) -> Event {
        let mut e = self.test_event();
        e.topic.title = format!("discourse-relay: chat {about} is failing");
        if let Some(p) = e.post.as_mut() {
            p.raw = format!(
                "{reason} (dead letters and the pane: /chats/{about}/dead-letters on the admin listener)"
            );
            p.cooked = format!("<p>{}</p>", render::escape::escape(Dialect::Html, &p.raw));
        }
        e
    }
}

/// Whether a template may render differently per chat: it names `chat`,
/// or reaches the root context in a way a text search cannot follow.
fn may_depend_on_chat(source: &str) -> bool {
    ["chat", "@root", "lookup", "this", "{{.", " . ", "../"]
        .iter()
        .any(|needle| source.contains(needle))
}

/// Reads, validates and compiles a config file. `Ok` carries the warnings;
/// `Err` carries every problem found (errors and warnings), sorted.
pub fn load(
    path: &Path,
    env: &dyn Env,
    missing: MissingEnv,
) -> Result<(Pipeline, Diagnostics), Diagnostics> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            let map = SourceMap::new(path, "");
            return Err(Diagnostics(vec![map.diagnostic(
                None,
                Severity::Error,
                format!("cannot read the file: {e}"),
            )]));
        }
    };
    load_str(path, &text, env, missing)
}

/// [`load`] for text already in memory (`path` is only used in messages).
pub fn load_str(
    path: &Path,
    text: &str,
    env: &dyn Env,
    missing: MissingEnv,
) -> Result<(Pipeline, Diagnostics), Diagnostics> {
    let map = SourceMap::new(path, text);
    let (config, mut problems) = load::parse(&map, env, missing);
    let pipeline = match config {
        Some(c) => match Pipeline::build(c) {
            Ok(p) => Some(p),
            Err(more) => {
                problems.extend(more);
                None
            }
        },
        None => None,
    };
    let mut diags = Diagnostics(
        problems
            .into_iter()
            .map(|p| map.diagnostic(p.span, p.severity, p.message))
            .collect(),
    );
    diags.sort();
    match pipeline {
        Some(p) if !diags.has_errors() => Ok((p, diags)),
        _ => Err(diags),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chats_sharing_a_template_share_a_render_unless_it_names_the_chat() {
        let toml = r#"[discourse]
url = "https://forum.example.org"
[templates]
plain = "{{topic.title}}"
named = "{{topic.title}} for {{chat.name}}"
[[chat]]
name = "a"
provider = "console"
template = "plain"
subscribe = ["all"]
[[chat]]
name = "b"
provider = "console"
template = "plain"
subscribe = ["all"]
[[chat]]
name = "c"
provider = "console"
template = "named"
subscribe = ["all"]
[[chat]]
name = "d"
provider = "console"
template = "named"
subscribe = ["all"]
"#;
        let env = HashMap::<String, String>::new();
        let (p, _) = load_str(Path::new("t.toml"), toml, &env, MissingEnv::Error).unwrap();
        assert_eq!(p.per_chat, vec![false, false, true, true]);
        let d = p.decide(&Event::sample("https://forum.example.org"));
        let texts: Vec<&str> = d.deliveries.iter().map(|d| d.text.as_str()).collect();
        let title = "How do I share state between async tasks?";
        assert_eq!(
            texts,
            vec![
                title.to_string(),
                title.to_string(),
                format!("{title} for c"),
                format!("{title} for d")
            ]
        );
        assert_eq!(p.chat_index("c"), Some(2));
        assert_eq!(p.chat_index("zz"), None);
    }

    #[test]
    fn destinations_that_skip_the_context_build_the_same_requests_without_it() {
        // Every mode of every provider that says it never reads the context.
        let toml = r#"[discourse]
url = "https://forum.example.org"
[providers.slack]
kind = "slack"
token = "${T}"
[providers.tg]
kind = "telegram"
token = "${T}"
[providers.mm]
kind = "mattermost"
token = "${T}"
api_url = "https://mm.example.org"
[providers.rc]
kind = "rocketchat"
server_url = "https://rc.example.org"
user_id = "bot"
auth_token = "${T}"
[[chat]]
name = "slack-api"
provider = "slack"
channel = "C0123"
subscribe = ["all"]
[[chat]]
name = "slack-hook"
provider = "slack"
webhook_url = "${HOOK}"
subscribe = ["all"]
[[chat]]
name = "tg"
provider = "tg"
chat_id = -100123
subscribe = ["all"]
[[chat]]
name = "mm-api"
provider = "mm"
channel_id = "abcdefghijklmnopqrstuvwxyz"
subscribe = ["all"]
[[chat]]
name = "mm-hook"
provider = "mattermost"
webhook_url = "${HOOK}"
subscribe = ["all"]
[[chat]]
name = "rc-rest"
provider = "rc"
room_id = "GENERAL"
subscribe = ["all"]
[[chat]]
name = "rc-hook"
provider = "rocketchat"
webhook_url = "${HOOK}"
subscribe = ["all"]
[[chat]]
name = "hook"
provider = "webhook"
url = "${HOOK}"
subscribe = ["all"]
[[chat]]
name = "console"
provider = "console"
subscribe = ["all"]
"#;
        let env: HashMap<String, String> = [
            ("T".to_string(), "tok".to_string()),
            (
                "HOOK".to_string(),
                "https://hooks.example.org/x".to_string(),
            ),
        ]
        .into();
        let (p, _) = load_str(Path::new("t.toml"), toml, &env, MissingEnv::Error).unwrap();
        let event = Event::sample("https://forum.example.org");
        let actions = [
            Action::default(),
            Action::Post {
                thread: Some(crate::providers::Thread {
                    root: Some("C0123/1.2"),
                }),
            },
            Action::Edit {
                remote_id: "C0123/1.2",
            },
            Action::Delete {
                remote_id: "C0123/1.2",
            },
        ];
        let mut checked = 0;
        for c in &p.config.chats {
            assert!(!c.destination.reads_context(), "{}", c.name);
            let mut ctx = RenderContext::new(&event);
            ctx.set_chat(&c.name);
            let caps = c.destination.capabilities();
            for action in actions {
                let allowed = match action {
                    Action::Post { thread } => thread.is_none() || caps.thread,
                    Action::Edit { .. } => caps.edit,
                    Action::Delete { .. } => caps.delete,
                };
                if !allowed {
                    continue;
                }
                let msg = |context| Message {
                    chat: &c.name,
                    text: "hello",
                    context,
                    card: None,
                    custom: None,
                    action,
                    delivery: Some("c#1@2"),
                };
                // Secrets print redacted: compare what would be sent.
                let sent = |o: Outbound| match o {
                    Outbound::Http(r) => {
                        let headers: Vec<(String, String)> = (r.headers.iter())
                            .map(|(k, v)| (k.clone(), v.expose().to_string()))
                            .collect();
                        format!("{} {} {headers:?} {}", r.method, r.url.expose(), r.body)
                    }
                    other => format!("{other:?}"),
                };
                let with = sent(c.destination.request(&msg(ctx.data())));
                let without = sent(c.destination.request(&msg(&NO_CONTEXT)));
                assert_eq!(with, without, "{}", c.name);
                checked += 1;
            }
        }
        assert!(checked >= 15, "{checked}");
    }
}
