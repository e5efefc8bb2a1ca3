//! The bodies the gate judges, field by field. Every key must be one Docker
//! knows in its canonical spelling; each field is allowed as it is, allowed
//! within limits, or refused. A field not listed here (one a later Docker
//! adds, or `hostconfig` for `HostConfig`) is refused until someone decides
//! it is safe.

use std::path::Path;

use serde_json::{Map, Value};

use super::strict::folds_equal;
use super::{Caller, Denial, Rules, may_mount};

/// What a judged body asks besides itself: containers it reaches into,
/// each of which must be the caller's.
#[derive(Debug, Default, PartialEq)]
pub struct Reach {
    pub containers: Vec<String>,
    /// Named volumes it mounts: each must be the caller's, or new.
    pub volumes: Vec<String>,
    /// Networks it joins by name: none may be another user's.
    pub networks: Vec<String>,
}

pub(super) fn refusal(rule: &'static str, reason: impl Into<String>) -> Denial {
    Denial {
        rule,
        reason: reason.into(),
    }
}

/// `obj` as an object whose keys are all in `known`, spelled exactly so.
pub(super) fn fields<'a>(
    v: &'a Value,
    known: &[&str],
    what: &str,
) -> Result<Option<&'a Map<String, Value>>, Denial> {
    let obj = match v {
        Value::Null => return Ok(None),
        Value::Object(o) => o,
        _ => return Err(refusal("parse", format!("{what} is not a JSON object"))),
    };
    for k in obj.keys() {
        if known.contains(&k.as_str()) {
            continue;
        }
        let reason = match known.iter().find(|c| folds_equal(c, k)) {
            Some(c) => format!("{what}: the key {k:?} is spelled {c:?} by Docker; send it so"),
            None => format!("{what}: the field {k:?} is not one the gate knows, so it is refused"),
        };
        return Err(refusal("unknown-field", reason));
    }
    Ok(Some(obj))
}

fn get<'a>(obj: Option<&'a Map<String, Value>>, k: &str) -> &'a Value {
    obj.and_then(|o| o.get(k)).unwrap_or(&Value::Null)
}

fn string<'a>(v: &'a Value, what: &str) -> Result<&'a str, Denial> {
    match v {
        Value::Null => Ok(""),
        Value::String(s) => Ok(s),
        _ => Err(refusal("parse", format!("{what} is not a string"))),
    }
}

fn strings<'a>(v: &'a Value, what: &str) -> Result<Vec<&'a str>, Denial> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(a) => a.iter().map(|s| string(s, what)).collect(),
        _ => Err(refusal("parse", format!("{what} is not a list"))),
    }
}

fn empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

/// Refuses `v` unless it is null or empty.
fn must_be_empty(v: &Value, rule: &'static str, reason: &str) -> Result<(), Denial> {
    if empty(v) {
        Ok(())
    } else {
        Err(refusal(rule, reason))
    }
}

/// Refuses `v` if it is `true`.
fn must_not_be_true(v: &Value, rule: &'static str, reason: &str) -> Result<(), Denial> {
    if v.as_bool() == Some(true) {
        Err(refusal(rule, reason))
    } else {
        Ok(())
    }
}

/// A string field that must be one of `allowed` (empty counts as unset).
fn one_of(v: &Value, what: &str, allowed: &[&str], rule: &'static str) -> Result<(), Denial> {
    let s = string(v, what)?;
    if s.is_empty() || allowed.contains(&s) {
        Ok(())
    } else {
        Err(refusal(
            rule,
            format!(
                "{what} {s:?} is not allowed here (allowed: {})",
                allowed.join(", ")
            ),
        ))
    }
}

/// `container.Config`: what runs, not where; all of it is the container's own.
pub const CONFIG_FIELDS: &[&str] = &[
    "Hostname",
    "Domainname",
    "User",
    "AttachStdin",
    "AttachStdout",
    "AttachStderr",
    "ExposedPorts",
    "Tty",
    "OpenStdin",
    "StdinOnce",
    "Env",
    "Cmd",
    "Healthcheck",
    "ArgsEscaped",
    "Image",
    "Volumes",
    "WorkingDir",
    "Entrypoint",
    "NetworkDisabled",
    "MacAddress",
    "OnBuild",
    "Labels",
    "StopSignal",
    "StopTimeout",
    "Shell",
];

const HEALTHCHECK_FIELDS: &[&str] = &[
    "Test",
    "Interval",
    "Timeout",
    "StartPeriod",
    "StartInterval",
    "Retries",
];

