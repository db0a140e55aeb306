//! The verbs of `/discourse`, the same on every platform: `status`, `help`,
//! `watch|follow|mute|thread <c/…|t/…|all>` and `test`.
//!
//! A verb reads the serving [`Pipeline`] and answers with a [`Reply`] that each
//! platform renders in its own markup. Subscriptions live in git, so no verb
//! edits anything: `watch` and friends answer with the TOML to add. `test` is
//! the only verb with an effect, and it goes through [`App::send_test`].

use std::fmt::Write as _;

use super::Command;
use crate::config::model::Filter;
use crate::ingest::families::{self, FilterKind};
use crate::pipeline::Pipeline;
use crate::service::App;

/// Longest argument echoed or accepted (a glob, a tag).
const MAX_ARG: usize = 200;

/// One piece of a reply. Text comes from the relay (chat names from the
/// config, fixed sentences); anything the user typed goes in [`Block::Code`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block {
    Text(String),
    /// Preformatted lines (TOML, rule lists).
    Code(String),
    Link {
        label: String,
        url: String,
    },
}

/// A platform-neutral answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    pub blocks: Vec<Block>,
}

impl Reply {
    fn text(mut self, t: impl Into<String>) -> Self {
        self.blocks.push(Block::Text(t.into()));
        self
    }

    fn code(mut self, c: impl Into<String>) -> Self {
        self.blocks.push(Block::Code(c.into()));
        self
    }

    fn edit_link(mut self, p: &Pipeline) -> Self {
        if let Some(url) = &p.config.server.config_edit_url {
            self.blocks.push(Block::Link {
                label: "Edit subscriptions.toml".into(),
                url: url.clone(),
            });
        }
        self
    }

    /// Plain text: code as is, links as `label: url`.
    pub fn plain(&self) -> String {
        self.render(|b| match b {
            Block::Text(t) => t.clone(),
            Block::Code(c) => c.clone(),
            Block::Link { label, url } => format!("{label}: {url}"),
        })
    }

    /// Markdown (Mattermost, Discord): fenced code, `[label](url)`.
    pub fn markdown(&self) -> String {
        self.render(|b| match b {
            Block::Text(t) => t.clone(),
            Block::Code(c) => format!("```\n{c}\n```"),
            Block::Link { label, url } => format!("[{label}]({url})"),
        })
    }

    /// Slack mrkdwn: `&`, `<`, `>` escaped everywhere (the only control
    /// characters), fenced code, `<url|label>`.
    pub fn slack(&self) -> String {
        let esc = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        };
        self.render(|b| match b {
            Block::Text(t) => esc(t),
            Block::Code(c) => format!("```\n{}\n```", esc(c)),
            Block::Link { label, url } => format!("<{}|{}>", esc(url), esc(label)),
        })
    }

    /// Telegram HTML (`parse_mode: HTML`): escaped text, `<pre>`, `<a>`.
    pub fn telegram_html(&self) -> String {
        use crate::http::status::escape_html as esc;
        self.render(|b| match b {
            Block::Text(t) => esc(t),
            Block::Code(c) => format!("<pre>{}</pre>", esc(c)),
            Block::Link { label, url } => format!("<a href=\"{}\">{}</a>", esc(url), esc(label)),
        })
    }

    fn render(&self, f: impl Fn(&Block) -> String) -> String {
        self.blocks.iter().map(f).collect::<Vec<_>>().join("\n")
    }
}

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verb {
    Help,
    Status,
    Test,
    Subscribe(Filter, Subscription),
    /// Not understood: why, for the reply.
    Bad(String),
}

/// The argument of `watch`/`follow`/`mute`/`thread`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Subscription {
    /// An event family beyond posts (`review`...); `None`: posts.
    family: Option<&'static str>,
    category: Option<String>,
    tags: Vec<String>,
    group: Option<String>,
    channel: Option<String>,
}

