//! Checking a request's gateway key: the keys from the Worker secret (read
//! once per isolate), keys stored in KV for revocation without a redeploy,
//! and the caches of KV look-ups (found keys and unknown ones apart, each a
//! small LRU, so a flood of random tokens cannot push the real keys out).

use crate::api::ApiError;
use crate::auth::{Digest, GatewayKeys, KeyEntry};
use crate::config::Security;
use crate::http::{unauthorized, Reply};
use std::cell::RefCell;
use std::rc::Rc;

/// Who is calling.
#[derive(Debug, Clone, PartialEq)]
pub enum Caller {
    Anonymous,
    /// Shared with the key list or the cache it came from (no copy per request).
    Key(Rc<KeyEntry>),
}

impl Caller {
    /// The key's name (never the key), or `anonymous`.
    pub fn name(&self) -> &str {
        match self {
            Caller::Anonymous => "anonymous",
            Caller::Key(k) => &k.name,
        }
    }
    pub fn allows(&self, route: &str) -> bool {
        match self {
            Caller::Anonymous => true,
            Caller::Key(k) => k.allows(route),
        }
    }
}

/// The digest of a presented key that the secret does not hold, to be
/// looked up in KV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyHash(Digest);

impl KeyHash {
    /// The KV key of its entry: `sy:v1:key:<hex>`.
    pub fn kv_key(&self) -> String {
        format!("{}{}", crate::auth::KEY_PREFIX_KV, crate::auth::hex(&self.0))
    }
}

/// The outcome of checking a request's gateway key.
#[derive(Debug)]
pub enum KeyCheck {
    Admitted(Caller),
    /// Neither in the secret nor in the caches: look it up in KV (the caller
    /// pays for that out of its address's rate limit first), then
    /// [`KeyRing::admit_from_kv`] or [`KeyRing::lookup_failed`].
    LookUp(KeyHash),
    Refused(Reply),
}

/// How long a KV key look-up is trusted (revocation takes this long, plus KV's own propagation).
pub const KEY_CACHE_MS: u64 = 60_000;
/// How long a key KV does not hold (or holds revoked) stays refused without
/// another read: a key just stored in KV works after at most this long.
pub const NEGATIVE_CACHE_MS: u64 = 60_000;
/// Keys found in KV that one isolate remembers.
pub const KEY_CACHE_MAX: usize = 1_000;
/// Unknown keys one isolate remembers.
pub const NEGATIVE_CACHE_MAX: usize = 1_000;

/// A map of bounded size that forgets its least recently used entry to
/// make room. A vector searched end to end: at a thousand 32-byte keys a
/// scan costs microseconds, far less code goes into the wasm than a tree's
/// or a hash map's, and there is no hash for callers to flood.
#[derive(Debug)]
pub struct Lru<K, V> {
    cap: usize,
    /// Each entry with the tick of its last use.
    slots: Vec<(K, V, u64)>,
    tick: u64,
}

