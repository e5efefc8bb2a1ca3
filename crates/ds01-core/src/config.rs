//! `/etc/ds01/config.toml`: where the real runc, the state and the log live,
//! and which GPU inventory to use.

use std::path::{Path, PathBuf};

use crate::policy::{self, Group, Policy};

/// The file read when `DS01_CONFIG` is not set.
pub const DEFAULT_PATH: &str = "/etc/ds01/config.toml";
/// The environment variable naming another config file.
pub const ENV_VAR: &str = "DS01_CONFIG";
/// The runtime's log where the config names none (or cannot be read).
pub const DEFAULT_LOG: &str = "/var/log/ds01/runtime.log";
/// Docker's data root where the config names none.
pub const DEFAULT_DOCKER_DATA_ROOT: &str = "/var/lib/docker";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config {path:?}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path:?}: invalid TOML: {msg}")]
    Parse { path: PathBuf, msg: String },
    #[error("config {path:?}: unknown key {key:?}; allowed keys: {allowed}", allowed = allowed_keys())]
    UnknownKey { path: PathBuf, key: String },
    #[error("config {path:?}: key {key:?}: {msg}")]
    BadValue {
        path: PathBuf,
        key: String,
        msg: String,
    },
}

/// How a GPU container gets the driver's user space (libcuda, nvidia-smi).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverInjection {
    /// CDI when a spec covers the devices, else NVIDIA's hook, else nodes only.
    Auto,
    Cdi,
    Hook,
    None,
}

impl DriverInjection {
    pub fn as_str(self) -> &'static str {
        match self {
            DriverInjection::Auto => "auto",
            DriverInjection::Cdi => "cdi",
            DriverInjection::Hook => "hook",
            DriverInjection::None => "none",
        }
    }
}

/// Where the GPU inventory comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InventorySource {
    /// The NVIDIA driver, through NVML.
    Nvml,
    /// A simulated inventory file (see `docs/inventory.md`).
    File(PathBuf),
}

