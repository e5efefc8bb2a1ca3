//! Running the real runc with our argv, byte for byte.

use std::ffi::OsString;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};

use ds01_core::config::{self, Config};
use ds01_core::shim::argv::Argv;

/// The runc to run for a command ds01 passes through: the config's `runc`
/// line alone, never a parse of the whole config.
pub fn path() -> PathBuf {
    config::fallback_runc(&Config::locate())
}

/// The config; where it cannot be loaded, runc in this process's place,
/// run by the config's `runc` line alone (a broken config must not stop
/// commands on containers ds01 has no part in). `Err` is the exit code
/// of an exec that failed.
pub fn config_or_exec(args: &[OsString], argv: &Argv) -> Result<Config, i32> {
    Config::load().map_err(|_| exec(&path(), args, argv, &Config::default().log))
}

/// Whether `runc` is this very binary (a `runc` key or symlink pointing
/// back here), which would run itself forever.
fn is_self(runc: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(runc), std::fs::metadata("/proc/self/exe")) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn refuse_self(runc: &Path, argv: &Argv, log: &Path) -> Option<i32> {
    is_self(runc).then(|| {
        report(
            argv,
            log,
            &format!("ds01: runc {runc:?} is ds01-runtime itself; set `runc` in the config to the real runc"),
        );
        1
    })
}

/// Replaces this process with runc. Returns only if that failed; `log` is
/// the shim's log for that error.
pub fn exec(runc: &Path, args: &[OsString], argv: &Argv, log: &Path) -> i32 {
    if let Some(code) = refuse_self(runc, argv, log) {
        return code;
    }
    let err = Command::new(runc).args(args).exec();
    report(argv, log, &format!("ds01: cannot run runc {runc:?}: {err}"));
    127
}

/// [`exec`], runc keeping `fd` (the create's marker) open: it holds the
/// marker's lock until it exits. Returns only if that failed.
pub fn exec_holding(runc: &Path, args: &[OsString], argv: &Argv, log: &Path, fd: RawFd) -> i32 {
    // It closes here only if the exec failed.
    let copy = match marker_copy(fd, argv, log) {
        Ok(copy) => copy,
        Err(code) => return code,
    };
    let code = exec(runc, args, argv, log);
    drop(copy);
    code
}

/// The runc child of a foreground command, for the signal handler.
static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// A copy of the marker's `fd` that runc inherits (dup drops
/// close-on-exec); `Err` is the exit code of an error already reported.
fn marker_copy(fd: RawFd, argv: &Argv, log: &Path) -> Result<OwnedFd, i32> {
    // SAFETY: dup of a descriptor this process owns; the copy is owned here.
    let copy = unsafe { libc::dup(fd) };
    if copy < 0 {
        let e = std::io::Error::last_os_error();
        report(
            argv,
            log,
            &format!("ds01: cannot hand runc its marker: {e}"),
        );
        return Err(1);
    }
    // SAFETY: `copy` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(copy) })
}

/// Runs runc as a child and returns its exit code (128+signal if killed).
/// `inherit` is a descriptor runc keeps (the create's marker). SIGINT,
/// SIGTERM and SIGHUP sent to this process are passed on to runc, as if
/// the caller had run runc itself.
pub fn run(runc: &Path, args: &[OsString], argv: &Argv, log: &Path, inherit: Option<RawFd>) -> i32 {
    if let Some(code) = refuse_self(runc, argv, log) {
        return code;
    }
    let mut cmd = Command::new(runc);
    cmd.args(args);
    // runc gets a copy of the descriptor, which this process closes once
    // runc started. No code between fork and exec, so the spawn is a vfork
    // rather than a copy of this process.
    let copy = match inherit.map(|fd| marker_copy(fd, argv, log)).transpose() {
        Ok(copy) => copy,
        Err(code) => return code,
    };
    let spawned = cmd.spawn();
    drop(copy);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            report(argv, log, &format!("ds01: cannot run runc {runc:?}: {e}"));
            return 127;
        }
    };
    CHILD.store(child.id() as i32, Ordering::SeqCst);
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: installs a handler that only reads an atomic and calls kill.
        unsafe {
            libc::signal(sig, forward as *const () as libc::sighandler_t);
        }
    }
    let status = loop {
        match child.wait() {
            Ok(s) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                report(argv, log, &format!("ds01: waiting for runc {runc:?}: {e}"));
                return 1;
            }
        }
    };
    CHILD.store(0, Ordering::SeqCst);
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// `runc delete --force ID` with the caller's global flags: removes a
/// container that must not start.
pub fn delete_force(runc: &Path, argv: &Argv) {
    let mut cmd = Command::new(runc);
    if let Some(root) = &argv.root {
        cmd.arg("--root").arg(root);
    }
    cmd.args(["delete", "--force"]);
    cmd.arg(argv.id.clone().unwrap_or_default());
    let _ = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// Tells the caller about an error the way runc would: a JSON line in the
/// `--log` file (what Docker shows), or stderr when there is no log file.
/// The shim's own log gets it too (`log`: the config's, or the default).
pub fn report(argv: &Argv, log: &Path, msg: &str) {
    ds01_core::log::append(log, "error", msg);
    // podman (through conmon) names the runtime in front of its message:
    // "ds01: ds01: ..." says nothing twice.
    let msg = match msg.strip_prefix("ds01: ") {
        Some(rest) if parent_is_conmon() => rest,
        _ => msg,
    };
    let written = argv
        .log
        .as_deref()
        .is_some_and(|log| ds01_core::log::oci_error(log, msg).is_ok());
    if !written {
        eprintln!("{msg}");
    }
}

/// Whether this process was started by conmon, podman's and CRI-O's
/// container monitor.
fn parent_is_conmon() -> bool {
    let ppid = unsafe { libc::getppid() };
    std::fs::read_to_string(format!("/proc/{ppid}/comm")).is_ok_and(|c| c.trim_end() == "conmon")
}
