//! SASL for the client login: PLAIN (RFC 4616) and SCRAM-SHA-1 (RFC 5802,
//! without channel binding: `n,,`). SCRAM is preferred when offered: the
//! password never crosses the wire and the server proves it knows it too.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha1::{Digest, Sha1};

type HmacSha1 = Hmac<Sha1>;

/// Iteration counts above this are refused: the server chooses the count,
/// and a hostile one could make the relay spin (prosody uses 10 000 by
/// default, RFC 7677 suggests 4096+). The login computes it off the
/// runtime (`spawn_blocking` in `conn.rs`).
pub const MAX_ITERATIONS: u32 = 100_000;

/// `authcid` and password as PLAIN's initial response, base64.
pub fn plain(user: &str, password: &str) -> String {
    B64.encode(format!("\0{user}\0{password}"))
}

/// A SCRAM-SHA-1 exchange in progress.
pub struct Scram {
    client_first_bare: String,
    nonce: String,
    password: String,
    server_signature: Option<[u8; 20]>,
}

impl Scram {
    /// Starts with a fresh nonce from the OS's random source; returns the
    /// exchange and the initial response (base64). `Err` when the OS has
    /// no randomness to give.
    pub fn start(user: &str, password: &str) -> Result<(Self, String), String> {
        let mut bytes = [0u8; 18];
        getrandom::fill(&mut bytes)
            .map_err(|e| format!("no randomness for the SCRAM nonce: {e}"))?;
        // Base64 is printable and has no ',' (RFC 5802 nonce syntax).
        Ok(Self::with_nonce(user, password, &B64.encode(bytes)))
    }

    pub fn with_nonce(user: &str, password: &str, nonce: &str) -> (Self, String) {
        let user = user.replace('=', "=3D").replace(',', "=2C");
        let bare = format!("n={user},r={nonce}");
        let first = format!("n,,{bare}");
        (
            Self {
                client_first_bare: bare,
                nonce: nonce.to_string(),
                password: password.to_string(),
                server_signature: None,
            },
            B64.encode(first),
        )
    }

    /// Answers the server's challenge (base64 `r=..,s=..,i=..`) with the
    /// client-final message (base64).
    pub fn respond(&mut self, challenge_b64: &str) -> Result<String, String> {
        let raw = B64
            .decode(challenge_b64.trim())
            .map_err(|_| "the SCRAM challenge is not base64".to_string())?;
        let server_first =
            String::from_utf8(raw).map_err(|_| "the SCRAM challenge is not UTF-8".to_string())?;
        let field = |k: &str| {
            server_first
                .split(',')
                .find_map(|p| p.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
        };
        let (Some(nonce), Some(salt), Some(iter)) = (field("r"), field("s"), field("i")) else {
            return Err("the SCRAM challenge lacks r, s or i".into());
        };
        if !nonce.starts_with(&self.nonce) || nonce.len() <= self.nonce.len() {
            return Err("the server's SCRAM nonce does not extend ours".into());
        }
        let salt = B64
            .decode(salt)
            .map_err(|_| "the SCRAM salt is not base64".to_string())?;
        let iterations: u32 = iter
            .parse()
            .ok()
            .filter(|&i| i >= 1)
            .ok_or_else(|| format!("unacceptable SCRAM iteration count {iter:?}"))?;
        if iterations > MAX_ITERATIONS {
            return Err(format!(
                "the server asks for {iterations} SCRAM iterations; the relay computes at most {MAX_ITERATIONS} (lower the server's iteration count)"
            ));
        }
        let salted =
            pbkdf2::pbkdf2_hmac_array::<Sha1, 20>(self.password.as_bytes(), &salt, iterations);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key: [u8; 20] = Sha1::digest(client_key).into();
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let signature = hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature.iter())
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = hmac(&salted, b"Server Key");
        self.server_signature = Some(hmac(&server_key, auth_message.as_bytes()));
        Ok(B64.encode(format!("{without_proof},p={}", B64.encode(proof))))
    }

    /// Checks the `v=` the server sent with `<success>` (base64).
    pub fn verify(&self, success_b64: &str) -> Result<(), String> {
        let expected = self
            .server_signature
            .ok_or_else(|| "the server ended SCRAM before its challenge".to_string())?;
        let raw = B64
            .decode(success_b64.trim())
            .map_err(|_| "the SCRAM success data is not base64".to_string())?;
        let text = String::from_utf8_lossy(&raw);
        let v = text
            .split(',')
            .find_map(|p| p.strip_prefix("v="))
            .ok_or_else(|| "the server sent no SCRAM signature".to_string())?;
        let got = B64
            .decode(v)
            .map_err(|_| "the SCRAM signature is not base64".to_string())?;
        if got.as_slice() == expected.as_slice() {
            Ok(())
        } else {
            Err("the server's SCRAM signature is wrong (not the real server?)".into())
        }
    }
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 20] {
    let mut mac = <HmacSha1 as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_initial_response() {
        assert_eq!(
            B64.decode(plain("relaybot", "pa ss")).unwrap(),
            b"\0relaybot\0pa ss"
        );
    }

    /// The example exchange of RFC 5802 §5.
    #[test]
    fn scram_sha1_matches_rfc_5802() {
        let (mut s, first) = Scram::with_nonce("user", "pencil", "fyko+d2lbbFgONRv9qkxdawL");
        assert_eq!(
            String::from_utf8(B64.decode(first).unwrap()).unwrap(),
            "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL"
        );
        let challenge =
            B64.encode("r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096");
        let fin = s.respond(&challenge).unwrap();
        assert_eq!(
            String::from_utf8(B64.decode(fin).unwrap()).unwrap(),
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
        );
        assert!(
            s.verify(&B64.encode("v=rmF9pqV8S7suAoZWja4dJRkFsKQ="))
                .is_ok()
        );
        assert!(
            s.verify(&B64.encode("v=AAAApqV8S7suAoZWja4dJRkFsKQ="))
                .is_err()
        );
    }

    #[test]
    fn scram_refuses_bad_challenges() {
        let (mut s, _) = Scram::with_nonce("u", "p", "abc");
        for bad in [
            "r=xyz123,s=QSXCR+Q6sek8bf92,i=4096",
            "r=abc,s=QSXCR+Q6sek8bf92,i=4096",
            "r=abcd,s=QSXCR+Q6sek8bf92,i=0",
            "r=abcd,s=QSXCR+Q6sek8bf92,i=99999999",
            "r=abcd,i=4096",
        ] {
            assert!(s.respond(&B64.encode(bad)).is_err(), "{bad}");
        }
        // Above the cap: refused before any work, saying why.
        let err = s
            .respond(&B64.encode("r=abcd,s=QSXCR+Q6sek8bf92,i=100001"))
            .unwrap_err();
        assert!(err.contains("at most 100000"), "{err}");
        let (_, first) = Scram::with_nonce("a,b=c", "p", "n");
        assert_eq!(
            String::from_utf8(B64.decode(first).unwrap()).unwrap(),
            "n,,n=a=2Cb=3Dc,r=n"
        );
    }

    #[test]
    fn nonces_are_fresh_and_valid() {
        let (a, first) = Scram::start("u", "p").unwrap();
        let (b, _) = Scram::start("u", "p").unwrap();
        assert_ne!(a.nonce, b.nonce);
        assert_eq!(a.nonce.len(), 24);
        assert!(!a.nonce.contains(','));
        let first = String::from_utf8(B64.decode(first).unwrap()).unwrap();
        assert_eq!(first, format!("n,,n=u,r={}", a.nonce));
    }
}
