//! Each user's share of the host through the gate and a private dockerd,
//! on this machine's cgroups: the kernel holds every user to their
//! parent's memory, CPU and processes, and each container to its limits.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use ds01_core::share::{self, Tree, Version};

use crate::common::*;
use crate::harness::*;

/// The name `TempUser::new(tag)` will give, for the config written first.
fn user_name(tag: &str) -> String {
    format!("ds01{tag}{}", std::process::id() % 10000)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A limits file of `user`'s parent, by cgroup version.
fn limit_file(user: &str, v1: (&str, &str), v2: &str) -> String {
    let t = Tree::real();
    let path = match t.version() {
        Version::V1 => t.root.join(v1.0).join("ds01").join(user).join(v1.1),
        Version::V2 => t.root.join("ds01").join(user).join(v2),
    };
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path:?}: {e}"))
        .trim()
        .to_string()
}

/// Removes the users' parents the test made (runc leaves them, empty).
struct Parents(Vec<String>);

impl Drop for Parents {
    fn drop(&mut self) {
        let t = Tree::real();
        for u in &self.0 {
            let dirs: Vec<_> = match t.version() {
                Version::V1 => std::fs::read_dir(&t.root)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path().join("ds01").join(u))
                    .collect(),
                Version::V2 => vec![t.root.join("ds01").join(u)],
            };
            for d in dirs {
                let _ = std::fs::remove_dir(d);
            }
        }
    }
}

fn state(d: &Dockerd, name: &str) -> String {
    d.ok(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.ExitCode}}",
        name,
    ])
    .trim()
    .to_string()
}

/// Holds `mb` MB of anonymous memory as the container's first process:
/// dd's buffer, kept while dd blocks writing to a FIFO no one reads.
fn hog(mb: u32) -> String {
    format!("mkfifo /f; sleep 3600 </f & exec dd if=/dev/zero bs={mb}M count=1 of=/f 2>/dev/null")
}