fn parse(text: &str) -> Verb {
    let mut words = text.split_whitespace();
    let Some(verb) = words.next() else {
        return Verb::Help;
    };
    let args: Vec<&str> = words.collect();
    let verb = verb.to_ascii_lowercase();
    let filter = match verb.as_str() {
        "help" | "start" => return Verb::Help,
        "status" | "list" => return no_args(Verb::Status, &args),
        "test" => return no_args(Verb::Test, &args),
        "watch" => Filter::Watch,
        "follow" => Filter::Follow,
        "mute" => Filter::Mute,
        "thread" => Filter::Thread,
        other => return Verb::Bad(format!("unknown command `{}`", shown(other))),
    };
    match subscription(&args) {
        Ok(s) => Verb::Subscribe(filter, s),
        Err(why) => Verb::Bad(why),
    }
}

fn no_args(verb: Verb, args: &[&str]) -> Verb {
    match args.first() {
        None => verb,
        Some(a) => Verb::Bad(format!("unexpected argument `{}`", shown(a))),
    }
}

/// A user's word as echoed back: short, without backticks.
fn shown(s: &str) -> String {
    s.chars().filter(|c| *c != '`').take(50).collect()
}

fn subscription(args: &[&str]) -> Result<Subscription, String> {
    if args.is_empty() {
        return Err(
            "say what to subscribe to: `c/<category>`, `t/<tag>`, `all`, or an event family (`review`, `users`, `chat channel:<slug>`...)"
                .into(),
        );
    }
    let mut s = Subscription::default();
    let mut args = args;
    if let Some(f) = args
        .first()
        .and_then(|a| families::named(&a.to_ascii_lowercase()))
    {
        s.family = Some(f.name);
        args = &args[1..];
    }
    if args == ["all"] || (args.is_empty() && s.family.is_some()) {
        return Ok(s);
    }
    for arg in args {
        let bad = || {
            format!(
                "`{}` is not `c/<category>`, `t/<tag>`, `group:<name>`, `channel:<slug>` or `all`",
                shown(arg)
            )
        };
        enum Part {
            Category,
            Tag,
            Group,
            Channel,
        }
        let (part, value) = if let Some(c) = arg.strip_prefix("c/") {
            (Part::Category, c)
        } else if let Some(t) = arg.strip_prefix("t/") {
            (Part::Tag, t)
        } else if let Some(g) = arg.strip_prefix("group:").filter(|_| s.family.is_some()) {
            (Part::Group, g)
        } else if let Some(c) = arg.strip_prefix("channel:").filter(|_| s.family.is_some()) {
            (Part::Channel, c)
        } else {
            return Err(bad());
        };
        let clean = !value.is_empty()
            && value.len() <= MAX_ARG
            && !value
                .chars()
                .any(|c| c.is_control() || matches!(c, '"' | '\'' | '`' | '\\'))
            && globset::Glob::new(value).is_ok();
        if !clean {
            return Err(bad());
        }
        let one = |slot: &mut Option<String>, what: &str, v: String| match slot {
            Some(_) => Err(format!("one `{what}` per rule")),
            None => {
                *slot = Some(v);
                Ok(())
            }
        };
        match part {
            Part::Category => one(
                &mut s.category,
                "c/<category>",
                value.trim_end_matches('/').to_string(),
            )?,
            Part::Tag => s.tags.push(value.to_string()),
            Part::Group => one(&mut s.group, "group:<name>", value.to_string())?,
            Part::Channel => one(&mut s.channel, "channel:<slug>", value.to_string())?,
        }
    }
    // What the family takes is checked here, as the loader would.
    if let Some(f) = s.family.and_then(families::named) {
        let refused = [
            (
                s.category.is_some() || !s.tags.is_empty(),
                FilterKind::Topic,
                "c/ and t/",
            ),
            (s.group.is_some(), FilterKind::Group, "group:"),
            (s.channel.is_some(), FilterKind::Channel, "channel:"),
        ];
        if let Some((_, _, what)) = refused.iter().find(|(used, k, _)| *used && !f.allows(*k)) {
            return Err(format!("{} rules do not take {what}", f.name));
        }
    }
    Ok(s)
}

