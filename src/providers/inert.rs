//! What a card's texts do beside the escaping of their dialect, where a
//! post's words land in fields that no escaping reaches the same way on
//! every client (plain titles and fallbacks, Adaptive Card Markdown): a
//! post's `<` and `>` become the look-alikes `‹` and `›`, and a mentioning
//! `@` gets U+200B after it. Text stays readable; nothing in it can be
//! markup, a link or a mention on any reader.

/// Plain text (a title, a notification, a fallback `body`): `<`/`>` as
/// `‹`/`›`, U+200B after every `@` and inside `](` (a Markdown link
/// seen by a client that renders titles).
pub(crate) fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '<' => out.push('‹'),
            '>' => out.push('›'),
            '@' | ']' => {
                out.push(c);
                let next = chars.peek().copied();
                if (c == '@' || next == Some('(')) && next != Some('\u{200B}') {
                    out.push('\u{200B}');
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// Escaped Markdown with the post's escaped `\<` and `\>` as `‹` and `›`
/// (a link's URL has its `<>` percent-encoded and no `\`).
pub(crate) fn markdown(escaped: &str) -> String {
    escaped.replace("\\<", "‹").replace("\\>", "›")
}

#[cfg(test)]
mod tests {
    #[test]
    fn looks_alike_and_breaks_mentions() {
        assert_eq!(
            super::plain("<!channel> @here [x](y) a]b"),
            "‹!channel› @\u{200B}here [x]\u{200B}(y) a]b"
        );
        assert_eq!(super::plain("@\u{200B}room"), "@\u{200B}room");
        assert_eq!(super::markdown("\\<b\\> \\*"), "‹b› \\*");
    }
}
