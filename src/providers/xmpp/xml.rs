//! Just enough XML for an XMPP client stream: escaping for what we write,
//! and a reader that cuts the server's endless `<stream:stream>` document
//! into complete top-level elements (stanzas, features, SASL answers).
//!
//! Parsing is done by `quick-xml` on a byte buffer: an element is handed out
//! only once its closing tag has arrived, so a stanza split across TCP reads
//! is simply parsed again when more bytes come.

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::attributes::Attribute;
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;

/// XML-escapes `s` for text or an attribute value (`& < > " '`), and drops
/// every character XML 1.0 does not allow (C0 controls other than tab, LF
/// and CR; U+FFFE, U+FFFF). CR and CR LF become LF, since an XML parser
/// would turn them into LF anyway.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\r' => out.push('\n'),
            c if allowed(c) => out.push(c),
            _ => {}
        }
    }
    out
}

/// `Char` of XML 1.0 §2.2 (Rust `char`s are never surrogates).
pub fn allowed(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// One element: its qualified name, attributes (namespace declarations
/// included, as written), children and concatenated text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    pub text: String,
}

impl Element {
    /// The name without its prefix (`stream:features` → `features`).
    pub fn local(&self) -> &str {
        self.name.rsplit(':').next().unwrap_or(&self.name)
    }

    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The element's own `xmlns` (default namespace declaration), if any.
    pub fn ns(&self) -> Option<&str> {
        self.attr("xmlns")
    }

    /// The first child with this local name.
    pub fn child(&self, local: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.local() == local)
    }

    /// The first child with this local name and `xmlns`.
    pub fn child_ns(&self, local: &str, ns: &str) -> Option<&Element> {
        self.children
            .iter()
            .find(|c| c.local() == local && c.ns() == Some(ns))
    }
}

/// What the stream yielded.
#[derive(Debug, PartialEq, Eq)]
pub enum Item {
    /// The server's `<stream:stream ...>` opening tag (attributes only).
    StreamOpen(Element),
    /// A complete top-level element.
    Element(Element),
    /// `</stream:stream>`: the server closed the stream.
    StreamClose,
}

/// Takes the next complete item from the front of `buf`, removing the bytes
/// it used (and any whitespace, declarations or comments before it).
/// `Ok(None)` = more bytes are needed. `Err` = the bytes can never become
/// XML (the caller drops the connection).
pub fn next_item(buf: &mut Vec<u8>) -> Result<Option<Item>, String> {
    // The stream's end tag has no start tag in this buffer: quick-xml would
    // call it a mismatch, so it is recognised here.
    let start = buf
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(buf.len());
    if buf[start..].starts_with(b"</") {
        let Some(len) = buf[start..].iter().position(|&b| b == b'>') else {
            return Ok(None);
        };
        let name = String::from_utf8_lossy(&buf[start + 2..start + len]).into_owned();
        buf.drain(..start + len + 1);
        return closing(name.trim());
    }
    let mut reader = Reader::from_reader(&buf[..]);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    loop {
        let event = match reader.read_event() {
            Ok(e) => e,
            // Most often a tag cut by the end of the buffer: wait for more.
            Err(_) => return Ok(None),
        };
        let consumed = reader.buffer_position() as usize;
        let done = match event {
            Event::Eof => {
                if stack.is_empty() {
                    // Only whitespace/declarations so far: drop them.
                    buf.drain(..consumed.min(buf.len()));
                }
                return Ok(None);
            }
            Event::Start(start) => {
                let el = open(&start)?;
                if stack.is_empty() && el.local() == "stream" {
                    buf.drain(..consumed);
                    return Ok(Some(Item::StreamOpen(el)));
                }
                stack.push(el);
                None
            }
            Event::Empty(start) => Some(open(&start)?),
            Event::End(end) => match stack.pop() {
                Some(el) => Some(el),
                None => {
                    let name = end.name().as_ref().to_string();
                    buf.drain(..consumed);
                    return closing(&name);
                }
            },
            Event::Text(t) => {
                let text = t.xml10_content();
                match stack.last_mut() {
                    Some(el) => el.text.push_str(&text),
                    None if !text.chars().all(|c| c.is_ascii_whitespace()) => {
                        return Err("text outside of any element".into());
                    }
                    None => {}
                }
                None
            }
            Event::CData(t) => {
                if let Some(el) = stack.last_mut() {
                    el.text.push_str(&t.xml10_content());
                }
                None
            }
            Event::GeneralRef(r) => {
                let Some(el) = stack.last_mut() else {
                    return Err("entity outside of any element".into());
                };
                match r.resolve_char_ref() {
                    Ok(Some(c)) => el.text.push(c),
                    Ok(None) => {
                        let name = r.xml10_content();
                        let s = resolve_predefined_entity(&name)
                            .ok_or_else(|| format!("unknown entity &{name};"))?;
                        el.text.push_str(s);
                    }
                    Err(e) => return Err(format!("bad character reference: {e}")),
                }
                None
            }
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => None,
        };
        if let Some(el) = done {
            match stack.last_mut() {
                Some(parent) => parent.children.push(el),
                None => {
                    buf.drain(..consumed);
                    return Ok(Some(Item::Element(el)));
                }
            }
        }
    }
}

