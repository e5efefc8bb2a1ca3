//! What a container asks for, in whatever shape it asks.
//!
//! One rule for every shape (documented in `docs/policy.md`): each shape
//! names a number of devices, and the container asks for the largest.
//! - `NVIDIA_VISIBLE_DEVICES`: `all` is one, a list is its length;
//!   `none`, `void` or empty (any case) asks for nothing.
//! - NVIDIA nodes brought along (`--device`, CDI, `--privileged` copies):
//!   the number of GPUs they name, and one when they name every GPU of the
//!   host or only the driver's shared nodes.
//! - CDI annotations and device-list mounts: `all` is one, else one per
//!   device named.
//! - `DS01_GPU_PROFILE` alone: one device of that kind.
//!
//! Users never pick a physical device: ds01 does.

pub use crate::oci::{PROFILE, VISIBLE};

use crate::access::{self, Access};
use crate::oci;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Profile {
    /// Any MIG slice (the default); a full GPU only where the config allows.
    AnyMig,
    /// A MIG slice of this profile, such as `1g.10gb`.
    Mig(String),
    /// A whole GPU.
    Full,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub count: usize,
    pub profile: Profile,
}

/// How long a create may wait in the GPU queue, from the container's env.
pub const WAIT: &str = "DS01_GPU_WAIT";
/// The same, as a Docker label or an OCI annotation (`--label ds01.gpu-wait=30m`).
pub use crate::names::WAIT_LABEL;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RequestError {
    #[error("{0}: {1}")]
    BadWait(&'static str, String),
    #[error(
        "{PROFILE}={0:?} is not a GPU profile; use \"full\" or a MIG profile such as \"1g.10gb\""
    )]
    BadProfile(String),
}

/// How many devices a list of names asks for: `all` is one.
fn count_names<S: AsRef<str>>(names: &[S]) -> usize {
    let names: Vec<&str> = names
        .iter()
        .map(|s| s.as_ref().trim())
        .filter(|s| !s.is_empty())
        .collect();
    if names.iter().any(|n| is_all(n)) {
        1
    } else {
        names.len()
    }
}

fn is_all(name: &str) -> bool {
    let name = name.rsplit('=').next().unwrap_or(name);
    name.eq_ignore_ascii_case("all")
}

/// What `NVIDIA_VISIBLE_DEVICES` asks for: `None` when it asks for nothing
/// (unset, `none`, `void`, empty), `Some(0)` when it defers to the
/// device-list mounts (a path, as the device plugin writes).
fn visible_count(value: &str) -> Option<usize> {
    if crate::names::says_none(value) {
        return None;
    }
    let v = value.trim();
    if v.starts_with('/') {
        return Some(0);
    }
    let names: Vec<&str> = v.split(',').collect();
    Some(count_names(&names))
}

/// The GPU request of a spec read by [`oci::read`], judged by [`access::judge`]:
/// `None` for a container that asks for no GPU.
pub fn from_spec(
    spec: &serde_json::Value,
    access: &Access,
) -> Result<Option<Request>, RequestError> {
    let env = oci::env(spec);
    let visible = oci::env_value(&env, VISIBLE).and_then(visible_count);
    let nodes = if access.nodes.is_empty() {
        None
    } else if access.all_gpus || access.gpus_named == 0 {
        Some(1)
    } else {
        Some(access.gpus_named)
    };
    let annotations = access::device_annotations(spec);
    let mounts = access::device_list_mounts(spec);
    let profile_set = oci::env_value(&env, PROFILE).is_some_and(|p| !p.trim().is_empty());
    let shapes = [
        visible,
        nodes,
        (!annotations.is_empty()).then(|| count_names(&annotations)),
        (!mounts.is_empty()).then(|| count_names(&mounts)),
        profile_set.then_some(1),
    ];
    if shapes.iter().all(Option::is_none) {
        return Ok(None);
    }
    let count = shapes.iter().flatten().copied().max().unwrap_or(0).max(1);
    Ok(Some(Request {
        count,
        profile: profile(&env)?,
    }))
}

/// How long the container will wait for a device when none is free:
/// `DS01_GPU_WAIT` in its env, else its `ds01.gpu-wait` annotation, else
/// `label` (its Docker label); `None` when it names none (the config's
/// `gpu_wait` then applies).
pub fn wait(
    spec: &serde_json::Value,
    label: Option<&str>,
) -> Result<Option<std::time::Duration>, RequestError> {
    let env = oci::env(spec);
    let annotation = spec
        .pointer("/annotations")
        .and_then(|a| a.get(WAIT_LABEL))
        .and_then(serde_json::Value::as_str);
    let (name, text) = match (oci::env_value(&env, WAIT), annotation.or(label)) {
        (Some(v), _) => (WAIT, v.to_string()),
        (None, Some(v)) => (WAIT_LABEL, v.to_string()),
        (None, None) => return Ok(None),
    };
    match crate::idle::parse(text.trim()) {
        Ok(Some(d)) => Ok(Some(d)),
        _ => Err(RequestError::BadWait(
            name,
            format!("{text:?} is not a wait; write it like \"30m\", \"60s\" or \"0s\""),
        )),
    }
}

