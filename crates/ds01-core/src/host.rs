//! What the shim asks of the host: the clock, processes, the boot, runc's
//! state. Behind a trait so that staleness is tested without root.

use std::path::Path;
use std::time::SystemTime;

pub trait Host {
    fn now(&self) -> SystemTime;
    /// Changes at every boot (`/proc/sys/kernel/random/boot_id`).
    fn boot_id(&self) -> String;
    /// The start time of a live process, in clock ticks since boot; `None`
    /// when it is gone (or a zombie, whose container has exited).
    fn process_start(&self, pid: u32) -> Option<u64>;
    /// Whether runc still keeps state for this container under `root`.
    fn runc_knows(&self, root: &Path, id: &str) -> bool;
    /// The init process runc's state names for this container: its pid,
    /// and its start time where recorded. `None` when runc keeps no state
    /// for it, or none naming an init.
    fn runc_init(&self, root: &Path, id: &str) -> Option<(u32, Option<u64>)>;
    /// Whether some process holds the `flock` of a create's marker file:
    /// the runtime that made it, or the runc it handed the marker to.
    fn create_in_flight(&self, marker: &Path) -> bool;
}

/// The real machine.
pub struct RealHost;

impl Host for RealHost {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn boot_id(&self) -> String {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    }

    fn process_start(&self, pid: u32) -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        parse_stat_start(&stat)
    }

    fn runc_knows(&self, root: &Path, id: &str) -> bool {
        // An id with a slash would escape the root; runc refuses such ids too.
        !id.is_empty() && !id.contains('/') && root.join(id).join("state.json").exists()
    }

    fn runc_init(&self, root: &Path, id: &str) -> Option<(u32, Option<u64>)> {
        if id.is_empty() || id.contains('/') {
            return None;
        }
        let bytes = std::fs::read(root.join(id).join("state.json")).ok()?;
        init_of(&serde_json::from_slice(&bytes).ok()?)
    }

    fn create_in_flight(&self, marker: &Path) -> bool {
        use std::os::unix::fs::OpenOptionsExt;
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(marker)
        {
            Ok(f) => f,
            Err(e) => return e.kind() != std::io::ErrorKind::NotFound,
        };
        // Unsure is in flight: a slice kept too long is better than one handed out twice.
        !matches!(file.try_lock_shared(), Ok(()))
    }
}

/// The init pid and its start time (clock ticks since boot, as in
/// `/proc/<pid>/stat`) in a runc `state.json`.
pub fn init_of(state: &serde_json::Value) -> Option<(u32, Option<u64>)> {
    let pid = state
        .get("init_process_pid")
        .and_then(serde_json::Value::as_u64)
        .and_then(|p| u32::try_from(p).ok())
        .filter(|&p| p > 0)?;
    let start = state.get("init_process_start").and_then(|v| {
        v.as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    });
    Some((pid, start))
}

/// Field 22 (starttime) of `/proc/<pid>/stat`, or `None` for a zombie.
/// The command name (field 2) may hold spaces and parentheses, so fields
/// are counted from the last `)`.
pub fn parse_stat_start(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // After the state (field 3), starttime is the 19th field further on.
    fields.nth(18)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_survives_odd_command_names() {
        let stat = "1234 (we ird) cmd)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 1";
        assert_eq!(parse_stat_start(stat), Some(987654));
        let zombie =
            "1234 (sh) Z 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 1";
        assert_eq!(parse_stat_start(zombie), None);
    }

    #[test]
    fn real_host_sees_itself_alive() {
        let h = RealHost;
        let me = std::process::id();
        assert!(h.process_start(me).is_some());
        assert_eq!(h.process_start(me), h.process_start(me));
        assert!(!h.boot_id().is_empty());
    }

    #[test]
    fn a_held_marker_is_a_create_in_flight_until_every_holder_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("a1");
        assert!(!RealHost.create_in_flight(&marker));
        let f = std::fs::File::create(&marker).unwrap();
        assert!(!RealHost.create_in_flight(&marker));
        f.lock().unwrap();
        // A child that inherited the descriptor keeps it held after we let go.
        let mut child = {
            use std::os::fd::AsRawFd;
            use std::os::unix::process::CommandExt;
            let fd = f.as_raw_fd();
            let mut c = std::process::Command::new("sleep");
            c.arg("1");
            // SAFETY: fcntl on a descriptor we own, between fork and exec.
            unsafe {
                c.pre_exec(move || {
                    libc::fcntl(fd, libc::F_SETFD, 0);
                    Ok(())
                });
            }
            c.spawn().unwrap()
        };
        drop(f);
        assert!(RealHost.create_in_flight(&marker));
        child.wait().unwrap();
        assert!(!RealHost.create_in_flight(&marker));
    }
}
