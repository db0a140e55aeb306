//! The module picture of ARCHITECTURE.md, checked against the imports: each
//! top-level module of the library uses only the modules before it in
//! [`LAYERS`], so no two modules import each other and no stage reaches
//! back upstream. Test code is left out (a test may build what it needs from
//! anywhere).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The library's top-level modules, leaves first (ARCHITECTURE.md, "Modules").
const LAYERS: &[&str] = &[
    "config",
    "observe",
    "ingest",
    "rules",
    "render",
    "providers",
    "pipeline",
    "delivery",
    "doctor",
    "service",
    "http",
    "fuzzing",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    Some(first.trim_end_matches(".rs").to_string())
}

/// The `crate::X` modules a file's non-test code names (comments skipped;
/// the file ends for this purpose at its first `#[cfg(test)]`).
fn imports(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.trim_start();
        if code.starts_with("#[cfg(test)]") {
            break;
        }
        if code.starts_with("//") {
            continue;
        }
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            out.insert(name);
        }
    }
    out
}

#[test]
fn modules_import_only_the_layers_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    let mut seen = BTreeSet::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        // The binary and the crate root are not stages.
        if module == "main" || module == "lib" {
            continue;
        }
        // `tests.rs` files are test modules included with `#[cfg(test)] mod tests;`.
        if file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let Some(layer) = LAYERS.iter().position(|m| *m == module) else {
            wrong.push(format!(
                "{}: module `{module}` is not in LAYERS (add it where it belongs, and to ARCHITECTURE.md)",
                file.display()
            ));
            continue;
        };
        seen.insert(module.clone());
        let text = std::fs::read_to_string(file).expect("readable source");
        for used in imports(&text) {
            if used == module {
                continue;
            }
            match LAYERS.iter().position(|m| *m == used) {
                Some(l) if l < layer => {}
                Some(_) => wrong.push(format!(
                    "{}: `{module}` uses `crate::{used}`, which is not below it",
                    file.display()
                )),
                None => {}
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layering:\n{}",
        wrong.join("\n")
    );
    // The list names only modules that exist.
    for m in LAYERS {
        assert!(seen.contains(*m), "LAYERS names `{m}`, which has no files");
    }
}

#[test]
fn the_import_reader_sees_uses_and_skips_comments_and_tests() {
    let text = "use crate::config::Rate;\n// crate::http in a comment\nfn f() { crate::rules::x(); }\n#[cfg(test)]\nmod tests { use crate::service::App; }\n";
    let got: Vec<String> = imports(text).into_iter().collect();
    assert_eq!(got, ["config", "rules"]);
}
