//! Route + render at scale: 10,000 chats x 10 rules, one core.
//!
//! `route` measures the matcher alone; `route_render` routes and renders
//! every matched chat's message (the issue-7 target); `route_render_cards`
//! the same plus the event's card (built once per event, as render does);
//! `decide` the whole offline path for one event (route, render, build the
//! exact request: Slack Block Kit cards, the default), `decide_text` the
//! same with `style = "text"` (what the cards cost per delivery). The generated forum has 1,000 top categories x 10 subcategories
//! and 5,000 tags; each chat watches one subcategory, follows another, watches
//! tags inside a category, mutes a noisy tag, and has group rules, so a
//! typical event reaches a handful of chats (printed at start).
//! Results and the exact command: BENCHMARKS.md.

use std::collections::HashMap;
use std::fmt::Write;
use std::hint::black_box;
use std::path::Path;

// The allocator the binary runs with (src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use discourse_relay::config::MissingEnv;
use discourse_relay::ingest::{Category, Event, Tag};
use discourse_relay::pipeline::{Pipeline, load_str};
use discourse_relay::render::RenderContext;

fn config(chats: usize, style: &str) -> String {
    let mut s = String::from(
        "[discourse]\nurl = \"https://forum.example.org\"\n\n[providers.slack]\nkind = \"slack\"\ntoken = \"${SLACK_BOT_TOKEN}\"\n\n",
    );
    for k in 0..chats {
        let cat = |n: usize| format!("cat{}/sub{}", n % 1000, (n / 1000) % 10);
        let _ = write!(
            s,
            "[[chat]]\nname = \"chat-{k}\"\nprovider = \"slack\"\nchannel = \"C{k:06}\"\nstyle = \"{style}\"\n\
subscribe = [\"c/{}\", \"t/tag{}\"]\n\
[[chat.rule]]\nfilter = \"follow\"\ncategory = \"{}\"\n\
[[chat.rule]]\ncategory = \"cat{}/**\"\ntags = [\"tag{}\", \"release-{}-*\"]\n\
[[chat.rule]]\nfilter = \"thread\"\ncategory = \"{}\"\ntags = [\"tag{}\"]\n\
[[chat.rule]]\nfilter = \"mute\"\ntags = [\"noisy{}\"]\n\
[[chat.rule]]\nfilter = \"mute\"\ncategory = \"{}\"\ntags = [\"spam\"]\n\
[[chat.rule]]\ntype = \"group_mention\"\ngroup = \"group{}\"\n\
[[chat.rule]]\ntype = \"group_message\"\ngroup = \"group{}\"\n\
[[chat.rule]]\nfilter = \"follow\"\ntags = [\"announce{}\"]\n\n",
            cat(k),
            (k * 7) % 5000,
            cat(k * 3 + 1),
            k % 1000,
            (k * 11) % 5000,
            k % 50,
            cat(k * 5 + 2),
            (k * 13) % 5000,
            k % 100,
            cat(k),
            k % 500,
            k % 500,
            k % 300,
        );
    }
    s
}

fn events() -> Vec<Event> {
    let mut out = Vec::new();
    for i in 0..64usize {
        let mut e = Event::sample("https://forum.example.org");
        let path = format!("cat{}/sub{}", (i * 37) % 1000, i % 10);
        e.topic.category = Some(Category {
            id: i as u64,
            slug: format!("sub{}", i % 10),
            path,
            name: "Sub".into(),
            restricted: false,
            unresolved: false,
            color: Some("0088CC".into()),
        });
        e.topic.tags = vec![
            Tag {
                hidden: false,
                name: format!("tag{}", (i * 101) % 5000),
                slug: format!("tag{}", (i * 101) % 5000),
            },
            Tag {
                hidden: false,
                name: "release-1-2".into(),
                slug: "release-1-2".into(),
            },
        ];
        if let Some(p) = e.post.as_mut() {
            p.number = if i % 4 == 0 { 1 } else { 2 + i as u64 };
            p.mentions = if i % 8 == 0 {
                vec![format!("group{}", i % 500)]
            } else {
                vec![]
            };
        }
        out.push(e);
    }
    out
}

fn pipeline(chats: usize, style: &str) -> Pipeline {
    let text = config(chats, style);
    let env: HashMap<String, String> =
        [("SLACK_BOT_TOKEN".to_string(), "xoxb-bench".to_string())].into();
    match load_str(Path::new("bench.toml"), &text, &env, MissingEnv::Error) {
        Ok((p, _)) => p,
        Err(d) => panic!("bench config invalid:\n{d}"),
    }
}

fn bench(c: &mut Criterion) {
    let chats: usize = std::env::var("BENCH_CHATS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let p = pipeline(chats, "card");
    let text = pipeline(chats, "text");
    let events = events();
    let fanout: usize = events.iter().map(|e| p.decide(e).deliveries.len()).sum();
    eprintln!(
        "{chats} chats x 10 rules; {} events; mean fan-out {:.2} chats/event",
        events.len(),
        fanout as f64 / events.len() as f64
    );

    let mut g = c.benchmark_group(format!("{chats}_chats"));
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("route", |b| {
        b.iter(|| {
            for e in &events {
                black_box(p.route(black_box(e)));
            }
        })
    });
    g.bench_function("route_render", |b| {
        b.iter(|| {
            for e in &events {
                black_box(p.render_routed(black_box(e)).ok());
            }
        })
    });
    g.bench_function("route_render_cards", |b| {
        b.iter(|| {
            for e in &events {
                let cx = RenderContext::new(black_box(e));
                black_box(cx.card());
                black_box(p.render_routed(e).ok());
            }
        })
    });
    g.bench_function("decide", |b| {
        b.iter(|| {
            for e in &events {
                black_box(p.decide(black_box(e)));
            }
        })
    });
    g.bench_function("decide_text", |b| {
        b.iter(|| {
            for e in &events {
                black_box(text.decide(black_box(e)));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
