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

impl Rate {
    /// `count` messages a second.
    pub const fn per_second(count: u32) -> Self {
        Self::per_secs(count, 1)
    }

    /// `count` messages a minute.
    pub const fn per_minute(count: u32) -> Self {
        Self::per_secs(count, 60)
    }

    /// `count` messages every `secs` seconds.
    pub const fn per_secs(count: u32, secs: u64) -> Self {
        Self {
            count,
            per: std::time::Duration::from_secs(secs),
        }
    }
}
