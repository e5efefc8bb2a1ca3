//! JSON read as strictly as the gate needs: Go's `encoding/json` lets the
//! last of two equal keys win and folds keys' case, so a body with a
//! repeated key is refused here before anything judges it (the other half,
//! keys in a non-canonical spelling, is [`super::body`]'s schema).

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Parses `bytes` as one JSON value, refusing any object with the same key
/// twice, or two keys that differ only in case (Go would read both into one
/// field, the last winning).
pub fn parse(bytes: &[u8]) -> Result<Value, String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = Strict::deserialize_value(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(v)
}

struct Strict;

impl Strict {
    fn deserialize_value<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictValue(Value);

impl<'de> de::Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Strict::deserialize_value(d).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::from(n))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::from(n))
    }
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(n)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number out of range"))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            if let Some(prev) = out.keys().find(|p| folds_equal(p, &k)) {
                return Err(de::Error::custom(format!(
                    "the key {k:?} is given twice (also as {prev:?}); Docker would keep only the last"
                )));
            }
            let StrictValue(v) = map.next_value()?;
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

/// Whether Go's `encoding/json` would take two keys for one field: equal
/// under Unicode simple case folding (so `K` and the Kelvin sign `K` too).
pub fn folds_equal(a: &str, b: &str) -> bool {
    let fold = |s: &str| -> String { s.chars().flat_map(fold_char).collect() };
    a == b || fold(a) == fold(b)
}

fn fold_char(c: char) -> impl Iterator<Item = char> {
    // Go folds the Kelvin sign to k and the long s to s; Rust's lowercase
    // does the first but not the second.
    let c = match c {
        'ſ' => 's',
        'K' => 'k',
        _ => c,
    };
    c.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_keys_in_any_case_are_refused() {
        for body in [
            r#"{"Labels":{},"Labels":{"ds01.user":"bob"}}"#,
            r#"{"Labels":{},"labels":{"ds01.user":"bob"}}"#,
            r#"{"HostConfig":{"Mounts":[{"Source":"/home/a","source":"/"}]}}"#,
            r#"{"a":{"Privileged":false,"PRIVILEGED":true}}"#,
            r#"{"Kind":1,"kind":2}"#,
            r#"{"ſecurityOpt":1,"SecurityOpt":2}"#,
        ] {
            let e = parse(body.as_bytes()).unwrap_err();
            assert!(e.contains("given twice"), "{body}: {e}");
        }
    }

    #[test]
    fn ordinary_json_reads_as_serde_json_does() {
        let body = r#"{"Image":"x","Env":["A=1"],"N":-3,"F":1.5,"Z":null,"T":true}"#;
        assert_eq!(
            parse(body.as_bytes()).unwrap(),
            serde_json::from_str::<Value>(body).unwrap()
        );
        assert!(parse(b"{} x").is_err());
        assert!(parse(b"\xff").is_err());
    }
}
