//! Who may call the gateway, from where, how much and how big: gateway keys,
//! CORS, request limits and rate limits.

use super::read::read_struct;
use super::{err, ConfigError};

/// Who may call the gateway, from where, how much and how big.
#[derive(Debug, Clone, PartialEq)]
pub struct Security {
    /// Requests without a gateway key are served (off unless turned on).
    pub anonymous: bool,
    /// The Worker secret holding the gateway keys' hashes (a JSON list).
    pub keys_secret: String,
    /// Also look keys up in KV (`sy:v1:key:<sha256>`), for keys revocable
    /// without a redeploy.
    pub kv_keys: bool,
    /// Origins allowed to call from a browser; `*` for any (never with credentials).
    pub cors_origins: Vec<String>,
    pub cors_credentials: bool,
    pub cors_max_age_s: u64,
    /// Largest request body accepted.
    pub max_body_bytes: u64,
    /// Largest upstream answer read whole (and answer text kept from a stream).
    pub max_answer_bytes: u64,
    /// Largest upstream error body read (the rest is not read).
    pub max_error_body_bytes: u64,
    /// Largest SSE line or event in an upstream stream.
    pub max_stream_event_bytes: u64,
    /// The rate limiting binding (declared in wrangler.toml), if any.
    pub rate_limit_binding: Option<String>,
    /// The binding's period, for Retry-After.
    pub rate_limit_period_s: u64,
}

impl Default for Security {
    fn default() -> Self {
        Security {
            anonymous: false,
            keys_secret: "GATEWAY_KEYS".to_owned(),
            kv_keys: true,
            cors_origins: Vec::new(),
            cors_credentials: false,
            cors_max_age_s: 600,
            max_body_bytes: 1024 * 1024,
            max_answer_bytes: 8 * 1024 * 1024,
            max_error_body_bytes: 64 * 1024,
            max_stream_event_bytes: 1024 * 1024,
            rate_limit_binding: None,
            rate_limit_period_s: 60,
        }
    }
}

#[derive(Default)]
pub(super) struct RawAuth {
    anonymous: Option<bool>,
    keys_secret: Option<String>,
    kv_keys: Option<bool>,
}

#[derive(Default)]
pub(super) struct RawCors {
    allowed_origins: Option<Vec<String>>,
    allow_credentials: Option<bool>,
    max_age_s: Option<u64>,
}

#[derive(Default)]
pub(super) struct RawLimits {
    max_body_bytes: Option<u64>,
    max_answer_bytes: Option<u64>,
    max_error_body_bytes: Option<u64>,
    max_stream_event_bytes: Option<u64>,
}

pub(super) struct RawRateLimit {
    binding: String,
    period_s: Option<u64>,
}

/// The security-related sections of the raw config.
pub(super) struct RawSecurity<'a> {
    pub auth: &'a RawAuth,
    pub cors: &'a RawCors,
    pub limits: &'a RawLimits,
    pub rate_limit: &'a Option<RawRateLimit>,
}

read_struct!(RawAuth { required: [], optional: [anonymous, keys_secret, kv_keys] });
read_struct!(RawCors { required: [], optional: [allowed_origins, allow_credentials, max_age_s] });
read_struct!(RawLimits {
    required: [],
    optional: [max_body_bytes, max_answer_bytes, max_error_body_bytes, max_stream_event_bytes]
});
read_struct!(RawRateLimit { required: [binding], optional: [period_s] });

pub(super) fn validate(raw: &RawSecurity) -> Result<Security, ConfigError> {
    let d = Security::default();
    let origins = raw.cors.allowed_origins.clone().unwrap_or_default();
    for (i, o) in origins.iter().enumerate() {
        let ok = o == "*"
            || ((o.starts_with("https://") || o.starts_with("http://"))
                && !o.ends_with('/')
                && o.matches('/').count() == 2);
        if !ok {
            return Err(err(
                format!("cors.allowed_origins[{i}]"),
                "an origin is `scheme://host[:port]` with no path, or `*`",
            ));
        }
    }
    let credentials = raw.cors.allow_credentials.unwrap_or(false);
    if credentials && origins.iter().any(|o| o == "*") {
        return Err(err("cors.allow_credentials", "browsers refuse `*` with credentials: list the origins"));
    }
    let max_body_bytes = raw.limits.max_body_bytes.unwrap_or(d.max_body_bytes);
    if !(1024..=100 * 1024 * 1024).contains(&max_body_bytes) {
        return Err(err("limits.max_body_bytes", "must be between 1 KiB and 100 MiB"));
    }
    let cap = |name: &str, v: Option<u64>, default: u64| -> Result<u64, ConfigError> {
        let v = v.unwrap_or(default);
        if (1024..=64 * 1024 * 1024).contains(&v) {
            Ok(v)
        } else {
            Err(err(format!("limits.{name}"), "must be between 1 KiB and 64 MiB"))
        }
    };
    let max_answer_bytes = cap("max_answer_bytes", raw.limits.max_answer_bytes, d.max_answer_bytes)?;
    let max_error_body_bytes = cap("max_error_body_bytes", raw.limits.max_error_body_bytes, d.max_error_body_bytes)?;
    let max_stream_event_bytes =
        cap("max_stream_event_bytes", raw.limits.max_stream_event_bytes, d.max_stream_event_bytes)?;
    let keys_secret = raw.auth.keys_secret.clone().unwrap_or(d.keys_secret);
    if keys_secret.is_empty() {
        return Err(err("auth.keys_secret", "must name a Worker secret"));
    }
    let (rate_limit_binding, rate_limit_period_s) = match &raw.rate_limit {
        None => (None, d.rate_limit_period_s),
        Some(r) if r.binding.is_empty() => return Err(err("rate_limit.binding", "must name the binding")),
        Some(r) => (Some(r.binding.clone()), r.period_s.unwrap_or(60).max(1)),
    };
    Ok(Security {
        anonymous: raw.auth.anonymous.unwrap_or(false),
        keys_secret,
        kv_keys: raw.auth.kv_keys.unwrap_or(true),
        cors_origins: origins,
        cors_credentials: credentials,
        cors_max_age_s: raw.cors.max_age_s.unwrap_or(d.cors_max_age_s),
        max_body_bytes,
        max_answer_bytes,
        max_error_body_bytes,
        max_stream_event_bytes,
        rate_limit_binding,
        rate_limit_period_s,
    })
}

