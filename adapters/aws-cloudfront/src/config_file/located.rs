//! Deserializing a parsed JSON document while remembering where in it the
//! deserializer is, so that an error names the field (`Origins.Items[0].Id`)
//! and not only a line and column.
//!
//! serde's derived code raises "unknown field" and "missing field" errors
//! without knowing the path; this deserializer walks the `Value` itself and
//! keeps the path of the key or value being read in a shared cell: when an
//! error comes back, the cell holds where it happened.

use std::cell::RefCell;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess};
use serde_json::Value;

/// `value` (found at `root` in the file) as a `T`; on failure, the JSON path
/// where deserializing stopped, and serde's message.
pub(crate) fn from_value<T: DeserializeOwned>(
    value: &Value,
    root: &str,
) -> Result<T, (String, serde_json::Error)> {
    let at = RefCell::new(root.to_owned());
    let result = T::deserialize(Located {
        value,
        path: root.to_owned(),
        at: &at,
    });
    result.map_err(|error| (at.into_inner(), error))
}

/// `parent.key`, or `key` at the root.
pub(crate) fn field(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

struct Located<'a> {
    value: &'a Value,
    path: String,
    at: &'a RefCell<String>,
}

impl<'de> de::Deserializer<'de> for Located<'_> {
    type Error = serde_json::Error;

    fn deserialize_any<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.value {
            Value::Object(map) => visitor.visit_map(Fields {
                iter: map.iter(),
                pending: None,
                path: self.path,
                at: self.at,
            }),
            Value::Array(items) => visitor.visit_seq(Items {
                iter: items.iter().enumerate(),
                path: self.path,
                at: self.at,
            }),
            // Scalars carry no nested path: let serde_json read them.
            scalar => scalar.clone().deserialize_any(visitor),
        }
    }

    fn deserialize_option<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct newtype_struct seq tuple tuple_struct
        map struct enum identifier ignored_any
    }
}

struct Fields<'a> {
    iter: serde_json::map::Iter<'a>,
    pending: Option<(&'a String, &'a Value)>,
    path: String,
    at: &'a RefCell<String>,
}

impl<'de> MapAccess<'de> for Fields<'_> {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        match self.iter.next() {
            None => {
                // A "missing field" error comes after the last key: it is
                // about this object.
                *self.at.borrow_mut() = self.path.clone();
                Ok(None)
            }
            Some((key, value)) => {
                // An unknown key fails here: point at it.
                *self.at.borrow_mut() = field(&self.path, key);
                self.pending = Some((key, value));
                seed.deserialize(key.as_str().into_deserializer()).map(Some)
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        let (key, value) = self
            .pending
            .take()
            .ok_or_else(|| de::Error::custom("a value was read before its key"))?;
        let path = field(&self.path, key);
        *self.at.borrow_mut() = path.clone();
        let out = seed.deserialize(Located {
            value,
            path,
            at: self.at,
        })?;
        *self.at.borrow_mut() = self.path.clone();
        Ok(out)
    }
}

struct Items<'a> {
    iter: std::iter::Enumerate<std::slice::Iter<'a, Value>>,
    path: String,
    at: &'a RefCell<String>,
}

impl<'de> SeqAccess<'de> for Items<'_> {
    type Error = serde_json::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        let Some((index, value)) = self.iter.next() else {
            *self.at.borrow_mut() = self.path.clone();
            return Ok(None);
        };
        let path = format!("{}[{index}]", self.path);
        *self.at.borrow_mut() = path.clone();
        let out = seed.deserialize(Located {
            value,
            path,
            at: self.at,
        })?;
        *self.at.borrow_mut() = self.path.clone();
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "PascalCase")]
    #[allow(dead_code)]
    struct Outer {
        items: Vec<Inner>,
        name: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "PascalCase")]
    #[allow(dead_code)]
    struct Inner {
        id: String,
        port: Option<i32>,
    }

    fn error_at(json: &str) -> (String, String) {
        let value: Value = serde_json::from_str(json).expect("json");
        let (path, error) = from_value::<Outer>(&value, "Root").expect_err("an error");
        (path, error.to_string())
    }

    #[test]
    fn errors_name_the_json_path() {
        let (path, message) = error_at(r#"{"Items": [{"Id": "a"}, {"Id": "b", "Prot": 1}]}"#);
        assert_eq!(path, "Root.Items[1].Prot");
        assert!(message.contains("unknown field `Prot`"), "{message}");

        let (path, message) = error_at(r#"{"Items": [{"Id": "a"}, {"Port": 1}], "Name": "x"}"#);
        assert_eq!(path, "Root.Items[1]");
        assert!(message.contains("missing field `Id`"), "{message}");

        let (path, message) = error_at(r#"{"Items": [{"Id": "a", "Port": "80"}]}"#);
        assert_eq!(path, "Root.Items[0].Port");
        assert!(message.contains("invalid type"), "{message}");

        let (path, _) = error_at(r#"{"Name": "x"}"#);
        assert_eq!(path, "Root");
    }

    #[test]
    fn nulls_are_absent_options() {
        let value: Value =
            serde_json::from_str(r#"{"Items": [{"Id": "a", "Port": null}], "Name": null}"#)
                .expect("json");
        let outer: Outer = from_value(&value, "").expect("parsed");
        assert_eq!(outer.items[0].port, None);
        assert_eq!(outer.name, None);
    }
}
