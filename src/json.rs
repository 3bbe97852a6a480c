//! Reading `serde_json::Value`s without indexing: `v.at("a").at("b")` is
//! `Null` wherever a key or an element is missing, as `v["a"]["b"]` would
//! be, but it states that no panic is possible.

use serde_json::{Map, Value};

static NULL: Value = Value::Null;

pub trait Dig {
    /// The member `key` of an object, or `Null`.
    fn at(&self, key: &str) -> &Value;
    /// Element `i` of an array, or `Null`.
    fn nth(&self, i: usize) -> &Value;
    /// A count: a non-negative integer, or a float that is one (`5.0`).
    fn count(&self) -> Option<u64>;
}

impl Dig for Value {
    fn at(&self, key: &str) -> &Value {
        self.get(key).unwrap_or(&NULL)
    }
    fn nth(&self, i: usize) -> &Value {
        self.get(i).unwrap_or(&NULL)
    }
    fn count(&self) -> Option<u64> {
        self.as_u64().or_else(|| self.as_f64().filter(|f| f.is_finite() && *f >= 0.0).map(|f| f.round() as u64))
    }
}

/// A value's compact JSON text. Written with serde_json's writer, the one
/// the gateway's typed answers go through, rather than `Value`'s `Display`:
/// that links a second serializer and a pretty printer (for `{:#}`), 3 KB of
/// wasm, for the same bytes.
pub trait JsonText {
    fn json_text(&self) -> String;
}

impl JsonText for Value {
    fn json_text(&self) -> String {
        // Cannot fail: a `Value`'s keys are strings and its numbers finite.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A JSON object of `fields`, in the order given. What `json!({...})`
/// builds, but the values are moved in: the macro serialises each one
/// through `to_value` (a copy of a whole tree, for a message's content) and
/// unwraps the result, with the code for that at every call site.
pub fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    object_of(N, &mut fields.into_iter())
}

/// The body of [`object`], once for every size of object.
fn object_of(n: usize, fields: &mut dyn Iterator<Item = (&str, Value)>) -> Value {
    let mut m = Map::with_capacity(n);
    for (k, v) in fields {
        m.insert(k.to_owned(), v);
    }
    Value::Object(m)
}

/// A stored record's fields, read as strictly as a derived reader would: a
/// required field that is missing or of the wrong type fails the record
/// (`None`); a field with a default takes it only when absent. Records are
/// read a few times a minute, so one JSON tree and these few calls cost less
/// bundle than a derived reader per record type.
pub struct Fields<'a>(&'a Map<String, Value>);

impl<'a> Fields<'a> {
    /// The fields of `v`, if it is an object.
    pub fn of(v: &'a Value) -> Option<Self> {
        v.as_object().map(Fields)
    }
    pub fn u64(&self, key: &str) -> Option<u64> {
        self.0.get(key)?.as_u64()
    }
    pub fn u32(&self, key: &str) -> Option<u32> {
        u32::try_from(self.u64(key)?).ok()
    }
    pub fn f64(&self, key: &str) -> Option<f64> {
        self.0.get(key)?.as_f64()
    }
    pub fn bool(&self, key: &str) -> Option<bool> {
        self.0.get(key)?.as_bool()
    }
    pub fn str(&self, key: &str) -> Option<&'a str> {
        self.0.get(key)?.as_str()
    }
    /// `default` when `key` is absent; otherwise what `read` makes of it.
    pub fn or<T>(&self, key: &str, default: T, read: impl FnOnce(&Self, &str) -> Option<T>) -> Option<T> {
        if self.0.contains_key(key) {
            read(self, key)
        } else {
            Some(default)
        }
    }
    /// An optional member: absent or `null` is `Some(None)`; anything else
    /// must read.
    pub fn opt<T>(&self, key: &str, read: impl FnOnce(&'a Value) -> Option<T>) -> Option<Option<T>> {
        match self.0.get(key) {
            None | Some(Value::Null) => Some(None),
            Some(v) => read(v).map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn missing_members_read_as_null() {
        let v = json!({"a": {"b": [1, 2.0, -1]}});
        assert_eq!(v.at("a").at("b").nth(1).count(), Some(2));
        assert_eq!(v.at("a").at("b").nth(2).count(), None);
        assert!(v.at("x").at("y").nth(3).is_null());
        assert!(json!("s").at("a").is_null());
    }

    #[test]
    fn fields_read_strictly() {
        let v = json!({"n": 5, "big": 5_000_000_000u64, "f": 1, "s": "x", "neg": -1, "half": 0.5, "nil": null});
        let f = Fields::of(&v).unwrap();
        assert_eq!((f.u64("n"), f.u32("big"), f.f64("f"), f.str("s")), (Some(5), None, Some(1.0), Some("x")));
        assert_eq!((f.u64("neg"), f.u64("half"), f.u64("missing"), f.bool("n")), (None, None, None, None));
        assert_eq!(f.or("missing", 7, Fields::u64), Some(7));
        assert_eq!(f.or("s", 7, Fields::u64), None, "present but wrong fails, never defaults");
        assert_eq!(f.opt("nil", Value::as_u64), Some(None));
        assert_eq!(f.opt("missing", Value::as_u64), Some(None));
        assert_eq!(f.opt("s", Value::as_u64), None);
        assert_eq!(f.opt("n", Value::as_u64), Some(Some(5)));
        assert!(Fields::of(&json!([1])).is_none());
    }
}
