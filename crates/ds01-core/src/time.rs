//! Times as the ledger, the logs and the audit log write them: RFC 3339,
//! UTC, to the second.

use std::time::SystemTime;

pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A time [`timestamp`] wrote (any RFC 3339 time, in fact).
pub fn parse(s: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn a_timestamp_reads_back_to_the_second() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_750);
        let s = timestamp(t);
        assert_eq!(s, "2023-11-14T22:13:20Z");
        assert_eq!(
            parse(&s),
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
        assert_eq!(parse("yesterday"), None);
    }
}