impl InventorySource {
    /// A stable text form, stored in the snapshot to tell whether it is still current.
    pub fn describe(&self) -> String {
        match self {
            InventorySource::Nvml => "nvml".to_string(),
            InventorySource::File(p) => p.display().to_string(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was read from; `None` when it did not exist (defaults).
    pub path: Option<PathBuf>,
    pub runc: PathBuf,
    pub state_dir: PathBuf,
    pub log: PathBuf,
    pub inventory: InventorySource,
    /// How long a ledger lock is waited for before a "busy" refusal.
    pub lock_wait_secs: u64,
    /// The append-only JSON-lines log of allocations, refusals, releases, reclaims.
    pub audit_log: PathBuf,
    /// Where Docker keeps its container records (`containers/<id>/config.v2.json`).
    pub docker_data_root: PathBuf,
    /// How a container's owner is found, in order: step names, which
    /// [`crate::identity::Step::parse_order`] reads.
    pub identity: Vec<String>,
    /// Whether containers whose owner is unknown are refused a GPU.
    pub refuse_unknown_owner: bool,
    /// Members may start `--privileged` containers on a GPU host.
    pub admin_group: String,
    /// Per-user limits.
    pub policy: Policy,
    /// The images `devcontainer init` offers and `devcontainer check` knows.
    pub image_catalog: PathBuf,
    /// How GPU containers get the driver's libraries.
    pub driver_injection: DriverInjection,
    /// Where CDI specs are looked for, lowest priority first.
    pub cdi_spec_dirs: Vec<PathBuf>,
    /// How long ahead of a stop `ds01 reap` warns the owner.
    pub reap_warning: std::time::Duration,
    /// CPU use (percent of one core) under which a container counts as idle.
    pub idle_cpu_percent: f64,
    /// Where GPU activity (compute processes) is read for idle detection.
    pub activity: ActivitySource,
    /// How long a GPU create waits for a device when none is free and the
    /// container names no wait of its own (`DS01_GPU_WAIT`).
    pub gpu_wait: std::time::Duration,
    /// The official Dev Containers CLI, which `devcontainer` forwards to.
    pub devcontainer_cli: PathBuf,
    /// Where `ds01-gate` listens for users, and the dockerd socket behind it.
    pub gate_listen: PathBuf,
    pub gate_docker: PathBuf,
    /// Whether `docker ps` through the gate lists everyone's containers.
    pub gate_list_all: bool,
    /// Capabilities a non-admin may add through the gate.
    pub gate_cap_add: Vec<String>,
    /// Host namespaces (`pid`, `network`, `ipc`) a non-admin may join.
    pub gate_host_namespaces: Vec<String>,
    /// Host paths anyone may bind-mount through the gate, besides their home.
    pub gate_shared_paths: Vec<PathBuf>,
    /// Connections one user may hold open to the gate at once.
    pub gate_max_connections: usize,
    /// Whether a non-admin's bind sources must be on filesystems mounted
    /// `nosuid,nodev` (else root in the container can plant a setuid file).
    pub gate_require_nosuid: bool,
    /// High demand: above this share of devices allocated, idle timeouts
    /// are multiplied by `high_demand_factor` (default 0.5).
    pub high_demand_above: Option<f64>,
    pub high_demand_factor: Option<f64>,
    /// Where `ds01 metrics --write` and each reaper pass write the metrics
    /// (node-exporter's textfile collector reads that directory).
    pub metrics_textfile: PathBuf,
    /// Who may use GPUs outside containers, and until when
    /// (`ds01 admin bare-metal`); kept across reboots.
    pub bare_metal_grants: PathBuf,
    /// The cgroup filesystem owners' parents are written in (not a config
    /// key: tests point it at a scratch tree).
    pub cgroups: crate::share::Tree,
}

/// Where the documented install puts the official Dev Containers CLI
/// (`npm install -g --prefix /usr/local/lib/devcontainers-cli @devcontainers/cli`),
/// clear of ds01's own `/usr/bin/devcontainer`.
pub const DEVCONTAINER_CLI: &str = "/usr/local/lib/devcontainers-cli/bin/devcontainer";

/// Where GPU activity comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ActivitySource {
    Nvml,
    /// A simulated-activity file (tests, demos).
    File(PathBuf),
    /// None: only CPU use tells activity.
    None,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            path: None,
            runc: default_runc(),
            state_dir: Config::default_state_dir(),
            log: PathBuf::from(DEFAULT_LOG),
            inventory: InventorySource::Nvml,
            lock_wait_secs: 10,
            audit_log: PathBuf::from("/var/log/ds01/events.jsonl"),
            docker_data_root: PathBuf::from(DEFAULT_DOCKER_DATA_ROOT),
            identity: ["docker", "env", "home-mount", "cgroup"]
                .map(String::from)
                .to_vec(),
            refuse_unknown_owner: false,
            admin_group: "ds01-admin".to_string(),
            policy: Policy::default(),
            image_catalog: PathBuf::from("/etc/ds01/images.toml"),
            driver_injection: DriverInjection::Auto,
            cdi_spec_dirs: vec![PathBuf::from("/etc/cdi"), PathBuf::from("/var/run/cdi")],
            reap_warning: std::time::Duration::from_secs(30 * 60),
            idle_cpu_percent: 5.0,
            activity: ActivitySource::Nvml,
            gpu_wait: std::time::Duration::ZERO,
            devcontainer_cli: PathBuf::from(DEVCONTAINER_CLI),
            gate_listen: PathBuf::from("/run/ds01/gate.sock"),
            gate_docker: PathBuf::from("/var/run/docker.sock"),
            gate_list_all: true,
            gate_cap_add: Vec::new(),
            gate_host_namespaces: Vec::new(),
            gate_shared_paths: Vec::new(),
            gate_max_connections: 64,
            gate_require_nosuid: true,
            bare_metal_grants: PathBuf::from("/var/lib/ds01/bare-metal.json"),
            metrics_textfile: PathBuf::from("/var/lib/prometheus/node-exporter/ds01.prom"),
            high_demand_above: None,
            high_demand_factor: None,
            cgroups: crate::share::Tree::real(),
        }
    }
}

/// Debian's runc is in /usr/sbin, Docker's own packages put it in /usr/bin.
pub fn default_runc() -> PathBuf {
    ["/usr/bin/runc", "/usr/sbin/runc"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("/usr/bin/runc"))
}

/// What a create needs before deciding to read the whole config: the
/// `runc`, `state_dir` and `docker_data_root` keys if the file has them
/// (top-level keys, so before the first table), else the defaults. Only those lines are
/// parsed as TOML, so a pass-through command (start, kill, state, ...)
/// costs one small read, and a config broken elsewhere still sends
/// containers to the admin's runc.
#[derive(Debug, Clone, PartialEq)]
pub struct Early {
    pub runc: PathBuf,
    pub state_dir: PathBuf,
    pub docker_data_root: PathBuf,
}

pub fn early(path: &Path) -> Early {
    let (mut runc, mut state_dir, mut docker_data_root) = (None, None, None);
    if let Ok(text) = std::fs::read_to_string(path) {
        for l in text
            .lines()
            .map(str::trim_start)
            .take_while(|l| !l.starts_with('['))
        {
            let Some((k, v)) = early_key(l) else { continue };
            let slot = match k {
                "runc" => &mut runc,
                "state_dir" => &mut state_dir,
                "docker_data_root" => &mut docker_data_root,
                _ => continue,
            };
            // A plain string is read here; anything else (escapes, say)
            // by the TOML parser, on that line alone.
            let parsed = plain_string(v).map(PathBuf::from).or_else(|| {
                let t = l.parse::<toml::Table>().ok()?;
                t.get(k).and_then(|v| absolute(v).ok())
            });
            if let Some(p) = parsed.filter(|p| p.is_absolute()) {
                *slot = Some(p);
            }
        }
    }
    Early {
        runc: runc.unwrap_or_else(default_runc),
        state_dir: state_dir.unwrap_or_else(Config::default_state_dir),
        docker_data_root: docker_data_root.unwrap_or_else(|| DEFAULT_DOCKER_DATA_ROOT.into()),
    }
}

