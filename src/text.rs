//! Joining strings. The standard library's `join` is compiled, for each kind
//! of part (`String`, `&str`), as a copy loop with length checks over a
//! kilobyte of wasm; this plain loop is a tenth of that, and the gateway
//! joins a handful of short parts at a time.

/// `parts` with `sep` between them.
pub fn join<S: AsRef<str>>(parts: &[S], sep: &str) -> String {
    let len = parts.iter().map(|p| p.as_ref().len()).sum::<usize>() + sep.len() * parts.len().saturating_sub(1);
    let mut out = String::with_capacity(len);
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push_str(sep);
        }
        out.push_str(part.as_ref());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::join;

    #[test]
    fn joins_as_the_standard_library_does() {
        let cases: [&[&str]; 5] = [&[], &[""], &["a"], &["a", "", "ç"], &["x", "y", "z"]];
        for parts in cases {
            for sep in ["", ", ", "\n\n"] {
                assert_eq!(join(parts, sep), parts.join(sep), "{parts:?} {sep:?}");
                let owned: Vec<String> = parts.iter().map(|s| s.to_string()).collect();
                assert_eq!(join(&owned, sep), owned.join(sep));
                assert_eq!(join(parts, sep).capacity(), parts.join(sep).len(), "sized up front");
            }
        }
    }
}
