//! `ds01-gate`'s policy: what a caller, known by the kernel's credentials
//! on the socket, may ask of Docker. Pure: the daemon reads the requests
//! and Docker's answers, this decides.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

pub mod body;
pub mod place;
pub mod query;
pub mod route;
pub mod strict;

pub use body::Reach;
pub use route::{Op, Route, judge_content_types, route};

/// The label the gate stamps on what a caller creates.
pub use ds01_core::names::USER_LABEL;

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

/// A request the gate denies: the rule's name and the reason, for one line.
#[derive(Debug, Clone, PartialEq)]
pub struct Denial {
    pub rule: &'static str,
    pub reason: String,
}

impl std::fmt::Display for Denial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ds01-gate: {} (rule {})", self.reason, self.rule)
    }
}

fn refuse(rule: &'static str, reason: String) -> Result<(), Denial> {
    Err(Denial { rule, reason })
}

impl std::error::Error for Denial {}

/// Reads a body the gate judges: strictly for a non-admin (no repeated
/// keys in any case), as plain JSON for an admin; empty counts as `{}`.
fn read(body: &[u8], caller: &Caller, what: &str) -> Result<Value, Denial> {
    let parsed = if body.iter().all(u8::is_ascii_whitespace) {
        Ok(Value::Object(Map::new()))
    } else if caller.admin {
        serde_json::from_slice(body).map_err(|e| e.to_string())
    } else {
        strict::parse(body)
    };
    let v = parsed.map_err(|e| Denial {
        rule: "parse",
        reason: format!("the {what} request is not JSON the gate can read ({e})"),
    })?;
    if !v.is_object() {
        return Err(Denial {
            rule: "parse",
            reason: format!("the {what} request is not a JSON object"),
        });
    }
    Ok(v)
}

fn write(mut v: Value, caller: &Caller) -> Vec<u8> {
    stamp(v.as_object_mut().expect("read checks"), caller);
    serde_json::to_vec(&v).expect("JSON serialises")
}

/// Judges a container create body and stamps the caller's name on it; the
/// containers it reaches into, each of which must be the caller's.
/// A non-admin's container is placed in their parent and sized by `place`.
pub fn create(
    body: &[u8],
    caller: &Caller,
    rules: &Rules,
    place: Option<&place::Place>,
) -> Result<(Vec<u8>, Reach), Denial> {
    let mut v = read(body, caller, "create")?;
    let reach = if caller.admin {
        Reach::default()
    } else {
        body::judge_create(&v, caller, rules)?
    };
    if let Some(p) = place.filter(|_| !caller.admin) {
        place::create(&mut v, &caller.name, p)?;
    }
    Ok((write(v, caller), reach))
}

/// A judged create body with the containers it reaches into named by
/// their full ids (`ids`: as given, to full), so that dockerd acts on the
/// very containers the gate checked, whatever is renamed meanwhile.
pub fn name_reach(body: &[u8], ids: &std::collections::HashMap<String, String>) -> Vec<u8> {
    let Ok(mut v) = serde_json::from_slice::<Value>(body) else {
        return body.to_vec();
    };
    let full = |name: &str| ids.get(name).cloned().unwrap_or_else(|| name.to_string());
    if let Some(hc) = v.get_mut("HostConfig").and_then(Value::as_object_mut) {
        for key in ["PidMode", "IpcMode", "NetworkMode"] {
            if let Some(Value::String(s)) = hc.get_mut(key)
                && let Some(c) = s.strip_prefix("container:")
            {
                *s = format!("container:{}", full(c));
            }
        }
        for key in ["VolumesFrom", "Links"] {
            for e in hc
                .get_mut(key)
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if let Value::String(s) = e {
                    let (name, rest) = s
                        .split_once(':')
                        .map_or((s.as_str(), None), |(a, b)| (a, Some(b)));
                    let bare = name.trim_start_matches('/');
                    let id = full(bare);
                    *s = match rest {
                        Some(r) => format!("{id}:{r}"),
                        // A bare link keeps its name as the alias.
                        None if key == "Links" => format!("{id}:{bare}"),
                        None => id,
                    };
                }
            }
        }
    }
    serde_json::to_vec(&v).expect("JSON serialises")
}

/// Judges a volume create body and stamps the caller on it.
pub fn volume_create(body: &[u8], caller: &Caller) -> Result<Vec<u8>, Denial> {
    let v = read(body, caller, "volume")?;
    if !caller.admin {
        body::judge_volume(&v)?;
    }
    Ok(write(v, caller))
}

