//! `ds01-gate`'s policy: what a caller, known by the kernel's credentials
//! on the socket, may ask of Docker. Pure: the daemon reads the requests
//! and Docker's answers, this decides.

use std::path::{Component, Path, PathBuf};

use serde_json::{Map, Value};

use crate::devcontainer::check::{is_gpu_device, rule_reaches_gpu};

/// The label the gate stamps on what a caller creates.
pub const USER_LABEL: &str = "ds01.user";

/// Who is calling.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    pub uid: u32,
    pub name: String,
    pub home: PathBuf,
    pub admin: bool,
}

/// The gate's settings (config keys `gate_*`).
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// Capabilities a non-admin may add (`--cap-add`), upper case without `CAP_`.
    pub cap_add: Vec<String>,
    /// Host namespaces a non-admin may join: `pid`, `network`, `ipc`.
    pub host_namespaces: Vec<String>,
    /// Host paths anyone may bind-mount, besides their home.
    pub shared_paths: Vec<PathBuf>,
    /// Whether `docker ps` lists everyone's containers (else only the caller's).
    pub list_all: bool,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            cap_add: Vec::new(),
            host_namespaces: Vec::new(),
            shared_paths: Vec::new(),
            list_all: true,
        }
    }
}

/// What Docker's API path is about, after the version prefix.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// `POST /containers/create`.
    Create,
    /// `GET /containers/json`.
    List,
    /// An operation on one container: its id or name, and the operation.
    Container(String, String),
    /// `POST /exec/{id}/start|resize|json`: an exec instance.
    Exec(String),
    /// `POST /volumes/create`.
    VolumeCreate,
    /// `DELETE /volumes/{name}`.
    VolumeRemove(String),
    /// Everything else: images, networks, system, ping, build, ...
    Other,
}

/// The path without its `/vX.Y` prefix.
pub fn strip_version(path: &str) -> &str {
    if let Some(rest) = path.strip_prefix("/v")
        && let Some(i) = rest.find('/')
        && rest[..i].chars().all(|c| c.is_ascii_digit() || c == '.')
        && !rest[..i].is_empty()
    {
        return &rest[i..];
    }
    path
}

pub fn target(method: &str, path: &str) -> Target {
    let p = strip_version(path.split('?').next().unwrap_or(path));
    let parts: Vec<&str> = p.trim_start_matches('/').split('/').collect();
    match (method, parts.as_slice()) {
        ("POST", ["containers", "create"]) => Target::Create,
        ("GET", ["containers", "json"]) => Target::List,
        (_, ["containers", "prune"]) => Target::Other,
        (_, ["containers", id]) => Target::Container(id.to_string(), "remove".into()),
        (_, ["containers", id, op, ..]) => Target::Container(id.to_string(), op.to_string()),
        (_, ["exec", id, ..]) => Target::Exec(id.to_string()),
        ("POST", ["volumes", "create"]) => Target::VolumeCreate,
        ("DELETE", ["volumes", name]) => Target::VolumeRemove(name.to_string()),
        _ => Target::Other,
    }
}

/// A refusal: the rule's name and the reason, for one line.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub rule: &'static str,
    pub reason: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ds01-gate: {} (rule {})", self.reason, self.rule)
    }
}

fn refuse(rule: &'static str, reason: String) -> Result<(), Refusal> {
    Err(Refusal { rule, reason })
}

/// Judges a container create body and stamps the caller's name on it.
/// A body that is not a JSON object is refused (fail closed).
pub fn create(body: &[u8], caller: &Caller, rules: &Rules) -> Result<Vec<u8>, Refusal> {
    let mut v: Value = serde_json::from_slice(body).map_err(|e| Refusal {
        rule: "parse",
        reason: format!("the create request is not JSON the gate can read ({e})"),
    })?;
    let Some(obj) = v.as_object_mut() else {
        return Err(Refusal {
            rule: "parse",
            reason: "the create request is not a JSON object".into(),
        });
    };
    if !caller.admin {
        judge_host_config(obj.get("HostConfig").unwrap_or(&Value::Null), caller, rules)?;
    }
    stamp(obj, caller);
    Ok(serde_json::to_vec(&v).expect("JSON serialises"))
}

/// Stamps the caller on a volume they create.
pub fn volume_create(body: &[u8], caller: &Caller) -> Result<Vec<u8>, Refusal> {
    let mut v: Value = if body.is_empty() {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(body).map_err(|e| Refusal {
            rule: "parse",
            reason: format!("the volume request is not JSON the gate can read ({e})"),
        })?
    };
    let obj = v.as_object_mut().ok_or(Refusal {
        rule: "parse",
        reason: "the volume request is not a JSON object".into(),
    })?;
    stamp(obj, caller);
    Ok(serde_json::to_vec(&v).expect("JSON serialises"))
}