/// A top-level `key = value` line's key (bare, `"quoted"` or `'quoted'`)
/// and what follows the `=`.
fn early_key(l: &str) -> Option<(&str, &str)> {
    let (key, rest) = match l.as_bytes().first()? {
        q @ (b'"' | b'\'') => {
            let end = l[1..].find(*q as char)? + 1;
            (&l[1..end], &l[end + 1..])
        }
        _ => {
            let end = l
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                .unwrap_or(l.len());
            l.split_at(end)
        }
    };
    let value = rest.trim_start().strip_prefix('=')?;
    Some((key, value))
}

/// A TOML string with nothing to unescape: `"..."` without a backslash,
/// or a `'...'` literal, then nothing but a comment. Multi-line strings
/// are left to the parser.
fn plain_string(v: &str) -> Option<&str> {
    let v = v.trim();
    if v.starts_with("\"\"\"") || v.starts_with("'''") {
        return None;
    }
    let q = v.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let end = v[1..].find(q)? + 1;
    let inner = &v[1..end];
    let after = v[end + 1..].trim_start();
    let plain = !(q == '"' && inner.contains('\\')) && (after.is_empty() || after.starts_with('#'));
    plain.then_some(inner)
}

/// The runc to use without loading the whole config ([`early`]).
pub fn fallback_runc(path: &Path) -> PathBuf {
    early(path).runc
}

impl Config {
    fn default_state_dir() -> PathBuf {
        PathBuf::from("/run/ds01")
    }

    /// The config file in effect: `$DS01_CONFIG`, else the default path.
    pub fn locate() -> PathBuf {
        std::env::var_os(ENV_VAR)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
    }

    /// Loads the config in effect. A missing file means defaults.
    pub fn load() -> Result<Config, ConfigError> {
        Self::load_from(&Self::locate())
    }

