//! The dashboard page (assets/dashboard.html) and the headers it is served
//! with (assets/_headers, read by Workers static assets): the policy's
//! script and style hashes match the page, and the page stands alone.

use sha2::{Digest, Sha256};

const PAGE: &str = include_str!("../assets/dashboard.html");
const HEADERS: &str = include_str!("../assets/_headers");

fn base64(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
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

/// The headers `_headers` gives `path`: the indented `Name: value` lines
/// under the line that names it.
fn headers_for(path: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut on = false;
    for line in HEADERS.lines().filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty()) {
        if !line.starts_with(' ') {
            on = line.trim() == path;
        } else if on {
            let (k, v) = line.trim().split_once(':').expect("a header line is `Name: value`");
            out.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    out
}

fn header(path: &str, name: &str) -> String {
    let found: Vec<_> = headers_for(path).into_iter().filter(|(k, _)| k == name).collect();
    assert_eq!(found.len(), 1, "one `{name}` for {path} in assets/_headers");
    found[0].1.clone()
}

#[test]
fn the_policy_hashes_match_the_page() {
    let hash = |s: &str| base64(&Sha256::digest(s.as_bytes()));
    let scripts = inner("script");
    let styles = inner("style");
    assert_eq!((scripts.len(), styles.len()), (1, 1), "one inline script and one style");
    let csp = header("/dashboard", "content-security-policy");
    let script = format!("script-src 'sha256-{}'", hash(scripts[0]));
    let style = format!("style-src 'sha256-{}'", hash(styles[0]));
    assert!(csp.contains(&script), "put `{script}` in assets/_headers after editing the page's script");
    assert!(csp.contains(&style), "put `{style}` in assets/_headers after editing the page's style");
    assert_eq!(base64(b"abcd"), "YWJjZA==");
}

#[test]
fn the_policy_allows_nothing_else() {
    let csp = header("/dashboard", "content-security-policy");
    assert!(csp.starts_with("default-src 'none';"), "{csp}");
    for part in ["connect-src 'self'", "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'"] {
        assert!(csp.contains(part), "{csp} lacks {part}");
    }
    assert!(!csp.contains("unsafe") && !csp.contains('*'), "{csp}");
    assert_eq!(header("/dashboard", "x-content-type-options"), "nosniff");
    assert_eq!(header("/dashboard", "referrer-policy"), "no-referrer");
    assert_eq!(header("/dashboard", "cache-control"), "no-cache");
}

#[test]
fn the_page_stands_alone_and_carries_no_data() {
    for outside in ["http://", "https://", "//", "<script src", "<link", "@import", "style=\"", "onclick"] {
        // The SVG namespace is a name, not a request; the icon is an empty data URL.
        let hit = PAGE.replace("http://www.w3.org/2000/svg", "").replace(r#"<link rel="icon" href="data:,">"#, "");
        assert!(!hit.contains(outside), "the page must not contain `{outside}`");
    }
    assert!(PAGE.contains("sessionStorage") && !PAGE.contains("localStorage") && !PAGE.contains("document.cookie"));
}
