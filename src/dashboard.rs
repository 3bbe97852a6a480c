//! `GET /dashboard`: one static page (assets/dashboard.html) with its CSS
//! and script inline. It needs no key to load and carries no data: the
//! script asks the admin endpoints with the key the operator types in (kept
//! in the tab's session storage, sent as a bearer token).
//!
//! The Content-Security-Policy allows nothing but this page's own script and
//! style (by their SHA-256 hashes) and requests to its own origin. A unit
//! test recomputes the hashes, so an edit of the page that forgets them fails
//! `cargo test` with the new values.

use crate::http::Reply;

pub const PAGE: &str = include_str!("../assets/dashboard.html");

const SCRIPT_SHA256: &str = "NvNQR+BPaZJOXL2X9RtNmruliIl2UDTrnTAfton0VEs=";
const STYLE_SHA256: &str = "sRyt1X0XPvvuAn/vZy+Vp043nbkFBThkgksrqt+T0pI=";

/// The page's policy: nothing from anywhere but its own inline code, and
/// fetches to its own origin.
pub fn csp() -> String {
    format!(
        "default-src 'none'; script-src 'sha256-{SCRIPT_SHA256}'; style-src 'sha256-{STYLE_SHA256}'; \
         connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

pub fn reply() -> Reply {
    Reply {
        status: 200,
        headers: vec![
            ("content-type", "text/html; charset=utf-8".to_owned()),
            ("content-security-policy", csp()),
            ("x-content-type-options", "nosniff".to_owned()),
            ("referrer-policy", "no-referrer".to_owned()),
            ("cache-control", "no-cache".to_owned()),
        ],
        body: PAGE.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn base64(bytes: &[u8]) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for c in bytes.chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for i in 0..4 {
                if i <= c.len() {
                    out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    fn inner<'a>(tag: &str) -> Vec<&'a str> {
        let open = format!("<{tag}>");
        let close = format!("</{tag}>");
        PAGE.split(open.as_str()).skip(1).map(|s| s.split(close.as_str()).next().unwrap()).collect()
    }

    #[test]
    fn the_policy_hashes_match_the_page() {
        let hash = |s: &str| base64(&Sha256::digest(s.as_bytes()));
        let scripts = inner("script");
        let styles = inner("style");
        assert_eq!((scripts.len(), styles.len()), (1, 1), "one inline script and one style");
        assert_eq!(hash(scripts[0]), SCRIPT_SHA256, "update SCRIPT_SHA256 after editing the page's script");
        assert_eq!(hash(styles[0]), STYLE_SHA256, "update STYLE_SHA256 after editing the page's style");
        assert_eq!(base64(b"abcd"), "YWJjZA==");
    }

    #[test]
    fn the_page_stands_alone_and_carries_no_data() {
        for outside in ["http://", "https://", "//", "<script src", "<link", "@import", "style=\"", "onclick"] {
            // The SVG namespace is a name, not a request; the icon is an empty data URL.
            let hit = PAGE.replace("http://www.w3.org/2000/svg", "").replace(r#"<link rel="icon" href="data:,">"#, "");
            assert!(!hit.contains(outside), "the page must not contain `{outside}`");
        }
        assert!(PAGE.contains("sessionStorage") && !PAGE.contains("localStorage") && !PAGE.contains("document.cookie"));
        let r = reply();
        let csp = &r.headers.iter().find(|(k, _)| *k == "content-security-policy").unwrap().1;
        assert!(csp.starts_with("default-src 'none';") && csp.contains("connect-src 'self'"));
        assert!(!csp.contains("unsafe"));
    }
}