    pub fn load_from(path: &Path) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(source) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Parse {
                path: path.to_path_buf(),
                msg: e.message().to_string(),
            })?;
        if let Some(key) = table.keys().find(|k| !keys().contains(&k.as_str())) {
            return Err(ConfigError::UnknownKey {
                path: path.to_path_buf(),
                key: key.clone(),
            });
        }
        let file: File = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse {
                path: path.to_path_buf(),
                msg: e.message().to_string(),
            })?;
        let mut cfg = Config {
            path: Some(path.to_path_buf()),
            ..Config::default()
        };
        let base = path.parent().unwrap_or(Path::new("/"));
        let bad = |key: &str, msg: String| ConfigError::BadValue {
            path: path.to_path_buf(),
            key: key.to_string(),
            msg,
        };
        // Each key of `File` is read here, once: a key added there and not
        // read is an unused field, which the build refuses.
        if let Some(v) = &file.runc {
            cfg.runc = absolute(v).map_err(|m| bad("runc", m))?;
        }
        if let Some(v) = &file.state_dir {
            cfg.state_dir = absolute(v).map_err(|m| bad("state_dir", m))?;
        }
        if let Some(v) = &file.log {
            cfg.log = absolute(v).map_err(|m| bad("log", m))?;
        }
        if let Some(v) = &file.inventory {
            let what = "\"nvml\" or the path of a simulated-inventory file";
            let s = string(v).map_err(|m| bad("inventory", format!("{m} ({what})")))?;
            cfg.inventory = match s {
                "nvml" => InventorySource::Nvml,
                "" => return Err(bad("inventory", format!("must be {what}, got \"\""))),
                p => InventorySource::File(base.join(p)),
            };
        }
        if let Some(v) = &file.lock_wait_secs {
            cfg.lock_wait_secs = v
                .as_integer()
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(|| {
                    bad(
                        "lock_wait_secs",
                        format!("must be a whole number of seconds, got {v}"),
                    )
                })?;
        }
        if let Some(v) = &file.audit_log {
            cfg.audit_log = absolute(v).map_err(|m| bad("audit_log", m))?;
        }
        if let Some(v) = &file.docker_data_root {
            cfg.docker_data_root = absolute(v).map_err(|m| bad("docker_data_root", m))?;
        }
        if let Some(v) = &file.identity {
            cfg.identity = v
                .as_array()
                .and_then(|l| l.iter().map(|s| s.as_str().map(String::from)).collect())
                .ok_or_else(|| bad("identity", format!("must be a list of step names, got {v}")))?;
        }
        if let Some(v) = &file.unknown_owner {
            cfg.refuse_unknown_owner = match v.as_str() {
                Some("default") => false,
                Some("refuse") => true,
                _ => {
                    return Err(bad(
                        "unknown_owner",
                        format!("must be \"default\" or \"refuse\", got {v}"),
                    ));
                }
            };
        }
        if let Some(v) = &file.admin_group {
            cfg.admin_group = string(v)
                .ok()
                .filter(|g| policy::valid_name(g))
                .ok_or_else(|| bad("admin_group", format!("must be a group name, got {v}")))?
                .to_string();
        }
        if let Some(v) = &file.image_catalog {
            cfg.image_catalog = base.join(string(v).map_err(|m| bad("image_catalog", m))?);
        }
        if let Some(v) = &file.driver_injection {
            cfg.driver_injection = match v.as_str() {
                Some("auto") => DriverInjection::Auto,
                Some("cdi") => DriverInjection::Cdi,
                Some("hook") => DriverInjection::Hook,
                Some("none") => DriverInjection::None,
                _ => {
                    return Err(bad(
                        "driver_injection",
                        format!("must be \"auto\", \"cdi\", \"hook\" or \"none\", got {v}"),
                    ));
                }
            };
        }
        if let Some(v) = &file.cdi_spec_dirs {
            let key = "cdi_spec_dirs";
            let dirs = v
                .as_array()
                .ok_or_else(|| bad(key, format!("must be a list of absolute paths, got {v}")))?;
            cfg.cdi_spec_dirs = dirs
                .iter()
                .map(|d| absolute(d).map_err(|m| bad(key, m)))
                .collect::<Result<_, _>>()?;
        }
        // A simulated inventory has no NVML to ask: no GPU activity unless
        // the config names a file.
        if matches!(cfg.inventory, InventorySource::File(_)) {
            cfg.activity = ActivitySource::None;
        }
        if let Some(v) = &file.activity {
            let what = "\"nvml\", \"none\" or the path of a simulated-activity file";
            cfg.activity = match string(v).map_err(|m| bad("activity", format!("{m} ({what})")))? {
                "nvml" => ActivitySource::Nvml,
                "none" => ActivitySource::None,
                "" => return Err(bad("activity", format!("must be {what}, got \"\""))),
                p => ActivitySource::File(base.join(p)),
            };
        }
        for (key, value, slot) in [
            ("reap_warning", &file.reap_warning, &mut cfg.reap_warning),
            ("gpu_wait", &file.gpu_wait, &mut cfg.gpu_wait),
        ] {
            if let Some(v) = value {
                *slot = string(v)
                    .ok()
                    .and_then(|s| crate::idle::parse(s).ok().flatten())
                    .ok_or_else(|| {
                        bad(
                            key,
                            format!("must be a duration such as \"30m\" or \"0s\", got {v}"),
                        )
                    })?;
            }
        }
        if let Some(v) = &file.metrics_textfile {
            cfg.metrics_textfile = absolute(v).map_err(|m| bad("metrics_textfile", m))?;
        }
        if let Some(v) = &file.bare_metal_grants {
            cfg.bare_metal_grants = absolute(v).map_err(|m| bad("bare_metal_grants", m))?;
        }
        if let Some(v) = &file.devcontainer_cli {
            cfg.devcontainer_cli = absolute(v).map_err(|m| bad("devcontainer_cli", m))?;
        }
        if let Some(v) = &file.gate_listen {
            cfg.gate_listen = absolute(v).map_err(|m| bad("gate_listen", m))?;
        }
        if let Some(v) = &file.gate_docker {
            cfg.gate_docker = absolute(v).map_err(|m| bad("gate_docker", m))?;
        }
        if let Some(v) = &file.gate_list {
            cfg.gate_list_all = match v.as_str() {
                Some("all") => true,
                Some("own") => false,
                _ => {
                    return Err(bad(
                        "gate_list",
                        format!("must be \"all\" or \"own\", got {v}"),
                    ));
                }
            };
        }
        if let Some(v) = &file.gate_cap_add {
            cfg.gate_cap_add = string_list(v)
                .map_err(|m| bad("gate_cap_add", m))?
                .into_iter()
                .map(|c| {
                    c.to_ascii_uppercase()
                        .trim_start_matches("CAP_")
                        .to_string()
                })
                .collect();
        }
        if let Some(v) = &file.gate_host_namespaces {
            let list = string_list(v).map_err(|m| bad("gate_host_namespaces", m))?;
            if let Some(n) = list
                .iter()
                .find(|n| !["pid", "network", "ipc"].contains(&n.as_str()))
            {
                return Err(bad(
                    "gate_host_namespaces",
                    format!("{n:?} is not one of pid, network, ipc"),
                ));
            }
            cfg.gate_host_namespaces = list;
        }
        if let Some(v) = &file.gate_max_connections {
            cfg.gate_max_connections = v
                .as_integer()
                .filter(|n| (1..=100_000).contains(n))
                .ok_or_else(|| {
                    bad(
                        "gate_max_connections",
                        format!("must be a whole number from 1 to 100000, got {v}"),
                    )
                })? as usize;
        }
        if let Some(v) = &file.gate_require_nosuid {
            cfg.gate_require_nosuid = v.as_bool().ok_or_else(|| {
                bad(
                    "gate_require_nosuid",
                    format!("must be true or false, got {v}"),
                )
            })?;
        }
        if let Some(v) = &file.gate_shared_paths {
            let list = v.as_array().ok_or_else(|| {
                bad(
                    "gate_shared_paths",
                    format!("must be a list of absolute paths, got {v}"),
                )
            })?;
            cfg.gate_shared_paths = list
                .iter()
                .map(|p| absolute(p).map_err(|m| bad("gate_shared_paths", m)))
                .collect::<Result<_, _>>()?;
        }
        if let Some(v) = &file.idle_cpu_percent {
            cfg.idle_cpu_percent = v
                .as_float()
                .or_else(|| v.as_integer().map(|i| i as f64))
                .filter(|n| n.is_finite() && *n >= 0.0)
                .ok_or_else(|| {
                    bad(
                        "idle_cpu_percent",
                        format!("must be a percentage of one core, 0 or more, got {v}"),
                    )
                })?;
        }
        if let Some(v) = &file.defaults {
            let t = section(v).map_err(|m| bad("defaults", m))?;
            cfg.policy.defaults =
                policy::parse_limits(t, &[]).map_err(|(k, m)| bad(&format!("defaults.{k}"), m))?;
        }
        for (key, section_value) in [("groups", &file.groups), ("users", &file.users)] {
            let Some(v) = section_value else { continue };
            let t = section(v).map_err(|m| bad(key, m))?;
            for (name, v) in t {
                let at = format!("{key}.{name}");
                if !policy::valid_name(name) {
                    return Err(bad(&at, "is not a valid user or group name".into()));
                }
                let t = section(v).map_err(|m| bad(&at, m))?;
                let extra: &[&str] = if key == "groups" { &["members"] } else { &[] };
                let limits = policy::parse_limits(t, extra)
                    .map_err(|(k, m)| bad(&format!("{at}.{k}"), m))?;
                if key == "users" {
                    cfg.policy.users.push((name.clone(), limits));
                    continue;
                }
                let members = match t.get("members") {
                    None => None,
                    Some(m) => Some(names(m).map_err(|e| bad(&format!("{at}.members"), e))?),
                };
                cfg.policy.groups.push(Group {
                    name: name.clone(),
                    members,
                    limits,
                });
            }
        }
        if let Some(v) = &file.kinds {
            let t = section(v).map_err(|m| bad("kinds", m))?;
            for (name, v) in t {
                let at = format!("kinds.{name}");
                let kind = crate::names::Kind::parse(name).ok_or_else(|| {
                    bad(
                        &at,
                        "is not a kind: devcontainer, compose, deploy or docker".into(),
                    )
                })?;
                let t = section(v).map_err(|m| bad(&at, m))?;
                if let Some(k) = t.keys().find(|k| !policy::KIND_KEYS.contains(&k.as_str())) {
                    return Err(bad(
                        &format!("{at}.{k}"),
                        format!(
                            "unknown key; allowed here: {}",
                            policy::KIND_KEYS.join(", ")
                        ),
                    ));
                }
                let limits =
                    policy::parse_limits(t, &[]).map_err(|(k, m)| bad(&format!("{at}.{k}"), m))?;
                cfg.policy.kinds.push((kind, limits));
            }
        }
        for (key, value, slot) in [
            (
                "high_demand_above",
                &file.high_demand_above,
                &mut cfg.high_demand_above,
            ),
            (
                "high_demand_factor",
                &file.high_demand_factor,
                &mut cfg.high_demand_factor,
            ),
        ] {
            if let Some(v) = value {
                *slot = v
                    .as_float()
                    .or_else(|| v.as_integer().map(|i| i as f64))
                    .filter(|n| *n > 0.0 && *n <= 1.0)
                    .map(Some)
                    .ok_or_else(|| {
                        bad(
                            key,
                            format!("must be a fraction above 0, at most 1, got {v}"),
                        )
                    })?;
            }
        }
        if cfg.high_demand_factor.is_some() && cfg.high_demand_above.is_none() {
            return Err(bad(
                "high_demand_factor",
                "has no effect without high_demand_above (the share of devices allocated above which it applies); add that too".into(),
            ));
        }
        if file.pending_grace_secs.is_some() {
            return Err(bad(
                "pending_grace_secs",
                "is no longer used (a create in flight is now known by its lock, never by a timeout); remove the line".into(),
            ));
        }
        Ok(cfg)
    }
}

