//! End to end through a private dockerd whose default runtime is
//! ds01-runtime, over the simulated inventory, as root.
//!
//! Skipped (with a note) without root, dockerd or runc, unless
//! `DS01_E2E=1`, which the test command sets: then their absence fails.
//! `DS01_RUNTIME_BIN` and `DS01_CLI_BIN` point the suite at installed
//! binaries (CI runs it against the .deb's).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;

const DOCKER: &str = "/usr/bin/docker";
/// One dockerd at a time: each test owns the seven slices.
static SERIAL: Mutex<()> = Mutex::new(());

fn runtime_bin() -> PathBuf {
    std::env::var_os("DS01_RUNTIME_BIN").map_or_else(|| PathBuf::from(shim()), PathBuf::from)
}

/// ds01-gate, built beside the CLI by `cargo build --workspace` (its own crate).
fn gate_bin() -> PathBuf {
    std::env::var_os("DS01_GATE_BIN")
        .map_or_else(|| Path::new(CLI).with_file_name("ds01-gate"), PathBuf::from)
}

fn cli_bin() -> PathBuf {
    std::env::var_os("DS01_CLI_BIN").map_or_else(|| PathBuf::from(CLI), PathBuf::from)
}

struct Dockerd {
    env: Env,
    child: Option<Child>,
    /// Where the stand-in nvidia-container-runtime-hook writes what it saw.
    hook_log: PathBuf,
    stub_dir: PathBuf,
}

fn start(extra: &str, with_nvidia_hook: bool) -> Option<Dockerd> {
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
    fn launch(&mut self) {
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
    fn stop(&mut self) {
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

    fn dockerd_log(&self) -> String {
        std::fs::read_to_string(self.env.path("dockerd.log")).unwrap_or_default()
    }

    fn docker(&self, args: &[&str]) -> Output {
        Command::new(DOCKER)
            .arg("-H")
            .arg(format!("unix://{}", self.env.path("docker.sock").display()))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Runs docker and returns its stdout, failing the test on error.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?}: {}{}",
            String::from_utf8_lossy(&out.stderr),
            self.env.shim_log()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn import_busybox(&self) {
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
    fn held(&self) -> Vec<(String, String)> {
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
    fn expect_held(&self, n: usize) -> Vec<(String, String)> {
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
    fn run_gpu(&self, name: &str, cmd: &[&str]) -> String {
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

    fn full_id(&self, name: &str) -> String {
        self.ok(&["inspect", "-f", "{{.Id}}", name])
            .trim()
            .to_string()
    }

    fn alloc_ids(&self) -> Vec<String> {
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

fn lock() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The `VISIBLE=` line NODES_SCRIPT prints.
fn visible_of(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("VISIBLE="))
        .unwrap()
        .to_string()
}

const NODES_SCRIPT: &str = "for f in /dev/nvidia* /dev/nvidia-caps/*; do [ -c $f ] && echo $f; done; echo VISIBLE=$NVIDIA_VISIBLE_DEVICES";

#[test]
fn env_request_sees_exactly_its_slice_and_plain_sees_none() {
    let _g = lock();
    let Some(d) = start("", false) else { return };
    let out = d.ok(&[
        "run",
        "--name",
        "look",
        "-e",
        "NVIDIA_VISIBLE_DEVICES=all",
        "busybox:local",
        "sh",
        "-c",
        NODES_SCRIPT,
    ]);
    assert_eq!(device_lines(&out), FIRST_SLICE_NODES);
    let visible = visible_of(&out);
    assert!(
        visible.starts_with("MIG-") && !visible.contains(','),
        "{visible}"
    );
    d.expect_held(0);

    let out = d.ok(&["run", "--rm", "busybox:local", "sh", "-c", NODES_SCRIPT]);
    assert_eq!(
        out, "VISIBLE=\n",
        "a container without a request sees no NVIDIA node"
    );
}

#[test]
fn gpus_flag_reaches_nvidia_hook_with_only_the_allocation() {
    let _g = lock();
    let Some(d) = start("", true) else { return };
    let out = d.ok(&[
        "run",
        "--rm",
        "--gpus",
        "all",
        "busybox:local",
        "sh",
        "-c",
        NODES_SCRIPT,
    ]);
    let visible = visible_of(&out);
    assert!(
        visible.starts_with("MIG-") && !visible.contains(','),
        "{out}"
    );
    let hook = std::fs::read_to_string(&d.hook_log).unwrap();
    let mounts = format!("/var/run/nvidia-container-devices/{visible} ");
    assert_eq!(
        hook,
        format!("prestart NVIDIA_VISIBLE_DEVICES={visible} | {mounts}\n"),
        "the hook sees the allocation in the environment and, for its hardened setting, as mounts"
    );

    std::fs::remove_file(&d.hook_log).unwrap();
    let out = d.ok(&[
        "run",
        "--rm",
        "--gpus",
        "2",
        "busybox:local",
        "sh",
        "-c",
        NODES_SCRIPT,
    ]);
    let visible = visible_of(&out);
    let uuids: Vec<&str> = visible.split(',').collect();
    assert_eq!(uuids.len(), 2, "{out}");
    assert_ne!(uuids[0], uuids[1]);
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("/dev/nvidia-caps/"))
            .count(),
        4,
        "{out}"
    );
    let hook = std::fs::read_to_string(&d.hook_log).unwrap();
    let mounts: String = uuids
        .iter()
        .map(|u| format!("/var/run/nvidia-container-devices/{u} "))
        .collect();
    assert_eq!(
        hook,
        format!("prestart NVIDIA_VISIBLE_DEVICES={visible} | {mounts}\n")
    );
    d.expect_held(0);
}

#[test]
fn every_way_of_asking_gets_the_driver_from_cdi() {
    let _g = lock();
    let drv = tempfile::tempdir().unwrap();
    let cdi = fake_cdi(drv.path());
    let Some(d) = start(&format!("cdi_spec_dirs = [{cdi:?}]\n"), true) else {
        return;
    };
    let script = format!("cat /usr/lib/libcuda.so.1 /etc/ds01-device; {NODES_SCRIPT}");
    for way in [
        vec!["-e", "NVIDIA_VISIBLE_DEVICES=all"],
        vec!["--gpus", "all"],
        vec!["--device", "/dev/nvidia0"],
        vec!["-e", "DS01_GPU_PROFILE=1g.10gb"],
    ] {
        let mut args = vec!["run", "--rm"];
        args.extend(way.iter().copied());
        args.extend(["busybox:local", "sh", "-c", &script]);
        let out = d.ok(&args);
        assert!(out.starts_with("fake libcuda\n1:0\n"), "{way:?}: {out}");
        assert_eq!(device_lines(&out), FIRST_SLICE_NODES, "{way:?}: {out}");
    }
    // CDI brought the driver: NVIDIA's legacy hook (--gpus) did not run as well.
    assert!(
        !d.hook_log.exists(),
        "{:?}",
        std::fs::read_to_string(&d.hook_log)
    );
    d.expect_held(0);
}

#[test]
fn registering_and_unregistering_take_effect_in_a_running_dockerd() {
    let _g = lock();
    let Some(mut d) = start("", false) else {
        return;
    };
    // A dockerd started by hand from a daemon.json that knows nothing of ds01.
    d.stop();
    let daemon = d.env.path("daemon.json");
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&daemon).unwrap()).unwrap();
    let obj = cfg.as_object_mut().unwrap();
    obj.remove("runtimes");
    obj.remove("default-runtime");
    std::fs::write(&daemon, cfg.to_string()).unwrap();
    let original = std::fs::read(&daemon).unwrap();
    d.launch();
    // The package's copies of the runtime and the programs beside it (it
    // asks the CLI for snapshots, ds01-accounts for accounts, and names
    // ds01-poststop as the hook), which its removal deletes.
    let runtime = d.env.path("installed/ds01-runtime");
    std::fs::create_dir_all(runtime.parent().unwrap()).unwrap();
    std::fs::copy(runtime_bin(), &runtime).unwrap();
    std::fs::copy(cli_bin(), d.env.path("installed/ds01")).unwrap();
    for helper in ["ds01-accounts", "ds01-poststop"] {
        std::fs::copy(
            runtime_bin().with_file_name(helper),
            d.env.path(&format!("installed/{helper}")),
        )
        .unwrap();
    }
    let admin = |action: &str, extra: &[&str]| {
        let out = Command::new(cli_bin())
            .env("DS01_CONFIG", &d.env.config)
            .args(["admin", action, "--daemon-json"])
            .arg(&daemon)
            .arg("--state")
            .arg(d.env.path("registration.json"))
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let said = admin("register-docker", &["--runtime", runtime.to_str().unwrap()]);
    assert!(
        said.contains("reloaded daemon.json: its default runtime is ds01 now"),
        "{said}"
    );
    let info = |f: &str| d.ok(&["info", "-f", f]).trim().to_string();
    assert_eq!(info("{{.DefaultRuntime}}"), "ds01");
    // The name "nvidia" reaches ds01 too: the container gets an allocation.
    let out = d.ok(&[
        "run",
        "--rm",
        "--runtime",
        "nvidia",
        "-e",
        "NVIDIA_VISIBLE_DEVICES=all",
        "busybox:local",
        "sh",
        "-c",
        "echo $NVIDIA_VISIBLE_DEVICES",
    ]);
    assert!(out.starts_with("MIG-"), "{out}");

    let said = admin("unregister-docker", &[]);
    assert!(said.contains("its default runtime is runc now"), "{said}");
    assert_eq!(std::fs::read(&daemon).unwrap(), original, "byte for byte");
    // The package is gone; Docker was never restarted, and still runs containers.
    std::fs::remove_file(&runtime).unwrap();
    assert_eq!(info("{{.DefaultRuntime}}"), "runc");
    assert_eq!(
        d.ok(&["run", "--rm", "busybox:local", "echo", "ok"]),
        "ok\n"
    );
}

#[test]
fn doctor_sees_ds01_as_docker_s_default_runtime() {
    let _g = lock();
    let Some(d) = start("", false) else { return };
    let out = Command::new(cli_bin())
        .args(["doctor", "--json"])
        .env("DS01_CONFIG", &d.env.config)
        .env(
            "DOCKER_HOST",
            format!("unix://{}", d.env.path("docker.sock").display()),
        )
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let check = |id: &str| {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(check("docker-runtime")["status"], "ok", "{v}");
    // The suite's daemon.json names no "nvidia" runtime: the Dev Containers CLI would miss it.
    assert_eq!(check("nvidia-name")["status"], "warn");
    assert!(
        check("docker-version")["detail"]
            .as_str()
            .unwrap()
            .starts_with("Docker ")
    );
}

#[test]
fn every_exit_path_releases() {
    let _g = lock();
    let Some(d) = start("", false) else { return };
    for name in ["stopped", "killed", "removed"] {
        d.run_gpu(name, &["sleep", "300"]);
    }
    d.run_gpu("exits", &["sleep", "1"]);
    d.expect_held(4);
    d.ok(&["wait", "exits"]);
    let held = d.expect_held(3);
    assert!(!held.iter().any(|h| h.1 == d.full_id("exits")));
    d.ok(&["stop", "-t", "1", "stopped"]);
    d.expect_held(2);
    d.ok(&["kill", "killed"]);
    d.expect_held(1);
    d.ok(&["rm", "-f", "removed"]);
    d.expect_held(0);
}

#[test]
fn containers_killed_with_dockerd_are_freed_after_restart() {
    let _g = lock();
    let Some(mut d) = start("", false) else {
        return;
    };
    for name in ["one", "two"] {
        d.run_gpu(name, &["sleep", "300"]);
    }
    d.expect_held(2);
    d.stop();
    d.launch();
    d.expect_held(0);
    let status = d.ok(&["inspect", "-f", "{{.State.Running}}", "one"]);
    assert_eq!(status.trim(), "false");
}

#[test]
fn a_killed_containerd_shim_leaks_nothing_and_hands_out_nothing_twice() {
    let _g = lock();
    let Some(d) = start("", false) else { return };
    d.run_gpu("victim", &["sleep", "300"]);
    let id = d.full_id("victim");
    d.expect_held(1);
    // The containerd shim of that container, found by its -id argument.
    let shim = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .find(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            cmd.contains("containerd-shim") && cmd.contains(&id)
        })
        .expect("the container's containerd shim");
    unsafe { libc::kill(shim, libc::SIGKILL) };
    // Whatever Docker makes of it, no slice is held twice...
    for i in 0..3 {
        d.run_gpu(&format!("other{i}"), &["sleep", "300"]);
    }
    let held = d.held();
    let mut devs: Vec<&String> = held.iter().map(|h| &h.0).collect();
    devs.dedup();
    assert_eq!(devs.len(), held.len(), "{held:?}");
    // ...and once it is removed, nothing is left after gc.
    let _ = d.docker(&["rm", "-f", "victim", "other0", "other1", "other2"]);
    let out = Command::new(cli_bin())
        .env("DS01_CONFIG", &d.env.config)
        .arg("gc")
        .output()
        .unwrap();
    assert!(out.status.success());
    d.expect_held(0);
    assert_eq!(
        d.ok(&["run", "--rm", "busybox:local", "echo", "plain"]),
        "plain\n"
    );
}

#[test]
fn stop_then_start_gets_a_fresh_allocation() {
    let _g = lock();
    let Some(d) = start("", false) else { return };
    d.run_gpu("again", &["sleep", "300"]);
    d.expect_held(1);
    let first = d.alloc_ids();
    d.ok(&["stop", "-t", "1", "again"]);
    d.expect_held(0);
    d.ok(&["start", "again"]);
    d.expect_held(1);
    let second = d.alloc_ids();
    assert_eq!(second.len(), 1);
    assert_ne!(first, second, "a new create is a new allocation");
    d.ok(&["stop", "-t", "1", "again"]);
    d.expect_held(0);
}

#[test]
fn exhausted_slices_tell_docker_users_why() {
    let _g = lock();
    let Some(d) = start("", false) else { return };
    for i in 0..7 {
        d.run_gpu(&format!("s{i}"), &["sleep", "300"]);
    }
    let out = d.docker(&[
        "run",
        "--name",
        "late",
        "-e",
        "NVIDIA_VISIBLE_DEVICES=all",
        "busybox:local",
        "true",
    ]);
    assert!(!out.status.success());
    let why = "ds01: no MIG slice free (7 of 7 in use); try later or see 'container ls --all'";
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(why), "{stderr}");
    assert!(
        d.ok(&["inspect", "-f", "{{.State.Error}}", "late"])
            .contains(why)
    );
    assert_eq!(d.expect_held(7).len(), 7);
    // container ls says why the created container never started...
    let ls = d.ds01(&["container", "ls", "--all", "--json"]);
    let ls: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    let late = ls["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "late")
        .unwrap()
        .clone();
    assert!(
        late["refused"]
            .as_str()
            .unwrap()
            .contains("no MIG slice free (7 of 7 in use)"),
        "{ls}"
    );
    // ...and so does ds01 logs, by the container's name.
    let out = d.ds01(&["logs", "late"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("refuse") && text.contains("no MIG slice free (7 of 7 in use)"),
        "{text}"
    );
    assert!(!text.contains("allocate"), "only late's entries: {text}");
    let out = d.ds01(&["logs", "nonesuch"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no container \"nonesuch\""));
}

#[test]
fn twenty_concurrent_runs_share_seven_slices() {
    let _g = lock();
    let Some(d) = start("", false) else { return };
    let results: Vec<bool> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let d = &d;
                s.spawn(move || {
                    d.docker(&[
                        "run",
                        "-d",
                        "--name",
                        &format!("r{i}"),
                        "-e",
                        "NVIDIA_VISIBLE_DEVICES=all",
                        "busybox:local",
                        "sh",
                        "-c",
                        "echo $NVIDIA_VISIBLE_DEVICES; sleep 300",
                    ])
                    .status
                    .success()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let running: Vec<usize> = (0..20).filter(|i| results[*i]).collect();
    assert_eq!(running.len(), 7, "{results:?}");
    // Each running container's own view: seven different devices.
    let mut seen: Vec<String> = running
        .iter()
        .map(|i| d.ok(&["logs", &format!("r{i}")]).trim().to_string())
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 7, "{seen:?}");
    let held = d.expect_held(7);
    let mut uuids: Vec<String> = held.iter().map(|h| h.0.clone()).collect();
    uuids.sort();
    assert_eq!(uuids, seen, "what containers see is what the ledger holds");
    let names: Vec<String> = (0..20).map(|i| format!("r{i}")).collect();
    let mut args = vec!["rm", "-f"];
    args.extend(names.iter().map(String::as_str));
    let _ = d.docker(&args);
    d.expect_held(0);
}

#[test]
fn exec_top_pause_update_work_through_the_shim() {
    let _g = lock();
    let Some(d) = start("", false) else { return };
    d.run_gpu("busy", &["sleep", "300"]);
    let held = d.expect_held(1);
    let out = d.ok(&[
        "exec",
        "busy",
        "sh",
        "-c",
        "echo $NVIDIA_VISIBLE_DEVICES; ls /dev/nvidia1",
    ]);
    assert_eq!(out, format!("{}\n/dev/nvidia1\n", held[0].0));
    assert!(d.ok(&["top", "busy"]).contains("sleep 300"));
    d.ok(&["pause", "busy"]);
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Status}}", "busy"]).trim(),
        "paused"
    );
    d.ok(&["unpause", "busy"]);
    d.ok(&["update", "--cpu-shares", "512", "busy"]);
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.HostConfig.CpuShares}}", "busy"])
            .trim(),
        "512"
    );
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Status}}", "busy"]).trim(),
        "running"
    );
    d.ok(&["rm", "-f", "busy"]);
    d.expect_held(0);
}

