//! Plain text out of Discourse's cooked HTML, and word-boundary truncation.
//!
//! The results are raw text: they are escaped for a dialect only when written
//! into a message.
//!
//! The HTML is streamed through the `html5gum` tokenizer (WHATWG tokenizing,
//! entities decoded, no tree building): a few µs for a typical post where a
//! full DOM build cost ~30 µs. Without a tree there are no implied end tags,
//! so a hidden element (a quote, say) ends only at its own end tag: left
//! unclosed, it hides the rest of the post, even where a DOM would have
//! closed it (an enclosing element's end tag, say).

use html5gum::emitters::callback::{CallbackEmitter, CallbackEvent};
use html5gum::{Span, Tokenizer};

/// Default length of an excerpt, in characters.
pub const EXCERPT_MAX: usize = 300;

/// Cooked HTML beyond this many bytes is ignored: an excerpt needs only the
/// start, and it bounds the tokenizer's work on huge posts.
const HTML_MAX_BYTES: usize = 100_000;

/// Cooked HTML → whitespace-collapsed text truncated to `max` characters.
pub fn excerpt(html: &str, max: usize) -> String {
    // `truncate` looks at no more than the first `max + 1` characters.
    truncate(
        &collapse_whitespace(&text_prefix(html, max.saturating_add(1))),
        max,
    )
}

/// Cooked HTML → text: entities decoded, tags dropped, code kept as text.
///
/// - Block elements (`p`, `div`, `li`, `h1`…, `pre`, `blockquote`, table
///   rows and cells, …) and `<br>` end with a newline, so words in different
///   blocks stay apart; inline elements (`a`, `strong`, `code`, …) add
///   nothing. Whitespace is otherwise left as is: callers collapse it.
/// - Hidden with their content: Discourse quotes (`aside.quote`), onebox
///   previews (`.onebox-body`; the onebox's source line stays), image
///   file-name/size captions (`.lightbox-wrapper .meta`), and what a browser
///   does not display as text (`script`, `style`, `template`, `noscript`,
///   `iframe`, `svg`, `head`, `title`).
/// - An `<img>` (with a `src`) becomes its `alt` text: an emoji's `:smile:`
///   (or the unicode character), an uploaded image's description.
pub fn html_to_text(html: &str) -> String {
    text_prefix(html, usize::MAX)
}

/// The start of `html_to_text(html)`: conversion stops once the text holds
/// `min_chars` non-whitespace characters, so it is at least `min_chars`
/// characters long once collapsed (or it is the whole text), and its
/// collapsed form is a prefix of the whole text's. An excerpt of a long post
/// thus reads only the post's start.
fn text_prefix(html: &str, min_chars: usize) -> String {
    let html = clip(html, HTML_MAX_BYTES);
    // The tokenizer is fed user content; should it ever panic, that must not
    // take the relay down, so a panic becomes an empty excerpt.
    std::panic::catch_unwind(|| convert(html, min_chars)).unwrap_or_else(|_| {
        tracing::warn!("HTML to text conversion panicked");
        String::new()
    })
}

fn convert(html: &str, min_chars: usize) -> String {
    let mut converter = Converter::new(html.len(), min_chars);
    // The callback yields a token (and so pauses the tokenizer) once the
    // text is long enough.
    let mut emitter = CallbackEmitter::new(|event: CallbackEvent<'_>, _: Span<()>| {
        converter.event(event).then_some(())
    });
    // Contents of `script`, `style`, `textarea`, … are raw text, not markup.
    emitter.naively_switch_states(true);
    // Runs to the end of the input or to the first token, whichever is first.
    let _ = Tokenizer::new_with_emitter(html, emitter).next();
    converter.out
}

/// Which attribute the value events that follow belong to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Attr {
    Class,
    Alt,
    Src,
    Other,
}

/// An open element tracked by name: its nested same-name elements are
/// counted so that the matching end tag closes it.
struct Scope {
    name: Vec<u8>,
    depth: usize,
}

impl Scope {
    fn new(name: &[u8]) -> Self {
        Scope {
            name: name.to_vec(),
            depth: 0,
        }
    }

    /// Counts a start tag `name` inside the scope.
    fn open(&mut self, name: &[u8], has_content: bool) {
        if has_content && self.name == name {
            self.depth += 1;
        }
    }