/// config.toml's keys, each as written; [`Config::parse`] reads them. The
/// keys allowed are this struct's fields, so the list cannot drift.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    runc: Option<toml::Value>,
    state_dir: Option<toml::Value>,
    log: Option<toml::Value>,
    inventory: Option<toml::Value>,
    lock_wait_secs: Option<toml::Value>,
    audit_log: Option<toml::Value>,
    docker_data_root: Option<toml::Value>,
    identity: Option<toml::Value>,
    unknown_owner: Option<toml::Value>,
    admin_group: Option<toml::Value>,
    image_catalog: Option<toml::Value>,
    driver_injection: Option<toml::Value>,
    cdi_spec_dirs: Option<toml::Value>,
    reap_warning: Option<toml::Value>,
    idle_cpu_percent: Option<toml::Value>,
    activity: Option<toml::Value>,
    gpu_wait: Option<toml::Value>,
    devcontainer_cli: Option<toml::Value>,
    bare_metal_grants: Option<toml::Value>,
    metrics_textfile: Option<toml::Value>,
    high_demand_above: Option<toml::Value>,
    high_demand_factor: Option<toml::Value>,
    kinds: Option<toml::Value>,
    gate_listen: Option<toml::Value>,
    gate_docker: Option<toml::Value>,
    gate_list: Option<toml::Value>,
    gate_max_connections: Option<toml::Value>,
    gate_require_nosuid: Option<toml::Value>,
    gate_cap_add: Option<toml::Value>,
    gate_host_namespaces: Option<toml::Value>,
    gate_shared_paths: Option<toml::Value>,
    defaults: Option<toml::Value>,
    groups: Option<toml::Value>,
    users: Option<toml::Value>,
    /// Refused with a word on why, not as unknown.
    pending_grace_secs: Option<toml::Value>,
}