/// The audit events of one user, as (event, container id) pairs.
fn events_of(d: &Dockerd, user: &str) -> Vec<(String, String, String)> {
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

#[test]
fn owners_are_held_to_their_own_shares() {
    let _g = lock();
    let extra = "[defaults]\nmax_gpu_equivalents = 0.143\n\n[users.bob]\nmax_gpu_equivalents = 0.5\n\n\
                 [groups.ds01-admin]\nmembers = [\"dana\"]\n";
    let Some(d) = start(extra, false) else { return };
    let gpu = |name: &str, user: &str, more: &[&str]| {
        let mut args = vec!["run", "-d", "--name", name, "--label"];
        let label = format!("ds01.user={user}");
        args.push(&label);
        args.extend(["-e", "NVIDIA_VISIBLE_DEVICES=all"]);
        args.extend(more);
        args.extend(["busybox:local", "sleep", "300"]);
        d.docker(&args)
    };
    assert!(gpu("alice1", "alice", &[]).status.success());
    let alice1 = d.full_id("alice1");
    let out = gpu("alice2", "alice", &[]);
    assert!(!out.status.success());
    let want = format!(
        "ds01: alice already uses 0.143 of 0.143 GPU-equivalents (container {}: MIG 1g.10gb on GPU 1); \
         stop a container or ask an admin",
        &alice1[..12]
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&want),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Bob's share is his own: he still gets slices.
    assert!(gpu("bob1", "bob", &[]).status.success());
    assert!(gpu("bob2", "bob", &[]).status.success());
    d.expect_held(3);

    let out = gpu("alice-full", "alice", &["-e", "DS01_GPU_PROFILE=full"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ds01: alice may not use a full GPU (allow_full_gpu = false, built-in)"),
        "{err}"
    );

    let out = d.docker(&[
        "run",
        "--name",
        "carol-priv",
        "--privileged",
        "--label",
        "ds01.user=carol",
        "busybox:local",
        "true",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ds01: this container may open every device")
            && err.contains("(carol is not)"),
        "{err}"
    );
    // An admin's privileged container (its spec holds every GPU node the
    // host has: Docker copied them all) passes ds01 unallocated. Where the
    // sandbox lets runc grant every capability it then starts and sees them.
    let out = d.docker(&[
        "run",
        "--rm",
        "--privileged",
        "--label",
        "ds01.user=dana",
        "busybox:local",
        "sh",
        "-c",
        "ls /dev/nvidia0 /dev/nvidia1",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "/dev/nvidia0\n/dev/nvidia1\n"
        );
    } else {
        assert!(!err.contains("ds01:") && err.contains("caps"), "{err}");
    }
    d.env.assert_log_contains(&["sees every GPU"]);

    d.ok(&["rm", "-f", "alice1", "bob1", "bob2"]);
    d.expect_held(0);

    let label = "docker-label".to_string();
    let alice = events_of(&d, "alice");
    assert_eq!(alice[0], ("allocate".into(), alice1.clone(), label.clone()));
    assert_eq!(
        alice.iter().filter(|e| e.0 == "refuse").count(),
        2,
        "{alice:?}"
    );
    assert!(
        alice.contains(&("release".into(), alice1, label.clone())),
        "{alice:?}"
    );
    let bob = events_of(&d, "bob");
    assert_eq!(
        bob.iter().filter(|e| e.0 == "allocate").count(),
        2,
        "{bob:?}"
    );
    assert_eq!(
        bob.iter().filter(|e| e.0 == "release").count(),
        2,
        "{bob:?}"
    );
    let carol = events_of(&d, "carol");
    assert_eq!(carol.len(), 1);
    assert_eq!(carol[0].0, "refuse");
    let dana = events_of(&d, "dana");
    assert_eq!(dana.len(), 1, "{dana:?}");
    assert_eq!(dana[0].0, "bypass", "written down as seeing every GPU");

    // The same through the CLI, as a person reads it.
    let out = Command::new(cli_bin())
        .env("DS01_CONFIG", &d.env.config)
        .args(["events", "--user", "alice", "--since", "1h", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), alice.len());
    assert!(v.as_array().unwrap().iter().all(|e| e["user"] == "alice"));
}

#[test]
fn container_ls_shows_each_user_their_own() {
    let _g = lock();
    let Some(d) = start("", false) else { return };
    let gpu = ["-e", "NVIDIA_VISIBLE_DEVICES=all"];
    let run = |name: &str, labels: &[&str], with_gpu: bool| {
        let mut args = vec!["run", "-d", "--name", name];
        for l in labels {
            args.extend(["--label", l]);
        }
        if with_gpu {
            args.extend(gpu);
        }
        args.extend(["busybox:local", "sleep", "300"]);
        d.ok(&args);
    };
    // Two system users stand in for people: daemon (uid 1) and bin (uid 2).
    run("daemon-train", &["ds01.user=daemon"], true);
    run(
        "bin-dev",
        &["devcontainer.local_folder=/home/bin/llm"],
        true,
    );
    run("daemon-old", &["ds01.user=daemon"], true);
    d.ok(&["stop", "-t", "1", "daemon-old"]);
    d.expect_held(2);

    // Let the two users reach this private daemon and read its config.
    use std::os::unix::fs::PermissionsExt;
    for p in [d.env.dir.path().to_path_buf(), d.env.path("docker.sock")] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let names = d.env.path("names");
    std::fs::create_dir_all(&names).unwrap();
    std::os::unix::fs::symlink(cli_bin(), names.join("container")).unwrap();
    std::fs::set_permissions(&names, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ls_as = |uid: u32, args: &[&str], docker_host: &str| -> Output {
        Command::new("setpriv")
            .args([
                &format!("--reuid={uid}"),
                &format!("--regid={uid}"),
                "--clear-groups",
                "--",
            ])
            .arg(names.join("container"))
            .arg("ls")
            .args(args)
            .env("DS01_CONFIG", &d.env.config)
            .env("DOCKER_HOST", docker_host)
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let host = format!("unix://{}", d.env.path("docker.sock").display());
    let json = |uid: u32, args: &[&str]| -> serde_json::Value {
        let out = ls_as(uid, args, &host);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };

    let mine = json(1, &["--json"]);
    assert_eq!(mine["user"], "daemon");
    let rows = mine["containers"].as_array().unwrap();
    let names_of = |rows: &[serde_json::Value]| {
        rows.iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(names_of(rows), ["daemon-train", "daemon-old"]);
    assert_eq!(rows[0]["gpu"], "MIG 1g.10gb on GPU 1");
    assert_eq!(rows[1]["gpu"], "none", "a stopped container shows no GPU");
    assert!(rows[1]["status"].as_str().unwrap().starts_with("Exited"));
    // What --json says is what the ledger holds.
    let ledger = d.env.ledger();
    let rec = ledger["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["container_id"] == rows[0]["id"])
        .unwrap();
    assert_eq!(rows[0]["uuids"], rec["devices"]);
    assert_eq!(rec["user"], "daemon");

    let theirs = json(2, &["--json"]);
    let rows = theirs["containers"].as_array().unwrap();
    // A dev container goes by its project folder; Docker's name is kept.
    assert_eq!(names_of(rows), ["llm"]);
    assert_eq!(rows[0]["docker_name"], "bin-dev");
    assert_eq!(rows[0]["kind"], "dev-container");

    let all = json(2, &["--all", "--json"]);
    let rows = all["containers"].as_array().unwrap();
    let mut owners: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["owner"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect();
    owners.sort();
    assert_eq!(
        owners,
        [
            ("daemon-old".into(), "daemon".into()),
            ("daemon-train".into(), "daemon".into()),
            ("llm".into(), "bin".into())
        ]
    );

    // The framed layout a person reads.
    let out = ls_as(2, &[], &host);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("    Your Containers\n"), "{text}");
    assert!(
        text.contains("1. llm (dev container)\n   Status: Running (Up"),
        "{text}"
    );
    assert!(text.contains("   GPU:    MIG 1g.10gb on GPU 1\n"), "{text}");
    assert!(text.ends_with("Total: 1 container(s)\n"), "{text}");
    let out = ls_as(1, &["--all", "--detailed"], &host);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("   Owner:  bin\n")
            && text.contains("   UUIDs:  MIG-")
            && text.contains("   Project: /home/bin/llm"),
        "{text}"
    );

    // Docker out of reach: the allocations are still listed, and the gap is said.
    let out = ls_as(1, &["--json"], "unix:///nonexistent/docker.sock");
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["containers"].as_array().unwrap().len(), 1);
    assert_eq!(v["containers"][0]["gpu"], "MIG 1g.10gb on GPU 1");
    assert!(
        v["warnings"][0]
            .as_str()
            .unwrap()
            .contains("Docker is not reachable")
    );
}

#[test]
fn containers_reach_only_their_own_devices() {
    let _g = lock();
    let Some(d) = start("", false) else { return };
    // The allocated node opens as far as the cgroup goes (no driver here:
    // "No such device"); another GPU's node, made with mknod, is refused.
    let script = "cat /dev/nvidia1 2>&1; mknod /dev/other c 195 0 && cat /dev/other 2>&1; true";
    let out = d.ok(&[
        "run",
        "--rm",
        "-e",
        "NVIDIA_VISIBLE_DEVICES=all",
        "busybox:local",
        "sh",
        "-c",
        script,
    ]);
    assert!(
        out.contains("'/dev/nvidia1': No such device or address"),
        "{out}"
    );
    assert!(
        out.contains("'/dev/other': Operation not permitted"),
        "{out}"
    );

    // A GPU node brought along, under any name, is a request like any
    // other: ds01 picks, and the node asked for is gone.
    for dev in ["/dev/nvidia0:/dev/gpu0", "/dev/nvidia0", "/dev/nvidiactl"] {
        let out = d.ok(&[
            "run",
            "--rm",
            "--device",
            dev,
            "busybox:local",
            "sh",
            "-c",
            &format!("{NODES_SCRIPT}; ls /dev/gpu0 2>&1; true"),
        ]);
        assert_eq!(device_lines(&out), FIRST_SLICE_NODES, "{dev}: {out}");
        assert!(out.contains("VISIBLE=MIG-"), "{out}");
        assert!(out.contains("/dev/gpu0: No such file"), "{out}");
    }
    // What is only named like a GPU node is none: /dev/null stays /dev/null.
    let out = d.ok(&[
        "run",
        "--rm",
        "--device",
        "/dev/null:/dev/nvidia0",
        "busybox:local",
        "sh",
        "-c",
        "echo VISIBLE=$NVIDIA_VISIBLE_DEVICES",
    ]);
    assert_eq!(out, "VISIBLE=\n");
    d.expect_held(0);
}

#[test]
fn device_rules_around_the_allocator_are_refused() {
    let _g = lock();
    let Some(d) = start("", false) else { return };
    for (rule, words) in [
        ("c 195:* rwm", "open NVIDIA devices (c 195:* rwm)"),
        ("c 195:0 rwm", "open NVIDIA devices (c 195:0 rwm)"),
        ("a 1:3 r", "may open every device"),
    ] {
        let out = d.docker(&[
            "run",
            "--rm",
            "--device-cgroup-rule",
            rule,
            "-v",
            "/dev:/host-dev",
            "busybox:local",
            "sh",
            "-c",
            "cat /host-dev/nvidia0",
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{rule}: {err}");
        assert!(err.contains(words), "{rule}: {err}");
    }
    // A plain container's harmless rules still pass.
    d.ok(&[
        "run",
        "--rm",
        "--device-cgroup-rule",
        "c 10:200 rwm",
        "busybox:local",
        "true",
    ]);
    d.expect_held(0);
}

impl Dockerd {
    /// `ds01 ARGS` against this dockerd.
    fn ds01(&self, args: &[&str]) -> Output {
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

    fn state_of(&self, name: &str) -> String {
        self.ok(&["inspect", "-f", "{{.State.Status}}", name])
            .trim()
            .to_string()
    }
}

#[test]
fn an_idle_container_is_warned_then_stopped_and_an_active_one_runs_on() {
    let _g = lock();
    let activity_dir = tempfile::tempdir().unwrap();
    let activity = activity_dir.path().join("activity.json");
    let extra = format!(
        "reap_warning = \"2s\"\nactivity = {activity:?}\n[defaults]\nidle_timeout = \"4s\"\n"
    );
    let Some(d) = start(&extra, false) else {
        return;
    };
    d.ok(&[
        "run",
        "-d",
        "--name",
        "idle",
        "--label",
        "ds01.user=alice",
        "-e",
        "NVIDIA_VISIBLE_DEVICES=all",
        "busybox:local",
        "sleep",
        "300",
    ]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "busy",
        "--label",
        "ds01.user=bob",
        "-e",
        "NVIDIA_VISIBLE_DEVICES=all",
        "busybox:local",
        "sleep",
        "300",
    ]);
    let held = d.expect_held(2);
    let busy_id = d.full_id("busy");
    let busy_dev = held.iter().find(|h| h.1 == busy_id).unwrap().0.clone();
    // A compute process on busy's slice, as NVML would report it: its own
    // init process, which `ds01 gpus` maps back to it by its cgroup.
    let busy_pid = d
        .ok(&["inspect", "-f", "{{.State.Pid}}", "busy"])
        .trim()
        .to_string();
    std::fs::write(
        &activity,
        format!("{{\"{busy_dev}\": {{\"processes\": [{busy_pid}]}}}}"),
    )
    .unwrap();
    let gpus = d.ds01(&["gpus", "--json"]);
    let gpus: serde_json::Value = serde_json::from_slice(&gpus.stdout).unwrap();
    let dev = gpus["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["uuid"] == busy_dev.as_str())
        .unwrap();
    assert_eq!(dev["processes"][0]["pid"].to_string(), busy_pid);
    assert_eq!(dev["processes"][0]["container_id"], busy_id.as_str());

    let reap = |args: &[&str]| {
        let mut a = vec!["reap", "--json"];
        a.extend(args);
        let out = d.ds01(&a);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["name"].as_str().unwrap_or("").to_string(),
                    a["action"].as_str().unwrap().to_string(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert!(reap(&[]).is_empty(), "first sample: nothing idle long yet");
    std::thread::sleep(Duration::from_millis(2500));
    // Within the warning time of its timeout: a dry run says so, the pass warns.
    assert_eq!(
        reap(&["--dry-run"]),
        [("idle".to_string(), "warn".to_string())]
    );
    assert_eq!(reap(&[]), [("idle".to_string(), "warn".to_string())]);
    assert_eq!(d.state_of("idle"), "running");
    // container ls shows the idle time and the time left.
    let ls = d.ds01(&["container", "ls", "--all", "--json"]);
    let ls: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    let row = |name: &str| {
        ls["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap()
            .clone()
    };
    assert!(row("idle")["idle_secs"].as_u64().unwrap() >= 2, "{ls}");
    assert!(row("idle")["time_left_secs"].as_u64().unwrap() <= 2, "{ls}");
    assert!(row("busy")["idle_secs"].is_null(), "{ls}");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(reap(&[]), [("idle".to_string(), "stop".to_string())]);
    assert_eq!(d.state_of("idle"), "exited");
    assert_eq!(d.state_of("busy"), "running");
    // A normal stop: the usual release freed the slice.
    let left = d.expect_held(1);
    assert_eq!(left[0].1, busy_id);
    let events = std::fs::read_to_string(d.env.path("events.jsonl")).unwrap();
    assert!(
        events.contains("\"event\":\"warn\"") && events.contains("\"event\":\"reap\""),
        "{events}"
    );
    // Started again under the same id: a new run, with its full time and
    // a new warning before any stop.
    d.ok(&["start", "idle"]);
    d.expect_held(2);
    assert!(reap(&[]).is_empty(), "a new run is not stopped at once");
    assert_eq!(d.state_of("idle"), "running");
    let ls = d.ds01(&["container", "ls", "--all", "--json"]);
    let ls: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    let left_secs = ls["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "idle")
        .unwrap()["time_left_secs"]
        .as_u64()
        .unwrap();
    assert!(left_secs >= 3, "its full idle_timeout again: {ls}");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(reap(&[]), [("idle".to_string(), "warn".to_string())]);
    let warnings = std::fs::read_to_string(d.env.path("events.jsonl"))
        .unwrap()
        .matches("\"event\":\"warn\"")
        .count();
    assert_eq!(warnings, 2, "warned once per run");
    d.ok(&["rm", "-f", "idle", "busy"]);
    d.expect_held(0);
}

#[test]
fn a_full_server_queues_a_create_that_asks_to_wait() {
    let _g = lock();
    let Some(d) = start("", false) else { return };
    for i in 0..7 {
        d.run_gpu(&format!("s{i}"), &["sleep", "300"]);
    }
    d.expect_held(7);
    // An 8th waits up to a minute; it is in the queue while it waits.
    let sock = d.env.path("docker.sock");
    let waiter = std::thread::spawn(move || {
        Command::new(DOCKER)
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .args([
                "run",
                "-d",
                "--name",
                "eighth",
                "-e",
                "NVIDIA_VISIBLE_DEVICES=all",
                "-e",
                "DS01_GPU_WAIT=60s",
                "busybox:local",
                "sleep",
                "300",
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = d.ds01(&["queue", "--json"]);
        let q: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if q.as_array().is_some_and(|a| a.len() == 1) {
            assert_eq!(q[0]["position"], 1);
            assert_eq!(q[0]["wants"], "a MIG slice");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the 8th never queued: {}",
            d.env.shim_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // One removed: the waiter starts within a second.
    d.ok(&["rm", "-f", "s0"]);
    let freed = Instant::now();
    let out = waiter.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The waiter retries every 200 ms; docker run then starts it. The
    // bound leaves room for a loaded machine.
    eprintln!(
        "the 8th started {:?} after a slice was freed",
        freed.elapsed()
    );
    assert!(
        freed.elapsed() < Duration::from_secs(2),
        "took {:?}",
        freed.elapsed()
    );
    assert_eq!(d.state_of("eighth"), "running");
    d.expect_held(7);
    // A 9th that waits past its deadline fails, saying where it stood.
    let out = d.docker(&[
        "run",
        "--name",
        "ninth",
        "-e",
        "NVIDIA_VISIBLE_DEVICES=all",
        "--label",
        "ds01.gpu-wait=2s",
        "busybox:local",
        "true",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "no MIG slice came free within its wait of 2s (it was number 1 in the GPU queue"
        ),
        "{stderr}"
    );
    let q = d.ds01(&["queue", "--json"]);
    assert_eq!(
        String::from_utf8_lossy(&q.stdout).trim(),
        "[]",
        "the queue is empty again"
    );
    let events = std::fs::read_to_string(d.env.path("events.jsonl")).unwrap();
    assert!(events.contains("\"event\":\"queue\""), "{events}");
}

impl Dockerd {
    /// `ds01 ARGS` as `user` (root when `None`), in `cwd`.
    fn ds01_as(&self, user: Option<&str>, cwd: &Path, args: &[&str]) -> Output {
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
struct TempUser(String);

impl TempUser {
    fn new(tag: &str) -> Option<TempUser> {
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
fn start_with_catalog(archs: &[&str]) -> Option<(Dockerd, tempfile::TempDir)> {
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

#[test]
fn the_cli_workflow_deploys_attaches_stops_starts_and_retires() {
    let _g = lock();
    let Some((d, _catalog)) = start_with_catalog(&["sm_80", "sm_90"]) else {
        return;
    };
    if !Path::new("/usr/sbin/useradd").exists() {
        skip("docker", "useradd is not installed");
        return;
    }
    let (Some(alice), Some(bob)) = (TempUser::new("a"), TempUser::new("b")) else {
        panic!("cannot create test users");
    };
    // The users reach this dockerd, its config and its state as they would
    // the system's (the docker group, /etc/ds01, /run/ds01).
    for p in [d.env.dir.path().to_path_buf(), d.env.path("state")] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    Command::new("chmod")
        .args(["666"])
        .arg(d.env.path("docker.sock"))
        .status()
        .unwrap();
    let home = |u: &TempUser| PathBuf::from(format!("/home/{}", u.0));
    let project = |u: &TempUser| {
        let p = home(u).join("thesis");
        std::fs::create_dir_all(&p).unwrap();
        Command::new("chown")
            .args(["-R", &format!("{0}:{0}", u.0)])
            .arg(home(u))
            .status()
            .unwrap();
        p
    };
    let (pa, pb) = (project(&alice), project(&bob));
    // Bob's project has a Dockerfile: deploy builds it through the API.
    std::fs::write(
        pb.join("Dockerfile"),
        "FROM busybox:local\nRUN echo built > /built\n",
    )
    .unwrap();
    let ok = |out: &Output| {
        assert!(
            out.status.success(),
            "{}{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            d.env.shim_log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    // Alice: from the catalog. Same name for both users, no collision.
    let out = ok(&d.ds01_as(Some(&alice.0), &pa, &["container", "deploy", "thesis"]));
    assert!(
        out.contains("image: busybox:local (the catalog's pytorch image)"),
        "{out}"
    );
    assert!(
        out.contains("thesis is running with MIG 1g.10gb on GPU 1"),
        "{out}"
    );
    assert!(
        out.contains("attach with: container attach thesis"),
        "{out}"
    );
    let out = ok(&d.ds01_as(Some(&bob.0), &pb, &["container", "deploy", "thesis"]));
    assert!(
        out.contains("building ds01-") && out.contains("thesis is running with MIG"),
        "{out}"
    );
    d.expect_held(2);

    // Attach runs a command inside, in the project, with the home mounted.
    let out = ok(&d.ds01_as(
        Some(&bob.0),
        &pb,
        &[
            "container",
            "attach",
            "thesis",
            "--",
            "sh",
            "-c",
            "cat /built; pwd; ls -d $HOME 2>/dev/null || true",
        ],
    ));
    assert!(out.starts_with("built\n"), "bob's own image: {out}");
    assert!(out.contains(&pb.display().to_string()), "{out}");

    // Bob cannot touch alice's; the refusal is exit 1.
    let out = d.ds01_as(
        Some(&bob.0),
        &pb,
        &[
            "container",
            "retire",
            &format!("{}/thesis", alice.0),
            "--force",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("{}'s container", alice.0)));
    let out = d.ds01_as(
        Some(&bob.0),
        &pb,
        &["container", "stop", &format!("{}-thesis", alice.0)],
    );
    assert_eq!(out.status.code(), Some(1), "not by Docker's name either");

    // Stop frees the slice; start gets a fresh allocation.
    let before = d.alloc_ids();
    let out = ok(&d.ds01_as(Some(&alice.0), &pa, &["container", "stop", "thesis"]));
    assert!(out.contains("is back in the pool"), "{out}");
    d.expect_held(1);
    let out = ok(&d.ds01_as(Some(&alice.0), &pa, &["container", "start", "thesis"]));
    assert!(out.contains("thesis is running with MIG 1g.10gb"), "{out}");
    d.expect_held(2);
    let after = d.alloc_ids();
    assert!(
        after.iter().any(|a| !before.contains(a)),
        "a fresh allocation: {before:?} {after:?}"
    );

    // container ls shows them by the names the users chose.
    let ls = ok(&d.ds01_as(Some(&alice.0), &pa, &["container", "ls", "--json"]));
    let ls: serde_json::Value = serde_json::from_str(&ls).unwrap();
    let names: Vec<&str> = ls["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["thesis"]);

    // Retire stops and removes it, and the slice is back.
    let out = ok(&d.ds01_as(
        Some(&alice.0),
        &pa,
        &["container", "retire", "thesis", "--force"],
    ));
    assert!(
        out.contains("retired thesis") && out.contains("back in the pool"),
        "{out}"
    );
    d.expect_held(1);
    let out = d.ds01_as(Some(&alice.0), &pa, &["container", "attach", "thesis"]);
    assert_eq!(out.status.code(), Some(1), "gone");
    ok(&d.ds01_as(
        Some(&bob.0),
        &pb,
        &["container", "retire", "thesis", "--force"],
    ));
    d.expect_held(0);
}

#[test]
fn a_refused_deploy_prints_ds01_s_reason_and_leaves_nothing() {
    let _g = lock();
    let Some((d, _catalog)) = start_with_catalog(&["sm_80"]) else {
        return;
    };
    for i in 0..7 {
        d.run_gpu(&format!("s{i}"), &["sleep", "300"]);
    }
    let proj = tempfile::tempdir().unwrap();
    let out = d.ds01_as(None, proj.path(), &["container", "deploy", "late"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("ds01: no MIG slice free (7 of 7 in use)"),
        "{err}"
    );
    assert!(
        !err.contains("OCI runtime") && !err.contains(": unknown"),
        "unwrapped: {err}"
    );
    // Nothing left behind: the same name deploys once a slice is free.
    d.ok(&["rm", "-f", "s0"]);
    let out = d.ds01_as(
        None,
        proj.path(),
        &["container", "deploy", "late", "--", "true"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `docker -H unix://GATE ARGS` as `user` (root when `None`).
fn docker_via(gate: &Path, user: Option<&str>, args: &[&str]) -> Output {
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

struct GateProc(Child);

impl Drop for GateProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_gate_knows_each_caller_and_keeps_them_to_their_own() {
    let _g = lock();
    let Some(d) = start("gate_list = \"own\"\n", false) else {
        return;
    };
    if !Path::new("/usr/sbin/useradd").exists() {
        skip("docker", "useradd is not installed");
        return;
    }
    let (Some(alice), Some(bob)) = (TempUser::new("ga"), TempUser::new("gb")) else {
        panic!("cannot create test users");
    };
    let (_gate, gate_sock) = gate_for(&d);
    let (a, b) = (Some(alice.0.as_str()), Some(bob.0.as_str()));
    let ok = |out: Output| {
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(d.env.path("gate.log")).unwrap_or_default()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let refused = |out: Output, rule: &str| {
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "not refused ({rule})");
        assert!(
            err.contains("ds01-gate: ") && err.contains(&format!("(rule {rule})")),
            "{rule}: {err}"
        );
    };

    // Identity comes from the kernel: a spoofed label is replaced.
    ok(docker_via(
        &gate_sock,
        a,
        &[
            "run",
            "-d",
            "--name",
            "a1",
            "--label",
            &format!("ds01.user={}", bob.0),
            "busybox:local",
            "sleep",
            "300",
        ],
    ));
    let label = d.ok(&[
        "inspect",
        "-f",
        "{{index .Config.Labels \"ds01.user\"}}",
        "a1",
    ]);
    assert_eq!(label.trim(), alice.0);

    // Alice works with her own container: exec (a hijacked stream), logs, cp.
    assert_eq!(
        ok(docker_via(&gate_sock, a, &["exec", "a1", "echo", "hi"])).trim(),
        "hi"
    );
    ok(docker_via(&gate_sock, a, &["logs", "a1"]));
    ok(docker_via(
        &gate_sock,
        a,
        &["cp", "a1:/bin/busybox", "/tmp/ds01-gate-cp-test"],
    ));
    let _ = std::fs::remove_file("/tmp/ds01-gate-cp-test");
    // A run that streams: attach and logs -f to the end.
    let out = ok(docker_via(
        &gate_sock,
        a,
        &[
            "run",
            "--rm",
            "busybox:local",
            "sh",
            "-c",
            "echo one; echo two",
        ],
    ));
    assert_eq!(out, "one\ntwo\n");
    // exec -it through a pty.
    let out = Command::new("runuser")
        .args(["-u", &alice.0, "--", "script", "-qec"])
        .arg(format!(
            "{DOCKER} -H unix://{} exec -it a1 tty",
            gate_sock.display()
        ))
        .arg("/dev/null")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("/dev/pts/"),
        "{out:?}"
    );
    // A build with its context uploaded.
    let ctx = PathBuf::from(format!("/home/{}/ctx", alice.0));
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox:local\nCOPY hello /hello\n",
    )
    .unwrap();
    std::fs::write(ctx.join("hello"), "hello\n").unwrap();
    Command::new("chown")
        .args(["-R", &alice.0])
        .arg(&ctx)
        .status()
        .unwrap();
    ok(docker_via(
        &gate_sock,
        a,
        &[
            "build",
            "-q",
            "-t",
            "gate-test:built",
            ctx.to_str().unwrap(),
        ],
    ));
    // BuildKit's session would run beside the gate's judgement: refused,
    // and nothing built (docs/gate.md: users build with DOCKER_BUILDKIT=0).
    let out = Command::new("runuser")
        .args(["-u", &alice.0, "--", DOCKER, "-H"])
        .arg(format!("unix://{}", gate_sock.display()))
        .args([
            "build",
            "-q",
            "-t",
            "gate-test:buildkit",
            ctx.to_str().unwrap(),
        ])
        .env("DOCKER_BUILDKIT", "1")
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "BuildKit went through the gate");
    assert!(
        !d.docker(&["image", "inspect", "gate-test:buildkit"])
            .status
            .success()
    );

    // save works; load, which writes any name, is an admin's.
    let tar = format!("/home/{}/img.tar", alice.0);
    ok(docker_via(
        &gate_sock,
        a,
        &["save", "-o", &tar, "gate-test:built"],
    ));
    refused(docker_via(&gate_sock, a, &["load", "-i", &tar]), "endpoint");
    // logs -f of a container that ends: every line, then the end.
    let id = ok(docker_via(
        &gate_sock,
        a,
        &[
            "run",
            "-d",
            "busybox:local",
            "sh",
            "-c",
            "echo one; sleep 1; echo two",
        ],
    ));
    let out = ok(docker_via(&gate_sock, a, &["logs", "-f", id.trim()]));
    assert_eq!(out, "one\ntwo\n");
    ok(docker_via(&gate_sock, a, &["rm", id.trim()]));
    // Volumes are stamped; another user's is not bob's to remove.
    ok(docker_via(&gate_sock, a, &["volume", "create", "alices"]));
    refused(
        docker_via(&gate_sock, b, &["volume", "rm", "alices"]),
        "volume-owner",
    );
    ok(docker_via(&gate_sock, a, &["volume", "rm", "alices"]));
    // ds01's own CLI works through the gate.
    let ls = Command::new("runuser")
        .args(["-u", &alice.0, "--"])
        .arg(cli_bin())
        .args(["container", "ls", "--json"])
        .env("DS01_CONFIG", &d.env.config)
        .env("DOCKER_HOST", format!("unix://{}", gate_sock.display()))
        .output()
        .unwrap();
    let ls: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    let names: Vec<&str> = ls["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a1"], "{ls}");

    // A Compose project, as alice, through the gate.
    if Path::new("/usr/bin/docker-compose").exists() {
        let proj = PathBuf::from(format!("/home/{}/compose", alice.0));
        std::fs::create_dir_all(&proj).unwrap();
        std::fs::write(
            proj.join("docker-compose.yml"),
            "version: \"2.4\"\nservices:\n  app:\n    image: busybox:local\n    command: [\"sleep\", \"300\"]\n    network_mode: none\n",
        )
        .unwrap();
        Command::new("chown")
            .args(["-R", &alice.0])
            .arg(&proj)
            .status()
            .unwrap();
        let compose = |args: &[&str]| {
            Command::new("runuser")
                .args(["-u", &alice.0, "--", "/usr/bin/docker-compose", "-H"])
                .arg(format!("unix://{}", gate_sock.display()))
                .args(args)
                .current_dir(&proj)
                .stdin(Stdio::null())
                .output()
                .unwrap()
        };
        ok(compose(&["up", "-d"]));
        let owner = d.ok(&[
            "ps",
            "--filter",
            "label=com.docker.compose.project=compose",
            "--format",
            "{{.Label \"ds01.user\"}}",
        ]);
        assert_eq!(owner.trim(), alice.0, "compose's container is stamped too");
        refused(
            docker_via(&gate_sock, b, &["rm", "-f", "compose_app_1"]),
            "ownership",
        );
        ok(compose(&["down"]));
    } else {
        eprintln!(
            "docker-compose is not installed: the Compose project through the gate is not tried"
        );
    }

    // The Dev Containers CLI, unchanged, through the gate: up, then exec.
    let official = Path::new("/usr/local/lib/devcontainers-cli/bin/devcontainer");
    if official.exists() {
        // busybox with the passwd file the CLI's `exec -u root` needs.
        let img = tempfile::tempdir().unwrap();
        std::fs::write(
            img.path().join("Dockerfile"),
            "FROM busybox:local\nRUN echo 'root:x:0:0:root:/root:/bin/sh' > /etc/passwd && echo 'root:x:0:' > /etc/group\n",
        )
        .unwrap();
        let built = d.docker(&[
            "build",
            "-q",
            "-t",
            "gate-test:dc",
            img.path().to_str().unwrap(),
        ]);
        assert!(built.status.success(), "{built:?}");
        let proj = PathBuf::from(format!("/home/{}/dc", alice.0));
        std::fs::create_dir_all(proj.join(".devcontainer")).unwrap();
        std::fs::write(
            proj.join(".devcontainer/devcontainer.json"),
            r#"{"image": "gate-test:dc", "overrideCommand": true, "shutdownAction": "stopContainer"}"#,
        )
        .unwrap();
        Command::new("chown")
            .args(["-R", &alice.0])
            .arg(&proj)
            .status()
            .unwrap();
        let dc = |args: &[&str]| {
            Command::new("runuser")
                .args(["-u", &alice.0, "--"])
                .arg(official)
                .args(args)
                .env("DOCKER_HOST", format!("unix://{}", gate_sock.display()))
                .env("HOME", format!("/home/{}", alice.0))
                .current_dir(&proj)
                .stdin(Stdio::null())
                .output()
                .unwrap()
        };
        let folder = proj.display().to_string();
        let up = dc(&["up", "--workspace-folder", &folder]);
        assert!(
            up.status.success(),
            "devcontainer up: {}{}",
            String::from_utf8_lossy(&up.stdout),
            String::from_utf8_lossy(&up.stderr)
        );
        let out = dc(&["exec", "--workspace-folder", &folder, "echo", "inside"]);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("inside"),
            "{out:?}"
        );
        let owner = d.ok(&[
            "ps",
            "--filter",
            &format!("label=devcontainer.local_folder={folder}"),
            "--format",
            "{{.Label \"ds01.user\"}}",
        ]);
        assert_eq!(owner.trim(), alice.0);
        let dc_id = d.ok(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=devcontainer.local_folder={folder}"),
        ]);
        d.ok(&["rm", "-f", dc_id.trim()]);
    } else {
        eprintln!(
            "the Dev Containers CLI is not installed: devcontainer up through the gate is not tried"
        );
    }

    // With gate_list = "own", docker ps shows each their own; the admin all.
    let ps = |who: Option<&str>| {
        ok(docker_via(
            &gate_sock,
            who,
            &["ps", "-a", "--format", "{{.Names}}"],
        ))
    };
    assert_eq!(ps(a).trim(), "a1");
    assert_eq!(ps(b).trim(), "");
    assert!(ps(None).contains("a1"));

    // Bob cannot stop, exec into, inspect or remove alice's container.
    for args in [
        &["stop", "a1"][..],
        &["exec", "a1", "true"],
        &["rm", "-f", "a1"],
        &["inspect", "a1"],
        &["logs", "a1"],
    ] {
        refused(docker_via(&gate_sock, b, args), "ownership");
    }
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Status}}", "a1"]).trim(),
        "running"
    );

    // Every route around the rules is refused, with its rule.
    for (opts, rule) in [
        (&["--privileged"][..], "privileged"),
        (&["--runtime=runc"], "runtime"),
        (&["--device-cgroup-rule", "c 195:* rwm"], "device-rule"),
        (&["--cap-add", "SYS_ADMIN"], "cap-add"),
        (&["--pid=host"], "host-namespace"),
        (&["--network=host"], "host-namespace"),
        (&["--ipc=host"], "host-namespace"),
        (&["-v", "/:/host"], "bind-mount"),
        (&["--userns=host"], "userns-host"),
        (&["--security-opt", "seccomp=unconfined"], "security-opt"),
    ] {
        let mut args = vec!["run", "--rm"];
        args.extend(opts);
        args.extend(["busybox:local", "true"]);
        refused(docker_via(&gate_sock, a, &args), rule);
    }
    // Her home is hers to mount.
    let home = format!("/home/{}:/work", alice.0);
    ok(docker_via(
        &gate_sock,
        a,
        &["run", "--rm", "-v", &home, "busybox:local", "ls", "/work"],
    ));

    // The admin may do all.
    ok(docker_via(&gate_sock, None, &["exec", "a1", "true"]));
    ok(docker_via(
        &gate_sock,
        None,
        // (--privileged stays the runtime's to judge: its admins are a group.)
        &[
            "run",
            "--rm",
            "--cap-add",
            "SYS_ADMIN",
            "-v",
            "/etc:/host-etc",
            "busybox:local",
            "true",
        ],
    ));
    ok(docker_via(&gate_sock, None, &["rm", "-f", "a1"]));
    let _ = d.docker(&[
        "rmi",
        "gate-test:built",
        "gate-test:buildkit",
        "gate-test:dc",
    ]);
}

/// One HTTP/1.1 request on a fresh connection to the gate; the status line.
fn raw_request(sock: &Path, req: &str) -> String {
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

fn fds_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn the_gate_survives_disconnects_crowds_and_restarts() {
    let _g = lock();
    let Some(d) = start("", false) else { return };
    let gate_sock = d.env.path("gate.sock");
    let spawn = || {
        let child = Command::new(gate_bin())
            .arg("--listen")
            .arg(&gate_sock)
            .arg("--docker")
            .arg(d.env.path("docker.sock"))
            .env("DS01_CONFIG", &d.env.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Killed on drop, even when the wait below fails.
        let child = GateProc(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while raw_request(
            &gate_sock,
            "GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n",
        )
        .is_empty()
        {
            assert!(Instant::now() < deadline, "the gate did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        child
    };
    let gate = spawn();
    let pid = gate.0.id();
    let ping = "GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n";
    assert_eq!(raw_request(&gate_sock, ping), "HTTP/1.1 200 OK");
    let head = "HEAD /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n";
    assert_eq!(raw_request(&gate_sock, head), "HTTP/1.1 200 OK");
    let fds_before = fds_of(pid);

    // 200 connections at once.
    let oks = std::thread::scope(|s| {
        let hs: Vec<_> = (0..200)
            .map(|_| s.spawn(|| raw_request(&gate_sock, ping)))
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap())
            .filter(|l| l == "HTTP/1.1 200 OK")
            .count()
    });
    assert_eq!(oks, 200);

    // A client that hangs up in the middle of a stream (`docker events`).
    for _ in 0..20 {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(&gate_sock).unwrap();
        s.write_all(b"GET /events HTTP/1.1\r\nHost: d\r\n\r\n")
            .unwrap();
        let mut head = [0u8; 64];
        let _ = s.read(&mut head);
        drop(s);
    }

    // 10,000 requests on 4 keep-alive connections.
    let rss_before = rss_kib(pid);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                use std::io::{BufRead, BufReader, Read, Write};
                let sock = std::os::unix::net::UnixStream::connect(&gate_sock).unwrap();
                let mut r = BufReader::new(sock.try_clone().unwrap());
                let mut w = sock;
                for _ in 0..2500 {
                    w.write_all(b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n")
                        .unwrap();
                    let mut len = 0;
                    loop {
                        let mut line = String::new();
                        r.read_line(&mut line).unwrap();
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap();
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0; len];
                    r.read_exact(&mut body).unwrap();
                    assert_eq!(body, b"OK");
                }
            });
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let (fds_after, rss_after) = (fds_of(pid), rss_kib(pid));
    eprintln!(
        "gate: {fds_before} -> {fds_after} fds, {rss_before} -> {rss_after} KiB over 10,000 requests"
    );
    assert!(
        fds_after <= fds_before + 4,
        "fds leak: {fds_before} -> {fds_after}"
    );
    assert!(
        rss_after < rss_before + 20 * 1024,
        "memory grows: {rss_before} -> {rss_after} KiB"
    );

    // A restart with a container running leaves the container alone.
    let gate_out = |args: &[&str]| docker_via(&gate_sock, None, args);
    assert!(
        gate_out(&["run", "-d", "--name", "r1", "busybox:local", "sleep", "300"])
            .status
            .success()
    );
    drop(gate);
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Status}}", "r1"]).trim(),
        "running"
    );
    let _gate = spawn();
    let out = gate_out(&["exec", "r1", "echo", "still"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "still");
    d.ok(&["rm", "-f", "r1"]);
}

/// `--security-opt seccomp=PROFILE` with a profile that allows every call.
fn allow_all_seccomp(d: &Dockerd) -> String {
    let profile = d.env.path("allow-all.json");
    std::fs::write(&profile, r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#).unwrap();
    format!("seccomp={}", profile.display())
}

/// A private dockerd (the config's `extra`) and one throwaway user per tag;
/// `None` where the end-to-end tests do not run, or cannot make users here.
fn start_with_users(extra: &str, tags: &[&str]) -> Option<(Dockerd, Vec<TempUser>)> {
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
fn gate_for(d: &Dockerd) -> (GateProc, PathBuf) {
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
fn curl_as(sock: &Path, user: &str, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
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
fn hold_as(user: &str, sock: &Path) -> Child {
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

#[test]
fn the_gate_cannot_be_walked_around() {
    let _g = lock();
    let Some((d, users)) = start_with_users("gate_max_connections = 8\n", &["wa", "wb"]) else {
        return;
    };
    let (alice, bob) = (&users[0], &users[1]);
    let (gate, sock) = gate_for(&d);
    let (a, b) = (Some(alice.0.as_str()), Some(bob.0.as_str()));
    let log = || std::fs::read_to_string(d.env.path("gate.log")).unwrap_or_default();
    let ok = |out: Output| {
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stderr),
            log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let refused = |out: Output, rule: &str| {
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "not refused ({rule})");
        assert!(err.contains(&format!("(rule {rule})")), "{rule}: {err}");
    };
    let count = || d.ok(&["ps", "-aq"]).lines().count();
    // A secret only root may read, and bob's running and stopped containers.
    let secret = d.env.path("secret");
    std::fs::write(&secret, "root only\n").unwrap();
    ok(docker_via(
        &sock,
        b,
        &["run", "-d", "--name", "b1", "busybox:local", "sleep", "300"],
    ));
    ok(docker_via(
        &sock,
        b,
        &["create", "--name", "b2", "busybox:local", "true"],
    ));
    ok(docker_via(&sock, b, &["volume", "create", "bobs"]));
    ok(docker_via(
        &sock,
        a,
        &["run", "-d", "--name", "a1", "busybox:local", "sleep", "300"],
    ));
    let before = count();
    let alice_u = alice.0.as_str();

    // 1. Escaped paths are not judged in one form and run in another.
    let privileged = r#"{"Image":"busybox:local","Cmd":["true"],"HostConfig":{"Privileged":true}}"#;
    for p in ["/v1.41/%63ontainers/create", "/v1.41/containers%2Fcreate"] {
        let (code, body) = curl_as(&sock, alice_u, "POST", p, Some(privileged));
        assert_eq!(code, 403, "{p}: {body}");
        assert!(body.contains("(rule endpoint)"), "{body}");
    }
    for p in ["/%63ontainers/b1/stop", "/v1.41/containers/x/../b1/stop"] {
        let (code, _) = curl_as(&sock, alice_u, "POST", p, None);
        assert_eq!(code, 403, "{p}");
    }
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Status}}", "b1"]).trim(),
        "running"
    );

    // 2. Keys in another case, repeated keys, and 3. the old API forms.
    let create = "/v1.41/containers/create";
    for body in [
        r#"{"Image":"busybox:local","hostconfig":{"Runtime":"runc","Devices":[{"PathOnHost":"/dev/null","PathInContainer":"/dev/x","CgroupPermissions":"rwm"}]}}"#,
        r#"{"Image":"busybox:local","HostConfig":{"privileged":true}}"#,
        r#"{"Image":"busybox:local","HostConfig":{"binds":["/:/h"]}}"#,
        r#"{"Image":"busybox:local","HostConfig":{"capadd":["SYS_ADMIN"],"pidmode":"host","securityopt":["seccomp=unconfined"]}}"#,
        r#"{"Image":"busybox:local","Labels":{},"labels":{"ds01.user":"BOB"}}"#,
        r#"{"Image":"busybox:local","HostConfig":{"Mounts":[{"Type":"bind","Source":"/home","source":"/","Target":"/h"}]}}"#,
        r#"{"Image":"busybox:local","Privileged":true,"Binds":["/:/h"]}"#,
    ] {
        let body = body.replace("BOB", &bob.0);
        let (code, out) = curl_as(&sock, alice_u, "POST", create, Some(&body));
        assert_eq!(code, 403, "{body}: {out}");
    }
    assert_eq!(count(), before, "no container was made");
    let (code, out) = curl_as(
        &sock,
        alice_u,
        "POST",
        "/v1.41/containers/create?name=a2",
        Some(r#"{"Image":"busybox:local","Cmd":["cat","/h/secret"]}"#),
    );
    assert_eq!(code, 201, "{out}");
    let (code, out) = curl_as(
        &sock,
        alice_u,
        "POST",
        "/v1.23/containers/a2/start",
        Some(&format!(
            r#"{{"Binds":["{}:/h"]}}"#,
            d.env.dir.path().display()
        )),
    );
    assert_eq!(code, 403, "{out}");
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Status}}", "a2"]).trim(),
        "created"
    );

    // 5. Volumes that are host paths.
    refused(
        docker_via(
            &sock,
            a,
            &[
                "volume",
                "create",
                "-o",
                "type=none",
                "-o",
                "o=bind",
                "-o",
                "device=/",
                "hostroot",
            ],
        ),
        "volume-opt",
    );
    assert!(
        !d.docker(&["volume", "inspect", "hostroot"])
            .status
            .success()
    );
    refused(
        docker_via(
            &sock,
            a,
            &[
                "run",
                "--rm",
                "--mount",
                "type=volume,src=etc,dst=/e,volume-opt=type=none,volume-opt=o=bind,volume-opt=device=/etc",
                "busybox:local",
                "true",
            ],
        ),
        "volume-opt",
    );

    // 6. Other users' containers as sources; 7. devices, masks, namespaces.
    let allow_all = allow_all_seccomp(&d);
    for (opts, rule) in [
        (&["--volumes-from", "b1"][..], "ownership"),
        (&["--pid", "container:b1"], "ownership"),
        (&["--network", "container:b1"], "ownership"),
        (&["--ipc", "container:b1"], "ownership"),
        (&["--link", "b1:db"], "ownership"),
        (&["--device", "/dev/kmsg"], "device"),
        (&["--device-cgroup-rule", "b *:* rwm"], "device-rule"),
        (
            &["--security-opt", "systempaths=unconfined"],
            "security-opt",
        ),
        (&["--security-opt", &allow_all], "security-opt"),
        (&["--cgroupns", "host"], "host-namespace"),
        (&["--uts", "host"], "host-namespace"),
        (&["--cgroup-parent", "/"], "cgroup-parent"),
        (&["--log-driver", "syslog"], "log-driver"),
    ] {
        let mut args = vec!["run", "--rm"];
        args.extend(opts);
        args.extend(["busybox:local", "cat", "/proc/1/root/etc/hostname"]);
        refused(docker_via(&sock, a, &args), rule);
    }
    // Her own container she may share with: namespaces and volumes.
    ok(docker_via(
        &sock,
        a,
        &[
            "run",
            "--rm",
            "--pid",
            "container:a1",
            "busybox:local",
            "true",
        ],
    ));

    // Another user's volume or network is not hers to join; a subnet of
    // her choosing is not hers to make.
    refused(
        docker_via(
            &sock,
            a,
            &["run", "--rm", "-v", "bobs:/v", "busybox:local", "true"],
        ),
        "volume-owner",
    );
    refused(
        docker_via(
            &sock,
            a,
            &[
                "run",
                "--rm",
                "--mount",
                "type=volume,src=bobs,dst=/v",
                "busybox:local",
                "true",
            ],
        ),
        "volume-owner",
    );
    ok(docker_via(&sock, b, &["network", "create", "bobnet"]));
    refused(
        docker_via(
            &sock,
            a,
            &[
                "run",
                "--rm",
                "--network",
                "bobnet",
                "busybox:local",
                "true",
            ],
        ),
        "network-owner",
    );
    refused(
        docker_via(&sock, a, &["network", "connect", "bobnet", "a1"]),
        "network-owner",
    );
    refused(
        docker_via(
            &sock,
            a,
            &["network", "create", "--subnet", "10.99.0.0/30", "alicesub"],
        ),
        "network",
    );
    // A volume she names is made in her name.
    ok(docker_via(
        &sock,
        a,
        &["run", "--rm", "-v", "alicevol:/v", "busybox:local", "true"],
    ));
    let owner = d.ok(&[
        "volume",
        "inspect",
        "-f",
        "{{index .Labels \"ds01.user\"}}",
        "alicevol",
    ]);
    assert_eq!(owner.trim(), alice.0);

    // docker cp through a bind whose source became a link to the host:
    // dockerd would mount it again by path, as root. Refused.
    let x = format!("/home/{}/x", alice.0);
    std::fs::create_dir_all(&x).unwrap();
    let bind = format!("{x}:/x");
    ok(docker_via(
        &sock,
        a,
        &[
            "create",
            "--name",
            "a3",
            "-v",
            &bind,
            "busybox:local",
            "true",
        ],
    ));
    std::fs::remove_dir(&x).unwrap();
    std::os::unix::fs::symlink(d.env.dir.path(), &x).unwrap();
    let out = docker_via(
        &sock,
        a,
        &[
            "cp",
            &format!("a3:/x/{}", secret.file_name().unwrap().to_str().unwrap()),
            "-",
        ],
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("root only"));
    refused(out, "archive-bind");
    // A form body would say the query again to dockerd (filters= empty:
    // everyone's volumes).
    let (code, out) = {
        let o = Command::new("runuser")
            .args([
                "-u",
                &alice.0,
                "--",
                "curl",
                "-s",
                "-w",
                "\n%{http_code}",
                "--unix-socket",
            ])
            .arg(&sock)
            .args([
                "-X",
                "POST",
                "-H",
                "Content-Type: application/x-www-form-urlencoded",
                "--data",
                "filters=",
                "http://d/v1.41/volumes/prune",
            ])
            .output()
            .unwrap();
        let t = String::from_utf8_lossy(&o.stdout).into_owned();
        let (b, c) = t.rsplit_once('\n').unwrap_or(("", ""));
        (c.trim().to_string(), b.to_string())
    };
    assert_eq!(code, "403", "{out}");
    assert!(d.docker(&["volume", "inspect", "bobs"]).status.success());

    // 8. A privileged exec, even into her own container.
    refused(
        docker_via(&sock, a, &["exec", "--privileged", "a1", "true"]),
        "privileged",
    );

    // 9. Daemon-wide powers.
    refused(docker_via(&sock, a, &["swarm", "init"]), "endpoint");
    refused(docker_via(&sock, a, &["plugin", "ls"]), "endpoint");
    refused(
        docker_via(&sock, a, &["builder", "prune", "-af"]),
        "endpoint",
    );
    ok(docker_via(&sock, a, &["network", "create", "alicenet"]));
    refused(
        docker_via(&sock, a, &["network", "connect", "alicenet", "b1"]),
        "ownership",
    );
    refused(
        docker_via(&sock, b, &["network", "rm", "alicenet"]),
        "network-owner",
    );
    ok(docker_via(&sock, a, &["network", "rm", "alicenet"]));
    let ctx = PathBuf::from(format!("/home/{}/ctx", alice.0));
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox:local\nRUN true\n").unwrap();
    refused(
        docker_via(
            &sock,
            a,
            &[
                "build",
                "--network",
                "host",
                "-t",
                "a:net",
                ctx.to_str().unwrap(),
            ],
        ),
        "build",
    );

    // 10. Other users' things: commit, prunes, tags, events.
    refused(
        docker_via(&sock, a, &["commit", "b1", "stolen"]),
        "ownership",
    );
    let export_to = format!("/home/{}/b1.tar", alice.0);
    refused(
        docker_via(&sock, a, &["export", "-o", &export_to, "b1"]),
        "ownership",
    );
    let bob_ctx = PathBuf::from(format!("/home/{}/ctx", bob.0));
    std::fs::create_dir_all(&bob_ctx).unwrap();
    std::fs::write(
        bob_ctx.join("Dockerfile"),
        "FROM busybox:local\nRUN echo bob > /who\n",
    )
    .unwrap();
    ok(docker_via(
        &sock,
        b,
        &[
            "build",
            "-q",
            "-t",
            "bobs-app:latest",
            bob_ctx.to_str().unwrap(),
        ],
    ));
    let bobs_image = d.ok(&["image", "inspect", "-f", "{{.Id}}", "bobs-app:latest"]);
    refused(
        docker_via(
            &sock,
            a,
            &[
                "build",
                "-q",
                "-t",
                "bobs-app:latest",
                ctx.to_str().unwrap(),
            ],
        ),
        "image-owner",
    );
    refused(
        docker_via(&sock, a, &["tag", "busybox:local", "bobs-app:latest"]),
        "image-owner",
    );
    refused(
        docker_via(&sock, a, &["commit", "a1", "bobs-app:latest"]),
        "image-owner",
    );
    refused(
        docker_via(&sock, a, &["rmi", "bobs-app:latest"]),
        "image-owner",
    );
    refused(
        docker_via(&sock, a, &["tag", "bobs-app:latest", "busybox:local"]),
        "image-owner",
    );
    assert_eq!(
        d.ok(&["image", "inspect", "-f", "{{.Id}}", "bobs-app:latest"]),
        bobs_image
    );
    // Her own build carries her name; she may build it again.
    ok(docker_via(
        &sock,
        a,
        &["build", "-q", "-t", "alices-app", ctx.to_str().unwrap()],
    ));
    let owner = d.ok(&[
        "image",
        "inspect",
        "-f",
        "{{index .Config.Labels \"ds01.user\"}}",
        "alices-app",
    ]);
    assert_eq!(owner.trim(), alice.0);
    ok(docker_via(
        &sock,
        a,
        &["build", "-q", "-t", "alices-app", ctx.to_str().unwrap()],
    ));
    // 4. A build's steps are the builder's, whatever labels the image
    // holds: one that asks for a GPU is allocated as alice's, not bob's.
    let gpu_ctx = PathBuf::from(format!("/home/{}/gpuctx", alice.0));
    std::fs::create_dir_all(&gpu_ctx).unwrap();
    std::fs::write(
        gpu_ctx.join("Dockerfile"),
        format!(
            "FROM busybox:local\nLABEL ds01.user={}\nENV NVIDIA_VISIBLE_DEVICES=all\nRUN true\n",
            bob.0
        ),
    )
    .unwrap();
    ok(docker_via(
        &sock,
        a,
        &["build", "-q", "-t", "alices-gpu", gpu_ctx.to_str().unwrap()],
    ));
    let bobs = events_of(&d, &bob.0);
    assert!(
        bobs.iter().all(|e| e.0 != "allocate"),
        "bob paid for alice's build: {bobs:?}"
    );
    let hers = events_of(&d, &alice.0);
    assert!(
        hers.iter()
            .any(|e| e.0 == "allocate" && e.2 == "cgroup-parent"),
        "{hers:?}"
    );
    // A stopped container of hers, made just now: the prune's own control.
    ok(docker_via(
        &sock,
        a,
        &["create", "--name", "a4", "busybox:local", "true"],
    ));
    let pruned = ok(docker_via(&sock, a, &["container", "prune", "-f"]));
    assert!(
        !d.docker(&["inspect", "a4"]).status.success(),
        "her own were pruned: {pruned}"
    );
    ok(docker_via(&sock, a, &["volume", "prune", "-f"]));
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Status}}", "b2"]).trim(),
        "created"
    );
    assert!(d.docker(&["volume", "inspect", "bobs"]).status.success());
    // Events: hers only.
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    ok(docker_via(&sock, b, &["restart", "-t", "0", "b1"]));
    ok(docker_via(&sock, a, &["restart", "-t", "0", "a1"]));
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let seen = ok(docker_via(
        &sock,
        a,
        &[
            "events",
            "--since",
            &(start - 1).to_string(),
            "--until",
            &until.to_string(),
            "--filter",
            "type=container",
            "--format",
            "{{.Actor.Attributes.name}}",
        ],
    ));
    assert!(seen.lines().any(|l| l == "a1"), "{seen}");
    assert!(!seen.lines().any(|l| l == "b1"), "{seen}");

    // 13-15. No user takes the gate away from another: a cap on each
    // user's connections, a header deadline, a body cap.
    let pid = gate.0.id();
    let idle: Vec<_> = (0..8).map(|_| hold_as(&alice.0, &sock)).collect();
    std::thread::sleep(Duration::from_secs(2));
    let (code, _) = curl_as(&sock, alice_u, "GET", "/_ping", None);
    assert_eq!(code, 429, "alice is over her cap");
    let t = Instant::now();
    ok(docker_via(&sock, b, &["ps"]));
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "bob is not kept waiting"
    );
    for mut c in idle {
        let _ = c.kill();
        let _ = c.wait();
    }
    // Half a header, then nothing: closed at the deadline.
    {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        s.write_all(b"GET /_ping HTTP/1.1\r\nHost: d\r\n").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let t = Instant::now();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        assert!(
            t.elapsed() < Duration::from_secs(25),
            "the half header was kept open"
        );
    }
    // A body larger than the cap is refused, the gate stays small.
    let big = format!(
        r#"{{"Image":"busybox:local","Env":["X={}"]}}"#,
        "x".repeat(4 << 20)
    );
    let big_file = d.env.path("big.json");
    std::fs::write(&big_file, big).unwrap();
    let out = Command::new("runuser")
        .args([
            "-u",
            &alice.0,
            "--",
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--unix-socket",
        ])
        .arg(&sock)
        .args(["-H", "Content-Type: application/json", "--data-binary"])
        .arg(format!("@{}", big_file.display()))
        .arg("http://d/v1.41/containers/create")
        .output()
        .unwrap();
    // (curl may see the refusal, or the gate hanging up on the rest.)
    let code = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(code == "400" || code == "000", "{code}");
    assert_eq!(count(), before, "no container was made");
    assert!(
        rss_kib(pid) < 64 * 1024,
        "the gate grew to {} KiB",
        rss_kib(pid)
    );
    for c in ["a1", "a2", "a3", "b1", "b2"] {
        let _ = d.docker(&["rm", "-f", c]);
    }
    let _ = d.docker(&["network", "rm", "bobnet"]);
    let _ = d.docker(&["volume", "rm", "alicevol"]);
    let _ = d.docker(&["rmi", "bobs-app:latest", "alices-app", "alices-gpu"]);
    let _ = d.docker(&["volume", "rm", "bobs"]);
}

/// The second layer: whatever route a container took to dockerd (here the
/// root socket, standing in for a gate bug or a swarm task), ds01-runtime
/// runs nothing a non-admin may not run.
#[test]
fn the_runtime_runs_nothing_a_user_may_not_whatever_the_route() {
    let _g = lock();
    let Some((d, users)) = start_with_users("", &["ra", "rb"]) else {
        return;
    };
    let (alice, bob) = (&users[0], &users[1]);
    let as_user = |u: &str| format!("ds01.user={u}");
    let (la, lb) = (as_user(&alice.0), as_user(&bob.0));
    d.ok(&[
        "run",
        "-d",
        "--name",
        "rb1",
        "--label",
        &lb,
        "busybox:local",
        "sleep",
        "300",
    ]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "ra1",
        "--label",
        &la,
        "--ipc",
        "shareable",
        "busybox:local",
        "sleep",
        "300",
    ]);
    let secret = d.env.path("runtime-secret");
    std::fs::write(&secret, "root only\n").unwrap();
    let allow_all = allow_all_seccomp(&d);
    let secret_bind = format!("{}:/s", secret.display());
    d.ok(&[
        "volume",
        "create",
        "-o",
        "type=none",
        "-o",
        "o=bind",
        "-o",
        &format!("device={}", d.env.dir.path().display()),
        "hostdir",
    ]);
    let home = format!("/home/{}", alice.0);
    std::fs::write(format!("{home}/mine"), "hers\n").unwrap();
    let home_bind = format!("{home}:/h");
    let link = format!("{home}/out");
    std::os::unix::fs::symlink(d.env.dir.path(), &link).unwrap();
    let link_bind = format!("{link}:/o");
    for (opts, what) in [
        (&["--cap-add", "SYS_ADMIN"][..], "CAP_SYS_ADMIN"),
        (&["--pid", "host"], "the host's pid namespace"),
        (&["--network", "host"], "the host's network namespace"),
        (&["--uts", "host"], "the host's uts namespace"),
        (&["--pid", "container:rb1"], "the pid namespace of /proc/"),
        (
            &["--network", "container:rb1"],
            "the network namespace of /proc/",
        ),
        (&["-v", &secret_bind], "a bind mount of"),
        (&["-v", &link_bind], "a bind mount of"),
        (&["-v", "hostdir:/x"], "a volume bound to a host path"),
        (&["--device", "/dev/kmsg"], "the device /dev/kmsg"),
        (
            &["--device-cgroup-rule", "b *:* rwm"],
            "the device rule b *:* rwm",
        ),
        (&["--security-opt", "systempaths=unconfined"], "unmasked"),
        (&["--security-opt", &allow_all], "no seccomp filter"),
        (
            &["--security-opt", "seccomp=unconfined"],
            "no seccomp filter",
        ),
        (
            &["--ulimit", "rtprio=99"],
            "the resource limit RLIMIT_RTPRIO",
        ),
    ] {
        let mut args = vec!["run", "--rm", "--label", &la];
        args.extend(opts);
        args.extend([
            "busybox:local",
            "sh",
            "-c",
            "cat /s /o/runtime-secret /x/runtime-secret 2>/dev/null; echo ran",
        ]);
        let out = d.docker(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{opts:?} ran: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(!String::from_utf8_lossy(&out.stdout).contains("root only"));
        assert!(
            err.contains(&format!("ds01: {} may not run a container with", alice.0))
                && err.contains(what),
            "{opts:?}: {err}"
        );
    }
    // Hers she may: her home, her own container's namespaces.
    let out = d.ok(&[
        "run",
        "--rm",
        "--label",
        &la,
        "-v",
        &home_bind,
        "busybox:local",
        "cat",
        "/h/mine",
    ]);
    assert_eq!(out, "hers\n");
    d.ok(&[
        "run",
        "--rm",
        "--label",
        &la,
        "--pid",
        "container:ra1",
        "--ipc",
        "container:ra1",
        "busybox:local",
        "true",
    ]);
    // A privileged exec into her own container is refused; a plain one runs.
    let out = d.docker(&["exec", "--privileged", "ra1", "true"]);
    assert!(!out.status.success());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("may not run") && said.contains("CAP_"),
        "{said}"
    );
    d.ok(&["exec", "ra1", "true"]);
    // The host's own containers (no owner) and an admin's are theirs to run.
    d.ok(&[
        "run",
        "--rm",
        "--cap-add",
        "SYS_ADMIN",
        "-v",
        &secret_bind,
        "busybox:local",
        "cat",
        "/s",
    ]);
    d.ok(&[
        "run",
        "--rm",
        "--label",
        "ds01.user=root",
        "--pid",
        "host",
        "busybox:local",
        "true",
    ]);
    // A label that names no valid user is no way around it.
    let out = d.docker(&[
        "run",
        "--rm",
        "--label",
        "ds01.user=../x",
        "--pid",
        "host",
        "busybox:local",
        "true",
    ]);
    assert!(
        !out.status.success(),
        "an invalid owner ran with the host's pids"
    );
    let events = std::fs::read_to_string(d.env.path("events.jsonl")).unwrap_or_default();
    assert!(
        events.contains("may not run a container with"),
        "refusals are audited"
    );
    let _ = d.docker(&["rm", "-f", "ra1", "rb1"]);
    let _ = d.docker(&["volume", "rm", "hostdir"]);
}

/// Routes 11 and 12 of the gate's threat model: root in a container cannot
/// leave the host a setuid program or a device node through a bind of the
/// owner's home, and a bind source swapped for a link to `/` while the
/// container starts never mounts `/`.
#[test]
fn binds_cannot_hurt_the_host() {
    let _g = lock();
    let Some((d, users)) = start_with_users("", &["pa"]) else {
        return;
    };
    let alice = &users[0];
    let label = format!("ds01.user={}", alice.0);
    let home = PathBuf::from(format!("/home/{}", alice.0));
    let as_alice = |cmd: &str| {
        Command::new("runuser")
            .args(["-u", &alice.0, "--", "sh", "-c", cmd])
            .current_dir("/")
            .output()
            .unwrap()
    };
    // Container root plants a setuid-root busybox and a writable device
    // node in her home (nosuid,nodev, as the harness mounts homes).
    let bind = format!("{}:/h", home.display());
    d.ok(&[
        "run", "--rm", "--label", &label, "-v", &bind, "busybox:local", "sh", "-c",
        "cp /bin/busybox /h/busybox && chown 0:0 /h/busybox && chmod 4755 /h/busybox && mknod /h/k c 1 3 && chmod 666 /h/k",
    ]);
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let planted = std::fs::metadata(home.join("busybox")).unwrap();
    assert_eq!(
        planted.permissions().mode() & 0o4000,
        0o4000,
        "the setuid bit is there"
    );
    assert!(
        std::fs::metadata(home.join("k"))
            .unwrap()
            .file_type()
            .is_char_device()
    );
    // On the host they give her nothing: the program runs as her, the node
    // does not open.
    let out = as_alice(&format!("{}/busybox id -u", home.display()));
    let uid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        !uid.is_empty() && uid != "0",
        "the planted program ran as {uid:?}: {out:?}"
    );
    let out = as_alice(&format!("echo x > {}/k", home.display()));
    assert!(!out.status.success(), "the planted node opened");

    // A bind from a filesystem without nosuid,nodev is refused.
    let plain = d.env.path("plain-dir");
    std::fs::create_dir_all(&plain).unwrap();
    let plain_bind = format!("{}:/p", plain.display());
    let toml = std::fs::read_to_string(&d.env.config).unwrap();
    std::fs::write(
        &d.env.config,
        format!("gate_shared_paths = [\"{}\"]\n{toml}", plain.display()),
    )
    .unwrap();
    let out = d.docker(&[
        "run",
        "--rm",
        "--label",
        &label,
        "-v",
        &plain_bind,
        "busybox:local",
        "true",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("is not mounted nosuid,nodev"),
        "{err}"
    );

    // The source swapped between a directory and a link to `/` while
    // containers start: none ever sees the host's root.
    let secret = d.env.path("swap-secret");
    std::fs::write(&secret, "root only\n").unwrap();
    let x = home.join("x-dir");
    let l = home.join("x-link");
    std::fs::create_dir(&x).unwrap();
    std::os::unix::fs::symlink("/", &l).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let bind = format!("{}:/x", x.display());
    let inside = format!("cat /x{} 2>/dev/null; true", secret.display());
    let leaked = std::thread::scope(|s| {
        s.spawn(|| {
            let (a, b) = (
                std::ffi::CString::new(x.as_os_str().as_encoded_bytes()).unwrap(),
                std::ffi::CString::new(l.as_os_str().as_encoded_bytes()).unwrap(),
            );
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // SAFETY: a plain syscall on two NUL-terminated paths.
                unsafe {
                    libc::renameat2(
                        libc::AT_FDCWD,
                        a.as_ptr(),
                        libc::AT_FDCWD,
                        b.as_ptr(),
                        libc::RENAME_EXCHANGE,
                    )
                };
            }
        });
        let mut leaked = 0;
        for _ in 0..40 {
            let out = d.docker(&[
                "run",
                "--rm",
                "--label",
                &label,
                "-v",
                &bind,
                "busybox:local",
                "sh",
                "-c",
                &inside,
            ]);
            if String::from_utf8_lossy(&out.stdout).contains("root only") {
                leaked += 1;
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        leaked
    });
    assert_eq!(leaked, 0, "the swapped link mounted the host's root");
    assert!(
        std::fs::read_dir(d.env.path("state/binds")).map_or(true, |mut r| r.next().is_none()),
        "pins are taken down"
    );
}

/// The differential fuzz: random create bodies (keys in any case or Go's
/// folds, repeated, at the top or nested, unknown fields, escaped paths)
/// sent through the gate as alice. Either the gate refuses, or the
/// container dockerd made (`docker inspect`) holds nothing the gate's
/// rules refuse.
#[test]
fn what_the_gate_lets_through_dockerd_runs_within_the_rules() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let _g = lock();
    let Some((d, users)) = start_with_users("", &["fa", "fb"]) else {
        return;
    };
    let (alice, bob) = (&users[0], &users[1]);
    let (_gate, sock) = gate_for(&d);
    let b = Some(bob.0.as_str());
    assert!(
        docker_via(
            &sock,
            b,
            &["create", "--name", "fzbob", "busybox:local", "true"]
        )
        .status
        .success()
    );
    // (field, a value the rules refuse for a non-admin)
    let fields: Vec<(&str, String)> = vec![
        ("Privileged", "true".into()),
        ("CapAdd", r#"["SYS_ADMIN"]"#.into()),
        ("Binds", r#"["/etc:/h"]"#.into()),
        ("PidMode", r#""host""#.into()),
        ("NetworkMode", r#""host""#.into()),
        ("IpcMode", r#""host""#.into()),
        ("UTSMode", r#""host""#.into()),
        ("UsernsMode", r#""host""#.into()),
        ("Devices", r#"[{"PathOnHost":"/dev/kmsg","PathInContainer":"/dev/kmsg","CgroupPermissions":"rwm"}]"#.into()),
        ("SecurityOpt", r#"["seccomp=unconfined"]"#.into()),
        ("Runtime", r#""runc""#.into()),
        ("CgroupParent", r#""/""#.into()),
        ("MaskedPaths", "[]".into()),
        ("Mounts", r#"[{"Type":"bind","Source":"/etc","Target":"/h"}]"#.into()),
        ("VolumesFrom", r#"["fzbob"]"#.into()),
        ("Labels", format!(r#"{{"ds01.user":"{}"}}"#, bob.0)),
        ("ShmSize", "1048576".into()),
        ("Tmpfs", r#"{"/t":""}"#.into()),
        ("SomethingNew", "1".into()),
        // And what a user may: these alone go through.
        ("Privileged", "false".into()),
        ("CapAdd", "[]".into()),
        ("CapDrop", r#"["NET_RAW"]"#.into()),
        ("NetworkMode", r#""none""#.into()),
        ("ReadonlyRootfs", "true".into()),
        ("Binds", format!(r#"["/home/{}:/h"]"#, alice.0)),
        ("Mounts", format!(r#"[{{"Type":"bind","Source":"/home/{}","Target":"/h"}}]"#, alice.0)),
        ("Labels", r#"{"team":"vision"}"#.into()),
    ];
    let spell = |k: &str, how: u8| -> String {
        match how {
            0 => k.to_string(),
            1 => k.to_ascii_lowercase(),
            2 => k.to_ascii_uppercase(),
            3 => k.replace('s', "\u{17f}").replace('k', "\u{212a}"),
            _ => {
                let mut c = k.chars();
                c.next()
                    .map(|f| f.to_ascii_lowercase().to_string() + c.as_str())
                    .unwrap_or_default()
            }
        }
    };
    let spelling = prop_oneof![4 => Just(0u8), 1 => 1u8..5];
    let place = prop_oneof![4 => Just(0u8), 1 => 1u8..4];
    let strategy = (
        proptest::collection::vec((0..fields.len(), spelling, place), 1..3),
        prop_oneof![4 => Just(false), 1 => Just(true)],
        prop_oneof![3 => Just(0u8), 1 => 1u8..3],
    );
    // A fixed seed: the same 64 bodies each run, so CI never sees a run
    // that happened to try nothing benign.
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases: 64,
            failure_persistence: None,
            ..Config::default()
        },
        proptest::test_runner::TestRng::deterministic_rng(
            proptest::test_runner::RngAlgorithm::ChaCha,
        ),
    );
    use std::cell::Cell;
    let (n, made, refused) = (Cell::new(0), Cell::new(0), Cell::new(0));
    runner
        .run(&strategy, |(entries, repeat, path_form)| {
            n.set(n.get() + 1);
            let name = format!("fz{}", n.get());
            let mut top = vec![
                r#""Image":"busybox:local""#.to_string(),
                r#""Cmd":["true"]"#.to_string(),
            ];
            let mut hc: Vec<(String, Vec<String>)> = Vec::new();
            for (f, how, place) in &entries {
                let (k, v) = &fields[*f];
                let pair = format!("{:?}:{v}", spell(k, *how));
                let wrapper = match place {
                    0 => "HostConfig",
                    1 => "",
                    2 => "hostconfig",
                    _ => "HOSTCONFIG",
                };
                if wrapper.is_empty() || *k == "Labels" {
                    top.push(pair);
                } else {
                    match hc.iter_mut().find(|(w, _)| w == wrapper) {
                        Some((_, v)) => v.push(pair),
                        None => hc.push((wrapper.to_string(), vec![pair])),
                    }
                }
            }
            if repeat {
                top.push(r#""Labels":{}"#.to_string());
            }
            for (w, pairs) in hc {
                top.push(format!("{w:?}:{{{}}}", pairs.join(",")));
            }
            let body = format!("{{{}}}", top.join(","));
            let path = match path_form {
                0 => format!("/v1.41/containers/create?name={name}"),
                1 => format!("/v1.41/%63ontainers/create?name={name}"),
                _ => format!("/containers/create?name={name}"),
            };
            let (code, out) = curl_as(&sock, &alice.0, "POST", &path, Some(&body));
            if code != 201 {
                prop_assert!(
                    code == 403 || code == 400 || code >= 500,
                    "{code} {out} for {body}"
                );
                prop_assert!(
                    !d.docker(&["inspect", &name]).status.success(),
                    "refused, yet made: {body}"
                );
                refused.set(refused.get() + 1);
                return Ok(());
            }
            made.set(made.get() + 1);
            let v: serde_json::Value = serde_json::from_str(&d.ok(&["inspect", &name])).unwrap();
            let c = &v[0];
            let hc = &c["HostConfig"];
            let home = format!("/home/{}", alice.0);
            let within = |src: &str| !src.starts_with('/') || Path::new(src).starts_with(&home);
            prop_assert_eq!(
                c["Config"]["Labels"]["ds01.user"].as_str(),
                Some(alice.0.as_str()),
                "{}",
                body
            );
            prop_assert_ne!(hc["Privileged"].as_bool(), Some(true), "{}", body);
            prop_assert!(
                hc["CapAdd"].as_array().is_none_or(|a| a.is_empty()),
                "{body}"
            );
            prop_assert!(
                hc["Devices"].as_array().is_none_or(|a| a.is_empty()),
                "{body}"
            );
            prop_assert!(
                hc["SecurityOpt"].as_array().is_none_or(|a| a.is_empty()),
                "{body}"
            );
            prop_assert!(
                hc["VolumesFrom"].as_array().is_none_or(|a| a.is_empty()),
                "{body}"
            );
            prop_assert!(
                hc["MaskedPaths"].as_array().is_none_or(|a| !a.is_empty()),
                "{body}"
            );
            prop_assert_eq!(hc["CgroupParent"].as_str().unwrap_or(""), "", "{}", body);
            prop_assert_ne!(hc["Runtime"].as_str(), Some("runc"), "{}", body);
            for k in ["PidMode", "NetworkMode", "IpcMode", "UTSMode", "UsernsMode"] {
                prop_assert_ne!(hc[k].as_str(), Some("host"), "{} {}", k, body);
            }
            for b in hc["Binds"].as_array().into_iter().flatten() {
                let src = b.as_str().unwrap_or("").split(':').next().unwrap_or("");
                prop_assert!(within(src), "{src} in {body}");
            }
            for m in hc["Mounts"].as_array().into_iter().flatten() {
                prop_assert!(within(m["Source"].as_str().unwrap_or("")), "{body}");
            }
            d.ok(&["rm", "-f", &name]);
            Ok(())
        })
        .unwrap();
    let (made, refused) = (made.get(), refused.get());
    eprintln!("differential fuzz: {made} made within the rules, {refused} refused");
    assert!(
        made > 0,
        "no benign body went through: the fuzz tried nothing"
    );
    let _ = d.docker(&["rm", "-f", "fzbob"]);
}

/// `container deploy`, attach and retire, as a user through the gate: the
/// CLI's requests (a build, a create with the home and project bound, a
/// GPU) all pass both layers.
#[test]
fn container_deploy_works_through_the_gate() {
    let _g = lock();
    let Some((d, _catalog)) = start_with_catalog(&["sm_80", "sm_90"]) else {
        return;
    };
    if !Path::new("/usr/sbin/useradd").exists() {
        skip("docker", "useradd is not installed");
        return;
    }
    let Some(alice) = TempUser::new("da") else {
        panic!("cannot create a test user");
    };
    let (_gate, sock) = gate_for(&d);
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(d.env.path("state")).unwrap();
        std::fs::set_permissions(d.env.path("state"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
    }
    let proj = PathBuf::from(format!("/home/{}/thesis", alice.0));
    std::fs::create_dir_all(&proj).unwrap();
    std::fs::write(
        proj.join("Dockerfile"),
        "FROM busybox:local\nRUN echo built > /built\n",
    )
    .unwrap();
    Command::new("chown")
        .args(["-R", &format!("{0}:{0}", alice.0)])
        .arg(&proj)
        .status()
        .unwrap();
    let ds01 = |args: &[&str]| {
        Command::new("runuser")
            .args(["-u", &alice.0, "--"])
            .arg(cli_bin())
            .args(args)
            .current_dir(&proj)
            .env("DS01_CONFIG", &d.env.config)
            .env("NO_COLOR", "1")
            .env("DOCKER_HOST", format!("unix://{}", sock.display()))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let ok = |out: Output| {
        assert!(
            out.status.success(),
            "{}{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(d.env.path("gate.log")).unwrap_or_default()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = ok(ds01(&["container", "deploy", "thesis"]));
    assert!(out.contains("thesis is running with MIG"), "{out}");
    let out = ok(ds01(&[
        "container",
        "attach",
        "thesis",
        "--",
        "sh",
        "-c",
        "cat /built; pwd",
    ]));
    assert!(
        out.starts_with("built\n") && out.contains(&proj.display().to_string()),
        "{out}"
    );
    ok(ds01(&["container", "retire", "thesis", "--force"]));
    d.expect_held(0);
}
