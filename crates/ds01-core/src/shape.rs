//! What a container asks of the host beyond what Docker gives every
//! container, read from the spec runc will run (after dockerd's decoding,
//! defaults and every route a request could take). A non-admin's container
//! may not run with any of it, whatever the API request claimed: the gate
//! judges the request, this judges what runs.
//!
//! [`asks`] reads the spec alone and is cheap: a container with nothing to
//! judge costs no owner lookup. [`Owner::refuses`] decides the rest for one
//! owner.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::access::Rule;
use crate::oci;

/// Docker's default capabilities, without `CAP_`.
pub const DEFAULT_CAPS: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Paths Docker masks or makes read-only in every container; a spec
/// without one of them was unmasked (`systempaths=unconfined`).
const MASKED: [&str; 5] = [
    "/proc/kcore",
    "/proc/keys",
    "/proc/timer_list",
    "/proc/sched_debug",
    "/sys/firmware",
];
const READONLY: [&str; 3] = ["/proc/sys", "/proc/sysrq-trigger", "/proc/irq"];

/// Namespaces every container has of its own (cgroup is left out: Docker
/// shares the host's by default on cgroup v1).
const OWN_NAMESPACES: [&str; 5] = ["pid", "network", "ipc", "uts", "mount"];

/// Devices Docker lets every container open: null, zero, full, random,
/// urandom, tty, console, ptmx, the ptys, tun.
fn default_device(kind: char, major: i64, minor: Option<i64>) -> bool {
    kind == 'c'
        && match major {
            1 => matches!(minor, Some(3 | 5 | 7 | 8 | 9)),
            5 => matches!(minor, Some(0..=2)),
            136 => true,
            10 => minor == Some(200),
            _ => false,
        }
}

/// Where `docker-init` (`--init`) is bound from.
const INIT_BINARIES: [&str; 4] = [
    "/usr/bin/docker-init",
    "/usr/sbin/docker-init",
    "/usr/libexec/docker/docker-init",
    "/usr/local/bin/docker-init",
];

/// One thing a spec asks beyond Docker's defaults.
#[derive(Debug, Clone, PartialEq)]
pub enum Ask {
    /// A capability beyond Docker's default set (and the config's extras).
    Capability(String),
    /// A namespace the container does not have of its own: the host's.
    HostNamespace(String),
    /// A namespace joined by path: another process's.
    JoinsNamespace(String, PathBuf),
    /// A bind mount of a host path outside Docker's own.
    Bind(PathBuf),
    /// A Docker volume that is itself a mount of something else
    /// (`type=none,o=bind,device=PATH`).
    BoundVolume(PathBuf),
    /// A device node or an allow rule beyond Docker's defaults (NVIDIA's
    /// are ds01's allocator's to judge).
    Device(String),
    /// A path Docker masks, unmasked.
    Unmasked(String),
    /// No seccomp filter, or one that allows by default.
    NoSeccomp,
    /// AppArmor turned off.
    Unconfined,
    /// A mount that carries mounts back to the host.
    SharedPropagation(String),
    /// A resource limit that lets the container raise its own scheduling
    /// priority (real-time, or a nicer nice).
    Rlimit(String),
    /// A cgroup neither Docker's default nor a ds01 parent
    /// (`--cgroup-parent`): outside any owner's share.
    Cgroup(String),
}

impl std::fmt::Display for Ask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ask::Capability(c) => write!(f, "the capability CAP_{c}"),
            Ask::HostNamespace(n) => write!(f, "the host's {n} namespace"),
            Ask::JoinsNamespace(n, p) => write!(f, "the {n} namespace of {}", p.display()),
            Ask::Bind(p) => write!(f, "a bind mount of {}", p.display()),
            Ask::BoundVolume(p) => write!(f, "a volume bound to a host path ({})", p.display()),
            Ask::Device(d) => write!(f, "the device {d}"),
            Ask::Unmasked(p) => write!(f, "{p} unmasked"),
            Ask::NoSeccomp => write!(f, "no seccomp filter"),
            Ask::Unconfined => write!(f, "no AppArmor profile"),
            Ask::SharedPropagation(p) => write!(f, "shared mount propagation at {p}"),
            Ask::Rlimit(r) => write!(f, "the resource limit {r}"),
            Ask::Cgroup(p) => write!(f, "the cgroup {p:?} (outside its owner's share)"),
        }
    }
}

