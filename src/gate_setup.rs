//! `ds01 admin enable-gate` and `disable-gate`: put `ds01-gate` in front of
//! Docker on a systemd host, and take it away again. dockerd moves to a
//! socket only root reaches; the gate takes the default one, so `docker`,
//! VS Code and `ssh://` Docker contexts reach it unchanged.

use std::path::{Path, PathBuf};

/// Where dockerd listens once the gate is in front of it.
pub const ROOT_SOCKET: &str = "/run/docker-root.sock";
/// The socket everyone's tools use.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
/// The group whose members reach the gate.
pub const GROUP: &str = "docker-users";

/// The systemd and account side effects, behind a seam for tests.
pub trait Services {
    fn systemd_running(&self) -> bool;
    /// `systemctl show -p ExecStart --value UNIT`.
    fn exec_start(&self, unit: &str) -> Result<String, String>;
    fn systemctl(&self, args: &[&str]) -> Result<(), String>;
    fn ensure_group(&self, name: &str) -> Result<(), String>;
    fn write(&self, path: &Path, text: &str) -> Result<(), String>;
    fn remove(&self, path: &Path) -> Result<(), String>;
    /// Whether the filesystem at `path` is mounted `nosuid,nodev`.
    fn nosuid_nodev(&self, path: &Path) -> bool;
}

/// Where users' homes live, which they bind into their containers.
pub const HOMES: &str = "/home";

/// This machine's services: `systemctl`, `groupadd`, files written whole.
pub struct RealServices;

impl Services for RealServices {
    fn nosuid_nodev(&self, path: &Path) -> bool {
        use std::os::unix::ffi::OsStrExt;
        let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
            return false;
        };
        // SAFETY: statvfs fills a zeroed struct of ours.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        (unsafe { libc::statvfs(c.as_ptr(), &mut st) }) == 0
            && st.f_flag & libc::ST_NOSUID != 0
            && st.f_flag & libc::ST_NODEV != 0
    }

    fn systemd_running(&self) -> bool {
        Path::new("/run/systemd/system").is_dir()
    }

    fn exec_start(&self, unit: &str) -> Result<String, String> {
        let out = std::process::Command::new("systemctl")
            .args(["show", "-p", "ExecStart", "--value", unit])
            .output()
            .map_err(|e| format!("cannot run systemctl: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "systemctl show {unit}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn systemctl(&self, args: &[&str]) -> Result<(), String> {
        let out = std::process::Command::new("systemctl")
            .args(args)
            .output()
            .map_err(|e| format!("cannot run systemctl: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "systemctl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    fn ensure_group(&self, name: &str) -> Result<(), String> {
        let exists = std::process::Command::new("getent")
            .args(["group", name])
            .output()
            .is_ok_and(|o| o.status.success());
        if exists {
            return Ok(());
        }
        let ok = std::process::Command::new("groupadd")
            .args(["--system", name])
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(())
            .ok_or_else(|| format!("cannot create the group {name}"))
    }

    fn write(&self, path: &Path, text: &str) -> Result<(), String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {dir:?}: {e}"))?;
        }
        ds01_core::fsutil::write_atomic(path, text.as_bytes(), 0o644)
            .map_err(|e| format!("cannot write {path:?}: {e}"))
    }

    fn remove(&self, path: &Path) -> Result<(), String> {
        match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("cannot remove {path:?}: {e}")),
        }
    }
}

/// The drop-ins the gate's rollout writes.
pub struct Paths {
    pub docker_dropin: PathBuf,
    pub gate_dropin: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            docker_dropin: "/etc/systemd/system/docker.service.d/ds01-gate.conf".into(),
            gate_dropin: "/etc/systemd/system/ds01-gate.service.d/ds01-gate.conf".into(),
        }
    }
}

