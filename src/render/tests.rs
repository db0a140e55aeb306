use super::*;

const FORUM: &str = "https://forum.example.org";
const POST_URL: &str = "https://forum.example.org/t/how-do-i-share-state-between-async-tasks/101/1";
const ZW: &str = "\u{200B}";
const ALL: [Dialect; 6] = [
    Dialect::SlackMrkdwn,
    Dialect::Markdown,
    Dialect::RocketChat,
    Dialect::Html,
    Dialect::Plain,
    Dialect::Json,
];

// From shared/discourse/webhooks/post_created_hostile_content.json.
const HOSTILE_TITLE: &str =
    "<!channel> @everyone <script>alert(1)</script> *bold* [link](javascript:x) & </b>";
const HOSTILE_RAW: &str = "<!channel> @everyone <script>alert(1)</script> *bold* [link](javascript:x) & </b>\n\n\
    @here @room <@U024BE7LH> <https://evil.example|click me> ~~strike~~ `code` ||spoiler||";
const HOSTILE_COOKED: &str = "<p>&lt;!channel&gt; <span class=\"mention\">@everyone</span> \
    &lt;script&gt;alert(1)&lt;/script&gt; <em>bold</em> [link](javascript:x) &amp; &lt;/b&gt;</p>\n\
    <p><span class=\"mention\">@here</span> <span class=\"mention\">@room</span> &lt;@U024BE7LH&gt; \
    &lt;https://evil.example|click me&gt; <s>strike</s> <code>code</code> ||spoiler||</p>";

fn hostile() -> Event {
    let mut event = Event::sample(FORUM);
    event.topic.title = HOSTILE_TITLE.into();
    if let Some(post) = event.post.as_mut() {
        post.raw = HOSTILE_RAW.into();
        post.cooked = HOSTILE_COOKED.into();
        post.name = "Mallory <b>Mischief</b> @everyone".into();
        post.username = "mallory".into();
    }
    event
}

/// A topic event: no post, no category, no tags.
fn bare_topic() -> Event {
    let mut event = Event::sample(FORUM);
    event.kind = EventKind::TopicCreated;
    event.post = None;
    event.topic.category = None;
    event.topic.tags.clear();
    event
}

fn render(source: &str, dialect: Dialect, event: &Event) -> String {
    let mut renderer = Renderer::new();
    renderer.register("t", source, dialect).unwrap();
    renderer.render("t", dialect, event, "chat").unwrap()
}

fn problem(source: &str) -> TemplateProblem {
    Renderer::new()
        .register("t", source, Dialect::Markdown)
        .unwrap_err()
}

/// Whether `c` occurs without a backslash escaping it.
fn has_unescaped(s: &str, c: char) -> bool {
    let mut backslashes = 0;
    for ch in s.chars() {
        if ch == c && backslashes % 2 == 0 {
            return true;
        }
        backslashes = if ch == '\\' { backslashes + 1 } else { 0 };
    }
    false
}

fn assert_markdown_inert(out: &str) {
    for c in ['*', '[', ']', '<', '>', '_', '~', '`', '|'] {
        assert!(!has_unescaped(out, c), "unescaped {c:?} in {out:?}");
    }
    for mention in ["@everyone", "@here", "@room", "@channel", "@all"] {
        assert!(!out.contains(mention), "{mention} left intact in {out:?}");
    }
}

#[test]
fn slack_escapes_only_amp_lt_gt() {
    let out = render(
        "{{topic.title}}|{{post.raw}}",
        Dialect::SlackMrkdwn,
        &hostile(),
    );
    assert_eq!(
        out,
        "&lt;!channel&gt; @everyone &lt;script&gt;alert(1)&lt;/script&gt; *bold* [link](javascript:x) &amp; &lt;/b&gt;|\
         &lt;!channel&gt; @everyone &lt;script&gt;alert(1)&lt;/script&gt; *bold* [link](javascript:x) &amp; &lt;/b&gt;\n\n\
         @here @room &lt;@U024BE7LH&gt; &lt;https://evil.example|click me&gt; ~~strike~~ `code` ||spoiler||"
    );
}