fn judge_config(obj: Option<&Map<String, Value>>) -> Result<(), Denial> {
    fields(get(obj, "Healthcheck"), HEALTHCHECK_FIELDS, "Healthcheck")?;
    labels(get(obj, "Labels"))?;
    Ok(())
}

/// Labels are the caller's to set (`ds01.user` is replaced by the stamp,
/// `ds01.name` and `ds01.gpu-wait` are the user's to say); values are text.
fn labels(v: &Value) -> Result<(), Denial> {
    let Some(o) = v.as_object() else {
        return match v {
            Value::Null => Ok(()),
            _ => Err(refusal("parse", "Labels is not an object")),
        };
    };
    for val in o.values() {
        string(val, "a label's value")?;
    }
    Ok(())
}

/// The container create body (`container.Config`, `HostConfig`,
/// `NetworkingConfig`), for a non-admin.
pub fn judge_create(v: &Value, caller: &Caller, rules: &Rules) -> Result<Reach, Denial> {
    let mut known: Vec<&str> = CONFIG_FIELDS.to_vec();
    known.extend(["HostConfig", "NetworkingConfig"]);
    // Host-config fields at the top (the old API form) are not Config's:
    // they are refused here like any unknown field.
    let obj = fields(v, &known, "the create request")?;
    judge_config(obj)?;
    let mut reach = Reach::default();
    judge_host_config(get(obj, "HostConfig"), caller, rules, &mut reach)?;
    judge_networking(get(obj, "NetworkingConfig"), &mut reach)?;
    Ok(reach)
}

const RESOURCE_FIELDS: &[&str] = &[
    "CpuShares",
    "Memory",
    "NanoCpus",
    "CgroupParent",
    "BlkioWeight",
    "BlkioWeightDevice",
    "BlkioDeviceReadBps",
    "BlkioDeviceWriteBps",
    "BlkioDeviceReadIOps",
    "BlkioDeviceWriteIOps",
    "CpuPeriod",
    "CpuQuota",
    "CpuRealtimePeriod",
    "CpuRealtimeRuntime",
    "CpusetCpus",
    "CpusetMems",
    "Devices",
    "DeviceCgroupRules",
    "DeviceRequests",
    "KernelMemory",
    "KernelMemoryTCP",
    "MemoryReservation",
    "MemorySwap",
    "MemorySwappiness",
    "OomKillDisable",
    "PidsLimit",
    "Ulimits",
    "CpuCount",
    "CpuPercent",
    "IOMaximumIOps",
    "IOMaximumBandwidth",
];

const HOST_CONFIG_FIELDS: &[&str] = &[
    "Binds",
    "ContainerIDFile",
    "LogConfig",
    "NetworkMode",
    "PortBindings",
    "RestartPolicy",
    "AutoRemove",
    "VolumeDriver",
    "VolumesFrom",
    "ConsoleSize",
    "Annotations",
    "CapAdd",
    "CapDrop",
    "CgroupnsMode",
    "Dns",
    "DnsOptions",
    "DnsSearch",
    "ExtraHosts",
    "GroupAdd",
    "IpcMode",
    "Cgroup",
    "Links",
    "OomScoreAdj",
    "PidMode",
    "Privileged",
    "PublishAllPorts",
    "ReadonlyRootfs",
    "SecurityOpt",
    "StorageOpt",
    "Tmpfs",
    "UTSMode",
    "UsernsMode",
    "ShmSize",
    "Sysctls",
    "Runtime",
    "Isolation",
    "Mounts",
    "MaskedPaths",
    "ReadonlyPaths",
    "Init",
];

/// Ulimits a container may set: none that raise its scheduling priority.
const ULIMITS: &[&str] = &[
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nofile",
    "nproc",
    "sigpending",
    "stack",
    "as",
];

/// Log drivers that write where Docker keeps logs, nowhere else.
const LOG_DRIVERS: &[&str] = &["json-file", "local", "none"];

/// `--security-opt` values that only take powers away.
const SECURITY_OPTS: &[&str] = &[
    "no-new-privileges",
    "no-new-privileges:true",
    "no-new-privileges=true",
];

