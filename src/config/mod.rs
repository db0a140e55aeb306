//! Config: the `subscriptions.toml` model, `${VAR}` secrets, and validation
//! that reports every problem at `file:line:col`.
//!
//! Parsing, validation and secret expansion happen here, without network or
//! disk access, so `validate` runs in CI without secrets. Provider-specific
//! fields are read by the providers themselves through [`de::Ctx`]. This
//! module never decides routing or renders anything.

pub mod de;
pub mod diag;
pub mod env;
pub mod load;
pub mod model;
pub mod schema;

pub use de::MissingEnv;
pub use diag::{Diagnostic, Diagnostics, Problem, Severity, SourceMap};
pub use load::{
    ChatConfig, CommandAuth, Config, Forum, Rate, RuleSource, ServerConfig, TemplateSource, parse,
};