/// dockerd's command line from `systemctl show -p ExecStart --value`
/// (`{ path=... ; argv[]=/usr/sbin/dockerd -H fd:// ... ; ... }`), with
/// its `-H`/`--host` options replaced by the root-only socket.
pub fn root_only_exec_start(show: &str) -> Result<String, String> {
    let argv = show
        .split(';')
        .find_map(|part| part.trim().strip_prefix("argv[]="))
        .ok_or_else(|| format!("cannot read docker.service's ExecStart ({show:?}); see docs/gate.md for the manual steps"))?;
    let words: Vec<&str> = argv.split_whitespace().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = words[i];
        if w == "-H" || w == "--host" {
            i += 2;
            continue;
        }
        if w.starts_with("-H=") || w.starts_with("--host=") || (w.starts_with("-H") && w.len() > 2)
        {
            i += 1;
            continue;
        }
        out.push(w);
        i += 1;
    }
    if out.is_empty() {
        return Err("docker.service has an empty ExecStart".into());
    }
    out.insert(1, "-H");
    let sock = format!("unix://{ROOT_SOCKET}");
    let mut line: Vec<String> = out.iter().map(|s| s.to_string()).collect();
    line.insert(2, sock);
    Ok(line.join(" "))
}

pub fn docker_dropin(exec_start: &str) -> String {
    format!(
        "# Written by `ds01 admin enable-gate`; `ds01 admin disable-gate` removes it.\n\
         # dockerd listens where only root reaches it; ds01-gate has the default socket.\n\
         [Service]\nExecStart=\nExecStart={exec_start}\n"
    )
}

pub fn gate_dropin() -> String {
    format!(
        "# Written by `ds01 admin enable-gate`; `ds01 admin disable-gate` removes it.\n\
         [Service]\nExecStart=\nExecStart=/usr/bin/ds01-gate --listen {DEFAULT_SOCKET} --docker {ROOT_SOCKET}\n"
    )
}

/// Puts the gate in front of Docker. Each step is one a rollback undoes.
pub fn enable(host: &dyn Services, paths: &Paths) -> Result<Vec<String>, String> {
    if !host.systemd_running() {
        return Err("enable-gate needs systemd; on other hosts follow docs/gate.md by hand".into());
    }
    let exec = root_only_exec_start(&host.exec_start("docker.service")?)?;
    let mut done = Vec::new();
    host.ensure_group(GROUP)?;
    done.push(format!(
        "group {GROUP} (its members reach Docker through the gate)"
    ));
    host.write(&paths.docker_dropin, &docker_dropin(&exec))?;
    host.write(&paths.gate_dropin, &gate_dropin())?;
    done.push(format!(
        "dockerd to {ROOT_SOCKET}, the gate to {DEFAULT_SOCKET}"
    ));
    host.systemctl(&["daemon-reload"])?;
    // docker.socket would hold the default socket for dockerd.
    host.systemctl(&["mask", "--now", "docker.socket"])?;
    host.systemctl(&["restart", "docker.service"])?;
    host.systemctl(&["enable", "--now", "ds01-gate.service"])?;
    done.push("restarted docker; ds01-gate enabled and started".into());
    if !host.nosuid_nodev(Path::new(HOMES)) {
        done.push(format!(
            "warning: {HOMES} is not mounted nosuid,nodev, so users' binds of their homes are refused \
             (root in a container could leave a setuid program there); to allow them, add nosuid,nodev \
             to {HOMES}'s options in /etc/fstab and run: mount -o remount,nosuid,nodev {HOMES}"
        ));
    }
    Ok(done)
}