/// The chats of the serving config that `cmd` speaks for: same platform, a
/// provider instance whose credential verified the request, and one of the
/// request's channel ids among the chat's.
pub fn chats_here(p: &Pipeline, cmd: &Command) -> Vec<usize> {
    p.config
        .chats
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            c.destination.kind() == cmd.platform
                && cmd.instances.contains(&c.provider)
                && c.destination
                    .chat_ids()
                    .iter()
                    .chain(c.command_channels.iter())
                    .any(|id| cmd.ids.iter().any(|x| x == id))
        })
        .map(|(i, _)| i)
        .collect()
}

/// Answers `cmd`. Never fails: anything not understood gets the help text.
pub async fn run(app: &App, p: &Pipeline, cmd: &Command) -> Reply {
    let here = chats_here(p, cmd);
    match parse(&cmd.text) {
        Verb::Help => help(cmd),
        Verb::Bad(why) => help(cmd).text(format!("(Sorry: {why}.)")),
        Verb::Status if here.is_empty() => not_configured(p, cmd),
        Verb::Status => status(p, &here),
        Verb::Subscribe(filter, s) => subscribe(p, cmd, &here, filter, &s),
        Verb::Test if here.is_empty() => not_configured(p, cmd),
        Verb::Test => {
            let mut reply = Reply::default();
            for i in here {
                let name = &p.config.chats[i].name;
                let by = format!("{} command by {}", cmd.platform, cmd.user);
                reply = match app.send_test(name, &by).await {
                    Ok(Some(_)) => reply.text(format!(
                        "Test message queued for chat `{name}`: it should appear here shortly."
                    )),
                    Ok(None) => reply.text(format!("Chat `{name}` was just removed by a reload.")),
                    Err(e) => {
                        tracing::warn!(chat = %name, error = %e, "cannot queue a test message");
                        reply.text(format!(
                            "Could not queue the test message for `{name}`: the relay's storage is unavailable."
                        ))
                    }
                };
            }
            reply
        }
    }
}

fn help(cmd: &Command) -> Reply {
    let c = cmd.prefix;
    Reply::default()
        .text("Forum notifications for this chat are set in subscriptions.toml, which lives in git; these commands show and suggest, they never edit it.")
        .code(format!(
            "{c} status            the rules of this chat, compact and as written\n\
             {c} watch <what>      every new topic and reply\n\
             {c} follow <what>     new topics only\n\
             {c} mute <what>       nothing from there (beats the others)\n\
             {c} thread <what>     like watch, replies in the topic's thread\n\
             {c} test              send the test message here\n\
             {c} help              this text\n\
             <what>: c/<category path or glob>, t/<tag>, both, or all (posts);\n\
             or an event family: review, users, solved, topics, likes, assign [c/… t/…],\n\
             users group:<name>, chat channel:<slug>"
        ))
}

/// Status: for each chat, its rules in compact form, then as written.
fn status(p: &Pipeline, here: &[usize]) -> Reply {
    let mut reply = Reply::default();
    for &i in here {
        let c = &p.config.chats[i];
        reply = reply.text(format!(
            "Chat `{}` ({} via `{}`, {}): {} rule{}. The first match decides (mute > thread > watch > follow).",
            c.name,
            c.destination.kind(),
            c.provider,
            c.destination.target(),
            c.rules.len(),
            if c.rules.len() == 1 { "" } else { "s" },
        ));
        if c.rules.is_empty() {
            reply = reply.text("It has no rules: it receives nothing.");
            continue;
        }
        let mut lines = String::new();
        for (n, rule) in c.rules.iter().enumerate() {
            let _ = writeln!(lines, "{}. {}", n + 1, rule.compact());
            if let Some(src) = c.rule_sources.get(n) {
                for (k, l) in src.text.lines().enumerate() {
                    if k == 0 {
                        let _ = writeln!(lines, "   line {}: {l}", src.line);
                    } else {
                        let _ = writeln!(
                            lines,
                            "   {}  {l}",
                            " ".repeat(src.line.to_string().len() + 5)
                        );
                    }
                }
            }
        }
        reply = reply.code(lines.trim_end());
    }
    reply.edit_link(p)
}