/// A closing tag without its start: the server ending the stream, or an error.
fn closing(name: &str) -> Result<Option<Item>, String> {
    if name.rsplit(':').next() == Some("stream") {
        Ok(Some(Item::StreamClose))
    } else {
        Err(format!("unexpected closing tag </{name}>"))
    }
}

fn open(start: &BytesStart<'_>) -> Result<Element, String> {
    let name = start.name().as_ref().to_string();
    let mut attrs = Vec::new();
    for a in start.attributes() {
        let a: Attribute<'_> = a.map_err(|e| format!("bad attribute in <{name}>: {e}"))?;
        let key = a.key.as_ref().to_string();
        let value = a
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| format!("bad attribute value in <{name}>: {e}"))?
            .into_owned();
        attrs.push((key, value));
    }
    Ok(Element {
        name,
        attrs,
        children: Vec::new(),
        text: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_drops_what_xml_forbids() {
        assert_eq!(
            escape(r#"</body><message to='x'>&"#),
            "&lt;/body&gt;&lt;message to=&apos;x&apos;&gt;&amp;"
        );
        assert_eq!(escape("a\"b"), "a&quot;b");
        assert_eq!(
            escape("nul\0bell\u{7}esc\u{1b}\u{fffe}\u{ffff}ok"),
            "nulbellescok"
        );
        assert_eq!(escape("l1\r\nl2\rl3\tx"), "l1\nl2\nl3\tx");
        assert_eq!(escape("ünï 😀 \u{85}"), "ünï 😀 \u{85}");
    }

    #[test]
    fn cuts_a_stream_into_elements_across_reads() {
        let wire = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='s1' from='localhost' version='1.0'>\
            <stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism></mechanisms></stream:features> \n\
            <message from='r@c/n' type='groupchat'><body>a &amp; b &lt;c&gt; &#x263A;&#65;<![CDATA[<raw>]]></body></message>\
            <presence from='r@c/n'/></stream:stream>";
        // Fed one byte at a time, the same items come out.
        let mut buf = Vec::new();
        let mut items = Vec::new();
        for b in wire.bytes() {
            buf.push(b);
            while let Some(item) = next_item(&mut buf).unwrap() {
                items.push(item);
            }
        }
        assert!(buf.iter().all(u8::is_ascii_whitespace), "{buf:?}");
        assert_eq!(items.len(), 5, "{items:#?}");
        let Item::StreamOpen(s) = &items[0] else {
            panic!()
        };
        assert_eq!(s.attr("id"), Some("s1"));
        let Item::Element(f) = &items[1] else {
            panic!()
        };
        assert_eq!(f.local(), "features");
        let mechs = f
            .child_ns("mechanisms", "urn:ietf:params:xml:ns:xmpp-sasl")
            .unwrap();
        let names: Vec<_> = mechs.children.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(names, ["SCRAM-SHA-1", "PLAIN"]);
        let Item::Element(m) = &items[2] else {
            panic!()
        };
        assert_eq!(m.child("body").unwrap().text, "a & b <c> ☺A<raw>");
        assert_eq!(m.attr("type"), Some("groupchat"));
        let Item::Element(p) = &items[3] else {
            panic!()
        };
        assert_eq!(p.local(), "presence");
        assert_eq!(items[4], Item::StreamClose);
    }

    #[test]
    fn escaped_text_parses_back_to_the_original() {
        let hostile = "</body><message to='victim@x'><body>pwned</body></message><body>&amp; \"q\"";
        let mut buf = format!("<message><body>{}</body></message>", escape(hostile)).into_bytes();
        let Some(Item::Element(m)) = next_item(&mut buf).unwrap() else {
            panic!()
        };
        assert_eq!(m.children.len(), 1);
        assert_eq!(m.child("body").unwrap().text, hostile);
    }

    #[test]
    fn rejects_garbage_outside_elements() {
        let mut buf = b"<stream:stream xmlns:stream='s'>hello".to_vec();
        assert!(matches!(next_item(&mut buf), Ok(Some(Item::StreamOpen(_)))));
        assert!(next_item(&mut buf).is_err());
    }
}
