//! Template helpers: `excerpt`, `truncate`, `date`, `join` (text), `link`
//! and `bold` (markup).
//!
//! Helper arguments arrive raw, never escaped. Text helpers return a value
//! that Handlebars escapes with the registry's escape function like any
//! `{{value}}`, so they also compose as subexpressions
//! (`{{bold (truncate topic.title 80)}}`). Markup helpers write their markup
//! themselves and escape every piece of data in it for their dialect; their
//! output is not meant to be fed to another helper (it would be escaped
//! again and show as text).

use handlebars::{
    Context, Handlebars, Helper, HelperDef, HelperResult, JsonRender, Output, RenderContext,
    RenderError, RenderErrorReason, ScopedJson,
};
use jiff::{Timestamp, tz::TimeZone};
use serde_json::Value;

use super::Dialect;
use super::escape::{encode_url, escape, is_linkable, strip_controls};
use super::text;

/// `{{date VALUE}}` without a format.
pub const DEFAULT_DATE_FORMAT: &str = "%Y-%m-%d %H:%M UTC";

/// Registers every helper, the markup ones for `dialect`.
pub fn register(registry: &mut Handlebars<'static>, dialect: Dialect) {
    register_text(registry);
    registry.register_helper("link", Box::new(Link(dialect)));
    registry.register_helper("bold", Box::new(Bold(dialect)));
}

/// Registers the text helpers alone: what card templates get, since markup
/// helpers write their markup unescaped for JSON.
pub fn register_text(registry: &mut Handlebars<'static>) {
    registry.register_helper("excerpt", Box::new(Excerpt));
    registry.register_helper("truncate", Box::new(Truncate));
    registry.register_helper("date", Box::new(Date));
    registry.register_helper("join", Box::new(Join));
}

fn usage_error(usage: &str, problem: &str) -> RenderError {
    RenderErrorReason::Other(format!("{problem}; usage: {usage}")).into()
}

/// Argument `idx`, an error if absent; in strict mode a reference to a
/// missing variable is an error too, as it is outside helpers.
fn arg<'a>(
    h: &'a Helper<'_>,
    r: &Handlebars<'_>,
    idx: usize,
    usage: &str,
) -> Result<&'a Value, RenderError> {
    opt_arg(h, r, idx)?.ok_or_else(|| usage_error(usage, &format!("missing argument {}", idx + 1)))
}

fn opt_arg<'a>(
    h: &'a Helper<'_>,
    r: &Handlebars<'_>,
    idx: usize,
) -> Result<Option<&'a Value>, RenderError> {
    match h.param(idx) {
        None => Ok(None),
        Some(p) if r.strict_mode() && p.is_value_missing() => {
            Err(RenderError::strict_error(p.relative_path()))
        }
        Some(p) => Ok(Some(p.value())),
    }
}

fn too_many_args(h: &Helper<'_>, max: usize, usage: &str) -> Result<(), RenderError> {
    if h.params().len() > max || !h.hash().is_empty() {
        return Err(usage_error(usage, "unexpected arguments"));
    }
    Ok(())
}

/// A value as text: strings as they are, null as nothing, others as JSON.
fn as_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.render(),
    }
}

/// A short description of a wrong argument for an error message.
fn describe(value: &Value) -> String {
    match value {
        Value::Array(_) => "a list".to_string(),
        Value::Object(_) => "an object".to_string(),
        Value::String(s) => format!("{:?}", text::truncate(s, 40)),
        other => other.to_string(),
    }
}

fn as_length(value: &Value, usage: &str) -> Result<usize, RenderError> {
    value
        .as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| {
            usage_error(
                usage,
                &format!("the length must be a whole number, not {}", describe(value)),
            )
        })
}

fn text_result<'rc>(s: String) -> Result<ScopedJson<'rc>, RenderError> {
    Ok(ScopedJson::Derived(Value::String(s)))
}

/// `{{excerpt VALUE [max]}}`: HTML → text, collapsed, word-boundary truncated.
struct Excerpt;

impl HelperDef for Excerpt {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        const USAGE: &str = "{{excerpt VALUE [max]}}";
        too_many_args(h, 2, USAGE)?;
        let html = as_text(arg(h, r, 0, USAGE)?);
        let max = match opt_arg(h, r, 1)? {
            Some(v) => as_length(v, USAGE)?,
            None => text::EXCERPT_MAX,
        };
        text_result(text::excerpt(&html, max))
    }
}

/// `{{truncate VALUE max}}`: word-boundary truncation with `…`.
struct Truncate;

impl HelperDef for Truncate {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        const USAGE: &str = "{{truncate VALUE max}}";
        too_many_args(h, 2, USAGE)?;
        let value = as_text(arg(h, r, 0, USAGE)?);
        let max = as_length(arg(h, r, 1, USAGE)?, USAGE)?;
        text_result(text::truncate(&value, max))
    }
}

/// `{{date VALUE [FORMAT]}}`: an RFC 3339 timestamp (or Unix seconds) in UTC
/// with a strftime format. An empty or null VALUE gives nothing.
struct Date;