/// A chat not in the file: the `[[chat]]` table that would add it.
fn not_configured(p: &Pipeline, cmd: &Command) -> Reply {
    let table = format!(
        "[[chat]]\nname = {}\nprovider = {}\n{}subscribe = [\"all\"]",
        toml_str(&cmd.suggested_name),
        toml_str(cmd.instances.first().map_or(cmd.platform, String::as_str)),
        cmd.target_toml,
    );
    Reply::default()
        .text(format!(
            "This chat ({}) is not in subscriptions.toml. To relay forum posts here, add:",
            cmd.place
        ))
        .code(table)
        .edit_link(p)
}

fn subscribe(
    p: &Pipeline,
    cmd: &Command,
    here: &[usize],
    filter: Filter,
    s: &Subscription,
) -> Reply {
    let mut rule = format!("[[chat.rule]]\nfilter = \"{}\"", filter.as_str());
    if let Some(f) = s.family {
        let _ = write!(rule, "\nfamily = {}", toml_str(f));
    }
    if let Some(g) = &s.group {
        let _ = write!(rule, "\ngroup = {}", toml_str(g));
    }
    if let Some(c) = &s.channel {
        let _ = write!(rule, "\nchannel = {}", toml_str(c));
    }
    if let Some(c) = &s.category {
        let _ = write!(rule, "\ncategory = {}", toml_str(c));
    }
    if !s.tags.is_empty() {
        let tags: Vec<String> = s.tags.iter().map(|t| toml_str(t)).collect();
        let _ = write!(rule, "\ntags = [{}]", tags.join(", "));
    }
    let compact = compact(filter, s);
    if here.is_empty() {
        let table = format!(
            "[[chat]]\nname = {}\nprovider = {}\n{}\n{rule}",
            toml_str(&cmd.suggested_name),
            toml_str(cmd.instances.first().map_or(cmd.platform, String::as_str)),
            cmd.target_toml.trim_end(),
        );
        return Reply::default()
            .text(format!(
                "This chat ({}) is not in subscriptions.toml yet. To add it with `{compact}`, add:",
                cmd.place
            ))
            .code(table)
            .edit_link(p);
    }
    let mut reply = Reply::default();
    for &i in here {
        let c = &p.config.chats[i];
        if let Some(n) = c.rules.iter().position(|r| r.compact() == compact) {
            let line = c.rule_sources.get(n).map_or(0, |s| s.line);
            reply = reply.text(format!(
                "Chat `{}` already has `{compact}` (rule {}, line {line}); nothing to add.",
                c.name,
                n + 1
            ));
            continue;
        }
        let line = c.line;
        reply = reply
            .text(format!(
                "To make chat `{}` {compact}, add this rule below its [[chat]] table (line {line}), before the next [[chat]], and commit:",
                c.name
            ))
            .code(rule.clone());
        if filter == Filter::Thread && !c.destination.capabilities().thread {
            reply = reply.text(format!(
                "Note: this chat's destination ({}) cannot thread, so the relay would refuse `thread` here; use `watch`.",
                c.destination.target()
            ));
        }
    }
    reply.edit_link(p)
}

/// The same compact form [`crate::rules::RuleDef::compact`] prints.
fn compact(filter: Filter, s: &Subscription) -> String {
    let mut out = filter.as_str().to_string();
    if let Some(f) = s.family {
        let _ = write!(out, " {f}");
    }
    if let Some(g) = &s.group {
        let _ = write!(out, " group:{g}");
    }
    if let Some(c) = &s.channel {
        let _ = write!(out, " channel:{c}");
    }
    if let Some(c) = &s.category {
        let _ = write!(out, " c/{c}");
    }
    for t in &s.tags {
        let _ = write!(out, " t/{t}");
    }
    if s.category.is_none() && s.tags.is_empty() && s.family.is_none() {
        out.push_str(" all");
    }
    out
}

