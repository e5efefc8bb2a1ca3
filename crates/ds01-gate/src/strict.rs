//! JSON read as strictly as the gate needs: Go's `encoding/json` lets the
//! last of two equal keys win and folds keys' case, so a body with a
//! repeated key, in any case, is refused before anything judges it (the
//! other half, keys in a non-canonical spelling, is [`super::body`]'s
//! schema). The reader is ds01-core's, which reads runc's specs too.

use serde_json::Value;

pub use ds01_core::oci::folds_equal;

/// Parses `bytes` as one JSON value and nothing after it, refusing any
/// object with the same key twice, or two keys that differ only in case.
pub fn parse(bytes: &[u8]) -> Result<Value, String> {
    ds01_core::oci::strict_json(bytes, true).map_err(|e| match e {
        ds01_core::oci::ReadError::Duplicate { key, at } => format!(
            "the key {key:?} is given twice in {at}, in one case or another; Docker would keep only the last"
        ),
        e => e.to_string(),
    })
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
            r#"{"Kind":1,"\u212aind":2}"#,
            r#"{"\u017fecurityOpt":1,"SecurityOpt":2}"#,
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
