//! What a spec lets its container open, judged by device numbers, never by
//! path names: a GPU's node under any path is still that GPU.
//!
//! [`might_touch_nvidia`] is the cheap first look every container gets,
//! from the spec alone; [`judge`] is the exact verdict against the
//! inventory, for the few containers the first look cannot clear.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::inventory::Inventory;
use crate::oci::{self, PROFILE, VISIBLE};

/// Device-list mounts of NVIDIA's runtime (the device plugin's
/// volume-mounts strategy, and NVIDIA's hook in its hardened setting).
pub const DEVICE_LIST_DIRS: [&str; 2] = [
    "/var/run/nvidia-container-devices",
    "/run/nvidia-container-devices",
];

pub use crate::inventory::DRM_MAJOR;

/// Majors the kernel hands out dynamically (`nvidia-uvm`, `nvidia-caps`
/// live here), plus the fixed NVIDIA and DRM ones.
pub fn maybe_nvidia_major(m: i64) -> bool {
    m == 195 || m == i64::from(DRM_MAJOR) || (234..=254).contains(&m) || (384..=511).contains(&m)
}

/// A device cgroup rule, as runc reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub allow: bool,
    /// `a`, `b`, `c` (`u` is read as `c`); runc reads a missing type as `a`.
    pub kind: char,
    pub major: Option<i64>,
    pub minor: Option<i64>,
    /// Whether it grants read or write (a missing access counts as all).
    pub opens: bool,
}

impl Rule {
    pub fn read(r: &Value) -> Rule {
        let num = |k| r.get(k).and_then(Value::as_i64).filter(|n| *n >= 0);
        let kind = match r.get("type").and_then(Value::as_str).unwrap_or("") {
            "" | "a" => 'a',
            "c" | "u" => 'c',
            "b" => 'b',
            // runc refuses other types; until it does, treat them as the widest.
            _ => 'a',
        };
        Rule {
            allow: r.get("allow").and_then(Value::as_bool).unwrap_or(false),
            kind,
            major: num("major"),
            minor: num("minor"),
            opens: r
                .get("access")
                .and_then(Value::as_str)
                .is_none_or(|a| a.is_empty() || a.contains(['r', 'w'])),
        }
    }

    /// An allow rule that opens every character device: runc turns any
    /// type-`a` allow rule into allow-all, whatever its numbers and access,
    /// and `c *:*` with read or write is every char device.
    pub fn is_wide(&self) -> bool {
        self.allow && (self.kind == 'a' || (self.kind == 'c' && self.major.is_none() && self.opens))
    }

    pub fn text(&self) -> String {
        let n = |x: Option<i64>| x.map_or("*".to_string(), |v| v.to_string());
        let access = if self.opens { "rwm" } else { "m" };
        format!("{} {}:{} {access}", self.kind, n(self.major), n(self.minor))
    }
}

/// A `linux.devices` entry, as runc reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Node {
    pub major: i64,
    pub minor: i64,
}

fn char_node(d: &Value) -> Option<Node> {
    let kind = d.get("type").and_then(Value::as_str).unwrap_or("c");
    if kind != "c" && kind != "u" {
        return None;
    }
    // Go reads a missing or null number as 0, and runc makes (and allows)
    // that node: `{"type": "c", "major": 195}` is /dev/nvidia0.
    let num = |k| d.get(k).and_then(Value::as_i64).unwrap_or(0);
    Some(Node {
        major: num("major"),
        minor: num("minor"),
    })
}