#[test]
fn html_escapes_five_characters_and_breaks_mentions() {
    let out = render("{{topic.title}}|{{post.raw}}", Dialect::Html, &hostile());
    assert_eq!(
        out,
        "&lt;!channel&gt; @\u{200b}everyone &lt;script&gt;alert(1)&lt;/script&gt; *bold* [link](javascript:x) &amp; &lt;/b&gt;|\
         &lt;!channel&gt; @\u{200b}everyone &lt;script&gt;alert(1)&lt;/script&gt; *bold* [link](javascript:x) &amp; &lt;/b&gt;\n\n\
         @\u{200b}here @\u{200b}room &lt;@\u{200b}U024BE7LH&gt; &lt;https://evil.example|click me&gt; ~~strike~~ `code` ||spoiler||"
    );
    assert_eq!(
        escape::escape(Dialect::Html, r#"a "b" 'c'"#),
        "a &quot;b&quot; &#39;c&#39;"
    );
}

#[test]
fn markdown_escapes_formatting_and_breaks_mentions() {
    let title = render("{{topic.title}}", Dialect::Markdown, &hostile());
    assert_eq!(
        title,
        format!(
            "\\<!channel\\> @{ZW}everyone \\<script\\>alert(1)\\</script\\> \\*bold\\* \\[link\\](javascript:x) & \\</b\\>"
        )
    );
    let raw = render("{{post.raw}}", Dialect::Markdown, &hostile());
    assert_markdown_inert(&raw);
    assert!(raw.ends_with(&format!(
        "@{ZW}here @{ZW}room \\<@{ZW}U024BE7LH\\> \\<https://evil.example\\|click me\\> \
         \\~\\~strike\\~\\~ \\`code\\` \\|\\|spoiler\\|\\|"
    )));
}

#[test]
fn markdown_escapes_line_starts_and_keeps_urls_and_emails() {
    let md = |s: &str| escape::escape(Dialect::Markdown, s);
    assert_eq!(
        md("# h\n- item\n  + x\n12. n\n> q\n-# small"),
        "\\# h\n\\- item\n  \\+ x\n12\\. n\n\\> q\n\\-# small"
    );
    assert_eq!(md("a - b # c 1. d"), "a - b # c 1. d");
    for url in [
        "https://forum.example.org/t/some-slug/101/3",
        "https://en.wikipedia.org/wiki/Foo_bar?x=1&y=~2#frag",
        "see http://example.org/a_b_c.",
    ] {
        assert_eq!(md(url), url);
    }
    assert_eq!(md("write to bob@example.com"), "write to bob@example.com");
    assert_eq!(md("Q&A: $5 or $$x$$"), "Q&A: $5 or \\$\\$x\\$\\$");
    assert_eq!(md("@alice and @ALL"), format!("@{ZW}alice and @{ZW}ALL"));
    assert_eq!(md("x@everyone"), format!("x@{ZW}everyone"));
    // Zulip wildcard and silent mentions.
    assert_eq!(
        md("@**all** @_**Bob**"),
        format!("@{ZW}\\*\\*all\\*\\* @{ZW}\\_\\*\\*Bob\\*\\*")
    );
    // A URL ends where markup could start.
    assert_eq!(
        md("https://x.example/[a](b)"),
        "https://x.example/\\[a\\](b)"
    );
}

#[test]
fn plain_removes_control_characters_in_every_dialect() {
    let mut event = Event::sample(FORUM);
    event.topic.title = "hi\r\nPRIVMSG #ops :pwned\u{1}\u{7f}\u{9b}\tend".into();
    for dialect in ALL {
        let source = if dialect == Dialect::Json {
            r#"["{{topic.title}}"]"#
        } else {
            "{{topic.title}}"
        };
        let out = render(source, dialect, &event);
        assert!(
            !out.contains(['\r', '\u{1}', '\u{7f}', '\u{9b}']),
            "{dialect:?}: {out:?}"
        );
    }
    assert_eq!(
        render("{{topic.title}}", Dialect::Plain, &event),
        "hi\nPRIVMSG #ops :pwned\tend"
    );
    assert_eq!(
        render("{{topic.title}}", Dialect::Plain, &hostile()),
        HOSTILE_TITLE
    );
}

#[test]
fn json_values_stay_valid_json() {
    let mut event = hostile();
    event.topic.title = "say \"hi\" \\o/ \\u0041\nnext\r\n\u{0}line\u{2028}".into();
    let out = render(
        r#"{"title": "{{topic.title}}", "raw": "{{post.raw}}", "name": "{{post.name}}", "id": {{topic.id}}}"#,
        Dialect::Json,
        &event,
    );
    let value: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        value["title"],
        "say \"hi\" \\o/ \\u0041\nnext\nline\u{2028}"
    );
    assert_eq!(value["raw"], HOSTILE_RAW);
    assert_eq!(value["id"], 101);
}

