//! Credentials: the gateway keys clients present, and the admin key.
//!
//! Gateway keys are issued by the operator (`npm run keygen`), and the
//! gateway stores only their SHA-256 digests: in a Worker secret (a JSON list,
//! read once per isolate) and, for keys that must be revocable without a
//! redeploy, in KV under `sy:v1:key:<hex digest>`. A presented key is hashed
//! and compared with every stored digest in constant time. A key may be
//! scoped to some routes.

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use std::rc::Rc;

pub const KEY_PREFIX_KV: &str = "sy:v1:key:";

/// A SHA-256 digest.
pub type Digest = [u8; 32];

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

/// SHA-256 of a key (no allocation).
pub fn digest(key: &str) -> Digest {
    Sha256::digest(key.as_bytes()).into()
}

/// A digest as lower-case hex (KV keys, keygen's output).
pub fn hex(d: &Digest) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(64);
    for b in d {
        for nibble in [b >> 4, b & 0xf] {
            s.push(HEX.get(usize::from(nibble)).map_or('0', |&c| char::from(c)));
        }
    }
    s
}

/// SHA-256 of a key, as lower-case hex.
pub fn hash_key(key: &str) -> String {
    hex(&digest(key))
}

/// Reads 64 hex digits (either case) as a digest.
pub fn parse_hex(s: &str) -> Option<Digest> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
        let [hi, lo] = pair else { return None };
        let hi = char::from(*hi).to_digit(16)?;
        let lo = char::from(*lo).to_digit(16)?;
        *byte = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

/// One gateway key, as stored (never the key itself): read with
/// [`KeyEntry::read`] from a KV value or from an entry of the secret's list
/// ([`GatewayKeys::parse`]), whose errors never quote what it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyEntry {
    /// Who the key is for (logs and rate limits use it).
    pub name: String,
    /// SHA-256 of the key, hex.
    pub sha256: String,
    /// Routes the key may use; all when absent.
    pub routes: Option<Vec<String>>,
    /// A revoked key (KV entries) is refused.
    pub revoked: bool,
}

/// The keys from the Worker secret: each entry with its digest.
#[derive(Debug, Clone, Default)]
pub struct GatewayKeys {
    entries: Vec<(Digest, Rc<KeyEntry>)>,
}

const ENTRY_FIELDS: [&str; 4] = ["name", "sha256", "routes", "revoked"];

/// What a value that should have been an entry's hash, or the whole secret,
/// may be instead: the key itself. Said without quoting it.
fn key_hint(s: &str) -> &'static str {
    let s = s.trim().trim_matches('"');
    if well_formed(s) {
        " (this looks like a key itself: store its SHA-256, as `npm run keygen` prints it, never the key)"
    } else {
        ""
    }
}

impl KeyEntry {
    pub fn allows(&self, route: &str) -> bool {
        self.routes.as_ref().is_none_or(|r| r.iter().any(|x| x == route))
    }

    /// Reads one entry (of the secret's list, or a KV value). The error names
    /// the field that is wrong, never what it holds.
    pub fn read(v: &Value) -> Result<KeyEntry, String> {
        let Some(map) = v.as_object() else {
            return Err("not an object {name, sha256, routes?}".to_owned());
        };
        if let Some(field) = map.keys().find(|k| !ENTRY_FIELDS.contains(&k.as_str())) {
            // A field name is shown only when it cannot be a key (keys are at
            // least 16 characters): a typo such as `sha265` is.
            return Err(if field.len() < 16 && field.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                format!("unknown field `{field}` (the fields are name, sha256, routes, revoked)")
            } else {
                "unknown field (the fields are name, sha256, routes, revoked)".to_owned()
            });
        }
        let text = |name: &str, wrong: &str| match map.get(name) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(format!("`{name}` {wrong}")),
            None => Err(format!("`{name}` is missing")),
        };
        let name = text("name", "must be a string")?;
        let sha256 = text("sha256", "must be 64 hex digits")?;
        let routes = match map.get("routes") {
            None | Some(Value::Null) => None,
            Some(Value::Array(list)) => Some(
                list.iter()
                    .map(|r| r.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .ok_or("`routes` must be a list of route names")?,
            ),
            Some(_) => return Err("`routes` must be a list of route names".to_owned()),
        };
        let revoked = match map.get("revoked") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err("`revoked` must be true or false".to_owned()),
        };
        Ok(KeyEntry { name, sha256, routes, revoked })
    }
}

