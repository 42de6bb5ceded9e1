//! The JSON an agent sends (tool arguments, model features, its output) and a run's input
//! must mean one thing: an object with a key twice is refused, because readers disagree on
//! which value counts (serde takes the last; a person reading the journal sees the first;
//! an agent's typed input refuses it).

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// The first key that appears twice in one object of `text`, if any (keys compared as
/// decoded, so `"a"` and `"\u0061"` are one key). Text that is not JSON has none (it is
/// refused elsewhere, as not JSON).
pub fn duplicate_key(text: &str) -> Option<String> {
    let found = RefCell::new(None);
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let _ = Walk(&found).deserialize(&mut deserializer);
    found.into_inner()
}

/// Visits a whole JSON value, noting the first repeated key of any object.
struct Walk<'a>(&'a RefCell<Option<String>>);

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Walk(self.0))?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut keys = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !keys.insert(key.clone()) && self.0.borrow().is_none() {
                *self.0.borrow_mut() = Some(key);
            }
            map.next_value_seed(Walk(self.0))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::duplicate_key;

    #[test]
    fn finds_a_repeated_key_at_any_depth() {
        assert_eq!(duplicate_key(r#"{"a":1,"b":2}"#), None);
        assert_eq!(duplicate_key(r#"{"a":1,"a":2}"#), Some("a".into()));
        assert_eq!(
            duplicate_key(r#"[{"x":{"d":"approved","d":"declined"}}]"#),
            Some("d".into())
        );
        assert_eq!(duplicate_key(r#"{"a":{"b":1},"c":{"b":2}}"#), None);
        assert_eq!(duplicate_key("not json"), None);
    }
}
