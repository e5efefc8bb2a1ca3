//! Golden tests of the config.json patch over specs a real Docker
//! (20.10, through a capturing runtime) wrote. `UPDATE_GOLDEN=1` rewrites
//! the expected files; review the diff before committing them.

mod common;

use ds01_core::access::{self, NvidiaDevices};
use ds01_core::inventory::sim;
use ds01_core::spec::{self, Allocation, Hook};
use serde_json::{Value, json};

use common::repo;

fn allocation() -> (Allocation, NvidiaDevices) {
    let p = common::sim_inventory();
    let inv = sim::parse(&p, &std::fs::read_to_string(&p).unwrap()).unwrap();
    let unit = &inv.units()[1];
    let mut nodes = inv.common_nodes.clone();
    nodes.extend(unit.nodes());
    let alloc = Allocation {
        uuids: vec![unit.uuid.to_string()],
        nodes,
        hook: Hook {
            path: "/usr/bin/ds01-runtime".into(),
            args: vec![
                "/usr/bin/ds01-runtime".into(),
                "hook".into(),
                "poststop".into(),
                "a1".into(),
            ],
            env: vec![],
        },
        annotation: "{\"id\":\"a1\"}".into(),
    };
    (alloc, NvidiaDevices::of(&inv))
}

fn patch(mut v: Value) -> Value {
    let (alloc, dev) = allocation();
    spec::strip_gpu_routes(&mut v, &dev);
    spec::inject(&mut v, &alloc);
    v
}

fn fixture(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(repo().join("tests/fixtures/docker").join(name)).unwrap())
        .unwrap()
}

#[test]
fn docker_specs_match_their_goldens() {
    for name in ["plain.json", "gpu.json", "nvidia-device.json"] {
        let got = serde_json::to_string_pretty(&patch(fixture(name))).unwrap() + "\n";
        let golden = repo().join("tests/fixtures/golden").join(name);
        if std::env::var("UPDATE_GOLDEN").as_deref() == Ok("1") {
            std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
            std::fs::write(&golden, &got).unwrap();
        }
        let want = std::fs::read_to_string(&golden).unwrap();
        assert!(
            got == want,
            "{name}: patch differs from {}",
            golden.display()
        );
    }
}

#[test]
fn fields_ds01_does_not_touch_survive_in_order() {
    let mut v = fixture("gpu.json");
    v["x-vendor"] = json!({"keep": [1, 2, {"deep": true}]});
    v["process"]["x-extra"] = json!("kept");
    v["linux"]["x-extra"] = json!(7);
    let before = v.clone();
    let after = patch(v);
    // Key order of the top level is kept, with new sections appended.
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&after)[..keys(&before).len()], keys(&before)[..]);
    for key in ["ociVersion", "root", "hostname", "mounts", "x-vendor"] {
        assert_eq!(after[key], before[key], "{key}");
    }
    assert_eq!(after["process"]["x-extra"], "kept");
    assert_eq!(after["linux"]["x-extra"], 7);
    for key in ["args", "cwd", "capabilities", "user"] {
        assert_eq!(
            after["process"][key], before["process"][key],
            "process.{key}"
        );
    }
    for key in [
        "namespaces",
        "maskedPaths",
        "readonlyPaths",
        "cgroupsPath",
        "seccomp",
    ] {
        assert_eq!(after["linux"][key], before["linux"][key], "linux.{key}");
    }
}

#[test]
fn every_route_the_container_brought_is_removed() {
    let mut v = fixture("nvidia-device.json");
    v["linux"]["devices"].as_array_mut().unwrap().extend([
        json!({"path": "/dev/nvidia3", "type": "c", "major": 195, "minor": 3}),
        json!({"path": "/dev/nvidia-caps/nvidia-cap1", "type": "c", "major": 236, "minor": 1}),
        json!({"path": "/dev/gpu-by-other-name", "type": "c", "major": 195, "minor": 2}),
    ]);
    v["linux"]["resources"]["devices"]
        .as_array_mut()
        .unwrap()
        .extend([
            json!({"allow": true, "type": "c", "major": 195, "minor": 3, "access": "rwm"}),
            json!({"allow": true, "type": "c", "major": 236, "minor": 1, "access": "rwm"}),
        ]);
    v["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/var/run/nvidia-container-devices/all", "type": "bind", "source": "/dev/null"
    }));
    v["annotations"] = json!({"cdi.k8s.io/gpu": "nvidia.com/gpu=all", "org.keep": "yes"});
    v["hooks"] = json!({
        "prestart": [{"path": "/usr/bin/nvidia-container-runtime-hook", "args": ["nvidia-container-runtime-hook", "prestart"]}],
        "poststop": [{"path": "/usr/local/bin/other"}]
    });
    let (alloc, _) = allocation();
    let after = patch(v);

    let envs: Vec<&str> = after["process"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(
        envs.iter()
            .filter(|e| e.starts_with("NVIDIA_VISIBLE_DEVICES="))
            .collect::<Vec<_>>(),
        [&format!("NVIDIA_VISIBLE_DEVICES={}", alloc.uuids[0]).as_str()]
    );
    let paths: Vec<&str> = after["linux"]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    // The fixture's "/dev/nvidia0" is /dev/null (1:3) under that name
    // (`--device /dev/null:/dev/nvidia0`): judged by number, it is no GPU and stays.
    let mut want = vec!["/dev/nvidia0"];
    want.extend(alloc.nodes.iter().map(|n| n.path.as_str()));
    assert_eq!(paths, want, "only the allocation's NVIDIA nodes");
    assert_eq!(after["linux"]["devices"][0]["major"], 1);
    let rules = after["linux"]["resources"]["devices"].as_array().unwrap();
    let nvidia = |allow: bool| {
        rules
            .iter()
            .filter(|r| {
                r["allow"] == allow && [195, 236, 511].contains(&r["major"].as_u64().unwrap_or(0))
            })
            .count()
    };
    assert_eq!(
        nvidia(true),
        alloc.nodes.len(),
        "an allow rule per allocated node"
    );
    // No deny rules on the driver's majors: every rule that opened one was
    // stripped, and a deny after a user's wildcard would make runc's cgroup
    // v1 emulator fail ("cannot punch hole").
    assert_eq!(nvidia(false), 0);
    assert!(
        !after["mounts"]
            .to_string()
            .contains("nvidia-container-devices")
    );
    assert_eq!(after["annotations"]["org.keep"], "yes");
    assert!(after["annotations"].get("cdi.k8s.io/gpu").is_none());
    assert_eq!(
        after["hooks"]["prestart"][0]["path"],
        "/usr/bin/nvidia-container-runtime-hook"
    );
    // ds01's hook first: runc stops at the first poststop hook that fails.
    assert_eq!(
        after["hooks"]["poststop"][0]["path"],
        "/usr/bin/ds01-runtime"
    );
    assert_eq!(
        after["hooks"]["poststop"][1]["path"],
        "/usr/local/bin/other"
    );
    // Patching twice (a bundle run twice by hand) gives the same spec.
    let again = patch(after.clone());
    assert_eq!(again, after);
    // A spec patched by the hook program's form before loses that hook too:
    // one ds01 hook, never two.
    let mut earlier = after.clone();
    earlier["hooks"]["poststop"][0] = json!({"path": "/usr/bin/ds01-poststop",
        "args": ["/usr/bin/ds01-poststop", "poststop", "a0", "/run/ds01/released"]});
    assert_eq!(patch(earlier), after);
}

