//! The shim against a stand-in runc that records its argv and the
//! config.json it was given. Needs no root.

mod common;

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use common::fake::*;
use common::*;

#[test]
fn container_without_gpu_reaches_runc_untouched() {
    let f = Fake::new("");
    let b = f.bundle("plain", "plain.json");
    let before = std::fs::read(b.join("config.json")).unwrap();
    let args = docker_create(&b, "plain1");
    let out = f.create(&b, "plain1", &[]);
    quiet(&out);
    assert!(out.status.success());
    let expected: Vec<String> = args
        .iter()
        .map(|a| a.to_str().unwrap().to_string())
        .collect();
    assert_eq!(f.last_argv(), expected);
    assert_eq!(
        std::fs::read(b.join("config.json")).unwrap(),
        before,
        "config.json changed"
    );
    assert!(f.env.held().is_empty());
}

#[test]
fn the_first_look_judges_binds_by_this_host_s_docker_root() {
    let f = Fake::new("");
    // Docker's spec with its binds under /var/lib/docker, Docker's default
    // root, on a host whose root is elsewhere (the config's): those binds
    // are not Docker's own there, but host paths like any other.
    let b = f.bundle("elsewhere", "plain.json");
    let spec = std::fs::read_to_string(b.join("config.json")).unwrap();
    let data = format!("{}/", f.env.path("data").display());
    std::fs::write(
        b.join("config.json"),
        spec.replace(&data, "/var/lib/docker/"),
    )
    .unwrap();
    // Its owner is no admin: a bind of a host path is refused.
    let record = f.env.path("data/containers/elsewhere1");
    std::fs::create_dir_all(&record).unwrap();
    std::fs::write(
        record.join("config.v2.json"),
        r#"{"Config": {"Labels": {"ds01.user": "no-such-user-ds01"}}}"#,
    )
    .unwrap();
    let out = f.create(&b, "elsewhere1", &[]);
    assert!(!out.status.success(), "passed untouched");
    let why = last_oci_error(&b.join("log.json")).unwrap_or_default();
    assert!(
        why.contains("a bind mount of /var/lib/docker/containers/"),
        "{why}"
    );
    // The same spec with this host's root is Docker's own, cleared at a look.
    let b = f.bundle("here", "plain.json");
    let out = f.create(&b, "elsewhere1", &[]);
    quiet(&out);
    assert!(out.status.success());
}

