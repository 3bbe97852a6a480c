//! Names the field a JSON parse error is about, such as `messages[0].role`.
//!
//! serde_json reports where an error happened as a line and column; this
//! walks the text up to that point and says which key and index path it is
//! inside. It does the job `serde_path_to_error` would, without wrapping
//! every deserializer (which doubled the size of all derived `Deserialize`
//! code in the wasm bundle), and costs nothing unless a parse fails.

/// One level of nesting, as the walk sees it.
enum Frame {
    /// Inside an object: the key whose value comes next or is being read.
    Object { key: Option<String>, in_key: bool },
    /// Inside an array: the index of the value being read, once it began.
    Array { index: usize, started: bool },
}

/// The path (`a.b[2].c`) of the value at `line`/`column` (1-based, as
/// serde_json counts), or `None` at the top level.
pub fn path_at(text: &[u8], line: usize, column: usize) -> Option<String> {
    let end = offset_of(text, line, column);
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    while i < end {
        let Some(&b) = text.get(i) else { break };
        match b {
            b'"' => {
                let start = i + 1;
                i = start;
                while let Some(&c) = text.get(i).filter(|&&c| c != b'"') {
                    i += if c == b'\\' { 2 } else { 1 };
                }
                let s = String::from_utf8_lossy(text.get(start..i.min(text.len())).unwrap_or_default()).into_owned();
                begin_value(&mut stack);
                if let Some(Frame::Object { key, in_key: in_key @ true }) = stack.last_mut() {
                    *key = Some(s);
                    *in_key = false;
                }
            }
            b'{' => {
                begin_value(&mut stack);
                stack.push(Frame::Object { key: None, in_key: true });
            }
            b'[' => {
                begin_value(&mut stack);
                stack.push(Frame::Array { index: 0, started: false });
            }
            b'}' | b']' => {
                stack.pop();
            }
            b',' => match stack.last_mut() {
                Some(Frame::Object { key, in_key }) => {
                    *key = None;
                    *in_key = true;
                }
                Some(Frame::Array { index, started }) => {
                    *index += 1;
                    *started = false;
                }
                None => {}
            },
            b':' | b' ' | b'\t' | b'\r' | b'\n' => {}
            _ => begin_value(&mut stack),
        }
        i += 1;
    }
    let mut path = String::new();
    for frame in &stack {
        match frame {
            Frame::Object { key: Some(k), in_key: false } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
            }
            Frame::Array { index, started: true } => {
                path.push('[');
                path.push_str(&index.to_string());
                path.push(']');
            }
            _ => break,
        }
    }
    (!path.is_empty()).then_some(path)
}

/// A value starts here: an array's element begins (a key's value needs no note).
fn begin_value(stack: &mut [Frame]) {
    if let Some(Frame::Array { started, .. }) = stack.last_mut() {
        *started = true;
    }
}

/// The byte offset serde_json's line and column point at.
fn offset_of(text: &[u8], line: usize, column: usize) -> usize {
    let mut start = 0;
    for _ in 1..line {
        match text.get(start..).unwrap_or_default().iter().position(|&b| b == b'\n') {
            Some(n) => start += n + 1,
            None => return text.len(),
        }
    }
    (start + column).min(text.len())
}

/// The path of the value a serde_json error is about (see [`path_at`]).
pub fn error_path(text: &[u8], e: &serde_json::Error) -> Option<String> {
    path_at(text, e.line(), e.column())
}

/// serde_json's message without its " at line L column C" suffix.
pub fn message_of(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    // serde_json writes the position last, as exactly this (when it has one).
    match msg.strip_suffix(&format!(" at line {} column {}", e.line(), e.column())) {
        Some(m) if e.line() > 0 => m.to_owned(),
        _ => msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        name: String,
        items: Vec<Item>,
        #[serde(default)]
        nested: Option<std::collections::BTreeMap<String, Item>>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        kind: Kind,
        #[serde(default)]
        count: u32,
        #[serde(default)]
        tags: Vec<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Kind {
        A,
        B,
    }

    fn path(json: &str) -> Option<String> {
        let e = serde_json::from_str::<Doc>(json).unwrap_err();
        error_path(json.as_bytes(), &e)
    }

    #[test]
    fn names_the_field_of_a_type_error() {
        assert_eq!(path(r#"{"name": 3, "items": []}"#).as_deref(), Some("name"));
        assert_eq!(path(r#"{"name":"x","items":[{"kind":"a"},{"kind":"c"}]}"#).as_deref(), Some("items[1].kind"));
        assert_eq!(path(r#"{"name":"x","items":[{"kind":"a","count":-1}]}"#).as_deref(), Some("items[0].count"));
        assert_eq!(path(r#"{"name":"x","items":[{"kind":"a","tags":["t",7]}]}"#).as_deref(), Some("items[0].tags[1]"));
        assert_eq!(path(r#"{"name":"x","items":[],"nested":{"k":{"kind":{}}}}"#).as_deref(), Some("nested.k.kind"));
        assert_eq!(path(r#"{"name":"x","items":{"kind":"a"}}"#).as_deref(), Some("items"));
    }

    #[test]
    fn names_the_object_missing_a_field_and_an_unknown_key() {
        assert_eq!(path(r#"{"name":"x","items":[{"kind":"a"},{"count":1}]}"#).as_deref(), Some("items[1]"));
        assert_eq!(path(r#"{"name":"x","items":[{"kind":"a","extra":1}]}"#).as_deref(), Some("items[0].extra"));
        assert_eq!(path(r#"{"items":[]}"#), None);
    }

    #[test]
    fn copes_with_escapes_newlines_and_syntax_errors() {
        let json = "{\n  \"name\": \"a \\\" ] } quote\",\n  \"items\": [\n    {\"kind\": \"z\"}\n  ]\n}";
        assert_eq!(path(json).as_deref(), Some("items[0].kind"));
        let e = serde_json::from_str::<Doc>(r#"{"name":"x","items":[{"kind":"a",}]}"#).unwrap_err();
        assert!(e.is_syntax());
        // Any answer is fine for broken JSON, as long as the walk does not panic.
        let _ = error_path(br#"{"name":"x","items":[{"kind":"a",}]}"#, &e);
        assert_eq!(path_at(b"\"unterminated", 1, 40), None);
        assert_eq!(path_at(b"", 3, 2), None);
    }

    #[test]
    fn message_drops_the_position() {
        let e = serde_json::from_str::<Doc>(r#"{"name": 3}"#).unwrap_err();
        assert_eq!(message_of(&e), "invalid type: integer `3`, expected a string");
        // Only the position serde_json appends goes, not text that looks like it.
        let e = serde_json::from_str::<bool>(r#""x at line 9 column 9""#).unwrap_err();
        assert_eq!(message_of(&e), r#"invalid type: string "x at line 9 column 9", expected a boolean"#);
        // An error with no position keeps its whole message.
        let e = serde_json::from_value::<bool>(serde_json::json!("x at line 2")).unwrap_err();
        assert_eq!(e.line(), 0);
        assert_eq!(message_of(&e), r#"invalid type: string "x at line 2", expected a boolean"#);
    }
}
