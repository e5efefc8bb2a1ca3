//! The edit of a bundle's `config.json`: take away every route to a GPU the
//! container brought along, then give it exactly its allocation.
//!
//! A pure function over `serde_json::Value` (with `preserve_order`), so every
//! field ds01 does not touch survives as it was, unknown ones included.

use serde_json::{Map, Value, json};

use crate::inventory::DeviceNode;
use crate::request::VISIBLE;

/// The annotation that records the allocation in the spec.
pub const ANNOTATION: &str = "ds01.allocation";

const NVIDIA_DEVICE_PREFIX: &str = "/dev/nvidia";
const DEVICE_LIST_MOUNTS: [&str; 2] = [
    "/var/run/nvidia-container-devices",
    "/run/nvidia-container-devices",
];
const CDI_ANNOTATION_PREFIX: &str = "cdi.k8s.io/";

/// The `poststop` hook that frees the allocation.
#[derive(Debug, Clone, PartialEq)]
pub struct Hook {
    pub path: String,
    pub args: Vec<String>,
    pub env: Vec<String>,
}

/// Exactly what the container gets.
#[derive(Debug, Clone, PartialEq)]
pub struct Allocation {
    pub uuids: Vec<String>,
    pub nodes: Vec<DeviceNode>,
    /// The driver's majors: denied as a whole before the allocated nodes are
    /// allowed, so no broader rule the container brought reaches another GPU.
    pub deny_majors: Vec<u32>,
    pub hook: Hook,
    /// The value of the `ds01.allocation` annotation.
    pub annotation: String,
}

/// The container's `process.env`, empty when it has none.
pub fn env(spec: &Value) -> Vec<String> {
    spec.pointer("/process/env")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the container may open every character device: an allow rule
/// for any major, as Docker writes for `--privileged` (and for
/// `--device-cgroup-rule 'c *:* rwm'`), which reaches every GPU around
/// the allocator.
pub fn is_privileged(spec: &Value) -> bool {
    let any = |v: Option<&Value>| v.is_none_or(|m| m.as_i64() == Some(-1));
    spec.pointer("/linux/resources/devices")
        .and_then(Value::as_array)
        .is_some_and(|rules| {
            rules.iter().any(|r| {
                r.get("allow") == Some(&Value::Bool(true))
                    && matches!(
                        r.get("type").and_then(Value::as_str),
                        None | Some("a") | Some("c")
                    )
                    && any(r.get("major"))
                    && r.get("access")
                        .and_then(Value::as_str)
                        .is_none_or(|a| a.contains(['r', 'w']))
            })
        })
}

/// Removes every route to an NVIDIA device: `NVIDIA_VISIBLE_DEVICES`,
/// NVIDIA device nodes and their cgroup rules (by path or by any of the
/// driver's `majors`), the device-list mounts of NVIDIA's runtime, CDI annotations.
pub fn strip_gpu_routes(spec: &mut Value, majors: &[u32]) {
    if let Some(env) = spec
        .pointer_mut("/process/env")
        .and_then(Value::as_array_mut)
    {
        let prefix = format!("{VISIBLE}=");
        env.retain(|e| !e.as_str().is_some_and(|s| s.starts_with(&prefix)));
    }
    let is_nvidia_major = |v: &Value| {
        v.get("major")
            .and_then(Value::as_u64)
            .is_some_and(|m| majors.iter().any(|x| u64::from(*x) == m))
    };
    if let Some(devs) = spec
        .pointer_mut("/linux/devices")
        .and_then(Value::as_array_mut)
    {
        devs.retain(|d| {
            let by_path = d
                .get("path")
                .and_then(Value::as_str)
                .is_some_and(|p| p.starts_with(NVIDIA_DEVICE_PREFIX));
            !by_path && !is_nvidia_major(d)
        });
    }
    if let Some(rules) = spec
        .pointer_mut("/linux/resources/devices")
        .and_then(Value::as_array_mut)
    {
        rules.retain(|r| !(r.get("allow") == Some(&Value::Bool(true)) && is_nvidia_major(r)));
    }
    if let Some(mounts) = spec.pointer_mut("/mounts").and_then(Value::as_array_mut) {
        mounts.retain(|m| {
            !["destination", "source"].iter().any(|k| {
                m.get(*k)
                    .and_then(Value::as_str)
                    .is_some_and(|p| DEVICE_LIST_MOUNTS.iter().any(|d| p.starts_with(d)))
            })
        });
    }
    if let Some(ann) = spec.get_mut("annotations").and_then(Value::as_object_mut) {
        ann.retain(|k, _| !k.starts_with(CDI_ANNOTATION_PREFIX));
    }
}

/// Gives the container exactly `alloc`: device nodes with `rwm` rules,
/// `NVIDIA_VISIBLE_DEVICES`, the poststop hook (appended, replacing an
/// earlier ds01 hook), and the annotation. Call after [`strip_gpu_routes`].
pub fn inject(spec: &mut Value, alloc: &Allocation) {
    let Some(root) = spec.as_object_mut() else {
        return;
    };
    let mut nodes = alloc.nodes.clone();
    let mut seen = std::collections::HashSet::new();
    nodes.retain(|n| seen.insert(n.path.clone()));

    let linux = object_in(root, "linux");
    let devices = array_at(linux, "devices");
    devices.retain(|d| {
        !d.get("path")
            .and_then(Value::as_str)
            .is_some_and(|p| nodes.iter().any(|n| n.path == p))
    });
    devices.extend(nodes.iter().map(|n| {
        json!({
            "path": n.path, "type": "c", "major": n.major, "minor": n.minor,
            "fileMode": 0o666, "uid": 0, "gid": 0
        })
    }));
    let rules = array_at(object_in(linux, "resources"), "devices");
    rules.extend(
        alloc
            .deny_majors
            .iter()
            .map(|m| json!({"allow": false, "type": "c", "major": m, "access": "rwm"})),
    );
    rules.extend(nodes.iter().map(|n| {
        json!({"allow": true, "type": "c", "major": n.major, "minor": n.minor, "access": "rwm"})
    }));

    let process = object_in(root, "process");
    array_at(process, "env").push(Value::String(format!(
        "{VISIBLE}={}",
        alloc.uuids.join(",")
    )));

    let poststop = array_at(object_in(root, "hooks"), "poststop");
    poststop.retain(|h| h.get("path").and_then(Value::as_str) != Some(alloc.hook.path.as_str()));
    let mut hook = json!({"path": alloc.hook.path, "args": alloc.hook.args});
    if !alloc.hook.env.is_empty() {
        hook["env"] = json!(alloc.hook.env);
    }
    poststop.push(hook);

    object_in(root, "annotations")
        .insert(ANNOTATION.into(), Value::String(alloc.annotation.clone()));
}

/// The object at `key`, created when absent or null.
fn object_in<'a>(obj: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = obj.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut().expect("just made an object")
}

fn array_at<'a>(obj: &'a mut Map<String, Value>, key: &str) -> &'a mut Vec<Value> {
    let slot = obj.entry(key).or_insert_with(|| Value::Array(Vec::new()));
    if !slot.is_array() {
        *slot = Value::Array(Vec::new());
    }
    slot.as_array_mut().expect("just made an array")
}