    /// Counts an end tag `name`; whether it closes the scope.
    fn close(&mut self, name: &[u8]) -> bool {
        if self.name != name {
            return false;
        }
        match self.depth.checked_sub(1) {
            Some(depth) => {
                self.depth = depth;
                false
            }
            None => true,
        }
    }
}

/// State of the streaming conversion, fed one tokenizer event at a time.
struct Converter {
    out: String,
    /// Non-whitespace characters in `out`, counted only if `wanted` is
    /// finite (not `usize::MAX`).
    chars: usize,
    /// How many non-whitespace characters are enough.
    wanted: usize,
    /// Whether attribute events belong to a start tag (end tags can carry
    /// attributes too; they are ignored).
    in_start_tag: bool,
    /// The start tag being read, and its first `class`, `alt` and `src`.
    tag: Vec<u8>,
    attr: Attr,
    class: Vec<u8>,
    alt: Vec<u8>,
    seen_class: bool,
    seen_alt: bool,
    seen_src: bool,
    has_src: bool,
    /// The hidden element being skipped, content and all.
    hidden: Option<Scope>,
    /// The `.lightbox-wrapper` element we are in.
    lightbox: Option<Scope>,
}

impl Converter {
    fn new(html_len: usize, wanted: usize) -> Self {
        Converter {
            out: String::with_capacity(html_len.min(4096)),
            chars: 0,
            wanted,
            in_start_tag: false,
            tag: Vec::new(),
            attr: Attr::Other,
            class: Vec::new(),
            alt: Vec::new(),
            seen_class: false,
            seen_alt: false,
            seen_src: false,
            has_src: false,
            hidden: None,
            lightbox: None,
        }
    }

    /// Handles one event; whether the text is now long enough.
    fn event(&mut self, event: CallbackEvent<'_>) -> bool {
        match event {
            CallbackEvent::OpenStartTag { name } => {
                self.in_start_tag = true;
                self.tag.clear();
                self.tag.extend_from_slice(name);
                self.attr = Attr::Other;
                self.class.clear();
                self.alt.clear();
                self.seen_class = false;
                self.seen_alt = false;
                self.seen_src = false;
                self.has_src = false;
            }
            CallbackEvent::AttributeName { name } => {
                // As in a DOM, the first of duplicate attributes wins.
                self.attr = match name {
                    _ if !self.in_start_tag => Attr::Other,
                    b"class" if !self.seen_class => {
                        self.seen_class = true;
                        Attr::Class
                    }
                    b"alt" if !self.seen_alt => {
                        self.seen_alt = true;
                        Attr::Alt
                    }
                    b"src" if !self.seen_src => {
                        self.seen_src = true;
                        Attr::Src
                    }
                    _ => Attr::Other,
                };
            }
            // Only non-empty values are reported.
            CallbackEvent::AttributeValue { value } if self.in_start_tag => match self.attr {
                Attr::Class => self.class.extend_from_slice(value),
                Attr::Alt => self.alt.extend_from_slice(value),
                Attr::Src => self.has_src = true,
                Attr::Other => {}
            },
            CallbackEvent::CloseStartTag { self_closing } if self.in_start_tag => {
                self.in_start_tag = false;
                return self.start_tag(self_closing);
            }
            CallbackEvent::EndTag { name } => {
                self.in_start_tag = false;
                self.end_tag(name);
            }
            CallbackEvent::String { value } if self.hidden.is_none() => {
                // A DOM drops U+0000 from body text.
                if value.contains(&0) {
                    let kept: Vec<u8> = value.iter().copied().filter(|&b| b != 0).collect();
                    return self.push(&kept);
                }
                return self.push(value);
            }
            _ => {}
        }
        false
    }