/// Whether the spec could reach an NVIDIA device at all, from the spec
/// alone: a GPU request in the environment, annotations or mounts, a char
/// node or allow rule on a major the driver could have, or a wide rule.
/// `false` means runc may run it as it is, with no inventory read.
pub fn might_touch_nvidia(spec: &Value) -> bool {
    if env_asks(spec) {
        return true;
    }
    if oci::array(spec, "/linux/devices")
        .iter()
        .filter_map(char_node)
        .any(|n| maybe_nvidia_major(n.major))
    {
        return true;
    }
    if oci::array(spec, "/linux/resources/devices")
        .iter()
        .map(Rule::read)
        .any(|r| {
            r.is_wide()
                || (r.allow && r.opens && r.kind == 'c' && r.major.is_some_and(maybe_nvidia_major))
        })
    {
        return true;
    }
    !device_annotations(spec).is_empty()
        || !device_list_mounts(spec).is_empty()
        || has_nvidia_hook(spec)
}

/// Names NVIDIA's hook goes by (`nvidia-container-toolkit` in podman's and
/// CRI-O's hooks.d): where one runs, it reads the environment and mounts
/// for devices, so a spec carrying one is judged even without a request.
const NVIDIA_HOOKS: [&str; 2] = ["nvidia-container-runtime-hook", "nvidia-container-toolkit"];

pub fn is_nvidia_hook(h: &Value) -> bool {
    h.get("path")
        .and_then(Value::as_str)
        .and_then(|p| std::path::Path::new(p).file_name())
        .and_then(|n| n.to_str())
        .is_some_and(|n| NVIDIA_HOOKS.contains(&n))
}

pub fn has_nvidia_hook(spec: &Value) -> bool {
    ["prestart", "createRuntime", "createContainer"]
        .iter()
        .any(|phase| {
            oci::array(spec, &format!("/hooks/{phase}"))
                .iter()
                .any(is_nvidia_hook)
        })
}

/// Whether the environment asks for a GPU: `NVIDIA_VISIBLE_DEVICES` other
/// than `none`/`void`/empty (any case), or a `DS01_GPU_PROFILE`.
pub fn env_asks(spec: &Value) -> bool {
    let env = oci::env(spec);
    let visible = oci::env_value(&env, VISIBLE).is_some_and(|v| !crate::names::says_none(v));
    visible || oci::env_value(&env, PROFILE).is_some_and(|p| !p.trim().is_empty())
}

/// The NVIDIA devices of this host, by number.
#[derive(Debug, Clone)]
pub struct NvidiaDevices {
    /// The driver's majors: every node on them is NVIDIA's.
    pub majors: Vec<u32>,
    /// The frontend major (`/dev/nvidiaN`, `nvidiactl`).
    pub frontend: u32,
    /// (GPU index, DRM minor) of each GPU's `/dev/dri` nodes.
    pub drm: Vec<(u32, u32)>,
    /// (GPU index, frontend minor) of each GPU.
    pub gpus: Vec<(u32, u32)>,
}

impl NvidiaDevices {
    pub fn of(inv: &Inventory) -> NvidiaDevices {
        NvidiaDevices {
            majors: inv.nvidia_majors(),
            frontend: inv.majors.nvidia,
            drm: inv
                .gpus
                .iter()
                .flat_map(|g| g.drm.iter().map(move |n| (g.index, n.minor)))
                .collect(),
            gpus: inv.gpus.iter().map(|g| (g.index, g.minor)).collect(),
        }
    }

    fn on_major(&self, m: i64) -> bool {
        self.majors.iter().any(|x| i64::from(*x) == m)
    }

    fn drm_gpu(&self, minor: i64) -> Option<u32> {
        self.drm
            .iter()
            .find(|(_, m)| i64::from(*m) == minor)
            .map(|(g, _)| *g)
    }

    /// Whether a char device is NVIDIA's: on a driver major, or one of a
    /// GPU's DRM nodes.
    pub fn owns(&self, n: Node) -> bool {
        self.on_major(n.major)
            || (n.major == i64::from(DRM_MAJOR) && self.drm_gpu(n.minor).is_some())
    }

