//! Read one user id out of a verified JSON body for the Kafka partition key.
//!
//! Cost: one pass of serde_json over the body. Fields off the path are skipped
//! with `IgnoredAny` (validated, never allocated); only the id itself is
//! copied. For a notification body (a few hundred bytes) that is negligible;
//! for a 10 MB Terra chunk it is a scan of roughly 10 ms, paid only after the
//! signature was accepted.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

/// The scalar at `path` (object keys from the top level), rendered as a
/// string: JSON strings as-is, integers in decimal. `None` when the body is
/// not JSON, the path is absent or does not lead to a non-empty string or
/// integer; the caller then hashes the body instead.
pub(crate) fn json_path(body: &[u8], path: &[&str]) -> Option<String> {
    if path.is_empty() {
        return None;
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let found = Path(path).deserialize(&mut de).ok()?;
    de.end().ok()?;
    found
}

/// Walks object keys; anything that is not an object where one is needed
/// ends the parse with an error, which `json_path` maps to `None`.
struct Path<'p>(&'p [&'p str]);

impl<'de> DeserializeSeed<'de> for Path<'_> {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Path<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let Some((first, rest)) = self.0.split_first() else {
            return Ok(None);
        };
        let mut found = None;
        while let Some(is_target) = map.next_key_seed(KeyIs(first))? {
            // First occurrence wins on duplicate keys; the rest are skipped.
            if is_target && found.is_none() {
                found = if rest.is_empty() {
                    map.next_value::<Scalar>()?.0
                } else {
                    map.next_value_seed(Path(rest))?
                };
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// Compares a key with the wanted name without allocating it.
struct KeyIs<'k>(&'k str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}

/// A string or integer id; null, booleans and floats give `None`.
struct Scalar(Option<String>);

impl<'de> de::Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl Visitor<'_> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or integer id")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar(Some(v.to_owned()).filter(|id| !id.is_empty())))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar(Some(v.to_string())))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar(Some(v.to_string())))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Scalar, E> {
        Ok(Scalar(None))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Scalar, E> {
        Ok(Scalar(None))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
        Ok(Scalar(None))
    }
}

#[cfg(test)]
mod tests {
    use super::json_path;

    #[test]
    fn reads_strings_and_integers() {
        assert_eq!(
            json_path(br#"{"a":1,"user_id":"u-1"}"#, &["user_id"]),
            Some("u-1".into())
        );
        assert_eq!(
            json_path(br#"{"user_id":10129}"#, &["user_id"]),
            Some("10129".into())
        );
        assert_eq!(
            json_path(br#"{"user_id":-5}"#, &["user_id"]),
            Some("-5".into())
        );
        assert_eq!(
            json_path(br#"{"user_id":"u\"1"}"#, &["user_id"]),
            Some("u\"1".into())
        );
        assert_eq!(
            json_path(
                br#"{"x":[{"user_id":1}],"user":{"user_id":"n"}}"#,
                &["user", "user_id"]
            ),
            Some("n".into())
        );
    }

    #[test]
    fn anything_else_is_none() {
        for body in [
            &br#"{"user_id":null}"#[..],
            br#"{"user_id":""}"#,
            br#"{"user_id":1.5}"#,
            br#"{"user_id":{"a":1}}"#,
            br#"{"other":1}"#,
            br#"[{"user_id":1}]"#,
            br#"{"user_id":1} trailing"#,
            b"not json",
            b"",
        ] {
            assert_eq!(
                json_path(body, &["user_id"]),
                None,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(json_path(br#"{"user":null}"#, &["user", "user_id"]), None);
        assert_eq!(json_path(br#"{"user_id":1}"#, &[]), None);
    }
}