impl GatewayKeys {
    /// Parses the secret's JSON list. An error names the entry (counting
    /// from 0) and the field that is wrong, never what the secret holds: a
    /// key pasted there by mistake must not end up in a response or a log.
    pub fn parse(json: &str) -> Result<GatewayKeys, String> {
        // serde_json's own messages are never shown: they quote the value.
        let tree: Value = serde_json::from_str(json)
            .map_err(|e| format!("not valid JSON (line {}, column {}){}", e.line(), e.column(), key_hint(json)))?;
        let Value::Array(list) = tree else {
            return Err(format!("not a JSON list of {{name, sha256, routes?}} entries{}", key_hint(json)));
        };
        let mut entries = Vec::with_capacity(list.len());
        for (i, v) in list.iter().enumerate() {
            let mut e = KeyEntry::read(v).map_err(|m| format!("entry {i}: {m}"))?;
            if e.name.trim().is_empty() {
                return Err(format!("entry {i}: `name` must be a non-empty string"));
            }
            let Some(digest) = parse_hex(&e.sha256) else {
                return Err(format!("entry {i}: `sha256` must be 64 hex digits{}", key_hint(&e.sha256)));
            };
            e.sha256.make_ascii_lowercase();
            entries.push((digest, Rc::new(e)));
        }
        Ok(GatewayKeys { entries })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry whose digest matches, comparing with every entry so the
    /// time taken does not depend on which one (if any) matches.
    pub fn find(&self, digest: &Digest) -> Option<&Rc<KeyEntry>> {
        let mut found = None;
        for (d, e) in &self.entries {
            if constant_time_eq(d, digest) && found.is_none() {
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
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(hash_key("abc"), abc);
        assert_eq!(parse_hex(abc), Some(digest("abc")));
        assert_eq!(parse_hex(&abc.to_uppercase()), Some(digest("abc")));
        assert_eq!(parse_hex(&abc[..63]), None);
        assert_eq!(parse_hex(&format!("{}g", &abc[..63])), None);
    }

    #[test]
    fn finds_keys_by_hash_and_checks_scope() {
        let json = format!(
            r#"[{{"name":"app","sha256":"{}","routes":["chat"]}},{{"name":"ops","sha256":"{}"}}]"#,
            hash_key("sy_app"),
            hash_key("sy_ops").to_uppercase()
        );
        let keys = GatewayKeys::parse(&json).unwrap();
        let app = keys.find(&digest("sy_app")).unwrap();
        assert_eq!(app.name, "app");
        assert!(app.allows("chat") && !app.allows("smart"));
        let ops = keys.find(&digest("sy_ops")).unwrap();
        assert!(ops.allows("anything"));
        assert_eq!(ops.sha256, hash_key("sy_ops"), "stored in lower case");
        assert!(keys.find(&digest("sy_nope")).is_none());
    }

    /// A gateway key pasted into the secret by mistake, in every shape an
    /// operator might paste it: the error says where, never what.
    #[test]
    fn a_bad_secret_is_explained_without_its_content() {
        let key = "sy_R4nd0mPastedKey_0123456789abcdefghijklmnopq";
        let h = hash_key("sy_other");
        let cases: Vec<(String, &str)> = vec![
            (key.to_owned(), "not valid JSON"),
            (format!("\"{key}\""), "looks like a key"),
            (format!("[\"{key}\"]"), "entry 0: not an object"),
            (format!(r#"[{{"name":"ok","sha256":"{h}"}},{{"name":"x","sha256":"{key}"}}]"#), "entry 1: `sha256`"),
            (format!(r#"[{{"name":"{key}","sha256":"{key}"}}]"#), "entry 0: `sha256` must be 64 hex digits"),
            (format!(r#"[{{"name":"x","sha256":"{h}","routes":"{key}"}}]"#), "entry 0: `routes`"),
            (format!(r#"[{{"name":"x","sha256":"{h}","routes":["chat",{{"{key}":1}}]}}]"#), "entry 0: `routes`"),
            (format!(r#"[{{"name":"x","sha256":"{h}","revoked":"{key}"}}]"#), "entry 0: `revoked`"),
            (format!(r#"[{{"name":"x","{key}":"{h}"}}]"#), "entry 0: unknown field (the fields"),
            (format!(r#"[{{"name":"x","key":"{key}"}}]"#), "entry 0: unknown field `key`"),
            (format!(r#"[{{"name":["{key}"],"sha256":"{h}"}}]"#), "entry 0: `name` must be"),
            (format!(r#"{{"app":"{key}"}}"#), "not a JSON list"),
            (format!("[{{\"name\":\"x\",\"sha256\":\"{key}"), "not valid JSON"),
        ];
        for (secret, expected) in cases {
            let e = GatewayKeys::parse(&secret).unwrap_err();
            assert!(e.contains(expected), "{secret}: {e}");
            assert!(!e.contains("sy_R4nd0m"), "{secret}: {e}");
            assert!(!e.contains("0123456789abcdef"), "{secret}: {e}");
        }
        assert!(GatewayKeys::parse(r#"[{"name":"x","sha256":"00"}]"#).unwrap_err().contains("64 hex digits"));
        assert!(!GatewayKeys::parse(r#"[{"name":"x","sha256":"00"}]"#).unwrap_err().contains("looks like a key"));
        assert!(GatewayKeys::parse(r#"[{"sha256":"00"}]"#).unwrap_err().contains("`name` is missing"));
    }
}