impl<K: PartialEq, V> Lru<K, V> {
    pub fn new(cap: usize) -> Self {
        Lru { cap: cap.max(1), slots: Vec::new(), tick: 0 }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The value, marked as just used.
    pub fn get(&mut self, k: &K) -> Option<&V> {
        self.tick += 1;
        let slot = self.slots.iter_mut().find(|s| s.0 == *k)?;
        slot.2 = self.tick;
        Some(&slot.1)
    }

    /// Inserts or replaces; when full, the least recently used entry goes.
    pub fn insert(&mut self, k: K, v: V) {
        self.tick += 1;
        let tick = self.tick;
        if let Some(slot) = self.slots.iter_mut().find(|s| s.0 == k) {
            slot.1 = v;
            slot.2 = tick;
        } else if self.slots.len() < self.cap {
            self.slots.push((k, v, tick));
        } else if let Some(oldest) = self.slots.iter_mut().min_by_key(|s| s.2) {
            *oldest = (k, v, tick);
        }
    }

    pub fn remove(&mut self, k: &K) -> Option<V> {
        let i = self.slots.iter().position(|s| s.0 == *k)?;
        Some(self.slots.swap_remove(i).1)
    }
}

/// The KV look-ups one isolate remembers: keys found (with when) and keys
/// KV does not hold (when), apart.
#[derive(Debug)]
struct Caches {
    found: Lru<Digest, (Rc<KeyEntry>, u64)>,
    unknown: Lru<Digest, u64>,
}

/// The gateway keys of one isolate.
pub struct KeyRing {
    anonymous: bool,
    kv_keys: bool,
    /// Gateway keys from the Worker secret, or why they could not be read
    /// (never what the secret holds).
    secret_keys: Result<GatewayKeys, String>,
    caches: RefCell<Caches>,
}

impl KeyRing {
    /// `secret` is the content of the keys secret (`auth.keys_secret`), if set.
    pub fn new(security: &Security, secret: Option<String>) -> KeyRing {
        let secret_keys = match secret {
            None => Ok(GatewayKeys::default()),
            Some(json) => GatewayKeys::parse(&json)
                .map_err(|e| format!("the `{}` secret is not a valid key list: {e}", security.keys_secret)),
        };
        KeyRing {
            anonymous: security.anonymous,
            kv_keys: security.kv_keys,
            secret_keys,
            caches: RefCell::new(Caches { found: Lru::new(KEY_CACHE_MAX), unknown: Lru::new(NEGATIVE_CACHE_MAX) }),
        }
    }

    /// Why the keys secret could not be read, if it could not (safe to log:
    /// it names the entry and field, never the content).
    pub fn secret_error(&self) -> Option<&str> {
        self.secret_keys.as_ref().err().map(String::as_str)
    }

    /// Checks a request's gateway key (`Authorization: Bearer sy_...`). A
    /// key in the secret costs a hash and a comparison with every entry: no
    /// KV, no allocation.
    pub fn check(&self, authorization: Option<&str>, now: u64) -> KeyCheck {
        let Some(token) = crate::auth::bearer(authorization) else {
            if self.anonymous {
                return KeyCheck::Admitted(Caller::Anonymous);
            }
            return KeyCheck::Refused(unauthorized(
                "this gateway needs a key: send `Authorization: Bearer <gateway key>` (or `x-api-key: <gateway key>`)",
            ));
        };
        let keys = match &self.secret_keys {
            Ok(k) => k,
            Err(e) => {
                return KeyCheck::Refused(Reply::error(
                    &ApiError::new(500, "configuration_error", e.clone()).with_code("invalid_config"),
                ))
            }
        };
        if !crate::auth::well_formed(token) {
            return self.unknown_key();
        }
        let digest = crate::auth::digest(token);
        if let Some(e) = keys.find(&digest) {
            return KeyCheck::Admitted(Caller::Key(e.clone()));
        }
        if !self.kv_keys {
            return self.unknown_key();
        }
        let mut caches = self.caches.borrow_mut();
        match caches.found.get(&digest) {
            Some((e, at)) if now.saturating_sub(*at) < KEY_CACHE_MS => {
                return KeyCheck::Admitted(Caller::Key(e.clone()));
            }
            Some(_) => {
                caches.found.remove(&digest);
            }
            None => {}
        }
        match caches.unknown.get(&digest) {
            Some(at) if now.saturating_sub(*at) < NEGATIVE_CACHE_MS => return self.unknown_key(),
            Some(_) => {
                caches.unknown.remove(&digest);
            }
            None => {}
        }
        KeyCheck::LookUp(KeyHash(digest))
    }

    /// A bearer token that is no gateway key: refused, unless anonymous
    /// access is on (then it grants what no key grants, and nothing more;
    /// OpenAI SDKs always send some key).
    fn unknown_key(&self) -> KeyCheck {
        if self.anonymous {
            KeyCheck::Admitted(Caller::Anonymous)
        } else {
            KeyCheck::Refused(unauthorized("invalid gateway key"))
        }
    }

