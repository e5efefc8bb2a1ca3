//! Time-limited exceptions to the host GPU lock: `ds01 admin bare-metal
//! grant USER DURATION` puts a user in `ds01-gpu-direct` until a time, and
//! `revoke` (or the reaper's pass, once the time is past) takes them out.
//! Each goes to the audit log. The grants live in one JSON file, changed
//! under its lock and replaced whole.

use std::path::Path;
use std::time::SystemTime;

use ds01_core::audit::{self, Event, EventKind};
use ds01_core::fsutil;
use ds01_core::identity::Source;
use ds01_core::time::{parse, timestamp};
use serde::{Deserialize, Serialize};

use crate::host_gpus::GROUP;

/// One grant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grant {
    pub user: String,
    /// RFC 3339.
    pub until: String,
    /// The admin who gave it.
    pub by: String,
}

/// Who is in the group; behind a trait so the file logic is tested
/// without accounts.
pub trait Members {
    fn add(&self, user: &str) -> Result<(), String>;
    fn remove(&self, user: &str) -> Result<(), String>;
}

/// The real group, by `gpasswd`.
pub struct Gpasswd;

impl Members for Gpasswd {
    fn add(&self, user: &str) -> Result<(), String> {
        gpasswd(&["-a", user, GROUP], false)
    }

    fn remove(&self, user: &str) -> Result<(), String> {
        gpasswd(&["-d", user, GROUP], true)
    }
}

/// `gpasswd ARGS`; `absent_ok`: a user not in the group is no error.
fn gpasswd(args: &[&str], absent_ok: bool) -> Result<(), String> {
    let out = std::process::Command::new("gpasswd")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("gpasswd: {e}"))?;
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.success() || (absent_ok && err.contains("is not a member")) {
        Ok(())
    } else {
        Err(format!("gpasswd {}: {}", args.join(" "), err.trim()))
    }
}

fn io(path: &Path, e: impl std::fmt::Display) -> String {
    format!("{}: {e}", path.display())
}

/// The grants in the file (none when it is missing).
pub fn read(path: &Path) -> Result<Vec<Grant>, String> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| io(path, format!("{e}; fix or remove it"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io(path, e)),
    }
}

/// Changes the grants under the file's lock: `change` edits the list and
/// says what it did; the file is replaced only after the group changed.
fn change<T>(
    path: &Path,
    change: impl FnOnce(&mut Vec<Grant>) -> Result<T, String>,
) -> Result<T, String> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let lock = fsutil::open_lock(&path.with_extension("lock")).map_err(|e| io(path, e))?;
    // SAFETY: flock on a descriptor we own; released when `lock` drops.
    if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) } != 0 {
        return Err(io(path, std::io::Error::last_os_error()));
    }
    let mut grants = read(path)?;
    let out = change(&mut grants)?;
    let text = serde_json::to_vec_pretty(&grants).expect("serialises");
    fsutil::write_atomic(path, &text, 0o644).map_err(|e| io(path, e))?;
    Ok(out)
}

fn event(kind: EventKind, user: &str, reason: String) -> Event {
    Event {
        time: timestamp(SystemTime::now()),
        event: kind,
        user: Some(user.to_string()),
        identity_source: Source::Unknown,
        container_id: String::new(),
        devices: Vec::new(),
        gpueq: 0.0,
        reason: Some(reason),
        seconds: None,
        alloc_id: None,
    }
}

/// Puts `user` in the group until `until` (a later grant replaces an
/// earlier one), and audits it.
pub fn grant(
    path: &Path,
    audit_log: &Path,
    members: &dyn Members,
    user: &str,
    until: SystemTime,
    by: &str,
) -> Result<Grant, String> {
    let g = Grant {
        user: user.to_string(),
        until: timestamp(until),
        by: by.to_string(),
    };
    change(path, |grants| {
        members.add(user)?;
        grants.retain(|x| x.user != user);
        grants.push(g.clone());
        Ok(())
    })?;
    let why = format!("bare-metal GPU use granted until {} by {by}", g.until);
    let _ = audit::append(audit_log, &event(EventKind::Grant, user, why));
    Ok(g)
}

