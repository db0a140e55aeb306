//! Per-dialect escaping of interpolated values, and URL clean-up for links.
//!
//! Every dialect first drops control characters other than `\n` and `\t`, so
//! no value can smuggle a `\r\n` into a line protocol or a terminal sequence.

use std::borrow::Cow;

use super::Dialect;

/// Inserted after `@` to break mentions while keeping them readable.
const ZWSP: char = '\u{200B}';

/// Mass mentions across the Markdown platforms (Discord, Mattermost,
/// Rocket.Chat, Matrix bridges): broken even when glued to a word.
const MASS_MENTIONS: [&str; 5] = ["everyone", "here", "room", "channel", "all"];

/// Escapes `value` so that it shows as literal text in `dialect`.
pub fn escape(dialect: Dialect, value: &str) -> String {
    let value = strip_controls(value);
    match dialect {
        Dialect::SlackMrkdwn => slack(&value),
        Dialect::Markdown => markdown(&value),
        Dialect::RocketChat => rocketchat(&value),
        Dialect::Html => html(&value),
        Dialect::Plain => value.into_owned(),
        Dialect::Json => json(&value),
    }
}

/// A rendered message struck through, for a chat whose `on_delete` is
/// `strike`. Markup is line-based on Slack and Markdown (a strike cannot
/// span lines there), so each non-blank line is struck on its own.
pub fn strike(dialect: Dialect, text: &str) -> String {
    let per_line = |mark: &str| {
        text.lines()
            .map(|l| match l.trim() {
                "" => String::new(),
                t => format!("{mark}{t}{mark}"),
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    match dialect {
        Dialect::SlackMrkdwn => per_line("~"),
        Dialect::Markdown | Dialect::RocketChat => per_line("~~"),
        Dialect::Html => format!("<s>{text}</s>"),
        Dialect::Plain => format!("[deleted] {text}"),
        // A JSON body has no markup to strike with.
        Dialect::Json => text.to_string(),
    }
}

/// Removes control characters (C0, DEL, C1) except newline and tab.
pub fn strip_controls(value: &str) -> Cow<'_, str> {
    let keep = |c: char| !c.is_control() || c == '\n' || c == '\t';
    if value.chars().all(keep) {
        Cow::Borrowed(value)
    } else {
        Cow::Owned(value.chars().filter(|&c| keep(c)).collect())
    }
}

/// Slack decodes only these three entities; everything else shows literally.
fn slack(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
    out
}

/// HTML entities, and mentions broken like in Markdown: Telegram and
/// Matrix clients notify on `@name` in the text itself.
fn html(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let chars: Vec<char> = value.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        match c {
            '@' if breaks_mention(&chars, i) => {
                out.push('@');
                out.push(ZWSP);
            }
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn json(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            // Unreachable after strip_controls, kept so this stays valid JSON on its own.
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            _ => out.push(c),
        }
    }
    out
}

/// Characters that format, link, quote or tag in Discord, Mattermost, Zulip
/// or Rocket.Chat wherever they stand. `(`/`)` are left alone: they only
/// matter after `]`. `&` is left alone too: CommonMark decodes `&lt;` and the
/// like, which changes what shows but cannot ping or link, while `\&` would
/// show its backslash in Zulip.
fn is_markdown_special(c: char) -> bool {
    matches!(
        c,
        '\\' | '*' | '_' | '~' | '`' | '|' | '[' | ']' | '<' | '>'
    )
}

/// Characters kept verbatim inside a bare `http(s)://` URL: a backslash in a
/// URL breaks the link, and every Markdown parser here takes a bare URL as a
/// whole before looking for emphasis, so `_` and `~` are safe there. `*` and
/// the bracket family end the URL and get escaped as usual.
fn is_url_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~:/?#%=&+,;!$'".contains(c)
}

/// Copies the bare URL starting at `i` verbatim (breaking mentions in it)
/// and returns the index after it.
fn copy_url(chars: &[char], mut i: usize, out: &mut String) -> usize {
    while i < chars.len() && (is_url_char(chars[i]) || chars[i] == '@') {
        out.push(chars[i]);
        if chars[i] == '@' && breaks_mention(chars, i) {
            out.push(ZWSP);
        }
        i += 1;
    }
    i
}

fn markdown(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    let mut out = String::with_capacity(value.len() + value.len() / 4);
    let mut line_start = true;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let prev = i.checked_sub(1).map(|p| chars[p]);
        if starts_url(&chars[i..]) && !prev.is_some_and(char::is_alphanumeric) {
            i = copy_url(&chars, i, &mut out);
            line_start = false;
            continue;
        }
        if line_start {
            match c {
                ' ' | '\t' => {
                    out.push(c);
                    i += 1;
                    continue;
                }
                // Headings, lists, Discord `-#` subtext, setext underlines, quotes.
                '#' | '-' | '+' | '=' | '>' => {
                    out.push('\\');
                    out.push(c);
                    i += 1;
                    line_start = false;
                    continue;
                }
                // Ordered lists: `1.` / `1)`.
                '0'..='9' => {
                    let digits = chars[i..].iter().take_while(|d| d.is_ascii_digit()).count();
                    out.extend(&chars[i..i + digits]);
                    i += digits;
                    if let Some(&p @ ('.' | ')')) = chars.get(i) {
                        out.push('\\');
                        out.push(p);
                        i += 1;
                    }
                    line_start = false;
                    continue;
                }
                _ => {}
            }
        }
        push_markdown_char(&mut out, &chars, i);
        line_start = c == '\n';
        i += 1;
    }
    out
}

