//! The one list of providers. Adding a platform is one line here.

use schemars::SchemaGenerator;

use super::Registration;
use super::{console, slack, webhook};

/// Every provider kind the relay knows, in the order docs list them.
pub static PROVIDERS: &[Registration] = &[
    console::REGISTRATION,
    webhook::REGISTRATION,
    slack::REGISTRATION,
    super::telegram::REGISTRATION,
    super::discord::REGISTRATION,
    super::mattermost::REGISTRATION,
    super::ntfy::REGISTRATION,
    super::gotify::REGISTRATION,
    super::pushover::REGISTRATION,
    super::lark::REGISTRATION,
    super::dingtalk::REGISTRATION,
    super::wecom::REGISTRATION,
    super::teams::REGISTRATION,
    super::googlechat::REGISTRATION,
    super::webex::REGISTRATION,
    super::groupme::REGISTRATION,
    super::matrix::REGISTRATION,
    super::gitter::REGISTRATION,
    super::zulip::REGISTRATION,
    super::rocketchat::REGISTRATION,
    super::mastodon::REGISTRATION,
    super::messenger::REGISTRATION,
    super::hipchat::REGISTRATION,
    super::xmpp::REGISTRATION,
    super::irc::REGISTRATION,
    super::smtp::REGISTRATION,
];

pub fn find(kind: &str) -> Option<&'static Registration> {
    PROVIDERS.iter().find(|r| r.kind == kind)
}

pub fn kinds() -> impl Iterator<Item = &'static str> {
    PROVIDERS.iter().map(|r| r.kind)
}

/// Field names a chat of `kind` may set beside the common ones (computed
/// once per kind: loading a 10k-chat config asks for each chat).
pub fn target_keys(reg: &Registration) -> Vec<String> {
    static CACHE: std::sync::OnceLock<std::collections::HashMap<&'static str, Vec<String>>> =
        std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(|| {
        PROVIDERS
            .iter()
            .map(|r| (r.kind, target_keys_uncached(r)))
            .collect()
    });
    cache
        .get(reg.kind)
        .cloned()
        .unwrap_or_else(|| target_keys_uncached(reg))
}

fn target_keys_uncached(reg: &Registration) -> Vec<String> {
    let mut g = SchemaGenerator::default();
    let schema = (reg.target_schema)(&mut g);
    let mut root = serde_json::to_value(&schema).unwrap_or_default();
    // The generator keeps definitions aside; inline a `$ref` to read properties.
    if let Some(name) = root
        .get("$ref")
        .and_then(|r| r.as_str())
        .and_then(|r| r.rsplit('/').next())
        .map(str::to_string)
        && let Some(def) = g.definitions().get(&name)
    {
        root = def.clone();
    }
    root.get("properties")
        .and_then(|p| p.as_object())
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_unique_and_targets_known() {
        let mut k: Vec<_> = kinds().collect();
        k.sort();
        k.dedup();
        assert_eq!(k.len(), PROVIDERS.len());
        let slack = find("slack").unwrap();
        assert_eq!(target_keys(slack), vec!["channel", "webhook_url"]);
        assert!(target_keys(find("console").unwrap()).is_empty());
    }

    /// `Destination::kind` is written in each provider beside its
    /// `REGISTRATION`; nothing else ties the two. The classify fuzz config
    /// names each chat after its provider kind (`slack-hook`), so every
    /// destination bound there must report that kind, a registered one.
    #[test]
    fn every_destination_reports_its_registration_kind() {
        let chats = crate::fuzzing::chats();
        for (name, dest) in chats {
            let declared = name.split('-').next().unwrap_or(name);
            assert_eq!(dest.kind(), declared, "chat `{name}`");
            assert!(find(dest.kind()).is_some(), "chat `{name}`");
        }
        for reg in PROVIDERS {
            assert!(
                chats.iter().any(|(_, d)| d.kind() == reg.kind),
                "{}",
                reg.kind
            );
        }
    }
}
