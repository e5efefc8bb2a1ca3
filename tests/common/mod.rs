//! Shared harness: a private ds01 config over the simulated inventory, in a
//! temp dir, and ways to run the two binaries against it.
#![allow(dead_code)]

pub mod fake;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const CLI: &str = env!("CARGO_BIN_EXE_ds01");

/// The runtime, built beside the CLI (`cargo build --workspace`): it is its
/// own crate, so cargo does not build it for this one's tests.
pub fn shim() -> &'static str {
    static SHIM: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let p = Path::new(CLI).with_file_name("ds01-runtime");
        assert!(
            p.exists(),
            "{p:?} is missing: build it first with 'cargo build --workspace'"
        );
        p.to_string_lossy().into_owned()
    });
    &SHIM
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn sim_inventory() -> PathBuf {
    repo().join("contrib/sim/inventory.toml")
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Env {
    /// A config pointing at `runc`, with extra TOML lines appended.
    pub fn new(runc: &Path, extra: &str) -> Env {
        let dir = tempfile::Builder::new()
            .prefix("ds01-test-")
            .tempdir()
            .unwrap();
        let config = dir.path().join("config.toml");
        let env = Env { dir, config };
        env.write_config(runc, extra);
        env
    }

    /// Writes the config: everything in the temp dir, then `extra`.
    pub fn write_config(&self, runc: &Path, extra: &str) {
        std::fs::write(
            &self.config,
            format!(
                "runc = {:?}\nstate_dir = {:?}\nlog = {:?}\ninventory = {:?}\naudit_log = {:?}\n\
                 docker_data_root = {:?}\n{extra}",
                runc,
                self.path("state"),
                self.path("runtime.log"),
                sim_inventory(),
                self.path("events.jsonl"),
                self.path("data"),
            ),
        )
        .unwrap();
    }

    /// The audit log's events.
    pub fn events(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.path("events.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn shim(&self) -> Command {
        let mut c = Command::new(shim());
        c.env("DS01_CONFIG", &self.config).stdin(Stdio::null());
        c
    }

    pub fn run_shim<S: Into<OsString> + Clone>(&self, args: &[S]) -> Output {
        self.shim()
            .args(args.iter().cloned().map(Into::into))
            .output()
            .unwrap()
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(CLI)
            .env("DS01_CONFIG", &self.config)
            .env("NO_COLOR", "1")
            .args(args)
            .output()
            .unwrap()
    }

    /// `ds01 gpus --json`, parsed.
    pub fn gpus(&self) -> serde_json::Value {
        let out = self.cli(&["gpus", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// UUIDs of the devices currently held, with their holders.
    pub fn held(&self) -> Vec<(String, String)> {
        self.gpus()["devices"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| !d["held_by"].is_null())
            .map(|d| {
                (
                    d["uuid"].as_str().unwrap().to_string(),
                    d["held_by"]["container_id"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// The records as every reader of the ledger sees them (init pids
    /// noted beside it included).
    pub fn ledger(&self) -> serde_json::Value {
        let records = ds01_core::ledger::Ledger::new(&self.path("state"))
            .read()
            .unwrap();
        serde_json::to_value(records).unwrap()
    }

    pub fn shim_log(&self) -> String {
        std::fs::read_to_string(self.path("runtime.log")).unwrap_or_default()
    }

    /// Asserts the runtime's log holds every one of `parts`; on failure
    /// the whole log is shown.
    #[track_caller]
    pub fn assert_log_contains(&self, parts: &[&str]) {
        let log = self.shim_log();
        for p in parts {
            assert!(log.contains(p), "the runtime log lacks {p:?}:\n{log}");
        }
    }
}

/// The last error line runc's `--log` file holds, as Docker would show it.
pub fn last_oci_error(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().rev().find_map(|l| {
        let v: serde_json::Value = serde_json::from_str(l).ok()?;
        (v["level"] == "error").then(|| v["msg"].as_str().unwrap_or("").to_string())
    })
}

pub fn env_of(spec: &serde_json::Value) -> Vec<String> {
    spec["process"]["env"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

pub fn device_paths(spec: &serde_json::Value) -> Vec<String> {
    spec["linux"]["devices"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| d["path"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// What a container holding the first simulated slice sees under /dev.
pub const FIRST_SLICE_NODES: [&str; 6] = [
    "/dev/nvidia-caps/nvidia-cap201",
    "/dev/nvidia-caps/nvidia-cap202",
    "/dev/nvidia-uvm",
    "/dev/nvidia-uvm-tools",
    "/dev/nvidia1",
    "/dev/nvidiactl",
];

/// The `/dev/...` lines of a container's output, sorted, each once.
pub fn device_lines(text: &str) -> Vec<&str> {
    let mut nodes: Vec<&str> = text.lines().filter(|l| l.starts_with("/dev/")).collect();
    nodes.sort();
    nodes.dedup();
    nodes
}

/// Busybox, if installed.
pub fn busybox() -> Option<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// A busybox root filesystem in `rootfs`, with relative applet links so
/// they resolve inside a container.
pub fn make_busybox_rootfs(busybox: &Path, rootfs: &Path) {
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
    let list = Command::new(busybox).arg("--list").output().unwrap().stdout;
    for applet in String::from_utf8_lossy(&list)
        .lines()
        .filter(|a| *a != "busybox")
    {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
}

/// Where the harness lists the device nodes it made on the host, for
/// `contrib/test.sh` to remove when the run ends.
pub const HOST_NODES_LIST: &str = "/run/ds01-test-host-nodes";

/// Makes the simulated inventory's device nodes on the host, as a real GPU
/// server has them (Docker copies them into `--privileged` specs; runc
/// bind-mounts them in user namespaces). Needs root; nodes already there
/// are left alone, and each one made is listed in [`HOST_NODES_LIST`].
pub fn host_nodes() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let text = std::fs::read_to_string(sim_inventory()).unwrap();
        let inv = ds01_core::inventory::sim::parse(&sim_inventory(), &text).unwrap();
        let mut nodes = inv.common_nodes.clone();
        for u in inv.units() {
            nodes.extend(u.nodes());
        }
        for g in &inv.gpus {
            nodes.extend(g.drm.iter().cloned());
        }
        nodes.sort_by(|a, b| a.path.cmp(&b.path));
        nodes.dedup();
        let mut made = String::new();
        for n in nodes {
            let p = Path::new(&n.path);
            if p.exists() {
                continue;
            }
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            let dev = libc::makedev(n.major, n.minor);
            let path = std::ffi::CString::new(n.path.clone()).unwrap();
            // SAFETY: mknod with a valid C string.
            let rc = unsafe { libc::mknod(path.as_ptr(), libc::S_IFCHR | 0o666, dev) };
            assert_eq!(
                rc,
                0,
                "mknod {}: {}",
                n.path,
                std::io::Error::last_os_error()
            );
            made.push_str(&n.path);
            made.push('\n');
        }
        use std::io::Write;
        let mut list = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(HOST_NODES_LIST)
            .unwrap();
        list.write_all(made.as_bytes()).unwrap();
    });
}

/// A CDI spec for the simulated inventory in `dir`, as `nvidia-ctk cdi
/// generate` lays one out, over fake driver files: every container gets
/// `/usr/lib/libcuda.so.1` (holding "fake libcuda"), and each device a
/// `/etc/ds01-device` holding its CDI name (whole GPUs by index, slices by
/// `gpu:mig` index). Returns the directory to name in `cdi_spec_dirs`.
pub fn fake_cdi(dir: &Path) -> PathBuf {
    let drv = dir.join("drv");
    let cdi = dir.join("cdi");
    std::fs::create_dir_all(&drv).unwrap();
    std::fs::create_dir_all(&cdi).unwrap();
    std::fs::write(drv.join("libcuda.so.1"), "fake libcuda\n").unwrap();
    let text = std::fs::read_to_string(sim_inventory()).unwrap();
    let inv = ds01_core::inventory::sim::parse(&sim_inventory(), &text).unwrap();
    let mut devices = Vec::new();
    for g in &inv.gpus {
        let mut names = vec![g.index.to_string()];
        names.extend((0..g.mig.len()).map(|i| format!("{}:{i}", g.index)));
        for name in names {
            let file = drv.join(format!("device-{}", name.replace(':', "-")));
            std::fs::write(&file, format!("{name}\n")).unwrap();
            devices.push(serde_json::json!({"name": name, "containerEdits": {
                "deviceNodes": [{"path": format!("/dev/nvidia{}", g.minor)}],
                "mounts": [{"hostPath": file, "containerPath": "/etc/ds01-device",
                            "options": ["ro", "nosuid", "nodev", "bind"]}]
            }}));
        }
    }
    let spec = serde_json::json!({
        "cdiVersion": "0.5.0",
        "kind": "nvidia.com/gpu",
        "containerEdits": {
            "env": ["NVIDIA_VISIBLE_DEVICES=void"],
            "deviceNodes": [{"path": "/dev/nvidiactl"}],
            "mounts": [{"hostPath": drv.join("libcuda.so.1"), "containerPath": "/usr/lib/libcuda.so.1",
                        "options": ["ro", "nosuid", "nodev", "bind"]}]
        },
        "devices": devices
    });
    std::fs::write(cdi.join("nvidia.json"), spec.to_string()).unwrap();
    cdi
}

/// A stand-in for NVIDIA's `nvidia-container-runtime-hook` in `dir`: as a
/// prestart hook it appends to `log` the `NVIDIA_VISIBLE_DEVICES` and the
/// device-list mounts of the spec it runs for, as the real one reads them.
pub fn fake_nvidia_hook(dir: &Path, log: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let hook = dir.join("nvidia-container-runtime-hook");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nstate=$(cat)\nbundle=$(printf '%s' \"$state\" | sed -n 's/.*\"bundle\":\"\\([^\"]*\\)\".*/\\1/p')\n\
             v=$(grep -o '\"NVIDIA_VISIBLE_DEVICES=[^\"]*\"' \"$bundle/config.json\" | tr -d '\"' | tr '\\n' ' ')\n\
             m=$(grep -o '/var/run/nvidia-container-devices/[^\"]*' \"$bundle/config.json\" | tr '\\n' ' ')\n\
             echo \"$1 $v| $m\" >> {log:?}\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

/// Where skipped end-to-end tests are counted, when set (`contrib/test.sh`
/// sets it, so its closing line says how many were skipped, not passed).
pub const SKIPPED_LOG: &str = "DS01_SKIPPED_LOG";

/// Notes an end-to-end test skipped for `why` (no root, no runc, ...).
pub fn skip(suite: &str, why: &str) {
    eprintln!("skipping {suite} end-to-end test: {why} (DS01_E2E=1 makes this a failure)");
    if let Some(path) = std::env::var_os(SKIPPED_LOG) {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
        {
            let _ = writeln!(f, "{suite}: {why}");
        }
    }
}

/// A command's JSON array of objects, as pairs of two of their string
/// fields; the command must have succeeded.
pub fn json_pairs(out: &Output, a: &str, b: &str) -> Vec<(String, String)> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x[a].as_str().unwrap_or("").to_string(),
                x[b].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The element of the JSON array `list` whose `key` is `value`; a panic
/// naming what was looked for where there is none.
pub fn find_in(list: &serde_json::Value, key: &str, value: &str) -> serde_json::Value {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .find(|x| x[key] == value)
        .unwrap_or_else(|| panic!("no {key} = {value:?} in {list}"))
        .clone()
}