/// Takes `user` out of the group; `false` when they held no grant (they
/// are taken out all the same).
pub fn revoke(
    path: &Path,
    audit_log: &Path,
    members: &dyn Members,
    user: &str,
    why: &str,
) -> Result<bool, String> {
    let had = change(path, |grants| {
        members.remove(user)?;
        let before = grants.len();
        grants.retain(|x| x.user != user);
        Ok(grants.len() != before)
    })?;
    let reason = format!("bare-metal GPU use revoked: {why}");
    let _ = audit::append(audit_log, &event(EventKind::Revoke, user, reason));
    Ok(had)
}

/// Takes away every grant whose time is past (the reaper's pass); the
/// users taken out, or one line per failure.
pub fn expire(
    path: &Path,
    audit_log: &Path,
    members: &dyn Members,
    now: SystemTime,
) -> Result<Vec<String>, String> {
    let past: Vec<Grant> = read(path)?
        .into_iter()
        .filter(|g| parse(&g.until).is_none_or(|t| t <= now))
        .collect();
    let mut out = Vec::new();
    for g in past {
        revoke(
            path,
            audit_log,
            members,
            &g.user,
            &format!("its time ran out at {}", g.until),
        )?;
        out.push(g.user);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::time::Duration;

    #[derive(Default)]
    struct Fake(RefCell<Vec<String>>, bool);

    impl Members for Fake {
        fn add(&self, user: &str) -> Result<(), String> {
            if self.1 {
                return Err("gpasswd: no".into());
            }
            self.0.borrow_mut().push(user.to_string());
            Ok(())
        }
        fn remove(&self, user: &str) -> Result<(), String> {
            self.0.borrow_mut().retain(|u| u != user);
            Ok(())
        }
    }

    #[test]
    fn grants_expire_revoke_and_are_audited() {
        let dir = tempfile::tempdir().unwrap();
        let (path, log) = (
            dir.path().join("g/bare-metal.json"),
            dir.path().join("events.jsonl"),
        );
        let group = Fake::default();
        let now = SystemTime::now();
        grant(
            &path,
            &log,
            &group,
            "alice",
            now + Duration::from_secs(60),
            "root",
        )
        .unwrap();
        grant(
            &path,
            &log,
            &group,
            "bob",
            now + Duration::from_secs(3600),
            "root",
        )
        .unwrap();
        assert_eq!(*group.0.borrow(), ["alice", "bob"]);
        assert_eq!(read(&path).unwrap().len(), 2);
        assert!(expire(&path, &log, &group, now).unwrap().is_empty());
        let gone = expire(&path, &log, &group, now + Duration::from_secs(61)).unwrap();
        assert_eq!(gone, ["alice"]);
        assert_eq!(*group.0.borrow(), ["bob"]);
        assert!(revoke(&path, &log, &group, "bob", "asked").unwrap());
        assert!(!revoke(&path, &log, &group, "bob", "asked").unwrap());
        assert!(group.0.borrow().is_empty());
        assert!(read(&path).unwrap().is_empty());
        let kinds: Vec<_> = audit::read(&log)
            .unwrap()
            .iter()
            .map(|e| (e.event.as_str(), e.user.clone().unwrap()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("grant", "alice".to_string()),
                ("grant", "bob".into()),
                ("revoke", "alice".into()),
                ("revoke", "bob".into()),
                ("revoke", "bob".into())
            ]
        );
        // The group refusing leaves the file as it was.
        let broken = Fake(RefCell::default(), true);
        assert!(grant(&path, &log, &broken, "carol", now, "root").is_err());
        assert!(read(&path).unwrap().is_empty());
    }
}
