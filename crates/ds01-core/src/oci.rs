//! Reading a bundle's `config.json` exactly as runc will.
//!
//! runc decodes the spec with Go's `encoding/json`, which differs from a
//! plain `serde_json::from_slice` in ways a container could use to hide a
//! GPU from ds01 while runc still honours it:
//! - it decodes the first JSON value and ignores whatever follows;
//! - it matches keys to fields case-insensitively (with Unicode simple
//!   folding: `ſ` is `s`, the Kelvin sign is `k`), and a key that appears
//!   twice is decoded twice, merging objects;
//! - it replaces invalid UTF-8 in strings with U+FFFD;
//! - it refuses the whole spec when a field has the wrong type.
//!
//! [`read`] gives the spec as runc sees it, with ds01's canonical key
//! names, or refuses what it cannot read the same way.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

pub use crate::names::{PROFILE, VISIBLE};

mod look;

/// A spec as runc will read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub value: Value,
    /// Invalid UTF-8 was replaced, as Go does: the judgement holds, but
    /// ds01 will not rewrite such a spec.
    pub lossy: bool,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReadError {
    #[error("not JSON that runc reads the same way: {0}")]
    Syntax(String),
    #[error("not a JSON object")]
    NotObject,
    #[error("key {key:?} appears twice in {at}; runc would merge them, so ds01 refuses it")]
    Duplicate { key: String, at: String },
    #[error("{at} has both {a:?} and {b:?}; runc reads both as {canonical:?}, so ds01 refuses it")]
    Ambiguous {
        at: String,
        a: String,
        b: String,
        canonical: String,
    },
    #[error("field {at} must be {want}; runc would refuse the spec")]
    Type { at: String, want: &'static str },
}

/// Reads the bytes of a `config.json` as runc does.
pub fn read(bytes: &[u8]) -> Result<Spec, ReadError> {
    // Read by hand where it can vouch for every byte (nearly every spec):
    // the same value, at half the cost. The rest, and every error, by serde.
    match look::whole(bytes) {
        Some(value) => Ok(Spec {
            value,
            lossy: false,
        }),
        None => read_by_serde(bytes),
    }
}

/// [`read`] without the reading by hand: what it is checked against.
#[doc(hidden)]
pub fn read_by_serde(bytes: &[u8]) -> Result<Spec, ReadError> {
    let (mut value, lossy) = match first_value(bytes) {
        Ok(v) => (v, false),
        Err(e) if std::str::from_utf8(bytes).is_err() => {
            let text = String::from_utf8_lossy(bytes);
            match first_value(text.as_bytes()) {
                Ok(v) => (v, true),
                Err(_) => return Err(e),
            }
        }
        Err(e) => return Err(e),
    };
    if !value.is_object() {
        return Err(ReadError::NotObject);
    }
    canonicalise(&mut value, &ROOT, Step::Root("spec"))?;
    Ok(Spec { value, lossy })
}

/// The first look at a `config.json`: only the fields ds01 reads (those
/// [`read`] checks), the rest stepped over unbuilt. Judging it gives what
/// judging [`read`]'s value gives; `None` where it cannot vouch for what
/// it saw plainly (then [`read`] decides, and reports any error).
pub fn first_look(bytes: &[u8]) -> Option<Value> {
    look::look(bytes)
}

/// Reads an exec's process file (`runc exec --process F`) as runc does.
pub fn read_process(bytes: &[u8]) -> Result<Value, ReadError> {
    let mut value = first_value(bytes)?;
    if !value.is_object() {
        return Err(ReadError::NotObject);
    }
    canonicalise(&mut value, &PROCESS, Step::Root("process"))?;
    Ok(value)
}

/// The first JSON value in `bytes`, as Go's `json.Decoder` reads it: what
/// follows is never looked at. Duplicate keys are an error.
fn first_value(bytes: &[u8]) -> Result<Value, ReadError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    Strict {
        at: "spec",
        fold: false,
    }
    .deserialize(&mut de)
    .map_err(read_error)
}

