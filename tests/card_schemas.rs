//! Every card body the relay sends, checked against the platform's own
//! published definition (scripts/ci/cards): Slack's, Discord's, Mattermost's,
//! Rocket.Chat's and the Teams SDK's TypeScript types with `tsc --strict`, the
//! Adaptive Cards SDK's parser, Rocket.Chat's server-side validators and
//! Google's Chat discovery document. So a body the platform would reject fails
//! here, not in a room.
//!
//! The bodies are every `tests/cards/KIND.toml` chat's request for the shown
//! and the hostile fixtures, and every `examples/*.toml` chat that names a card
//! template, written to `target/card-schemas/KIND.CHAT.FIXTURE.json` (the
//! checkers pick the check by the KIND prefix and the request's endpoint).
//! The checkers need `npm ci --prefix scripts/ci/cards` and the venv
//! `target/card-venv` (see .ci/run); without them these tests skip, and fail
//! under `CI=true` (`common::peer_missing`).

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use common::cards::{card_requests, example_card_requests};
use common::*;

/// The kinds whose platform publishes a schema or types for every body the
/// relay may send them: their bodies must be checked (`ok`), never reported
/// as unchecked. (Lark's SDK types card JSON 1.0 only: a 2.0 card may be
/// `none`.)
const CHECKED: &[&str] = &[
    "slack",
    "discord",
    "mattermost",
    "rocketchat",
    "matrix",
    "gitter",
    "teams",
    "webex",
    "googlechat",
];

fn checker_dir() -> PathBuf {
    root().join("scripts/ci/cards")
}

fn venv_python() -> PathBuf {
    root().join("target/card-venv/bin/python")
}

/// Whether node with the packages and the venv with Google's discovery
/// documents are there; if not, says so (and fails under CI).
fn checkers_present() -> bool {
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) || !checker_dir().join("node_modules").is_dir() {
        peer_missing(
            "card-schemas",
            "node or scripts/ci/cards/node_modules is missing (npm ci --prefix scripts/ci/cards)",
        );
        return false;
    }
    let google = Command::new(venv_python())
        .args([
            "-c",
            "import importlib.util, sys; sys.exit(importlib.util.find_spec('googleapiclient') is None)",
        ])
        .output();
    if !google.is_ok_and(|o| o.status.success()) {
        peer_missing(
            "card-schemas",
            "target/card-venv has no google-api-python-client (see .ci/run: the Google Chat schema check)",
        );
        return false;
    }
    true
}

/// Runs a checker; returns whether it passed and what it printed.
fn run(mut cmd: Command) -> (bool, String) {
    let out = cmd.output().expect("the checker runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn node(args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new("node");
    cmd.arg(checker_dir().join("check.mjs")).args(args);
    run(cmd)
}

fn google(args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(venv_python());
    cmd.arg(checker_dir().join("check_google.py")).args(args);
    run(cmd)
}

/// Each file's status word in a checker's output (`ok`, `FAIL`, `none`, `google`).
fn statuses(out: &str) -> BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let status = words.next()?;
            let name = words.next()?.trim_end_matches(':');
            name.ends_with(".json")
                .then(|| (name.to_string(), status.to_string()))
        })
        .collect()
}

#[test]
fn every_card_body_passes_the_platforms_own_schemas() {
    if !checkers_present() {
        return;
    }
    let dir = root().join("target/card-schemas");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let harness = card_requests();
    let examples = example_card_requests();
    assert!(!harness.is_empty(), "no cards from tests/cards/*.toml");
    let mut names = Vec::new();
    for (kind, chat, fixture, request) in harness.iter().chain(&examples) {
        let name = format!("{kind}.{chat}.{fixture}.json");
        let text = serde_json::to_string_pretty(request).unwrap() + "\n";
        std::fs::write(dir.join(&name), text).unwrap();
        names.push((kind.clone(), name));
    }
    // Edits are checked as edits (Slack chat.update, Discord PATCH, ...).
    assert!(
        names.iter().any(|(_, n)| n.contains(".first_post_edit.")),
        "no edit request among {names:?}"
    );
    let dir_arg = dir.to_string_lossy().to_string();
    let (node_ok, node_out) = node(&[&dir_arg]);
    let (google_ok, google_out) = google(&[&dir_arg]);
    let report = format!("check.mjs:\n{node_out}\ncheck_google.py:\n{google_out}");
    assert!(
        node_ok && google_ok,
        "a card body fails its platform's schema:\n{report}"
    );
    let from_node = statuses(&node_out);
    let from_google = statuses(&google_out);
    for (kind, name) in &names {
        let status = if kind == "googlechat" {
            from_google.get(name)
        } else {
            from_node.get(name)
        };
        let status = status.map(String::as_str);
        if CHECKED.contains(&kind.as_str()) {
            assert_eq!(status, Some("ok"), "{name} was not checked:\n{report}");
        } else {
            assert!(
                matches!(status, Some("ok" | "none")),
                "{name}: {status:?}\n{report}"
            );
        }
    }
    // The examples' own card templates are checked too, when there are any.
    let example_names: Vec<&str> = names[harness.len()..]
        .iter()
        .map(|(_, n)| n.as_str())
        .collect();
    eprintln!(
        "checked {} harness bodies and {} example card-template bodies",
        harness.len(),
        example_names.len()
    );
    for n in example_names {
        assert!(
            from_node.contains_key(n) || from_google.contains_key(n),
            "{n}"
        );
    }
}

#[test]
fn the_checkers_reject_what_the_platforms_reject() {
    // samples/KIND.valid.*.json must pass and KIND.invalid.*.json fail with
    // the problems each names: a checker that accepts anything fails here.
    if !checkers_present() {
        return;
    }
    let (ok, out) = node(&["--self-test"]);
    assert!(ok, "check.mjs --self-test:\n{out}");
    assert!(out.contains("self-test: "), "{out}");
    let (ok, out) = google(&["--self-test"]);
    assert!(ok, "check_google.py --self-test:\n{out}");
    assert!(out.contains("self-test: "), "{out}");
}