    /// Whether an allow rule opens some NVIDIA device.
    pub fn rule_opens(&self, r: &Rule) -> bool {
        if r.is_wide() {
            return true;
        }
        if !r.allow || !r.opens {
            return false;
        }
        match (r.kind, r.major) {
            ('c', Some(m)) if self.on_major(m) => true,
            ('c', Some(m)) if m == i64::from(DRM_MAJOR) => match r.minor {
                None => !self.drm.is_empty(),
                Some(minor) => self.drm_gpu(minor).is_some(),
            },
            _ => false,
        }
    }

    /// Which GPU a node names: a `/dev/nvidiaN` or a DRM node. The
    /// driver's shared nodes (`nvidiactl`, `nvidia-modeset`, uvm, caps)
    /// name none.
    fn gpu_of(&self, n: Node) -> Option<i64> {
        if n.major == i64::from(self.frontend) && n.minor < 254 {
            let index = self
                .gpus
                .iter()
                .find(|(_, m)| i64::from(*m) == n.minor)
                .map(|(i, _)| i64::from(*i));
            // A minor the inventory does not know is still a GPU: count it apart.
            return Some(index.unwrap_or(1_000_000 + n.minor));
        }
        if n.major == i64::from(DRM_MAJOR) {
            return self.drm_gpu(n.minor).map(i64::from);
        }
        None
    }
}

/// The verdict on one spec.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Access {
    /// NVIDIA nodes the spec brings along (whatever their paths).
    pub nodes: Vec<Node>,
    /// How many GPUs those nodes name; 0 with only the driver's shared nodes.
    pub gpus_named: usize,
    /// The nodes name every GPU of a host with more than one: "all".
    pub all_gpus: bool,
    /// A rule that opens every device (`--privileged`, type `a`, `c *:*`).
    pub wide: Option<String>,
    /// Allow rules that open NVIDIA devices beyond the nodes brought along.
    pub stray: Vec<String>,
}

impl Access {
    /// Whether the container may open NVIDIA devices around any allocation.
    pub fn bypass(&self) -> Option<String> {
        self.wide
            .clone()
            .or_else(|| (!self.stray.is_empty()).then(|| self.stray.join(", ")))
    }
}

pub fn judge(spec: &Value, dev: &NvidiaDevices) -> Access {
    let mut nodes: Vec<Node> = oci::array(spec, "/linux/devices")
        .iter()
        .filter_map(char_node)
        .filter(|n| dev.owns(*n))
        .collect();
    nodes.sort();
    nodes.dedup();
    let named: BTreeSet<i64> = nodes.iter().filter_map(|n| dev.gpu_of(*n)).collect();
    let all_gpus =
        dev.gpus.len() > 1 && dev.gpus.iter().all(|(i, _)| named.contains(&i64::from(*i)));
    let mut out = Access {
        gpus_named: named.len(),
        all_gpus,
        nodes,
        ..Access::default()
    };
    for r in oci::array(spec, "/linux/resources/devices")
        .iter()
        .map(Rule::read)
    {
        if r.is_wide() {
            out.wide.get_or_insert_with(|| r.text());
            continue;
        }
        if !dev.rule_opens(&r) {
            continue;
        }
        // The rule Docker writes beside each `--device` node is part of that node.
        let covered = matches!((r.major, r.minor), (Some(ma), Some(mi))
            if out.nodes.contains(&Node { major: ma, minor: mi }));
        if !covered {
            out.stray.push(r.text());
        }
    }
    out
}

/// Annotations that ask an NVIDIA runtime for devices: any key under a
/// `cdi.k8s.io/` prefix (`nvidia.cdi.k8s.io/...` included) naming an
/// NVIDIA device, and the same inside CRI-O's copy of the annotations.
/// Returns the device names each asks for.
pub fn device_annotations(spec: &Value) -> Vec<String> {
    let Some(ann) = spec.get("annotations").and_then(Value::as_object) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, v) in ann {
        let Some(v) = v.as_str() else { continue };
        if is_device_annotation(k, v) {
            out.extend(v.split(',').map(|s| s.trim().to_string()));
        } else if k == CRIO_ANNOTATIONS
            && let Ok(Value::Object(inner)) = serde_json::from_str::<Value>(v)
        {
            for (ik, iv) in &inner {
                if let Some(iv) = iv.as_str().filter(|iv| is_device_annotation(ik, iv)) {
                    out.extend(iv.split(',').map(|s| s.trim().to_string()));
                }
            }
        }
    }
    out
}

