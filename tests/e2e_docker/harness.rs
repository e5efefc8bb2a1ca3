//! The harness: a private dockerd whose default runtime is ds01-runtime,
//! the gate in front of it, and real users to call it as.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::common::*;

pub const DOCKER: &str = "/usr/bin/docker";

/// One dockerd at a time: each test owns the seven slices.
pub static SERIAL: Mutex<()> = Mutex::new(());

pub fn runtime_bin() -> PathBuf {
    std::env::var_os("DS01_RUNTIME_BIN").map_or_else(|| PathBuf::from(shim()), PathBuf::from)
}

/// ds01-gate, built beside the CLI by `cargo build --workspace` (its own crate).
pub fn gate_bin() -> PathBuf {
    std::env::var_os("DS01_GATE_BIN")
        .map_or_else(|| Path::new(CLI).with_file_name("ds01-gate"), PathBuf::from)
}

pub fn cli_bin() -> PathBuf {
    std::env::var_os("DS01_CLI_BIN").map_or_else(|| PathBuf::from(CLI), PathBuf::from)
}

pub struct Dockerd {
    pub env: Env,
    child: Option<Child>,
    /// Where the stand-in nvidia-container-runtime-hook writes what it saw.
    pub hook_log: PathBuf,
    stub_dir: PathBuf,
}

