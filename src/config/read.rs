//! Reads the raw configuration out of a parsed JSON tree, naming the field
//! of every mistake (`routes.chat.targets[0].weight`).
//!
//! Configuration is read once per isolate, so this is about size, not speed:
//! a derived `Deserialize` costs a visitor state machine per struct and per
//! deserializer in the wasm bundle; walking a `serde_json::Value` with one
//! small trait costs a few calls per field, and the field path comes free.

use serde_json::{Map, Value};

use super::{err, ConfigError};

/// A value the configuration can hold.
pub(super) trait Read: Sized {
    /// Reads `v`, found at `at`.
    fn read(v: &Value, at: &str) -> Result<Self, ConfigError>;
}

/// `parent.name`, or `name` at the top level.
pub(super) fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}.{name}")
    }
}

/// The object at `at`, after checking every key it has is one of `known`.
pub(super) fn object<'a>(v: &'a Value, at: &str, known: &[&str]) -> Result<&'a Map<String, Value>, ConfigError> {
    let Some(map) = v.as_object() else {
        return Err(err(where_(at), format!("expected an object, found {}", kind(v))));
    };
    if let Some(k) = map.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(err(
            join(at, k),
            format!("unknown field `{k}`, expected one of: {}", crate::text::join(known, ", ")),
        ));
    }
    Ok(map)
}

/// Reads field `name` of `map` for [`read_struct!`]. A mistake is kept in
/// `first` (unless an earlier field's is already there) and the field takes
/// its default, so a struct has one exit that drops it whole instead of one
/// per field that drops the fields read so far: that drop code, repeated
/// per field, was most of the reader's size in wasm.
#[inline(never)]
pub(super) fn field<T: Read + Default>(
    map: &Map<String, Value>,
    at: &str,
    name: &str,
    required: bool,
    first: &mut Option<ConfigError>,
) -> T {
    let result = match lookup(map, at, name, required) {
        Ok(Some((v, path))) => T::read(v, &path),
        Ok(None) => return T::default(),
        Err(e) => Err(e),
    };
    result.unwrap_or_else(|e| {
        first.get_or_insert(e);
        T::default()
    })
}

/// The value of field `name` and its path, `None` for an optional field left
/// out, or the error of a required one left out.
fn lookup<'a>(
    map: &'a Map<String, Value>,
    at: &str,
    name: &str,
    required: bool,
) -> Result<Option<(&'a Value, String)>, ConfigError> {
    match map.get(name) {
        Some(v) => Ok(Some((v, join(at, name)))),
        None if required => Err(err(where_(at), format!("missing field `{name}`"))),
        None => Ok(None),
    }
}