/// CRI-O keeps the pod's annotations as one JSON string under this key.
pub const CRIO_ANNOTATIONS: &str = "io.kubernetes.cri-o.Annotations";

pub fn is_device_annotation(key: &str, value: &str) -> bool {
    key.contains("cdi.k8s.io/") && value.to_ascii_lowercase().contains("nvidia.com/")
}

/// The device names of NVIDIA's device-list mounts
/// (`/var/run/nvidia-container-devices/<name>`).
pub fn device_list_mounts(spec: &Value) -> Vec<String> {
    oci::array(spec, "/mounts")
        .iter()
        .filter_map(|m| m.get("destination").and_then(Value::as_str))
        .filter_map(|d| {
            DEVICE_LIST_DIRS
                .iter()
                .find_map(|dir| d.strip_prefix(dir))
                .map(|rest| rest.trim_matches('/').to_string())
        })
        .collect()
}

/// The character devices `/proc/devices` lists: (major, name), in order.
/// The one reader of that file's format, for the inventory and the checks.
pub fn char_devices(text: &str) -> Option<Vec<(u32, &str)>> {
    let mut lines = text.lines().map(str::trim);
    lines.find(|l| *l == "Character devices:")?;
    Some(
        lines
            .take_while(|l| *l != "Block devices:")
            .filter_map(|l| {
                let (major, name) = l.split_once(char::is_whitespace)?;
                Some((major.parse().ok()?, name.trim()))
            })
            .collect(),
    )
}

/// NVIDIA's character-device majors on this host: the frontend's fixed
/// 195, and those `/proc/devices` names `nvidia*` (uvm, caps).
fn host_nvidia_majors() -> Vec<u32> {
    let text = std::fs::read_to_string("/proc/devices").unwrap_or_default();
    std::iter::once(195)
        .chain(
            char_devices(&text)
                .unwrap_or_default()
                .into_iter()
                .filter(|(_, name)| name.starts_with("nvidia"))
                .map(|(m, _)| m),
        )
        .collect()
}

/// Whether a device a container is given is an NVIDIA GPU's: a
/// `/dev/nvidia*` path, a CDI name (`nvidia.com/gpu=...`), or any path that
/// is an NVIDIA character device on this server (`/dev/char/195:0`, a link).
pub fn is_gpu_device(path: &str) -> bool {
    use std::os::unix::fs::FileTypeExt;
    use std::os::unix::fs::MetadataExt;
    if path.starts_with("/dev/nvidia") || path.starts_with("nvidia.com/gpu=") {
        return true;
    }
    if let Some(num) = path.strip_prefix("/dev/char/")
        && let Some((maj, _)) = num.split_once(':')
    {
        return maj
            .parse()
            .is_ok_and(|m: u32| host_nvidia_majors().contains(&m));
    }
    std::fs::metadata(path).is_ok_and(|m| {
        m.file_type().is_char_device() && host_nvidia_majors().contains(&libc::major(m.rdev()))
    })
}