#[test]
fn each_user_is_held_to_their_share_of_the_host_by_the_kernel() {
    let _g = lock();
    let (a, b) = (user_name("sa"), user_name("sb"));
    let config = format!("[users.{a}]\nmemory_max = \"256M\"\ncpus = 0.5\npids_max = 40\n");
    let Some((d, users)) = start_with_users(&config, &["sa", "sb"]) else {
        return;
    };
    assert_eq!(
        (users[0].0.as_str(), users[1].0.as_str()),
        (a.as_str(), b.as_str())
    );
    let _parents = Parents(vec![a.clone(), b.clone()]);
    let (_gate, sock) = gate_for(&d);
    let run = |user: &str, name: &str, cmd: &str| {
        docker_via(
            &sock,
            Some(user),
            &[
                "run",
                "-d",
                "--name",
                name,
                "busybox:local",
                "sh",
                "-c",
                cmd,
            ],
        )
    };
    let ok = |out: Output| {
        assert!(out.status.success(), "{}", text(&out));
    };

    // Alone, alice's 200 MB container runs, in her parent, which carries
    // her share before it starts.
    ok(run(&a, "a1", &hog(200)));
    let id = d.full_id("a1");
    let cgroup = d.ok(&["inspect", "-f", "{{.HostConfig.CgroupParent}}", "a1"]);
    assert_eq!(cgroup.trim(), format!("/ds01/{a}"));
    assert_eq!(
        limit_file(&a, ("memory", "memory.limit_in_bytes"), "memory.max"),
        (256u64 << 20).to_string()
    );
    let quota = limit_file(&a, ("cpu", "cpu.cfs_quota_us"), "cpu.max");
    assert!(quota == "50000" || quota == "50000 100000", "{quota}");
    assert_eq!(limit_file(&a, ("pids", "pids.max"), "pids.max"), "40");
    assert!(!id.is_empty());
    let t = Tree::real();
    let parent = share::parent(share::Driver::Cgroupfs, "", &a);
    let deadline = Instant::now() + Duration::from_secs(30);
    while t.usage(&parent).memory.unwrap_or(0) < 190 << 20 {
        assert!(Instant::now() < deadline, "the 200 MB were never held");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(state(&d, "a1"), "running 0");

    // Bob, with no share, holds as much beside her.
    ok(run(&b, "b1", &hog(200)));
    // A second 200 MB of alice's: over her 256M, the kernel kills one of
    // hers (its first process, so the container ends with 137), in her
    // parent alone.
    ok(run(&a, "a2", &hog(200)));
    let deadline = Instant::now() + Duration::from_secs(60);
    let ended = loop {
        let states = [state(&d, "a1"), state(&d, "a2")];
        if let Some(i) = states.iter().position(|s| s.starts_with("exited")) {
            break (i, states);
        }
        assert!(Instant::now() < deadline, "neither was stopped: {states:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let (i, states) = ended;
    assert_eq!(states[i], "exited 137", "{states:?}");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        state(&d, ["a2", "a1"][i]),
        "running 0",
        "the other of hers runs on"
    );
    assert_eq!(state(&d, "b1"), "running 0", "bob's container is untouched");
    for c in ["a1", "a2", "b1"] {
        d.ok(&["rm", "-f", c]);
    }

    // cpus = 0.5: two busy loops of hers share half a CPU, as the parent's
    // CPU time says; bob's alone gets more than that.
    let busy = "while :; do :; done";
    ok(run(&a, "c1", busy));
    ok(run(&a, "c2", busy));
    ok(run(&b, "c3", busy));
    std::thread::sleep(Duration::from_secs(1));
    let rate = |user: &str| {
        let p = share::parent(share::Driver::Cgroupfs, "", user);
        let first = t.usage(&p).cpu_usec.expect("cpu time of the parent");
        std::thread::sleep(Duration::from_secs(3));
        let now = t.usage(&p).cpu_usec.unwrap();
        (now - first) as f64 / 3e6
    };
    let (hers, his) = (rate(&a), rate(&b));
    assert!(
        (0.35..=0.6).contains(&hers),
        "alice's two loops used {hers:.2} CPUs"
    );
    assert!(his > 0.7, "bob's loop used {his:.2} CPUs");
    // `container ls --detailed` shows each one's memory and CPU use.
    let ls = d.ds01(&["container", "ls", "--all", "--detailed", "--json"]);
    let ls: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    let row = |name: &str| find_in(&ls["containers"], "docker_name", name);
    assert!(row("c3")["cpus"].as_f64().unwrap() > 0.5, "{}", row("c3"));
    assert!(row("c1")["cpus"].as_f64().unwrap() < 0.5, "{}", row("c1"));
    assert!(row("c1")["memory_bytes"].as_u64().unwrap() > 0);
    let shown = text(&d.ds01(&["container", "ls", "--all", "--detailed"]));
    assert!(
        shown.contains(" CPUs") && shown.contains("memory, "),
        "{shown}"
    );
    for c in ["c1", "c2", "c3"] {
        d.ok(&["rm", "-f", c]);
    }

    // pids_max = 40: a fork loop stops at the limit. The loop's shell
    // gives up there; the first process stays, by exec, needing no fork.
    ok(run(
        &a,
        "p1",
        "sh -c 'while :; do sleep 600 & done'; exec sleep 600",
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !text(&d.docker(&["logs", "p1"])).contains("can't fork") {
        assert!(Instant::now() < deadline, "p1 is {}", state(&d, "p1"));
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(1));
    let pids = t.usage(&parent).pids.unwrap_or(0);
    assert!(
        (35..=40).contains(&pids),
        "the parent holds {pids} processes"
    );
    assert_eq!(state(&d, "p1"), "running 0");
    d.ok(&["rm", "-f", "p1"]);

    // A change in the config reaches her running parent at the next
    // refresh.
    let config = std::fs::read_to_string(&d.env.config).unwrap();
    std::fs::write(&d.env.config, config.replace("\"256M\"", "\"512M\"")).unwrap();
    let out = d.ds01(&["gpus", "refresh"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        limit_file(&a, ("memory", "memory.limit_in_bytes"), "memory.max"),
        (512u64 << 20).to_string()
    );

    // `ds01 limits` shows the share, where it comes from, and the use.
    let out = d.ds01(&["limits", "--user", &a]);
    let shown = text(&out);
    assert!(
        shown.contains("memory (all containers)")
            && shown.contains("512M")
            && shown.contains(&format!("from user {a}")),
        "{shown}"
    );
}

#[test]
fn each_container_gets_its_limits_and_may_ask_no_more() {
    let _g = lock();
    let a = user_name("sc");
    let config = format!(
        "[defaults]\ncontainer_memory = \"64M\"\ncontainer_pids = 64\n\
         [groups.ds01sharetest]\nmembers = [\"{a}\"]\ncontainer_cpus = 1\n"
    );
    let Some((d, _users)) = start_with_users(&config, &["sc"]) else {
        return;
    };
    let _parents = Parents(vec![a.clone()]);
    let (_gate, sock) = gate_for(&d);

    // Asking nothing, a container gets the limits, and the kernel holds it
    // to them.
    let out = docker_via(
        &sock,
        Some(&a),
        &["run", "-d", "--name", "n1", "busybox:local", "sleep", "600"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let hc = d.ok(&[
        "inspect",
        "-f",
        "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}}",
        "n1",
    ]);
    assert_eq!(hc.trim(), format!("{} 1000000000 64", 64u64 << 20));
    let id = d.full_id("n1");
    let t = Tree::real();
    if t.version() == Version::V1 {
        let limit = std::fs::read_to_string(
            t.root
                .join(format!("memory/ds01/{a}/{id}/memory.limit_in_bytes")),
        )
        .unwrap();
        assert_eq!(limit.trim(), (64u64 << 20).to_string());
    }
    // Less is granted as asked.
    let out = docker_via(
        &sock,
        Some(&a),
        &[
            "run",
            "-d",
            "--name",
            "n2",
            "--memory",
            "32m",
            "busybox:local",
            "sleep",
            "600",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.HostConfig.Memory}}", "n2"])
            .trim(),
        (32u64 << 20).to_string()
    );

    // More is refused with one line naming the limit and its source.
    for (args, want) in [
        (
            vec!["--memory", "128m"],
            format!(
                "{a} may give a container at most 64M of memory (container_memory, defaults); asked for 128M"
            ),
        ),
        (
            vec!["--cpus", "2"],
            format!(
                "{a} may give a container at most 1 CPUs (container_cpus, group ds01sharetest); asked for 2 CPUs"
            ),
        ),
        (
            vec!["--pids-limit", "1000"],
            format!(
                "{a} may give a container at most 64 processes (container_pids, defaults); asked for 1000"
            ),
        ),
    ] {
        let mut full = vec!["run", "--rm"];
        full.extend(args);
        full.extend(["busybox:local", "true"]);
        let out = docker_via(&sock, Some(&a), &full);
        let said = text(&out);
        assert!(!out.status.success() && said.contains(&want), "{said}");
    }
    // An update may not raise one either.
    let out = docker_via(
        &sock,
        Some(&a),
        &["update", "--memory", "1g", "--memory-swap", "2g", "n1"],
    );
    assert!(
        !out.status.success() && text(&out).contains("container_memory"),
        "{}",
        text(&out)
    );

    // The runtime judges what runs, whatever the route: on dockerd's own
    // socket, a container of hers outside her parent, or over a limit in
    // it, is refused.
    let label = format!("ds01.user={a}");
    let out = d.docker(&["run", "--rm", "--label", &label, "busybox:local", "true"]);
    let said = text(&out);
    assert!(
        !out.status.success()
            && said.contains(&format!(
                "this container runs outside {a}'s share of the host"
            )),
        "{said}"
    );
    let parent = format!("/ds01/{a}");
    let in_her_parent = |memory: &str| {
        d.docker(&[
            "run",
            "--rm",
            "--label",
            &label,
            "--cgroup-parent",
            &parent,
            "--memory",
            memory,
            "--cpus",
            "1",
            "--pids-limit",
            "10",
            "busybox:local",
            "true",
        ])
    };
    let out = in_her_parent("1g");
    let said = text(&out);
    assert!(
        !out.status.success()
            && said.contains("at most 64M of memory (container_memory, defaults); asked for 1G"),
        "{said}"
    );
    // Within them, it runs.
    let out = in_her_parent("16m");
    assert!(out.status.success(), "{}", text(&out));
    // The host's own containers (no owner) run where Docker puts them.
    let out = d.docker(&["run", "--rm", "busybox:local", "true"]);
    assert!(out.status.success(), "{}", text(&out));
    for c in ["n1", "n2"] {
        d.ok(&["rm", "-f", c]);
    }
}

fn mknod(path: &Path, mode: u32, minor: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mknod with a valid C string.
    let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(195, minor)) };
    assert_eq!(rc, 0, "mknod {path:?}: {}", std::io::Error::last_os_error());
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
}

fn host_check(d: &Dockerd, root: &Path) -> String {
    let out = d.ds01(&[
        "doctor",
        "--json",
        "--host-root",
        &root.display().to_string(),
    ]);
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    let c = find_in(&v["checks"], "id", "host-gpus");
    format!(
        "{} {}",
        c["status"].as_str().unwrap(),
        c["detail"].as_str().unwrap()
    )
}

/// Each NVIDIA node's owner and mode under `root`.
fn modes(root: &Path) -> Vec<(String, u32, u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    ds01::host_gpus::nodes(root)
        .into_iter()
        .map(|n| {
            let m = std::fs::metadata(root.join(n.path.trim_start_matches('/'))).unwrap();
            (n.path, m.uid(), m.gid(), m.mode())
        })
        .collect()
}

#[test]
fn no_gpu_outside_a_container_once_the_host_is_locked() {
    let _g = lock();
    let grants = tempfile::tempdir().unwrap();
    let grants_file = grants.path().join("bare-metal.json");
    let Some((d, users)) =
        start_with_users(&format!("bare_metal_grants = {grants_file:?}\n"), &["bm"])
    else {
        return;
    };
    // A scratch root as a stock install leaves it: every node 0666, MIG
    // capability files readable by all.
    let scratch = tempfile::tempdir().unwrap();
    let r = scratch.path();
    mknod(&r.join("dev/nvidia0"), 0o666, 0);
    mknod(&r.join("dev/nvidiactl"), 0o666, 255);
    mknod(&r.join("dev/nvidia-caps/nvidia-cap21"), 0o444, 21);
    let before = modes(r);
    let status = host_check(&d, r);
    assert!(status.starts_with("fail 3 NVIDIA node(s) open"), "{status}");
    let root = r.display().to_string();
    let out = d.ds01(&["admin", "lock-host-gpus", "--root", &root]);
    assert!(out.status.success(), "{}", text(&out));
    let conf = std::fs::read_to_string(r.join(ds01::host_gpus::MODPROBE_CONF)).unwrap();
    assert!(conf.contains("NVreg_DeviceFileMode=0660"), "{conf}");
    let gid = modes(r)[0].2;
    let locked: Vec<(String, u32, u32, u32)> = modes(r)
        .into_iter()
        .map(|(p, u, g, m)| (p, u, g, m & 0o7777))
        .collect();
    assert_eq!(
        locked,
        [
            ("/dev/nvidia-caps/nvidia-cap21".to_string(), 0, gid, 0o440),
            ("/dev/nvidia0".to_string(), 0, gid, 0o660),
            ("/dev/nvidiactl".to_string(), 0, gid, 0o660),
        ]
    );
    let status = host_check(&d, r);
    assert!(status.starts_with("ok "), "{status}");
    let out = d.ds01(&["admin", "unlock-host-gpus", "--root", &root]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(modes(r), before, "undone byte for byte");
    assert!(!r.join(ds01::host_gpus::MODPROBE_CONF).exists());
    assert!(host_check(&d, r).starts_with("fail"));

    // A time-limited exception, on the real group: granted, then taken
    // away by the reaper's pass once its time is past; both audited.
    let u = users[0].0.as_str();
    let in_group = || {
        let out = std::process::Command::new("id")
            .args(["-nG", u])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .any(|g| g == ds01::host_gpus::GROUP)
    };
    let out = d.ds01(&["admin", "bare-metal", "grant", u, "2s"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(in_group());
    let listed = text(&d.ds01(&["admin", "bare-metal", "list"]));
    assert!(listed.contains(u), "{listed}");
    let out = d.ds01(&["reap"]);
    assert!(in_group(), "not yet: {}", text(&out));
    std::thread::sleep(Duration::from_millis(2500));
    let out = d.ds01(&["reap"]);
    assert!(
        text(&out).contains(&format!("{u}'s bare-metal grant ended")),
        "{}",
        text(&out)
    );
    assert!(!in_group());
    let out = d.ds01(&["admin", "bare-metal", "grant", u, "1h"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = d.ds01(&["admin", "bare-metal", "revoke", u]);
    assert!(out.status.success() && !in_group(), "{}", text(&out));
    let kinds: Vec<String> = d
        .env
        .events()
        .iter()
        .filter(|e| e["user"] == u)
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["grant", "revoke", "grant", "revoke"]);
    for bad in [vec!["grant", u, "soon"], vec!["grant", "nobody-here", "1h"]] {
        let mut args = vec!["admin", "bare-metal"];
        args.extend(bad);
        let out = d.ds01(&args);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    }

    // On this host's own /dev (the simulated nodes): after the lock, a GPU
    // container still opens its device as a non-root user inside. The
    // simulated node has no driver behind it, so an open that passes the
    // permission check ends in "No such device or address".
    let out = d.ds01(&["admin", "lock-host-gpus"]);
    struct Unlock<'a>(&'a Dockerd);
    impl Drop for Unlock<'_> {
        fn drop(&mut self) {
            let out = self.0.ds01(&["admin", "unlock-host-gpus"]);
            assert!(out.status.success(), "{}", text(&out));
        }
    }
    let _unlock = Unlock(&d);
    assert!(out.status.success(), "{}", text(&out));
    let locked = modes(Path::new("/"));
    assert!(
        locked.iter().all(|(_, _, _, m)| m & 0o007 == 0),
        "{locked:?}"
    );
    let out = d.docker(&[
        "run",
        "--rm",
        "--user",
        "1000:1000",
        "-e",
        "NVIDIA_VISIBLE_DEVICES=all",
        "busybox:local",
        "sh",
        "-c",
        "for n in /dev/nvidia[0-9]*; do (exec 3<>$n) 2>&1; done; ls -ln /dev/nvidia[0-9]*",
    ]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(!said.contains("Permission denied"), "{said}");
    assert!(said.contains("No such device or address"), "{said}");
}
