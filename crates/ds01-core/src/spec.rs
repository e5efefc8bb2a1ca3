//! The edit of a bundle's `config.json`: take away every route to a GPU the
//! container brought along, then give it exactly its allocation.
//!
//! A pure function over `serde_json::Value` (with `preserve_order`), so every
//! field ds01 does not touch survives as it was, unknown ones included.

use std::path::Path;

use serde_json::{Map, Value, json};

use crate::access::{self, CRIO_ANNOTATIONS, DEVICE_LIST_DIRS, Node, NvidiaDevices, Rule};
use crate::inventory::DeviceNode;
use crate::oci::VISIBLE;

/// The annotation that records the allocation in the spec.
pub use crate::names::ALLOCATION_ANNOTATION as ANNOTATION;

/// How long runc lets the poststop hook run: a hook stuck on the ledger
/// lock must not hold `docker stop` forever (the lock wait itself ends sooner).
pub const HOOK_TIMEOUT_SECS: u64 = 30;

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
    pub hook: Hook,
    /// The value of the `ds01.allocation` annotation.
    pub annotation: String,
}

/// Removes every route to an NVIDIA device, judged by device number:
/// `NVIDIA_VISIBLE_DEVICES`, every node on the driver's majors and the
/// GPUs' DRM nodes, whatever their paths, every cgroup rule naming them,
/// the device-list mounts of NVIDIA's runtime, and annotations that ask an
/// NVIDIA runtime for devices (under any prefix, and inside CRI-O's copy).
/// Nodes ds01 does not allocate on other majors (IMEX channels) stay with
/// their rules.
pub fn strip_gpu_routes(spec: &mut Value, dev: &NvidiaDevices) {
    if let Some(env) = spec
        .pointer_mut("/process/env")
        .and_then(Value::as_array_mut)
    {
        env.retain(|e| !e.as_str().is_some_and(is_device_variable));
    }
    let node_of = |v: &Value| Node {
        major: v.get("major").and_then(Value::as_i64).unwrap_or(-1),
        minor: v.get("minor").and_then(Value::as_i64).unwrap_or(-1),
    };
    if let Some(devs) = spec
        .pointer_mut("/linux/devices")
        .and_then(Value::as_array_mut)
    {
        devs.retain(|d| {
            let char_dev = matches!(
                d.get("type").and_then(Value::as_str),
                None | Some("c" | "u")
            );
            !(char_dev && dev.owns(node_of(d)))
        });
    }
    if let Some(rules) = spec
        .pointer_mut("/linux/resources/devices")
        .and_then(Value::as_array_mut)
    {
        // Allow rules that open NVIDIA devices, and the deny rules earlier
        // versions of ds01 added: patching twice gives the same spec.
        rules.retain(|r| {
            let rule = Rule::read(r);
            let nvidia_major = rule.kind == 'c'
                && rule.minor.is_none()
                && rule
                    .major
                    .is_some_and(|m| dev.majors.iter().any(|x| i64::from(*x) == m));
            let opens_nvidia = dev.rule_opens(&rule) && !rule.is_wide();
            let own_deny = !rule.allow && nvidia_major;
            !opens_nvidia && !own_deny
        });
    }
    if let Some(mounts) = spec.pointer_mut("/mounts").and_then(Value::as_array_mut) {
        mounts.retain(|m| {
            !["destination", "source"].iter().any(|k| {
                m.get(*k)
                    .and_then(Value::as_str)
                    .is_some_and(|p| DEVICE_LIST_DIRS.iter().any(|d| p.starts_with(d)))
            })
        });
    }
    if let Some(ann) = spec.get_mut("annotations").and_then(Value::as_object_mut) {
        ann.retain(|k, v| {
            !v.as_str()
                .is_some_and(|v| access::is_device_annotation(k, v))
        });
        if let Some(crio) = ann.get_mut(CRIO_ANNOTATIONS)
            && let Some(Ok(Value::Object(mut inner))) =
                crio.as_str().map(serde_json::from_str::<Value>)
        {
            inner.retain(|k, v| {
                !v.as_str()
                    .is_some_and(|v| access::is_device_annotation(k, v))
            });
            *crio = Value::String(Value::Object(inner).to_string());
        }
    }
}