/// Whether a device cgroup rule as Docker takes it (`c 195:* rwm`) opens
/// NVIDIA devices: every device (`a`), any major (`*`), or an NVIDIA major.
pub fn rule_reaches_gpu(rule: &str) -> bool {
    let mut parts = rule.split_whitespace();
    let kind = parts.next().unwrap_or("");
    let major = parts.next().and_then(|n| n.split(':').next()).unwrap_or("");
    match kind {
        "a" => true,
        "c" => {
            major == "*"
                || major
                    .parse()
                    .is_ok_and(|m: u32| host_nvidia_majors().contains(&m))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn proc_devices_lists_character_devices_only() {
        let text = "Character devices:\n  1 mem\n195 nvidia-frontend\n508 nvidia-uvm\n\nBlock devices:\n  8 sd\n";
        assert_eq!(
            char_devices(text).unwrap(),
            [(1, "mem"), (195, "nvidia-frontend"), (508, "nvidia-uvm")]
        );
        assert_eq!(char_devices("Block devices:\n 8 sd\n"), None);
        assert!(rule_reaches_gpu("a *:* rwm") && rule_reaches_gpu("c *:* rwm"));
        assert!(!rule_reaches_gpu("c 1:3 rwm") && !rule_reaches_gpu("b *:* rwm"));
    }

    use super::*;
    use serde_json::json;

    pub(crate) fn devices() -> NvidiaDevices {
        NvidiaDevices {
            majors: vec![195, 511, 236],
            frontend: 195,
            drm: vec![(0, 1), (0, 128), (1, 2), (1, 129)],
            gpus: vec![(0, 0), (1, 1)],
        }
    }

    fn spec(devs: Value, rules: Value) -> Value {
        json!({"linux": {"devices": devs, "resources": {"devices": rules}}})
    }

    fn dev(path: &str, major: u32, minor: u32) -> Value {
        json!({"path": path, "type": "c", "major": major, "minor": minor})
    }

    fn rule(t: &str, major: i64, minor: i64, access: &str) -> Value {
        json!({"allow": true, "type": t, "major": major, "minor": minor, "access": access})
    }

    const DOCKER_DEFAULT: &str = r#"[{"allow":false,"access":"rwm"},
        {"allow":true,"type":"c","major":1,"minor":5,"access":"rwm"},
        {"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"},
        {"allow":true,"type":"c","minor":-1,"major":-1,"access":"m"},
        {"allow":true,"type":"b","minor":-1,"major":-1,"access":"m"},
        {"allow":true,"type":"c","major":136,"minor":-1,"access":"rwm"},
        {"allow":true,"type":"c","major":10,"minor":200,"access":"rwm"}]"#;

    #[test]
    fn an_ordinary_docker_spec_is_cleared_without_the_inventory() {
        let rules: Value = serde_json::from_str(DOCKER_DEFAULT).unwrap();
        let s = spec(json!([dev("/dev/fuse", 10, 229)]), rules);
        assert!(!might_touch_nvidia(&s));
        assert_eq!(judge(&s, &devices()), Access::default());
    }

    #[test]
    fn a_gpu_node_under_any_path_is_seen() {
        let s = spec(json!([dev("/dev/gpu0", 195, 0)]), json!([]));
        assert!(might_touch_nvidia(&s));
        let a = judge(&s, &devices());
        assert_eq!((a.gpus_named, a.all_gpus), (1, false));
        assert_eq!(a.bypass(), None);
        // The driver's shared nodes alone name no GPU but are NVIDIA's.
        for (major, minor) in [(195, 255), (195, 254), (511, 0), (236, 201)] {
            let a = judge(
                &spec(json!([dev("/x", major, minor)]), json!([])),
                &devices(),
            );
            assert_eq!((a.nodes.len(), a.gpus_named), (1, 0), "{major}:{minor}");
        }
    }

    #[test]
    fn a_node_without_its_minor_is_minor_0_as_go_reads_it() {
        for d in [
            json!({"path": "/dev/x", "type": "c", "major": 195}),
            json!({"path": "/dev/x", "type": "c", "major": 195, "minor": null}),
        ] {
            let s = spec(json!([d]), json!([]));
            assert!(might_touch_nvidia(&s), "{d}");
            assert_eq!(judge(&s, &devices()).gpus_named, 1, "{d}");
        }
    }

    #[test]
    fn every_gpu_node_of_the_host_is_all() {
        let s = spec(
            json!([dev("/dev/nvidia0", 195, 0), dev("/dev/nvidia1", 195, 1)]),
            json!([]),
        );
        let a = judge(&s, &devices());
        assert!(a.all_gpus && a.gpus_named == 2);
    }

    #[test]
    fn rules_that_open_nvidia_devices_are_stray_unless_a_node_covers_them() {
        let d = devices();
        for (r, stray) in [
            (rule("c", 195, -1, "rwm"), true),
            (rule("c", 195, 3, "rwm"), true),
            (rule("c", 511, 0, "rw"), true),
            (rule("c", 226, -1, "rwm"), true),
            (rule("c", 226, 128, "rwm"), true),
            // Another GPU's DRM node (an Intel iGPU) is not NVIDIA's.
            (rule("c", 226, 0, "rwm"), false),
            (rule("c", 195, -1, "m"), false),
            (rule("b", 195, -1, "rwm"), false),
        ] {
            let a = judge(&spec(json!([]), json!([r.clone()])), &d);
            assert_eq!(!a.stray.is_empty(), stray, "{r}");
            assert!(might_touch_nvidia(&spec(json!([]), json!([r.clone()]))) || !stray);
        }
        let covered = spec(
            json!([dev("/dev/gpu", 195, 0)]),
            json!([rule("c", 195, 0, "rwm")]),
        );
        assert_eq!(judge(&covered, &d).bypass(), None);
    }

    #[test]
    fn any_type_a_rule_or_char_wildcard_is_wide() {
        for r in [
            json!({"allow": true, "access": "rwm"}),
            rule("a", 1, 3, "r"),
            json!({"allow": true, "type": "c", "access": "rw"}),
            json!({"allow": true, "type": "c", "major": -1, "minor": -1}),
            json!({"allow": true, "type": "x", "major": 1, "minor": 1, "access": "r"}),
        ] {
            let s = spec(json!([]), json!([r.clone()]));
            assert!(might_touch_nvidia(&s), "{r}");
            assert!(judge(&s, &devices()).wide.is_some(), "{r}");
        }
        // A type-a allow rule is allow-all in runc, even for mknod only.
        assert!(
            judge(&spec(json!([]), json!([rule("a", 1, 3, "m")])), &devices())
                .wide
                .is_some()
        );
        // Deny rules and char mknod-only wildcards open nothing.
        for r in [
            json!({"allow": false, "access": "rwm"}),
            json!({"type": "a", "access": "rwm"}),
            json!({"allow": true, "type": "c", "major": -1, "minor": -1, "access": "m"}),
        ] {
            assert!(
                judge(&spec(json!([]), json!([r.clone()])), &devices())
                    .wide
                    .is_none(),
                "{r}"
            );
        }
    }

    #[test]
    fn device_annotations_under_any_prefix_and_inside_crio_s_copy() {
        let s = json!({"annotations": {
            "cdi.k8s.io/gpu": "nvidia.com/gpu=0",
            "nvidia.cdi.k8s.io/x": "nvidia.com/gpu=1,nvidia.com/gpu=2",
            "cdi.k8s.io/net": "vendor.com/nic=0",
            CRIO_ANNOTATIONS: "{\"nvidia.cdi.k8s.io/y\":\"nvidia.com/gpu=all\"}",
            "other": "nvidia.com/gpu=3"
        }});
        assert_eq!(
            device_annotations(&s),
            [
                "nvidia.com/gpu=0",
                "nvidia.com/gpu=1",
                "nvidia.com/gpu=2",
                "nvidia.com/gpu=all"
            ]
        );
        assert!(might_touch_nvidia(&s));
    }

    #[test]
    fn device_list_mounts_name_their_devices() {
        let s = json!({"mounts": [
            {"destination": "/var/run/nvidia-container-devices/GPU-a", "source": "/dev/null"},
            {"destination": "/run/nvidia-container-devices/all", "source": "/dev/null"},
            {"destination": "/data", "source": "/srv"}
        ]});
        assert_eq!(device_list_mounts(&s), ["GPU-a", "all"]);
    }
}