fn where_(at: &str) -> String {
    if at.is_empty() {
        "SWITCHYARD_CONFIG".to_owned()
    } else {
        at.to_owned()
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn expected(v: &Value, at: &str, what: &str) -> ConfigError {
    err(where_(at), format!("expected {what}, found {}", kind(v)))
}

impl Read for bool {
    fn read(v: &Value, at: &str) -> Result<Self, ConfigError> {
        v.as_bool().ok_or_else(|| expected(v, at, "true or false"))
    }
}

impl Read for u64 {
    fn read(v: &Value, at: &str) -> Result<Self, ConfigError> {
        v.as_u64().ok_or_else(|| expected(v, at, "a whole number of 0 or more"))
    }
}

impl Read for u32 {
    fn read(v: &Value, at: &str) -> Result<Self, ConfigError> {
        v.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| expected(v, at, "a whole number from 0 to 4294967295"))
    }
}

impl Read for f64 {
    fn read(v: &Value, at: &str) -> Result<Self, ConfigError> {
        v.as_f64().ok_or_else(|| expected(v, at, "a number"))
    }
}

impl Read for String {
    fn read(v: &Value, at: &str) -> Result<Self, ConfigError> {
        v.as_str().map(str::to_owned).ok_or_else(|| expected(v, at, "a string"))
    }
}

/// `null` reads as absent, as it would with serde.
impl<T: Read> Read for Option<T> {
    fn read(v: &Value, at: &str) -> Result<Self, ConfigError> {
        if v.is_null() {
            Ok(None)
        } else {
            T::read(v, at).map(Some)
        }
    }
}

impl<T: Read> Read for Vec<T> {
    fn read(v: &Value, at: &str) -> Result<Self, ConfigError> {
        let Some(items) = v.as_array() else { return Err(expected(v, at, "a list")) };
        items.iter().enumerate().map(|(i, item)| T::read(item, &format!("{}[{i}]", where_(at)))).collect()
    }
}

/// An object of named entries (providers, routes, headers), in the order
/// written: a list of pairs rather than a sorted map, whose code the bundle
/// would carry for these alone.
impl<T: Read> Read for Vec<(String, T)> {
    fn read(v: &Value, at: &str) -> Result<Self, ConfigError> {
        let Some(map) = v.as_object() else { return Err(expected(v, at, "an object")) };
        map.iter().map(|(k, item)| Ok((k.clone(), T::read(item, &join(at, k))?))).collect()
    }
}

/// Implements [`Read`] for a struct of named fields: `required` ones must be
/// present, `optional` ones take their `Default` when left out; any other key
/// is an error naming it. The error is the first field's in the order
/// listed (every field's type has a `Default` to stand in meanwhile).
macro_rules! read_struct {
    ($ty:ident { required: [$($req:ident),* $(,)?], optional: [$($opt:ident),* $(,)?] $(,)? }) => {
        impl $crate::config::read::Read for $ty {
            fn read(v: &serde_json::Value, at: &str) -> Result<Self, $crate::config::ConfigError> {
                use $crate::config::read as r;
                let map = r::object(v, at, &[$(stringify!($req),)* $(stringify!($opt),)*])?;
                let mut first = None;
                let out = $ty {
                    $($req: r::field(map, at, stringify!($req), true, &mut first),)*
                    $($opt: r::field(map, at, stringify!($opt), false, &mut first),)*
                };
                match first {
                    None => Ok(out),
                    Some(e) => Err(e),
                }
            }
        }
    };
}
pub(super) use read_struct;

#[cfg(test)]
mod tests {
    use super::*;

    struct Inner {
        n: u32,
        list: Option<Vec<String>>,
    }
    read_struct!(Inner { required: [n], optional: [list] });

    #[derive(Default)]
    struct Opt {
        flag: bool,
    }
    read_struct!(Opt { required: [], optional: [flag] });

    fn read<T: Read>(text: &str) -> Result<T, ConfigError> {
        T::read(&serde_json::from_str(text).unwrap(), "")
    }

    #[test]
    fn fields_are_read_and_optional_ones_default() {
        let i: Inner = read(r#"{"n": 3}"#).unwrap();
        assert_eq!((i.n, i.list), (3, None));
        let i: Inner = read(r#"{"n": 3, "list": ["a", "b"]}"#).unwrap();
        assert_eq!(i.list.unwrap(), ["a", "b"]);
        let i: Inner = read(r#"{"n": 3, "list": null}"#).unwrap();
        assert!(i.list.is_none());
        assert!(!read::<Opt>("{}").unwrap().flag);
    }

    #[test]
    fn every_mistake_names_its_field() {
        let e = read::<Inner>(r#"{"n": 3, "extra": 1}"#).err().unwrap();
        assert_eq!(e.field, "extra");
        assert!(e.message.contains("unknown field `extra`") && e.message.contains("n, list"), "{}", e.message);
        let e = read::<Inner>(r#"{"list": []}"#).err().unwrap();
        assert_eq!((e.field.as_str(), e.message.as_str()), ("SWITCHYARD_CONFIG", "missing field `n`"));
        let e = read::<Inner>(r#"{"n": -1}"#).err().unwrap();
        assert_eq!(e.field, "n");
        assert!(e.message.contains("whole number"), "{}", e.message);
        let e = read::<Inner>(r#"{"n": 5000000000}"#).err().unwrap();
        assert_eq!(e.field, "n");
        let e = read::<Inner>(r#"{"n": 1, "list": ["a", 2]}"#).err().unwrap();
        assert_eq!((e.field.as_str(), e.message.as_str()), ("list[1]", "expected a string, found a number"));
        let e = read::<Vec<(String, Inner)>>(r#"{"x": {"n": "1"}}"#).err().unwrap();
        assert_eq!(e.field, "x.n");
        let e = read::<Inner>("[]").err().unwrap();
        assert_eq!((e.field.as_str(), e.message.as_str()), ("SWITCHYARD_CONFIG", "expected an object, found a list"));
    }
}