fn allowed_keys() -> String {
    keys()
        .iter()
        .filter(|k| **k != "pending_grace_secs")
        .copied()
        .collect::<Vec<_>>()
        .join(", ")
}

/// The keys config.toml may hold: [`File`]'s fields, as serde names them.
pub fn keys() -> &'static [&'static str] {
    use serde::de::{self, Visitor};
    use std::sync::OnceLock;
    // A deserializer that only notes the field list serde hands it.
    struct Fields(std::cell::Cell<&'static [&'static str]>);
    impl<'de> de::Deserializer<'de> for &Fields {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("fields only"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0.set(fields);
            Err(de::Error::custom("fields only"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map
            enum identifier ignored_any
        }
    }
    static KEYS: OnceLock<&'static [&'static str]> = OnceLock::new();
    KEYS.get_or_init(|| {
        let f = Fields(std::cell::Cell::new(&[]));
        let _ = <File as serde::Deserialize>::deserialize(&f);
        f.0.get()
    })
}

fn section(value: &toml::Value) -> Result<&toml::Table, String> {
    value
        .as_table()
        .ok_or_else(|| format!("must be a table ([section]), got {value}"))
}

fn names(value: &toml::Value) -> Result<Vec<String>, String> {
    let list = value
        .as_array()
        .ok_or_else(|| format!("must be a list of user names, got {value}"))?;
    list.iter()
        .map(|v| match v.as_str() {
            Some(n) if policy::valid_name(n) => Ok(n.to_string()),
            _ => Err(format!("{v} is not a valid user name")),
        })
        .collect()
}

fn string_list(value: &toml::Value) -> Result<Vec<String>, String> {
    value
        .as_array()
        .and_then(|l| l.iter().map(|s| s.as_str().map(String::from)).collect())
        .ok_or_else(|| format!("must be a list of strings, got {value}"))
}

fn string(value: &toml::Value) -> Result<&str, String> {
    value
        .as_str()
        .ok_or_else(|| format!("must be a string, got {value}"))
}

