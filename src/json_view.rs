//! Reading a few fields of a JSON object straight from its text, strings
//! borrowed wherever they hold no escape: what the stream decoders read from
//! every chunk, without building a JSON tree.
//!
//! One small reader serves every view type. A derived `Deserialize` would
//! add a field-name matcher, an object visitor and a sequence visitor per
//! type to the bundle; a view only says which fields it reads and how.
//! Unknown fields are skipped; a field given twice keeps its last value.

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

/// A string, borrowed from the text when it has no escapes.
pub struct Text<'a>(pub Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// A type read from an object's fields, one at a time.
pub trait View<'de>: Default {
    /// The names of the fields it reads.
    const FIELDS: &'static [&'static str];
    /// Reads the value of the field named `FIELDS[i]` (the next value of `map`).
    fn field<A: MapAccess<'de>>(&mut self, i: usize, map: &mut A) -> Result<(), A::Error>;
}

/// A string field's value (`null` reads as absent).
pub fn text<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Option<Cow<'de, str>>, A::Error> {
    Ok(map.next_value::<Option<Text<'de>>>()?.map(|t| t.0))
}

/// Reads a view from an object; anything but an object is an error.
pub fn read<'de, T: View<'de>, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
    struct V<T>(PhantomData<T>);
    impl<'de, T: View<'de>> Visitor<'de> for V<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
            let mut t = T::default();
            while let Some(key) = map.next_key_seed(Key(T::FIELDS))? {
                match key {
                    Some(i) => t.field(i, &mut map)?,
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(t)
        }
    }
    d.deserialize_map(V(PhantomData))
}

/// `Deserialize` for a view type with one lifetime, through [`read`].
macro_rules! deserialize_view {
    ($($t:ident),+) => {$(
        impl<'de> serde::Deserialize<'de> for $t<'de> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                crate::json_view::read(d)
            }
        }
    )+};
}
pub(crate) use deserialize_view;

/// A key, as its index among a view's field names (`None`: not one of them).
struct Key(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl Visitor<'_> for Key {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|f| *f == v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default, Debug)]
    struct Pair<'a> {
        a: Option<Cow<'a, str>>,
        n: Option<u32>,
        inner: Option<Vec<Pair<'a>>>,
    }
    impl<'de> View<'de> for Pair<'de> {
        const FIELDS: &'static [&'static str] = &["a", "n", "inner"];
        fn field<A: MapAccess<'de>>(&mut self, i: usize, map: &mut A) -> Result<(), A::Error> {
            match i {
                0 => self.a = text(map)?,
                1 => self.n = map.next_value()?,
                _ => self.inner = map.next_value()?,
            }
            Ok(())
        }
    }
    deserialize_view!(Pair);

    #[test]
    fn strings_are_borrowed_unless_escaped_and_unknown_fields_skipped() {
        let p: Pair =
            serde_json::from_str(r#"{"x":{"deep":[1,{"a":2}]},"a":"plain","n":7,"inner":[{"a":"tab\t"}]}"#).unwrap();
        assert!(matches!(p.a, Some(Cow::Borrowed("plain"))));
        assert_eq!(p.n, Some(7));
        let inner = p.inner.unwrap();
        assert!(matches!(&inner[0].a, Some(Cow::Owned(s)) if s == "tab\t"));
        let p: Pair = serde_json::from_str(r#"{"a":null,"n":null,"a":"last"}"#).unwrap();
        assert_eq!((p.a.as_deref(), p.n), (Some("last"), None));
        for bad in [r#"{"a":1}"#, r#"{"n":"7"}"#, r#"{"n":-1}"#, r#"["a"]"#, "null", r#"{"inner":{}}"#, r#"{"a":"x""#] {
            assert!(serde_json::from_str::<Pair>(bad).is_err(), "{bad}");
        }
    }
}