/// Takes the gate away: dockerd back on the default socket.
pub fn disable(host: &dyn Services, paths: &Paths) -> Result<Vec<String>, String> {
    if !host.systemd_running() {
        return Err(
            "disable-gate needs systemd; on other hosts follow docs/gate.md by hand".into(),
        );
    }
    host.systemctl(&["disable", "--now", "ds01-gate.service"])?;
    host.remove(&paths.gate_dropin)?;
    host.remove(&paths.docker_dropin)?;
    host.systemctl(&["daemon-reload"])?;
    host.systemctl(&["unmask", "docker.socket"])?;
    host.systemctl(&["restart", "docker.service"])?;
    Ok(vec![
        "ds01-gate stopped and disabled".into(),
        format!("dockerd back on {DEFAULT_SOCKET}; put users back in the docker group to reach it"),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[derive(Default)]
    struct Fake {
        calls: RefCell<Vec<String>>,
        show: String,
        no_systemd: bool,
    }

    impl Services for Fake {
        fn nosuid_nodev(&self, _path: &Path) -> bool {
            false
        }
        fn systemd_running(&self) -> bool {
            !self.no_systemd
        }
        fn exec_start(&self, unit: &str) -> Result<String, String> {
            self.calls.borrow_mut().push(format!("show {unit}"));
            Ok(self.show.clone())
        }
        fn systemctl(&self, args: &[&str]) -> Result<(), String> {
            self.calls
                .borrow_mut()
                .push(format!("systemctl {}", args.join(" ")));
            Ok(())
        }
        fn ensure_group(&self, name: &str) -> Result<(), String> {
            self.calls.borrow_mut().push(format!("group {name}"));
            Ok(())
        }
        fn write(&self, path: &Path, text: &str) -> Result<(), String> {
            self.calls.borrow_mut().push(format!(
                "write {} {}",
                path.display(),
                text.lines().last().unwrap_or("")
            ));
            Ok(())
        }
        fn remove(&self, path: &Path) -> Result<(), String> {
            self.calls
                .borrow_mut()
                .push(format!("remove {}", path.display()));
            Ok(())
        }
    }

    const DEBIAN: &str = "{ path=/usr/sbin/dockerd ; argv[]=/usr/sbin/dockerd -H fd:// $DOCKER_OPTS ; ignore_errors=no ; start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }";
    const DOCKER_CE: &str = "{ path=/usr/bin/dockerd ; argv[]=/usr/bin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock ; ignore_errors=no }";

    #[test]
    fn dockerd_keeps_its_options_and_moves_to_the_root_only_socket() {
        assert_eq!(
            root_only_exec_start(DEBIAN).unwrap(),
            "/usr/sbin/dockerd -H unix:///run/docker-root.sock $DOCKER_OPTS"
        );
        assert_eq!(
            root_only_exec_start(DOCKER_CE).unwrap(),
            "/usr/bin/dockerd -H unix:///run/docker-root.sock --containerd=/run/containerd/containerd.sock"
        );
        assert!(
            root_only_exec_start("garbage")
                .unwrap_err()
                .contains("docs/gate.md")
        );
    }

    #[test]
    fn enable_then_disable_undo_each_other_in_order() {
        let host = Fake {
            show: DOCKER_CE.into(),
            ..Fake::default()
        };
        let paths = Paths::default();
        let done = enable(&host, &paths).unwrap();
        // The fake's homes are not nosuid,nodev: the admin is told how.
        assert!(
            done.last()
                .unwrap()
                .contains("mount -o remount,nosuid,nodev /home"),
            "{done:?}"
        );
        let calls = host.calls.take();
        assert_eq!(
            calls,
            [
                "show docker.service",
                "group docker-users",
                "write /etc/systemd/system/docker.service.d/ds01-gate.conf ExecStart=/usr/bin/dockerd -H unix:///run/docker-root.sock --containerd=/run/containerd/containerd.sock",
                "write /etc/systemd/system/ds01-gate.service.d/ds01-gate.conf ExecStart=/usr/bin/ds01-gate --listen /var/run/docker.sock --docker /run/docker-root.sock",
                "systemctl daemon-reload",
                "systemctl mask --now docker.socket",
                "systemctl restart docker.service",
                "systemctl enable --now ds01-gate.service",
            ]
        );
        disable(&host, &paths).unwrap();
        assert_eq!(
            host.calls.take(),
            [
                "systemctl disable --now ds01-gate.service",
                "remove /etc/systemd/system/ds01-gate.service.d/ds01-gate.conf",
                "remove /etc/systemd/system/docker.service.d/ds01-gate.conf",
                "systemctl daemon-reload",
                "systemctl unmask docker.socket",
                "systemctl restart docker.service",
            ]
        );
        let none = Fake {
            no_systemd: true,
            ..Fake::default()
        };
        assert!(enable(&none, &paths).unwrap_err().contains("needs systemd"));
        assert!(none.calls.borrow().is_empty(), "nothing touched");
    }
}