fn judge_host_config(
    hc: &Value,
    caller: &Caller,
    rules: &Rules,
    reach: &mut Reach,
) -> Result<(), Denial> {
    let mut known = HOST_CONFIG_FIELDS.to_vec();
    known.extend(RESOURCE_FIELDS);
    let obj = fields(hc, &known, "HostConfig")?;
    let f = |k| get(obj, k);
    must_not_be_true(
        f("Privileged"),
        "privileged",
        "--privileged sees every device on the host, every GPU included",
    )?;
    let runtime = string(f("Runtime"), "Runtime")?;
    if !["", "ds01", "nvidia"].contains(&runtime) {
        return Err(refusal(
            "runtime",
            format!(
                "--runtime={runtime} goes around ds01's GPU allocation; use the default runtime"
            ),
        ));
    }
    judge_resources(obj, "HostConfig")?;
    for c in strings(f("CapAdd"), "CapAdd")? {
        let cap = c.to_ascii_uppercase();
        let cap = cap.strip_prefix("CAP_").unwrap_or(&cap);
        if !rules.cap_add.iter().any(|a| a == cap) {
            return Err(refusal(
                "cap-add",
                format!(
                    "--cap-add {cap} is not allowed here (allowed: {})",
                    if rules.cap_add.is_empty() {
                        "none".to_string()
                    } else {
                        rules.cap_add.join(", ")
                    }
                ),
            ));
        }
    }
    strings(f("CapDrop"), "CapDrop")?;
    namespace(f("PidMode"), "pid", &["", "private"], rules, reach)?;
    namespace(
        f("IpcMode"),
        "ipc",
        &["", "private", "shareable", "none"],
        rules,
        reach,
    )?;
    let net = string(f("NetworkMode"), "NetworkMode")?;
    if net != "host" && !net.starts_with("container:") {
        // A network by name: the default, bridge, none, or one of a user's.
        if !["", "default", "bridge", "none"].contains(&net) {
            reach.networks.push(net.to_string());
        }
    } else {
        namespace(f("NetworkMode"), "network", &[], rules, reach)?;
    }
    one_of(f("UTSMode"), "--uts", &[], "host-namespace")?;
    one_of(f("UsernsMode"), "--userns", &[], "userns-host")?;
    one_of(
        f("CgroupnsMode"),
        "--cgroupns",
        &["private"],
        "host-namespace",
    )?;
    one_of(f("Cgroup"), "--cgroup", &[], "host-namespace")?;
    one_of(f("Isolation"), "--isolation", &["default"], "isolation")?;
    one_of(
        f("VolumeDriver"),
        "--volume-driver",
        &["local"],
        "volume-driver",
    )?;
    for o in strings(f("SecurityOpt"), "SecurityOpt")? {
        if !SECURITY_OPTS.contains(&o) {
            return Err(refusal(
                "security-opt",
                format!("--security-opt {o} is not allowed here (allowed: no-new-privileges)"),
            ));
        }
    }
    // The CLI sends `systempaths=unconfined` as empty lists; only leaving
    // them out keeps Docker's masks.
    for k in ["MaskedPaths", "ReadonlyPaths"] {
        if !f(k).is_null() {
            return Err(refusal(
                "security-opt",
                format!("{k} changes which host paths the container sees; leave Docker's default"),
            ));
        }
    }
    must_be_empty(
        f("StorageOpt"),
        "storage-opt",
        "--storage-opt is an admin's to set",
    )?;
    must_be_empty(
        f("Annotations"),
        "annotation",
        "--annotation reaches the runtime unjudged; leave it out",
    )?;
    if f("OomScoreAdj").as_i64().is_some_and(|n| n < 0) {
        return Err(refusal(
            "oom-score",
            "a negative --oom-score-adj shields this container at others' expense",
        ));
    }
    if let Some(s) = f("Sysctls").as_object() {
        for k in s.keys() {
            // Those of the container's own network and IPC namespaces.
            let own = [
                "net.",
                "kernel.shm",
                "kernel.msg",
                "kernel.sem",
                "fs.mqueue.",
            ]
            .iter()
            .any(|p| k.starts_with(p));
            if !own {
                return Err(refusal(
                    "sysctl",
                    format!("--sysctl {k} is not the container's own to set"),
                ));
            }
        }
    }
    if let Some(lc) = fields(f("LogConfig"), &["Type", "Config"], "LogConfig")? {
        one_of(
            get(Some(lc), "Type"),
            "--log-driver",
            LOG_DRIVERS,
            "log-driver",
        )?;
    }
    fields(
        f("RestartPolicy"),
        &["Name", "MaximumRetryCount"],
        "RestartPolicy",
    )?;
    for v in strings(f("VolumesFrom"), "VolumesFrom")? {
        let c = v.split(':').next().unwrap_or("").trim_start_matches('/');
        reach.containers.push(c.to_string());
    }
    for l in strings(f("Links"), "Links")? {
        let c = l.split(':').next().unwrap_or("").trim_start_matches('/');
        reach.containers.push(c.to_string());
    }
    for b in strings(f("Binds"), "Binds")? {
        let src = b.split(':').next().unwrap_or("");
        if src.starts_with('/') {
            bind_source(src, caller, rules)?;
        } else if named_volume(src) {
            reach.volumes.push(src.to_string());
        } else {
            return Err(refusal(
                "bind-mount",
                format!("-v {src}: a bind source must be an absolute path, or a volume's name"),
            ));
        }
    }
    for m in f("Mounts").as_array().into_iter().flatten() {
        judge_mount(m, caller, rules, reach)?;
    }
    if !f("Mounts").is_null() && !f("Mounts").is_array() {
        return Err(refusal("parse", "Mounts is not a list"));
    }
    Ok(())
}

