//! CORS for browsers: an allow-list of origins, preflight answers, and the
//! gateway's own headers exposed to scripts. Never `*` with credentials.

use crate::config::Security;

/// Headers a page's script may read on the gateway's responses.
pub const EXPOSED: &str = "x-switchyard-provider, x-switchyard-model, x-switchyard-attempts, x-switchyard-route, \
    x-switchyard-mirror, x-switchyard-dropped-tools, x-switchyard-cost-usd, x-request-id";

/// Methods the gateway answers to from a browser.
pub const METHODS: &str = "GET, POST, OPTIONS";

pub fn allowed(origin: &str, sec: &Security) -> bool {
    sec.cors_origins.iter().any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
}

/// The `Access-Control-Allow-Origin` value for an allowed origin: the origin
/// itself (always, when credentials are allowed), or `*`.
fn allow_origin_value(origin: &str, sec: &Security) -> String {
    if sec.cors_origins.iter().any(|o| o == "*") && !sec.cors_credentials {
        "*".to_owned()
    } else {
        origin.to_owned()
    }
}

/// CORS headers for a response to a request from `origin` (none when the
/// origin is absent or not allowed: the browser then blocks the response).
pub fn response_headers(origin: Option<&str>, sec: &Security) -> Vec<(&'static str, String)> {
    let mut h = Vec::new();
    if sec.cors_origins.is_empty() {
        return h;
    }
    h.push(("vary", "Origin".to_owned()));
    let Some(origin) = origin.filter(|o| allowed(o, sec)) else {
        return h;
    };
    h.push(("access-control-allow-origin", allow_origin_value(origin, sec)));
    h.push(("access-control-expose-headers", EXPOSED.to_owned()));
    if sec.cors_credentials {
        h.push(("access-control-allow-credentials", "true".to_owned()));
    }
    h
}

/// Whether a header list from `Access-Control-Request-Headers` is made only
/// of header-name characters (it is echoed back).
fn is_header_list(s: &str) -> bool {
    s.len() <= 2048 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_, ".contains(&b))
}

/// The answer to a preflight: 204 with the grants for an allowed origin,
/// 403 without any for another.
pub fn preflight(
    origin: Option<&str>,
    request_method: Option<&str>,
    request_headers: Option<&str>,
    sec: &Security,
) -> (u16, Vec<(&'static str, String)>) {
    let Some(origin) = origin.filter(|o| allowed(o, sec)) else {
        return (403, vec![("vary", "Origin".to_owned())]);
    };
    if request_method.is_some_and(|m| !METHODS.split(", ").any(|x| x.eq_ignore_ascii_case(m))) {
        return (403, vec![("vary", "Origin".to_owned())]);
    }
    let mut h = response_headers(Some(origin), sec);
    h.push(("access-control-allow-methods", METHODS.to_owned()));
    let headers = request_headers.filter(|r| is_header_list(r)).unwrap_or("authorization, content-type");
    h.push(("access-control-allow-headers", headers.to_owned()));
    h.push(("access-control-max-age", sec.cors_max_age_s.to_string()));
    (204, h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sec(origins: &[&str], credentials: bool) -> Security {
        Security {
            cors_origins: origins.iter().map(|s| s.to_string()).collect(),
            cors_credentials: credentials,
            ..Security::default()
        }
    }

    fn get<'a>(h: &'a [(&'static str, String)], k: &str) -> Option<&'a str> {
        h.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str())
    }

    #[test]
    fn allowed_origins_get_grants_others_none() {
        let s = sec(&["https://app.example.com"], false);
        let h = response_headers(Some("https://app.example.com"), &s);
        assert_eq!(get(&h, "access-control-allow-origin"), Some("https://app.example.com"));
        assert!(get(&h, "access-control-expose-headers").unwrap().contains("x-switchyard-provider"));
        let h = response_headers(Some("https://evil.example"), &s);
        assert_eq!(get(&h, "access-control-allow-origin"), None);
        assert_eq!(get(&h, "vary"), Some("Origin"));
    }

    #[test]
    fn preflight_answers() {
        let s = sec(&["https://app.example.com"], true);
        let (status, h) = preflight(
            Some("https://app.example.com"),
            Some("POST"),
            Some("authorization, content-type, x-stainless-os"),
            &s,
        );
        assert_eq!(status, 204);
        assert_eq!(get(&h, "access-control-allow-headers"), Some("authorization, content-type, x-stainless-os"));
        assert_eq!(get(&h, "access-control-allow-credentials"), Some("true"));
        assert_eq!(get(&h, "access-control-max-age"), Some("600"));
        let (status, h) = preflight(Some("https://evil.example"), Some("POST"), None, &s);
        assert_eq!(status, 403);
        assert_eq!(get(&h, "access-control-allow-origin"), None);
        let (status, _) = preflight(Some("https://app.example.com"), Some("DELETE"), None, &s);
        assert_eq!(status, 403);
        // A header list that is not one is not echoed.
        let (_, h) = preflight(Some("https://app.example.com"), Some("POST"), Some("x\r\nset-cookie: a"), &s);
        assert_eq!(get(&h, "access-control-allow-headers"), Some("authorization, content-type"));
    }

    #[test]
    fn a_wildcard_is_never_sent_with_credentials() {
        let s = sec(&["*"], false);
        let h = response_headers(Some("https://any.example"), &s);
        assert_eq!(get(&h, "access-control-allow-origin"), Some("*"));
        assert!(get(&h, "access-control-allow-credentials").is_none());
        // The config refuses "*" with credentials; even so, the origin is echoed.
        let s = sec(&["*"], true);
        let h = response_headers(Some("https://any.example"), &s);
        assert_eq!(get(&h, "access-control-allow-origin"), Some("https://any.example"));
    }
}