#[test]
fn link_per_dialect_with_hostile_title() {
    let link = "{{link post.url topic.title}}";
    assert_eq!(
        render(link, Dialect::SlackMrkdwn, &hostile()),
        format!(
            "<{POST_URL}|&lt;!channel&gt; @everyone &lt;script&gt;alert(1)&lt;/script&gt; *bold* \
             [link](javascript:x) &amp; &lt;/b&gt;>"
        )
    );
    let md = render(link, Dialect::Markdown, &hostile());
    assert_eq!(
        md,
        format!(
            "[\\<!channel\\> @{ZW}everyone \\<script\\>alert(1)\\</script\\> \\*bold\\* \\[link\\](javascript:x) \
             & \\</b\\>]({POST_URL})"
        )
    );
    assert_eq!(
        render(link, Dialect::Html, &hostile()),
        format!(
            "<a href=\"{POST_URL}\">&lt;!channel&gt; @{ZW}everyone &lt;script&gt;alert(1)&lt;/script&gt; *bold* \
             [link](javascript:x) &amp; &lt;/b&gt;</a>"
        )
    );
    assert_eq!(
        render(link, Dialect::Plain, &hostile()),
        format!("{HOSTILE_TITLE} ({POST_URL})")
    );
    let json = render(
        &format!("{{\"text\": \"{link}\"}}"),
        Dialect::Json,
        &hostile(),
    );
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["text"], format!("{HOSTILE_TITLE} ({POST_URL})"));
}

#[test]
fn link_cleans_urls_and_refuses_other_schemes() {
    let event = Event::sample(FORUM);
    assert_eq!(
        render(
            r#"{{link "https://x.example/a|b>c&d=1" "t"}}"#,
            Dialect::SlackMrkdwn,
            &event
        ),
        "<https://x.example/a%7Cb%3Ec&amp;d=1|t>"
    );
    assert_eq!(
        render(
            r#"{{link "https://x.example/a_(b) c" "t"}}"#,
            Dialect::Markdown,
            &event
        ),
        "[t](https://x.example/a_%28b%29%20c)"
    );
    assert_eq!(
        render(
            r#"{{link "https://x.example/?a=1&b=\"2\"" "t"}}"#,
            Dialect::Html,
            &event
        ),
        "<a href=\"https://x.example/?a=1&amp;b=&quot;2&quot;\">t</a>"
    );
    assert_eq!(
        render(
            r#"{{link "javascript:alert(1)" "<b>x</b>"}}"#,
            Dialect::Html,
            &event
        ),
        "&lt;b&gt;x&lt;/b&gt; (javascript:alert(1))"
    );
    assert_eq!(
        render(
            r#"{{link "javascript:alert(1)" "x"}}"#,
            Dialect::SlackMrkdwn,
            &event
        ),
        "x (javascript:alert(1))"
    );
    assert_eq!(
        render(
            r#"{{link "https://a.example" ""}}"#,
            Dialect::Markdown,
            &event
        ),
        "[https://a.example](https://a.example)"
    );
}

