//! Deserialization of config sections that reports *every* problem with a
//! span: wrong types (from serde), unknown keys (collected with
//! `serde_ignored`, each with a did-you-mean taken from the section's JSON
//! Schema), and `${VAR}` references. Provider files use [`Ctx`] to read their
//! own settings the same way.

use std::ops::Range;

use schemars::JsonSchema;
use serde::de::{DeserializeOwned, IntoDeserializer};
use serde_spanned::Spanned;
use toml_edit::Item;

use super::diag::{Problem, did_you_mean};
use super::env::{Env, EnvTemplate, Redactor, Secret};
use super::model::Located;

/// What to do with a `${VAR}` whose variable is not set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingEnv {
    /// `validate` and `explain`: report a warning, keep `${VAR}` in the value.
    Warn,
    /// `serve`: refuse the config.
    Error,
}

/// One segment of a path inside a section.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// The state shared by everything that reads one config file.
pub struct Ctx<'a> {
    env: &'a dyn Env,
    missing_env: MissingEnv,
    problems: Vec<Problem>,
    secrets: Vec<String>,
}

impl<'a> Ctx<'a> {
    pub fn new(env: &'a dyn Env, missing_env: MissingEnv) -> Self {
        Self {
            env,
            missing_env,
            problems: Vec::new(),
            secrets: Vec::new(),
        }
    }

    pub fn error(&mut self, span: Option<Range<usize>>, message: impl Into<String>) {
        self.problems.push(Problem::error(span, message));
    }

    pub fn warning(&mut self, span: Option<Range<usize>>, message: impl Into<String>) {
        self.problems.push(Problem::warning(span, message));
    }

    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    pub fn has_errors(&self) -> bool {
        self.problems
            .iter()
            .any(|p| p.severity == super::Severity::Error)
    }

    /// Ends reading: the problems found and a redactor for every secret value.
    pub fn finish(self) -> (Vec<Problem>, Redactor) {
        (self.problems, Redactor::new(self.secrets))
    }

    /// Deserializes `item` as `T`; every unknown key is an error with a
    /// did-you-mean. `None` when the item does not fit `T` at all.
    pub fn deserialize<T: DeserializeOwned + JsonSchema>(&mut self, item: &Item) -> Option<T> {
        let (value, unknown) = self.deserialize_open::<T>(item)?;
        for key in unknown {
            self.unknown_key(item, &key, &known_keys::<T>(&[]));
        }
        Some(value)
    }

    /// Like [`Ctx::deserialize`], but unknown keys at the top level of `item`
    /// are returned instead of reported: the caller hands them to whoever
    /// owns them (a chat's target fields belong to its provider).
    pub fn deserialize_open<T: DeserializeOwned + JsonSchema>(
        &mut self,
        item: &Item,
    ) -> Option<(T, Vec<String>)> {
        let value = match item.clone().into_value() {
            Ok(v) => v,
            Err(_) => {
                self.error(item.span(), "expected a value or a table");
                return None;
            }
        };
        self.deserialize_value(value, Some(item), item.span())
    }

    /// [`Ctx::deserialize_open`] for an item the caller gives up: no copy
    /// (for large repeated sections, e.g. 10k `[[chat]]` tables). Nested
    /// unknown keys can only be placed at `span` (the item is gone by then),
    /// so callers use it where they checked there are none.
    pub fn deserialize_owned<T: DeserializeOwned + JsonSchema>(
        &mut self,
        item: Item,
    ) -> Option<(T, Vec<String>)> {
        let span = item.span();
        let value = match item.into_value() {
            Ok(v) => v,
            Err(_) => {
                self.error(span, "expected a value or a table");
                return None;
            }
        };
        self.deserialize_value(value, None, span)
    }

    /// Deserializes `value` (made from `item`, when the caller still has it,
    /// for the spans of nested unknown keys; else they go to `span`).
    fn deserialize_value<T: DeserializeOwned + JsonSchema>(
        &mut self,
        value: toml_edit::Value,
        item: Option<&Item>,
        span: Option<Range<usize>>,
    ) -> Option<(T, Vec<String>)> {
        let mut ignored: Vec<Vec<Seg>> = Vec::new();
        let result: Result<T, _> = serde_ignored::deserialize(value.into_deserializer(), |path| {
            ignored.push(segments(&path));
        });
        match result {
            Ok(v) => {
                let mut top = Vec::new();
                // The schema (for did-you-mean) is costly: build it only for
                // nested unknown keys, which are rare.
                let mut schema: Option<serde_json::Value> = None;
                for path in ignored {
                    match path.as_slice() {
                        [Seg::Key(k)] => top.push(k.clone()),
                        [parent @ .., Seg::Key(k)] => {
                            let schema = schema.get_or_insert_with(|| {
                                serde_json::to_value(schemars::schema_for!(T)).unwrap_or_default()
                            });
                            let candidates = properties_at(schema, parent);
                            let at = match item {
                                Some(item) => span_at(item, &path),
                                None => span.clone(),
                            };
                            let names: Vec<&str> = candidates.iter().map(String::as_str).collect();
                            self.error(at, format!("unknown key `{k}`{}", did_you_mean(k, names)));
                        }
                        _ => {}
                    }
                }
                Some((v, top))
            }
            Err(e) => {
                let at = e.span().or(span);
                self.error(at, clean_serde_message(e.message()));
                None
            }
        }
    }

