//! Allocation through Docker: every way of asking, every way out, the
//! queue, the reaper, and each container reaching only its own device.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::harness::*;

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
    // And one on a device no container holds: a process of the host's,
    // outside ds01 (this test's own).
    let before: serde_json::Value =
        serde_json::from_slice(&d.ds01(&["gpus", "--json"]).stdout).unwrap();
    let free_dev = before["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["held_by"].is_null())
        .unwrap()["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let me = std::process::id();
    std::fs::write(
        &activity,
        format!(
            "{{\"{busy_dev}\": {{\"processes\": [{busy_pid}]}}, \"{free_dev}\": {{\"processes\": [{me}]}}}}"
        ),
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
    assert_eq!(dev["processes"][0]["outside"], false);
    let free = gpus["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["uuid"] == free_dev.as_str())
        .unwrap();
    assert_eq!(free["processes"][0]["pid"], me);
    assert_eq!(free["processes"][0]["outside"], true);
    assert_eq!(free["processes"][0]["user"], "root");
    let table = String::from_utf8_lossy(&d.ds01(&["gpus"]).stdout).into_owned();
    assert!(
        table.contains(&format!("{me} (outside ds01: root)")),
        "{table}"
    );

    let reap = |args: &[&str]| {
        let mut a = vec!["reap", "--json"];
        a.extend(args);
        json_pairs(&d.ds01(&a), "name", "action")
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

#[test]
fn a_kind_of_container_has_its_own_idle_timeout() {
    let _g = lock();
    // Compose services idle out after 3 s, anything else after an hour.
    let extra = "reap_warning = \"1s\"\nactivity = \"none\"\n[defaults]\nidle_timeout = \"1h\"\n\
                 [kinds.compose]\nidle_timeout = \"3s\"\n";
    let Some(d) = start(extra, false) else {
        return;
    };
    for (name, labels) in [
        ("svc", vec!["--label", "com.docker.compose.project=p"]),
        ("plain", vec![]),
    ] {
        let mut args = vec!["run", "-d", "--name", name, "--label", "ds01.user=alice"];
        args.extend(labels);
        args.extend([
            "-e",
            "NVIDIA_VISIBLE_DEVICES=all",
            "busybox:local",
            "sleep",
            "300",
        ]);
        d.ok(&args);
    }
    d.expect_held(2);
    let reap = || json_pairs(&d.ds01(&["reap", "--json"]), "name", "action");
    assert!(reap().is_empty(), "first sample");
    std::thread::sleep(Duration::from_millis(2200));
    assert_eq!(reap(), [("svc".to_string(), "warn".to_string())]);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(reap(), [("svc".to_string(), "stop".to_string())]);
    assert_eq!(d.state_of("svc"), "exited");
    assert_eq!(d.state_of("plain"), "running");
    let limits = d.ds01(&["limits", "--user", "alice"]);
    let text = String::from_utf8_lossy(&limits.stdout);
    assert!(
        text.contains("idle timeout (compose)") && text.contains("from kinds.compose"),
        "{text}"
    );
}
