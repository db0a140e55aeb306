//! `${VAR}` references inside string values, and the [`Secret`] type.
//!
//! Expansion happens *after* parsing, inside individual string values, so an
//! environment value can never inject TOML and line:col positions stay true.
//! A value that came from the environment is a secret: it is redacted from
//! everything the relay prints (`Debug`, `Display`, `Serialize`, `explain`).

use std::collections::BTreeSet;
use std::fmt;

/// Where environment values come from: the process, or a map in tests.
pub trait Env {
    fn get(&self, name: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<S: std::hash::BuildHasher> Env for std::collections::HashMap<String, String, S> {
    fn get(&self, name: &str) -> Option<String> {
        std::collections::HashMap::get(self, name).cloned()
    }
}

impl Env for std::collections::BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        std::collections::BTreeMap::get(self, name).cloned()
    }
}

/// One piece of a string value: literal text or a `${VAR}` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Var(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvSyntaxError {
    #[error("unterminated `${{` (write `$$` for a literal `$`)")]
    Unterminated,
    #[error(
        "`${{{0}}}` is not a valid variable name (letters, digits and `_`, not starting with a digit)"
    )]
    BadName(String),
}

/// A string value that may reference environment variables, as written.
#[derive(Clone, PartialEq, Eq)]
pub struct EnvTemplate {
    parts: Vec<Part>,
}

impl EnvTemplate {
    pub fn parse(raw: &str) -> Result<Self, EnvSyntaxError> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = raw;
        while let Some(i) = rest.find('$') {
            lit.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                lit.push('$');
                rest = tail;
            } else if let Some(tail) = after.strip_prefix('{') {
                let end = tail.find('}').ok_or(EnvSyntaxError::Unterminated)?;
                let name = &tail[..end];
                let valid = !name.is_empty()
                    && !name.starts_with(|c: char| c.is_ascii_digit())
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    return Err(EnvSyntaxError::BadName(name.to_string()));
                }
                if !lit.is_empty() {
                    parts.push(Part::Lit(std::mem::take(&mut lit)));
                }
                parts.push(Part::Var(name.to_string()));
                rest = &tail[end + 1..];
            } else {
                lit.push('$');
                rest = after;
            }
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Self { parts })
    }

    /// Names of the variables referenced, in order.
    pub fn vars(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v.as_str()),
            Part::Lit(_) => None,
        })
    }

    pub fn has_vars(&self) -> bool {
        self.vars().next().is_some()
    }

    /// The value as written, with `${VAR}` kept: safe to print anywhere.
    pub fn redacted(&self) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Var(v) => {
                    out.push_str("${");
                    out.push_str(v);
                    out.push('}');
                }
            }
        }
        out
    }

    /// Expands every reference; `Err` names the variables that are not set.
    /// Unset variables are left as `${VAR}` in the `Ok`-less partial value so
    /// offline commands (`explain`) can still show the request shape.
    pub fn expand(&self, env: &dyn Env) -> Expanded {
        let mut value = String::new();
        let mut missing = Vec::new();
        let mut secrets = Vec::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => value.push_str(s),
                Part::Var(v) => match env.get(v) {
                    Some(x) => {
                        value.push_str(&x);
                        if !x.is_empty() {
                            secrets.push(x);
                        }
                    }
                    None => {
                        missing.push(v.clone());
                        value.push_str("${");
                        value.push_str(v);
                        value.push('}');
                    }
                },
            }
        }
        Expanded {
            value: Secret::new(value),
            missing,
            secrets,
        }
    }
}

impl fmt::Debug for EnvTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

/// The result of expanding an [`EnvTemplate`].
#[derive(Debug, Clone)]
pub struct Expanded {
    pub value: Secret,
    /// Variables that were not set (the value holds `${VAR}` in their place).
    pub missing: Vec<String>,
    /// The values that came from the environment, for the [`Redactor`].
    pub secrets: Vec<String>,
}

/// A value that must never be printed: `Debug`, `Display` and `Serialize`
/// all show `[redacted]`. Read it with [`Secret::expose`] at the one place
/// that sends it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("[redacted]")
    }
}

/// Replaces every known secret value in text with its `${VAR}` name (or
/// `[redacted]`). Defence in depth for anything printed: requests shown by
/// `explain`, error texts from providers, logs of responses.
#[derive(Clone, Default)]
pub struct Redactor {
    // Longest first, so a secret containing another is replaced whole.
    secrets: Vec<String>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

impl Redactor {
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let set: BTreeSet<String> = secrets
            .into_iter()
            // A one- or two-character "secret" would redact half of every text.
            .filter(|s| s.len() >= 3)
            .collect();
        let mut secrets: Vec<String> = set.into_iter().collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Self { secrets }
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "[redacted]");
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn expands_references_inside_values() {
        let t = EnvTemplate::parse("https://hooks.example/${PATH_A}/x?$$y").unwrap();
        let e = t.expand(&env(&[("PATH_A", "s3cr3t")]));
        assert_eq!(e.value.expose(), "https://hooks.example/s3cr3t/x?$y");
        assert!(e.missing.is_empty());
        assert_eq!(e.secrets, vec!["s3cr3t".to_string()]);
        assert_eq!(t.redacted(), "https://hooks.example/${PATH_A}/x?$y");
    }

    #[test]
    fn reports_missing_and_keeps_placeholder() {
        let t = EnvTemplate::parse("Bearer ${TOKEN}").unwrap();
        let e = t.expand(&env(&[]));
        assert_eq!(e.missing, vec!["TOKEN".to_string()]);
        assert_eq!(e.value.expose(), "Bearer ${TOKEN}");
    }

    #[test]
    fn rejects_bad_syntax() {
        assert_eq!(
            EnvTemplate::parse("${OPEN").unwrap_err(),
            EnvSyntaxError::Unterminated
        );
        assert!(matches!(
            EnvTemplate::parse("${1X}").unwrap_err(),
            EnvSyntaxError::BadName(_)
        ));
        // A lone `$` is literal.
        assert_eq!(EnvTemplate::parse("a$b").unwrap().redacted(), "a$b");
    }

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("xoxb-123");
        assert_eq!(format!("{s} {s:?}"), "[redacted] [redacted]");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"[redacted]\"");
    }

    #[test]
    fn redactor_replaces_longest_first() {
        let r = Redactor::new(["abc".to_string(), "abcdef".to_string()]);
        assert_eq!(r.redact("x abcdef y abc"), "x [redacted] y [redacted]");
    }
}