/// The whole of `bytes` as one JSON value, nothing after it; a key given
/// twice is an error, and with `fold` so are two keys Go's `encoding/json`
/// takes for one field (equal under its case folding: [`folds_equal`]),
/// of which it would keep the last.
pub fn strict_json(bytes: &[u8], fold: bool) -> Result<Value, ReadError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = Strict { at: "body", fold }
        .deserialize(&mut de)
        .map_err(read_error)?;
    de.end().map_err(read_error)?;
    Ok(v)
}

fn read_error(e: serde_json::Error) -> ReadError {
    match e.to_string().strip_prefix(DUP) {
        Some(rest) => {
            let (key, at) = rest.split_once('\u{0}').unwrap_or((rest, "spec"));
            let at = at.split(" at line").next().unwrap_or(at);
            ReadError::Duplicate {
                key: key.to_string(),
                at: at.to_string(),
            }
        }
        None => ReadError::Syntax(e.to_string()),
    }
}

const DUP: &str = "ds01-duplicate-key:";

/// A `serde_json::Value` builder that fails on a repeated key (with
/// `fold`, on keys equal under Go's case folding too).
struct Strict<'a> {
    at: &'a str,
    fold: bool,
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Strict {
            at: self.at,
            fold: self.fold,
        })? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let v = map.next_value_seed(Strict {
                at: &key,
                fold: self.fold,
            })?;
            let dup = |key: &str| de::Error::custom(format!("{DUP}{key}\u{0}{}", self.at));
            if self.fold && out.keys().any(|k| folds_equal(k, &key)) {
                return Err(dup(&key));
            }
            // One hash per key: the entry tells of a key already there.
            match out.entry(key) {
                serde_json::map::Entry::Vacant(slot) => {
                    slot.insert(v);
                }
                serde_json::map::Entry::Occupied(held) => return Err(dup(held.key())),
            }
        }
        Ok(Value::Object(out))
    }
}

/// Whether Go's `encoding/json` would take two keys for one field: equal
/// under Unicode simple case folding (the long s is `s`, the Kelvin sign `k`).
pub fn folds_equal(a: &str, b: &str) -> bool {
    let fold = |s: &str| -> String {
        s.chars()
            .flat_map(|c| {
                match c {
                    '\u{017F}' => 's',
                    '\u{212A}' => 'k',
                    c => c,
                }
                .to_lowercase()
            })
            .collect()
    };
    a == b || fold(a) == fold(b)
}

