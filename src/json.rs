//! Reading `serde_json::Value`s without indexing: `v.at("a").at("b")` is
//! `Null` wherever a key or an element is missing, as `v["a"]["b"]` would
//! be, but it states that no panic is possible.

use serde_json::Value;

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
}