/// What the judgement needs to know of the host.
pub struct Host<'a> {
    /// Docker's data root: its own bind sources live there.
    pub docker_root: &'a Path,
    /// Capabilities beyond Docker's that anyone may have (`gate_cap_add`).
    pub cap_add: &'a [String],
    /// Host namespaces anyone may share (`gate_host_namespaces`).
    pub host_namespaces: &'a [String],
    /// The driver's character-device majors: NVIDIA devices are the
    /// allocator's to judge, not this.
    pub nvidia_major: &'a dyn Fn(i64) -> bool,
}

/// Everything in `spec` beyond Docker's defaults.
pub fn asks(spec: &Value, host: &Host) -> Vec<Ask> {
    let mut out = Vec::new();
    capabilities(spec.get("process").unwrap_or(&Value::Null), host, &mut out);
    namespaces(spec, host, &mut out);
    mounts(spec, host, &mut out);
    devices(spec, host, &mut out);
    let has = |list: &[Value], p: &str| list.iter().any(|x| x.as_str() == Some(p));
    let masked = oci::array(spec, "/linux/maskedPaths");
    for p in MASKED {
        if !has(masked, p) {
            out.push(Ask::Unmasked(p.into()));
        }
    }
    let readonly = oci::array(spec, "/linux/readonlyPaths");
    for p in READONLY {
        if !has(readonly, p) {
            out.push(Ask::Unmasked(p.into()));
        }
    }
    let action = oci::at(spec, "/linux/seccomp/defaultAction")
        .and_then(Value::as_str)
        .unwrap_or("SCMP_ACT_ALLOW");
    if matches!(action, "SCMP_ACT_ALLOW" | "SCMP_ACT_LOG") {
        out.push(Ask::NoSeccomp);
    }
    if oci::at(spec, "/process/apparmorProfile").and_then(Value::as_str) == Some("unconfined") {
        out.push(Ask::Unconfined);
    }
    rlimits(spec.get("process").unwrap_or(&Value::Null), &mut out);
    let path = oci::at(spec, "/linux/cgroupsPath").and_then(Value::as_str);
    if crate::share::placement(path) == crate::share::Placement::Other {
        out.push(Ask::Cgroup(path.unwrap_or_default().to_string()));
    }
    out
}

/// Limits that raise what the scheduler gives: a non-zero `RLIMIT_RTPRIO`
/// lets a process run real-time (and starve the host's CPUs), a non-zero
/// `RLIMIT_NICE` lets it raise its priority over other users'.
pub fn rlimits(process: &Value, out: &mut Vec<Ask>) {
    for r in oci::array(process, "/rlimits") {
        let kind = r.get("type").and_then(Value::as_str).unwrap_or("");
        let raises = matches!(kind, "RLIMIT_RTPRIO" | "RLIMIT_NICE")
            && ["hard", "soft"]
                .iter()
                .any(|k| r.get(*k).and_then(Value::as_u64).unwrap_or(0) > 0);
        if raises {
            out.push(Ask::Rlimit(kind.into()));
        }
    }
}

