//! `discourse-relay doctor`: online, read-only checks of a loaded config.
//! Each chat's [`crate::providers::probe::Probe`] is run through delivery's
//! [`Sender`] (the same client, TLS, timeouts and answer cap as sending), and
//! each forum used by the checked chats is asked what its API key may see
//! and how its webhooks are set up ([`forum`]).
//!
//! Nothing here posts, edits or deletes anything, or changes the forum.
//! Every text of a [`Check`] has passed the config's `Redactor`: a platform
//! that echoes a token in its answer cannot put it on the screen.

pub mod forum;

use serde::Serialize;

use crate::config::env::Redactor;
use crate::delivery::send::Sender;
use crate::pipeline::Pipeline;
use crate::providers::HttpResponse;
use crate::providers::probe::{Judgement, Probe, Verdict};

/// One reported check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub verdict: Verdict,
    /// `chat` or `forum`.
    pub scope: &'static str,
    /// The chat's name, or the forum's.
    pub name: String,
    /// The provider kind (`slack`), or `discourse`.
    pub kind: String,
    /// Where it points (never a secret: `Destination::target`, the forum's URL).
    pub target: String,
    /// What was checked.
    pub what: String,
    /// What the platform answered (its words, redacted).
    pub answer: String,
    /// What to do; empty when nothing needs doing.
    pub hint: String,
}

impl Check {
    /// `PASS chat NAME (kind, target): what: answer — hint`.
    pub fn line(&self) -> String {
        let mut out = format!(
            "{} {} {} ({}, {}): {}",
            self.verdict.as_str(),
            self.scope,
            self.name,
            self.kind,
            self.target,
            self.what
        );
        if !self.answer.is_empty() {
            out.push_str(": ");
            out.push_str(&self.answer);
        }
        if !self.hint.is_empty() {
            out.push_str(" — ");
            out.push_str(&self.hint);
        }
        out
    }
}

/// Who a check is about, before its outcome is known.
pub(crate) struct Subject<'a> {
    pub scope: &'static str,
    pub name: &'a str,
    pub kind: &'a str,
    pub target: &'a str,
    pub redactor: &'a Redactor,
}

impl Subject<'_> {
    pub(crate) fn check(&self, what: &str, j: Judgement) -> Check {
        let r = |s: &str| self.redactor.redact(s);
        Check {
            verdict: j.verdict,
            scope: self.scope,
            name: r(self.name),
            kind: self.kind.to_string(),
            target: r(self.target),
            what: r(what),
            answer: r(&j.answer),
            hint: r(&j.hint),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DoctorError {
    #[error("no chat named `{chat}` (chats: {known})")]
    UnknownChat { chat: String, known: String },
}

/// Runs every check of `only` (a chat's name) or of all chats, then of
/// their forums, in config order.
pub async fn run(
    p: &Pipeline,
    only: Option<&str>,
    sender: &Sender,
) -> Result<Vec<Check>, DoctorError> {
    let chats: Vec<usize> = match only {
        Some(name) => match p.chat_index(name) {
            Some(i) => vec![i],
            None => {
                let names: Vec<&str> = p.config.chats.iter().map(|c| c.name.as_str()).collect();
                return Err(DoctorError::UnknownChat {
                    chat: name.to_string(),
                    known: names.join(", "),
                });
            }
        },
        None => (0..p.config.chats.len()).collect(),
    };
    let redactor = &p.config.redactor;
    let mut out = Vec::new();
    for &i in &chats {
        let chat = &p.config.chats[i];
        let target = chat.destination.target();
        let subject = Subject {
            scope: "chat",
            name: &chat.name,
            kind: chat.destination.kind(),
            target: &target,
            redactor,
        };
        out.extend(run_probe(chat.destination.probe(), &subject, sender).await);
    }
    let mut forums: Vec<usize> = chats.iter().map(|&i| p.config.chats[i].forum).collect();
    forums.sort_unstable();
    forums.dedup();
    for f in forums {
        out.extend(forum::check(p, f).await);
    }
    Ok(out)
}

async fn run_probe(probe: Probe, subject: &Subject<'_>, sender: &Sender) -> Vec<Check> {
    match probe {
        Probe::Nothing(why) => {
            vec![subject.check("read-only check", Judgement::new(Verdict::Info, why, ""))]
        }
        Probe::Native(native) => native
            .run()
            .await
            .into_iter()
            .map(|c| subject.check(&c.what, c.judgement))
            .collect(),
        Probe::Http(steps) => {
            let mut out = Vec::new();
            for step in steps {
                let j = match sender.fetch(&step.request, subject.redactor).await {
                    Ok(resp) => (step.judge)(&resp),
                    Err(reason) => unreachable_platform(reason),
                };
                let failed = j.verdict == Verdict::Fail;
                out.push(subject.check(&step.what, j));
                // Later steps assume this one passed (a working token).
                if failed {
                    break;
                }
            }
            out
        }
    }
}

fn unreachable_platform(reason: String) -> Judgement {
    Judgement::fail(
        reason,
        "the platform could not be reached: check the URL, DNS, the proxy and the firewall",
    )
}

/// 0 when every check passed (or had nothing to check), 1 with warnings,
/// 2 with failures: `doctor` can gate a deploy.
pub fn exit_code(checks: &[Check]) -> u8 {
    match checks.iter().map(|c| c.verdict).max() {
        Some(Verdict::Fail) => 2,
        Some(Verdict::Warn) => 1,
        _ => 0,
    }
}

/// An answer as the forum gave it, for the judges shared with providers.
pub(crate) fn response(status: u16, body: Vec<u8>) -> HttpResponse {
    HttpResponse {
        status,
        headers: vec![],
        body,
    }
}
