//! Building blocks of the matcher's indexes: deduplicated glob sets and a
//! bounded read-mostly cache.

use std::collections::HashMap;
use std::fmt;
use std::sync::{PoisonError, RwLock};

use globset::{Candidate, Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use serde_spanned::Spanned;

use crate::config::Problem;

/// Globs per [`GlobSet`]: globset compiles wildcard globs of one set into one
/// regex with a size limit, so a huge config is split to stay under it.
const CHUNK: usize = 1024;

/// Entries per cache. Category paths and tags of one forum are far fewer;
/// the bound only keeps a flood of made-up names from growing memory.
const CACHE_CAP: usize = 8192;

/// Collects distinct globs, each compiled once whatever the number of rules
/// using it.
///
/// Globs and inputs are lower-cased and matched case-sensitively rather than
/// with globset's case-insensitive mode: that mode sends every glob, literal
/// ones included, to the regex engine, while lower-cased literal and prefix
/// globs (`support`, `support/**`) get globset's hash and prefix strategies.
#[derive(Default)]
pub(super) struct GlobInterner {
    ids: HashMap<String, u32>,
    texts: Vec<String>,
    globs: Vec<Glob>,
}

impl GlobInterner {
    /// The id of the glob, or `None` after reporting why it is invalid.
    pub(super) fn intern(
        &mut self,
        value: &Spanned<String>,
        what: &str,
        problems: &mut Vec<Problem>,
    ) -> Option<u32> {
        let text = value.get_ref().to_lowercase();
        if let Some(&id) = self.ids.get(&text) {
            return Some(id);
        }
        match GlobBuilder::new(&text).literal_separator(true).build() {
            Ok(glob) => {
                let Ok(id) = u32::try_from(self.globs.len()) else {
                    problems.push(Problem::error(
                        Some(value.span()),
                        format!("too many {what} globs"),
                    ));
                    return None;
                };
                self.globs.push(glob);
                self.texts.push(text.clone());
                self.ids.insert(text, id);
                Some(id)
            }
            Err(e) => {
                problems.push(Problem::error(
                    Some(value.span()),
                    format!("invalid {what} glob `{}`: {}", value.get_ref(), e.kind()),
                ));
                None
            }
        }
    }

    /// Lower-cased glob texts, by id.
    pub(super) fn texts(&self) -> &[String] {
        &self.texts
    }

    pub(super) fn build(self, what: &str, problems: &mut Vec<Problem>) -> GlobIndex {
        let mut sets = Vec::new();
        for chunk in self.globs.chunks(CHUNK) {
            let mut builder = GlobSetBuilder::new();
            for glob in chunk {
                builder.add(glob.clone());
            }
            match builder.build() {
                Ok(set) => sets.push(set),
                Err(e) => problems.push(Problem::error(
                    None,
                    format!("cannot compile the {what} globs together: {e}"),
                )),
            }
        }
        GlobIndex {
            sets,
            len: self.globs.len(),
        }
    }
}

/// Distinct globs, matched together; glob ids are positions in the interner.
pub(super) struct GlobIndex {
    sets: Vec<GlobSet>,
    len: usize,
}

impl GlobIndex {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Ids of the globs matching `text` (already lower-cased), ascending.
    pub(super) fn matches(&self, text: &str) -> Vec<u32> {
        let candidate = Candidate::new(text);
        let mut hits = Vec::new();
        let mut out = Vec::new();
        for (chunk, set) in self.sets.iter().enumerate() {
            set.matches_candidate_into(&candidate, &mut hits);
            out.extend(hits.iter().map(|&i| (chunk * CHUNK + i) as u32));
        }
        out
    }
}

impl fmt::Debug for GlobIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GlobIndex").field("len", &self.len).finish()
    }
}

/// String-keyed memo of a pure function, shared by all routing threads.
pub(super) struct BoundedCache<V> {
    map: RwLock<HashMap<String, V>>,
}

impl<V> Default for BoundedCache<V> {
    fn default() -> Self {
        Self {
            map: RwLock::new(HashMap::new()),
        }
    }
}

impl<V: Clone> BoundedCache<V> {
    pub(super) fn get_or_insert_with(&self, key: &str, make: impl FnOnce() -> V) -> V {
        // A panic elsewhere cannot leave a half-written memo of a pure
        // function, so a poisoned lock is still good to use.
        if let Some(v) = self
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
        {
            return v.clone();
        }
        let value = make();
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        if map.len() < CACHE_CAP {
            map.insert(key.to_string(), value.clone());
        }
        value
    }
}

impl<V> fmt::Debug for BoundedCache<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = self
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("BoundedCache").field("len", &len).finish()
    }
}
