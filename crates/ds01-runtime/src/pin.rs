//! A non-admin's bind sources, pinned: each is opened once, judged by what
//! was opened (its real path and its filesystem's flags), and mounted by
//! that descriptor onto a directory of root's, which runc is then given.
//! A source swapped for a link between the judgement and runc's mount
//! (`renameat2(RENAME_EXCHANGE)` in a loop) changes nothing: runc never
//! walks the caller's path.
//!
//! The pins are taken down once runc has made the container (its mount
//! namespace keeps its own copies), by [`Pins`]'s drop: an error path
//! cannot forget them.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Where pins live, in the state directory: `binds/<container id>/<n>`,
/// root's alone.
pub const PIN_DIR: &str = "binds";

/// What a source must be, for the owner it is judged for.
pub struct Rule<'a> {
    pub user: &'a str,
    /// Real paths (links resolved) the source must lie under.
    pub roots: Vec<PathBuf>,
    /// Refuse sources on filesystems without `nosuid,nodev`.
    pub need_nosuid: bool,
}

/// The pins of one create; dropped, they are unmounted and removed.
pub struct Pins {
    dir: PathBuf,
    made: Vec<PathBuf>,
}

impl Drop for Pins {
    fn drop(&mut self) {
        for p in self.made.iter().rev() {
            if let Ok(c) = CString::new(p.as_os_str().as_bytes()) {
                // SAFETY: a plain syscall on a NUL-terminated path.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
            let _ = std::fs::remove_file(p).or_else(|_| std::fs::remove_dir(p));
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Pins every bind mount in `spec` whose source is in `sources`, and points
/// the spec at the pins. `Err` is one line for the user.
pub fn pin(
    spec: &mut Value,
    sources: &[PathBuf],
    id: &str,
    state_dir: &Path,
    rule: &Rule,
) -> Result<Pins, String> {
    let base = state_dir.join(PIN_DIR);
    let dir = base.join(id);
    let mut pins = Pins {
        dir: dir.clone(),
        made: Vec::new(),
    };
    if sources.is_empty() {
        return Ok(pins);
    }
    if id.is_empty() || id.contains('/') || id.starts_with('.') {
        return Err(format!(
            "ds01: container id {id:?} cannot name a pin directory"
        ));
    }
    ds01_core::fsutil::ensure_dir(state_dir)
        .map_err(|e| format!("ds01: the state directory: {e}"))?;
    make_private_dir(&base).and_then(|()| make_private_dir(&dir))?;
    let Some(mounts) = spec.get_mut("mounts").and_then(Value::as_array_mut) else {
        return Ok(pins);
    };
    for (n, m) in mounts.iter_mut().enumerate() {
        let Some(src) = m.get("source").and_then(Value::as_str).map(PathBuf::from) else {
            continue;
        };
        if !sources.contains(&src) {
            continue;
        }
        let fd = open_path(&src)?;
        let real = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .map_err(|e| format!("ds01: cannot read what {} is: {e}", src.display()))?;
        if !rule.roots.iter().any(|r| real.starts_with(r)) {
            return Err(format!(
                "ds01: {} may not run a container with a bind mount of {} (it is {}, outside their home and the shared paths)",
                rule.user,
                src.display(),
                real.display()
            ));
        }
        if rule.need_nosuid {
            nosuid_nodev(&fd, &src, rule.user)?;
        }
        let target = dir.join(n.to_string());
        let is_dir = std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .map(|m| m.is_dir())
            .unwrap_or(false);
        let made = if is_dir {
            std::fs::create_dir(&target)
        } else {
            std::fs::File::create(&target).map(drop)
        };
        made.map_err(|e| format!("ds01: cannot make the pin {}: {e}", target.display()))?;
        pins.made.push(target.clone());
        bind_fd(&fd, &target).map_err(|e| {
            format!(
                "ds01: cannot pin {} at {}: {e}",
                src.display(),
                target.display()
            )
        })?;
        m["source"] = Value::String(target.to_string_lossy().into_owned());
    }
    Ok(pins)
}

fn make_private_dir(p: &Path) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    match std::fs::DirBuilder::new().mode(0o700).create(p) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("ds01: cannot make {}: {e}", p.display())),
    }
    // Root's, and no link: a pin is mounted where only root could put it.
    let m = std::fs::symlink_metadata(p).map_err(|e| format!("ds01: {}: {e}", p.display()))?;
    if !m.is_dir() || m.uid() != 0 || m.mode() & 0o022 != 0 {
        return Err(format!(
            "ds01: {} must be a directory of root's that no one else may write",
            p.display()
        ));
    }
    Ok(())
}

fn open_path(src: &Path) -> Result<OwnedFd, String> {
    use std::os::fd::FromRawFd;
    let c = CString::new(src.as_os_str().as_bytes())
        .map_err(|_| format!("ds01: the bind source {src:?} holds a NUL"))?;
    // SAFETY: a plain syscall; the descriptor is owned at once.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(format!(
            "ds01: cannot open the bind source {}: {}",
            src.display(),
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: fd is a fresh descriptor of ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn nosuid_nodev(fd: &OwnedFd, src: &Path, user: &str) -> Result<(), String> {
    // SAFETY: fstatvfs fills a zeroed struct of ours.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatvfs(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(format!(
            "ds01: cannot read the filesystem of {}: {}",
            src.display(),
            std::io::Error::last_os_error()
        ));
    }
    if st.f_flag & libc::ST_NOSUID == 0 || st.f_flag & libc::ST_NODEV == 0 {
        return Err(format!(
            "ds01: {user} may not bind {}: its filesystem is not mounted nosuid,nodev, so root in the container could leave a setuid program or a device node there for the host; an admin remounts it so (see docs/gate.md)",
            src.display()
        ));
    }
    Ok(())
}

fn bind_fd(fd: &OwnedFd, target: &Path) -> std::io::Result<()> {
    let from = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("no NUL");
    let to = CString::new(target.as_os_str().as_bytes()).expect("checked when made");
    // SAFETY: plain syscalls on NUL-terminated paths. The source is the
    // descriptor's magic link: the kernel mounts what was opened.
    let rc = unsafe {
        libc::mount(
            from.as_ptr(),
            to.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // Kept out of other mount namespaces: the pin is this create's.
    // SAFETY: as above.
    unsafe {
        libc::mount(
            std::ptr::null(),
            to.as_ptr(),
            std::ptr::null(),
            libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    Ok(())
}