    /// Whether the text is now long enough.
    fn start_tag(&mut self, self_closing: bool) -> bool {
        let name = self.tag.as_slice();
        // Void elements have no content or end tag; `/>` ends an element
        // only in SVG and MathML (`<div/>` opens a div).
        let ends_itself = self_closing && matches!(name, b"svg" | b"math");
        let has_content = !is_void(name) && !ends_itself;
        if let Some(hidden) = &mut self.hidden {
            hidden.open(name, has_content);
            return false;
        }
        let in_lightbox = self.lightbox.is_some();
        let hide = matches!(
            name,
            b"script"
                | b"style"
                | b"template"
                | b"noscript"
                | b"iframe"
                | b"svg"
                | b"head"
                | b"title"
        ) || classes(&self.class).any(|c| {
            c == b"onebox-body"
                || (c == b"quote" && name == b"aside")
                || (c == b"meta" && in_lightbox)
        });
        if hide {
            if has_content {
                self.hidden = Some(Scope::new(name));
            }
            return false;
        }
        match &mut self.lightbox {
            Some(lightbox) => lightbox.open(name, has_content),
            None if has_content && classes(&self.class).any(|c| c == b"lightbox-wrapper") => {
                self.lightbox = Some(Scope::new(name));
            }
            None => {}
        }
        if name == b"img" && self.has_src {
            let alt = std::mem::take(&mut self.alt);
            let enough = self.push(&alt);
            self.alt = alt;
            return enough;
        }
        if name == b"br" || is_block(name) {
            self.line_break();
        }
        false
    }

    fn end_tag(&mut self, name: &[u8]) {
        if let Some(hidden) = &mut self.hidden {
            if hidden.close(name) {
                self.hidden = None;
            }
            return;
        }
        if let Some(lightbox) = &mut self.lightbox
            && lightbox.close(name)
        {
            self.lightbox = None;
        }
        // `</br>` is read as `<br>`.
        if name == b"br" || is_block(name) {
            self.line_break();
        }
    }

    /// Appends text (UTF-8 from the tokenizer, which reads a `&str`); whether
    /// the text is now long enough.
    fn push(&mut self, bytes: &[u8]) -> bool {
        let text = String::from_utf8_lossy(bytes);
        self.out.push_str(&text);
        if self.wanted == usize::MAX {
            return false;
        }
        self.chars += text.chars().filter(|c| !c.is_whitespace()).count();
        self.chars >= self.wanted
    }

    fn line_break(&mut self) {
        if !self.out.is_empty() && !self.out.ends_with('\n') {
            self.out.push('\n');
        }
    }
}

/// The class names in a `class` attribute value.
fn classes(class: &[u8]) -> impl Iterator<Item = &[u8]> {
    class
        .split(|b| b.is_ascii_whitespace())
        .filter(|c| !c.is_empty())
}

/// Elements without content or end tag.
fn is_void(name: &[u8]) -> bool {
    matches!(
        name,
        b"area"
            | b"base"
            | b"br"
            | b"col"
            | b"embed"
            | b"hr"
            | b"img"
            | b"input"
            | b"link"
            | b"meta"
            | b"source"
            | b"track"
            | b"wbr"
    )
}