/// Sets `Labels.ds01.user` to the caller, replacing whatever was there.
fn stamp(obj: &mut Map<String, Value>, caller: &Caller) {
    let labels = obj
        .entry("Labels")
        .or_insert_with(|| Value::Object(Map::new()));
    if !labels.is_object() {
        *labels = Value::Object(Map::new());
    }
    labels
        .as_object_mut()
        .expect("made an object")
        .insert(USER_LABEL.into(), Value::String(caller.name.clone()));
}

fn judge_host_config(hc: &Value, caller: &Caller, rules: &Rules) -> Result<(), Refusal> {
    let s = |k: &str| hc.get(k).and_then(Value::as_str).unwrap_or("");
    if hc.get("Privileged").and_then(Value::as_bool) == Some(true) {
        return refuse(
            "privileged",
            "--privileged sees every device on the host, every GPU included".into(),
        );
    }
    let runtime = s("Runtime");
    if !["", "ds01", "nvidia"].contains(&runtime) {
        return refuse(
            "runtime",
            format!(
                "--runtime={runtime} goes around ds01's GPU allocation; use the default runtime"
            ),
        );
    }
    for d in hc
        .get("Devices")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let host = d.get("PathOnHost").and_then(Value::as_str).unwrap_or("");
        if is_gpu_device(host) {
            return refuse(
                "gpu-device",
                format!(
                    "--device {host} is an NVIDIA device; ask for a GPU with --gpus or NVIDIA_VISIBLE_DEVICES"
                ),
            );
        }
    }
    for r in hc
        .get("DeviceCgroupRules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let r = r.as_str().unwrap_or("");
        if rule_reaches_gpu(r) {
            return refuse(
                "device-rule",
                format!("--device-cgroup-rule {r:?} opens NVIDIA devices"),
            );
        }
    }
    for c in hc
        .get("CapAdd")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let cap = c.as_str().unwrap_or("").to_ascii_uppercase();
        let cap = cap.strip_prefix("CAP_").unwrap_or(&cap).to_string();
        if !rules.cap_add.contains(&cap) {
            return refuse(
                "cap-add",
                format!(
                    "--cap-add {cap} is not allowed here (allowed: {})",
                    if rules.cap_add.is_empty() {
                        "none".to_string()
                    } else {
                        rules.cap_add.join(", ")
                    }
                ),
            );
        }
    }
    for (key, ns) in [
        ("PidMode", "pid"),
        ("NetworkMode", "network"),
        ("IpcMode", "ipc"),
    ] {
        if s(key) == "host" && !rules.host_namespaces.iter().any(|n| n == ns) {
            return refuse(
                "host-namespace",
                format!("--{ns}=host shares the host's {ns} namespace"),
            );
        }
    }
    if s("UsernsMode") == "host" {
        return refuse(
            "userns-host",
            "--userns=host leaves the user-namespace remapping".into(),
        );
    }
    for o in hc
        .get("SecurityOpt")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let o = o.as_str().unwrap_or("");
        let o_norm = o.replace(':', "=");
        if [
            "apparmor=unconfined",
            "seccomp=unconfined",
            "label=disable",
            "systempaths=unconfined",
        ]
        .iter()
        .any(|u| o_norm.eq_ignore_ascii_case(u))
        {
            return refuse(
                "security-opt",
                format!("--security-opt {o} unconfines the container"),
            );
        }
    }
    let binds = hc
        .get("Binds")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|b| b.as_str())
        .map(|b| b.split(':').next().unwrap_or("").to_string());
    let mounts = hc
        .get("Mounts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|m| m.get("Type").and_then(Value::as_str) == Some("bind"))
        .filter_map(|m| m.get("Source").and_then(Value::as_str).map(String::from));
    for src in binds.chain(mounts) {
        if !src.starts_with('/') {
            continue; // a named volume
        }
        if !may_mount(Path::new(&src), caller, rules) {
            return refuse(
                "bind-mount",
                format!(
                    "-v {src} is outside your home ({}) and the shared paths",
                    caller.home.display()
                ),
            );
        }
    }
    Ok(())
}

/// A path with `.` and `..` taken out, as the kernel would walk it (links
/// are resolved by [`may_mount`] where the path exists).
fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

/// Whether a bind source lies in the caller's home or a shared path, after
/// `..` and symbolic links (a link in your home to `/` is not your home).
pub fn may_mount(src: &Path, caller: &Caller, rules: &Rules) -> bool {
    let real = std::fs::canonicalize(src).unwrap_or_else(|_| lexical(src));
    let under = |root: &Path| {
        let root = std::fs::canonicalize(root).unwrap_or_else(|_| lexical(root));
        real.starts_with(&root)
    };
    under(&caller.home) || rules.shared_paths.iter().any(|p| under(p))
}