#[test]
fn bold_join_truncate_and_date() {
    let mut event = Event::sample(FORUM);
    event.topic.title = "  a*b <c>  ".into();
    let bold = "{{bold topic.title}}";
    assert_eq!(
        render(bold, Dialect::SlackMrkdwn, &event),
        "*a*b &lt;c&gt;*"
    );
    assert_eq!(render(bold, Dialect::Markdown, &event), "**a\\*b \\<c\\>**");
    assert_eq!(render(bold, Dialect::Html, &event), "<b>a*b &lt;c&gt;</b>");
    assert_eq!(render(bold, Dialect::Plain, &event), "a*b <c>");

    event.topic.tags.push(crate::ingest::Tag {
        hidden: false,
        name: "a|b".into(),
        slug: "a-b".into(),
    });
    assert_eq!(
        render(r#"{{join topic.tags " | "}}"#, Dialect::Markdown, &event),
        "async \\| a\\|b"
    );
    assert_eq!(
        render(r#"["{{join topic.tags "\n"}}"]"#, Dialect::Json, &event),
        r#"["async\na|b"]"#
    );
    assert_eq!(
        render("{{join topic.tags}}", Dialect::Html, &event),
        "async, a|b"
    );
    // A text helper composes: its result is escaped once by the outer helper.
    assert_eq!(
        render("{{bold (truncate topic.title 6)}}", Dialect::Html, &event),
        "<b>a*b…</b>"
    );

    let sample = Event::sample(FORUM);
    assert_eq!(
        render("{{truncate topic.title 14}}", Dialect::Plain, &sample),
        "How do I…"
    );
    assert_eq!(
        render("{{date post.created_at}}", Dialect::Plain, &sample),
        "2026-03-10 09:00 UTC"
    );
    assert_eq!(
        render(
            r#"{{date post.created_at "%d %b %Y, %H:%M:%S"}}"#,
            Dialect::Plain,
            &sample
        ),
        "10 Mar 2026, 09:00:12"
    );
}

#[test]
fn excerpt_decodes_entities_before_escaping_and_cuts_at_words() {
    let mut event = Event::sample(FORUM);
    if let Some(post) = event.post.as_mut() {
        post.cooked = "<p>Use &lt;b&gt; &amp; &quot;quotes&quot; <img src=\"/e.png\" class=\"emoji\" alt=\":smile:\"></p>\
                       <aside class=\"quote\"><blockquote><p>quoted</p></blockquote></aside>"
            .into();
    }
    assert_eq!(
        render("{{post.excerpt}}", Dialect::Html, &event),
        "Use &lt;b&gt; &amp; &quot;quotes&quot; :smile:"
    );
    assert_eq!(
        render("{{post.excerpt}}", Dialect::SlackMrkdwn, &event),
        "Use &lt;b&gt; &amp; \"quotes\" :smile:"
    );
    assert_eq!(
        render("{{post.excerpt}}", Dialect::Markdown, &event),
        "Use \\<b\\> & \"quotes\" :smile:"
    );
    assert_eq!(
        render("{{excerpt post.cooked 12}}", Dialect::Plain, &event),
        "Use <b> &…"
    );

    let words: Vec<String> = (0..100).map(|i| format!("word{i}")).collect();
    let text = words.join(" ");
    if let Some(post) = event.post.as_mut() {
        post.cooked = format!("<p>{}</p>", words.join("\n  "));
    }
    let excerpt = render("{{post.excerpt}}", Dialect::Plain, &event);
    assert!(excerpt.chars().count() <= 300, "{excerpt}");
    let kept = excerpt.strip_suffix('…').unwrap();
    assert!(
        text.starts_with(kept) && text[kept.len()..].starts_with(' '),
        "{excerpt}"
    );
    assert!(kept.len() > 280);

    assert_eq!(
        render("{{post.excerpt}}", Dialect::Plain, &hostile()),
        "<!channel> @everyone <script>alert(1)</script> bold [link](javascript:x) & </b> \
         @here @room <@U024BE7LH> <https://evil.example|click me> strike code ||spoiler||"
    );
    let hostile_excerpt = render("{{post.excerpt}}", Dialect::SlackMrkdwn, &hostile());
    assert!(!hostile_excerpt.contains('<') && !hostile_excerpt.contains('>'));
    assert!(hostile_excerpt.starts_with("&lt;!channel&gt; @everyone &lt;script&gt;"));
    assert_markdown_inert(&render("{{post.excerpt}}", Dialect::Markdown, &hostile()));
}

#[test]
fn register_time_problems_are_positioned() {
    let p = problem("Title: {{topic.title}}\nBy: {{post.username}}\n  {{post.excerp}}\n");
    assert_eq!((p.line, p.col), (Some(3), Some(3)));
    assert!(
        p.message.contains("unknown variable `post.excerp`")
            && p.message.contains("`post.excerpt`"),
        "{p}"
    );

    let p = problem("A\nB\n{{#if post}}\n   {{shout topic.title}}{{/if}}");
    assert_eq!((p.line, p.col), (Some(4), Some(4)));
    assert!(p.message.contains("unknown helper `shout`"), "{p}");

    let p = problem("A\n{{#each topic.tags}}\n  x {{{post.raw}}}\n{{/each}}");
    assert_eq!((p.line, p.col), (Some(3), Some(5)));
    assert!(
        p.message
            .contains("`{{{...}}}` would insert post content unescaped; use `{{...}}`"),
        "{p}"
    );
    assert_eq!(problem("A {{&post.raw}}").col, Some(3));
    let p = problem(
        "{{#if post}}a{{else if topic}}\n{{{{raw}}}}{{{x}}}{{{{/raw}}}} {{{post.raw}}}{{/if}}",
    );
    assert_eq!((p.line, p.col), (Some(2), Some(32)));

    let p = problem("{{#if post}}\n  x\n{{/each}}");
    assert_eq!((p.line, p.col), (Some(3), Some(1)));
    assert!(p.message.contains("\"if\" was opened"), "{p}");
    let p = problem("A\nB {{topic.title\nC");
    assert_eq!(p.line, Some(3));
    assert!(p.message.contains("invalid Handlebars syntax"), "{p}");

    let p = problem("x\n {{truncate topic.title \"ten\"}}");
    assert_eq!((p.line, p.col), (Some(2), Some(2)));
    assert!(p.message.contains("{{truncate VALUE max}}"), "{p}");
    assert!(
        problem("{{date post.created_at \"%!\"}}")
            .message
            .contains("bad date format")
    );
    assert!(
        problem("{{date topic.title}}")
            .message
            .contains("not an RFC 3339 timestamp")
    );
    assert!(problem("{{> other}}").message.contains("partials"));
}

#[test]
fn json_templates_must_produce_json() {
    let mut renderer = Renderer::new();
    let p = renderer
        .register("t", r#"{"title": {{topic.title}} }"#, Dialect::Json)
        .unwrap_err();
    assert!(p.message.contains("does not produce valid JSON"), "{p}");
    // The branch only a topic event takes is checked too.
    let p = renderer
        .register(
            "t",
            r#"{"post": {{#if post}}1{{else}}none{{/if}} }"#,
            Dialect::Json,
        )
        .unwrap_err();
    assert!(p.message.contains("topic event"), "{p}");
    // A template only meant for post events may leave `post` unguarded.
    renderer
        .register("t", r#"{"url": "{{post.url}}"}"#, Dialect::Json)
        .unwrap();
}

#[test]
fn default_templates_render_for_every_dialect() {
    let mut renderer = Renderer::new();
    for dialect in ALL {
        renderer
            .register("default", default_template(dialect), dialect)
            .unwrap();
        for event in [Event::sample(FORUM), hostile(), bare_topic()] {
            let out = renderer.render("default", dialect, &event, "chat").unwrap();
            assert!(!out.is_empty());
            if dialect == Dialect::Json {
                serde_json::from_str::<serde_json::Value>(&out).unwrap();
            }
        }
    }
    let sample = Event::sample(FORUM);
    let render_default = |dialect| {
        renderer
            .render("default", dialect, &sample, "chat")
            .unwrap()
    };
    assert_eq!(
        render_default(Dialect::SlackMrkdwn),
        format!(
            "*<{POST_URL}|How do I share state between async tasks?>* by Bob Ramirez in support/rust [async]\n\
             I have a shared map and several tasks."
        )
    );
    assert_eq!(
        render_default(Dialect::Markdown),
        format!(
            "**[How do I share state between async tasks?]({POST_URL})** by Bob Ramirez in support/rust [async]\n\
             > I have a shared map and several tasks."
        )
    );
    assert_eq!(
        render_default(Dialect::Html),
        format!(
            "<b><a href=\"{POST_URL}\">How do I share state between async tasks?</a></b> by Bob Ramirez in \
             support/rust [async]\n<blockquote>I have a shared map and several tasks.</blockquote>"
        )
    );
    assert_eq!(
        renderer
            .render("default", Dialect::Plain, &bare_topic(), "chat")
            .unwrap(),
        "How do I share state between async tasks? \
         (https://forum.example.org/t/how-do-i-share-state-between-async-tasks/101)"
    );
    let json: serde_json::Value = serde_json::from_str(&render_default(Dialect::Json)).unwrap();
    assert_eq!(json["topic"]["tags"], serde_json::json!(["async"]));
    assert_eq!(json["topic"]["category"], "support/rust");
    assert_eq!(json["post"]["url"], POST_URL);
    assert_eq!(json["chat"], "chat");

    let hostile_md = renderer
        .render("default", Dialect::Markdown, &hostile(), "chat")
        .unwrap();
    for mention in ["@everyone", "@here", "@room"] {
        assert!(!hostile_md.contains(mention), "{hostile_md}");
    }
}

#[test]
fn context_has_every_key() {
    let value = context(&bare_topic(), "room");
    assert_eq!(value["event"], "topic_created");
    assert_eq!(value["forum"]["url"], FORUM);
    assert_eq!(value["chat"]["name"], "room");
    assert!(value["post"].is_null() && value["topic"]["category"].is_null());
    let value = context(&Event::sample(FORUM), "room");
    let post = value["post"].as_object().unwrap();
    for key in [
        "id",
        "number",
        "username",
        "name",
        "excerpt",
        "raw",
        "cooked",
        "url",
        "is_first",
        "created_at",
        "action_code",
    ] {
        assert!(post.contains_key(key), "post.{key}");
    }
    assert_eq!(
        value["post"]["excerpt"],
        "I have a shared map and several tasks."
    );
    assert_eq!(value["topic"]["category"]["path"], "support/rust");
}

#[test]
fn render_errors_never_panic() {
    let mut renderer = Renderer::new();
    renderer
        .register("t", "{{post.url}}", Dialect::SlackMrkdwn)
        .unwrap();
    let e = renderer
        .render("t", Dialect::SlackMrkdwn, &bare_topic(), "chat")
        .unwrap_err();
    assert!(e.message.contains("post.url"), "{e}");
    assert!(
        renderer
            .render("t", Dialect::Html, &bare_topic(), "chat")
            .is_err()
    );
    assert!(
        renderer
            .render("missing", Dialect::SlackMrkdwn, &bare_topic(), "chat")
            .is_err()
    );
}

#[test]
fn one_name_many_dialects_and_failed_reregistration_keeps_the_old() {
    let mut renderer = Renderer::new();
    renderer
        .register("t", "s {{topic.id}}", Dialect::SlackMrkdwn)
        .unwrap();
    renderer
        .register("t", "h {{topic.id}}", Dialect::Html)
        .unwrap();
    assert!(renderer.register("t", "{{nope}}", Dialect::Html).is_err());
    let sample = Event::sample(FORUM);
    assert_eq!(
        renderer
            .render("t", Dialect::SlackMrkdwn, &sample, "c")
            .unwrap(),
        "s 101"
    );
    assert_eq!(
        renderer.render("t", Dialect::Html, &sample, "c").unwrap(),
        "h 101"
    );
}

/// Events that take every branch a template can: no post, no category, no
/// tags, hostile text, a PM, a small action, an empty name and excerpt,
/// dates a helper cannot read.
fn plan_events() -> Vec<Event> {
    let mut events = vec![Event::sample(FORUM), bare_topic(), hostile()];
    let mut e = Event::sample(FORUM);
    e.topic.private_message = true;
    e.topic.id = 0;
    e.topic.tags = ["a", "b <c>", "@here"]
        .iter()
        .map(|t| crate::ingest::Tag {
            hidden: false,
            name: t.to_string(),
            slug: t.to_string(),
        })
        .collect();
    if let Some(p) = e.post.as_mut() {
        p.number = 5;
        p.name = String::new();
        p.action_code = Some("category_changed".into());
        p.cooked = String::new();
        p.created_at = String::new();
    }
    events.push(e);
    let mut e = Event::sample(FORUM);
    e.kind = EventKind::PostEdited;
    if let Some(p) = e.post.as_mut() {
        p.created_at = "yesterday".into();
        p.url = "javascript:alert(1)".into();
    }
    events.push(e);
    events
}

const PLAN_TEMPLATES: &[&str] = &[
    "{{topic.title}} {{post.username}}",
    "{{#if post}}{{post.name}}{{else}}topic{{/if}}",
    "{{#unless topic.category}}none{{else}}{{topic.category.name}} {{topic.category.id}} {{topic.category.slug}} {{topic.category.path}}{{/unless}}",
    "{{#if post.action_code}}{{post.action_code}}{{/if}} {{post.is_first}} {{topic.private_message}} {{post.number}} {{topic.id}} {{post.id}}",
    "{{bold topic.title}} {{link topic.url}} {{link post.url \"read it\"}} {{join topic.tags}} {{join topic.tags \" · \"}}",
    "{{truncate topic.title 10}} {{excerpt post.cooked 20}} {{excerpt post.raw}} {{date post.created_at}} {{date post.created_at \"%d.%m.%Y\"}}",
    "{{#if topic.tags}}tags{{else if post}}post{{else}}none{{/if}}",
    "{{event}} {{forum.url}} {{chat.name}} {{topic.slug}} {{post.raw}} {{post.cooked}} {{post.excerpt}}",
    "{{~#if post~}}   x   {{~/if~}}\n  {{#if topic.id}}\n  id\n  {{/if}}\n",
    "{{!-- a comment --}}{{! another }}a{{post.action_code}}b",
    "{{topic.tags}} {{link topic.tags}} {{bold post}}",
    "{{date post.id}} {{truncate post.url 5}} {{join topic.tags post.number}}",
    "{{#if post}}{{post.url}}{{/if}}{{#if topic.category}}{{topic.category.path}}{{/if}}",
];

#[test]
fn plans_render_what_handlebars_renders() {
    let mut sources: Vec<(String, Dialect)> = Vec::new();
    for dialect in ALL {
        sources.push((default_template(dialect).to_string(), dialect));
        for t in PLAN_TEMPLATES {
            sources.push((t.to_string(), dialect));
        }
    }
    let events = plan_events();
    let (mut planned, mut total) = (0, 0);
    for (i, (source, dialect)) in sources.iter().enumerate() {
        let mut renderer = Renderer::new();
        let name = format!("t{i}");
        if renderer.register(&name, source, *dialect).is_err() {
            continue;
        }
        // The plan itself, not only the one registration kept (it drops a
        // plan that disagrees on the samples, which would hide a bug here).
        let compiled = handlebars::template::Template::compile(source).unwrap();
        let plan = plan::compile(&compiled);
        assert_eq!(
            plan.is_some(),
            renderer
                .plans
                .get(dialect)
                .is_some_and(|p| p.contains_key(&name)),
            "registration kept a plan exactly when there is one: {source:?}"
        );
        for event in &events {
            let mut ctx = RenderContext::new(event);
            ctx.set_chat("room <x>");
            let expected = renderer
                .render_handlebars(&name, *dialect, &ctx)
                .map_err(|e| e.to_string());
            total += 1;
            if let Some(output) = plan.as_ref().and_then(|p| plan::render(p, *dialect, &ctx)) {
                planned += 1;
                assert_eq!(
                    Ok(output),
                    expected,
                    "{dialect:?} template {source:?} on {event:?}"
                );
            }
            let got = (renderer.render_context(&name, *dialect, &ctx)).map_err(|e| e.to_string());
            assert_eq!(
                got, expected,
                "{dialect:?} template {source:?} on {event:?}"
            );
        }
    }
    // The comparison is not vacuous: most renders went through a plan.
    assert!(planned * 2 > total, "{planned} of {total} renders planned");
}

#[test]
fn the_default_text_templates_have_plans_and_each_does_not() {
    let mut renderer = Renderer::new();
    for dialect in ALL {
        renderer
            .register("default", default_template(dialect), dialect)
            .unwrap();
    }
    renderer
        .register(
            "each",
            "{{#each topic.tags}}{{this}}{{/each}}",
            Dialect::Plain,
        )
        .unwrap();
    let has = |d: Dialect, name: &str| renderer.plans.get(&d).is_some_and(|p| p.contains_key(name));
    for dialect in [
        Dialect::SlackMrkdwn,
        Dialect::Markdown,
        Dialect::Html,
        Dialect::Plain,
    ] {
        assert!(has(dialect, "default"), "{dialect:?}");
    }
    // The JSON default iterates tags with `each`: Handlebars renders it.
    assert!(!has(Dialect::Json, "default"));
    assert!(!has(Dialect::Plain, "each"));
    // And it still renders.
    let out = renderer
        .render("each", Dialect::Plain, &Event::sample(FORUM), "c")
        .unwrap();
    assert_eq!(out, "async");
}

#[test]
fn a_provider_reads_the_context_built_after_a_plan() {
    // The JSON context built after a plan ran carries the same excerpt and chat.
    let event = Event::sample(FORUM);
    let mut renderer = Renderer::new();
    renderer
        .register("d", default_template(Dialect::Plain), Dialect::Plain)
        .unwrap();
    let mut ctx = RenderContext::new(&event);
    ctx.set_chat("one");
    renderer.render_context("d", Dialect::Plain, &ctx).unwrap();
    assert_eq!(ctx.data(), &context(&event, "one"));
    ctx.set_chat("two");
    assert_eq!(ctx.data(), &context(&event, "two"));
}

/// A random template from the pieces plans cover (and some they do not),
/// nested up to `depth` blocks.
fn random_template(rng: &mut fastrand::Rng, depth: u32) -> String {
    const PATHS: &[&str] = &[
        "event",
        "forum.url",
        "chat.name",
        "topic",
        "topic.id",
        "topic.title",
        "topic.slug",
        "topic.url",
        "topic.tags",
        "topic.private_message",
        "topic.category",
        "topic.category.id",
        "topic.category.slug",
        "topic.category.path",
        "topic.category.name",
        "post",
        "post.id",
        "post.number",
        "post.username",
        "post.name",
        "post.excerpt",
        "post.raw",
        "post.cooked",
        "post.url",
        "post.is_first",
        "post.created_at",
        "post.action_code",
        "forum",
        "chat",
    ];
    const LITERALS: &[&str] = &[
        "5",
        "0",
        "300",
        "7",
        "13",
        "22",
        "40",
        "\"%d.%m.%Y\"",
        "\" · \"",
        "\"x\"",
        "true",
        "null",
        "-1",
    ];
    const HELPERS: &[&str] = &["link", "bold", "join", "truncate", "excerpt", "date"];
    const TEXT: &[&str] = &[" ", "\n", "a", "*", "<b>", "&", " @here ", "\n  ", "}"];
    let arg = |rng: &mut fastrand::Rng| match rng.u8(0..4) {
        0 => LITERALS[rng.usize(..LITERALS.len())].to_string(),
        _ => PATHS[rng.usize(..PATHS.len())].to_string(),
    };
    let mut out = String::new();
    for _ in 0..rng.usize(1..6) {
        match rng.u8(0..10) {
            0..=2 => out.push_str(TEXT[rng.usize(..TEXT.len())]),
            3..=4 => out.push_str(&format!("{{{{{}}}}}", PATHS[rng.usize(..PATHS.len())])),
            5..=6 => {
                let helper = HELPERS[rng.usize(..HELPERS.len())];
                // Mostly the arity the helper takes (a path, then a path or
                // literal); now and then any (no plan: Handlebars errs).
                let count = match (rng.u8(0..8), helper) {
                    (0, _) => rng.usize(0..4),
                    (_, "bold") => 1,
                    (_, "truncate") => 2,
                    _ => rng.usize(1..3),
                };
                let mut args: Vec<String> = (0..count).map(|_| arg(rng)).collect();
                if let Some(first) = args.first_mut()
                    && rng.u8(0..4) > 0
                {
                    *first = PATHS[rng.usize(..PATHS.len())].to_string();
                }
                out.push_str(&format!("{{{{{helper} {}}}}}", args.join(" ")));
            }
            _ if depth > 0 => {
                let block = if rng.bool() { "if" } else { "unless" };
                let tilde = if rng.u8(0..4) == 0 { "~" } else { "" };
                let test = PATHS[rng.usize(..PATHS.len())];
                out.push_str(&format!("{{{{{tilde}#{block} {test}{tilde}}}}}"));
                out.push_str(&random_template(rng, depth - 1));
                if rng.bool() {
                    out.push_str("{{else}}");
                    out.push_str(&random_template(rng, depth - 1));
                }
                out.push_str(&format!("{{{{/{block}}}}}"));
            }
            _ => out.push_str("{{! note }}"),
        }
    }
    out
}

#[test]
fn random_templates_render_through_plans_as_through_handlebars() {
    let mut rng = fastrand::Rng::with_seed(7);
    let events = plan_events();
    let mut planned = 0;
    for _ in 0..1500 {
        let source = random_template(&mut rng, 2);
        let dialect = ALL[rng.usize(..ALL.len())];
        let Ok(compiled) = handlebars::template::Template::compile(&source) else {
            continue;
        };
        let Some(plan) = plan::compile(&compiled) else {
            continue;
        };
        let mut renderer = Renderer::new();
        // Registration may refuse (an unknown variable on the sample): the
        // plan is still compared, against Handlebars without the check.
        let _ = renderer.register("t", &source, dialect);
        let mut hb = new_registry(dialect);
        hb.register_template("t", compiled);
        for event in &events {
            let mut ctx = RenderContext::new(event);
            ctx.set_chat("room");
            if let Some(output) = plan::render(&plan, dialect, &ctx) {
                planned += 1;
                let expected = hb.render_with_context("t", ctx.handlebars());
                assert_eq!(
                    Some(output.as_str()),
                    expected.as_deref().ok(),
                    "{dialect:?} {source:?} on {event:?}"
                );
            }
        }
    }
    assert!(planned > 1000, "{planned}");
}