/// Variables NVIDIA's hook reads devices from: `NVIDIA_VISIBLE_DEVICES`,
/// the swarm-resource ones (`DOCKER_RESOURCE_*`, which it prefers where
/// configured), and the MIG config and monitor devices.
pub fn is_device_variable(entry: &str) -> bool {
    let name = entry.split('=').next().unwrap_or(entry);
    name == VISIBLE
        || name.starts_with("DOCKER_RESOURCE_")
        || name == "NVIDIA_MIG_CONFIG_DEVICES"
        || name == "NVIDIA_MIG_MONITOR_DEVICES"
}

/// For a container that asks for no GPU but carries NVIDIA's hook (an
/// always-on hook from hooks.d): no device variable but `void`, so the
/// hook gives it none (it would give legacy CUDA images every GPU).
pub fn deny_nvidia_hook(spec: &mut Value) {
    let Some(root) = spec.as_object_mut() else {
        return;
    };
    let env = array_at(object_in(root, "process"), "env");
    env.retain(|e| !e.as_str().is_some_and(is_device_variable));
    env.push(Value::String(format!("{VISIBLE}=void")));
}

/// Gives the container exactly `alloc`: device nodes with `rwm` rules,
/// `NVIDIA_VISIBLE_DEVICES`, the poststop hook (first, replacing an
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
    // No deny rules are needed: every rule that opened an NVIDIA device was
    // stripped, and wide ones never reach a patched spec (they are refused,
    // or an admin's spec passes untouched). A deny after a user's wildcard
    // would make runc's cgroup v1 emulator fail ("cannot punch hole").
    let rules = array_at(object_in(linux, "resources"), "devices");
    rules.extend(nodes.iter().map(|n| {
        json!({"allow": true, "type": "c", "major": n.major, "minor": n.minor, "access": "rwm"})
    }));

    let process = object_in(root, "process");
    array_at(process, "env").push(Value::String(format!(
        "{VISIBLE}={}",
        alloc.uuids.join(",")
    )));

    let poststop = array_at(object_in(root, "hooks"), "poststop");
    // An earlier patch's hook goes, in either of its forms.
    poststop.retain(|h| {
        let path = h.get("path").and_then(Value::as_str).unwrap_or_default();
        let name = Path::new(path).file_name().and_then(|n| n.to_str());
        path != alloc.hook.path && !matches!(name, Some("ds01-runtime" | "ds01-poststop"))
    });
    let mut hook =
        json!({"path": alloc.hook.path, "args": alloc.hook.args, "timeout": HOOK_TIMEOUT_SECS});
    if !alloc.hook.env.is_empty() {
        hook["env"] = json!(alloc.hook.env);
    }
    // First: runc stops at the first poststop hook that fails, and a
    // release must not wait on someone else's hook.
    poststop.insert(0, hook);

    object_in(root, "annotations")
        .insert(ANNOTATION.into(), Value::String(alloc.annotation.clone()));
}

/// The object at `key`, created when absent or null.
pub(crate) fn object_in<'a>(
    obj: &'a mut Map<String, Value>,
    key: &str,
) -> &'a mut Map<String, Value> {
    let slot = obj.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut().expect("just made an object")
}

pub(crate) fn array_at<'a>(obj: &'a mut Map<String, Value>, key: &str) -> &'a mut Vec<Value> {
    let slot = obj.entry(key).or_insert_with(|| Value::Array(Vec::new()));
    if !slot.is_array() {
        *slot = Value::Array(Vec::new());
    }
    slot.as_array_mut().expect("just made an array")
}
