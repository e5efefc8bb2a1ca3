//! Small filesystem helpers shared by the ledger, the snapshot, the spec
//! patch and the locks.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Writes `data` to `path` so that a reader sees either the old or the new
/// content, never a mix: a temp file in the same directory, fsync, rename,
/// then fsync of the directory so the rename survives a crash. On tmpfs
/// (`/run`, where the state lives on a real host) nothing survives a crash
/// anyway, so the two fsyncs are skipped; the rename keeps it atomic.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let durable = !on_tmpfs(dir);
    let tmp = temp_name(path);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        // The umask may have narrowed the mode; the caller's mode is the contract.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(data)?;
        if durable {
            f.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        if durable && let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Whether `dir` is on a tmpfs (or ramfs), where fsync buys nothing.
pub fn on_tmpfs(dir: &Path) -> bool {
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    const RAMFS_MAGIC: i64 = 0x8584_58f6;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs fills the struct we own; zeroed is a valid start.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return false;
    }
    let t = st.f_type as i64;
    t == TMPFS_MAGIC || t == RAMFS_MAGIC
}

fn temp_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Pid and clock: a file left by a killed writer whose pid comes round
    // again must not block the next write.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    path.with_file_name(format!(".{name}.{}.{nanos:x}.tmp", std::process::id()))
}

/// Creates `dir` (and parents) world-readable, writable by its owner
/// only, and checks that it is safe to keep root's files in ([`check_dir`]).
pub fn ensure_dir(dir: &Path) -> io::Result<()> {
    if !dir.exists() {
        fs::create_dir_all(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    }
    check_dir(dir)
}

/// A directory root writes its state or logs into must be a real
/// directory (not a symlink), owned by root (or by whoever runs this, for
/// tests), and not writable by group or others: otherwise a local user
/// could swap its files for links and make root write elsewhere.
pub fn check_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::symlink_metadata(dir)?;
    let unsafe_dir = |why: String| {
        io::Error::other(format!(
            "directory {dir:?} {why}; it must be a directory owned by root and not writable by \
             group or others (chown root:root {dir:?} && chmod 755 {dir:?})"
        ))
    };
    if !meta.is_dir() {
        return Err(unsafe_dir("is not a directory (a symlink?)".into()));
    }
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != 0 && meta.uid() != me {
        return Err(unsafe_dir(format!("is owned by uid {}", meta.uid())));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(unsafe_dir(format!(
            "is writable by others (mode {:o})",
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

/// Opens for appending without following a symlink, creating with `mode`.
pub fn open_append(path: &Path, mode: u32) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Opens a lock file, creating it for root alone (0600), without following
/// a symlink.
pub fn open_lock(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Reads a file only root (or whoever runs this) could have written: a
/// regular file, not a link, not a FIFO (opened without blocking), owned
/// by root or by us, not writable by others.
pub fn read_trusted(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let meta = f.metadata()?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if !meta.is_file() || (meta.uid() != 0 && meta.uid() != me) || meta.mode() & 0o022 != 0 {
        return Err(io::Error::other(format!(
            "{path:?} is not a regular file that only root may write"
        )));
    }
    let mut out = Vec::new();
    f.read_to_end(&mut out)?;
    Ok(out)
}

/// Reads a whole file without following a symlink.
pub fn read_nofollow(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let mut out = Vec::new();
    f.read_to_end(&mut out)?;
    Ok(out)
}

/// A path with `.` and `..` taken out, as the kernel would walk it (links
/// are not looked at).
pub fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_directories_and_links_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("state");
        ensure_dir(&d).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o777)).unwrap();
        let e = ensure_dir(&d).unwrap_err().to_string();
        assert!(
            e.contains("writable by others (mode 777)") && e.contains("chmod 755"),
            "{e}"
        );
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&d, &link).unwrap();
        assert!(
            check_dir(&link)
                .unwrap_err()
                .to_string()
                .contains("not a directory")
        );
        // A file replaced by a link is not followed.
        let target = dir.path().join("target");
        fs::write(&target, "x").unwrap();
        std::os::unix::fs::symlink(&target, d.join("log")).unwrap();
        assert!(open_append(&d.join("log"), 0o644).is_err());
        assert!(read_nofollow(&d.join("log")).is_err());
        assert_eq!(fs::read(&target).unwrap(), b"x");
        // A FIFO is not waited on, and a file others may write is not trusted.
        let fifo = d.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        assert!(read_trusted(&fifo).is_err());
        fs::write(d.join("open"), "x").unwrap();
        fs::set_permissions(d.join("open"), fs::Permissions::from_mode(0o666)).unwrap();
        assert!(read_trusted(&d.join("open")).is_err());
        fs::set_permissions(d.join("open"), fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(read_trusted(&d.join("open")).unwrap(), b"x");
    }

    #[test]
    fn tmpfs_is_told_from_a_disk() {
        assert!(on_tmpfs(Path::new("/dev/shm")));
        assert!(!on_tmpfs(Path::new("/proc/self")));
        assert!(!on_tmpfs(Path::new("/nonexistent")));
    }

    #[test]
    fn atomic_write_replaces_content_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.json");
        write_atomic(&p, b"one", 0o644).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // No temp file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
