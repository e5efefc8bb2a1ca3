//! End to end with Debian's real runc and a busybox bundle, as root.
//!
//! Skipped (with a note) where there is no root or no runc, unless
//! `DS01_E2E=1`, which the test command sets: then their absence fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::*;

struct Runc {
    env: Env,
    runc: PathBuf,
    root: PathBuf,
    rootfs: PathBuf,
}

fn setup(extra: &str) -> Option<Runc> {
    let runc = ["/usr/sbin/runc", "/usr/bin/runc"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    let busybox = busybox();
    let root = unsafe { libc::geteuid() } == 0;
    let missing = match (&runc, &busybox, root) {
        (None, _, _) => Some("runc is not installed"),
        (_, None, _) => Some("busybox-static is not installed"),
        (_, _, false) => Some("not running as root"),
        _ => None,
    };
    if let Some(why) = missing {
        if std::env::var("DS01_E2E").as_deref() == Ok("1") {
            panic!("DS01_E2E=1 but {why}");
        }
        skip("runc", why);
        return None;
    }
    let runc = runc.unwrap();
    // A GPU server's /dev holds the NVIDIA nodes: test as the real host is.
    host_nodes();
    let env = Env::new(&runc, extra);
    let rootfs = env.path("rootfs");
    make_busybox_rootfs(&busybox.unwrap(), &rootfs);
    let root = env.path("runc-root");
    Some(Runc {
        env,
        runc,
        root,
        rootfs,
    })
}

impl Runc {
    /// A bundle running `script`, with extra environment entries.
    fn bundle(&self, name: &str, script: &str, vars: &[&str]) -> PathBuf {
        let b = self.env.path(name);
        std::fs::create_dir_all(&b).unwrap();
        let out = Command::new(&self.runc)
            .arg("spec")
            .current_dir(&b)
            .output()
            .unwrap();
        assert!(out.status.success());
        let mut spec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(b.join("config.json")).unwrap()).unwrap();
        spec["process"]["terminal"] = false.into();
        spec["process"]["args"] = serde_json::json!(["sh", "-c", script]);
        spec["root"] = serde_json::json!({"path": self.rootfs, "readonly": true});
        // runc names a container's cgroup after its id unless told: tests
        // running side by side reuse ids, so each bundle gets its own.
        let unique = self
            .env
            .dir
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        spec["linux"]["cgroupsPath"] = serde_json::json!(format!("/{unique}-{name}"));
        let env = spec["process"]["env"].as_array_mut().unwrap();
        env.extend(vars.iter().map(|v| serde_json::json!(v)));
        std::fs::write(
            b.join("config.json"),
            serde_json::to_vec_pretty(&spec).unwrap(),
        )
        .unwrap();
        b
    }

    fn args(&self, bundle: &Path, rest: &[&str]) -> Vec<String> {
        let mut a = vec![
            "--root".to_string(),
            self.root.display().to_string(),
            "--log".into(),
            bundle.join("log.json").display().to_string(),
            "--log-format".into(),
            "json".into(),
        ];
        a.extend(rest.iter().map(|s| s.to_string()));
        a
    }

    /// `runc run` through the shim, capturing the container's output.
    fn run(&self, bundle: &Path, id: &str) -> Output {
        let b = bundle.display().to_string();
        self.env
            .run_shim(&self.args(bundle, &["run", "--bundle", &b, id]))
    }

    /// `create` through the shim, as Docker does it; the container's stdio is /dev/null.
    fn create(&self, bundle: &Path, id: &str) -> std::process::ExitStatus {
        let b = bundle.display().to_string();
        let pid = bundle.join("init.pid").display().to_string();
        self.env
            .shim()
            .args(self.args(bundle, &["create", "--bundle", &b, "--pid-file", &pid, id]))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
    }

    fn shim(&self, bundle: &Path, rest: &[&str]) -> Output {
        self.env.run_shim(&self.args(bundle, rest))
    }

    /// A config whose `runc` is a shell script around the real one
    /// (`$RUNC` in `body`), sharing the state directory: where faults are put in.
    fn wrapped(&self, name: &str, body: &str) -> PathBuf {
        let script = self.env.path(&format!("{name}-runc"));
        std::fs::write(
            &script,
            format!("#!/bin/sh\nRUNC={:?}\n{body}\n", self.runc),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let cfg = self.env.path(&format!("{name}.toml"));
        let text = std::fs::read_to_string(&self.env.config).unwrap();
        std::fs::write(
            &cfg,
            text.replace(&format!("{:?}", self.runc), &format!("{script:?}")),
        )
        .unwrap();
        cfg
    }

    /// `create` through the shim with another config, in the background.
    fn spawn_create(&self, cfg: &Path, bundle: &Path, id: &str) -> std::process::Child {
        let b = bundle.display().to_string();
        let pid = bundle.join("init.pid").display().to_string();
        self.env
            .shim()
            .env("DS01_CONFIG", cfg)
            .args(self.args(bundle, &["create", "--bundle", &b, "--pid-file", &pid, id]))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    fn gpu_bundle(&self, name: &str) -> PathBuf {
        self.bundle(name, "sleep 60", &["NVIDIA_VISIBLE_DEVICES=all"])
    }

    fn wait_held(&self, n: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while self.env.held().len() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "no allocation appeared"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Creates GPU containers until one is refused; returns their ids.
    fn fill(&self, tag: &str) -> Vec<String> {
        let mut ids = Vec::new();
        for i in 0..8 {
            let id = format!("{tag}{i}");
            let b = self.gpu_bundle(&id);
            if !self.create(&b, &id).success() {
                let e = last_oci_error(&b.join("log.json")).unwrap_or_default();
                assert!(e.contains("free"), "{e}");
                return ids;
            }
            ids.push(id);
        }
        panic!("more containers than slices: {ids:?}");
    }

    /// The invariants after any fault: every held slice is held once, by a
    /// container runc knows or a create in flight; after deleting
    /// everything and `ds01 gc` nothing is held; a plain container runs.
    fn check_after_fault(&self) {
        let held = self.env.held();
        let mut devs: Vec<&String> = held.iter().map(|h| &h.0).collect();
        devs.sort();
        devs.dedup();
        assert_eq!(
            devs.len(),
            held.len(),
            "a slice in two containers: {held:?}"
        );
        if let Ok(entries) = std::fs::read_dir(&self.root) {
            for e in entries.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                let b = self.env.path(&id);
                let _ = self.shim(&b, &["delete", "--force", &id]);
            }
        }
        let out = self.env.cli(&["gc"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(self.env.held().is_empty(), "leaked: {:?}", self.env.held());
        let p = self.bundle("plain-after", "echo plain", &[]);
        let out = self.run(&p, "plain-after");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "plain\n",
            "{}{:?}",
            String::from_utf8_lossy(&out.stderr),
            last_oci_error(&p.join("log.json"))
        );
    }
}

impl Drop for Runc {
    fn drop(&mut self) {
        // Whatever a failed test left running.
        if let Ok(entries) = std::fs::read_dir(&self.root) {
            for e in entries.flatten() {
                let _ = Command::new(&self.runc)
                    .arg("--root")
                    .arg(&self.root)
                    .args(["delete", "--force"])
                    .arg(e.file_name())
                    .output();
            }
        }
    }
}

#[test]
fn gpu_container_sees_its_nodes_and_uuid() {
    let Some(r) = setup("") else { return };
    let b = r.bundle(
        "gpu",
        "for f in /dev/nvidia* /dev/nvidia-caps/*; do [ -c $f ] && echo $f; done; \
         echo VISIBLE=$NVIDIA_VISIBLE_DEVICES",
        &["NVIDIA_VISIBLE_DEVICES=all"],
    );
    let out = r.run(&b, "gpu1");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {:?}",
        last_oci_error(&b.join("log.json"))
    );
    assert_eq!(device_lines(&text), FIRST_SLICE_NODES);
    let first_slice = r.env.gpus()["devices"][1]["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(text.contains(&format!("VISIBLE={first_slice}\n")), "{text}");
    assert!(r.env.held().is_empty(), "freed when the run ended");
}

#[test]
fn a_started_gpu_container_holds_no_descriptor_of_its_marker() {
    let Some(r) = setup("") else { return };
    let b = r.gpu_bundle("m");
    assert!(r.create(&b, "m").success());
    let record = r.env.ledger()["records"][0].clone();
    let marker = r
        .env
        .path("state/pending")
        .join(record["alloc_id"].as_str().unwrap());
    assert!(marker.exists(), "the marker stays with the record");
    assert!(r.shim(&b, &["start", "m"]).status.success());
    let init: u32 = std::fs::read_to_string(b.join("init.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // runc's init closed what it inherited before it ran the container's
    // process: nothing in the container can hold (or write) the marker.
    for e in std::fs::read_dir(format!("/proc/{init}/fd"))
        .unwrap()
        .flatten()
    {
        let to = std::fs::read_link(e.path()).unwrap_or_default();
        assert!(
            !to.starts_with(r.env.path("state")),
            "the container's init holds {to:?}"
        );
    }
    let f = std::fs::File::open(&marker).unwrap();
    assert!(f.try_lock_shared().is_ok(), "no process holds the marker");
    drop(f);
    assert_eq!(r.env.held().len(), 1);
    assert!(r.shim(&b, &["delete", "--force", "m"]).status.success());
    assert!(
        r.env.held().is_empty(),
        "the poststop hook marked it released"
    );
    // The next write of the ledger takes the record out, and its marker.
    assert!(r.env.cli(&["gc"]).status.success());
    assert!(!marker.exists(), "the marker went with the record");
}

#[test]
fn container_without_gpu_is_untouched() {
    let Some(r) = setup("") else { return };
    let b = r.bundle("plain", "ls /dev; echo hello", &[]);
    let before = std::fs::read(b.join("config.json")).unwrap();
    let out = r.run(&b, "plain1");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("hello") && !text.contains("nvidia"), "{text}");
    assert_eq!(std::fs::read(b.join("config.json")).unwrap(), before);
    assert!(r.env.ledger()["records"].as_array().unwrap().is_empty());
}

#[test]
fn sixteen_concurrent_creates_share_seven_slices() {
    let Some(r) = setup("") else { return };
    let bundles: Vec<PathBuf> = (0..16)
        .map(|i| {
            r.bundle(
                &format!("c{i}"),
                "sleep 60",
                &["NVIDIA_VISIBLE_DEVICES=all"],
            )
        })
        .collect();
    let results: Vec<(usize, bool)> = std::thread::scope(|s| {
        let handles: Vec<_> = bundles
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let r = &r;
                s.spawn(move || (i, r.create(b, &format!("c{i}")).success()))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok: Vec<usize> = results.iter().filter(|x| x.1).map(|x| x.0).collect();
    assert_eq!(ok.len(), 7, "{results:?}");
    for (i, good) in &results {
        if !good {
            assert_eq!(
                last_oci_error(&bundles[*i].join("log.json")).unwrap(),
                "ds01: no MIG slice free (7 of 7 in use); try later or see 'container ls --all'; \
                 wait for one with DS01_GPU_WAIT=30m"
            );
        }
    }
    let held = r.env.held();
    let mut uuids: Vec<&String> = held.iter().map(|h| &h.0).collect();
    uuids.sort();
    uuids.dedup();
    assert_eq!(uuids.len(), 7, "seven distinct slices: {held:?}");
    let mut holders: Vec<String> = held.iter().map(|h| h.1.clone()).collect();
    holders.sort();
    let mut want: Vec<String> = ok.iter().map(|i| format!("c{i}")).collect();
    want.sort();
    assert_eq!(holders, want);
    for (i, b) in bundles.iter().enumerate() {
        let out = r.shim(b, &["delete", "--force", &format!("c{i}")]);
        assert!(out.stdout.is_empty());
    }
    assert!(r.env.held().is_empty(), "{:?}", r.env.held());
}

/// Kills a container's init and waits until it is dead (or a zombie).
fn kill_init(pid: i32) {
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| ds01_core::host::parse_stat_start(&s).is_some())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "init {pid} did not die"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn killed_container_frees_its_slice_on_delete() {
    let Some(r) = setup("") else { return };
    let b = r.bundle("k", "sleep 60", &["NVIDIA_VISIBLE_DEVICES=all"]);
    assert!(
        r.create(&b, "k1").success(),
        "{:?}",
        last_oci_error(&b.join("log.json"))
    );
    assert!(r.shim(&b, &["start", "k1"]).status.success());
    assert_eq!(r.env.held().len(), 1);
    let pid: i32 = std::fs::read_to_string(b.join("init.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Docker deletes once it saw the exit: wait until runc would call it stopped.
    kill_init(pid);
    // Docker's order after an exit: delete, then delete --force.
    let out = r.shim(&b, &["delete", "k1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // runc ran ds01-poststop, which marked it released: free at once.
    assert!(r.env.held().is_empty());
    // A second delete finds runc done with it and takes the record out of
    // the file, logging whose hook freed it.
    let out = r.shim(&b, &["delete", "--force", "k1"]);
    assert!(
        out.status.success(),
        "a forced delete of a gone container is fine"
    );
    r.env.assert_log_contains(&["from container k1 (poststop)"]);
    let file = std::fs::read_to_string(r.env.path("state/ledger.json")).unwrap();
    assert!(!file.contains("\"k1\""), "{file}");
    let marks = std::fs::read_dir(r.env.path("state/released"))
        .unwrap()
        .count();
    assert_eq!(marks, 0);
}

#[test]
fn shim_killed_before_runc_ran_is_reclaimed_by_the_next_create() {
    let Some(r) = setup("") else { return };
    let stall_cfg = r.wrapped("stall", "sleep 30\nexec \"$RUNC\" \"$@\"");

    let b = r.bundle("s", "sleep 60", &["NVIDIA_VISIBLE_DEVICES=all"]);
    let mut cmd = r.env.shim();
    cmd.env("DS01_CONFIG", &stall_cfg)
        .args(r.args(&b, &["create", "--bundle", b.to_str().unwrap(), "s1"]))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while r.env.held().is_empty() {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    child.wait().unwrap();
    assert_eq!(r.env.held()[0].1, "s1");

    // Seven real containers fit: the dead allocation was reclaimed.
    let bundles: Vec<PathBuf> = (0..7)
        .map(|i| {
            r.bundle(
                &format!("n{i}"),
                "sleep 60",
                &["NVIDIA_VISIBLE_DEVICES=all"],
            )
        })
        .collect();
    for (i, b) in bundles.iter().enumerate() {
        assert!(
            r.create(b, &format!("n{i}")).success(),
            "{:?}",
            last_oci_error(&b.join("log.json"))
        );
    }
    assert!(r.env.held().iter().all(|h| h.1 != "s1"));
    r.env.assert_log_contains(&["reclaimed"]);
    for (i, b) in bundles.iter().enumerate() {
        r.shim(b, &["delete", "--force", &format!("n{i}")]);
    }
    assert!(r.env.held().is_empty());
}

#[test]
fn broken_config_refuses_gpu_containers_and_runs_the_rest() {
    let Some(r) = setup("bogus_key = 1\n") else {
        return;
    };
    let g = r.bundle("g", "true", &["NVIDIA_VISIBLE_DEVICES=all"]);
    let out = r.run(&g, "g1");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
    let msg = last_oci_error(&g.join("log.json")).unwrap();
    assert!(
        msg.contains("unknown key \"bogus_key\"") && msg.contains("config.toml"),
        "{msg}"
    );

    let p = r.bundle("p", "echo still-runs", &[]);
    let out = r.run(&p, "p1");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "still-runs\n");
}

// Fault injection: the runtime, runc, the state filesystem and the ledger
// fail at each stage; docs/reliability.md holds the table.

#[test]
fn a_create_killed_while_its_orphan_lives_keeps_the_slice_for_it() {
    let Some(r) = setup("") else { return };
    // runc takes the runtime's place; here the create is killed while a
    // process of it (a child holding the marker, as runc's own init does;
    // it says when it has started) lives on and goes on to make the container.
    let started = r.env.path("runc-started");
    let slow = r.wrapped(
        "slow",
        &format!("( touch {started:?}; sleep 2; exec \"$RUNC\" \"$@\" ) &\nwait"),
    );
    let b = r.gpu_bundle("orphan");
    let mut child = r.spawn_create(&slow, &b, "orphan");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !started.exists() {
        assert!(std::time::Instant::now() < deadline, "runc never started");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    // While the orphan may still bring the container up, its slice is not handed on.
    let others = r.fill("o");
    assert_eq!(others.len(), 6, "{others:?}");
    // The orphan made its container: it holds the slice, once.
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(r.root.join("orphan/state.json").exists());
    assert!(r.env.held().iter().any(|h| h.1 == "orphan"));
    r.check_after_fault();
}

#[test]
fn a_created_container_whose_init_died_undeleted_is_freed_by_gc() {
    let Some(r) = setup("") else { return };
    let b = r.gpu_bundle("c");
    let mut child = r.spawn_create(&r.env.config, &b, "c");
    child.wait().unwrap();
    assert!(r.root.join("c/state.json").exists());
    assert_eq!(
        r.fill("x").len(),
        6,
        "the created container keeps its slice"
    );
    // Its record has no init pid. The init dies and no one deletes the
    // container: runc keeps a stopped container whose init its state
    // names, and gc frees the slice.
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(r.root.join("c/state.json")).unwrap()).unwrap();
    kill_init(state["init_process_pid"].as_i64().unwrap() as i32);
    assert!(r.root.join("c/state.json").exists(), "runc still knows it");
    let out = r.env.cli(&["gc", "--json"]);
    assert!(out.status.success());
    let gone: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        gone.as_array()
            .unwrap()
            .iter()
            .any(|g| g["container_id"] == "c" && g["reason"].as_str().unwrap().contains("stopped")),
        "{gone}"
    );
    assert!(!r.env.held().iter().any(|h| h.1 == "c"));
    r.check_after_fault();
}

#[test]
fn runc_killed_mid_create_holds_the_slice_until_its_delete() {
    let Some(r) = setup("") else { return };
    let pidfile = r.env.path("runc.pid");
    // runc in the runtime's place, stalled before it made anything.
    let slow = r.wrapped("slow", &format!("echo $$ > {pidfile:?}\nexec sleep 30"));
    let b = r.gpu_bundle("k");
    let child = r.spawn_create(&slow, &b, "k");
    r.wait_held(1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::fs::read_to_string(&pidfile).map_or(true, |s| s.trim().is_empty()) {
        assert!(std::time::Instant::now() < deadline, "runc never started");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pid, child.id() as i32, "runc is the create's own process");
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let out = child.wait_with_output().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGKILL));
    // Held by a record runc knows nothing of and no process holds: the
    // `delete --force` Docker sends after a failed create frees it.
    assert_eq!(r.env.held().len(), 1);
    let out = r.shim(&b, &["delete", "--force", "k"]);
    assert!(out.status.success());
    assert!(r.env.held().is_empty(), "released by the delete");
    r.check_after_fault();
}

#[test]
fn a_delete_killed_before_runc_acted_leaks_nothing() {
    let Some(r) = setup("") else { return };
    let b = r.gpu_bundle("d");
    assert!(r.create(&b, "d").success());
    // The runtime hands its process to runc for a delete: here that
    // process is killed before runc does anything.
    let die = r.wrapped(
        "die",
        "case \"$*\" in *delete*) kill -9 $$ ;; esac\nexec \"$RUNC\" \"$@\"",
    );
    let out = r
        .env
        .shim()
        .env("DS01_CONFIG", &die)
        .args(r.args(&b, &["delete", "--force", "d"]))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), None, "the delete was killed");
    assert!(r.root.join("d/state.json").exists(), "runc never ran");
    assert_eq!(r.env.held().len(), 1, "the container keeps its slice");
    // Docker deletes again: runc's delete runs the poststop hook.
    let out = r.shim(&b, &["delete", "--force", "d"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(r.env.held().is_empty(), "{}", r.env.shim_log());
    r.check_after_fault();
}

#[test]
fn a_full_state_filesystem_refuses_gpu_creates_and_leaves_the_ledger_whole() {
    let Some(r) = setup("") else { return };
    let state = r.env.path("state");
    std::fs::create_dir_all(&state).unwrap();
    let mount = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=64k,mode=0755",
            "ds01-test",
            state.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(mount.success());
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _u = Unmount(state.clone());
    let first = r.gpu_bundle("f1");
    assert!(r.create(&first, "f1").success());
    let filler = state.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", &format!("of={}", filler.display()), "bs=4k"])
        .stderr(Stdio::null())
        .status();
    let b = r.gpu_bundle("f2");
    assert!(!r.create(&b, "f2").success());
    let e = last_oci_error(&b.join("log.json")).unwrap();
    assert!(e.contains("No space left"), "{e}");
    // Nothing half-written: the ledger still reads and holds the first.
    assert_eq!(r.env.held().len(), 1);
    let p = r.bundle("plain", "echo plain", &[]);
    assert_eq!(
        String::from_utf8_lossy(&r.run(&p, "plain").stdout),
        "plain\n"
    );
    std::fs::remove_file(&filler).unwrap();
    assert!(r.create(&b, "f2").success());
    r.check_after_fault();
}

#[test]
fn a_corrupt_ledger_beside_running_containers_hands_out_no_slice_twice() {
    let Some(r) = setup("") else { return };
    for id in ["r1", "r2"] {
        let b = r.gpu_bundle(id);
        assert!(r.create(&b, id).success());
    }
    std::fs::write(r.env.path("state/ledger.json"), "{\"records\": [").unwrap();
    let more = r.fill("m");
    assert_eq!(more.len(), 5, "{more:?}");
    let ids: Vec<String> = r.env.held().into_iter().map(|h| h.1).collect();
    assert!(ids.contains(&"r1".to_string()) && ids.contains(&"r2".to_string()));
    let kept = std::fs::read_dir(r.env.path("state"))
        .unwrap()
        .flatten()
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("ledger.json.bad-")
        });
    assert!(kept);
    r.check_after_fault();
}

// The driver's user space, by each way ds01 can bring it.

#[test]
fn gpu_containers_get_the_driver_from_cdi_for_their_own_device() {
    let drv = tempfile::tempdir().unwrap();
    let cdi = fake_cdi(drv.path());
    let Some(r) = setup(&format!("cdi_spec_dirs = [{cdi:?}]\n")) else {
        return;
    };
    // The first holds slice 1:0 while the second runs.
    let first = r.gpu_bundle("first");
    assert!(r.create(&first, "first").success());
    let b = r.bundle(
        "second",
        "cat /usr/lib/libcuda.so.1 /etc/ds01-device; \
         for f in /dev/nvidia* /dev/nvidia-caps/*; do [ -c $f ] && echo $f; done",
        &["NVIDIA_VISIBLE_DEVICES=all"],
    );
    let out = r.run(&b, "second");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{:?}",
        last_oci_error(&b.join("log.json"))
    );
    assert!(text.starts_with("fake libcuda\n1:1\n"), "{text}");
    let nodes: Vec<&str> = device_lines(&text);
    assert_eq!(nodes.len(), 6, "only its own nodes: {nodes:?}");
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(first.join("config.json")).unwrap()).unwrap();
    assert!(
        spec["mounts"].to_string().contains("device-1-0"),
        "the first sees its own"
    );
    r.check_after_fault();
}

#[test]
fn without_cdi_nvidia_s_hook_is_added_for_exactly_the_allocation() {
    let Some(r) = setup("") else { return };
    let stubs = r.env.path("stubs");
    let log = r.env.path("hook.log");
    fake_nvidia_hook(&stubs, &log);
    let b = r.bundle(
        "h",
        "echo $NVIDIA_DRIVER_CAPABILITIES",
        &["NVIDIA_VISIBLE_DEVICES=all"],
    );
    let bs = b.display().to_string();
    let path = format!(
        "{}:{}",
        stubs.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = r
        .env
        .shim()
        .env("PATH", path)
        .args(r.args(&b, &["run", "--bundle", &bs, "h"]))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{:?}",
        last_oci_error(&b.join("log.json"))
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "compute,utility\n");
    let seen = std::fs::read_to_string(&log).unwrap();
    let uuid = seen
        .split("NVIDIA_VISIBLE_DEVICES=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .to_string();
    assert!(uuid.starts_with("MIG-") && !uuid.contains(','), "{seen}");
    assert_eq!(
        seen,
        format!(
            "prestart NVIDIA_VISIBLE_DEVICES={uuid} | /var/run/nvidia-container-devices/{uuid} \n"
        )
    );
}

#[test]
fn without_cdi_or_hook_a_gpu_container_gets_its_nodes_and_the_log_says_so() {
    let Some(r) = setup("cdi_spec_dirs = [\"/nonexistent-cdi\"]\n") else {
        return;
    };
    let b = r.bundle("n", "ls /dev/nvidia1", &["NVIDIA_VISIBLE_DEVICES=all"]);
    let out = r.run(&b, "n");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "/dev/nvidia1\n");
    r.env
        .assert_log_contains(&["no driver libraries injected", "nvidia-container-toolkit"]);
}

/// Hook kinds, each with the programs it runs.
type Hooks<'a> = &'a [(&'a str, &'a [&'a str])];

/// Sets the bundle's hooks.
fn set_hooks(bundle: &Path, hooks: Hooks) {
    let path = bundle.join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    for (kind, programs) in hooks {
        spec["hooks"][*kind] = programs
            .iter()
            .map(|p| serde_json::json!({"path": p, "args": [p]}))
            .collect();
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
}

/// `gc --json`: what it reclaimed, as (container id, reason).
fn gc(r: &Runc) -> Vec<(String, String)> {
    json_pairs(&r.env.cli(&["gc", "--json"]), "container_id", "reason")
}

#[test]
fn a_failing_poststop_hook_before_ds01_s_does_not_keep_the_slice() {
    // runtime-tools' poststop_fail: /bin/false before ds01's hook. runc
    // stops at the first poststop hook that fails, so ds01's goes first.
    let Some(r) = setup("") else { return };
    // With a pid file, as Docker creates, and without one, as
    // runtime-tools does (then runc's state names the init).
    for (id, pid_file) in [("pf1", true), ("pf2", false)] {
        let b = r.gpu_bundle(id);
        set_hooks(&b, &[("poststop", &["/bin/false"])]);
        let bs = b.display().to_string();
        let pid = b.join("init.pid").display().to_string();
        let mut create = vec!["create", "--bundle", &bs];
        if pid_file {
            create.extend(["--pid-file", &pid]);
        }
        create.push(id);
        // The container's stdio is /dev/null: captured, it would hold the pipe.
        let status = r
            .env
            .shim()
            .args(r.args(&b, &create))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "{:?}",
            last_oci_error(&b.join("log.json"))
        );
        assert_eq!(r.env.held().len(), 1);
        let spec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(b.join("config.json")).unwrap()).unwrap();
        assert_eq!(spec["hooks"]["poststop"][1]["path"], "/bin/false");
        assert!(r.shim(&b, &["start", id]).status.success());
        assert!(r.shim(&b, &["kill", id, "KILL"]).status.success());
        std::thread::sleep(std::time::Duration::from_millis(300));
        // runc reports the failed hook; the release ran before it.
        let _ = r.shim(&b, &["delete", "--force", id]);
        assert!(r.env.held().is_empty(), "{id}: {:?}", r.env.held());
        assert!(gc(&r).is_empty(), "{id}: nothing left for gc");
    }
    r.env.assert_log_contains(&[
        "from container pf1 (poststop)",
        "from container pf2 (poststop)",
    ]);
}

#[test]
fn every_lifecycle_of_a_gpu_container_leaves_every_device_free() {
    // What the OCI runtime-tools suite puts a runtime through, each with a
    // GPU request: hooks that fail at each point, a process that cannot
    // start, one that exits at once, kills, forced deletes, `run`.
    let Some(r) = setup("") else { return };
    let cases: &[(&str, &str, Hooks)] = &[
        ("plain", "sleep 60", &[]),
        ("quick", "true", &[]),
        (
            "prestart-fails",
            "sleep 60",
            &[("prestart", &["/bin/false"])],
        ),
        (
            "creatert-fails",
            "sleep 60",
            &[("createRuntime", &["/bin/false"])],
        ),
        (
            "poststart-fails",
            "sleep 60",
            &[("poststart", &["/bin/false"])],
        ),
        (
            "poststop-fails",
            "sleep 60",
            &[("poststop", &["/bin/false", "/bin/false"])],
        ),
        (
            "every-hook",
            "sleep 60",
            &[
                ("prestart", &["/bin/true"]),
                ("createRuntime", &["/bin/true"]),
                ("poststart", &["/bin/true"]),
                ("poststop", &["/bin/true"]),
            ],
        ),
    ];
    for (id, script, hooks) in cases {
        let b = r.bundle(id, script, &["NVIDIA_VISIBLE_DEVICES=all"]);
        set_hooks(&b, hooks);
        if r.create(&b, id).success() {
            let _ = r.shim(&b, &["start", id]);
            let _ = r.shim(&b, &["kill", id, "KILL"]);
            std::thread::sleep(std::time::Duration::from_millis(200));
            // One delete, as runtime-tools does it: a second would free
            // whatever the first's hooks left held.
            let _ = r.shim(&b, &["delete", "--force", id]);
        }
        assert!(r.env.held().is_empty(), "{id}: {:?}", r.env.held());
    }
    // A process that cannot be started: runc creates, start fails.
    let b = r.bundle("noexec", "true", &["NVIDIA_VISIBLE_DEVICES=all"]);
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("config.json")).unwrap()).unwrap();
    spec["process"]["args"] = serde_json::json!(["/no/such/program"]);
    std::fs::write(b.join("config.json"), spec.to_string()).unwrap();
    if r.create(&b, "noexec").success() {
        let _ = r.shim(&b, &["start", "noexec"]);
        let _ = r.shim(&b, &["delete", "--force", "noexec"]);
    }
    // Created and deleted by force without ever starting; and `run`.
    let b = r.gpu_bundle("never");
    assert!(r.create(&b, "never").success());
    assert!(r.shim(&b, &["delete", "--force", "never"]).status.success());
    let b = r.bundle("ran", "echo ran", &["NVIDIA_VISIBLE_DEVICES=all"]);
    assert_eq!(String::from_utf8_lossy(&r.run(&b, "ran").stdout), "ran\n");
    // Every device free, with nothing left for gc to find.
    assert!(r.env.held().is_empty(), "{:?}", r.env.held());
    assert!(gc(&r).is_empty());
    let devices = r.env.gpus()["devices"].as_array().unwrap().len();
    assert!(devices >= 8, "the simulated host's devices are all listed");
}