/// Go's `bytes.EqualFold` for a key against one of ds01's ASCII field
/// names: ASCII case is ignored, and the two non-ASCII letters that fold
/// to ASCII ones (U+017F to `s`, U+212A to `k`) count as them.
pub fn folds_to(key: &str, name: &str) -> bool {
    // An ASCII key (nearly every one) folds by ASCII case alone.
    if key.is_ascii() {
        return key.eq_ignore_ascii_case(name);
    }
    let mut k = key.chars().map(|c| match c {
        '\u{017F}' => 's',
        '\u{212A}' => 'k',
        c => c.to_ascii_lowercase(),
    });
    let mut n = name.chars().map(|c| c.to_ascii_lowercase());
    loop {
        match (k.next(), n.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

/// What a field holds, as far as ds01 reads it.
enum Shape {
    Object(&'static [(&'static str, Shape)]),
    /// An object of strings (annotations).
    StringMap,
    Array(&'static Shape),
    String,
    Integer,
    Bool,
}

const ENV: Shape = Shape::Array(&Shape::String);
const HOOK: Shape = Shape::Object(&[
    ("path", Shape::String),
    ("args", Shape::Array(&Shape::String)),
    ("env", Shape::Array(&Shape::String)),
    ("timeout", Shape::Integer),
]);
const HOOKS: Shape = Shape::Array(&HOOK);
const DEVICE: Shape = Shape::Object(&[
    ("path", Shape::String),
    ("type", Shape::String),
    ("major", Shape::Integer),
    ("minor", Shape::Integer),
    ("fileMode", Shape::Integer),
    ("uid", Shape::Integer),
    ("gid", Shape::Integer),
]);
const RULE: Shape = Shape::Object(&[
    ("allow", Shape::Bool),
    ("type", Shape::String),
    ("major", Shape::Integer),
    ("minor", Shape::Integer),
    ("access", Shape::String),
]);
const MOUNT: Shape = Shape::Object(&[
    ("destination", Shape::String),
    ("source", Shape::String),
    ("type", Shape::String),
    ("options", Shape::Array(&Shape::String)),
]);
const STRINGS: Shape = Shape::Array(&Shape::String);
/// A process: the container's (`process`), or an exec's (`--process`).
const PROCESS: Shape = Shape::Object(&[
    ("env", ENV),
    (
        "capabilities",
        Shape::Object(&[
            ("bounding", STRINGS),
            ("effective", STRINGS),
            ("inheritable", STRINGS),
            ("permitted", STRINGS),
            ("ambient", STRINGS),
        ]),
    ),
    ("apparmorProfile", Shape::String),
    ("noNewPrivileges", Shape::Bool),
    (
        "rlimits",
        Shape::Array(&Shape::Object(&[
            ("type", Shape::String),
            ("hard", Shape::Integer),
            ("soft", Shape::Integer),
        ])),
    ),
]);
const NAMESPACE: Shape = Shape::Object(&[("type", Shape::String), ("path", Shape::String)]);
const ROOT: Shape = Shape::Object(&[
    ("process", PROCESS),
    ("mounts", Shape::Array(&MOUNT)),
    (
        "hooks",
        Shape::Object(&[
            ("prestart", HOOKS),
            ("createRuntime", HOOKS),
            ("createContainer", HOOKS),
            ("startContainer", HOOKS),
            ("poststart", HOOKS),
            ("poststop", HOOKS),
        ]),
    ),
    ("annotations", Shape::StringMap),
    (
        "linux",
        Shape::Object(&[
            ("devices", Shape::Array(&DEVICE)),
            (
                "resources",
                Shape::Object(&[("devices", Shape::Array(&RULE))]),
            ),
            ("namespaces", Shape::Array(&NAMESPACE)),
            ("maskedPaths", STRINGS),
            ("readonlyPaths", STRINGS),
            (
                "seccomp",
                Shape::Object(&[("defaultAction", Shape::String)]),
            ),
            ("sysctl", Shape::StringMap),
            ("cgroupsPath", Shape::String),
            ("rootfsPropagation", Shape::String),
        ]),
    ),
]);

/// Renames case-variant keys to ds01's names and checks the types of the
/// fields ds01 reads. `null` is an absent field, as in Go.
fn canonicalise(v: &mut Value, shape: &Shape, at: Step) -> Result<(), ReadError> {
    let bad = |want| ReadError::Type {
        at: at.to_string(),
        want,
    };
    if v.is_null() {
        return Ok(());
    }
    match shape {
        Shape::String => v.is_string().then_some(()).ok_or_else(|| bad("a string")),
        Shape::Bool => v
            .is_boolean()
            .then_some(())
            .ok_or_else(|| bad("true or false")),
        Shape::Integer => (v.is_i64() || v.is_u64())
            .then_some(())
            .ok_or_else(|| bad("an integer")),
        Shape::StringMap => {
            let map = v.as_object().ok_or_else(|| bad("an object of strings"))?;
            match map.iter().find(|(_, x)| !x.is_string() && !x.is_null()) {
                Some((k, _)) => Err(ReadError::Type {
                    at: Step::Field(&at, k).to_string(),
                    want: "a string",
                }),
                None => Ok(()),
            }
        }
        Shape::Array(item) => {
            let arr = v.as_array_mut().ok_or_else(|| bad("an array"))?;
            for (i, x) in arr.iter_mut().enumerate() {
                canonicalise(x, item, Step::Index(&at, i))?;
            }
            Ok(())
        }
        Shape::Object(fields) => {
            let map = v.as_object_mut().ok_or_else(|| bad("an object"))?;
            for (name, sub) in *fields {
                // Most specs spell every key as ds01 does: no key to rename.
                let mut keys = map.keys().filter(|k| folds_to(k, name));
                let (Some(one), second) = (keys.next(), keys.next()) else {
                    continue;
                };
                if let Some(b) = second {
                    return Err(ReadError::Ambiguous {
                        at: at.to_string(),
                        a: one.clone(),
                        b: b.clone(),
                        canonical: name.to_string(),
                    });
                }
                if one != name {
                    let one = one.clone();
                    rename(map, &one, name);
                }
                let child = map.get_mut(*name).expect("just renamed");
                canonicalise(child, sub, Step::Field(&at, name))?;
            }
            Ok(())
        }
    }
}

/// Where in the spec [`canonicalise`] is, written out only for an error.
#[derive(Clone, Copy)]
enum Step<'a> {
    Root(&'a str),
    Field(&'a Step<'a>, &'a str),
    Index(&'a Step<'a>, usize),
}

impl std::fmt::Display for Step<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Step::Root(name) => f.write_str(name),
            Step::Field(up, name) => write!(f, "{up}.{name}"),
            Step::Index(up, i) => write!(f, "{up}[{i}]"),
        }
    }
}