/// Whether the caller may act on a container owned by `owner` (its label).
pub fn may_act(caller: &Caller, owner: Option<&str>) -> Result<(), Refusal> {
    if caller.admin || owner == Some(caller.name.as_str()) {
        return Ok(());
    }
    refuse(
        "ownership",
        format!(
            "this container is {}, not yours",
            owner.map_or_else(
                || "nobody's (no ds01.user label)".to_string(),
                |o| format!("{o}'s")
            )
        ),
    )
}

/// The list query with a filter to the caller's containers added.
pub fn own_filter(query: Option<&str>, caller: &Caller) -> String {
    let mut pairs: Vec<(String, String)> = query
        .unwrap_or("")
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_string(), percent_decode(v))
        })
        .collect();
    let mut filters: Map<String, Value> = pairs
        .iter()
        .find(|(k, _)| k == "filters")
        .and_then(|(_, v)| serde_json::from_str(v).ok())
        .unwrap_or_default();
    // Added to the caller's own label filters (all must match), in either
    // form Docker takes: a list, or an object of `"k=v": true`.
    let label = format!("{USER_LABEL}={}", caller.name);
    match filters.get_mut("label") {
        Some(Value::Array(list)) => list.push(Value::String(label)),
        Some(Value::Object(set)) => {
            set.insert(label, Value::Bool(true));
        }
        _ => {
            filters.insert("label".into(), serde_json::json!([label]));
        }
    }
    pairs.retain(|(k, _)| k != "filters");
    pairs.push(("filters".into(), Value::Object(filters).to_string()));
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(n) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or(""), 16)
        {
            out.push(n);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|c| {
            if c.is_ascii_alphanumeric() || b"-_.~".contains(&c) {
                (c as char).to_string()
            } else {
                format!("%{c:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn alice() -> Caller {
        Caller {
            uid: 1000,
            name: "alice".into(),
            home: "/home/alice".into(),
            admin: false,
        }
    }

    fn create_with(hc: Value) -> Result<Value, Refusal> {
        let body = json!({"Image": "x", "Labels": {"ds01.user": "bob"}, "HostConfig": hc});
        create(body.to_string().as_bytes(), &alice(), &Rules::default())
            .map(|b| serde_json::from_slice(&b).unwrap())
    }

    #[test]
    fn the_callers_name_replaces_any_label() {
        let v = create_with(json!({})).unwrap();
        assert_eq!(v["Labels"]["ds01.user"], "alice");
        let v: Value = serde_json::from_slice(
            &create(br#"{"Image":"x"}"#, &alice(), &Rules::default()).unwrap(),
        )
        .unwrap();
        assert_eq!(v["Labels"]["ds01.user"], "alice");
    }

    #[test]
    fn every_route_around_the_rules_is_refused_with_its_rule() {
        for (hc, rule) in [
            (json!({"Privileged": true}), "privileged"),
            (json!({"Runtime": "runc"}), "runtime"),
            (
                json!({"Devices": [{"PathOnHost": "/dev/nvidia0", "PathInContainer": "/dev/x"}]}),
                "gpu-device",
            ),
            (json!({"DeviceCgroupRules": ["c 195:* rwm"]}), "device-rule"),
            (json!({"CapAdd": ["SYS_ADMIN"]}), "cap-add"),
            (json!({"PidMode": "host"}), "host-namespace"),
            (json!({"NetworkMode": "host"}), "host-namespace"),
            (json!({"IpcMode": "host"}), "host-namespace"),
            (json!({"UsernsMode": "host"}), "userns-host"),
            (
                json!({"SecurityOpt": ["seccomp=unconfined"]}),
                "security-opt",
            ),
            (
                json!({"SecurityOpt": ["apparmor:unconfined"]}),
                "security-opt",
            ),
            (json!({"Binds": ["/:/host"]}), "bind-mount"),
            (json!({"Binds": ["/home/alice/../bob:/x"]}), "bind-mount"),
            (
                json!({"Mounts": [{"Type": "bind", "Source": "/etc", "Target": "/etc"}]}),
                "bind-mount",
            ),
        ] {
            let e = create_with(hc.clone()).unwrap_err();
            assert_eq!(e.rule, rule, "{hc}: {e}");
            assert!(e.to_string().starts_with("ds01-gate: "), "{e}");
        }
        for hc in [
            json!({"Runtime": "nvidia"}),
            json!({"Binds": ["/home/alice/data:/data", "myvol:/v"]}),
            json!({"NetworkMode": "bridge", "CapAdd": []}),
        ] {
            assert!(create_with(hc.clone()).is_ok(), "{hc}");
        }
        // An admin may; a configured cap and namespace may.
        let admin = Caller {
            admin: true,
            ..alice()
        };
        let body = json!({"Image": "x", "HostConfig": {"Privileged": true}}).to_string();
        assert!(create(body.as_bytes(), &admin, &Rules::default()).is_ok());
        let rules = Rules {
            cap_add: vec!["SYS_PTRACE".into()],
            host_namespaces: vec!["network".into()],
            ..Rules::default()
        };
        let body = json!({"Image": "x", "HostConfig": {"CapAdd": ["CAP_SYS_PTRACE"], "NetworkMode": "host"}}).to_string();
        assert!(create(body.as_bytes(), &alice(), &rules).is_ok());
    }

    #[test]
    fn a_link_out_of_the_home_is_not_the_home() {
        let d = tempfile::tempdir().unwrap();
        let home = d.path().join("alice");
        std::fs::create_dir(&home).unwrap();
        std::os::unix::fs::symlink("/", home.join("root")).unwrap();
        let caller = Caller {
            home: home.clone(),
            ..alice()
        };
        assert!(may_mount(&home.join("work"), &caller, &Rules::default()));
        assert!(!may_mount(
            &home.join("root/etc"),
            &caller,
            &Rules::default()
        ));
        let rules = Rules {
            shared_paths: vec!["/srv/datasets".into()],
            ..Rules::default()
        };
        assert!(may_mount(
            Path::new("/srv/datasets/imagenet"),
            &caller,
            &rules
        ));
    }

    #[test]
    fn unreadable_requests_are_refused_not_forwarded() {
        for body in [&b"{"[..], b"[1]", b"null", b"\xff"] {
            assert_eq!(
                create(body, &alice(), &Rules::default()).unwrap_err().rule,
                "parse"
            );
        }
    }

    #[test]
    fn paths_are_read_with_or_without_a_version() {
        assert_eq!(target("POST", "/v1.41/containers/create"), Target::Create);
        assert_eq!(target("POST", "/containers/create?name=x"), Target::Create);
        assert_eq!(target("GET", "/v1.43/containers/json"), Target::List);
        assert_eq!(
            target("POST", "/v1.41/containers/abc/stop"),
            Target::Container("abc".into(), "stop".into())
        );
        assert_eq!(
            target("DELETE", "/v1.41/containers/abc"),
            Target::Container("abc".into(), "remove".into())
        );
        assert_eq!(
            target("POST", "/v1.41/exec/e1/start"),
            Target::Exec("e1".into())
        );
        assert_eq!(
            target("DELETE", "/volumes/v1"),
            Target::VolumeRemove("v1".into())
        );
        assert_eq!(target("GET", "/_ping"), Target::Other);
        assert_eq!(target("POST", "/v1.41/build"), Target::Other);
    }

    #[test]
    fn the_list_filter_keeps_the_callers_own_filters() {
        let q = own_filter(
            Some("all=1&filters=%7B%22status%22%3A%5B%22running%22%5D%7D"),
            &alice(),
        );
        assert!(q.starts_with("all=1&filters="), "{q}");
        let f: Value =
            serde_json::from_str(&percent_decode(q.split("filters=").nth(1).unwrap())).unwrap();
        assert_eq!(f["status"][0], "running");
        assert_eq!(f["label"][0], "ds01.user=alice");
    }

    #[test]
    fn the_callers_label_filter_joins_the_callers_own() {
        let f = |q: &str| -> Value {
            let q = own_filter(Some(q), &alice());
            serde_json::from_str(&percent_decode(q.split("filters=").nth(1).unwrap())).unwrap()
        };
        let v = f("filters=%7B%22label%22%3A%5B%22com.docker.compose.project%3Dweb%22%5D%7D");
        assert_eq!(
            v["label"],
            json!(["com.docker.compose.project=web", "ds01.user=alice"])
        );
        let v = f("filters=%7B%22label%22%3A%7B%22a%3Db%22%3Atrue%7D%7D");
        assert_eq!(v["label"], json!({"a=b": true, "ds01.user=alice": true}));
    }

    #[test]
    fn only_the_owner_or_an_admin_acts_on_a_container() {
        assert!(may_act(&alice(), Some("alice")).is_ok());
        let e = may_act(&alice(), Some("bob")).unwrap_err();
        assert_eq!(e.rule, "ownership");
        assert!(e.reason.contains("bob's"));
        assert!(may_act(&alice(), None).is_err());
        assert!(
            may_act(
                &Caller {
                    admin: true,
                    ..alice()
                },
                Some("bob")
            )
            .is_ok()
        );
    }
}