    /// Reports an unknown key of `table`, suggesting the closest of `known`.
    pub fn unknown_key(&mut self, table: &Item, key: &str, known: &[String]) {
        let span = key_span(table, key);
        let names: Vec<&str> = known.iter().map(String::as_str).collect();
        self.error(
            span,
            format!("unknown key `{key}`{}", did_you_mean(key, names)),
        );
    }

    /// A secret field: it must be a `${VAR}` reference, because the file
    /// lives in git. Returns the expanded value (with `${VAR}` left in place
    /// when unset and missing variables are only a warning).
    pub fn secret(&mut self, field: &str, v: &Spanned<String>) -> Option<Secret> {
        let t = self.template(v)?;
        if !t.has_vars() {
            self.error(
                Some(v.span()),
                format!(
                    "`{field}` must be an environment reference like \"${{{}}}\": secrets don't belong in the config file",
                    field.to_uppercase()
                ),
            );
            return None;
        }
        Some(self.expand(&t, v.span()))
    }

    /// A plain string that may reference `${VAR}`s; expanded values are
    /// treated as secrets too (never printed).
    pub fn string(&mut self, v: &Spanned<String>) -> Option<Secret> {
        let t = self.template(v)?;
        Some(self.expand(&t, v.span()))
    }

    /// A string that must be an absolute http(s) URL once expanded. URLs
    /// still holding an unset `${VAR}` are checked only for their scheme.
    pub fn url(&mut self, field: &str, v: &Spanned<String>, secret: bool) -> Option<Secret> {
        let value = if secret {
            self.secret(field, v)?
        } else {
            self.string(v)?
        };
        let s = value.expose();
        let ok = if s.contains("${") {
            s.starts_with("https://") || s.starts_with("http://") || s.starts_with("${")
        } else {
            url::Url::parse(s)
                .map(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                .unwrap_or(false)
        };
        if !ok {
            // Never echo the value: it may hold an expanded secret.
            self.error(
                Some(v.span()),
                format!("`{field}` must be an absolute http:// or https:// URL"),
            );
            return None;
        }
        Some(value)
    }

    /// An optional secret field: `Some(None)` when it is not set, `None`
    /// when it is set but wrong (reported).
    pub fn opt_secret(
        &mut self,
        field: &str,
        v: &Option<Located<String>>,
    ) -> Option<Option<Secret>> {
        match v {
            Some(v) => self.secret(field, v).map(Some),
            None => Some(None),
        }
    }

    /// An API base URL (not secret), `default` when unset, without a
    /// trailing `/` so paths can be appended.
    pub fn base_url(
        &mut self,
        field: &str,
        v: &Option<Located<String>>,
        default: &str,
    ) -> Option<String> {
        let url = match v {
            Some(u) => self.url(field, u, false)?.expose().to_string(),
            None => default.to_string(),
        };
        Some(url.trim_end_matches('/').to_string())
    }

    /// A required, non-empty text field of a chat, trimmed. `missing` is
    /// reported at the chat when the field is absent; "`field` is empty" at
    /// the field when it is blank. The span is the field's.
    pub fn required_str(
        &mut self,
        v: &Option<Located<String>>,
        field: &str,
        chat: Option<Range<usize>>,
        missing: &str,
    ) -> Option<(String, Range<usize>)> {
        let Some(v) = v else {
            self.error(chat, missing);
            return None;
        };
        let s = v.get_ref().trim();
        if s.is_empty() {
            self.error(Some(v.span()), format!("`{field}` is empty"));
            return None;
        }
        Some((s.to_string(), v.span()))
    }

    /// A required URL that holds a credential (a webhook URL), as `${VAR}`;
    /// `missing` is reported at the chat when it is absent.
    pub fn required_url(
        &mut self,
        v: &Option<Located<String>>,
        field: &str,
        chat: Option<Range<usize>>,
        missing: &str,
    ) -> Option<(Secret, Range<usize>)> {
        let Some(v) = v else {
            self.error(chat, missing);
            return None;
        };
        Some((self.url(field, v, true)?, v.span()))
    }

    /// The provider's token for a chat that needs one; `missing` is
    /// reported at `span` when the provider has none.
    pub fn require_token(
        &mut self,
        token: &Option<Secret>,
        span: Option<Range<usize>>,
        missing: &str,
    ) -> Option<Secret> {
        if token.is_none() {
            self.error(span, missing);
        }
        token.clone()
    }

    fn template(&mut self, v: &Spanned<String>) -> Option<EnvTemplate> {
        match EnvTemplate::parse(v.get_ref()) {
            Ok(t) => Some(t),
            Err(e) => {
                self.error(Some(v.span()), e.to_string());
                None
            }
        }
    }

    fn expand(&mut self, t: &EnvTemplate, span: Range<usize>) -> Secret {
        let e = t.expand(self.env);
        for var in &e.missing {
            match self.missing_env {
                MissingEnv::Warn => self.warning(
                    Some(span.clone()),
                    format!("environment variable {var} is not set (`serve` will refuse to start without it)"),
                ),
                MissingEnv::Error => self.error(
                    Some(span.clone()),
                    format!("environment variable {var} is not set"),
                ),
            }
        }
        self.secrets.extend(e.secrets);
        e.value
    }
}

/// Field names `T` accepts at its top level, plus `extra`.
pub fn known_keys<T: JsonSchema>(extra: &[&str]) -> Vec<String> {
    let schema = serde_json::to_value(schemars::schema_for!(T)).unwrap_or_default();
    let mut keys = properties_at(&schema, &[]);
    keys.extend(extra.iter().map(|s| s.to_string()));
    keys
}

/// The span of `key` (the key itself) in a table item.
pub fn key_span(table: &Item, key: &str) -> Option<Range<usize>> {
    match table {
        Item::Table(t) => t.key(key).and_then(|k| k.span()),
        Item::Value(toml_edit::Value::InlineTable(t)) => t.key(key).and_then(|k| k.span()),
        _ => None,
    }
    .or_else(|| table.span())
}

fn segments(path: &serde_ignored::Path<'_>) -> Vec<Seg> {
    use serde_ignored::Path;
    match path {
        Path::Root => Vec::new(),
        Path::Seq { parent, index } => {
            let mut v = segments(parent);
            v.push(Seg::Index(*index));
            v
        }
        Path::Map { parent, key } => {
            let mut v = segments(parent);
            v.push(Seg::Key(key.clone()));
            v
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => segments(parent),
    }
}

/// The span of the key at the end of `path` (or of the closest ancestor).
fn span_at(item: &Item, path: &[Seg]) -> Option<Range<usize>> {
    let found = match path.first() {
        None => item.span(),
        Some(Seg::Key(_)) => item.as_table_like().and_then(|t| span_in_table(t, path)),
        Some(Seg::Index(n)) => match item {
            Item::ArrayOfTables(a) => a
                .get(*n)
                .and_then(|t| span_in_table(t, &path[1..]).or_else(|| t.span())),
            Item::Value(toml_edit::Value::Array(a)) => a
                .get(*n)
                .and_then(|v| span_at(&Item::Value(v.clone()), &path[1..]).or_else(|| v.span())),
            _ => None,
        },
    };
    found.or_else(|| item.span())
}

fn span_in_table(t: &dyn toml_edit::TableLike, path: &[Seg]) -> Option<Range<usize>> {
    match path {
        [Seg::Key(k)] => t.get_key_value(k).and_then(|(key, _)| key.span()),
        [Seg::Key(k), rest @ ..] => t.get(k).and_then(|child| span_at(child, rest)),
        _ => None,
    }
}

/// Property names of the (sub)schema at `path`, following `$ref`, `items`,
/// `additionalProperties` and `anyOf`/`oneOf`/`allOf`.
fn properties_at(root: &serde_json::Value, path: &[Seg]) -> Vec<String> {
    let mut nodes = vec![root];
    for seg in path {
        let mut next = Vec::new();
        for n in expand(root, nodes) {
            match seg {
                Seg::Index(_) => {
                    if let Some(items) = n.get("items") {
                        next.push(items);
                    }
                }
                Seg::Key(k) => {
                    if let Some(p) = n.get("properties").and_then(|p| p.get(k)) {
                        next.push(p);
                    } else if let Some(ap) = n.get("additionalProperties").filter(|v| v.is_object())
                    {
                        next.push(ap);
                    }
                }
            }
        }
        nodes = next;
    }
    let mut out = Vec::new();
    for n in expand(root, nodes) {
        if let Some(props) = n.get("properties").and_then(|p| p.as_object()) {
            out.extend(props.keys().cloned());
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Resolves `$ref`s and flattens `anyOf`/`oneOf`/`allOf` (bounded depth).
fn expand<'s>(
    root: &'s serde_json::Value,
    nodes: Vec<&'s serde_json::Value>,
) -> Vec<&'s serde_json::Value> {
    let mut out = Vec::new();
    let mut stack: Vec<(&serde_json::Value, usize)> = nodes.into_iter().map(|n| (n, 0)).collect();
    while let Some((n, depth)) = stack.pop() {
        if depth > 8 {
            continue;
        }
        if let Some(r) = n.get("$ref").and_then(|r| r.as_str())
            && let Some(target) = r
                .strip_prefix("#/")
                .and_then(|p| p.split('/').try_fold(root, |cur, part| cur.get(part)))
        {
            stack.push((target, depth + 1));
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            if let Some(arr) = n.get(key).and_then(|a| a.as_array()) {
                stack.extend(arr.iter().map(|x| (x, depth + 1)));
            }
        }
        out.push(n);
    }
    out
}

/// serde's messages name Rust types; users know TOML.
fn clean_serde_message(msg: &str) -> String {
    msg.replace("a sequence", "an array")
        .replace("a map", "a table")
        .replace("struct ", "table ")
        .replace("invalid type: ", "wrong type: ")
        .replace("variant identifier", "value")
        .replace("unknown variant", "unknown value")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::HashMap;

    #[derive(Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Inner {
        filter: Option<String>,
        tags: Option<Vec<String>>,
    }

    #[derive(Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        #[serde(default)]
        rule: Vec<Inner>,
    }

    fn parse(text: &str) -> toml_edit::Document<String> {
        toml_edit::Document::parse(text.to_string()).unwrap()
    }

    #[test]
    fn every_unknown_key_is_reported_with_span_and_suggestion() {
        let text = "[x]\nname = \"a\"\nnmae = 1\n[[x.rule]]\nfitler = \"watch\"\ntags = []\n";
        let doc = parse(text);
        let env = HashMap::<String, String>::new();
        let mut cx = Ctx::new(&env, MissingEnv::Warn);
        let got = cx.deserialize::<Outer>(&doc["x"]);
        assert!(got.is_some());
        let mut problems = cx.problems().to_vec();
        problems.sort_by_key(|p| p.span.clone().map(|s| s.start));
        let msgs: Vec<(String, &str)> = problems
            .iter()
            .map(|p| (p.message.clone(), &text[p.span.clone().unwrap()]))
            .collect();
        assert_eq!(
            msgs,
            vec![
                (
                    "unknown key `nmae`; did you mean `name`?".to_string(),
                    "nmae"
                ),
                (
                    "unknown key `fitler`; did you mean `filter`?".to_string(),
                    "fitler"
                ),
            ]
        );
    }

    #[test]
    fn wrong_type_points_at_value() {
        let text = "[x]\nname = 5\n";
        let doc = parse(text);
        let env = HashMap::<String, String>::new();
        let mut cx = Ctx::new(&env, MissingEnv::Warn);
        assert!(cx.deserialize::<Outer>(&doc["x"]).is_none());
        let p = &cx.problems()[0];
        assert_eq!(&text[p.span.clone().unwrap()], "5");
        assert!(p.message.contains("expected a string"), "{}", p.message);
    }

    #[test]
    fn secrets_must_be_references() {
        let env: HashMap<String, String> = [("TOK".to_string(), "xoxb-1".to_string())].into();
        let mut cx = Ctx::new(&env, MissingEnv::Error);
        let lit = Spanned::new(0..3, "xoxb-literal".to_string());
        assert!(cx.secret("token", &lit).is_none());
        let ok = Spanned::new(0..3, "${TOK}".to_string());
        assert_eq!(cx.secret("token", &ok).unwrap().expose(), "xoxb-1");
        let missing = Spanned::new(0..3, "${NOPE}".to_string());
        cx.secret("token", &missing);
        let (problems, redactor) = cx.finish();
        assert_eq!(problems.len(), 2);
        assert!(problems[0].message.contains("secrets don't belong"));
        assert!(!problems[0].message.contains("xoxb-literal"));
        assert!(problems[1].message.contains("NOPE is not set"));
        assert_eq!(redactor.redact("a xoxb-1 b"), "a [redacted] b");
    }

    #[test]
    fn url_shape_is_checked_without_echoing_value() {
        let env = HashMap::<String, String>::new();
        let mut cx = Ctx::new(&env, MissingEnv::Warn);
        assert!(
            cx.url("url", &Spanned::new(0..1, "ftp://x".into()), false)
                .is_none()
        );
        assert!(
            cx.url("url", &Spanned::new(0..1, "https://h/${P}".into()), false)
                .is_some()
        );
        assert!(
            cx.url(
                "url",
                &Spanned::new(0..1, "http://127.0.0.1:9/x".into()),
                false
            )
            .is_some()
        );
        assert!(!cx.problems()[0].message.contains("ftp"));
    }
}
