//! One device, one container, no way around the allocator: each route a
//! user or a crash could take, against the shim with a stand-in runc.
//! Needs no root.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::fake::*;
use common::*;

const ADMIN: &str = "[groups.ds01-admin]\nmembers = [\"boss\"]\n";

fn edit(bundle: &Path, f: impl FnOnce(&mut Value)) {
    let p = bundle.join("config.json");
    let mut v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
}

fn push(v: &mut Value, pointer: &str, item: Value) {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let slot = v.pointer_mut(parent).unwrap();
    let arr = slot
        .as_object_mut()
        .unwrap()
        .entry(key)
        .or_insert(json!([]));
    arr.as_array_mut().unwrap().push(item);
}

fn env(v: &mut Value, var: &str) {
    push(v, "/process/env", json!(var));
}

fn node(path: &str, major: u32, minor: u32) -> Value {
    json!({"path": path, "type": "c", "major": major, "minor": minor, "fileMode": 438, "uid": 0, "gid": 0})
}

fn rule(t: &str, major: i64, minor: i64, access: &str) -> Value {
    json!({"allow": true, "type": t, "major": major, "minor": minor, "access": access})
}

fn error_of(b: &Path) -> String {
    last_oci_error(&b.join("log.json")).unwrap_or_default()
}

fn refused(f: &Fake, b: &Path, out: &Output, words: &str) {
    assert_eq!(out.status.code(), Some(1), "{}", error_of(b));
    let e = error_of(b);
    assert!(e.contains(words), "wanted {words:?} in {e:?}");
    assert_eq!(f.calls(), 0, "runc must not run a refused container");
    quiet(out);
}

/// Every node the simulated inventory's GPUs have, as `--privileged` copies them.
fn every_host_node() -> Vec<Value> {
    let mut v = vec![
        node("/dev/nvidiactl", 195, 255),
        node("/dev/nvidia-uvm", 511, 0),
        node("/dev/nvidia-uvm-tools", 511, 1),
        node("/dev/nvidia-modeset", 195, 254),
        node("/dev/nvidia0", 195, 0),
        node("/dev/nvidia1", 195, 1),
        node("/dev/dri/card1", 226, 1),
        node("/dev/dri/renderD128", 226, 128),
    ];
    for m in 201..=216 {
        v.push(node(&format!("/dev/nvidia-caps/nvidia-cap{m}"), 236, m));
    }
    v
}

#[test]
fn device_rules_that_open_nvidia_devices_are_refused_for_users() {
    for (r, words) in [
        (
            rule("c", 195, -1, "rwm"),
            "open NVIDIA devices (c 195:* rwm)",
        ),
        (
            rule("c", 195, 3, "rwm"),
            "open NVIDIA devices (c 195:3 rwm)",
        ),
        (rule("c", 511, 0, "rw"), "open NVIDIA devices"),
        (rule("c", 236, -1, "rwm"), "open NVIDIA devices"),
        (rule("c", 226, 128, "rwm"), "open NVIDIA devices"),
        (rule("a", 1, 3, "r"), "may open every device"),
        (rule("a", 1, 3, "m"), "may open every device"),
        (
            json!({"allow": true, "type": "c", "access": "rwm"}),
            "may open every device",
        ),
    ] {
        let f = Fake::new(ADMIN);
        let b = f.bundle("p", "plain.json");
        edit(&b, |v| push(v, "/linux/resources/devices", r.clone()));
        let out = f.create(&b, "p", &[]);
        refused(&f, &b, &out, words);
        assert!(error_of(&b).contains("only members of ds01-admin"), "{r}");
        assert!(f.env.held().is_empty());
        let ev = f.env.events();
        assert_eq!(ev.last().unwrap()["event"], "refuse", "{r}");
    }
}

