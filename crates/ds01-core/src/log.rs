//! The shim's own log file, and error lines for runc's `--log`.
//!
//! During `create` the shim's stdout and stderr are the container's, so
//! nothing is ever printed there: the admin reads the log file, the user
//! reads what Docker takes from the `--log` file.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::SystemTime;

use crate::time::timestamp;

/// Appends one line to the shim's log. Best effort: a log that cannot be
/// written must not stop a container.
pub fn append(log: &Path, level: &str, msg: &str) {
    let line = format!(
        "{} {level} [{}] {}\n",
        timestamp(SystemTime::now()),
        std::process::id(),
        msg.replace('\n', " ")
    );
    // A log directory others may write to is not written to at all: root
    // would otherwise append wherever a planted link points.
    if let Some(dir) = log.parent()
        && crate::fsutil::ensure_dir(dir).is_err()
    {
        return;
    }
    let _ = crate::fsutil::open_append(log, 0o644).and_then(|mut f| f.write_all(line.as_bytes()));
}

/// Appends an error in runc's JSON log format, which Docker shows as
/// `OCI runtime create failed: <msg>`; the last error line wins.
pub fn oci_error(log: &Path, msg: &str) -> std::io::Result<()> {
    let line = serde_json::json!({
        "level": "error",
        "msg": msg,
        "time": humantime::format_rfc3339_nanos(SystemTime::now()).to_string(),
    });
    // runc's own log file, in the bundle Docker made: one write on O_APPEND,
    // so concurrent writers never interleave a line.
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(log)?;
    f.write_all(format!("{line}\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oci_error_is_one_json_line_appended() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log.json");
        std::fs::write(&p, "{\"level\":\"info\",\"msg\":\"x\"}\n").unwrap();
        oci_error(&p, "ds01: no MIG slice free").unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(last["level"], "error");
        assert_eq!(last["msg"], "ds01: no MIG slice free");
        assert!(humantime::parse_rfc3339(last["time"].as_str().unwrap()).is_ok());
        assert_eq!(text.lines().count(), 2);
    }

    #[test]
    fn shim_log_is_not_written_through_links_or_into_open_directories() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("logs");
        std::fs::create_dir(&d).unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "").unwrap();
        std::os::unix::fs::symlink(&victim, d.join("runtime.log")).unwrap();
        append(&d.join("runtime.log"), "info", "x");
        assert_eq!(std::fs::read(&victim).unwrap(), b"");
        std::fs::remove_file(d.join("runtime.log")).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        append(&d.join("runtime.log"), "info", "x");
        assert!(!d.join("runtime.log").exists());
    }

    #[test]
    fn shim_log_creates_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/runtime.log");
        append(&p, "info", "one\ntwo");
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().count(), 1);
        assert!(
            text.contains(" info [") && text.ends_with("one two\n"),
            "{text}"
        );
    }
}
