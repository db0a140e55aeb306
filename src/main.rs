//! The `discourse-relay` command line. Only argument handling and output
//! here; everything else lives in the library.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;

use discourse_relay::config::{MissingEnv, env::ProcessEnv};
use discourse_relay::pipeline::schema;

// mimalloc: glibc's malloc was a third of the instructions of rendering and
// building requests (BENCHMARKS.md). Built with `no_thp`: with transparent
// huge pages its eagerly committed arenas doubled the idle RSS.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use discourse_relay::delivery::send::Sender;
use discourse_relay::http::server;
use discourse_relay::ingest::{
    ForumState, Ingested, WebhookRequest, learn_api_response, normalize,
};
use discourse_relay::pipeline::{self, Pipeline};
use discourse_relay::providers::Outcome;
use discourse_relay::service::ServeOptions;

#[derive(Parser)]
#[command(
    name = "discourse-relay",
    version,
    about = "Discourse forum activity to chat rooms"
)]
struct Cli {
    /// Log format on standard error.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Check config files; prints every problem as FILE:LINE:COL and exits 1 if any is an error.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Show which chats recorded webhook requests would reach, and the exact requests.
    Explain {
        #[arg(long)]
        config: PathBuf,
        /// One JSON object per event, one per line.
        #[arg(long)]
        json: bool,
        /// Webhook request files (headers + raw_body), read in order; API
        /// responses (/site.json, /t/ID.json) among them teach categories and PM groups.
        #[arg(required = true)]
        events: Vec<PathBuf>,
    },
    /// Print the JSON Schema of the config file.
    Schema,
    /// Run the relay: Discourse webhooks in, chat messages out.
    Serve {
        #[arg(long)]
        config: PathBuf,
        /// Where the durable queue lives (created if missing).
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
        /// A PostgreSQL store instead of the redb file in --data-dir
        /// (`postgres://user:password@host:5432/db`; overrides `[server] store`).
        /// Prefer `[server] store = "${VAR}"`: a command line is visible to other users.
        #[arg(long, value_name = "URL")]
        store: Option<String>,
        /// Override `[server] listen` (e.g. 127.0.0.1:0 for a free port).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Override `[server] admin_listen`.
        #[arg(long)]
        admin_listen: Option<std::net::SocketAddr>,
    },
    /// Send the test message to one chat now, without a running relay; with
    /// `--post`, a real forum post (fetched through the API) as that chat
    /// would get it.
    SendTest {
        #[arg(long)]
        config: PathBuf,
        chat: String,
        /// A post id, or a post or topic URL (`https://forum/t/slug/101/3`).
        #[arg(long)]
        post: Option<String>,
    },
    /// Online, read-only checks of every chat's platform and the forum
    /// (tokens, rooms, the forum's webhook); exits 0 all pass, 1 warnings, 2 failures.
    Doctor {
        #[arg(long)]
        config: PathBuf,
        /// Check this chat only (and its forum).
        #[arg(long)]
        chat: Option<String>,
        /// One JSON object per check, one per line.
        #[arg(long)]
        json: bool,
    },
    /// List, send again or drop the dead letters of a running relay's chat
    /// (through its admin listener).
    DeadLetters {
        /// The relay's admin listener (`[server] admin_listen`).
        #[arg(long, default_value = "http://127.0.0.1:9090")]
        admin: String,
        /// The environment variable holding `[server] admin_token`, when one is set.
        #[arg(long, default_value = "RELAY_ADMIN_TOKEN")]
        token_env: String,
        #[command(subcommand)]
        action: DeadLetterCommand,
    },
}

