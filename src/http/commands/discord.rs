//! Discord interactions (the application's Interactions Endpoint URL),
//! verified with its public key: `X-Signature-Ed25519` is the hex Ed25519
//! signature of `X-Signature-Timestamp` followed by the raw body; failures get
//! 401 (Discord probes with bad signatures and drops endpoints that accept
//! them). PING is answered with PONG; the `/discourse` application command
//! (one string option, e.g. `command: status`, or subcommands) gets an
//! ephemeral message (type 4, flags 64) with mentions disabled.
//! See shared/providers.md §4.4.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::{Value, json};

use super::{Command, CommandError, auths, fresh, header, verbs, verified};
use crate::service::App;

/// `content` limit of a message.
const MAX_CONTENT: usize = 2000;

/// `flags` bit of an ephemeral reply (only the invoking user sees it).
const EPHEMERAL: u64 = 1 << 6;

/// Whether `signature_hex` is the Ed25519 signature of `timestamp || body`
/// under `public_key_hex`. Strict verification (no malleable signatures).
pub fn verify(public_key_hex: &str, timestamp: &str, body: &[u8], signature_hex: &str) -> bool {
    let key: Option<[u8; 32]> = hex::decode(public_key_hex.trim())
        .ok()
        .and_then(|k| k.try_into().ok());
    let sig: Option<[u8; 64]> = hex::decode(signature_hex.trim())
        .ok()
        .and_then(|s| s.try_into().ok());
    let (Some(key), Some(sig)) = (key, sig) else {
        return false;
    };
    let Ok(key) = VerifyingKey::from_bytes(&key) else {
        return false;
    };
    let mut msg = Vec::with_capacity(timestamp.len() + body.len());
    msg.extend_from_slice(timestamp.as_bytes());
    msg.extend_from_slice(body);
    key.verify_strict(&msg, &Signature::from_bytes(&sig))
        .is_ok()
}

pub async fn handle(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    match answer(&app, &headers, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// The verb text of an application command's data: the `discourse`
/// command's string options joined, or its subcommand's name and options.
fn command_text(data: &Value) -> String {
    fn words(options: &Value, out: &mut Vec<String>) {
        for o in options.as_array().into_iter().flatten() {
            match o["type"].as_u64() {
                // SUB_COMMAND, SUB_COMMAND_GROUP
                Some(1) | Some(2) => {
                    out.push(o["name"].as_str().unwrap_or("").to_string());
                    words(&o["options"], out);
                }
                _ => match &o["value"] {
                    Value::String(s) => out.push(s.clone()),
                    Value::Null => {}
                    v => out.push(v.to_string()),
                },
            }
        }
    }
    let mut out = Vec::new();
    words(&data["options"], &mut out);
    out.join(" ").trim().to_string()
}

async fn answer(app: &App, headers: &HeaderMap, body: &[u8]) -> Result<Response, CommandError> {
    let p = app.pipeline.load_full();
    let auths = auths(&p, "discord")?;
    let signature = header(headers, "x-signature-ed25519");
    let timestamp = header(headers, "x-signature-timestamp");
    if signature.is_empty() || timestamp.is_empty() {
        return Err(CommandError::Unauthorized(
            "missing X-Signature-Ed25519 or X-Signature-Timestamp",
        ));
    }
    let instances = verified(
        &auths,
        |a| verify(a.secret.expose(), timestamp, body, signature),
        "X-Signature-Ed25519 does not verify with any configured public_key",
    )?;
    // Checked after the signature, so the timestamp is the one Discord signed.
    if !fresh(timestamp) {
        return Err(CommandError::Unauthorized(
            "X-Signature-Timestamp is more than 5 minutes off: replayed or clock skew",
        ));
    }

    let i: Value = serde_json::from_slice(body)
        .map_err(|e| CommandError::BadRequest(format!("not an interaction: {e}")))?;
    match i["type"].as_u64() {
        Some(1) => return Ok(axum::Json(json!({"type": 1})).into_response()),
        Some(2) => {}
        _ => {
            return Err(CommandError::BadRequest(
                "only PING and application commands are handled".into(),
            ));
        }
    }
    let channel_id = i["channel_id"]
        .as_str()
        .or_else(|| i["channel"]["id"].as_str())
        .unwrap_or("")
        .to_string();
    if channel_id.is_empty() {
        return Err(CommandError::BadRequest(
            "application command without channel_id".into(),
        ));
    }
    let user = i["member"]["user"]["username"]
        .as_str()
        .or_else(|| i["user"]["username"].as_str())
        .unwrap_or("someone")
        .to_string();
    let channel_name = i["channel"]["name"].as_str().unwrap_or("");
    let cmd = Command {
        platform: "discord",
        instances,
        ids: vec![channel_id.clone()],
        place: if channel_name.is_empty() {
            format!("channel {channel_id}")
        } else {
            format!("#{channel_name} ({channel_id})")
        },
        user,
        text: command_text(&i["data"]),
        prefix: "/discourse command:",
        suggested_name: super::chat_name(channel_name, &format!("discord-{channel_id}")),
        target_toml: format!(
            "webhook_url = \"${{DISCORD_WEBHOOK_URL}}\"\ncommand_channels = [{}]\n",
            verbs::toml_str(&channel_id)
        ),
    };
    let reply = verbs::run(app, &p, &cmd).await;
    let content: String = reply.markdown().chars().take(MAX_CONTENT).collect();
    Ok(axum::Json(json!({
        "type": 4,
        "data": {
            "content": content,
            "flags": EPHEMERAL,
            "allowed_mentions": {"parse": []},
        },
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    #[test]
    fn verifies_timestamp_and_body_under_the_key() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let public = hex::encode(key.verifying_key().to_bytes());
        let sig = hex::encode(key.sign(b"1700000000{\"type\":1}").to_bytes());
        assert!(verify(&public, "1700000000", b"{\"type\":1}", &sig));
        assert!(!verify(&public, "1700000001", b"{\"type\":1}", &sig));
        assert!(!verify(&public, "1700000000", b"{\"type\":2}", &sig));
        let other = hex::encode(
            SigningKey::from_bytes(&[8u8; 32])
                .verifying_key()
                .to_bytes(),
        );
        assert!(!verify(&other, "1700000000", b"{\"type\":1}", &sig));
        assert!(!verify(&public, "1700000000", b"{\"type\":1}", "00"));
        assert!(!verify("zz", "1700000000", b"{\"type\":1}", &sig));
    }

    #[test]
    fn command_text_from_options_or_subcommands() {
        let d = json!({"name": "discourse", "options": [{"type": 3, "name": "command", "value": "watch c/support"}]});
        assert_eq!(command_text(&d), "watch c/support");
        let d = json!({"name": "discourse", "options": [{"type": 1, "name": "watch", "options": [{"type": 3, "name": "what", "value": "t/bug"}]}]});
        assert_eq!(command_text(&d), "watch t/bug");
        assert_eq!(command_text(&json!({"name": "discourse"})), "");
    }
}