/// A volume's name as Docker takes it: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
fn named_volume(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphanumeric())
        && c.all(|x| x.is_ascii_alphanumeric() || "_.-".contains(x))
}

fn bind_source(src: &str, caller: &Caller, rules: &Rules) -> Result<(), Denial> {
    if may_mount(Path::new(src), caller, rules) {
        Ok(())
    } else {
        Err(refusal(
            "bind-mount",
            format!(
                "-v {src} is outside your home ({}) and the shared paths",
                caller.home.display()
            ),
        ))
    }
}

fn judge_mount(m: &Value, caller: &Caller, rules: &Rules, reach: &mut Reach) -> Result<(), Denial> {
    let obj = fields(
        m,
        &[
            "Type",
            "Source",
            "Target",
            "ReadOnly",
            "Consistency",
            "BindOptions",
            "VolumeOptions",
            "TmpfsOptions",
        ],
        "a mount",
    )?;
    let kind = string(get(obj, "Type"), "a mount's Type")?;
    let src = string(get(obj, "Source"), "a mount's Source")?;
    match kind {
        "bind" => {
            bind_source(src, caller, rules)?;
            let b = fields(
                get(obj, "BindOptions"),
                &[
                    "Propagation",
                    "NonRecursive",
                    "CreateMountpoint",
                    "ReadOnlyNonRecursive",
                    "ReadOnlyForceRecursive",
                ],
                "BindOptions",
            )?;
            // Shared propagation would carry mounts back out to the host.
            one_of(
                get(b, "Propagation"),
                "bind-propagation",
                &["private", "rprivate", "slave", "rslave"],
                "bind-mount",
            )?;
            must_be_empty(
                get(obj, "VolumeOptions"),
                "parse",
                "a bind mount has no volume options",
            )?;
        }
        "volume" => {
            if !src.is_empty() && !named_volume(src) {
                return Err(refusal(
                    "bind-mount",
                    format!("a volume mount's source {src:?} is not a volume's name"),
                ));
            }
            if !src.is_empty() {
                reach.volumes.push(src.to_string());
            }
            let vo = fields(
                get(obj, "VolumeOptions"),
                &["NoCopy", "Labels", "DriverConfig", "Subpath"],
                "VolumeOptions",
            )?;
            labels(get(vo, "Labels"))?;
            must_be_empty(
                get(vo, "DriverConfig"),
                "volume-opt",
                "volume-opt and volume-driver make a volume of any host path; use a plain volume",
            )?;
            must_be_empty(
                get(obj, "BindOptions"),
                "parse",
                "a volume mount has no bind options",
            )?;
        }
        "tmpfs" => {
            fields(
                get(obj, "TmpfsOptions"),
                &["SizeBytes", "Mode", "Options"],
                "TmpfsOptions",
            )?;
        }
        _ => {
            return Err(refusal(
                "mount-type",
                format!("a mount of type {kind:?} is not allowed here (bind, volume, tmpfs)"),
            ));
        }
    }
    Ok(())
}