#[test]
fn drm_nodes_and_device_annotations_of_other_gpus_go_imex_channels_stay_whole() {
    let mut v = fixture("nvidia-device.json");
    v["linux"]["devices"].as_array_mut().unwrap().extend([
        json!({"path": "/dev/dri/card1", "type": "c", "major": 226, "minor": 1}),
        json!({"path": "/dev/dri/renderD128", "type": "c", "major": 226, "minor": 128}),
        // An Intel iGPU's render node is not NVIDIA's.
        json!({"path": "/dev/dri/renderD130", "type": "c", "major": 226, "minor": 130}),
        json!({"path": "/dev/nvidia-caps-imex-channels/channel0", "type": "c", "major": 240, "minor": 0}),
    ]);
    v["linux"]["resources"]["devices"]
        .as_array_mut()
        .unwrap()
        .extend([
            json!({"allow": true, "type": "c", "major": 226, "minor": 128, "access": "rwm"}),
            json!({"allow": true, "type": "c", "major": 226, "minor": 130, "access": "rwm"}),
            json!({"allow": true, "type": "c", "major": 240, "minor": 0, "access": "rwm"}),
        ]);
    v["annotations"] = json!({
        "nvidia.cdi.k8s.io/gpu": "nvidia.com/gpu=1",
        "io.kubernetes.cri-o.Annotations": "{\"nvidia.cdi.k8s.io/x\":\"nvidia.com/gpu=all\",\"keep\":\"1\"}"
    });
    let after = patch(v);
    let paths: Vec<&str> = after["linux"]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    // The allocation is a MIG slice: no DRM node of GPU 0 or 1 enters.
    assert!(
        !paths
            .iter()
            .any(|p| p.contains("card1") || p.contains("renderD128")),
        "{paths:?}"
    );
    assert!(paths.contains(&"/dev/dri/renderD130"));
    assert!(paths.contains(&"/dev/nvidia-caps-imex-channels/channel0"));
    let rules = after["linux"]["resources"]["devices"].to_string();
    assert!(!rules.contains("\"minor\":128"), "{rules}");
    assert!(
        rules.contains("\"major\":240"),
        "the IMEX node keeps its rule"
    );
    assert!(after["annotations"].get("nvidia.cdi.k8s.io/gpu").is_none());
    assert_eq!(
        after["annotations"]["io.kubernetes.cri-o.Annotations"],
        "{\"keep\":\"1\"}"
    );
}

fn wide(v: &Value) -> bool {
    let (_, dev) = allocation();
    access::judge(v, &dev).wide.is_some()
}

#[test]
fn privileged_is_told_from_the_rules_docker_writes() {
    assert!(wide(&fixture("privileged.json")));
    for name in ["plain.json", "gpu.json", "nvidia-device.json"] {
        assert!(!wide(&fixture(name)), "{name}");
        assert!(!access::might_touch_nvidia(&fixture("plain.json")));
    }
    let mut v = fixture("plain.json");
    v["linux"]["resources"]["devices"] =
        json!([{"allow": true, "type": "a", "major": -1, "minor": -1, "access": "rwm"}]);
    assert!(wide(&v));
    // --device-cgroup-rule 'c *:* rwm' reaches every GPU just the same...
    v["linux"]["resources"]["devices"] = json!([{"allow": true, "type": "c", "access": "rwm"}]);
    assert!(wide(&v));
    // ...and so does any type-a rule: runc makes it allow-all.
    v["linux"]["resources"]["devices"] =
        json!([{"allow": true, "type": "a", "major": 1, "minor": 3, "access": "r"}]);
    assert!(wide(&v));
    // But not a rule that only allows mknod, nor one for a single other major.
    v["linux"]["resources"]["devices"] = json!([{"allow": true, "type": "c", "access": "m"}]);
    assert!(!wide(&v));
    v["linux"]["resources"]["devices"] =
        json!([{"allow": true, "type": "c", "major": 10, "access": "rwm"}]);
    assert!(!wide(&v));
}
