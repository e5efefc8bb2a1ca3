//! The audit log: one JSON line per allocate, refuse, release and reclaim,
//! appended by the runtime and the hook alike. Each line is one `write` on
//! an `O_APPEND` file, so concurrent writers never interleave.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::identity::Source;
use crate::record::Record;
use crate::time::timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Allocate,
    Refuse,
    Release,
    Reclaim,
    /// A container that sees every GPU around the allocator (an admin's
    /// `--privileged` one): let through, never allocated, written down.
    Bypass,
    /// `ds01 reap` warned the owner of an idle or long-running container.
    Warn,
    /// `ds01 reap` stopped it.
    Reap,
    /// A create waited in the GPU queue (its reason says how long).
    Queue,
    /// An admin let a user use GPUs outside containers, until a time.
    Grant,
    /// That was taken back (by an admin, or by the reaper's pass at its time).
    Revoke,
    /// A container held its devices idle for `seconds`, ending now (it
    /// became busy, was stopped or went away), as the reaper saw it.
    Idle,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Allocate => "allocate",
            EventKind::Refuse => "refuse",
            EventKind::Release => "release",
            EventKind::Reclaim => "reclaim",
            EventKind::Warn => "warn",
            EventKind::Reap => "reap",
            EventKind::Queue => "queue",
            EventKind::Bypass => "bypass",
            EventKind::Grant => "grant",
            EventKind::Revoke => "revoke",
            EventKind::Idle => "idle",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// RFC 3339.
    pub time: String,
    pub event: EventKind,
    pub user: Option<String>,
    pub identity_source: Source,
    pub container_id: String,
    pub devices: Vec<String>,
    pub gpueq: f64,
    pub reason: Option<String>,
    /// How long, for an event that is about a time: a wait in the queue,
    /// an idle spell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<u64>,
    /// The allocation the event is about (one run of a container), where
    /// there is one: what pairs a release with its allocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alloc_id: Option<String>,
}

impl Event {
    /// An event about an allocation record.
    pub fn of(kind: EventKind, r: &Record, reason: Option<String>) -> Event {
        Event {
            time: timestamp(SystemTime::now()),
            event: kind,
            user: r.user.clone(),
            identity_source: r.identity_source,
            container_id: r.container_id.clone(),
            devices: r.devices.clone(),
            gpueq: r.gpueq,
            reason,
            seconds: None,
            alloc_id: Some(r.alloc_id.clone()),
        }
    }

    pub fn time(&self) -> Option<SystemTime> {
        crate::time::parse(&self.time)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path:?}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Writes down reclaimed records: a line each in the runtime log and an
/// event each in the audit log (whose failure is logged, never fatal).
pub fn note_reclaimed(log: &Path, audit_log: &Path, reclaimed: &[(Record, String)]) {
    for (r, why) in reclaimed {
        let line = format!(
            "reclaimed {} from container {}: {why}",
            r.devices.join(","),
            r.container_id
        );
        note(
            log,
            audit_log,
            &line,
            &Event::of(EventKind::Reclaim, r, Some(why.clone())),
        );
    }
}

/// Writes down released records: a line each in the runtime log and an
/// event each in the audit log (whose failure is logged, never fatal),
/// dated when each was released.
pub fn note_released(log: &Path, audit_log: &Path, why: &str, released: &[(Record, SystemTime)]) {
    for (r, at) in released {
        let line = format!(
            "released {} from container {} ({why})",
            r.devices.join(","),
            r.container_id
        );
        let mut event = Event::of(EventKind::Release, r, Some(why.to_string()));
        event.time = timestamp(*at);
        note(log, audit_log, &line, &event);
    }
}

/// A line in the runtime log and the event in the audit log.
fn note(log: &Path, audit_log: &Path, line: &str, event: &Event) {
    crate::log::append(log, "info", line);
    if let Err(e) = append(audit_log, event) {
        crate::log::append(log, "error", &e.to_string());
    }
}

/// Appends one event. The log is world-readable, writable by root.
pub fn append(path: &Path, event: &Event) -> Result<(), AuditError> {
    let io = |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        crate::fsutil::ensure_dir(dir).map_err(io)?;
    }
    let mut line = serde_json::to_vec(event).expect("events serialise");
    line.push(b'\n');
    crate::fsutil::open_append(path, 0o644)
        .and_then(|mut f| f.write_all(&line))
        .map_err(io)
}

/// Every event in the log, oldest first; lines that do not parse (a torn
/// line after a crash, say) are skipped. A missing log has no events.
/// The events of the log and of its rotated files (`PATH.1`, `PATH.2`,
/// ... as logrotate leaves them uncompressed), oldest first. Compressed
/// ones (`.gz`, from a rotation that compressed) are not read.
pub fn read_all(path: &Path) -> Result<Vec<Event>, AuditError> {
    let rotated = |n: u32| {
        let mut p = path.as_os_str().to_owned();
        p.push(format!(".{n}"));
        std::path::PathBuf::from(p)
    };
    let mut n = 1;
    while rotated(n).exists() {
        n += 1;
    }
    let mut out = Vec::new();
    for k in (1..n).rev() {
        out.extend(read(&rotated(k))?);
    }
    out.extend(read(path)?);
    Ok(out)
}

pub fn read(path: &Path) -> Result<Vec<Event>, AuditError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(AuditError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_logs_are_read_oldest_first() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("events.jsonl");
        let line = |i: usize| serde_json::to_string(&event(i)).unwrap() + "\n";
        std::fs::write(d.path().join("events.jsonl.2"), line(1)).unwrap();
        std::fs::write(d.path().join("events.jsonl.1"), line(2)).unwrap();
        std::fs::write(d.path().join("events.jsonl.3.gz"), "not read").unwrap();
        std::fs::write(&log, line(3)).unwrap();
        let users: Vec<String> = read_all(&log)
            .unwrap()
            .into_iter()
            .map(|e| e.user.unwrap())
            .collect();
        assert_eq!(users, ["user1", "user2", "user3"]);
    }

    fn event(i: usize) -> Event {
        Event {
            time: timestamp(SystemTime::now()),
            event: EventKind::Allocate,
            user: Some(format!("user{i}")),
            identity_source: Source::DockerLabel,
            container_id: format!("c{i}"),
            devices: vec![format!("MIG-{i}")],
            gpueq: 0.143,
            reason: None,
            seconds: None,
            alloc_id: None,
        }
    }

    #[test]
    fn concurrent_writers_leave_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log/events.jsonl");
        std::thread::scope(|s| {
            for t in 0..4 {
                let path = &path;
                s.spawn(move || {
                    for i in 0..50 {
                        append(path, &event(t * 100 + i)).unwrap();
                    }
                });
            }
        });
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 200);
        assert_eq!(read(&path).unwrap().len(), 200, "every line parses");
    }

    #[test]
    fn torn_lines_are_skipped_and_a_missing_log_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        assert!(read(&path).unwrap().is_empty());
        append(&path, &event(1)).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"time\":\"20")
            .unwrap();
        assert_eq!(read(&path).unwrap(), vec![read(&path).unwrap()[0].clone()]);
        assert_eq!(read(&path).unwrap()[0].user.as_deref(), Some("user1"));
    }
}