/// `--pid`, `--ipc`, `--network`: private kinds as listed, `host` where
/// the config allows, `container:NAME` for the caller's own containers.
fn namespace(
    v: &Value,
    ns: &str,
    private: &[&str],
    rules: &Rules,
    reach: &mut Reach,
) -> Result<(), Denial> {
    let s = string(v, ns)?;
    if private.contains(&s) {
        return Ok(());
    }
    if s == "host" {
        return if rules.host_namespaces.iter().any(|n| n == ns) {
            Ok(())
        } else {
            Err(refusal(
                "host-namespace",
                format!("--{ns}=host shares the host's {ns} namespace"),
            ))
        };
    }
    if let Some(c) = s.strip_prefix("container:")
        && !c.is_empty()
    {
        reach.containers.push(c.to_string());
        return Ok(());
    }
    Err(refusal(
        "host-namespace",
        format!("--{ns}={s} is not allowed here"),
    ))
}

/// Ulimits (a create's, an update's, a build's): none that raise the
/// scheduling priority, keys as Docker spells them.
pub fn judge_ulimits(v: &Value) -> Result<(), Denial> {
    if !v.is_null() && !v.is_array() {
        return Err(refusal("parse", "Ulimits is not a list"));
    }
    for u in v.as_array().into_iter().flatten() {
        let o = fields(u, &["Name", "Hard", "Soft"], "an ulimit")?;
        one_of(get(o, "Name"), "--ulimit", ULIMITS, "ulimit")?;
    }
    Ok(())
}

/// The resource fields, in a create's HostConfig or an update.
fn judge_resources(obj: Option<&Map<String, Value>>, what: &str) -> Result<(), Denial> {
    let f = |k| get(obj, k);
    must_be_empty(
        f("Devices"),
        "device",
        "--device hands a host device to the container; ask an admin (GPUs come with --gpus)",
    )?;
    must_be_empty(
        f("DeviceCgroupRules"),
        "device-rule",
        "--device-cgroup-rule opens host devices to the container",
    )?;
    must_be_empty(
        f("CgroupParent"),
        "cgroup-parent",
        "--cgroup-parent moves the container out of its owner's share",
    )?;
    for k in ["CpuRealtimePeriod", "CpuRealtimeRuntime"] {
        if f(k).as_i64().is_some_and(|n| n != 0) {
            return Err(refusal(
                "realtime",
                format!("{what}.{k}: real-time CPU time is an admin's to give"),
            ));
        }
    }
    must_not_be_true(
        f("OomKillDisable"),
        "oom-kill",
        "--oom-kill-disable leaves the kernel to kill other users' processes instead",
    )?;
    judge_ulimits(f("Ulimits"))?;
    for r in f("DeviceRequests").as_array().into_iter().flatten() {
        let o = fields(
            r,
            &["Driver", "Count", "DeviceIDs", "Capabilities", "Options"],
            "a device request",
        )?;
        one_of(
            get(o, "Driver"),
            "a device request's driver",
            &["nvidia"],
            "device",
        )?;
        must_be_empty(
            get(o, "Options"),
            "device",
            "a device request's options are not the caller's to set",
        )?;
    }
    for k in [
        "BlkioWeightDevice",
        "BlkioDeviceReadBps",
        "BlkioDeviceWriteBps",
        "BlkioDeviceReadIOps",
        "BlkioDeviceWriteIOps",
    ] {
        for d in f(k).as_array().into_iter().flatten() {
            fields(d, &["Path", "Weight", "Rate"], k)?;
        }
    }
    Ok(())
}

const ENDPOINT_FIELDS: &[&str] = &[
    "IPAMConfig",
    "Links",
    "Aliases",
    "NetworkID",
    "EndpointID",
    "Gateway",
    "IPAddress",
    "IPPrefixLen",
    "IPv6Gateway",
    "GlobalIPv6Address",
    "GlobalIPv6PrefixLen",
    "MacAddress",
    "DriverOpts",
    "DNSNames",
    "GwPriority",
];

fn judge_endpoint(v: &Value) -> Result<(), Denial> {
    let o = fields(v, ENDPOINT_FIELDS, "an endpoint")?;
    fields(
        get(o, "IPAMConfig"),
        &["IPv4Address", "IPv6Address", "LinkLocalIPs"],
        "IPAMConfig",
    )?;
    must_be_empty(
        get(o, "DriverOpts"),
        "network",
        "an endpoint's driver options are an admin's to set",
    )
}

fn judge_networking(v: &Value, reach: &mut Reach) -> Result<(), Denial> {
    let o = fields(v, &["EndpointsConfig"], "NetworkingConfig")?;
    if let Some(eps) = get(o, "EndpointsConfig").as_object() {
        for (name, ep) in eps {
            if name == "host" {
                return Err(refusal(
                    "host-namespace",
                    "the host network shares the host's network namespace",
                ));
            }
            judge_endpoint(ep)?;
            if !["default", "bridge", "none"].contains(&name.as_str()) {
                reach.networks.push(name.clone());
            }
        }
    }
    Ok(())
}