/// Renames a key in place, keeping its position.
fn rename(map: &mut Map<String, Value>, from: &str, to: &str) {
    let old = std::mem::take(map);
    *map = old
        .into_iter()
        .map(|(k, v)| {
            if k == from {
                (to.to_string(), v)
            } else {
                (k, v)
            }
        })
        .collect();
}

/// The container's `process.env`, empty when it has none.
pub fn env(spec: &Value) -> Vec<&str> {
    at(spec, "/process/env")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The last value of `name` in an OCI `process.env` list, as execve's
/// consumers see it when a name repeats.
pub fn env_value<'a>(env: &[&'a str], name: &str) -> Option<&'a str> {
    env.iter()
        .rev()
        .find_map(|e| e.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
}

/// The array at a path of plain keys (`/linux/devices`), empty when absent.
pub fn array<'a>(spec: &'a Value, path: &str) -> &'a [Value] {
    at(spec, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The value at a path of plain keys (`/linux/seccomp/defaultAction`):
/// a JSON pointer without its escapes, walked without unescaping each
/// step (this is on every container's path).
pub fn at<'a>(spec: &'a Value, path: &str) -> Option<&'a Value> {
    debug_assert!(!path.contains('~'), "{path}: a path of plain keys");
    if path.is_empty() {
        return Some(spec);
    }
    // As a JSON pointer: one that does not start at the root names nothing.
    path.strip_prefix('/')?
        .split('/')
        .try_fold(spec, |v, key| v.as_object()?.get(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_look_reads_what_ds01_judges_as_strictly_and_nothing_else() {
        let spec = br#"{"process": {"args": ["a"], "args": ["b"], "ENV": ["X=1"]},
            "root": {"path": "/r"}, "linux": {"Devices": [{"path": "/dev/x", "major": 1}]}}"#;
        let look = first_look(spec).unwrap();
        // Only ds01's fields, renamed as runc reads them; the rest unbuilt.
        assert_eq!(
            look,
            serde_json::json!({"process": {"env": ["X=1"]},
                "linux": {"devices": [{"path": "/dev/x", "major": 1}]}})
        );
        // A key twice where ds01 does not look is runc's business...
        assert!(matches!(read(spec), Err(ReadError::Duplicate { .. })));
        // ...but never where it does, in any spelling, nor a wrong type:
        // those, and what it will not vouch for, are the whole read's.
        for bad in [
            &br#"{"process": {"env": []}, "process": {"env": []}}"#[..],
            br#"{"process": {"env": ["A=1"], "Env": ["B=1"]}}"#,
            br#"{"linux": {"devices": [{"major": "195"}]}}"#,
            br#"{"linux": {"devices": [{"major": -1}]}}"#,
            br#"{"linux": {"devices": [{"major": 195.0}]}}"#,
            br#"{"linux": {"devices": [{"major": 0195}]}}"#,
            br#"{"linux": {"devices": [{"major": 18446744073709551616}]}}"#,
            br#"{"\u0070rocess": {"env": ["A=1"]}}"#,
            br#"{"process": {"env": ["A=\u0031"]}}"#,
            br#"{"annotations": {"a": "1", "a": "2"}}"#,
            br#"{"annotations": {"a": 1}}"#,
            b"{\"process\": {\"env\": [\"A=\xff\"]}}",
            b"{\"root\": {\"path\": \"\xff\"}}",
            b"{\"process\": {\"env\": [\"A=\x01\"]}}",
            br#"[]"#,
            br#"{"process": "#,
            br#"{"root": 1 "linux": {}}"#,
        ] {
            assert!(
                first_look(bad).is_none(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // What it steps over is stepped over whole: strings with escapes
        // and brackets, nested values, scalars.
        let spec = br#"{"root": {"path": "a\"}{[", "x": [1, {"y": [true, null]}]},
            "hostname": "h\\", "z": -1.5e3, "linux": {"cgroupsPath": "/docker/x"}} trailing"#;
        assert_eq!(
            first_look(spec).unwrap(),
            serde_json::json!({"linux": {"cgroupsPath": "/docker/x"}})
        );
    }

    /// `v` cut to the fields of `shape`: what the first look builds of it.
    fn project(v: &Value, shape: &Shape) -> Value {
        match (shape, v) {
            (Shape::Object(fields), Value::Object(map)) => Value::Object(
                fields
                    .iter()
                    .filter_map(|(name, sub)| {
                        Some((name.to_string(), project(map.get(*name)?, sub)))
                    })
                    .collect(),
            ),
            (Shape::Array(item), Value::Array(a)) => {
                Value::Array(a.iter().map(|x| project(x, item)).collect())
            }
            _ => v.clone(),
        }
    }

    #[test]
    fn the_reading_by_hand_gives_what_serde_gives() {
        for spec in [
            &include_bytes!("../../../tests/fixtures/docker/plain.json")[..],
            include_bytes!("../../../tests/fixtures/docker/gpu.json"),
            include_bytes!("../../../tests/fixtures/docker/privileged.json"),
            include_bytes!("../../../tests/fixtures/docker/nvidia-device.json"),
            br#"{"linux": {"resources": {"memory": {"limit": -1, "swap": 9223372036854775807},
                "cpu": {"shares": 0}}, "Devices": [{"Major": 195}], "x": [[], {}, [null, true]]},
                "oomScoreAdj": -9223372036854775808, "Process": {"ENV": ["A=1"], "user": {"uid": 0}},
                "hostname": "a", "HOSTNAME": "b"}"#,
        ] {
            assert!(look::whole(spec).is_some());
            assert_eq!(read(spec), read_by_serde(spec));
        }
        // What serde makes a float, or reads with an escape, is left to it.
        for spec in [
            &br#"{"a": -0}"#[..],
            br#"{"a": 1.5}"#,
            br#"{"a": 1e3}"#,
            br#"{"a": -9223372036854775809}"#,
            br#"{"a": 18446744073709551616}"#,
            br#"{"a": "\n"}"#,
            br#"{"a": {"b": 1, "b": 2}}"#,
        ] {
            assert!(
                look::whole(spec).is_none(),
                "{}",
                String::from_utf8_lossy(spec)
            );
            assert_eq!(read(spec), read_by_serde(spec));
        }
    }

    #[test]
    fn nesting_is_left_to_serde_past_a_hundred_levels() {
        let nested = |n: usize| format!("{{\"a\": {}{}}}", "[".repeat(n), "]".repeat(n));
        for (n, by_hand) in [
            (98, true),
            (99, false),
            (126, false),
            (127, false),
            (200_000, false),
        ] {
            let spec = nested(n);
            assert_eq!(look::whole(spec.as_bytes()).is_some(), by_hand, "{n}");
            assert_eq!(read(spec.as_bytes()), read_by_serde(spec.as_bytes()), "{n}");
            // Stepped over, at any depth, by the first look.
            assert_eq!(
                first_look(spec.as_bytes()),
                Some(serde_json::json!({})),
                "{n}"
            );
        }
        // serde's own limit: 127 levels with the root, not 128.
        assert!(read_by_serde(nested(126).as_bytes()).is_ok());
        assert!(read_by_serde(nested(127).as_bytes()).is_err());
    }

    #[test]
    fn the_first_look_builds_what_the_whole_read_builds_of_ds01_s_fields() {
        for spec in [
            &include_bytes!("../../../tests/fixtures/docker/plain.json")[..],
            include_bytes!("../../../tests/fixtures/docker/gpu.json"),
            include_bytes!("../../../tests/fixtures/docker/privileged.json"),
            include_bytes!("../../../tests/fixtures/docker/nvidia-device.json"),
            "{\"Linux\": {\"DEVICES\": [{\"PATH\": \"/dev/x\", \"Major\": 195, \"uid\": null}]},
                \"hoo\u{212a}s\": {\"poststop\": [{\"path\": \"/h\", \"args\": [\"a\"], \"timeout\": 5}]},
                \"annotations\": {\"k\": \"v\", \"n\": null}, \"process\": null}"
                .as_bytes(),
            "{\"linux\": {\"deviceſ\": [], \"sysctl\": {\"net.x\": \"1\"}}}".as_bytes(),
        ] {
            let look = first_look(spec).unwrap();
            assert_eq!(look, project(&read(spec).unwrap().value, &ROOT));
        }
    }

    #[test]
    fn trailing_bytes_are_ignored_as_go_does() {
        let s = read(br#"{"linux":{"devices":[]}} garbage {"#).unwrap();
        assert_eq!(s.value, serde_json::json!({"linux": {"devices": []}}));
    }

    #[test]
    fn case_variants_are_read_as_runc_reads_them() {
        let s =
            read(br#"{"Linux":{"DEVICES":[{"PATH":"/dev/x","Major":195,"minor":0}]}}"#).unwrap();
        assert_eq!(s.value["linux"]["devices"][0]["major"], 195);
        assert_eq!(s.value["linux"]["devices"][0]["path"], "/dev/x");
        // The long s and the Kelvin sign fold to ASCII letters in Go.
        let s = read("{\"linux\":{\"deviceſ\":[{\"major\":195}]},\"hoo\u{212A}s\":{}}".as_bytes())
            .unwrap();
        assert_eq!(s.value["linux"]["devices"][0]["major"], 195);
        assert!(s.value.get("hooks").is_some());
        assert!(folds_to("ANNOTATIONS", "annotations"));
        assert!(!folds_to("linuxx", "linux"));
    }

    #[test]
    fn two_keys_for_one_field_are_refused() {
        let e = read(br#"{"linux":{},"Linux":{"devices":[]}}"#).unwrap_err();
        assert!(matches!(e, ReadError::Ambiguous { .. }), "{e}");
        let e = read(br#"{"linux":{"devices":[]},"linux":{}}"#).unwrap_err();
        assert!(e.to_string().contains("\"linux\" appears twice"), "{e}");
        // Anywhere, not only at the top.
        let e = read(br#"{"annotations":{"a":"1","a":"2"}}"#).unwrap_err();
        assert!(matches!(e, ReadError::Duplicate { .. }), "{e}");
    }

    #[test]
    fn invalid_utf8_is_replaced_as_go_does() {
        let s = read(b"{\"process\":{\"env\":[\"A=\xff\"]}}").unwrap();
        assert!(s.lossy);
        assert_eq!(s.value["process"]["env"][0], "A=\u{fffd}");
        assert!(!read(b"{}").unwrap().lossy);
    }

    #[test]
    fn wrong_types_are_refused_with_the_field() {
        for (spec, field) in [
            (r#"{"hooks":[]}"#, "spec.hooks"),
            (r#"{"hooks":{"poststop":{}}}"#, "spec.hooks.poststop"),
            (r#"{"linux":{"devices":{}}}"#, "spec.linux.devices"),
            (r#"{"annotations":[]}"#, "spec.annotations"),
            (r#"{"annotations":{"a":1}}"#, "spec.annotations.a"),
            (
                r#"{"linux":{"devices":[{"major":195.0}]}}"#,
                "spec.linux.devices[0].major",
            ),
            (
                r#"{"linux":{"resources":{"devices":[{"allow":"yes"}]}}}"#,
                "spec.linux.resources.devices[0].allow",
            ),
            (r#"{"process":{"env":[1]}}"#, "spec.process.env[0]"),
        ] {
            let e = read(spec.as_bytes()).unwrap_err();
            assert!(
                e.to_string().contains(&format!("field {field} must be")),
                "{spec}: {e}"
            );
        }
        // null is an absent field, as in Go.
        assert!(read(br#"{"annotations":null,"hooks":{"poststop":null}}"#).is_ok());
    }

    #[test]
    fn not_an_object_or_not_json_is_refused() {
        assert_eq!(read(b"[]").unwrap_err(), ReadError::NotObject);
        assert!(matches!(read(b"{").unwrap_err(), ReadError::Syntax(_)));
    }
}