#[test]
fn a_gpu_node_under_any_path_is_a_request_and_is_replaced() {
    for (extra, what) in [
        (vec![node("/dev/gpu0", 195, 0)], "GPU 0 renamed"),
        (vec![node("/dev/nvidiactl", 195, 255)], "nvidiactl alone"),
        (
            vec![node("/dev/nvidia-caps/nvidia-cap201", 236, 201)],
            "a nvidia-caps node alone",
        ),
        (vec![node("/dev/card", 226, 1)], "GPU 0's DRM node"),
    ] {
        let f = Fake::new("");
        let b = f.bundle("p", "plain.json");
        edit(&b, |v| {
            for n in &extra {
                push(v, "/linux/devices", n.clone());
                let (ma, mi) = (n["major"].as_i64().unwrap(), n["minor"].as_i64().unwrap());
                push(v, "/linux/resources/devices", rule("c", ma, mi, "rwm"));
            }
        });
        let out = f.create(&b, "p", &[("FAKE_PID", &me())]);
        assert!(out.status.success(), "{what}: {}", error_of(&b));
        quiet(&out);
        let held = f.env.held();
        assert_eq!(held.len(), 1, "{what}");
        let spec = f.last_spec();
        let paths: Vec<&str> = spec["linux"]["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["path"].as_str().unwrap())
            .collect();
        assert!(
            !paths.contains(&"/dev/gpu0") && !paths.contains(&"/dev/card"),
            "{what}: {paths:?}"
        );
        // A MIG slice: GPU 1's node and its two caps, plus the driver's nodes.
        assert!(paths.contains(&"/dev/nvidia1"), "{what}: {paths:?}");
        assert!(!paths.contains(&"/dev/nvidia0"), "{what}: {paths:?}");
    }
}

#[test]
fn an_admins_privileged_container_passes_untouched_and_is_written_down() {
    let f = Fake::new(ADMIN);
    let b = f.bundle("priv", "privileged.json");
    edit(&b, |v| {
        v["linux"]["devices"] = json!(every_host_node());
        env(v, "DS01_USER=boss");
        env(v, "NVIDIA_VISIBLE_DEVICES=all");
    });
    let before = std::fs::read(b.join("config.json")).unwrap();
    let out = f.create(&b, "priv", &[]);
    assert!(out.status.success(), "{}", error_of(&b));
    quiet(&out);
    assert_eq!(std::fs::read(b.join("config.json")).unwrap(), before);
    assert_eq!(f.calls(), 1);
    assert!(f.env.held().is_empty(), "nothing allocated");
    let ev = f.env.events();
    let last = ev.last().unwrap();
    assert_eq!(
        (last["event"].as_str(), last["user"].as_str()),
        (Some("bypass"), Some("boss"))
    );
    assert_eq!(last["devices"].as_array().unwrap().len(), 2, "every GPU");

    // The same container of a user is refused.
    let f = Fake::new(ADMIN);
    let b = f.bundle("priv", "privileged.json");
    edit(&b, |v| {
        v["linux"]["devices"] = json!(every_host_node());
        env(v, "DS01_USER=alice");
    });
    let out = f.create(&b, "priv", &[]);
    refused(&f, &b, &out, "may open every device");
    assert!(error_of(&b).contains("(alice is not)"));
}

#[test]
fn every_gpu_node_copied_without_privilege_counts_as_one_device() {
    let f = Fake::new("");
    let b = f.bundle("all", "plain.json");
    edit(&b, |v| {
        for n in every_host_node() {
            let (ma, mi) = (n["major"].as_i64().unwrap(), n["minor"].as_i64().unwrap());
            push(v, "/linux/devices", n);
            push(v, "/linux/resources/devices", rule("c", ma, mi, "rwm"));
        }
    });
    let out = f.create(&b, "all", &[("FAKE_PID", &me())]);
    assert!(out.status.success(), "{}", error_of(&b));
    assert_eq!(f.env.held().len(), 1);
}

#[test]
fn specs_are_read_as_runc_reads_them() {
    // Case-variant keys runc honours: the GPU node under "LINUX"."Devices".
    let gpu_node = "{\"path\":\"/dev/x\",\"type\":\"c\",\"major\":195,\"minor\":0}";
    let f = Fake::new("");
    let b = f.bundle("case", "plain.json");
    let text = std::fs::read_to_string(b.join("config.json")).unwrap();
    std::fs::write(
        b.join("config.json"),
        text.replacen(
            "\"linux\":{",
            &format!("\"LINUX\":{{\"Devices\":[{gpu_node}],"),
            1,
        ),
    )
    .unwrap();
    let out = f.create(&b, "case", &[("FAKE_PID", &me())]);
    assert!(out.status.success(), "{}", error_of(&b));
    assert_eq!(
        f.env.held().len(),
        1,
        "the GPU node under \"LINUX\" is a request"
    );
    let spec = f.last_spec();
    assert!(spec.get("linux").is_some() && spec.get("LINUX").is_none());
    assert!(!spec["linux"]["devices"].to_string().contains("/dev/x"));

    // Two spellings of one field: runc reads both, ds01 refuses.
    let f = Fake::new("");
    let b = f.bundle("case2", "plain.json");
    std::fs::write(
        b.join("config.json"),
        text.replacen(
            "\"linux\":{",
            &format!("\"linux\":{{\"Devices\":[{gpu_node}],\"devices\":[],"),
            1,
        ),
    )
    .unwrap();
    let out = f.create(&b, "case2", &[]);
    refused(&f, &b, &out, "runc reads both as \"devices\"");

    // Trailing bytes after the spec: runc reads the first value.
    let f = Fake::new("");
    let b = f.bundle("trail", "plain.json");
    edit(&b, |v| push(v, "/linux/devices", node("/dev/gpu", 195, 0)));
    let mut bytes = std::fs::read(b.join("config.json")).unwrap();
    bytes.extend_from_slice(b" }garbage");
    std::fs::write(b.join("config.json"), bytes).unwrap();
    let out = f.create(&b, "trail", &[("FAKE_PID", &me())]);
    assert!(out.status.success(), "{}", error_of(&b));
    assert_eq!(f.env.held().len(), 1);

    // A key twice: runc would merge; ds01 refuses.
    let f = Fake::new("");
    let b = f.bundle("dup", "plain.json");
    let text = std::fs::read_to_string(b.join("config.json")).unwrap();
    let text = format!(
        "{},\"linux\":{{}}}}",
        text.trim_end().strip_suffix('}').unwrap()
    );
    std::fs::write(b.join("config.json"), text).unwrap();
    let out = f.create(&b, "dup", &[]);
    refused(&f, &b, &out, "\"linux\" appears twice");

    // Wrong types are refused naming the field, not silently emptied.
    let f = Fake::new("");
    let b = f.bundle("types", "gpu.json");
    edit(&b, |v| v["hooks"] = json!({"poststop": {"path": "/x"}}));
    let out = f.create(&b, "types", &[]);
    refused(&f, &b, &out, "field spec.hooks.poststop must be an array");
}

#[test]
fn invalid_utf8_is_refused_with_a_gpu_and_judged_without() {
    let f = Fake::new("");
    let b = f.bundle("gpu", "gpu.json");
    let text = std::fs::read(b.join("config.json")).unwrap();
    let bad = String::from_utf8(text)
        .unwrap()
        .replacen("\"PATH=", "\"X=\u{1}\",\"PATH=", 1);
    let bad = bad.replace('\u{1}', "\u{fffe}").into_bytes();
    let mut bad = bad;
    let at = bad
        .windows(3)
        .position(|w| w == "\u{fffe}".as_bytes())
        .unwrap();
    bad.splice(at..at + 3, [0xff]);
    std::fs::write(b.join("config.json"), &bad).unwrap();
    let out = f.create(&b, "gpu", &[]);
    refused(&f, &b, &out, "invalid UTF-8");

    let f = Fake::new("");
    let b = f.bundle("plain", "plain.json");
    let text = String::from_utf8(std::fs::read(b.join("config.json")).unwrap()).unwrap();
    let mut bytes = text.replacen("\"PATH=", "\"X=#\",\"PATH=", 1).into_bytes();
    let at = bytes.iter().position(|c| *c == b'#').unwrap();
    bytes[at] = 0xff;
    std::fs::write(b.join("config.json"), &bytes).unwrap();
    let out = f.create(&b, "plain", &[]);
    assert!(out.status.success(), "{}", error_of(&b));
    assert_eq!(
        std::fs::read(b.join("config.json")).unwrap(),
        bytes,
        "untouched"
    );
}

#[test]
fn none_in_any_case_asks_for_nothing_and_a_profile_alone_asks_for_one() {
    let f = Fake::new("");
    let b = f.bundle("none", "plain.json");
    edit(&b, |v| env(v, "NVIDIA_VISIBLE_DEVICES=NONE"));
    assert!(f.create(&b, "none", &[]).status.success());
    assert!(f.env.held().is_empty());
    let b = f.bundle("prof", "plain.json");
    edit(&b, |v| env(v, "DS01_GPU_PROFILE=1g.10gb"));
    let out = f.create(&b, "prof", &[("FAKE_PID", &me())]);
    assert!(out.status.success(), "{}", error_of(&b));
    assert_eq!(f.env.held().len(), 1);
}

#[test]
fn restore_allocates_like_create() {
    let f = Fake::new("");
    let b = f.bundle("r", "gpu.json");
    let bs = b.to_str().unwrap();
    let root = format!("{bs}/../runc-root");
    let args = os(&[
        "--root",
        &root,
        "--log",
        &format!("{bs}/log.json"),
        "restore",
        "--detach",
        "--image-path",
        "/ckpt",
        "--bundle",
        bs,
        "--pid-file",
        &format!("{bs}/init.pid"),
        "r",
    ]);
    let out = f.run(&args, &[("FAKE_PID", &me())]);
    assert!(out.status.success(), "{}", error_of(&b));
    assert_eq!(f.env.held().len(), 1);
    assert!(
        f.last_spec()["hooks"]["poststop"]
            .to_string()
            .contains("ds01-poststop")
    );
}

#[test]
fn a_held_lock_ends_in_a_busy_refusal_and_users_cannot_take_it() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fake::new("lock_wait_secs = 1\n");
    let b = f.bundle("first", "gpu.json");
    assert!(
        f.create(&b, "first", &[("FAKE_PID", &me())])
            .status
            .success()
    );
    let lock = f.env.path("state/lock");
    let mode = std::fs::metadata(&lock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "only root may open, so only root may flock");

    let file = std::fs::File::open(&lock).unwrap();
    file.lock().unwrap();
    let b = f.bundle("second", "gpu.json");
    let t = Instant::now();
    let out = f.create(&b, "second", &[]);
    assert!(t.elapsed() < Duration::from_secs(8));
    assert_eq!(out.status.code(), Some(1));
    assert!(error_of(&b).contains("GPU ledger busy"), "{}", error_of(&b));
    // A plain container does not wait on the lock at all.
    let p = f.bundle("plain", "plain.json");
    assert!(f.create(&p, "plain", &[]).status.success());
    drop(file);
    assert!(
        f.create(&b, "second", &[("FAKE_PID", &me())])
            .status
            .success()
    );
}