#[derive(Subcommand)]
enum DeadLetterCommand {
    /// The chat's dead letters, newest first: id, when, attempts, reason, what.
    List { chat: String },
    /// Queue them again behind what is queued (all, or each `--id N`).
    Resend {
        chat: String,
        #[arg(long = "id")]
        ids: Vec<u64>,
    },
    /// Forget them (all, or each `--id N`).
    Drop {
        chat: String,
        #[arg(long = "id")]
        ids: Vec<u64>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Validate { files } => validate(&files),
        Command::Explain {
            config,
            json,
            events,
        } => explain(&config, json, &events),
        Command::Schema => {
            print!("{}", schema::schema_text());
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve {
            config,
            data_dir,
            store,
            listen,
            admin_listen,
        } => serve(ServeOptions {
            config,
            data_dir,
            store: store.map(discourse_relay::config::env::Secret::new),
            listen,
            admin_listen,
        }),
        Command::SendTest { config, chat, post } => send_test(&config, &chat, post.as_deref()),
        Command::Doctor { config, chat, json } => doctor(&config, chat.as_deref(), json),
        Command::DeadLetters {
            admin,
            token_env,
            action,
        } => dead_letters(&admin, &token_env, action),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        // Store calls run on blocking threads; hundreds of them (the default
        // 512) only add glibc arenas and memory under a reload storm.
        .max_blocking_threads(32)
        // Handlebars recurses per nesting level; `validate` checks templates
        // on the 8 MiB main thread, so serve must never have less.
        .thread_stack_size(16 * 1024 * 1024)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn serve(opts: ServeOptions) -> Result<ExitCode> {
    runtime()?.block_on(server::run(opts, |_, _| {}))?;
    Ok(ExitCode::SUCCESS)
}

fn send_test(config: &Path, chat: &str, post: Option<&str>) -> Result<ExitCode> {
    let (p, _) = match pipeline::load(config, &ProcessEnv, MissingEnv::Error) {
        Ok(loaded) => loaded,
        Err(diags) => {
            eprintln!("{diags}");
            anyhow::bail!("{} is not valid", config.display());
        }
    };
    let Some(idx) = p.chat_index(chat) else {
        let names: Vec<&str> = p.config.chats.iter().map(|c| c.name.as_str()).collect();
        anyhow::bail!("no chat named `{chat}` (chats: {})", names.join(", "));
    };
    let rt = runtime()?;
    let (event, what) = match post {
        None => (p.test_event(), "the test message".to_string()),
        Some(post) => {
            let event = rt.block_on(fetch_post(&p, idx, post))?;
            // Only what the chat's rules would give it: the same safety as serving.
            match p.route(&event) {
                discourse_relay::rules::Routing::Matched(ms)
                    if ms.iter().any(|m| m.chat == idx) => {}
                discourse_relay::rules::Routing::Skipped(why) => {
                    anyhow::bail!(
                        "not sent: the relay would not relay this post to any chat ({why})"
                    )
                }
                _ => anyhow::bail!(
                    "not sent: `{chat}`'s rules do not take this post (see `explain`)"
                ),
            }
            (event, format!("post {post}"))
        }
    };
    let (_, outbound) = p
        .message(idx, &event)
        .map_err(|e| anyhow::anyhow!("cannot render {what}: {e}"))?;
    let dest = &p.config.chats[idx].destination;
    let sender = Sender::new()?;
    let outcome = rt.block_on(sender.send(dest.as_ref(), &outbound, &p.config.redactor));
    match outcome {
        Outcome::Sent { .. } => {
            println!("sent {what} to `{chat}` ({})", dest.target());
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Retry { reason, .. } => {
            println!("not sent (temporary failure, a relay would retry): {reason}");
            Ok(ExitCode::FAILURE)
        }
        Outcome::Permanent { reason } => {
            println!("not sent: {reason}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn doctor(config: &Path, chat: Option<&str>, as_json: bool) -> Result<ExitCode> {
    // The checks need the secrets, like `serve`.
    let (p, _) = match pipeline::load(config, &ProcessEnv, MissingEnv::Error) {
        Ok(loaded) => loaded,
        Err(diags) => {
            eprintln!("{diags}");
            anyhow::bail!("{} is not valid", config.display());
        }
    };
    let sender = Sender::new()?;
    let checks = runtime()?.block_on(discourse_relay::doctor::run(&p, chat, &sender))?;
    let mut out = std::io::stdout().lock();
    for c in &checks {
        if as_json {
            writeln!(out, "{}", serde_json::to_string(c)?)?;
        } else {
            writeln!(out, "{}", c.line())?;
        }
    }
    Ok(ExitCode::from(discourse_relay::doctor::exit_code(&checks)))
}

/// One admin API call per command; the relay does the work and answers.
fn dead_letters(admin: &str, token_env: &str, action: DeadLetterCommand) -> Result<ExitCode> {
    let admin = admin.trim_end_matches('/');
    let segment = |chat: &str| discourse_relay::http::status::path_segment(chat);
    let client = reqwest::Client::new();
    let token = std::env::var(token_env).ok().filter(|t| !t.is_empty());
    let with_token = |req: reqwest::RequestBuilder| match &token {
        Some(t) => req.bearer_auth(t),
        None => req,
    };
    let (req, chat) = match &action {
        DeadLetterCommand::List { chat } => (
            client.get(format!("{admin}/api/chats/{}/dead-letters", segment(chat))),
            chat,
        ),
        DeadLetterCommand::Resend { chat, ids } | DeadLetterCommand::Drop { chat, ids } => {
            let verb = if matches!(action, DeadLetterCommand::Resend { .. }) {
                "resend"
            } else {
                "drop"
            };
            let body = if ids.is_empty() {
                serde_json::json!({})
            } else {
                serde_json::json!({ "ids": ids })
            };
            (
                client
                    .post(format!(
                        "{admin}/api/chats/{}/dead-letters/{verb}",
                        segment(chat)
                    ))
                    .json(&body),
                chat,
            )
        }
    };
    let rt = runtime()?;
    let (status, text) = rt.block_on(async {
        let resp = with_token(req).send().await?;
        let status = resp.status();
        Ok::<_, reqwest::Error>((status, resp.text().await?))
    })?;
    if !status.is_success() {
        anyhow::bail!("the relay answered {status}: {}", text.trim());
    }
    let answer: serde_json::Value = serde_json::from_str(&text)?;
    match action {
        DeadLetterCommand::List { .. } => {
            let letters = answer.as_array().map(Vec::as_slice).unwrap_or_default();
            if letters.is_empty() {
                println!("no dead letters in `{chat}`");
            }
            for d in letters {
                println!(
                    "{}\t{}\t{} attempts\t{}\t{}",
                    d["id"],
                    d["failed_at"].as_str().unwrap_or(""),
                    d["attempts"],
                    d["reason"].as_str().unwrap_or(""),
                    d["what"].as_str().unwrap_or(""),
                );
            }
        }
        DeadLetterCommand::Resend { .. } => {
            println!(
                "queued {} dead letter(s) of `{chat}` again",
                answer["count"]
            );
        }
        DeadLetterCommand::Drop { .. } => {
            println!("dropped {} dead letter(s) of `{chat}`", answer["count"]);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The post `post` names as a `post_created` event, through the chat's
/// forum's API (site, topic and post).
async fn fetch_post(
    p: &pipeline::Pipeline,
    chat: usize,
    post: &str,
) -> Result<discourse_relay::ingest::Event> {
    use discourse_relay::ingest::api::{DiscourseApi, PostRef};
    let which = PostRef::parse(post).ok_or_else(|| {
        anyhow::anyhow!("`{post}` is neither a post id nor a post URL (https://forum/t/slug/101/3)")
    })?;
    let forum_idx = p.config.chats[chat].forum;
    let forum = &p.config.forums[forum_idx];
    let Some(key) = &forum.api_key else {
        anyhow::bail!(
            "--post fetches the post through the Discourse API: set `api_key` for {}",
            forum.url
        );
    };
    let api = DiscourseApi::new(&forum.url, key.clone(), &forum.api_username)?;
    let mut state = p.forum_state(forum_idx);
    let site = api.site().await?;
    state.learn_site(&site);
    let answer = api.post(which).await?;
    let topic_id = answer
        .get("topic_id")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| anyhow::anyhow!("the forum's answer for post {post} has no topic_id"))?;
    let topic = api.topic(topic_id).await?;
    Ok(discourse_relay::ingest::event_from_api(
        answer, &topic, &mut state, &forum.url,
    )?)
}

fn validate(files: &[PathBuf]) -> Result<ExitCode> {
    let mut failed = false;
    let mut out = std::io::stdout().lock();
    for file in files {
        match pipeline::load(file, &ProcessEnv, MissingEnv::Warn) {
            Ok((p, warnings)) => {
                for d in &warnings.0 {
                    writeln!(out, "{d}")?;
                }
                let rules: usize = p.config.chats.iter().map(|c| c.rules.len()).sum();
                writeln!(
                    out,
                    "{}: ok ({} chats, {} rules)",
                    file.display(),
                    p.config.chats.len(),
                    rules
                )?;
            }
            Err(diags) => {
                failed = true;
                for d in &diags.0 {
                    writeln!(out, "{d}")?;
                }
                let n = diags.errors().count();
                writeln!(
                    out,
                    "{}: {n} error{}",
                    file.display(),
                    if n == 1 { "" } else { "s" }
                )?;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn explain(config: &Path, as_json: bool, files: &[PathBuf]) -> Result<ExitCode> {
    let pipeline = match pipeline::load(config, &ProcessEnv, MissingEnv::Warn) {
        Ok((p, _warnings)) => p,
        Err(diags) => {
            eprintln!("{diags}");
            anyhow::bail!(
                "{} is not valid; run `discourse-relay validate` for details",
                config.display()
            );
        }
    };
    let mut states: HashMap<String, ForumState> = HashMap::new();
    let mut out = std::io::stdout().lock();
    let mut ok = true;
    for file in files {
        match explain_one(&pipeline, &mut states, file) {
            Ok(Some(line)) => {
                if as_json {
                    writeln!(out, "{}", serde_json::to_string(&line)?)?;
                } else {
                    write_text(&mut out, file, &line)?;
                }
            }
            Ok(None) => {
                if !as_json {
                    writeln!(out, "{}: learned from API response", file.display())?;
                }
            }
            Err(e) => {
                ok = false;
                eprintln!("{}: {e:#}", file.display());
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One event file → the explain object; `None` for API responses (learned).
fn explain_one(
    p: &Pipeline,
    states: &mut HashMap<String, ForumState>,
    file: &Path,
) -> Result<Option<serde_json::Value>> {
    let text = std::fs::read_to_string(file).context("cannot read")?;
    let json: serde_json::Value = serde_json::from_str(&text).context("not JSON")?;
    if json.get("headers").is_none() {
        // API responses teach the [discourse] forum.
        let forum = p.config.forum();
        let state = states
            .entry(forum.url.clone())
            .or_insert_with(|| p.forum_state(0));
        return match learn_api_response(&json, state) {
            Some(_) => Ok(None),
            None => anyhow::bail!(
                "neither a webhook request file (headers + raw_body) nor a /site.json or /t/ID.json response"
            ),
        };
    }
    let req = WebhookRequest::from_fixture(&json)?;
    let name = req.header("X-Discourse-Event").unwrap_or("?").to_string();
    let idx = match req.header("X-Discourse-Instance") {
        None => 0,
        Some(i) => p.config.forum_index(i).ok_or_else(|| {
            anyhow::anyhow!("X-Discourse-Instance {i} is not a forum of this config")
        })?,
    };
    let forum = &p.config.forums[idx];
    let state = states
        .entry(forum.url.clone())
        .or_insert_with(|| p.forum_state(idx));
    let ingested = normalize(&req, state, &forum.url)?;
    let event = match ingested {
        Ingested::Ping => {
            return Ok(Some(
                json!({"event": name, "deliveries": [], "skipped": "ping: nothing to relay"}),
            ));
        }
        Ingested::Unsupported(n) => {
            return Ok(Some(
                json!({"event": name, "deliveries": [], "skipped": format!("`{n}` events are not relayed")}),
            ));
        }
        Ingested::Event(e) => e,
    };
    let decision = p.decide(&event);
    let redactor = &p.config.redactor;
    let deliveries: Vec<serde_json::Value> = decision
        .deliveries
        .iter()
        .map(|d| {
            let chat = &p.config.chats[d.chat];
            json!({
                "chat": chat.name,
                "provider": chat.provider,
                "filter": d.filter.as_str(),
                "rule": chat.rules.get(d.rule).map(|r| r.compact()),
                "text": redactor.redact(&d.text),
                "request": d.outbound.redacted_json(redactor),
            })
        })
        .collect();
    let mut obj = json!({"event": name, "deliveries": deliveries, "skipped": decision.skipped});
    if let Some(c) = event.topic.category.as_ref().filter(|c| c.unresolved) {
        obj["notes"] = json!([format!(
            "category {} is not known to the relay (give a /site.json response before this file, or add it to [discourse.categories]): \
             treated as restricted, so only rules naming `{}` get it; `serve` holds such an event up to {}s for /site.json",
            c.id,
            c.slug,
            discourse_relay::service::UNKNOWN_CATEGORY_WAIT.as_secs()
        )]);
    }
    if !decision.failures.is_empty() {
        obj["errors"] = json!(
            decision
                .failures
                .iter()
                .map(|f| json!({"chat": p.config.chats[f.chat].name, "error": f.error}))
                .collect::<Vec<_>>()
        );
    }
    Ok(Some(obj))
}

fn write_text(out: &mut impl Write, file: &Path, v: &serde_json::Value) -> Result<()> {
    writeln!(
        out,
        "{}: {}",
        file.display(),
        v["event"].as_str().unwrap_or("?")
    )?;
    if let Some(reason) = v["skipped"].as_str() {
        writeln!(out, "  skipped: {reason}")?;
    }
    for note in v["notes"].as_array().into_iter().flatten() {
        writeln!(out, "  note: {}", note.as_str().unwrap_or("?"))?;
    }
    for d in v["deliveries"].as_array().into_iter().flatten() {
        writeln!(
            out,
            "  -> {} via {} ({})",
            d["chat"].as_str().unwrap_or("?"),
            d["provider"].as_str().unwrap_or("?"),
            d["rule"].as_str().unwrap_or("?"),
        )?;
        if let Some(r) = d["request"].as_object() {
            writeln!(
                out,
                "     {} {}",
                r.get("method").and_then(|m| m.as_str()).unwrap_or("?"),
                r.get("url").and_then(|m| m.as_str()).unwrap_or("?")
            )?;
        }
        for line in d["text"].as_str().unwrap_or("").lines() {
            writeln!(out, "     | {line}")?;
        }
    }
    for e in v["errors"].as_array().into_iter().flatten() {
        writeln!(
            out,
            "  !! {}: {}",
            e["chat"].as_str().unwrap_or("?"),
            e["error"].as_str().unwrap_or("?")
        )?;
    }
    Ok(())
}