    /// Finishes a KV key look-up: `stored` is the KV value for the hash. A
    /// key KV does not hold, holds revoked, or holds under another hash is
    /// remembered as unknown.
    pub fn admit_from_kv(&self, hash: &KeyHash, stored: Option<&str>, now: u64) -> KeyCheck {
        let entry = stored
            .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
            .and_then(|v| KeyEntry::read(&v).ok())
            .filter(|e| crate::auth::parse_hex(&e.sha256).is_some_and(|d| crate::auth::constant_time_eq(&d, &hash.0)))
            .filter(|e| !e.revoked);
        let mut caches = self.caches.borrow_mut();
        match entry {
            Some(e) => {
                let e = Rc::new(e);
                caches.unknown.remove(&hash.0);
                caches.found.insert(hash.0, (e.clone(), now));
                KeyCheck::Admitted(Caller::Key(e))
            }
            None => {
                caches.found.remove(&hash.0);
                caches.unknown.insert(hash.0, now);
                self.unknown_key()
            }
        }
    }

    /// A KV look-up that failed (not a missing key): refused like an unknown
    /// key, but not remembered, so the key works again once KV answers.
    pub fn lookup_failed(&self) -> KeyCheck {
        self.unknown_key()
    }
}

/// The Worker secret holding the admin key for `/v1/status` and `/v1/mirror`.
pub const ADMIN_KEY_SECRET: &str = "ADMIN_KEY";

/// The admin key, if the `ADMIN_KEY` secret is set: kept only as its
/// SHA-256, which a presented token's SHA-256 is compared with in constant
/// time (both 32 bytes, so not even the length can leak).
pub struct AdminKey(Option<Digest>);

impl AdminKey {
    pub fn new(secret: Option<String>) -> AdminKey {
        AdminKey(secret.filter(|k| !k.is_empty()).map(|k| crate::auth::digest(&k)))
    }