/// A TOML basic string for `s`, escaped.
pub fn toml_str(s: &str) -> String {
    toml_edit::Value::from(s).to_string().trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_verbs_and_arguments() {
        assert_eq!(parse(""), Verb::Help);
        assert_eq!(parse("  HELP "), Verb::Help);
        assert_eq!(parse("status"), Verb::Status);
        assert_eq!(parse("test"), Verb::Test);
        assert!(matches!(parse("status now"), Verb::Bad(_)));
        assert_eq!(
            parse("watch all"),
            Verb::Subscribe(Filter::Watch, Subscription::default())
        );
        assert_eq!(
            parse("follow c/support/ t/bug t/release-*"),
            Verb::Subscribe(
                Filter::Follow,
                Subscription {
                    category: Some("support".into()),
                    tags: vec!["bug".into(), "release-*".into()],
                    ..Subscription::default()
                }
            )
        );
        assert_eq!(
            parse("watch chat channel:general"),
            Verb::Subscribe(
                Filter::Watch,
                Subscription {
                    family: Some("chat"),
                    channel: Some("general".into()),
                    ..Subscription::default()
                }
            )
        );
        for bad in [
            "watch",
            "watch support",
            "watch c/",
            "watch c/a c/b",
            "mute c/\"x",
            "thread t/[",
            "frobnicate",
            "watch group:staff",
            "watch users c/support",
            "watch chat group:staff",
        ] {
            assert!(matches!(parse(bad), Verb::Bad(_)), "{bad}");
        }
        let Verb::Bad(why) = parse("`rm` -rf") else {
            panic!()
        };
        assert!(!why.contains("``"), "{why}");
    }

    #[test]
    fn compact_matches_the_rules_module() {
        let s = Subscription {
            category: Some("support/**".into()),
            tags: vec!["bug".into()],
            ..Subscription::default()
        };
        assert_eq!(compact(Filter::Watch, &s), "watch c/support/** t/bug");
        assert_eq!(compact(Filter::Mute, &Subscription::default()), "mute all");
        let users = Subscription {
            family: Some("users"),
            group: Some("staff".into()),
            ..Subscription::default()
        };
        let sp = |v: &str| serde_spanned::Spanned::new(0..0, v.to_string());
        let rule = crate::rules::RuleDef {
            filter: Filter::Watch,
            kind: crate::config::model::RuleType::Normal,
            category: None,
            tags: vec![],
            group: Some(sp("staff")),
            family: families::named("users"),
            channel: None,
            span: None,
        };
        assert_eq!(compact(Filter::Watch, &users), rule.compact());
        assert_eq!(rule.compact(), "watch users group:staff");
        let review = Subscription {
            family: Some("review"),
            ..Subscription::default()
        };
        assert_eq!(compact(Filter::Mute, &review), "mute review");
    }

    #[test]
    fn renderings_escape_for_their_platform() {
        let r = Reply::default()
            .text("a <b> & c")
            .code("x = \"<!channel>\"")
            .edit_link_to("https://git.example.org/edit?a=1&b=2");
        assert_eq!(
            r.slack(),
            "a &lt;b&gt; &amp; c\n```\nx = \"&lt;!channel&gt;\"\n```\n<https://git.example.org/edit?a=1&amp;b=2|Edit subscriptions.toml>"
        );
        assert_eq!(
            r.telegram_html(),
            "a &lt;b&gt; &amp; c\n<pre>x = &quot;&lt;!channel&gt;&quot;</pre>\n<a href=\"https://git.example.org/edit?a=1&amp;b=2\">Edit subscriptions.toml</a>"
        );
        assert!(r.markdown().contains("```\nx = \"<!channel>\"\n```"));
        for v in ["a\"b", "it's \"x\"", "c:\\"] {
            let doc: toml_edit::DocumentMut = format!("x = {}", toml_str(v)).parse().unwrap();
            assert_eq!(doc["x"].as_str(), Some(v));
        }
    }

    impl Reply {
        fn edit_link_to(mut self, url: &str) -> Self {
            self.blocks.push(Block::Link {
                label: "Edit subscriptions.toml".into(),
                url: url.into(),
            });
            self
        }
    }
}
