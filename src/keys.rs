//! Checking a request's gateway key: the keys from the Worker secret (read
//! once per isolate), keys stored in KV for revocation without a redeploy,
//! and the cache of KV look-ups.

use crate::api::ApiError;
use crate::auth::{GatewayKeys, KeyEntry};
use crate::config::Security;
use crate::http::{unauthorized, Reply};
use std::cell::RefCell;
use std::collections::HashMap;

/// Who is calling.
#[derive(Debug, Clone, PartialEq)]
pub enum Caller {
    Anonymous,
    Key(KeyEntry),
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

/// The outcome of checking a request's gateway key.
#[derive(Debug)]
pub enum KeyCheck {
    Admitted(Caller),
    /// Not in the secret: look this hash up in KV, then [`KeyRing::admit_from_kv`].
    LookUp(String),
    Refused(Reply),
}

/// How long a KV key look-up is trusted (revocation takes this long, plus KV's own propagation).
pub const KEY_CACHE_MS: u64 = 60_000;
const KEY_CACHE_MAX: usize = 1_000;

/// The gateway keys of one isolate.
pub struct KeyRing {
    anonymous: bool,
    kv_keys: bool,
    /// Gateway keys from the Worker secret, or why they could not be read.
    secret_keys: Result<GatewayKeys, String>,
    /// KV key look-ups, cached for a minute (unknown keys too).
    cache: RefCell<HashMap<String, (Option<KeyEntry>, u64)>>,
}

impl KeyRing {
    /// `secret` is the content of the keys secret (`auth.keys_secret`), if set.
    pub fn new(security: &Security, secret: Option<String>) -> KeyRing {
        let secret_keys = match secret {
            None => Ok(GatewayKeys::default()),
            Some(json) => GatewayKeys::parse(&json)
                .map_err(|e| format!("the `{}` secret is not a valid key list: {e}", security.keys_secret)),
        };
        KeyRing { anonymous: security.anonymous, kv_keys: security.kv_keys, secret_keys, cache: RefCell::default() }
    }

    /// Checks a request's gateway key (`Authorization: Bearer sy_...`).
    pub fn check(&self, authorization: Option<&str>, now: u64) -> KeyCheck {
        let Some(token) = crate::auth::bearer(authorization) else {
            if self.anonymous {
                return KeyCheck::Admitted(Caller::Anonymous);
            }
            return KeyCheck::Refused(unauthorized(
                "this gateway needs a key: send `Authorization: Bearer <gateway key>`",
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
        let hash = crate::auth::hash_key(token);
        if let Some(e) = keys.find(&hash) {
            return KeyCheck::Admitted(Caller::Key(e.clone()));
        }
        if !self.kv_keys {
            return self.unknown_key();
        }
        match self.cache.borrow().get(&hash) {
            Some((entry, at)) if now.saturating_sub(*at) < KEY_CACHE_MS => match entry {
                Some(e) if !e.revoked => KeyCheck::Admitted(Caller::Key(e.clone())),
                _ => self.unknown_key(),
            },
            _ => KeyCheck::LookUp(hash),
        }
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

    /// Finishes a KV key look-up: `stored` is the KV value for the hash.
    pub fn admit_from_kv(&self, hash: &str, stored: Option<&str>, now: u64) -> KeyCheck {
        let entry = stored
            .and_then(|t| serde_json::from_str::<KeyEntry>(t).ok())
            .filter(|e| crate::auth::constant_time_eq(e.sha256.to_ascii_lowercase().as_bytes(), hash.as_bytes()));
        {
            let mut cache = self.cache.borrow_mut();
            if cache.len() >= KEY_CACHE_MAX {
                cache.clear();
            }
            cache.insert(hash.to_owned(), (entry.clone(), now));
        }
        match entry {
            Some(e) if !e.revoked => KeyCheck::Admitted(Caller::Key(e)),
            _ => self.unknown_key(),
        }
    }
}

/// The Worker secret holding the admin key for `/v1/status` and `/v1/mirror`.
pub const ADMIN_KEY_SECRET: &str = "ADMIN_KEY";

/// The admin key, if the `ADMIN_KEY` secret is set.
pub struct AdminKey(Option<String>);

impl AdminKey {
    pub fn new(secret: Option<String>) -> AdminKey {
        AdminKey(secret.filter(|k| !k.is_empty()))
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
            Some(token) if crate::auth::constant_time_eq(token.as_bytes(), expected.as_bytes()) => Ok(()),
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
