//! Running the real runc with our argv, byte for byte.

use std::ffi::OsString;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use ds01::config::{self, Config};
use ds01::shim::argv::Argv;

/// The runc to run: the config's, or the default when the config is unusable
/// (a broken config must not stop containers that want no GPU).
pub fn path() -> PathBuf {
    Config::load()
        .map(|c| c.runc)
        .unwrap_or_else(|_| config::fallback_runc(&Config::locate()))
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

fn refuse_self(runc: &Path, argv: &Argv) -> Option<i32> {
    is_self(runc).then(|| {
        report(
            argv,
            &format!("ds01: runc {runc:?} is ds01-runtime itself; set `runc` in the config to the real runc"),
        );
        1
    })
}

/// Replaces this process with runc. Returns only if that failed.
pub fn exec(runc: &Path, args: &[OsString], argv: &Argv) -> i32 {
    if let Some(code) = refuse_self(runc, argv) {
        return code;
    }
    let err = Command::new(runc).args(args).exec();
    report(argv, &format!("ds01: cannot run runc {runc:?}: {err}"));
    127
}

/// Runs runc as a child and returns its exit code (128+signal if killed).
pub fn run(runc: &Path, args: &[OsString], argv: &Argv) -> i32 {
    if let Some(code) = refuse_self(runc, argv) {
        return code;
    }
    match Command::new(runc).args(args).status() {
        Ok(s) => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)),
        Err(e) => {
            report(argv, &format!("ds01: cannot run runc {runc:?}: {e}"));
            127
        }
    }
}

/// Tells the caller about an error the way runc would: a JSON line in the
/// `--log` file (what Docker shows), or stderr when there is no log file.
pub fn report(argv: &Argv, msg: &str) {
    let cfg_log = Config::load()
        .map(|c| c.log)
        .unwrap_or_else(|_| Config::default().log);
    ds01::log::append(&cfg_log, "error", msg);
    let written = argv
        .log
        .as_deref()
        .is_some_and(|log| ds01::log::oci_error(log, msg).is_ok());
    if !written {
        eprintln!("{msg}");
    }
}