/// The capabilities of a process (the container's, or an exec's) beyond
/// Docker's default set and the config's extras.
pub fn capabilities(process: &Value, host: &Host, out: &mut Vec<Ask>) {
    let caps = process.get("capabilities").unwrap_or(&Value::Null);
    for set in [
        "bounding",
        "effective",
        "inheritable",
        "permitted",
        "ambient",
    ] {
        let list = caps.get(set).and_then(Value::as_array);
        for c in list.into_iter().flatten().filter_map(Value::as_str) {
            // Compared without allocating: this runs for every container.
            let bare = match c.get(..4) {
                Some(p) if p.eq_ignore_ascii_case("CAP_") => &c[4..],
                _ => c,
            };
            let known = DEFAULT_CAPS.iter().any(|d| d.eq_ignore_ascii_case(bare))
                || host.cap_add.iter().any(|d| d.eq_ignore_ascii_case(bare));
            if known {
                continue;
            }
            let name = bare.to_ascii_uppercase();
            if !known && !out.contains(&Ask::Capability(name.clone())) {
                out.push(Ask::Capability(name));
            }
        }
    }
}

fn namespaces(spec: &Value, host: &Host, out: &mut Vec<Ask>) {
    let list = oci::array(spec, "/linux/namespaces");
    for kind in OWN_NAMESPACES {
        let ns = list
            .iter()
            .find(|n| n.get("type").and_then(Value::as_str) == Some(kind));
        let shared_ok = host.host_namespaces.iter().any(|n| n == kind);
        match ns.and_then(|n| n.get("path")).and_then(Value::as_str) {
            _ if ns.is_none() && !shared_ok => out.push(Ask::HostNamespace(kind.into())),
            Some(p) if !p.is_empty() => {
                if is_hosts(kind, Path::new(p)) || dockers_host_netns(Path::new(p)) {
                    if !shared_ok {
                        out.push(Ask::HostNamespace(kind.into()));
                    }
                } else if !dockers_sandbox(Path::new(p)) {
                    out.push(Ask::JoinsNamespace(kind.into(), p.into()));
                }
            }
            _ => {}
        }
    }
    for n in list {
        let kind = n.get("type").and_then(Value::as_str).unwrap_or("");
        if OWN_NAMESPACES.contains(&kind) {
            continue;
        }
        if let Some(p) = n
            .get("path")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
        {
            out.push(Ask::JoinsNamespace(kind.into(), p.into()));
        }
    }
}

/// Whether a namespace path is the host's own (Docker's `--network host`
/// is `<exec-root>/netns/default`, a bind of it): the same namespace as
/// this process's, which runs in the host's.
fn is_hosts(kind: &str, p: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let proc_name = match kind {
        "network" => "net",
        "mount" => "mnt",
        k => k,
    };
    match (
        std::fs::metadata(p),
        std::fs::metadata(format!("/proc/self/ns/{proc_name}")),
    ) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        // A path that cannot be read is judged as the widest.
        _ => true,
    }
}

/// Docker's name for the host's network namespace, `<exec-root>/netns/default`
/// (its bind of the host's may not be visible from here).
fn dockers_host_netns(p: &Path) -> bool {
    p.parent().and_then(Path::file_name) == Some(std::ffi::OsStr::new("netns"))
        && p.file_name() == Some(std::ffi::OsStr::new("default"))
}

/// A network namespace Docker made for the container itself
/// (`<exec-root>/netns/<sandbox>`), not another process's.
fn dockers_sandbox(p: &Path) -> bool {
    p.parent().and_then(Path::file_name) == Some(std::ffi::OsStr::new("netns"))
        && !p.starts_with("/proc")
        && p.file_name() != Some(std::ffi::OsStr::new("default"))
}

fn is_bind(m: &Value) -> bool {
    m.get("type").and_then(Value::as_str) == Some("bind")
        || oci::array(m, "/options")
            .iter()
            .any(|o| matches!(o.as_str(), Some("bind" | "rbind")))
}

