//! `/etc/ds01/config.toml`: where the real runc, the state and the log live,
//! and which GPU inventory to use.

use std::path::{Path, PathBuf};

/// The file read when `DS01_CONFIG` is not set.
pub const DEFAULT_PATH: &str = "/etc/ds01/config.toml";
/// The environment variable naming another config file.
pub const ENV_VAR: &str = "DS01_CONFIG";

const KEYS: &[&str] = &[
    "runc",
    "state_dir",
    "log",
    "inventory",
    "allow_full_gpu",
    "pending_grace_secs",
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config {path:?}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path:?}: invalid TOML: {msg}")]
    Parse { path: PathBuf, msg: String },
    #[error("config {path:?}: unknown key {key:?}; allowed keys: {allowed}", allowed = KEYS.join(", "))]
    UnknownKey { path: PathBuf, key: String },
    #[error("config {path:?}: key {key:?}: {msg}")]
    BadValue {
        path: PathBuf,
        key: String,
        msg: String,
    },
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
    /// Whether a GPU request may be served by a full GPU.
    pub allow_full_gpu: bool,
    /// How long a record with no init pid is kept while runc knows no such container.
    pub pending_grace_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            path: None,
            runc: default_runc(),
            state_dir: PathBuf::from("/run/ds01"),
            log: PathBuf::from("/var/log/ds01/runtime.log"),
            inventory: InventorySource::Nvml,
            allow_full_gpu: false,
            pending_grace_secs: 300,
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

/// The runc to use when the config as a whole is unusable: its `runc` key
/// if that much can still be read, else the default. A broken config must
/// not send containers that want no GPU to a different runc.
pub fn fallback_runc(path: &Path) -> PathBuf {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|t| t.get("runc").and_then(|v| absolute(v).ok()))
        .unwrap_or_else(default_runc)
}

impl Config {
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
        for (key, value) in &table {
            match key.as_str() {
                "runc" => cfg.runc = absolute(value).map_err(|m| bad(key, m))?,
                "state_dir" => cfg.state_dir = absolute(value).map_err(|m| bad(key, m))?,
                "log" => cfg.log = absolute(value).map_err(|m| bad(key, m))?,
                "inventory" => {
                    let s = string(value).map_err(|m| {
                        bad(
                            key,
                            format!("{m} (\"nvml\" or the path of a simulated-inventory file)"),
                        )
                    })?;
                    cfg.inventory = match s {
                        "nvml" => InventorySource::Nvml,
                        "" => return Err(bad(
                            key,
                            "must be \"nvml\" or the path of a simulated-inventory file, got \"\""
                                .into(),
                        )),
                        p => InventorySource::File(base.join(p)),
                    };
                }
                "allow_full_gpu" => {
                    cfg.allow_full_gpu = value
                        .as_bool()
                        .ok_or_else(|| bad(key, format!("must be true or false, got {value}")))?
                }
                "pending_grace_secs" => {
                    cfg.pending_grace_secs = value
                        .as_integer()
                        .and_then(|n| u64::try_from(n).ok())
                        .ok_or_else(|| {
                            bad(
                                key,
                                format!("must be a whole number of seconds, got {value}"),
                            )
                        })?
                }
                _ => {
                    return Err(ConfigError::UnknownKey {
                        path: path.to_path_buf(),
                        key: key.clone(),
                    });
                }
            }
        }
        Ok(cfg)
    }
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
    fn missing_file_means_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::load_from(&dir.path().join("nope.toml")).unwrap();
        assert_eq!(cfg.path, None);
        assert_eq!(cfg.state_dir, PathBuf::from("/run/ds01"));
        assert_eq!(cfg.inventory, InventorySource::Nvml);
        assert!(!cfg.allow_full_gpu);
    }

    #[test]
    fn reads_every_key() {
        let cfg = parse(
            r#"
            runc = "/usr/sbin/runc"
            state_dir = "/tmp/s"
            log = "/tmp/l.log"
            inventory = "sim/inventory.toml"
            allow_full_gpu = true
            pending_grace_secs = 5
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
        assert!(cfg.allow_full_gpu);
        assert_eq!(cfg.pending_grace_secs, 5);
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
        let msg = parse("allow_full_gpu = \"yes\"").unwrap_err().to_string();
        assert!(msg.contains("must be true or false"), "{msg}");
        let msg = parse("pending_grace_secs = -1").unwrap_err().to_string();
        assert!(msg.contains("whole number"), "{msg}");
        let msg = parse("inventory = 3").unwrap_err().to_string();
        assert!(msg.contains("\"nvml\" or the path"), "{msg}");
    }

    #[test]
    fn shipped_config_is_all_defaults() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/config.toml");
        let cfg = Config::load_from(&p).unwrap();
        let d = Config::default();
        assert_eq!(cfg.path, Some(p));
        assert_eq!(
            (
                cfg.runc,
                cfg.state_dir,
                cfg.log,
                cfg.inventory,
                cfg.allow_full_gpu,
                cfg.pending_grace_secs
            ),
            (
                d.runc,
                d.state_dir,
                d.log,
                d.inventory,
                d.allow_full_gpu,
                d.pending_grace_secs
            )
        );
        // Every key is documented there.
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/config.toml"),
        )
        .unwrap();
        for key in KEYS {
            assert!(text.contains(&format!("#{key} = ")), "{key} undocumented");
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
