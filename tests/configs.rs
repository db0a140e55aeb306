//! Config fixtures, one failure mode per file: each `tests/configs/bad/X.toml`
//! has `X.expected` beside it with the exact diagnostics `validate` prints
//! (`LINE:COL: severity: message`). Set `UPDATE_EXPECTED=1` to rewrite them
//! after a deliberate change, then review the diff.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use discourse_relay::config::MissingEnv;
use discourse_relay::pipeline;

fn files(dir: &str, ext: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

fn no_env() -> HashMap<String, String> {
    HashMap::new()
}

#[test]
fn every_bad_config_reports_exactly_the_expected_problems() {
    let bad = files("tests/configs/bad", "toml");
    assert!(bad.len() >= 8, "fixtures missing");
    let mut mismatches = Vec::new();
    for file in bad {
        let got = match pipeline::load(&file, &no_env(), MissingEnv::Warn) {
            Ok(_) => "ok\n".to_string(),
            Err(diags) => diags
                .0
                .iter()
                .map(|d| {
                    let sev = format!("{:?}", d.severity).to_lowercase();
                    format!("{}:{}: {sev}: {}\n", d.line, d.col, d.message)
                })
                .collect(),
        };
        let expected_path = file.with_extension("expected");
        if std::env::var_os("UPDATE_EXPECTED").is_some() {
            std::fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if got != expected {
            mismatches.push(format!(
                "{}:\n--- expected\n{expected}--- got\n{got}",
                file.display()
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn shipped_examples_and_good_configs_load() {
    let mut all = files("examples", "toml");
    all.extend(files("tests/configs/good", "toml"));
    for file in all {
        let (p, warnings) = pipeline::load(&file, &no_env(), MissingEnv::Warn)
            .unwrap_or_else(|d| panic!("{} should be valid:\n{d}", file.display()));
        assert!(!p.config.chats.is_empty(), "{}", file.display());
        // Only unset secrets may warn in the shipped files.
        for w in &warnings.0 {
            assert!(w.message.contains("is not set"), "{}: {w}", file.display());
        }
    }
}

#[test]
fn serving_refuses_unset_secrets_and_accepts_them_set() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/subscriptions.toml");
    let err = pipeline::load(&file, &no_env(), MissingEnv::Error).unwrap_err();
    assert!(
        err.errors()
            .any(|d| d.message.contains("SLACK_BOT_TOKEN is not set"))
    );
    let env: HashMap<String, String> = [
        "DISCOURSE_WEBHOOK_SECRET",
        "DISCOURSE_API_KEY",
        "SLACK_BOT_TOKEN",
        "SLACK_SIGNING_SECRET",
        "SLACK_ANNOUNCE_WEBHOOK_URL",
        "DISCORD_RELEASES_WEBHOOK_URL",
        "CI_HOOK_TOKEN",
    ]
    .iter()
    .map(|k| {
        let v = if k.ends_with("URL") {
            "https://hooks.slack.com/services/T0/B0/canary-secret-value".to_string()
        } else {
            format!("canary-secret-{k}")
        };
        (k.to_string(), v)
    })
    .collect();
    let (p, warnings) = pipeline::load(&file, &env, MissingEnv::Error).unwrap();
    assert!(warnings.0.is_empty(), "{warnings}");
    // Nothing the relay prints about its config may contain a secret value.
    let shown = format!("{:?}", p.config);
    assert!(
        !shown.contains("canary-secret"),
        "secret leaked into Debug output"
    );
}

#[test]
fn committed_schema_is_the_generated_one() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/subscriptions.schema.json");
    let generated = discourse_relay::pipeline::schema::schema_text();
    if std::env::var_os("UPDATE_EXPECTED").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "schema/subscriptions.schema.json is stale: run `cargo run -- schema > schema/subscriptions.schema.json`"
    );
}