#[test]
fn a_state_directory_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fake::new("");
    let state = f.env.path("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    let b = f.bundle("g", "gpu.json");
    let out = f.create(&b, "g", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        error_of(&b).contains("writable by others"),
        "{}",
        error_of(&b)
    );
}

/// Writes runc's state for a container the stand-in "created", as runc would.
fn runc_state(b: &Path, id: &str) {
    let dir = b.join("../runc-root").join(id);
    std::fs::create_dir_all(&dir).unwrap();
    let start = std::fs::read_to_string("/proc/self/stat").unwrap();
    let start: u64 = start[start.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .nth(19)
        .unwrap()
        .parse()
        .unwrap();
    std::fs::write(
        dir.join("state.json"),
        json!({"init_process_pid": std::process::id(), "init_process_start": start,
               "config": {"labels": [format!("bundle={}", b.display())]}})
        .to_string(),
    )
    .unwrap();
}

fn devices_held(f: &Fake) -> Vec<String> {
    let mut d: Vec<String> = f.env.held().into_iter().map(|h| h.0).collect();
    d.sort();
    d
}

#[test]
fn a_lost_or_corrupt_ledger_is_rebuilt_from_the_running_containers() {
    let f = Fake::new("");
    for id in ["c1", "c2"] {
        let b = f.bundle(id, "gpu.json");
        assert!(f.create(&b, id, &[("FAKE_PID", &me())]).status.success());
        runc_state(&b, id);
    }
    let before = devices_held(&f);
    assert_eq!(before.len(), 2);
    let ledger = f.env.path("state/ledger.json");

    // Emptied: the next create rebuilds first and takes a third slice.
    std::fs::write(&ledger, "").unwrap();
    let b = f.bundle("c3", "gpu.json");
    assert!(f.create(&b, "c3", &[("FAKE_PID", &me())]).status.success());
    let after = devices_held(&f);
    assert_eq!(after.len(), 3, "{after:?}");
    assert!(before.iter().all(|d| after.contains(d)));
    let kept: Vec<PathBuf> = std::fs::read_dir(f.env.path("state"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("ledger.json.bad-"))
        .collect();
    assert_eq!(kept.len(), 1, "the bad file is kept aside");

    // Moved aside, then `ds01 gc --rebuild`: the running containers are back.
    runc_state(&b, "c3");
    std::fs::rename(&ledger, f.env.path("moved.json")).unwrap();
    let out = f.env.cli(&["gc", "--rebuild"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 allocation(s)"));
    assert_eq!(devices_held(&f), after);
}

fn spawn_create(f: &Fake, b: &Path, id: &str, sleep: &str) -> std::process::Child {
    let mut c = f.env.shim();
    c.env("FAKE_RUNC_LOG", f.log())
        .env("FAKE_RUNC_SLEEP", sleep)
        .env("FAKE_PID", me())
        .args(docker_create(b, id));
    c.spawn().unwrap()
}

/// Until the stand-in runc has been started (it logs its argv first).
fn wait_runc_started(f: &Fake) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while f.calls() == 0 {
        assert!(Instant::now() < deadline, "runc never started");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Until process `pid` has a child running `comm`.
fn wait_for_child(pid: u32, comm: &str) {
    let children = format!("/proc/{pid}/task/{pid}/children");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let Ok(list) = std::fs::read_to_string(&children) else {
            // A kernel without the list: time enough for the child to start.
            std::thread::sleep(Duration::from_secs(1));
            return;
        };
        let found = list.split_whitespace().any(|c| {
            std::fs::read_to_string(format!("/proc/{c}/comm")).is_ok_and(|n| n.trim() == comm)
        });
        if found {
            return;
        }
        assert!(Instant::now() < deadline, "{pid} never started {comm}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn wait_held(f: &Fake, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while f.env.held().len() < n {
        assert!(Instant::now() < deadline, "no allocation appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Creates the six other slices and a seventh that must be refused.
fn fill_the_rest(f: &Fake, tag: &str) {
    for i in 0..6 {
        let b = f.bundle(&format!("{tag}{i}"), "gpu.json");
        let out = f.create(&b, &format!("{tag}{i}"), &[("FAKE_PID", &me())]);
        assert!(out.status.success(), "{}", error_of(&b));
    }
    let b = f.bundle(&format!("{tag}x"), "gpu.json");
    let out = f.create(&b, &format!("{tag}x"), &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "an eighth slice was handed out: {}",
        f.env.shim_log()
    );
    assert!(error_of(&b).contains("free"), "{}", error_of(&b));
}

#[test]
fn a_slow_create_keeps_its_slice_however_long_runc_takes() {
    let f = Fake::new("");
    let b = f.bundle("slow", "gpu.json");
    let mut child = spawn_create(&f, &b, "slow", "3");
    wait_held(&f, 1);
    fill_the_rest(&f, "n");
    assert!(child.wait().unwrap().success());
    let held = f.env.held();
    assert_eq!(held.len(), 7);
    let mut devs: Vec<_> = held.iter().map(|h| &h.0).collect();
    devs.dedup();
    assert_eq!(devs.len(), 7, "no slice in two containers");
}

#[test]
fn a_create_killed_mid_way_holds_the_slice_while_a_process_of_it_lives() {
    let f = Fake::new("");
    let b = f.bundle("orphan", "gpu.json");
    let mut child = spawn_create(&f, &b, "orphan", "10");
    wait_held(&f, 1);
    wait_runc_started(&f);
    let alloc = f.env.ledger()["records"][0]["alloc_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Kill the create (the stand-in runc in the runtime's place) once it
    // waits on its `sleep`: that child lives on, orphaned, holding the marker.
    wait_for_child(child.id(), "sleep");
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    fill_the_rest(&f, "k");
    // Once the orphan is gone (and runc never made the container), the slice is free.
    let marker = f.env.path("state/pending").join(&alloc);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::File::open(&marker).is_ok_and(|m| m.try_lock_shared().is_err()) {
        assert!(Instant::now() < deadline, "the orphan never ended");
        std::thread::sleep(Duration::from_millis(50));
    }
    let b = f.bundle("after", "gpu.json");
    let out = f.create(&b, "after", &[("FAKE_PID", &me())]);
    assert!(out.status.success(), "{}", error_of(&b));
    f.env
        .assert_log_contains(&["runc knows no such container and no create of it is in flight"]);
}

#[test]
fn an_allocation_the_ledger_loses_while_runc_creates_is_recorded_again() {
    let f = Fake::new("");
    let b = f.bundle("lost", "gpu.json");
    let child = spawn_create(&f, &b, "lost", "10");
    wait_held(&f, 1);
    wait_runc_started(&f);
    // Replaced by hand while runc runs: the record is gone from the file.
    std::fs::write(f.env.path("state/ledger.json"), "{\"records\":[]}\n").unwrap();
    // The next write puts the record back from the create's marker (held
    // by runc still), before anything is allocated: its slice is not
    // handed out twice.
    fill_the_rest(&f, "n");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "runc made the container");
    quiet(&out);
    let held = f.env.held();
    assert!(held.iter().any(|h| h.1 == "lost"), "{held:?}");
    // Lost again once runc is done, it comes back from its container's
    // spec and runc's state the same way.
    std::fs::write(f.env.path("state/ledger.json"), "{\"records\":[]}\n").unwrap();
    assert!(f.env.cli(&["gc"]).status.success());
    let held = f.env.held();
    assert!(held.iter().any(|h| h.1 == "lost"), "{held:?}");
    f.env
        .assert_log_contains(&["container lost holds", "recorded again from its marker"]);
}

#[test]
fn a_foreground_run_passes_signals_to_runc_and_releases() {
    let f = Fake::new("");
    let b = f.bundle("fg", "gpu.json");
    let bs = b.to_str().unwrap();
    let mut c = f.env.shim();
    c.env("FAKE_RUNC_LOG", f.log())
        .env("FAKE_RUNC_SLEEP", "30")
        .args(os(&[
            "--root",
            &format!("{bs}/../runc-root"),
            "run",
            "--bundle",
            bs,
            "fg",
        ]));
    let mut child = c.spawn().unwrap();
    wait_held(&f, 1);
    std::thread::sleep(Duration::from_millis(200));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let t = Instant::now();
    let status = child.wait().unwrap();
    assert!(t.elapsed() < Duration::from_secs(10));
    // The runtime was not killed by the signal: runc was, and it says so.
    assert_eq!(status.code(), Some(128 + libc::SIGTERM), "{status:?}");
    assert!(f.env.held().is_empty(), "released when the run ended");
}

#[test]
fn an_unreadable_inventory_refuses_bypasses_only_where_a_driver_is_loaded() {
    let f = Fake::new(ADMIN);
    let text = std::fs::read_to_string(&f.env.config).unwrap();
    let text = text.replace(
        &format!("inventory = {:?}", sim_inventory()),
        &format!("inventory = {:?}", f.env.path("missing.toml")),
    );
    std::fs::write(&f.env.config, text).unwrap();
    let b = f.bundle("priv", "privileged.json");
    let out = f.create(&b, "priv", &[]);
    if Path::new("/dev/nvidiactl").exists() {
        // A GPU host whose inventory cannot be read: nothing is let around it.
        assert_eq!(out.status.code(), Some(1));
        assert!(error_of(&b).contains("missing.toml"), "{}", error_of(&b));
    } else {
        // No driver, no GPU to protect: the privileged container runs.
        assert!(out.status.success(), "{}", error_of(&b));
        f.env
            .assert_log_contains(&["passed to runc with no GPU judged"]);
    }
    // A GPU request fails plainly either way.
    let g = f.bundle("gpu", "gpu.json");
    let out = f.create(&g, "gpu", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(error_of(&g).contains("missing.toml"), "{}", error_of(&g));
}

#[test]
fn a_delete_during_a_create_in_flight_leaves_the_slice_to_its_orphan() {
    let f = Fake::new("");
    let b = f.bundle("orphan", "gpu.json");
    let mut child = spawn_create(&f, &b, "orphan", "3");
    wait_held(&f, 1);
    wait_runc_started(&f);
    // The create killed once it waits on its `sleep`, which lives on with
    // the marker.
    wait_for_child(child.id(), "sleep");
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    // Docker's `delete --force` after the failed create: runc knows nothing yet.
    let out = f.run(&docker_delete(&b, "orphan"), &[]);
    assert!(out.status.success());
    assert_eq!(
        f.env.held().len(),
        1,
        "the orphaned runc may still make the container"
    );
    std::thread::sleep(Duration::from_secs(4));
    let out = f.env.cli(&["gc"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("no create of it is in flight"));
    assert!(f.env.held().is_empty());
}

#[test]
fn nvidia_s_hook_in_a_spec_without_a_request_is_told_to_give_no_device() {
    let f = Fake::new("");
    let b = f.bundle("legacy", "plain.json");
    edit(&b, |v| {
        v["hooks"] = json!({"prestart": [{"path": "/usr/bin/nvidia-container-toolkit", "args": ["x", "prestart"]}]});
        env(v, "CUDA_VERSION=11.0");
        env(v, "DOCKER_RESOURCE_GPU=0,1");
    });
    let out = f.create(&b, "legacy", &[]);
    assert!(out.status.success(), "{}", error_of(&b));
    assert!(f.env.held().is_empty());
    let spec_env = env_of(&f.last_spec());
    assert!(
        spec_env.contains(&"NVIDIA_VISIBLE_DEVICES=void".to_string()),
        "{spec_env:?}"
    );
    assert!(
        !spec_env.iter().any(|e| e.starts_with("DOCKER_RESOURCE_")),
        "{spec_env:?}"
    );

    // With a request, the swarm-resource variable goes too: ds01 picks.
    let b = f.bundle("swarm", "gpu.json");
    edit(&b, |v| env(v, "DOCKER_RESOURCE_GPU=0,1"));
    assert!(
        f.create(&b, "swarm", &[("FAKE_PID", &me())])
            .status
            .success()
    );
    let spec_env = env_of(&f.last_spec());
    assert!(
        !spec_env.iter().any(|e| e.starts_with("DOCKER_RESOURCE_")),
        "{spec_env:?}"
    );
}

#[test]
fn unix_groups_reach_the_static_runtime_through_the_cli() {
    // admin_group names a Unix group (no member list): the runtime asks
    // `ds01-accounts groups` beside it, as it must for LDAP or SSSD users.
    let f = Fake::new("admin_group = \"root\"\n");
    let b = f.bundle("priv", "privileged.json");
    edit(&b, |v| env(v, "DS01_USER=root"));
    let out = f.create(&b, "priv", &[]);
    assert!(out.status.success(), "{}", error_of(&b));
    assert_eq!(f.env.events().last().unwrap()["event"], "bypass");
}