fn mounts(spec: &Value, host: &Host, out: &mut Vec<Ask>) {
    let containers = host.docker_root.join("containers");
    let volumes = host.docker_root.join("volumes");
    let mut mount_points: Option<Vec<PathBuf>> = None;
    for m in oci::array(spec, "/mounts") {
        let dest = m.get("destination").and_then(Value::as_str).unwrap_or("");
        for o in oci::array(m, "/options").iter().filter_map(Value::as_str) {
            if matches!(o, "shared" | "rshared") {
                out.push(Ask::SharedPropagation(dest.into()));
            }
        }
        if !is_bind(m) {
            continue;
        }
        let src = PathBuf::from(m.get("source").and_then(Value::as_str).unwrap_or(""));
        let lexical = crate::fsutil::lexical(&src);
        if lexical.starts_with(&containers) && lexical == src {
            continue;
        }
        // A volume is exactly `<root>/volumes/NAME/_data`, made by dockerd;
        // deeper lies what its containers wrote (a link to `/`, say), which
        // is judged as any bind.
        let is_volume = lexical == src
            && lexical.strip_prefix(&volumes).is_ok_and(|rest| {
                let parts: Vec<_> = rest.components().collect();
                parts.len() == 2 && parts[1].as_os_str() == "_data"
            });
        if is_volume {
            // A volume is Docker's, unless dockerd mounted a host path there.
            let points = mount_points.get_or_insert_with(mount_points_here);
            if points.contains(&lexical) {
                out.push(Ask::BoundVolume(src));
            }
            continue;
        }
        if dest == "/sbin/docker-init" && INIT_BINARIES.iter().any(|b| Path::new(b) == src) {
            continue;
        }
        out.push(Ask::Bind(src));
    }
}

/// Every mount point in this mount namespace.
fn mount_points_here() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_octal(p)))
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && let Some(n) = b
                .get(i + 1..i + 4)
                .and_then(|o| std::str::from_utf8(o).ok())
                .and_then(|o| u8::from_str_radix(o, 8).ok())
        {
            out.push(n);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn devices(spec: &Value, host: &Host, out: &mut Vec<Ask>) {
    for d in oci::array(spec, "/linux/devices") {
        let kind = match d.get("type").and_then(Value::as_str).unwrap_or("") {
            "c" | "u" => 'c',
            "b" => 'b',
            _ => 'p',
        };
        if kind == 'p' {
            continue; // a fifo opens nothing of the host's
        }
        let major = d.get("major").and_then(Value::as_i64).unwrap_or(-1);
        let minor = d.get("minor").and_then(Value::as_i64);
        if (kind == 'c' && (host.nvidia_major)(major)) || default_device(kind, major, minor) {
            continue;
        }
        let path = d.get("path").and_then(Value::as_str).unwrap_or("?");
        out.push(Ask::Device(format!(
            "{path} ({kind} {major}:{})",
            minor.unwrap_or(-1)
        )));
    }
    for r in oci::array(spec, "/linux/resources/devices")
        .iter()
        .map(Rule::read)
    {
        if !r.allow || !r.opens {
            continue;
        }
        let ok = match (r.kind, r.major) {
            ('c', Some(m)) => (host.nvidia_major)(m) || default_device('c', m, r.minor),
            _ => false,
        };
        if !ok {
            out.push(Ask::Device(format!("rule {}", r.text())));
        }
    }
}

/// An owner who is not an admin, as the judgement needs them.
pub struct Owner<'a> {
    pub name: &'a str,
    /// Their home, where their binds may come from.
    pub home: Option<&'a Path>,
    /// Paths anyone may bind (`gate_shared_paths`).
    pub shared: &'a [PathBuf],
    /// Whether the process with this pid is in a container of theirs.
    pub owns_pid: &'a dyn Fn(u32) -> bool,
}