/// Rocket.Chat's message parser (`@rocket.chat/message-parser`) honours a
/// backslash only before `` *_~`#. `` and not inside a link label, so `\[`,
/// `\<` and `\|` still open links (`[t](url)`, `<url|t>`) and spoilers,
/// and `\(`/`\[` open KaTeX. Characters that start such syntax become
/// inert look-alikes (fullwidth brackets, `∗`) or get U+200B after them; the
/// parser has no rule that reads either (checked by tests/parser_escaping.rs). Bare `http(s)://` URLs are kept as in
/// Markdown (Rocket.Chat shows them as themselves).
fn rocketchat(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    let mut out = String::with_capacity(value.len() + value.len() / 4);
    let mut line_start = true;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let prev = i.checked_sub(1).map(|p| chars[p]);
        if starts_url(&chars[i..]) && !prev.is_some_and(char::is_alphanumeric) {
            i = copy_url(&chars, i, &mut out);
            line_start = false;
            continue;
        }
        if line_start && matches!(c, ' ' | '\t') {
            out.push(c);
            i += 1;
            continue;
        }
        match c {
            // The parser's `Escaped` rule (`\*`) does not apply inside a link
            // label, where the relay's linked title puts values: look-alikes.
            '*' => out.push('\u{2217}'),
            '_' => out.push('\u{FF3F}'),
            '~' => out.push('\u{FF5E}'),
            '`' => out.push('\u{FF40}'),
            // Links `[t](u)`, `![t](u)`, `<u|t>`, timestamps `<t:…>`.
            '[' => out.push('\u{FF3B}'),
            ']' => out.push('\u{FF3D}'),
            '<' => out.push('\u{FF1C}'),
            '>' => out.push('\u{FF1E}'),
            // `\(` `\[` KaTeX, `||` spoilers, `#channel`, headings, `color:#…`.
            '\\' | '|' | '#' => {
                out.push(c);
                out.push(ZWSP);
            }
            // Lists and tasks at the start of a line.
            '-' | '+' if line_start => {
                out.push(ZWSP);
                out.push(c);
            }
            '0'..='9' if line_start => {
                let digits = chars[i..].iter().take_while(|d| d.is_ascii_digit()).count();
                out.extend(&chars[i..i + digits]);
                i += digits;
                if let Some(&p @ ('.' | ')')) = chars.get(i) {
                    out.push(ZWSP);
                    out.push(p);
                    i += 1;
                }
                line_start = false;
                continue;
            }
            '@' => {
                out.push('@');
                if breaks_mention(&chars, i) {
                    out.push(ZWSP);
                }
            }
            _ => out.push(c),
        }
        line_start = c == '\n';
        i += 1;
    }
    out
}

fn starts_url(rest: &[char]) -> bool {
    if !matches!(rest.first(), Some('h' | 'H')) {
        return false;
    }
    let lower = |n: usize| {
        rest.iter()
            .take(n)
            .map(|c| c.to_ascii_lowercase())
            .collect::<String>()
    };
    lower(8) == "https://" || lower(7) == "http://"
}

/// Pushes `chars[i]`, backslash-escaped if special, with a zero-width space
/// after an `@` that could mention someone.
fn push_markdown_char(out: &mut String, chars: &[char], i: usize) {
    let c = chars[i];
    // `$$` opens Zulip math; a lone `$` (a price) is left readable.
    let dollars = c == '$'
        && (chars.get(i + 1) == Some(&'$') || i.checked_sub(1).is_some_and(|p| chars[p] == '$'));
    if is_markdown_special(c) || dollars {
        out.push('\\');
    }
    out.push(c);
    if c == '@' && breaks_mention(chars, i) {
        out.push(ZWSP);
    }
}

/// Whether the `@` at `chars[at]` could start a mention: a mass mention or
/// Zulip's `@**name**` / `@_**name**` anywhere, any other `@name` unless it
/// follows a letter or digit (so `bob@example.com` stays intact).
fn breaks_mention(chars: &[char], at: usize) -> bool {
    let Some(&next) = chars.get(at + 1) else {
        return false;
    };
    if next.is_whitespace() {
        return false;
    }
    if matches!(next, '*' | '_') {
        return true;
    }
    let word: String = chars[at + 1..]
        .iter()
        .take_while(|c| c.is_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if MASS_MENTIONS.iter().any(|m| word.starts_with(m)) {
        return true;
    }
    !at.checked_sub(1)
        .is_some_and(|p| chars[p].is_alphanumeric())
}

/// Whether a link to `url` may be made: only web and mail links, so
/// `javascript:` and friends stay text.
pub fn is_linkable(url: &str) -> bool {
    let lower = url.trim_start().to_ascii_lowercase();
    ["http://", "https://", "mailto:"]
        .iter()
        .any(|s| lower.starts_with(s) && lower.len() > s.len())
}

/// Percent-encodes the characters of `url` listed in `encode` and all
/// whitespace, after dropping control characters.
pub fn encode_url(url: &str, encode: &[char]) -> String {
    let mut out = String::with_capacity(url.len());
    for c in strip_controls(url.trim()).chars() {
        if c.is_whitespace() || encode.contains(&c) {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}