fn profile(env: &[&str]) -> Result<Profile, RequestError> {
    Ok(match oci::env_value(env, PROFILE).map(str::trim) {
        None | Some("") => Profile::AnyMig,
        Some(p) if p.eq_ignore_ascii_case("mig") => Profile::AnyMig,
        Some(p) if p.eq_ignore_ascii_case("full") => Profile::Full,
        Some(p) if is_mig_profile(p) => Profile::Mig(p.to_string()),
        Some(p) => return Err(RequestError::BadProfile(p.to_string())),
    })
}

/// `<n>g.<m>gb`, optionally with a `+me` style suffix, as NVML names them.
fn is_mig_profile(p: &str) -> bool {
    let Some((g, rest)) = p.split_once("g.") else {
        return false;
    };
    let mem = rest.split('+').next().unwrap_or("");
    let Some(gb) = mem.strip_suffix("gb") else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    digits(g) && digits(gb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{Node, NvidiaDevices, judge};
    use serde_json::json;

    fn devices() -> NvidiaDevices {
        NvidiaDevices {
            majors: vec![195, 511, 236],
            frontend: 195,
            drm: vec![(0, 1), (0, 128), (1, 2), (1, 129)],
            gpus: vec![(0, 0), (1, 1)],
        }
    }

    fn of(spec: serde_json::Value) -> Result<Option<Request>, RequestError> {
        let a = judge(&spec, &devices());
        from_spec(&spec, &a)
    }

    fn env(vars: &[&str]) -> Result<Option<Request>, RequestError> {
        of(json!({"process": {"env": vars}}))
    }

    fn mig(count: usize) -> Option<Request> {
        Some(Request {
            count,
            profile: Profile::AnyMig,
        })
    }

    #[test]
    fn a_wait_comes_from_the_env_then_the_annotation_then_the_label() {
        use std::time::Duration;
        let spec = json!({"process": {"env": ["DS01_GPU_WAIT=30m"]}, "annotations": {"ds01.gpu-wait": "1h"}});
        assert_eq!(wait(&spec, Some("2h")), Ok(Some(Duration::from_secs(1800))));
        let spec = json!({"process": {"env": []}, "annotations": {"ds01.gpu-wait": "1h"}});
        assert_eq!(wait(&spec, Some("2h")), Ok(Some(Duration::from_secs(3600))));
        let spec = json!({"process": {"env": []}});
        assert_eq!(wait(&spec, Some("60s")), Ok(Some(Duration::from_secs(60))));
        assert_eq!(wait(&spec, None), Ok(None));
        let spec = json!({"process": {"env": ["DS01_GPU_WAIT=a while"]}});
        let e = wait(&spec, None).unwrap_err().to_string();
        assert!(
            e.starts_with("DS01_GPU_WAIT: \"a while\" is not a wait"),
            "{e}"
        );
        assert!(
            wait(&json!({}), Some("never")).is_err(),
            "a wait has an end"
        );
    }

    #[test]
    fn no_variable_or_none_in_any_case_means_no_gpu() {
        assert_eq!(env(&["PATH=/bin"]), Ok(None));
        for v in ["none", "void", "", " ", "NONE", "Void", "nOnE"] {
            assert_eq!(
                env(&[&format!("NVIDIA_VISIBLE_DEVICES={v}")]),
                Ok(None),
                "{v:?}"
            );
        }
        // A look-alike name is not the variable.
        assert_eq!(env(&["NVIDIA_VISIBLE_DEVICES_X=all"]), Ok(None));
    }

    #[test]
    fn all_is_one_and_a_list_is_its_length() {
        assert_eq!(env(&["NVIDIA_VISIBLE_DEVICES=all"]), Ok(mig(1)));
        assert_eq!(env(&["NVIDIA_VISIBLE_DEVICES=ALL"]), Ok(mig(1)));
        assert_eq!(env(&["NVIDIA_VISIBLE_DEVICES=0,1"]), Ok(mig(2)));
        assert_eq!(env(&["NVIDIA_VISIBLE_DEVICES=GPU-a,MIG-b,1:0"]), Ok(mig(3)));
        assert_eq!(env(&["NVIDIA_VISIBLE_DEVICES=3"]), Ok(mig(1)));
    }

    #[test]
    fn the_last_value_wins() {
        assert_eq!(
            env(&["NVIDIA_VISIBLE_DEVICES=0,1", "NVIDIA_VISIBLE_DEVICES=none"]),
            Ok(None)
        );
    }

    #[test]
    fn a_profile_alone_asks_for_one_device_of_that_kind() {
        assert_eq!(
            env(&["DS01_GPU_PROFILE=1g.10gb"]),
            Ok(Some(Request {
                count: 1,
                profile: Profile::Mig("1g.10gb".into())
            }))
        );
        assert_eq!(
            env(&["DS01_GPU_PROFILE=full"]).unwrap().unwrap().profile,
            Profile::Full
        );
        assert_eq!(env(&["DS01_GPU_PROFILE="]), Ok(None));
    }

    fn node(major: u32, minor: u32) -> serde_json::Value {
        json!({"path": "/dev/whatever", "type": "c", "major": major, "minor": minor})
    }

    #[test]
    fn every_shape_of_all_is_one_device() {
        let all_nodes = json!({"linux": {"devices": [node(195, 0), node(195, 1), node(195, 255)]}});
        let cdi_all = json!({"annotations": {"cdi.k8s.io/x": "nvidia.com/gpu=all"}});
        let mount_all = json!({
            "process": {"env": ["NVIDIA_VISIBLE_DEVICES=/var/run/nvidia-container-devices"]},
            "mounts": [{"destination": "/var/run/nvidia-container-devices/all", "source": "/dev/null"}]
        });
        for s in [all_nodes, cdi_all, mount_all] {
            assert_eq!(of(s.clone()), Ok(mig(1)), "{s}");
        }
    }

    #[test]
    fn named_devices_count_in_every_shape() {
        let nodes = json!({"linux": {"devices": [node(195, 0), node(226, 128), node(195, 255)]}});
        assert_eq!(of(nodes), Ok(mig(1)), "a GPU and its own DRM node are one");
        let mounts = json!({
            "process": {"env": ["NVIDIA_VISIBLE_DEVICES=/var/run/nvidia-container-devices"]},
            "mounts": [
                {"destination": "/var/run/nvidia-container-devices/GPU-a", "source": "/dev/null"},
                {"destination": "/var/run/nvidia-container-devices/GPU-b", "source": "/dev/null"}
            ]
        });
        assert_eq!(of(mounts), Ok(mig(2)));
        let cdi =
            json!({"annotations": {"nvidia.cdi.k8s.io/x": "nvidia.com/gpu=0,nvidia.com/gpu=1"}});
        assert_eq!(of(cdi), Ok(mig(2)));
        // Shapes together: the largest wins (an image's ENV all beside two devices).
        let both = json!({
            "process": {"env": ["NVIDIA_VISIBLE_DEVICES=all"]},
            "annotations": {"cdi.k8s.io/x": "nvidia.com/gpu=0,nvidia.com/gpu=1"}
        });
        assert_eq!(of(both), Ok(mig(2)));
    }

    #[test]
    fn driver_nodes_alone_are_a_request_for_one() {
        for (ma, mi) in [(195, 255), (236, 201), (511, 0)] {
            let s = json!({"process": {"env": ["NVIDIA_VISIBLE_DEVICES=void"]},
                           "linux": {"devices": [node(ma, mi)]}});
            assert_eq!(of(s), Ok(mig(1)), "{ma}:{mi}");
        }
        let a = Access {
            nodes: vec![Node {
                major: 195,
                minor: 0,
            }],
            gpus_named: 1,
            ..Access::default()
        };
        assert_eq!(from_spec(&json!({}), &a), Ok(mig(1)));
    }

    #[test]
    fn profile_picks_the_kind() {
        let p = |v: &str| {
            env(&[
                "NVIDIA_VISIBLE_DEVICES=all",
                &format!("DS01_GPU_PROFILE={v}"),
            ])
            .map(|r| r.unwrap().profile)
        };
        assert_eq!(p("full"), Ok(Profile::Full));
        assert_eq!(p("FULL"), Ok(Profile::Full));
        assert_eq!(p("1g.10gb"), Ok(Profile::Mig("1g.10gb".into())));
        assert_eq!(p("1g.10gb+me"), Ok(Profile::Mig("1g.10gb+me".into())));
        assert_eq!(p(""), Ok(Profile::AnyMig));
        assert_eq!(p("mig"), Ok(Profile::AnyMig));
        let e = p("huge").unwrap_err();
        assert!(
            e.to_string().contains("\"huge\" is not a GPU profile"),
            "{e}"
        );
        assert!(p("1g.gb").is_err());
    }
}
