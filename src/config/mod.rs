//! Config: the `subscriptions.toml` model, `${VAR}` secrets, and validation
//! that reports every problem at `file:line:col`.

pub mod diag;
pub mod env;
pub mod model;

pub use diag::{Diagnostic, Diagnostics, Problem, Severity, SourceMap};
