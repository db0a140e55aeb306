//! The JSON Schema of `subscriptions.toml`, generated from the Rust types
//! (the model here, and each provider's settings and target types), so the
//! schema editors and CI use can never drift from what the loader accepts.

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use super::load::COMMAND_KEYS;
use crate::config::model;
use crate::ingest::families;
use crate::providers::registry::PROVIDERS;

/// The whole schema, as pretty JSON text with a trailing newline.
pub fn schema_text() -> String {
    let mut s = serde_json::to_string_pretty(&schema()).unwrap_or_default();
    s.push('\n');
    s
}

pub fn schema() -> Value {
    let mut g = SchemaSettings::draft2020_12().into_generator();
    let discourse = g.subschema_for::<model::Discourse>();
    let server = g.subschema_for::<model::Server>();
    let templates = g.subschema_for::<model::Templates>();
    let chat_ref = g.subschema_for::<model::Chat>();
    let commands_ref = g.subschema_for::<model::CommandSettings>();
    let mut provider_variants = Vec::new();
    let mut target_props = Map::new();
    for reg in PROVIDERS {
        let settings = (reg.settings_schema)(&mut g);
        provider_variants.push((reg, to_value(&settings)));
        let target = (reg.target_schema)(&mut g);
        target_props.insert(reg.kind.to_string(), to_value(&target));
    }
    let mut defs: Map<String, Value> = g.take_definitions(true).into_iter().collect();

    // A provider table is one kind's settings plus `kind` (which defaults to
    // the table name, so it stays optional), plus its chat command key if any.
    let kinds: Vec<&str> = PROVIDERS.iter().map(|r| r.kind).collect();
    let command_props = resolve(&defs, &to_value(&commands_ref))
        .get("properties")
        .cloned()
        .unwrap_or_default();
    let variants: Vec<Value> = provider_variants
        .into_iter()
        .map(|(reg, r)| {
            let mut obj = resolve(&defs, &r);
            if obj.get("properties").is_none() {
                obj["properties"] = json!({});
            }
            if let Some(p) = obj.get_mut("properties").and_then(Value::as_object_mut) {
                p.insert(
                    "kind".into(),
                    json!({"const": reg.kind, "description": format!("`{}`: {}", reg.kind, reg.about)}),
                );
                for (key, owner) in COMMAND_KEYS {
                    if *owner == reg.kind
                        && let Some(v) = command_props.get(*key)
                    {
                        p.insert((*key).into(), v.clone());
                    }
                }
            }
            obj["additionalProperties"] = json!(false);
            obj["title"] = json!(format!("{} provider", reg.kind));
            obj
        })
        .collect();

    // A chat has the common fields plus its provider's target fields. Which
    // provider is known only by name, so the schema allows the union and the
    // loader checks the exact set.
    let mut chat = resolve(&defs, &to_value(&chat_ref));
    // field -> [(kind, schema)], in registry order.
    let mut fields: std::collections::BTreeMap<String, Vec<(&str, Value)>> = Default::default();
    for (kind, t) in &target_props {
        let t = resolve(&defs, t);
        if let Some(tp) = t.get("properties").and_then(Value::as_object) {
            for (k, v) in tp {
                fields
                    .entry(k.clone())
                    .or_default()
                    .push((kind.as_str(), v.clone()));
            }
        }
    }
    if let Some(p) = chat.get_mut("properties").and_then(Value::as_object_mut) {
        for (field, uses) in fields {
            // One description naming every provider that uses the field.
            let description = uses
                .iter()
                .map(
                    |(kind, v)| match v.get("description").and_then(Value::as_str) {
                        Some(d) => format!("{kind}: {d}"),
                        None => kind.to_string(),
                    },
                )
                .collect::<Vec<_>>()
                .join(" | ");
            let mut variants: Vec<Value> = Vec::new();
            for (_, v) in &uses {
                let mut v = v.clone();
                if let Some(o) = v.as_object_mut() {
                    o.remove("description");
                }
                if !variants.contains(&v) {
                    variants.push(v);
                }
            }
            let mut merged = if variants.len() == 1 {
                variants.remove(0)
            } else {
                json!({ "anyOf": variants })
            };
            merged["description"] = json!(description);
            p.entry(field).or_insert(merged);
        }
    }
    chat["additionalProperties"] = json!(false);

    // A rule's family is one of the registry's names.
    if let Some(family) = defs
        .get_mut("Rule")
        .and_then(|r| r["properties"].get_mut("family"))
    {
        let names: Vec<&str> = std::iter::once("posts")
            .chain(families::FAMILIES.iter().map(|f| f.name))
            .collect();
        family["type"] = json!("string");
        family["enum"] = json!(names);
    }

    // Every table the loader reads rejects unknown keys; say so in the schema.
    for def in defs.values_mut() {
        close_objects(def);
    }
    let mut root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "discourse-relay subscriptions",
        "description": "Which chats receive which Discourse events. See README.md.",
        "type": "object",
        "additionalProperties": false,
        "required": ["discourse"],
        "properties": {
            "discourse": to_value(&discourse),
            "forums": {
                "description": "More forums served by this relay, [forums.NAME], each like [discourse]; chats pick one with `forum = \"NAME\"`. Requests choose by X-Discourse-Instance.",
                "type": "object",
                "additionalProperties": to_value(&discourse),
            },
            "server": to_value(&server),
            "providers": {
                "description": format!("Provider instances, [providers.NAME]; `kind` defaults to NAME. Kinds: {}.", kinds.join(", ")),
                "type": "object",
                "additionalProperties": {"anyOf": variants},
            },
            "templates": to_value(&templates),
            "chat": {
                "description": "The chats, [[chat]].",
                "type": "array",
                "items": chat,
            },
        },
    });
    // Keep only the definitions still referenced (the others were inlined).
    let mut text = root.to_string();
    let mut kept = Map::new();
    loop {
        let before = kept.len();
        for (k, v) in &defs {
            if !kept.contains_key(k) && text.contains(&format!("\"#/$defs/{k}\"")) {
                text.push_str(&v.to_string());
                kept.insert(k.clone(), v.clone());
            }
        }
        if kept.len() == before {
            break;
        }
    }
    if !kept.is_empty() {
        root["$defs"] = Value::Object(kept);
    }
    root
}

fn to_value(s: &schemars::Schema) -> Value {
    serde_json::to_value(s).unwrap_or(Value::Null)
}

/// Follows a `$ref` into the definitions (one level), returning a copy.
fn resolve(defs: &Map<String, Value>, v: &Value) -> Value {
    match v
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
        .and_then(|name| defs.get(name))
    {
        Some(d) => d.clone(),
        None => v.clone(),
    }
}

fn close_objects(v: &mut Value) {
    match v {
        Value::Object(o) => {
            if o.contains_key("properties") && !o.contains_key("additionalProperties") {
                o.insert("additionalProperties".into(), json!(false));
            }
            for x in o.values_mut() {
                close_objects(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(close_objects),
        _ => {}
    }
}