/// Headers that carry credentials: never set through a provider's plain
/// `headers` (they are visible in wrangler.toml and the dashboard).
const KEY_HEADERS: [&str; 4] = ["authorization", "proxy-authorization", "x-api-key", "api-key"];

/// Headers the gateway sets itself, which `key_header` may not name (the
/// first two `headers` may not name either).
const OWN_HEADERS: [&str; 4] = ["host", "content-length", "content-type", "anthropic-version"];

/// A provider's base URL: no credentials in it, and `https://` when the
/// provider is sent a key, except to a loopback host (a local server).
pub(super) fn check_base_url(at: &str, base_url: &str, sends_key: bool) -> Result<(), ConfigError> {
    let (plain, rest) = match (base_url.strip_prefix("http://"), base_url.strip_prefix("https://")) {
        (Some(rest), _) => (true, rest),
        (_, Some(rest)) => (false, rest),
        _ => return Err(err(format!("{at}.base_url"), "must be an http(s) URL")),
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.contains('@') {
        return Err(err(format!("{at}.base_url"), "must not carry credentials (`user:password@`): use key_secret"));
    }
    if plain && sends_key && !is_loopback(authority) {
        return Err(err(
            format!("{at}.base_url"),
            "must be https:// for a provider that is sent a key (key_secret); \
             http:// only to a loopback host (127.0.0.0/8, localhost, [::1])",
        ));
    }
    Ok(())
}

/// Whether a URL's `host[:port]` is this machine: `localhost`, `[::1]` or an
/// address in 127.0.0.0/8 (four numbers, not a name that starts with them).
pub(crate) fn is_loopback(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(v6) => return v6.split_once(']').is_some_and(|(h, port)| h == "::1" && valid_port(port)),
        None => match authority.split_once(':') {
            Some((h, port)) if port.parse::<u16>().is_ok() => h,
            Some(_) => return false,
            None => authority,
        },
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let mut parts = host.split('.');
    parts.next() == Some("127") && {
        let rest: Vec<&str> = parts.collect();
        rest.len() == 3 && rest.iter().all(|p| !p.is_empty() && p.parse::<u8>().is_ok())
    }
}

/// Empty, or `:` and a port number.
fn valid_port(s: &str) -> bool {
    s.is_empty() || s.strip_prefix(':').is_some_and(|p| p.parse::<u16>().is_ok())
}

/// The header a provider's key goes in: `key_header` if set (lower case),
/// else the format's own. `has_key` says whether the provider has a key_secret.
pub(super) fn key_header(
    at: &str,
    raw: Option<&str>,
    format_default: &str,
    has_key: bool,
) -> Result<String, ConfigError> {
    let Some(h) = raw else {
        return Ok(format_default.to_owned());
    };
    let h = h.to_ascii_lowercase();
    if h.is_empty() || !h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(err(format!("{at}.key_header"), "must be a header name (letters, digits, `-`)"));
    }
    if OWN_HEADERS.contains(&h.as_str()) {
        return Err(err(format!("{at}.key_header"), format!("the gateway sets `{h}` itself")));
    }
    if !has_key {
        return Err(err(format!("{at}.key_header"), "names the header for the key: set key_secret too"));
    }
    Ok(h)
}

