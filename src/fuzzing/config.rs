//! Config loading: arbitrary UTF-8 text through `pipeline::load_str` with an
//! empty environment and `MissingEnv::Warn` (what `validate` does).
//!
//! Invariants: nothing panics; every diagnostic is at line >= 1 and col >= 1,
//! within the text (line <= number of lines + 1); an `Err` carries at least
//! one error; an `Ok` carries none; every diagnostic prints.

use std::collections::HashMap;
use std::path::Path;

use crate::config::{Diagnostics, MissingEnv};
use crate::pipeline;

fn check(text: &str, diags: &Diagnostics) {
    let lines = text.split('\n').count();
    for d in &diags.0 {
        assert!(
            d.line >= 1 && d.col >= 1,
            "diagnostic at {}:{}: {d}",
            d.line,
            d.col
        );
        assert!(
            d.line <= lines + 1,
            "diagnostic past the end ({} lines): {d}",
            lines
        );
        assert!(!d.to_string().is_empty());
    }
}

/// One `config` fuzz input; panics when an invariant breaks.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env: HashMap<String, String> = HashMap::new();
    match pipeline::load_str(Path::new("fuzz.toml"), text, &env, MissingEnv::Warn) {
        Ok((p, warnings)) => {
            assert!(!warnings.has_errors(), "Ok with errors: {warnings}");
            check(text, &warnings);
            assert!(!p.config.forums.is_empty());
        }
        Err(diags) => {
            assert!(diags.has_errors(), "Err without an error: {diags}");
            check(text, &diags);
        }
    }
}
