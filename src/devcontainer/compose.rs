//! A Compose-based dev container's service, read from its Compose files
//! (YAML, with `yaml-rust2`), for the same rules `check` applies to
//! `runArgs`: routes around the allocator, and GPU requests.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use yaml_rust2::{Yaml, YamlLoader};

/// What a Compose service says that matters to ds01.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Service {
    /// The Compose files read, in order.
    pub files: Vec<PathBuf>,
    /// (file, what) for each way around the allocator.
    pub bypasses: Vec<(PathBuf, String)>,
    /// Whether it asks for a GPU (a device reservation, the environment, a
    /// CDI device or an NVIDIA device node).
    pub requests_gpu: bool,
    /// Whether its environment says it wants none.
    pub wants_none: bool,
}

/// Reads `service` from the Compose files `files` names (relative to
/// `dir`, the devcontainer.json's folder). A file that cannot be read or
/// parsed is an error naming it.
pub fn read(dir: &Path, files: &Value, service: &str) -> Result<Service, String> {
    let names: Vec<&str> = match files {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let mut out = Service::default();
    for name in names {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read the Compose file {path:?}: {e}"))?;
        let docs = YamlLoader::load_from_str(&text)
            .map_err(|e| format!("the Compose file {path:?} is not valid YAML: {e}"))?;
        let doc = docs.first().map(to_json).unwrap_or(Value::Null);
        if let Some(svc) = doc.pointer(&format!("/services/{}", escape(service))) {
            judge(&path, svc, &mut out);
        }
        out.files.push(path);
    }
    Ok(out)
}

fn escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

fn judge(path: &Path, svc: &Value, out: &mut Service) {
    let mut bypass = |what: String| out.bypasses.push((path.to_path_buf(), what));
    if truthy(svc.get("privileged")) {
        bypass("privileged: true sees every GPU on the host".into());
    }
    if let Some(rt) = svc.get("runtime").and_then(Value::as_str) {
        bypass(format!("runtime: {rt} skips ds01's runtime"));
    }
    for rule in strings(svc.get("device_cgroup_rules")) {
        if super::check::rule_reaches_gpu(&rule) {
            bypass(format!("device_cgroup_rules {rule:?} opens NVIDIA devices"));
        }
    }
    for d in svc
        .get("devices")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let host = match d {
            Value::String(s) => s.split(':').next().unwrap_or("").to_string(),
            Value::Object(o) => o
                .get("source")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            _ => continue,
        };
        if super::check::is_gpu_device(&host) {
            out.requests_gpu = true;
        }
    }
    let reservations = svc
        .pointer("/deploy/resources/reservations/devices")
        .and_then(Value::as_array);
    for r in reservations.into_iter().flatten() {
        let nvidia = r.get("driver").and_then(Value::as_str) == Some("nvidia");
        let gpu = strings(r.get("capabilities")).iter().any(|c| c == "gpu");
        if nvidia || gpu {
            out.requests_gpu = true;
        }
    }
    let env: Vec<(String, String)> = match svc.get("environment") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .filter_map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect(),
        Some(Value::Object(o)) => o
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str().map_or_else(|| v.to_string(), String::from),
                )
            })
            .collect(),
        _ => Vec::new(),
    };
    if let Some((_, v)) = env.iter().find(|(k, _)| k == "NVIDIA_VISIBLE_DEVICES") {
        if super::check::says_none(v) {
            out.wants_none = true;
        } else {
            out.requests_gpu = true;
        }
    }
}

fn truthy(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// YAML as JSON: keys as strings, scalars as YAML 1.2 core types.
fn to_json(y: &Yaml) -> Value {
    match y {
        Yaml::Real(s) => s
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::String(s.clone()), Value::Number),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Array(a) => Value::Array(a.iter().map(to_json).collect()),
        Yaml::Hash(h) => {
            let mut m = Map::new();
            for (k, v) in h {
                let key = match k {
                    Yaml::String(s) | Yaml::Real(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    _ => continue,
                };
                m.insert(key, to_json(v));
            }
            Value::Object(m)
        }
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(yaml: &str) -> Service {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("docker-compose.yml"), yaml).unwrap();
        read(d.path(), &Value::String("docker-compose.yml".into()), "app").unwrap()
    }

    #[test]
    fn privileged_runtime_and_gpu_rules_are_routes_around_the_allocator() {
        let s = service(
            "services:\n  app:\n    image: x\n    privileged: true\n    runtime: nvidia\n    device_cgroup_rules:\n      - 'c 195:* rmw'\n      - 'c 10:200 rwm'\n  other:\n    privileged: true\n",
        );
        let what: Vec<&str> = s.bypasses.iter().map(|(_, w)| w.as_str()).collect();
        assert_eq!(what.len(), 3, "{what:?}");
        assert!(what[0].starts_with("privileged: true"));
        assert!(what[1].contains("runtime: nvidia"));
        assert!(what[2].contains("c 195:*"));
        assert!(!s.requests_gpu);
    }

    #[test]
    fn a_device_reservation_or_the_environment_is_a_gpu_request() {
        let s = service(
            "services:\n  app:\n    deploy:\n      resources:\n        reservations:\n          devices:\n            - driver: nvidia\n              count: 1\n              capabilities: [gpu]\n",
        );
        assert!(s.requests_gpu && s.bypasses.is_empty());
        let s =
            service("services:\n  app:\n    environment:\n      - NVIDIA_VISIBLE_DEVICES=all\n");
        assert!(s.requests_gpu);
        let s =
            service("services:\n  app:\n    environment:\n      NVIDIA_VISIBLE_DEVICES: none\n");
        assert!(s.wants_none && !s.requests_gpu);
        let s = service("services:\n  app:\n    devices:\n      - nvidia.com/gpu=all\n");
        assert!(s.requests_gpu);
    }

    #[test]
    fn a_broken_compose_file_is_named() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("c.yml"), "services: [\n").unwrap();
        let e = read(d.path(), &Value::String("c.yml".into()), "app").unwrap_err();
        assert!(e.contains("c.yml") && e.contains("not valid YAML"), "{e}");
        let e = read(d.path(), &Value::String("missing.yml".into()), "app").unwrap_err();
        assert!(e.contains("missing.yml"), "{e}");
    }
}