impl HelperDef for Date {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        const USAGE: &str = "{{date VALUE [\"%Y-%m-%d %H:%M UTC\"]}}";
        too_many_args(h, 2, USAGE)?;
        let value = arg(h, r, 0, USAGE)?;
        let format = match opt_arg(h, r, 1)? {
            Some(Value::String(f)) => f.as_str(),
            Some(other) => {
                return Err(usage_error(
                    USAGE,
                    &format!("the format must be a string, not {}", describe(other)),
                ));
            }
            None => DEFAULT_DATE_FORMAT,
        };
        format_date(value, format)
            .map_err(|problem| usage_error(USAGE, &problem))
            .and_then(text_result)
    }
}

/// What `{{date VALUE FORMAT}}` writes (before escaping); the error names
/// what is wrong with the arguments.
pub fn format_date(value: &Value, format: &str) -> Result<String, String> {
    let timestamp = match value {
        Value::Null => return Ok(String::new()),
        Value::String(s) if s.trim().is_empty() => return Ok(String::new()),
        Value::String(s) => s
            .trim()
            .parse::<Timestamp>()
            .map_err(|e| format!("`{s}` is not an RFC 3339 timestamp ({e})"))?,
        Value::Number(n) => n
            .as_i64()
            .and_then(|secs| Timestamp::from_second(secs).ok())
            .ok_or_else(|| format!("{n} is not a Unix time in seconds"))?,
        other => return Err(format!("{} is not a timestamp", describe(other))),
    };
    jiff::fmt::strtime::format(format, &timestamp.to_zoned_datetime(TimeZone::UTC))
        .map_err(|e| format!("bad date format `{format}` ({e})"))
}

/// `{{join LIST [SEP]}}`: the items as text, separated by SEP (`, `).
struct Join;

impl HelperDef for Join {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        const USAGE: &str = "{{join LIST \", \"}}";
        too_many_args(h, 2, USAGE)?;
        let items = match arg(h, r, 0, USAGE)? {
            Value::Array(items) => items.iter().map(as_text).collect::<Vec<_>>(),
            Value::Null => Vec::new(),
            other => {
                return Err(usage_error(
                    USAGE,
                    &format!("{} is not a list", describe(other)),
                ));
            }
        };
        let separator = match opt_arg(h, r, 1)? {
            Some(sep) => as_text(sep),
            None => ", ".to_string(),
        };
        text_result(items.join(&separator))
    }
}

/// `{{link URL TEXT}}`: a link in the dialect (text alone when the URL is
/// not http, https or mailto).
struct Link(Dialect);

impl HelperDef for Link {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        const USAGE: &str = "{{link URL TEXT}}";
        too_many_args(h, 2, USAGE)?;
        let url = as_text(arg(h, r, 0, USAGE)?);
        let text = match opt_arg(h, r, 1)? {
            Some(t) => as_text(t),
            None => String::new(),
        };
        out.write(&link(self.0, &url, &text))?;
        Ok(())
    }
}

/// The markup of a link to `url` showing `text` (the URL when `text` is blank).
pub fn link(dialect: Dialect, url: &str, text: &str) -> String {
    let url = strip_controls(url).trim().to_string();
    let text = if text.trim().is_empty() {
        url.as_str()
    } else {
        text
    };
    let as_text = || {
        if text == url || url.is_empty() {
            escape(dialect, text)
        } else {
            escape(dialect, &format!("{text} ({url})"))
        }
    };
    if !is_linkable(&url) {
        return as_text();
    }
    match dialect {
        // `|` and `>` would end the URL part; Slack decodes `&amp;` in URLs.
        Dialect::SlackMrkdwn => format!(
            "<{}|{}>",
            encode_url(&url, &['|', '<', '>']).replace('&', "&amp;"),
            escape(dialect, text)
        ),
        // `)` would end the destination, `<`/`>`/`\`/`` ` `` confuse parsers.
        Dialect::Markdown | Dialect::RocketChat => format!(
            "[{}]({})",
            escape(dialect, text),
            encode_url(&url, &['(', ')', '<', '>', '\\', '`', '"'])
        ),
        Dialect::Html => format!(
            "<a href=\"{}\">{}</a>",
            escape(dialect, &encode_url(&url, &[])),
            escape(dialect, text)
        ),
        Dialect::Plain | Dialect::Json => as_text(),
    }
}

/// `{{bold TEXT}}`: strong text where the dialect has it.
struct Bold(Dialect);

impl HelperDef for Bold {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        const USAGE: &str = "{{bold TEXT}}";
        too_many_args(h, 1, USAGE)?;
        let text = as_text(arg(h, r, 0, USAGE)?);
        out.write(&bold(self.0, &text))?;
        Ok(())
    }
}

pub fn bold(dialect: Dialect, text: &str) -> String {
    // Slack and Markdown emphasis does not open or close next to whitespace.
    let text = text.trim();
    if text.is_empty() {
        return String::new();
    }
    let text = escape(dialect, text);
    match dialect {
        Dialect::SlackMrkdwn => format!("*{text}*"),
        Dialect::Markdown | Dialect::RocketChat => format!("**{text}**"),
        Dialect::Html => format!("<b>{text}</b>"),
        Dialect::Plain | Dialect::Json => text,
    }
}
