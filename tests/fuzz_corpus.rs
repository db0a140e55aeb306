//! Replays the kept fuzz corpus (`fuzz/corpus/<target>/`) through the fuzz
//! targets' own bodies (`discourse_relay::fuzzing`), so every `cargo test`
//! checks the targets' invariants on the 2,000 kept inputs without
//! cargo-fuzz. Deterministic; a few seconds. Long runs: `fuzz/run-short`.

use std::path::PathBuf;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    // A corpus that vanished must not pass as "no failures".
    assert!(files.len() > 100, "{target}: only {} inputs", files.len());
    let count = files.len();
    // libFuzzer runs targets on the 8 MiB main thread; test threads get 2 MiB.
    let failures = std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || {
            let mut failures = Vec::new();
            for file in &files {
                let data = std::fs::read(file).unwrap();
                if std::panic::catch_unwind(|| run(&data)).is_err() {
                    failures.push(file.display().to_string());
                }
            }
            failures
        })
        .unwrap()
        .join()
        .unwrap();
    assert!(
        failures.is_empty(),
        "{target}: {} of {count} inputs broke an invariant (reproduce with \
         `fuzz/target/none/x86_64-unknown-linux-gnu/release/{target} FILE`):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn webhook_corpus() {
    replay("webhook", discourse_relay::fuzzing::webhook);
}

#[test]
fn config_corpus() {
    replay("config", discourse_relay::fuzzing::config);
}

#[test]
fn template_corpus() {
    replay("template", discourse_relay::fuzzing::template);
}

#[test]
fn classify_corpus() {
    replay("classify", discourse_relay::fuzzing::classify);
}

/// The replay can fail: a broken invariant in a target body is reported.
#[test]
fn a_broken_invariant_fails_the_replay() {
    let result = std::panic::catch_unwind(|| {
        replay("config", |data| {
            assert!(!data.starts_with(b"["), "made-up invariant");
        })
    });
    assert!(result.is_err());
}
