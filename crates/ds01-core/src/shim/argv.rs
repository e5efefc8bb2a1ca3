//! Reading runc's command line without changing it: the shim hands argv to
//! runc byte for byte, so this only looks.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// runc's global flags that take a value.
const GLOBAL_VALUE: &[&str] = &["root", "log", "log-format", "criu", "rootless"];
/// Command flags (create, run, delete, ...) that take a value.
const COMMAND_VALUE: &[&str] = &[
    "bundle",
    "b",
    "console-socket",
    "pid-file",
    "preserve-fds",
    "process",
    "p",
    "resources",
    "r",
    "cwd",
    "env",
    "e",
    "user",
    "u",
    "additional-gids",
    "g",
    "process-label",
    "apparmor",
    "cap",
    "c",
    "cgroup",
    // restore
    "image-path",
    "work-path",
    "manage-cgroups-mode",
    "empty-ns",
    "lsm-profile",
    "lsm-mount-context",
    "parent-path",
    "page-server",
    "status-fd",
];

/// Where runc keeps state when `--root` is not given (as root).
pub const DEFAULT_ROOT: &str = "/run/runc";

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Argv {
    pub root: Option<PathBuf>,
    pub log: Option<PathBuf>,
    pub log_format: Option<String>,
    pub command: Option<String>,
    pub bundle: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    /// `exec --process`: the process spec of the command to run.
    pub process: Option<PathBuf>,
    pub id: Option<String>,
    pub force: bool,
    /// `run --detach`, `restore --detach`: runc returns once the container runs.
    pub detach: bool,
}

impl Argv {
    pub fn root_or_default(&self) -> PathBuf {
        self.root
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT))
    }
}

/// Scans runc's argv (without argv[0]).
pub fn scan(args: &[OsString]) -> Argv {
    let mut out = Argv::default();
    let mut it = args.iter();
    let mut only_positional = false;
    while let Some(arg) = it.next() {
        let bytes = arg.as_bytes();
        if only_positional || !bytes.starts_with(b"-") || bytes == b"-" {
            let s = arg.to_string_lossy().into_owned();
            if out.command.is_none() {
                out.command = Some(s);
            } else if out.id.is_none() {
                out.id = Some(s);
            }
            continue;
        }
        if bytes == b"--" {
            only_positional = true;
            continue;
        }
        let lossy = arg.to_string_lossy();
        let flag = lossy.trim_start_matches('-');
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(OsString::from(v))),
            None => (flag.to_string(), None),
        };
        let takes_value = if out.command.is_none() {
            GLOBAL_VALUE.contains(&name.as_str())
        } else {
            COMMAND_VALUE.contains(&name.as_str())
        };
        let value = if takes_value {
            inline.or_else(|| it.next().cloned())
        } else {
            None
        };
        let path = || value.as_deref().map(PathBuf::from);
        match (out.command.is_some(), name.as_str()) {
            (false, "root") => out.root = path(),
            (false, "log") => out.log = path(),
            (false, "log-format") => {
                out.log_format = value.as_deref().map(|v| v.to_string_lossy().into_owned())
            }
            (true, "bundle" | "b") => out.bundle = path(),
            (true, "pid-file") => out.pid_file = path(),
            (true, "process" | "p") => out.process = path(),
            (true, "force" | "f") if out.command.as_deref() == Some("delete") => out.force = true,
            (true, "detach" | "d") if matches!(out.command.as_deref(), Some("run" | "restore")) => {
                out.detach = true
            }
            _ => {}
        }
    }
    out
}