/// Judges a network create body and stamps the caller on it.
pub fn network_create(body: &[u8], caller: &Caller) -> Result<Vec<u8>, Denial> {
    let v = read(body, caller, "network")?;
    if !caller.admin {
        body::judge_network(&v)?;
    }
    Ok(write(v, caller))
}

/// Judges a commit's config body and stamps the caller on the image.
pub fn commit_config(body: &[u8], caller: &Caller) -> Result<Vec<u8>, Denial> {
    let v = read(body, caller, "commit")?;
    if !caller.admin {
        body::judge_commit_config(&v)?;
    }
    Ok(write(v, caller))
}

/// Judges a body the gate passes on unchanged (exec, update, connect).
pub fn judged<T>(
    body: &[u8],
    caller: &Caller,
    what: &str,
    judge: impl Fn(&Value) -> Result<T, Denial>,
) -> Result<Option<T>, Denial> {
    let v = read(body, caller, what)?;
    if caller.admin {
        return Ok(None);
    }
    judge(&v).map(Some)
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

/// Whether a bind source lies in the caller's home or a shared path, after
/// `..` and symbolic links (a link in your home to `/` is not your home).
pub fn may_mount(src: &Path, caller: &Caller, rules: &Rules) -> bool {
    let real = std::fs::canonicalize(src).unwrap_or_else(|_| ds01_core::fsutil::lexical(src));
    let under = |root: &Path| {
        let root = std::fs::canonicalize(root).unwrap_or_else(|_| ds01_core::fsutil::lexical(root));
        real.starts_with(&root)
    };
    under(&caller.home) || rules.shared_paths.iter().any(|p| under(p))
}

/// Whether the caller may act on a container owned by `owner` (its label).
pub fn may_act(caller: &Caller, owner: Option<&str>) -> Result<(), Denial> {
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

/// The query of a list, events or prune with a filter to the caller's own
/// objects added (joined to any label filters of the caller's).
pub fn own_filter(q: Option<&str>, caller: &Caller) -> Result<String, Denial> {
    let mut pairs = query::parse(q)?;
    let mut filters: Map<String, Value> = match query::one(&pairs, "filters")? {
        Some(f) if !f.is_empty() => match strict::parse(f.as_bytes()) {
            Ok(Value::Object(o)) => o,
            _ => {
                return refuse("parse", "the filters cannot be read".into())
                    .map(|()| String::new());
            }
        },
        _ => Map::new(),
    };
    // Either form Docker takes: a list, or an object of `"k=v": true`.
    let label = format!("{USER_LABEL}={}", caller.name);
    match filters.get_mut("label") {
        Some(Value::Array(list)) => list.push(Value::String(label)),
        Some(Value::Object(set)) => {
            set.insert(label, Value::Bool(true));
        }
        None => {
            // The map form: every Docker reads it; some prunes not the list.
            filters.insert("label".into(), serde_json::json!({ label: true }));
        }
        Some(_) => {
            return refuse("parse", "the label filter cannot be read".into())
                .map(|()| String::new());
        }
    }
    pairs.retain(|(k, _)| k != "filters");
    pairs.push(("filters".into(), Value::Object(filters).to_string()));
    Ok(query::join(&pairs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn alice() -> Caller {
        Caller {
            uid: 1000,
            name: "alice".into(),
            home: "/home/alice".into(),
            admin: false,
        }
    }

    fn create_body(body: &str) -> Result<(Value, Reach), Denial> {
        create(body.as_bytes(), &alice(), &Rules::default(), None)
            .map(|(b, r)| (serde_json::from_slice(&b).unwrap(), r))
    }

    fn create_with(hc: Value) -> Result<Value, Denial> {
        let body = json!({"Image": "x", "Labels": {"ds01.user": "bob"}, "HostConfig": hc});
        create_body(&body.to_string()).map(|(v, _)| v)
    }

    #[test]
    fn the_callers_name_replaces_any_label() {
        let v = create_with(json!({})).unwrap();
        assert_eq!(v["Labels"]["ds01.user"], "alice");
        let (v, _) = create_body(r#"{"Image":"x"}"#).unwrap();
        assert_eq!(v["Labels"]["ds01.user"], "alice");
    }

    #[test]
    fn every_route_around_the_rules_is_refused_with_its_rule() {
        for (hc, rule) in [
            (json!({"Privileged": true}), "privileged"),
            (json!({"Runtime": "runc"}), "runtime"),
            (
                json!({"Devices": [{"PathOnHost": "/dev/nvidia0", "PathInContainer": "/dev/x"}]}),
                "device",
            ),
            (
                json!({"Devices": [{"PathOnHost": "/dev/kmsg", "PathInContainer": "/dev/kmsg"}]}),
                "device",
            ),
            (json!({"DeviceCgroupRules": ["b *:* rwm"]}), "device-rule"),
            (json!({"CapAdd": ["SYS_ADMIN"]}), "cap-add"),
            (json!({"PidMode": "host"}), "host-namespace"),
            (json!({"NetworkMode": "host"}), "host-namespace"),
            (json!({"IpcMode": "host"}), "host-namespace"),
            (json!({"UTSMode": "host"}), "host-namespace"),
            (json!({"CgroupnsMode": "host"}), "host-namespace"),
            (json!({"CgroupParent": "/"}), "cgroup-parent"),
            (json!({"UsernsMode": "host"}), "userns-host"),
            (
                json!({"SecurityOpt": ["seccomp=unconfined"]}),
                "security-opt",
            ),
            (json!({"SecurityOpt": ["seccomp={}"]}), "security-opt"),
            (
                json!({"SecurityOpt": ["apparmor:unconfined"]}),
                "security-opt",
            ),
            (
                json!({"MaskedPaths": [], "ReadonlyPaths": []}),
                "security-opt",
            ),
            (json!({"Binds": ["/:/host"]}), "bind-mount"),
            (json!({"Binds": ["/home/alice/../bob:/x"]}), "bind-mount"),
            (
                json!({"Mounts": [{"Type": "bind", "Source": "/etc", "Target": "/etc"}]}),
                "bind-mount",
            ),
            (
                json!({"Mounts": [{"Type": "volume", "Source": "v", "Target": "/v",
                    "VolumeOptions": {"DriverConfig": {"Name": "local",
                    "Options": {"type": "none", "o": "bind", "device": "/etc"}}}}]}),
                "volume-opt",
            ),
            (json!({"hostconfig": {}}), "unknown-field"),
            (json!({"privileged": true}), "unknown-field"),
            (json!({"binds": ["/:/h"]}), "unknown-field"),
            (json!({"OomKillDisable": true}), "oom-kill"),
            (json!({"Sysctls": {"kernel.core_pattern": "|/x"}}), "sysctl"),
            (
                json!({"LogConfig": {"Type": "syslog", "Config": {}}}),
                "log-driver",
            ),
            (json!({"SomethingNew": 1}), "unknown-field"),
        ] {
            let e = create_with(hc.clone()).unwrap_err();
            assert_eq!(e.rule, rule, "{hc}: {e}");
            assert!(e.to_string().starts_with("ds01-gate: "), "{e}");
        }
        for hc in [
            json!({"Runtime": "nvidia"}),
            json!({"Binds": ["/home/alice/data:/data", "myvol:/v"]}),
            json!({"NetworkMode": "bridge", "CapAdd": [], "MaskedPaths": null}),
            json!({"DeviceRequests": [{"Driver": "", "Count": -1, "DeviceIDs": null,
                "Capabilities": [["gpu"]], "Options": {}}]}),
        ] {
            assert!(create_with(hc.clone()).is_ok(), "{hc}");
        }
        // An admin may; a configured cap and namespace may.
        let admin = Caller {
            admin: true,
            ..alice()
        };
        let body = json!({"Image": "x", "HostConfig": {"Privileged": true}}).to_string();
        assert!(create(body.as_bytes(), &admin, &Rules::default(), None).is_ok());
        let rules = Rules {
            cap_add: vec!["SYS_PTRACE".into()],
            host_namespaces: vec!["network".into()],
            ..Rules::default()
        };
        let body = json!({"Image": "x", "HostConfig": {"CapAdd": ["CAP_SYS_PTRACE"], "NetworkMode": "host"}}).to_string();
        assert!(create(body.as_bytes(), &alice(), &rules, None).is_ok());
    }

    #[test]
    fn the_request_is_read_as_docker_reads_it_or_refused() {
        for (body, rule) in [
            // The old API form: host config at the top.
            (r#"{"Image":"x","Privileged":true}"#, "unknown-field"),
            (r#"{"Image":"x","Binds":["/:/h"]}"#, "unknown-field"),
            // Another case of a known key, and a repeat in any case.
            (
                r#"{"Image":"x","hostconfig":{"Runtime":"runc"}}"#,
                "unknown-field",
            ),
            (
                r#"{"Image":"x","Labels":{},"labels":{"ds01.user":"bob"}}"#,
                "parse",
            ),
            (
                r#"{"Image":"x","HostConfig":{"Mounts":[{"Type":"bind","Source":"/home/alice","source":"/","Target":"/h"}]}}"#,
                "parse",
            ),
            (r#"{"Image":"x","Labels":{"a":1}}"#, "parse"),
        ] {
            assert_eq!(create_body(body).unwrap_err().rule, rule, "{body}");
        }
    }

    #[test]
    fn other_containers_reached_are_named_for_the_owner_check() {
        let (_, reach) = create_body(
            r#"{"Image":"x","HostConfig":{"VolumesFrom":["b1:ro"],"PidMode":"container:b2","NetworkMode":"container:b3","IpcMode":"container:b4","Links":["/b5:db"]}}"#,
        )
        .unwrap();
        assert_eq!(reach.containers, ["b2", "b4", "b3", "b1", "b5"]);
    }

    #[test]
    fn reached_containers_are_named_by_full_id() {
        let body = br#"{"HostConfig":{"VolumesFrom":["a1:ro"],"PidMode":"container:a1","Links":["/a1:db","a1"]}}"#;
        let ids = [("a1".to_string(), "f".repeat(64))].into();
        let v: Value = serde_json::from_slice(&name_reach(body, &ids)).unwrap();
        let f = "f".repeat(64);
        assert_eq!(v["HostConfig"]["VolumesFrom"][0], format!("{f}:ro"));
        assert_eq!(v["HostConfig"]["PidMode"], format!("container:{f}"));
        assert_eq!(v["HostConfig"]["Links"][0], format!("{f}:db"));
        assert_eq!(v["HostConfig"]["Links"][1], format!("{f}:a1"));
    }

    #[test]
    fn exec_volume_and_network_bodies_are_judged() {
        let j = |b: &str, f: fn(&Value) -> Result<(), Denial>| {
            judged(b.as_bytes(), &alice(), "x", f).map(|_| ())
        };
        assert_eq!(
            j(r#"{"Cmd":["sh"],"Privileged":true}"#, body::judge_exec)
                .unwrap_err()
                .rule,
            "privileged"
        );
        assert!(j(r#"{"Cmd":["sh"],"Privileged":false}"#, body::judge_exec).is_ok());
        assert_eq!(
            volume_create(
                br#"{"Name":"v","DriverOpts":{"type":"none","o":"bind","device":"/"}}"#,
                &alice()
            )
            .unwrap_err()
            .rule,
            "volume-opt"
        );
        let v: Value =
            serde_json::from_slice(&volume_create(br#"{"Name":"v"}"#, &alice()).unwrap()).unwrap();
        assert_eq!(v["Labels"]["ds01.user"], "alice");
        assert!(network_create(br#"{"Name":"n","Driver":"macvlan"}"#, &alice()).is_err());
        assert!(network_create(br#"{"Name":"n","CheckDuplicate":true}"#, &alice()).is_ok());
        assert_eq!(
            j(
                r#"{"Devices":[{"PathOnHost":"/dev/sda"}]}"#,
                body::judge_update
            )
            .unwrap_err()
            .rule,
            "device"
        );
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
                create(body, &alice(), &Rules::default(), None)
                    .unwrap_err()
                    .rule,
                "parse"
            );
        }
    }

    fn filters_of(q: &str) -> Value {
        let p = query::parse(Some(q)).unwrap();
        serde_json::from_str(query::one(&p, "filters").unwrap().unwrap()).unwrap()
    }

    #[test]
    fn the_list_filter_keeps_the_callers_own_filters() {
        let q = own_filter(
            Some("all=1&filters=%7B%22status%22%3A%5B%22running%22%5D%7D"),
            &alice(),
        )
        .unwrap();
        assert!(q.starts_with("all=1&filters="), "{q}");
        let f = filters_of(&q);
        assert_eq!(f["status"][0], "running");
        assert_eq!(f["label"], json!({"ds01.user=alice": true}));
    }

    #[test]
    fn the_callers_label_filter_joins_the_callers_own() {
        let f = |q: &str| filters_of(&own_filter(Some(q), &alice()).unwrap());
        let v = f("filters=%7B%22label%22%3A%5B%22com.docker.compose.project%3Dweb%22%5D%7D");
        assert_eq!(
            v["label"],
            json!(["com.docker.compose.project=web", "ds01.user=alice"])
        );
        let v = f("filters=%7B%22label%22%3A%7B%22a%3Db%22%3Atrue%7D%7D");
        assert_eq!(v["label"], json!({"a=b": true, "ds01.user=alice": true}));
        assert!(own_filter(Some("filters=%7B%7D&filters=%7B%7D"), &alice()).is_err());
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