/// A provider's plain `headers`: never a key (those come from key_secret
/// and go in `key_header`), never one the gateway sets.
pub(super) fn check_headers<'a>(
    at: &str,
    names: impl Iterator<Item = &'a String>,
    key_header: &str,
) -> Result<(), ConfigError> {
    for name in names {
        let lower = name.to_ascii_lowercase();
        if KEY_HEADERS.contains(&lower.as_str()) || lower == key_header {
            return Err(err(
                format!("{at}.headers.{name}"),
                "set keys through key_secret (a Worker secret, sent in key_header), not a plain header",
            ));
        }
        if lower == "host" || lower == "content-length" {
            return Err(err(format!("{at}.headers.{name}"), format!("the gateway sets `{lower}` itself")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_for_loopback_hosts_only_when_a_key_is_sent() {
        for ok in [
            "https://api.openai.com/v1",
            "http://127.0.0.1:9101/v1",
            "http://127.1.2.3",
            "http://localhost:11434/v1",
            "http://LOCALHOST",
            "http://[::1]:8080/v1",
        ] {
            assert_eq!(check_base_url("providers.p", ok, true), Ok(()), "{ok}");
        }
        for bad in [
            "http://api.openai.com/v1",
            "http://127.0.0.1.evil.example/v1",
            "http://127.0.0.1:99999",
            "http://128.0.0.1",
            "http://127.0.0",
            "http://[::2]:80",
            "http://localhost.evil.example",
            "http://10.0.0.5:8000/v1",
        ] {
            let e = check_base_url("providers.p", bad, true).unwrap_err();
            assert_eq!(e.field, "providers.p.base_url", "{bad}");
            assert!(e.message.contains("https://"), "{bad}: {}", e.message);
        }
        // A keyless server (Ollama on the LAN) may use plain http.
        assert_eq!(check_base_url("providers.p", "http://10.0.0.5:8000/v1", false), Ok(()));
        // Credentials never go in the URL, whatever the scheme.
        for creds in ["https://user:pw@api.example.com/v1", "http://127.0.0.1@evil.example", "http://k@127.0.0.1"] {
            assert!(check_base_url("providers.p", creds, false).unwrap_err().message.contains("credentials"));
        }
    }

    #[test]
    fn the_key_header_defaults_to_the_formats_and_is_never_a_plain_header() {
        assert_eq!(key_header("p", None, "authorization", true).unwrap(), "authorization");
        assert_eq!(key_header("p", Some("Api-Key"), "authorization", true).unwrap(), "api-key");
        assert_eq!(key_header("p", Some("api-key"), "authorization", false).unwrap_err().field, "p.key_header");
        assert_eq!(key_header("p", Some("content-type"), "x-api-key", true).unwrap_err().field, "p.key_header");
        assert_eq!(key_header("p", Some("bad header"), "x-api-key", true).unwrap_err().field, "p.key_header");
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for bad in ["Authorization", "x-api-key", "API-KEY", "proxy-authorization", "x-custom-key", "Host"] {
            let n = names(&[bad]);
            let e = check_headers("providers.p", n.iter(), "x-custom-key").unwrap_err();
            assert_eq!(e.field, format!("providers.p.headers.{bad}"));
        }
        let n = names(&["openai-organization", "anthropic-beta", "anthropic-version"]);
        assert_eq!(check_headers("providers.p", n.iter(), "authorization"), Ok(()));
    }

    /// The same rules, through the whole configuration.
    #[test]
    fn provider_configs_keep_keys_off_plain_http_and_plain_headers() {
        use crate::config::Config;
        let cfg = |provider: &str| {
            Config::from_json(&format!(
                r#"{{"providers":{{"p":{provider}}},"routes":{{"r":{{"targets":[{{"provider":"p","model":"m"}}]}}}}}}"#
            ))
        };
        let field = |provider: &str| cfg(provider).unwrap_err().field;
        assert_eq!(
            field(r#"{"format":"openai","base_url":"http://api.example.com/v1","key_secret":"K"}"#),
            "providers.p.base_url"
        );
        assert!(cfg(r#"{"format":"openai","base_url":"http://127.0.0.1:8000/v1","key_secret":"K"}"#).is_ok());
        assert!(cfg(r#"{"format":"openai","base_url":"http://ollama.lan:11434/v1"}"#).is_ok());
        assert_eq!(
            field(
                r#"{"format":"openai","base_url":"https://x.example/v1","key_secret":"K","headers":{"api-key":"sk-1"}}"#
            ),
            "providers.p.headers.api-key"
        );
        assert_eq!(
            field(r#"{"format":"openai","base_url":"https://x.example/v1","key_header":"api-key"}"#),
            "providers.p.key_header"
        );
        let c = cfg(r#"{"format":"openai","base_url":"https://x.example/v1","key_secret":"K","key_header":"API-Key"}"#)
            .unwrap();
        assert_eq!(c.providers[0].key_header, "api-key");
        let a = cfg(r#"{"format":"anthropic","base_url":"https://api.anthropic.com","key_secret":"K"}"#).unwrap();
        assert_eq!(a.providers[0].key_header, "x-api-key");
    }
}