/// Whether the first argument is the hook entry (`ds01-runtime hook ...`).
pub fn is_hook(args: &[OsString]) -> bool {
    args.first().map(OsString::as_os_str) == Some(OsStr::new("hook"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_str(s: &str) -> Argv {
        scan(&s.split_whitespace().map(OsString::from).collect::<Vec<_>>())
    }

    #[test]
    fn docker_create() {
        let a = scan_str(
            "--root /run/docker/runtime-runc/moby --log /b/log.json --log-format json \
             create --bundle /b --pid-file /b/init.pid abc123",
        );
        assert_eq!(a.root, Some("/run/docker/runtime-runc/moby".into()));
        assert_eq!(a.log, Some("/b/log.json".into()));
        assert_eq!(a.log_format.as_deref(), Some("json"));
        assert_eq!(a.command.as_deref(), Some("create"));
        assert_eq!(a.bundle, Some("/b".into()));
        assert_eq!(a.pid_file, Some("/b/init.pid".into()));
        assert_eq!(a.id.as_deref(), Some("abc123"));
    }

    #[test]
    fn every_bundle_form() {
        assert_eq!(scan_str("create --bundle=/x c").bundle, Some("/x".into()));
        assert_eq!(scan_str("create -b /x c").bundle, Some("/x".into()));
        assert_eq!(scan_str("create -b=/x c").bundle, Some("/x".into()));
        assert_eq!(scan_str("create -bundle /x c").bundle, Some("/x".into()));
        // Flags after the id are still read, as runc does.
        let a = scan_str("run c --bundle /x --detach");
        assert_eq!(
            (a.bundle, a.id.as_deref(), a.detach),
            (Some("/x".into()), Some("c"), true)
        );
        assert!(scan_str("run -d c").detach);
        assert!(!scan_str("run c").detach);
        // No bundle: runc uses the working directory.
        let a = scan_str("create c");
        assert_eq!((a.bundle, a.id.as_deref()), (None, Some("c")));
    }

    #[test]
    fn global_flags_with_equals_and_booleans() {
        let a =
            scan_str("--debug --root=/r --systemd-cgroup --log=/l create --console-socket /s c");
        assert_eq!(a.root, Some("/r".into()));
        assert_eq!(a.log, Some("/l".into()));
        assert_eq!(a.command.as_deref(), Some("create"));
        assert_eq!(a.id.as_deref(), Some("c"));
        assert_eq!(a.bundle, None);
        assert_eq!(a.root_or_default(), PathBuf::from("/r"));
        assert_eq!(
            scan_str("create c").root_or_default(),
            PathBuf::from(DEFAULT_ROOT)
        );
    }

    #[test]
    fn other_commands() {
        let a = scan_str("--root /r delete --force c");
        assert_eq!(
            (a.command.as_deref(), a.id.as_deref(), a.force),
            (Some("delete"), Some("c"), true)
        );
        let a = scan_str("--root /r kill c 9");
        assert_eq!(
            (a.command.as_deref(), a.id.as_deref()),
            (Some("kill"), Some("c"))
        );
        let a = scan_str("--root /r exec --process /p --detach --pid-file /q c");
        assert_eq!((a.id.as_deref(), a.bundle), (Some("c"), None));
        assert_eq!(a.process, Some("/p".into()));
        // runc 1.1's exec --cgroup takes a value; the id comes after it.
        let a = scan_str("exec --cgroup sub --process /p c");
        assert_eq!(a.id.as_deref(), Some("c"));
        assert_eq!(scan_str("--version").command, None);
        assert_eq!(
            scan_str("--root /r -- create").command.as_deref(),
            Some("create")
        );
    }

    #[test]
    fn restore_is_read_like_run() {
        let a = scan_str("--root /r restore --image-path /ckpt --work-path /w --bundle /b -d c");
        assert_eq!(
            (a.command.as_deref(), a.id.as_deref(), a.bundle, a.detach),
            (Some("restore"), Some("c"), Some("/b".into()), true)
        );
    }

    #[test]
    fn hook_entry() {
        assert!(is_hook(&[
            OsString::from("hook"),
            OsString::from("poststop")
        ]));
        assert!(!is_hook(&[OsString::from("create")]));
    }
}