impl Owner<'_> {
    /// The first of `asks` this owner may not run, as one line.
    pub fn refuses(&self, asks: &[Ask]) -> Option<String> {
        let bad = asks.iter().find(|a| !self.may(a))?;
        Some(format!(
            "{} may not run a container with {bad}; only an admin may (ask one, or leave it out)",
            self.name
        ))
    }

    fn may(&self, ask: &Ask) -> bool {
        match ask {
            Ask::Bind(src) => self.may_bind(src),
            Ask::JoinsNamespace(_, p) => pid_of_ns_path(p).is_some_and(|pid| (self.owns_pid)(pid)),
            _ => false,
        }
    }

    /// Whether a bind source lies in the home or a shared path, links
    /// resolved (a link in the home to `/` is not the home).
    pub fn may_bind(&self, src: &Path) -> bool {
        let Ok(real) = std::fs::canonicalize(src) else {
            return false;
        };
        let under = |root: &Path| std::fs::canonicalize(root).is_ok_and(|r| real.starts_with(r));
        self.home.is_some_and(under) || self.shared.iter().any(|p| under(p))
    }
}

/// The pid in `/proc/<pid>/ns/<kind>`.
fn pid_of_ns_path(p: &Path) -> Option<u32> {
    let s = p.to_str()?;
    let rest = s.strip_prefix("/proc/")?;
    let (pid, ns) = rest.split_once('/')?;
    ns.starts_with("ns/").then_some(())?;
    pid.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn docker_default() -> Value {
        json!({
            "process": {"capabilities": {"bounding": ["CAP_CHOWN", "CAP_KILL"],
                "effective": ["CAP_CHOWN"]}},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/etc/hosts", "type": "bind",
                 "source": "/var/lib/docker/containers/abc/hosts", "options": ["rbind", "rprivate"]}
            ],
            "linux": {
                "namespaces": [{"type": "mount"}, {"type": "network"}, {"type": "uts"},
                    {"type": "pid"}, {"type": "ipc"}],
                "resources": {"devices": [{"allow": false, "access": "rwm"},
                    {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
                    {"allow": true, "type": "c", "major": 195, "minor": 0, "access": "rwm"}]},
                "maskedPaths": MASKED, "readonlyPaths": READONLY,
                "seccomp": {"defaultAction": "SCMP_ACT_ERRNO"}
            }
        })
    }

    fn host_asks(spec: &Value) -> Vec<Ask> {
        let nv = |m: i64| m == 195;
        asks(
            spec,
            &Host {
                docker_root: Path::new("/var/lib/docker"),
                cap_add: &["SYS_PTRACE".to_string()],
                host_namespaces: &[],
                nvidia_major: &nv,
            },
        )
    }

    #[test]
    fn dockers_default_container_asks_nothing() {
        assert_eq!(host_asks(&docker_default()), []);
    }

    #[test]
    fn every_power_beyond_the_default_is_named() {
        type Edit = fn(&mut Value);
        let cases: Vec<(Edit, Ask)> = vec![
            (
                |v| v["process"]["capabilities"]["bounding"] = json!(["CAP_SYS_ADMIN"]),
                Ask::Capability("SYS_ADMIN".into()),
            ),
            (
                |v| {
                    v["linux"]["namespaces"]
                        .as_array_mut()
                        .unwrap()
                        .retain(|n| n["type"] != "pid")
                },
                Ask::HostNamespace("pid".into()),
            ),
            (
                |v| v["linux"]["namespaces"][1]["path"] = json!("/proc/self/ns/net"),
                Ask::HostNamespace("network".into()),
            ),
            (
                |v| v["linux"]["namespaces"][3]["path"] = json!("/nonexistent/ns/pid"),
                Ask::HostNamespace("pid".into()),
            ),
            (
                |v| v["linux"]["namespaces"][4]["path"] = json!("/proc/1/cgroup"),
                Ask::JoinsNamespace("ipc".into(), "/proc/1/cgroup".into()),
            ),
            (
                |v| {
                    v["mounts"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!({"destination": "/h", "type": "bind", "source": "/etc"}))
                },
                Ask::Bind("/etc".into()),
            ),
            (
                |v| {
                    v["mounts"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!({"destination": "/h", "type": "none",
                    "source": "/var/lib/docker/containers/../../../etc", "options": ["rbind"]}))
                },
                Ask::Bind("/var/lib/docker/containers/../../../etc".into()),
            ),
            (
                // Inside a volume lies what its containers wrote: a link
                // to `/` there would hand runc the host's root.
                |v| {
                    v["mounts"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!({"destination": "/h",
                        "type": "bind", "source": "/var/lib/docker/volumes/v/_data/l"}))
                },
                Ask::Bind("/var/lib/docker/volumes/v/_data/l".into()),
            ),
            (
                |v| {
                    v["linux"]["devices"] =
                        json!([{"path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11}])
                },
                Ask::Device("/dev/kmsg (c 1:11)".into()),
            ),
            (
                |v| {
                    v["linux"]["resources"]["devices"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!({"allow": true, "type": "b", "access": "rwm"}))
                },
                Ask::Device("rule b *:* rwm".into()),
            ),
            (
                |v| v["linux"]["maskedPaths"] = json!([]),
                Ask::Unmasked("/proc/kcore".into()),
            ),
            (|v| v["linux"]["seccomp"] = Value::Null, Ask::NoSeccomp),
            (
                |v| v["process"]["apparmorProfile"] = json!("unconfined"),
                Ask::Unconfined,
            ),
            (
                |v| v["mounts"][1]["options"] = json!(["rbind", "rshared"]),
                Ask::SharedPropagation("/etc/hosts".into()),
            ),
            (
                |v| {
                    v["process"]["rlimits"] =
                        json!([{"type": "RLIMIT_RTPRIO", "hard": 99, "soft": 99}])
                },
                Ask::Rlimit("RLIMIT_RTPRIO".into()),
            ),
        ];
        for (edit, want) in cases {
            let mut v = docker_default();
            edit(&mut v);
            let got = host_asks(&v);
            assert!(got.contains(&want), "{want:?} not in {got:?}");
        }
        // The config's extra capability is no ask.
        let mut v = docker_default();
        v["process"]["capabilities"]["bounding"] = json!(["CAP_SYS_PTRACE"]);
        assert_eq!(host_asks(&v), []);
    }

    #[test]
    fn an_owner_may_bind_their_home_and_join_their_own() {
        let d = tempfile::tempdir().unwrap();
        let home = d.path().join("alice");
        std::fs::create_dir_all(home.join("data")).unwrap();
        std::os::unix::fs::symlink("/", home.join("root")).unwrap();
        let mine = |pid: u32| pid == 7;
        let o = Owner {
            name: "alice",
            home: Some(&home),
            shared: &[],
            owns_pid: &mine,
        };
        assert_eq!(o.refuses(&[Ask::Bind(home.join("data"))]), None);
        assert!(o.refuses(&[Ask::Bind(home.join("root/etc"))]).is_some());
        assert!(o.refuses(&[Ask::Bind(home.join("missing"))]).is_some());
        assert_eq!(
            o.refuses(&[Ask::JoinsNamespace("pid".into(), "/proc/7/ns/pid".into())]),
            None
        );
        let e = o
            .refuses(&[Ask::JoinsNamespace("pid".into(), "/proc/8/ns/pid".into())])
            .unwrap();
        assert_eq!(
            e,
            "alice may not run a container with the pid namespace of /proc/8/ns/pid; only an admin may (ask one, or leave it out)"
        );
        assert!(o.refuses(&[Ask::Capability("SYS_ADMIN".into())]).is_some());
    }

    #[test]
    fn a_containers_id_is_read_from_its_cgroup() {
        assert_eq!(pid_of_ns_path(Path::new("/proc/12/ns/net")), Some(12));
        assert_eq!(pid_of_ns_path(Path::new("/var/run/docker/netns/x")), None);
        assert_eq!(unescape_octal("/a\\040b"), "/a b");
    }
}