    /// Checks the admin key on an admin endpoint; `Err` is the reply to send.
    pub fn authorize(&self, authorization: Option<&str>) -> Result<(), Reply> {
        let Some(expected) = &self.0 else {
            return Err(Reply::error(
                &ApiError::new(403, "permission_error", "admin endpoints are off: set the ADMIN_KEY Worker secret")
                    .with_code("admin_disabled"),
            ));
        };
        match crate::auth::bearer(authorization) {
            Some(token) if crate::auth::constant_time_eq(&crate::auth::digest(token), expected) => Ok(()),
            _ => {
                let mut r = Reply::error(
                    &ApiError::new(401, "authentication_error", "this endpoint needs the admin key as a bearer token")
                        .with_code("invalid_admin_key"),
                );
                r.headers.push(("www-authenticate", "Bearer".to_owned()));
                Err(r)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{digest, hash_key};

    fn security(anonymous: bool) -> Security {
        Security { anonymous, ..Security::default() }
    }

    fn ring(anonymous: bool) -> KeyRing {
        let keys = format!(r#"[{{"name":"app","sha256":"{}","routes":["chat"]}}]"#, hash_key("sy_app_key_0123456789"));
        KeyRing::new(&security(anonymous), Some(keys))
    }

    fn kv_entry(key: &str, name: &str) -> String {
        format!(r#"{{"name":"{name}","sha256":"{}"}}"#, hash_key(key))
    }

    fn bearer(k: &str) -> String {
        format!("Bearer {k}")
    }

    fn status(c: &KeyCheck) -> u16 {
        match c {
            KeyCheck::Refused(r) => r.status,
            KeyCheck::Admitted(_) => 200,
            KeyCheck::LookUp(_) => 0,
        }
    }

    #[test]
    fn the_lru_forgets_the_least_recently_used_entry() {
        let mut lru = Lru::new(3);
        for k in [1, 2, 3] {
            lru.insert(k, k * 10);
        }
        assert_eq!(lru.get(&1), Some(&10), "1 is now the most recently used");
        lru.insert(4, 40);
        assert_eq!(lru.len(), 3);
        assert_eq!(lru.get(&2), None, "2 was the least recently used");
        assert_eq!(lru.get(&3), Some(&30));
        lru.insert(1, 11); // a replacement, not a new entry
        lru.insert(5, 50);
        assert_eq!(lru.get(&4), None);
        assert_eq!([lru.get(&1).copied(), lru.get(&3).copied(), lru.get(&5).copied()], [Some(11), Some(30), Some(50)]);
        assert_eq!(lru.remove(&3), Some(30));
        assert_eq!(lru.len(), 2);
        lru.insert(6, 60);
        lru.insert(7, 70);
        assert_eq!(lru.len(), 3);
        assert_eq!(lru.get(&1), None);
    }

    #[test]
    fn a_key_in_the_secret_needs_no_look_up() {
        let r = ring(false);
        match r.check(Some(&bearer("sy_app_key_0123456789")), 0) {
            KeyCheck::Admitted(Caller::Key(k)) => assert_eq!(k.name, "app"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(r.check(Some(&bearer("sy_unknown_0123456789")), 0), KeyCheck::LookUp(_)));
        assert_eq!(status(&r.check(Some(&bearer("short")), 0)), 401, "ill-formed keys cost nothing");
        assert_eq!(status(&r.check(None, 0)), 401);
    }

    #[test]
    fn unknown_keys_are_remembered_apart_from_found_ones() {
        let r = ring(false);
        let good = "sy_kv_key_0123456789abc";
        let KeyCheck::LookUp(h) = r.check(Some(&bearer(good)), 0) else { panic!() };
        assert_eq!(h.kv_key(), format!("sy:v1:key:{}", hash_key(good)));
        assert_eq!(status(&r.admit_from_kv(&h, Some(&kv_entry(good, "kv")), 0)), 200);
        // A flood of random tokens, each looked up once and found missing.
        for i in 0..(NEGATIVE_CACHE_MAX + 50) {
            let t = format!("sy_random_token_{i:08}");
            let KeyCheck::LookUp(h) = r.check(Some(&bearer(&t)), 1_000) else { panic!("{t}") };
            assert_eq!(status(&r.admit_from_kv(&h, None, 1_000)), 401);
        }
        assert_eq!(r.caches.borrow().unknown.len(), NEGATIVE_CACHE_MAX, "bounded");
        // The real key is still cached: no look-up.
        assert_eq!(status(&r.check(Some(&bearer(good)), 2_000)), 200);
        // A recent unknown token is refused without another look-up...
        let recent = format!("sy_random_token_{:08}", NEGATIVE_CACHE_MAX + 49);
        assert_eq!(status(&r.check(Some(&bearer(&recent)), 2_000)), 401);
        // ...until the negative entry expires; the oldest ones were evicted.
        assert!(matches!(r.check(Some(&bearer(&recent)), 1_000 + NEGATIVE_CACHE_MS), KeyCheck::LookUp(_)));
        assert!(matches!(r.check(Some(&bearer("sy_random_token_00000000")), 2_000), KeyCheck::LookUp(_)));
    }

    #[test]
    fn revoked_or_mismatched_kv_entries_are_unknown_and_cached_so() {
        let r = ring(false);
        let key = "sy_kv_key_0123456789abc";
        let KeyCheck::LookUp(h) = r.check(Some(&bearer(key)), 0) else { panic!() };
        let revoked = format!(r#"{{"name":"kv","sha256":"{}","revoked":true}}"#, hash_key(key));
        assert_eq!(status(&r.admit_from_kv(&h, Some(&revoked), 0)), 401);
        assert_eq!(status(&r.check(Some(&bearer(key)), 10)), 401, "cached as unknown");
        let other = "sy_other_key_0123456789";
        let KeyCheck::LookUp(h) = r.check(Some(&bearer(other)), 0) else { panic!() };
        assert_eq!(status(&r.admit_from_kv(&h, Some(&kv_entry(key, "kv")), 0)), 401, "an entry for another hash");
        // A failed look-up is not remembered.
        let third = "sy_third_key_0123456789";
        let KeyCheck::LookUp(_) = r.check(Some(&bearer(third)), 0) else { panic!() };
        assert_eq!(status(&r.lookup_failed()), 401);
        assert!(matches!(r.check(Some(&bearer(third)), 1), KeyCheck::LookUp(_)));
    }

    #[test]
    fn found_keys_expire_and_the_cache_stays_bounded() {
        let r = ring(false);
        for i in 0..(KEY_CACHE_MAX + 10) {
            let t = format!("sy_found_token_{i:08}");
            let KeyCheck::LookUp(h) = r.check(Some(&bearer(&t)), 0) else { panic!() };
            assert_eq!(status(&r.admit_from_kv(&h, Some(&kv_entry(&t, "kv")), 0)), 200);
        }
        assert_eq!(r.caches.borrow().found.len(), KEY_CACHE_MAX);
        let last = format!("sy_found_token_{:08}", KEY_CACHE_MAX + 9);
        assert_eq!(status(&r.check(Some(&bearer(&last)), KEY_CACHE_MS - 1)), 200);
        assert!(matches!(r.check(Some(&bearer(&last)), KEY_CACHE_MS), KeyCheck::LookUp(_)), "expired");
    }

    #[test]
    fn anonymous_mode_admits_unknown_tokens_as_anonymous() {
        let r = ring(true);
        assert_eq!(r.check(None, 0).admitted_name(), Some("anonymous"));
        assert_eq!(r.check(Some("Bearer unused"), 0).admitted_name(), Some("anonymous"));
        let KeyCheck::LookUp(h) = r.check(Some(&bearer("sy_unknown_0123456789")), 0) else { panic!() };
        assert_eq!(r.admit_from_kv(&h, None, 0).admitted_name(), Some("anonymous"));
        assert_eq!(r.check(Some(&bearer("sy_app_key_0123456789")), 0).admitted_name(), Some("app"));
    }

    impl KeyCheck {
        fn admitted_name(&self) -> Option<&str> {
            match self {
                KeyCheck::Admitted(c) => Some(c.name()),
                _ => None,
            }
        }
    }

    #[test]
    fn a_bad_key_list_is_a_500_that_does_not_quote_the_secret() {
        let pasted = "sy_PastedByMistake_0123456789abcdefghijklmnopq";
        for secret in [pasted.to_owned(), format!("[\"{pasted}\"]"), format!(r#"[{{"name":"a","sha256":"{pasted}"}}]"#)]
        {
            let r = KeyRing::new(&security(false), Some(secret.clone()));
            let KeyCheck::Refused(reply) = r.check(Some(&bearer("sy_some_client_key_01234")), 0) else { panic!() };
            assert_eq!(reply.status, 500);
            assert!(reply.body.contains("GATEWAY_KEYS"), "{}", reply.body);
            assert!(!reply.body.contains("PastedByMistake"), "{secret}: {}", reply.body);
            assert!(!r.secret_error().unwrap().contains("PastedByMistake"));
        }
    }

    #[test]
    fn the_admin_key_is_kept_and_compared_as_its_hash() {
        let admin = AdminKey::new(Some("admin-secret-for-tests".to_owned()));
        assert_eq!(admin.0, Some(digest("admin-secret-for-tests")), "only the digest is kept");
        assert!(admin.authorize(Some("Bearer admin-secret-for-tests")).is_ok());
        for wrong in ["Bearer admin-secret-for-test", "Bearer admin-secret-for-tests2", "Bearer x", "Basic a"] {
            assert_eq!(admin.authorize(Some(wrong)).unwrap_err().status, 401, "{wrong}");
        }
        assert_eq!(admin.authorize(None).unwrap_err().status, 401);
        assert_eq!(AdminKey::new(Some(String::new())).authorize(Some("Bearer ")).unwrap_err().status, 403);
        assert_eq!(AdminKey::new(None).authorize(Some("Bearer x")).unwrap_err().status, 403);
    }
}
