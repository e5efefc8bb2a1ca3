//! Notices for users where they look: `~/.ds01/notices`, which
//! `/etc/profile.d/ds01.sh` shows at login.

use std::process::{Command, Stdio};

/// Appends `text` to `~user/.ds01/notices`, written as that user (never as
/// root into a directory the user controls), where the login snippet in
/// /etc/profile.d shows it.
pub fn leave(user: &str, text: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    let (uid, gid, home) =
        ds01_core::identity::account(user).ok_or_else(|| format!("no account {user:?}"))?;
    let mut child = Command::new("/bin/sh")
        .args([
            "-c",
            "umask 077 && mkdir -p \"$HOME/.ds01\" && cat >> \"$HOME/.ds01/notices\"",
        ])
        .env_clear()
        .env("HOME", &home)
        .env("PATH", "/usr/bin:/bin")
        .uid(uid)
        .gid(gid)
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run /bin/sh as {user}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = writeln!(stdin, "{text}");
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "writing {home}/.ds01/notices: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As root, with a throwaway account: the notice lands in its home,
    /// owned by it, mode 0600, and a second one is appended.
    #[test]
    fn a_notice_is_written_as_the_user_into_their_home() {
        if unsafe { libc::geteuid() } != 0 || !std::path::Path::new("/usr/sbin/useradd").exists() {
            eprintln!("skipped: needs root and useradd");
            return;
        }
        let user = format!("ds01n{}", std::process::id() % 100000);
        let home = tempfile::tempdir().unwrap();
        let h = home.path().join("h");
        let ok = Command::new("/usr/sbin/useradd")
            .args(["-M", "-d"])
            .arg(&h)
            .arg(&user)
            .status()
            .unwrap()
            .success();
        assert!(ok, "useradd failed");
        let (uid, gid, _) = ds01_core::identity::account(&user).unwrap();
        std::fs::create_dir(&h).unwrap();
        std::os::unix::fs::chown(&h, Some(uid), Some(gid)).unwrap();
        let r1 = leave(&user, "first");
        let r2 = leave(&user, "second");
        let text = std::fs::read_to_string(h.join(".ds01/notices"));
        let meta = std::fs::metadata(h.join(".ds01/notices"));
        let _ = Command::new("/usr/sbin/userdel").arg(&user).status();
        r1.unwrap();
        r2.unwrap();
        assert_eq!(text.unwrap(), "first\nsecond\n");
        use std::os::unix::fs::MetadataExt;
        let meta = meta.unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o777), (uid, 0o600));
        // No account: an error naming it.
        assert!(
            leave("ds01-no-such-user", "x")
                .unwrap_err()
                .contains("ds01-no-such-user")
        );
    }
}