fn absolute(value: &toml::Value) -> Result<PathBuf, String> {
    let s = string(value)?;
    let p = PathBuf::from(s);
    if p.is_absolute() {
        Ok(p)
    } else {
        Err(format!("must be an absolute path, got {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/ds01/config.toml"), text)
    }

    #[test]
    fn the_keys_are_the_file_struct_s_and_each_is_documented() {
        let keys = keys();
        assert!(
            keys.contains(&"runc") && keys.contains(&"users"),
            "{keys:?}"
        );
        let docs = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/config.md"),
        )
        .unwrap();
        for k in allowed_keys().split(", ") {
            let documented = match k {
                "defaults" | "groups" | "users" | "kinds" => docs.contains(&format!("`[{k}")),
                _ => docs.contains(&format!("| `{k}` |")),
            };
            assert!(documented, "docs/config.md does not document {k}");
        }
        let msg = parse("runc_path = \"/x\"").unwrap_err().to_string();
        assert!(
            msg.contains("unknown key \"runc_path\"; allowed keys: runc, state_dir, log,"),
            "{msg}"
        );
        assert!(!msg.contains("pending_grace_secs"), "{msg}");
    }

    #[test]
    fn missing_file_means_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::load_from(&dir.path().join("nope.toml")).unwrap();
        assert_eq!(cfg.path, None);
        assert_eq!(cfg.state_dir, PathBuf::from("/run/ds01"));
        assert_eq!(cfg.inventory, InventorySource::Nvml);
        assert_eq!(cfg.policy, Policy::default());
    }

    #[test]
    fn reads_every_key() {
        let cfg = parse(
            r#"
            runc = "/usr/sbin/runc"
            state_dir = "/tmp/s"
            log = "/tmp/l.log"
            inventory = "sim/inventory.toml"
            lock_wait_secs = 5
            audit_log = "/tmp/e.jsonl"
            docker_data_root = "/srv/docker"
            identity = ["env", "docker"]
            unknown_owner = "refuse"
            admin_group = "gpu-admins"

            [defaults]
            max_gpu_equivalents = 0.5
            allow_full_gpu = false

            [groups.staff]
            allow_full_gpu = true

            [groups.students]
            members = ["carol", "dave"]
            max_gpu_containers = 1

            [users.alice]
            max_gpu_equivalents = 2
            "#,
        )
        .unwrap();
        assert_eq!(cfg.runc, PathBuf::from("/usr/sbin/runc"));
        assert_eq!(cfg.state_dir, PathBuf::from("/tmp/s"));
        assert_eq!(cfg.log, PathBuf::from("/tmp/l.log"));
        // A relative inventory path is taken from the config file's directory.
        assert_eq!(
            cfg.inventory,
            InventorySource::File(PathBuf::from("/etc/ds01/sim/inventory.toml"))
        );
        assert_eq!(cfg.lock_wait_secs, 5);
        assert_eq!(cfg.audit_log, PathBuf::from("/tmp/e.jsonl"));
        assert_eq!(cfg.docker_data_root, PathBuf::from("/srv/docker"));
        assert_eq!(cfg.identity, ["env", "docker"]);
        assert!(cfg.refuse_unknown_owner);
        assert_eq!(cfg.admin_group, "gpu-admins");
        assert_eq!(cfg.policy.defaults.max_gpu_equivalents, Some(0.5));
        let names: Vec<&str> = cfg.policy.groups.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["staff", "students"], "file order is kept");
        assert_eq!(cfg.policy.groups[0].members, None);
        assert_eq!(
            cfg.policy.groups[1].members,
            Some(vec!["carol".into(), "dave".into()])
        );
        assert_eq!(cfg.policy.users[0].0, "alice");
        assert_eq!(cfg.policy.users[0].1.max_gpu_equivalents, Some(2.0));
    }

    #[test]
    fn unknown_key_names_file_key_and_allowed_keys() {
        let msg = parse("runc_path = \"/x\"").unwrap_err().to_string();
        assert!(msg.contains("/etc/ds01/config.toml"), "{msg}");
        assert!(msg.contains("\"runc_path\""), "{msg}");
        assert!(msg.contains("runc, state_dir"), "{msg}");
    }

    #[test]
    fn bad_values_name_the_key_and_what_is_allowed() {
        let msg = parse("runc = \"runc\"").unwrap_err().to_string();
        assert!(msg.contains("\"runc\": must be an absolute path"), "{msg}");
        let msg = parse("[defaults]\nallow_full_gpu = \"yes\"")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("key \"defaults.allow_full_gpu\": must be true or false"),
            "{msg}"
        );
        let msg = parse("[users.bob]\nmax_gpus = 1").unwrap_err().to_string();
        assert!(
            msg.contains("\"users.bob.max_gpus\": unknown key; allowed here: max_gpu_equivalents"),
            "{msg}"
        );
        let msg = parse("[groups.x]\nmembers = [\"a/b\"]")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("\"groups.x.members\""), "{msg}");
        let msg = parse("identity = \"docker\"").unwrap_err().to_string();
        assert!(
            msg.contains("\"identity\": must be a list of step names"),
            "{msg}"
        );
        let msg = parse("unknown_owner = \"deny\"").unwrap_err().to_string();
        assert!(msg.contains("\"default\" or \"refuse\""), "{msg}");
        let msg = parse("lock_wait_secs = -1").unwrap_err().to_string();
        assert!(msg.contains("whole number"), "{msg}");
        let msg = parse("inventory = 3").unwrap_err().to_string();
        assert!(msg.contains("\"nvml\" or the path"), "{msg}");
    }

    #[test]
    fn the_runc_key_is_read_alone_and_only_at_the_top_level() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        let read = |text: &str| {
            std::fs::write(&p, text).unwrap();
            fallback_runc(&p)
        };
        assert_eq!(
            read("# x\nrunc = \"/opt/runc\" # mine\nbad = [\n"),
            PathBuf::from("/opt/runc")
        );
        assert_eq!(read("runc='/opt/r u'\n"), PathBuf::from("/opt/r u"));
        assert_eq!(read("[users.runc]\nrunc = \"/x\"\n"), default_runc());
        assert_eq!(
            read("runcx = \"/x\"\nrunc = \"relative\"\n"),
            default_runc()
        );
        assert_eq!(fallback_runc(&dir.path().join("missing")), default_runc());
    }

    #[test]
    fn shipped_logrotate_rotates_the_default_logs() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/logrotate.conf");
        let text = std::fs::read_to_string(p).unwrap();
        let d = Config::default();
        let rotated: Vec<&str> = text.lines().filter(|l| l.starts_with('/')).collect();
        for log in [&d.log, &d.audit_log] {
            let name = log.display().to_string();
            assert!(
                rotated.iter().any(|l| l.contains(&name)),
                "{name}: {rotated:?}"
            );
        }
        // The audit log stays uncompressed: `ds01 report` reads its
        // rotated files.
        let audit = text
            .split(&format!("{} {{", d.audit_log.display()))
            .nth(1)
            .unwrap();
        let stanza = audit.split('}').next().unwrap();
        assert!(
            stanza.contains("nocompress") && !stanza.contains("\n    compress"),
            "{stanza}"
        );
    }

    #[test]
    fn shipped_config_is_all_defaults() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/config.toml");
        let cfg = Config::load_from(&p).unwrap();
        let d = Config::default();
        assert_eq!(cfg.path, Some(p));
        let all = |c: Config| {
            format!(
                "{:?}",
                (
                    c.runc,
                    c.state_dir,
                    c.log,
                    c.inventory,
                    c.lock_wait_secs,
                    c.audit_log,
                    c.docker_data_root,
                    c.identity,
                    c.refuse_unknown_owner,
                    c.admin_group,
                    c.policy,
                    (c.image_catalog, c.driver_injection, c.cdi_spec_dirs),
                )
            )
        };
        assert_eq!(all(cfg), all(d));
        // Every key is documented there.
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/config.toml"),
        )
        .unwrap();
        for key in allowed_keys()
            .split(", ")
            .filter(|k| !["defaults", "groups", "users", "kinds"].contains(k))
        {
            assert!(text.contains(&format!("#{key} = ")), "{key} undocumented");
        }
        for key in policy::LIMIT_KEYS {
            assert!(text.contains(&format!("#{key} = ")), "{key} undocumented");
        }
        for section in ["#[defaults]", "#[groups.", "#[users.", "#[kinds."] {
            assert!(text.contains(section), "{section} undocumented");
        }
    }

    #[test]
    fn the_early_read_takes_plain_strings_and_leaves_the_rest_to_toml() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        for (text, runc) in [
            ("runc = \"/a\" # here\n", "/a"),
            ("runc='/b'\n", "/b"),
            ("\"runc\" = \"/c\"\n", "/c"),
            ("runc = \"/d\\u0041\"\n", "/dA"),
            ("runc = \"/e\" junk\n", ""),
            ("runc = \"relative\"\n", ""),
            ("runcx = \"/f\"\n", ""),
            ("[t]\nrunc = \"/g\"\n", ""),
        ] {
            std::fs::write(&p, text).unwrap();
            let want = if runc.is_empty() {
                default_runc()
            } else {
                PathBuf::from(runc)
            };
            assert_eq!(early(&p).runc, want, "{text:?}");
        }
    }

    #[test]
    fn fallback_runc_survives_a_bad_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "runc = \"/opt/runc\"\nbogus = 1\n").unwrap();
        assert!(Config::load_from(&p).is_err());
        assert_eq!(fallback_runc(&p), PathBuf::from("/opt/runc"));
        std::fs::write(&p, "runc = ").unwrap();
        assert_eq!(fallback_runc(&p), default_runc());
        std::fs::write(
            &p,
            "\"state_dir\" = \"/s\"\n'runc' = \"/r\"\ndocker_data_root = \"/d\"\n[defaults]\nstate_dir = 1\n",
        )
        .unwrap();
        assert_eq!(
            early(&p),
            Early {
                runc: "/r".into(),
                state_dir: "/s".into(),
                docker_data_root: "/d".into(),
            }
        );
    }

    #[test]
    fn invalid_toml_names_the_file() {
        let msg = parse("runc = ").unwrap_err().to_string();
        assert!(
            msg.starts_with("config \"/etc/ds01/config.toml\": invalid TOML"),
            "{msg}"
        );
    }
}
