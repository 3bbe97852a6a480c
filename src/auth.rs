//! Credentials: the gateway keys clients present, and the admin key.
//!
//! Gateway keys are issued by the operator (`npm run keygen`), and the
//! gateway stores only their SHA-256 hashes: in a Worker secret (a JSON list,
//! read once per isolate) and, for keys that must be revocable without a
//! redeploy, in KV under `sy:v1:key:<hash>`. A presented key is hashed and
//! compared with every stored hash in constant time. A key may be scoped to
//! some routes.

use serde::Deserialize;
use sha2::{Digest, Sha256};

pub const KEY_PREFIX_KV: &str = "sy:v1:key:";

/// Compares two secrets in time independent of where they differ (the
/// length may leak; the content does not).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let h = header?.trim();
    let (scheme, token) = h.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// A gateway key is 16 to 128 letters, digits, `_` and `-` (`npm run keygen`
/// makes `sy_` and 43 base64url characters: 32 random bytes); anything else
/// is refused before it costs a hash or a look-up.
pub fn well_formed(token: &str) -> bool {
    (16..=128).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// SHA-256 of a key, as lower-case hex.
pub fn hash_key(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut s = String::with_capacity(64);
    for b in digest {
        s.push(char::from_digit((b >> 4) as u32, 16).unwrap_or('0'));
        s.push(char::from_digit((b & 0xf) as u32, 16).unwrap_or('0'));
    }
    s
}

/// One gateway key, as stored (never the key itself).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// Who the key is for (logs and rate limits use it).
    pub name: String,
    /// SHA-256 of the key, hex.
    pub sha256: String,
    /// Routes the key may use; all when absent.
    #[serde(default)]
    pub routes: Option<Vec<String>>,
    /// A revoked key (KV entries) is refused.
    #[serde(default)]
    pub revoked: bool,
}

impl KeyEntry {
    pub fn allows(&self, route: &str) -> bool {
        self.routes.as_ref().is_none_or(|r| r.iter().any(|x| x == route))
    }
}

/// The keys from the Worker secret.
#[derive(Debug, Clone, Default)]
pub struct GatewayKeys {
    entries: Vec<KeyEntry>,
}

impl GatewayKeys {
    /// Parses the secret's JSON list; the error says what is wrong, never
    /// what the secret holds.
    pub fn parse(json: &str) -> Result<GatewayKeys, String> {
        let entries: Vec<KeyEntry> =
            serde_json::from_str(json).map_err(|e| format!("not a JSON list of {{name, sha256, routes?}}: {e}"))?;
        for (i, e) in entries.iter().enumerate() {
            if e.sha256.len() != 64 || !e.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("entry {i} (`{}`): sha256 must be 64 hex digits", e.name));
            }
        }
        Ok(GatewayKeys {
            entries: entries.into_iter().map(|e| KeyEntry { sha256: e.sha256.to_ascii_lowercase(), ..e }).collect(),
        })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry whose hash matches `hash`, comparing with every entry so the
    /// time taken does not depend on which one (if any) matches.
    pub fn find(&self, hash: &str) -> Option<&KeyEntry> {
        let mut found = None;
        for e in &self.entries {
            if constant_time_eq(e.sha256.as_bytes(), hash.as_bytes()) && found.is_none() {
                found = Some(e);
            }
        }
        found.filter(|e| !e.revoked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_secrets() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[test]
    fn reads_bearer_tokens() {
        assert_eq!(bearer(Some("Bearer k1")), Some("k1"));
        assert_eq!(bearer(Some("bearer  k1 ")), Some("k1"));
        assert_eq!(bearer(Some("Basic k1")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(None), None);
    }

    #[test]
    fn hashes_keys_with_sha256() {
        // sha256("abc"), from FIPS 180-2.
        assert_eq!(hash_key("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn finds_keys_by_hash_and_checks_scope() {
        let json = format!(
            r#"[{{"name":"app","sha256":"{}","routes":["chat"]}},{{"name":"ops","sha256":"{}"}}]"#,
            hash_key("sy_app"),
            hash_key("sy_ops").to_uppercase()
        );
        let keys = GatewayKeys::parse(&json).unwrap();
        let app = keys.find(&hash_key("sy_app")).unwrap();
        assert_eq!(app.name, "app");
        assert!(app.allows("chat") && !app.allows("smart"));
        let ops = keys.find(&hash_key("sy_ops")).unwrap();
        assert!(ops.allows("anything"));
        assert!(keys.find(&hash_key("sy_nope")).is_none());
    }

    #[test]
    fn a_bad_secret_is_explained_without_its_content() {
        let e = GatewayKeys::parse(r#"[{"name":"x","sha256":"sy_the_actual_key"}]"#).unwrap_err();
        assert!(e.contains("64 hex digits"));
        assert!(!e.contains("sy_the_actual_key"));
        assert!(GatewayKeys::parse("nope").is_err());
    }
}