pub fn start(extra: &str, with_nvidia_hook: bool) -> Option<Dockerd> {
    let need = [
        ("/usr/sbin/dockerd", "docker.io is not installed"),
        (DOCKER, "the docker client (docker.io) is not installed"),
        ("/usr/bin/containerd", "containerd is not installed"),
    ];
    let mut missing = need
        .iter()
        .find(|(p, _)| !Path::new(p).exists())
        .map(|(_, w)| *w);
    if !["/usr/sbin/runc", "/usr/bin/runc"]
        .iter()
        .any(|p| Path::new(p).exists())
    {
        missing = missing.or(Some("runc is not installed"));
    }
    if busybox().is_none() {
        missing = missing.or(Some("busybox-static is not installed"));
    }
    if unsafe { libc::geteuid() } != 0 {
        missing = missing.or(Some("not running as root"));
    }
    if let Some(why) = missing {
        if std::env::var("DS01_E2E").as_deref() == Ok("1") {
            panic!("DS01_E2E=1 but {why}");
        }
        skip("Docker", why);
        return None;
    }
    let runc = ["/usr/sbin/runc", "/usr/bin/runc"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap();
    // A GPU server's /dev holds the NVIDIA nodes, and Docker copies them
    // into --privileged specs: test as the real host is.
    host_nodes();
    let env = Env::new(&runc, extra);
    let stub_dir = env.path("stub-bin");
    let hook_log = env.path("nvidia-hook.log");
    std::fs::create_dir_all(&stub_dir).unwrap();
    if with_nvidia_hook {
        fake_nvidia_hook(&stub_dir, &hook_log);
    }
    let daemon = serde_json::json!({
        "data-root": env.path("data"),
        "exec-root": env.path("exec"),
        "pidfile": env.path("docker.pid"),
        "hosts": [format!("unix://{}", env.path("docker.sock").display())],
        "bridge": "none",
        "iptables": false,
        "ip6tables": false,
        "storage-driver": "overlay2",
        "default-runtime": "ds01",
        "runtimes": {"ds01": {"path": runtime_bin()}},
    });
    std::fs::write(env.path("daemon.json"), daemon.to_string()).unwrap();
    let mut d = Dockerd {
        env,
        child: None,
        hook_log,
        stub_dir,
    };
    d.launch();
    d.import_busybox();
    Some(d)
}

impl Dockerd {
    pub fn launch(&mut self) {
        let path = format!(
            "{}:{}",
            self.stub_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let log = std::fs::File::create(self.env.path("dockerd.log")).unwrap();
        let child = Command::new("/usr/sbin/dockerd")
            .arg("--config-file")
            .arg(self.env.path("daemon.json"))
            .env("DS01_CONFIG", &self.env.config)
            .env("PATH", path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.docker(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "dockerd did not come up: {}",
                self.dockerd_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops dockerd by its pid (it stops its containers and containerd) and waits.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(60);
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    pub fn dockerd_log(&self) -> String {
        std::fs::read_to_string(self.env.path("dockerd.log")).unwrap_or_default()
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new(DOCKER)
            .arg("-H")
            .arg(format!("unix://{}", self.env.path("docker.sock").display()))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Runs docker and returns its stdout, failing the test on error.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?}: {}{}",
            String::from_utf8_lossy(&out.stderr),
            self.env.shim_log()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn import_busybox(&self) {
        let rootfs = self.env.path("image-rootfs");
        make_busybox_rootfs(&busybox().unwrap(), &rootfs);
        let tar = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .args(["-c", "."])
            .output()
            .unwrap();
        let mut import = Command::new(DOCKER)
            .arg("-H")
            .arg(format!("unix://{}", self.env.path("docker.sock").display()))
            .args(["import", "-", "busybox:local"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        import.stdin.take().unwrap().write_all(&tar.stdout).unwrap();
        assert!(import.wait().unwrap().success());
    }

    /// `ds01 gpus --json`, through the binary under test.
    pub fn held(&self) -> Vec<(String, String)> {
        let out = Command::new(cli_bin())
            .env("DS01_CONFIG", &self.env.config)
            .args(["gpus", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["devices"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| !d["held_by"].is_null())
            .map(|d| {
                let id = d["held_by"]["container_id"].as_str().unwrap();
                (d["uuid"].as_str().unwrap().to_string(), id.to_string())
            })
            .collect()
    }

    /// Waits (Docker releases asynchronously after a command returns) until
    /// `n` devices are held.
    pub fn expect_held(&self, n: usize) -> Vec<(String, String)> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let held = self.held();
            if held.len() == n {
                return held;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} held, have {held:?}\n{}",
                self.env.shim_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `docker run -d` of a container asking for a GPU.
    pub fn run_gpu(&self, name: &str, cmd: &[&str]) -> String {
        let mut args = vec![
            "run",
            "-d",
            "--name",
            name,
            "-e",
            "NVIDIA_VISIBLE_DEVICES=all",
            "busybox:local",
        ];
        args.extend(cmd);
        self.ok(&args)
    }

    pub fn full_id(&self, name: &str) -> String {
        self.ok(&["inspect", "-f", "{{.Id}}", name])
            .trim()
            .to_string()
    }

    pub fn alloc_ids(&self) -> Vec<String> {
        self.env.ledger()["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["alloc_id"].as_str().unwrap().to_string())
            .collect()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if self.child.is_some() {
            let ids = self.docker(&["ps", "-aq"]);
            for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
                let _ = self.docker(&["rm", "-f", id]);
            }
        }
        self.stop();
        // Leave no overlay mounts behind in the temp dir.
        let _ = Command::new("umount")
            .arg("-R")
            .arg(self.env.path("data"))
            .output();
        let _ = Command::new("umount")
            .arg("-R")
            .arg(self.env.path("exec"))
            .output();
    }
}

pub fn lock() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The `VISIBLE=` line NODES_SCRIPT prints.
pub fn visible_of(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("VISIBLE="))
        .unwrap()
        .to_string()
}

pub const NODES_SCRIPT: &str = "for f in /dev/nvidia* /dev/nvidia-caps/*; do [ -c $f ] && echo $f; done; echo VISIBLE=$NVIDIA_VISIBLE_DEVICES";

/// The audit events of one user, as (event, container id) pairs.
pub fn events_of(d: &Dockerd, user: &str) -> Vec<(String, String, String)> {
    d.env
        .events()
        .iter()
        .filter(|e| e["user"] == user)
        .map(|e| {
            (
                e["event"].as_str().unwrap().to_string(),
                e["container_id"].as_str().unwrap().to_string(),
                e["identity_source"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

impl Dockerd {
    /// `ds01 ARGS` against this dockerd.
    pub fn ds01(&self, args: &[&str]) -> Output {
        Command::new(cli_bin())
            .env("DS01_CONFIG", &self.env.config)
            .env("NO_COLOR", "1")
            .env(
                "DOCKER_HOST",
                format!("unix://{}", self.env.path("docker.sock").display()),
            )
            .args(args)
            .output()
            .unwrap()
    }

    pub fn state_of(&self, name: &str) -> String {
        self.ok(&["inspect", "-f", "{{.State.Status}}", name])
            .trim()
            .to_string()
    }
}

impl Dockerd {
    /// `ds01 ARGS` as `user` (root when `None`), in `cwd`.
    pub fn ds01_as(&self, user: Option<&str>, cwd: &Path, args: &[&str]) -> Output {
        let mut c = match user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--"]).arg(cli_bin());
                c
            }
            None => Command::new(cli_bin()),
        };
        c.args(args)
            .current_dir(cwd)
            .env("DS01_CONFIG", &self.env.config)
            .env("NO_COLOR", "1")
            .env(
                "DOCKER_HOST",
                format!("unix://{}", self.env.path("docker.sock").display()),
            )
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

/// A throwaway account, removed on drop.
pub struct TempUser(pub String);

impl TempUser {
    pub fn new(tag: &str) -> Option<TempUser> {
        let name = format!("ds01{tag}{}", std::process::id() % 10000);
        let ok = Command::new("/usr/sbin/useradd")
            .args(["-m", "-s", "/bin/sh", &name])
            .status()
            .ok()?
            .success();
        // Homes on a filesystem mounted nosuid,nodev, as docs/gate.md asks
        // of a server whose users bind their homes.
        let home = format!("/home/{name}");
        let mounted = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                "nosuid,nodev,mode=0750",
                "tmpfs",
                &home,
            ])
            .status()
            .ok()?
            .success();
        let owned = Command::new("chown")
            .arg(format!("{name}:{name}"))
            .arg(&home)
            .status()
            .ok()?
            .success();
        (ok && mounted && owned).then(|| TempUser(name))
    }
}

impl Drop for TempUser {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .args(["-l", &format!("/home/{}", self.0)])
            .output();
        let _ = Command::new("/usr/sbin/userdel")
            .args(["-r", &self.0])
            .output();
    }
}

/// A dockerd whose image catalog has one PyTorch image (busybox) built
/// for these GPU architectures; the catalog's folder lives as long as the
/// second value.
pub fn start_with_catalog(archs: &[&str]) -> Option<(Dockerd, tempfile::TempDir)> {
    let catalog = tempfile::tempdir().unwrap();
    let cat = catalog.path().join("images.toml");
    std::fs::write(
        &cat,
        format!(
            "[[image]]\nframework = \"pytorch\"\nversion = \"1\"\ncuda_archs = {archs:?}\nimage = \"busybox:local\"\n"
        ),
    )
    .unwrap();
    let d = start(&format!("image_catalog = {cat:?}\n"), false)?;
    Some((d, catalog))
}

/// `docker -H unix://GATE ARGS` as `user` (root when `None`).
pub fn docker_via(gate: &Path, user: Option<&str>, args: &[&str]) -> Output {
    let mut c = match user {
        Some(u) => {
            let mut c = Command::new("runuser");
            c.args(["-u", u, "--", DOCKER]);
            c
        }
        None => Command::new(DOCKER),
    };
    c.arg("-H")
        .arg(format!("unix://{}", gate.display()))
        .args(args)
        .env("DOCKER_BUILDKIT", "0")
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

pub struct GateProc(pub Child);

impl Drop for GateProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 request on a fresh connection to the gate; the status line.
pub fn raw_request(sock: &Path, req: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(sock) else {
        return String::new();
    };
    if s.write_all(req.as_bytes()).is_err() {
        return String::new();
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

pub fn fds_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

/// `--security-opt seccomp=PROFILE` with a profile that allows every call.
pub fn allow_all_seccomp(d: &Dockerd) -> String {
    let profile = d.env.path("allow-all.json");
    std::fs::write(&profile, r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#).unwrap();
    format!("seccomp={}", profile.display())
}

/// A private dockerd (the config's `extra`) and one throwaway user per tag;
/// `None` where the end-to-end tests do not run, or cannot make users here.
pub fn start_with_users(extra: &str, tags: &[&str]) -> Option<(Dockerd, Vec<TempUser>)> {
    let d = start(extra, false)?;
    if !Path::new("/usr/sbin/useradd").exists() || !Path::new("/usr/bin/curl").exists() {
        skip("docker", "useradd or curl is not installed");
        return None;
    }
    let users = tags
        .iter()
        .map(|t| TempUser::new(t).expect("cannot create a test user"))
        .collect();
    Some((d, users))
}

/// ds01-gate in front of `d`'s dockerd, its socket open to the test users
/// as the docker-users group would have it.
pub fn gate_for(d: &Dockerd) -> (GateProc, PathBuf) {
    let sock = d.env.path("gate.sock");
    let gate = GateProc(
        Command::new(gate_bin())
            .arg("--listen")
            .arg(&sock)
            .arg("--docker")
            .arg(d.env.path("docker.sock"))
            .env("DS01_CONFIG", &d.env.config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.env.path("gate.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "the gate did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d.env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    }
    (gate, sock)
}

/// A raw request through the gate as `user`, by curl with the path kept as
/// written (escapes, `..`); the status and body.
pub fn curl_as(
    sock: &Path,
    user: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, String) {
    let mut c = Command::new("runuser");
    c.args([
        "-u",
        user,
        "--",
        "curl",
        "-s",
        "--path-as-is",
        "--max-time",
        "20",
    ])
    .arg("--unix-socket")
    .arg(sock)
    .args(["-X", method, "-w", "\n%{http_code}"]);
    if let Some(b) = body {
        c.args(["-H", "Content-Type: application/json", "--data-binary", b]);
    }
    let out = c
        .arg(format!("http://d{path}"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// A process of `user`'s that holds a connection to `sock` open, with
/// half a request header sent (it connects as that user, before exec).
pub fn hold_as(user: &str, sock: &Path) -> Child {
    use std::os::unix::process::CommandExt;
    let id = |flag: &str| -> u32 {
        let out = Command::new("id").args([flag, user]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    // SAFETY: a zeroed sockaddr_un is valid; the path fits (a temp dir).
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in addr
        .sun_path
        .iter_mut()
        .zip(sock.as_os_str().as_encoded_bytes())
    {
        *d = *s as libc::c_char;
    }
    let mut c = Command::new("sleep");
    c.arg("30").uid(id("-u")).gid(id("-g")).stdin(Stdio::null());
    // SAFETY: only syscalls between fork and exec; the socket stays open
    // in `sleep` (no close-on-exec).
    unsafe {
        c.pre_exec(move || {
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
            if fd < 0 || libc::connect(fd, (&raw const addr).cast(), len) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let half = b"GET /_ping HTTP/1.1\r\n";
            libc::write(fd, half.as_ptr().cast(), half.len());
            Ok(())
        });
    }
    c.spawn().unwrap()
}