/// `POST /containers/{id}/update`.
pub fn judge_update(v: &Value) -> Result<(), Denial> {
    let mut known = RESOURCE_FIELDS.to_vec();
    known.push("RestartPolicy");
    let obj = fields(v, &known, "the update request")?;
    judge_resources(obj, "update")?;
    fields(
        get(obj, "RestartPolicy"),
        &["Name", "MaximumRetryCount"],
        "RestartPolicy",
    )?;
    Ok(())
}

/// `POST /containers/{id}/exec`: no privileged process.
pub fn judge_exec(v: &Value) -> Result<(), Denial> {
    let obj = fields(
        v,
        &[
            "User",
            "Privileged",
            "Tty",
            "ConsoleSize",
            "AttachStdin",
            "AttachStderr",
            "AttachStdout",
            "Detach",
            "DetachKeys",
            "Env",
            "WorkingDir",
            "Cmd",
        ],
        "the exec request",
    )?;
    must_not_be_true(
        get(obj, "Privileged"),
        "privileged",
        "exec --privileged gives the process every capability",
    )?;
    Ok(())
}

/// `POST /volumes/create`: a plain local volume.
pub fn judge_volume(v: &Value) -> Result<(), Denial> {
    let obj = fields(
        v,
        &["Name", "Driver", "DriverOpts", "Labels"],
        "the volume request",
    )?;
    one_of(get(obj, "Driver"), "--driver", &["local"], "volume-driver")?;
    labels(get(obj, "Labels"))?;
    must_be_empty(
        get(obj, "DriverOpts"),
        "volume-opt",
        "volume options make a volume of any host path (type=none,o=bind); use a plain volume",
    )
}

/// `POST /networks/create`: a bridge network of the caller's.
pub fn judge_network(v: &Value) -> Result<(), Denial> {
    let obj = fields(
        v,
        &[
            "Name",
            "CheckDuplicate",
            "Driver",
            "Scope",
            "Internal",
            "Attachable",
            "Ingress",
            "IPAM",
            "EnableIPv6",
            "Options",
            "Labels",
            "ConfigOnly",
            "ConfigFrom",
        ],
        "the network request",
    )?;
    must_not_be_true(
        get(obj, "ConfigOnly"),
        "network",
        "a config-only network is an admin's",
    )?;
    must_be_empty(
        get(obj, "ConfigFrom"),
        "network",
        "a network made from another's config is an admin's",
    )?;
    one_of(get(obj, "Driver"), "--driver", &["bridge"], "network")?;
    one_of(get(obj, "Scope"), "--scope", &["local"], "network")?;
    labels(get(obj, "Labels"))?;
    must_not_be_true(
        get(obj, "Ingress"),
        "network",
        "an ingress network is swarm's",
    )?;
    must_be_empty(
        get(obj, "Options"),
        "network",
        "network driver options are an admin's to set",
    )?;
    if let Some(ipam) = fields(get(obj, "IPAM"), &["Driver", "Config", "Options"], "IPAM")? {
        one_of(
            get(Some(ipam), "Driver"),
            "--ipam-driver",
            &["default"],
            "network",
        )?;
        must_be_empty(
            get(Some(ipam), "Options"),
            "network",
            "IPAM options are an admin's to set",
        )?;
        // A subnet of the caller's choosing could shadow a host route.
        must_be_empty(
            get(Some(ipam), "Config"),
            "network",
            "a network's subnets are an admin's to choose",
        )?;
    }
    Ok(())
}

/// `POST /networks/{id}/connect|disconnect`: the container it names.
pub fn judge_connect(v: &Value) -> Result<String, Denial> {
    let obj = fields(
        v,
        &["Container", "EndpointConfig", "Force"],
        "the network request",
    )?;
    judge_endpoint(get(obj, "EndpointConfig"))?;
    let c = string(get(obj, "Container"), "Container")?;
    if c.is_empty() {
        return Err(refusal("parse", "the network request names no container"));
    }
    Ok(c.to_string())
}

/// `POST /commit`'s body: the new image's config.
pub fn judge_commit_config(v: &Value) -> Result<(), Denial> {
    let obj = fields(v, CONFIG_FIELDS, "the commit's config")?;
    judge_config(obj)
}