#[test]
fn other_commands_pass_through_byte_for_byte() {
    let f = Fake::new("");
    // Not UTF-8, an empty argument, flags runc alone understands.
    let odd = OsString::from_vec(vec![b'i', b'd', 0xff, 0xfe]);
    let args = vec![
        OsString::from("--root"),
        OsString::from("/r"),
        OsString::from("kill"),
        odd.clone(),
        OsString::from(""),
        OsString::from("9"),
    ];
    let out = f.run(&args, &[]);
    quiet(&out);
    let text = std::fs::read(f.log()).unwrap();
    let mut want = b"---\n--root\n/r\nkill\n".to_vec();
    want.extend_from_slice(odd.as_encoded_bytes());
    want.extend_from_slice(b"\n\n9\n");
    assert_eq!(text, want);
    // runc's exit status comes back as is.
    let out = f.run(&os(&["--version"]), &[("FAKE_RUNC_EXIT", "3")]);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn gpu_container_gets_exactly_its_slice_and_hook() {
    let f = Fake::new("");
    let b = f.bundle("gpu", "gpu.json");
    let out = f.create(&b, "gpu1", &[("FAKE_PID", &me())]);
    quiet(&out);
    assert!(out.status.success());

    let held = f.env.held();
    assert_eq!(held.len(), 1);
    let (uuid, holder) = &held[0];
    assert!(uuid.starts_with("MIG-"));
    assert_eq!(holder, "gpu1");

    let spec = f.last_spec();
    let env = env_of(&spec);
    let visible: Vec<_> = env
        .iter()
        .filter(|e| e.starts_with("NVIDIA_VISIBLE_DEVICES="))
        .collect();
    assert_eq!(visible, [&format!("NVIDIA_VISIBLE_DEVICES={uuid}")]);
    let paths = device_paths(&spec);
    for p in [
        "/dev/nvidiactl",
        "/dev/nvidia-uvm",
        "/dev/nvidia-uvm-tools",
        "/dev/nvidia1",
    ] {
        assert!(paths.contains(&p.to_string()), "{p} missing from {paths:?}");
    }
    assert_eq!(
        paths
            .iter()
            .filter(|p| p.starts_with("/dev/nvidia-caps/"))
            .count(),
        2
    );
    assert!(!paths.contains(&"/dev/nvidia0".to_string()));
    // Every node has an rwm allow rule.
    let rules = spec["linux"]["resources"]["devices"].as_array().unwrap();
    for d in spec["linux"]["devices"].as_array().unwrap() {
        assert!(rules.iter().any(|r| r["allow"] == true
            && r["major"] == d["major"]
            && r["minor"] == d["minor"]
            && r["access"] == "rwm"));
    }
    // The hook is the small program beside the runtime, told where to mark.
    let hook = &spec["hooks"]["poststop"][0];
    let poststop = std::path::Path::new(shim()).with_file_name("ds01-poststop");
    assert_eq!(hook["path"], poststop.to_str().unwrap());
    assert_eq!(hook["args"][1], "poststop");
    assert_eq!(
        hook["args"][3],
        f.env.path("state/released").to_str().unwrap()
    );
    let annotation: serde_json::Value =
        serde_json::from_str(spec["annotations"]["ds01.allocation"].as_str().unwrap()).unwrap();
    assert_eq!(annotation["devices"][0], uuid.as_str());

    // runc took the runtime's place, so no init pid is noted: the record
    // is judged by runc's state, which names a live init, and its marker
    // stays for the record's life, held by no one now that runc is done.
    let record = &f.env.ledger()["records"][0];
    assert!(record["pid"].is_null(), "{record}");
    let marker = f
        .env
        .path("state/pending")
        .join(record["alloc_id"].as_str().unwrap());
    assert!(marker.exists());
    let out = f.env.cli(&["gc"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "nothing to reclaim\n");
    assert_eq!(f.env.held().len(), 1);
    // Its delete (the stand-in runs no hook) and then Docker's `delete
    // --force` free the slice, and the marker goes with the record.
    assert!(f.run(&docker_delete(&b, "gpu1"), &[]).status.success());
    assert!(f.run(&docker_delete(&b, "gpu1"), &[]).status.success());
    assert!(f.env.held().is_empty());
    assert!(!marker.exists());
}

#[test]
fn delete_and_hook_release_idempotently() {
    let f = Fake::new("");
    let b = f.bundle("gpu", "gpu.json");
    assert!(f.create(&b, "c1", &[("FAKE_PID", &me())]).status.success());
    let alloc = f.env.ledger()["records"][0]["alloc_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(f.env.held().len(), 1);

    // The runtime's own hook entry (containers of an older ds01, or no
    // ds01-poststop beside it), as runc runs it: the OCI state on stdin.
    let hook = |alloc: &str| {
        let spec = serde_json::json!({"path": shim(), "args": [shim(), "hook", "poststop", alloc],
            "env": [format!("DS01_CONFIG={}", f.env.config.display())]});
        run_hook(&spec, "c1", &b).status
    };
    assert!(hook(&alloc).success());
    assert!(f.env.held().is_empty());
    assert!(hook(&alloc).success(), "a second hook run is harmless");

    // docker start: create again with the same id gets a fresh allocation.
    assert!(f.create(&b, "c1", &[("FAKE_PID", &me())]).status.success());
    let second = f.env.ledger()["records"][0]["alloc_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(second, alloc);
    // The old run's hook, arriving late, does not free the new run's slice.
    assert!(hook(&alloc).success());
    assert_eq!(f.env.held().len(), 1);

    // delete frees it once runc no longer knows the container: not while
    // runc's own delete (which would run the hook; the stand-in runs none)
    // has yet to remove it, then at the next delete.
    let out = f.run(&docker_delete(&b, "c1"), &[]);
    quiet(&out);
    assert_eq!(f.env.held().len(), 1);
    let out = f.run(&docker_delete(&b, "c1"), &[]);
    assert!(out.status.success());
    assert!(f.env.held().is_empty());
}

/// Runs the poststop hook a spec names, as runc does: its args, the OCI
/// state on stdin.
fn run_hook(hook: &serde_json::Value, id: &str, bundle: &std::path::Path) -> std::process::Output {
    use std::io::Write;
    let args: Vec<&str> = hook["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let mut cmd = std::process::Command::new(hook["path"].as_str().unwrap());
    // runc gives a hook the environment the spec lists, or its own.
    if let Some(env) = hook["env"].as_array() {
        cmd.env_clear();
        for kv in env.iter().filter_map(|v| v.as_str()?.split_once('=')) {
            cmd.env(kv.0, kv.1);
        }
    }
    let mut child = cmd
        .args(&args[1..])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let state =
        serde_json::json!({"ociVersion": "1.0.2", "id": id, "status": "stopped", "bundle": bundle});
    child
        .stdin
        .take()
        .unwrap()
        .write_all(state.to_string().as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn the_poststop_hook_frees_at_once_and_the_next_write_logs_and_audits_it() {
    let f = Fake::new("");
    let b = f.bundle("gpu", "gpu.json");
    assert!(f.create(&b, "c1", &[("FAKE_PID", &me())]).status.success());
    let hook = f.last_spec()["hooks"]["poststop"][0].clone();
    assert_eq!(f.env.held().len(), 1);

    let out = run_hook(&hook, "c1", &b);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
    // Free for every reader at once, before any write.
    assert!(f.env.held().is_empty());
    assert!(f.env.ledger()["records"].as_array().unwrap().is_empty());
    assert!(!f.env.shim_log().contains("released"));
    // A second run (a delete retried) is harmless.
    assert!(run_hook(&hook, "c1", &b).status.success());

    // The next create takes the record out, logs and audits its release.
    let b2 = f.bundle("gpu2", "gpu.json");
    assert!(f.create(&b2, "c2", &[("FAKE_PID", &me())]).status.success());
    f.env.assert_log_contains(&["from container c1 (poststop)"]);
    let events = f.env.events();
    assert!(
        events.iter().any(|e| e["event"] == "release"
            && e["container_id"] == "c1"
            && e["reason"] == "poststop"),
        "{events:?}"
    );
    let file = std::fs::read_to_string(f.env.path("state/ledger.json")).unwrap();
    assert!(!file.contains(r#""c1""#), "{file}");
    let marks = std::fs::read_dir(f.env.path("state/released"))
        .unwrap()
        .count();
    assert_eq!(marks, 0, "the mark goes with the record");

    // The first run's hook, late, does not free the second run's device.
    assert!(run_hook(&hook, "c1", &b).status.success());
    assert_eq!(f.env.held().len(), 1);
}

#[test]
fn the_poststop_hook_refuses_arguments_that_are_not_an_allocation() {
    let f = Fake::new("");
    let hook = std::path::Path::new(shim()).with_file_name("ds01-poststop");
    let released = f.env.path("state/released");
    let dir = released.to_str().unwrap();
    for args in [
        vec!["poststop", "../../etc/passwd", dir],
        vec!["poststop", "a/b", dir],
        vec!["poststop", "", dir],
        vec!["poststop", "18ec-1", "relative/released"],
        vec!["hook", "18ec-1", dir],
        vec!["poststop", "18ec-1"],
    ] {
        let out = std::process::Command::new(&hook)
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("ds01-poststop: ") || err.starts_with("usage: "),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    assert!(!released.exists(), "nothing was marked");
    // A state directory that is not there: an error naming the path.
    let out = std::process::Command::new(&hook)
        .args(["poststop", "18ec-1", "/nonexistent/ds01/released"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("'/nonexistent/ds01/released/18ec-1'"), "{err}");
}

#[test]
fn a_runtime_without_the_hook_program_beside_it_frees_in_its_own_hook() {
    let f = Fake::new("");
    let dir = f.env.path("alone");
    std::fs::create_dir_all(&dir).unwrap();
    // The runtime and the helpers it asks (the CLI for the inventory
    // snapshot, ds01-accounts), without ds01-poststop.
    for name in ["ds01-runtime", "ds01", "ds01-accounts"] {
        let from = std::path::Path::new(shim()).with_file_name(name);
        std::fs::copy(from, dir.join(name)).unwrap();
    }
    let alone = dir.join("ds01-runtime");
    let b = f.bundle("gpu", "gpu.json");
    let out = std::process::Command::new(&alone)
        .args(docker_create(&b, "c1"))
        .env("DS01_CONFIG", &f.env.config)
        .env("FAKE_RUNC_LOG", f.log())
        .env("FAKE_PID", me())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?} {}", f.env.shim_log());
    let hook = f.last_spec()["hooks"]["poststop"][0].clone();
    assert_eq!(hook["path"], alone.to_str().unwrap());
    assert_eq!(hook["args"][1], "hook");
    assert!(run_hook(&hook, "c1", &b).status.success());
    assert!(f.env.held().is_empty());
    f.env.assert_log_contains(&["from container c1 (poststop)"]);
}

#[test]
fn a_failed_create_keeps_runc_s_status_and_its_delete_frees_the_slice() {
    let f = Fake::new("");
    let b = f.bundle("gpu", "gpu.json");
    let out = f.create(&b, "bad", &[("FAKE_RUNC_EXIT", "1")]);
    quiet(&out);
    assert_eq!(out.status.code(), Some(1));
    // runc took the runtime's place: the record stays until the `delete
    // --force` a failed create gets from Docker (or a create that wants
    // the slice reclaims it: runc knows no such container).
    assert_eq!(f.env.held().len(), 1);
    let mut delete = docker_delete(&b, "bad");
    delete.insert(delete.len() - 1, "--force".into());
    let out = f.run(&delete, &[]);
    quiet(&out);
    assert!(f.env.held().is_empty());
    f.env.assert_log_contains(&["from container bad (delete)"]);
    assert_eq!(
        std::fs::read_dir(f.env.path("state/pending"))
            .unwrap()
            .count(),
        0,
        "its marker went with the record"
    );
}

#[test]
fn exhausted_slices_fail_create_with_the_reason_in_runc_log() {
    let f = Fake::new("");
    for i in 0..7 {
        let b = f.bundle(&format!("b{i}"), "gpu.json");
        assert!(
            f.create(&b, &format!("c{i}"), &[("FAKE_PID", &me())])
                .status
                .success()
        );
    }
    let held = f.env.held();
    let mut uuids: Vec<_> = held.iter().map(|h| h.0.clone()).collect();
    uuids.sort();
    uuids.dedup();
    assert_eq!(uuids.len(), 7, "seven distinct slices");

    let b = f.bundle("b7", "gpu.json");
    let before = std::fs::read(b.join("config.json")).unwrap();
    let calls = f.calls();
    let out = f.create(&b, "c7", &[("FAKE_PID", &me())]);
    quiet(&out);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        last_oci_error(&b.join("log.json")).unwrap(),
        "ds01: no 1g.10gb MIG slice free (7 of 7 in use); try later or see 'container ls --all'; \
         wait for one with DS01_GPU_WAIT=30m"
    );
    assert_eq!(
        f.calls(),
        calls,
        "runc must not run for a refused container"
    );
    assert_eq!(std::fs::read(b.join("config.json")).unwrap(), before);
}

#[test]
fn full_gpu_needs_the_config_switch() {
    let f = Fake::new("");
    let b = f.bundle("gpu", "plain.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("config.json")).unwrap()).unwrap();
    spec["process"]["env"].as_array_mut().unwrap().extend([
        serde_json::json!("NVIDIA_VISIBLE_DEVICES=all"),
        serde_json::json!("DS01_GPU_PROFILE=full"),
    ]);
    std::fs::write(b.join("config.json"), spec.to_string()).unwrap();
    let out = f.create(&b, "full", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        last_oci_error(&b.join("log.json"))
            .unwrap()
            .contains("allow_full_gpu = false")
    );

    let f = Fake::new("[defaults]\nallow_full_gpu = true\n");
    let b2 = f.bundle("gpu", "plain.json");
    std::fs::copy(b.join("config.json"), b2.join("config.json")).unwrap();
    let out = f.create(&b2, "full", &[("FAKE_PID", &me())]);
    quiet(&out);
    assert!(out.status.success());
    let spec = f.last_spec();
    assert!(device_paths(&spec).contains(&"/dev/nvidia0".to_string()));
    assert!(
        !device_paths(&spec)
            .iter()
            .any(|p| p.starts_with("/dev/nvidia-caps"))
    );
}

#[test]
fn broken_config_refuses_gpu_but_passes_plain_containers() {
    let f = Fake::new("colour = \"blue\"\n");
    let b = f.bundle("gpu", "gpu.json");
    let out = f.create(&b, "g", &[]);
    quiet(&out);
    assert_eq!(out.status.code(), Some(1));
    let msg = last_oci_error(&b.join("log.json")).unwrap();
    assert!(
        msg.contains(f.env.config.to_str().unwrap()) && msg.contains("unknown key \"colour\""),
        "{msg}"
    );

    let p = f.bundle("plain", "plain.json");
    let out = f.create(&p, "p", &[]);
    quiet(&out);
    assert!(
        out.status.success(),
        "a container without GPU still starts: {:?}",
        last_oci_error(&p.join("log.json"))
    );
    assert_eq!(f.last_argv().last().unwrap(), "p");
}

#[test]
fn shim_killed_between_allocating_and_runc_is_reclaimed() {
    let f = Fake::new("");
    let b = f.bundle("slow", "gpu.json");
    // runc stalls, so the shim sits between allocating and runc's return.
    let mut c = f.env.shim();
    c.env("FAKE_RUNC_LOG", f.log())
        .env("FAKE_RUNC_SLEEP", "30")
        .args(docker_create(&b, "slow"));
    // Its own process group, so the stalled stand-in dies with it.
    std::os::unix::process::CommandExt::process_group(&mut c, 0);
    let mut child = c.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while f.env.held().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no allocation appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    child.wait().unwrap();
    assert_eq!(f.env.held().len(), 1, "the record outlives the shim");

    // The next create reclaims it: all seven slices can be had again.
    for i in 0..7 {
        let b = f.bundle(&format!("n{i}"), "gpu.json");
        let out = f.create(&b, &format!("n{i}"), &[("FAKE_PID", &me())]);
        assert!(
            out.status.success(),
            "{:?}",
            last_oci_error(&b.join("log.json"))
        );
    }
    assert!(!f.env.held().iter().any(|h| h.1 == "slow"));
    f.env.assert_log_contains(&["reclaimed"]);
}

/// Creates `id` with a live process (`sleep 60`) as its init; kill it to
/// make the init die.
fn create_with_init(f: &Fake, b: &std::path::Path, id: &str) -> std::process::Child {
    let init = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let pid = init.id().to_string();
    assert!(f.create(b, id, &[("FAKE_PID", &pid)]).status.success());
    init
}

#[test]
fn gc_reclaims_containers_whose_init_died() {
    let f = Fake::new("");
    let b = f.bundle("gpu", "gpu.json");
    let mut sleeper = create_with_init(&f, &b, "c1");
    let out = f.env.cli(&["gc"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "nothing to reclaim\n");
    assert_eq!(f.env.held().len(), 1);
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    let out = f.env.cli(&["gc", "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["container_id"], "c1");
    assert!(v[0]["reason"].as_str().unwrap().contains("dead"));
    assert!(f.env.held().is_empty());
}

#[test]
fn a_container_created_again_drops_its_earlier_run_s_missed_release() {
    let f = Fake::new("");
    let b = f.bundle("gpu", "gpu.json");
    let mut sleeper = create_with_init(&f, &b, "c1");
    let first = f.env.held();
    // Its release was missed (runc's delete killed between removing the
    // container and running the hook): the record stays, its init dead.
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    assert!(f.create(&b, "c1", &[("FAKE_PID", &me())]).status.success());
    let records = f.env.ledger()["records"].as_array().unwrap().clone();
    assert_eq!(records.len(), 1, "one record per container: {records:?}");
    assert!(records[0]["pid"].is_null(), "judged by runc's state");
    f.env
        .assert_log_contains(&[&format!("reclaimed {} from container c1", first[0].0)]);
    // An earlier run whose container runc still knows is not touched.
    let b2 = f.bundle("gpu2", "gpu.json");
    let mut live = create_with_init(&f, &b2, "c2");
    assert!(f.create(&b2, "c2", &[("FAKE_PID", &me())]).status.success());
    let c2 = f.env.held().iter().filter(|h| h.1 == "c2").count();
    live.kill().unwrap();
    live.wait().unwrap();
    assert_eq!(c2, 2, "a live init keeps its record");
}

/// A GPU bundle asking for a profile no GPU has.
fn huge_profile(f: &Fake) -> std::path::PathBuf {
    let b = f.bundle("gpu", "gpu.json");
    let text = std::fs::read_to_string(b.join("config.json")).unwrap();
    std::fs::write(
        b.join("config.json"),
        text.replace("DS01_GPU_PROFILE=1g.10gb", "DS01_GPU_PROFILE=huge"),
    )
    .unwrap();
    b
}

#[test]
fn bad_profile_is_refused_plainly() {
    let f = Fake::new("");
    let b = huge_profile(&f);
    let out = f.create(&b, "c", &[]);
    quiet(&out);
    assert_eq!(out.status.code(), Some(1));
    let msg = last_oci_error(&b.join("log.json")).unwrap();
    assert!(
        msg.starts_with("ds01: DS01_GPU_PROFILE=\"huge\" is not a GPU profile"),
        "{msg}"
    );
}

#[test]
fn under_conmon_the_refusal_leaves_its_prefix_to_podman() {
    // podman prints "<runtime name>: <message>": "ds01: ds01: ..." under
    // conmon would say the name twice. A script named conmon stands in.
    let f = Fake::new("");
    let b = huge_profile(&f);
    let conmon = f.env.path("conmon");
    // Not `exec`: the shim must be conmon's child.
    std::fs::write(&conmon, "#!/bin/sh\n\"$@\"\nexit $?\n").unwrap();
    std::fs::set_permissions(&conmon, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = std::process::Command::new(&conmon)
        .arg(shim())
        .args(docker_create(&b, "c"))
        .env("DS01_CONFIG", &f.env.config)
        .env("FAKE_RUNC_LOG", f.log())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let msg = last_oci_error(&b.join("log.json")).unwrap();
    assert!(
        msg.starts_with("DS01_GPU_PROFILE=\"huge\" is not a GPU profile"),
        "{msg}"
    );
    // The shim's own log keeps the whole line.
    f.env
        .assert_log_contains(&["ds01: DS01_GPU_PROFILE=\"huge\""]);
}

#[test]
fn gpus_lists_inventory_and_holders() {
    let f = Fake::new("");
    let out = f.env.cli(&["gpus"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("GPU 0  NVIDIA A100-SXM4-80GB  full GPU, free\nGPU 1  NVIDIA A100-SXM4-80GB  MIG, 7 slices, all free\n"), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.ends_with("  free")).count(),
        8,
        "{text}"
    );

    let b = f.bundle_of("e", "erin");
    assert!(
        f.create(&b, "0123456789abcdef", &[("FAKE_PID", &me())])
            .status
            .success()
    );
    let text = String::from_utf8(f.env.cli(&["gpus"]).stdout).unwrap();
    assert!(
        text.contains(
            "GPU 1  NVIDIA A100-SXM4-80GB  MIG, 1 of 7 slices in use by erin (0123456789ab), 6 free"
        ),
        "{text}"
    );
    let line = text.lines().find(|l| l.contains("MIG 7/0")).unwrap();
    assert!(line.contains("erin  0123456789ab"), "{line}");

    let v = f.env.gpus();
    assert_eq!(v["devices"].as_array().unwrap().len(), 8);
    assert_eq!(v["gpus"][1]["mig_enabled"], true);
    assert_eq!(v["gpus"][1]["devices_in_use"], 1);
    assert_eq!(v["devices"][1]["held_by"]["user"], "erin");
    assert_eq!(v["devices"][1]["held_by"]["identity_source"], "env");
}

#[test]
fn exec_in_a_gpu_container_sees_the_allocated_uuids() {
    let f = Fake::new("");
    let b = f.bundle("gpu", "gpu.json");
    assert!(f.create(&b, "c1", &[("FAKE_PID", &me())]).status.success());
    let uuid = f.env.held()[0].0.clone();
    let process = f.env.path("process.json");
    let original = r#"{"args":["sh"],"env":["PATH=/bin","NVIDIA_VISIBLE_DEVICES=all"],"cwd":"/"}"#;
    std::fs::write(&process, original).unwrap();
    let root = format!("{}/../runc-root", b.display());
    let exec = |id: &str| {
        let args = os(&[
            "--root",
            &root,
            "exec",
            "--process",
            process.to_str().unwrap(),
            "--detach",
            id,
        ]);
        let out = f.run(&args, &[]);
        quiet(&out);
        assert!(out.status.success());
        // runc got its argv untouched.
        assert_eq!(
            f.last_argv(),
            args.iter()
                .map(|a| a.to_str().unwrap().to_string())
                .collect::<Vec<_>>()
        );
    };
    // A container that holds nothing: the process spec is left alone.
    exec("other");
    assert_eq!(std::fs::read_to_string(&process).unwrap(), original);
    exec("c1");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&process).unwrap()).unwrap();
    assert_eq!(
        v["env"],
        serde_json::json!(["PATH=/bin", format!("NVIDIA_VISIBLE_DEVICES={uuid}")])
    );
    assert_eq!(v["args"], serde_json::json!(["sh"]));
}

#[test]
fn owners_are_recorded_and_unknown_owners_can_be_refused() {
    let f = Fake::new("unknown_owner = \"refuse\"\n");
    let anon = f.bundle("anon", "gpu.json");
    let out = f.create(&anon, "anon", &[]);
    quiet(&out);
    assert_eq!(out.status.code(), Some(1));
    let msg = last_oci_error(&anon.join("log.json")).unwrap();
    assert!(
        msg.contains("owner is unknown") && msg.contains("--label ds01.user="),
        "{msg}"
    );

    let b = f.bundle("erin", "gpu.json");
    let text = std::fs::read_to_string(b.join("config.json")).unwrap();
    std::fs::write(
        b.join("config.json"),
        text.replace(
            "\"DS01_GPU_PROFILE=1g.10gb\"",
            "\"DS01_GPU_PROFILE=1g.10gb\",\"DS01_USER=erin\"",
        ),
    )
    .unwrap();
    assert!(
        f.create(&b, "erin1", &[("FAKE_PID", &me())])
            .status
            .success()
    );
    let rec = &f.env.ledger()["records"][0];
    assert_eq!(
        (rec["user"].as_str(), rec["identity_source"].as_str()),
        (Some("erin"), Some("env"))
    );
    assert!((rec["gpueq"].as_f64().unwrap() - 1.0 / 7.0).abs() < 1e-9);

    let events = f.env.events();
    let kinds: Vec<(&str, Option<&str>)> = events
        .iter()
        .map(|e| (e["event"].as_str().unwrap(), e["user"].as_str()))
        .collect();
    assert_eq!(kinds, [("refuse", None), ("allocate", Some("erin"))]);
    assert_eq!(events[1]["devices"], rec["devices"]);
    assert!(
        events[0]["reason"]
            .as_str()
            .unwrap()
            .contains("owner is unknown")
    );
}

#[test]
fn limits_show_each_value_with_its_source_and_the_usage() {
    let f = Fake::new(
        "[defaults]\nmax_gpu_containers = 2\n\n[groups.students]\nmembers = [\"carol\"]\nmax_gpu_equivalents = 0.3\n",
    );
    let b = f.bundle_of("c", "carol");
    assert!(
        f.create(&b, "carol1", &[("FAKE_PID", &me())])
            .status
            .success()
    );

    let out = f.env.cli(&["limits", "--user", "carol", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["groups"], serde_json::json!(["students"]));
    assert_eq!(
        v["limits"]["max_gpu_equivalents"],
        serde_json::json!({"value": 0.3, "from": "group students"})
    );
    assert_eq!(
        v["limits"]["max_gpu_containers"],
        serde_json::json!({"value": 2, "from": "defaults"})
    );
    assert_eq!(v["usage"]["containers"], 1);
    assert_eq!(v["containers"][0]["held"], "MIG 1g.10gb on GPU 1");

    let out = f.env.cli(&["check-limits", "--user", "carol"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("GPU-equivalents          0.143 used of 0.3"),
        "{text}"
    );
    assert!(text.contains("from group students"), "{text}");
    assert!(text.contains("1 running of 2"), "{text}");
    assert!(
        text.contains("memory (all containers)  no limit                 from built-in"),
        "{text}"
    );
    // Someone else: defaults, nothing in use.
    let out = f.env.cli(&["limits", "--user", "dave"]);
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("No GPU containers running.")
    );
}

#[test]
fn a_detached_run_keeps_its_devices_until_the_container_ends() {
    let f = Fake::new("");
    let b = f.bundle("d", "gpu.json");
    let bs = b.to_str().unwrap();
    let pid = format!("{bs}/init.pid");
    let args = os(&[
        "--root",
        &format!("{bs}/../runc-root"),
        "run",
        "--detach",
        "--bundle",
        bs,
        "--pid-file",
        &pid,
        "d1",
    ]);
    let out = f.run(&args, &[("FAKE_PID", &me())]);
    quiet(&out);
    assert!(out.status.success());
    assert_eq!(
        f.env.held().len(),
        1,
        "runc run -d returned, the container runs on"
    );
    assert!(
        f.env.ledger()["records"][0]["pid"].is_null(),
        "judged by runc's state"
    );
    // A foreground run that is over frees at once.
    let b2 = f.bundle("fg", "gpu.json");
    let args = os(&[
        "--root",
        &format!("{}/../runc-root", b2.display()),
        "run",
        "--bundle",
        b2.to_str().unwrap(),
        "fg1",
    ]);
    assert!(f.run(&args, &[]).status.success());
    assert_eq!(f.env.held().len(), 1);
}

#[test]
fn a_runc_key_pointing_back_at_the_shim_is_refused_not_looped() {
    let f = Fake::new("");
    let text = std::fs::read_to_string(&f.env.config).unwrap();
    let fake = format!("{:?}", repo().join("tests/fake_runc.sh"));
    std::fs::write(&f.env.config, text.replace(&fake, &format!("{:?}", shim()))).unwrap();
    let b = f.bundle("p", "plain.json");
    let out = f.create(&b, "p1", &[]);
    assert_eq!(out.status.code(), Some(1));
    let msg = last_oci_error(&b.join("log.json")).unwrap();
    assert!(msg.contains("is ds01-runtime itself"), "{msg}");
}
