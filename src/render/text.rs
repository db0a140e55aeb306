//! Plain text out of Discourse's cooked HTML, and word-boundary truncation.
//!
//! The results are raw text: they are escaped for a dialect only when written
//! into a message.

use html2text::render::TrivialDecorator;

/// Default length of an excerpt, in characters.
pub const EXCERPT_MAX: usize = 300;

/// Cooked HTML beyond this many bytes is ignored: an excerpt needs only the
/// start, and it bounds the parser's work on huge posts.
const HTML_MAX_BYTES: usize = 100_000;

/// Wide enough that html2text never wraps (wrapping would split long words).
const RENDER_WIDTH: usize = 1_000_000;

/// Discourse markup that does not belong in an excerpt: quoted replies,
/// image file-name/size captions, onebox previews (their source line stays).
const HIDDEN_CSS: &str = "aside.quote { display: none; } \
    .lightbox-wrapper .meta { display: none; } \
    .onebox-body { display: none; }";

/// Cooked HTML → whitespace-collapsed text truncated to `max` characters.
pub fn excerpt(html: &str, max: usize) -> String {
    truncate(&collapse_whitespace(&html_to_text(html)), max)
}

/// Cooked HTML → text: entities decoded, tags dropped, emoji images as their
/// alt text (`:smile:`), code kept as text.
pub fn html_to_text(html: &str) -> String {
    let html = clip(html, HTML_MAX_BYTES);
    // html2text is a full HTML5 parser fed with user content; a panic in it
    // must not take the relay down, so one becomes an empty excerpt.
    match std::panic::catch_unwind(|| convert(html)) {
        Ok(Ok(text)) => text,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not convert post HTML to text");
            String::new()
        }
        Err(_) => {
            tracing::warn!("HTML to text conversion panicked");
            String::new()
        }
    }
}

fn convert(html: &str) -> Result<String, html2text::Error> {
    html2text::config::with_decorator(TrivialDecorator::new())
        .add_css(HIDDEN_CSS)?
        // Tables as one cell after another, without borders.
        .raw_mode(true)
        // Plain letters for `<s>`, not ones overlaid with U+0336.
        .unicode_strikeout(false)
        .allow_width_overflow()
        .string_from_read(html.as_bytes(), RENDER_WIDTH)
}

/// The longest prefix of `s` of at most `max` bytes ending on a char boundary.
fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Runs of whitespace (newlines included) become one space; ends trimmed.
pub fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `text` cut to at most `max` characters, `…` included, at the last word
/// boundary that fits (mid-word only when the first word alone is too long).
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    if max == 0 {
        return String::new();
    }
    // Byte offset just past the first `max - 1` characters: room for `…`.
    let end = text
        .char_indices()
        .nth(max - 1)
        .map_or(text.len(), |(i, _)| i);
    let head = &text[..end];
    let at_boundary = text[end..].starts_with(char::is_whitespace);
    let cut = if at_boundary {
        head
    } else {
        match head.rfind(char::is_whitespace) {
            Some(i) if !head[..i].trim_end().is_empty() => &head[..i],
            _ => head,
        }
    };
    format!("{}…", cut.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_cuts_at_word_boundary_within_max() {
        let t = truncate("alpha beta gamma delta", 12);
        assert_eq!(t, "alpha beta…");
        assert!(t.chars().count() <= 12);
        assert_eq!(truncate("alpha beta", 10), "alpha beta");
        assert_eq!(truncate("alpha beta gamma", 11), "alpha beta…");
        assert_eq!(truncate("abcdefghijkl", 5), "abcd…");
        assert_eq!(truncate("ab", 0), "");
        assert_eq!(truncate("été à la plage", 6), "été à…");
    }

    #[test]
    fn html_to_text_decodes_and_drops_markup() {
        let html = r#"<aside class="quote"><blockquote><p>quoted text</p></blockquote></aside>
<p>Use <code>Arc&lt;Mutex&lt;T&gt;&gt;</code> &amp; enjoy <img src="/e.png" class="emoji" title=":smile:" alt=":smile:"></p>
<div class="lightbox-wrapper"><a class="lightbox" href="/u.png"><img src="/u.png" alt="diagram"><div class="meta"><span class="filename">diagram.png</span><span class="informations">800×600 12 KB</span></div></a></div>"#;
        let text = collapse_whitespace(&html_to_text(html));
        assert_eq!(text, "Use Arc<Mutex<T>> & enjoy :smile: diagram");
    }

    #[test]
    fn excerpt_truncates_collapsed_text() {
        let html = format!("<p>{}</p>", "word ".repeat(100));
        let e = excerpt(&html, 300);
        assert!(e.chars().count() <= 300);
        assert!(e.ends_with("word…"));
        assert_eq!(excerpt("<p>a\n\n  b</p><p>c</p>", 300), "a b c");
    }
}
