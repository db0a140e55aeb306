//! Config: the toolkit every stage reads its part of `subscriptions.toml`
//! with: the file's model (serde types with spans), `${VAR}` secrets
//! (`env`), the located deserializer [`de::Ctx`] and problems reported at
//! `file:line:col` (`diag`).
//!
//! A leaf: it imports no other stage. Assembling the whole file (providers
//! binding their chats, rules, templates) is [`crate::pipeline::load`]'s.
//! Nothing here touches the network or the disk, decides routing or renders.

pub mod de;
pub mod diag;
pub mod env;
pub mod model;

pub use de::MissingEnv;
pub use diag::{Diagnostic, Diagnostics, Problem, Severity, SourceMap};
pub use model::{Forum, Located, Rate, StaticCategory};

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