/// Elements displayed as blocks (or table rows and cells): their text does
/// not run into the text around them.
fn is_block(name: &[u8]) -> bool {
    matches!(
        name,
        b"address"
            | b"article"
            | b"aside"
            | b"blockquote"
            | b"caption"
            | b"center"
            | b"dd"
            | b"details"
            | b"dialog"
            | b"div"
            | b"dl"
            | b"dt"
            | b"fieldset"
            | b"figcaption"
            | b"figure"
            | b"footer"
            | b"form"
            | b"h1"
            | b"h2"
            | b"h3"
            | b"h4"
            | b"h5"
            | b"h6"
            | b"header"
            | b"hgroup"
            | b"hr"
            | b"legend"
            | b"li"
            | b"listing"
            | b"main"
            | b"menu"
            | b"nav"
            | b"ol"
            | b"p"
            | b"plaintext"
            | b"pre"
            | b"section"
            | b"summary"
            | b"table"
            | b"tbody"
            | b"td"
            | b"tfoot"
            | b"th"
            | b"thead"
            | b"tr"
            | b"ul"
            | b"xmp"
    )
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

    /// `html_to_text` with whitespace collapsed, as every caller uses it.
    fn text(html: &str) -> String {
        collapse_whitespace(&html_to_text(html))
    }

    #[test]
    fn nested_quotes_are_dropped_with_their_content() {
        let html = r#"<aside class="quote no-group" data-username="bob"><div class="title"><img alt="" src="/a.png" class="avatar"> bob:</div><blockquote><aside class="quote"><div class="title">carol:</div><blockquote><p>innermost</p></blockquote></aside><p>inner</p></blockquote></aside><p>reply</p><aside class="quote"><blockquote><aside class="quote"><blockquote>deep</blockquote></aside>outer</blockquote></aside><p>end</p>"#;
        assert_eq!(text(html), "reply end");
        // Only Discourse's quote is hidden: a plain blockquote is content.
        assert_eq!(
            text("<blockquote><p>cited</p></blockquote>after"),
            "cited after"
        );
        assert_eq!(text(r#"<div class="quote">kept</div>"#), "kept");
    }

    #[test]
    fn images_become_their_alt_text() {
        let html = r#"<p>hi <img src="/images/emoji/twitter/smile.png?v=12" title=":smile:" class="emoji" alt=":smile:" loading="lazy" width="20" height="20"> and <img src="/e.png" class="emoji only-emoji" alt="😀"></p>"#;
        assert_eq!(text(html), "hi :smile: and 😀");
        // Other images too (an upload's description); none without `src`.
        assert_eq!(
            text(
                r#"<p>see <img src="/u.png" alt="diagram"> <img alt="no-src"><img src="/i.png" class="site-icon">.</p>"#
            ),
            "see diagram ."
        );
        // Attribute values are decoded; the first of duplicates wins.
        assert_eq!(
            text(r#"<img src=x class=emoji alt="&lt;3 &amp; more" alt="second">"#),
            "<3 & more"
        );
    }

    #[test]
    fn entities_are_decoded() {
        assert_eq!(
            text(
                "<p>&lt;!channel&gt; &amp; &quot;q&quot; &#39;s &#x1F600; &copy; &amp;amp; a&ampb</p>"
            ),
            "<!channel> & \"q\" 's 😀 © &amp; a&b"
        );
        // A bare `&`, `<` or `>` is text.
        assert_eq!(
            text("<p>a & b < c > d &unknown;</p>"),
            "a & b < c > d &unknown;"
        );
        // U+00A0 is whitespace to `collapse_whitespace`.
        assert_eq!(text("a&nbsp;b"), "a b");
    }

    #[test]
    fn malformed_html_degrades_to_text() {
        assert_eq!(
            text("<p>unclosed <b>bold <i>italic"),
            "unclosed bold italic"
        );
        assert_eq!(
            text("</div></p>stray</span> end tags</li>"),
            "stray end tags"
        );
        assert_eq!(text(r#"<p>broken <a href="x>link</a> rest</p>"#), "broken");
        assert_eq!(text("text <img alt=\"cut"), "text");
        assert_eq!(text("a<!-- unclosed comment"), "a");
        assert_eq!(text("a<!-- c -->b<!DOCTYPE html><![CDATA[x]]>c"), "abc");
        assert_eq!(text("<p>a\0b</p>"), "ab");
        // `/>` ends SVG elements, not HTML ones.
        assert_eq!(
            text("<svg/>kept <svg><text>hidden</text></svg>shown"),
            "kept shown"
        );
        // Raw text elements: their content is never markup.
        assert_eq!(
            text("<script>if (a<b) x = '</p>';</script><style>p{}</style>ok"),
            "ok"
        );
        assert_eq!(
            text("<template><p>tpl</p></template><noscript>ns</noscript>ok"),
            "ok"
        );
        // Without tree building, a hidden element ends only at its own end
        // tag: unclosed, it hides the rest.
        assert_eq!(
            text(r#"<p>before</p><aside class="quote"><p>quoted</div>after"#),
            "before"
        );
        assert_eq!(text("<script>never closed <p>x</p>"), "");
    }

    #[test]
    fn blocks_and_breaks_separate_words_inline_elements_do_not() {
        assert_eq!(html_to_text("a<br>b<br/>c</br>d"), "a\nb\nc\nd");
        assert_eq!(
            text("<p>a</p><p>b</p><div>c</div>d<h2>e</h2><pre>f</pre>"),
            "a b c d e f"
        );
        assert_eq!(
            text(
                "<ul><li>one<li>two</ul><table><tr><td>1</td><td>2</td></tr><tr><td>3</td></tr></table>"
            ),
            "one two 1 2 3"
        );
        assert_eq!(
            text("<blockquote>q</blockquote>x<hr>y<details><summary>s</summary>d</details>"),
            "q x y s d"
        );
        assert_eq!(
            text("<p>w<b>or</b><a href=x>d</a><code>s</code><span>!</span><wbr>?</p>"),
            "words!?"
        );
        assert_eq!(
            text("<pre><code class=\"lang-rust\">let x = 1;\n  y();</code></pre>"),
            "let x = 1; y();"
        );
    }

    #[test]
    fn oneboxes_keep_their_source_line_and_lightboxes_drop_captions() {
        let onebox = r#"<p>See</p><aside class="onebox allowlistedgeneric" data-onebox-src="https://example.com/a"><header class="source"><img src="https://example.com/favicon.ico" class="site-icon" width="32" height="32"><a href="https://example.com/a" target="_blank" rel="noopener">example.com</a></header><article class="onebox-body"><img src="https://example.com/t.png" class="thumbnail"><h3><a href="https://example.com/a">Title</a></h3><p>Description</p></article><div style="clear: both"></div></aside><p>after</p>"#;
        assert_eq!(text(onebox), "See example.com after");
        let lightbox = r##"<p><div class="lightbox-wrapper"><a class="lightbox" href="/u.png"><img src="/u.png" alt="pic"><div class="meta"><svg class="fa d-icon svg-icon"><use href="#far-image"></use></svg><span class="filename">pic.png</span><span class="informations">1920×1080 100 KB</span><div>nested</div></div></a></div></p><div class="meta">not in a lightbox</div>"##;
        assert_eq!(text(lightbox), "pic not in a lightbox");
    }

    #[test]
    fn hostile_100kb_inputs_finish_quickly() {
        let start = std::time::Instant::now();
        let filler = "x".repeat(HTML_MAX_BYTES);
        let shapes = [
            r#"<aside class="quote">"#.repeat(5_000),
            "<div class=\"lightbox-wrapper\"><div>".repeat(3_000),
            r#"<aside class="quote"></div>"#.repeat(4_000),
            "<b><i><a href=x>".repeat(6_000),
            "</p></div></aside>".repeat(6_000),
            "&amp;&#x1F600;&notanentity&".repeat(4_000),
            "<br>".repeat(25_000),
            format!("<img alt=\"{filler}"),
            format!("<p class=\"{filler}\">"),
            format!("<!--{filler}"),
            format!("<script>{}", "<!--<script>".repeat(8_000)),
            "<svg/><svg>".repeat(10_000),
            "<<<<>>>>".repeat(12_500),
        ];
        for html in &shapes {
            assert!(html.len() >= HTML_MAX_BYTES / 2, "{}", html.len());
            let out = html_to_text(html);
            assert!(out.len() <= html.len() * 2);
        }
        assert_eq!(text(&"<br>".repeat(25_000)), "");
        // Only the first 100 KB is read, cut on a char boundary.
        let long = format!("<p>{}</p><p>tail</p>", "é".repeat(HTML_MAX_BYTES));
        let out = html_to_text(&long);
        assert!(!out.contains("tail") && out.chars().all(|c| c == 'é'));
        // Generous: quadratic work on 100 KB would take far longer.
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn excerpt_reads_only_what_it_needs_and_matches_the_full_text() {
        let full =
            |html: &str, max: usize| truncate(&collapse_whitespace(&html_to_text(html)), max);
        let mut html = String::new();
        for i in 0..2_000 {
            html.push_str(&format!(
                "<p>w{i} <b>bo</b>ld<img src=x class=emoji alt=\":e{i}:\"> \n &amp;{i}</p><aside class=quote>q{i}</aside>"
            ));
        }
        for max in [0, 1, 2, 5, 9, 10, 11, 12, 13, 40, 299, 300, 301, 1_000] {
            assert_eq!(excerpt(&html, max), full(&html, max), "max {max}");
        }
        let prefix = text_prefix(&html, 301);
        assert!(prefix.len() < 1_000, "{}", prefix.len());
        // Short texts are read whole.
        for short in [
            "",
            "<p>a</p>",
            "<p>a b</p> <p>c</p>  ",
            "abc<img src=x alt=de>",
        ] {
            for max in [0, 1, 2, 3, 4, 300] {
                assert_eq!(excerpt(short, max), full(short, max), "{short:?} {max}");
            }
        }
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
